"""Typed settings of the prediction cache: which backend, TTLs, size bounds, timeouts, per-model switches; its URL, redacted."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REDIS_SCHEMES = ("redis", "rediss", "unix")


class ModelCacheSettings(BaseModel):
    """One model's overrides; ``None`` means "use the cache-wide default"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    ttl_s: float | None = Field(default=None, gt=0)
    max_value_bytes: int | None = Field(default=None, gt=0)


class CacheSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # redis:// rediss:// or unix:// (password and TLS travel in the URL); None -> in-process LRU.
    url: str | None = None
    default_ttl_s: float = Field(default=300.0, gt=0)
    max_value_bytes: int = Field(default=1 << 20, gt=0)
    memory_max_bytes: int = Field(default=64 << 20, gt=0)
    memory_max_entries: int | None = Field(default=100_000, gt=0)
    # Small on purpose: a cache that answers slower than this costs more than it saves.
    socket_timeout_s: float = Field(default=0.1, gt=0)
    connect_timeout_s: float = Field(default=0.1, gt=0)
    max_connections: int = Field(default=64, gt=0)
    # How long a replica may hold the cross-replica "I am computing this" marker; losers poll at most this long.
    inflight_ttl_ms: int = Field(default=2000, gt=0)
    inflight_poll_ms: float = Field(default=5.0, gt=0)
    # Circuit breaker: after a failure skip Redis for breaker_backoff_s, doubling up to the max while probes fail.
    breaker_backoff_s: float = Field(default=0.5, gt=0)
    breaker_max_backoff_s: float = Field(default=10.0, gt=0)
    warn_interval_s: float = Field(default=10.0, ge=0)
    per_model: dict[str, ModelCacheSettings] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str | None) -> str | None:
        if url is None or url == "":
            return None
        scheme = urlsplit(url).scheme
        if scheme not in REDIS_SCHEMES:
            raise ValueError(f"cache url scheme {scheme!r} is not one of {', '.join(s + '://' for s in REDIS_SCHEMES)}")
        return url

    @model_validator(mode="after")
    def _backoff_order(self) -> "CacheSettings":
        if self.breaker_max_backoff_s < self.breaker_backoff_s:
            raise ValueError("breaker_max_backoff_s must be >= breaker_backoff_s")
        return self

    def for_model(self, model: str) -> ModelCacheSettings:
        """The model's settings with every default filled in."""
        own = self.per_model.get(model, ModelCacheSettings())
        return ModelCacheSettings(
            enabled=self.enabled and own.enabled,
            ttl_s=own.ttl_s if own.ttl_s is not None else self.default_ttl_s,
            max_value_bytes=own.max_value_bytes if own.max_value_bytes is not None else self.max_value_bytes,
        )


def redact_url(url: str) -> str:
    """The URL with any password (in the userinfo or a ``?password=`` query) replaced by ***."""
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    if "password" in query:
        query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
