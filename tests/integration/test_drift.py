"""Drift detection (issue 6, done-when 1): a standby whose state was corrupted behind its
back raises the drift alarm at the first checkpoint after the corruption, names the first
differing position, is refused automatic promotion, and rebuilds to the active's hash."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import make_config, wait_for, world
from titan_exec.core.model import OrderStatus
from titan_exec.core.state import state_hash
from titan_exec.runtime.app import RunningInstance
from titan_exec.runtime.node import Node

pytestmark = pytest.mark.integration

HA = {"ha.enabled": True, "ha.lease_ms": 1000, "truth.interval_ms": 300}
KEY = ("sim", "BTC/USDT")


def corrupt_position(svc: Node, key: tuple[str, str], dqty: Decimal) -> None:
    """The test-only hook: change a standby's position in place, as a bug in its fold or
    a flipped bit would, without any event."""
    pos = svc.state.positions[key]
    svc.state.positions[key] = replace(pos, qty=pos.qty + dqty)


def backup_config(url: str, tmp_path: Path, timers: dict[str, Any]) -> Any:
    """The standby of the pair under test (its own state dir, same lease and timers)."""
    return make_config(
        url,
        tmp_path / "b",
        **HA,
        **timers,
        **{"service.instance_id": "backup", "service.mode": "standby"},
    )


async def trade(w: Any, n: int, tag: str = "s") -> None:
    for i in range(n):
        ack = await w.brain.place(w.brain.intent(f"{tag}{i}", "BTC/USDT", "BUY_SETUP", "0.1"))
        await w.decided(ack.seq)
    await wait_for(
        lambda: all(o.status is OrderStatus.FILLED for o in w.svc.state.orders.values()), "fills"
    )


async def checkpoint_seqs(w: Any) -> list[int]:
    msgs = await w.stream_messages("TITAN_EVT", "titan.evt.exec.checkpoint.v1.>")
    return [int(m.metadata.sequence.stream) for m in msgs]


async def test_a_corrupted_standby_alarms_at_the_next_checkpoint_and_rebuilds_to_equal_hashes(
    service_nats: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    timers = {"snapshots.every_ms": 1000, "snapshots.every_events": 10_000}
    async with world(
        service_nats.url, tmp_path / "a", **HA, **timers, **{"service.instance_id": "primary"}
    ) as w:
        await wait_for(lambda: w.svc.role == "active", "primary elected", 10)
        drift_events: list[dict[str, Any]] = []

        async def on_drift(msg: Any) -> None:
            drift_events.append(json.loads(msg.data))

        await w.nc.subscribe("titan.sys.exec.drift.v1.>", cb=on_drift)
        cfg_b = backup_config(service_nats.url, tmp_path, timers)
        async with RunningInstance(cfg_b, venue=w.inst.venue) as b:
            assert b.service is not None
            backup = b.service
            await trade(w, 2)
            await wait_for(lambda: backup.drift.matched >= 2, "two matched checkpoints", 10)
            assert not backup.drift.has_alarm

            with caplog.at_level(logging.ERROR, logger="titan_exec"):
                corrupted_at = backup.stream_seq
                matched_before = backup.drift.matched
                corrupt_position(backup, KEY, Decimal("0.5"))
                await wait_for(lambda: backup.drift.last_alarm is not None, "drift alarm", 5)
                assert backup.drift.has_alarm
                # the very next checkpoint caught it: none matched in between
                assert backup.drift.matched == matched_before
                alarm = backup.drift.last_alarm
                assert alarm is not None
                after = [s for s in await checkpoint_seqs(w) if s > corrupted_at]
                assert alarm["watermark_seq"] == after[0]
                first = alarm["differences"][0]
                assert (first["section"], first["key"], first["field"]) == (
                    "position",
                    "sim:BTC/USDT",
                    "qty",
                )
                assert (first["mine"], first["active"]) == ("0.7", "0.2")
                # the election heard it (the leadership core blocks a campaign on it)
                assert backup.ha is not None and backup.ha.state is not None
                await wait_for(lambda: backup.ha.state.has_drift_alarm, "election told", 2)  # type: ignore[union-attr]
                metrics = backup.metrics.render().decode()
                assert "titan_exec_drift_detected_total 1.0" in metrics
            line = next(
                r.getMessage() for r in caplog.records if "drift at checkpoint" in r.getMessage()
            )
            assert "position sim:BTC/USDT qty mine=0.7 active=0.2" in line
            assert "ineligible for automatic promotion" in line
            await wait_for(lambda: bool(drift_events), "drift event")
            assert drift_events[0]["instance_id"] == "backup"
            assert drift_events[0]["differences"][0]["key"] == "sim:BTC/USDT"

            # the rebuild (from the last snapshot it matched, plus the stream) restores the
            # active's state; the next checkpoint matches and clears the alarm
            await wait_for(lambda: not backup.drift.has_alarm, "alarm cleared", 10)
            assert backup.drift.rebuilds == 1 and not backup.drift.is_persistent
            assert backup.health.snapshot_seq > 0  # rebuilt from a snapshot, not from seq 1
            await trade(w, 1, "after")
            await w.svc.events.drain()  # type: ignore[union-attr]
            await wait_for(lambda: backup.stream_seq >= w.svc.stream_seq, "backup caught up")
            assert state_hash(backup.state) == state_hash(w.svc.state)
            assert backup.state.position(*KEY).qty == Decimal("0.3")
            assert "titan_exec_drift_alarm 0.0" in backup.metrics.render().decode()


async def test_a_drifted_standby_is_refused_automatic_promotion(
    service_nats: Any, tmp_path: Path
) -> None:
    manual = {"snapshots.every_ms": 3_600_000, "snapshots.every_events": 1_000_000}
    async with world(
        service_nats.url, tmp_path / "a", **HA, **manual, **{"service.instance_id": "primary"}
    ) as w:
        await wait_for(lambda: w.svc.role == "active", "primary elected", 10)
        cfg_b = backup_config(service_nats.url, tmp_path, manual)
        async with RunningInstance(cfg_b, venue=w.inst.venue) as b:
            assert b.service is not None
            backup = b.service
            await trade(w, 1)
            assert w.checkpoints is not None
            await w.checkpoints.write()
            await wait_for(lambda: backup.drift.matched == 1, "matched checkpoint")
            corrupt_position(backup, KEY, Decimal("-0.1"))
            await w.checkpoints.write()
            await wait_for(lambda: backup.drift.has_alarm, "drift alarm")
            # the active goes away (a planned stop releases the lease): no checkpoint can
            # clear the alarm, so the standby must not take the free lease by itself
            await w.svc.stop()
            await asyncio.sleep(3.0)  # three leases
            assert backup.role == "standby" and backup.drift.has_alarm
            assert backup.ha is not None and backup.ha.role == "standby"
            # an operator may still promote it (ineligible for *automatic* promotion only)
            ok, answer = backup.request_promote()
            assert ok and "despite the drift alarm" in answer, answer
            await wait_for(lambda: backup.role == "active", "promoted by the operator", 10)


async def test_when_the_active_drifted_the_standby_says_so_and_does_not_rebuild_in_a_loop(
    service_nats: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The active's own state is wrong (its fold, not the stream): the standby alarms,
    rebuilds from the stream once, still differs at the next checkpoint, and then keeps
    the alarm with `suspect: active` instead of copying the active's snapshot."""
    manual = {"snapshots.every_ms": 3_600_000, "snapshots.every_events": 1_000_000}
    async with world(
        service_nats.url, tmp_path / "a", **HA, **manual, **{"service.instance_id": "primary"}
    ) as w:
        await wait_for(lambda: w.svc.role == "active", "primary elected", 10)
        cfg_b = backup_config(service_nats.url, tmp_path, manual)
        async with RunningInstance(cfg_b, venue=w.inst.venue) as b:
            assert b.service is not None and w.checkpoints is not None
            backup = b.service
            await trade(w, 1)
            await w.checkpoints.write()
            await wait_for(lambda: backup.drift.matched == 1, "matched checkpoint")
            corrupt_position(w.svc, KEY, Decimal("1"))  # the active's fold is wrong now
            with caplog.at_level(logging.ERROR, logger="titan_exec"):
                await w.checkpoints.write()
                await wait_for(lambda: backup.drift.rebuilds == 1, "first alarm and rebuild")
                await w.checkpoints.write()
                await wait_for(lambda: backup.drift.is_persistent, "persistent drift")
            assert backup.drift.has_alarm and backup.drift.rebuilds == 1
            assert backup.drift.last_alarm is not None
            assert backup.drift.last_alarm["suspect"] == "active"
            assert any(
                r.levelno == logging.CRITICAL and "suspect the active" in r.getMessage()
                for r in caplog.records
            )
            # the standby kept the stream's truth, not the active's corrupt position
            assert backup.state.position(*KEY).qty == Decimal("0.1")
