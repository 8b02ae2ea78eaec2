"""The leader lease in JetStream KV (ha-protocol.md §3): one key, compare-and-set, TTL.

This module owns the election bucket and every call on the lease key. It decides nothing:
the pure core (`titan_exec.core.leadership`) says when to acquire, renew, release or read,
and this adapter turns each call into one of three outcomes, mapped in one place
(`_classify`, over the codes of `errors`): ``CallOk(revision)``, ``CallLost`` (someone
else holds it: wrong last sequence) or ``CallUnavailable`` (cannot tell: timeout, no
responders, disconnected, a refusal while replicating). The values and results themselves
are in `leasevalues`.
Every call runs under a timeout derived from the lease (default: the renew interval).

- Bucket ``TITAN_EXEC_ELECTION`` (stream ``KV_TITAN_EXEC_ELECTION``), created or bound
  idempotently: history 1, TTL = lease, and limit markers (``limit_marker_ttl`` = lease,
  i.e. the stream's ``subject_delete_marker_ttl``, which needs ``allow_msg_ttl``; nats-py
  sets both) so that an expiry leaves a marker (``Nats-Marker-Reason: MaxAge``) that
  watchers see at once. A bucket with another TTL is refused: every instance's local
  deadline must match the server's expiry.
- Key ``leader`` (``leader.<shard>``); value JSON ``{"instance_id", "session", "epoch",
  "since_ms", "lease_ms"}``. The holder is ``instance_id/session``, unique per process:
  give the core ``LeaderConfig(holder=lease.holder, ...)``.
- **The marker pitfall** (nats-py 2.16.0, nats-server 2.15.1): after an expiry the key's
  newest entry is a server marker, and ``kv.create`` fails with "wrong last sequence"
  until the marker itself expires (nats-py's own fallback only recognises client-written
  ``KV-Operation`` markers, not ``Nats-Marker-Reason``). ``acquire`` then reads the
  newest entry and, when it is a marker, ``update(last=<marker revision>)`` is the atomic
  create.
- **Late writes**: nats-py buffers publishes while reconnecting, so a call that timed out
  may still be applied later. A compare-and-set that fails on an entry of *our own*
  (a late acquire or renew) is retried once on that entry's revision: success then
  proves the write left after this call's send time, which the core's deadline needs.
- nats-py's ``update(last=None)`` means "revision 0" and ``delete(last=0)`` deletes
  unconditionally: `_cas` and `release` take explicit revisions and refuse the others.
- ``watch`` re-subscribes after a reconnect (nats-py's KV watcher goes silent when its
  server restarts) and avoids ``KeyWatcher.updates``; calls restore a cancellation that
  nats-py's ``asyncio.wait_for`` swallowed (Python 3.11): leader tasks must stop when
  cancelled.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import (
    APIError,
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from titan_exec.adapters.nats.errors import (
    is_no_message,
    is_refused_while_replicating,
    is_stream_name_in_use,
    is_wrong_last_sequence,
)
from titan_exec.adapters.nats.headers import EXPECTED_LAST_SUBJECT_SEQ
from titan_exec.adapters.nats.leasevalues import (
    CallLost,
    CallOk,
    CallResult,
    CallUnavailable,
    LeaseEntry,
    LeaseRecord,
    acquire_outcome,
    is_marker,
    renew_outcome,
)
from titan_exec.clock import monotonic_ms, wall_clock_ms
from titan_exec.core.leadership import LeaseEmpty, LeaseSeen, LeaseTiming, LeaseUnavailable

BUCKET = "TITAN_EXEC_ELECTION"
STREAM = f"KV_{BUCKET}"
KEY = "leader"
_SHARD_RE = re.compile(r"^[A-Za-z0-9_-]+$")

Observation = LeaseSeen | LeaseEmpty | LeaseUnavailable


class LeaseSetupError(RuntimeError):
    """The election bucket cannot be created or has settings that contradict ours."""


def lease_key(shard: str | None = None) -> str:
    """``leader``, or ``leader.<shard>`` for one lease per shard."""
    if shard is None:
        return KEY
    if not _SHARD_RE.match(shard):
        raise ValueError(f"shard must match {_SHARD_RE.pattern}, got {shard!r}")
    return f"{KEY}.{shard}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _classify(exc: Exception) -> CallLost | CallUnavailable | None:
    """The one error mapping: lost (definitive), unavailable (cannot tell), or None (a bug)."""
    # a refusal while replicating first: it may be our own renewal in flight, so "cannot
    # tell", never "lost"; our `_cas` raises KeyWrongLastSequenceError only when it lost
    if is_refused_while_replicating(exc):
        return CallUnavailable(_describe(exc))
    if isinstance(exc, KeyWrongLastSequenceError) or is_wrong_last_sequence(exc):
        return CallLost(f"the lease moved on ({_describe(exc)})")
    if isinstance(exc, TimeoutError | nats.errors.Error | OSError):
        return CallUnavailable(_describe(exc))
    return None


def _cancelling() -> int:
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _raise_if_cancel_swallowed(before: int) -> None:
    """nats-py waits for replies with ``asyncio.wait_for``, which on Python 3.11 can
    swallow a cancellation when the reply arrives at the same moment: restore it."""
    if _cancelling() > before:
        raise asyncio.CancelledError


# ---------------------------------------------------------------------------- bucket
async def ensure_bucket(
    js: JetStreamContext, timing: LeaseTiming, *, replicas: int = 1
) -> KeyValue:
    """Create the election bucket, or bind to it when it exists with our lease TTL."""
    ttl_s = timing.lease_ms / 1000
    try:
        kv: KeyValue = await js.create_key_value(
            bucket=BUCKET,
            description="titan-exec leader lease (ha-protocol.md §3)",
            history=1,
            ttl=ttl_s,
            limit_marker_ttl=ttl_s,
            replicas=replicas,
        )
        return kv
    except BadRequestError as exc:
        if not is_stream_name_in_use(exc):
            raise
    kv = await js.key_value(BUCKET)
    status = await kv.status()
    problems = []
    if status.ttl is None or abs(status.ttl - ttl_s) > 1e-6:
        problems.append(f"ttl={status.ttl}s (lease_ms={timing.lease_ms} needs {ttl_s}s)")
    if status.history != 1:
        problems.append(f"history={status.history} (needs 1)")
    if not status.marker_ttl:
        problems.append("no limit marker TTL (expiries would not reach watchers)")
    if problems:
        raise LeaseSetupError(
            f"bucket {BUCKET} exists with " + ", ".join(problems) + ": every instance must "
            f"use the same lease_ms; delete the bucket to change it (nats kv del {BUCKET})"
        )
    return kv


# ----------------------------------------------------------------------------- lease
class NatsLease:
    """The lease key of one instance: acquire, renew, release, read, watch."""

    def __init__(
        self,
        nc: Client,
        kv: KeyValue,
        *,
        instance_id: str,
        timing: LeaseTiming,
        session: str | None = None,
        shard: str | None = None,
        clock_ms: Callable[[], int] = monotonic_ms,
    ) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._kv = kv
        self._timing = timing
        self.instance_id = instance_id
        self.session = session or secrets.token_hex(4)
        self.key = lease_key(shard)
        self._subject = f"$KV.{BUCKET}.{self.key}"
        self._clock_ms = clock_ms
        self._since_ms = 0

    @classmethod
    async def open(
        cls,
        nc: Client,
        *,
        instance_id: str,
        timing: LeaseTiming,
        session: str | None = None,
        shard: str | None = None,
        replicas: int = 1,
        clock_ms: Callable[[], int] = monotonic_ms,
    ) -> NatsLease:
        """Ensure the bucket (bounded by the lease) and return the lease of this instance."""
        try:
            async with asyncio.timeout(timing.lease_ms / 1000):
                kv = await ensure_bucket(nc.jetstream(), timing, replicas=replicas)
        except TimeoutError as exc:
            raise LeaseSetupError(f"bucket {BUCKET}: no answer within the lease") from exc
        return cls(
            nc,
            kv,
            instance_id=instance_id,
            timing=timing,
            session=session,
            shard=shard,
            clock_ms=clock_ms,
        )

    @property
    def holder(self) -> str:
        """What `LeaseSeen.holder` says when the lease is ours (the core's config.holder)."""
        return f"{self.instance_id}/{self.session}"

    def _value(self, epoch: int | None, since_ms: int) -> bytes:
        record = LeaseRecord(self.instance_id, self.session, epoch, since_ms, self._timing.lease_ms)
        return record.encode()

    # ------------------------------------------------------------------------- calls
    async def _call(
        self, what: str, attempt: Callable[[], Awaitable[CallResult]], timeout_ms: int | None
    ) -> CallResult:
        timeout_s = (timeout_ms or self._timing.renew_interval_ms) / 1000
        before = _cancelling()
        try:
            async with asyncio.timeout(timeout_s):
                result = await attempt()
        except Exception as exc:
            outcome = _classify(exc)
            if outcome is None:
                raise
            result = type(outcome)(f"{what}: {outcome.reason}")
        _raise_if_cancel_swallowed(before)
        return result

    async def _cas(self, value: bytes, *, last: int) -> CallOk:
        """Write ``value`` only if the key's newest revision is ``last`` (0: no entry)."""
        if not isinstance(last, int) or last < 0:
            raise ValueError(f"compare-and-set needs an explicit revision >= 0, got {last!r}")
        # a plain publish with the header rather than kv.update: nats-py folds a wrong last
        # sequence and a refusal while replicating into one KeyWrongLastSequenceError, and
        # only the first means "moved on" (`errors`)
        try:
            ack = await self._js.publish(
                self._subject, value, headers={EXPECTED_LAST_SUBJECT_SEQ: str(last)}
            )
        except APIError as exc:
            if is_wrong_last_sequence(exc):
                raise KeyWrongLastSequenceError(description=exc.description) from exc
            raise  # a refusal while replicating among them: "cannot tell" (_classify)
        return CallOk(int(ack.seq))

    async def _latest(self) -> LeaseEntry | None:
        try:
            msg: Any = await self._js.get_last_msg(STREAM, self._subject)
        except NotFoundError as exc:
            if is_no_message(exc):
                return None
            raise
        marker = is_marker(msg.headers)
        record = None if marker else LeaseRecord.decode(msg.data)
        return LeaseEntry(int(msg.seq), record, marker)

    def _is_ours(self, entry: LeaseEntry | None) -> bool:
        return entry is not None and entry.record is not None and entry.record.holder == self.holder

    async def acquire(
        self, *, epoch: int | None = None, timeout_ms: int | None = None
    ) -> CallResult:
        """Take the lease if it is free (no entry, or a delete/expiry marker)."""
        since_ms = wall_clock_ms()
        value = self._value(epoch, since_ms)

        async def attempt() -> CallResult:
            try:
                return CallOk(int(await self._kv.create(self.key, value)))
            except (KeyWrongLastSequenceError, KeyNotFoundError):
                pass  # an entry or a marker is there (or a marker just expired): look
            latest = await self._latest()
            if latest is None:  # the marker expired in between
                return await self._cas(value, last=0)
            if latest.is_marker or self._is_ours(latest):  # the pitfall / a late write
                return await self._cas(value, last=latest.revision)
            return CallLost(f"held by {latest.describe()}")

        result = await self._call("acquire", attempt, timeout_ms)
        if isinstance(result, CallOk):
            self._since_ms = since_ms
        return result

    def _cas_at(self, value: bytes, revision: int) -> Callable[[], Awaitable[CallResult]]:
        """One attempt to write ``value`` over ``revision``: a write of ours that a timed-out
        call applied late counts as that revision; anything else newer means lost."""

        async def attempt() -> CallResult:
            try:
                return await self._cas(value, last=revision)
            except KeyWrongLastSequenceError:
                pass
            latest = await self._latest()
            if latest is not None and self._is_ours(latest):  # ours, applied late
                return await self._cas(value, last=latest.revision)
            found = "nothing" if latest is None else latest.describe()
            return CallLost(f"revision {revision} is no longer the lease: found {found}")

        return attempt

    async def take_over(
        self, revision: int, *, epoch: int | None = None, timeout_ms: int | None = None
    ) -> CallResult:
        """Take the lease held at ``revision`` by a holder whose process is gone
        (`core/presence.py`): compare-and-set on that revision, so a holder that wrote
        since (alive after all) keeps it and this call is lost."""
        if revision < 1:
            raise ValueError(f"take over needs the holder's revision (>= 1), got {revision}")
        since_ms = wall_clock_ms()
        value = self._value(epoch, since_ms)

        result = await self._call("take over", self._cas_at(value, revision), timeout_ms)
        if isinstance(result, CallOk):
            self._since_ms = since_ms
        return result

    async def renew(
        self, revision: int, *, epoch: int | None = None, timeout_ms: int | None = None
    ) -> CallResult:
        """Extend the lease held at ``revision`` (compare-and-set)."""
        if revision < 1:
            raise ValueError(f"renew needs the revision we hold (>= 1), got {revision}")
        value = self._value(epoch, self._since_ms)

        return await self._call("renew", self._cas_at(value, revision), timeout_ms)

    async def release(self, revision: int, *, timeout_ms: int | None = None) -> CallResult:
        """Delete the lease only if ``revision`` is still its newest entry (ours)."""
        if revision < 1:
            raise ValueError(f"release needs the revision we hold (>= 1), got {revision}")

        async def attempt() -> CallResult:
            await self._kv.delete(self.key, last=revision)
            return CallOk(revision)

        return await self._call("release", attempt, timeout_ms)

    async def inspect(self, *, timeout_ms: int | None = None) -> LeaseEntry | None:
        """The newest entry (None: no entry). Raises on errors: for status displays."""
        before = _cancelling()
        async with asyncio.timeout((timeout_ms or self._timing.renew_interval_ms) / 1000):
            latest = await self._latest()
        _raise_if_cancel_swallowed(before)
        return latest

    async def read(self, *, timeout_ms: int | None = None) -> Observation:
        """Poll the lease (a watch can miss): seen, empty, or unavailable (cannot tell)."""
        try:
            latest = await self.inspect(timeout_ms=timeout_ms)
        except Exception as exc:
            if _classify(exc) is None:
                raise
            return LeaseUnavailable(self._clock_ms())
        now = self._clock_ms()
        return LeaseEmpty(0, now) if latest is None else latest.observe(now)

    async def watch(self) -> AsyncIterator[LeaseSeen | LeaseEmpty]:
        """Every change of the lease key, starting with its current state; never ends.

        Expiry and release arrive as `LeaseEmpty` at once (limit markers). Run it in its
        own task and put each observation on the driver's queue; poll with `read` too.
        After a reconnect the watch is re-created (and starts with the current state
        again): nats-py's KV watcher, an ordered push consumer, stays silent after the
        server that held it restarts (nats-py 2.16.0, nats-server 2.15.1).
        """
        check_s = self._timing.renew_interval_ms / 1000
        before = _cancelling()
        while True:
            reconnects = self._nc.stats["reconnects"]
            try:
                async with asyncio.timeout(self._timing.lease_ms / 1000):
                    watcher: Any = await self._kv.watch(self.key)
            except Exception as exc:
                if _classify(exc) is None:
                    raise
                await asyncio.sleep(check_s)  # not reachable now: the poll path covers
                continue
            try:
                _raise_if_cancel_swallowed(before)
                is_initial = True
                while self._nc.stats["reconnects"] == reconnects:
                    try:
                        # not watcher.updates(): its asyncio.wait_for can swallow a
                        # cancellation on Python 3.11 when an entry arrives at that moment
                        async with asyncio.timeout(check_s):
                            entry = await anext(watcher)
                    except TimeoutError:
                        continue
                    now = self._clock_ms()
                    if entry is None:  # end of the initial state: nothing there
                        if is_initial:
                            yield LeaseEmpty(0, now)
                    elif entry.operation in ("DEL", "PURGE"):
                        yield LeaseEmpty(int(entry.revision), now)
                    else:
                        record = LeaseRecord.decode(entry.value)
                        yield LeaseEntry(int(entry.revision), record, False).observe(now)
                    is_initial = False
            finally:
                try:
                    async with asyncio.timeout(1):
                        await watcher.stop()
                except Exception:  # the connection may be gone; the subscription goes with it
                    pass


__all__: list[str] = [
    "BUCKET",
    "KEY",
    "STREAM",
    "CallLost",
    "CallOk",
    "CallResult",
    "CallUnavailable",
    "LeaseEntry",
    "LeaseRecord",
    "LeaseSetupError",
    "NatsLease",
    "Observation",
    "acquire_outcome",
    "ensure_bucket",
    "lease_key",
    "renew_outcome",
]
