"""The faults of the chaos matrix (ha-protocol.md §9 and §10), one `Scenario` each.

A scenario's `inject` does the fault to a ready pair under load and marks its moments on
the run's record (`ctx.fault(...)`, `ctx.recovered()`); it returns once the fault is over
(a paused process resumed, a link healed) or, for a crash, once it happened. `restore`
brings the pair back to two instances (a killed one restarted as standby, a killed NATS
node restarted); the runner then waits until the pair is ready and checks the invariants.

`expects` says what the pair should do: "failover" (the other instance must take over),
"stay" (the active must keep the lead), or "either" (both are correct: a pause shorter
than the lease still fences an active whose loop stalled past its limit; a NATS node loss
costs a failover only when raft leaders were on it). A `is_quiet` scenario harms no
instance: nothing may move at all — no fencing, no takeover, no instance exiting — and the
runner makes each of those a violation.

Commands a fault itself puts in `TITAN_CMD` (`ctx.injected(...)`: the poison) are checked
like the load's: each must end in exactly one decision.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from titan_exec.adapters.nats.lease import BUCKET
from titan_exec.wire.envelope import DEFAULT_MAX_BYTES
from titan_exec_lab.chaos.model import RunRecord
from titan_exec_lab.chaos.poison import KINDS, Stored, build_corpus, max_size_burst, raw_publish
from titan_exec_lab.chaos.topology import SECRET, Topology

Expectation = Literal["failover", "stay", "either"]


@dataclass
class RunContext:
    topo: Topology
    record: RunRecord
    active: str
    """The active when the run started."""
    commands: dict[int, str] = field(default_factory=dict)
    """Commands the fault itself stored in `TITAN_CMD`: stream sequence → what it is."""

    @property
    def standby(self) -> str:
        return self.topo.other(self.active)

    def now(self) -> float:
        """Seconds since the run's start."""
        return time.time() - self.record.started_at

    def fault(self, what: str) -> None:
        self.record.fault = what
        self.record.fault_at = self.now()

    def recovered(self) -> None:
        self.record.recovered_at = self.now()

    def note(self, text: str) -> None:
        self.record.notes.append(text)

    def injected(self, stored: Stored) -> None:
        """A message the fault published: a command to be decided once, if it was stored."""
        if stored.seq is not None:
            self.commands[stored.seq] = stored.record.kind
        else:
            self.note(f"{stored.record.kind}: not stored ({stored.error})")


Step = Callable[[RunContext], Awaitable[None]]


async def _nothing(ctx: RunContext) -> None:
    return None


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    inject: Step
    expects: Expectation
    restore: Step = _nothing
    is_planned: bool = False
    """A planned switchover: its gap is measured instead of a failover time."""
    is_quiet: bool = False
    """No instance is harmed: a fencing, a takeover or an instance exiting is a violation."""


def _lease_s(ctx: RunContext) -> float:
    return ctx.record.lease_ms / 1000


# ------------------------------------------------------------------ the instances
async def _kill_active(ctx: RunContext) -> None:
    ctx.fault(f"kill -9 {ctx.active} (active)")
    await ctx.topo.kill_instance(ctx.active)


async def _restart_old_active(ctx: RunContext) -> None:
    inst = ctx.topo.instances[ctx.active]
    if not inst.is_running:
        await ctx.topo.start_instance(ctx.active, "standby")


