"""Who wrote an event, and the unsafe build without the epoch fence (issue 5), against a
real nats-server.

Every event written while leading names its writer (`Titan-Epoch`, `Titan-Instance`)
beside its `Nats-Msg-Id`; the fence headers are there too, except in the test-only
broken build (`TITAN_UNSAFE_DISABLE_FENCING=1`), where a deposed leader's writes land.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from tests.builders import accepted, genesis
from tests.integration.harness import make_config, wait_for
from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.adapters.nats.eventlog import EventLog
from titan_exec.adapters.nats.fence import (
    EPOCH_HEADER,
    EXPECTED_LAST_SUBJECT_SEQ,
    EXPECTED_LAST_SUBJECT_SEQ_SUBJECT,
    INSTANCE_HEADER,
    marker_headers,
)
from titan_exec.adapters.nats.headers import MSG_ID
from titan_exec.adapters.nats.streams import ensure_streams
from titan_exec.core.state import State
from titan_exec.runtime.app import RunningInstance
from titan_exec.runtime.streamcheck import read_stream
from titan_exec.wire.contract import event_id

pytestmark = pytest.mark.integration

EPOCH_SUBJECT = "titan.evt.exec.epoch.v1.main"
FENCE = (EXPECTED_LAST_SUBJECT_SEQ, EXPECTED_LAST_SUBJECT_SEQ_SUBJECT)


async def _events(js: Any) -> list[Any]:
    return [m for m in await read_stream(js, "TITAN_EVT") if m.subject != EPOCH_SUBJECT]


@pytest.mark.parametrize("is_fencing_disabled", [False, True], ids=["fenced", "UNSAFE-unfenced"])
async def test_events_name_their_writer_and_carry_the_fence_unless_disabled(
    nats_client: Client, is_fencing_disabled: bool
) -> None:
    js = nats_client.jetstream()
    await ensure_streams(js)
    marker = await js.publish(EPOCH_SUBJECT, b"{}", headers=marker_headers(0))
    log = EventLog(
        nats_client,
        State(),
        ns="exec",
        producer="pytest",
        instance_id="primary",
        is_fencing_disabled=is_fencing_disabled,
    )
    await log.start()
    try:
        log.set_epoch(EPOCH_SUBJECT, marker.seq)
        events: list[Any] = [genesis(), accepted("c1", ts=1)]
        await log.append(events)
        # a newer epoch: the server refuses the fenced writer; the unfenced one lands
        await js.publish(EPOCH_SUBJECT, b"{}", headers=marker_headers(marker.seq))
        late = accepted("c2", ts=2)
        if is_fencing_disabled:
            await log.append([late])
            events.append(late)
        else:
            with pytest.raises(Exception, match="wrong last sequence"):
                await log.append([late])
            assert log.is_deposed
    finally:
        await log.stop()

    stored = await _events(js)
    assert [m.headers[MSG_ID] for m in stored] == [event_id(ev) for ev in events]
    for m in stored:
        assert m.headers[EPOCH_HEADER] == str(marker.seq)
        assert m.headers[INSTANCE_HEADER] == "primary"
        if is_fencing_disabled:
            assert not set(FENCE) & set(m.headers), m.headers
        else:
            assert m.headers[EXPECTED_LAST_SUBJECT_SEQ] == str(marker.seq)
            assert m.headers[EXPECTED_LAST_SUBJECT_SEQ_SUBJECT] == EPOCH_SUBJECT


async def test_a_retried_event_is_still_stored_once_with_the_writer_headers(
    nats_client: Client,
) -> None:
    """The writer headers are merged with `Nats-Msg-Id`: the duplicate window still works."""
    js = nats_client.jetstream()
    await ensure_streams(js)
    marker = await js.publish(EPOCH_SUBJECT, b"{}", headers=marker_headers(0))
    log = EventLog(nats_client, State(), ns="exec", producer="pytest", instance_id="primary")
    await log.start()
    try:
        log.set_epoch(EPOCH_SUBJECT, marker.seq)
        ev = genesis()
        await log.append([ev])
        log.state = State()  # the same event applied again, as after a lost answer
        await log.append([ev])
    finally:
        await log.stop()
    stored = await _events(js)
    assert [m.headers[MSG_ID] for m in stored] == [event_id(ev)]


async def test_the_unsafe_service_says_so_at_start_and_in_its_status(
    service_nats: EmbeddedNats, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(service_nats.url, tmp_path / "primary")
    assert cfg.unsafe == []
    cfg = dataclasses.replace(cfg, is_unsafe_fencing_disabled=True)  # what the env var sets
    with caplog.at_level(logging.ERROR, logger="titan_exec"):
        async with RunningInstance(cfg) as inst:
            svc = inst.service
            assert svc is not None
            await wait_for(lambda: svc.role == "active", "active")
            assert svc.status_doc()["unsafe"] == ["fencing disabled"]
            assert svc.events is not None
            await svc.events.drain()
            assert svc.nc is not None
            stored = await _events(svc.nc.jetstream())
    assert any(
        r.levelno == logging.ERROR and "UNSAFE TEST BUILD: epoch fencing disabled" in r.message
        for r in caplog.records
    )
    assert stored, "the genesis event was written"
    for m in stored:
        assert m.headers[INSTANCE_HEADER] == "primary"
        assert m.headers[EPOCH_HEADER] == str(svc.epoch)
        assert not set(FENCE) & set(m.headers), m.headers
