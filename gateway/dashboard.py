"""The built-in dashboard over HTTP: the page and its vendored chart library (uPlot, MIT, in
``gateway/static/``; nothing from a CDN), and ``GET /dashboard/data?window=S`` that the page polls.

The page and its scripts hold no data and are public. The data endpoint answers the admin (bearer
``server.admin_api_key``, or loopback when no key is set) with the whole gateway, optionally one
tenant's view (``?tenant=NAME``), and, when auth is on, a tenant's API key with that tenant's view
only (another tenant's name: 403). The page sends the key typed into its key field (kept in the
tab's sessionStorage, or taken once from ``/dashboard#key=...``: a fragment never reaches a log)
as ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from importlib import resources
from typing import Awaitable, Callable
from urllib.parse import parse_qs

from gateway.admin import json_response
from gateway.routes import Route
from serving.dashboard import DashboardHistory, DashboardQuery, forecast_points
from wattgate.errors import Forbidden, NotFound

_STATIC = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "uPlot.LICENSE": "text/plain; charset=utf-8",
}
FORECAST_TTL_S = 60.0


def _asset(name: str) -> bytes:
    return resources.files("gateway").joinpath("static", name).read_bytes()


class Dashboard:
    def __init__(self, snapshot: Callable[[], Awaitable[dict]], provider, regions: list[str], control=None) -> None:
        self._snapshot = snapshot
        self._provider = provider
        self._regions = regions
        self._control = control
        self.history = DashboardHistory()
        self._forecast: tuple[float, dict] = (0.0, {})

    def routes(self) -> list[Route]:
        """The dashboard's page, assets and data, for HttpApi."""
        return [
            Route("GET", "/dashboard[/]", self._page, summary="The dashboard page", response="Text", content=("text/html",)),
            Route("GET", "/dashboard/static/{name}", self._static, summary="A dashboard asset", response="Text",
                  content=("text/css", "text/javascript", "text/plain")),
            Route("GET", "/dashboard/data", self._data, "viewer", "The dashboard's series (a tenant's key: its own)",
                  query=(("window", "seconds of history"), ("tenant", "one tenant's view"))),
        ]

    async def _page(self, **_):
        return 200, {"content-type": "text/html; charset=utf-8", "cache-control": "no-cache"}, _asset("dashboard.html")

    async def _static(self, name, **_):
        if name not in _STATIC:
            raise NotFound(f"no dashboard asset {name!r}")
        return 200, {"content-type": _STATIC[name], "cache-control": "max-age=3600"}, _asset(name)

    async def _data(self, query: str = "", viewer: str | None = None, **_):
        q = DashboardQuery.parse(parse_qs(query or "", keep_blank_values=True))
        if viewer is not None:  # a tenant's key: its own view, whatever was asked
            if q.tenant not in (None, viewer):
                raise Forbidden("this API key shows its own tenant's data only")
            q = dataclasses.replace(q, tenant=viewer)
        self.history.add(await self._snapshot())
        policy = self._control.show()["policy"] if self._control is not None else None
        return json_response(200, self.history.query(q, await self._forecasts(), policy))

    async def _forecasts(self) -> dict:
        at, cached = self._forecast
        if time.monotonic() - at < FORECAST_TTL_S:
            return cached
        # A provider may call out over HTTP: never on the event loop.
        points = await asyncio.get_running_loop().run_in_executor(None, forecast_points, self._provider, self._regions)
        self._forecast = (time.monotonic(), points)
        return points
