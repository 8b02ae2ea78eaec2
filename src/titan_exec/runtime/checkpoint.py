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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nats.js import JetStreamContext

from titan_exec.adapters.nats.headers import MSG_ID
from titan_exec.adapters.nats.snapshots import SnapshotStore, StoredSnapshot
from titan_exec.api.metrics import Metrics
from titan_exec.config import Config
from titan_exec.core.events import Event, StateCompacted
from titan_exec.core.snapshot import (
    HASH_VERSION,
    SnapshotHeader,
    StateView,
    capture,
    iter_extra_lines,
    iter_hashed_lines,
    snapshot_bytes,
)
from titan_exec.core.state import State, compaction
from titan_exec.wire.subjects import STATE_KINDS, Subjects

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


@dataclass(frozen=True, slots=True)
class CheckpointSettings:
    """What one leader session's writer needs to know, read from the config once."""

    instance_id: str
    ns: str
    shard: str
    epoch: int
    marker_subject: str
    every_events: int
    every_ms: int
    keep: int
    is_compacting: bool
    is_purging: bool
    horizon_ms: int

    @classmethod
    def of(cls, cfg: Config, epoch: int) -> CheckpointSettings:
        svc = cfg.service
        return cls(
            instance_id=svc.instance_id,
            ns=svc.namespace,
            shard=svc.shard,
            epoch=epoch,
            marker_subject=Subjects(svc.namespace).checkpoint(svc.shard),
            every_events=cfg.snapshots.every_events,
            every_ms=cfg.snapshots.every_ms,
            keep=cfg.snapshots.keep,
            is_compacting=cfg.retention.compact,
            is_purging=cfg.retention.purge,
            horizon_ms=cfg.retention.horizon_ms,
        )


async def no_ack_floor() -> int:
    return 0


class CheckpointLog(Protocol):
    """What the writer needs of an event log: the state it folds, appending (applied at
    once), and one message published in order with the events (the marker)."""

    @property
    def state(self) -> State: ...

    def append(self, events: Sequence[Event]) -> Awaitable[None]: ...

    def publish_acked(
        self, subject: str, body: bytes, headers: dict[str, str] | None = None
    ) -> Awaitable[list[int]]: ...


