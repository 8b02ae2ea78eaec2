"""`make demo` (`titan-exec demo`): the hot-standby pair on an embedded NATS, driven by a
scripted flow of signed intents, with a kill -9 of the active in the middle.

Processes: an embedded nats-server (JetStream), two venue simulators (each the Binance
USDⓈ-M API) named `binance` (the default venue) and `bybit`, and `primary` (active) and
`backup` (standby) as `titan-exec run` processes with lease election (lease 1000 ms, a
demo setting: the default is 5000 ms), each configured with both venues
(`[venues.<name>]`), reaching each simulator through its own ccxt venue and serving its
own HTTP API. The flow (`flow`):
arm → open → pyramid → partial close → kill -9 of the active → the flip, sent at once and
decided by the backup when it has taken over (failover time measured) → full close → a
limit order canceled at its time-to-live → bad input (dead letters) → two positions on
the second venue (intents naming it as their `exchange`) → flatten of both venues →
positions kept open on both → halt → an intent dropped while halted. Then the killed
instance is restarted as standby and catches up. The end: orders, positions, trades, dead
letters,
the pair's state (role, epoch, stream position, state hash, positions; the venue's
positions and orders) and the invariant checks read from the raw streams and the venues
(`streamcheck`: both simulators' records as one venue, and a line per venue). A failed
check, or a step that does not happen, exits 1 and says why.

`--single` runs one in-process instance and no failover; it is the only mode of
`--venue paper` (the paper venue's state lives in its process: a pair cannot share it).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import nats
import nats.errors
from nats.aio.client import Client as NatsClient

from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.config import load
from titan_exec.runtime.app import EMBEDDED_MAX_PAYLOAD, RunningInstance
from titan_exec.runtime.leader import load_policy
from titan_exec_lab.cli.status import Reading, read_status, render, venues_of
from titan_exec_lab.demo.flow import (
    START_PRICES,
    DecisionWatch,
    DemoFlow,
    PaperMarket,
    SimMarket,
    say,
    wait_for,
)
from titan_exec_lab.demo.report import print_activity, print_checks, print_pair
from titan_exec_lab.demo.streamcheck import (
    Check,
    merged_inspect,
    read_pair_checks,
    read_streams,
    single_checks,
    venue_checks,
)
from titan_exec_lab.demo.upstream_brain import UpstreamBrain
from titan_exec_lab.harness.feeds import Brain, TickerFeed
from titan_exec_lab.harness.procs import InstanceProcess, InstanceSettings, free_port, get_json
from titan_exec_lab.harness.simproc import SimProcess
from titan_exec_lab.sim.server import DEV_API_KEY, DEV_API_SECRET
from titan_exec_lab.verify.invariants import instance_violations

SECRET = "demo-secret-change-me"
API_KEY = "demo-api-key"
LEASE_MS = 1000
VENUES = ("binance", "bybit")
"""The pair's venues, the default first: two simulators (both speak Binance's API)."""


@dataclass(frozen=True, slots=True)
class Failover:
    new_active: str
    to_active_ms: float
    """kill -9 of the active → the standby's `/status` says `active`."""
    to_decided_ms: float
    """kill -9 of the active → the intent sent right after the kill is decided."""


