"""API keys per tenant: issued once, stored only as salted hashes, checked in constant time.

A key reads ``wg_<key id>_<secret>``. The key id (12 hex digits) is not secret: it finds the record
and is the only part that ever appears in logs, metrics, errors or the audit log. The secret (32
random bytes) is stored as ``sha256(salt + secret)`` with a random salt per key; a 256-bit random
secret needs no slow hash. A rotated key may keep its previous secret for a grace period (its own
salt, hash and expiry), so callers switch without an outage. The store is a JSON file in the state
directory (written to a temp file and renamed, under a lock) or a Redis hash; each process keeps a
copy it reloads when the store changes, checked at most every ``refresh_s``, so a key revoked on one
replica stops working on all.
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from wattgate.errors import BadRequest, Conflict, DependencyError, NotFound, Unauthorized

MAX_BEARER_CHARS = 128
_KEY = re.compile(r"wg_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
PERIODS = ("day", "week", "month")


def check_tenant(name: str) -> str:
    if not isinstance(name, str) or not _TENANT.fullmatch(name):
        raise BadRequest("tenant names are 1-64 characters of [A-Za-z0-9_.-], starting with a letter or digit")
    return name


@dataclass(frozen=True)
class KeyLimits:
    """What a key may do: requests/s and burst (None: unlimited), requests in flight, models (None:
    all), a carbon budget in gCO2e per calendar period (UTC), and its weight when capacity is short."""

    rps: float | None = None
    burst: int | None = None
    max_concurrency: int | None = None
    models: tuple[str, ...] | None = None
    budget_g: float | None = None
    budget_period: str = "month"
    weight: float = 1.0

    def __post_init__(self) -> None:
        def positive(name: str, value: Any, integer: bool = False) -> None:
            if value is None:
                return
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
            if not ok or (integer and int(value) != value):
                raise BadRequest(f"{name} must be a finite number > 0{' (whole)' if integer else ''}, got {value!r}")

        positive("rps", self.rps)
        positive("burst", self.burst, integer=True)
        positive("max_concurrency", self.max_concurrency, integer=True)
        positive("weight", self.weight)
        if self.budget_g is not None:
            b = self.budget_g
            if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0:
                raise BadRequest(f"budget_g must be a finite number >= 0 (gCO2e per period), got {b!r}")
        if self.budget_period not in PERIODS:
            raise BadRequest(f"budget_period must be one of {PERIODS}, got {self.budget_period!r}")
        if self.models is not None and (not self.models or not all(isinstance(m, str) and m for m in self.models)):
            raise BadRequest("models must be a non-empty list of model names (omit it to allow every model)")

    @classmethod
    def from_dict(cls, doc: dict) -> "KeyLimits":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(doc) - known
        if unknown:
            raise BadRequest(f"unknown key fields {sorted(unknown)}; known: {sorted(known)}")
        models = doc.get("models")
        if isinstance(models, str):
            models = [m for m in models.split(",") if m]
        if models is not None and not isinstance(models, (list, tuple)):
            raise BadRequest("models must be a list of model names")
        return cls(**{**doc, "models": tuple(models) if models is not None else None})


MAX_GRACE_S = 30 * 86400.0


def check_grace(grace_s: Any) -> float:
    ok = isinstance(grace_s, (int, float)) and not isinstance(grace_s, bool) and math.isfinite(grace_s)
    if not ok or not 0 <= grace_s <= MAX_GRACE_S:
        raise BadRequest(f"grace_s must be a number of seconds from 0 to {MAX_GRACE_S:g}, got {grace_s!r}")
    return float(grace_s)


@dataclass(frozen=True)
class PreviousSecret:
    """A rotated key's old secret, still accepted until ``expires_at`` (unix seconds)."""

    salt: str
    hash: str
    expires_at: float


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    tenant: str
    salt: str  # hex
    hash: str  # hex sha256(salt + secret)
    limits: KeyLimits = field(default_factory=KeyLimits)
    created_at: float = 0.0
    rotated_at: float | None = None
    revoked_at: float | None = None
    previous: tuple[PreviousSecret, ...] = ()  # old secrets in their rotation grace period

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict:
        """Everything but the salts and hashes: what list/show and the admin API print."""
        return {"key_id": self.key_id, "tenant": self.tenant, "active": self.active, "created_at": self.created_at,
                "rotated_at": self.rotated_at, "revoked_at": self.revoked_at,
                "previous_secrets_expire_at": [p.expires_at for p in self.previous],
                **{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.limits).items()}}

    def to_json(self) -> dict:
        doc = dataclasses.asdict(self)
        doc["limits"]["models"] = list(self.limits.models) if self.limits.models is not None else None
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> "KeyRecord":
        return cls(**{**doc, "limits": KeyLimits.from_dict(doc.get("limits") or {}),
                      "previous": tuple(PreviousSecret(**p) for p in doc.get("previous") or ())})


