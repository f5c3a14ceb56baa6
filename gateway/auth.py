"""Who may call the admin API (model repository, registry, routing control), for HTTP and gRPC alike."""

from __future__ import annotations

import hmac
import ipaddress

from tenants.settings import AuthSettings
from wattgate.errors import BadRequest, Forbidden, Unauthorized
from wattgate.settings import ServerSettings


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def check_exposure(server: ServerSettings, auth: AuthSettings) -> None:
    """Refuse to listen beyond loopback with no credential asked unless ``auth.allow_open`` says so."""
    if auth.mode == "off" and not auth.allow_open and not is_loopback(server.host):
        raise BadRequest(
            f"refusing to serve on {server.host} with auth.mode off: anyone who can reach it could use every model. "
            "Set auth.mode (WATTGATE_AUTH_MODE) to optional or required, bind to 127.0.0.1, "
            "or set auth.allow_open: true to serve open on purpose"
        )


class AdminAuth:
    """A bearer ``server.admin_api_key``; with no key configured, loopback callers only."""

    def __init__(self, server: ServerSettings) -> None:
        self._key = server.admin_api_key.get_secret_value().encode() if server.admin_api_key else None
        self._bound_to_loopback = is_loopback(server.host)

    def is_admin_key(self, authorization: str | None) -> bool:
        """Whether this is ``Authorization: Bearer <the admin key>`` (False when no key is configured)."""
        if self._key is None or not authorization or authorization[:7].lower() != "bearer ":
            return False
        return hmac.compare_digest(authorization[7:].encode(), self._key)

    def check(self, authorization: str | None, client_host: str | None) -> str:
        """Who is calling, for the audit log ("admin-key" or "loopback"); else Unauthorized / Forbidden."""
        if self._key is not None:
            auth = authorization or ""
            token = auth[7:].encode() if auth[:7].lower() == "bearer " else b""
            if not hmac.compare_digest(token, self._key):
                raise Unauthorized("admin endpoint: send 'Authorization: Bearer <admin API key>'")
            return "admin-key"
        # No key: only loopback callers, and only when the gateway itself listens on loopback (behind
        # HAProxy every peer looks local, so a non-loopback bind cannot tell callers apart).
        if not (self._bound_to_loopback and is_loopback(client_host)):
            raise Forbidden("admin endpoints need an admin API key (server.admin_api_key) unless called on loopback")
        return "loopback"

    def who(self, authorization: str | None) -> str:
        return "admin-key" if self._key is not None and authorization else "loopback"
