"""Test fixture: a throwaway redis-server on a free loopback port; stopped by its PID."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time

from wattgate.net import free_port


def ping(port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(b"PING\r\n")
            # A server started with --requirepass answers NOAUTH: it is up all the same.
            return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class LocalRedis:
    """``with LocalRedis() as r: r.url`` — no persistence, bound to 127.0.0.1; ``kill()``/``start()`` for outages."""

    def __init__(self, port: int | None = None, binary: str = "redis-server", extra_args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.binary = shutil.which(binary) or binary
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="wattgate-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"redis-server already running as pid {self.proc.pid}")
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", self._dir.name, "--logfile", "", *self.extra_args,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while not ping(self.port):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"redis-server on port {self.port} exited with {self.proc.returncode}: {err}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {timeout_s} s")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL, as an outage would: no goodbye to clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=5)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self._dir.cleanup()

    def __enter__(self) -> "LocalRedis":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