def _digest(salt: bytes, secret: str) -> str:
    return hashlib.sha256(salt + secret.encode()).hexdigest()


def _new_secret() -> tuple[str, bytes, str]:
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    salt = secrets.token_bytes(16)
    return secret, salt, _digest(salt, secret)


def parse_bearer(authorization: str | None) -> tuple[str, str] | None:
    """(key id, secret) from an ``Authorization: Bearer`` value; None when no credential was sent.
    Anything malformed (empty, overlong, non-ASCII, not a wattgate key) is Unauthorized, and the
    message never repeats what was sent."""
    if authorization is None:
        return None
    if len(authorization) > MAX_BEARER_CHARS + 7 or not authorization.isascii():
        raise Unauthorized("malformed bearer credential: expected 'Authorization: Bearer wg_<id>_<secret>'")
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise Unauthorized("malformed bearer credential: expected 'Authorization: Bearer wg_<id>_<secret>'")
    match = _KEY.fullmatch(value)
    if match is None:
        raise Unauthorized("invalid API key")
    return match.group(1), match.group(2)


class KeyBackend(Protocol):
    """Where key records live: a JSON file or a Redis hash."""

    def version(self) -> str: ...

    def load(self) -> dict[str, KeyRecord]: ...

    def update(self, key_id: str, change) -> KeyRecord: ...  # change(old record or None) -> new record


class FileKeyBackend:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def version(self) -> str:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return "absent"
        return f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}"

    def load(self) -> dict[str, KeyRecord]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return {k: KeyRecord.from_json(v) for k, v in doc.get("keys", {}).items()}

    def update(self, key_id: str, change) -> KeyRecord:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one writer at a time across processes
            records = self.load()
            new = change(records.get(key_id))
            records[key_id] = new
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps({"keys": {k: r.to_json() for k, r in sorted(records.items())}}, indent=1))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        return new


