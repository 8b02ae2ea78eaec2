"""Fast restart and retention (issue 6, items 3 and 5): an instance starts from the newest
snapshot plus the tail of the stream, to the same state as a replay of everything; a
damaged snapshot falls back to an older one; with purging on, the stream's old events are
removed and a restart still rebuilds the same state (and still writes under the fence);
a stream whose history is gone with no snapshot to cover it refuses to start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import wait_for, world
from titan_exec.adapters.nats.snapshots import SnapshotStore
from titan_exec.core.model import OrderStatus
from titan_exec.core.state import state_hash

pytestmark = pytest.mark.integration

SNAP = {"snapshots.every_events": 10, "snapshots.every_ms": 3_600_000}


async def trade(w: Any, n: int, tag: str) -> None:
    for i in range(n):
        side = "BUY_SETUP" if i % 2 == 0 else "SELL_SETUP"
        ack = await w.brain.place(w.brain.intent(f"{tag}{i}", "BTC/USDT", side, "0.1"))
        await w.decided(ack.seq)
    await wait_for(
        lambda: all(o.status is OrderStatus.FILLED for o in w.svc.state.orders.values()), "fills"
    )
    await w.svc.events.drain()


async def snapshots_written(w: Any, n: int) -> None:
    await wait_for(
        lambda: (
            w.checkpoints is not None
            and w.checkpoints.last is not None
            and w.checkpoints.last.snapshot is not None
            and w.svc.metrics.checkpoints.labels("written")._value.get() >= n
        ),
        f"{n} snapshots",
    )


async def test_a_restart_loads_the_newest_snapshot_and_replays_only_the_tail(
    service_nats: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path, **SNAP) as w:
        for k in range(2):  # a burst can outrun the writer's tick: one snapshot each
            await trade(w, 4, f"a{k}-")
            await snapshots_written(w, k + 1)
        await trade(w, 1, "tail")  # a few events after the last snapshot
        before = state_hash(w.svc.state)
        total = w.svc.state.event_count
        positions = dict(w.svc.state.positions)
    async with world(service_nats.url, tmp_path, **SNAP) as w2:
        h = w2.svc.health
        assert h.snapshot_seq > 0
        assert 0 < h.replayed_events < total  # the tail only
        assert set(h.startup_ms) == {"snapshot", "tail", "total"}
        assert state_hash(w2.svc.state) == before
        assert w2.svc.state.positions == positions
        store = SnapshotStore(w2.js, ns="exec", shard="main")
        kept = await store.newest_first()
        assert 1 <= len(kept) <= 3  # snapshots.keep
        # the newest snapshot is damaged: the restart takes the one before it
        newest = kept[0]
        data = await store.get(newest.name)
        await store.put(newest.watermark_seq, data.replace(b'"qty":"0.1"', b'"qty":"0.2"', 1), {})
        before = state_hash(w2.svc.state)
        positions = dict(w2.svc.state.positions)
    async with world(service_nats.url, tmp_path, **SNAP) as w3:
        assert 0 < w3.svc.health.snapshot_seq < newest.watermark_seq
        assert state_hash(w3.svc.state) == before
        assert w3.svc.state.positions == positions
        # no snapshot at all: the whole stream (still complete) is replayed
        for s in await SnapshotStore(w3.js, ns="exec", shard="main").newest_first():
            await SnapshotStore(w3.js, ns="exec", shard="main").delete(s.name)
        before = state_hash(w3.svc.state)
    async with world(
        service_nats.url, tmp_path, **{**SNAP, "snapshots.every_events": 1_000_000}
    ) as w4:
        assert w4.svc.health.snapshot_seq == 0
        assert w4.svc.health.replayed_events == w4.svc.state.event_count
        assert state_hash(w4.svc.state) == before


async def test_a_restart_after_old_events_were_purged_rebuilds_the_same_state(
    service_nats: Any, tmp_path: Path
) -> None:
    purge = {**SNAP, "retention.purge": True, "snapshots.keep": 2}
    async with world(service_nats.url, tmp_path, **purge) as w:
        for k in range(4):
            await trade(w, 3, f"p{k}-")
            await snapshots_written(w, k + 1)
        await w.svc.events.drain()
        # the old events are gone: the genesis and the first decisions were purged
        assert not await w.stream_messages("TITAN_EVT", "titan.evt.exec.genesis.v1")
        decisions = await w.stream_messages("TITAN_EVT", "titan.evt.exec.decision.v1.>")
        assert 0 < len(decisions) < 12  # of 12 decided
        # the epoch marker is never purged: the fence still has its subject
        assert await w.stream_messages("TITAN_EVT", "titan.evt.exec.epoch.v1.>")
        before = state_hash(w.svc.state)
        positions = dict(w.svc.state.positions)
    async with world(service_nats.url, tmp_path, **purge) as w2:
        assert w2.svc.health.snapshot_seq > 0
        assert state_hash(w2.svc.state) == before
        assert w2.svc.state.positions == positions
        # and it trades on: fenced writes land on the purged stream (the paper venue is
        # new, in memory, and numbers its trades from 1 again: no fills are awaited here)
        ack = await w2.brain.place(w2.brain.intent("again", "BTC/USDT", "BUY_SETUP", "0.1"))
        await w2.decided(ack.seq)
        coid = w2.svc.state.accepted_signals["again"][0]
        await wait_for(
            lambda: w2.svc.state.orders[coid].status is not OrderStatus.ACCEPTED, "order sent"
        )
        await w2.svc.events.drain()
        assert not w2.svc.events.is_broken
        store = SnapshotStore(w2.js, ns="exec", shard="main")
        for s in await store.newest_first():
            await store.delete(s.name)
    # history purged and no snapshot left: refuse to start (never a new genesis)
    with pytest.raises(Exception, match="no longer starts at its genesis"):
        async with world(service_nats.url, tmp_path, **purge):
            pass


async def test_pruned_snapshots_leave_no_marker_behind(service_nats: Any) -> None:
    """A listing (every start, every checkpoint) reads the snapshots kept, not every one
    ever written: a deleted object's marker is purged too."""
    import nats

    nc = await nats.connect(service_nats.url)
    try:
        js = nc.jetstream()
        store = SnapshotStore(js, ns="exec", shard="main")
        await store.ensure()
        for seq in range(1, 21):
            await store.put(seq, b"x" * 100, {})
            await store.prune(3)
        assert [s.watermark_seq for s in await store.newest_first()] == [20, 19, 18]
        raw = await (await js.object_store("TITAN_EXEC_SNAPSHOTS")).list()
        assert len(raw) == 3  # deletion markers included: none left
    finally:
        await nc.close()


async def test_a_snapshot_whose_chunks_vanish_while_read_fails_instead_of_hanging(
    service_nats: Any,
) -> None:
    """nats-py reads an object's chunks with a consumer that waits for ever when they
    are purged under it (the active pruned that snapshot meanwhile): the read is bounded
    and fails, and a start moves on to an older snapshot."""
    import nats

    from titan_exec.adapters.nats.snapshots import SnapshotStoreError

    nc = await nats.connect(service_nats.url)
    try:
        js = nc.jetstream()
        store = SnapshotStore(js, ns="exec", shard="main", read_timeout_s=1.0)
        await store.ensure()
        await store.put(7, b"y" * 1000, {})
        await js.purge_stream("OBJ_TITAN_EXEC_SNAPSHOTS", subject="$O.TITAN_EXEC_SNAPSHOTS.C.>")
        assert [s.watermark_seq for s in await store.newest_first()] == [7]  # meta still there
        with pytest.raises(SnapshotStoreError, match=r"not read within 1\.0 s"):
            await store.get("exec.main.0000000000000007")
    finally:
        await nc.close()
