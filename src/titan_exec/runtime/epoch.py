"""The epoch marker (ha-protocol.md §6): a compare-and-set on the shard's epoch subject of
`TITAN_EVT`. Its stream sequence is the new epoch; from the moment it lands every fenced
write of the previous active is refused by the stream."""

from __future__ import annotations

import json
import logging

from nats.js import JetStreamContext

from titan_exec.adapters.nats.fence import last_subject_msg, marker_headers

log = logging.getLogger(__name__)


def marker_token(data: bytes) -> str | None:
    """The takeover attempt a marker names (None: not a marker of ours)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    token = doc.get("token") if isinstance(doc, dict) else None
    return token if isinstance(token, str) else None


async def write_epoch_marker(
    js: JetStreamContext,
    subject: str,
    *,
    instance_id: str,
    ts_ms: int,
    token: str = "",
    timeout_s: float = 5.0,
) -> int:
    """Compare-and-set a new marker on `subject`; returns its sequence, the epoch.

    `token` names one attempt to take over: when a call timed out but its marker landed,
    the retry finds the newest marker carrying the same token and adopts it (instead of
    refusing itself as deposed)."""
    newest = await last_subject_msg(js, "TITAN_EVT", subject)
    previous = newest[0] if newest is not None else 0
    if token and newest is not None and marker_token(newest[1]) == token:
        log.info("epoch marker of this takeover found: epoch %d", previous)
        return previous
    body = json.dumps(
        {"instance_id": instance_id, "previous_epoch": previous, "token": token, "ts": ts_ms}
    ).encode()
    ack = await js.publish(subject, body, headers=marker_headers(previous), timeout=timeout_s)
    log.info("epoch marker written: epoch %d (previous %d)", ack.seq, previous)
    return int(ack.seq)
