"""JetStream error codes and what each means here: the one module that knows them.

A refused JetStream request reaches us in one of two forms: nats-py's
``nats.js.errors.APIError`` (``err_code``: the server's code), or our `PublishRejected`
(``code``), which `AckedPublisher` raises from the acknowledgement it reads itself. The
``is_*`` classifiers below accept either form (and anything else: False), so that no
other module compares a number; the publisher raises the named subclass of a code it
knows (`WrongLastSequence`, `RefusedWhileReplicating`, `DuplicateInProcess`,
`NoResponders`), so that a traceback names the refusal.

The codes (nats-server 2.15.1, ``server/errors.json``), and what each decides:

- 10071 ``JSStreamWrongLastSequenceErrF``, "wrong last sequence: <n>": a compare-and-set
  (``Nats-Expected-Last-Subject-Sequence``) found another sequence. Definitive: the
  subject moved on (a newer epoch marker, a lease someone else wrote).
- 10164 ``JSStreamWrongLastSequenceConstantErr``, "wrong last sequence" without a
  sequence: a replicated stream refusing a conditional write *without comparing* while an
  earlier write checking the same subject is still in flight. Decides nothing (it can be
  our own previous write). nats-py's KV folds it into ``KeyWrongLastSequenceError``
  together with 10071: never rely on that exception alone.
- 10158 ``JSStreamDuplicateMessageConflict``, "duplicate message id is in process": a
  re-send arrived while the first send of the same ``Nats-Msg-Id`` is still being stored.
  Decides nothing; the next answer is that message's acknowledgement.
- 10037 ``JSNoMessageFoundErr``: a read by subject or sequence found nothing (an answer,
  not a failure). 10059 ``JSStreamNotFoundErr`` (a missing stream) is a failure.
- 10058 ``JSStreamNameExistErr``: a stream (or KV bucket) of that name exists with another
  configuration: bind to it and compare. 10065 ``JSStreamSubjectOverlapErr``: another
  stream captures the subjects.
- Atomic batch publish (nats-server 2.12+), each refusing the whole batch (nothing of it
  is stored): 10174 ``JSAtomicPublishDisabledErr`` (the stream lacks ``allow_atomic``);
  10199 ``JSAtomicPublishTooLargeBatchErrF`` (more than the server's batch limit, 1000 by
  default); 10201 ``JSAtomicPublishContainsDuplicateMessageErr``: a message of the batch
  has a ``Nats-Msg-Id`` already stored, e.g. the re-send of a batch whose answer was lost
  and which was stored after all. A batch is stored whole or not at all, so it decides
  nothing about the others: resolve message by message. A stale fence in a batch answers
  10071 for the whole batch.
- 503, no responders: nothing listens on the subject (no such stream, or a replicated
  stream between leaders). An acknowledgement with the status header ``503``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nats.js.errors import APIError

WRONG_LAST_SEQUENCE = 10071
REFUSED_WHILE_REPLICATING = 10164
DUPLICATE_IN_PROCESS = 10158
ATOMIC_DISABLED = 10174
BATCH_TOO_LARGE = 10199
BATCH_HAS_DUPLICATE = 10201
NO_MESSAGE = 10037
STREAM_NOT_FOUND = 10059
STREAM_NAME_IN_USE = 10058
SUBJECTS_OVERLAP = 10065
NO_RESPONDERS = 503


class PublishRejected(Exception):
    """JetStream refused the message (`code`: its API error code, or 503 no responders)."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description

    @classmethod
    def of(cls, code: int, description: str) -> PublishRejected:
        """The named rejection for a known code, else a plain `PublishRejected`."""
        return _NAMED.get(code, PublishRejected)(code, description)


class WrongLastSequence(PublishRejected):
    """10071: the compare-and-set found another sequence (the subject moved on)."""


class RefusedWhileReplicating(PublishRejected):
    """10164: refused without comparing, an earlier conditional write is in flight."""


class DuplicateInProcess(PublishRejected):
    """10158: the first send of this message id is still being stored."""


