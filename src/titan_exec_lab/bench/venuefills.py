"""`titan-exec bench --venue sim`, second part: how fast a venue fill becomes a fill event,
and how much of the account's request weight the service spends, by fill source.

Per configuration — fill source (the user-data stream, or REST polling) × the number of
symbols holding an open order (1, 5, 20) — on a fresh embedded nats-server and a fresh
simulator process (the real ccxt venue over HTTP and websocket):

1. one resting limit buy per symbol, well below the market, so that N symbols hold an open
   order for the whole measurement;
2. the weight: the simulator's count of the request weight the service's API key used,
   read at the start and the end of a quiet window (`weight_window_s`) and scaled to a
   minute (the window is stated in the output);
3. the latency: one symbol at a time, the simulator's mid price is pinned below that
   symbol's limit, the venue fills the order on its next tick (the trade's time is the
   venue's), and the fill event is timed when a subscriber on the event stream sees it:
   latency = arrival (wall clock, ms) − the event's `tExchange` (the venue's trade time,
   same clock: one machine). The price is released and a new resting order replaces the
   filled one, so the count of symbols with open orders stays N.

Configurations alternate by round (stream first in odd rounds, polling first in even ones);
medians over the rounds are printed with the ratios stream / polling.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import aiohttp
import nats
from nats.aio.msg import Msg

from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.config import load
from titan_exec.runtime.app import EMBEDDED_MAX_PAYLOAD, RunningInstance
from titan_exec.runtime.leader import DEFAULT_POLICY
from titan_exec_lab.harness.feeds import Brain
from titan_exec_lab.harness.simproc import SimProcess
from titan_exec_lab.sim.server import DEV_API_KEY, DEV_API_SECRET

SECRET = "bench-secret"
VENUE = "sim"
SOURCES = ("stream", "polling")
SYMBOL_COUNTS = (1, 5, 20)
ACCOUNT_LIMIT_1M = 2400
"""Binance USDⓈ-M's request weight per minute of an account (the simulator's default)."""


@dataclass(frozen=True, slots=True)
class Market:
    symbol: str
    """Canonical (`BTC/USDT`)."""
    venue_symbol: str
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    min_notional: Decimal
    bid: Decimal


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def _filters(sym: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["filterType"]: f for f in sym.get("filters", [])}


async def markets(http: aiohttp.ClientSession, base: str) -> list[Market]:
    """The simulator's listed symbols with their steps and current bids."""
    async with http.get(f"{base}/fapi/v1/exchangeInfo") as r:
        info = await r.json()
    async with http.get(f"{base}/fapi/v1/ticker/bookTicker") as r:
        books = {b["symbol"]: Decimal(b["bidPrice"]) for b in await r.json()}
    out = []
    for sym in info["symbols"]:
        f = _filters(sym)
        out.append(
            Market(
                symbol=f"{sym['baseAsset']}/{sym['quoteAsset']}",
                venue_symbol=sym["symbol"],
                tick=Decimal(f["PRICE_FILTER"]["tickSize"]),
                step=Decimal(f["LOT_SIZE"]["stepSize"]),
                min_qty=Decimal(f["LOT_SIZE"]["minQty"]),
                min_notional=Decimal(f.get("MIN_NOTIONAL", {}).get("notional", "5")),
                bid=books[sym["symbol"]],
            )
        )
    return out


def resting_order(m: Market) -> tuple[str, str]:
    """(limit price, quantity) of a buy 5 % below the bid, above the minimum notional."""
    price = (m.bid * Decimal("0.95") / m.tick).to_integral_value(ROUND_FLOOR) * m.tick
    qty = max(m.min_qty, m.min_notional * Decimal("1.5") / price)
    qty = (qty / m.step).to_integral_value(ROUND_CEILING) * m.step
    return f"{price:f}", f"{qty:f}"


async def weight_used(http: aiohttp.ClientSession, base: str) -> int:
    """The request weight the service's API key used so far: the simulator's count of the
    current minute plus its last minutes (kept ten minutes: a round is shorter)."""
    async with http.get(f"{base}/sim/inspect") as r:
        doc = await r.json()
    client = doc.get("weight", {}).get("clients", {}).get(DEV_API_KEY)
    if client is None:
        return 0
    return int(client["used"]) + sum(int(m["used"]) for m in client.get("history", []))


async def _pin(http: aiohttp.ClientSession, base: str, symbol: str, mid: str | None) -> None:
    async with http.post(f"{base}/sim/price", json={"symbol": symbol, "mid": mid}) as r:
        if r.status != 200:
            raise RuntimeError(f"/sim/price {symbol}: {r.status} {await r.text()}")


