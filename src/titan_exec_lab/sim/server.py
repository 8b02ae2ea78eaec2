"""The venue simulator's HTTP server: Binance USDⓈ-M `/fapi` endpoints over the engine.

This module owns the aiohttp application and `VenueSim`, the runner around it:

- the HTTP side of the endpoints (`endpoints.Fapi` does the work): ping, time,
  exchangeInfo, book / price / 24h tickers, premiumIndex, depth; order (POST, GET,
  DELETE), openOrder, openOrders, allOrders, allOpenOrders (DELETE), countdownCancelAll,
  userTrades, leverageBracket; positionRisk, account and balance in v2 and v3;
- authentication as Binance does it: the ``X-MBX-APIKEY`` header (-2014 / -2015, HTTP 401),
  ``timestamp`` within ``recvWindow`` (default 5000 ms) of the server clock (-1021) and
  ``signature`` = hex HMAC-SHA256(secret, query string + request body) (-1022);
- errors as ``{"code": -N, "msg": "..."}`` with Binance's HTTP status;
- request weight per client and minute (`weights`): ``X-MBX-USED-WEIGHT-1M`` on every
  `/fapi` answer, 429 -1003 past ``weight_limit_1m``, 418 for a client that keeps going
  (both with ``Retry-After``);
- the websocket book-ticker stream ccxt.pro's ``watch_bids_asks`` reads (`stream`:
  ``/public/ws/...``, ``<symbol>@bookTicker``);
- fault injection (`faults.Faults`) and the simulator's own endpoints: ``GET /sim/inspect``
  (every order, trade and refused order ever received, the faults applied, and the weight
  each client used this minute and in the last ten),
  ``GET/POST/DELETE /sim/faults``, ``POST /sim/price`` (pin a mid price, for tests),
  ``POST /sim/streams/close`` (drop every websocket connection);
- the user-data stream (`userstream`): ``/fapi/v1/listenKey`` and the private websocket,
  its events pushed after every request and every tick; ``/sim/inspect`` shows its listen
  keys, connections and events sent under ``userStream``;
- the runner: a tick loop (engine.tick every ``tick_interval_ms``, its user-data events
  pushed at once; changed books pushed to the websocket subscribers), book tickers published
  on NATS (``titan.data.market.ticker.v1.<venue>.<BASE_QUOTE>``, ``{"bid","ask","ts"}``)
  when a NATS URL is given, and the optional state file (loaded at start, saved
  periodically and at stop). The clock is injectable (milliseconds). The book tickers go
  out in ``market_slices`` slices spread over the tick (the listed symbols dealt round-robin,
  slice 0 right after the tick), as a venue's streams of different symbols come at their
  own moments, not as one burst of every symbol at the instant of each fill.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from titan_exec.adapters.venue.exchange.engine import Engine, EngineConfig, SimError
from titan_exec.adapters.venue.exchange.market import SIM_SYMBOLS
from titan_exec_lab.sim import render
from titan_exec_lab.sim.endpoints import Fapi, Handler, Params, int_param
from titan_exec_lab.sim.faults import Faults, request_tags
from titan_exec_lab.sim.stream import BookTickerStreams
from titan_exec_lab.sim.userstream import UserStreams
from titan_exec_lab.sim.weights import WeightCounter, request_weight

log = logging.getLogger(__name__)

DEV_API_KEY = "titan-sim-dev-key"
DEV_API_SECRET = "titan-sim-dev-secret"
DEFAULT_RECV_WINDOW = 5000
MAX_RECV_WINDOW = 60000

Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class SimSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    """0: any free port (see `VenueSim.url` once started)."""
    api_key: str = DEV_API_KEY
    api_secret: str = DEV_API_SECRET
    venue_name: str = "sim"
    nats_url: str | None = None
    """Comma-separated NATS URLs; None: no book tickers are published."""
    state_file: Path | None = None
    tick_interval_ms: int = 100
    market_slices: int = 10
    """The book tickers of a tick are sent in this many slices, evenly over the tick
    interval (symbol i in slice i mod n); 1: all of them right after the tick."""
    save_interval_s: float = 5.0
    weight_limit_1m: int = 2400
    """Request weight a client may use per minute (`weights.WeightCounter`)."""
    ban_after_429: int = 5
    """429s in one minute after which a client still over the limit is banned (418)."""
    ban_ms: int = 120_000

    def __repr__(self) -> str:  # never show the secret
        return f"SimSettings(host={self.host!r}, port={self.port}, venue={self.venue_name!r})"


def _signed_text(raw: str) -> str:
    return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))


class VenueSim:
    """The simulator: engine + HTTP app + tick loop (+ NATS tickers, + state file)."""

    def __init__(
        self,
        settings: SimSettings | None = None,
        engine_config: EngineConfig | None = None,
        *,
        clock: Clock = wall_clock_ms,
        faults: Faults | None = None,
    ) -> None:
        self.settings = settings or SimSettings()
        self.clock = clock
        self.faults = faults or Faults()
        config = engine_config or EngineConfig(symbols=SIM_SYMBOLS)
        if config.origin_ms is None:
            config = dataclasses.replace(config, origin_ms=clock())
        self.engine = Engine(config)
        self.hidden_until: dict[int, int] = {}
        self.weights = WeightCounter(
            limit_1m=self.settings.weight_limit_1m,
            ban_after=self.settings.ban_after_429,
            ban_ms=self.settings.ban_ms,
        )
        self.streams = BookTickerStreams(lambda: self.engine, clock)
        self.user_streams = UserStreams(
            lambda: self.engine, clock, self.faults, self.settings.api_key, self.weights
        )
        self.streams.private = self.user_streams.serve
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._nc: Any = None
        self._port: int | None = None
        self._last_save = 0.0

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        return f"http://{self.settings.host}:{self._port}"

    async def start(self) -> None:
        state_file = self.settings.state_file
        if state_file is not None:
            doc = await asyncio.to_thread(_read_state, state_file)
            if doc is not None:
                fills = {
                    "fill_slices": self.engine.config.fill_slices,
                    "slice_interval_ms": self.engine.config.slice_interval_ms,
                }
                self.engine = Engine.from_state(doc)
                self.engine.reconfigure(**fills)
                log.info("venue-sim: state loaded from %s", state_file)
        if self.settings.nats_url:
            from titan_exec.adapters.nats.connect import NatsSettings, connect

            urls = tuple(u.strip() for u in self.settings.nats_url.split(",") if u.strip())
            self._nc = await connect(NatsSettings(urls=urls, name="titan-venue-sim"))
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="venue-sim-tick"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.streams.close_all()
        await self.user_streams.drop_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
            self._nc = None
        await self.save_state()

    async def __aenter__(self) -> VenueSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def save_state(self) -> None:
        if self.settings.state_file is None:
            return
        text = json.dumps(self.engine.export_state())
        await asyncio.to_thread(_write_state, self.settings.state_file, text)
        self._last_save = time.monotonic()

    async def _tick_loop(self) -> None:
        interval = self.settings.tick_interval_ms / 1000
        slices = max(1, self.settings.market_slices)
        while True:
            try:
                now = self.clock()
                self.engine.tick(now)
                await self.user_streams.apply_faults(now)
                self.user_streams.publish(now)
                # the user-data senders go first: a fill is pushed before the market data
                await asyncio.sleep(0)
                if (
                    self.settings.state_file is not None
                    and time.monotonic() - self._last_save >= self.settings.save_interval_s
                ):
                    await self.save_state()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive a bad tick (logged, retried next tick)
                log.exception("venue-sim: tick failed")
            for k in range(slices):
                await self._publish_market(k, slices)
                if k == slices - 1:
                    self._prewarm(self.clock() + self.settings.tick_interval_ms // slices)
                await asyncio.sleep(interval / slices)

    def _prewarm(self, next_tick_ms: int) -> None:
        """Price every book at the next tick's time now, in the idle time before it (the
        engine caches each step's prices): the tick then matches without computing them,
        and a fill leaves as soon as it happens rather than after every symbol's price."""
        try:
            for symbol in self.engine.specs:
                self.engine.quote(symbol, next_tick_ms)
        except Exception:  # an optimisation only: the tick prices what it needs itself
            log.exception("venue-sim: pricing ahead failed")

    async def _publish_market(self, k: int, slices: int) -> None:
        """Slice `k` of `slices` of the book tickers (websocket subscribers, NATS)."""
        listed = list(self.engine.specs)
        mine = frozenset(listed[k::slices])
        now = self.clock()
        try:
            await self.streams.publish(now, mine)
            if self._nc is not None:
                await self._publish_tickers(now, mine)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("venue-sim: book tickers failed")

    async def _publish_tickers(self, now: int, symbols: frozenset[str]) -> None:
        for spec in self.engine.specs.values():
            if spec.symbol not in symbols:
                continue
            book = self.engine.book(spec.symbol, now)
            doc = {"bid": f"{book.bid:f}", "ask": f"{book.ask:f}", "ts": now}
            subject = (
                f"titan.data.market.ticker.v1.{self.settings.venue_name}.{spec.base}_{spec.quote}"
            )
            await self._nc.publish(subject, json.dumps(doc).encode())

    # --- the simulator's own endpoints -----------------------------------------------------

    def inspect(self) -> dict[str, Any]:
        """Every order, trade and refused order ever received, and the faults applied."""
        eng = self.engine
        return {
            "serverTime": self.clock(),
            "orders": [
                render.order_json(o, eng.specs[o.symbol], with_time=True)
                for o in eng.orders.values()
            ],
            "trades": [render.trade_json(t, eng.specs[t.symbol]) for t in eng.trades],
            "rejected": [render.rejection_json(r) for r in eng.rejections],
            "faults": list(self.faults.log),
            "weight": self.weights.to_doc(self.clock()),
            "userStream": self.user_streams.inspect(self.clock()),
        }

    async def _sim_inspect(self, request: web.Request) -> web.Response:
        self.engine.tick(self.clock())
        return web.json_response(self.inspect())

    async def _sim_faults(self, request: web.Request) -> web.Response:
        if request.method == "DELETE":
            self.faults.reset()
        elif request.method == "POST":
            try:
                doc = await request.json()
                if not isinstance(doc, dict):
                    raise ValueError("the body must be a JSON object")
                self.faults.update(doc)
            except ValueError as err:
                return web.json_response({"error": str(err)}, status=400)
            await self.user_streams.apply_faults(self.clock())
        return web.json_response(self.faults.to_doc())

    async def _sim_price(self, request: web.Request) -> web.Response:
        try:
            doc = await request.json()
            symbol = str(doc["symbol"])
            mid = None if doc.get("mid") is None else Decimal(str(doc["mid"]))
            self.engine.pin_mid(symbol, mid)
        except (ValueError, KeyError, TypeError, InvalidOperation, SimError) as err:
            return web.json_response({"error": str(err)}, status=400)
        book = self.engine.book(symbol, self.clock())
        return web.json_response({"symbol": symbol, "bid": f"{book.bid:f}", "ask": f"{book.ask:f}"})

    async def _sim_close_streams(self, request: web.Request) -> web.Response:
        count = self.streams.connections
        await self.streams.close_all()
        return web.json_response({"closed": count})

    # --- the Binance endpoints -------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application()
        routes = Fapi(self).routes()
        for method, path, handler, signed in routes:
            handler = self._publishing(handler)
            app.router.add_route(method, path, self._endpoint(method, path, handler, signed))
        app.router.add_get("/sim/inspect", self._sim_inspect)
        for method in ("GET", "POST", "DELETE"):
            app.router.add_route(method, "/sim/faults", self._sim_faults)
        app.router.add_post("/sim/price", self._sim_price)
        app.router.add_post("/sim/streams/close", self._sim_close_streams)
        self.streams.add_routes(app)
        self.user_streams.add_routes(app)
        return app

    def _publishing(self, handler: Handler) -> Handler:
        """`handler`, then the user-data events of what it changed (a fill is pushed as
        soon as it happens, not at the next tick)."""

        def handle(params: Params, now: int) -> Any:
            try:
                return handler(params, now)
            finally:
                self.user_streams.publish(now)

        return handle

    def _endpoint(
        self, method: str, path: str, handler: Handler, signed: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        tags = request_tags(method, path, signed)

        async def handle(request: web.Request) -> web.StreamResponse:
            if self.faults.latency_ms:
                await asyncio.sleep(self.faults.latency_ms / 1000)
            raw_query = request.rel_url.raw_query_string
            raw_body = (await request.read()).decode("utf-8", errors="replace")
            params: Params = dict(parse_qsl(raw_body, keep_blank_values=True))
            params.update(parse_qsl(raw_query, keep_blank_values=True))  # the query string wins
            now = self.clock()
            client = request.headers.get("X-MBX-APIKEY") or f"ip:{request.remote}"
            weight = request_weight(method, path, params)
            refusal = self.weights.admit(client, weight, now, f"{method} {path}")
            if refusal is not None:
                coid = params.get("newClientOrderId") or params.get("origClientOrderId")
                self._log_fault(f"weight_{refusal.status}", method, path, coid, now)
                response: web.StreamResponse = _error(refusal.status, refusal.code, refusal.msg)
                response.headers["Retry-After"] = str(refusal.retry_after_s)
            else:
                response = await execute(request, raw_query, raw_body, params, now)
            if not response.prepared:
                response.headers["X-MBX-USED-WEIGHT-1M"] = str(self.weights.used(client, now))
            return response

        async def execute(
            request: web.Request, raw_query: str, raw_body: str, params: Params, now: int
        ) -> web.StreamResponse:
            faults = self.faults
            coid = params.get("newClientOrderId") or params.get("origClientOrderId")
            if faults.take("rate_limit", tags):
                self._log_fault("rate_limit", method, path, coid, now)
                limited = _error(
                    429, -1003, "Too many requests; current limit is 2400 requests per minute."
                )
                limited.headers["Retry-After"] = "1"
                return limited
            if faults.take("error", tags):
                self._log_fault("error", method, path, coid, now)
                if not faults.error_body:
                    return web.Response(status=faults.error_status)
                return _error(faults.error_status, faults.error_code, faults.error_msg)
            lose = faults.take("lose", tags)
            try:
                if signed:
                    self._authenticate(request, raw_query, raw_body, params, now)
                self.engine.tick(now)
                result = handler(params, now)
            except SimError as err:
                response: web.StreamResponse = _error(err.http_status, err.code, err.msg)
            else:
                response = web.json_response(result)
            if lose:
                self._log_fault("lose", method, path, coid, now)
                if faults.lose_mode == "504":
                    return web.Response(status=504)
                if request.transport is not None:
                    request.transport.abort()
                return response
            if faults.response_delay_ms:
                await asyncio.sleep(faults.response_delay_ms / 1000)
            return response

        return handle

    def _log_fault(self, fault: str, method: str, path: str, coid: str | None, now: int) -> None:
        entry = {"time": now, "fault": fault, "method": method, "path": path, "clientOrderId": coid}
        self.faults.log.append(entry)

    def _authenticate(
        self, request: web.Request, raw_query: str, raw_body: str, params: Params, now: int
    ) -> None:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise SimError(-2014, "API-key format invalid.", 401)
        if not hmac.compare_digest(key.encode(), self.settings.api_key.encode()):
            raise SimError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        timestamp = int_param(params, "timestamp", required=True)
        assert timestamp is not None
        signature = params.get("signature")
        if not signature:
            raise SimError(
                -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
            )
        payload = _signed_text(raw_query) + _signed_text(raw_body)
        expected = hmac.new(
            self.settings.api_secret.encode(), payload.encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise SimError(-1022, "Signature for this request is not valid.")
        recv_window = int_param(params, "recvWindow")
        recv_window = DEFAULT_RECV_WINDOW if recv_window is None else recv_window
        if recv_window <= 0 or recv_window > MAX_RECV_WINDOW:
            raise SimError(-1131, "recvWindow must be less than 60000")
        if timestamp >= now + 1000:
            raise SimError(
                -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now - timestamp > recv_window:
            raise SimError(-1021, "Timestamp for this request is outside of the recvWindow.")


def _error(status: int, code: int, msg: str) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


def _read_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _write_state(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
