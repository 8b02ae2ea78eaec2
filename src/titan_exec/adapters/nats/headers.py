"""The NATS and JetStream header names the adapters read or write, defined once.

Server-defined names (``Nats-*``) have a meaning to nats-server; the ``Titan-*`` names of
the epoch fence live with it (`fence.EPOCH_HEADER`, `fence.INSTANCE_HEADER`).
"""

from __future__ import annotations

MSG_ID = "Nats-Msg-Id"
"""The message's idempotency key: a stream stores one message per id within its
duplicate window, and acknowledges a re-send with the stored message's sequence."""
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
"""Compare-and-set: stored only if the last message on the subject (or on the subject
named by `EXPECTED_LAST_SUBJECT_SEQ_SUBJECT`) has this sequence (0: none)."""
EXPECTED_LAST_SUBJECT_SEQ_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
"""The subject whose last sequence `EXPECTED_LAST_SUBJECT_SEQ` checks (the epoch subject)."""
BATCH_ID = "Nats-Batch-Id"
"""Atomic batch publish (nats-server 2.12+, a stream with ``allow_atomic``): the batch
this message belongs to (at most 64 characters)."""
BATCH_SEQUENCE = "Nats-Batch-Sequence"
"""The message's place in its batch, from 1."""
BATCH_COMMIT = "Nats-Batch-Commit"
"""``1`` on the batch's last message: the server stores the whole batch or none of it and
answers this message with ``{"seq": <last>, "batch": <id>, "count": <n>}``."""
MARKER_REASON = "Nats-Marker-Reason"
"""On a server-written marker (``MaxAge``, ``Purge``, ``Remove``): a KV key expired."""
KV_OPERATION = "KV-Operation"
"""On a client-written KV marker: ``DEL`` or ``PURGE``."""
STATUS = "Status"
"""A reply's status code (no responders: `errors.NO_RESPONDERS`)."""
DESCRIPTION = "Description"
"""A reply's status text, with `STATUS`."""

__all__: list[str] = [
    "BATCH_COMMIT",
    "BATCH_ID",
    "BATCH_SEQUENCE",
    "DESCRIPTION",
    "EXPECTED_LAST_SUBJECT_SEQ",
    "EXPECTED_LAST_SUBJECT_SEQ_SUBJECT",
    "KV_OPERATION",
    "MARKER_REASON",
    "MSG_ID",
    "STATUS",
]
