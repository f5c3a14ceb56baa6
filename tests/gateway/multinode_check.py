"""Run by test_multinode_integration in its own process: a real 4-node Ray cluster on this machine.

Nodes are labelled FR/x86, DE/x86 and GB/arm; the topology's pools are Serve deployments pinned to
them by ``label_selector``. Prints one JSON line with what it observed; exits non-zero on failure.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TRACES = {
    "FR": "datetime_utc,carbon_intensity_g_per_kwh\n2020-03-01T00:00:00Z,300\n2020-03-01T12:00:00Z,40\n",
    "DE": "datetime_utc,carbon_intensity_g_per_kwh\n2020-03-01T00:00:00Z,120\n2020-03-01T12:00:00Z,500\n",
    "GB": "datetime_utc,carbon_intensity_g_per_kwh\n2020-03-01T00:00:00Z,250\n2020-03-01T12:00:00Z,260\n",
}
POOLS = {"fr-x86": ("FR", "x86"), "de-x86": ("DE", "x86"), "gb-arm": ("GB", "arm")}


def main(repository: str) -> int:
    from gateway.cli import proxy_env

    os.environ.update(proxy_env("haproxy"))
    import httpx
    import numpy as np
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from gateway.app import build_app
    from wattgate.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="wg-multinode-"))
    files = {}
    for region, text in TRACES.items():
        (tmp / f"{region}.csv").write_text(text)
        files[region] = str(tmp / f"{region}.csv")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    for region, hardware in POOLS.values():
        cluster.add_node(num_cpus=2, labels={"region": region, "hardware": hardware})
    try:
        ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, logging_level="WARNING")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # One proxy, on the head: the "nodes" share this machine, so per-node HAProxies would race
        # for the same stats and metrics ports.
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        settings = load_settings(
            None,
            models={"repository": repository},
            server={"state_dir": str(tmp / "state"), "ingress_num_cpus": 0.25},
            cache={"enabled": False},
            intensity={"provider": "replay", "replay": {"files": files, "start": "2020-03-01T06:00:00Z", "speed": 0}},
            pools={name: {"kind": "ray", "num_cpus": 0.25, "label_selector": {"region": r, "hardware": h}} for name, (r, h) in POOLS.items()},
        )
        serve.run(build_app(settings), name="wattgate", route_prefix="/", blocking=False)
        url = f"http://127.0.0.1:{port}"
        node_of = {}
        for node in ray.nodes():
            labels = node.get("Labels") or {}
            if "region" in labels:
                node_of[(labels["region"], labels["hardware"])] = node["NodeID"]

        def infer(seed: int) -> dict:
            x = np.random.default_rng(seed).integers(0, 17, (1, 64)).astype(np.float32)
            body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": x.reshape(-1).tolist()}]}
            for _ in range(60):
                r = httpx.post(f"{url}/v2/models/digits/infer", json=body, timeout=30)
                if r.status_code == 200:
                    return r.json()["parameters"]
                time.sleep(0.5)
            raise RuntimeError(f"no answer: {r.status_code} {r.text}")

        observed = []
        for at, want in (("2020-03-01T06:00:00Z", "de-x86"), ("2020-03-01T13:00:00Z", "fr-x86"), ("2020-03-01T06:00:00Z", "de-x86")):
            r = httpx.put(f"{url}/v2/admin/intensity/clock", json={"at": at, "speed": 0}, timeout=10)
            r.raise_for_status()
            for seed in range(3):
                p = infer(hash((at, seed)) % 10_000)
                observed.append({"at": at, "want": want, "pool": p["pool"], "node_id": p.get("node_id"),
                                 "expected_node": node_of[POOLS[want]], "region": p["region"]})
        ok = all(o["pool"] == o["want"] and o["node_id"] == o["expected_node"] for o in observed)
        print(json.dumps({"ok": ok, "observed": observed, "nodes": {f"{r}/{h}": n for (r, h), n in node_of.items()}}))
        return 0 if ok else 1
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
