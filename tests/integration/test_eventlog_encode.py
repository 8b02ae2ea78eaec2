"""Encode before apply: an event the stream cannot hold never reaches the state."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from tests.builders import genesis
from titan_exec.adapters.nats.eventlog import EventLog, EventNotEncodable
from titan_exec.adapters.nats.streams import ensure_streams
from titan_exec.core.events import IntentDecided
from titan_exec.core.state import State, state_hash

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "bad",
    [
        IntentDecided(ts_ms=2, cmd_seq=7, outcome="rejected", reason="lone \udc00"),
        IntentDecided(ts_ms=2, cmd_seq=7, outcome="rejected", reason="x" * 5000),
    ],
    ids=["not-encodable", "too-large"],
)
async def test_an_event_that_cannot_be_written_leaves_the_state_untouched(
    nats_client: Client, bad: IntentDecided
) -> None:
    await ensure_streams(nats_client.jetstream())
    log = EventLog(nats_client, State(), ns="exec", producer="pytest", max_event_bytes=4096)
    await log.start()
    try:
        await log.append([genesis()])
        before = state_hash(log.state)
        ok = IntentDecided(ts_ms=2, cmd_seq=6, outcome="rejected", reason="fine")
        with pytest.raises(EventNotEncodable):
            log.append([ok, bad])  # the first of the batch is not applied either
        assert state_hash(log.state) == before
        assert not log.state.is_decided(6) and not log.state.is_decided(7)
        assert not log.is_broken and log.unacked == 0
        await log.append([ok])  # the log goes on
        assert log.state.is_decided(6)
    finally:
        await log.stop()
