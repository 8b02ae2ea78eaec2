"""Loading: the folded state of the event stream, written once for every start.

A start, a standby's rebuild after drift and the rebuild after fencing all load the same
way: the newest usable snapshot (the one named first, when there is one) plus the tail of
`TITAN_EVT` after its watermark, or a fold of the whole stream when there is no snapshot and
the stream still holds its genesis. The nonce window is part of the folded state: it comes
back from the snapshot's nonce lines and from the decisions of the tail. A takeover's drain
to the head is the same tail fold, from where the follower stopped (`catch_up`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nats.js import JetStreamContext

from titan_exec.adapters.nats.follow import replay_stream
from titan_exec.adapters.nats.snapshots import SnapshotStore
from titan_exec.core.snapshot import Restored, restore
from titan_exec.core.state import State
from titan_exec.wire.contract import is_state_subject
from titan_exec.wire.subjects import Subjects

log = logging.getLogger(__name__)

Say = Callable[[str], None]


class HistoryGap(RuntimeError):
    """The stream no longer holds the whole history and no snapshot covers the gap."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a load produced: the state at `last_seq` and how it was reached."""

    state: State
    last_seq: int
    replayed: int
    """Events folded from the stream (the tail, or all of it)."""
    snapshot_seq: int
    """The watermark of the snapshot loaded; 0: none."""
    snapshot_bytes: int | None
    startup_ms: dict[str, int] = field(default_factory=dict)


async def load(
    js: JetStreamContext,
    store: SnapshotStore | None,
    *,
    ns: str,
    bucket: str,
    say: Say,
    prefer: str | None = None,
) -> Loaded:
    """The state as the newest usable snapshot (`prefer` first) plus the tail of the
    stream, or as a fold of the whole stream when there is no snapshot."""
    began = time.perf_counter()
    found = await newest_usable_snapshot(store, prefer=prefer, say=say) if store else None
    loaded = time.perf_counter()
    if found is not None:
        restored, size = found
        state, start = restored.state, restored.header.watermark_seq
        say(f"snapshot at seq {start} loaded ({state.event_count} events); replaying the tail")
    else:
        await check_history_complete(js, ns=ns, bucket=bucket)
        state, start, size = State(), 1, None
        say("replaying the event stream")
    counted = state.event_count
    state, last = await replay_stream(
        js,
        stream="TITAN_EVT",
        ns=ns,
        state=state,
        start_seq=start,
    )
    done = time.perf_counter()
    result = Loaded(
        state=state,
        last_seq=last,
        replayed=state.event_count - counted,
        snapshot_seq=start if found is not None else 0,
        snapshot_bytes=size,
        startup_ms={
            "snapshot": round((loaded - began) * 1000),
            "tail": round((done - loaded) * 1000),
            "total": round((done - began) * 1000),
        },
    )
    say(
        f"state rebuilt: {state.event_count} events, {result.replayed} replayed "
        f"from the stream (seq {start}..{last}) in {result.startup_ms['total']} ms"
    )
    return result


async def catch_up(
    js: JetStreamContext,
    state: State,
    *,
    ns: str,
    after_seq: int,
) -> int:
    """Fold the rest of the stream after `after_seq` into `state`; the last sequence read."""
    _, last = await replay_stream(
        js, stream="TITAN_EVT", ns=ns, state=state, start_seq=after_seq + 1
    )
    return last


async def newest_usable_snapshot(
    store: SnapshotStore,
    *,
    prefer: str | None,
    say: Say,
) -> tuple[Restored, int] | None:
    """The newest snapshot (`prefer` first, when named) that reads back whole and matches
    its hash, with its size; a damaged one is logged and the next older one tried; None
    when there is none. Every snapshot in the store covers the stream after it: a purge
    only ever trims below the oldest snapshot kept (`runtime/checkpoint.py`)."""
    listed = await store.newest_first()
    names = [prefer] if prefer else []
    names += [s.name for s in listed if s.name != prefer]
    for name in names:
        try:
            data = await store.get(name)
            restored = restore(data)
        except Exception as err:  # SnapshotError, SnapshotStoreError, a lost connection
            log.warning("snapshot %s not usable (%s); trying an older one", name, err)
            continue
        h = restored.header
        if (h.ns, h.shard) != (store.ns, store.shard):
            log.warning("snapshot %s is of %s/%s: skipped", name, h.ns, h.shard)
            continue
        return restored, len(data)
    if names:
        say(f"none of {len(names)} snapshot(s) usable: the whole stream is replayed")
    return None


async def check_history_complete(js: JetStreamContext, *, ns: str, bucket: str) -> None:
    """A replay from the start needs the start: when our events were purged (no genesis,
    yet later events exist) and no snapshot covers them, refuse to start rather than
    rebuild a state without its history (a new genesis would follow). One stream-info
    call listing the namespace's subjects: it grows with subjects, not events."""
    registry = Subjects(ns)
    info = await js.stream_info("TITAN_EVT", subjects_filter=registry.events)
    subjects = info.state.subjects or {}
    has_state = any(is_state_subject(s, ns) for s in subjects)
    if has_state and registry.genesis not in subjects:
        raise HistoryGap(
            f"the event stream of namespace {ns} no longer starts at its genesis "
            "(purged) and no snapshot is usable: refusing to rebuild a partial state; "
            f"restore a snapshot into {bucket}"
        )
