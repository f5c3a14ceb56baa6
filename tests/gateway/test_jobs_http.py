"""The jobs API over the real HTTP layer and data plane, without Ray; and ``wattgate jobs`` against it on loopback."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway.admin import AdminApi
from gateway.http import HttpApi
from gateway.jobs_api import jobs_routes
from jobs.assembly import build_jobs
from wattgate.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from jobs_fakes import DIRTY, TRACES, digits_body  # noqa: E402


REPLAY = {"provider": "replay", "replay": {"files": {"DE": str(TRACES / "DE_2020H1.csv")},
                                           "start": DIRTY.isoformat(), "speed": 0}}


@pytest.fixture(params=[REPLAY])
def served(request, make_plane, tmp_path):
    """HttpApi with the jobs routes on a loopback HTTP server; its coroutines (and the job runner) run
    on one loop thread."""
    parts = make_plane(
        routing={"topology_file": str(tmp_path / "none.yaml")},
        server={"region": "DE", "state_dir": str(tmp_path / "state"), "max_request_bytes": 64 * 1024},
        intensity=request.param, jobs={"poll_interval_s": 0.05},
    )
    jobs = build_jobs(parts)

    async def metrics_text() -> str:
        return ""

    api = HttpApi(parts.dataplane, AdminApi(parts.host.registry, parts.host), metrics_text, jobs_routes(jobs.service))
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def start_runner():
        jobs.start()

    asyncio.run_coroutine_threadsafe(start_runner(), loop).result(5)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _any(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            path, _, query = self.path.partition("?")
            status, headers, out = asyncio.run_coroutine_threadsafe(
                api.handle(self.command, path, {k.lower(): v for k, v in self.headers.items()}, body,
                           self.client_address[0], query), loop).result(30)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_DELETE = _any

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", api, jobs
    httpd.shutdown()
    loop.call_soon_threadsafe(jobs.task.cancel)
    loop.call_soon_threadsafe(loop.stop)


def test_submit_show_cancel_and_their_errors(served):
    import httpx

    url, _, _ = served
    r = httpx.post(f"{url}/v2/models/digits/versions/1/jobs", content=digits_body(deadline="2020-03-03T05:00:00Z"))
    assert r.status_code == 202
    job = r.json()
    assert set(job) >= {"id", "state", "scheduled_for", "expected_intensity_g_per_kwh", "deadline"}
    assert job["state"] == "scheduled" and job["deadline"] == "2020-03-03T05:00:00Z"
    shown = httpx.get(f"{url}/v2/jobs/{job['id']}").json()
    assert shown["state"] == "scheduled" and shown["results"] == [None]
    assert httpx.delete(f"{url}/v2/jobs/{job['id']}").json()["state"] == "cancelled"
    assert httpx.get(f"{url}/v2/jobs/nope").status_code == 404
    # The same 4xx as /infer for the same bad body.
    bad = b'{"inputs": [{"name": "pixels", "datatype": "INT8", "shape": [1, 64], "data": [0]}]}'
    infer = httpx.post(f"{url}/v2/models/digits/infer", content=bad)
    jobs = httpx.post(f"{url}/v2/models/digits/jobs", content=bad)
    assert infer.status_code == jobs.status_code == 400 and infer.json() == jobs.json()
    assert httpx.post(f"{url}/v2/models/digits/jobs", content=b"x" * (70 * 1024)).status_code == 413
    assert httpx.post(f"{url}/v2/models/nope/jobs", content=b"{}").status_code == 404


def test_wattgate_jobs_list_show_cancel(served, capsys):
    import httpx

    url, _, _ = served
    job = httpx.post(f"{url}/v2/models/digits/jobs", content=digits_body(deadline=6 * 3600)).json()
    assert main(["jobs", "list", "--url", url]) == 0  # loopback: admin without a key
    assert job["id"] in capsys.readouterr().out
    assert main(["jobs", "show", job["id"], "--url", url]) == 0
    out = capsys.readouterr().out
    assert "scheduled" in out and "min-carbon window" in out
    assert main(["jobs", "cancel", job["id"], "--url", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "cancelled"
    assert main(["jobs", "show", "nope", "--url", url]) == 1


@pytest.mark.parametrize("served", [{"provider": "static"}], indirect=True)
def test_the_readme_python_example_runs(served, capsys):
    """With no forecast (static intensity) the job runs at once, so the example's loop ends."""
    url, _, _ = served
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = re.search(r"^## Deferrable jobs.*?(?=^## )", readme, re.S | re.M).group(0)
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace('"http://127.0.0.1:8000"', repr(url)).replace("time.sleep(30)", "time.sleep(0.1)")
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("scheduled ") and out[1].startswith("done {") and "'carbon_g'" in out[1]
