"""The published contract: an OpenAPI 3.1 document built from HttpApi's own route table.

Every ``Route`` becomes an operation (one per concrete path of its template), with its access
(public, a tenant API key, the admin key), its request body, its success response and the error
responses every route may give (``{"error": ...}``; 429 and 503 with ``Retry-After``). Only the
schemas below are written by hand; which paths exist, with which methods and parameters, is not.
"""

from __future__ import annotations

from typing import Iterable

from gateway.routes import Route
from wattgate import __version__

_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": _STR}}
_DTYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64",
           "BYTES", "BF16"]

# wattgate's response parameters (README "Energy and carbon per request", "Tenants and security").
RESPONSE_PARAMETERS = {
    "type": "object",
    "properties": {
        "request_id": _STR, "energy_j": _NUM, "energy_method": _STR, "energy_measured": _BOOL,
        "energy_active_j": _NUM, "energy_idle_j": _NUM, "carbon_g": _NUM_OR_NULL, "carbon_known": _BOOL,
        "operational_g": _NUM_OR_NULL, "embodied_g": _NUM, "intensity_g_per_kwh": _NUM_OR_NULL,
        "intensity_source": {"type": ["string", "null"]}, "intensity_signal": {"type": ["string", "null"]},
        "intensity_signal_type": _STR, "intensity_stale": _BOOL, "pue": _NUM, "region": _STR, "hardware": _STR,
        "energy_profile": _STR, "emulates": _STR, "node_id": _STR, "pool": _STR, "variant": _STR,
        "cache": {"enum": ["hit", "miss", "bypass", "off"]}, "batch_size": {"type": "integer"},
        "route_reason": {"type": ["string", "null"]},
        "tenant": _STR, "budget_g": _NUM, "budget_period": {"enum": ["day", "week", "month"]},
        "budget_remaining_g": _NUM, "budget_used_ratio": _NUM,
        "budget_action": {"enum": ["ok", "cheaper-variant", "defer", "reject"]},
    },
    "required": ["request_id", "energy_j", "energy_method", "carbon_g", "pool", "variant", "cache"],
}

_TENSOR_IN = {
    "type": "object", "required": ["name", "shape", "datatype"],
    "properties": {"name": _STR, "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                   "datatype": {"enum": _DTYPES}, "data": {"type": "array"}, "parameters": {"type": "object"}},
}
_LIMITS = {
    "rps": {"type": ["number", "null"], "exclusiveMinimum": 0}, "burst": {"type": ["integer", "null"], "minimum": 1},
    "max_concurrency": {"type": ["integer", "null"], "minimum": 1},
    "models": {"type": ["array", "null"], "items": _STR, "minItems": 1},
    "budget_g": {"type": ["number", "null"], "minimum": 0}, "budget_period": {"enum": ["day", "week", "month"]},
    "weight": {"type": "number", "exclusiveMinimum": 0},
}

SCHEMAS = {
    "Error": _ERROR,
    "Object": {"type": "object"},
    "List": {"type": "array"},
    "Text": _STR,
    "InferRequest": {
        "type": "object", "required": ["inputs"],
        "properties": {
            "id": _STR,
            "parameters": {"type": "object", "properties": {
                "variant": _STR, "slo_ms": _NUM, "binary_data_output": _BOOL,
                "deferrable": {"type": "boolean", "description": "may wait: past the tenant's defer level it becomes a job (202, Location: /v2/jobs/{id})"}}},
            "inputs": {"type": "array", "items": _TENSOR_IN},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                   "properties": {"name": _STR, "parameters": {"type": "object"}}}},
        },
    },
    "InferResponse": {
        "type": "object", "required": ["model_name", "outputs", "parameters"],
        "properties": {"model_name": _STR, "model_version": _STR, "id": _STR,
                       "parameters": {"$ref": "#/components/schemas/ResponseParameters"},
                       "outputs": {"type": "array", "items": {"type": "object", "required": ["name", "datatype", "shape"]}}},
    },
    "ResponseParameters": RESPONSE_PARAMETERS,
    "ServerMetadata": {"type": "object", "required": ["name", "version", "extensions"],
                       "properties": {"name": _STR, "version": _STR, "extensions": {"type": "array", "items": _STR}}},
    "Live": {"type": "object", "required": ["live"], "properties": {"live": _BOOL}},
    "Ready": {"type": "object", "required": ["ready"], "properties": {"ready": _BOOL}},
    "ModelReady": {"type": "object", "required": ["name", "ready"], "properties": {"name": _STR, "ready": _BOOL}},
    "ModelList": {"type": "object", "required": ["models"], "properties": {"models": {"type": "array"}}},
    "ModelMetadata": {"type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"]},
    "RoutingChange": {"type": "object", "required": ["policy"], "properties": {"policy": _STR, "params": {"type": "object"}}},
    "ClockChange": {"type": "object", "required": ["at"], "properties": {"at": _STR, "speed": _NUM}},
    "KeyLimits": {"type": "object", "properties": _LIMITS, "additionalProperties": False},
    "KeyCreate": {"type": "object", "required": ["tenant"], "additionalProperties": False,
                  "properties": {"tenant": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}, **_LIMITS}},
    "KeyRotate": {"type": "object", "additionalProperties": False,
                  "properties": {"grace_s": {"type": "number", "minimum": 0, "maximum": 30 * 86400}}},
}

