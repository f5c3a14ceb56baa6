"""Merging requests' rows into one batch and splitting the outputs back, row for row."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def merge_rows(requests: Sequence[dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], list[int]]:
    """Concatenate each input along axis 0; return the merged inputs and each request's row count."""
    if not requests:
        raise ValueError("merge_rows needs at least one request")
    names = list(requests[0])
    rows = [int(r[names[0]].shape[0]) for r in requests]
    if len(requests) == 1:
        return dict(requests[0]), rows
    merged = {n: np.concatenate([r[n] for r in requests], axis=0) for n in names}
    return merged, rows


def split_rows(outputs: dict[str, np.ndarray], rows: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Inverse of :func:`merge_rows` for the outputs: request i gets its ``rows[i]`` rows."""
    if len(rows) == 1:
        return [outputs]
    bounds = np.cumsum([0, *rows])
    return [{n: a[bounds[i] : bounds[i + 1]] for n, a in outputs.items()} for i in range(len(rows))]


def pad_text_batch(batches: Sequence[dict[str, np.ndarray]], pad_id: int = 0) -> tuple[dict[str, np.ndarray], list[int]]:
    """Merge tokenised text whose sequence lengths differ: pad axis 1 to the longest, mask padding."""
    longest = max(b["input_ids"].shape[1] for b in batches)
    padded = []
    for b in batches:
        extra = longest - b["input_ids"].shape[1]
        if extra:
            b = {k: np.pad(v, ((0, 0), (0, extra)), constant_values=pad_id if k == "input_ids" else 0) for k, v in b.items()}
        padded.append(b)
    return merge_rows(padded)
