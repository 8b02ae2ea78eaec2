"""`titan-exec bench --cluster 3`: the service on the production shape (three clustered
nats-servers, R3 streams) next to one server (R1), alternating in the same run.

Every round starts fresh servers for each configuration, in alternating order (R1 first
in odd rounds, R3 first in even ones), and measures, with the lease and the epoch fence
on (every event fenced, as a deployed pair writes them), the paper venue in-process:
1. the raw JetStream async publish rate of intent-sized messages on those servers;
2. a burst of N market intents published at once: sustained intents/s (first publish to
   last fill event seen by a subscriber);
3. M intents paced at a fixed rate: per intent, publish → its orders' write-ahead
   durable (the writer's acknowledgement), → the venue request (the paper venue's
   ``place`` called), → its first fill event seen by a subscriber.
Medians over the rounds are reported with R3 / R1 and service / raw ratios.

Configurations are named ``<topology>-<writes>``: ``R1-batch``, ``R1-pipelined``,
``R3-batch`` and, with ``--baseline``, ``R3-alone`` (one fenced event at a time, the
writer before group commit). ``--profile FILE`` profiles the burst of one extra R3 round,
left out of the medians (cProfile, the service and the load generator share the process),
and prints where the CPU went.
"""

from __future__ import annotations

import asyncio
import cProfile
import functools
import io
import os
import platform
import pstats
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
from nats.js import api

from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.config import load
from titan_exec.runtime.app import EMBEDDED_MAX_PAYLOAD, RunningInstance
from titan_exec_lab.bench.throughput import PRICES, SYMBOLS, _drive, _pct, _prepare, bench_overrides
from titan_exec_lab.harness.cluster import LocalCluster
from titan_exec_lab.harness.feeds import Brain, TickerFeed

SECRET = "bench-secret"


@asynccontextmanager
async def _servers(topology: str, work: Path) -> AsyncIterator[tuple[str, int]]:
    """Fresh servers: (the URLs as ``nats.url`` takes them, the replica count)."""
    if topology == "R1":
        async with EmbeddedNats(
            state_dir=work / "nats", port=0, extra_config=EMBEDDED_MAX_PAYLOAD
        ) as server:
            yield server.url, 1
    else:
        async with LocalCluster(work / "cluster", size=3) as cluster:
            yield cluster.urls, 3


async def _raw_publish(urls: str, replicas: int, n: int, body: bytes) -> float:
    nc = await nats.connect(urls.split(","))
    try:
        js = nc.jetstream()
        await js.add_stream(
            name="BENCH_RAW",
            subjects=["bench.raw.>"],
            storage=api.StorageType.FILE,
            num_replicas=replicas,
        )
        t0 = time.perf_counter()
        futures = [await js.publish_async("bench.raw.x", body) for _ in range(n)]
        await asyncio.gather(*futures)
        rate = n / (time.perf_counter() - t0)
        await js.delete_stream("BENCH_RAW")
        return rate
    finally:
        await nc.close()


class _Probe:
    """Times, per client order id, its write-ahead durable and its venue request."""

    def __init__(self, svc: Any) -> None:
        self.durable: dict[str, float] = {}
        self.requested: dict[str, float] = {}
        leader = svc.leader
        assert leader is not None and leader.intake is not None
        drivers = leader.intake.runner
        write_ahead = drivers.write_ahead

        def timed_write_ahead(coids: tuple[str, ...]) -> asyncio.Future[None] | None:
            fut: asyncio.Future[None] | None = write_ahead(coids)
            if fut is not None:
                fut.add_done_callback(lambda _: self._at(self.durable, coids))
            return fut

        drivers.write_ahead = timed_write_ahead
        for runner in drivers.runners.values():
            venue = runner.venue
            place = venue.place

            async def timed_place(req: Any, _place: Callable[..., Any] = place) -> Any:
                self.requested.setdefault(req.client_order_id, time.perf_counter())
                return await _place(req)

            venue.place = timed_place

    @staticmethod
    def _at(into: dict[str, float], coids: tuple[str, ...]) -> None:
        t = time.perf_counter()
        for c in coids:
            into.setdefault(c, t)


