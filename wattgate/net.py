"""Loopback helpers shared by every room that starts a server (gateway, cache, load tests, tests)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago; the caller binds it soon (a race, acceptable on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_range(size: int, low: int = 20_000, high: int = 32_000, attempts: int = 200) -> int:
    """The first port of ``size`` consecutive TCP ports that were all free a moment ago, below the
    kernel's ephemeral range; drawn at random so two servers started together rarely pick the same."""
    import random

    rng = random.SystemRandom()
    for _ in range(attempts):
        start = rng.randrange(low, high - size)
        if all(_is_free(port) for port in range(start, start + size)):
            return start
    raise OSError(f"no {size} consecutive free ports in [{low}, {high})")


def _is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
