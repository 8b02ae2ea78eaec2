"""`titan-exec chaos`: each scenario N times against its own topology, under load.

Per scenario: a fresh topology (`Topology`: three nats-servers, the simulator, the pair).
Per run: wait until the pair is ready (one active, a standby with no lag) → start the
load → warm up → inject the fault → wait for its outcome (the other instance active, or
the lead kept) → a little more load → stop the load → restore (restart what was killed) →
wait until the pair is ready again → settle (every intent of the run decided, the
instances on the same hash, the venue's positions) → check the invariants over the raw
streams and the venue (`titan_exec_lab.verify`) → one `RunRecord`. A violation found by the
checker is attributed to the run after which it first appeared.

A run that cannot complete (a wait that times out, a process that will not start) is
recorded with the error as a violation, and the scenario's topology is rebuilt for the
next run: the matrix never stops half-way, and never hides a failed run.

Commands the fault itself stored (`RunContext.commands`: the poison of `poison-burst`) are
settled and counted with the load's, and a run line says per kind which of them did not
end in exactly one decision. A quiet scenario (`Scenario.is_quiet`) adds a violation for
every fencing (with the reason the instance published), a lead that moved, and the other
instance seen active. Text from the wire in a violation (a subject that was not UTF-8, a
lone surrogate) is shown escaped (`\xff`, `\udc00`), so that printing and the report
never fail on it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats.errors

from titan_exec_lab.chaos.load import IntentLoad
from titan_exec_lab.chaos.model import RunRecord, ScenarioRow, Transition, lease_expiry
from titan_exec_lab.chaos.scenarios import SCENARIOS, RunContext, Scenario
from titan_exec_lab.chaos.topology import NAMES, SECRET, Topology, TopologySettings
from titan_exec_lab.chaos.watch import RoleWatch
from titan_exec_lab.verify.invariants import check, decisions_per_command
from titan_exec_lab.verify.read import CannotRead, RawMsg, read_stream


@dataclass(frozen=True, slots=True)
class ChaosSettings:
    scenarios: tuple[str, ...] = tuple(SCENARIOS)
    runs: int = 3
    rate_per_s: float = 20.0
    controls_every: int = 10
    """A bare halt, a signed open and a risk state after every this many intents (0: none)."""
    lease_ms: int = 2000
    warmup_s: float = 1.0
    after_s: float = 1.0
    """Load kept on this long after the outcome."""
    settle_s: float = 30.0
    ready_timeout_s: float = 120.0
    """How long the pair may take to be ready again (one active, a standby caught up)."""
    is_fencing_disabled: bool = False
    venues: tuple[str, ...] = ("sim",)
    """The pair's venues, the default first, each its own simulator; with more than one
    the load's intents name them in turn (`IntentLoad`)."""
    work_dir: Path | None = None
    """None: a temporary directory, removed afterwards unless a run failed."""

    def __post_init__(self) -> None:
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown:
            raise ValueError(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
        if self.runs < 1:
            raise ValueError(f"runs must be >= 1, got {self.runs}")
        if not self.venues or len(set(self.venues)) != len(self.venues):
            raise ValueError(f"venues: at least one, each once, got {self.venues}")
        bad = [v for v in self.venues if not re.match(r"^[a-z0-9][a-z0-9_-]*$", v)]
        if bad or {"auto", "main"} & set(self.venues):
            raise ValueError(f"venues: lower-case names, not auto or main, got {self.venues}")


@dataclass
class ScenarioResult:
    scenario: Scenario
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def row(self) -> ScenarioRow:
        return ScenarioRow.of(self.scenario.name, self.runs)


Say = Callable[[str], None]


def _say(text: str) -> None:
    print(text, flush=True)


async def run_matrix(settings: ChaosSettings, say: Say = _say) -> list[ScenarioResult]:
    work = settings.work_dir or Path(tempfile.mkdtemp(prefix="titan-chaos-"))
    results: list[ScenarioResult] = []
    is_clean = True
    try:
        for name in settings.scenarios:
            result = await _run_scenario(SCENARIOS[name], settings, work / name, say)
            results.append(result)
            is_clean = is_clean and result.row.is_clean
    finally:
        if settings.work_dir is None and is_clean:
            shutil.rmtree(work, ignore_errors=True)
        elif not is_clean:
            say(f"logs and state kept in {work}")
    return results


async def _run_scenario(
    scenario: Scenario, settings: ChaosSettings, work: Path, say: Say
) -> ScenarioResult:
    result = ScenarioResult(scenario)
    run = 1
    attempt = 0
    while run <= settings.runs:
        attempt += 1
        topo_dir = work / f"topology-{attempt}"
        topo_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        say(f"[{scenario.name}] starting the topology (3 nats-servers, venue simulator, pair)")
        topo_settings = TopologySettings(
            lease_ms=settings.lease_ms,
            is_fencing_disabled=settings.is_fencing_disabled,
            venues=settings.venues,
        )
        try:
            async with Topology(topo_dir, topo_settings) as topo:
                say(f"[{scenario.name}] topology up in {time.monotonic() - started:.1f} s")
                assert topo.nc is not None
                load = IntentLoad(
                    topo.nc,
                    secret=SECRET.encode(),
                    rate_per_s=settings.rate_per_s,
                    controls_every=settings.controls_every,
                    venues=settings.venues,
                )
                load.start_heartbeats()
                seen = Seen()
                try:
                    while run <= settings.runs:
                        record = await _one_run(topo, load, seen, scenario, run, settings)
                        result.runs.append(record)
                        say(_run_line(record, settings.runs))
                        run += 1
                        if any(n.startswith("harness:") for n in record.notes):
                            break  # rebuild the topology for the next run
                finally:
                    await load.close()
        except (OSError, RuntimeError, TimeoutError) as err:
            # the topology itself failed to start or stop: a failed run, not a crash
            record = RunRecord(scenario.name, run, time.time(), settings.lease_ms)
            record.violations.append(f"harness: topology failed: {type(err).__name__}: {err}")
            result.runs.append(record)
            say(_run_line(record, settings.runs))
            run += 1
    row = result.row
    say(f"[{scenario.name}] {row.runs} runs: {'clean' if row.is_clean else 'VIOLATIONS'}")
    return result


@dataclass
class Seen:
    """What earlier runs of the same topology already accounted for."""

    violations: set[str] = field(default_factory=set)
    duplicated_coids: set[str] = field(default_factory=set)
    commands: list[RawMsg] = field(default_factory=list)
    """`TITAN_CMD` as read so far: it only grows (limits retention, nothing deletes), so
    each read brings only what came after. Rereading it whole after every run cost the
    cluster ~26 MB more per `poison-burst` run; by the tenth, a settle's reads delayed
    the lease renewals past their deadline (the active fenced between two runs)."""


async def _one_run(
    topo: Topology,
    load: IntentLoad,
    seen: Seen,
    scenario: Scenario,
    run: int,
    settings: ChaosSettings,
) -> RunRecord:
    active = await topo.wait_pair_ready(settings.ready_timeout_s)
    before = await topo.status(active) or {}
    record = RunRecord(scenario.name, run, time.time(), settings.lease_ms, leader_before=active)
    ctx = RunContext(topo, record, active)
    watch = RoleWatch(topo)
    await watch.start()
    try:
        load.start(run)
        try:
            await asyncio.sleep(settings.warmup_s)
            await scenario.inject(ctx)
            await _await_outcome(ctx, scenario, settings)
            await asyncio.sleep(settings.after_s)
        finally:
            await load.stop()
        await scenario.restore(ctx)
        record.leader_after = await topo.wait_pair_ready(settings.ready_timeout_s)
        await asyncio.sleep(0.3)  # a last poll of the roles
    except (OSError, RuntimeError, TimeoutError) as err:
        # what the run did is checked all the same: a pair that never became ready again
        # (two actives in the broken build) is exactly what the checker must explain
        record.violations.append(f"harness: the run did not complete: {type(err).__name__}: {err}")
        record.notes.append(f"harness: {err}")
    finally:
        await watch.stop()
    record.loop_stall_max_ms_before = _stall(before)
    record.loop_stall_max_ms = _stall(await topo.status(active))
    after = await topo.status(record.leader_after) if record.leader_after else None
    _timings(record, watch, before, after or {}, scenario)
    if scenario.is_quiet:
        record.violations += _quiet_violations(record, watch, before, after or {})
    await _settle_and_check(topo, load, seen, record, settings, ctx.commands)
    if scenario.is_quiet and not any(
        v.startswith("quiet: the lead moved") for v in record.violations
    ):
        record.violations += await _lead_kept_while_settling(topo, record, before)
    return record


async def _lead_kept_while_settling(
    topo: Topology, record: RunRecord, before: Mapping[str, Any]
) -> list[str]:
    """A quiet run's lead, once more after the settle: the role watch has stopped by then,
    and a fencing there would otherwise be seen only as the next run's first active."""
    doc = await topo.status(record.leader_before) or {}
    role, epoch = doc.get("role"), doc.get("epoch")
    if role == "active" and epoch == before.get("epoch"):
        return []
    return [
        f"quiet: the lead moved while the run settled: {record.leader_before} is "
        f"{role or 'not answering'} at epoch {epoch} (epoch {before.get('epoch')} when the "
        f"run began)"
    ]


async def _await_outcome(ctx: RunContext, scenario: Scenario, settings: ChaosSettings) -> None:
    lease_s = settings.lease_ms / 1000
    if scenario.expects == "failover":
        # kill → lease expiry → takeover; a raft re-election can add up to ~10 s
        await ctx.topo.wait_role(ctx.standby, "active", lease_s * 5 + 15)
        return
    # "stay" / "either": give a fencing time to happen, then someone must lead
    await asyncio.sleep(lease_s * 1.5)
    deadline = time.monotonic() + lease_s * 5 + 20
    while await ctx.topo.active() is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no active instance {lease_s * 5 + 20:.0f} s after the fault")
        await asyncio.sleep(0.05)


def _timings(
    record: RunRecord,
    watch: RoleWatch,
    before: dict[str, Any],
    after: dict[str, Any],
    scenario: Scenario,
) -> None:
    t0 = record.started_at
    record.roles = watch.samples(t0)
    record.fencings = watch.fencings(t0)
    record.count_takeovers(watch.takeovers(record.leader_before, t0))
    is_new_epoch = after.get("epoch") != before.get("epoch")
    if record.fault_at is None or not is_new_epoch:
        if scenario.expects == "failover":
            record.notes.append("expected a takeover, none happened")
        return
    if scenario.expects == "stay":
        record.notes.append(
            f"unexpected takeover (epoch {before.get('epoch')} → {after.get('epoch')})"
        )
    fault = t0 + record.fault_at
    took = watch.first_active_after(fault)
    if took is None:
        record.notes.append("a new epoch, but no takeover moment seen")
        return
    record.takeover_at = took - t0
    ms = (took - fault) * 1000
    if scenario.is_planned:
        record.switchover_gap_ms = ms
        return
    record.failover_ms = ms
    expired = lease_expiry(watch.lease_writes, record.leader_before, took, record.lease_ms)
    if expired is not None:
        record.lease_expired_at = round(expired - t0, 3)
        record.beyond_expiry_ms = round((took - expired) * 1000, 1)


def _stall(status: Mapping[str, Any] | None) -> int | None:
    value = (status or {}).get("loop_stall_max_ms")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _quiet_violations(
    record: RunRecord, watch: RoleWatch, before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[str]:
    """A quiet scenario's outcome: the same instance active from start to end, no one
    fenced, the other instance never active; and (notes) how long an instance's `/status`
    went unanswered."""
    t0 = record.started_at
    out: list[str] = []
    fenced = [tr for tr in watch.transitions if tr.after == "fenced" and tr.at >= t0]
    if record.fencings or fenced:
        how = "; ".join(_transition_text(tr, t0) for tr in fenced) or (
            "seen in the polled lease role only"
        )
        out.append(f"quiet: {record.fencings} fencing(s) where none may happen: {how}")
    epochs = (before.get("epoch"), after.get("epoch"))
    if record.leader_after != record.leader_before or epochs[0] != epochs[1]:
        out.append(
            f"quiet: the lead moved: {record.leader_before} (epoch {epochs[0]}) → "
            f"{record.leader_after or 'no one'} (epoch {epochs[1]})"
        )
    others = sorted(
        {
            round(s.t, 1)
            for s in record.roles
            if s.instance != record.leader_before and s.role in ("active", "promoting")
        }
    )
    if others:
        out.append(
            f"quiet: {Topology.other(record.leader_before)} was active or promoting at "
            f"t = {', '.join(f'{t:g}' for t in others[:5])} s"
        )
    for name, seconds in _longest_silence(watch.polled, t0).items():
        if seconds >= 0.5:
            record.notes.append(f"{name}'s /status unanswered for up to {seconds:.1f} s")
    return out


def _transition_text(tr: Transition, t0: float) -> str:
    return f"{tr.instance} {tr.before} → fenced at t = {tr.at - t0:.1f} s ({tr.reason})"


def _longest_silence(polled: Sequence[tuple[float, str, str]], t0: float) -> dict[str, float]:
    """Per instance, the longest stretch its `/status` did not answer ("down")."""
    since: dict[str, float] = {}
    longest: dict[str, float] = {}
    for at, name, role in polled:
        if at < t0:
            continue
        if role == "down":
            since.setdefault(name, at)
        elif name in since:
            longest[name] = max(longest.get(name, 0.0), at - since.pop(name))
    for name, start in since.items():
        longest[name] = max(longest.get(name, 0.0), polled[-1][0] - start)
    return longest


_WIRE_TEXT_RE = re.compile("[\ud800-\udfff]")


def _escape_wire_char(match: re.Match[str]) -> str:
    cp = ord(match.group())
    return f"\\x{cp - 0xDC00:02x}" if 0xDC80 <= cp <= 0xDCFF else f"\\u{cp:04x}"


def printable(text: str) -> str:
    """`text` with what cannot be encoded escaped: a byte of a subject that was not UTF-8
    (surrogate-escaped by the connection) as `\\xNN`, a lone surrogate as `\\udxxx`."""
    return text if text.isascii() else _WIRE_TEXT_RE.sub(_escape_wire_char, text)


async def _settle_and_check(
    topo: Topology,
    load: IntentLoad,
    seen: Seen,
    record: RunRecord,
    settings: ChaosSettings,
    injected: Mapping[int, str],
) -> None:
    """Wait (bounded) until every command of the run (the load's intents and what the
    fault `injected`) is decided and the instances agree, then check the invariants over
    everything and keep what is new in this run."""
    assert topo.nc is not None
    js = topo.nc.jetstream()
    sent = load.sent.get(record.run, []) + sorted(injected)
    deadline = time.monotonic() + settings.settle_s
    waited_for: set[str] = set()
    while True:
        try:
            commands, events = await _read(js, seen)
        except (CannotRead, nats.errors.Error, TimeoutError) as err:
            if time.monotonic() > deadline:
                record.violations.append(
                    printable(f"harness: the streams could not be read: {err}")
                )
                return
            await asyncio.sleep(0.5)
            continue
        decided = decisions_per_command(events)
        statuses = {n: await topo.status(n) for n in NAMES}
        inspect = await topo.venue_inspect()
        report = check(commands, events, inspect, statuses)
        undecided = [s for s in sent if not decided.get(s)]
        waiting = sorted({f"{v.invariant}:{v.problem}" for v in report.unsettled()})
        waited_for |= set(waiting) | ({"decisions:undecided"} if undecided else set())
        if not undecided and not waiting:
            break
        if time.monotonic() > deadline:
            record.notes.append(f"not settled after {settings.settle_s:.0f} s: {waiting}")
            break
        await asyncio.sleep(0.5)
    settled_s = settings.settle_s - (deadline - time.monotonic())
    if settled_s > 5:
        record.notes.append(f"settled after {settled_s:.0f} s (waited for: {sorted(waited_for)})")
    if load.controls_every:
        record.notes.append(_controls_note(load, statuses))
    record.commands_sent = len(sent)
    record.commands_injected = len(injected)
    if injected:
        record.notes.append(_injected_outcomes(injected, decided))
    record.commands_decided = sum(1 for s in sent if decided.get(s))
    record.commands_lost = sum(1 for s in sent if not decided.get(s))
    record.commands_duplicated = sum(1 for s in sent if len(decided.get(s, ())) > 1)
    twice = {coid for coid, n in report.coid_counts.items() if n > 1}
    record.venue_duplicates = len(twice - seen.duplicated_coids)
    seen.duplicated_coids |= twice
    record.hash_mismatches = int(report.has_hash_mismatch)
    new = [v for v in report.violations if v.line() not in seen.violations]
    seen.violations |= {v.line() for v in report.violations}
    record.violations += [printable(v.line()) for v in new]
    for v in new:
        kind = f"{v.invariant}:{v.problem or '-'}"
        record.violation_kinds[kind] = record.violation_kinds.get(kind, 0) + 1
    t0 = record.started_at
    record.decided_at = sorted(
        round(m.ts - t0, 3) for m in events if _is_decision(m) and m.ts >= t0
    )
    record.first_decision_ms = record.first_decision_after_takeover_ms()


def _controls_note(load: IntentLoad, statuses: Mapping[str, Mapping[str, Any] | None]) -> str:
    """What the controls in the load came to on each instance (the `instances` invariant
    asks that they agree at the same stream position)."""
    parts = []
    for name, doc in sorted(statuses.items()):
        if doc is None:
            continue
        counts = doc.get("control_outcomes") or {}
        halts = counts.get("halt:accepted:unsigned", 0)
        risk = counts.get("risk_state:accepted:unsigned", 0)
        parts.append(
            f"{name}: {halts} halts, {risk} risk states, now {doc.get('risk_state')}"
            f"{' halted' if doc.get('is_halted') else ''}"
        )
    return (
        f"controls in the load (total): {load.controls_sent} halt/open, "
        f"{load.risk_states_sent} risk states; " + "; ".join(parts)
    )


def _injected_outcomes(injected: Mapping[int, str], decided: Mapping[int, list[int]]) -> str:
    """ "147 injected commands: 145 decided once; no decision: subject-not-utf8 (cmd 812,
    840); decided 2 times: ..." — per kind, which did not end in exactly one decision."""
    once = sum(1 for seq in injected if len(decided.get(seq, ())) == 1)
    text = f"{len(injected)} injected commands: {once} decided once"
    wrong: dict[int, dict[str, list[int]]] = {}
    for seq, kind in sorted(injected.items()):
        n = len(decided.get(seq, ()))
        if n != 1:
            wrong.setdefault(n, {}).setdefault(kind, []).append(seq)
    for n, kinds in sorted(wrong.items()):
        what = "no decision" if n == 0 else f"decided {n} times"
        text += f"; {what}: " + ", ".join(
            f"{kind} (cmd {', '.join(map(str, seqs))})" for kind, seqs in sorted(kinds.items())
        )
    return text


def _is_decision(m: RawMsg) -> bool:
    return m.subject.startswith(("titan.evt.exec.decision.", "titan.evt.exec.control."))


async def _read(js: Any, seen: Seen) -> tuple[list[RawMsg], list[RawMsg]]:
    start = seen.commands[-1].seq + 1 if seen.commands else 1
    seen.commands += await read_stream(js, "TITAN_CMD", start_seq=start)
    events = await read_stream(js, "TITAN_EVT", "titan.evt.exec.>")
    risk_states = await read_stream(js, "TITAN_EVT", "titan.evt.risk.state.v1")
    return list(seen.commands), sorted(events + risk_states, key=lambda m: m.seq)


def _run_line(r: RunRecord, runs: int) -> str:
    if r.failover_ms is not None:
        timing = f"failover {r.failover_ms:.0f} ms"
        if r.beyond_expiry_ms is not None:
            timing += f" ({r.beyond_expiry_ms:.0f} ms after the lease ran out)"
    elif r.switchover_gap_ms is not None:
        timing = f"switchover gap {r.switchover_gap_ms:.0f} ms"
    else:
        timing = "no takeover"
    verdict = "clean" if r.is_clean else f"{len(r.violations)} VIOLATIONS"
    extra = "".join(f"; {n}" for n in r.notes)
    problems = "".join(f"\n    ✗ {v}" for v in _examples(r.violations))
    if r.violation_kinds:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(r.violation_kinds.items()))
        problems = f"\n    violations by kind: {kinds}{problems}"
    injected = f" (of them {r.commands_injected} injected)" if r.commands_injected else ""
    stall = ""
    if r.loop_stall_max_ms is not None:
        stall = f"; largest loop stall of {r.leader_before} {r.loop_stall_max_ms} ms"
        if r.loop_stall_max_ms_before is not None:
            stall += f" ({r.loop_stall_max_ms_before} ms before the run)"
    return printable(
        f"[{r.scenario} {r.run}/{runs}] {r.fault or '-'}: {timing}, {r.leader_before} → "
        f"{r.leader_after or '?'}; intents {r.commands_sent} sent{injected}, "
        f"{r.commands_decided} decided, {r.commands_lost} lost, {r.commands_duplicated} twice; "
        f"fencings {r.fencings}; {_takeover_text(r)}{stall}; {verdict}{extra}{problems}"
    )


def _takeover_text(r: RunRecord) -> str:
    """ "takeovers 1 (by presence: ...)" / "takeovers 1 (by the lease)" / "takeovers 0"."""
    if not r.takeovers:
        return "takeovers 0"
    how = "presence" if r.is_presence_takeover else "the lease"
    why = f": {r.takeover_reason}" if r.takeover_reason else ""
    return f"takeovers {r.takeovers} (by {how}{why})"


def _examples(lines: Sequence[str], per_kind: int = 3) -> list[str]:
    """A few violations of each kind (a line's words without digits name its kind): the
    full list is in the JSON report, and `titan-exec verify` prints all of them."""
    out: list[str] = []
    count: dict[str, int] = {}
    for line in lines:
        key = " ".join(w for w in line.split() if not any(ch.isdigit() for ch in w))[:80]
        count[key] = count.get(key, 0) + 1
        if count[key] <= per_kind:
            out.append(line)
    return out


def all_runs(results: Sequence[ScenarioResult]) -> list[RunRecord]:
    return [r for res in results for r in res.runs]


def main_exit_code(results: Sequence[ScenarioResult]) -> int:
    return 0 if all(res.row.is_clean for res in results) else 1
