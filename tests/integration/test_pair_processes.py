"""The pair as real processes under faults: two `titan-exec run` instances with lease
election (1 s lease), the venue simulator as a third process, steady signed intent load.

After each fault the invariants are checked from the raw streams and the simulator, not
from the service's view of itself (`invariants.py`): every command has exactly one
decision, no client order id twice at the venue, no event of a deposed epoch, both
instances at the same stream position with the same state hash and the venue's positions.
Failover times and the switchover gap are measured and printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from tests.integration.invariants import check_pair, read_stream
from tests.integration.pairproc import (
    API_KEY,
    LEASE_MS,
    SECRET,
    Load,
    Pair,
    PairOptions,
    pair,
    role_is,
)
from titan_exec.adapters.nats.lease import STREAM as LEASE_STREAM
from titan_exec_lab.harness.feeds import Brain
from titan_exec_lab.harness.procs import poll

pytestmark = pytest.mark.integration

API_KEY_HEADER = "X-API-Key"


@asynccontextmanager
async def brain_on(url: str) -> AsyncIterator[tuple[Client, Brain]]:
    nc = await nats.connect(url)
    brain = Brain(nc, secret=SECRET.encode())
    brain.start_heartbeats(0.3)
    try:
        await asyncio.sleep(1.0)  # both instances see heartbeats and tickers
        yield nc, brain
    finally:
        await brain.stop()
        await nc.close()


async def assert_invariants(nc: Client, p: Pair, load: Load) -> None:
    f = await check_pair(
        nc.jetstream(),
        lambda: [p.status("primary"), p.status("backup")],
        p.venue_inspect,
        sent=load.sent,
    )
    print(
        f"invariants: {f.commands} commands, {f.decisions} decisions, "
        f"{f.venue_orders} venue orders, epochs {f.epochs}"
    )
    rejects = (await asyncio.to_thread(p.status, "primary") or {}).get("recent_rejects")
    print("recent rejects:", rejects)
    f.assert_ok()


async def _kill_9_of_the_active(
    service_nats: Any, tmp_path: Path, opts: PairOptions
) -> tuple[float, list[tuple[int, dict[str, str], bytes]], list[str]]:
    """kill -9 of the active under load; returns (seconds to the new active's first
    decision, the lease key's history, the backup's transition sentences), the invariants
    checked after the old active rejoined."""
    async with (
        pair(service_nats.url, tmp_path, opts) as p,
        brain_on(service_nats.url) as (
            nc,
            brain,
        ),
    ):
        lease_log: list[tuple[int, dict[str, str], bytes]] = []
        reasons: list[str] = []

        async def on_lease(msg: Any) -> None:
            meta: Any = msg.metadata
            lease_log.append((meta.sequence.stream, dict(msg.headers or {}), msg.data))

        async def on_role(msg: Any) -> None:
            reasons.append(json.loads(msg.data)["reason"])

        watch = await nc.jetstream().subscribe(
            f"$KV.{LEASE_STREAM.removeprefix('KV_')}.leader", ordered_consumer=True, cb=on_lease
        )
        roles = await nc.subscribe("titan.sys.exec.role.v1.backup", cb=on_role)
        load = Load(brain)
        await load.send(20, "before")
        killed = time.monotonic()
        killed_ms = time.time_ns() // 1_000_000
        p.procs["primary"].send_signal(signal.SIGKILL)
        p.procs["primary"].wait(5)
        during = load.background(40, "during")
        await poll(role_is(p.ports["backup"], "active"), "backup active", 10)
        failover_s = time.monotonic() - killed
        await during
        # until the new active executed an intent: its first decision, from the stream
        new_epoch = (await asyncio.to_thread(p.status, "backup"))["epoch"]
        decided_ms = [
            m.doc()["ts"]
            for m in await read_stream(nc.jetstream(), "TITAN_EVT", "titan.evt.exec.decision.v1.>")
            if m.headers.get("Nats-Expected-Last-Subject-Sequence") == str(new_epoch)
        ]
        executed_s = (min(decided_ms) - killed_ms) / 1000
        print(
            f"kill -9 → backup active {failover_s * 1000:.0f} ms, → first intent decided by "
            f"it {executed_s * 1000:.0f} ms (lease {LEASE_MS} ms, presence "
            f"{'off' if opts.presence_interval_ms == 0 else 'on'})"
        )
        await watch.unsubscribe()
        await roles.unsubscribe()
        p.start("primary", "standby")  # back as the hot standby; it catches up
        await poll(role_is(p.ports["primary"], "standby"), "primary standby", 30)
        await assert_invariants(nc, p, load)
        return executed_s, lease_log, reasons


async def test_kill_9_of_the_active_under_load_is_a_takeover_over_the_expiry_marker(
    service_nats: Any, tmp_path: Path
) -> None:
    """Presence off: the lease alone, over its expiry marker."""
    executed_s, lease_log, _ = await _kill_9_of_the_active(
        service_nats, tmp_path, PairOptions(presence_interval_ms=0)
    )
    assert executed_s <= LEASE_MS / 1000 + 1.0  # the lease runs from the last renewal
    # the lease expired into a marker and the backup took it over that marker
    markers = [seq for seq, h, _ in lease_log if h.get("Nats-Marker-Reason") == "MaxAge"]
    assert markers, f"no expiry marker seen: {lease_log}"
    taken = [(seq, h) for seq, h, d in lease_log if b'"instance_id":"backup"' in d]
    assert taken, lease_log
    # a compare-and-set on the marker's revision: the atomic create over the marker
    assert taken[0][1].get("Nats-Expected-Last-Subject-Sequence") == str(markers[-1])


async def test_kill_9_of_the_active_is_seen_by_presence_and_its_revision_taken_over(
    service_nats: Any, tmp_path: Path
) -> None:
    """Presence on (the default): "no responders" from the dead holder's subject, and the
    backup's compare-and-set on the holder's last revision, before the lease expired (no
    expiry marker). The time is printed; the chaos matrix measures it (`titan-exec chaos`)."""
    # the dead active's last write-ahead may never have reached the venue: in doubt, it is
    # declared never sent after in_doubt_absent_after_ms (the harness shortens it to 3 s)
    _, lease_log, reasons = await _kill_9_of_the_active(service_nats, tmp_path, PairOptions())
    assert any(r.startswith("standby: presence: primary/") for r in reasons), reasons
    assert not any(h.get("Nats-Marker-Reason") for _, h, _ in lease_log), lease_log
    taken = [i for i, (_, _, d) in enumerate(lease_log) if b'"instance_id":"backup"' in d]
    assert taken, lease_log
    before = lease_log[taken[0] - 1]
    assert b'"instance_id":"primary"' in before[2]  # the dead holder's own entry ...
    expected = lease_log[taken[0]][1].get("Nats-Expected-Last-Subject-Sequence")
    assert expected == str(before[0])  # ... taken over by compare-and-set on its revision


async def test_sigstop_longer_than_the_lease_deposes_the_active_which_rejoins(
    service_nats: Any, tmp_path: Path
) -> None:
    """A paused active (GC, SIGSTOP, VM freeze) wakes up deposed: its lease deadline has
    passed and the new epoch refuses its writes; it fences, rebuilds its state from the
    stream and stays in the pair as the hot standby (same process)."""
    async with pair(service_nats.url, tmp_path) as p, brain_on(service_nats.url) as (nc, brain):
        load = Load(brain)
        await load.send(6, "before")
        p.procs["primary"].send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        await poll(role_is(p.ports["backup"], "active"), "backup active", 10)
        await load.send(6, "while-paused")
        await asyncio.sleep(max(0.0, LEASE_MS / 1000 * 1.5 - (time.monotonic() - paused)))
        p.procs["primary"].send_signal(signal.SIGCONT)
        during = load.background(10, "after")
        await poll(role_is(p.ports["primary"], "standby"), "primary rejoined as standby", 15)
        await during
        assert p.procs["primary"].poll() is None, "the deposed active left instead of rejoining"
        status = await asyncio.to_thread(p.status, "primary")
        assert status["last_fencing"] is not None, status
        print(f"primary fenced: {status['last_fencing']['reason']}")
        # the election's own role leaves FENCED after its hold (one lease)
        await poll(
            lambda: (p.status("primary") or {}).get("lease_role") == "standby", "held over", 10
        )
        metrics = await asyncio.to_thread(p.metrics, "primary")
        assert "titan_exec_fencings_total 1.0" in metrics
        assert 'titan_exec_role{role="standby"} 1.0' in metrics
        await assert_invariants(nc, p, load)


async def test_sigstop_shorter_than_the_lease_ends_with_one_active_and_nothing_twice(
    service_nats: Any, tmp_path: Path
) -> None:
    """A pause below the lease but above the loop-stall tolerance (lease/20): when the
    active wakes, its watchdog sees the stall and it hands over (a venue write checked
    before the pause may leave after it; ha-protocol.md §3). Either way: one active, the
    other a standby, nothing lost or duplicated. An order written ahead but not sent when
    the active handed over is in doubt: declared never sent after 3 s (the harness
    default; the service's is 30 s)."""
    async with (
        pair(service_nats.url, tmp_path, PairOptions()) as p,
        brain_on(service_nats.url) as (
            nc,
            brain,
        ),
    ):
        load = Load(brain)
        during = load.background(30, "load")
        await asyncio.sleep(0.5)
        p.procs["primary"].send_signal(signal.SIGSTOP)
        await asyncio.sleep(LEASE_MS / 1000 * 0.4)
        p.procs["primary"].send_signal(signal.SIGCONT)
        await during

        def one_active() -> bool:
            roles = {p.status("primary").get("role"), p.status("backup").get("role")}
            return roles == {"active", "standby"}

        await poll(one_active, "one active and one standby", 15)
        roles = {n: p.status(n)["role"] for n in ("primary", "backup")}
        print(f"after a {LEASE_MS * 0.4:.0f} ms pause: {roles}")
        await assert_invariants(nc, p, load)


def _post(url: str, key: str) -> int:
    req = urllib.request.Request(url, method="POST", headers={API_KEY_HEADER: key})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return int(resp.status)


async def test_planned_switchover_under_load_there_and_back(
    service_nats: Any, tmp_path: Path
) -> None:
    """`titan-exec switchover` under load: the active closes intake, finishes in-flight
    work and hands the lease over; the standby's intake opens at once; the old active
    rejoins as the standby, and the pair can switch back. The intake gap is measured
    from the stream: the longest pause between two decisions around the switchover."""
    async with pair(service_nats.url, tmp_path) as p, brain_on(service_nats.url) as (nc, brain):
        load = Load(brain, interval_s=0.1)
        gaps = []
        for leaving, taking in (("primary", "backup"), ("backup", "primary")):
            during = load.background(25, f"to-{taking}")
            await asyncio.sleep(0.5)
            url = f"http://127.0.0.1:{p.ports[leaving]}/switchover"
            requested_ms = time.time_ns() // 1_000_000
            assert await asyncio.to_thread(_post, url, API_KEY) == 202
            await poll(role_is(p.ports[taking], "active"), f"{taking} active", 5)
            await during
            await poll(role_is(p.ports[leaving], "standby"), f"{leaving} standby", 10)
            took = (await asyncio.to_thread(p.status, taking))["last_takeover"]
            gaps.append(took["at_ms"] - requested_ms)
        for gap in gaps:
            print(f"switchover: request → new active's intake open {gap} ms")
        assert max(gaps) < 250
        await assert_invariants(nc, p, load)


async def test_standby_restart_leaves_the_active_alone(service_nats: Any, tmp_path: Path) -> None:
    async with pair(service_nats.url, tmp_path) as p, brain_on(service_nats.url) as (nc, brain):
        load = Load(brain)
        epoch = (await asyncio.to_thread(p.status, "primary"))["epoch"]
        during = load.background(40, "load")
        await asyncio.sleep(0.5)
        p.procs["backup"].send_signal(signal.SIGKILL)
        p.procs["backup"].wait(5)
        await asyncio.sleep(0.5)
        p.start("backup", "standby")
        await poll(role_is(p.ports["backup"], "standby"), "backup back as standby", 30)
        await during
        status = await asyncio.to_thread(p.status, "primary")
        assert (status["role"], status["epoch"]) == ("active", epoch), "the active was disturbed"
        await assert_invariants(nc, p, load)
        # the operator's view of the pair, through the CLI
        urls = [f"--url=http://127.0.0.1:{p.ports[n]}" for n in ("primary", "backup")]
        view = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "titan_exec", "status", *urls],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "TITAN_EXECUTION_API_KEY": API_KEY},
        )
        print(view.stdout)
        assert view.returncode == 0, view.stdout + view.stderr
        assert "ok  one active: primary" in view.stdout
        assert view.stdout.count("primary/") == 2, "both must name the primary as holder"
        assert "ok  state hashes agree at stream position" in view.stdout


