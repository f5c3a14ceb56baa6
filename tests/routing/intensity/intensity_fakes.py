"""Test doubles for the intensity tests: a real HTTP server on 127.0.0.1 and a controllable clock."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    at_s: float  # time.monotonic() when the server saw it

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


# (status, headers, body): body is JSON-encoded unless it is bytes or None.
Response = tuple[int, dict[str, str], Any]


@dataclass
class FakeApi:
    """Serves ``handler(request)`` over real HTTP; records every request; can inject faults first."""

    handler: Callable[[Request], Response]
    hits: list[Request] = field(default_factory=list)
    faults: deque = field(default_factory=deque)  # queued (status, headers, body), one per request
    down_status: int | None = None  # answer every request with this status while set

    def __post_init__(self) -> None:
        api = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                parts = urlsplit(self.path)
                req = Request(
                    "GET", parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()}, time.monotonic()
                )
                api.hits.append(req)
                if api.faults:
                    status, headers, body = api.faults.popleft()
                elif api.down_status is not None:
                    status, headers, body = api.down_status, {}, {"error": "injected outage"}
                else:
                    status, headers, body = api.handler(req)
                payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if payload is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload or b"")))
                self.end_headers()
                if payload:
                    self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def count(self, path_prefix: str = "/") -> int:
        return sum(1 for h in self.hits if h.path.startswith(path_prefix))

    def close(self) -> None:
        """Stop serving: later requests to ``url`` get connection refused."""
        self._server.shutdown()
        self._server.server_close()


def refused_url() -> str:
    """A loopback URL on which nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class FakeTime:
    """A UTC clock and a monotonic clock that move together, only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.utc_now = start or datetime.now(timezone.utc)
        self.mono_now = 1000.0

    def utc(self) -> datetime:
        return self.utc_now

    def mono(self) -> float:
        return self.mono_now

    def advance(self, seconds: float) -> None:
        self.utc_now += timedelta(seconds=seconds)
        self.mono_now += seconds


def iso_z(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def floor_to(when: datetime, minutes: int) -> datetime:
    when = when.astimezone(timezone.utc).replace(second=0, microsecond=0)
    return when - timedelta(minutes=when.minute % minutes)
