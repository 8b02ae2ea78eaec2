"""The README's first intent, as written ("Running it"): `titan-exec run` with its embedded
server and the paper venue, `send control arm`, `send intent ...`. Without a reference price
the intent is refused (`no reference price`, what a new user met); with `titan-exec feed`
(a stand-in brain heartbeat and book tickers) the same command is filled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cli_process import cli
from titan_exec_lab.harness.procs import free_port, poll, read_json, stop

pytestmark = pytest.mark.integration

API_KEY = "first-intent-api-key"


async def test_the_readme_first_intent_needs_a_ticker_and_a_heartbeat(tmp_path: Path) -> None:
    nats_port, http_port = free_port(), free_port()
    config = tmp_path / "try.toml"  # the README's defaults, on free ports
    config.write_text(f"[nats]\nembedded_port = {nats_port}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HMAC", "NATS", "TITAN"))}
    env.update(
        {
            "HMAC_SECRET": os.urandom(32).hex(),
            "TITAN_EXECUTION_API_KEY": API_KEY,
            "PORT": str(http_port),
            "TITAN_CONFIG": str(config),
            "NATS_URL": f"nats://127.0.0.1:{nats_port}",  # what `send` and `feed` read
        }
    )
    run_env = {k: v for k, v in env.items() if k != "NATS_URL"}  # run: the embedded server
    base = f"http://127.0.0.1:{http_port}"
    key = {"X-API-Key": API_KEY}
    processes: list[subprocess.Popen[bytes]] = []
    log = (tmp_path / "run.log").open("wb")
    try:
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "titan_exec", "run", "--state-dir", str(tmp_path / "s")],
                env=run_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        await poll(lambda: (read_json(f"{base}/ready") or {}).get("ready"), "ready", 30)
        code, _, err = await cli("send", "control", "arm", env=env)
        assert code == 0, err
        await poll(
            lambda: (read_json(f"{base}/status", headers=key) or {}).get("is_armed"), "armed"
        )

        intent = ["send", "intent", "--symbol", "BTC/USDT", "--type", "BUY_SETUP", "--size", "0.01"]
        code, out, err = await cli(*intent, env=env)
        assert code == 0, err

        def rejects() -> list[Any]:
            return list((read_json(f"{base}/status", headers=key) or {}).get("recent_rejects", []))

        await poll(rejects, "the first intent's refusal")
        assert "no reference price" in json.dumps(rejects())

        feed = subprocess.Popen(
            [sys.executable, "-m", "titan_exec", "feed"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        processes.append(feed)
        assert feed.stdout is not None
        line = await asyncio.to_thread(feed.stdout.readline)
        assert b"heartbeat" in line and b"BTC/USDT 50000" in line, line
        await asyncio.sleep(1.5)  # a heartbeat and a ticker have arrived

        code, out, err = await cli(*intent, env=env)
        assert code == 0, err
        signal_id = json.loads(out)["msg_id"]

        def filled() -> bool:
            doc = read_json(f"{base}/status", headers=key) or {}
            return any(
                o["signal_id"] == signal_id and o["status"] == "FILLED"
                for o in doc.get("orders", [])
            )

        await poll(filled, "the intent filled")
        feed.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(feed.wait, 10) == 0  # Ctrl-C ends it cleanly
    finally:
        for proc in reversed(processes):
            await asyncio.to_thread(stop, proc)
        log.close()
