"""The ccxt venue's user-data stream: fills pushed by the venue, REST only to fill gaps.

This module owns `UserStream`, one private ccxt.pro client per venue account (Binance
USDⓈ-M: ``POST /fapi/v1/listenKey``, then the websocket ``/private/ws?listenKey=K``) kept
open by a ``watch_orders`` loop. Every raw message is read by this module (a hook on the
client's ``handle_message``: the raw strings, never ccxt's floats) into typed reports
(`ccxt_userevents`):

- ``ORDER_TRADE_UPDATE`` with ``x`` = TRADE → a `FillReport`, buffered until the next
  `fills_since`; every update → the order's latest `OrderReport` (`orders`, kept for later
  use: the driver learns statuses by query);
- ``ACCOUNT_UPDATE`` → the non-flat positions (their symbols are swept too);
- ``listenKeyExpired`` → the key is forgotten (the next connect asks for one) and a sweep.

`fills_since` returns the buffered fills, plus a REST sweep (`ccxt_trades.TradeCursor`,
deduplicated by trade id across stream and REST) when `ccxt_userevents.SweepTimer` says one
is due: a new session (cursor None), every (re)connect, ``listenKeyExpired``, a keepalive
failure or any stream error, a malformed event, a stream silent for `stream_silence_ms`
while orders are open (the watchdog: see `ccxt_userevents`), and every `sweep_interval_ms`.
A silent-stream sweep that finds trades the stream never delivered closes the connection
(`stats["gaps"]`): the loop reconnects and sweeps again.

The listen key belongs to the account and is shared by both instances of the pair. It is
never deleted: ccxt.pro 4.5.90 never calls ``DELETE listenKey`` (not on ``close``, not
after a failed keepalive, where it only forgets the key), and neither does this module.
After any stream error the key is forgotten locally, so the next connect POSTs, which
answers the account's current key while it is valid (a takeover reuses the stream) and a
new one once it expired. The stream starts at the first `fills_since` / `wait_activity`,
which only the leader's order driver calls: a standby never opens it.

Bad input, each counted in `stats` and logged: ``malformed`` (unreadable event, a sweep
follows), ``unknown_symbol``, ``foreign_order`` (a fill of an order not ours: reported, the
core decides), ``duplicate_stream`` (an event sent twice), ``duplicate_rest`` (a trade the
REST sweep also returned), ``out_of_order`` (an open status after a final one: the status is
ignored, a new trade in it is still reported), ``keepalive_failed`` (→ new key + sweep).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import ccxt.pro as ccxt_pro  # type: ignore[import-untyped]
from ccxt.base import errors as cx  # type: ignore[import-untyped]

from titan_exec.adapters.venue.budget import WeightBudget
from titan_exec.adapters.venue.ccxt_setup import CcxtSettings, make_client, tls_context
from titan_exec.adapters.venue.ccxt_userbook import StreamBook
from titan_exec.adapters.venue.ccxt_userevents import (
    MalformedEvent,
    SweepTimer,
)
from titan_exec.adapters.venue.ccxt_weights import instrument
from titan_exec.clock import wall_clock_ms
from titan_exec.core.model import ClientOrderId
from titan_exec.core.reports import FillReport, OrderReport

if TYPE_CHECKING:
    from titan_exec.adapters.venue.ccxt_trades import TradeCursor
    from titan_exec.adapters.venue.ccxt_venue import CcxtVenue

log = logging.getLogger(__name__)

STREAM_VENUES = frozenset({"binanceusdm"})
"""ccxt ids whose user-data events this module reads (Binance USDⓈ-M's field names)."""
READ_HERE_ONLY = frozenset({"ORDER_TRADE_UPDATE"})
"""Events this module reads in full and ccxt's parse is skipped for: it only fills ccxt's
order and trade caches, which nobody reads here (``watch_orders`` just keeps the socket
subscribed), and it costs about 1 ms of the event loop per event, between the fill and
its event reaching the stream."""
IDLE_STOP_MS = 30_000
"""The stream closes when no `fills_since` / `wait_activity` came for this long (the
leader's driver calls them every poll interval)."""
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
STAT_NAMES = (
    "events",
    "fills",
    "order_updates",
    "connects",
    "errors",
    "sweeps",
    "symbol_sweeps",
    "gaps",
    "order_gaps",
    "position_gaps",
    "malformed",
    "unknown_symbol",
    "foreign_order",
    "duplicate_stream",
    "duplicate_rest",
    "out_of_order",
    "listen_key_expired",
    "keepalive_failed",
    "idle_stops",
)


def _hooked(cls: Any) -> Any:
    class Hooked(cls):  # type: ignore[misc]
        """ccxt.pro's client with the raw messages and connects handed to the stream."""

        stream: UserStream | None = None

        def handle_message(self, client: Any, message: Any) -> Any:
            if self.stream is not None:
                self.stream.on_message(message)
                if isinstance(message, Mapping) and message.get("e") in READ_HERE_ONLY:
                    return None
            try:
                return super().handle_message(client, message)
            except Exception as err:  # ccxt's own parse: never let it kill the socket
                log.warning("%s user stream: ccxt could not parse %r: %r", self.id, message, err)
                return None

        def on_connected(self, client: Any, message: Any = None) -> Any:
            result = super().on_connected(client, message)
            if self.stream is not None and "listenKey" in str(client.url):
                self.stream.on_connected()
            return result

    return Hooked


def _private_client(s: CcxtSettings, stream: UserStream, budget: WeightBudget) -> Any:
    """ccxt.pro's client of `s` (its ws URLs rebased like REST), hooked to `stream`."""
    cls = _hooked(getattr(ccxt_pro, s.exchange_id))
    options = {"fetchCurrencies": False, "fetchMargins": False, **dict(s.options)}
    client = make_client(cls, s, options)
    # ccxt's ping/pong keepalive closes a dead connection within two periods
    client.streaming = {**client.streaming, "keepAlive": max(1000, s.stream_silence_ms // 2)}
    client.stream = stream
    # its REST calls (listen key, markets) are the account's weight too
    instrument(client, budget, exchange_id=s.exchange_id, is_writer=False, clock=wall_clock_ms)
    return client


def _built(stream: UserStream) -> Any:
    """`stream`'s private client with the REST client's markets (no second exchangeInfo
    call): tens of ms of Python, more on a busy machine, so it is built in a thread (it
    binds no event loop before its first request), never on the loop, where it stalled a
    takeover's first moments past the lease watchdog's limit."""
    client = _private_client(stream._settings, stream, stream._venue.budget)
    venue = stream._venue.exchange
    client.ssl_context = getattr(venue, "ssl_context", None) or tls_context(client)
    try:
        if venue.markets:
            client.set_markets(venue.markets, venue.currencies)
    except Exception as err:
        log.warning("%s user stream: markets not shared (%r): loading its own", stream.name, err)
    return client


class UserStream:
    def __init__(
        self,
        venue: CcxtVenue,
        settings: CcxtSettings,
        *,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._venue = venue
        self._settings = settings
        self._clock = clock
        self.timer = SweepTimer(settings.stream_silence_ms, settings.sweep_interval_ms)
        self.stats: Counter[str] = Counter({name: 0 for name in STAT_NAMES})
        self.book = StreamBook(venue, self.stats, self._fill_buffered, self.suspect)
        self.fill_listener: Callable[[], None] | None = None
        """Called from the read loop (synchronous) when a fill is buffered: the leader's
        driver takes it at once (`CcxtVenue.take_pushed_fills`); what it leaves waits for
        the next `fills`."""
        self._activity: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self._closing: set[asyncio.Future[Any]] = set()
        self._covered: set[str] = set()
        """Canonical symbols swept since the last full sweep (a (re)connect's, ...)."""
        self._last_attempt_ms = 0
        self._last_used_ms = 0
        self._idle_task: asyncio.Task[None] | None = None
        self._suspects: set[str] = set()
        """Symbols a REST answer showed the stream lost trades of (swept next)."""
        self._key_forgotten = True
        """Set when this module dropped ccxt's cached key; ccxt drops it itself only when a
        keepalive fails (that is how a refused keepalive is told from other errors)."""
        self.is_connected = False

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Open the stream if it is not open (the first `fills_since` / `wait_activity`
        calls it: only the leader's driver calls those)."""
        self._last_used_ms = self._clock()
        if self._task is not None:
            return
        self._activity = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"user-stream-{self._venue.name}")
        self._idle_task = asyncio.create_task(self._idle_watch(), name="user-stream-idle")

    async def close(self) -> None:
        """Stop reading; the listen key is left alone (the pair shares it)."""
        idle, self._idle_task = self._idle_task, None
        if idle is not None and idle is not asyncio.current_task():
            idle.cancel()
            await asyncio.gather(idle, return_exceptions=True)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None
        self.is_connected = False
        self._covered = set()  # reopened: every symbol is swept again

    async def _idle_watch(self) -> None:
        """A stream nobody reads for `IDLE_STOP_MS` is closed — an instance that stood
        down (its fills would pile up unread); the next `fills_since` opens it again."""
        while True:
            await asyncio.sleep(IDLE_STOP_MS / 4000)
            idle_ms = self._clock() - self._last_used_ms
            if idle_ms >= IDLE_STOP_MS:
                self.stats["idle_stops"] += 1
                log.info("%s user stream: not read for %d ms: closed", self.name, idle_ms)
                await self.close()
                return

    async def _run(self) -> None:
        self._client = client = await asyncio.to_thread(_built, self)
        delay = RETRY_FIRST_S
        while True:
            try:
                await client.watch_orders()
                delay = RETRY_FIRST_S
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                self._on_error(cx.NetworkError("the watch was cancelled by ccxt"))
                await asyncio.sleep(delay)
            except Exception as err:
                self._on_error(err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _on_error(self, err: Exception) -> None:
        self.is_connected = False
        self.stats["errors"] += 1
        cached = (self._client.options.get("linear") or {}).get("listenKey")
        if cached is None and not self._key_forgotten:
            # ccxt forgets the key when a keepalive (PUT) fails: the key was refused
            self.stats["keepalive_failed"] += 1
            log.warning("%s user stream: keepalive failed (%r): new key, sweep", self.name, err)
        else:
            log.warning("%s user stream: %r; reconnecting (key kept on the venue)", self.name, err)
        self._forget_key()
        self._discard_sockets()
        self._request_sweep("stream-error")

    def _discard_sockets(self) -> None:
        """Close and forget ccxt's private connections (a refused keepalive leaves the old
        one open): the next watch dials afresh with the key it gets."""
        clients = self._client.clients
        for url, ws in list(clients.items()):
            if "listenKey" in str(url):
                del clients[url]
                if not ws.closed():
                    task = asyncio.ensure_future(ws.close())
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)

    def _forget_key(self) -> None:
        """The next connect POSTs: the venue answers the account's valid key, or a new one."""
        if self._client is None:
            return
        self._key_forgotten = True
        self._client.options["linear"] = {
            **(self._client.options.get("linear") or {}),
            "listenKey": None,
            "lastAuthenticatedTime": 0,
        }

    @property
    def name(self) -> str:
        return self._venue.name

    # --- the hook (called by ccxt's read loop: synchronous, no I/O) -----------------------

    def on_connected(self) -> None:
        self.is_connected = True
        self._key_forgotten = False
        self.stats["connects"] += 1
        log.info("%s user stream: connected; sweeping for what it may have missed", self.name)
        self._request_sweep("connect")

    def on_message(self, message: Any) -> None:
        self.stats["events"] += 1
        self.timer.on_event(self._clock())
        if not isinstance(message, Mapping):
            self._malformed(message, "not an object")
            return
        event = message.get("e")
        try:
            if event == "ORDER_TRADE_UPDATE":
                self.book.on_order_update(message)
            elif event == "ACCOUNT_UPDATE":
                self.book.on_positions(message)
            elif event == "listenKeyExpired":
                self.stats["listen_key_expired"] += 1
                log.warning("%s user stream: listen key expired: new key, sweep", self.name)
                self._forget_key()
                self._request_sweep("expired")
        except MalformedEvent as err:
            self._malformed(message, str(err))

    def _malformed(self, message: Any, why: str) -> None:
        self.stats["malformed"] += 1
        log.warning("%s user stream: malformed event (%s): %.300r; sweep", self.name, why, message)
        self._request_sweep("malformed")

    def suspect(self, symbol: str, reason: str) -> None:
        """Trades of `symbol` may be missing: it is swept with the next sweep, now due."""
        if symbol not in self._suspects:
            log.info("%s user stream: %s on %s: sweep", self.name, reason, symbol)
        self._suspects.add(symbol)
        self.stats[reason.replace("-", "_") + "s"] += 1
        self._request_sweep(reason)

    def _request_sweep(self, reason: str) -> None:
        self.timer.request(reason)
        self._wake()

    def _fill_buffered(self) -> None:
        listener = self.fill_listener
        if listener is not None:
            try:
                listener()
            except Exception:  # never into ccxt's read loop: the fill waits in the buffer
                log.exception("%s user stream: the fill listener failed", self.name)
        if self.book.buffer:
            self._wake()

    def _wake(self) -> None:
        if self._activity is not None:
            self._activity.set()

    # --- what the venue asks --------------------------------------------------------------

    @property
    def orders(self) -> OrderedDict[ClientOrderId, OrderReport]:
        """The latest update of each order seen on the stream (for later use)."""
        return self.book.orders

    def position_symbols(self) -> frozenset[str]:
        return self.book.position_symbols()

    async def wait(self, timeout_s: float) -> None:
        """Until something happened since the last return — a fill pushed, a sweep
        requested (a (re)connect, an expiry, a deferred new symbol) — at most `timeout_s`.
        Edge-triggered like the paper venue: fills still buffered while the driver's poll
        is in flight wake it once, not in a loop. A sweep that is due waits for the rest of
        the poll interval since the last attempt (a failing sweep is no tight loop)."""
        self.start()
        assert self._activity is not None
        if self.timer.pending and not self.book.buffer:
            since_ms = self._clock() - self._last_attempt_ms
            rest_s = max(0.0, (self._settings.poll_interval_ms - since_ms) / 1000)
            timeout_s = min(timeout_s, rest_s)
        try:
            async with asyncio.timeout(timeout_s):
                await self._activity.wait()
        except TimeoutError:
            return
        self._activity.clear()

    def sweep_due(self, *, has_open_orders: bool) -> str | None:
        return self.timer.due(self._clock(), has_open_orders=has_open_orders)

    def swept(self, reason: str, swept_fills: list[FillReport], skipped: list[str]) -> None:
        """The sweep for `reason` found `swept_fills` new trades and skipped the known
        trade ids `skipped`; a silent stream that missed trades is reconnected."""
        self.stats["sweeps"] += 1
        self.timer.swept(self._clock(), reason)
        for tid in skipped:
            if tid in self.book.seen:
                self.stats["duplicate_rest"] += 1
        if swept_fills and self.is_connected and "silent" in reason.split(","):
            self.stats["gaps"] += 1
            log.warning(
                "%s user stream: silent, but REST has %d trade(s) it never delivered: reconnecting",
                self.name,
                len(swept_fills),
            )
            self._reconnect()

    def _reconnect(self) -> None:
        client = self._client
        for ws in list((client.clients if client is not None else {}).values()):
            if "listenKey" in str(ws.url) and not ws.closed():
                # rejects the watch with this error and closes the socket (1006)
                ws.on_error(cx.NetworkError("user stream silent while trades happened"))

    async def fills(
        self, trades: TradeCursor, cursor: str | None, symbols: frozenset[str] | None
    ) -> tuple[list[FillReport], str | None]:
        """The buffered fills, plus a REST sweep when one is due: of `symbols` and the
        non-flat positions (`SweepTimer`'s reasons), or of the symbols in `symbols` not
        swept since the last such sweep (a new order's symbol, one reconciliation watches:
        deferred to the next call while pushed fills wait). The cursor is the sweep's,
        unchanged without one."""
        self.start()
        if cursor is None:
            self.timer.request("session")
        reason, target = _sweep_plan(self, symbols)
        swept: list[FillReport] = []
        new_cursor = cursor
        if reason is not None:
            self._last_attempt_ms = self._clock()
            swept, new_cursor = await trades.fills_since(cursor, target)
            log.info("%s: REST sweep (%s): %d new trade(s)", self.name, reason, len(swept))
            missed = [f for f in swept if f.trade_id not in self.book.seen]
            if reason == "new-symbols":
                assert target is not None
                self._covered |= target
                self.stats["symbol_sweeps"] += 1
            else:
                self._covered = (
                    set(target)
                    if target is not None
                    else {self._venue.canonical(m) for m in trades.symbols}
                )
                self.swept(reason, missed, trades.skipped)
                self._suspects.clear()
        ids = {f.trade_id for f in swept}
        out = list(swept)
        for fill in self.book.take_fills():
            if fill.trade_id in ids:
                self.stats["duplicate_rest"] += 1
                continue
            out.append(fill)
        return out, new_cursor


def _sweep_plan(
    stream: UserStream, symbols: frozenset[str] | None
) -> tuple[str | None, frozenset[str] | None]:
    """The sweep `UserStream.fills` makes now: (reason, symbols; None: all), or no sweep
    (None, None). A due sweep covers `symbols`, the non-flat positions and the suspects;
    else symbols not covered yet are swept alone, once no pushed fill waits."""
    reason = stream.sweep_due(has_open_orders=bool(symbols))
    if reason is not None:
        if symbols is None:
            return reason, None
        return reason, symbols | stream.book.position_symbols() | frozenset(stream._suspects)
    fresh = (symbols or frozenset()) - stream._covered
    if fresh and stream.book.buffer:
        stream._wake()  # the pushed fills first; the next call sweeps
    elif fresh:
        return "new-symbols", frozenset(fresh)
    return None, None
