"""The pair as real processes: two `titan-exec run` instances with lease election, the venue
simulator as a third process, signed intent load, and faults of the active.

Checked from the raw streams and the simulator's inspection endpoint, not from the
service's own state: every command has exactly one decision, no client order id was placed
twice at the venue, and the failover time is measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js import api

from tests.integration.procs import free_port, get_json, poll, stop
from titan_exec.runtime.feeds import Brain
from titan_exec.runtime.simproc import SimProcess
from titan_exec.sim.server import DEV_API_KEY, DEV_API_SECRET

pytestmark = pytest.mark.integration

SECRET = "pair-secret"
LEASE_MS = 1000


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


def role_is(port: int, role: str) -> Callable[[], bool]:
    return lambda: (get_json(f"http://127.0.0.1:{port}/status") or {}).get("role") == role


class Pair:
    def __init__(
        self, sim_url: str, procs: dict[str, subprocess.Popen[bytes]], ports: dict[str, int]
    ) -> None:
        self.sim_url = sim_url
        self.procs = procs
        self.ports = ports

    def status(self, name: str) -> Any:
        return get_json(f"http://127.0.0.1:{self.ports[name]}/status")

    def venue_client_order_ids(self) -> list[str]:
        inspect = get_json(f"{self.sim_url}/sim/inspect") or {}
        return [o.get("clientOrderId") for o in inspect.get("orders", [])]


@asynccontextmanager
async def pair(nats_url: str, tmp: Path) -> AsyncIterator[Pair]:
    """The simulator, then `primary` (active) and `backup` (standby) as processes."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports = {"primary": free_port(), "backup": free_port()}
    async with SimProcess(nats_url=nats_url, fill_slices=1) as sim:
        try:
            procs["primary"] = start_instance(
                tmp, "primary", "active", nats_url, sim.url, ports["primary"]
            )
            await poll(role_is(ports["primary"], "active"), "primary active")
            procs["backup"] = start_instance(
                tmp, "backup", "standby", nats_url, sim.url, ports["backup"]
            )
            await poll(role_is(ports["backup"], "standby"), "backup standby")
            yield Pair(sim.url, procs, ports)
        finally:
            for proc in procs.values():
                stop(proc)


async def decided_command_seqs(js: Any) -> list[int]:
    """Every decision's command sequence, read from the raw event stream."""
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


async def test_kill_9_of_the_active_under_load(service_nats: Any, tmp_path: Path) -> None:
    async with pair(service_nats.url, tmp_path) as p:
        nc = await nats.connect(service_nats.url)
        brain = Brain(nc, secret=SECRET.encode())
        brain.start_heartbeats(0.3)
        try:
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
            p.procs["primary"].send_signal(signal.SIGKILL)
            p.procs["primary"].wait(5)
            load_during = asyncio.create_task(load(40, "during"))
            await poll(role_is(p.ports["backup"], "active"), "backup active", 10)
            failover_s = time.monotonic() - killed
            await load_during
            print(f"failover after kill -9: {failover_s * 1000:.0f} ms (lease {LEASE_MS} ms)")
            assert failover_s <= LEASE_MS / 1000 + 1.0

            js = nc.jetstream()
            deadline = time.monotonic() + 20
            seqs = await decided_command_seqs(js)
            while not set(sent) <= set(seqs) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                seqs = await decided_command_seqs(js)
            assert set(sent) <= set(seqs), f"undecided: {sorted(set(sent) - set(seqs))}"
            assert len(seqs) == len(set(seqs)), "a command was decided twice"
            coids = await asyncio.to_thread(p.venue_client_order_ids)
            assert coids and len(coids) == len(set(coids)), "an order was placed twice"
        finally:
            await brain.stop()
            await nc.close()


async def test_sigstop_longer_than_the_lease_deposes_the_active(
    service_nats: Any, tmp_path: Path
) -> None:
    """A paused active (GC, SIGSTOP, VM freeze) wakes up deposed: its lease deadline has
    passed and the new epoch refuses its writes; it stops instead of trading."""
    async with pair(service_nats.url, tmp_path) as p:
        nc = await nats.connect(service_nats.url)
        brain = Brain(nc, secret=SECRET.encode())
        brain.start_heartbeats(0.3)
        try:
            await asyncio.sleep(1.0)
            p.procs["primary"].send_signal(signal.SIGSTOP)
            await poll(role_is(p.ports["backup"], "active"), "backup active", 10)
            ack = await brain.place(brain.intent("while-paused", "BTC/USDT", "BUY_SETUP", "0.002"))
            p.procs["primary"].send_signal(signal.SIGCONT)
            # the deposed active fences itself and stops (its supervisor restarts it)
            code = await asyncio.to_thread(p.procs["primary"].wait, 15)
            assert code != 0
            log = (tmp_path / "primary.log").read_text()
            assert "fenced" in log or "deposed" in log or "broken" in log, log[-2000:]
            await poll(p.venue_client_order_ids, "the backup placed the order")
            coids = await asyncio.to_thread(p.venue_client_order_ids)
            assert len(coids) == len(set(coids)) == 1
            status = await asyncio.to_thread(p.status, "backup")
            assert status["last_cmd_seq"] >= ack.seq
        finally:
            await brain.stop()
            await nc.close()
