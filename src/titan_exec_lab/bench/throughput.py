"""`titan-exec bench`: the service's sustained rate and intent→fill latency, next to the raw
JetStream limits measured in the same run on the same embedded server.

Each round measures, in this order on one fresh server:
1. raw async publish rate (`publish_async`, all acks awaited) of intent-sized messages;
2. raw pull-consume + ack rate of those messages by a durable consumer;
3. the service: N pre-signed market intents over three symbols published as fast as
   possible; the rate is N / (first publish → last fill event), and each intent's latency
   is publish → its first fill event seen by a subscriber on `titan.evt.exec.fill.v1.>`.
Medians over the rounds are reported, with the ratio of the service's rate to each limit.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api

from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.config import load
from titan_exec.runtime.app import EMBEDDED_MAX_PAYLOAD, RunningInstance
from titan_exec.runtime.leader import DEFAULT_POLICY
from titan_exec_lab.harness.feeds import Brain, TickerFeed
from titan_exec_lab.harness.simproc import SimProcess
from titan_exec_lab.sim.server import DEV_API_KEY, DEV_API_SECRET

SECRET = "bench-secret"
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
PRICES = {"BTC/USDT": Decimal("50000"), "ETH/USDT": Decimal("3000"), "SOL/USDT": Decimal("150")}
SIZES = {"BTC/USDT": "0.002", "ETH/USDT": "0.01", "SOL/USDT": "1"}
"""Above the simulator's minimum notional and quantity steps (BTC 100 USDT, SOL step 1)."""


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


async def _raw_limits(url: str, n: int, body: bytes) -> tuple[float, float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="BENCH_RAW", subjects=["bench.raw.>"], storage=api.StorageType.FILE)
    t0 = time.perf_counter()
    futures = [await js.publish_async("bench.raw.x", body) for _ in range(n)]
    await asyncio.gather(*futures)
    pub_rate = n / (time.perf_counter() - t0)
    psub = await js.pull_subscribe("bench.raw.>", durable="bench", stream="BENCH_RAW")
    got = 0
    t0 = time.perf_counter()
    while got < n:
        msgs = await psub.fetch(256, timeout=5)
        for m in msgs:
            await m.ack()
        got += len(msgs)
    await nc.flush()
    consume_rate = n / (time.perf_counter() - t0)
    await js.delete_stream("BENCH_RAW")
    await nc.close()
    return pub_rate, consume_rate


Prepared = list[tuple[str, str, bytes]]


