"""`wattgate serve` as a child process for the tests that need the real command: started, awaited until its
digits model is ready, and stopped with every process it started (and only those)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def wattgate_serve(config: Path, port: int, *args: str, ready_timeout_s: float = 120) -> Iterator[tuple[subprocess.Popen, set[int]]]:
    """Yields the process and the pids of its descendants once ``/v2/models/digits/ready`` answers 200."""
    proc = subprocess.Popen([sys.executable, "-m", "wattgate.cli", "serve", "--config", str(config), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    family: set[int] = set()
    try:
        deadline = time.time() + ready_timeout_s
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/models/digits/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.5)
        else:
            pytest.fail("wattgate serve never became ready")
        family = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        assert family, "Ray should have started child processes"
        yield proc, family
    finally:
        if proc.poll() is None:
            # What it runs now too: Serve starts a new HAProxy (reparented away from this group) when an
            # ingress replica restarts, and a SIGKILL to the group would leave it holding the ports.
            with contextlib.suppress(psutil.Error):
                family |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in family:  # only what this test started
            p = maybe_process(pid)
            if p is not None:
                with contextlib.suppress(psutil.Error):  # it may exit between the two calls
                    p.kill()


def alive(pid: int) -> bool:
    """Running and not a zombie waiting to be reaped."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def maybe_process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
