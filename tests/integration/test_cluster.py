"""The local three-node cluster and what R3 changes for the service's NATS adapters.

- `LocalCluster` forms, places leaders, loses a node and gets it back;
- the streams and the election bucket are created with three replicas when asked;
- the pitfall behind the event log's one-fenced-write-at-a-time rule: on a replicated
  stream the leader refuses a second write that checks the epoch subject while the first
  is still being replicated (10164), which a single server never does;
- the event log's fenced writes on R3 all land, in order, under the epoch.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js.errors import APIError

from tests.builders import accepted, genesis
from tests.integration import cluster_fixture
from titan_exec.adapters.nats.cluster import CLUSTER_MAX_PAYLOAD, LocalCluster
from titan_exec.adapters.nats.connect import NatsSettings, connect
from titan_exec.adapters.nats.errors import REFUSED_WHILE_REPLICATING
from titan_exec.adapters.nats.eventlog import EventLog
from titan_exec.adapters.nats.fence import (
    EXPECTED_LAST_SUBJECT_SEQ,
    EXPECTED_LAST_SUBJECT_SEQ_SUBJECT,
    fenced_headers,
    marker_headers,
)
from titan_exec.adapters.nats.lease import STREAM as LEASE_STREAM
from titan_exec.adapters.nats.lease import ensure_bucket
from titan_exec.adapters.nats.streams import TITAN_STREAMS, ensure_streams
from titan_exec.core.leadership import LeaseTiming
from titan_exec.core.state import State
from titan_exec.runtime.app import EMBEDDED_MAX_PAYLOAD
from titan_exec.runtime.streamcheck import read_stream
from titan_exec.wire.contract import event_id

pytestmark = pytest.mark.integration

nats_cluster = cluster_fixture.nats_cluster

EPOCH_SUBJECT = "titan.evt.exec.epoch.v1.main"


@pytest.fixture
async def cluster_client(nats_cluster: LocalCluster) -> AsyncIterator[Client]:
    nc = await connect(NatsSettings(urls=nats_cluster.node_urls, name="pytest-cluster"))
    try:
        yield nc
    finally:
        await nc.close()


def test_the_cluster_takes_payloads_as_large_as_the_embedded_server() -> None:
    assert CLUSTER_MAX_PAYLOAD == EMBEDDED_MAX_PAYLOAD


async def test_streams_and_the_election_bucket_get_three_replicas(
    nats_cluster: LocalCluster, cluster_client: Client
) -> None:
    js = cluster_client.jetstream()
    infos = await ensure_streams(js, replicas=3)
    kv = await ensure_bucket(js, LeaseTiming(lease_ms=2000), replicas=3)
    for info in [*infos.values(), (await kv.status()).stream_info]:
        assert info.config.num_replicas == 3, info.config.name
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2
    assert set(await asyncio.to_thread(nats_cluster.leaders)) == {
        *(s.name for s in TITAN_STREAMS),
        LEASE_STREAM,
    }


async def test_a_node_is_lost_and_comes_back_while_writes_go_on(
    nats_cluster: LocalCluster,
) -> None:
    # on node 0 only: a publish in flight through a killed node would be lost with it
    nc = await connect(NatsSettings(urls=nats_cluster.node_urls[:1], name="pytest-node-0"))
    try:
        js = nc.jetstream()
        await ensure_streams(js, replicas=3)
        await nats_cluster.place_leaders({0}, meta_on={0})
        assert await asyncio.to_thread(nats_cluster.meta_leader) == 0
        assert set((await asyncio.to_thread(nats_cluster.leaders)).values()) == {0}

        nats_cluster.kill(2)  # a follower of everything: no election needed
        assert nats_cluster.running_nodes() == [0, 1]
        ack = await js.publish("titan.evt.exec.probe", b"while one node is down")
        await nats_cluster.restart(2)
        assert nats_cluster.running_nodes() == [0, 1, 2]
        # the restarted node catches up: the leader reports every replica current again
        deadline = time.monotonic() + 10
        while True:
            info = await js.stream_info("TITAN_EVT")
            assert info.state.last_seq == ack.seq
            assert info.cluster is not None
            if all(peer.current for peer in info.cluster.replicas or []):
                break
            assert time.monotonic() < deadline, f"replicas not current: {info.cluster}"
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


async def test_r3_refuses_a_second_write_checking_the_same_subject_while_one_is_in_flight(
    cluster_client: Client,
) -> None:
    """The nats-server 2.15 behaviour the event log works around: not a comparison that
    failed (10071) but a refusal without comparing (10164). A single server accepts all."""
    js = cluster_client.jetstream()
    await ensure_streams(js, replicas=3)
    marker = await js.publish(EPOCH_SUBJECT, b"{}", headers=marker_headers(0))
    headers = fenced_headers(EPOCH_SUBJECT, marker.seq)
    results = await asyncio.gather(
        *(js.publish(f"titan.evt.exec.probe.{i}", b"x", headers=headers) for i in range(5)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, APIError)]
    assert refused, "every pipelined fenced write landed on R3: the pitfall is gone"
    assert {r.err_code for r in refused} == {REFUSED_WHILE_REPLICATING}


async def test_fenced_events_on_r3_all_land_in_order_under_the_epoch(
    cluster_client: Client,
) -> None:
    js = cluster_client.jetstream()
    await ensure_streams(js, replicas=3)
    marker = await js.publish(EPOCH_SUBJECT, b"{}", headers=marker_headers(0))
    log = EventLog(cluster_client, State(), ns="exec", producer="pytest")
    await log.start()
    try:
        log.set_epoch(EPOCH_SUBJECT, marker.seq)
        events: list[Any] = [genesis(), *(accepted(f"c{i}", ts=i + 1) for i in range(60))]
        started = time.perf_counter()
        # appended without waiting, as the intake does: queued, then published in order
        done = [log.append([ev]) for ev in events]
        await asyncio.wait_for(asyncio.gather(*done), 30)
        elapsed = time.perf_counter() - started
        assert not log.is_broken
    finally:
        await log.stop()
    stored = [m for m in await read_stream(js, "TITAN_EVT") if m.subject != EPOCH_SUBJECT]
    # every event once, in the order it was applied
    assert [json.loads(m.data)["id"] for m in stored] == [event_id(ev) for ev in events]
    assert all(
        m.headers.get(EXPECTED_LAST_SUBJECT_SEQ_SUBJECT) == EPOCH_SUBJECT
        and m.headers.get(EXPECTED_LAST_SUBJECT_SEQ) == str(marker.seq)
        for m in stored
    )
    print(f"{len(events)} fenced events on R3 in {elapsed * 1000:.0f} ms")