async def _pause(ctx: RunContext, seconds: float) -> None:
    ctx.fault(f"SIGSTOP {ctx.active} (active) for {seconds * 1000:.0f} ms")
    ctx.topo.signal_instance(ctx.active, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        ctx.topo.signal_instance(ctx.active, signal.SIGCONT)
    ctx.recovered()


async def _pause_short(ctx: RunContext) -> None:
    await _pause(ctx, _lease_s(ctx) / 2)


async def _pause_long(ctx: RunContext) -> None:
    await _pause(ctx, _lease_s(ctx) * 2)


async def _partition_active(ctx: RunContext) -> None:
    ctx.fault(f"{ctx.active} (active) cut off from every NATS node; the venue reachable")
    ctx.topo.cut(ctx.active)
    try:
        await ctx.topo.wait_role(ctx.standby, "active", _lease_s(ctx) * 5 + 10)
        await asyncio.sleep(_lease_s(ctx))
    finally:
        ctx.topo.heal(ctx.active)
    ctx.recovered()


HOST_DARK_AFTER_S = 1.0
"""`kill-active-host`: the dead host's links stay dark this long after the takeover."""
HOST_HELD_NOTE = "the killed active's connection still held by the server at the takeover"


async def _kill_active_host(ctx: RunContext) -> None:
    """A host crash as the rest of the system sees it: the active's NATS links go dark
    (its proxies drop every byte and, `hold`, keep the server-side sockets open), then its
    process is killed -9 behind them. Its kernel closes its sockets, but the close never
    reaches the NATS servers: to them the client is still connected, its subscriptions
    (its presence responder among them) in place, so a request to it times out instead of
    meeting "no responders". The takeover must come through the lease expiry.

    What the server does meanwhile: the topology's nats-servers run with the default
    `ping_interval` (2 min) and `ping_max` (2). A connection with no traffic in from it
    gets a PING at the first ping tick at least 2 min after its last byte, a second one
    2 min later, and is closed as stale at the tick after that: 6 to 8 min after the kill.
    The proxy keeps reading (and dropping) what the server sends, so the server's write
    deadline never closes it earlier either. Far past the lease (2-5 s): the dead
    connection is held through the whole failover, as a host crash with an unresponsive
    network would be until the server's ping timeout. The links are healed (the held
    sockets closed, the server sees the client leave) `HOST_DARK_AFTER_S` after the
    standby became active, so that the old active can be restarted as standby. A note
    says whether a server still listed the dead client's connection (`/connz`) once the
    standby was active: the fault's premise, checked on each run."""
    ctx.fault(f"{ctx.active} (active) host dark: NATS links black-holed, then kill -9")
    ctx.topo.cut(ctx.active, hold=True)
    try:
        await ctx.topo.kill_instance(ctx.active)
        await ctx.topo.wait_role(ctx.standby, "active", _lease_s(ctx) * 5 + 15)
        node = await ctx.topo.node_of(ctx.active)
        ctx.note(
            f"{HOST_HELD_NOTE} (NATS node {node})"
            if node is not None
            else f"{ctx.active}'s connection already gone from every NATS node at the takeover"
        )
        await asyncio.sleep(HOST_DARK_AFTER_S)
    finally:
        ctx.topo.heal(ctx.active)
    ctx.recovered()


async def _restart_standby(ctx: RunContext) -> None:
    ctx.fault(f"kill -9 {ctx.standby} (standby), then restarted")
    await ctx.topo.kill_instance(ctx.standby)
    await asyncio.sleep(0.5)
    await ctx.topo.start_instance(ctx.standby, "standby")
    await ctx.topo.wait_role(ctx.standby, "standby", 60)
    ctx.recovered()


async def _kill_during_catchup(ctx: RunContext) -> None:
    """The standby is killed and restarted; while it is still starting (replaying the
    stream, not yet following), the active is killed: two faults in a row."""
    await ctx.topo.kill_instance(ctx.standby)
    await asyncio.sleep(0.3)
    await ctx.topo.start_instance(ctx.standby, "standby")
    await asyncio.sleep(0.3)  # the new process is importing and replaying
    ctx.fault(f"kill -9 {ctx.active} (active) while {ctx.standby} catches up after a restart")
    await ctx.topo.kill_instance(ctx.active)


async def _switchover(ctx: RunContext) -> None:
    ctx.fault(f"planned switchover: POST /switchover to {ctx.active}")
    await ctx.topo.request_switchover(ctx.active)


# -------------------------------------------------------------------------- NATS
async def _kill_node_of_active(ctx: RunContext) -> None:
    node = await ctx.topo.node_of(ctx.active)
    if node is None:
        raise RuntimeError(f"{ctx.active} is connected to no running NATS node")
    ctx.fault(f"kill -9 NATS node {node} ({ctx.active}'s connection)")
    ctx.topo.kill_node(node)


async def _kill_lease_leader_on_renew(ctx: RunContext) -> None:
    """Kill the node leading the lease bucket's stream the moment a renewal is seen
    there: the next renewal finds no leader until raft elects one (4-9 s in nats-server)."""
    stream = f"KV_{BUCKET}"
    node = (await ctx.topo.leaders()).get(stream)
    if node is None:
        raise RuntimeError(f"no leader known for {stream}")
    assert ctx.topo.nc is not None
    kv = await ctx.topo.nc.jetstream().key_value(BUCKET)
    watcher = await kv.watchall(include_history=False)
    try:
        async with asyncio.timeout(_lease_s(ctx) * 2):
            async for entry in watcher:
                if entry is not None and entry.operation is None:  # a put: a renewal
                    break
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    ctx.fault(f"kill -9 NATS node {node} (leader of {stream}) right after a renewal")
    ctx.topo.kill_node(node)


async def _restart_nodes(ctx: RunContext) -> None:
    down = await ctx.topo.restart_down_nodes()
    if down:
        ctx.note(f"NATS node(s) {down} restarted")
    await _restart_old_active(ctx)


# ------------------------------------------------------------------------- venue
async def _venue_lost_responses(ctx: RunContext) -> None:
    ctx.fault("venue: the answers to the next 3 order placements lost (disconnect)")
    await ctx.topo.venue_faults(lose_next=3, lose_scope="place", lose_mode="disconnect")
    await asyncio.sleep(2.0)
    await ctx.topo.venue_faults(lose_next=0)
    ctx.recovered()


async def _venue_invisible(ctx: RunContext) -> None:
    ctx.fault("venue: new orders invisible to queries for 1500 ms (for 2 s)")
    await ctx.topo.venue_faults(invisible_ms=1500)
    await asyncio.sleep(2.0)
    await ctx.topo.venue_faults(invisible_ms=0)
    ctx.recovered()


async def _venue_error_burst(ctx: RunContext) -> None:
    ctx.fault("venue: a burst of 6 errors (503) on order calls, then 3 rate limits (429)")
    await ctx.topo.venue_faults(error_next=6, error_scope="order")
    await asyncio.sleep(1.0)
    await ctx.topo.venue_faults(error_next=0, rate_limit_next=3, rate_limit_scope="place")
    await asyncio.sleep(1.0)
    await ctx.topo.venue_faults(rate_limit_next=0)
    ctx.recovered()


# ------------------------------------------------------------- the user-data stream
async def _venue_stream_drop(ctx: RunContext) -> None:
    ctx.fault("venue: the user-data stream's sockets dropped 3 times, 700 ms apart")
    for _ in range(3):
        await ctx.topo.venue_faults(user_drop=True)
        await asyncio.sleep(0.7)
    ctx.recovered()


async def _venue_stream_silent(ctx: RunContext) -> None:
    ctx.fault("venue: the user-data stream open but silent for 3 s (its events lost)")
    await ctx.topo.venue_faults(user_silent=True)
    try:
        await asyncio.sleep(3.0)
    finally:
        await ctx.topo.venue_faults(user_silent=False)
    ctx.recovered()


async def _listen_key_expired(ctx: RunContext) -> None:
    ctx.fault("venue: the listen key expired (listenKeyExpired, its sockets closed)")
    await ctx.topo.venue_faults(user_expire=True)
    await asyncio.sleep(2.0)
    ctx.recovered()


# ------------------------------------------------------------------------ poison
POISON_BURSTS = 3
"""The corpus is published in this many bursts, the max-size burst between them."""
MAX_SIZE_BURST = 100
"""Issue 12 item 5: 100 maximum-size messages in one burst must not trip the watchdog."""
BURST_GAP_S = 0.5


async def _poison_burst(ctx: RunContext) -> None:
    """The poison corpus (every kind of `chaos.poison.KINDS`, shuffled) in bursts, and
    100 messages of the maximum size in one, published raw to the NATS node the active
    is connected to, while the signed load goes on. No instance is touched."""
    node = await ctx.topo.node_of(ctx.active)
    if node is None:
        raise RuntimeError(f"{ctx.active} is connected to no running NATS node")
    host, port = ctx.topo.node_address(node)
    seed = ctx.record.run
    now_ms = int(time.time() * 1000)
    # built in a thread: this event loop also relays the instances' NATS traffic (their
    # partition proxies); a build that held it would stall the pair's connections
    # (a half-second build did: an event ack late, re-sent, the re-send refused)
    corpus = await asyncio.to_thread(build_corpus, seed, secret=SECRET.encode(), now_ms=now_ms)
    random.Random(seed).shuffle(corpus)
    bursts = [corpus[i::POISON_BURSTS] for i in range(POISON_BURSTS)]
    big = await asyncio.to_thread(max_size_burst, seed, MAX_SIZE_BURST, now_ms=now_ms)
    bursts.insert(POISON_BURSTS // 2 + 1, big)
    ctx.fault(
        f"poison: {len(corpus)} hostile messages ({len(KINDS)} kinds) in {POISON_BURSTS} "
        f"bursts and {len(big)} of {DEFAULT_MAX_BYTES // 1024} KiB in one, raw to NATS "
        f"node {node} ({ctx.active}'s)"
    )
    for burst in bursts:
        for stored in await raw_publish(host, port, burst):
            ctx.injected(stored)
        await asyncio.sleep(BURST_GAP_S)
    ctx.recovered()


async def _check_alive(ctx: RunContext) -> None:
    """Nothing was killed: an instance that is not running died of the fault."""
    for name, inst in ctx.topo.instances.items():
        if not inst.is_running:
            code = inst.proc.returncode if inst.proc is not None else None
            role = "the active" if name == ctx.active else "the standby"
            raise RuntimeError(
                f"{name} ({role}) exited (code {code}) during {ctx.record.scenario}; "
                f"its log ends:\n{inst.log_tail()}"
            )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("kill-active", "kill -9 of the active", _kill_active, "failover",
                 _restart_old_active),
        Scenario("kill-active-host", "the active's NATS links black-holed, then kill -9 "
                 "(a host crash: the server keeps its connection)", _kill_active_host,
                 "failover", _restart_old_active),
        Scenario("pause-short", "SIGSTOP of the active for half the lease", _pause_short,
                 "either"),
        Scenario("pause-long", "SIGSTOP of the active for twice the lease", _pause_long,
                 "failover"),
        Scenario("partition-active", "the active cut off from NATS, not from the venue",
                 _partition_active, "failover"),
        Scenario("kill-nats-node", "the NATS node the active is connected to killed",
                 _kill_node_of_active, "either", _restart_nodes),
        Scenario("kill-lease-leader", "the lease stream's leader node killed during a renew",
                 _kill_lease_leader_on_renew, "either", _restart_nodes),
        Scenario("standby-restart", "kill -9 of the standby, restarted", _restart_standby,
                 "stay"),
        Scenario("venue-lost-responses", "order placements executed, answers lost",
                 _venue_lost_responses, "stay"),
        Scenario("venue-invisible", "new orders invisible to queries for a while",
                 _venue_invisible, "stay"),
        Scenario("venue-error-burst", "errors and rate limits on order calls",
                 _venue_error_burst, "stay"),
        Scenario("venue-stream-drop", "the user-data stream's sockets dropped",
                 _venue_stream_drop, "stay"),
        Scenario("venue-stream-silent", "the user-data stream open but silent",
                 _venue_stream_silent, "stay"),
        Scenario("listen-key-expired", "the user-data stream's listen key expired",
                 _listen_key_expired, "stay"),
        Scenario("switchover", "planned switchover under load", _switchover, "failover",
                 is_planned=True),
        Scenario("kill-during-catchup", "kill -9 of the active while a restarted standby "
                 "catches up", _kill_during_catchup, "failover", _restart_old_active),
        Scenario("poison-burst", "hostile messages mixed into the load, raw to the active's "
                 "NATS node", _poison_burst, "stay", _check_alive, is_quiet=True),
    )
}  # fmt: skip
