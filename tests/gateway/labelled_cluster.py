"""A labelled multi-node Ray cluster on this machine, for the scripts the multi-node tests run in their own process.

A head node and one node per pool labelled ``{region, hardware}``, Serve with one proxy (on the head:
the "nodes" share this machine, so per-node HAProxies would race for the same ports), and the
replayed intensity traces written to a scratch folder.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

TRACES = {
    "FR": "datetime_utc,carbon_intensity_g_per_kwh\n2020-03-01T00:00:00Z,300\n2020-03-01T12:00:00Z,40\n",
    "DE": "datetime_utc,carbon_intensity_g_per_kwh\n2020-03-01T00:00:00Z,120\n2020-03-01T12:00:00Z,500\n",
    "GB": "datetime_utc,carbon_intensity_g_per_kwh\n2020-03-01T00:00:00Z,250\n2020-03-01T12:00:00Z,260\n",
}
POOLS = {"fr-x86": ("FR", "x86"), "de-x86": ("DE", "x86"), "gb-arm": ("GB", "arm")}


@dataclass(frozen=True)
class LabelledCluster:
    tmp: Path
    trace_files: dict[str, str]
    url: str
    node_of: dict[str, str]  # pool -> the id of the node labelled for it

    def pool_settings(self) -> dict:
        """``pools:`` settings pinning each pool's Serve deployment to its labelled node."""
        return {name: {"kind": "ray", "num_cpus": 0.25, "label_selector": {"region": r, "hardware": h}}
                for name, (r, h) in POOLS.items()}


@contextmanager
def labelled_cluster(root: Path, prefix: str, pools: Mapping[str, tuple[str, str]] = POOLS) -> Iterator[LabelledCluster]:
    from gateway.cli import proxy_env

    os.environ.update(proxy_env("haproxy"))
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from wattgate.net import free_port

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    files = {}
    for region, text in TRACES.items():
        (tmp / f"{region}.csv").write_text(text)
        files[region] = str(tmp / f"{region}.csv")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    for region, hardware in pools.values():
        cluster.add_node(num_cpus=2, labels={"region": region, "hardware": hardware})
    try:
        ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": str(root)}}, logging_level="WARNING")
        port = free_port()
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        by_label = {label: name for name, label in pools.items()}
        node_of = {}
        for node in ray.nodes():
            labels = node.get("Labels") or {}
            if (labels.get("region"), labels.get("hardware")) in by_label:
                node_of[by_label[(labels["region"], labels["hardware"])]] = node["NodeID"]
        yield LabelledCluster(tmp, files, f"http://127.0.0.1:{port}", node_of)
    finally:
        ray.shutdown()
        cluster.shutdown()
