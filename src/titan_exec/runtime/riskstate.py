"""The reader of the brain's risk posture: RiskGuardian's `titan.evt.risk.state.v1` (a bare
JSON string in `TITAN_EVT`), a leader task of the active.

Each message is decided once (`core/controls.decide_risk_state`) into a `RiskStateDecided`
event carrying the message's stream sequence; the folded state keeps the last sequence
decided, so a new active (or a restart) reads on from the message after it, and the standby
holds the same posture from the events. On a namespace that never decided one, reading starts
at the newest message on the subject (the brain's current posture), not at its history.
A message that is not one of the four states is refused: reject telemetry and a dead letter.
An accepted Emergency cancels the open orders that could add to a position.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from nats.js import JetStreamContext, api

from titan_exec.adapters.nats.eventlog import EventLog
from titan_exec.api.metrics import Metrics
from titan_exec.core.controls import decide_risk_state
from titan_exec.runtime.intake import publish_refusal
from titan_exec.runtime.venues import Drivers
from titan_exec.wire.ingress import read_risk_state
from titan_exec.wire.subjects import RISK_STATE, Subjects

log = logging.getLogger(__name__)

FETCH_WAIT_S = 0.5
RETRY_S = 1.0


class RiskStateReader:
    def __init__(
        self,
        *,
        js: JetStreamContext,
        log: EventLog,
        subjects: Subjects,
        metrics: Metrics,
        clock: Callable[[], int],
        runner: Drivers | None = None,
    ) -> None:
        self.runner = runner
        self.js = js
        self.log = log
        self.subjects = subjects
        self.metrics = metrics
        self.clock = clock
        self.decided = 0

    def _consumer_config(self) -> api.ConsumerConfig:
        after = self.log.state.risk_state_seq
        if after:
            return api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=after + 1,
                ack_policy=api.AckPolicy.NONE,
                inactive_threshold=30.0,
            )
        return api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=30.0,
        )

    async def run(self) -> None:
        while True:
            try:
                psub = await self.js.pull_subscribe(
                    RISK_STATE, stream="TITAN_EVT", config=self._consumer_config()
                )
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("risk state consumer not bound (%r): retrying", err)
                await asyncio.sleep(RETRY_S)
                continue
            try:
                await self._read(psub)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the consumer went away (a NATS node lost, ...)
                log.warning("risk state reading failed (%r): reading on", err)
                await asyncio.sleep(RETRY_S)
            finally:
                try:
                    await psub.unsubscribe()
                except Exception:
                    log.debug("risk state unsubscribe failed", exc_info=True)

    async def _read(self, psub: Any) -> None:
        while True:
            try:
                msgs = await psub.fetch(16, timeout=FETCH_WAIT_S)
            except TimeoutError:
                continue
            for msg in msgs:
                await self.decide(int(msg.metadata.sequence.stream), msg.subject, msg.data)

    async def decide(self, seq: int, subject: str, data: bytes) -> None:
        now = self.clock()
        decision = decide_risk_state(self.log.state, seq, read_risk_state(data), now)
        if decision.is_duplicate:
            return
        durable = self.log.append(decision.events)
        log.info("%s", decision.summary)
        if decision.refusal is not None:
            publish_refusal(
                self.log,
                self.subjects,
                self.metrics,
                decision.refusal,
                data=data,
                subject=subject,
                t_ingress_ms=now,
                now_ms=now,
                dlq_id=f"dlq:risk_state:{seq}",
                headers={"Titan-Evt-Seq": str(seq)},
            )
        await durable
        self.decided += 1
        if self.runner is not None:
            for coid in decision.cancel:
                self.runner.request_cancel(coid, "risk state Emergency")
