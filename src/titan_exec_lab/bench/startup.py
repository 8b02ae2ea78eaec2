"""`titan-exec bench --startup`: start-up time against the length of history (issue 6).

An instance starts from the newest snapshot plus the tail of the event stream after it, so
its start-up time should depend on the tail and on the state's size (bounded by the
retention horizon), not on how many events the stream holds. For each history size N:

1. a fresh embedded nats-server (temporary directory, free port; removed afterwards);
2. a synthetic but realistic history written straight into `TITAN_EVT` with the service's
   own event bodies (`encode_event`) and `Nats-Msg-Id` headers, pipelined
   (`publish_async`), and folded locally with `core.state.step` as it is written: the
   genesis, then per intent `IntentDecided` → `OrderAccepted` → `OrderSubmitted` →
   `OrderAcknowledged` → `OrderFilled` (three symbols, buys and sells alternating so
   positions stay bounded), one intent every `intent_interval_ms` of synthetic time;
3. every `snapshot_every` events, what the active does (`runtime/checkpoint.py`): a
   `StateCompacted` (command floor = last decided + 1, closed orders and trade ids older
   than the horizon), a checkpoint marker whose acknowledged sequence T (after every
   earlier event is acknowledged) is the watermark, the local fold's snapshot stored
   under T in the object store, the newest `keep` kept. The history ends with the same
   tail of events after the last snapshot at every N, so every size replays the same
   tail and, the horizon being shorter than the smallest history, holds the same number
   of orders in its snapshot;
4. once every size is written (each on its own server, all kept until the end): start-up
   of a standby as `titan-exec run --mode standby` builds it (paper venue, lease election
   off), `rounds` rounds that each start every size once, in turn: the wall time of
   `Node.start` until ready, and the service's own `health.startup_ms` (snapshot load
   / tail replay), checked against the local fold's state hash and the tail length; then
   once per size with snapshots off (a replay of the whole stream) for contrast;
5. a probe of the parts of a start that touch the store and the stream (list, get and
   restore of the newest snapshot; the stream info a full replay asks first).

The table compares medians within this one run; the machine is shared, so only ratios
measured side by side mean anything, hence the rounds interleaved across sizes. There is
no timing assertion anywhere but the final PASS/FAIL line against the issue's 2× bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
from nats.js import JetStreamContext

from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.adapters.nats.snapshots import SnapshotStore
from titan_exec.adapters.nats.streams import ensure_streams
from titan_exec.api.metrics import Metrics
from titan_exec.clock import wall_clock_ms
from titan_exec.config import Config, load
from titan_exec.core.events import (
    Event,
    Genesis,
    IntentDecided,
    OrderAccepted,
    OrderAcknowledged,
    OrderFilled,
    OrderSubmitted,
    SeenNonce,
    StateCompacted,
)
from titan_exec.core.model import (
    ClientOrderId,
    IntentType,
    OrderType,
    Side,
    VenueOrderId,
    client_order_id,
)
from titan_exec.core.snapshot import restore
from titan_exec.core.state import State, compaction, state_hash, step
from titan_exec.runtime.app import EMBEDDED_MAX_PAYLOAD, make_venue, nats_settings
from titan_exec.runtime.checkpoint import CheckpointSettings, CheckpointWriter
from titan_exec.runtime.leader import load_policy
from titan_exec.runtime.node import Node
from titan_exec.wire.contract import encode_event
from titan_exec.wire.subjects import Subjects

log = logging.getLogger(__name__)

SIZES: tuple[int, ...] = (10_000, 100_000, 1_000_000)
ROUNDS = 3
MAX_RATIO = 2.0
"""The issue's bound: start-up with the largest history within 2× of the smallest."""

SECRET = "startbench-secret"
INSTANCE_ID = "startbench-standby"
WRITER_ID = "startbench-writer"
PRODUCER = "titan-execution"
ACCOUNT = "main"
MAX_IN_FLIGHT = 8192
"""Publishes awaiting their acknowledgement at once (the writer's pipeline depth)."""
REPLAY_TICK_S = 10.0

_FEE_RATE = Decimal("0.0004")
_FEE_STEP = Decimal("0.00000001")


@dataclass(frozen=True, slots=True)
class _Symbol:
    name: str
    price: Decimal
    tick: Decimal
    qty: Decimal


