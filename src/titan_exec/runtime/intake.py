"""Command intake: the durable consumer on `TITAN_CMD` and the per-key decision pipeline.

Commands are decided per (venue, symbol) key in arrival order by one worker per key, so
one slow symbol never blocks another. Within a key, a decision is made and appended
(applied synchronously, so the next decision sees it) before the previous one's venue call
has returned; a second stage executes decisions in the same order: it waits until the
decision and the write-ahead events are durable, sends the orders, then acknowledges the
command on `TITAN_CMD`. A refused command gets its dead letter and reject telemetry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from titan_exec.adapters.nats.eventlog import EventLog, EventLogBroken, EventNotEncodable
from titan_exec.api.metrics import Metrics
from titan_exec.config import Config
from titan_exec.core import controls
from titan_exec.core import decide as decide_mod
from titan_exec.core.commands import ControlCommand, InvalidInput, PlaceOrder
from titan_exec.core.decide import Decision, DecisionConfig
from titan_exec.core.events import ControlDecided, IntentDecided
from titan_exec.runtime.market import MarketData
from titan_exec.runtime.shadow import bind_command_consumer
from titan_exec.runtime.venues import Drivers
from titan_exec.wire import contract
from titan_exec.wire.ingress import IngressConfig, ReceivedCommand, read_command
from titan_exec.wire.subjects import CommandSubject, Subjects
from titan_exec.wire.text import printable_subject

log = logging.getLogger(__name__)

MAX_WORKERS = 512
"""Per-key workers at most; commands for further keys share one overflow worker."""
PIPELINE_DEPTH = 256
"""Commands of one key decided ahead of their execution (bounded)."""
RECENT_REJECTS = 100
FETCH_WAIT_S = 0.1
"""A fetch waits this long for commands when none are there. Short: closing intake lets
the current fetch end by itself (never cancelled mid-request) before the lease is handed
over, so it bounds the switchover gap."""


async def _leave_undecided(msg: Msg) -> None:
    """Intake is closing (switchover, fencing): a command not yet decided is left for the
    next active (its own durable consumer delivers it); nak returns it to ours at once."""
    try:
        await msg.nak()
    except Exception:
        log.debug("nak failed for %s", msg.subject, exc_info=True)


async def _redeliver_later(msg: Msg) -> None:
    """Give the command back to be delivered again in a second (a failed nak: after
    ack_wait); never raises, so a worker never dies on it."""
    try:
        await msg.nak(delay=1.0)
    except Exception:
        log.debug("nak failed for %s", printable_subject(msg.subject), exc_info=True)


@dataclass(slots=True)
class _Pending:
    msg: Msg
    decision: Decision
    kind: str
    perf0: float
    durable: list[asyncio.Future[None]]


class CommandIntake:
    def __init__(
        self,
        *,
        cfg: Config,
        js: JetStreamContext,
        log: EventLog,
        runner: Drivers,
        market: MarketData,
        metrics: Metrics,
        dcfg: DecisionConfig,
        subjects: Subjects,
        clock: Callable[[], int],
        on_fatal: Callable[[str], None],
        ingress: IngressConfig,
    ) -> None:
        self.cfg = cfg
        self.js = js
        self.log = log
        self.runner = runner
        self.market = market
        self.metrics = metrics
        self.dcfg = dcfg
        self.ingress = ingress
        self.subjects = subjects
        self.clock = clock
        self.on_fatal = on_fatal
        self._workers: dict[str, asyncio.Queue[tuple[Msg, CommandSubject] | None]] = {}
        self._worker_tasks: dict[str, asyncio.Task[None]] = {}
        self.commands_seen = 0
        self.last_cmd_seq = 0
        self.recent_rejects: list[dict[str, Any]] = []
        self.is_closing = False
        self.psub: Any = None
        """The pull subscription on this instance's durable consumer: handed over from the
        standby's reader at takeover, and back to it when this intake closes."""

    def _is_closed(self) -> bool:
        return self.is_closing

    async def stop(self) -> None:
        """Let every worker finish what it has decided, then return."""
        for q in self._workers.values():
            q.put_nowait(None)
        await asyncio.gather(*self._worker_tasks.values(), return_exceptions=True)

    async def run(self) -> None:
        # Bound with retries: right after a NATS node is lost the replicated consumer (or
        # the JetStream meta leader) may have no leader for seconds, and a failed bind must
        # not end the intake, which would leave an active that decides nothing.
        if self.psub is None:
            self.psub = await bind_command_consumer(self.js, self.cfg, lambda: self.is_closing)
        psub = self.psub
        while psub is not None and not self.is_closing:
            try:
                msgs = await psub.fetch(self.cfg.consumer.fetch_batch, timeout=FETCH_WAIT_S)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("command fetch failed: %r", err)
                await asyncio.sleep(0.2)
                continue
            for msg in msgs:
                if self._is_closed():
                    await _leave_undecided(msg)
                else:
                    await self._dispatch(msg)

    async def _dispatch(self, msg: Msg) -> None:
        route = self.subjects.command(msg.subject)  # the one reading of the subject
        key = route.key
        if key not in self._workers and len(self._workers) >= MAX_WORKERS:
            key = "overflow"  # subjects are untrusted: never one task per invented symbol
        queue = self._workers.get(key)
        if queue is None:
            queue = asyncio.Queue(maxsize=1024)
            self._workers[key] = queue
            self._worker_tasks[key] = asyncio.create_task(self._worker(queue), name=f"worker-{key}")
        await queue.put((msg, route))

    async def _worker(self, queue: asyncio.Queue[tuple[Msg, CommandSubject] | None]) -> None:
        """One key's commands: decided in arrival order, executed in the same order by a
        second stage, so the next decision need not wait for the previous one's round trips
        (a pipeline; the decision already sees the previous decision's events)."""
        pipeline: asyncio.Queue[_Pending | None] = asyncio.Queue(maxsize=PIPELINE_DEPTH)
        executor = asyncio.create_task(self._executor(pipeline))
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                msg, route = item
                if self.is_closing:
                    await _leave_undecided(msg)
                    continue
                try:
                    pending = self._decide(msg, route)
                except EventLogBroken:
                    await _redeliver_later(msg)  # the instance stops and rebuilds
                    continue
                except Exception as err:
                    pending = await self._undecidable(msg, route.kind, err)
                    if pending is None:
                        continue
                if pending is None:
                    self.metrics.duplicates.inc()
                    await msg.ack()
                    continue
                await pipeline.put(pending)
                # a queue with items never suspends its reader: without this a burst of
                # commands is decided in one loop iteration, and a burst of costly ones
                # stalls the loop past the lease watchdog's limit (fencing the active)
                await asyncio.sleep(0)
        finally:
            await pipeline.put(None)
            await executor

    def _received(self, msg: Msg) -> ReceivedCommand:
        meta: Any = msg.metadata
        return ReceivedCommand(
            seq=meta.sequence.stream, subject=msg.subject, data=msg.data, t_ingress_ms=self.clock()
        )

    def _decide(self, msg: Msg, route: CommandSubject) -> _Pending | None:
        """Read (the ingress), decide and append (synchronously applied) — no await in
        here, so no other decision can interleave. None: a redelivered command that was
        decided before."""
        perf0 = time.perf_counter()
        cmd = self._received(msg)
        self.commands_seen += 1
        self.last_cmd_seq = max(self.last_cmd_seq, cmd.seq)
        kind, state = route.kind, self.log.state
        if kind == "place":
            view = self.market.view()
            command = read_command(cmd, self.ingress, view.now_ms, route)
            assert not isinstance(command, ControlCommand)
            decision = decide_mod.decide_place(state, command, self.dcfg, view)
        else:
            now = self.clock()
            command = read_command(cmd, self.ingress, now, route)
            if isinstance(command, InvalidInput) and command.kind == "other":
                decision = decide_mod.decide_unknown(state, command, now)
            else:
                assert not isinstance(command, PlaceOrder)
                decision = controls.decide_control(state, command, self.dcfg, now)
        if decision.is_duplicate:
            return None
        try:
            durable = [self.log.append(decision.events)]
        except EventNotEncodable as err:
            # nothing was applied: decide instead what can always be written
            log.error("cmd %d: its decision cannot be written (%s): refused instead", cmd.seq, err)
            decision = _refused_instead(cmd, kind, decision, "internal_error", str(err))
            durable = [self.log.append(decision.events)]
        log.info("%s", decision.summary)
        return self._pending(msg, cmd, kind, decision, durable, perf0)

    async def _undecidable(self, msg: Msg, kind: str, err: Exception) -> _Pending | None:
        """A command whose decision raised: delivered again (a second later) until it has
        been delivered `consumer.max_deliveries` times, then refused as `poison_command`
        (one decision, a dead letter, acknowledged). None: left for a redelivery."""
        meta: Any = msg.metadata
        delivered = int(meta.num_delivered)
        limit = self.cfg.consumer.max_deliveries
        shown = printable_subject(msg.subject)
        if delivered < limit:
            log.exception(
                "command %s could not be decided (delivery %d of %d); redelivering",
                shown,
                delivered,
                limit,
            )
            await _redeliver_later(msg)
            return None
        cmd = self._received(msg)
        if self.log.state.is_decided(cmd.seq):
            await _redeliver_later(msg)  # decided meanwhile: the redelivery is a duplicate
            return None
        log.error(
            "command %s could not be decided in %d deliveries: refused as poison (%r)",
            shown,
            delivered,
            err,
        )
        reason = f"decision raised in {delivered} deliveries: {type(err).__name__}"
        decision = _refused_instead(cmd, kind, Decision(), "poison_command", reason)
        try:
            durable = [self.log.append(decision.events)]
        except Exception:  # the log is broken: the instance stops; the next one decides it
            await _redeliver_later(msg)
            return None
        self.metrics.poison_commands.inc()
        return self._pending(msg, cmd, kind, decision, durable, time.perf_counter())

    def _pending(
        self,
        msg: Msg,
        cmd: ReceivedCommand,
        kind: str,
        decision: Decision,
        durable: list[asyncio.Future[None]],
        perf0: float,
    ) -> _Pending:
        write_ahead = self.runner.write_ahead(decision.submit)
        if write_ahead is not None:
            durable.append(write_ahead)
        if decision.refusal is not None:
            self._publish_refusal(cmd, decision)
        elif kind == "control":
            self._count_unsigned(decision)
        for coid in decision.submit:
            self.runner.ingress_perf[coid] = perf0
        return _Pending(msg, decision, kind, perf0, durable)

    async def _executor(self, pipeline: asyncio.Queue[_Pending | None]) -> None:
        while True:
            p = await pipeline.get()
            if p is None:
                return
            try:
                for result in await asyncio.gather(*p.durable, return_exceptions=True):
                    if isinstance(result, BaseException):
                        raise result
                self.metrics.append_latency.observe(time.perf_counter() - p.perf0)
                decision = p.decision
                outcome = "accepted" if decision.refusal is None else "rejected"
                elapsed = time.perf_counter() - p.perf0
                self.metrics.decision_latency.labels(outcome).observe(elapsed)
                reason = decision.refusal.code if decision.refusal else "accepted"
                self.metrics.commands.labels(p.kind, outcome, reason).inc()
                for coid in decision.cancel:
                    self.runner.request_cancel(coid, "flatten")
                if decision.submit:
                    # sent, not awaited: the next intent of this key need not wait for
                    # this one's venue answer and its record (its own write-ahead is
                    # durable already; the lane keeps one symbol's places in order). An
                    # instance lost before the answer leaves the order in doubt, resolved
                    # by query, as one lost during the venue call always did.
                    self.runner.start_written_ahead(decision.submit)
                await p.msg.ack()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if self.log.is_broken:
                    self.on_fatal(f"event log broken: {err!r}")
                    return
                log.exception("command %s failed; it will be redelivered", p.msg.subject)
                await _redeliver_later(p.msg)

    def _publish_refusal(self, cmd: ReceivedCommand, decision: Decision) -> None:
        assert decision.refusal is not None
        r = decision.refusal
        publish_refusal(
            self.log,
            self.subjects,
            self.metrics,
            r,
            data=cmd.data,
            subject=cmd.subject,
            t_ingress_ms=cmd.t_ingress_ms,
            now_ms=self.clock(),
            dlq_id=f"dlq:{cmd.seq}",
            headers={"Titan-Cmd-Seq": str(cmd.seq)},
        )
        self.recent_rejects.append(
            {
                "cmd_seq": cmd.seq,
                "subject": printable_subject(cmd.subject),
                "code": r.code,
                "reason": r.message,
            }
        )
        del self.recent_rejects[:-RECENT_REJECTS]

    def _count_unsigned(self, decision: Decision) -> None:
        """Every control accepted without a valid signature is logged and counted."""
        for ev in decision.events[:1]:
            if (
                isinstance(ev, ControlDecided)
                and ev.outcome == "accepted"
                and ev.authentication not in controls.SIGNED
            ):
                log.warning(
                    "control cmd %d accepted without a valid signature (%s, %s): %s",
                    ev.cmd_seq,
                    ev.authentication,
                    ev.form,
                    ev.action,
                )
                self.metrics.unsigned_controls.labels(ev.action, ev.authentication).inc()


