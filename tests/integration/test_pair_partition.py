"""The active cut off from NATS while the venue stays reachable (ha-protocol.md §9): it
cannot renew, so it stops venue writes at its local lease deadline; the standby takes
over; when the link heals, the old active's state is rebuilt and it rejoins as standby."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.invariants import read_stream
from tests.integration.pairproc import LEASE_MS, Load, PairOptions, pair, role_is
from tests.integration.test_pair_processes import assert_invariants, brain_on
from titan_exec_lab.chaos.netproxy import PartitionProxy
from titan_exec_lab.harness.procs import poll

pytestmark = pytest.mark.integration


async def test_active_isolated_from_nats_stops_venue_writes_by_its_deadline(
    service_nats: Any, tmp_path: Path
) -> None:
    host, port = "127.0.0.1", service_nats.port
    async with PartitionProxy(host, port) as proxy:
        opts = PairOptions(
            nats_url_for=lambda name: proxy.url if name == "primary" else service_nats.url
        )
        async with (
            pair(service_nats.url, tmp_path, opts) as p,
            brain_on(service_nats.url) as (
                nc,
                brain,
            ),
        ):
            load = Load(brain, interval_s=0.1)
            during = load.background(60, "load")
            await asyncio.sleep(1.0)
            cut_ms = time.time_ns() // 1_000_000
            proxy.cut()
            await poll(role_is(p.ports["backup"], "active"), "backup active", 10)
            took_over_s = time.time_ns() / 1e9 - cut_ms / 1000
            primary = await asyncio.to_thread(p.status, "primary")
            print(f"cut → backup active: {took_over_s * 1000:.0f} ms; primary: {primary['role']}")
            assert primary["role"] != "active", "the isolated active still claims to lead"
            await asyncio.sleep(2.0)  # isolated for well over the lease
            proxy.heal()
            await during
            await poll(role_is(p.ports["primary"], "standby"), "primary rejoined", 30)

            # every order the venue received from the isolated active's epoch was sent
            # before its lease deadline (the cut is at most one lease after its last renewal)
            epochs: dict[str, int] = {}
            for m in await read_stream(nc.jetstream(), "TITAN_EVT", "titan.evt.exec.order.v1.>"):
                payload = m.doc()["payload"]
                if payload["event"] == "order.submitted":
                    epochs[payload["clientOrderId"]] = int(
                        m.headers["Nats-Expected-Last-Subject-Sequence"]
                    )
            first_epoch = min(epochs.values())
            late = [
                (o["clientOrderId"], o["time"] - cut_ms)
                for o in (await asyncio.to_thread(p.venue_inspect))["orders"]
                if epochs.get(o["clientOrderId"]) == first_epoch and o["time"] > cut_ms + LEASE_MS
            ]
            assert not late, f"orders of the isolated active after its deadline: {late}"
            await assert_invariants(nc, p, load)
