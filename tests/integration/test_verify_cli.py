"""`titan-exec verify` as a process against a real nats-server and the venue simulator: a
real instance's run passes; one bad write published directly (a second, unfenced decision
for a decided command) makes it exit 1 naming the ids; what cannot be read exits 2."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.integration.harness import API_KEY, wait_for, world
from titan_exec.core.model import OrderStatus
from titan_exec_lab.verify.read import read_stream

pytestmark = pytest.mark.integration

HA = {"ha.enabled": True, "ha.lease_ms": 1000, "service.instance_id": "primary"}


async def verify(*args: str) -> tuple[int, str, str]:
    """Run `python -m titan_exec verify ARGS` (asynchronously: the instance under test
    serves its HTTP API on this event loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "titan_exec",
        "verify",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TITAN_EXECUTION_API_KEY": API_KEY},  # the full /status
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_verify_passes_a_real_run_and_names_a_second_unfenced_decision(
    service_nats: Any, venue_sim: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path, sim=venue_sim, **HA) as w:
        await wait_for(lambda: w.svc.role == "active", "primary elected", 10)
        svc = w.svc
        ack = await w.brain.place(w.brain.intent("v-open", "BTC/USDT", "BUY_SETUP", "0.2"))
        await w.decided(ack.seq)
        coids = svc.state.accepted_signals["v-open"]
        await wait_for(
            lambda: all(svc.state.orders[c].status is OrderStatus.FILLED for c in coids),
            "v-open filled",
        )
        code, out, err = await verify(
            "--nats", service_nats.url, "--venue", venue_sim.url, "--url", w.http_url
        )
        assert code == 0, out + err
        assert out.strip().endswith("OK: no violation"), out
        assert "1 instances" in out and "venue orders" in out

    # the instance is gone; one bad write: its decision again, without the epoch fence
    nc = await nats.connect(service_nats.url)
    try:
        js = nc.jetstream()
        decision = next(
            m
            for m in await read_stream(js, "TITAN_EVT", "titan.evt.exec.decision.v1.>")
            if m.doc()["payload"]["cmdSeq"] == ack.seq
        )
        bad = await js.publish(decision.subject, decision.data, headers={"Nats-Msg-Id": "again"})
    finally:
        await nc.close()
    code, out, err = await verify("--nats", service_nats.url, "--venue", venue_sim.url)
    assert code == 1, out + err
    lines = out.strip().splitlines()
    assert (
        f"VIOLATION decisions: command {ack.seq} (titan.cmd.exec.place.v1.sim.main.BTC_USDT, "
        f"signal:v-open) decided 2 times: events {decision.seq}, {bad.seq}"
    ) in lines
    assert any(
        line.startswith(f"VIOLATION epochs: state event {bad.seq} ") and "is not fenced" in line
        for line in lines
    ), out
    assert lines[-1].endswith("FAIL: 2 violations (decisions 1, epochs 1)"), out

    code, out, _ = await verify("--nats", service_nats.url, "--venue", venue_sim.url, "--json")
    assert code == 1 and '"problem": "decided_twice"' in out


async def test_verify_exits_2_when_it_cannot_read(service_nats: Any, venue_sim: Any) -> None:
    code, out, err = await verify("--nats", service_nats.url)  # no streams yet
    assert (code, out) == (2, "")
    assert "cannot read the run: stream TITAN_CMD not found" in err
    code, _, err = await verify("--nats", "nats://127.0.0.1:1")
    assert code == 2 and "cannot connect to NATS at nats://127.0.0.1:1" in err
