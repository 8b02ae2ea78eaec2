"""The pair as real processes: two `titan-exec run` instances with lease election, the venue
simulator as a third process, steady signed intent load, and kill -9 of the active.

Checked from the raw streams and the simulator's inspection endpoint, not from the
service's own state: every command has exactly one decision, no client order id was placed
twice at the venue, and the failover time is measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js import api

from titan_exec.runtime.feeds import Brain
from titan_exec.runtime.simproc import SimProcess
from titan_exec.sim.server import DEV_API_KEY, DEV_API_SECRET

pytestmark = pytest.mark.integration

SECRET = "pair-secret"
LEASE_MS = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


async def poll(fn: Any, what: str, timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(fn)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start_instance(
    tmp: Path, name: str, mode: str, nats_url: str, sim_url: str, port: int
) -> subprocess.Popen[bytes]:
    cfg = tmp / f"{name}.toml"
    cfg.write_text(
        f"""
[service]
instance_id = "{name}"
mode = "{mode}"
state_dir = "{tmp / name}"
[ha]
enabled = true
lease_ms = {LEASE_MS}
[risk]
arm_on_genesis = true
[orders]
in_doubt_query_after_ms = 200
[venue]
kind = "ccxt"
name = "sim"
exchange_id = "binanceusdm"
base_url = "{sim_url}"
api_key = "{DEV_API_KEY}"
api_secret = "{DEV_API_SECRET}"
poll_interval_ms = 100
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HMAC", "NATS", "TITAN"))}
    env.update({"HMAC_SECRET": SECRET, "NATS_URL": nats_url, "PORT": str(port)})
    log = (tmp / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "titan_exec", "run", "--config", str(cfg)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def test_kill_9_of_the_active_under_load(service_nats: Any, tmp_path: Path) -> None:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports = {"primary": free_port(), "backup": free_port()}
    async with SimProcess(nats_url=service_nats.url, fill_slices=1) as sim:
        try:
            procs["primary"] = start_instance(
                tmp_path, "primary", "active", service_nats.url, sim.url, ports["primary"]
            )
            await poll(
                lambda: (
                    (get_json(f"http://127.0.0.1:{ports['primary']}/status") or {}).get("role")
                    == "active"
                ),
                "primary active",
            )
            procs["backup"] = start_instance(
                tmp_path, "backup", "standby", service_nats.url, sim.url, ports["backup"]
            )
            await poll(
                lambda: (
                    (get_json(f"http://127.0.0.1:{ports['backup']}/status") or {}).get("role")
                    == "standby"
                ),
                "backup standby",
            )
            nc = await nats.connect(service_nats.url)
            brain = Brain(nc, secret=SECRET.encode())
            brain.start_heartbeats(0.3)
            await asyncio.sleep(1.0)  # both see heartbeats and tickers
            sent: list[int] = []

            async def load(n: int, tag: str) -> None:
                for i in range(n):
                    symbol = ("BTC/USDT", "ETH/USDT")[i % 2]
                    size = "0.002" if symbol == "BTC/USDT" else "0.01"
                    kind = "BUY_SETUP" if (i // 2) % 2 == 0 else "SELL_SETUP"
                    ack = await brain.place(brain.intent(f"{tag}-{i}", symbol, kind, size))
                    sent.append(ack.seq)
                    await asyncio.sleep(0.05)

            await load(20, "before")
            killed = time.monotonic()
            procs["primary"].send_signal(signal.SIGKILL)
            procs["primary"].wait(5)
            load_during = asyncio.create_task(load(40, "during"))
            await poll(
                lambda: (
                    (get_json(f"http://127.0.0.1:{ports['backup']}/status") or {}).get("role")
                    == "active"
                ),
                "backup active",
                10,
            )
            failover_s = time.monotonic() - killed
            await load_during
            print(f"failover after kill -9: {failover_s * 1000:.0f} ms (lease {LEASE_MS} ms)")
            assert failover_s <= LEASE_MS / 1000 + 1.0

            # every command decided exactly once (read from the raw event stream)
            js = nc.jetstream()

            async def decisions() -> list[int]:
                sub = await js.pull_subscribe(
                    "titan.evt.exec.decision.v1.>",
                    stream="TITAN_EVT",
                    config=api.ConsumerConfig(ack_policy=api.AckPolicy.NONE),
                )
                seqs: list[int] = []
                try:
                    while True:
                        try:
                            msgs = await sub.fetch(500, timeout=0.5)
                        except TimeoutError:
                            break
                        seqs += [json.loads(m.data)["payload"]["cmdSeq"] for m in msgs]
                finally:
                    await sub.unsubscribe()
                return seqs

            deadline = time.monotonic() + 20
            while True:
                seqs = await decisions()
                if set(sent) <= set(seqs) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert set(sent) <= set(seqs), f"undecided: {sorted(set(sent) - set(seqs))}"
            assert len(seqs) == len(set(seqs)), "a command was decided twice"
            # no client order id placed twice at the venue
            inspect = await asyncio.to_thread(get_json, f"{sim.url}/sim/inspect")
            coids = [o.get("clientOrderId") for o in inspect["orders"]]
            assert len(coids) == len(set(coids))
            await brain.stop()
            await nc.close()
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()


async def test_sigstop_longer_than_the_lease_deposes_the_active(
    service_nats: Any, tmp_path: Path
) -> None:
    """A paused active (GC, SIGSTOP, VM freeze) wakes up deposed: its lease deadline has
    passed and the new epoch refuses its writes; it stops instead of trading."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports = {"primary": free_port(), "backup": free_port()}
    async with SimProcess(nats_url=service_nats.url, fill_slices=1) as sim:
        try:
            procs["primary"] = start_instance(
                tmp_path, "primary", "active", service_nats.url, sim.url, ports["primary"]
            )
            await poll(
                lambda: (
                    (get_json(f"http://127.0.0.1:{ports['primary']}/status") or {}).get("role")
                    == "active"
                ),
                "primary active",
            )
            procs["backup"] = start_instance(
                tmp_path, "backup", "standby", service_nats.url, sim.url, ports["backup"]
            )
            await poll(
                lambda: (
                    (get_json(f"http://127.0.0.1:{ports['backup']}/status") or {}).get("role")
                    == "standby"
                ),
                "backup standby",
            )
            nc = await nats.connect(service_nats.url)
            brain = Brain(nc, secret=SECRET.encode())
            brain.start_heartbeats(0.3)
            await asyncio.sleep(1.0)
            procs["primary"].send_signal(signal.SIGSTOP)
            await poll(
                lambda: (
                    (get_json(f"http://127.0.0.1:{ports['backup']}/status") or {}).get("role")
                    == "active"
                ),
                "backup active",
                10,
            )
            ack = await brain.place(brain.intent("while-paused", "BTC/USDT", "BUY_SETUP", "0.002"))
            procs["primary"].send_signal(signal.SIGCONT)
            # the deposed active fences itself and stops (its supervisor restarts it)
            code = await asyncio.to_thread(procs["primary"].wait, 15)
            assert code != 0
            log = (tmp_path / "primary.log").read_text()
            assert "fenced" in log or "deposed" in log or "broken" in log, log[-2000:]
            await poll(
                lambda: any(
                    o.get("clientOrderId")
                    for o in (get_json(f"{sim.url}/sim/inspect") or {}).get("orders", [])
                ),
                "the backup placed the order",
            )
            inspect = await asyncio.to_thread(get_json, f"{sim.url}/sim/inspect")
            coids = [o.get("clientOrderId") for o in inspect["orders"]]
            assert len(coids) == len(set(coids)) == 1
            status = await asyncio.to_thread(get_json, f"http://127.0.0.1:{ports['backup']}/status")
            assert status["last_cmd_seq"] >= ack.seq
            await brain.stop()
            await nc.close()
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
