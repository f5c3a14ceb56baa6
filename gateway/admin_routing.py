"""Admin API for ops: read and change the routing policy live, and move a replayed intensity clock."""

from __future__ import annotations

import json
from datetime import datetime

from gateway.admin import json_response as _json
from gateway.routes import Route
from wattgate.errors import BadRequest, NotFound


def _body(body: bytes) -> dict:
    try:
        doc = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise BadRequest("request body must be a JSON object") from None
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
    return doc


def routing_routes(control, provider, on_intensity_change=None, publish=None) -> list:
    """Routes for AdminApi: GET/PUT /v2/admin/routing and PUT /v2/admin/intensity/clock (replay only)."""

    async def show(**_):
        if control is None:
            raise NotFound("routing is off: no topology file (routing.topology_file)")
        return _json(200, control.show())

    async def set_policy(headers=None, body=b"", **_):
        if control is None:
            raise NotFound("routing is off: no topology file (routing.topology_file)")
        doc = _body(body)
        policy = doc.get("policy")
        if not isinstance(policy, str):
            raise BadRequest("send {\"policy\": NAME, \"params\": {...}}")
        params = doc.get("params") or {}
        if not isinstance(params, dict):
            raise BadRequest("params must be an object")
        actor = (headers or {}).get("x-actor") or "admin-api"
        shown = control.set(policy, params, actor=actor[:128])
        if publish is not None:  # the other ingress replicas adopt it within a second
            await publish()
        return _json(200, shown)

    async def set_clock(body=b"", **_):
        clock = getattr(provider, "clock", None)
        if clock is None:
            raise BadRequest("the intensity provider is not a replay; it has no clock to set")
        doc = _body(body)
        try:
            at = datetime.fromisoformat(str(doc["at"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            raise BadRequest('send {"at": ISO-8601 time, "speed": seconds of trace per second}') from None
        speed = doc.get("speed")
        if speed is not None and (not isinstance(speed, (int, float)) or speed < 0):
            raise BadRequest("speed must be a number >= 0")
        clock.set(at, speed=speed)
        if on_intensity_change is not None:  # routing sees the new values from the next request on
            on_intensity_change()
        return _json(200, {"at": at.isoformat(), "speed": speed})

    return [
        Route("GET", "/v2/admin/routing", show, "admin", "The routing policy and its recent changes"),
        Route("PUT", "/v2/admin/routing", set_policy, "admin", "Change the routing policy", request="RoutingChange"),
        Route("PUT", "/v2/admin/intensity/clock", set_clock, "admin", "Move a replayed intensity clock",
              request="ClockChange"),
    ]


def autoscaling_routes(specs, sync) -> list:
    """GET /v2/admin/autoscaling (pools, replicas, last decisions with reasons) and PUT
    /v2/admin/autoscaling/{pool} (live min/max within the deployed bounds, headroom)."""
    from gateway.autoscaling import check_overrides

    async def show(**_):
        view = sync.pools_view if sync is not None else {}
        pools = {}
        for name, spec in sorted(specs.items()):
            pools[name] = {"settings": spec.to_dict(), **view.get("pools", {}).get(name, {})}
        return _json(200, {"pools": pools, "decisions": view.get("decisions", [])})

    async def change(name: str, body=b"", **_):
        if name not in specs:
            raise NotFound(f"no autoscaled pool {name[:64]!r} (autoscaled: {sorted(specs)})")
        if sync is None:
            raise NotFound("autoscaling changes need the gateway's control actor")
        overrides = check_overrides(specs[name], _body(body))
        current = await sync.set_overrides(name, overrides)
        return _json(200, {"pool": name, "overrides": current})

    return [
        Route("GET", "/v2/admin/autoscaling", show, "admin", "Autoscaled pools and decisions"),
        Route("PUT", "/v2/admin/autoscaling/{pool}", change, "admin", "Change a pool's live bounds", request="Object"),
    ]


def quality_routes(guard, exclusions) -> list:
    """GET /v2/admin/quality (live quality per variant, exclusions and their audit history) and
    PUT /v2/admin/quality/{model}/{variant} with {"enabled": true, "reason": ...} to route to it again."""

    async def show(**_):
        if guard is None:
            raise NotFound("the quality guard is off (quality_guard.enabled)")
        live = [{"model": m, "variant": v, "metric": k, "value": value, "rows": n}
                for (m, v, k), (value, n) in sorted(guard.tracker.current().items())]
        return _json(200, {"live": live, **(exclusions.show() if exclusions is not None else {})})

    async def change(model: str, variant: str, headers=None, body=b"", **_):
        if guard is None:
            raise NotFound("the quality guard is off (quality_guard.enabled)")
        doc = _body(body)
        if doc.get("enabled") is not True:
            raise BadRequest('send {"enabled": true, "reason": "..."}: only an operator re-enables; the guard excludes')
        reason = doc.get("reason") or ""
        if not isinstance(reason, str):
            raise BadRequest("reason must be a string")
        actor = ((headers or {}).get("x-actor") or "admin-api")[:128]
        if not guard.enable(model, variant, actor, reason[:500]):
            raise NotFound(f"{model[:64]}/{variant[:32]} is not excluded")
        return _json(200, exclusions.show())

    return [
        Route("GET", "/v2/admin/quality", show, "admin", "Live quality per guarded variant, and exclusions"),
        Route("PUT", "/v2/admin/quality/{model}/{variant}", change, "admin", "Re-enable a variant the guard excluded",
              request="Object"),
    ]