SYMBOLS: tuple[_Symbol, ...] = (
    _Symbol("BTC/USDT", Decimal("50000"), Decimal("5"), Decimal("0.002")),
    _Symbol("ETH/USDT", Decimal("3000"), Decimal("0.3"), Decimal("0.01")),
    _Symbol("SOL/USDT", Decimal("150"), Decimal("0.015"), Decimal("1")),
)


class StartBenchError(RuntimeError):
    """The benchmark's own history or measurement is not what it must be."""


@dataclass(frozen=True, slots=True)
class HistorySpec:
    events: int
    """State events in the stream (genesis, decisions, order events, fills, compactions)."""
    snapshot_every: int = 10_000
    tail: int = 5_000
    """Events after the last snapshot: the same at every size."""
    keep: int = 3
    intent_interval_ms: int = 120_000
    """Synthetic time between intents: 720 intents in a 24 h horizon, and a horizon
    shorter than the smallest history, so every snapshot holds the same number of orders."""
    horizon_ms: int = 86_400_000
    start_ms: int = 1_700_000_000_000
    namespace: str = "exec"
    shard: str = "main"

    def __post_init__(self) -> None:
        if self.snapshot_every < 10:
            raise ValueError(f"snapshot_every must be >= 10, got {self.snapshot_every}")
        if not 1 <= self.tail < self.events - 2:
            raise ValueError(f"tail must be in 1..{self.events - 3}, got {self.tail}")


@dataclass(slots=True)
class WriteResult:
    events: int
    seconds: float
    snapshots: int
    snapshot_bytes: int
    watermark_seq: int
    stream_last_seq: int
    orders_in_snapshot: int
    state_hash: str


@dataclass(slots=True)
class StartResult:
    wall_ms: float
    """`Node.start` until ready: connect, streams, snapshot, tail, follow."""
    startup_ms: dict[str, int]
    """The service's own `health.startup_ms` (snapshot load, tail replay, their total)."""
    replayed_events: int
    snapshot_seq: int
    is_hash_ok: bool


@dataclass(slots=True)
class SizeResult:
    n: int
    write: WriteResult
    starts: list[StartResult]
    full_replay: StartResult | None
    probe_ms: dict[str, float] = field(default_factory=dict)

    @property
    def start_median_ms(self) -> float:
        return statistics.median(s.wall_ms for s in self.starts)

    def phase_median_ms(self, phase: str) -> float:
        return statistics.median(s.startup_ms.get(phase, 0) for s in self.starts)

    @property
    def is_ok(self) -> bool:
        runs = [*self.starts, *([self.full_replay] if self.full_replay else [])]
        return all(s.is_hash_ok for s in runs) and all(
            s.snapshot_seq == self.write.watermark_seq for s in self.starts
        )

    def doc(self, tail: int) -> dict[str, Any]:
        return {
            "events": self.n,
            "write": asdict(self.write),
            "start_ms": [round(s.wall_ms, 1) for s in self.starts],
            "start_median_ms": round(self.start_median_ms, 1),
            "rebuild_median_ms": {
                p: self.phase_median_ms(p) for p in ("snapshot", "tail", "total")
            },
            "replayed_events": [s.replayed_events for s in self.starts],
            "expected_replayed": tail,
            "snapshot_seq": [s.snapshot_seq for s in self.starts],
            "full_replay": asdict(self.full_replay) if self.full_replay else None,
            "probe_ms": {k: round(v, 2) for k, v in self.probe_ms.items()},
            "ok": self.is_ok,
        }


# --- the synthetic history ---------------------------------------------------------------


