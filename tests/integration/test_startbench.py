"""The start-up benchmark (issue 6, fast restart) at a tiny size: a standby restarted on a
history with snapshots loads the newest one and replays only the tail after it, and its
state is the fold of the whole history. No timing is asserted (the machine is shared)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from titan_exec_lab.bench.startup import HistorySpec, bench_size, parse_sizes

pytestmark = pytest.mark.integration


async def test_restart_replays_the_tail_not_the_history(tmp_path: Path) -> None:
    spec = HistorySpec(
        events=2_000, snapshot_every=500, tail=300, intent_interval_ms=600_000, keep=2
    )
    said: list[str] = []
    res = await bench_size(spec, rounds=1, full_replay=True, work_dir=tmp_path, say=said.append)

    written = res.write
    assert written.events == 2_000
    assert written.snapshots >= 3  # one every 500 events, the last 300 events before the end
    assert 0 < written.watermark_seq < written.stream_last_seq
    # a 24 h horizon at one intent per 10 min keeps the last 144 or 145 orders (by where
    # the last snapshot falls within an intent's five events), not all ~340 decided
    assert 144 <= written.orders_in_snapshot <= 145

    (start,) = res.starts
    assert start.is_hash_ok, said
    assert start.snapshot_seq == written.watermark_seq > 0
    assert start.replayed_events == spec.tail
    assert set(start.startup_ms) == {"snapshot", "tail", "total"}

    full = res.full_replay
    assert full is not None
    assert full.is_hash_ok
    assert full.snapshot_seq == 0
    assert full.replayed_events == spec.events
    assert res.is_ok
    assert set(res.probe_ms) >= {"snapshot_list", "snapshot_get", "snapshot_restore"}
    left = await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
    assert left == []  # the server's directory is removed


def test_sizes_parse() -> None:
    assert parse_sizes("1e4,1e5, 1e6") == (10_000, 100_000, 1_000_000)
    assert parse_sizes("2000,10_000") == (2_000, 10_000)
    with pytest.raises(ValueError, match="not a number"):
        parse_sizes("1e4,abc")
    with pytest.raises(ValueError, match="at least 100"):
        parse_sizes("10")