def publish_refusal(
    events: EventLog,
    subjects: Subjects,
    metrics: Metrics,
    r: decide_mod.Refusal,
    *,
    data: bytes,
    subject: str,
    t_ingress_ms: int,
    now_ms: int,
    dlq_id: str,
    headers: dict[str, str],
) -> None:
    """The reject telemetry and the dead letter of one refused input (a command, a risk
    state message)."""
    events.publish(
        subjects.reject,
        contract.reject_telemetry(
            intent_id=r.intent_id,
            reason=r.code,
            expected_policy_hash=r.expected_policy_hash,
            got_policy_hash=r.got_policy_hash,
            brain_instance_id=r.brain_instance_id,
            timestamp_ms=now_ms,
            envelope_id=r.envelope_id,
        ),
    )
    events.publish(
        subjects.dlq,
        contract.dead_letter(data, reason=r.message, t_ingress_ms=t_ingress_ms, subject=subject),
        headers={"Nats-Msg-Id": dlq_id, "Titan-Reason-Code": r.code, **headers},
    )
    metrics.dead_letters.labels(r.code).inc()


def _refused_instead(
    cmd: ReceivedCommand, kind: str, decision: Decision, code: str, why: str
) -> Decision:
    """A refusal that can always be written, in place of a decision that could not be
    (its events not encodable) or never came (the decision raised). Its text is ASCII;
    the verified nonce of the replaced decision is kept, so the replay cache stays whole."""
    first = decision.events[0] if decision.events else None
    nonce = first.nonce if isinstance(first, IntentDecided | ControlDecided) else None
    message = why.encode("ascii", "backslashreplace").decode()[:500]
    reason = f"{code}: {message}"
    ev: IntentDecided | ControlDecided
    if kind == "control":
        ev = ControlDecided(
            ts_ms=cmd.t_ingress_ms,
            cmd_seq=cmd.seq,
            action="",
            outcome="rejected",
            reason=reason,
            nonce=nonce,
        )
    else:
        ev = IntentDecided(
            ts_ms=cmd.t_ingress_ms, cmd_seq=cmd.seq, outcome="rejected", reason=reason, nonce=nonce
        )
    return Decision(
        events=(ev,),
        refusal=decide_mod.Refusal(code, message),
        summary=f"cmd {cmd.seq} refused: {reason}",
    )