def _prepare(brain: Brain, n: int, tag: str) -> Prepared:
    """Signed market intents over three symbols, alternating buys and sells."""
    out = []
    for i in range(n):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        kind = "BUY_SETUP" if (i // len(SYMBOLS)) % 2 == 0 else "SELL_SETUP"
        sid = f"bench-{tag}-{i}"
        payload = brain.intent(sid, symbol, kind, SIZES[symbol])
        out.append((sid, brain.place_subject(symbol), brain.envelope(payload)))
    return out


async def _drive(
    nc: NatsClient,
    prepared: Prepared,
    *,
    pace_per_s: float | None,
    sent_at_out: dict[str, float] | None = None,
) -> tuple[float, list[float]]:
    """Publish the intents (all at once, or paced) and time each one to its first fill
    event; returns (intents filled per second from first publish to last fill, latencies).
    ``sent_at_out`` receives each intent's publish time (``perf_counter``)."""
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()
    last_fill = [0.0]
    n = len(prepared)

    async def on_fill(msg: Msg) -> None:
        sid = json.loads(msg.data)["payload"]["signalId"]
        t = time.perf_counter()
        if sid in sent_at:
            latencies.append(t - sent_at.pop(sid))
            last_fill[0] = t
            if len(latencies) == n:
                done.set()

    sub = await nc.subscribe("titan.evt.exec.fill.v1.>", cb=on_fill)
    js = nc.jetstream()
    t0 = time.perf_counter()
    futures = []
    for i, (sid, subject, data) in enumerate(prepared):
        if pace_per_s is not None:
            delay = t0 + i / pace_per_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        sent_at[sid] = time.perf_counter()
        if sent_at_out is not None:
            sent_at_out[sid] = sent_at[sid]
        futures.append(await js.publish_async(subject, data, headers={"Nats-Msg-Id": sid}))
    await asyncio.gather(*futures)
    try:
        await asyncio.wait_for(done.wait(), timeout=max(60.0, n / 20))
    except TimeoutError:
        pass
    await sub.unsubscribe()
    elapsed = (last_fill[0] or time.perf_counter()) - t0
    return (len(latencies) / elapsed if elapsed > 0 else 0.0), latencies


async def _service_round(
    n: int, round_no: int, *, paced_n: int, pace_per_s: float, venue: str, ha: bool = False
) -> dict[str, Any]:
    state_dir = Path(tempfile.mkdtemp(prefix="titan-bench-"))
    try:
        async with EmbeddedNats(
            state_dir=state_dir, port=0, extra_config=EMBEDDED_MAX_PAYLOAD
        ) as server:
            if venue == "sim":
                async with SimProcess(nats_url=server.url, fill_slices=1) as sim:
                    return await _measure(
                        state_dir, server.url, n, round_no, paced_n, pace_per_s, sim.url, ha
                    )
            return await _measure(state_dir, server.url, n, round_no, paced_n, pace_per_s, None, ha)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def bench_overrides(
    state_dir: Path, nats_url: str, *, ha: bool, sim_url: str | None = None
) -> dict[str, Any]:
    """The service's settings for a bench run (a policy file written under ``state_dir``)."""
    policy = json.loads(DEFAULT_POLICY.read_text())
    policy.update({"maxOpenOrdersPerSymbol": 100_000, "maxDailyLoss": -1e9})
    policy_path = state_dir / "bench-policy.json"
    policy_path.write_text(json.dumps(policy))
    overrides: dict[str, Any] = {
        "nats.url": nats_url,
        "service.state_dir": str(state_dir),
        "security.hmac_secret": SECRET,
        "http.port": 0,
        "risk.arm_on_genesis": True,
        # the bench measures capacity: a backlog must not expire while it is worked off,
        # and market orders whose fills are not yet learned count as open orders
        "risk.freshness_ms": 600_000,
        "risk.policy_file": str(policy_path),
    }
    if ha:  # lease election on: every event carries the epoch fence
        overrides.update({"ha.enabled": True, "ha.lease_ms": 5000})
    if sim_url is not None:
        overrides.update(
            {
                "venue.kind": "ccxt",
                "venue.exchange_id": "binanceusdm",
                "venue.base_url": sim_url,
                "venue.api_key": DEV_API_KEY,
                "venue.api_secret": DEV_API_SECRET,
                "venue.poll_interval_ms": 50,
                # the simulator has no request quota: measure the service, not ccxt's pacing
                "venue.enable_rate_limit": False,
            }
        )
    return overrides


async def _measure(
    state_dir: Path,
    nats_url: str,
    n: int,
    round_no: int,
    paced_n: int,
    pace_per_s: float,
    sim_url: str | None,
    ha: bool = False,
) -> dict[str, Any]:
    overrides = bench_overrides(state_dir, nats_url, ha=ha, sim_url=sim_url)
    cfg = load(None, env={}, overrides=overrides)
    async with RunningInstance(cfg) as inst:
        assert inst.service is not None
        svc = inst.service
        while svc.role != "active":  # with the lease: elected, epoch written, intake open
            await asyncio.sleep(0.01)
        nc = await nats.connect(nats_url)
        brain = Brain(nc, secret=SECRET.encode())
        feed = TickerFeed(nc, PRICES)
        await brain.heartbeat()
        brain.start_heartbeats(0.5)
        if sim_url is None:
            feed.start(0.5)
            await feed.publish_all()
        while len(svc.market.tickers) < len(SYMBOLS):
            await asyncio.sleep(0.01)
        sample = brain.envelope(brain.intent("sample", "BTC/USDT", "BUY_SETUP", "0.002"))
        pub_rate, consume_rate = await _raw_limits(nats_url, max(n * 5, 5000), sample)
        burst = _prepare(brain, n, f"burst-{round_no}")
        burst_rate, burst_lat = await _drive(nc, burst, pace_per_s=None)
        paced = _prepare(brain, paced_n, f"paced-{round_no}")
        _, paced_lat = await _drive(nc, paced, pace_per_s=pace_per_s)
        await brain.stop()
        await feed.stop()
        await nc.close()
        rejected = len(svc.state.decided_cmds) - len(svc.state.accepted_signals)
        return {
            "raw_publish_per_s": pub_rate,
            "raw_consume_ack_per_s": consume_rate,
            "service_intents_per_s": burst_rate,
            "filled": len(burst_lat) + len(paced_lat),
            "rejected": rejected,
            "burst_p50_ms": _pct(burst_lat, 50) * 1000,
            "p50_ms": _pct(paced_lat, 50) * 1000,
            "p99_ms": _pct(paced_lat, 99) * 1000,
        }


async def run_bench(
    *,
    intents: int = 2000,
    paced: int = 600,
    pace_per_s: float = 200.0,
    rounds: int = 3,
    venue: str = "paper",
    ha: bool = False,
) -> int:
    print(
        f"titan-exec bench ({venue} venue): {rounds} rounds; per round a burst of "
        f"{intents} intents "
        f"(throughput) then {paced} intents paced at {pace_per_s:.0f}/s (latency); "
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    results = []
    for r in range(1, rounds + 1):
        res = await _service_round(intents, r, paced_n=paced, pace_per_s=pace_per_s, venue=venue)
        results.append(res)
        if ha:
            fenced = await _service_round(
                intents, r, paced_n=paced, pace_per_s=pace_per_s, venue=venue, ha=True
            )
            res["ha_intents_per_s"] = fenced["service_intents_per_s"]
            res["ha_p50_ms"] = fenced["p50_ms"]
            res["ha_p99_ms"] = fenced["p99_ms"]
            res["ha_filled"] = fenced["filled"]
            print(
                f"round {r} with lease election and epoch fence: "
                f"{fenced['service_intents_per_s']:.0f} intents/s; paced latency p50 "
                f"{fenced['p50_ms']:.1f} ms p99 {fenced['p99_ms']:.1f} ms",
                flush=True,
            )
        print(
            f"round {r}: service {res['service_intents_per_s']:.0f} intents/s "
            f"(filled {res['filled']}/{intents + paced}, rejected {res['rejected']}); "
            f"paced latency p50 {res['p50_ms']:.1f} ms p99 {res['p99_ms']:.1f} ms; "
            f"raw publish {res['raw_publish_per_s']:.0f}/s, "
            f"raw consume+ack {res['raw_consume_ack_per_s']:.0f}/s",
            flush=True,
        )
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    svc = med["service_intents_per_s"]
    print(f"\nmedians over {rounds} rounds")
    print(f"  service sustained rate (burst)         {svc:>9.0f} intents/s")
    print(f"  intent→fill p50 at {pace_per_s:.0f}/s               {med['p50_ms']:>9.2f} ms")
    print(f"  intent→fill p99 at {pace_per_s:.0f}/s               {med['p99_ms']:>9.2f} ms")
    print(f"  intent→fill p50 in the burst (queueing) {med['burst_p50_ms']:>8.0f} ms")
    print(f"  raw JetStream async publish            {med['raw_publish_per_s']:>9.0f} msgs/s")
    print(f"  raw JetStream pull consume + ack       {med['raw_consume_ack_per_s']:>9.0f} msgs/s")
    print(f"  service / raw publish                  {svc / med['raw_publish_per_s']:>9.3f}")
    print(f"  service / raw consume + ack            {svc / med['raw_consume_ack_per_s']:>9.3f}")
    print(
        "  (each intent costs the service 1 command consumed + acked and 5 events published "
        "and acked: decision, accepted, submitted, acknowledged, fill)"
    )
    if ha:
        print(f"  with lease election and epoch fence    {med['ha_intents_per_s']:>9.0f} intents/s")
        p50, p99 = med["ha_p50_ms"], med["ha_p99_ms"]
        print(f"  fenced intent→fill p50 / p99           {p50:>5.2f} / {p99:.2f} ms")
        print(f"  fenced / unfenced rate (same rounds)   {med['ha_intents_per_s'] / svc:>9.3f}")
    ok = all(r["filled"] == intents + paced for r in results) and all(
        r.get("ha_filled", intents + paced) == intents + paced for r in results
    )
    if not ok:
        print("WARNING: not every intent produced a fill event in time")
    return 0 if ok else 1