class CheckpointWriter:
    """The active's checkpoints over its event writer `events`, into `store` (None: markers
    and truth only). `ack_floor()` is the command consumer's acknowledged floor (the
    compaction's command bound); `nonces()` the replay window written into a snapshot;
    `on_written()` runs after each checkpoint (the truth event)."""

    def __init__(
        self,
        events: CheckpointLog,
        store: SnapshotStore | None,
        settings: CheckpointSettings,
        *,
        js: JetStreamContext,
        metrics: Metrics,
        clock: Callable[[], int],
        nonces: Callable[[], list[tuple[str, str, int]]] = list,
        ack_floor: Callable[[], Awaitable[int]] = no_ack_floor,
        on_written: Callable[[], None] = lambda: None,
    ) -> None:
        self.events = events
        self.store = store
        self.settings = settings
        self._js = js
        self._metrics = metrics
        self._clock = clock
        self._nonces = nonces
        self._ack_floor = ack_floor
        self._on_written = on_written
        self.last: Checkpoint | None = None
        self._count_at_last = events.state.event_count
        self._at_last = time.monotonic()
        self._n = 0

    def is_due(self) -> bool:
        events_since = self.events.state.event_count - self._count_at_last
        elapsed_ms = (time.monotonic() - self._at_last) * 1000
        return events_since >= self.settings.every_events or elapsed_ms >= self.settings.every_ms

    async def run(self) -> None:
        """The active's loop (a leader task): a failed write of the marker is a broken
        event log (the known fencing path); a failed snapshot write is logged and retried
        at the next checkpoint (the stream still holds everything)."""
        while True:
            await asyncio.sleep(TICK_S)
            if self.is_due():
                await self.write()

    async def write(self) -> Checkpoint:
        events, st, metrics = self.events, self.settings, self._metrics
        self._count_at_last = events.state.event_count
        self._at_last = time.monotonic()
        compaction = await self._compaction()
        began = time.perf_counter()
        if compaction is not None:
            events.append([compaction])  # applied now; durable below the marker
        view = capture(events.state)
        nonces = self._nonces()
        self._n += 1
        acked = events.publish_acked(
            st.marker_subject, self._marker(view.event_count), {MSG_ID: self._msg_id()}
        )
        metrics.snapshot_seconds.labels("capture").observe(time.perf_counter() - began)
        watermark = (await acked)[0]
        began = time.perf_counter()
        state_hash, hashed = await hash_in_slices(view)
        metrics.snapshot_seconds.labels("hash").observe(time.perf_counter() - began)
        name = await self._store(view, nonces, watermark, state_hash, hashed)
        cp = Checkpoint(
            watermark_seq=watermark,
            state_hash=state_hash,
            event_count=view.event_count,
            created_ms=self._clock(),
            epoch=st.epoch,
            snapshot=name,
        )
        self.last = cp
        metrics.checkpoints.labels("written").inc()
        self._on_written()
        return cp

    def _marker(self, event_count: int) -> bytes:
        st = self.settings
        doc = {
            "instance_id": st.instance_id,
            "epoch": st.epoch,
            "event_count": event_count,
            "n": self._n,
            "ts": self._clock(),
        }
        return json.dumps(doc).encode()

    def _msg_id(self) -> str:
        return f"checkpoint:{self.settings.epoch}:{self.settings.instance_id}:{self._n}"

    async def _compaction(self) -> StateCompacted | None:
        """The bounds to compact below, when one of them moved (a repeated event would be
        a duplicate message id, dropped by the stream but applied here)."""
        if not self.settings.is_compacting:
            return None
        try:
            acked = await self._ack_floor()
        except Exception as err:  # the floor waits for the next checkpoint
            log.info("command ack floor unavailable (%r): command floor unchanged", err)
            acked = 0
        return compaction(
            self.events.state,
            acked_cmd_seq=acked,
            now_ms=self._clock(),
            horizon_ms=self.settings.horizon_ms,
        )

    async def _store(
        self,
        view: StateView,
        nonces: list[tuple[str, str, int]],
        watermark: int,
        state_hash: str,
        hashed: list[bytes],
    ) -> str | None:
        store, st = self.store, self.settings
        if store is None:
            return None
        began = time.perf_counter()
        try:
            existing = await store.newest_first()
            kept = [watermark, *(s.watermark_seq for s in existing[: st.keep - 1])]
            purge_below = min(kept) if st.is_purging and len(kept) >= 2 else 0
            header = SnapshotHeader(
                ns=st.ns,
                shard=st.shard,
                watermark_seq=watermark,
                event_count=view.event_count,
                epoch=st.epoch,
                instance_id=st.instance_id,
                created_ms=self._clock(),
                state_hash=state_hash,
                hashed_lines=len(hashed),
                purged_below=purge_below,
            )
            data = snapshot_bytes(header, hashed, iter_extra_lines(view, nonces))
            name = await store.put(watermark, data, snapshot_headers(header))
            self._metrics.snapshot_bytes.set(len(data))
            written = StoredSnapshot(name, watermark)
            await store.prune(st.keep, [written, *existing])  # listed above: not again
            if purge_below:
                await self._purge(purge_below)
        except Exception as err:
            log.warning("snapshot at seq %d not written (%r); the stream keeps all", watermark, err)
            return None
        finally:
            self._metrics.snapshot_seconds.labels("write").observe(time.perf_counter() - began)
        return name

    async def _purge(self, below: int) -> None:
        """Trim our own subjects of the event stream below a sequence that the oldest kept
        snapshot covers (`retention.purge`)."""
        subjects = Subjects(self.settings.ns)
        for kind in PURGED_KINDS:
            subject = subjects.event_kind(kind)
            await self._js.purge_stream("TITAN_EVT", seq=below, subject=subject)
        log.info("event stream purged below seq %d (%s)", below, ", ".join(PURGED_KINDS))


def snapshot_headers(header: SnapshotHeader) -> dict[str, str]:
    """The object-store headers of a snapshot: what a reader sees without fetching it."""
    return {
        "Titan-Watermark-Seq": str(header.watermark_seq),
        "Titan-State-Hash": header.state_hash,
        "Titan-Epoch": str(header.epoch),
        "Titan-Event-Count": str(header.event_count),
    }
