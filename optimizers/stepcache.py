"""Pipeline step cache: a step's outputs live under the content hash of its inputs and settings.

A step runs in ``<root>/<step>/<key>.partial/`` (stable, so checkpoints there survive a crash and
the rerun resumes) and is renamed to ``<root>/<step>/<key>/`` with ``result.json`` once it
finishes; a finished key is never run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

# Bump when a step's code changes what it produces, so old cache entries stop matching.
CACHE_VERSION = 1
RESULT_FILE = "result.json"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, Path):
        return {"file_sha256": file_sha256(value)} if value.is_file() else str(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if hasattr(value, "model_dump"):
        return _canonical(value.model_dump(mode="json"))
    return value


def content_hash(*parts: Any) -> str:
    """sha256 of the canonical JSON of ``parts``; files (``Path``) count by their content, not their name."""
    blob = json.dumps([CACHE_VERSION, *(_canonical(p) for p in parts)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class StepCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits: list[str] = []
        self.misses: list[str] = []

    def run(self, step: str, inputs: dict[str, Any], fn: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
        """Return (output dir, result) of ``fn(workdir)``, running it only if this key has not finished."""
        key = content_hash(step, inputs)[:20]
        done = self.root / step / key
        if (done / RESULT_FILE).is_file():
            self.hits.append(step)
            return done, json.loads((done / RESULT_FILE).read_text())
        partial = self.root / step / f"{key}.partial"
        partial.mkdir(parents=True, exist_ok=True)
        result = fn(partial)
        (partial / RESULT_FILE).write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
        if done.exists():  # a concurrent run finished first; keep its copy
            shutil.rmtree(partial, ignore_errors=True)
        else:
            os.replace(partial, done)
        self.misses.append(step)
        return done, json.loads((done / RESULT_FILE).read_text())
