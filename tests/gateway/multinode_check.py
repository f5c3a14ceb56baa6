"""Run by test_multinode_integration in its own process: a real 4-node Ray cluster on this machine.

Nodes are labelled FR/x86, DE/x86 and GB/arm; the topology's pools are Serve deployments pinned to
them by ``label_selector``. Prints one JSON line with what it observed; exits non-zero on failure.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(repository: str) -> int:
    import httpx
    import numpy as np
    from ray import serve

    from gateway.app import build_app
    from labelled_cluster import POOLS, labelled_cluster
    from wattgate.settings import load_settings

    with labelled_cluster(ROOT, "wg-multinode-") as c:
        settings = load_settings(
            None,
            models={"repository": repository},
            server={"state_dir": str(c.tmp / "state"), "ingress_num_cpus": 0.25},
            cache={"enabled": False},
            intensity={"provider": "replay", "replay": {"files": c.trace_files, "start": "2020-03-01T06:00:00Z", "speed": 0}},
            pools=c.pool_settings(),
        )
        serve.run(build_app(settings), name="wattgate", route_prefix="/", blocking=False)
        url, node_of = c.url, c.node_of

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
                                 "expected_node": node_of[want], "region": p["region"]})
        ok = all(o["pool"] == o["want"] and o["node_id"] == o["expected_node"] for o in observed)
        print(json.dumps({"ok": ok, "observed": observed,
                          "nodes": {"/".join(POOLS[pool]): n for pool, n in node_of.items()}}))
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
