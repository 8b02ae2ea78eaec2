"""Drift detection on a hot standby (ha-protocol.md §8; RFC 004's second risk).

The follower calls `on_checkpoint(T)` when it reaches a checkpoint marker, before it moves
past it: the standby's state is then exactly the fold of every event below T, the state
the active captured for the same marker. The view is kept (shallow copies) until the
active's truth event for T arrives with its hash (`on_truth`); the standby hashes its own
view (in slices) and compares hash and event count:

- equal: the checkpoint is confirmed (`titan_exec_checkpoints_total{result="matched"}`);
  the snapshot written at T becomes this standby's *last good snapshot*; an alarm raised
  before a rebuild is cleared by the first match after it;
- different: the **drift alarm**. At once the election hears it (the leadership core then
  never campaigns and gives back a lease it wins: an operator `promote` still can). Then
  the first differences are found (the active's snapshot at T against this view), one log
  line names the first differing position or order, a drift event goes out on
  ``titan.sys.<ns>.drift.v1.<instance_id>``, and the standby rebuilds from its last good
  snapshot (or the whole stream) and follows again;
- different again after a rebuild: the fault is not this standby's fold (the active, or
  the code): the alarm stays, logged as critical with ``suspect: active``, and the standby
  does not rebuild in a loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from titan_exec.adapters.nats.snapshots import SnapshotStore
from titan_exec.api.metrics import Metrics
from titan_exec.core.snapshot import HASH_VERSION, StateView, capture, restore
from titan_exec.core.state import State
from titan_exec.core.statediff import StateDifference, diff
from titan_exec.runtime.checkpoint import hash_in_slices

log = logging.getLogger(__name__)

PENDING_MAX = 8
"""Captured views waiting for their truth event (the active may die before sending it)."""


@dataclass(frozen=True, slots=True)
class Confirmed:
    watermark_seq: int
    snapshot: str | None
    state_hash: str


class DriftMonitor:
    """`state` is the standby's folded state; `publish` sends a drift event; `report` tells
    the election whether the alarm is up; `rebuild(reason, snapshot)` rebuilds the standby."""

    def __init__(
        self,
        state: Callable[[], State],
        store: Callable[[], SnapshotStore | None],
        *,
        publish: Callable[[dict[str, Any]], Awaitable[None]],
        report: Callable[[bool], None],
        rebuild: Callable[[str, str | None], Awaitable[None]],
        metrics: Metrics,
        instance_id: str,
        clock: Callable[[], int],
    ) -> None:
        self._state = state
        self._store = store
        self._publish = publish
        self._report = report
        self._rebuild = rebuild
        self._metrics = metrics
        self._instance_id = instance_id
        self._clock = clock
        self.pending: dict[int, StateView] = {}
        self.has_alarm = False
        self.is_persistent = False
        self.rebuilds = 0
        self._rebuilt_since_alarm = False
        self.confirmed: Confirmed | None = None
        """The newest checkpoint whose hash this standby matched independently."""
        self.last_alarm: dict[str, Any] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.matched = 0
        self.mismatched = 0

    def reset(self) -> None:
        """A new fold (rebuild, takeover): views of the old one are meaningless."""
        self.pending.clear()

    # --- called by the follower, in stream order ---------------------------------------

    def on_checkpoint(self, seq: int) -> None:
        self.pending[seq] = capture(self._state())
        while len(self.pending) > PENDING_MAX:
            del self.pending[min(self.pending)]

    def on_truth(self, data: bytes) -> None:
        try:
            meta = json.loads(data).get("meta") or {}
            seq = int(meta.get("watermark_seq") or 0)
            int(meta.get("event_count") or 0)
        except (ValueError, AttributeError, TypeError, RecursionError):
            return  # not a truth event an active wrote: nothing to compare
        view = self.pending.pop(seq, None)
        if view is None or meta.get("hash_version") != HASH_VERSION:
            return  # not a checkpoint we hold (or another hash version: never compared)
        task = asyncio.create_task(self._compare(seq, view, meta), name=f"drift-{seq}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the comparison ----------------------------------------------------------------

    async def _compare(self, seq: int, view: StateView, meta: dict[str, Any]) -> None:
        mine, _ = await hash_in_slices(view)
        expected = str(meta.get("state_hash"))
        count = int(meta.get("event_count") or 0)
        snapshot = meta.get("snapshot")
        if mine == expected and view.event_count == count:
            self.matched += 1
            self._metrics.checkpoints.labels("matched").inc()
            self.confirmed = Confirmed(seq, snapshot if isinstance(snapshot, str) else None, mine)
            if self.has_alarm and self._rebuilt_since_alarm:
                log.warning("drift alarm cleared: checkpoint seq %d matches after the rebuild", seq)
                self.has_alarm = False
                self._rebuilt_since_alarm = False
                self._metrics.drift_alarm.set(0)
                self._report(self.has_alarm)
            return
        self.mismatched += 1
        self._metrics.checkpoints.labels("drifted").inc()
        await self._alarm(seq, view, mine, expected, count, snapshot)

    async def _alarm(
        self, seq: int, view: StateView, mine: str, expected: str, count: int, snapshot: Any
    ) -> None:
        is_persistent = self.has_alarm and self._rebuilt_since_alarm
        self.has_alarm = True
        self._metrics.drift_alarm.set(1)
        self._metrics.drift_detected.inc()
        self._report(self.has_alarm)  # first: no promotion from here on
        differences = await self._differences(view, snapshot)
        if view.event_count != count:
            differences.append(
                StateDifference("flags", "", "event_count", str(view.event_count), str(count))
            )
        first = differences[0].describe() if differences else "no snapshot to compare against"
        more = f" (+{len(differences) - 1} more)" if len(differences) > 1 else ""
        action = "none (persistent: suspect the active)" if is_persistent else "rebuild"
        line = (
            f"drift at checkpoint seq {seq} (event_count {view.event_count}): {first}{more}; "
            f"hash mine={mine[:16]}… active={expected[:16]}…; standby ineligible for "
            f"automatic promotion; action: {action}"
        )
        if is_persistent:
            self.is_persistent = True
            log.critical("%s", line)
        else:
            log.error("%s", line)
        self.last_alarm = {
            "instance_id": self._instance_id,
            "watermark_seq": seq,
            "event_count": view.event_count,
            "expected_hash": expected,
            "actual_hash": mine,
            "hash_version": HASH_VERSION,
            "differences": [
                {
                    "section": d.section,
                    "key": d.key,
                    "field": d.field,
                    "mine": d.mine,
                    "active": d.theirs,
                }
                for d in differences
            ],
            "action": "none" if is_persistent else "rebuild",
            "suspect": "active" if is_persistent else "standby",
            "ts": self._clock(),
        }
        await self._publish(self.last_alarm)
        if is_persistent:
            return
        base = self.confirmed
        await self._rebuild(
            f"drift at checkpoint seq {seq}", base.snapshot if base is not None else None
        )
        self.rebuilds += 1
        self._rebuilt_since_alarm = True

    async def _differences(self, view: StateView, snapshot: Any) -> list[StateDifference]:
        store = self._store()
        if not isinstance(snapshot, str) or store is None:
            return []
        try:
            theirs = restore(await store.get(snapshot)).state
        except Exception as err:
            log.warning("active's snapshot %s unreadable (%r): differences unknown", snapshot, err)
            return []
        return diff(view, capture(theirs))

    async def stop(self) -> None:
        tasks, self._tasks = set(self._tasks), set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
