"""The JetStream epoch fence (ha-protocol.md §4): headers and error recognition.

This module owns the header names and values that make the server refuse a write
from a deposed leader, and recognising that refusal. It does not decide anything:
the runtime writes the epoch marker, remembers its sequence (the epoch) and fences
itself when ``is_fence_rejection`` says a write was refused.

- The epoch marker on ``<epoch subject>`` is written with ``marker_headers(last)``:
  it is accepted only if the last message on that subject still has sequence
  ``last`` (0 = no marker yet). Its stream sequence is the new epoch.
- Every event of that leader carries ``fenced_headers(epoch subject, epoch)``: it is
  accepted only while the newest marker is still the leader's own.
- Every event of a leader also carries ``writer_headers(epoch, instance_id)``
  (``Titan-Epoch``, ``Titan-Instance``): informational, never checked by the server. They
  name the writer of an event, so that a checker reading the stream can say who wrote an
  event that is unfenced (the test-only build without fencing) or from a deposed epoch.
- A refused write is a wrong last sequence (`errors.is_wrong_last_sequence`: an
  ``APIError`` or a `PublishRejected` with that code), checked with nats-server 2.15.1.

Caution (nats-py 2.16.0, nats-io/nats.py#985): a ``js.publish_async`` whose ack is an
error never resolves its future (the error escapes nats-py's reply handler). Await
fenced writes with ``js.publish`` or put a timeout on ``publish_async`` futures.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from titan_exec.adapters.nats.errors import is_no_message, is_wrong_last_sequence
from titan_exec.adapters.nats.headers import (
    EXPECTED_LAST_SUBJECT_SEQ,
    EXPECTED_LAST_SUBJECT_SEQ_SUBJECT,
)

EPOCH_HEADER = "Titan-Epoch"
"""The writer's epoch (the stream sequence of its epoch marker); informational."""
INSTANCE_HEADER = "Titan-Instance"
"""The writer's instance id (`service.instance_id`); informational."""


def _check_subject(subject: str) -> None:
    if not subject or any(c in subject for c in " \t\r\n*>"):
        raise ValueError(f"fence subject must be a concrete subject, got {subject!r}")


def fenced_headers(epoch_subject: str, epoch_seq: int) -> dict[str, str]:
    """Headers that let a write land only while ``epoch_seq`` is the newest epoch marker.

    ``epoch_seq`` is the stream sequence of this leader's marker on ``epoch_subject``.
    """
    _check_subject(epoch_subject)
    if epoch_seq < 1:
        raise ValueError(f"epoch_seq must be a stream sequence >= 1, got {epoch_seq}")
    return {
        EXPECTED_LAST_SUBJECT_SEQ_SUBJECT: epoch_subject,
        EXPECTED_LAST_SUBJECT_SEQ: str(epoch_seq),
    }


def writer_headers(epoch_seq: int, instance_id: str) -> dict[str, str]:
    """Headers naming who wrote an event: its epoch and instance. Checked by no server;
    they are there for whoever reads the stream afterwards. An empty ``instance_id`` is
    left out (a writer that was not given one)."""
    if epoch_seq < 1:
        raise ValueError(f"epoch_seq must be a stream sequence >= 1, got {epoch_seq}")
    headers = {EPOCH_HEADER: str(epoch_seq)}
    if instance_id:
        headers[INSTANCE_HEADER] = instance_id
    return headers


def marker_headers(last_marker_seq: int) -> dict[str, str]:
    """Headers for writing a new epoch marker: compare-and-set on the marker subject.

    ``last_marker_seq`` is the sequence of the newest marker seen, 0 when there is none.
    """
    if last_marker_seq < 0:
        raise ValueError(f"last_marker_seq must be >= 0, got {last_marker_seq}")
    return {EXPECTED_LAST_SUBJECT_SEQ: str(last_marker_seq)}


def is_fence_rejection(exc: BaseException) -> bool:
    """True if ``exc`` is the server refusing a write because the expected sequence moved."""
    return is_wrong_last_sequence(exc)


async def last_subject_msg(
    js: JetStreamContext, stream: str, subject: str
) -> tuple[int, bytes] | None:
    """(stream sequence, body) of the newest message on ``subject``; None if none."""
    _check_subject(subject)
    try:
        msg = await js.get_last_msg(stream, subject)
    except NotFoundError as exc:
        if is_no_message(exc):  # a missing stream is not "no message": re-raise
            return None
        raise
    if msg.seq is None:
        raise RuntimeError(f"nats-server returned no sequence for {subject} in {stream}")
    return msg.seq, msg.data or b""


async def last_subject_seq(js: JetStreamContext, stream: str, subject: str) -> int:
    """Stream sequence of the newest message on ``subject`` in ``stream``; 0 if none."""
    newest = await last_subject_msg(js, stream, subject)
    return newest[0] if newest is not None else 0


__all__: list[str] = [
    "EPOCH_HEADER",
    "EXPECTED_LAST_SUBJECT_SEQ",
    "EXPECTED_LAST_SUBJECT_SEQ_SUBJECT",
    "INSTANCE_HEADER",
    "fenced_headers",
    "is_fence_rejection",
    "last_subject_msg",
    "last_subject_seq",
    "marker_headers",
    "writer_headers",
]
