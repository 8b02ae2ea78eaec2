"""Continuous venue reconciliation on the active, against the venue simulator through the
ccxt venue (the production path): positions changed behind the service's back, network
errors while polling, orders canceled at the venue.

Each test runs a real nats-server and the simulator on free ports under `tmp_path`; the
"someone else" is ccxt's own `binanceusdm` client on the same simulator account (a desk
trading by hand, another system sharing the account).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]
import pytest

from tests.integration.harness import World, wait_for, world
from titan_exec.core.model import ClientOrderId, OrderStatus
from titan_exec_lab.sim.ccxt_client import ccxt_config
from titan_exec_lab.sim.server import VenueSim
from titan_exec_lab.verify.facts import stream_net_positions
from titan_exec_lab.verify.read import RawMsg

pytestmark = pytest.mark.integration

POSITIONS_MS = 1000
OPEN_ORDERS_MS = 500
CONFIRM_MS = 500
SETTLE_MS = 1000
"""A pass's own venue calls, a forced fill poll and the event write, on a busy machine."""

RECON = {
    "orders.reconcile_interval_ms": 0,  # the harness sets the old name; use the new one
    "reconcile.open_orders_interval_ms": OPEN_ORDERS_MS,
    "reconcile.open_orders_streaming_interval_ms": OPEN_ORDERS_MS,
    "reconcile.positions_interval_ms": POSITIONS_MS,
    "reconcile.position_confirm_ms": CONFIRM_MS,
    "reconcile.balances_interval_ms": POSITIONS_MS,
}


@asynccontextmanager
async def desk(sim: VenueSim) -> AsyncIterator[Any]:
    """Someone else trading on the service's venue account, through ccxt."""
    exchange = ccxt_async.binanceusdm(
        ccxt_config(sim.url, sim.settings.api_key, sim.settings.api_secret, enableRateLimit=False)
    )
    try:
        await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


class Reports:
    """The reconcile telemetry of the active (`titan.sys.exec.reconcile.v1.<instance>`)."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.subjects: set[str] = set()

    async def on_msg(self, msg: Any) -> None:
        self.subjects.add(msg.subject)
        self.docs.append(json.loads(msg.data))

    def of(self, kind: str, symbol: str | None = None) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind and symbol in (None, d["symbol"])]


async def reports_of(w: World) -> Reports:
    reports = Reports()
    await w.nc.subscribe("titan.sys.exec.reconcile.v1.>", cb=reports.on_msg)
    return reports


def sample(w: World, name: str, **labels: str) -> float:
    value = w.svc.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def venue_position(exchange: Any, symbol: str) -> tuple[Decimal, Decimal]:
    """(signed qty, entry price) as the venue's positionRisk says, read as strings."""
    for p in await exchange.fetch_positions():
        if p["symbol"] == symbol:
            info = p["info"]
            return Decimal(info["positionAmt"]), Decimal(info["entryPrice"])
    return Decimal(0), Decimal(0)


async def order_events(w: World, coid: str) -> list[str]:
    msgs = await w.stream_messages("TITAN_EVT", "titan.evt.exec.order.v1.>")
    out = []
    for m in msgs:
        payload = json.loads(m.data)["payload"]
        if payload.get("clientOrderId") == coid:
            out.append(payload["event"])
    return out


async def resting_order(w: World, signal: str) -> ClientOrderId:
    """A limit buy far below the market: acknowledged and resting at the venue."""
    ack = await w.brain.place(w.brain.intent(signal, "ETH/USDT", "BUY_SETUP", "0.1", entry="2000"))
    await w.decided(ack.seq)
    coid = w.svc.state.accepted_signals[signal][0]
    await wait_for(lambda: w.svc.state.orders[coid].status is OrderStatus.ACKNOWLEDGED, "ack")
    return coid


# --- done-when: a position changed behind the service's back ---------------------------------


