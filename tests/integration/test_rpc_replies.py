"""The brain's requests answered by a running service in a Titan deployment's namespace
(`execution`), read as the upstream code reads them (`tests/upstream_readers.py`): the
policy-hash handshake on the brain's hard-coded `titan.req.exec.policy_hash.v1`, positions
per venue token, balances, and the truth snapshot."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import SECRET, wait_for, world
from tests.upstream_readers import BRAIN_HASH, equity, handshake, reconcile, truth_snapshot
from titan_exec_lab.harness.feeds import Brain

pytestmark = pytest.mark.integration

NS = {"service.namespace": "execution"}


async def answers(nc: Any, subject: str, wait_s: float = 0.3) -> list[dict[str, Any]]:
    """Every reply to one request (not only the first): one instance, one answer."""
    inbox = nc.new_inbox()
    got: list[dict[str, Any]] = []

    async def on_reply(msg: Any) -> None:
        got.append(json.loads(msg.data))

    sub = await nc.subscribe(inbox, cb=on_reply)
    await nc.publish(subject, b"{}", reply=inbox)
    await wait_for(lambda: bool(got), f"a reply on {subject}", 5)
    await asyncio.sleep(wait_s)
    await sub.unsubscribe()
    return got


async def test_the_brains_requests_in_the_execution_namespace(
    service_nats: Any, tmp_path: Path, backend: dict[str, Any]
) -> None:
    async with world(service_nats.url, tmp_path, **NS, **backend) as w:
        [reply] = await answers(w.nc, "titan.req.exec.policy_hash.v1")  # PolicyHandshake.ts:12
        assert handshake(reply, BRAIN_HASH) and isinstance(reply["timestamp"], int)
        [own] = await answers(w.nc, "titan.req.execution.policy_hash.v1")
        assert own["policy_hash"] == BRAIN_HASH

        brain = Brain(w.nc, secret=SECRET.encode(), ns="execution", clock=w.brain.clock)
        ack = await brain.place(brain.intent("rpc-1", "BTC/USDT", "BUY_SETUP", "0.1"))
        await w.decided(ack.seq)
        await wait_for(
            lambda: w.svc.state.position("sim", "BTC/USDT").qty == Decimal("0.1"), "fill"
        )

        ours = [{"symbol": "BTC/USDT", "side": "LONG", "size": 0.1, "exchange": "BINANCE"}]
        for token in (".sim", ".auto", ".main", ""):
            [doc] = await answers(w.nc, f"titan.rpc.execution.get_positions.v1{token}")
            [pos] = doc["positions"]
            assert (pos["symbol"], pos["side"], pos["size"], pos["exchange"]) == (
                "BTC/USDT",
                "LONG",
                "0.1",
                "sim",
            )
            assert "E" not in pos["entry_price"] and Decimal(pos["entry_price"]) > 0
            assert reconcile(ours, doc) == []  # ReconciliationService.compare: MATCH
        [other] = await answers(w.nc, "titan.rpc.execution.get_positions.v1.bybit")
        assert other["positions"] == []

        [balances] = await answers(w.nc, "titan.rpc.execution.get_balances.v1.main")
        usdt = next(b for b in balances["balances"] if b["currency"] == "USDT")
        assert set(usdt) == {"currency", "total", "available", "locked"}
        assert Decimal(equity(balances)) > 0 and "E" not in equity(balances)
        [sim] = await answers(w.nc, "titan.rpc.execution.get_balances.v1.sim")
        assert [b["currency"] for b in sim["balances"]] == [
            b["currency"] for b in balances["balances"]
        ]
        [wrong] = await answers(w.nc, "titan.rpc.execution.get_balances.v1.bybit")
        assert wrong["balances"] == [] and "unknown venue 'bybit'" in wrong["error"]
        assert equity(wrong) == 0

        truths: list[dict[str, Any]] = []

        async def on_truth(msg: Any) -> None:
            truths.append(json.loads(msg.data))

        sub = await w.nc.subscribe("titan.evt.execution.truth.v1", cb=on_truth)
        await wait_for(lambda: bool(truths), "a truth snapshot")
        await sub.unsubscribe()
        assert truth_snapshot(truths[0], BRAIN_HASH) == "ok"
        assert truths[0]["positions"]["BTC/USDT"]["size"] == "0.1"  # keyed by symbol, as before
