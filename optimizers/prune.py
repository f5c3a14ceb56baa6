"""Structured pruning: drop whole hidden units by L1 norm so the pruned MLP is genuinely smaller and faster."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class PruneReport:
    sizes_before: tuple[int, ...]
    sizes_after: tuple[int, ...]
    params_before: int
    params_after: int
    kept_units: tuple[tuple[int, ...], ...]  # per hidden layer, indices into the original layer

    def to_dict(self) -> dict:
        return {"sizes_before": list(self.sizes_before), "sizes_after": list(self.sizes_after),
                "params_before": self.params_before, "params_after": self.params_after}


def _params(ws: Sequence[np.ndarray], bs: Sequence[np.ndarray]) -> int:
    return int(sum(w.size for w in ws) + sum(b.size for b in bs))


def unit_scores(w_in: np.ndarray) -> np.ndarray:
    """L1 norm of each unit's incoming weights ([in, out] matrix -> one score per out unit)."""
    return np.abs(w_in).sum(axis=0)


def prune_mlp(
    weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], keep: float | Sequence[int]
) -> tuple[list[np.ndarray], list[np.ndarray], PruneReport]:
    """Keep the highest-L1 hidden units of every hidden layer; slice the next layer's rows to match.

    ``keep`` is a fraction of each hidden layer, or an explicit unit count per hidden layer. The
    output layer is never pruned, so the model's interface does not change.
    """
    hidden = len(weights) - 1
    if isinstance(keep, (int, float)) and not isinstance(keep, bool):
        if not 0 < keep <= 1:
            raise ValueError("a keep fraction must lie in (0, 1]")
        counts = [max(1, int(round(weights[i].shape[1] * keep))) for i in range(hidden)]
    else:
        counts = [int(k) for k in keep]
        if len(counts) != hidden or any(not 1 <= c <= weights[i].shape[1] for i, c in enumerate(counts)):
            raise ValueError(f"keep needs one count in 1..width for each of the {hidden} hidden layers")
    ws = [np.asarray(w, np.float32).copy() for w in weights]
    bs = [np.asarray(b, np.float32).copy() for b in biases]
    sizes_before = (ws[0].shape[0], *(w.shape[1] for w in ws))
    before = _params(ws, bs)
    kept_all = []
    for i, count in enumerate(counts):
        # Sorted indices keep the surviving units in their original order (easier to compare by eye).
        kept = np.sort(np.argsort(-unit_scores(ws[i]), kind="stable")[:count])
        ws[i], bs[i] = ws[i][:, kept], bs[i][kept]
        ws[i + 1] = ws[i + 1][kept, :]
        kept_all.append(tuple(int(k) for k in kept))
    sizes_after = (ws[0].shape[0], *(w.shape[1] for w in ws))
    return ws, bs, PruneReport(sizes_before, sizes_after, before, _params(ws, bs), tuple(kept_all))