class RedisKeyBackend:
    """Records in the hash ``<prefix>:keys``; ``<prefix>:keys:version`` moves on every write."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._hash, self._version = f"{prefix}:keys", f"{prefix}:keys:version"

    def _call(self, fn):
        import redis

        try:
            return fn()
        except (redis.RedisError, OSError) as exc:
            raise DependencyError(f"key store (Redis) unavailable: {type(exc).__name__}") from exc

    def version(self) -> str:
        return str(self._call(lambda: self._redis.get(self._version)))

    def load(self) -> dict[str, KeyRecord]:
        raw = self._call(lambda: self._redis.hgetall(self._hash))
        return {k.decode(): KeyRecord.from_json(json.loads(v)) for k, v in raw.items()}

    def update(self, key_id: str, change) -> KeyRecord:
        import redis

        def txn(pipe: "redis.client.Pipeline") -> KeyRecord:
            raw = pipe.hget(self._hash, key_id)
            new = change(KeyRecord.from_json(json.loads(raw)) if raw else None)
            pipe.multi()
            pipe.hset(self._hash, key_id, json.dumps(new.to_json()))
            pipe.incr(self._version)
            return new

        return self._call(lambda: self._redis.transaction(txn, self._hash, value_from_callable=True))


class KeyStore:
    """Issues, checks, rotates and revokes keys over a backend, with a cached copy for the hot path."""

    def __init__(self, backend: KeyBackend, refresh_s: float = 1.0, clock=time.time, rotation_grace_s: float = 0.0) -> None:
        self.backend = backend
        self.refresh_s = refresh_s
        self.clock = clock
        self.rotation_grace_s = check_grace(rotation_grace_s)  # rotate()'s default
        self._lock = threading.Lock()
        self._records: dict[str, KeyRecord] = {}
        self._version: str | None = None
        self._checked = -math.inf

    def records(self, force: bool = False) -> dict[str, KeyRecord]:
        now = time.monotonic()
        if force or now - self._checked >= self.refresh_s:
            with self._lock:
                self._checked = now
                version = self.backend.version()
                if version != self._version:
                    self._records, self._version = self.backend.load(), version
        return self._records

    def verify(self, key_id: str, secret: str) -> KeyRecord:
        """The active record this key belongs to, else Unauthorized (the same words for every failure)."""
        record = self.records().get(key_id)
        salt = bytes.fromhex(record.salt) if record is not None else b"\0" * 16
        expected = record.hash if record is not None else "0" * 64
        # Compared in constant time whether or not the id exists.
        ok = hmac.compare_digest(_digest(salt, secret).encode(), expected.encode())
        now, old, expired = self.clock(), False, False
        for prev in record.previous if record is not None else ():  # a rotated secret in its grace period
            match = hmac.compare_digest(_digest(bytes.fromhex(prev.salt), secret).encode(), prev.hash.encode())
            old, expired = old or (match and prev.expires_at > now), expired or (match and prev.expires_at <= now)
        if record is not None and expired and not (ok or old):
            raise Unauthorized(f"API key {key_id} was rotated and this secret's grace period is over")
        if record is None or not (ok or old):
            raise Unauthorized("invalid API key")
        if not record.active:
            raise Unauthorized(f"API key {key_id} is revoked")
        return record

    def create(self, tenant: str, limits: KeyLimits) -> tuple[KeyRecord, str]:
        """A new key; returns its record and the key itself, which is shown this once and never stored."""
        check_tenant(tenant)
        key_id = secrets.token_hex(6)
        secret, salt, digest = _new_secret()

        def make(old):
            if old is not None:
                raise Conflict("key id collision; try again")
            return KeyRecord(key_id, tenant, salt.hex(), digest, limits, created_at=self.clock())

        record = self.backend.update(key_id, make)
        self.records(force=True)
        return record, f"wg_{key_id}_{secret}"

    def show(self, key_id: str) -> KeyRecord:
        record = self.records(force=True).get(key_id)
        if record is None:
            raise NotFound(f"no API key {key_id[:32]!r}")
        return record

    def rotate(self, key_id: str, grace_s: float | None = None) -> tuple[KeyRecord, str]:
        """A new secret for the same key id (and limits), valid at once; the old one keeps working for
        ``grace_s`` more seconds (default ``rotation_grace_s``; 0: it stops at once), then is refused."""
        grace_s = self.rotation_grace_s if grace_s is None else check_grace(grace_s)
        secret, salt, digest = _new_secret()

        def change(old):
            if old is None or not old.active:
                raise NotFound(f"no active API key {key_id[:32]!r}")
            now = self.clock()
            previous = tuple(p for p in old.previous if p.expires_at > now)
            if grace_s > 0:
                previous += (PreviousSecret(old.salt, old.hash, now + grace_s),)
            return dataclasses.replace(old, salt=salt.hex(), hash=digest, rotated_at=now, previous=previous)

        record = self.backend.update(key_id, change)
        self.records(force=True)
        return record, f"wg_{key_id}_{secret}"

    def update_limits(self, key_id: str, changes: dict) -> KeyRecord:
        """New limits for a key (a budget, a rate, ...); fields not named keep their values."""
        def change(old):
            if old is None:
                raise NotFound(f"no API key {key_id[:32]!r}")
            current = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(old.limits).items()}
            return dataclasses.replace(old, limits=KeyLimits.from_dict({**current, **changes}))

        KeyLimits.from_dict({**dataclasses.asdict(KeyLimits()), **changes})  # refuse bad values before any write
        record = self.backend.update(key_id, change)
        self.records(force=True)
        return record

    def revoke(self, key_id: str) -> KeyRecord:
        def change(old):
            if old is None:
                raise NotFound(f"no API key {key_id[:32]!r}")
            return old if not old.active else dataclasses.replace(old, revoked_at=self.clock())

        record = self.backend.update(key_id, change)
        self.records(force=True)
        return record

    def tenants(self) -> set[str]:
        return {r.tenant for r in self.records().values()}


def make_key_store(settings, state_dir: Path) -> KeyStore:
    """The key store the settings name: Redis when ``auth.redis_url`` is set, else the JSON file."""
    grace_s = settings.rotation_grace_s
    if settings.redis_url:
        return KeyStore(RedisKeyBackend(settings.redis_url, settings.redis_prefix), rotation_grace_s=grace_s)
    return KeyStore(FileKeyBackend(settings.in_state_dir(settings.keys_file, state_dir)), rotation_grace_s=grace_s)