async def run_demo(*, keep_state: bool = False, venue: str = "sim", single: bool = False) -> int:
    """The demo; returns the exit code (0: every check passed)."""
    is_pair = venue == "sim" and not single
    work = Path(tempfile.mkdtemp(prefix="titan-demo-"))
    mode = "the hot-standby pair (processes)" if is_pair else "one in-process instance"
    say(f"titan-exec demo: {mode}, venue: {venue}, state and logs in {work}")
    started = time.monotonic()
    try:
        async with EmbeddedNats(
            state_dir=work, port=0, extra_config=EMBEDDED_MAX_PAYLOAD
        ) as server:
            say(f"embedded nats-server with JetStream at {server.url} (pid {server.pid})")
            if is_pair:
                async with (
                    SimProcess(nats_url=server.url, venue_name=VENUES[0]) as first,
                    SimProcess(nats_url=server.url, venue_name=VENUES[1], seed=2) as second,
                ):
                    sims = dict(zip(VENUES, (first, second), strict=True))
                    for name, sim in sims.items():
                        say(
                            f"venue {name}: a simulator (Binance USDⓈ-M API) at {sim.url}, "
                            f"pid {sim.pid}"
                        )
                    checks = await _run_pair(work, server.url, sims)
            elif venue == "sim":
                async with SimProcess(nats_url=server.url) as sim:
                    say(f"venue simulator (Binance USDⓈ-M API) at {sim.url}, pid {sim.pid}")
                    checks = await _run_single(work, server.url, sim)
            else:
                checks = await _run_single(work, server.url, None)
        took = time.monotonic() - started
        failed = [c for c in checks if not c.ok]
        if failed:
            keep_state = True
            print(
                f"\nDEMO FAILED after {took:.1f} s: "
                + "; ".join(f"{c.name}: {c.verdict} ({c.detail})" for c in failed)
                + f"\nlogs and state kept in {work}"
            )
            return 1
        print(f"\n{len(checks)} of {len(checks)} checks passed; demo finished in {took:.1f} s")
        return 0
    except (TimeoutError, RuntimeError, OSError, aiohttp.ClientError, nats.errors.Error) as err:
        # a step did not happen (a programming error crashes with its traceback instead)
        keep_state = True
        print(f"\nDEMO FAILED: {type(err).__name__}: {err}\nlogs and state kept in {work}")
        return 1
    finally:
        if not keep_state:
            shutil.rmtree(work, ignore_errors=True)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


async def _start_feeds(
    stack: AsyncExitStack,
    nats_url: str,
    http: aiohttp.ClientSession,
    sim: SimProcess | None,
    venue: str = "sim",
) -> tuple[NatsClient, Brain, PaperMarket | SimMarket, DecisionWatch]:
    """The stand-in brain (heartbeats, signed commands to `venue`), the market, the
    decision reader."""
    nc = await nats.connect(nats_url)
    stack.push_async_callback(nc.close)
    brain = Brain(nc, secret=SECRET.encode(), venue=venue)
    brain.start_heartbeats(0.5)
    stack.push_async_callback(brain.stop)
    market: PaperMarket | SimMarket
    if sim is None:
        feed = TickerFeed(nc, START_PRICES)
        feed.start(0.25)
        stack.push_async_callback(feed.stop)
        market = PaperMarket(feed)
        await feed.publish_all()
    else:
        market = SimMarket(sim.url, http)
        for symbol, mid in START_PRICES.items():
            await market.move(symbol, mid)
    decisions = DecisionWatch(nc.jetstream())
    await decisions.start()
    stack.push_async_callback(decisions.stop)
    return nc, brain, market, decisions


async def _inspect_all(
    http: aiohttp.ClientSession, sims: dict[str, SimProcess]
) -> dict[str, dict[str, Any]]:
    return {name: await _venue_inspect(http, sim) for name, sim in sims.items()}


async def _venue_inspect(http: aiohttp.ClientSession, sim: SimProcess) -> dict[str, Any]:
    doc = await get_json(http, f"{sim.url}/sim/inspect")
    if doc is None:
        raise RuntimeError(f"the simulator at {sim.url} does not answer /sim/inspect")
    return doc


# --- the pair ---------------------------------------------------------------------------


