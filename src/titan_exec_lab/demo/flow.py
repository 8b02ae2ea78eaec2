"""The demo's scripted flow, driven from the outside like the rest of Titan would drive it:
signed intents and control commands on NATS (the stand-in brain), prices pinned at the
venue, and the service read back over HTTP only (`/status`, `/positions` with the API key)
from whichever instance is active (`DemoFlow.url`), plus the decisions as they land in
`TITAN_EVT` (`DecisionWatch`). It never touches a service object, so it runs the same
against an in-process instance and against a pair of processes across a failover.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import aiohttp
from nats.js import JetStreamContext, api

from titan_exec.core.events import ControlDecided, IntentDecided
from titan_exec.core.model import OrderStatus
from titan_exec.wire.contract import decode_event
from titan_exec_lab.demo.upstream_brain import UpstreamBrain
from titan_exec_lab.harness.feeds import Brain, TickerFeed
from titan_exec_lab.harness.procs import get_json

Decision = IntentDecided | ControlDecided

START_PRICES = {
    "BTC/USDT": Decimal("50000"),
    "ETH/USDT": Decimal("3000"),
    "SOL/USDT": Decimal("150"),
}


def say(step: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {step}", flush=True)


async def wait_for(
    cond: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 15.0, every_s: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(every_s)


def dec(value: Decimal | str | None, places: str = "0.0001") -> str:
    if value is None:
        return "-"
    value = Decimal(value)
    return format(value.quantize(Decimal(places)).normalize(), "f") if value != 0 else "0"


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

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url = url
        self.http = http

    async def move(self, symbol: str, mid: Decimal) -> None:
        body = {"symbol": symbol.replace("/", ""), "mid": str(mid)}
        async with self.http.post(f"{self.url}/sim/price", json=body) as resp:
            resp.raise_for_status()
        await asyncio.sleep(0.3)  # two simulator ticks: the new book is published


class DecisionWatch:
    """The decision of every command as it lands in `TITAN_EVT` (durable, in stream order:
    what any instance folds), by command sequence."""

    def __init__(self, js: JetStreamContext, ns: str = "exec") -> None:
        self.js = js
        self.ns = ns
        self.decided: dict[int, Decision] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sub = await self.js.pull_subscribe(
            f"titan.evt.{self.ns}.>",
            stream="TITAN_EVT",
            config=api.ConsumerConfig(
                ack_policy=api.AckPolicy.NONE,
                deliver_policy=api.DeliverPolicy.ALL,
                inactive_threshold=30.0,
            ),
        )
        self._task = asyncio.create_task(self._read(sub), name="demo-decisions")

    async def _read(self, sub: JetStreamContext.PullSubscription) -> None:
        try:
            while True:
                try:
                    msgs = await sub.fetch(256, timeout=0.2)
                except TimeoutError:
                    continue
                for m in msgs:
                    ev = decode_event(m.subject, m.data, ns=self.ns)
                    if isinstance(ev, IntentDecided | ControlDecided):
                        self.decided[ev.cmd_seq] = ev
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def wait(self, seq: int, what: str, timeout_s: float = 20.0) -> Decision:
        async def seen() -> bool:
            if self._task is not None and self._task.done():
                self._task.result()  # the reader failed: say why
                raise RuntimeError("the decision reader stopped")
            return seq in self.decided

        await wait_for(seen, f"the decision of {what} (command {seq})", timeout_s, 0.01)
        return self.decided[seq]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class DemoFlow:
    """The scripted flow, in parts, so that the pair demo can kill the active in between.
    `url` is the active instance's HTTP API; the caller moves it on failover."""

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        brain: Brain,
        market: PaperMarket | SimMarket,
        decisions: DecisionWatch,
        http: aiohttp.ClientSession,
    ) -> None:
        self.url = url
        self.api_key = api_key
        self.brain = brain
        self.market = market
        self.decisions = decisions
        self.http = http
        self.sent: list[tuple[int, str]] = []
        self.upstream: UpstreamBrain | None = None
        """Set: the flow also sends the real brain's own message shapes."""
        self.second_venue: str | None = None
        """Set: the flow also trades on this venue (intents naming it as their
        `exchange`, as the brain routes), and the flatten closes both venues."""

    # -- reading the active over HTTP --------------------------------------------------

    async def status(self) -> dict[str, Any]:
        doc = await get_json(self.http, f"{self.url}/status", {"X-API-Key": self.api_key})
        if doc is None:
            raise RuntimeError(f"{self.url}/status does not answer")
        return doc

    async def positions(self) -> dict[str, Any]:
        doc = await get_json(self.http, f"{self.url}/positions", {"X-API-Key": self.api_key})
        if doc is None:
            raise RuntimeError(f"{self.url}/positions does not answer")
        positions: dict[str, Any] = doc["positions"]
        return positions

    async def position_line(self, symbol: str) -> str:
        p = (await self.positions()).get(symbol)
        if p is None:
            return f"{symbol} FLAT"
        if p["side"] == "FLAT":
            return f"{symbol} FLAT, realised {dec(p['realized_pnl'])}"
        return (
            f"{symbol} {p['side']} {dec(p['size'])} @ {dec(p['entry_price'], '0.01')}, "
            f"realised {dec(p['realized_pnl'])}"
        )

    async def settle(self, decision: Decision, what: str) -> None:
        """Until every order of `decision` is terminal at the active (filled, canceled, ...)."""
        coids = set(decision.client_order_ids)

        async def done() -> bool:
            orders = {o["client_order_id"]: o for o in (await self.status())["orders"]}
            return all(c in orders and OrderStatus(orders[c]["status"]).is_terminal for c in coids)

        await wait_for(done, f"the orders of {what} to finish", timeout_s=20)

    async def order_status(self, coid: str) -> str:
        for o in (await self.status())["orders"]:
            if o["client_order_id"] == coid:
                return str(o["status"])
        return "unknown"

    # -- sending -----------------------------------------------------------------------

    async def publish(self, label: str, payload: dict[str, Any], **kw: Any) -> int:
        """Publish a signed intent (acknowledged by JetStream); do not wait for it."""
        ack = await self.brain.place(payload, **kw)
        self.sent.append((ack.seq, label))
        return ack.seq

    async def send(self, label: str, payload: dict[str, Any], **kw: Any) -> Decision:
        seq = await self.publish(label, payload, **kw)
        return await self.decisions.wait(seq, label)

    async def control(self, action: str, reason: str) -> ControlDecided:
        ack = await self.brain.control(action, reason=reason)
        self.sent.append((ack.seq, f"control {action}"))
        decision = await self.decisions.wait(ack.seq, f"control {action}")
        assert isinstance(decision, ControlDecided)
        expect(decision, "accepted", f"control {action}")
        return decision

    async def report_trade(self, label: str, decision: Decision, payload: dict[str, Any]) -> None:
        """Print the decision of an intent the script expects accepted, wait for its fills."""
        say_decision(label, decision)
        expect(decision, "accepted", label)
        await self.settle(decision, label)
        symbol, exchange = payload["symbol"], payload.get("exchange")
        # /positions names the default venue's symbols alone, another venue's as venue:symbol
        key = f"{exchange}:{symbol}" if exchange and exchange == self.second_venue else symbol
        say(f"    filled → {await self.position_line(key)}")

    async def trade(self, label: str, payload: dict[str, Any], **kw: Any) -> None:
        await self.report_trade(label, await self.send(label, payload, **kw), payload)

    async def reject(self, label: str, payload: dict[str, Any], **kw: Any) -> None:
        decision = await self.send(label, payload, **kw)
        say_decision(label, decision)
        expect(decision, "rejected", label)

    # -- the script --------------------------------------------------------------------

    async def arm_and_open(self) -> None:
        """Arm, open, pyramid, partial close; leaves the price where the flip trades."""
        b = self.brain
        say("arming the system (signed control command)")
        await self.control("arm", "demo start")

        say("trading flow on BTC/USDT (market orders, fills arrive in 2 slices)")
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

    def flip(self) -> tuple[str, dict[str, Any]]:
        """The next intent after `arm_and_open` (the pair demo sends it right after the kill)."""
        return "flip: sell 0.4 BTC", self.brain.intent("demo-flip", "BTC/USDT", "SELL_SETUP", "0.4")

    async def after_the_flip(self) -> None:
        """Full close, a limit order that expires, bad input, flatten, two positions kept
        open for the final comparison, halt, an intent while halted."""
        b = self.brain
        await self.market.move("BTC/USDT", Decimal("50200"))
        await self.trade("full close", b.intent("demo-close", "BTC/USDT", "CLOSE", "0.25"))

        say("an ETH limit order below the market: tracked, then canceled at its TTL")
        decision = await self.send(
            "ETH limit 1 @ 2500", b.intent("demo-limit", "ETH/USDT", "BUY_SETUP", "1", entry="2500")
        )
        expect(decision, "accepted", "the limit order")
        say(f"  cmd {decision.cmd_seq} accepted, resting at the venue; waiting for its TTL")
        await self.settle(decision, "the limit order")
        coid = decision.client_order_ids[0]
        say(f"    order {coid}: {await self.order_status(coid)}")

        say("bad input: each gets a reason and a dead letter, none an order")
        await self.reject(
            "symbol DOGE/USDT", b.intent("demo-doge", "DOGE/USDT", "BUY_SETUP", "100")
        )
        await self.reject(
            "bad signature",
            b.intent("demo-badsig", "BTC/USDT", "BUY_SETUP", "0.01"),
            secret=b"not-the-secret",
        )
        nonce = "feedfacefeedfacefeedfacefeedface"
        original = b.intent("demo-replay-1", "BTC/USDT", "BUY_SETUP", "0.01")
        await self.trade("nonce first use", original, nonce=nonce)
        await self.reject(
            "replayed nonce",
            b.intent("demo-replay-2", "BTC/USDT", "BUY_SETUP", "0.01"),
            nonce=nonce,
        )
        stale = b.intent("demo-expired", "BTC/USDT", "BUY_SETUP", "0.01", t_signal=b.clock() - 6123)
        await self.reject("expired intent", stale)
        ack = await b.publish(b.place_subject("BTC/USDT"), b"this is not json", "demo-garbage")
        self.sent.append((ack.seq, "not JSON"))
        say_decision("not JSON", await self.decisions.wait(ack.seq, "not JSON"))
        await self.trade(
            "close the nonce test position", b.intent("demo-final-close", "BTC/USDT", "CLOSE", "1")
        )

        say("flatten (signed control command), then positions left open to compare at the end")
        await self.trade("open SOL long 20", b.intent("demo-sol", "SOL/USDT", "BUY_SETUP", "20"))
        await self.trade("open ETH short 2", b.intent("demo-eth", "ETH/USDT", "SELL_SETUP", "2"))
        second = self.second_venue
        if second is not None:
            say(f"the second venue, {second}: intents routed by their exchange, one pair")
            await self.trade(
                f"open ETH long 1 on {second}",
                b.intent("demo-2nd-eth", "ETH/USDT", "BUY_SETUP", "1", exchange=second),
            )
            await self.trade(
                f"open BTC short 0.1 on {second}",
                b.intent("demo-2nd-btc", "BTC/USDT", "SELL_SETUP", "0.1", exchange=second),
            )
        await self.control("flatten", "demo: flatten everything")

        async def flat() -> bool:
            return not (await self.status())["net_positions"]

        await wait_for(flat, "flatten", 20)
        where = " on both venues" if second is not None else ""
        say(f"  flatten: reduce-only market orders closed every position{where}")
        await self.trade(
            "open BTC long 0.05", b.intent("demo-keep-btc", "BTC/USDT", "BUY_SETUP", "0.05")
        )
        await self.trade(
            "open SOL short 5", b.intent("demo-keep-sol", "SOL/USDT", "SELL_SETUP", "5")
        )
        if second is not None:
            await self.trade(
                f"open BTC long 0.03 on {second}",
                b.intent("demo-2nd-keep", "BTC/USDT", "BUY_SETUP", "0.03", exchange=second),
            )

        if self.upstream is not None:
            from titan_exec_lab.demo.upstream import upstream_part

            await upstream_part(self, self.upstream)
            say("halt (the brain's unsigned haltSystem); an intent while halted is dropped")
            ack = await self.upstream.halt_system("demo end")
            self.sent.append((ack.seq, "brain halt"))
            say_decision("brain halt", await self.decisions.wait(ack.seq, "the brain's halt"))
        else:
            say("halt (signed control command); an intent while halted is dropped")
            await self.control("halt", "demo end")
        await self.reject(
            "intent while halted", b.intent("demo-halted", "SOL/USDT", "BUY_SETUP", "1")
        )


def expect(decision: Decision, outcome: str, label: str) -> None:
    if decision.outcome != outcome:
        raise RuntimeError(
            f"{label} (command {decision.cmd_seq}) was {decision.outcome} "
            f"({decision.reason}); the demo expects it {outcome}"
        )


def say_decision(label: str, decision: Decision) -> None:
    if decision.outcome == "accepted":
        say(f"  cmd {decision.cmd_seq} {label}: accepted")
    else:
        say(f"  cmd {decision.cmd_seq} {label}: rejected ({decision.reason[:80]})")