async def _round(
    topology: str,
    writes: str,
    *,
    intents: int,
    paced: int,
    pace_per_s: float,
    tag: str,
    profile: cProfile.Profile | None,
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="titan-clusterbench-"))
    try:
        async with _servers(topology, work) as (urls, replicas):
            overrides = bench_overrides(work, urls, ha=True)
            overrides.update({"nats.replicas": replicas, "nats.fenced_writes": writes})
            cfg = load(None, env={}, overrides=overrides)
            async with RunningInstance(cfg) as inst:
                assert inst.service is not None
                svc = inst.service
                while svc.role != "active" or svc.leader is None or svc.leader.intake is None:
                    await asyncio.sleep(0.01)
                nc = await nats.connect(urls.split(","))
                brain = Brain(nc, secret=SECRET.encode())
                feed = TickerFeed(nc, PRICES)
                await brain.heartbeat()
                brain.start_heartbeats(0.5)
                feed.start(0.5)
                await feed.publish_all()
                while len(svc.market.tickers) < len(SYMBOLS):
                    await asyncio.sleep(0.01)
                probe = _Probe(svc)
                sample = brain.envelope(brain.intent("sample", "BTC/USDT", "BUY_SETUP", "0.002"))
                raw = await _raw_publish(urls, replicas, max(5000, intents * 5), sample)
                burst = _prepare(brain, intents, f"burst-{tag}")
                if profile is not None:
                    profile.enable()
                rate, burst_lat = await _drive(nc, burst, pace_per_s=None)
                if profile is not None:
                    profile.disable()
                timed = _prepare(brain, paced, f"paced-{tag}")
                sent: dict[str, float] = {}
                _, fill_lat = await _drive(nc, timed, pace_per_s=pace_per_s, sent_at_out=sent)
                durable, requested = [], []
                for sid, t0 in sent.items():
                    coids = svc.state.accepted_signals.get(sid, ())
                    d = [probe.durable[c] for c in coids if c in probe.durable]
                    r = [probe.requested[c] for c in coids if c in probe.requested]
                    if d:
                        durable.append(min(d) - t0)
                    if r:
                        requested.append(min(r) - t0)
                events = svc.events
                assert events is not None
                await brain.stop()
                await feed.stop()
                await nc.close()
                return {
                    "raw_publish_per_s": raw,
                    "intents_per_s": rate,
                    "filled": len(burst_lat) + len(fill_lat),
                    "expected": intents + paced,
                    "durable_p50_ms": _pct(durable, 50) * 1000,
                    "durable_p99_ms": _pct(durable, 99) * 1000,
                    "request_p50_ms": _pct(requested, 50) * 1000,
                    "request_p99_ms": _pct(requested, 99) * 1000,
                    "fill_p50_ms": _pct(fill_lat, 50) * 1000,
                    "fill_p99_ms": _pct(fill_lat, 99) * 1000,
                    "batches": events.writer.batches_sent,
                    "events": events.published,
                }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _configs(replicas: int, baseline: bool) -> list[tuple[str, str]]:
    configs = [("R1", "batch"), ("R1", "pipelined")]
    if replicas == 3:
        configs.append(("R3", "batch"))
        if baseline:
            configs.append(("R3", "alone"))
    return configs