async def _run_pair(work: Path, nats_url: str, sims: dict[str, SimProcess]) -> list[Check]:
    secrets = {
        "HMAC_SECRET": SECRET,
        "TITAN_EXECUTION_API_KEY": API_KEY,
        "TITAN_VENUE_API_KEY": DEV_API_KEY,
        "TITAN_VENUE_API_SECRET": DEV_API_SECRET,
    }
    pair = {
        name: InstanceProcess(
            InstanceSettings(
                name=name,
                nats_url=nats_url,
                sim_url=sims[VENUES[0]].url,
                http_port=free_port(),
                lease_ms=LEASE_MS,
                venues=tuple((name, sim.url) for name, sim in sims.items()),
            ),
            work,
            secrets,
        )
        for name in ("primary", "backup")
    }
    primary, backup = pair["primary"], pair["backup"]

    async def stop_pair() -> None:
        await asyncio.gather(*(p.stop() for p in pair.values()))

    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        stack.push_async_callback(stop_pair)
        say(f"lease election: lease {LEASE_MS} ms (a demo setting; the default is 5000 ms)")
        for inst, mode in ((primary, "active"), (backup, "standby")):
            t0 = time.monotonic()
            await inst.start(mode)
            doc = await inst.wait_role(http, mode)
            say(
                f"{inst.name}: titan-exec run, pid {inst.pid}, {inst.url}: {mode} after "
                f"{time.monotonic() - t0:.1f} s (epoch {doc['epoch']})"
            )
        first = sims[VENUES[0]]
        nc, brain, market, decisions = await _start_feeds(
            stack, nats_url, http, first, venue=VENUES[0]
        )
        second = SimMarket(sims[VENUES[1]].url, http)
        for symbol, mid in START_PRICES.items():
            await second.move(symbol, mid)
        flow = DemoFlow(
            url=primary.url,
            api_key=API_KEY,
            brain=brain,
            market=market,
            decisions=decisions,
            http=http,
        )
        flow.upstream = UpstreamBrain(brain, load_policy(""))
        flow.second_venue = VENUES[1]
        await flow.arm_and_open()
        failover = await _kill_the_active(flow, primary, backup, http)
        await flow.after_the_flip()
        await _restart_as_standby(primary, backup, http)

        say("collecting the results")
        js = nc.jetstream()
        await print_activity(flow, js)
        statuses, inspects = await _settled(pair, sims, http)
        inspect = merged_inspect(inspects)
        pids = {n: p.pid for n, p in pair.items()}
        per_venue = {f"venue {n}": (inspects[n], sim.pid) for n, sim in sims.items()}
        print_pair(statuses, pids, inspect, first.pid, per_venue)
        print(
            f"\nfailover after kill -9 of the active (lease {LEASE_MS} ms): {failover.new_active} "
            f"active {failover.to_active_ms:.0f} ms after the kill, the next intent decided "
            f"{failover.to_decided_ms:.0f} ms after the kill"
        )
        urls = [p.url for p in pair.values()]
        readings = await asyncio.to_thread(lambda: [read_status(u, api_key=API_KEY) for u in urls])
        print(f"\nthe operator's view: titan-exec status {' '.join('--url ' + u for u in urls)}")
        print(render(readings))
        checks = await read_pair_checks(js, statuses, inspect)
        checks += venue_checks(statuses, inspects)
        checks.append(_both_venues_shown(readings))
    print_checks(checks)
    return checks


def _both_venues_shown(readings: list[Reading]) -> Check:
    """`titan-exec status` shows every venue of every instance."""
    shown = {r.url: sorted(venues_of(r.doc)) if r.doc else [] for r in readings}
    ok = bool(shown) and all(names == sorted(VENUES) for names in shown.values())
    detail = "; ".join(f"{url}: {', '.join(names) or 'none'}" for url, names in shown.items())
    return Check("titan-exec status shows both venues", ok, detail)


async def _kill_the_active(
    flow: DemoFlow, active: InstanceProcess, standby: InstanceProcess, http: aiohttp.ClientSession
) -> Failover:
    """SIGKILL the active mid-flow, send the next intent at once (JetStream keeps it), and
    measure until the standby is active and has decided it."""
    say(f"kill -9 of the active: {active.name} (pid {active.pid})")
    t0 = time.monotonic()
    await active.kill()
    label, payload = flow.flip()
    seq = await flow.publish(label, payload)
    say(f"  {label}: cmd {seq} sent {_ms(time.monotonic() - t0)} after the kill, no one active")
    doc = await standby.wait_role(http, "active", timeout_s=3 * LEASE_MS / 1000 + 10)
    to_active = time.monotonic() - t0
    decision = await flow.decisions.wait(seq, label)
    to_decided = time.monotonic() - t0
    say(
        f"  {standby.name} active {_ms(to_active)} after the kill (epoch {doc['epoch']}); "
        f"cmd {seq} decided {_ms(to_decided)} after the kill"
    )
    flow.url = standby.url
    await flow.report_trade(label, decision, payload)
    return Failover(standby.name, to_active * 1000, to_decided * 1000)


