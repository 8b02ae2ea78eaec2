"""The JetStream KV lease against a real nats-server (lease 1 s): bucket, acquire, renew,
release, expiry markers seen by watchers, the marker pitfall, lost vs unavailable."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from nats.aio.client import Client
from nats.js.errors import APIError, KeyWrongLastSequenceError

from titan_exec.adapters.nats.connect import NatsSettings, connect
from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.adapters.nats.lease import (
    BUCKET,
    STREAM,
    CallLost,
    CallOk,
    CallUnavailable,
    LeaseSetupError,
    NatsLease,
    _classify,
    acquire_outcome,
    ensure_bucket,
    renew_outcome,
)
from titan_exec.core.leadership import (
    AcquireFailed,
    AcquireSucceeded,
    Failure,
    LeaseEmpty,
    LeaseSeen,
    LeaseTiming,
    LeaseUnavailable,
    RenewFailed,
)

pytestmark = pytest.mark.integration

TIMING = LeaseTiming(lease_ms=1000)
MARKER_SLACK_S = 1.0  # the server's expiry timer fires ~0.25 s after the TTL here


@pytest.fixture
async def other_client(nats_server: EmbeddedNats) -> AsyncIterator[Client]:
    nc = await connect(NatsSettings(urls=(nats_server.url,), name="pytest-b"))
    try:
        yield nc
    finally:
        await nc.close()


@pytest.fixture
async def a(nats_client: Client) -> NatsLease:
    return await NatsLease.open(nats_client, instance_id="primary", timing=TIMING)


@pytest.fixture
async def b(other_client: Client) -> NatsLease:
    return await NatsLease.open(other_client, instance_id="backup", timing=TIMING)


def timeless(observation: LeaseSeen | LeaseEmpty | LeaseUnavailable) -> object:
    return replace(observation, now_ms=0)


def ok(result: object) -> int:
    assert isinstance(result, CallOk), result
    return result.revision


@contextlib.asynccontextmanager
async def watching(lease: NatsLease) -> AsyncIterator[asyncio.Queue[LeaseSeen | LeaseEmpty]]:
    seen: asyncio.Queue[LeaseSeen | LeaseEmpty] = asyncio.Queue()

    async def pump() -> None:
        async for observation in lease.watch():
            seen.put_nowait(observation)

    task = asyncio.create_task(pump())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def next_empty(seen: asyncio.Queue[LeaseSeen | LeaseEmpty], timeout_s: float) -> LeaseEmpty:
    async with asyncio.timeout(timeout_s):
        while True:
            observation = await seen.get()
            if isinstance(observation, LeaseEmpty):
                return observation


async def wait_for_expiry(lease: NatsLease) -> int:
    """Poll until the key's newest entry is a marker; return the marker's revision."""
    async with asyncio.timeout(1 + MARKER_SLACK_S + 1):
        while True:
            entry = await lease.inspect()
            if entry is not None and entry.is_marker:
                return entry.revision
            await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------- bucket
async def test_the_bucket_has_the_lease_ttl_history_1_and_limit_markers(
    a: NatsLease, nats_client: Client
) -> None:
    info = await nats_client.jetstream().stream_info(STREAM)
    assert info.config.max_age == 1.0
    assert info.config.max_msgs_per_subject == 1
    assert info.config.subject_delete_marker_ttl == 1.0
    assert info.config.allow_msg_ttl is True
    # idempotent: a second instance binds to it
    again = await NatsLease.open(nats_client, instance_id="x", timing=TIMING)
    assert again.key == "leader"


async def test_a_bucket_with_another_lease_is_refused_naming_the_ttl(
    a: NatsLease, nats_client: Client
) -> None:
    with pytest.raises(LeaseSetupError, match=r"ttl=1.0s \(lease_ms=2000 needs 2.0s\)"):
        await ensure_bucket(nats_client.jetstream(), LeaseTiming(lease_ms=2000))


# ------------------------------------------------------------------ acquire, renew, hold
async def test_acquire_then_renew_by_compare_and_set(a: NatsLease) -> None:
    first = ok(await a.acquire())
    second = ok(await a.renew(first, epoch=7))
    assert second > first
    assert timeless(await a.read()) == LeaseSeen(a.holder, second, 7, 0)
    assert a.holder.startswith("primary/")


async def test_a_second_instance_cannot_acquire_while_the_lease_is_held(
    a: NatsLease, b: NatsLease
) -> None:
    ok(await a.acquire())
    result = await b.acquire()
    assert isinstance(result, CallLost)
    assert f"held by {a.holder}" in result.reason


async def test_release_lets_the_other_acquire_at_once_and_only_the_holder_can_release(
    a: NatsLease, b: NatsLease
) -> None:
    revision = ok(await a.acquire())
    async with watching(b) as seen:
        assert isinstance(await seen.get(), LeaseSeen)
        ok(await a.release(revision))
        empty = await next_empty(seen, timeout_s=0.5)
    assert empty.revision > revision
    taken = ok(await b.acquire())
    assert isinstance(await a.release(revision), CallLost)  # stale: b's lease stays
    assert timeless(await a.read()) == LeaseSeen(b.holder, taken, None, 0)


# ------------------------------------------------------------------- expiry and markers
async def test_nats_py_create_fails_on_an_expiry_marker(a: NatsLease, nats_client: Client) -> None:
    """The pitfall of the design note, reproduced with nats-py's own create."""
    kv = await nats_client.jetstream().key_value(BUCKET)
    await kv.create("leader", b"{}")
    await wait_for_expiry(a)
    with pytest.raises(KeyWrongLastSequenceError):
        await kv.create("leader", b"{}")


