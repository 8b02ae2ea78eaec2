"""How a fenced write reads its answers (`fencedwrite.FencedWriter`).

One at a time: 10164 (a conditional write in flight) and 10158 (the first send of this
message is still being stored) are asked again with the same message id; anything else
fails the write. A batch: stored whole (the sequences follow from the commit's answer);
refused whole for a stale epoch (10071, raised); a batch holding a stored message id
(10201) or whose answer is lost is resolved message by message."""

from __future__ import annotations

import asyncio

import pytest

from titan_exec.adapters.nats.fencedwrite import FencedWriter
from titan_exec.adapters.nats.publisher import Message, PublishRejected

Answer = int | PublishRejected | None
"""A stored sequence, a refusal, or None: no answer ever."""


class FakePublisher:
    """Answers each publish with the next of `answers`, each batch with the next of
    `batch_answers` ((last seq, count), a refusal, or None)."""

    def __init__(
        self,
        answers: list[Answer],
        batch_answers: list[tuple[int, int] | PublishRejected | None] | None = None,
    ) -> None:
        self.answers = answers
        self.batch_answers = batch_answers or []
        self.sent: list[dict[str, str] | None] = []
        self.batches: list[tuple[str, list[Message]]] = []

    async def publish(
        self, subject: str, body: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[int]:
        self.sent.append(headers)
        return _answered(self.answers.pop(0))

    async def publish_batch(
        self, messages: list[Message], batch_id: str
    ) -> asyncio.Future[tuple[int, int]]:
        self.batches.append((batch_id, messages))
        return _answered(self.batch_answers.pop(0))


def _answered(answer: object) -> asyncio.Future:  # type: ignore[type-arg]
    fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    if isinstance(answer, PublishRejected):
        fut.set_exception(answer)
    elif answer is not None:
        fut.set_result(answer)
    return fut


def _writer(fake: FakePublisher) -> FencedWriter:
    return FencedWriter(
        fake,  # type: ignore[arg-type]
        ack_timeout_s=2.0,
        resend_after_s=0.05,
        unavailable_retry_s=0.2,
    )


def _messages(n: int) -> list[Message]:
    return [(f"titan.evt.exec.order.v1.{i}", b"{}", {"Nats-Msg-Id": f"id-{i}"}) for i in range(n)]


@pytest.mark.parametrize("code", [10158, 10164])
async def test_an_answer_that_decides_nothing_is_asked_again(code: int) -> None:
    fake = FakePublisher([PublishRejected(code, "not decided"), 42])
    assert await _writer(fake).store_alone("titan.evt.x", b"{}", {"Nats-Msg-Id": "id-1"}) == 42
    assert len(fake.sent) == 2 and all(h == {"Nats-Msg-Id": "id-1"} for h in fake.sent)


async def test_a_wrong_last_sequence_is_not_retried() -> None:
    fake = FakePublisher([PublishRejected(10071, "wrong last sequence"), 42])
    with pytest.raises(PublishRejected) as caught:
        await _writer(fake).store_alone("titan.evt.x", b"{}", {"Nats-Msg-Id": "id-1"})
    assert caught.value.code == 10071 and len(fake.sent) == 1


async def test_a_lost_answer_is_sent_again_with_its_id() -> None:
    fake = FakePublisher([None, 7])
    assert await _writer(fake).store_alone("titan.evt.x", b"{}", {"Nats-Msg-Id": "id-1"}) == 7
    assert len(fake.sent) == 2


async def test_a_message_without_an_id_is_sent_once() -> None:
    fake = FakePublisher([None, 7])
    with pytest.raises(TimeoutError):
        await FencedWriter(
            fake,  # type: ignore[arg-type]
            ack_timeout_s=0.1,
            resend_after_s=0.05,
            unavailable_retry_s=0.2,
        ).store_alone("titan.evt.x", b"{}", {})
    assert len(fake.sent) == 1


async def test_a_stored_batch_gives_each_message_its_sequence() -> None:
    fake = FakePublisher([], [(14, 5)])
    assert await _writer(fake).store_batch(_messages(5)) == [10, 11, 12, 13, 14]
    assert len(fake.batches) == 1 and fake.sent == []


async def test_a_batch_with_a_stale_epoch_is_refused_whole_and_raised() -> None:
    fake = FakePublisher([], [PublishRejected(10071, "wrong last sequence: 15")])
    with pytest.raises(PublishRejected) as caught:
        await _writer(fake).store_batch(_messages(3))
    assert caught.value.code == 10071 and fake.sent == [] and len(fake.batches) == 1


async def test_a_batch_answered_10164_is_sent_again_under_a_new_batch_id() -> None:
    fake = FakePublisher([], [PublishRejected(10164, "wrong last sequence"), (3, 3)])
    assert await _writer(fake).store_batch(_messages(3)) == [1, 2, 3]
    (first, sent1), (second, sent2) = fake.batches
    assert first != second and sent1 == sent2


@pytest.mark.parametrize(
    "answer", [PublishRejected(10201, "duplicate message id"), None], ids=["10201", "lost"]
)
async def test_a_batch_it_cannot_tell_is_resolved_message_by_message(
    answer: PublishRejected | None,
) -> None:
    # the first two were stored before (duplicates answer their sequence), the third is new
    fake = FakePublisher([20, 21, 30], [answer])
    writer = _writer(fake)
    assert await writer.store_batch(_messages(3)) == [20, 21, 30]
    assert [h and h["Nats-Msg-Id"] for h in fake.sent] == ["id-0", "id-1", "id-2"]
    assert writer.batches_resolved == 1


async def test_a_batch_whose_count_differs_is_an_error() -> None:
    fake = FakePublisher([], [(9, 2)])
    with pytest.raises(PublishRejected, match="2 of 3 stored"):
        await _writer(fake).store_batch(_messages(3))


async def test_every_message_gets_an_id_that_never_repeats() -> None:
    writer = _writer(FakePublisher([]))
    assert writer.with_id({"Nats-Msg-Id": "keep"}) == {"Nats-Msg-Id": "keep"}
    a, b = writer.with_id(None), writer.with_id({"x": "1"})
    assert a["Nats-Msg-Id"] != b["Nats-Msg-Id"] and b["x"] == "1"
    assert _writer(FakePublisher([])).with_id(None) != a
