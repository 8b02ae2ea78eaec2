"""The service end to end on a real nats-server: vectors, trading flow, bad input, restarts."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.builders import SHARED
from tests.integration.harness import API_KEY, OffsetClock, wait_for, world
from titan_exec.core.model import OrderStatus
from titan_exec.core.state import state_hash

pytestmark = pytest.mark.integration

VECTORS = json.loads((SHARED / "contract" / "hmac-vectors.json").read_text())["vectors"]


async def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """GET in a thread: the service's HTTP server runs on this test's event loop."""
    return await asyncio.to_thread(_http_get, url, headers)


def _http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if body.startswith(b"{") else body
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def test_typescript_vector_is_executed_end_to_end(service_nats: Any, tmp_path: Path) -> None:
    vector = VECTORS[0]  # basic-buy: BUY_SETUP 0.1 BTC/USDT limit 50000
    clock = OffsetClock(vector["ts"] + 50)
    async with world(service_nats.url, tmp_path, clock=clock) as w:
        w.feed.move("BTC/USDT", Decimal("49990"))  # ask below the limit: marketable
        await w.feed.publish_all()
        events: list[tuple[str, dict[str, Any]]] = []

        async def on_event(msg: Any) -> None:
            events.append((msg.subject, json.loads(msg.data)))

        sub = await w.nc.subscribe("titan.evt.exec.>", cb=on_event)
        seq = await w.publish_raw(
            vector["envelope_wire"].encode(),
            subject="titan.cmd.exec.place.v1.sim.main.BTC_USDT",
            msg_id="sig-1",
        )
        await w.decided(seq)
        await wait_for(
            lambda: any(
                s.startswith("titan.evt.exec.fill.v1.sim.main.BTC_USDT") for s, _ in events
            ),
            "fill event",
        )
        await sub.unsubscribe()
        kinds = [doc["payload"].get("event") for _, doc in events if "payload" in doc]
        assert "intent.decided" in kinds
        assert "order.accepted" in kinds and "order.submitted" in kinds
        fill = next(doc for s, doc in events if ".fill.v1." in s)
        assert fill["type"] == "titan.event.execution.fill.v1"
        p = fill["payload"]
        assert p["signalId"] == "sig-1" and p["side"] == "BUY" and p["qty"] == "0.1"
        # a marketable limit fills at the book (the ask), not at its limit
        _, ask = w.feed.quote("BTC/USDT")
        assert Decimal(p["price"]) == ask < Decimal("50000") and isinstance(p["fee"], str)
        for key in (
            "fillId",
            "tSignal",
            "tIngress",
            "tDecision",
            "tAck",
            "tExchange",
            "clientOrderId",
            "executionId",
            "status",
            "timestamp",
            "feeCurrency",
        ):
            assert key in p
        assert p["dexProof"] is None
        status, body = await http_get(f"{w.http_url}/positions", {"X-API-Key": API_KEY})
        assert status == 200
        pos = body["positions"]["BTC/USDT"]
        assert pos["side"] == "LONG" and pos["size"] == "0.1" and Decimal(pos["entry_price"]) == ask
        assert (await http_get(f"{w.http_url}/positions"))[0] == 401


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
async def test_every_vector_passes_the_signature_gate(
    service_nats: Any, tmp_path: Path, vector: dict[str, Any]
) -> None:
    async with world(service_nats.url, tmp_path, clock=OffsetClock(vector["ts"] + 10)) as w:
        seq = await w.publish_raw(
            vector["envelope_wire"].encode(),
            subject="titan.cmd.exec.place.v1.sim.main.BTC_USDT",
            msg_id=vector["name"],
        )
        await w.decided(seq)
        dlq = await w.dead_letters()
        assert dlq.get(seq, {}).get("code") != "hmac_signature_mismatch"


async def test_trading_flow_pyramid_reduce_flip_close(
    service_nats: Any, tmp_path: Path, backend: dict[str, Any]
) -> None:
    async with world(
        service_nats.url,
        tmp_path,
        **backend,
        **{"venue.paper.fill_slices": 3, "venue.paper.slice_interval_ms": 30},
    ) as w:
        b, svc = w.brain, w.svc
        trades: list[dict[str, Any]] = []

        async def on_trade(msg: Any) -> None:
            trades.append(json.loads(msg.data))

        sub = await w.nc.subscribe("titan.evt.analysis.trade_completed.v1", cb=on_trade)

        async def trade(sid: str, type_: str, size: str) -> None:
            ack = await b.place(b.intent(sid, "BTC/USDT", type_, size))
            await w.decided(ack.seq)
            coids = svc.state.accepted_signals[sid]
            await wait_for(
                lambda: all(svc.state.orders[c].status is OrderStatus.FILLED for c in coids),
                f"{sid} filled",
            )

        await trade("open", "BUY_SETUP", "0.2")
        await trade("pyramid", "BUY_SETUP", "0.1")
        assert svc.state.position("sim", "BTC/USDT").qty == Decimal("0.3")
        await trade("reduce", "CLOSE_LONG", "0.1")
        assert svc.state.position("sim", "BTC/USDT").qty == Decimal("0.2")
        await trade("flip", "SELL_SETUP", "0.5")
        assert svc.state.position("sim", "BTC/USDT").qty == Decimal("-0.3")
        await trade("close", "CLOSE", "0.3")
        assert svc.state.position("sim", "BTC/USDT").is_flat
        await wait_for(lambda: len(trades) == 2, "two trade records")
        await sub.unsubscribe()
        assert [t["payload"]["close_reason"] for t in trades] == ["OPPOSITE_FILL", "MANUAL"]
        assert trades[0]["payload"]["side"] == "LONG" and trades[1]["payload"]["side"] == "SHORT"
        # three slices per order: partial fills arrived over time
        fills = await w.stream_messages("TITAN_EVT", "titan.evt.exec.fill.v1.>")
        statuses = [json.loads(m.data)["payload"]["status"] for m in fills]
        assert statuses.count("PARTIALLY_FILLED") >= 5


async def test_limit_order_is_canceled_at_its_ttl(
    service_nats: Any, tmp_path: Path, backend: dict[str, Any]
) -> None:
    async with world(service_nats.url, tmp_path, **backend, **{"orders.ttl_ms": 400}) as w:
        ack = await w.brain.place(w.brain.intent("lim", "ETH/USDT", "BUY_SETUP", "1", entry="2000"))
        await w.decided(ack.seq)
        coid = w.svc.state.accepted_signals["lim"][0]
        await wait_for(lambda: w.svc.state.orders[coid].status is OrderStatus.EXPIRED, "expiry", 5)
        assert w.inst.venue.query_order  # venue agrees:
        report = await w.inst.venue.query_order("ETH/USDT", coid)
        assert report is not None and report.status == "CANCELED"


async def test_bad_input_gets_its_reason_and_the_next_intent_executes(
    service_nats: Any, tmp_path: Path, backend: dict[str, Any]
) -> None:
    async with world(service_nats.url, tmp_path, **backend) as w:
        b = w.brain
        good = b.intent("ok-1", "BTC/USDT", "BUY_SETUP", "0.01")
        cases: list[tuple[str, bytes, str]] = [
            ("not-json", b"{nope", "invalid_envelope"),
            ("bad-utf8", b'{"type":"\xff\xfe"}', "invalid_envelope"),
            ("missing-fields", b.envelope({"signal_id": "x"}), "schema_invalid"),
            ("one-mib", b'{"x":"' + b"a" * (1024 * 1024) + b'"}', "invalid_envelope"),
            ("deep", b"[" * 5000 + b"]" * 5000, "invalid_envelope"),
            (
                "wrong-signature",
                b.envelope(b.intent("bad-sig", "BTC/USDT", "BUY_SETUP", "0.01"), secret=b"wrong"),
                "hmac_signature_mismatch",
            ),
            (
                "expired",
                b.envelope(
                    b.intent("old", "BTC/USDT", "BUY_SETUP", "0.01", t_signal=b.clock() - 6000)
                ),
                "intent_expired",
            ),
            (
                "unknown-symbol",
                b.envelope(b.intent("doge", "DOGE/USDT", "BUY_SETUP", "1")),
                "risk_rejection",
            ),
            (
                "size-zero",
                b.envelope(b.intent("zero", "BTC/USDT", "BUY_SETUP", "0")),
                "risk_rejection",
            ),
            (
                "size-negative",
                b.envelope(b.intent("neg", "BTC/USDT", "BUY_SETUP", "-1")),
                "risk_rejection",
            ),
            ("nan", b.envelope(good).replace(b'"size":0.01', b'"size":NaN'), "invalid_envelope"),
            (
                "infinity",
                b.envelope(good).replace(b'"size":0.01', b'"size":1e999'),
                "invalid_envelope",
            ),
            (
                "mistyped",
                b.envelope({**good, "signal_id": "typed", "size": "0.01"}),
                "schema_invalid",
            ),
        ]
        nonce = "ab" * 16
        first = b.envelope(b.intent("nonce-1", "BTC/USDT", "BUY_SETUP", "0.01"), nonce=nonce)
        seq_first = await w.publish_raw(first, msg_id="nonce-1")
        await w.decided(seq_first)
        cases.append(
            (
                "replayed-nonce",
                b.envelope(b.intent("nonce-2", "BTC/USDT", "BUY_SETUP", "0.01"), nonce=nonce),
                "nonce_replayed",
            )
        )
        seqs = {}
        for name, data, _ in cases:
            subject = (
                b.place_subject("DOGE/USDT")
                if name == "unknown-symbol"
                else b.place_subject("BTC/USDT")
            )
            seqs[name] = await w.publish_raw(data, subject=subject, msg_id=f"case-{name}")
        good_ack = await b.place(good)
        await w.decided(good_ack.seq)
        for name in seqs:
            await w.decided(seqs[name])
        await w.svc.events.drain()  # type: ignore[union-attr]
        dlq = await w.dead_letters()
        for name, _, code in cases:
            entry = dlq.get(seqs[name])
            assert entry is not None, f"{name}: no dead letter"
            assert entry["code"] == code, f"{name}: {entry}"
            assert entry["reason"], name
            assert "t_ingress" in entry and ("payload" in entry)
        # the original bytes are kept: invalid UTF-8 as base64
        assert dlq[seqs["bad-utf8"]]["payload_b64"]
        # never an order for a bad input; the good one executes
        orders = {o.signal_id for o in w.svc.state.orders.values()}
        assert orders == {"nonce-1", "ok-1"}
        telemetry = [
            json.loads(m.data)
            for m in await w.stream_messages("TITAN_EVT", "titan.evt.exec.reject.v1")
        ]
        assert {t["reason"] for t in telemetry} >= {"hmac_signature_mismatch", "nonce_replayed"}
        assert all(t["event_type"] == "execution.intent.rejected" for t in telemetry)


async def test_state_and_switches_survive_a_restart(
    service_nats: Any, tmp_path: Path, backend: dict[str, Any]
) -> None:
    async with world(service_nats.url, tmp_path, **backend) as w:
        ack = await w.brain.place(w.brain.intent("keep", "SOL/USDT", "BUY_SETUP", "2"))
        await w.decided(ack.seq)
        coid = w.svc.state.accepted_signals["keep"][0]
        await wait_for(lambda: w.svc.state.orders[coid].status is OrderStatus.FILLED, "fill")
        await w.brain.control("halt", reason="test")
        await wait_for(lambda: w.svc.state.is_halted, "halt")
        await w.svc.events.drain()  # type: ignore[union-attr]
        before = state_hash(w.svc.state)
        position = w.svc.state.position("sim", "SOL/USDT")
    async with world(service_nats.url, tmp_path, **backend) as w2:
        assert w2.svc.state.is_halted
        assert state_hash(w2.svc.state) == before
        assert w2.svc.state.position("sim", "SOL/USDT") == position
        ack = await w2.brain.place(w2.brain.intent("after", "SOL/USDT", "BUY_SETUP", "1"))
        await w2.decided(ack.seq)
        assert "after" not in w2.svc.state.accepted_signals  # halted: dropped
        await w2.brain.control("open")
        await wait_for(lambda: not w2.svc.state.is_halted, "open")


async def test_flatten_closes_every_position(
    service_nats: Any, tmp_path: Path, backend: dict[str, Any]
) -> None:
    async with world(service_nats.url, tmp_path, **backend) as w:
        for sid, symbol, kind, size in [
            ("f1", "BTC/USDT", "BUY_SETUP", "0.1"),
            ("f2", "ETH/USDT", "SELL_SETUP", "1"),
        ]:
            ack = await w.brain.place(w.brain.intent(sid, symbol, kind, size))
            await w.decided(ack.seq)

        # both orders filled in full first: a flatten while an order is still filling sizes
        # its closing orders on the position of that moment (a known limit, see the README)
        def filled() -> int:
            mine = [o for o in w.svc.state.orders.values() if o.signal_id in {"f1", "f2"}]
            return sum(o.status is OrderStatus.FILLED for o in mine)

        await wait_for(lambda: filled() == 2, "both orders filled")
        await w.brain.control("flatten", reason="test")
        await wait_for(lambda: all(p.is_flat for p in w.svc.state.positions.values()), "flat")
        venue_positions = await w.inst.venue.positions()
        assert all(p.qty == 0 for p in venue_positions)


async def test_rpcs_and_admin_endpoints(
    service_nats: Any, tmp_path: Path, backend: dict[str, Any]
) -> None:
    async with world(service_nats.url, tmp_path, **backend) as w:
        reply = await w.nc.request("titan.req.exec.policy_hash.v1", b"{}", timeout=2)
        assert json.loads(reply.data)["policy_hash"] == (
            "7ff820b56b12d89d64dcb78a261a8062087cde3bc3d47e03e11037a4de354a7d"
        )
        reply = await w.nc.request("titan.rpc.exec.get_positions.v1.sim", b"{}", timeout=2)
        assert json.loads(reply.data)["positions"] == []
        reply = await w.nc.request("titan.rpc.exec.get_balances.v1.sim", b"{}", timeout=2)
        [usdt] = [b for b in json.loads(reply.data)["balances"] if b["currency"] == "USDT"]
        assert Decimal(usdt["total"]) > 0
        assert (await http_get(f"{w.http_url}/health"))[0] == 200
        assert await http_get(f"{w.http_url}/ready") == (
            200,
            {"ready": True, "reason": "ok", "role": "active", "epoch": w.svc.epoch},
        )
        status, doc = await http_get(f"{w.http_url}/status", {"X-API-Key": API_KEY})
        assert status == 200 and doc["is_armed"] is True and len(doc["state_hash"]) == 64
        code, metrics = await http_get(f"{w.http_url}/metrics")
        assert code == 200 and b"titan_exec_commands_total" in metrics


async def test_commands_for_several_symbols_are_decided_concurrently(
    service_nats: Any, tmp_path: Path
) -> None:
    """A slow venue on one symbol does not hold back another symbol's intents."""
    async with world(service_nats.url, tmp_path) as w:
        venue = w.inst.venue
        real_place = venue.place

        async def slow_for_btc(req: Any) -> Any:
            if req.symbol == "BTC/USDT":
                await asyncio.sleep(1.5)
            return await real_place(req)

        venue.place = slow_for_btc  # type: ignore[method-assign]
        slow = await w.brain.place(w.brain.intent("slow", "BTC/USDT", "BUY_SETUP", "0.01"))
        fast = await w.brain.place(w.brain.intent("fast", "ETH/USDT", "BUY_SETUP", "0.1"))
        await w.decided(fast.seq)
        coid = w.svc.state.accepted_signals["fast"][0]
        await wait_for(
            lambda: w.svc.state.orders[coid].status is OrderStatus.FILLED, "fast fill", 1.2
        )
        slow_coid = w.svc.state.accepted_signals["slow"][0]
        assert w.svc.state.orders[slow_coid].status is OrderStatus.SUBMITTED
        await wait_for(lambda: w.svc.state.orders[slow_coid].status is OrderStatus.FILLED, "slow")
        assert slow.seq < fast.seq