async def test_the_watcher_sees_the_expiry_within_the_lease_plus_marker_time(
    a: NatsLease, b: NatsLease
) -> None:
    async with watching(b) as seen:
        assert timeless(await seen.get()) == LeaseEmpty(0, 0)  # the current state first
        started = time.monotonic()
        revision = ok(await a.acquire())
        empty = await next_empty(seen, timeout_s=1 + MARKER_SLACK_S)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed <= 1 + MARKER_SLACK_S
    assert empty.revision == revision + 1


async def test_acquire_after_an_expiry_marker_is_the_update_over_the_marker(
    a: NatsLease, b: NatsLease
) -> None:
    ok(await a.acquire())
    marker = await wait_for_expiry(a)
    assert timeless(await b.read()) == LeaseEmpty(marker, 0)
    taken = ok(await b.acquire())  # kv.create alone would fail here
    assert taken == marker + 1


async def test_renew_after_someone_else_took_the_lease_is_lost(a: NatsLease, b: NatsLease) -> None:
    mine = ok(await a.acquire())
    await wait_for_expiry(a)
    ok(await b.acquire())
    result = await a.renew(mine)
    assert isinstance(result, CallLost)
    assert f"found {b.holder}" in result.reason
    assert renew_outcome(result, 0, 5) == RenewFailed(Failure.LOST, 5)


async def test_a_late_write_of_our_own_is_recovered_not_lost(
    a: NatsLease, nats_client: Client
) -> None:
    """A renew that timed out but was applied later (nats-py replays buffered publishes
    after a reconnect) leaves our own entry at a newer revision."""
    first = ok(await a.acquire())
    kv = await nats_client.jetstream().key_value(BUCKET)
    entry = await kv.get("leader")
    assert entry.value is not None
    late = await kv.update("leader", entry.value, last=first)
    renewed = ok(await a.renew(first))
    assert renewed == late + 1


# ----------------------------------------------------------------- cannot tell vs lost
async def test_a_stopped_server_means_unavailable_not_lost(
    a: NatsLease, b: NatsLease, nats_server: EmbeddedNats
) -> None:
    revision = ok(await a.acquire())
    await nats_server.astop()
    started = time.monotonic()
    renew = await a.renew(revision)
    assert isinstance(renew, CallUnavailable), renew
    assert time.monotonic() - started < TIMING.renew_interval_ms / 1000 + 0.2  # bounded call
    assert isinstance(await b.acquire(), CallUnavailable)
    assert isinstance(await a.release(revision), CallUnavailable)
    assert isinstance(await a.read(), LeaseUnavailable)
    await nats_server.astart()  # same port and store: the clients reconnect
    async with asyncio.timeout(5):
        while isinstance(await a.read(), LeaseUnavailable):
            await asyncio.sleep(0.05)


async def test_the_watch_resumes_after_the_server_restarts(
    a: NatsLease, b: NatsLease, nats_server: EmbeddedNats
) -> None:
    async with watching(b) as seen:
        assert timeless(await seen.get()) == LeaseEmpty(0, 0)
        await nats_server.astop()
        await nats_server.astart()
        async with asyncio.timeout(5):
            while isinstance(result := await a.acquire(), CallUnavailable):
                await asyncio.sleep(0.05)
        revision = ok(result)
        async with asyncio.timeout(3):
            while timeless(await seen.get()) != LeaseSeen(a.holder, revision, None, 0):
                pass


async def test_a_cancellation_swallowed_inside_nats_py_is_restored(a: NatsLease) -> None:
    """nats-py's ``asyncio.wait_for`` can swallow a cancellation on Python 3.11."""
    entered = asyncio.Event()

    async def swallowing() -> CallOk:
        entered.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            pass  # what wait_for does when the reply arrives at the same moment
        return CallOk(1)

    call = asyncio.create_task(a._call("renew", swallowing, 5000))
    await entered.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


def test_call_results_become_core_inputs() -> None:
    assert acquire_outcome(CallOk(3), 10, 20) == AcquireSucceeded(3, 10, 20)
    assert acquire_outcome(CallLost("x"), 10, 20) == AcquireFailed(Failure.LOST, 20)
    assert acquire_outcome(CallUnavailable("x"), 10, 20) == AcquireFailed(Failure.UNAVAILABLE, 20)


async def test_revisions_are_explicit(a: NatsLease) -> None:
    with pytest.raises(ValueError, match="renew needs the revision"):
        await a.renew(0)
    with pytest.raises(ValueError, match="release needs the revision"):
        await a.release(0)


def test_a_refusal_while_replicating_is_cannot_tell_not_lost() -> None:
    """10164 (a replicated bucket refusing a compare-and-set while an earlier write to the
    key is still being replicated, possibly our own renewal) must not fence; 10071 does."""
    busy = APIError(code=400, err_code=10164, description="wrong last sequence")
    moved = APIError(code=400, err_code=10071, description="wrong last sequence: 7")
    assert isinstance(_classify(busy), CallUnavailable)
    assert isinstance(_classify(moved), CallLost)