def _config(state_dir: Path, nats_url: str, sim_url: str, source: str, symbols: list[str]) -> Any:
    policy = json.loads(DEFAULT_POLICY.read_text())
    policy.update({"maxOpenOrdersPerSymbol": 100, "maxDailyLoss": -1e9, "symbolWhitelist": symbols})
    policy_path = state_dir / "bench-policy.json"
    policy_path.write_text(json.dumps(policy))
    return load(
        None,
        env={},
        overrides={
            "nats.url": nats_url,
            "service.state_dir": str(state_dir),
            "security.hmac_secret": SECRET,
            "http.port": 0,
            "risk.arm_on_genesis": True,
            "risk.freshness_ms": 600_000,
            "risk.policy_file": str(policy_path),
            "orders.ttl_ms": 3_600_000,  # the resting orders stay for the whole round
            "venue.kind": "ccxt",
            "venue.exchange_id": "binanceusdm",
            "venue.base_url": sim_url,
            "venue.api_key": DEV_API_KEY,
            "venue.api_secret": DEV_API_SECRET,
            "venue.user_stream": source == "stream",
            # ccxt's pacing stays on (as against the venue): the weight is what it is
            "venue.rate_limit_ms": 10,
        },
    )


class _Fills:
    """Fill events by client order id, timed at arrival; decisions by signal id."""

    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.decisions: dict[str, dict[str, Any]] = {}

    async def on_decision(self, msg: Msg) -> None:
        payload = json.loads(msg.data).get("payload", {})
        self.decisions[str(payload.get("signalId", ""))] = payload

    async def on_msg(self, msg: Msg) -> None:
        arrived = time.time() * 1000
        payload = json.loads(msg.data).get("payload", {})
        coid = str(payload.get("clientOrderId", ""))
        fut = self.waiting.pop(coid, None)
        if fut is not None and not fut.done():
            self.latencies_ms.append(arrived - float(payload["tExchange"]))
            fut.set_result(None)


async def _open_order(brain: Brain, svc: Any, m: Market, tag: str, seen: _Fills) -> str:
    """Place one resting limit buy; returns its client order id once the venue has it."""
    price, qty = resting_order(m)
    await brain.place(brain.intent(tag, m.symbol, "BUY_SETUP", qty, entry=price))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for order in svc.state.iter_open_orders():
            if order.signal_id == tag and order.venue_order_id:
                return str(order.client_order_id)
        await asyncio.sleep(0.01)
    raise RuntimeError(
        f"{tag}: no venue acknowledgement within 20 s; decision: {seen.decisions.get(tag)}"
    )


async def _round(
    source: str, n_symbols: int, *, fills: int, weight_window_s: float, round_no: int
) -> dict[str, float]:
    state_dir = Path(tempfile.mkdtemp(prefix="titan-venuebench-"))
    try:
        async with (
            EmbeddedNats(state_dir=state_dir, port=0, extra_config=EMBEDDED_MAX_PAYLOAD) as srv,
            SimProcess(nats_url=srv.url, fill_slices=1) as sim,
            aiohttp.ClientSession() as http,
        ):
            listed = await markets(http, sim.url)
            if len(listed) < n_symbols:
                raise RuntimeError(f"the simulator lists {len(listed)} symbols, {n_symbols} asked")
            chosen = listed[:n_symbols]
            cfg = _config(state_dir, srv.url, sim.url, source, [m.symbol for m in chosen])
            async with RunningInstance(cfg) as inst:
                assert inst.service is not None
                svc = inst.service
                while svc.role != "active":
                    await asyncio.sleep(0.01)
                nc = await nats.connect(srv.url)
                try:
                    return await _measure(
                        nc, http, sim.url, svc, chosen, source, fills, weight_window_s, round_no
                    )
                finally:
                    await nc.close()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


