"""Several venues in one instance on a real nats-server: two paper venues (`[venues.<name>]`,
each its own account), intents routed by their `exchange` and subject token, one execution
driver and one reconciler per venue, positions and balances per venue, `/status` showing
both; and a stream written by an earlier single-venue build replays unchanged under the
new configuration shape."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.builders import FIXTURES
from tests.integration.harness import PRICES, make_config, wait_for, world
from tests.integration.test_rpc_replies import answers
from titan_exec.adapters.nats.connect import NatsSettings, connect
from titan_exec.adapters.nats.streams import ensure_streams
from titan_exec.core.model import OrderStatus
from titan_exec.core.state import state_hash
from titan_exec.runtime.app import RunningInstance
from titan_exec_lab.harness.feeds import TickerFeed

pytestmark = pytest.mark.integration

TWO_PAPER = {
    "routing.default": "sim",
    "venues.sim.kind": "paper",
    "venues.bybit.kind": "paper",
    "venues.bybit.account": "sub1",
}


async def test_one_instance_trades_on_two_venues_each_order_on_its_own(
    service_nats: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path, **TWO_PAPER) as w:
        feed = TickerFeed(w.nc, PRICES, venue="bybit", clock=w.brain.clock)
        await feed.publish_all()
        feed.start(0.2)
        try:
            await wait_for(lambda: ("bybit", "BTC/USDT") in w.svc.market.tickers, "bybit tickers")
            await trade_on_both(w)
        finally:
            await feed.stop()


async def trade_on_both(w: Any) -> None:
    svc, brain = w.svc, w.brain
    assert svc.venues.names == ("sim", "bybit")
    leader = svc.leader
    assert leader is not None and leader.drivers is not None
    assert set(leader.drivers.runners) == set(leader.reconcilers) == {"sim", "bybit"}
    assert leader.drivers.runners["bybit"].venue is svc.venues.get("bybit")

    on_sim = await brain.place(brain.intent("v-sim", "BTC/USDT", "BUY_SETUP", "0.1"))
    on_bybit = await brain.place(
        brain.intent("v-bybit", "BTC/USDT", "SELL_SETUP", "0.2", exchange="bybit")
    )
    nowhere = await brain.place(
        brain.intent("v-okx", "BTC/USDT", "BUY_SETUP", "0.1", exchange="okx")
    )
    for ack in (on_sim, on_bybit, nowhere):
        await w.decided(ack.seq)
    await wait_for(
        lambda: all(o.status is OrderStatus.FILLED for o in svc.state.orders.values()), "fills"
    )
    st = svc.state
    assert {(o.venue, o.account) for o in st.orders.values()} == {
        ("sim", "main"),
        ("bybit", "sub1"),
    }
    assert st.position("sim", "BTC/USDT").qty == Decimal("0.1")
    assert st.position("bybit", "BTC/USDT").qty == Decimal("-0.2")
    letters = await w.dead_letters()
    assert letters[nowhere.seq]["code"] == "unknown_venue"

    # each venue object holds its own orders: the bybit one traded only the bybit order
    bybit, sim = svc.venues.get("bybit"), svc.venues.get("sim")
    assert [(p.symbol, p.qty) for p in await bybit.positions() if p.qty] == [
        ("BTC/USDT", Decimal("-0.2"))
    ]
    assert [(p.symbol, p.qty) for p in await sim.positions() if p.qty] == [
        ("BTC/USDT", Decimal("0.1"))
    ]
    assert bybit.account == "sub1" and sim.account == "main"

    doc = svc.status_doc()
    assert doc["venue"] == "sim"
    assert doc["venues"]["bybit"]["account"] == "sub1"
    assert doc["venues"]["bybit"]["positions"] == {"BTC/USDT": "-0.2"}
    assert doc["venues"]["sim"]["is_default"] and not doc["venues"]["bybit"]["is_default"]
    assert doc["net_positions"] == {"bybit:BTC/USDT": "-0.2", "sim:BTC/USDT": "0.1"}
    assert set(svc.positions_doc()) == {"BTC/USDT", "bybit:BTC/USDT"}

    [positions] = await answers(w.nc, "titan.rpc.exec.get_positions.v1.bybit")
    assert [(p["exchange"], p["side"]) for p in positions["positions"]] == [("bybit", "SHORT")]
    [every] = await answers(w.nc, "titan.rpc.exec.get_positions.v1")
    assert sorted(p["exchange"] for p in every["positions"]) == ["bybit", "sim"]
    [balances] = await answers(w.nc, "titan.rpc.exec.get_balances.v1.bybit")
    assert balances.get("error") is None and balances["balances"]
    [wrong] = await answers(w.nc, "titan.rpc.exec.get_balances.v1.okx")
    assert "unknown venue 'okx'" in wrong["error"] and "'bybit'" in wrong["error"]

    # the flatten spans both venues
    ack = await brain.control("flatten", reason="both venues")
    await w.decided(ack.seq)
    await wait_for(lambda: not any(not p.is_flat for p in svc.state.positions.values()), "flat")
    assert all(not p.qty for p in await bybit.positions())


STREAM = FIXTURES / "streams" / "build-a7f0340.jsonl"


async def test_a_single_venue_stream_replays_unchanged_under_venue_tables(
    service_nats: Any, tmp_path: Path
) -> None:
    """The events of build a7f0340 (one venue, `sim`) published as it wrote them; a
    standby configured with `[venues.sim]` and `[venues.bybit]` folds them to the hash that
    build computed."""
    lines = STREAM.read_text().splitlines()
    header = json.loads(lines[0])
    nc = await connect(NatsSettings(urls=(service_nats.url,), name="pytest-old-stream"))
    try:
        js = nc.jetstream()
        await ensure_streams(js, replicas=1, duplicate_window_s=120)
        for line in lines[1:]:
            rec = json.loads(line)
            await js.publish(
                rec["subject"], rec["data"].encode(), headers={"Nats-Msg-Id": rec["msg_id"]}
            )
    finally:
        await nc.close()
    cfg = make_config(service_nats.url, tmp_path, **TWO_PAPER, **{"service.mode": "standby"})
    async with RunningInstance(cfg) as inst:
        svc = inst.service
        assert svc is not None
        await wait_for(lambda: svc.state.event_count >= header["events"], "the old stream")
        await asyncio.sleep(0.2)  # nothing more arrives
        assert state_hash(svc.state) == header["state_hash"]
        assert str(svc.state.position("sim", "ETH/USDT").qty) == "-0.03"
        assert svc.status_doc()["venues"]["sim"]["positions"] == {"ETH/USDT": "-0.03"}
