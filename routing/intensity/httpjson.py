"""The JSON-over-HTTP plumbing every intensity client shares: error conversion and HTTP 429 back-off.

Foreign errors stop here: connection failures, timeouts, 5xx and bad JSON become
``ProviderUnavailable``; 401/403 become ``AuthRejected``. A 429 is honoured: with a short
``Retry-After`` we wait and retry once or twice; with a long one we stop calling the source
until that time has passed (every call meanwhile fails fast without a request), so a rate-limited
source is never hammered while the fallback chain carries the traffic.
"""

from __future__ import annotations

import email.utils
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import httpx

from wattgate.errors import ProviderUnavailable

from .base import AuthRejected

__all__ = ["JsonHttp", "parse_retry_after_s"]


def parse_retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


class JsonHttp:
    """A small sync httpx client for one provider: ``get_json`` returns parsed JSON or raises our errors."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        timeout_s: float = 5.0,
        max_retries_429: int = 2,
        max_retry_wait_s: float = 2.0,
        default_backoff_s: float = 1.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout_s, headers=dict(headers or {}), transport=transport
        )
        self._max_retries_429 = max_retries_429
        self._max_retry_wait_s = max_retry_wait_s
        self._default_backoff_s = default_backoff_s
        self._sleep = sleep
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._blocked_until = 0.0

    @property
    def blocked_for_s(self) -> float:
        """How long calls keep failing fast because the source asked us (429) to wait."""
        return max(0.0, self._blocked_until - self._monotonic())

    def close(self) -> None:
        self._client.close()

    def get_json(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
    ) -> Any:
        """GET ``path`` and return its JSON body (None for 204 No Content)."""
        attempt = 0
        while True:
            wait = self.blocked_for_s
            if wait > 0:
                raise ProviderUnavailable(f"{self.provider}: rate limited (HTTP 429), not calling again for {wait:.0f} s")
            try:
                resp = self._client.get(path, params=params, headers=headers, auth=auth)
            except httpx.HTTPError as exc:
                raise ProviderUnavailable(f"{self.provider}: {path} failed: {type(exc).__name__}: {exc}") from exc
            if resp.status_code == 429:
                retry_after = parse_retry_after_s(resp.headers.get("Retry-After"))
                # Without a Retry-After, back off exponentially rather than retrying at once.
                wait = retry_after if retry_after is not None else self._default_backoff_s * (2**attempt)
                if attempt < self._max_retries_429 and wait <= self._max_retry_wait_s:
                    attempt += 1
                    self._sleep(wait)
                    continue
                with self._lock:
                    self._blocked_until = max(self._blocked_until, self._monotonic() + wait)
                raise ProviderUnavailable(f"{self.provider}: rate limited (HTTP 429), retry after {wait:.0f} s")
            if resp.status_code in (401, 403):
                raise AuthRejected(f"{self.provider}: {path} rejected credentials (HTTP {resp.status_code})")
            if resp.status_code >= 400:
                raise ProviderUnavailable(f"{self.provider}: {path} returned HTTP {resp.status_code}: {resp.text[:200]}")
            if resp.status_code == 204 or not resp.content:
                return None
            try:
                return resp.json()
            except ValueError as exc:
                raise ProviderUnavailable(f"{self.provider}: {path} returned invalid JSON") from exc
