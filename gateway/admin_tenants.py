"""Admin API for tenants: API keys (create, list, show, change limits, rotate, revoke) and the audit log.

A new or rotated key is in that one response's body and nowhere else; everything else names keys by id.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from gateway.admin import json_response as _json
from gateway.routes import Route
from tenants.audit import AuditLog
from tenants.keys import KeyLimits, KeyStore, check_grace
from wattgate.errors import BadRequest


def _body(body: bytes) -> dict:
    try:
        doc = json.loads(body or b"{}")
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise BadRequest("request body must be a JSON object") from None
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
    return doc


def key_routes(keys: KeyStore, audit: AuditLog | None) -> list[Route]:
    async def list_keys(**_):
        return _json(200, {"keys": [r.public() for r in sorted(keys.records(force=True).values(), key=lambda r: r.key_id)]})

    async def create(body=b"", note=None, **_):
        doc = _body(body)
        tenant = doc.pop("tenant", None)
        if not isinstance(tenant, str):
            raise BadRequest('send {"tenant": NAME, ...limits}')
        record, key = keys.create(tenant, KeyLimits.from_dict(doc))
        if note is not None:
            note.update(key_id=record.key_id, tenant=record.tenant)
        return _json(201, {"key": key, **record.public()})

    async def show(key_id, **_):
        return _json(200, keys.show(key_id).public())

    async def change(key_id, body=b"", note=None, **_):
        doc = _body(body)
        if note is not None:
            note.update(key_id=key_id[:32], fields=sorted(doc)[:16])
        return _json(200, keys.update_limits(key_id, doc).public())

    async def rotate(key_id, body=b"", note=None, **_):
        doc = _body(body)
        unknown = set(doc) - {"grace_s"}
        if unknown:
            raise BadRequest(f"unknown fields {sorted(unknown)[:8]}; send {{\"grace_s\": SECONDS}} or nothing")
        grace_s = check_grace(doc["grace_s"]) if "grace_s" in doc else keys.rotation_grace_s
        if note is not None:
            note.update(key_id=key_id[:32], grace_s=grace_s)
        record, key = keys.rotate(key_id, grace_s)
        return _json(200, {"key": key, **record.public()})

    async def revoke(key_id, note=None, **_):
        if note is not None:
            note.update(key_id=key_id[:32])
        return _json(200, keys.revoke(key_id).public())

    async def audit_log(query="", **_):
        since = parse_qs(query or "").get("since_s", [None])[-1]
        try:
            since_s = float(since) if since is not None else None
        except ValueError:
            raise BadRequest("since_s must be a number (unix seconds)") from None
        entries = list(audit.entries(since_s)) if audit is not None else []
        return _json(200, {"entries": entries[-1000:]})

    return [
        Route("GET", "/v2/admin/keys", list_keys, "admin", "API keys (ids, tenants, limits; never the keys)"),
        Route("POST", "/v2/admin/keys", create, "admin", "Create an API key; the key is in this response only",
              request="KeyCreate", status=201),
        Route("GET", "/v2/admin/keys/{key_id}", show, "admin", "One API key's record"),
        Route("PATCH", "/v2/admin/keys/{key_id}", change, "admin", "Change a key's limits or carbon budget",
              request="KeyLimits"),
        Route("POST", "/v2/admin/keys/{key_id}/rotate", rotate, "admin",
              "A new secret for a key, valid at once; the old one works grace_s more seconds (default auth.rotation_grace_s)",
              request="KeyRotate"),
        Route("POST", "/v2/admin/keys/{key_id}/revoke", revoke, "admin", "Revoke a key"),
        Route("GET", "/v2/admin/audit", audit_log, "admin", "The audit log of admin actions",
              query=(("since_s", "only entries at or after this unix time"),)),
    ]