async def test_a_replayed_control_command_is_refused_even_after_a_restart(
    service_nats: Any, tmp_path: Path
) -> None:
    """A replayed signed arm is refused (nonce_replayed); a replayed halt is a halt without a
    valid signature, and that may only reduce risk: it halts (core/controls.py)."""
    async with world(service_nats.url, tmp_path) as w:
        await w.brain.control("disarm")
        await wait_for(lambda: not w.svc.state.is_armed, "disarm")
        arm = w.brain.envelope({"action": "arm", "reason": "x"}, kind="control")
        seq = await w.publish_raw(arm, subject="titan.cmd.exec.control.v1.arm", msg_id="a1")
        await w.decided(seq)
        assert w.svc.state.is_armed
        await w.brain.control("disarm")
        await wait_for(lambda: not w.svc.state.is_armed, "disarm")
        halt = w.brain.envelope({"action": "halt", "reason": "x"}, kind="control")
        seq = await w.publish_raw(halt, subject="titan.cmd.exec.control.v1.halt", msg_id="h1")
        await w.decided(seq)
        await w.brain.control("open")
        await wait_for(lambda: not w.svc.state.is_halted, "open")
    async with world(service_nats.url, tmp_path) as w2:
        seq = await w2.publish_raw(arm, subject="titan.cmd.exec.control.v1.arm", msg_id="a2")
        await w2.decided(seq)
        assert not w2.svc.state.is_armed
        await w2.svc.events.drain()  # type: ignore[union-attr]
        assert (await w2.dead_letters())[seq]["code"] == "nonce_replayed"
        seq = await w2.publish_raw(halt, subject="titan.cmd.exec.control.v1.halt", msg_id="h2")
        await w2.decided(seq)
        assert w2.svc.state.is_halted