async def _measure(
    nc: Any,
    http: aiohttp.ClientSession,
    sim_url: str,
    svc: Any,
    chosen: list[Market],
    source: str,
    fills: int,
    weight_window_s: float,
    round_no: int,
) -> dict[str, float]:
    brain = Brain(nc, secret=SECRET.encode())
    await brain.heartbeat()
    brain.start_heartbeats(0.5)
    try:
        while not all((VENUE, m.symbol) in svc.market.tickers for m in chosen):
            await asyncio.sleep(0.01)
        seen = _Fills()
        subs = [
            await nc.subscribe("titan.evt.exec.fill.v1.>", cb=seen.on_msg),
            await nc.subscribe("titan.evt.exec.decision.v1.>", cb=seen.on_decision),
        ]
        coids = {}
        for i, m in enumerate(chosen):
            tag = f"vb-{round_no}-{source}-{i}"
            coids[m.symbol] = await _open_order(brain, svc, m, tag, seen)
        await asyncio.sleep(1.0)  # the first reconciliations after the start are done
        w0, t0 = await weight_used(http, sim_url), time.monotonic()
        await asyncio.sleep(weight_window_s)
        w1, t1 = await weight_used(http, sim_url), time.monotonic()
        per_min = (w1 - w0) * 60 / (t1 - t0)
        for k in range(fills):
            m = chosen[k % len(chosen)]
            price, _ = resting_order(m)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            seen.waiting[coids[m.symbol]] = fut
            await _pin(http, sim_url, m.venue_symbol, f"{Decimal(price) * Decimal('0.999'):f}")
            try:  # a polling venue held by its weight budget can take many seconds
                await asyncio.wait_for(fut, timeout=120)
            except TimeoutError:
                print(f"  {m.symbol}: no fill event within 120 s (counted as missing)")
                seen.waiting.pop(coids[m.symbol], None)
            await _pin(http, sim_url, m.venue_symbol, None)
            tag = f"vb-{round_no}-{source}-{len(chosen)}-{k}"
            coids[m.symbol] = await _open_order(brain, svc, m, tag, seen)
        for sub in subs:
            await sub.unsubscribe()
        return {
            "p50_ms": _pct(seen.latencies_ms, 50),
            "p99_ms": _pct(seen.latencies_ms, 99),
            "weight_per_min": per_min,
            "fills": float(len(seen.latencies_ms)),
        }
    finally:
        await brain.stop()


def _order(round_no: int, sources: tuple[str, ...]) -> Iterable[str]:
    return sources if round_no % 2 == 1 else tuple(reversed(sources))


async def run_venuebench(
    *,
    rounds: int = 2,
    fills: int = 40,
    symbol_counts: tuple[int, ...] = SYMBOL_COUNTS,
    weight_window_s: float = 15.0,
    sources: tuple[str, ...] = SOURCES,
) -> int:
    print(
        f"\nvenue fills ({rounds} rounds): fill source × symbols holding an open order "
        f"{', '.join(map(str, symbol_counts))}; per configuration {fills} fills timed "
        f"venue trade → fill event, and the REST weight over {weight_window_s:.0f} s "
        f"scaled to a minute (account limit {ACCOUNT_LIMIT_1M})",
        flush=True,
    )
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    for r in range(1, rounds + 1):
        for source in _order(r, sources):
            for n in symbol_counts:
                res = await _round(
                    source, n, fills=fills, weight_window_s=weight_window_s, round_no=r
                )
                results.setdefault((source, n), []).append(res)
                print(
                    f"round {r} {source:>7} {n:>2} symbols: trade→fill p50 {res['p50_ms']:.1f} ms"
                    f" p99 {res['p99_ms']:.1f} ms ({res['fills']:.0f} fills); weight "
                    f"{res['weight_per_min']:.0f}/min",
                    flush=True,
                )
    print(f"\nmedians over {rounds} rounds")
    print("  source   symbols  trade→fill p50   p99      weight/min  share of the limit")
    med: dict[tuple[str, int], dict[str, float]] = {}
    for (source, n), runs in sorted(results.items()):
        med[(source, n)] = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        m = med[(source, n)]
        share = m["weight_per_min"] / ACCOUNT_LIMIT_1M * 100
        print(
            f"  {source:<8} {n:>7}  {m['p50_ms']:>10.1f} ms {m['p99_ms']:>7.1f} ms"
            f"  {m['weight_per_min']:>10.0f}  {share:>6.1f} %"
        )
    for n in symbol_counts:
        s, p = med.get(("stream", n)), med.get(("polling", n))
        if s and p and s["p50_ms"] > 0:
            print(
                f"  {n:>2} symbols: polling / stream p50 {p['p50_ms'] / s['p50_ms']:.1f}×, "
                f"weight stream / polling {s['weight_per_min'] / max(p['weight_per_min'], 1):.2f}"
            )
    expected = fills * rounds
    ok = all(sum(x["fills"] for x in runs) == expected for runs in results.values())
    if not ok:
        print("WARNING: not every fill produced a fill event in time")
    return 0 if ok else 1
