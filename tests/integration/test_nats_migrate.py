"""`titan-exec nats migrate` on a real nats-server: the old deployment's WorkQueue
`TITAN_CMD` (as titan-execution-rs and the brain's ensureStreams create it, with the
Rust service's durable consumer) holding waiting commands is rebuilt with limits retention
and every command back in order with its headers; the service then starts on it and
decides them. A dry run changes nothing, an unrecognised stream is refused, a reader of
the old stream stops it, and an interrupted migration is resumed."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import api

from tests.integration.harness import SECRET, world
from titan_exec.adapters.nats import cmdmigrate as mig
from titan_exec.adapters.nats.connect import NatsSettings, connect
from titan_exec.adapters.nats.streams import (
    StreamMigrationError,
    _differences,
    ensure_streams,
)
from titan_exec_lab.harness.feeds import Brain

pytestmark = pytest.mark.integration

WEEK_S = 7 * 24 * 3600.0


@pytest.fixture
async def nc(service_nats: Any) -> AsyncIterator[Client]:
    client = await connect(NatsSettings(urls=(service_nats.url,), name="pytest-migrate"))
    try:
        yield client
    finally:
        await client.close()


async def cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HMAC", "NATS", "TITAN"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "titan_exec",
        "nats",
        "migrate",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    print(out.decode(), err.decode())
    return proc.returncode or 0, out.decode(), err.decode()


async def old_deployment(nc: Client) -> Brain:
    """TITAN_CMD as upstream created it, the Rust service's consumer on it, and commands
    waiting: signed intents (Nats-Msg-Id = signal id), one with more headers, one for
    another consumer (the brain's flatten), and a gap where the old service had taken one."""
    js = nc.jetstream()
    await js.add_stream(
        api.StreamConfig(
            name="TITAN_CMD",
            subjects=["titan.cmd.>"],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            max_age=WEEK_S,
            duplicate_window=60.0,
        )
    )
    await js.add_consumer(
        "TITAN_CMD",
        api.ConsumerConfig(
            durable_name="EXECUTION_CORE",
            filter_subject="titan.cmd.exec.>",
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=30.0,
            max_deliver=5,
        ),
    )
    brain = Brain(nc, secret=SECRET.encode())
    for i, symbol in enumerate(["BTC/USDT", "ETH/USDT", "BTC/USDT", "SOL/USDT", "BTC/USDT"]):
        await brain.place(brain.intent(f"mig-{i}", symbol, "BUY_SETUP", "0.01"))
    await js.publish(
        brain.place_subject("ETH/USDT"),
        brain.envelope(brain.intent("mig-raw", "ETH/USDT", "BUY_SETUP", "0.02")),
        headers={"Nats-Msg-Id": "mig-raw", "X-Trace": "trace-1", "Titan-Migrate-Seq": "odd"},
    )
    await js.publish("titan.cmd.risk.flatten.v1", b'{"command":"FLATTEN_ALL","source":"brain"}')
    # the old service had taken the second command off the work queue
    sub = await js.pull_subscribe("titan.cmd.exec.>", durable="EXECUTION_CORE", stream="TITAN_CMD")
    first, second = await sub.fetch(2, timeout=5)
    await second.ack_sync()
    await first.nak()
    return brain


async def stored(nc: Client, stream: str = "TITAN_CMD") -> list[tuple[str, dict[str, str], bytes]]:
    return [(m.subject, dict(m.headers), m.data) async for m in mig.messages(nc, stream)]


async def stream_state(js: Any) -> tuple[Any, ...]:
    info = await js.stream_info("TITAN_CMD")
    return (
        tuple(info.config.subjects),
        info.config.retention,
        info.state.messages,
        info.state.first_seq,
        info.state.last_seq,
    )


async def assert_migrated(nc: Client, before: list[tuple[str, dict[str, str], bytes]]) -> None:
    js = nc.jetstream()
    info = await js.stream_info("TITAN_CMD")
    target = mig.target_config(replicas=1, duplicate_window_s=120)
    assert mig.classify_cmd(info.config) is mig.CmdKind.OURS
    assert _differences(info.config, target) == [] and info.config.subject_transform is None
    assert await stored(nc) == before  # every message, in order, subject, headers and data
    assert [c.name for c in await js.consumers_info("TITAN_CMD")] == []
    assert await mig.stream_config_of(js, mig.COPY) is None


async def test_dry_run_then_apply_keeps_every_waiting_command_and_the_service_starts_on_it(
    service_nats: Any, tmp_path: Path
) -> None:
    url = service_nats.url
    nc = await connect(NatsSettings(urls=(url,), name="pytest-migrate"))
    try:
        await old_deployment(nc)
        js = nc.jetstream()
        before = await stored(nc)
        assert len(before) == 6  # 5 intents + the raw one + flatten, minus the one taken
        raw = {"Nats-Msg-Id": "mig-raw", "X-Trace": "trace-1", "Titan-Migrate-Seq": "odd"}
        assert before[4][1] == raw and before[5][1] == {}
        state = await stream_state(js)

        code, out, _ = await cli("--nats-url", url)
        assert code == 0, out
        assert "TITAN_CMD: the old deployment's WorkQueue stream" in out
        assert "current: subjects ['titan.cmd.>'], retention workqueue" in out
        assert "duplicate_window 60 s" in out
        assert "target:  subjects ['titan.cmd.>'], retention limits" in out
        assert "duplicate_window 120 s" in out
        assert "waiting messages: 6 (seq 1..7)" in out
        assert "consumer EXECUTION_CORE" in out and "dry run: nothing was changed" in out
        assert await stream_state(js) == state  # the dry run changed nothing
        assert await stored(nc) == before
        assert await mig.stream_config_of(js, mig.COPY) is None

        code, out, err = await cli("--nats-url", url, "--apply")
        assert code == 0, out + err
        assert "copied 6 messages" in out and "restored 6 messages" in out and "done:" in out
        await assert_migrated(nc, before)

        code, out, _ = await cli("--nats-url", url, "--apply")
        assert code == 0 and "nothing to do" in out
    finally:
        await nc.close()

    # the service starts on the migrated stream and decides the waiting commands
    async with world(url, tmp_path / "svc") as w:
        restored = [
            m.seq
            async for m in mig.messages(w.nc, "TITAN_CMD")
            if m.subject.startswith("titan.cmd.exec.")
        ]
        assert len(restored) == 5
        for seq in restored:
            await w.decided(seq)


async def test_an_unrecognised_stream_is_refused_and_left_alone(
    service_nats: Any, nc: Client
) -> None:
    js = nc.jetstream()
    await js.add_stream(
        api.StreamConfig(
            name="TITAN_CMD",
            subjects=["titan.cmd.>", "other.>"],
            retention=api.RetentionPolicy.WORK_QUEUE,
        )
    )
    await js.publish("titan.cmd.exec.x", b"keep me")
    state = await stream_state(js)
    for args in ((), ("--apply",)):
        code, _, err = await cli("--nats-url", service_nats.url, *args)
        assert code == 3 and "refused: TITAN_CMD is not a stream this tool knows" in err
    assert await stream_state(js) == state
    await js.delete_stream("TITAN_CMD")
    await js.add_stream(api.StreamConfig(name=mig.COPY, subjects=["someone.else.>"]))
    code, _, err = await cli("--nats-url", service_nats.url, "--apply")
    assert code == 3 and "a stream TITAN_CMD_MIGRATION exists that this tool did not make" in err


async def test_a_reader_of_the_old_stream_stops_the_apply_before_anything_changes(
    service_nats: Any, nc: Client
) -> None:
    await old_deployment(nc)
    js = nc.jetstream()
    state = await stream_state(js)
    # a client still pulling (nothing for it to get, so its request keeps waiting)
    sub = await js.pull_subscribe("titan.cmd.idle.>", durable="IDLE", stream="TITAN_CMD")
    waiting = asyncio.create_task(sub.fetch(1, timeout=30))
    for _ in range(500):
        if (await js.consumer_info("TITAN_CMD", "IDLE")).num_waiting:
            break
        await asyncio.sleep(0.01)
    try:
        code, out, err = await cli("--nats-url", service_nats.url, "--apply")
        assert code == 4 and "IDLE" in err and "IN USE" in out
        assert await stream_state(js) == state
    finally:
        waiting.cancel()


async def test_an_interrupted_migration_is_resumed_and_the_service_refuses_to_start_meanwhile(
    service_nats: Any, nc: Client
) -> None:
    js = nc.jetstream()
    await old_deployment(nc)
    before = await stored(nc)
    target = mig.target_config(replicas=1, duplicate_window_s=120)
    plan = mig.plan_migration((await js.stream_info("TITAN_CMD")).config, None)
    # interrupted after the old stream was deleted and three copies were restored
    upto = plan.steps.index(mig.Step.CREATE) + 1
    await mig.Migration(nc, target=target, replicas=1, say=print).run(
        mig.Plan(plan.cmd, False, plan.steps[:upto])
    )
    seen: set[str] = set()
    for c in [c async for c in mig.messages(nc, mig.COPY)][:3]:
        subject, headers = mig.restored_form(c, seen)
        await js.publish(mig.RESTORE_PREFIX + subject, c.data, headers=headers)
    with pytest.raises(StreamMigrationError, match="has not finished"):
        await ensure_streams(js)

    code, out, err = await cli("--nats-url", service_nats.url)
    assert code == 0 and "being restored by an interrupted migration" in out, out + err
    code, out, err = await cli("--nats-url", service_nats.url, "--apply")
    assert code == 0, out + err
    assert "3 of 6 already restored: checking them" in out and "done:" in out
    await assert_migrated(nc, before)
    await ensure_streams(js)  # the service's own check passes now
