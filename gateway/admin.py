"""Admin API: the model registry over HTTP, model load/unload and (later) routing control."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

from gateway.routes import Route
from serving.host import ModelHost
from models.card import check_name, check_variant
from models.registry import ModelRegistry
from wattgate.errors import BadRequest



def json_response(status: int, doc: Any) -> tuple[int, dict[str, str], bytes]:
    """The one way the HTTP layer answers with JSON (datetimes and paths render as strings)."""
    return status, {"content-type": "application/json"}, json.dumps(doc, separators=(",", ":"), default=str).encode()


class AdminApi:
    def __init__(
        self,
        registry: ModelRegistry,
        host: ModelHost,
        broadcast: Callable[[str, str], Awaitable[None]] | None = None,
        extra_routes: list | None = None,
    ) -> None:
        self.registry = registry
        self.host = host
        # Tells the other replicas to load/unload too; None on a single-process gateway.
        self._broadcast = broadcast
        self._extra = extra_routes or []

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v2/admin/models", self._list, "admin", "Model cards"),
            Route("GET", "/v2/admin/models/{name}[/versions/{version}]", self._show, "admin", "One model card"),
            Route("POST", "/v2/admin/models/{name}/versions/{version}", self._register, "admin",
                  "Register a model version (body: the ONNX file)", request="binary", status=201,
                  query=(("variant", "variant name (default fp32)"), ("owner", "owner"), ("description", "description"))),
            Route("POST", "/v2/admin/models/{name}/versions/{version}/{action}", self._stage, "admin",
                  "Promote or retire a version", enums={"action": ("promote", "retire")}),
            *self._extra,
        ]

    async def load_or_unload(self, name: str, action: str) -> None:
        check_name(name)
        loop = asyncio.get_running_loop()
        if action == "load":
            await loop.run_in_executor(None, self.host.load, name)
        else:
            self.host.unload(name)
        if self._broadcast is not None:
            await self._broadcast(name, action)

    async def _list(self, **_):
        return json_response(200, {"models": [c.model_dump(mode="json", exclude={"history"}) for c in self.registry.list_models()]})

    async def _show(self, name, version, **_):
        return json_response(200, self.registry.show(name, version).model_dump(mode="json"))

    async def _register(self, name, version, query="", body=b"", **_):
        """Body: the ONNX file; query: variant (default fp32), owner, description."""
        params = {k: v[-1] for k, v in parse_qs(query or "").items()}
        variant = check_variant(params.get("variant", "fp32"))
        if not body:
            raise BadRequest("send the ONNX model as the request body")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{variant}.onnx"
            path.write_bytes(body)
            card = await asyncio.get_running_loop().run_in_executor(
                None,
                lambda: self.registry.register(
                    name, version, {variant: path}, owner=params.get("owner", "unknown"), description=params.get("description", "")
                ),
            )
        return json_response(201, card.model_dump(mode="json"))

    async def _stage(self, name, version, action, **_):
        card = self.registry.promote(name, version) if action == "promote" else self.registry.retire(name, version)
        return json_response(200, card.model_dump(mode="json", exclude={"history"}))
