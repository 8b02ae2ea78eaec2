"""The service runs under the NATS permissions of `deploy/nats/permissions.conf`: a real
nats-server includes the file and gives the service that user; the brain, the feed and
the checks use another. The pair starts with lease election on: the primary leads, the
backup follows; the active reads the brain's risk state, decides an intent (placed and
filled), answers the brain's requests and writes checkpoints with their snapshots and a
purge, which the standby compares; and the server logs no permission violation. The user
can neither delete a stream nor publish a command."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import pytest
from nats.aio.client import Client

from tests.integration.harness import PRICES, SECRET, OffsetClock, make_config, wait_for
from titan_exec.adapters.nats.connect import NatsSettings, connect
from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.core.model import OrderStatus
from titan_exec.runtime.app import EMBEDDED_MAX_PAYLOAD, RunningInstance
from titan_exec.runtime.feeds import Brain, TickerFeed
from titan_exec.runtime.node import Node

pytestmark = pytest.mark.integration

PERMISSIONS = Path(__file__).resolve().parents[2] / "deploy/nats/permissions.conf"
VIOLATION = "Violation"  # nats-server: "Publish Violation", "Subscription Violation"


@pytest.fixture
async def secured_nats(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A server whose configuration includes the deploy file next to it, as a node would
    (`include permissions.conf`), with the service's user and an unrestricted one."""
    users = (
        "include permissions.conf\n"
        "authorization {\n  users = [\n"
        '    { user: execution, password: "exec-pw", permissions: $EXECUTION_PERMISSIONS }\n'
        '    { user: admin, password: "admin-pw" }\n'
        "  ]\n}\n"
    )
    server = EmbeddedNats(tmp_path / "nats", extra_config=EMBEDDED_MAX_PAYLOAD + users)
    server.nats_dir.mkdir(parents=True)
    shutil.copy(PERMISSIONS, server.nats_dir / "permissions.conf")
    await server.astart()
    try:
        yield server
    finally:
        await server.astop()


@pytest.fixture
async def admin(secured_nats: EmbeddedNats) -> AsyncIterator[Client]:
    nc = await connect(
        NatsSettings(
            urls=(secured_nats.url,), name="pytest-admin", user="admin", password="admin-pw"
        )
    )
    try:
        yield nc
    finally:
        await nc.close()


def violations(server: EmbeddedNats) -> list[str]:
    return [line for line in server.log_tail(1_000_000).splitlines() if VIOLATION in line]


def counted(svc: Node, result: str) -> float:
    value = svc.metrics.registry.get_sample_value(
        "titan_exec_checkpoints_total", {"result": result}
    )
    return float(value or 0)


