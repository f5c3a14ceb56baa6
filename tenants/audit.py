"""The audit log: one JSON line per admin action (who, when, what, from where), appended, never rewritten.

Entries name keys by their id only; nothing that reaches ``record`` may hold a key or a secret.
Lines are written with O_APPEND in one ``write``, so concurrent replicas do not interleave them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterator


class AuditLog:
    def __init__(self, path: Path, clock=time.time) -> None:
        self.path = Path(path)
        self.clock = clock

    def record(self, who: str, action: str, source: str | None, outcome: str | int, **detail: object) -> dict:
        entry = {"time_s": self.clock(), "who": who, "action": action, "from": source or "unknown",
                 "outcome": outcome, **detail}
        line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return entry

    def entries(self, since_s: float | None = None) -> Iterator[dict]:
        try:
            with open(self.path) as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue  # a torn last line after a crash
                    if since_s is None or entry.get("time_s", 0) >= since_s:
                        yield entry
        except FileNotFoundError:
            return
