"""Group commit (`fencedwrite`): the event log's fenced events as atomic batches, against a
real nats-server (one server, R1) and a local three-node cluster (R3).

- a deposed leader's batch is refused whole: nothing of it is in the stream;
- a batch holding an event stored before (10201) is resolved event by event: every event
  is stored once, in order;
- appends made without waiting share batches, and land in apply order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from tests.builders import accepted, genesis
from titan_exec.adapters.nats.connect import NatsSettings, connect
from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.adapters.nats.eventlog import EventLog, EventLogBroken
from titan_exec.adapters.nats.fence import fenced_headers, marker_headers
from titan_exec.adapters.nats.headers import MSG_ID
from titan_exec.adapters.nats.streams import ensure_streams
from titan_exec.core.state import State
from titan_exec.wire.contract import encode_event, event_id
from titan_exec_lab.demo.streamcheck import read_stream
from titan_exec_lab.harness.cluster import LocalCluster

pytestmark = pytest.mark.integration

EPOCH_SUBJECT = "titan.evt.exec.epoch.v1.main"


@pytest.fixture(params=["R1", "R3"])
async def client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Client, int]]:
    """A connection and the replica count: one server, or three clustered nodes."""
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "R1":
            server = await stack.enter_async_context(EmbeddedNats(tmp_path / "nats"))
            urls: tuple[str, ...] = (server.url,)
            replicas = 1
        else:
            cluster = LocalCluster(tmp_path / "cluster", size=3)
            await stack.enter_async_context(cluster)
            urls, replicas = cluster.node_urls, 3
        nc = await connect(NatsSettings(urls=urls, name="pytest-group-commit"))
        stack.push_async_callback(nc.close)
        await ensure_streams(nc.jetstream(), replicas=replicas)
        yield nc, replicas


async def _leading(nc: Client) -> tuple[EventLog, int]:
    marker = await nc.jetstream().publish(EPOCH_SUBJECT, b"{}", headers=marker_headers(0))
    log = EventLog(nc, State(), ns="exec", producer="pytest", is_batched=True)
    await log.start()
    log.set_epoch(EPOCH_SUBJECT, marker.seq)
    return log, marker.seq


async def _events(nc: Client) -> list[Any]:
    return [m for m in await read_stream(nc.jetstream(), "TITAN_EVT") if m.subject != EPOCH_SUBJECT]


async def test_the_event_stream_allows_atomic_batches(client: tuple[Client, int]) -> None:
    nc, replicas = client
    info = await nc.jetstream().stream_info("TITAN_EVT")
    assert info.config.allow_atomic is True and info.config.num_replicas == replicas


async def test_a_deposed_leaders_batch_is_refused_whole_with_nothing_in_the_stream(
    client: tuple[Client, int],
) -> None:
    nc, _ = client
    log, epoch = await _leading(nc)
    try:
        first = [genesis(), accepted("c0", ts=1)]
        await asyncio.wait_for(log.append(first), 10)
        # another instance takes over: its epoch marker follows ours
        await nc.jetstream().publish(EPOCH_SUBJECT, b"{}", headers=marker_headers(epoch))
        sent = log.writer.batches_sent
        late = [accepted(f"late{i}", ts=10 + i) for i in range(5)]
        with pytest.raises(EventLogBroken):
            await asyncio.wait_for(log.append(late), 10)
        assert log.is_deposed and log.writer.batches_sent == sent + 1
        assert log.writer.batches_resolved == 0  # refused as one batch, not one by one
    finally:
        await log.stop()
    stored = [json.loads(m.data)["id"] for m in await _events(nc)]
    assert stored == [event_id(ev) for ev in first]


async def test_a_batch_holding_a_stored_event_is_resolved_and_stores_each_once(
    client: tuple[Client, int],
) -> None:
    nc, _ = client
    log, epoch = await _leading(nc)
    events: list[Any] = [genesis(), accepted("c1", ts=1), accepted("c2", ts=2)]
    try:
        # the middle one is already stored, with its id (a batch stored before its answer
        # was lost, then appended again by a restarted writer, say)
        subject, msg_id, body = encode_event(events[1], ns="exec", producer="pytest")
        headers = {MSG_ID: msg_id, **fenced_headers(EPOCH_SUBJECT, epoch)}
        before = await nc.jetstream().publish(subject, body, headers=headers)
        await asyncio.wait_for(log.append(events), 10)
        assert log.writer.batches_resolved == 1 and not log.is_broken
        assert log.last_seq == before.seq + 2
    finally:
        await log.stop()
    stored = [json.loads(m.data)["id"] for m in await _events(nc)]
    assert stored == [event_id(events[1]), event_id(events[0]), event_id(events[2])]


async def test_appends_made_without_waiting_share_batches_in_apply_order(
    client: tuple[Client, int],
) -> None:
    nc, _ = client
    log, _ = await _leading(nc)
    events: list[Any] = [genesis(), *(accepted(f"c{i}", ts=i + 1) for i in range(200))]
    try:
        done = [log.append([ev]) for ev in events]  # as the intake does: queued, not awaited
        await asyncio.wait_for(asyncio.gather(*done), 30)
        assert not log.is_broken and log.writer.batches_resolved == 0
        assert log.writer.batches_sent < len(events) / 4
    finally:
        await log.stop()
    assert [json.loads(m.data)["id"] for m in await _events(nc)] == [event_id(e) for e in events]