async def test_a_failed_event_publish_stops_the_instance_and_a_restart_loses_nothing(
    service_nats: Any, tmp_path: Path
) -> None:
    quick = {"consumer.ack_wait_s": 2}
    async with world(service_nats.url, tmp_path, **quick) as w:
        log = w.svc.events
        assert log is not None

        async def refuse(*_a: Any, **_k: Any) -> Any:
            raise ConnectionError("JetStream unavailable")

        log._publisher.publish = refuse  # type: ignore[method-assign]
        ack = await w.brain.place(w.brain.intent("lost-decision", "BTC/USDT", "BUY_SETUP", "0.01"))
        await wait_for(lambda: w.svc.health.fatal is not None, "fatal stop")
        assert "event log broken" in (w.svc.health.fatal or "")
        ready, why = w.svc.is_ready()
        assert not ready and "broken" in why
        assert w.inst.venue.place_count == 0  # the write-ahead never became durable: no order
    async with world(service_nats.url, tmp_path, **quick) as w2:
        # the command was never acknowledged: it is redelivered and decided exactly once
        await w2.decided(ack.seq, timeout_s=10)
        coid = w2.svc.state.accepted_signals.get("lost-decision")
        assert coid is not None
        await wait_for(lambda: w2.svc.state.orders[coid[0]].status is OrderStatus.FILLED, "fill")
        assert w2.inst.venue.place_count == 1
        decisions = [
            m
            for m in await w2.stream_messages("TITAN_EVT", "titan.evt.exec.decision.v1.>")
            if json.loads(m.data)["payload"]["cmdSeq"] == ack.seq
        ]
        assert len(decisions) == 1
