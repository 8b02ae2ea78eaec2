"""The chaos matrix's world on loopback: three clustered nats-servers, the venue simulator
(one per venue with `TopologySettings.venues`), and `primary` and `backup` as `titan-exec
run` processes, each reaching every NATS node
through its own TCP proxy (so that the harness can cut one instance off from NATS while
the venue stays reachable).

`Topology` starts everything, knows who is active, and offers the faults as plain
operations: kill -9 / SIGSTOP / SIGCONT an instance, restart it as standby, cut and heal
its NATS links, kill and restart a NATS node, set the simulator's fault knobs. It reads
the instances only over HTTP (`/status`), like an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from nats.aio.client import Client as NatsClient

from titan_exec.adapters.nats.connect import NatsSettings, connect
from titan_exec_lab.chaos.netproxy import ThreadedProxy
from titan_exec_lab.harness.cluster import LocalCluster
from titan_exec_lab.harness.procs import InstanceProcess, InstanceSettings, free_port, get_json
from titan_exec_lab.harness.simproc import SimProcess
from titan_exec_lab.sim.server import DEV_API_KEY, DEV_API_SECRET
from titan_exec_lab.verify.facts import merged_inspect

SECRET = "chaos-secret"
API_KEY = "chaos-api-key"
NAMES = ("primary", "backup")
UNSAFE_ENV = "TITAN_UNSAFE_DISABLE_FENCING"


@dataclass(frozen=True, slots=True)
class TopologySettings:
    lease_ms: int = 2000
    """2 s: three nats-servers, two instances, the simulator and the harness share the
    machine; at 1 s the loop-stall limit (lease/10) is within reach of scheduling noise."""
    ack_wait_s: int = 3
    """A command delivered towards an instance that dies is redelivered after this."""
    is_fencing_disabled: bool = False
    """The deliberately broken build (test only): both instances run with
    `TITAN_UNSAFE_DISABLE_FENCING=1`."""
    venues: tuple[str, ...] = ("sim",)
    """The pair's venues, the default first: one simulator each (more than one: the
    instances are configured with `[venues.<name>]` tables)."""


def client_name(instance: str) -> str:
    """The NATS connection name of an instance (`[nats] name` default + instance id)."""
    return f"titan-exec-{instance}"


@dataclass
class Topology:
    work: Path
    settings: TopologySettings = field(default_factory=TopologySettings)
    cluster: LocalCluster | None = None
    sim: SimProcess | None = None
    """The default venue's simulator."""
    sims: dict[str, SimProcess] = field(default_factory=dict)
    """Every venue's simulator, by venue name."""
    instances: dict[str, InstanceProcess] = field(default_factory=dict)
    proxies: dict[str, list[ThreadedProxy]] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None
    nc: NatsClient | None = None
    """The harness's own connection (all nodes, no proxy)."""
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Topology:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        st = self._stack
        # not advertised: an instance reconnecting after a heal must come back through its
        # proxies, not to a node address the cluster told it about (found by the long run:
        # after a few partitions the cut no longer cut anything)
        self.cluster = await st.enter_async_context(
            LocalCluster(self.work / "nats", is_advertised=False)
        )
        for i, venue in enumerate(self.settings.venues):
            self.sims[venue] = await st.enter_async_context(
                SimProcess(nats_url=self.cluster.urls, venue_name=venue, fill_slices=1, seed=i + 1)
            )
        self.sim = self.sims[self.settings.venues[0]]
        several = len(self.sims) > 1
        self.http = await st.enter_async_context(aiohttp.ClientSession())
        self.nc = await connect(NatsSettings(urls=self.cluster.node_urls, name="titan-chaos"))
        st.push_async_callback(self.nc.close)
        for name in NAMES:
            links = []
            for url in self.cluster.node_urls:
                host, port = url.rsplit("//", 1)[-1].rsplit(":", 1)
                links.append(await st.enter_async_context(ThreadedProxy(host, int(port))))
            self.proxies[name] = links
            self.instances[name] = InstanceProcess(
                InstanceSettings(
                    name=name,
                    nats_url=",".join(p.url for p in links),
                    sim_url=self.sim.url,
                    http_port=free_port(),
                    lease_ms=self.settings.lease_ms,
                    replicas=3,
                    ack_wait_s=self.settings.ack_wait_s,
                    is_armed_on_genesis=True,
                    rate_limit_ms=10,  # the simulator is local: ccxt's pace is for Binance
                    # a checkpoint every 2 s: the standby compares its state with the
                    # active's several times per run, under every fault (verify: drift)
                    snapshot_every_ms=2000,
                    # an order written ahead but never sent by a killed active is unknown to
                    # the venue: declared absent after 3 s here (default 30 s) — locally, an
                    # order not visible after 3 s was never sent (the venue faults hide
                    # orders for 1.5 s at most)
                    in_doubt_absent_after_ms=3000,
                    venues=tuple((n, p.url) for n, p in self.sims.items()) if several else (),
                ),
                self.work,
                self._secrets(),
            )
        st.push_async_callback(self._stop_instances)
        await self.start_instance("primary", "active")
        await self.wait_role("primary", "active", 60)
        await self.start_instance("backup", "standby")
        await self.wait_role("backup", "standby", 60)

    def _secrets(self) -> dict[str, str]:
        env = {
            "HMAC_SECRET": SECRET,
            "TITAN_EXECUTION_API_KEY": API_KEY,
            "TITAN_VENUE_API_KEY": DEV_API_KEY,
            "TITAN_VENUE_API_SECRET": DEV_API_SECRET,
        }
        if self.settings.is_fencing_disabled:
            env[UNSAFE_ENV] = "1"
        return env

    async def _stop_instances(self) -> None:
        for inst in self.instances.values():
            with contextlib.suppress(ProcessLookupError):
                if inst.proc is not None and inst.proc.returncode is None:
                    inst.proc.send_signal(signal.SIGCONT)  # a paused process cannot stop
        await asyncio.gather(*(i.stop() for i in self.instances.values()))

    # -------------------------------------------------------------------- reading
    async def status(self, name: str) -> dict[str, Any] | None:
        assert self.http is not None
        try:
            return await get_json(
                self.http, f"{self.instances[name].url}/status", {"X-API-Key": API_KEY}
            )
        except RuntimeError:
            return None

    async def roles(self) -> dict[str, str]:
        docs = await asyncio.gather(*(self.status(n) for n in NAMES))
        return {n: str((d or {}).get("role") or "down") for n, d in zip(NAMES, docs, strict=True)}

    async def active(self) -> str | None:
        actives = [n for n, r in (await self.roles()).items() if r == "active"]
        return actives[0] if len(actives) == 1 else None

    @staticmethod
    def other(name: str) -> str:
        return NAMES[1] if name == NAMES[0] else NAMES[0]

    async def wait_role(self, name: str, role: str, timeout_s: float = 30) -> float:
        """Poll until `name` reports `role`; returns the Unix time it was first seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            doc = await self.status(name)
            if doc is not None and doc.get("role") == role:
                return time.time()
            inst = self.instances[name]
            if inst.proc is not None and inst.proc.returncode is not None:
                raise RuntimeError(
                    f"{name} exited (code {inst.proc.returncode}) waiting to be {role}; "
                    f"its log ends:\n{inst.log_tail()}"
                )
            if time.monotonic() > deadline:
                seen = (doc or {}).get("role", "no answer")
                raise TimeoutError(f"{name} not {role} after {timeout_s:.0f} s (it is {seen})")
            await asyncio.sleep(0.05)

    async def wait_pair_ready(self, timeout_s: float = 60) -> str:
        """Until one instance is active and the other a standby with no lag; returns the
        active's name."""
        deadline = time.monotonic() + timeout_s
        while True:
            docs = dict(
                zip(NAMES, await asyncio.gather(*(self.status(n) for n in NAMES)), strict=True)
            )
            roles = {n: (d or {}).get("role") for n, d in docs.items()}
            for name, inst in self.instances.items():
                if inst.proc is not None and inst.proc.returncode is not None:
                    raise RuntimeError(
                        f"{name} exited (code {inst.proc.returncode}) while the pair was "
                        f"awaited; its log ends:\n{inst.log_tail()}"
                    )
            active = [n for n, r in roles.items() if r == "active"]
            if len(active) == 1:
                standby = docs[self.other(active[0])] or {}
                if standby.get("role") == "standby" and not standby.get("standby_lag"):
                    return active[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"the pair is not ready after {timeout_s:.0f} s: {roles}")
            await asyncio.sleep(0.1)

    # --------------------------------------------------------------------- faults
    async def start_instance(self, name: str, mode: str) -> None:
        await self.instances[name].start(mode)

    async def kill_instance(self, name: str) -> None:
        await self.instances[name].kill()

    def signal_instance(self, name: str, sig: signal.Signals) -> None:
        proc = self.instances[name].proc
        assert proc is not None and proc.returncode is None, f"{name} is not running"
        os.kill(proc.pid, sig)

    def cut(self, name: str, *, hold: bool = False) -> None:
        """Black-hole `name`'s links to every NATS node (`hold`: a socket the instance
        closes stays open towards the server, see `netproxy`)."""
        for p in self.proxies[name]:
            p.cut(hold=hold)

    def heal(self, name: str) -> None:
        for p in self.proxies[name]:
            p.heal()

    async def node_of(self, name: str) -> int | None:
        assert self.cluster is not None
        return await asyncio.to_thread(self.cluster.node_of_client, client_name(name))

    async def leaders(self) -> dict[str, int]:
        assert self.cluster is not None
        return await asyncio.to_thread(self.cluster.leaders)

    def node_address(self, i: int) -> tuple[str, int]:
        """(host, port) of NATS node `i`'s client listener, no proxy in between."""
        assert self.cluster is not None
        parts = urlsplit(self.cluster.nodes[i].url)
        assert parts.hostname is not None and parts.port is not None
        return parts.hostname, parts.port

    def kill_node(self, i: int) -> None:
        assert self.cluster is not None
        self.cluster.kill(i)

    async def restart_down_nodes(self) -> list[int]:
        assert self.cluster is not None
        down = [i for i in range(self.cluster.size) if i not in self.cluster.running_nodes()]
        for i in down:
            await self.cluster.restart(i)
        return down

    async def venue_faults(self, **knobs: Any) -> None:
        """Set every simulator's fault knobs (`POST /sim/faults`)."""
        assert self.http is not None
        for sim in self.sims.values():
            async with self.http.post(f"{sim.url}/sim/faults", data=json.dumps(knobs)) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"POST /sim/faults {knobs}: HTTP {resp.status}")

    async def venue_inspect(self) -> dict[str, Any]:
        """The simulator's `/sim/inspect`; with several venues, all of them as one
        (`verify.facts.merged_inspect`)."""
        assert self.http is not None
        docs: dict[str, dict[str, Any]] = {}
        for venue, sim in self.sims.items():
            doc = await get_json(self.http, f"{sim.url}/sim/inspect")
            if doc is None:
                raise RuntimeError(f"the simulator at {sim.url} does not answer")
            docs[venue] = doc
        return docs[self.settings.venues[0]] if len(docs) == 1 else merged_inspect(docs)

    async def request_switchover(self, name: str) -> None:
        assert self.http is not None
        url = f"{self.instances[name].url}/switchover"
        async with self.http.post(url, headers={"X-API-Key": API_KEY}) as resp:
            if resp.status != 202:
                raise RuntimeError(f"POST {url}: HTTP {resp.status}: {await resp.text()}")
