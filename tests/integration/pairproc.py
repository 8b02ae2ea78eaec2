"""The pair as real processes, for the chaos tests: two `titan-exec run` instances with
lease election, the venue simulator as a third process, and helpers to read them.

The instances are the lab's (`titan_exec_lab.harness.procs`: its configuration, started
as a `subprocess.Popen`); `pair()` starts the simulator, `primary` (active) and `backup`
(standby) and stops all of them on exit, failures included. Each instance logs to
`<tmp>/<name>.log`.
"""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from titan_exec_lab.harness.feeds import Brain
from titan_exec_lab.harness.procs import (
    InstanceSettings,
    free_port,
    poll,
    read_json,
    start_instance,
    stop,
)
from titan_exec_lab.harness.simproc import SimProcess
from titan_exec_lab.sim.server import DEV_API_KEY, DEV_API_SECRET

SECRET = "pair-secret"
API_KEY = "pair-api-key"
LEASE_MS = 1000
SECRETS = {
    "HMAC_SECRET": SECRET,
    "TITAN_EXECUTION_API_KEY": API_KEY,
    "TITAN_VENUE_API_KEY": DEV_API_KEY,
    "TITAN_VENUE_API_SECRET": DEV_API_SECRET,
}


@dataclass(frozen=True)
class PairOptions:
    lease_ms: int = LEASE_MS
    replicas: int = 1
    manual_failover: bool = False
    presence_interval_ms: int | None = None
    """None: presence on (the default); 0: off, a takeover waits for the lease."""
    in_doubt_absent_after_ms: int | None = 3000
    """When an order the venue does not show is declared never sent (None: the service's
    30 s). Shortened by default: a kill between a write-ahead and its venue call leaves an
    order in doubt until then, and the invariants settle within 20 s."""
    extra_toml: str = ""
    """Appended to each instance's configuration (more sections)."""
    nats_url_for: Callable[[str], str] | None = None
    """The NATS URL(s) an instance connects to, by name (a proxy in between, a cluster)."""

    def settings(self, name: str, nats_url: str, sim_url: str, port: int) -> InstanceSettings:
        """The lab's pair configuration with this test's options (armed at genesis, the
        service's order TTL, ccxt paced at 10 ms against the local simulator)."""
        return InstanceSettings(
            name=name,
            nats_url=nats_url,
            sim_url=sim_url,
            http_port=port,
            lease_ms=self.lease_ms,
            orders_ttl_ms=None,
            replicas=self.replicas,
            is_armed_on_genesis=True,
            rate_limit_ms=10,
            is_manual_failover=self.manual_failover,
            presence_interval_ms=self.presence_interval_ms,
            in_doubt_absent_after_ms=self.in_doubt_absent_after_ms,
            extra_toml=self.extra_toml,
        )


def status_of(port: int) -> Any:
    return read_json(f"http://127.0.0.1:{port}/status", headers={"X-API-Key": API_KEY})


def role_is(port: int, role: str) -> Callable[[], bool]:
    return lambda: (status_of(port) or {}).get("role") == role


@dataclass
class Pair:
    tmp: Path
    nats_url: str
    sim_url: str
    opts: PairOptions
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def status(self, name: str) -> Any:
        return status_of(self.ports[name])

    def metrics(self, name: str) -> str:
        url = f"http://127.0.0.1:{self.ports[name]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def url_for(self, name: str) -> str:
        return self.opts.nats_url_for(name) if self.opts.nats_url_for else self.nats_url

    def start(self, name: str, mode: str) -> subprocess.Popen[bytes]:
        """(Re)start an instance; its port stays the same across restarts."""
        port = self.ports.setdefault(name, free_port())
        settings = self.opts.settings(name, self.url_for(name), self.sim_url, port)
        proc = start_instance(settings, mode, self.tmp, SECRETS)
        self.procs[name] = proc
        return proc

    def venue_inspect(self) -> Any:
        return read_json(f"{self.sim_url}/sim/inspect") or {}

    def venue_client_order_ids(self) -> list[str]:
        return [o.get("clientOrderId") for o in self.venue_inspect().get("orders", [])]


@asynccontextmanager
async def pair(
    nats_url: str, tmp: Path, opts: PairOptions = PairOptions(), *, sim_nats_url: str | None = None
) -> AsyncIterator[Pair]:
    """The simulator, then `primary` (active) and `backup` (standby) as processes."""
    async with SimProcess(nats_url=sim_nats_url or nats_url, fill_slices=1) as sim:
        p = Pair(tmp, nats_url, sim.url, opts)
        try:
            p.start("primary", "active")
            await poll(role_is(p.ports["primary"], "active"), "primary active", 30)
            p.start("backup", "standby")
            await poll(role_is(p.ports["backup"], "standby"), "backup standby", 30)
            yield p
        finally:
            for proc in p.procs.values():
                stop(proc)


class Load:
    """Steady signed intent load: alternating symbols and sides, small sizes; remembers the
    `TITAN_CMD` sequence of every intent it sent."""

    def __init__(self, brain: Brain, interval_s: float = 0.05) -> None:
        self.brain = brain
        self.interval_s = interval_s
        self.sent: list[int] = []
        self._n = 0

    def next_intent(self, tag: str) -> tuple[str, str, str, str]:
        """(signal_id, symbol, type, size) of the next intent."""
        i = self._n
        self._n += 1
        symbol = ("BTC/USDT", "ETH/USDT")[i % 2]
        size = "0.002" if symbol == "BTC/USDT" else "0.01"
        kind = "BUY_SETUP" if (i // 2) % 2 == 0 else "SELL_SETUP"
        return f"{tag}-{i}", symbol, kind, size

    async def place(self, signal_id: str, symbol: str, kind: str, size: str) -> Any:
        return await self.brain.place(self.brain.intent(signal_id, symbol, kind, size))

    async def send(self, count: int, tag: str) -> None:
        for _ in range(count):
            ack = await self.place(*self.next_intent(tag))
            self.sent.append(ack.seq)
            await asyncio.sleep(self.interval_s)

    def background(self, count: int, tag: str) -> asyncio.Task[None]:
        return asyncio.create_task(self.send(count, tag))
