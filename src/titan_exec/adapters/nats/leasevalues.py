"""The values of the lease key and the results of calls on it: pure, no I/O.

`LeaseRecord` is what the holder writes (JSON, sorted keys); `LeaseEntry` the key's newest
entry as read (a record, or a delete/expiry marker); `CallResult` the three outcomes of a
call (`lease._classify` maps errors onto them), turned into the leadership core's inputs
by `acquire_outcome` and `renew_outcome`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from titan_exec.adapters.nats.headers import KV_OPERATION, MARKER_REASON
from titan_exec.core.leadership import (
    AcquireFailed,
    AcquireSucceeded,
    Failure,
    LeaseEmpty,
    LeaseSeen,
    RenewFailed,
    RenewSucceeded,
)


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The value of the lease key."""

    instance_id: str
    session: str
    epoch: int | None
    since_ms: int  # wall clock when this holder acquired the lease (display only)
    lease_ms: int

    @property
    def holder(self) -> str:
        return f"{self.instance_id}/{self.session}"

    def encode(self) -> bytes:
        fields = {
            "instance_id": self.instance_id,
            "session": self.session,
            "epoch": self.epoch,
            "since_ms": self.since_ms,
            "lease_ms": self.lease_ms,
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> LeaseRecord | None:
        """The record, or None for a value this code did not write."""
        try:
            raw = json.loads(data or b"")
            epoch = raw["epoch"]
            record = cls(
                instance_id=str(raw["instance_id"]),
                session=str(raw["session"]),
                epoch=None if epoch is None else int(epoch),
                since_ms=int(raw["since_ms"]),
                lease_ms=int(raw["lease_ms"]),
            )
        except (ValueError, TypeError, KeyError):
            return None
        return record


@dataclass(frozen=True, slots=True)
class LeaseEntry:
    """The newest entry of the lease key: a live record or a delete/expiry marker."""

    revision: int
    record: LeaseRecord | None  # None: a marker, or a value not written by this code
    is_marker: bool

    @property
    def holder(self) -> str | None:
        if self.is_marker:
            return None
        return self.record.holder if self.record is not None else "<unreadable value>"

    def describe(self) -> str:
        if self.holder is None:
            return f"a marker at revision {self.revision}"
        return f"{self.holder} at revision {self.revision}"

    def observe(self, now_ms: int) -> LeaseSeen | LeaseEmpty:
        if self.holder is None:
            return LeaseEmpty(self.revision, now_ms)
        epoch = self.record.epoch if self.record is not None else None
        return LeaseSeen(self.holder, self.revision, epoch, now_ms)


@dataclass(frozen=True, slots=True)
class CallOk:
    revision: int


@dataclass(frozen=True, slots=True)
class CallLost:
    reason: str


@dataclass(frozen=True, slots=True)
class CallUnavailable:
    reason: str


CallResult = CallOk | CallLost | CallUnavailable


def acquire_outcome(
    result: CallResult, sent_at_ms: int, now_ms: int
) -> AcquireSucceeded | AcquireFailed:
    """The core input for the outcome of an ``acquire`` sent at ``sent_at_ms``."""
    match result:
        case CallOk(revision=rev):
            return AcquireSucceeded(rev, sent_at_ms, now_ms)
        case CallLost():
            return AcquireFailed(Failure.LOST, now_ms)
        case CallUnavailable():
            return AcquireFailed(Failure.UNAVAILABLE, now_ms)


def renew_outcome(result: CallResult, sent_at_ms: int, now_ms: int) -> RenewSucceeded | RenewFailed:
    """The core input for the outcome of a ``renew`` sent at ``sent_at_ms``."""
    match result:
        case CallOk(revision=rev):
            return RenewSucceeded(rev, sent_at_ms, now_ms)
        case CallLost():
            return RenewFailed(Failure.LOST, now_ms)
        case CallUnavailable():
            return RenewFailed(Failure.UNAVAILABLE, now_ms)


def is_marker(headers: dict[str, str] | None) -> bool:
    """A delete/purge marker (client-written) or an expiry marker (server-written)."""
    if not headers:
        return False
    return headers.get(KV_OPERATION) in ("DEL", "PURGE") or MARKER_REASON in headers