async def test_manual_failover_waits_for_the_operators_promote(
    service_nats: Any, tmp_path: Path
) -> None:
    """`ha.manual_failover`: the standby never promotes by itself; `titan-exec promote`
    makes it campaign, and is refused while the active holds the lease."""
    opts = PairOptions(manual_failover=True)
    async with (
        pair(service_nats.url, tmp_path, opts) as p,
        brain_on(service_nats.url) as (
            nc,
            brain,
        ),
    ):
        load = Load(brain, interval_s=0.1)
        await load.send(6, "before")
        url = f"http://127.0.0.1:{p.ports['backup']}"

        def promote() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "titan_exec", "promote", f"--url={url}"],
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, "TITAN_EXECUTION_API_KEY": API_KEY},
            )

        refused = await asyncio.to_thread(promote)
        assert refused.returncode == 1 and "held by primary" in refused.stderr, refused
        p.procs["primary"].send_signal(signal.SIGKILL)
        p.procs["primary"].wait(5)
        await asyncio.sleep(LEASE_MS / 1000 * 2.5)  # expired long ago: no one promotes
        assert (await asyncio.to_thread(p.status, "backup"))["role"] == "standby"
        asked = time.monotonic()
        done = await asyncio.to_thread(promote)
        assert done.returncode == 0, done.stdout + done.stderr
        await poll(role_is(p.ports["backup"], "active"), "backup promoted", 10)
        print(f"promote → backup active {(time.monotonic() - asked) * 1000:.0f} ms")
        await load.send(6, "after")
        p.start("primary", "standby")
        await poll(role_is(p.ports["primary"], "standby"), "primary back as standby", 30)
        await assert_invariants(nc, p, load)
