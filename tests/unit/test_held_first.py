"""`runtime/shadow.HeldFirst`: the subscription a standby hands to the intake at takeover,
with the commands it held (waiting, undecided) returned first without a round trip."""

from __future__ import annotations

from typing import Any

from titan_exec.runtime.shadow import HeldFirst


class Msg:
    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.nakked = False

    async def nak(self) -> None:
        self.nakked = True


class Sub:
    def __init__(self) -> None:
        self.fetches: list[tuple[int, Any]] = []
        self.closed = False

    async def fetch(self, batch: int, timeout: Any = None) -> list[Msg]:  # noqa: ASYNC109
        self.fetches.append((batch, timeout))
        return [Msg(99)]

    async def unsubscribe(self) -> None:
        self.closed = True

    async def consumer_info(self) -> str:
        return "info"


async def test_held_commands_come_first_in_batches_then_the_subscription_fetches() -> None:
    sub = Sub()
    held = HeldFirst(sub, [Msg(1), Msg(2), Msg(3)])
    assert [m.seq for m in await held.fetch(2, timeout=0.1)] == [1, 2]
    assert [m.seq for m in await held.fetch(2, timeout=0.1)] == [3]
    assert sub.fetches == []  # no round trip for what was held
    assert [m.seq for m in await held.fetch(5, timeout=0.1)] == [99]
    assert sub.fetches == [(5, 0.1)]
    assert await held.consumer_info() == "info"  # the rest is the subscription's


async def test_unsubscribing_hands_back_what_is_still_held() -> None:
    sub = Sub()
    msgs = [Msg(1), Msg(2)]
    held = HeldFirst(sub, msgs)
    await held.fetch(1)
    await held.unsubscribe()
    assert [m.nakked for m in msgs] == [False, True] and sub.closed
