"""Run by test_autoscale_integration in its own process: carbon-aware autoscaling on a labelled Ray cluster.

Nodes FR/x86, DE/x86 and GB/arm; pools fr-x86 and de-x86 scale between 0 and 1 replica with
wattgate's policy on Ray Serve's autoscaler, gb-arm keeps one (the warm fallback). Steady traffic
runs throughout while the replayed intensity flips DE-clean -> FR-clean -> DE-clean. Prints one
JSON line with what it observed; exits non-zero on an unexpected error.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from labelled_cluster import POOLS, labelled_cluster  # noqa: E402  (beside this script)

RTT = {"fr-x86": {"FR": 2, "DE": 9, "GB": 8}, "de-x86": {"FR": 9, "DE": 2, "GB": 15}, "gb-arm": {"FR": 8, "DE": 15, "GB": 2}}


def topology() -> dict:
    pools = []
    for name, (region, hw) in POOLS.items():
        scale = {"min_replicas": 1, "max_replicas": 1} if name == "gb-arm" else \
            {"min_replicas": 0, "max_replicas": 1, "initial_replicas": 0, "downscale_delay_s": 3, "startup_s": 5}
        pools.append({"name": name, "region": region, "hardware": hw, "capacity_rps": 200, "service_ms": 4,
                      "rtt_ms": RTT[name], "energy": {"*": {"idle_w": 0.74, "dynamic_j": 0.011}}, "autoscaling": scale})
    return {"client_regions": ["FR", "DE", "GB"], "pools": pools}


def main(repository: str) -> int:
    import httpx
    import numpy as np
    import yaml
    from ray import serve

    from gateway.app import build_app
    from wattgate.settings import load_settings

    with labelled_cluster(ROOT, "wg-autoscale-") as c:
        (c.tmp / "topology.yaml").write_text(yaml.safe_dump(topology()))
        settings = load_settings(
            None,
            models={"repository": repository},
            server={"state_dir": str(c.tmp / "state"), "ingress_num_cpus": 0.25},
            cache={"enabled": False},
            energy={"idle_book_interval_s": 5},
            routing={"topology_file": str(c.tmp / "topology.yaml"), "policy": "lowest-carbon"},
            intensity={"provider": "replay", "replay": {"files": c.trace_files, "start": "2020-03-01T06:00:00Z", "speed": 0}},
            pools=c.pool_settings(),
        )
        serve.run(build_app(settings), name="wattgate", route_prefix="/", blocking=False)
        url, node_of = c.url, c.node_of

        def running(pool: str) -> int:
            try:
                dep = serve.status().applications["wattgate"].deployments[f"pool-{pool}"]
            except KeyError:
                return -1
            return sum(n for state, n in dep.replica_states.items() if str(state).endswith("RUNNING"))

        x = np.random.default_rng(0).integers(0, 17, (1, 64)).astype(np.float32).reshape(-1).tolist()
        body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": x}]}
        # Wait for the gateway to answer at all (gb-arm is warm from the start).
        for _ in range(120):
            try:
                if httpx.post(f"{url}/v2/models/digits/infer", json=body, timeout=30).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)

        log: list[dict] = []
        replicas: list[dict] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    t0 = time.time()
                    try:
                        r = client.post(f"{url}/v2/models/digits/infer", json=body)
                        p = r.json().get("parameters", {}) if r.status_code == 200 else {}
                        log.append({"t": t0, "s": time.time() - t0, "status": r.status_code, "pool": p.get("pool"),
                                    "node_id": p.get("node_id"), "reason": p.get("route_reason", ""),
                                    **({} if r.status_code == 200 else {"error": r.text[:300]})})
                    except Exception as exc:
                        log.append({"t": t0, "s": time.time() - t0, "status": 0, "error": str(exc)[:200]})
                    time.sleep(0.05)

        def watch() -> None:
            while not stop.is_set():
                replicas.append({"t": time.time(), **{p: running(p) for p in POOLS}})
                time.sleep(0.5)

        threads = [threading.Thread(target=load, daemon=True) for _ in range(2)] + [threading.Thread(target=watch, daemon=True)]
        for th in threads:
            th.start()

        phases = []
        for at, clean, dirty in (("2020-03-01T06:00:00Z", "de-x86", "fr-x86"), ("2020-03-01T13:00:00Z", "fr-x86", "de-x86"),
                                 ("2020-03-01T06:00:00Z", "de-x86", "fr-x86")):
            httpx.put(f"{url}/v2/admin/intensity/clock", json={"at": at, "speed": 0}, timeout=10).raise_for_status()
            t0 = time.time()
            moved = False
            while time.time() - t0 < 90:  # the clean pool starts, traffic moves, the dirty one scales to zero
                recent = [r for r in log[-10:] if r["t"] > t0]
                if recent and all(r.get("pool") == clean for r in recent) and running(dirty) == 0:
                    moved = True
                    break
                time.sleep(0.5)
            phases.append({"at": at, "clean": clean, "dirty": dirty, "moved": moved, "after_s": time.time() - t0,
                           "replicas": {p: running(p) for p in POOLS}})
        stop.set()
        for th in threads:
            th.join(timeout=40)
        scaling = httpx.get(f"{url}/v2/admin/autoscaling", timeout=10).json()
        from energy.ledger import EnergyLedger
        with EnergyLedger(settings.ledger_file(), background=False) as ledger:
            accounts = ledger.accounts()
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        print(json.dumps({"phases": phases, "log": log, "replicas": replicas, "node_of": node_of,
                          "decisions": scaling.get("decisions", []), "accounts": accounts,
                          "metrics": [m for m in metrics.splitlines() if m.startswith(("wattgate_pool_replicas", "wattgate_idle_energy", "wattgate_provisioned", "wattgate_scaling"))]}))
        return 0

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
