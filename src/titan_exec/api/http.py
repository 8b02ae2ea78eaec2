"""Admin HTTP API (aiohttp): /health, /ready, /metrics, /status, /positions.

`/positions` (and `/status`'s order list is not secret, so it stays open) needs the API
key (`TITAN_EXECUTION_API_KEY`) in `X-API-Key` or `Authorization: Bearer <key>`; without a
configured key the endpoint answers 503 rather than serving positions unauthenticated.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Protocol

from aiohttp import web

from titan_exec.api.metrics import Metrics


class ServiceView(Protocol):
    metrics: Metrics
    role: str
    epoch: int

    def status_doc(self) -> dict[str, Any]: ...

    async def settled_status_doc(self) -> dict[str, Any]: ...

    def positions_doc(self) -> dict[str, Any]: ...

    def is_ready(self) -> tuple[bool, str]: ...

    def refresh_metrics(self) -> None: ...

    def request_switchover(self) -> bool: ...

    def request_promote(self) -> tuple[bool, str]: ...


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(doc, default=str, indent=1), status=status, content_type="application/json"
    )


def build_app(service: ServiceView, *, api_key: str) -> web.Application:
    async def health(_: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def ready(_: web.Request) -> web.Response:
        # ready = healthy in its role: a caught-up standby is ready too (role tells which)
        ok, why = service.is_ready()
        doc = {"ready": ok, "reason": why, "role": service.role, "epoch": service.epoch}
        return _json(doc, 200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        service.refresh_metrics()  # gauges are read at scrape time, in every role
        return web.Response(body=service.metrics.render(), content_type="text/plain")

    async def status(_: web.Request) -> web.Response:
        return _json(await service.settled_status_doc())

    def authorized(request: web.Request) -> bool:
        given = request.headers.get("X-API-Key", "")
        auth = request.headers.get("Authorization", "")
        if not given and auth.startswith("Bearer "):
            given = auth[len("Bearer ") :]
        return bool(api_key) and hmac.compare_digest(given.encode(), api_key.encode())

    async def switchover(request: web.Request) -> web.Response:
        if not authorized(request):
            return _json({"error": "unauthorized (API key)"}, 401)
        if not service.request_switchover():
            return _json({"error": "not the active of a lease-elected pair"}, 409)
        return _json({"status": "switchover requested: intake closing, lease to be released"}, 202)

    async def promote(request: web.Request) -> web.Response:
        if not authorized(request):
            return _json({"error": "unauthorized (API key)"}, 401)
        ok, why = service.request_promote()
        return _json({"status": why} if ok else {"error": why}, 202 if ok else 409)

    async def positions(request: web.Request) -> web.Response:
        if not api_key:
            return _json({"error": "no API key configured (TITAN_EXECUTION_API_KEY)"}, 503)
        given = request.headers.get("X-API-Key", "")
        auth = request.headers.get("Authorization", "")
        if not given and auth.startswith("Bearer "):
            given = auth[len("Bearer ") :]
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            return _json({"error": "unauthorized"}, 401)
        return _json({"positions": service.positions_doc()})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    app.router.add_get("/positions", positions)
    app.router.add_post("/switchover", switchover)
    app.router.add_post("/promote", promote)
    return app


class HttpServer:
    def __init__(self, service: ServiceView, *, host: str, port: int, api_key: str) -> None:
        self._app = build_app(service, api_key=api_key)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        if server is not None and self._port == 0:
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
