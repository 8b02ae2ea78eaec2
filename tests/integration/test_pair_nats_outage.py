"""NATS lost entirely (a single server stopped; what a lost quorum looks like to the pair):
no one can renew the lease, so the active fences at its local deadline and trading stops
(fail-safe, ha-protocol.md §9). When NATS is back, one instance takes over and the flow
goes on; nothing was decided twice or placed twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.pairproc import LEASE_MS, Load, pair
from tests.integration.test_pair_processes import assert_invariants, brain_on
from titan_exec_lab.harness.procs import poll

pytestmark = pytest.mark.integration


async def test_nats_outage_stops_trading_and_the_pair_resumes(
    service_nats: Any, tmp_path: Path
) -> None:
    async with pair(service_nats.url, tmp_path) as p, brain_on(service_nats.url) as (nc, brain):
        load = Load(brain, interval_s=0.1)
        await load.send(10, "before")
        stopped_ms = time.time_ns() // 1_000_000
        await service_nats.astop()
        await asyncio.sleep(LEASE_MS / 1000 * 2.5)
        roles = {n: (await asyncio.to_thread(p.status, n))["role"] for n in ("primary", "backup")}
        print(f"{LEASE_MS * 2.5:.0f} ms without NATS: {roles}")
        assert "active" not in roles.values(), "an instance kept leading without NATS"
        orders = (await asyncio.to_thread(p.venue_inspect))["orders"]
        late = [o["clientOrderId"] for o in orders if o["time"] > stopped_ms + LEASE_MS]
        assert not late, f"venue orders after the lease deadline: {late}"

        await service_nats.astart()  # same port and store
        restarted = time.monotonic()

        def one_active() -> str | None:
            active = [
                n for n in ("primary", "backup") if (p.status(n) or {}).get("role") == "active"
            ]
            return active[0] if len(active) == 1 else None

        leader = await poll(one_active, "an active after NATS came back", 30)
        print(f"NATS back → {leader} active in {(time.monotonic() - restarted) * 1000:.0f} ms")
        await load.send(10, "after")
        await asyncio.sleep(0.5)
        await poll(
            lambda: all((p.status(n) or {}).get("role") in ("active", "standby") for n in p.ports),
            "both instances settled",
            30,
        )
        await assert_invariants(nc, p, load)
