"""The one exception tree of wattgate; every error carries the HTTP status it renders as.

    WattgateError (500)
    ├── BadRequest (400)            malformed body, wrong dtype or shape, bad settings value
    │   └── InvalidName (400)       a model name or version outside the safe character set
    ├── Unauthorized (401)          no valid bearer token (admin key, or a tenant's API key)
    ├── Forbidden (403)             admin endpoint reached from off-loopback with no key configured;
    │                               a tenant key used for a model it is not allowed
    ├── NotFound (404)
    │   └── ModelNotFound (404)     unknown model, version or variant
    ├── Conflict (409)              e.g. registering a version that already exists
    ├── PayloadTooLarge (413)
    ├── Unprocessable (422)         a promotion the model card does not allow (missing profile, low quality)
    ├── TooManyRequests (429)       a tenant past its rate, concurrency, fair share or carbon budget;
    │                               carries retry_after_s
    ├── Unavailable (503)           model not loaded / not ready, no healthy pool
    │   └── Overloaded (503)        every pool is at its in-flight bound; carries retry_after_s
    ├── BackendError (500)          a runtime failed while executing a valid request
    └── DependencyError (502)       a foreign system failed (Redis, a provider, a remote pool);
        ├── CacheUnavailable        callers turn these into a counted bypass, never a 5xx
        └── ProviderUnavailable     callers fall back along the provider chain

Exceptions pickle (Ray moves them between processes): every subclass keeps ``args == (message,)``;
``Overloaded`` and ``TooManyRequests`` also pickle their ``retry_after_s``.
"""

from __future__ import annotations


class WattgateError(Exception):
    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self):
        return (type(self), (self.message,))

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message}


class BadRequest(WattgateError):
    status_code = 400


class InvalidName(BadRequest):
    pass


class Unauthorized(WattgateError):
    status_code = 401


class Forbidden(WattgateError):
    status_code = 403


class NotFound(WattgateError):
    status_code = 404


class ModelNotFound(NotFound):
    pass


class Conflict(WattgateError):
    status_code = 409


class PayloadTooLarge(WattgateError):
    status_code = 413


class Unprocessable(WattgateError):
    status_code = 422


class TooManyRequests(WattgateError):
    """A tenant's quota or carbon budget says no for now; ``retry_after_s`` (>= 1) says when to try again."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = max(1.0, float(retry_after_s))

    def __reduce__(self):
        return (type(self), (self.message, self.retry_after_s))


class Unavailable(WattgateError):
    status_code = 503


class Overloaded(Unavailable):
    """Every healthy pool is past capacity (its in-flight bound): shed the request, ask to retry later.

    ``retry_after_s`` is the router's estimate, at least 1 s so it fits an HTTP ``Retry-After``.
    """

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = max(1.0, float(retry_after_s))

    def __reduce__(self):
        return (type(self), (self.message, self.retry_after_s))


class BackendError(WattgateError):
    status_code = 500


class DependencyError(WattgateError):
    status_code = 502


class CacheUnavailable(DependencyError):
    pass


class ProviderUnavailable(DependencyError):
    pass
