"""Loopback helpers shared by every room that starts a server (gateway, cache, load tests, tests)."""

from __future__ import annotations

import random
import socket
import threading

# Ports this process handed out: never the same one twice (a server may not have bound it yet).
_given: set[int] = set()
_lock = threading.Lock()
# Below the kernel's ephemeral range (32768-60999): no process binding port 0 (Ray's own servers,
# clients) can take a port between the moment it is chosen and the moment its server binds it.
LOW, HIGH = 20_000, 32_000


def reserve(*ports: int | None) -> None:
    """Ports this process will bind itself (or hand to a server it starts): never handed out here.
    A port chosen by another process (a test, a supervisor) is free until its server binds it, so
    without this a gateway could give it to Ray or HAProxy in the meantime. None and 0 are skipped."""
    with _lock:
        _given.update(p for p in ports if p)


def free_port(host: str = "127.0.0.1", attempts: int = 500) -> int:
    """A TCP port that was free a moment ago, drawn at random below the ephemeral range; the caller
    binds it soon (a race only with another process choosing the same random port)."""
    rng = random.SystemRandom()
    for _ in range(attempts):
        port = rng.randrange(LOW, HIGH)
        with _lock:
            if port in _given or not _is_free(port, host):
                continue
            _given.add(port)
        return port
    raise OSError(f"no free port in [{LOW}, {HIGH})")


def free_port_range(size: int, low: int = LOW, high: int = HIGH, attempts: int = 200) -> int:
    """The first port of ``size`` consecutive TCP ports that were all free a moment ago, below the
    kernel's ephemeral range; drawn at random so two servers started together rarely pick the same."""
    rng = random.SystemRandom()
    for _ in range(attempts):
        start = rng.randrange(low, high - size + 1)  # the block may end at high - 1
        block = range(start, start + size)
        with _lock:
            if any(p in _given for p in block) or not all(_is_free(p) for p in block):
                continue
            _given.update(block)
        return start
    raise OSError(f"no {size} consecutive free ports in [{low}, {high})")


def _is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
