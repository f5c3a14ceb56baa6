"""Ledger export to CSV and Parquet, and reading those exports back (they round-trip exactly)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

from energy.ledger_record import FIELDS, LedgerRecord
from wattgate.errors import BadRequest, DependencyError

FORMATS = ("csv", "parquet")
_NULLABLE = ("tenant", "route_reason", "intensity_source", "intensity_g_per_kwh", "carbon_g", "operational_g")
_INTS = ("batch_size",)
_BOOLS = ("energy_measured",)
_FLOATS = ("time_s", "latency_ms", "energy_j", "intensity_g_per_kwh", "carbon_g", "operational_g", "embodied_g",
           "active_j", "idle_j")


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise BadRequest(f"unknown export format {fmt!r}; choose from {FORMATS}")
    return fmt


def export_records(chunks: Iterable[list[LedgerRecord]], path: str | Path, fmt: str = "csv") -> int:
    _check_format(fmt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        return _export_csv(chunks, path)
    return _export_parquet(chunks, path)


def _export_csv(chunks: Iterable[list[LedgerRecord]], path: Path) -> int:
    n = 0
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FIELDS)
        for chunk in chunks:
            for r in chunk:
                writer.writerow([_cell(getattr(r, f)) for f in FIELDS])
                n += 1
    return n


def _cell(value: object) -> object:
    # None becomes an empty cell; floats are written with repr(), which round-trips exactly.
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return value


def _arrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a declared dependency
        raise DependencyError("Parquet export needs pyarrow") from exc
    return pa, pq


def _schema(pa):
    types = {**{f: pa.float64() for f in _FLOATS}, **{f: pa.int64() for f in _INTS}, **{f: pa.bool_() for f in _BOOLS}}
    return pa.schema([pa.field(f, types.get(f, pa.string()), nullable=f in _NULLABLE) for f in FIELDS])


def _export_parquet(chunks: Iterable[list[LedgerRecord]], path: Path) -> int:
    pa, pq = _arrow()
    schema = _schema(pa)
    n = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for chunk in chunks:
            columns = {f: [getattr(r, f) for r in chunk] for f in FIELDS}
            writer.write_table(pa.table(columns, schema=schema))
            n += len(chunk)
    return n


def read_export(path: str | Path, fmt: str = "csv") -> list[LedgerRecord]:
    """Read a CSV or Parquet export back into records."""
    _check_format(fmt)
    if fmt == "parquet":
        _, pq = _arrow()
        return [LedgerRecord(**row) for row in pq.read_table(str(path)).to_pylist()]
    out = []
    with Path(path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            values: dict = {}
            for f in FIELDS:
                v = row[f]
                if f in _NULLABLE and not v:
                    values[f] = None
                elif f in _FLOATS:
                    values[f] = float(v)
                elif f in _INTS:
                    values[f] = int(v)
                elif f in _BOOLS:
                    values[f] = v == "true"
                else:
                    values[f] = v
            out.append(LedgerRecord(**values))
    return out