async def run_clusterbench(
    *,
    replicas: int = 3,
    rounds: int = 3,
    intents: int = 1000,
    paced: int = 300,
    pace_per_s: float = 100.0,
    baseline: bool = False,
    profile_path: str | None = None,
) -> int:
    configs = _configs(replicas, baseline)
    print(
        f"titan-exec bench --cluster {replicas}: {rounds} rounds of "
        f"{', '.join(f'{t}-{w}' for t, w in configs)} (fresh servers each, alternating order); "
        f"lease and epoch fence on, paper venue; a burst of {intents} market intents, then "
        f"{paced} paced at {pace_per_s:.0f}/s; python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    results: dict[str, list[dict[str, Any]]] = {f"{t}-{w}": [] for t, w in configs}
    profile = cProfile.Profile() if profile_path else None
    measure = functools.partial(_round, intents=intents, paced=paced, pace_per_s=pace_per_s)
    for r in range(1, rounds + 1):
        order = configs if r % 2 else list(reversed(configs))
        for topology, writes in order:
            name = f"{topology}-{writes}"
            res = await measure(topology, writes, tag=f"{r}-{name}", profile=None)
            results[name].append(res)
            print(f"round {r} {name}: {_line(res)}", flush=True)
    ok = _report(results, pace_per_s)
    if profile is not None and profile_path:
        # an extra round, not in the medians: the profiler slows the process it watches
        name = _profiled(configs)
        topology, writes = name.split("-")
        res = await measure(topology, writes, tag=f"profiled-{name}", profile=profile)
        print(f"\nprofiled round {name} (not in the medians): {_line(res)}")
        profile.dump_stats(profile_path)
        print(f"\nprofile of one {name} burst ({profile_path}), top by own time:")
        print(_profile_top(profile))
    return 0 if ok else 1


def _profiled(configs: list[tuple[str, str]]) -> str:
    return "R3-batch" if ("R3", "batch") in configs else "R1-batch"


def _line(res: dict[str, Any]) -> str:
    return (
        f"{res['intents_per_s']:.0f} intents/s (filled {res['filled']}/{res['expected']}, "
        f"{res['events']} events in {res['batches']} batches); paced: write-ahead durable "
        f"p50 {res['durable_p50_ms']:.2f} p99 {res['durable_p99_ms']:.2f} ms, venue request "
        f"p50 {res['request_p50_ms']:.2f} p99 {res['request_p99_ms']:.2f} ms, fill p50 "
        f"{res['fill_p50_ms']:.2f} p99 {res['fill_p99_ms']:.2f} ms; raw publish "
        f"{res['raw_publish_per_s']:.0f}/s"
    )


_COLUMNS = [
    ("intents_per_s", "sustained intents/s", "{:.0f}"),
    ("durable_p50_ms", "→ write-ahead durable p50 ms", "{:.2f}"),
    ("durable_p99_ms", "→ write-ahead durable p99 ms", "{:.2f}"),
    ("request_p50_ms", "→ venue request p50 ms", "{:.2f}"),
    ("request_p99_ms", "→ venue request p99 ms", "{:.2f}"),
    ("fill_p50_ms", "→ fill p50 ms", "{:.2f}"),
    ("fill_p99_ms", "→ fill p99 ms", "{:.2f}"),
    ("raw_publish_per_s", "raw JetStream publish msgs/s", "{:.0f}"),
]


def _report(results: dict[str, list[dict[str, Any]]], pace_per_s: float) -> bool:
    names = list(results)
    med = {
        n: {k: statistics.median(r[k] for r in rs) for k, _, _ in _COLUMNS}
        for n, rs in results.items()
    }
    width = max(len(label) for _, label, _ in _COLUMNS)
    rounds = len(next(iter(results.values())))
    print(f"\nmedians over {rounds} rounds (latencies at {pace_per_s:.0f}/s)")
    print(f"  {'':<{width}}  " + "  ".join(f"{n:>13}" for n in names))
    for key, label, fmt in _COLUMNS:
        print(f"  {label:<{width}}  " + "  ".join(f"{fmt.format(med[n][key]):>13}" for n in names))
    ratio = "service / raw publish"
    print(
        f"  {ratio:<{width}}  "
        + "  ".join(
            f"{med[n]['intents_per_s'] / med[n]['raw_publish_per_s']:>13.3f}" for n in names
        )
    )
    for a, b in (("R3-batch", "R1-batch"), ("R3-batch", "R3-alone"), ("R1-batch", "R1-pipelined")):
        if a in med and b in med:
            print(f"  rate {a} / {b}: {med[a]['intents_per_s'] / med[b]['intents_per_s']:.2f}")
    ok = all(r["filled"] == r["expected"] for rs in results.values() for r in rs)
    if not ok:
        print("WARNING: not every intent produced a fill event in time")
    return ok


def _profile_top(profile: cProfile.Profile, n: int = 25) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(n)
    return out.getvalue()


__all__: list[str] = ["run_clusterbench"]
