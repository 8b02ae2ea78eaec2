"""`runtime/presence.Prober`: what one probe of the holder's presence subject tells, with a
scripted NATS client — an answer, "no responders", a timeout, or "unhealthy" when our own
connection cannot tell (down, or reconnected less than `SETTLE_MS` ago)."""

from __future__ import annotations

import asyncio
from typing import Any

from nats.errors import ConnectionReconnectingError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from titan_exec.core import leadership as ld
from titan_exec.core.presence import PresenceTiming
from titan_exec.runtime.presence import SETTLE_MS, Prober, probe_target
from titan_exec.wire.subjects import Subjects

P = ld.Presence


class FakeNats:
    def __init__(self) -> None:
        self.is_connected = True
        self.stats = {"reconnects": 0}
        self.answer: Any = b"{}"
        self.asked: list[str] = []

    async def request(self, subject: str, payload: bytes, timeout: float) -> Any:  # noqa: ASYNC109
        self.asked.append(subject)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class Clock:
    def __init__(self) -> None:
        self.now = 10_000

    def __call__(self) -> int:
        return self.now


def prober(nc: FakeNats, clock: Clock, put: Any = None) -> Prober:
    return Prober(
        nc,  # type: ignore[arg-type]
        Subjects("exec"),
        PresenceTiming(interval_ms=5),
        target=lambda: ("primary/abc", 7),
        put=put or (lambda inp: None),
        clock=clock,
    )


async def test_each_answer_tells_its_own_thing() -> None:
    nc, clock = FakeNats(), Clock()
    p = prober(nc, clock)
    assert await p.probe("primary/abc") is P.ANSWERED
    assert nc.asked == ["titan.sys.exec.presence.v1.primary.abc"]
    nc.answer = NoRespondersError()
    assert await p.probe("primary/abc") is P.NO_RESPONDERS
    nc.answer = NatsTimeout()
    assert await p.probe("primary/abc") is P.TIMEOUT
    nc.answer = ConnectionReconnectingError()
    assert await p.probe("primary/abc") is P.UNHEALTHY


async def test_our_own_connection_down_or_just_back_cannot_tell() -> None:
    nc, clock = FakeNats(), Clock()
    p = prober(nc, clock)
    nc.answer = NoRespondersError()
    nc.is_connected = False
    assert await p.probe("primary/abc") is P.UNHEALTHY
    nc.is_connected = True
    nc.stats["reconnects"] = 1  # back on another node: its view may not be complete yet
    assert await p.probe("primary/abc") is P.UNHEALTHY
    clock.now += SETTLE_MS - 1
    assert await p.probe("primary/abc") is P.UNHEALTHY
    clock.now += 1
    assert await p.probe("primary/abc") is P.NO_RESPONDERS


async def test_the_prober_steps_every_answer_with_the_time_it_was_sent() -> None:
    nc, clock = FakeNats(), Clock()
    nc.answer = NoRespondersError()
    got: list[ld.Input] = []
    task = asyncio.create_task(prober(nc, clock, got.append).run())
    try:
        async with asyncio.timeout(5):
            while len(got) < 3:
                await asyncio.sleep(0.005)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    first = got[0]
    assert isinstance(first, ld.PresenceProbed)
    assert (first.holder, first.revision, first.outcome) == ("primary/abc", 7, P.NO_RESPONDERS)
    assert first.sent_ms == 10_000


def test_only_a_standby_probes_and_only_another_holder() -> None:
    cfg = ld.LeaderConfig("backup/s2", ld.LeaseTiming(lease_ms=5000))
    state = ld.initial(cfg, 0)
    assert probe_target(state) is None  # the lease not seen yet
    held, _ = ld.step(state, ld.LeaseSeen("primary/s1", 4, 2, 1))
    assert probe_target(held) == ("primary/s1", 4)
    mine, _ = ld.step(state, ld.LeaseSeen("backup/s2", 5, 2, 1))
    assert probe_target(mine) is None
    assert probe_target(None) is None