async def test_a_position_changed_behind_our_back_is_reported_within_the_interval(
    service_nats: Any, tmp_path: Path, venue_sim: VenueSim
) -> None:
    """A manual market order with a foreign client id on a symbol the service does not
    poll: the positions pass sees the venue's SOL position, reports it, and the fill poll it
    forces records the foreign trades, so our state equals the venue's."""
    async with world(service_nats.url, tmp_path, sim=venue_sim, **RECON) as w, desk(venue_sim) as x:
        reports = await reports_of(w)
        assert w.svc.state.position("sim", "SOL/USDT").is_flat
        venue_sim.faults.update({"user_silent": True})  # the user-data stream misses them too
        await x.create_order(
            "SOL/USDT:USDT", "market", "buy", 2, None, {"newClientOrderId": "desk-1"}
        )
        placed = time.monotonic()
        await wait_for(lambda: bool(reports.of("position", "SOL/USDT")), "report", 10)
        elapsed_ms = (time.monotonic() - placed) * 1000
        assert elapsed_ms <= POSITIONS_MS + SETTLE_MS, elapsed_ms
        first = reports.of("position", "SOL/USDT")[0]
        assert first["venue"] == "sim" and first["ours"] == "0"
        assert Decimal(first["venue_value"]) > 0
        assert first["action"] in ("recorded_fills", "confirming")
        assert reports.subjects == {"titan.sys.exec.reconcile.v1.primary"}
        assert sample(w, "titan_exec_reconcile_differences_total", kind="position") >= 1
        # the state then equals the venue: the foreign trades came in as fills
        venue_qty, venue_entry = await venue_position(x, "SOL/USDT:USDT")
        assert venue_qty == Decimal(2)
        await wait_for(
            lambda: w.svc.state.position("sim", "SOL/USDT").qty == venue_qty, "state = venue", 5
        )
        pos = w.svc.state.position("sim", "SOL/USDT")
        assert pos.avg_entry == venue_entry
        assert w.svc.state.anomalies >= 1  # fills of an order that is not ours
        assert w.svc.state.reconciliations == 0  # the fills explained it: nothing to correct
        await asyncio.sleep((POSITIONS_MS + 200) / 1000)  # the next pass agrees
        assert sample(w, "titan_exec_position_difference", venue="sim", symbol="SOL/USDT") == 0


async def test_a_position_the_fills_cannot_explain_is_corrected_from_the_venue_report(
    service_nats: Any, tmp_path: Path, venue_sim: VenueSim
) -> None:
    """The foreign trades stay invisible to trade queries (the simulator's `invisible_ms`)
    while the venue's position report shows them: reported at once, then, after the confirm
    time, a fenced `PositionReconciled` sets our position to the venue's."""
    async with world(service_nats.url, tmp_path, sim=venue_sim, **RECON) as w, desk(venue_sim) as x:
        reports = await reports_of(w)
        venue_sim.faults.update({"invisible_ms": 120_000, "user_silent": True})
        await x.create_order(
            "BNB/USDT:USDT", "market", "sell", 1, None, {"newClientOrderId": "desk-2"}
        )
        venue_sim.faults.update({"invisible_ms": 0})  # only that order is hidden
        placed = time.monotonic()
        await wait_for(lambda: bool(reports.of("position", "BNB/USDT")), "report", 10)
        assert (time.monotonic() - placed) * 1000 <= POSITIONS_MS + SETTLE_MS
        await wait_for(lambda: w.svc.state.reconciliations == 1, "correction", 10)
        corrected_after_ms = (time.monotonic() - placed) * 1000
        assert corrected_after_ms <= POSITIONS_MS + CONFIRM_MS + 2 * SETTLE_MS, corrected_after_ms
        venue_qty, venue_entry = await venue_position(x, "BNB/USDT:USDT")
        assert venue_qty == Decimal(-1)
        pos = w.svc.state.position("sim", "BNB/USDT")
        assert (pos.qty, pos.avg_entry) == (venue_qty, venue_entry)
        actions = [d["action"] for d in reports.of("position", "BNB/USDT")]
        assert actions[0] == "confirming" and actions[-1] == "correct", actions
        assert sample(w, "titan_exec_position_corrections_total", venue="sim") == 1
        # one state event, fenced like every other, that an independent fold agrees with
        msgs = await w.stream_messages("TITAN_EVT", "titan.evt.exec.position.v1.>")
        [msg] = msgs
        assert msg.subject == "titan.evt.exec.position.v1.sim.main.BNB_USDT"
        assert msg.headers["Nats-Expected-Last-Subject-Sequence-Subject"].startswith(
            "titan.evt.exec.epoch.v1."
        )
        payload = json.loads(msg.data)["payload"]
        assert (Decimal(payload["qtyBefore"]), Decimal(payload["qtyAfter"])) == (0, -1)
        raw = await w.stream_messages("TITAN_EVT", "titan.evt.exec.>")
        net = stream_net_positions(
            [RawMsg(m.metadata.sequence.stream, m.subject, m.headers or {}, m.data) for m in raw]
        )
        assert net.get("BNBUSDT") == Decimal(-1)
        # nothing more to correct once ours equals the venue's
        await asyncio.sleep((POSITIONS_MS + CONFIRM_MS) / 1000)
        assert w.svc.state.reconciliations == 1


