"""Admin HTTP API (aiohttp): /health, /ready, /metrics, /status, /positions, /switchover,
/promote.

Access (the API key is `TITAN_EXECUTION_API_KEY`, sent as `X-API-Key: <key>` or
`Authorization: Bearer <key>`, compared in constant time):

- `/health`, `/ready`: anyone. `/health` is liveness for compose and orchestrators (the
  existing deployment's healthcheck is `curl -f http://localhost:3002/health`, and they
  restart on it): 503 while the NATS connection is down (disconnected, reconnecting,
  closed), 200 otherwise, also before the first connection (a start that cannot reach
  NATS ends by itself with exit 69). `/ready` is readiness in the instance's role.
- `/status` without a key: the public part only (instance id, role, lease role, epoch,
  readiness); with the key: the full document (positions, orders, daily PnL, rejects,
  state hash, stream position ...). A wrong key is 401, never the public part.
- `/positions`, `/switchover`, `/promote`: the key.
- `/metrics`: anyone, or the key with `http.metrics_requires_key = true`. Its label values
  are bounded sets (command kind, outcome, reason code, venue, symbol, asset, role, phase),
  never a client order id, signal id or anything else per order.

An endpoint that needs the key answers 401 with a JSON reason when it is missing or wrong,
and 503 when the instance has no key configured (it never serves such data without one).
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Protocol

from aiohttp import web

from titan_exec.api.metrics import Metrics
from titan_exec.core.leadership_io import Role, role_name


class ServiceView(Protocol):
    metrics: Metrics

    @property
    def role(self) -> Role | None: ...

    @property
    def epoch(self) -> int: ...

    def status_doc(self) -> dict[str, Any]: ...

    def public_status_doc(self) -> dict[str, Any]: ...

    async def settled_status_doc(self) -> dict[str, Any]: ...

    def positions_doc(self) -> dict[str, Any]: ...

    def is_ready(self) -> tuple[bool, str]: ...

    def nats_health(self) -> tuple[bool, str]: ...

    def refresh_metrics(self) -> None: ...

    def request_switchover(self) -> bool: ...

    def request_promote(self) -> tuple[bool, str]: ...


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(doc, default=str, indent=1), status=status, content_type="application/json"
    )


def presented_key(request: web.Request) -> str:
    """The key the request carries (`X-API-Key`, else `Authorization: Bearer`); "" if none."""
    given = request.headers.get("X-API-Key", "")
    auth = request.headers.get("Authorization", "")
    if not given and auth.startswith("Bearer "):
        given = auth[len("Bearer ") :]
    return given


def _same_key(given: str, api_key: str) -> bool:
    # surrogatepass: a header aiohttp decoded with surrogates must not raise (a 500)
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), api_key.encode("utf-8", "surrogatepass")
    )


def build_app(
    service: ServiceView, *, api_key: str, metrics_requires_key: bool = False
) -> web.Application:
    def refusal(request: web.Request) -> web.Response | None:
        """None when the request carries the configured key, else the answer that says why."""
        if not api_key:
            return _json({"error": "no API key configured (TITAN_EXECUTION_API_KEY)"}, 503)
        given = presented_key(request)
        if not given:
            return _json(
                {"error": "unauthorized: API key required (X-API-Key or Authorization: Bearer)"},
                401,
            )
        if not _same_key(given, api_key):
            return _json({"error": "unauthorized: wrong API key"}, 401)
        return None

    def authorized(request: web.Request) -> bool:
        given = presented_key(request)
        return bool(api_key) and _same_key(given, api_key)

    async def health(_: web.Request) -> web.Response:
        ok, nats = service.nats_health()
        return _json({"status": "ok" if ok else "unhealthy", "nats": nats}, 200 if ok else 503)

    async def ready(_: web.Request) -> web.Response:
        # ready = healthy in its role: a caught-up standby is ready too (role tells which)
        ok, why = service.is_ready()
        doc = {"ready": ok, "reason": why, "role": role_name(service.role), "epoch": service.epoch}
        return _json(doc, 200 if ok else 503)

    async def metrics(request: web.Request) -> web.Response:
        if metrics_requires_key and (refused := refusal(request)) is not None:
            return refused
        service.refresh_metrics()  # gauges are read at scrape time, in every role
        return web.Response(body=service.metrics.render(), content_type="text/plain")

    async def status(request: web.Request) -> web.Response:
        if not presented_key(request):
            return _json(service.public_status_doc())
        if (refused := refusal(request)) is not None:
            return refused
        return _json(await service.settled_status_doc())

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
        if (refused := refusal(request)) is not None:
            return refused
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
    def __init__(
        self,
        service: ServiceView,
        *,
        host: str,
        port: int,
        api_key: str,
        metrics_requires_key: bool = False,
    ) -> None:
        self._app = build_app(service, api_key=api_key, metrics_requires_key=metrics_requires_key)
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