async def test_the_pair_starts_leads_follows_and_decides_an_intent_under_its_permissions(
    secured_nats: EmbeddedNats, admin: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="titan_exec.runtime.checkpoint")
    clock = OffsetClock()
    settings = {
        "nats.user": "execution",
        "nats.password": "exec-pw",
        "service.namespace": "execution",
        "ha.enabled": True,
        "ha.lease_ms": 2000,
        "snapshots.every_events": 4,
        "snapshots.every_ms": 300,
        "snapshots.keep": 2,
        "retention.purge": True,
    }
    primary_cfg = make_config(secured_nats.url, tmp_path / "primary", **settings)
    backup_cfg = make_config(
        secured_nats.url,
        tmp_path / "backup",
        **settings,
        **{"service.instance_id": "backup", "service.mode": "standby"},
    )
    brain = Brain(admin, secret=SECRET.encode(), ns="execution", clock=clock)
    feed = TickerFeed(admin, PRICES, clock=clock)
    async with RunningInstance(primary_cfg, clock=clock) as primary:
        assert primary.service is not None
        svc = primary.service
        try:
            await brain.heartbeat()
            brain.start_heartbeats(0.5)
            await feed.publish_all()
            feed.start(0.2)
            async with RunningInstance(backup_cfg, clock=clock) as backup:
                assert backup.service is not None
                standby = backup.service
                await wait_for(lambda: svc.role == "active", "the primary to lead")
                await wait_for(lambda: standby.role == "standby", "the backup to follow")
                await wait_for(lambda: len(svc.market.tickers) >= 3, "tickers")
                await wait_for(lambda: svc.market.last_heartbeat_ms is not None, "heartbeat")
                # the brain's risk state, read by the active from TITAN_EVT
                state = await admin.jetstream().publish("titan.evt.risk.state.v1", b'"Normal"')
                await wait_for(lambda: svc.state.risk_state_seq >= state.seq, "the risk state")

                ack = await brain.place(brain.intent("perm-1", "BTC/USDT", "BUY_SETUP", "0.01"))
                await wait_for(lambda: svc.state.is_decided(ack.seq), "the decision")
                coids = svc.state.accepted_signals["perm-1"]
                orders = svc.state.orders
                await wait_for(
                    lambda: all(orders[c].status is OrderStatus.FILLED for c in coids), "fill"
                )
                # a refusal (dead letter, reject telemetry) and a full close (TradeRecord)
                bad = await brain.publish(brain.place_subject("BTC/USDT"), b"garbage", "perm-bad")
                close = brain.intent("perm-2", "BTC/USDT", "CLOSE_LONG", "0.01")
                closed = await brain.place(close)
                await wait_for(lambda: svc.state.is_decided(bad.seq), "the refusal")
                await wait_for(lambda: svc.state.is_decided(closed.seq), "the close")
                position = svc.state.position
                await wait_for(lambda: position("sim", "BTC/USDT").is_flat, "flat again")
                js = admin.jetstream()
                trade = "titan.evt.analysis.trade_completed.v1"
                info = await js.stream_info("TITAN_EVT", subjects_filter=trade)
                assert info.state.subjects == {trade: 1}  # published by the service
                assert (await js.stream_info("TITAN_DLQ")).state.messages == 1
                reply = await admin.request("titan.req.exec.policy_hash.v1", b"{}", timeout=5)
                assert json.loads(reply.data)["policy_hash"]
                positions = "titan.rpc.execution.get_positions.v1.sim"
                reply = await admin.request(positions, b"{}", timeout=5)
                assert "positions" in json.loads(reply.data)
                # checkpoints: snapshots written, the stream purged below the older one kept,
                # the standby comparing its state with the active's
                await wait_for(lambda: counted(svc, "written") >= 3, "three checkpoints", 20)
                await wait_for(lambda: counted(standby, "matched") >= 1, "a matched one", 20)
                await wait_for(lambda: standby.state.is_decided(ack.seq), "the standby's fold")
                assert standby.health.fatal is None
            # a restart of the standby loads the newest snapshot from the object store
            async with RunningInstance(backup_cfg, clock=clock) as again:
                assert again.service is not None
                restarted = again.service
                await wait_for(lambda: restarted.role == "standby", "the backup to follow again")
                assert restarted.health.snapshot_seq > 0 and restarted.health.fatal is None
        finally:
            await brain.stop()
            await feed.stop()
        assert svc.health.fatal is None and svc.role == "active"
    assert "event stream purged below seq" in caplog.text
    assert violations(secured_nats) == []


async def test_the_user_cannot_delete_a_stream_or_publish_a_command(
    secured_nats: EmbeddedNats, admin: Client
) -> None:
    await admin.jetstream().add_stream(name="TITAN_CMD", subjects=["titan.cmd.>"])
    nc = await connect(
        NatsSettings(
            urls=(secured_nats.url,), name="pytest-exec", user="execution", password="exec-pw"
        )
    )
    try:
        with pytest.raises(nats.errors.TimeoutError):  # refused: the request never arrives
            await nc.jetstream(timeout=1).delete_stream("TITAN_CMD")
        await nc.publish("titan.cmd.execution.place.v1.sim.main.BTC_USDT", b"forged")
        await nc.flush()
        await asyncio.sleep(0.2)
    finally:
        await nc.close()
    assert (await admin.jetstream().stream_info("TITAN_CMD")).state.messages == 0
    logged = " ".join(violations(secured_nats))
    assert "$JS.API.STREAM.DELETE.TITAN_CMD" in logged and "titan.cmd.execution.place" in logged
