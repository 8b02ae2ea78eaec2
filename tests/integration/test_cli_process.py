"""`titan-exec run` as a real process: start, arm, trade, status, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from titan_exec_lab.harness.procs import free_port, poll, read_json

pytestmark = pytest.mark.integration


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "titan_exec",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_run_send_status_and_sigterm(service_nats: Any, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HMAC", "NATS", "TITAN"))}
    env.update(
        {
            "HMAC_SECRET": "proc-secret",
            "TITAN_EXECUTION_API_KEY": "k",
            "PORT": str(port),
            "NATS_URL": service_nats.url,
        }
    )
    log = (tmp_path / "service.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "titan_exec",
            "run",
            "--state-dir",
            str(tmp_path / "state"),
            "--instance-id",
            "primary",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await poll(lambda: (read_json(f"{base}/ready") or {}).get("ready"), "ready")
        code, out, err = await cli("send", "control", "arm", env=env)
        assert code == 0, err
        nc = await nats.connect(service_nats.url)
        try:
            await nc.publish("titan.sys.heartbeat.v1.brain", b"{}")
            await nc.publish(
                "titan.data.market.ticker.v1.sim.BTC_USDT",
                json.dumps(
                    {"bid": "100", "ask": "101", "ts": time.time_ns() // 1_000_000}
                ).encode(),
            )
            await nc.flush()
            key = {"X-API-Key": "k"}  # the full /status needs the API key
            await poll(
                lambda: (read_json(f"{base}/status", headers=key) or {}).get("is_armed"), "armed"
            )
            code, out, err = await cli(
                "send",
                "intent",
                "--symbol",
                "BTC/USDT",
                "--size",
                "0.5",
                "--signal-id",
                "cli-1",
                env=env,
            )
            assert code == 0, err
            assert json.loads(out)["stream"] == "TITAN_CMD"

            def filled() -> bool:
                doc = read_json(f"{base}/status", headers=key) or {}
                return any(
                    o["signal_id"] == "cli-1" and o["status"] == "FILLED"
                    for o in doc.get("orders", [])
                )

            await poll(filled, "fill")
        finally:
            await nc.close()
        code, out, _ = await cli("status", "--url", base, env=env)
        assert code == 0 and "primary" in out and "state_hash" in out
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


async def test_nats_command_runs_an_embedded_jetstream_server(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HMAC", "NATS", "TITAN"))}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "titan_exec",
            "nats",
            "--state-dir",
            str(tmp_path),
            "--nats-port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert f":{port}".encode() in line, line
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        try:
            info = await nc.jetstream().account_info()
            assert info.limits is not None
        finally:
            await nc.close()
        assert (tmp_path / "nats").is_dir()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
