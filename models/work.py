"""What one request asks of a model variant's runtime, and what it gets back with its energy.

These are the values the data plane, the batchers and the pools hand each other: a request's rows
go in as a :class:`WorkItem` (tensor models) or a :class:`TextWorkItem` (one unpadded token array
per sentence), and come back as a :class:`WorkResult` carrying the request's charged energy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from energy.attribution import RequestEnergy


@dataclass(frozen=True)
class WorkItem:
    inputs: dict[str, np.ndarray]
    rows: int
    work_units: float  # rows, or tokens for text: the share of the batch's energy this item pays


@dataclass(frozen=True)
class TextWorkItem:
    """A text request: one unpadded [1, tokens] array dict per sentence."""

    rows: list[dict[str, np.ndarray]]


@dataclass(frozen=True)
class WorkResult:
    outputs: dict[str, np.ndarray]
    energy: RequestEnergy
    batch_rows: int
    batch_requests: int
    node_id: str | None = None  # set when a pool on another node ran it
    # The batch's first request: per-batch books (the energy anomaly detector) look at one request per batch.
    batch_lead: bool = True