class BatchHasDuplicate(PublishRejected):
    """10201: the batch holds a message id already stored; nothing of the batch was."""


class NoResponders(PublishRejected):
    """503: nothing answers on the subject (no stream, or a stream between leaders)."""


_NAMED: dict[int, type[PublishRejected]] = {
    WRONG_LAST_SEQUENCE: WrongLastSequence,
    REFUSED_WHILE_REPLICATING: RefusedWhileReplicating,
    DUPLICATE_IN_PROCESS: DuplicateInProcess,
    BATCH_HAS_DUPLICATE: BatchHasDuplicate,
    NO_RESPONDERS: NoResponders,
}


def error_code(exc: BaseException) -> int | None:
    """The JetStream code of ``exc``: `PublishRejected.code`, ``APIError.err_code``, or None.

    Some nats-py subclasses of ``APIError`` (``KeyWrongLastSequenceError``) never set
    ``err_code``: they have none."""
    if isinstance(exc, PublishRejected):
        return exc.code
    if isinstance(exc, APIError):
        code = getattr(exc, "err_code", None)
        return code if isinstance(code, int) else None
    return None


def is_wrong_last_sequence(exc: BaseException) -> bool:
    """10071: definitive, the compare-and-set lost (someone else wrote the subject)."""
    return error_code(exc) == WRONG_LAST_SEQUENCE


def is_refused_while_replicating(exc: BaseException) -> bool:
    """10164: cannot tell, an earlier conditional write on the subject is in flight."""
    return error_code(exc) == REFUSED_WHILE_REPLICATING


def is_duplicate_in_process(exc: BaseException) -> bool:
    """10158: cannot tell yet, the first send of this message id is being stored."""
    return error_code(exc) == DUPLICATE_IN_PROCESS


def is_batch_with_duplicate(exc: BaseException) -> bool:
    """10201: a message of the batch was stored before; the batch was refused whole."""
    return error_code(exc) == BATCH_HAS_DUPLICATE


def is_no_responders(exc: BaseException) -> bool:
    """503 on a publish: nothing listens (no such stream, or none of its leaders yet)."""
    return error_code(exc) == NO_RESPONDERS


def is_no_message(exc: BaseException) -> bool:
    """10037: the read found no message (not a missing stream: that is 10059)."""
    return error_code(exc) == NO_MESSAGE


def is_stream_name_in_use(exc: BaseException) -> bool:
    """10058: a stream of that name exists with another configuration."""
    return error_code(exc) == STREAM_NAME_IN_USE


def is_subjects_overlap(exc: BaseException) -> bool:
    """10065: another stream already captures some of the subjects."""
    return error_code(exc) == SUBJECTS_OVERLAP


def reply_error_code(error: Mapping[str, Any]) -> int:
    """The code of the ``error`` object of a JSON JetStream API reply: its ``err_code``,
    else its HTTP-like ``code``; 0 when it has neither (or an unreadable one)."""
    try:
        return int(error.get("err_code") or error.get("code") or 0)
    except (TypeError, ValueError):
        return 0


__all__: list[str] = [
    "ATOMIC_DISABLED",
    "BATCH_HAS_DUPLICATE",
    "BATCH_TOO_LARGE",
    "DUPLICATE_IN_PROCESS",
    "NO_MESSAGE",
    "NO_RESPONDERS",
    "REFUSED_WHILE_REPLICATING",
    "STREAM_NAME_IN_USE",
    "STREAM_NOT_FOUND",
    "SUBJECTS_OVERLAP",
    "WRONG_LAST_SEQUENCE",
    "BatchHasDuplicate",
    "DuplicateInProcess",
    "NoResponders",
    "PublishRejected",
    "RefusedWhileReplicating",
    "WrongLastSequence",
    "error_code",
    "is_batch_with_duplicate",
    "is_duplicate_in_process",
    "is_no_message",
    "is_no_responders",
    "is_refused_while_replicating",
    "is_stream_name_in_use",
    "is_subjects_overlap",
    "is_wrong_last_sequence",
    "reply_error_code",
]
