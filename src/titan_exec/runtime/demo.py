"""`make demo`: the service on an embedded NATS, driven by a scripted flow of signed intents.

Opens, a pyramid, a partial close, a flip, a full close, a limit order that expires at its
time-to-live, then bad input (a symbol outside the whitelist, a bad signature, a replayed
nonce, an expired intent, bytes that are not JSON). Progress is printed as it runs; the end
is a table of orders, positions, PnL, trades and where each rejected intent went (read back
from the dead-letter stream).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import nats
from nats.js import api

from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.config import load
from titan_exec.core.model import OrderStatus
from titan_exec.runtime.app import EMBEDDED_MAX_PAYLOAD, RunningInstance
from titan_exec.runtime.feeds import Brain, TickerFeed
from titan_exec.runtime.service import Service
from titan_exec.runtime.simproc import SimProcess
from titan_exec.sim.server import DEV_API_KEY, DEV_API_SECRET

SECRET = "demo-secret-change-me"
API_KEY = "demo-api-key"


def _say(step: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {step}", flush=True)


async def wait_for(cond: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [f"\n{title}", line]
    for i, r in enumerate(cells):
        out.append("|".join(f" {c:<{w}} " for c, w in zip(r, widths, strict=True)))
        if i == 0:
            out.append(line)
    out.append(line)
    return "\n".join(out)


def _d(value: Decimal | None, places: str = "0.0001") -> str:
    if value is None:
        return "-"
    return format(value.quantize(Decimal(places)).normalize(), "f") if value != 0 else "0"


START_PRICES = {
    "BTC/USDT": Decimal("50000"),
    "ETH/USDT": Decimal("3000"),
    "SOL/USDT": Decimal("150"),
}


class PaperMarket:
    """Prices of the paper venue: the demo's own ticker feed."""

    def __init__(self, feed: TickerFeed) -> None:
        self.feed = feed

    async def move(self, symbol: str, mid: Decimal) -> None:
        self.feed.move(symbol, mid)
        await self.feed.publish_all()