async def _restart_as_standby(
    killed: InstanceProcess, active: InstanceProcess, http: aiohttp.ClientSession
) -> None:
    say(f"restarting {killed.name} as standby (same port, same state directory)")
    t0 = time.monotonic()
    await killed.start("standby")
    await killed.wait_role(http, "standby")
    up = time.monotonic() - t0

    async def caught_up() -> bool:
        docs = {p.name: await p.status(http) for p in (killed, active)}
        return not instance_violations(docs, None, same_position=True)

    await wait_for(caught_up, f"{killed.name} to catch up with {active.name}", 20)
    doc = await killed.status(http) or {}
    say(
        f"  {killed.name}: pid {killed.pid}, standby after {up:.1f} s, caught up after "
        f"{time.monotonic() - t0:.1f} s: event_seq {doc.get('event_seq')} "
        f"({doc.get('replayed_events')} events replayed), state hash equal to {active.name}'s"
    )


async def _settled(
    pair: dict[str, InstanceProcess], sims: dict[str, SimProcess], http: aiohttp.ClientSession
) -> tuple[dict[str, dict[str, Any] | None], dict[str, dict[str, Any]]]:
    """Each instance's `/status` and each venue's `/sim/inspect` once they agree (no open
    orders, same stream position and hash, positions equal to the venues'), or after 15 s
    (the checks then say what differs)."""
    deadline = time.monotonic() + 15
    while True:
        statuses = {name: await p.status(http) for name, p in pair.items()}
        inspects = await _inspect_all(http, sims)
        agree = not instance_violations(
            statuses, merged_inspect(inspects), same_position=True
        ) and all(c.ok for c in venue_checks(statuses, inspects))
        docs = [d for d in statuses.values() if d is not None]
        if (agree and all(d["open_orders"] == 0 for d in docs)) or time.monotonic() > deadline:
            return statuses, inspects
        await asyncio.sleep(0.25)


# --- one instance -----------------------------------------------------------------------


async def _run_single(work: Path, nats_url: str, sim: SimProcess | None) -> list[Check]:
    overrides: dict[str, Any] = {
        "nats.url": nats_url,
        "service.state_dir": str(work),
        "security.hmac_secret": SECRET,
        "security.api_key": API_KEY,
        "http.port": 0,
        "orders.ttl_ms": 3000,
        "venue.paper.fill_slices": 2,
        "venue.paper.slice_interval_ms": 150,
    }
    if sim is not None:
        overrides.update(
            {
                "venue.kind": "ccxt",
                "venue.exchange_id": "binanceusdm",
                "venue.base_url": sim.url,
                "venue.api_key": DEV_API_KEY,
                "venue.api_secret": DEV_API_SECRET,
                "venue.poll_interval_ms": 100,
            }
        )
    cfg = load(None, env={}, overrides=overrides)
    async with (
        RunningInstance(cfg, progress=lambda m: say(f"service: {m}")) as inst,
        AsyncExitStack() as stack,
    ):
        assert inst.http is not None
        http = await stack.enter_async_context(aiohttp.ClientSession())
        nc, brain, market, decisions = await _start_feeds(stack, nats_url, http, sim)
        flow = DemoFlow(
            url=f"http://127.0.0.1:{inst.http.port}",
            api_key=API_KEY,
            brain=brain,
            market=market,
            decisions=decisions,
            http=http,
        )
        flow.upstream = UpstreamBrain(brain, load_policy(""))
        await flow.arm_and_open()
        await flow.trade(*flow.flip())
        await flow.after_the_flip()

        say("collecting the results")
        js = nc.jetstream()
        await print_activity(flow, js)
        commands, events = await read_streams(js)
        if sim is None:
            checks = single_checks(commands, events)
        else:
            inspect = await _venue_inspect(http, sim)
            checks = single_checks(commands, events, inspect, await flow.status())
    print_checks(checks)
    return checks
