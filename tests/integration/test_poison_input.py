"""Hostile input through a running instance (issue 12): every message of the poison
corpus, published byte for byte (subjects that are not UTF-8, lone surrogates, deep
nesting, huge and tiny numbers, NaN, duplicate keys, maximum sizes, forged status
headers, signed intents with surrogates), gets exactly one decision; every refusal one
dead letter; the instance keeps deciding (a valid intent after them executes) and never
fences itself; a command whose decision raises is refused after max_deliveries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.harness import API_KEY, SECRET, wait_for, world
from tests.integration.test_service_e2e import http_get
from titan_exec.chaos.poison import build_corpus, max_size_burst, raw_publish
from titan_exec.core.model import OrderStatus

pytestmark = pytest.mark.integration

HA = {"ha.enabled": True, "ha.lease_ms": 5000, "service.instance_id": "primary"}


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def test_every_poison_message_gets_one_outcome_and_the_instance_keeps_deciding(
    service_nats: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path, **HA) as w:
        await wait_for(lambda: w.svc.role == "active", "active", 15)
        host, port = host_port(service_nats.url)
        records = build_corpus(7, secret=SECRET.encode(), now_ms=w.svc.clock())
        records += max_size_burst(7, 100, now_ms=w.svc.clock())
        stored = await raw_publish(host, port, records)
        seqs = {s.seq: s.record.kind for s in stored if s.seq is not None}
        assert len(seqs) >= len(records) - 2  # only what the server itself refuses is absent
        good = await w.brain.place(w.brain.intent("after-poison", "BTC/USDT", "BUY_SETUP", "0.01"))
        await w.decided(good.seq, 30)
        for seq, kind in seqs.items():
            await w.decided(seq, 30)
            assert w.svc.state.is_decided(seq), kind
        coid = w.svc.state.accepted_signals["after-poison"][0]
        await wait_for(lambda: w.svc.state.orders[coid].status is OrderStatus.FILLED, "fill")
        await w.svc.events.drain()  # type: ignore[union-attr]
        dlq = await w.dead_letters()
        accepted = {o.cmd_seq for o in w.svc.state.orders.values() if o.signal_id != "after-poison"}
        for seq, kind in seqs.items():
            if seq in accepted:
                # a validly signed intent (its text may hold a lone surrogate, its headers
                # anything): data, executed
                assert kind.startswith(("signed-surrogate", "header-")), kind
                continue
            assert seq in dlq, f"{kind} (cmd {seq}): no dead letter"
            assert dlq[seq]["reason"], kind
        codes = {dlq[s]["code"] for s in seqs if s in dlq}
        assert {"invalid_subject", "invalid_envelope"} <= codes
        # the instance never stopped, never fenced, and its status encodes
        assert not w.svc.events.is_broken  # type: ignore[union-attr]
        assert w.svc.role == "active" and w.svc.ha is not None
        assert w.svc.ha.last_fencing is None, w.svc.ha.last_fencing
        status, doc = await http_get(w.http_url + "/status", {"X-API-Key": API_KEY})
        assert status == 200, doc
        json.dumps(doc).encode("utf-8")


async def test_a_command_whose_decision_raises_is_refused_after_max_deliveries(
    service_nats: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from titan_exec.runtime import intake as intake_mod

    real = intake_mod.read_command

    def explode(cmd: Any, *args: Any) -> Any:
        if cmd.data == b'{"boom": 1}':
            raise RuntimeError("a bug in the decision")
        return real(cmd, *args)

    monkeypatch.setattr(intake_mod, "read_command", explode)
    async with world(service_nats.url, tmp_path, **{"consumer.max_deliveries": 3}) as w:
        seq = await w.publish_raw(b'{"boom": 1}', msg_id="boom")
        await w.decided(seq, 20)
        after = await w.brain.place(w.brain.intent("next-one", "BTC/USDT", "BUY_SETUP", "0.01"))
        await w.decided(after.seq)
        await w.svc.events.drain()  # type: ignore[union-attr]
        dlq = await w.dead_letters()
        assert dlq[seq]["code"] == "poison_command"
        assert "3 deliveries" in dlq[seq]["reason"]
        assert "next-one" in w.svc.state.accepted_signals
        assert w.svc.metrics.poison_commands._value.get() == 1
        # the append histogram is recorded (it never was): one sample per decided command
        appended = [
            s.value
            for m in w.svc.metrics.append_latency.collect()
            for s in m.samples
            if s.name.endswith("_count")
        ]
        assert appended and appended[0] >= 2
