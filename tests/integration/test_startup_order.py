"""Start-up order (issue 12, item 6), through the real `titan-exec` process: what can fail
locally (configuration, the admin port) stops the start before the instance campaigns or
writes anything to NATS, with one line and a known exit status, never a traceback. And the
errors a user meets first: `send` with NATS unreachable ends, a password in the NATS URL
never shows."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from titan_exec_lab.harness.procs import free_port, poll, read_json

pytestmark = pytest.mark.integration

EXIT_CONFIG = 78
EXIT_UNAVAILABLE = 69
SECRET = "startup-test-secret"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HMAC", "NATS", "TITAN"))}
    env.update({"HMAC_SECRET": SECRET, **extra})
    return env


def titan(
    *args: str, env: dict[str, str], timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "titan_exec", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


async def stream_names(url: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        return [s.config.name or "" for s in await nc.jetstream().streams_info()]
    finally:
        await nc.close()


async def test_an_admin_port_in_use_stops_the_start_before_anything_reaches_nats(
    service_nats: Any, tmp_path: Path, taken_port: int
) -> None:
    """Lease election on, so that a start which got as far as NATS would have created the
    streams, the lease bucket and written an epoch marker: the server has no stream at all."""
    env = clean_env(NATS_URL=service_nats.url, TITAN_HA_ENABLED="true", TITAN_HA_LEASE_MS="1000")
    args = ["run", "--state-dir", str(tmp_path / "state"), "--port", str(taken_port)]
    res = await asyncio.to_thread(titan, *args, "--log-level", "WARNING", env=env)
    assert res.returncode == EXIT_UNAVAILABLE, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("titan-exec: cannot start: http.port: cannot listen on")
    assert f"127.0.0.1:{taken_port}" in lines[0] and "in use" in lines[0]
    assert await stream_names(service_nats.url) == []  # no TITAN_EVT, no epoch, no lease


async def test_with_the_embedded_server_a_port_in_use_also_ends_cleanly(
    tmp_path: Path, taken_port: int
) -> None:
    nats_port = free_port()
    res = await asyncio.to_thread(
        titan,
        "run",
        "--state-dir",
        str(tmp_path / "state"),
        "--port",
        str(taken_port),
        "--log-level",
        "WARNING",
        env=clean_env(TITAN_CONFIG=str(_embedded_toml(tmp_path, nats_port))),
    )
    assert res.returncode == EXIT_UNAVAILABLE, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.splitlines()) == 1, res.stderr
    assert "http.port" in res.stderr
    with socket.socket() as s:  # the embedded server it had started is gone with it
        s.bind(("127.0.0.1", nats_port))


def _embedded_toml(tmp_path: Path, nats_port: int) -> Path:
    f = tmp_path / "embedded.toml"
    f.write_text(f"[nats]\nembedded_port = {nats_port}\n")
    return f


async def test_a_bad_lease_timing_exits_78_before_any_server_starts(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[ha]\nenabled = true\nlease_ms = 5000\nrenew_interval_ms = 2000\n")
    res = await asyncio.to_thread(
        titan, "run", "--config", str(f), "--state-dir", str(tmp_path / "state"), env=clean_env()
    )
    assert res.returncode == EXIT_CONFIG, res.stderr
    assert res.stderr.splitlines() == [
        "titan-exec: configuration error: ha.renew_interval_ms: renew_interval_ms=2000 is too "
        "long: 3 × renew_interval_ms must be ≤ lease_ms=5000"
    ]
    assert not (tmp_path / "state").exists()  # no embedded server was started


async def test_run_with_nats_unreachable_ends_with_one_line(tmp_path: Path) -> None:
    closed = free_port()
    started = time.monotonic()
    res = await asyncio.to_thread(
        titan,
        "run",
        "--state-dir",
        str(tmp_path / "state"),
        "--port",
        str(free_port()),
        "--log-level",
        "WARNING",
        env=clean_env(NATS_URL=f"nats://trader:PASS-1@127.0.0.1:{closed}"),
    )
    assert res.returncode == EXIT_UNAVAILABLE, res.stderr
    assert time.monotonic() - started < 30
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith(
        "titan-exec: cannot start: cannot connect to NATS at nats://trader:***@"
    )
    assert "PASS-1" not in res.stderr


async def test_send_with_nats_refusing_connections_ends_at_once() -> None:
    closed = free_port()
    started = time.monotonic()
    res = await asyncio.to_thread(
        titan, "send", "--nats-url", f"nats://127.0.0.1:{closed}", "intent", env=clean_env()
    )
    assert res.returncode == EXIT_UNAVAILABLE, res.stderr
    assert time.monotonic() - started < 15
    assert len(res.stderr.splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith(
        f"titan-exec send: cannot connect to NATS at nats://127.0.0.1:{closed}"
    )


async def test_send_to_a_server_that_never_answers_ends_after_its_timeout(taken_port: int) -> None:
    """A socket that accepts but never says INFO (a hung server, a black-holing proxy)."""
    started = time.monotonic()
    res = await asyncio.to_thread(
        titan,
        "send",
        "--nats-url",
        f"nats://127.0.0.1:{taken_port}",
        "--timeout",
        "2",
        "control",
        "arm",
        env=clean_env(),
    )
    elapsed = time.monotonic() - started
    assert res.returncode == EXIT_UNAVAILABLE, res.stderr
    assert elapsed < 10, elapsed  # 2 s, plus the interpreter's start
    assert len(res.stderr.splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "cannot connect to NATS" in res.stderr


async def test_send_without_the_service_stream_says_so(service_nats: Any) -> None:
    """Connected, but no TITAN_CMD stream (the service never ran in this namespace)."""
    res = await asyncio.to_thread(
        titan,
        "send",
        "--nats-url",
        service_nats.url,
        "--timeout",
        "1",
        "control",
        "arm",
        env=clean_env(),
    )
    assert res.returncode == 1, res.stderr
    assert len(res.stderr.splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "was not acknowledged by JetStream" in res.stderr


async def test_a_password_in_the_nats_url_shows_nowhere(
    nats_server_factory: Any, tmp_path: Path
) -> None:
    password = "PASS-never-shown-42"
    server = await nats_server_factory(user="trader", password=password)
    port = free_port()
    url = f"nats://trader:{password}@127.0.0.1:{server.port}"
    env = clean_env(NATS_URL=url, PORT=str(port), TITAN_EXECUTION_API_KEY="startup-api-key")
    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "titan_exec", "run", "--state-dir", str(tmp_path / "s")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        key = {"X-API-Key": "startup-api-key"}
        try:
            await poll(lambda: (read_json(f"{base}/ready") or {}).get("ready"), "ready", 30)
            shown = [
                await asyncio.to_thread(_read, f"{base}/status", key),
                await asyncio.to_thread(_read, f"{base}/status", {}),
                await asyncio.to_thread(_read, f"{base}/metrics", key),
            ]
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_path.read_text()
    assert "configuration:" in text and "nats://trader:***@127.0.0.1" in text, text
    for doc in [text, *shown]:
        assert password not in doc
    assert '"role"' in shown[0]  # the full /status was read


def _read(url: str, headers: dict[str, str]) -> str:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as err:  # a refusal's body is shown too
        return str(err.read().decode())


async def test_an_embedded_server_port_in_use_ends_run_and_nats_with_one_line(
    tmp_path: Path, taken_port: int
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"[nats]\nembedded_port = {taken_port}\n")
    res = await asyncio.to_thread(
        titan,
        "run",
        "--config",
        str(config),
        "--state-dir",
        str(tmp_path / "run"),
        "--port",
        str(free_port()),
        "--log-level",
        "WARNING",
        env=clean_env(),
    )
    assert res.returncode == EXIT_UNAVAILABLE, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith(
        f"titan-exec: cannot start: embedded nats-server (nats.embedded_port {taken_port})"
    )
    assert "address already in use" in lines[0]

    res = await asyncio.to_thread(
        titan,
        "nats",
        "--state-dir",
        str(tmp_path / "nats"),
        "--nats-port",
        str(taken_port),
        env=clean_env(),
    )
    assert res.returncode == EXIT_UNAVAILABLE, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "address already in use" in lines[0]
