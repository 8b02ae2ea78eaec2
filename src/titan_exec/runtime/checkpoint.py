"""Checkpoints and snapshots, written by the active (ha-protocol.md §8).

Every `snapshots.every_events` events or `snapshots.every_ms` (whichever first):

1. compaction: a `StateCompacted` event raises the bounds below which closed history is
   forgotten (command floor = this instance's acknowledged commands; closed orders and
   venue trade ids older than `retention.horizon_ms`), only when a bound moved;
2. in one tick, with no await between them: the state is captured (shallow copies) and a
   checkpoint marker is queued on ``titan.evt.<ns>.checkpoint.v1.<shard>``. The event
   writer keeps queue order, so every event applied so far lies below the marker in the
   stream and every later one above it: the capture is exactly the fold of the stream
   below the marker's sequence T (the watermark). The marker is fenced like every event:
   a deposed active's is refused and nothing below is written;
3. the capture is hashed in slices (the event loop gets a turn between lines);
4. the snapshot (header + lines) is written to the object store under T, older ones beyond
   `snapshots.keep` are deleted and, with `retention.purge`, the stream's own subjects are
   purged below the oldest snapshot kept;
5. the truth snapshot event carries the hash and the watermark at once (and repeats them
   every `truth.interval_ms`): a standby compares its own hash at T (`runtime/drift.py`).

A snapshot exists only for a T that the stream accepted under the fence, and its content
is the fold of the stream below T, so it stays right even if its writer is deposed a
moment later.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from titan_exec.adapters.nats.snapshots import SnapshotStore, StoredSnapshot
from titan_exec.core.events import StateCompacted
from titan_exec.core.snapshot import (
    HASH_VERSION,
    SnapshotHeader,
    StateView,
    capture,
    iter_extra_lines,
    iter_hashed_lines,
    snapshot_bytes,
)
from titan_exec.core.state import compaction
from titan_exec.wire.contract import STATE_KINDS

if TYPE_CHECKING:
    from titan_exec.runtime.service import Service

log = logging.getLogger(__name__)

TICK_S = 0.2
"""How often the writer looks whether a checkpoint is due (a cheap comparison)."""

PURGED_KINDS = (*sorted(STATE_KINDS), "checkpoint", "truth", "reject")
"""Our subjects of `TITAN_EVT` that a purge may trim (never `epoch`: the fence needs the
newest marker; never another service's subjects)."""


async def hash_in_slices(view: StateView) -> tuple[str, list[bytes]]:
    """The state hash of a view and its hashed lines, giving the loop a turn per line."""
    h = hashlib.sha256()
    lines: list[bytes] = []
    for line in iter_hashed_lines(view):
        h.update(line)
        lines.append(line)
        await asyncio.sleep(0)
    return h.hexdigest(), lines


@dataclass(frozen=True, slots=True)
class Checkpoint:
    watermark_seq: int
    state_hash: str
    event_count: int
    created_ms: int
    epoch: int
    snapshot: str | None
    """The object holding the state, when it was written."""
    hash_version: int = HASH_VERSION

    def meta(self) -> dict[str, Any]:
        return {
            "watermark_seq": self.watermark_seq,
            "state_hash": self.state_hash,
            "hash_version": self.hash_version,
            "event_count": self.event_count,
            "snapshot": self.snapshot,
            "checkpoint_ms": self.created_ms,
        }


class CheckpointWriter:
    def __init__(self, svc: Service, store: SnapshotStore | None) -> None:
        self.svc = svc
        self.store = store
        self.last: Checkpoint | None = None
        self._count_at_last = svc.state.event_count
        self._at_last = time.monotonic()
        self._n = 0

    def is_due(self) -> bool:
        cfg = self.svc.cfg.snapshots
        events_since = self.svc.state.event_count - self._count_at_last
        elapsed_ms = (time.monotonic() - self._at_last) * 1000
        return events_since >= cfg.every_events or elapsed_ms >= cfg.every_ms

    async def run(self) -> None:
        """The active's loop (a leader task): a failed write of the marker is a broken
        event log (the known fencing path); a failed snapshot write is logged and retried
        at the next checkpoint (the stream still holds everything)."""
        while True:
            await asyncio.sleep(TICK_S)
            if self.is_due():
                await self.write()

    async def write(self) -> Checkpoint:
        svc = self.svc
        events = svc.events
        assert events is not None
        self._count_at_last = svc.state.event_count
        self._at_last = time.monotonic()
        compaction = await self._compaction()
        began = time.perf_counter()
        if compaction is not None:
            events.append([compaction])  # applied now; durable below the marker
        view = capture(events.state)
        nonces = svc.nonces.entries()
        self._n += 1
        marker = json.dumps(
            {
                "instance_id": svc.cfg.service.instance_id,
                "epoch": svc.epoch,
                "event_count": view.event_count,
                "n": self._n,
                "ts": svc.clock(),
            }
        ).encode()
        msg_id = f"checkpoint:{svc.epoch}:{svc.cfg.service.instance_id}:{self._n}"
        acked = events.publish_acked(
            svc.subjects.checkpoint(svc.cfg.service.shard), marker, {"Nats-Msg-Id": msg_id}
        )
        svc.metrics.snapshot_seconds.labels("capture").observe(time.perf_counter() - began)
        watermark = (await acked)[0]
        began = time.perf_counter()
        state_hash, hashed = await hash_in_slices(view)
        svc.metrics.snapshot_seconds.labels("hash").observe(time.perf_counter() - began)
        name = await self._store(view, nonces, watermark, state_hash, hashed)
        cp = Checkpoint(
            watermark_seq=watermark,
            state_hash=state_hash,
            event_count=view.event_count,
            created_ms=svc.clock(),
            epoch=svc.epoch,
            snapshot=name,
        )
        self.last = cp
        svc.metrics.checkpoints.labels("written").inc()
        svc.publish_truth()
        return cp

    async def _compaction(self) -> StateCompacted | None:
        """The bounds to compact below, when one of them moved (a repeated event would be
        a duplicate message id, dropped by the stream but applied here)."""
        svc = self.svc
        if not svc.cfg.retention.compact:
            return None
        acked = 0
        psub = svc.intake.psub if svc.intake is not None else None
        if psub is not None:
            try:
                info = await psub.consumer_info()
                acked = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
            except Exception as err:  # the floor waits for the next checkpoint
                log.info("command ack floor unavailable (%r): command floor unchanged", err)
        return compaction(
            svc.state,
            acked_cmd_seq=acked,
            now_ms=svc.clock(),
            horizon_ms=svc.cfg.retention.horizon_ms,
        )

    async def _store(
        self,
        view: StateView,
        nonces: list[tuple[str, str, int]],
        watermark: int,
        state_hash: str,
        hashed: list[bytes],
    ) -> str | None:
        svc, store = self.svc, self.store
        if store is None:
            return None
        began = time.perf_counter()
        keep = svc.cfg.snapshots.keep
        try:
            existing = await store.newest_first()
            kept = [watermark, *(s.watermark_seq for s in existing[: keep - 1])]
            purge_below = min(kept) if svc.cfg.retention.purge and len(kept) >= 2 else 0
            header = SnapshotHeader(
                ns=svc.cfg.service.namespace,
                shard=svc.cfg.service.shard,
                watermark_seq=watermark,
                event_count=view.event_count,
                epoch=svc.epoch,
                instance_id=svc.cfg.service.instance_id,
                created_ms=svc.clock(),
                state_hash=state_hash,
                hashed_lines=len(hashed),
                purged_below=purge_below,
            )
            data = snapshot_bytes(header, hashed, iter_extra_lines(view, nonces))
            name = await store.put(
                watermark,
                data,
                {
                    "Titan-Watermark-Seq": str(watermark),
                    "Titan-State-Hash": state_hash,
                    "Titan-Epoch": str(svc.epoch),
                    "Titan-Event-Count": str(view.event_count),
                },
            )
            svc.metrics.snapshot_bytes.set(len(data))
            written = StoredSnapshot(name, watermark)
            await store.prune(keep, [written, *existing])  # listed above: not again
            if purge_below:
                await self._purge(purge_below)
        except Exception as err:
            log.warning("snapshot at seq %d not written (%r); the stream keeps all", watermark, err)
            return None
        finally:
            svc.metrics.snapshot_seconds.labels("write").observe(time.perf_counter() - began)
        return name

    async def _purge(self, below: int) -> None:
        """Trim our own subjects of the event stream below a sequence that the oldest kept
        snapshot covers (`retention.purge`)."""
        js = self.svc.js
        assert js is not None
        ns = self.svc.cfg.service.namespace
        for kind in PURGED_KINDS:
            await js.purge_stream("TITAN_EVT", seq=below, subject=f"titan.evt.{ns}.{kind}.>")
        log.info("event stream purged below seq %d (%s)", below, ", ".join(PURGED_KINDS))
