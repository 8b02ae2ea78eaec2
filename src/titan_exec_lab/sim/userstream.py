"""The simulator's user-data stream: Binance USDⓈ-M listen keys and the private websocket.

This module owns `UserStreams`: the account's listen keys, the websocket connections
that read them and the events sent (built by `userevents.EventTracker` from the engine's
records). What it serves is what ccxt.pro 4.5.90's ``binanceusdm`` uses
(``ccxt/pro/binance.py``: ``authenticate``, ``keep_alive_listen_key``,
``get_private_ws_url``):

- ``POST /fapi/v1/listenKey`` (the ``X-MBX-APIKEY`` header only, no signature): the
  account's current valid key, its validity extended by 60 minutes, else a new key;
  ``{"listenKey": key}``.
- ``PUT /fapi/v1/listenKey``: extends the account's key by 60 minutes (``listenKey`` may
  be given; it must be the current one); none valid → HTTP 400 ``{"code": -1125, "msg":
  "This listenKey does not exist."}``.
- ``DELETE /fapi/v1/listenKey``: closes the key (its sockets are closed); ``{}``.
- the websocket: ``/private/ws?listenKey=K`` (what ccxt builds for linear),
  ``/ws?listenKey=K`` and ``/ws/K`` (Binance's other forms; the book-ticker routes hand
  these over, `stream.BookTickerStreams`). An unknown or expired key is refused before the
  upgrade (HTTP 400, -1125).
- a key expires 60 minutes (simulator clock) after its last POST / PUT: its sockets get
  ``{"e": "listenKeyExpired", "E": now, "listenKey": K}`` and are closed.

Faults (`faults.Faults`, ``user_*`` knobs): ``user_drop`` closes every user socket now;
``user_expire`` expires the key now; ``user_silent`` keeps sockets open but sends nothing
(events are dropped, as a broken venue stream loses them) until cleared;
``user_delay_ms`` delays each event; ``user_duplicate_next`` sends the next N events twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from titan_exec.adapters.venue.exchange.engine import Engine
from titan_exec_lab.sim.faults import Faults
from titan_exec_lab.sim.userevents import EventTracker
from titan_exec_lab.sim.weights import WeightCounter

log = logging.getLogger(__name__)

LISTEN_KEY_VALIDITY_MS = 60 * 60 * 1000
KEY_PATH = "/fapi/v1/listenKey"
PRIVATE_PATHS = ("/private/ws", "/private/ws/{tail:.*}")
NO_SUCH_KEY = (-1125, "This listenKey does not exist.")


@dataclass(slots=True)
class ListenKey:
    key: str
    created_ms: int
    expires_ms: int
    closed: bool = False
    """Expired or deleted: never valid again."""


@dataclass(eq=False)
class _Socket:
    ws: web.WebSocketResponse
    key: str
    opened_ms: int
    sent: int = 0
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)


class UserStreams:
    def __init__(
        self,
        engine: Callable[[], Engine],
        clock: Callable[[], int],
        faults: Faults,
        api_key: str,
        weights: WeightCounter | None = None,
    ) -> None:
        self._weights = weights
        """The request weight of the key calls (1 each), counted like every /fapi call."""
        self._engine = engine
        self._clock = clock
        self._faults = faults
        self._api_key = api_key
        self.keys: dict[str, ListenKey] = {}
        self._current: str | None = None
        self._sockets: set[_Socket] = set()
        self._tracker = EventTracker()
        self.connections_total = 0
        self.refused_connections = 0
        self.events_sent = 0
        self.events_dropped = 0
        self.requests: dict[str, int] = {"POST": 0, "PUT": 0, "DELETE": 0}

    # --- routes ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        for method in ("POST", "PUT", "DELETE"):
            app.router.add_route(method, KEY_PATH, self._key_endpoint)
        for path in PRIVATE_PATHS:
            app.router.add_get(path, self.handle_private)

    def current(self, now_ms: int) -> ListenKey | None:
        if self._current is None:
            return None
        lk = self.keys[self._current]
        if lk.closed or lk.expires_ms <= now_ms:
            return None
        return lk

    async def _key_endpoint(self, request: web.Request) -> web.Response:
        response = await self._key_call(request)
        key = request.headers.get("X-MBX-APIKEY")
        if self._weights is not None and key:
            used = self._weights.used(key, self._clock())
            response.headers["X-MBX-USED-WEIGHT-1M"] = str(used)
        return response

    async def _key_call(self, request: web.Request) -> web.Response:
        method = request.method
        self.requests[method] = self.requests.get(method, 0) + 1
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            return _error(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key.encode(), self._api_key.encode()):
            return _error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        now = self._clock()
        refusal = None if self._weights is None else self._weights.admit(key, 1, now)
        if refusal is not None:
            response = _error(refusal.status, refusal.code, refusal.msg)
            response.headers["Retry-After"] = str(refusal.retry_after_s)
            return response
        await self.check_expiry(now)
        params = dict(request.rel_url.query)
        with contextlib.suppress(ValueError):
            params.update(await request.post())  # type: ignore[arg-type]
        lk = self.current(now)
        named = params.get("listenKey")
        if method == "POST":
            if lk is None:
                lk = ListenKey(secrets.token_hex(32), now, now)
                self.keys[lk.key] = lk
                self._current = lk.key
            lk.expires_ms = now + LISTEN_KEY_VALIDITY_MS
            return web.json_response({"listenKey": lk.key})
        if lk is None or (named and named != lk.key):
            return _error(400, *NO_SUCH_KEY)
        if method == "PUT":
            lk.expires_ms = now + LISTEN_KEY_VALIDITY_MS
            return web.json_response({"listenKey": lk.key})
        lk.closed = True
        await self._close_key(lk.key, expired=False, now_ms=now)
        return web.json_response({})

    # --- the websocket --------------------------------------------------------------------

    async def handle_private(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        key = request.query.get("listenKey") or tail.strip("/")
        return await self.serve(request, key)

    async def serve(self, request: web.Request, key: str) -> web.StreamResponse:
        now = self._clock()
        lk = self.keys.get(key)
        if lk is None or lk.closed or lk.expires_ms <= now:
            self.refused_connections += 1
            return _error(400, *NO_SUCH_KEY)
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        sock = _Socket(ws, key, now)
        self._sockets.add(sock)
        self.connections_total += 1
        sender = asyncio.create_task(self._sender(sock), name="venue-sim-user-send")
        try:
            async for msg in ws:
                if msg.type is WSMsgType.ERROR:
                    break  # requests on the user stream are ignored, as at Binance
        finally:
            self._sockets.discard(sock)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return ws

    async def _sender(self, sock: _Socket) -> None:
        while True:
            doc = await sock.queue.get()
            if doc is None:
                await sock.ws.close()
                return
            delay_ms = self._faults.user_delay_ms
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            if sock.ws.closed:
                return
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sock.ws.send_str(json.dumps(doc))
                sock.sent += 1
                self.events_sent += 1

    # --- events ---------------------------------------------------------------------------

    def publish(self, now_ms: int) -> None:
        """The events of what changed in the engine, queued to every live socket."""
        events = self._tracker.events(self._engine(), now_ms)
        if not events:
            return
        faults = self._faults
        for doc in events:
            if faults.user_silent:
                self.events_dropped += len(self._sockets)
                continue
            copies = 1
            if faults.user_duplicate_next > 0 and self._sockets:
                faults.user_duplicate_next -= 1
                copies = 2
            for sock in self._sockets:
                for _ in range(copies):
                    sock.queue.put_nowait(doc)

    async def apply_faults(self, now_ms: int) -> None:
        """The one-shot knobs: ``user_drop`` and ``user_expire`` act once and are cleared."""
        faults = self._faults
        if faults.user_drop:
            faults.user_drop = False
            faults.log.append({"time": now_ms, "fault": "user_drop", "sockets": len(self._sockets)})
            await self.drop_all()
        if faults.user_expire:
            faults.user_expire = False
            lk = self.current(now_ms)
            faults.log.append(
                {"time": now_ms, "fault": "user_expire", "listenKey": lk.key if lk else None}
            )
            if lk is not None:
                lk.expires_ms = now_ms
        await self.check_expiry(now_ms)

    async def check_expiry(self, now_ms: int) -> None:
        for lk in self.keys.values():
            if not lk.closed and lk.expires_ms <= now_ms:
                lk.closed = True
                await self._close_key(lk.key, expired=True, now_ms=now_ms)

    async def _close_key(self, key: str, *, expired: bool, now_ms: int) -> None:
        for sock in [s for s in self._sockets if s.key == key]:
            if expired:
                sock.queue.put_nowait({"e": "listenKeyExpired", "E": now_ms, "listenKey": key})
            sock.queue.put_nowait(None)

    async def drop_all(self) -> None:
        socks, self._sockets = list(self._sockets), set()
        await asyncio.gather(*(s.ws.close() for s in socks), return_exceptions=True)

    @property
    def connections(self) -> int:
        return len(self._sockets)

    def inspect(self, now_ms: int) -> dict[str, Any]:
        return {
            "listenKeys": [
                {
                    "listenKey": lk.key,
                    "createdMs": lk.created_ms,
                    "expiresMs": lk.expires_ms,
                    "valid": not lk.closed and lk.expires_ms > now_ms,
                }
                for lk in self.keys.values()
            ],
            "connections": [
                {"listenKey": s.key, "openedMs": s.opened_ms, "eventsSent": s.sent}
                for s in self._sockets
            ],
            "connectionsTotal": self.connections_total,
            "refusedConnections": self.refused_connections,
            "eventsSent": self.events_sent,
            "eventsDropped": self.events_dropped,
            "keyRequests": dict(self.requests),
        }


def _error(status: int, code: int, msg: str) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)
