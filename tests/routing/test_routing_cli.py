"""``wattgate routing show|set`` against a real admin HTTP server on loopback, and ``simulate``."""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from routing import cli
from routing.control import RoutingControl
from wattgate.errors import WattgateError

TOKEN = "s3cret"


class AdminServer:
    """GET/PUT /v2/admin/routing as the gateway serves them, backed by a RoutingControl."""

    def __init__(self):
        self.control = RoutingControl()
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method):
                outer.requests.append((method, self.path))
                if self.path != "/v2/admin/routing":
                    return self._reply(404, {"error": "not found"})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._reply(401, {"error": "admin endpoints need a valid bearer token"})
                if method == "GET":
                    return self._reply(200, outer.control.show())
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                try:
                    return self._reply(200, outer.control.set(body.get("policy"), body.get("params"), actor="cli"))
                except WattgateError as exc:
                    return self._reply(exc.status_code, exc.to_dict())

            def do_GET(self):
                self._handle("GET")

            def do_PUT(self):
                self._handle("PUT")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def admin():
    server = AdminServer()
    yield server
    server.close()


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="wattgate")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return cli.run(parser.parse_args(list(argv)))


def test_show_prints_the_live_policy(admin, capsys):
    assert run_cli("routing", "show", "--url", admin.url, "--token", TOKEN) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["policy"] == "lowest-carbon"
    assert admin.requests == [("GET", "/v2/admin/autoscaling"), ("GET", "/v2/admin/routing")]


def test_set_changes_the_policy_with_weights_and_params(admin, capsys):
    code = run_cli("routing", "set", "weighted", "--weights", "carbon=1,latency=0.5",
                   "--param", "max_utilisation=0.8", "--url", admin.url, "--token", TOKEN)
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == "weighted"
    assert admin.control.show()["params"] == {"max_utilisation": 0.8, "weights": {"carbon": 1.0, "latency": 0.5}}
    assert admin.control.show()["history"][-1]["actor"] == "cli"


def test_wrong_token_is_reported_and_changes_nothing(admin, capsys):
    assert run_cli("routing", "set", "round-robin", "--url", admin.url, "--token", "nope") == 1
    assert "401" in capsys.readouterr().err
    assert admin.control.show()["policy"] == "lowest-carbon"


def test_invalid_policy_or_weights_fail_before_reaching_the_gateway(admin, capsys):
    assert run_cli("routing", "set", "greenest", "--url", admin.url, "--token", TOKEN) == 2
    assert "unknown routing policy" in capsys.readouterr().err
    assert run_cli("routing", "set", "weighted", "--weights", "carbon", "--url", admin.url, "--token", TOKEN) == 2
    assert "NAME=NUMBER" in capsys.readouterr().err
    assert run_cli("routing", "set", "weighted", "--weights", "speed=1", "--url", admin.url, "--token", TOKEN) == 2
    assert admin.requests == []


def test_unreachable_gateway_is_an_error_not_a_traceback(capsys):
    assert run_cli("routing", "show", "--url", "http://127.0.0.1:9", "--timeout", "2") == 1
    assert "cannot reach" in capsys.readouterr().err


def test_parsers():
    assert cli.parse_weights("carbon=1, latency=0.5") == {"carbon": 1.0, "latency": 0.5}
    assert cli.parse_params(["threshold=0.8", "name=x"]) == {"threshold": 0.8, "name": "x"}
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_weights("carbon=lots")


def test_simulate_prints_json_and_a_table(small_scenario, capsys):
    path = small_scenario()
    assert run_cli("simulate", str(path), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["simulation"] == "events" and out["baseline"] == "round-robin/autoscaled"
    # A plain round-robin in the list becomes the two baselines.
    assert set(out["policies"]) == {"round-robin/autoscaled", "round-robin/always-on", "lowest-carbon",
                                    "latency-first", "weighted"}
    for entry in out["policies"].values():
        assert {"carbon_g_per_request", "energy_j_per_request", "p99_latency_ms", "slo_attainment", "share_by_pool",
                "idle_energy_j_per_request", "active_energy_j_per_request", "shed_fraction", "vs_baseline",
                "vs_oracle", "oracle_comparable"} <= set(entry)
        assert sum(entry["share_by_pool"].values()) == pytest.approx(1.0)
        assert entry["idle_energy_j_per_request"] + entry["active_energy_j_per_request"] == pytest.approx(
            entry["energy_j_per_request"])
        assert (entry["vs_oracle"] == "n/a") == (not entry["oracle_comparable"])
        assert entry["oracle_comparable"] or entry["oracle_not_comparable"]
    assert out["policies"]["round-robin/autoscaled"]["vs_baseline"] == 0.0
    for bound in out["oracle"].values():
        assert bound["is_bound"] and sum(bound["share_by_pool"].values()) == pytest.approx(1.0)
    assert run_cli("simulate", str(path)) == 0
    table = capsys.readouterr().out
    assert "lowest-carbon" in table and "oracle (bound)" in table and "event-level" in table


def test_simulate_fluid_keeps_the_old_model_on_request(small_scenario, capsys):
    assert run_cli("simulate", str(small_scenario(simulation="fluid")), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["simulation"] == "fluid" and "M/M/c queueing formula" in out["method"]
    lc = out["policies"]["lowest-carbon"]
    assert isinstance(lc["vs_oracle"], float) and lc["oracle_comparable"]
    assert {"idle_energy_j_per_request", "active_energy_j_per_request", "shed_fraction", "vs_baseline"} <= set(lc)


def test_simulate_spread_over_weeks_and_seeds(small_scenario, capsys):
    path = small_scenario(duration_h=3, events={"window_s": 0.3, "warmup_s": 0.1})
    assert run_cli("simulate", str(path), "--weeks", "all", "--seeds", "2", "--policies", "lowest-carbon", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["weeks"] == ["2020-03-02"] and out["seeds"] == [7, 8] and out["runs"] == 2  # the traces cover one day
    assert set(out["policies"]) == {"round-robin/autoscaled", "lowest-carbon"}
    carbon = out["policies"]["lowest-carbon"]["carbon_g_per_request"]
    assert carbon["n"] == 2 and carbon["min"] <= carbon["mean"] <= carbon["max"]
    assert carbon["ci95_low"] <= carbon["mean"] <= carbon["ci95_high"]
    assert out["policies"]["lowest-carbon"]["vs_baseline"]["mean"] < 0


def test_simulate_reports_a_bad_scenario(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstart: 2020-01-01T00:00:00Z\n")
    assert run_cli("simulate", str(bad)) == 2
    assert "invalid scenario" in capsys.readouterr().err
