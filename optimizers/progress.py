"""Progress of long optimizer runs: a tqdm bar per training loop on a terminal (epoch, loss, ETA,
energy so far), plain log lines otherwise (CI, a log file), nothing when no one asked.

``wattgate optimize`` opens a ``Progress`` for the run with ``reporting(...)``; ``training.fit``
asks ``epoch_bar(...)`` for the active one (a context variable, so parallel runs in one process do
not share it). Energy so far comes from the run's meter and is labelled with its method (modelled
unless the meter measures).
"""

from __future__ import annotations

import contextvars
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

__all__ = ["Progress", "epoch_bar", "reporting", "stage"]

_current: contextvars.ContextVar["Progress | None"] = contextvars.ContextVar("wattgate_optimize_progress", default=None)


class _Bar:
    """One training loop's progress; ``update`` after each epoch."""

    def __init__(self, progress: "Progress", total: int, start: int) -> None:
        self.p = progress
        self.total = total
        self.start = start
        self.t0 = time.monotonic()
        self._last_line = -float("inf")
        self._tqdm = None
        if progress.tty:
            from tqdm import tqdm

            self._tqdm = tqdm(total=total, initial=start, desc=progress.label or "train", unit="epoch",
                              file=progress.stream, leave=True, dynamic_ncols=True,
                              mininterval=progress.min_interval_s)

    def update(self, epoch: int, loss: float, val: float) -> None:
        """``epoch``: epochs done so far (1-based); ``loss``: the epoch's mean training loss."""
        energy = self.p.energy_text()
        if self._tqdm is not None:
            self._tqdm.set_postfix_str(f"loss {loss:.4g}, val {val:.4g}" + (f", {energy}" if energy else ""), refresh=False)
            self._tqdm.update(epoch - self._tqdm.n)
            return
        now = time.monotonic()
        last = epoch >= self.total
        if not last and now - self._last_line < self.p.log_every_s:
            return
        self._last_line = now
        done = epoch - self.start
        eta_s = (now - self.t0) / done * (self.total - epoch) if done > 0 else float("nan")
        line = (f"{self.p.label or 'train'}: epoch {epoch}/{self.total} loss {loss:.4g} val {val:.4g} "
                f"eta {eta_s:.0f} s" + (f" energy so far {energy}" if energy else ""))
        print(line, file=self.p.stream, flush=True)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()


class _NoBar:
    def update(self, epoch: int, loss: float, val: float) -> None:
        pass

    def close(self) -> None:
        pass


class Progress:
    def __init__(self, stream: TextIO | None = None, energy_j: Callable[[], float] | None = None,
                 energy_method: str = "", tty: bool | None = None, log_every_s: float = 10.0,
                 min_interval_s: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.energy_j = energy_j
        self.energy_method = energy_method
        self.log_every_s = log_every_s  # plain lines: at most one per this many seconds (and the last epoch)
        self.min_interval_s = min_interval_s  # the bar's redraws
        self.label = ""

    def energy_text(self) -> str:
        if self.energy_j is None:
            return ""
        try:
            return f"{self.energy_j():.1f} J ({self.energy_method or 'unknown method'})"
        except Exception:  # progress never stops a run
            return ""

    def log(self, line: str) -> None:
        """A line that is not an epoch (a step starts, the run waits for its window)."""
        if self.tty:
            from tqdm import tqdm

            tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)


@contextmanager
def reporting(progress: Progress) -> Iterator[Progress]:
    token = _current.set(progress)
    try:
        yield progress
    finally:
        _current.reset(token)


@contextmanager
def stage(label: str) -> Iterator[None]:
    """Name the bars opened inside (a pipeline step: ``kd-s0``)."""
    progress = _current.get()
    if progress is None:
        yield
        return
    before, progress.label = progress.label, label
    try:
        yield
    finally:
        progress.label = before


def epoch_bar(total: int, start: int = 0) -> _Bar | _NoBar:
    """The active run's bar for a training loop of ``total`` epochs (resumed at ``start``), or a no-op."""
    progress = _current.get()
    return _NoBar() if progress is None else _Bar(progress, total, start)
