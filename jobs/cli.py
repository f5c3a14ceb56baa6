"""``wattgate jobs list|show|cancel``: the gateway's jobs API from a terminal."""

from __future__ import annotations

import argparse
import json
import sys
from urllib.parse import quote

import httpx

from jobs.model import STATES

__all__ = ["register", "run"]

DEFAULT_URL = "http://127.0.0.1:8000"


def register(subparsers: argparse._SubParsersAction) -> None:
    jobs = subparsers.add_parser("jobs", help="list, show or cancel deferrable jobs")
    sub = jobs.add_subparsers(dest="jobs_command", required=True)
    listing = sub.add_parser("list", help="jobs, newest first: a tenant key lists its own, the admin all")
    listing.add_argument("--state", choices=STATES)
    listing.add_argument("--tenant", help="admin: only this tenant's jobs")
    listing.add_argument("--limit", type=int, default=50)
    show = sub.add_parser("show", help="a job's state, plan, results and carbon against running at submission")
    show.add_argument("job_id")
    cancel = sub.add_parser("cancel", help="cancel a scheduled job (a running one stops before its next request)")
    cancel.add_argument("job_id")
    for p in (listing, show, cancel):
        p.add_argument("--url", default=DEFAULT_URL, help=f"gateway base URL (default {DEFAULT_URL})")
        p.add_argument("--token", default=None, help="a tenant's API key, or the admin key")
        p.add_argument("--timeout", type=float, default=10.0)
        p.add_argument("--json", action="store_true", help="print the JSON answer")


def run(args: argparse.Namespace) -> int:
    if args.jobs_command == "list":
        query = f"?limit={args.limit}" + (f"&state={args.state}" if args.state else "") + (
            f"&tenant={quote(args.tenant, safe='')}" if args.tenant else "")
        return _call(args, "GET", "/v2/jobs" + query, _table)
    path = f"/v2/jobs/{quote(args.job_id, safe='')}"
    return _call(args, "GET" if args.jobs_command == "show" else "DELETE", path, _one)


def _call(args: argparse.Namespace, method: str, path: str, fmt) -> int:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    url = args.url.rstrip("/") + path
    try:
        resp = httpx.request(method, url, headers=headers, timeout=args.timeout)
        doc = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"error: {method} {url}: {exc}", file=sys.stderr)
        return 1
    if resp.status_code >= 400:
        print(f"error: {method} {url} -> {resp.status_code}: {doc.get('error', doc)}", file=sys.stderr)
        return 1
    print(json.dumps(doc, indent=2) if args.json else fmt(doc))
    return 0


def _table(doc: dict) -> str:
    rows = [("id", "state", "tenant", "model", "scheduled_for", "g/kWh", "deadline", "requests")]
    for j in doc["jobs"]:
        g = j["expected_intensity_g_per_kwh"]
        rows.append((j["id"], j["state"], j.get("tenant") or "-", j["model"], j["scheduled_for"], "-" if g is None else f"{g:.0f}",
                     j["deadline"], str(j["requests"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def _one(doc: dict) -> str:
    lines = [f"{doc['id']}: {doc['state']} ({doc['model']}, {doc['requests']} request(s))",
             f"  scheduled for {doc['scheduled_for']}, deadline {doc['deadline']}",
             f"  plan: {doc['plan']['decision']}: {doc['plan']['reason']}"]
    if doc.get("error"):
        lines.append(f"  error: {doc['error']}")
    t = doc.get("totals")
    if t and t["requests_done"]:
        carbon = "unknown" if t["carbon_g"] is None else f"{t['carbon_g']:.3g} g"
        cf = "unknown" if t["counterfactual_carbon_g"] is None else f"{t['counterfactual_carbon_g']:.3g} g"
        lines.append(f"  ran {t['requests_done']} request(s): {t['energy_j']:.3g} J, {carbon} CO2e "
                     f"(at submission it would have been {cf})")
    return "\n".join(lines)
