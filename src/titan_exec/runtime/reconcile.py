"""Continuous venue reconciliation on the active: the shell around `core/reconcile.py`.

Three leader tasks, started beside the order tracker and cancelled with it:

- open orders, every `reconcile.open_orders_interval_ms`: one `open_orders(symbol)` per
  symbol with an open order or a position of ours, then `query_order` only for the orders
  that differ; a terminal venue status becomes the lifecycle event through the runner.
- positions, every `reconcile.positions_interval_ms` (sooner when a difference is due for
  confirmation): `positions(symbols)` against our state. A difference first forces a trade
  poll of its symbol (late or foreign trades come in as fills); one that outlasts
  `reconcile.position_confirm_ms` is corrected with a `PositionReconciled` event (fenced,
  through the event log) when the rules allow it.
- balances, every `reconcile.balances_interval_ms`: reported only (gauge, telemetry).

Each loop's interval stretches with the venue account's request-weight budget (when the
venue keeps one, `adapters/venue/budget.py`) and a pass waits for it (the minute's share
spent, a 429's Retry-After) before it starts: reconciliation gives way to order writes.

Differences go out as telemetry on `titan.sys.<ns>.reconcile.v1.<instance_id>` (core NATS:
`titan.evt.<ns>.>` carries fenced state only) and as metrics. A pass that fails is counted
(`titan_exec_reconcile_runs_total{kind,outcome="error"}`) and the loop goes on; a failing
venue call skips its symbol or order, never the pass, and never changes an order. A broken
event log is not swallowed: it ends the task, and the service takes its known path.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from titan_exec.adapters.nats.eventlog import EventLogBroken
from titan_exec.adapters.venue.base import VenueError
from titan_exec.adapters.venue.budget import budget_of
from titan_exec.api.metrics import Metrics
from titan_exec.config import ReconcileConfig
from titan_exec.core.model import ZERO
from titan_exec.core.orders import Order
from titan_exec.core.reconcile import (
    AppendLifecycle,
    Difference,
    NoChange,
    OrderFinding,
    PositionFinding,
    PositionPass,
    PositionRules,
    ReportFinding,
    RequestTtlCancel,
    compare_open_orders,
    compare_positions,
    differing_symbols,
    explained_by_fills,
    query_outcome,
)
from titan_exec.core.reports import PositionReport
from titan_exec.runtime.orders import OrderRunner
from titan_exec.wire.decimals import plain_or_none

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], Awaitable[None]]

MIN_SLEEP_MS = 10


@dataclass(frozen=True, slots=True)
class PassResult:
    errors: int = 0
    """Venue calls that failed in this pass (each skipped its symbol or order)."""
    wake_at_ms: int | None = None
    """Run again at this time when sooner than the interval."""


def _dec(value: Decimal | None) -> str | None:
    return plain_or_none(value)


def base_interval_ms(venue: object, cfg: ReconcileConfig, kind: str, interval_ms: int) -> int:
    """The open-orders pass runs `open_orders_streaming_interval_ms` apart while the venue
    pushes its order updates (a user-data stream running): the pass is then the safety net,
    not how a change is learned (20 symbols every 2 s would cost 600 of Binance's 2400
    weight a minute)."""
    if kind == "open_orders" and getattr(venue, "is_streaming", False):
        return max(interval_ms, cfg.open_orders_streaming_interval_ms)
    return interval_ms


class VenueReconciler:
    def __init__(
        self,
        *,
        runner: OrderRunner,
        metrics: Metrics,
        cfg: ReconcileConfig,
        subject: str,
        publish: Publish,
        clock: Callable[[], int],
    ) -> None:
        self.runner = runner
        self.metrics = metrics
        self.cfg = cfg
        self.subject = subject
        self._publish = publish
        self.clock = clock
        self.rules = PositionRules(
            confirm_ms=cfg.position_confirm_ms, is_authoritative=cfg.positions_authoritative
        )
        self.pending: dict[str, Difference] = {}
        """Position differences being watched, by symbol."""
        self._reported_orders: set[tuple[str, str, str]] = set()
        """(kind, symbol, client order id) of order differences reported and still there."""
        self._balances: dict[str, Decimal] = {}

    @property
    def venue_name(self) -> str:
        return self.runner.venue.name

    # --- loops ------------------------------------------------------------------------------

    async def run_open_orders(self) -> None:
        await self._loop("open_orders", self.cfg.open_orders_interval_ms, self.open_orders_pass)

    async def run_positions(self) -> None:
        await self._loop("positions", self.cfg.positions_interval_ms, self.positions_pass)

    async def run_balances(self) -> None:
        await self._loop("balances", self.cfg.balances_interval_ms, self.balances_pass)

    async def _loop(
        self, kind: str, interval_ms: int, one_pass: Callable[[], Awaitable[PassResult]]
    ) -> None:
        next_ms = self.clock() + interval_ms
        while True:
            await asyncio.sleep(max(next_ms - self.clock(), MIN_SLEEP_MS) / 1000)
            await self._budget_wait(kind)
            started = self.clock()
            try:
                result = await one_pass()
            except (asyncio.CancelledError, EventLogBroken):
                raise
            except Exception as err:  # counted, logged, tried again next interval
                log.warning(
                    "reconcile %s: pass failed (%r); next in %d ms",
                    kind,
                    err,
                    interval_ms,
                    exc_info=not isinstance(err, VenueError | TimeoutError),  # a bug: show it
                )
                result = PassResult(errors=1)
            outcome = "error" if result.errors else "ok"
            self.metrics.reconcile_runs.labels(kind, outcome).inc()
            next_ms = started + self.interval_ms(
                base_interval_ms(self.runner.venue, self.cfg, kind, interval_ms)
            )
            if result.wake_at_ms is not None:
                next_ms = min(next_ms, result.wake_at_ms)

    def interval_ms(self, base_ms: int) -> int:
        """A loop's interval, stretched by the venue account's weight budget."""
        budget = budget_of(self.runner.venue)
        return base_ms if budget is None else budget.interval_ms(base_ms, self.clock())

    async def _budget_wait(self, kind: str) -> None:
        budget = budget_of(self.runner.venue)
        wait_ms = 0 if budget is None else budget.read_wait_ms(self.clock())
        if budget is not None and wait_ms > 0:
            budget.note_waited("stretched")
            log.info("reconcile %s: waits %d ms for the venue's request weight", kind, wait_ms)
            await asyncio.sleep(wait_ms / 1000)

    # --- open orders ------------------------------------------------------------------------

    async def open_orders_pass(self) -> PassResult:
        venue = self.runner.venue
        state = self.runner.state
        symbols = {o.symbol for o in state.iter_open_orders() if o.venue == venue.name} | {
            sym for (v, sym), pos in state.positions.items() if v == venue.name and not pos.is_flat
        }
        errors = 0
        present: set[tuple[str, str, str]] = set()
        for symbol in sorted(symbols):
            try:
                listed = await self.runner.venue_call("open_orders", venue.open_orders(symbol))
            except Exception as err:  # this symbol is skipped; nothing changes
                errors += 1
                log.warning("reconcile open orders: %s listing failed (%r); skipped", symbol, err)
                present |= {k for k in self._reported_orders if k[1] == symbol}
                continue
            state = self.runner.state
            ours_open = [
                o for o in state.iter_open_orders() if o.venue == venue.name and o.symbol == symbol
            ]
            decision = compare_open_orders(orders=state.orders, ours_open=ours_open, listed=listed)
            for finding in decision.findings:
                await self._order_finding(finding, present)
            for coid in decision.to_query:
                errors += await self._query(self.runner.state.orders[coid], present)
        self._reported_orders &= present
        return PassResult(errors=errors)

    async def _query(self, order: Order, present: set[tuple[str, str, str]]) -> int:
        """Ask the venue about one order that differs; 1 when the query failed (skipped)."""
        coid = order.client_order_id
        try:
            report = await self.runner.venue_call(
                "query", self.runner.venue.query_order(order.symbol, coid)
            )
        except Exception as err:  # this order is skipped; it stays as it is
            log.warning("reconcile open orders: query of %s failed (%r); skipped", coid, err)
            return 1
        outcome = query_outcome(self.runner.state.orders[coid], report, self.clock())
        match outcome:
            case AppendLifecycle(event=ev):
                log.info(
                    "reconcile open orders: %s is %s at the venue: %s",
                    coid,
                    report.status if report else "?",
                    type(ev).__name__,
                )
                self.metrics.reconcile_differences.labels("order_closed_at_venue").inc()
                await self.runner.append_lifecycle(ev)
            case RequestTtlCancel():
                log.info("reconcile open orders: %s is past its time-to-live: cancel", coid)
                self.runner.request_cancel(coid, "ttl")
            case ReportFinding(finding=finding):
                await self._order_finding(finding, present)
            case NoChange(reason=reason):
                log.debug("reconcile open orders: %s", reason)
        return 0

    async def _order_finding(self, f: OrderFinding, present: set[tuple[str, str, str]]) -> None:
        key = (f.kind, f.symbol, f.client_order_id)
        present.add(key)
        if key in self._reported_orders:
            return  # reported when first seen
        self._reported_orders.add(key)
        self.metrics.reconcile_differences.labels(f.kind).inc()
        if f.is_critical:
            log.critical("reconcile open orders: %s", f.reason)
        else:
            log.warning("reconcile open orders: %s", f.reason)
        await self._telemetry(
            {
                "kind": f.kind,
                "venue": self.venue_name,
                "symbol": f.symbol,
                "client_order_id": f.client_order_id,
                "ours": None,
                "venue_value": f.venue_status,
                "first_seen_ms": self.clock(),
                "action": "report",
                "is_critical": f.is_critical,
                "reason": f.reason,
            }
        )

    # --- positions --------------------------------------------------------------------------

    def _decide(self, reports: list[PositionReport]) -> PositionPass:
        state = self.runner.state
        name = self.venue_name
        return compare_positions(
            venue=name,
            ours={sym: pos.qty for (v, sym), pos in state.positions.items() if v == name},
            reports=reports,
            open_symbols=frozenset(sym for (v, sym), c in state.open_orders.items() if v == name),
            pending=self.pending,
            now_ms=self.clock(),
            rules=self.rules,
        )

    async def positions_pass(self) -> PassResult:
        name = self.venue_name
        symbols = frozenset(sym for (v, sym) in self.runner.state.positions if v == name)
        reports = await self.runner.venue_call("positions", self.runner.venue.positions(symbols))
        first = self._decide(reports)
        differing = differing_symbols(first)
        explained: tuple[str, ...] = ()
        if differing:
            # trades of these symbols may be on their way, ours or someone else's
            polled = self.runner.polled_symbols()
            for symbol in differing:
                self.runner.watch_symbol(symbol)
            try:
                await self.runner.poll_fills()
            except EventLogBroken:
                raise
            except Exception as err:
                log.warning("reconcile positions: forced fill poll failed (%r)", err)
            decision = self._decide(reports)
            explained = explained_by_fills(first, decision, polled)
        else:
            decision = first
        # correct first: the decision was made on the state as it is now (no await since)
        pending_writes = [self.runner.events.append([ev]) for ev in decision.corrections]
        self.pending = dict(decision.pending)
        for symbol in decision.matched:
            self.metrics.position_difference.labels(name, symbol).set(0)
        for symbol in explained:
            await self._explained_by_fills(symbol, first)
        for finding in decision.findings:
            await self._position_finding(finding)
        for fut in pending_writes:
            await fut
        return PassResult(wake_at_ms=decision.next_check_ms)

    async def _explained_by_fills(self, symbol: str, first: PositionPass) -> None:
        before = next(f for f in first.findings if f.symbol == symbol)
        self.metrics.reconcile_differences.labels("position").inc()
        log.warning(
            "reconcile positions: %s %s: venue %s, ours %s; the trades were found by a fill "
            "poll and recorded (trades behind our back)",
            self.venue_name,
            symbol,
            before.venue_qty,
            before.ours,
        )
        await self._telemetry(self._position_doc(before, action="recorded_fills"))

    async def _position_finding(self, f: PositionFinding) -> None:
        name = self.venue_name
        if f.venue_qty is not None:
            # a gauge, not money: the difference as the operator's graph shows it
            self.metrics.position_difference.labels(name, f.symbol).set(float(f.venue_qty - f.ours))
        if f.action == "correct":
            self.metrics.position_corrections.labels(name).inc()
            log.warning("reconcile positions: %s %s corrected: %s", name, f.symbol, f.reason)
            await self._telemetry(self._position_doc(f, action=f.action))
            return
        if not f.is_new:
            log.debug("reconcile positions: %s %s: %s", name, f.symbol, f.reason)
            return
        kind = "position_unreported" if f.action == "unreported" else "position"
        self.metrics.reconcile_differences.labels(kind).inc()
        log.warning("reconcile positions: %s %s: %s", name, f.symbol, f.reason)
        await self._telemetry(self._position_doc(f, action=f.action, kind=kind))

    def _position_doc(
        self, f: PositionFinding, *, action: str, kind: str = "position"
    ) -> dict[str, Any]:
        return {
            "kind": kind,
            "venue": self.venue_name,
            "symbol": f.symbol,
            "ours": _dec(f.ours),
            "venue_value": _dec(f.venue_qty),
            "first_seen_ms": f.first_seen_ms,
            "action": action,
            "reason": f.reason,
        }

    # --- balances ---------------------------------------------------------------------------

    async def balances_pass(self) -> PassResult:
        reports = await self.runner.venue_call("balances", self.runner.venue.balances())
        balances = {b.currency: b.total for b in reports}
        now = self.clock()
        for asset, total in sorted(balances.items()):
            if total == ZERO and asset not in self._balances:
                continue
            self.metrics.venue_balance.labels(self.venue_name, asset).set(float(total))
            before = self._balances.get(asset)
            change = None if before is None else total - before
            await self._telemetry(
                {
                    "kind": "balance",
                    "venue": self.venue_name,
                    "symbol": asset,
                    "ours": None,
                    "venue_value": _dec(total),
                    "change": _dec(change),
                    "first_seen_ms": now,
                    "action": "report",
                }
            )
        self._balances = dict(balances)
        return PassResult()

    # --- telemetry --------------------------------------------------------------------------

    async def _telemetry(self, doc: dict[str, Any]) -> None:
        """Best effort: the log line and the metric already have it."""
        doc = {**doc, "ts": self.clock()}
        try:
            await self._publish(self.subject, json.dumps(doc).encode())
        except Exception as err:
            log.warning("reconcile telemetry not published (%r)", err)
