"""A service instance on a real nats-server, with a brain, a ticker feed and a fake-able clock."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import api

from tests.paper import InstrumentedPaper
from titan_exec.adapters.nats.connect import NatsSettings, connect
from titan_exec.config import Config, load
from titan_exec.runtime.app import RunningInstance
from titan_exec.runtime.checkpoint import CheckpointWriter
from titan_exec.runtime.node import Node
from titan_exec_lab.harness.feeds import Brain, TickerFeed
from titan_exec_lab.sim.server import VenueSim

SECRET = "test-secret-123"
API_KEY = "test-api-key"
PRICES = {"BTC/USDT": Decimal("50000"), "ETH/USDT": Decimal("3000"), "SOL/USDT": Decimal("150")}


class OffsetClock:
    """Wall time shifted to start at `start_ms` (so signed vectors from 2023 are 'now')."""

    def __init__(self, start_ms: int | None = None) -> None:
        self._real0 = time.time_ns() // 1_000_000
        self._start = start_ms if start_ms is not None else self._real0

    def __call__(self) -> int:
        return self._start + (time.time_ns() // 1_000_000 - self._real0)


def make_config(url: str, state_dir: Path, **overrides: Any) -> Config:
    base: dict[str, Any] = {
        "nats.url": url,
        "service.state_dir": str(state_dir),
        "security.hmac_secret": SECRET,
        "security.api_key": API_KEY,
        "http.port": 0,
        "risk.arm_on_genesis": True,
        "orders.poll_interval_ms": 20,
        "orders.reconcile_interval_ms": 200,
        # with the user-data stream the pass would slow to 30 s: the tests watch it at 200 ms
        "reconcile.open_orders_streaming_interval_ms": 200,
        "truth.interval_ms": 500,
    }
    base.update(overrides)
    return load(None, env={}, overrides=base)


async def wait_for(cond: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class World:
    def __init__(
        self,
        inst: RunningInstance,
        nc: NatsClient,
        brain: Brain,
        feed: TickerFeed,
        sim: VenueSim | None = None,
    ) -> None:
        self.inst = inst
        self.sim = sim
        self.nc = nc
        self.js = nc.jetstream()
        self.brain = brain
        self.feed = feed

    @property
    def svc(self) -> Node:
        assert self.inst.service is not None
        return self.inst.service

    @property
    def checkpoints(self) -> CheckpointWriter | None:
        """The active's checkpoint writer (None while it does not lead)."""
        leader = self.svc.leader
        return leader.checkpoints if leader is not None else None

    @property
    def http_url(self) -> str:
        assert self.inst.http is not None
        return f"http://127.0.0.1:{self.inst.http.port}"

    async def decided(self, seq: int, timeout_s: float = 10.0) -> None:
        await wait_for(lambda: self.svc.state.is_decided(seq), f"decision of cmd {seq}", timeout_s)

    async def publish_raw(self, data: bytes, *, subject: str | None = None, msg_id: str) -> int:
        ack = await self.js.publish(
            subject or self.brain.place_subject("BTC/USDT"), data, headers={"Nats-Msg-Id": msg_id}
        )
        return ack.seq

    async def stream_messages(self, stream: str, subject: str) -> list[Any]:
        sub = await self.js.pull_subscribe(
            subject,
            stream=stream,
            config=api.ConsumerConfig(
                ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL
            ),
        )
        out: list[Any] = []
        try:
            while True:
                try:
                    msgs = await sub.fetch(500, timeout=0.5)
                except TimeoutError:
                    break
                out.extend(msgs)
        finally:
            await sub.unsubscribe()
        return out

    async def dead_letters(self) -> dict[int, dict[str, Any]]:
        out = {}
        for m in await self.stream_messages("TITAN_DLQ", "titan.dlq.>"):
            doc = json.loads(m.data)
            doc["code"] = m.headers["Titan-Reason-Code"]
            if "Titan-Cmd-Seq" in m.headers:
                out[int(m.headers["Titan-Cmd-Seq"])] = doc
        return out

    async def risk_state_dead_letters(self) -> dict[int, dict[str, Any]]:
        """Dead letters of refused risk-state messages, by their `TITAN_EVT` sequence."""
        out = {}
        for m in await self.stream_messages("TITAN_DLQ", "titan.dlq.>"):
            if "Titan-Evt-Seq" in m.headers:
                doc = json.loads(m.data)
                doc["code"] = m.headers["Titan-Reason-Code"]
                out[int(m.headers["Titan-Evt-Seq"])] = doc
        return out


def sim_overrides(sim: VenueSim) -> dict[str, Any]:
    """The service configured for the simulator through the ccxt venue (production path)."""
    return {
        "venue.kind": "ccxt",
        "venue.name": sim.settings.venue_name,
        "venue.exchange_id": "binanceusdm",
        "venue.base_url": sim.url,
        "venue.api_key": sim.settings.api_key,
        "venue.api_secret": sim.settings.api_secret,
        "venue.poll_interval_ms": 50,
    }


@asynccontextmanager
async def world(
    url: str,
    state_dir: Path,
    *,
    clock: Callable[[], int] | None = None,
    sim: VenueSim | None = None,
    **overrides: Any,
) -> AsyncIterator[World]:
    """The service on `url`; with `sim`, through the ccxt venue against the simulator
    (which publishes the tickers itself), else on the paper venue with a ticker feed (the
    instrumented one: `w.inst.venue` has the test knobs of `tests.paper`; with several
    venues, `w.inst.venues` are plain paper venues and the feed prices the default)."""
    clk = clock or OffsetClock()
    if sim is not None:
        overrides = {**sim_overrides(sim), **overrides}
    cfg = make_config(url, state_dir, **overrides)
    # several venues: each made from its entry (`runtime.app.make_venues`), none instrumented
    is_one_paper = cfg.venue.kind == "paper" and len(cfg.venues) == 1
    venue = InstrumentedPaper.from_config(cfg, clk) if is_one_paper else None
    async with RunningInstance(cfg, clock=clk, venue=venue) as inst:
        nc = await connect(NatsSettings(urls=(url,), name="pytest-world"))
        brain = Brain(nc, secret=SECRET.encode(), clock=clk)
        feed = TickerFeed(nc, PRICES, clock=clk)
        try:
            await brain.heartbeat()
            brain.start_heartbeats(0.5)
            if sim is None:
                await feed.publish_all()
                feed.start(0.2)
            assert inst.service is not None
            svc = inst.service
            await wait_for(lambda: len(svc.market.tickers) >= 3, "tickers")
            await wait_for(lambda: svc.market.last_heartbeat_ms is not None, "heartbeat")
            yield World(inst, nc, brain, feed, sim)
        finally:
            await brain.stop()
            await feed.stop()
            await nc.close()
