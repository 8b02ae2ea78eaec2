"""Where a start (or a rebuild) begins: the newest usable snapshot, or the whole stream
when it is still whole. Used by `Service._rebuild`; the tail replay stays there."""

from __future__ import annotations

import logging
from collections.abc import Callable

from nats.js import JetStreamContext

from titan_exec.adapters.nats.snapshots import SnapshotStore
from titan_exec.core.snapshot import Restored, restore
from titan_exec.wire.contract import is_state_subject

log = logging.getLogger(__name__)


class HistoryGap(RuntimeError):
    """The stream no longer holds the whole history and no snapshot covers the gap."""


async def newest_usable_snapshot(
    store: SnapshotStore,
    *,
    prefer: str | None,
    say: Callable[[str], None],
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
    info = await js.stream_info("TITAN_EVT", subjects_filter=f"titan.evt.{ns}.>")
    subjects = info.state.subjects or {}
    has_state = any(is_state_subject(s, ns) for s in subjects)
    if has_state and f"titan.evt.{ns}.genesis.v1" not in subjects:
        raise HistoryGap(
            f"the event stream of namespace {ns} no longer starts at its genesis "
            "(purged) and no snapshot is usable: refusing to rebuild a partial state; "
            f"restore a snapshot into {bucket}"
        )
