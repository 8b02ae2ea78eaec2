"""A fenced write's answers that decide nothing are asked again with the same message id
(`EventLog._store_alone`): 10164 (a conditional write in flight) and 10158 (the first
send of this message is still being stored); anything else fails the write."""

from __future__ import annotations

import asyncio

import pytest

from titan_exec.adapters.nats.eventlog import EventLog, _Outgoing
from titan_exec.adapters.nats.publisher import PublishRejected
from titan_exec.core.state import State


class FakePublisher:
    """Answers each publish with the next of `answers` (an int is a stored sequence)."""

    def __init__(self, answers: list[int | PublishRejected]) -> None:
        self.answers = answers
        self.sent: list[dict[str, str] | None] = []

    async def publish(
        self, subject: str, body: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[int]:
        self.sent.append(headers)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        answer = self.answers.pop(0)
        if isinstance(answer, PublishRejected):
            fut.set_exception(answer)
        else:
            fut.set_result(answer)
        return fut


def _log(answers: list[int | PublishRejected]) -> tuple[EventLog, FakePublisher]:
    log = EventLog(None, State(), ns="exec", producer="t")  # type: ignore[arg-type]
    fake = FakePublisher(answers)
    log._publisher = fake  # type: ignore[assignment]
    return log, fake


@pytest.mark.parametrize("code", [10158, 10164])
async def test_an_answer_that_decides_nothing_is_asked_again(code: int) -> None:
    log, fake = _log([PublishRejected(code, "not decided"), 42])
    m = _Outgoing("titan.evt.exec.order.v1.x", b"{}", {"Nats-Msg-Id": "id-1"})
    ack = await log._store_alone(m, m.headers)
    assert ack.result() == 42
    assert len(fake.sent) == 2 and all(h == {"Nats-Msg-Id": "id-1"} for h in fake.sent)


async def test_a_wrong_last_sequence_is_not_retried() -> None:
    log, fake = _log([PublishRejected(10071, "wrong last sequence"), 42])
    m = _Outgoing("titan.evt.exec.order.v1.x", b"{}", {"Nats-Msg-Id": "id-1"})
    with pytest.raises(PublishRejected) as caught:
        await log._store_alone(m, m.headers)
    assert caught.value.code == 10071 and len(fake.sent) == 1
