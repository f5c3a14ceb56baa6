"""Server subprocesses the load tools start, wait for and stop, and the CPU time of their process trees.

Each server runs in its own session so that a stuck one can be stopped as a group by the id we
started; nothing here looks for processes by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

import psutil

from wattgate.errors import Unavailable
from wattgate.net import free_port  # noqa: F401  (re-exported: the load tools import it from here)


class ServerProcess:
    """``argv`` as a child in a new session, its output in ``log_path``; ``ready`` polls an HTTP URL."""

    def __init__(self, argv: Sequence[str], log_path: str | Path, env: dict[str, str] | None = None, cwd: str | Path | None = None) -> None:
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"{self.argv[0]} exited with {self.proc.returncode} before it was ready:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise Unavailable(f"{url} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM (the servers turn it into a clean shutdown), then SIGKILL whatever is left of what
        we started: its process tree as it was, and anything still in the session we created for it."""
        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        leftovers = {p.pid: p for p in tree if _alive(p)}
        for p in psutil.process_iter():
            try:
                if p.pid != os.getpid() and os.getsid(p.pid) == self.proc.pid:
                    leftovers.setdefault(p.pid, p)
            except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
                continue
        if self.proc.poll() is None:
            self.proc.kill()
        for p in leftovers.values():
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(list(leftovers.values()), timeout=5)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        return self.proc.returncode


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class ProcessTreeCpu:
    """CPU seconds (user + system) used by a process and all its descendants since ``start()``.

    Processes that start during the window count in full; ones that exit during it lose at most the
    time since the last ``poll()``, so long windows should call ``poll()`` now and then.
    """

    def __init__(self, root_pid: int) -> None:
        self.root = psutil.Process(root_pid)
        self._base: dict[tuple[int, float], float] = {}
        self._last: dict[tuple[int, float], float] = {}

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _read(self) -> dict[tuple[int, float], float]:
        out = {}
        for p in self._tree():
            try:
                t = p.cpu_times()
                out[(p.pid, p.create_time())] = t.user + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return out

    def start(self) -> None:
        self._base = self._read()
        self._last = dict(self._base)

    def poll(self) -> None:
        self._last.update(self._read())

    def seconds(self) -> float:
        self.poll()
        return sum(v - self._base.get(k, 0.0) for k, v in self._last.items())

    def processes(self) -> int:
        return len(self._tree())
