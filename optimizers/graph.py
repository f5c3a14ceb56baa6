"""Graph optimization: ONNX Runtime rewrites (constant folding, fusions) saved as the optimized model."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

LEVELS = ("basic", "extended", "all")


@dataclass(frozen=True)
class GraphReport:
    level: str
    nodes_before: int
    nodes_after: int
    ops_after: dict[str, int]
    duration_s: float

    def to_dict(self) -> dict:
        return {"level": self.level, "nodes_before": self.nodes_before, "nodes_after": self.nodes_after,
                "ops_after": dict(self.ops_after), "duration_s": round(self.duration_s, 3)}


def _ops(path: Path) -> Counter:
    import onnx

    return Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


def optimize_graph(src: str | Path, dst: str | Path, level: str = "extended") -> GraphReport:
    """Let ORT optimise ``src`` at ``level`` and write the result to ``dst`` (``optimized_model_filepath``).

    "all" adds layout rewrites tied to this CPU's instruction set: such a file is only valid on the
    kind of machine that wrote it, so variants meant to travel use "extended".
    """
    import onnxruntime as ort

    if level not in LEVELS:
        raise ValueError(f"unknown optimization level {level!r}; known: {', '.join(LEVELS)}")
    src, dst = Path(src), Path(dst)
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.optimized_model_filepath = str(dst)
    so.intra_op_num_threads = 1
    t0 = time.perf_counter()
    ort.InferenceSession(str(src), sess_options=so, providers=["CPUExecutionProvider"])
    after = _ops(dst)
    return GraphReport(level, sum(_ops(src).values()), sum(after.values()), dict(sorted(after.items())),
                       time.perf_counter() - t0)