class SimMarket:
    """Prices of the simulator: pinned through its test endpoint (`POST /sim/price`); the
    simulator publishes the tickers itself."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def move(self, symbol: str, mid: Decimal) -> None:
        body = {"symbol": symbol.replace("/", ""), "mid": str(mid)}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/sim/price", json=body) as resp,
        ):
            resp.raise_for_status()
        await asyncio.sleep(0.3)  # two simulator ticks: the new book is published


class DemoFlow:
    def __init__(self, svc: Service, brain: Brain, market: PaperMarket | SimMarket) -> None:
        self.svc = svc
        self.brain = brain
        self.market = market
        self.sent: list[tuple[int, str]] = []

    def decided(self, seq: int) -> bool:
        return seq in self.svc.state.decided_cmds

    async def send(self, label: str, payload: dict[str, Any], **kw: Any) -> int:
        ack = await self.brain.place(payload, **kw)
        self.sent.append((ack.seq, label))
        await wait_for(lambda: self.decided(ack.seq), f"decision of {label}")
        return ack.seq

    async def settle(self, signal_id: str) -> None:
        def done() -> bool:
            coids = self.svc.state.accepted_signals.get(signal_id, ())
            return bool(coids) and all(self.svc.state.orders[c].status.is_terminal for c in coids)

        await wait_for(done, f"orders of {signal_id} to finish", timeout_s=20)

    def position_line(self, symbol: str) -> str:
        pos = self.svc.state.position("sim", symbol)
        return (
            f"{symbol} {pos.side} {_d(abs(pos.qty))} @ {_d(pos.avg_entry, '0.01')}, "
            f"realised {_d(pos.realized_pnl)}"
        )

    async def trade(self, label: str, payload: dict[str, Any]) -> None:
        seq = await self.send(label, payload)
        decision = (
            "accepted" if payload["signal_id"] in self.svc.state.accepted_signals else "REJECTED"
        )
        _say(f"  cmd {seq} {label}: {decision}")
        if decision == "accepted":
            await self.settle(payload["signal_id"])
            _say(f"    filled → {self.position_line(payload['symbol'])}")

    async def run(self) -> None:
        b = self.brain
        _say("arming the system (signed control command)")
        await b.control("arm", reason="demo start")
        await wait_for(lambda: self.svc.state.is_armed, "arm")

        _say("1/5 trading flow on BTC/USDT (market orders, fills arrive in 2 slices)")
        await self.trade("open long 0.2 BTC", b.intent("demo-open", "BTC/USDT", "BUY_SETUP", "0.2"))
        await self.market.move("BTC/USDT", Decimal("50500"))
        await self.trade(
            "pyramid +0.1 BTC", b.intent("demo-pyramid", "BTC/USDT", "BUY_SETUP", "0.1")
        )
        await self.market.move("BTC/USDT", Decimal("51000"))
        await self.trade(
            "partial close 0.15 BTC", b.intent("demo-reduce", "BTC/USDT", "CLOSE_LONG", "0.15")
        )
        await self.market.move("BTC/USDT", Decimal("50800"))
        await self.trade(
            "flip: sell 0.4 BTC", b.intent("demo-flip", "BTC/USDT", "SELL_SETUP", "0.4")
        )
        await self.market.move("BTC/USDT", Decimal("50200"))
        await self.trade("full close", b.intent("demo-close", "BTC/USDT", "CLOSE", "0.25"))

        _say("2/5 an ETH limit order below the market: tracked, then canceled at its TTL")
        seq = await self.send(
            "ETH limit 1 @ 2500", b.intent("demo-limit", "ETH/USDT", "BUY_SETUP", "1", entry="2500")
        )
        _say(f"  cmd {seq} accepted, resting at the venue; waiting for its time-to-live")
        await self.settle("demo-limit")
        coid = self.svc.state.accepted_signals["demo-limit"][0]
        _say(f"    order {coid}: {self.svc.state.orders[coid].status.value}")

        _say("3/5 bad input: each gets a reason, none an order")
        seq = await self.send(
            "symbol DOGE/USDT", b.intent("demo-doge", "DOGE/USDT", "BUY_SETUP", "100")
        )
        _say(f"  cmd {seq} DOGE/USDT → rejected")
        seq = await self.send(
            "bad signature",
            b.intent("demo-badsig", "BTC/USDT", "BUY_SETUP", "0.01"),
            secret=b"not-the-secret",
        )
        _say(f"  cmd {seq} bad signature → rejected")
        payload = b.intent("demo-replay-1", "BTC/USDT", "BUY_SETUP", "0.01")
        nonce = "feedfacefeedfacefeedfacefeedface"
        seq = await self.send("replay original (accepted)", payload, nonce=nonce)
        await self.settle("demo-replay-1")
        replay = b.intent("demo-replay-2", "BTC/USDT", "BUY_SETUP", "0.01")
        seq = await self.send("replayed nonce", replay, nonce=nonce)
        _say(f"  cmd {seq} replayed nonce → rejected")
        stale = b.intent("demo-expired", "BTC/USDT", "BUY_SETUP", "0.01", t_signal=b.clock() - 6123)
        seq = await self.send("expired intent", stale)
        _say(f"  cmd {seq} expired intent → rejected")
        ack = await b.publish(b.place_subject("BTC/USDT"), b"this is not json", "demo-garbage")
        self.sent.append((ack.seq, "not JSON"))
        await wait_for(lambda: self.decided(ack.seq), "decision of garbage")
        _say(f"  cmd {ack.seq} not JSON → rejected")
        close = b.intent("demo-final-close", "BTC/USDT", "CLOSE", "1")
        await self.trade("close the replay test position", close)

        _say("4/5 flatten and halt (signed control commands)")
        await self.trade("open SOL long 20", b.intent("demo-sol", "SOL/USDT", "BUY_SETUP", "20"))
        await self.trade("open ETH short 2", b.intent("demo-eth", "ETH/USDT", "SELL_SETUP", "2"))
        await b.control("flatten", reason="demo: flatten everything")
        await wait_for(
            lambda: all(p.is_flat for p in self.svc.state.positions.values()), "flatten", 20
        )
        _say("  flatten: reduce-only market orders closed every position")
        await b.control("halt", reason="demo end")
        await wait_for(lambda: self.svc.state.is_halted, "halt")
        seq = await self.send(
            "intent while halted", b.intent("demo-halted", "SOL/USDT", "BUY_SETUP", "1")
        )
        _say(f"  cmd {seq} while halted → dropped to the DLQ")


async def _dead_letters(js: Any) -> dict[int, dict[str, Any]]:
    sub = await js.pull_subscribe(
        "titan.dlq.>",
        stream="TITAN_DLQ",
        config=api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL
        ),
    )
    out: dict[int, dict[str, Any]] = {}
    try:
        while True:
            try:
                msgs = await sub.fetch(100, timeout=0.5)
            except TimeoutError:
                break
            for m in msgs:
                seq = int((m.headers or {}).get("Titan-Cmd-Seq", "0"))
                out[seq] = {
                    **json.loads(m.data),
                    "code": (m.headers or {}).get("Titan-Reason-Code"),
                }
    finally:
        await sub.unsubscribe()
    return out


async def _positions_over_http(http: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{http}/positions", headers={"X-API-Key": API_KEY}) as resp,
    ):
        doc: dict[str, Any] = await resp.json()
        return doc


def _report(
    svc: Service, flow: DemoFlow, dlq: dict[int, dict[str, Any]], positions: dict[str, Any]
) -> None:
    st = svc.state
    rows = []
    for o in sorted(st.orders.values(), key=lambda o: o.t_decision):
        rows.append(
            [
                o.client_order_id,
                o.signal_id,
                o.symbol,
                o.side.value,
                _d(o.qty),
                _d(o.filled_qty),
                _d(o.avg_fill_price, "0.01"),
                o.status.value,
            ]
        )
    print(
        _table(
            "ORDERS",
            ["client order id", "signal", "symbol", "side", "qty", "filled", "avg price", "status"],
            rows,
        )
    )
    rows = []
    for (venue, symbol), p in sorted(st.positions.items()):
        rows.append(
            [
                venue,
                symbol,
                p.side,
                _d(abs(p.qty)),
                _d(p.avg_entry, "0.01"),
                _d(p.realized_pnl),
                _d(p.fees_paid),
            ]
        )
    print(
        _table(
            "POSITIONS", ["venue", "symbol", "side", "size", "entry", "realised PnL", "fees"], rows
        )
    )
    rows = [
        [
            t.signal_id,
            t.symbol,
            t.side,
            _d(t.entry_price, "0.01"),
            _d(t.exit_price, "0.01"),
            _d(t.size),
            _d(t.pnl),
            _d(t.fee),
        ]
        for t in st.recent_trades
    ]
    print(
        _table(
            "TRADES (TradeRecord on titan.evt.analysis.trade_completed.v1)",
            ["opening signal", "symbol", "side", "entry", "exit", "size", "pnl", "fees"],
            rows,
        )
    )
    daily = " ".join(f"day {k}: {_d(v)}" for k, v in sorted(st.daily_realized.items()))
    print(
        f"\nDaily realised PnL: {daily or '0'}   total fees: "
        f"{_d(sum((p.fees_paid for p in st.positions.values()), Decimal(0)))}"
    )
    rows = []
    for seq, label in flow.sent:
        if seq in dlq:
            d = dlq[seq]
            rows.append(
                [
                    str(seq),
                    label,
                    d["code"],
                    "titan.dlq.exec.core + reject telemetry",
                    str(d["reason"])[:70],
                ]
            )
    print(
        _table(
            "REJECTED INTENTS (read back from TITAN_DLQ)",
            ["cmd", "intent", "reason code", "went to", "reason"],
            rows,
        )
    )
    print(f"\n/positions (API key): {json.dumps(positions['positions'])[:300]}")
    filled = sum(1 for o in st.orders.values() if o.status is OrderStatus.FILLED)
    print(
        f"\nstate hash {svc.status_doc()['state_hash'][:16]}…  events {st.event_count}  "
        f"orders {len(st.orders)} ({filled} filled)  commands decided {len(st.decided_cmds)}"
    )


async def run_demo(*, keep_state: bool = False, venue: str = "sim") -> int:
    """The demo on an embedded nats-server; `venue` "sim": the venue simulator as a child
    process reached through the ccxt venue (the production path), "paper": in-process."""
    state_dir = Path(tempfile.mkdtemp(prefix="titan-demo-"))
    _say(f"titan-exec demo: state in {state_dir}, venue: {venue}")
    try:
        async with EmbeddedNats(
            state_dir=state_dir, port=0, extra_config=EMBEDDED_MAX_PAYLOAD
        ) as server:
            _say(f"embedded nats-server with JetStream at {server.url}")
            if venue == "sim":
                async with SimProcess(nats_url=server.url) as sim:
                    _say(f"venue simulator (Binance USDⓈ-M API) at {sim.url}, pid {sim.pid}")
                    await _run(state_dir, server.url, sim_url=sim.url)
            else:
                await _run(state_dir, server.url, sim_url=None)
    finally:
        if not keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)
    _say("demo finished")
    return 0


async def _run(state_dir: Path, nats_url: str, *, sim_url: str | None) -> None:
    overrides: dict[str, Any] = {
        "nats.url": nats_url,
        "service.state_dir": str(state_dir),
        "security.hmac_secret": SECRET,
        "security.api_key": API_KEY,
        "http.port": 0,
        "orders.ttl_ms": 3000,
        "venue.paper.fill_slices": 2,
        "venue.paper.slice_interval_ms": 150,
    }
    if sim_url is not None:
        overrides.update(
            {
                "venue.kind": "ccxt",
                "venue.exchange_id": "binanceusdm",
                "venue.base_url": sim_url,
                "venue.api_key": DEV_API_KEY,
                "venue.api_secret": DEV_API_SECRET,
                "venue.poll_interval_ms": 100,
            }
        )
    cfg = load(None, env={}, overrides=overrides)
    async with RunningInstance(cfg, progress=lambda m: _say(f"service: {m}")) as inst:
        assert inst.service is not None and inst.http is not None
        svc = inst.service
        nc = await nats.connect(nats_url)
        brain = Brain(nc, secret=SECRET.encode())
        feed = TickerFeed(nc, START_PRICES)
        brain.start_heartbeats(0.5)
        market: PaperMarket | SimMarket
        if sim_url is None:
            market = PaperMarket(feed)
            feed.start(0.25)
            await feed.publish_all()
        else:
            market = SimMarket(sim_url)
            for symbol, mid in START_PRICES.items():
                await market.move(symbol, mid)
        try:
            await wait_for(lambda: ("sim", "BTC/USDT") in svc.market.tickers, "tickers")
            await wait_for(lambda: svc.market.last_heartbeat_ms is not None, "heartbeat")
            flow = DemoFlow(svc, brain, market)
            await flow.run()
            _say("5/5 collecting the results")
            if svc.events is not None:
                await svc.events.drain()
            dlq = await _dead_letters(nc.jetstream())
            positions = await _positions_over_http(f"http://127.0.0.1:{inst.http.port}")
            _report(svc, flow, dlq, positions)
        finally:
            await brain.stop()
            await feed.stop()
            await nc.close()