_RETRY_AFTER = {"Retry-After": {"description": "seconds until a retry may succeed", "schema": {"type": "integer"}}}


def _error(description: str, retry: bool = False) -> dict:
    doc = {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if retry:
        doc["headers"] = _RETRY_AFTER
    return doc


def _operation(route: Route, path: str, auth_mode: str) -> dict:
    schema = {"$ref": f"#/components/schemas/{route.response}"}
    ok = {"description": "success", "content": {
        ct: {"schema": schema if ct == "application/json" or route.response == "Text" else {"type": "string", "format": "binary"}}
        for ct in route.content}}
    names = [n for n in route.parameters() if "{" + n + "}" in path]
    params = [{"name": n, "in": "path", "required": True,
               "schema": {"enum": list(route.enums[n])} if n in route.enums else {"type": "string"}} for n in names]
    params += [{"name": q, "in": "query", "required": False, "description": d, "schema": {"type": "string"}}
               for q, d in route.query]
    op: dict = {
        "operationId": f"{route.method.lower()}{path.replace('/', '_').replace('{', '').replace('}', '')}",
        "summary": route.summary or route.template,
        "parameters": params,
        "responses": {
            str(route.status): ok,
            "429": _error("a tenant past its rate, concurrency, fair share or carbon budget", retry=True),
            "503": _error("not ready, or shed under overload", retry=True),
            "default": _error("an error: 400, 401, 403, 404, 405, 409, 413, 422"),
        },
        "x-wattgate-access": route.access,
    }
    if route.access == "admin":
        op["security"] = [{"adminKey": []}, {}]  # no key configured: loopback callers only
    elif route.access == "viewer":  # the admin's view, or a tenant's key for its own
        op["security"] = [{"adminKey": []}, {"apiKey": []}, {}] if auth_mode != "off" else [{"adminKey": []}, {}]
    elif route.access == "tenant" and auth_mode != "off":
        op["security"] = [{"apiKey": []}] if auth_mode == "required" else [{"apiKey": []}, {}]
    if route.request == "binary":
        op["requestBody"] = {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    elif route.request is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.request}"}}}}
    return op


def openapi_document(routes: Iterable[Route], auth_mode: str = "off") -> dict:
    paths: dict[str, dict] = {}
    for route in routes:
        for path in route.paths():
            paths.setdefault(path, {})[route.method.lower()] = _operation(route, path, auth_mode)
    return {
        "openapi": "3.1.0",
        "info": {"title": "wattgate", "version": __version__,
                 "description": "Open Inference Protocol (REST) with per-request energy and carbon, tenants and admin."},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "a tenant's API key (wg_<id>_<secret>)"},
                "adminKey": {"type": "http", "scheme": "bearer", "description": "server.admin_api_key"},
            },
        },
    }
