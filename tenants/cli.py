"""``wattgate keys create|list|show|rotate|revoke`` and ``wattgate audit``: tenants on the command line.

They act on the key store the settings name (the state directory's keys file, or Redis), as the
admin API does, and write the same audit log. A new or rotated key is printed once, on stdout.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from pathlib import Path
from typing import TextIO

from tenants.audit import AuditLog
from tenants.keys import PERIODS, KeyLimits, make_key_store


def register(sub) -> None:
    keys = sub.add_parser("keys", help="tenants' API keys: create, list, show, rotate, revoke")
    commands = keys.add_subparsers(dest="keys_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, help="YAML settings file (auth.*, server.state_dir)")
        p.add_argument("--json", action="store_true", help="print JSON")

    create = commands.add_parser("create", help="a new key for a tenant; printed once")
    common(create)
    create.add_argument("--tenant", required=True)
    create.add_argument("--rps", type=float, help="requests per second (token bucket rate)")
    create.add_argument("--burst", type=int, help="token bucket size (default: rps rounded up)")
    create.add_argument("--max-concurrency", type=int, help="requests in flight at once")
    create.add_argument("--models", help="comma-separated models this key may use (default: all)")
    create.add_argument("--budget-g", type=float, help="carbon budget, gCO2e per period")
    create.add_argument("--budget-period", choices=PERIODS, default="month")
    create.add_argument("--weight", type=float, default=1.0, help="share of a saturated gateway (default 1)")
    for name, help_ in (("list", "every key (never the keys themselves)"), ("show", "one key's record"),
                        ("rotate", "a new secret for a key, printed once; the old one works until --grace ends"),
                        ("revoke", "revoke a key")):
        p = commands.add_parser(name, help=help_)
        common(p)
        if name != "list":
            p.add_argument("key_id")
        if name == "rotate":
            p.add_argument("--grace", type=duration_s, default=None,
                           help="how long the old secret keeps working: 90s, 15m, 1h, 2d (default auth.rotation_grace_s)")

    audit = sub.add_parser("audit", help="read the audit log of admin actions")
    audit.add_argument("--config", type=Path, help="YAML settings file")
    audit.add_argument("--since-s", type=float, help="only entries at or after this unix time")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")


_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_s(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``1h`` or ``2d``."""
    unit = text[-1:] if text[-1:] in _UNITS_S else "s"
    number = text[:-1] if text[-1:] in _UNITS_S else text
    try:
        value = float(number) * _UNITS_S[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 90s, 15m, 1h, 2d)") from None
    if not (value >= 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 90s, 15m, 1h, 2d)")
    return value


def _settings(config: Path | None):
    from wattgate.settings import load_settings

    return load_settings(config)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    settings = _settings(args.config)
    audit = AuditLog(settings.state_path(settings.auth.audit_file))
    if args.command == "audit":
        for entry in audit.entries(args.since_s):
            if args.json:
                print(json.dumps(entry), file=out)
            else:
                when = _utc(entry.get("time_s", 0))
                rest = {k: v for k, v in entry.items() if k not in ("time_s", "who", "action", "from", "outcome")}
                extra = " ".join(f"{k}={v}" for k, v in rest.items() if v is not None)
                print(f"{when}  {entry.get('who')}  from {entry.get('from')}  {entry.get('action')}  -> "
                      f"{entry.get('outcome')}  {extra}".rstrip(), file=out)
        return 0
    store = make_key_store(settings.auth, settings.server.state_dir)
    who, cmd = f"cli:{getpass.getuser()}", args.keys_command
    if cmd == "list":
        records = [r.public() for r in sorted(store.records(force=True).values(), key=lambda r: r.key_id)]
        if args.json:
            json.dump(records, out, indent=2)
            out.write("\n")
        else:
            now = time.time()
            for r in records:
                state = "active" if r["active"] else "revoked"
                grace = "".join(f" previous-secret-until={_utc(t)}" for t in r["previous_secrets_expire_at"] if t > now)
                print(f"{r['key_id']}  {r['tenant']:<20} {state:<8} rps={r['rps']} burst={r['burst']} "
                      f"max_concurrency={r['max_concurrency']} models={r['models']} "
                      f"budget_g={r['budget_g']}/{r['budget_period']} weight={r['weight']}{grace}", file=out)
        return 0
    if cmd == "show":
        json.dump(store.show(args.key_id).public(), out, indent=2)
        out.write("\n")
        return 0
    key = None
    if cmd == "create":
        limits = KeyLimits(rps=args.rps, burst=args.burst, max_concurrency=args.max_concurrency,
                           models=tuple(m for m in args.models.split(",") if m) if args.models else None,
                           budget_g=args.budget_g, budget_period=args.budget_period, weight=args.weight)
        record, key = store.create(args.tenant, limits)
    extra = {}
    if cmd == "rotate":
        grace_s = store.rotation_grace_s if args.grace is None else args.grace
        record, key = store.rotate(args.key_id, grace_s)
        extra = {"grace_s": grace_s}
    elif cmd == "revoke":
        record = store.revoke(args.key_id)
    audit.record(who, f"keys {cmd}", "local", "ok", key_id=record.key_id, tenant=record.tenant, **extra)
    doc = record.public()
    if args.json:
        json.dump({**({"key": key} if key else {}), **doc}, out, indent=2)
        out.write("\n")
    else:
        if key:
            print(key, file=out)
            print(f"# key id {record.key_id} for tenant {record.tenant}: shown once, stored only as a salted hash",
                  file=sys.stderr)
            for t in record.public()["previous_secrets_expire_at"]:
                print(f"# the previous secret works until {_utc(t)}", file=sys.stderr)
        else:
            print(f"{record.key_id} revoked", file=out)
    return 0


def _utc(time_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time_s))