# --- network errors while polling ------------------------------------------------------------


async def test_network_errors_while_polling_never_fail_a_live_order(
    service_nats: Any, tmp_path: Path, venue_sim: VenueSim
) -> None:
    """Every signed request errors for 3 s (open orders, order queries, trades, positions,
    balances): passes fail and are counted; the resting order stays open here and there."""
    async with world(service_nats.url, tmp_path, sim=venue_sim, **RECON) as w:
        coid = await resting_order(w, "rest")
        await wait_for(
            lambda: (
                sample(w, "titan_exec_reconcile_runs_total", kind="positions", outcome="ok") >= 1
            ),
            "a clean positions pass first",
            5,
        )
        venue_sim.faults.update({"error_next": 1_000_000, "error_scope": "private"})
        await asyncio.sleep(3.0)
        failed = {
            kind: sample(w, "titan_exec_reconcile_runs_total", kind=kind, outcome="error")
            for kind in ("open_orders", "positions", "balances")
        }
        venue_sim.faults.reset()
        assert all(n >= 1 for n in failed.values()), failed
        assert any(
            f["fault"] == "error" and "openOrders" in f["path"] for f in venue_sim.faults.log
        )
        assert any(
            f["fault"] == "error" and "positionRisk" in f["path"] for f in venue_sim.faults.log
        )
        ok_before = sample(w, "titan_exec_reconcile_runs_total", kind="open_orders", outcome="ok")
        await wait_for(
            lambda: (
                sample(w, "titan_exec_reconcile_runs_total", kind="open_orders", outcome="ok")
                > ok_before
            ),
            "a clean open-orders pass",
            5,
        )
        order = w.svc.state.orders[coid]
        assert order.status is OrderStatus.ACKNOWLEDGED and order.is_open
        assert await order_events(w, coid) == [
            "order.accepted",
            "order.submitted",
            "order.acknowledged",
        ]
        [at_venue] = [o for o in venue_sim.inspect()["orders"] if o["clientOrderId"] == coid]
        assert at_venue["status"] == "NEW"
        assert w.svc.health.fatal is None and w.svc.role == "active"
        assert w.svc.state.reconciliations == 0


# --- an order canceled at the venue behind our back --------------------------------------------


async def test_an_order_canceled_at_the_venue_is_closed_within_the_open_orders_interval(
    service_nats: Any, tmp_path: Path, venue_sim: VenueSim
) -> None:
    async with world(service_nats.url, tmp_path, sim=venue_sim, **RECON) as w, desk(venue_sim) as x:
        reports = await reports_of(w)
        coid = await resting_order(w, "rest")
        # someone else's resting order on the same symbol: reported once, left alone
        await x.create_order(
            "ETH/USDT:USDT", "limit", "buy", 0.1, 2100, {"newClientOrderId": "desk-rest"}
        )
        await wait_for(lambda: bool(reports.of("foreign_order")), "foreign order report", 5)
        await asyncio.sleep(2 * OPEN_ORDERS_MS / 1000)  # more passes: not reported again
        [foreign] = reports.of("foreign_order")
        assert (foreign["client_order_id"], foreign["venue_value"]) == ("desk-rest", "NEW")
        assert foreign["is_critical"] is False
        assert sample(w, "titan_exec_reconcile_differences_total", kind="foreign_order") == 1
        await x.cancel_order(None, "ETH/USDT:USDT", {"origClientOrderId": coid})
        canceled = time.monotonic()
        await wait_for(
            lambda: w.svc.state.orders[coid].status is OrderStatus.CANCELED, "closed here", 5
        )
        elapsed_ms = (time.monotonic() - canceled) * 1000
        assert elapsed_ms <= OPEN_ORDERS_MS + SETTLE_MS, elapsed_ms
        assert w.svc.state.orders[coid].last_reason == "canceled at venue"
        assert (await order_events(w, coid))[-1] == "order.canceled"
        assert (
            sample(w, "titan_exec_reconcile_differences_total", kind="order_closed_at_venue") == 1
        )
        # the desk's order is still there: reconciliation never touches what is not ours
        [desk_order] = [
            o for o in venue_sim.inspect()["orders"] if o["clientOrderId"] == "desk-rest"
        ]
        assert desk_order["status"] == "NEW"