def _intent_events(spec: HistorySpec, i: int, venue: str) -> tuple[Event, ...]:
    """The five events of intent `i`: decided, accepted, submitted, acknowledged, filled."""
    sym = SYMBOLS[i % len(SYMBOLS)]
    side = Side.BUY if (i // len(SYMBOLS)) % 2 == 0 else Side.SELL
    t = spec.start_ms + (i + 1) * spec.intent_interval_ms
    cmd = i + 1
    sid = f"sb-{i:09d}"
    coid: ClientOrderId = client_order_id(sid, venue, 0)
    price = sym.price + sym.tick * ((i * 7) % 41 - 20)
    fee = (price * sym.qty * _FEE_RATE).quantize(_FEE_STEP)
    trade_id = f"t{i:09d}"
    return (
        IntentDecided(
            ts_ms=t,
            cmd_seq=cmd,
            outcome="accepted",
            reason="accepted",
            signal_id=sid,
            venue=venue,
            account=ACCOUNT,
            symbol=sym.name,
            client_order_ids=(coid,),
            nonce=SeenNonce(key_id="default", nonce=f"{i:032x}", ts_ms=t - 20),
        ),
        OrderAccepted(
            ts_ms=t,
            client_order_id=coid,
            venue=venue,
            account=ACCOUNT,
            symbol=sym.name,
            signal_id=sid,
            cmd_seq=cmd,
            side=side,
            order_type=OrderType.MARKET,
            qty=sym.qty,
            limit_price=None,
            is_reduce_only=False,
            intent_type=IntentType.BUY_SETUP if side is Side.BUY else IntentType.SELL_SETUP,
            expires_at_ms=t + 30_000,
            t_signal=t - 50,
            t_ingress=t - 10,
            correlation_id=sid,
        ),
        OrderSubmitted(
            ts_ms=t + 2, client_order_id=coid, venue=venue, account=ACCOUNT, symbol=sym.name
        ),
        OrderAcknowledged(
            ts_ms=t + 40,
            client_order_id=coid,
            venue=venue,
            account=ACCOUNT,
            symbol=sym.name,
            venue_order_id=VenueOrderId(f"v{i:09d}"),
        ),
        OrderFilled(
            ts_ms=t + 60,
            fill_id=trade_id,
            signal_id=sid,
            symbol=sym.name,
            side=side,
            price=price,
            qty=sym.qty,
            fee=fee,
            fee_currency="USDT",
            t_signal=t - 50,
            t_ingress=t - 10,
            t_decision=t,
            t_ack=t + 40,
            t_exchange=t + 55,
            client_order_id=coid,
            execution_id=trade_id,
            status="FILLED",
            timestamp=t + 55,
            venue=venue,
            account=ACCOUNT,
        ),
    )


def synthetic_events(spec: HistorySpec, venue: str) -> Iterator[tuple[Event, int]]:
    """(event, the last command decided so far), endlessly: the genesis, then intents."""
    yield (
        Genesis(ts_ms=spec.start_ms, policy=load_policy(""), is_armed=True, is_halted=False),
        0,
    )
    i = 0
    while True:
        for ev in _intent_events(spec, i, venue):
            yield ev, i + 1
        i += 1


class HistoryWriter:
    """Writes the history into `TITAN_EVT` and the snapshots into the object store, folding
    every event locally as it goes (the state the stream must rebuild)."""

    def __init__(
        self,
        js: JetStreamContext,
        store: SnapshotStore,
        spec: HistorySpec,
        *,
        venue: str,
        say: Callable[[str], None],
    ) -> None:
        self.js = js
        self.store = store
        self.spec = spec
        self.say = say
        self.subjects = Subjects(spec.namespace)
        self.state = State()
        self.source = synthetic_events(spec, venue)
        self.last_cmd = 0
        self.now_ms = spec.start_ms
        self.written = 0
        self.snapshots = 0
        self.snapshot_bytes = 0
        self.watermark = 0
        self.orders_in_snapshot = 0
        self._in_flight: deque[asyncio.Future[Any]] = deque()
        self._began = 0.0
        self._next_report = 0
        self._pending: list[Event] = []
        self.metrics = Metrics()
        self.checkpoints = CheckpointWriter(
            self,
            store,
            CheckpointSettings(
                instance_id=WRITER_ID,
                ns=spec.namespace,
                shard=spec.shard,
                epoch=0,
                marker_subject=self.subjects.checkpoint(spec.shard),
                every_events=spec.snapshot_every,
                every_ms=2**62,
                keep=spec.keep,
                is_compacting=True,
                is_purging=False,
                horizon_ms=spec.horizon_ms,
            ),
            js=js,
            metrics=self.metrics,
            clock=lambda: self.now_ms,
            ack_floor=self._ack_floor,
        )

    async def write(self) -> WriteResult:
        spec = self.spec
        prefix = spec.events - spec.tail
        step_pct = max(spec.events // 10, 1)
        self._next_report = step_pct
        self._began = time.perf_counter()
        since = 0
        while self.written < prefix - 1:
            await self._emit_next()
            since += 1
            # none close to the last one: the events between them hold a decision, so
            # the last compaction moves the command floor and is event number `prefix`
            if since >= spec.snapshot_every - 1 and self.written < prefix - 10:
                since = 0 if await self._checkpoint() else since
        if not await self._checkpoint():
            raise StartBenchError("the last checkpoint found no bound to move")
        for _ in range(spec.tail):
            await self._emit_next()
        await self._settle()
        seconds = time.perf_counter() - self._began
        if self.written != spec.events:
            raise StartBenchError(f"wrote {self.written} events, not {spec.events}")
        info = await self.js.stream_info("TITAN_EVT")
        return WriteResult(
            events=self.written,
            seconds=round(seconds, 3),
            snapshots=self.snapshots,
            snapshot_bytes=self.snapshot_bytes,
            watermark_seq=self.watermark,
            stream_last_seq=int(info.state.last_seq),
            orders_in_snapshot=self.orders_in_snapshot,
            state_hash=state_hash(self.state),
        )

    async def _emit_next(self) -> None:
        ev, self.last_cmd = next(self.source)
        await self._emit(ev)

    async def _emit(self, ev: Event) -> None:
        step(self.state, ev)
        await self._publish(ev)

    async def _publish(self, ev: Event) -> None:
        subject, msg_id, body = encode_event(ev, ns=self.spec.namespace, producer=PRODUCER)
        fut = await self.js.publish_async(subject, body, headers={"Nats-Msg-Id": msg_id})
        self._in_flight.append(fut)
        self.written += 1
        self.now_ms = ev.ts_ms
        while self._in_flight and (
            self._in_flight[0].done() or len(self._in_flight) > MAX_IN_FLIGHT
        ):
            self._check_ack(await self._in_flight.popleft())
        if self.written >= self._next_report:
            self._next_report += max(self.spec.events // 10, 1)
            elapsed = time.perf_counter() - self._began
            self.say(
                f"  {self.written:>9,}/{self.spec.events:,} events written "
                f"({100 * self.written // self.spec.events:>3}%), "
                f"{self.written / elapsed:,.0f} events/s, {self.snapshots} snapshots"
            )

    def _check_ack(self, ack: Any) -> None:
        if ack.duplicate:
            raise StartBenchError(f"event at seq {ack.seq} was a duplicate message id")

    async def _settle(self) -> None:
        while self._in_flight:
            self._check_ack(await self._in_flight.popleft())

    async def _ack_floor(self) -> int:
        """Every command up to the last is decided and acknowledged in the bench."""
        return self.last_cmd

    def _compaction(self) -> StateCompacted | None:
        """The active's compaction at this point (every command up to the last is
        decided and acknowledged in the bench), when one of its bounds moves."""
        return compaction(
            self.state,
            acked_cmd_seq=self.last_cmd,
            now_ms=self.now_ms,
            horizon_ms=self.spec.horizon_ms,
        )

    async def _checkpoint(self) -> bool:
        """What the active does (`runtime/checkpoint.CheckpointWriter`, the service's own
        writer over this history): compaction, marker, snapshot at the marker's sequence;
        False (nothing written) when no bound moved."""
        if self._compaction() is None:
            return False
        cp = await self.checkpoints.write()
        if cp.snapshot is None:
            raise StartBenchError(f"the snapshot at seq {cp.watermark_seq} was not written")
        self.snapshots += 1
        self.watermark = cp.watermark_seq
        self.snapshot_bytes = int(self.metrics.snapshot_bytes._value.get())
        self.orders_in_snapshot = len(self.state.orders)
        return True

    # --- the event log the checkpoint writer sees (`checkpoint.CheckpointLog`) -------------

    def append(self, events: Sequence[Event]) -> asyncio.Future[None]:
        """Applied now, published before the next marker (the writer's compaction)."""
        for ev in events:
            step(self.state, ev)
            self._pending.append(ev)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def publish_acked(
        self, subject: str, body: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[list[int]]:
        """The marker, after every event before it is acknowledged (so all lie below it)."""
        return asyncio.ensure_future(self._publish_marker(subject, body, headers or {}))

    async def _publish_marker(
        self, subject: str, body: bytes, headers: dict[str, str]
    ) -> list[int]:
        pending, self._pending = self._pending, []
        for ev in pending:
            await self._publish(ev)
        await self._settle()
        ack = await self.js.publish(subject, body, headers=headers)
        return [int(ack.seq)]


# --- measuring a start ---------------------------------------------------------------------


class _DropStandbyNotices(logging.Filter):
    """Two service warnings that every start and stop of this standby gives and that say
    nothing here: that a standby without the lease never takes over by itself (the point
    of the measurement), and, at stop, that its events were not all acknowledged (a
    standby that never led has no event writer to drain; it wrote nothing)."""

    NOTICES = ("standby without lease election", "events not all acknowledged at stop")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOTICES)


def service_config(url: str, state_dir: Path, spec: HistorySpec, *, snapshots: bool) -> Config:
    """A standby as `titan-exec run --mode standby` builds it: paper venue, no lease."""
    return load(
        None,
        env={},
        overrides={
            "nats.url": url,
            "service.state_dir": str(state_dir),
            "service.instance_id": INSTANCE_ID,
            "service.mode": "standby",
            "service.namespace": spec.namespace,
            "service.shard": spec.shard,
            "security.hmac_secret": SECRET,
            "http.port": 0,
            "snapshots.enabled": snapshots,
            "snapshots.keep": spec.keep,
            "retention.horizon_ms": spec.horizon_ms,
        },
    )


async def measure_start(cfg: Config, expected_hash: str) -> StartResult:
    svc = Node(cfg, venue=make_venue(cfg, wall_clock_ms), nats=nats_settings(cfg))
    notes: list[str] = []
    began = time.perf_counter()
    try:
        await svc.start(progress=notes.append)
        wall_ms = (time.perf_counter() - began) * 1000
        if not svc.health.is_ready:
            raise StartBenchError(f"the standby is not ready after start: {notes[-3:]}")
        return StartResult(
            wall_ms=round(wall_ms, 1),
            startup_ms=dict(svc.health.startup_ms),
            replayed_events=svc.health.replayed_events,
            snapshot_seq=svc.health.snapshot_seq,
            is_hash_ok=state_hash(svc.state) == expected_hash,
        )
    finally:
        await svc.stop()


async def _ticking(what: str, say: Callable[[str], None]) -> None:
    began = time.perf_counter()
    while True:
        await asyncio.sleep(REPLAY_TICK_S)
        say(f"    {what}: {time.perf_counter() - began:.0f} s so far")


async def _median_ms(fn: Callable[[], Any], times: int = 3) -> float:
    runs = []
    for _ in range(times):
        began = time.perf_counter()
        await fn()
        runs.append((time.perf_counter() - began) * 1000)
    return statistics.median(runs)


async def probe(js: JetStreamContext, store: SnapshotStore, ns: str) -> dict[str, float]:
    """Medians of the store and stream calls a start makes, one at a time."""
    newest = (await store.newest_first())[0].name
    data = await store.get(newest)

    async def restore_async() -> None:
        restore(data)

    return {
        "snapshot_list": await _median_ms(store.newest_first),
        "snapshot_get": await _median_ms(lambda: store.get(newest)),
        "snapshot_restore": await _median_ms(restore_async),
        "stream_info": await _median_ms(lambda: js.stream_info("TITAN_EVT")),
        "stream_info_subjects": await _median_ms(
            lambda: js.stream_info("TITAN_EVT", subjects_filter=f"titan.evt.{ns}.>")
        ),
    }


@dataclass(slots=True)
class _Prepared:
    """One size's history, written on its own server (alive until the run ends)."""

    spec: HistorySpec
    url: str
    state_dir: Path
    js: JetStreamContext
    store: SnapshotStore
    written: WriteResult
    starts: list[StartResult] = field(default_factory=list)


async def _prepare(
    spec: HistorySpec, stack: AsyncExitStack, work_dir: Path | None, say: Callable[[str], None]
) -> _Prepared:
    """A fresh server in a temporary directory (removed when `stack` closes) holding a
    history of `spec.events`."""
    state_dir = Path(tempfile.mkdtemp(prefix="titan-startbench-", dir=work_dir))
    stack.callback(shutil.rmtree, state_dir, ignore_errors=True)
    server = EmbeddedNats(state_dir=state_dir, port=0, extra_config=EMBEDDED_MAX_PAYLOAD)
    await stack.enter_async_context(server)
    cfg = service_config(server.url, state_dir, spec, snapshots=True)
    nc = await nats.connect(server.url, name="titan-startbench-writer")
    stack.push_async_callback(nc.close)
    js = nc.jetstream(publish_async_max_pending=MAX_IN_FLIGHT)
    await ensure_streams(
        js, replicas=cfg.nats.replicas, duplicate_window_s=cfg.nats.duplicate_window_s
    )
    store = SnapshotStore(js, ns=spec.namespace, shard=spec.shard, bucket=cfg.snapshots.bucket)
    await store.ensure(replicas=cfg.nats.replicas, max_bytes=cfg.snapshots.max_bucket_bytes)
    say(f"N={spec.events:,}: writing the history into TITAN_EVT ({server.url})")
    written = await HistoryWriter(js, store, spec, venue=cfg.venue.name, say=say).write()
    say(
        f"  written in {written.seconds:.1f} s ({written.events / written.seconds:,.0f} "
        f"events/s); {written.snapshots} snapshots, the last at seq {written.watermark_seq} "
        f"({written.snapshot_bytes:,} bytes, {written.orders_in_snapshot} orders); "
        f"{spec.tail:,} events after it"
    )
    return _Prepared(spec, server.url, state_dir, js, store, written)


async def _measure(
    prepared: Sequence[_Prepared], rounds: int, full_replay: bool, say: Callable[[str], None]
) -> list[SizeResult]:
    """The starts of every size, round-robin (each round starts every size once, so a
    change in the machine's load falls on all sizes alike); then one full replay per size
    and the probe."""
    for r in range(1, rounds + 1):
        for p in prepared:
            cfg = service_config(p.url, p.state_dir, p.spec, snapshots=True)
            res = await measure_start(cfg, p.written.state_hash)
            p.starts.append(res)
            say(
                f"start {r}/{rounds} N={p.spec.events:,}: {res.wall_ms:.0f} ms until ready "
                f"(snapshot {res.startup_ms.get('snapshot')} ms, tail "
                f"{res.startup_ms.get('tail')} ms, {res.replayed_events:,} events replayed "
                f"from seq {res.snapshot_seq}); state hash "
                f"{'matches' if res.is_hash_ok else 'DIFFERS from'} the fold"
            )
    results = []
    for p in prepared:
        replay: StartResult | None = None
        if full_replay:
            say(f"full replay (snapshots off) N={p.written.events:,} ...")
            ticker = asyncio.create_task(_ticking("full replay", say))
            try:
                no_snap = service_config(p.url, p.state_dir, p.spec, snapshots=False)
                replay = await measure_start(no_snap, p.written.state_hash)
            finally:
                ticker.cancel()
            say(
                f"  full replay: {replay.wall_ms / 1000:.1f} s, {replay.replayed_events:,} "
                f"events; state hash {'matches' if replay.is_hash_ok else 'DIFFERS'}"
            )
        probed = await probe(p.js, p.store, p.spec.namespace)
        results.append(SizeResult(p.spec.events, p.written, p.starts, replay, probed))
    return results


async def bench_sizes(
    specs: Sequence[HistorySpec],
    *,
    rounds: int = ROUNDS,
    full_replay: bool = True,
    work_dir: Path | None = None,
    say: Callable[[str], None] = print,
) -> list[SizeResult]:
    """Write every size's history on its own fresh server, then time the starts."""
    service_log = logging.getLogger("titan_exec.runtime.node")
    quiet = _DropStandbyNotices()
    service_log.addFilter(quiet)
    try:
        async with AsyncExitStack() as stack:
            prepared = [await _prepare(spec, stack, work_dir, say) for spec in specs]
            return await _measure(prepared, rounds, full_replay, say)
    finally:
        service_log.removeFilter(quiet)


async def bench_size(
    spec: HistorySpec,
    *,
    rounds: int = ROUNDS,
    full_replay: bool = True,
    work_dir: Path | None = None,
    say: Callable[[str], None] = print,
) -> SizeResult:
    (res,) = await bench_sizes(
        [spec], rounds=rounds, full_replay=full_replay, work_dir=work_dir, say=say
    )
    return res


# --- the run -----------------------------------------------------------------------------


def parse_sizes(text: str) -> tuple[int, ...]:
    """``1e4,1e5,1e6`` or ``10000,100000`` → sizes in events."""
    out = []
    for part in text.split(","):
        part = part.strip().replace("_", "")
        if part:
            try:
                value = float(part) if any(c in part for c in ".eE") else int(part)
            except ValueError:
                raise ValueError(f"size {part!r}: not a number of events") from None
            if value != int(value) or value < 100:
                raise ValueError(f"size {part!r}: a whole number of events, at least 100")
            out.append(int(value))
    if not out:
        raise ValueError("no sizes given")
    return tuple(out)


def _fmt_n(n: int) -> str:
    exp = len(str(n)) - 1
    return f"10^{exp}" if n == 10**exp else f"{n:,}"


def render(results: Sequence[SizeResult]) -> list[str]:
    head = (
        f"{'N':>8} {'write s':>8} {'snap bytes':>11} {'start ms':>9} {'snapshot':>9} "
        f"{'tail':>6} {'rebuild':>8} {'replayed':>9} {'full replay s':>14}  ok"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        full = f"{r.full_replay.wall_ms / 1000:.1f}" if r.full_replay else "-"
        replayed = statistics.median(s.replayed_events for s in r.starts)
        lines.append(
            f"{_fmt_n(r.n):>8} {r.write.seconds:>8.1f} {r.write.snapshot_bytes:>11,} "
            f"{r.start_median_ms:>9.0f} {r.phase_median_ms('snapshot'):>9.0f} "
            f"{r.phase_median_ms('tail'):>6.0f} {r.phase_median_ms('total'):>8.0f} "
            f"{replayed:>9,.0f} {full:>14}  {'yes' if r.is_ok else 'NO'}"
        )
    lines.append(
        "(start ms: Node.start until ready, median; snapshot/tail/rebuild: its "
        "health.startup_ms, median; replayed: the tail after the newest snapshot)"
    )
    probe_keys = list(results[0].probe_ms) if results else []
    if probe_keys:
        lines.append("")
        lines.append(f"{'N':>8} " + " ".join(f"{k:>20}" for k in probe_keys) + "   (ms, median)")
        for r in results:
            lines.append(
                f"{_fmt_n(r.n):>8} " + " ".join(f"{r.probe_ms[k]:>20.1f}" for k in probe_keys)
            )
    return lines


async def run_startbench(
    *,
    sizes: Sequence[int] = SIZES,
    rounds: int = ROUNDS,
    json_path: str | None = None,
    snapshot_every: int = 10_000,
    tail: int = 5_000,
    full_replay: bool = True,
) -> int:
    sizes = sorted(sizes)
    print(
        f"titan-exec bench --startup: sizes {', '.join(_fmt_n(n) for n in sizes)} events; "
        f"a snapshot every {snapshot_every:,} events, {tail:,} events after the last; "
        f"{rounds} rounds of starts across the sizes (median) and one full replay each; "
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs",
        flush=True,
    )
    specs = [
        HistorySpec(events=n, snapshot_every=snapshot_every, tail=min(tail, n // 2)) for n in sizes
    ]
    results = await bench_sizes(specs, rounds=rounds, full_replay=full_replay)
    print()
    for line in render(results):
        print(line)
    small, large = results[0], results[-1]
    ratio = large.start_median_ms / small.start_median_ms
    rebuild_ratio = large.phase_median_ms("total") / max(small.phase_median_ms("total"), 1)
    is_pass = ratio <= MAX_RATIO
    if len({min(tail, n // 2) for n in sizes}) > 1:
        print(f"note: sizes below {2 * tail:,} events replay a shorter tail (half the history)")
    is_ok = all(r.is_ok for r in results)
    print()
    print(
        f"start({_fmt_n(large.n)}) / start({_fmt_n(small.n)}) = {ratio:.2f} "
        f"(rebuild alone {rebuild_ratio:.2f}); bound {MAX_RATIO:.0f}×: "
        f"{'PASS' if is_pass else 'FAIL'}"
    )
    if not is_ok:
        print("FAIL: a restarted state differs from the fold, or did not start at the snapshot")
    if json_path:
        doc = {
            "machine": {
                "python": platform.python_version(),
                "arch": platform.machine(),
                "cpus": os.cpu_count(),
            },
            "snapshot_every": snapshot_every,
            "tail": tail,
            "rounds": rounds,
            "sizes": [r.doc(min(tail, r.n // 2)) for r in results],
            "ratio": round(ratio, 3),
            "rebuild_ratio": round(rebuild_ratio, 3),
            "max_ratio": MAX_RATIO,
            "pass": is_pass,
            "ok": is_ok,
        }
        await asyncio.to_thread(Path(json_path).write_text, json.dumps(doc, indent=2) + "\n")
        print(f"results written to {json_path}")
    return 0 if is_pass and is_ok else 1
