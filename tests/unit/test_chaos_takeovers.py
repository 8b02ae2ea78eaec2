"""The chaos matrix's takeover counts (who became active while another led, and whether
presence or the lease started it), the targets evaluated over a run's records, and the
partition proxy's held black hole (a killed client's close not passed to the server)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from titan_exec_lab.chaos.model import (
    LeaseWrite,
    RunRecord,
    ScenarioRow,
    Takeover,
    Transition,
    is_presence_reason,
    lease_expiry,
    takeovers,
)
from titan_exec_lab.chaos.netproxy import PartitionProxy
from titan_exec_lab.chaos.report import (
    markdown_table,
    render_table,
    takeover_summary,
    write_report,
)
from titan_exec_lab.chaos.targets import evaluate

LEASE = "standby: lease expired (holder primary, revision 7): campaigning"
PRESENCE = "standby: presence: no responders from primary 3 times: campaigning"


def tr(at: float, instance: str, before: str, after: str, reason: str = "") -> Transition:
    return Transition(at, instance, before, after, reason)


def takeover_by(instance: str, start: float, reason: str) -> list[Transition]:
    """An instance's way up: standby → candidate → promoting → active, 0.1 s apart."""
    return [
        tr(start, instance, "standby", "candidate", reason),
        tr(start + 0.1, instance, "candidate", "promoting", "candidate: lease won"),
        tr(start + 0.2, instance, "promoting", "active", "promoting: intake open"),
    ]


# --- takeovers -----------------------------------------------------------------------------


def test_a_crash_is_one_takeover_started_by_the_lease() -> None:
    seen = takeovers("primary", takeover_by("backup", 12.0, LEASE), since=10.0)
    assert seen == [Takeover(12.2, "backup", LEASE)]
    assert not seen[0].is_by_presence


def test_a_presence_started_takeover_is_told_apart() -> None:
    (seen,) = takeovers("primary", takeover_by("backup", 12.0, PRESENCE), since=10.0)
    assert seen.is_by_presence
    assert is_presence_reason("presence: no responders")  # as published without a prefix
    assert is_presence_reason(PRESENCE)  # with the core's role prefix
    assert not is_presence_reason("standby: lease expired; presence: timed out")
    assert not is_presence_reason("")


def test_the_candidacy_that_counts_is_the_last_before_becoming_active() -> None:
    """A candidacy that failed (back to standby) and a later one by presence: the takeover
    is the later one's."""
    trans = [
        tr(11.0, "backup", "standby", "candidate", LEASE),
        tr(11.2, "backup", "candidate", "standby", "candidate: lease taken"),
        *takeover_by("backup", 12.0, PRESENCE),
        tr(9.0, "backup", "standby", "candidate", "before the run"),
    ]
    (seen,) = takeovers("primary", trans, since=10.0)
    assert seen.reason == PRESENCE


def test_the_same_instance_active_again_is_no_takeover() -> None:
    """An active that fenced and won the lease back keeps the lead: nothing moved."""
    trans = [
        tr(11.0, "primary", "active", "fenced", "active: loop stalled"),
        tr(11.5, "primary", "fenced", "standby", ""),
        *takeover_by("primary", 13.0, LEASE),
    ]
    assert takeovers("primary", trans, since=10.0) == []


def test_a_lead_that_moves_and_comes_back_is_two_takeovers() -> None:
    trans = [*takeover_by("backup", 12.0, LEASE), *takeover_by("primary", 20.0, PRESENCE)]
    seen = takeovers("primary", trans, since=10.0)
    assert [(t.instance, t.is_by_presence) for t in seen] == [("backup", False), ("primary", True)]


def test_transitions_before_the_run_do_not_count() -> None:
    assert takeovers("primary", takeover_by("backup", 5.0, LEASE), since=10.0) == []


def test_a_poll_finds_a_takeover_whose_transition_was_missed() -> None:
    polled = [
        (10.0, "primary", "active"),
        (10.0, "backup", "standby"),
        (12.0, "primary", "down"),
        (12.0, "backup", "promoting"),
        (12.05, "backup", "active"),
        (12.1, "backup", "active"),
    ]
    assert takeovers("primary", [], polled, since=10.0) == [Takeover(12.05, "backup", "")]
    # with the transition seen too: one takeover, at the earlier moment, with its reason
    (seen,) = takeovers("primary", takeover_by("backup", 11.8, LEASE), polled, since=10.0)
    assert seen == Takeover(12.0, "backup", LEASE)


def test_an_old_active_answering_once_on_waking_is_no_takeover() -> None:
    """pause-long: the paused primary's /status says "active" once on SIGCONT, before its
    loop fences it; it never became active again (it published active → fenced)."""
    polled = [
        (10.0, "primary", "active"),
        (10.0, "backup", "standby"),
        (11.0, "primary", "down"),
        (12.3, "backup", "active"),
        (15.0, "primary", "active"),
        (15.05, "primary", "fenced"),
    ]
    trans = takeover_by("backup", 12.0, LEASE)
    seen = takeovers("primary", trans, polled, since=10.0)
    assert [t.instance for t in seen] == ["backup"]
    # and an instance's very first poll (no role known before it) is no change either
    assert takeovers("primary", [], [(10.0, "backup", "active")], since=10.0) == []


def test_a_record_counts_its_takeovers() -> None:
    record = RunRecord("kill-active", 1, 0.0, 5000)
    record.count_takeovers(takeovers("primary", takeover_by("backup", 12.0, PRESENCE)))
    assert (record.takeovers, record.presence_takeovers) == (1, 1)
    assert record.takeover_reason == PRESENCE and record.is_presence_takeover
    doc = record.to_doc()
    assert doc["takeovers"] == 1 and doc["presence_takeovers"] == 1
    record.count_takeovers([])
    assert (record.takeovers, record.takeover_reason, record.is_presence_takeover) == (0, "", False)


# --- the lease's expiry --------------------------------------------------------------------


def put(at: float, holder: str) -> LeaseWrite:
    return LeaseWrite(at, holder, "put")


def test_the_lease_runs_out_a_lease_after_its_holders_last_write() -> None:
    writes = [put(10.0, "primary"), put(11.7, "primary"), put(13.4, "primary"), put(18.5, "backup")]
    assert lease_expiry(writes, "primary", before=18.6, lease_ms=5000) == 18.4
    # a renewal sent but cut off never reached the harness either: the last one seen counts
    assert lease_expiry(writes[:2], "primary", before=30.0, lease_ms=5000) == 16.7
    assert lease_expiry(writes, "backup", before=18.0, lease_ms=5000) is None  # not yet
    assert lease_expiry([], "primary", before=18.0, lease_ms=5000) is None


def test_a_release_ends_the_lease_at_once() -> None:
    """pause-short: the active wakes, sees its stall, fences and releases the lease."""
    writes = [put(10.0, "primary"), LeaseWrite(12.6, "", "del"), put(12.65, "backup")]
    assert lease_expiry(writes, "primary", before=12.7, lease_ms=5000) == 12.6
    # a delete before the holder wrote anything is not its release
    early = [LeaseWrite(9.0, "", "del"), put(10.0, "primary")]
    assert lease_expiry(early, "primary", before=20.0, lease_ms=2000) == 12.0


def test_a_write_after_the_takeover_does_not_count() -> None:
    """pause-long: the old active's renewal attempts on waking come after the takeover."""
    writes = [put(10.0, "primary"), put(16.0, "backup"), put(20.0, "primary")]
    assert lease_expiry(writes, "primary", before=16.2, lease_ms=5000) == 15.0
    assert lease_expiry(writes, "primary", before=25.0, lease_ms=5000) == 15.0


# --- the table and the report --------------------------------------------------------------


def run(
    scenario: str,
    n: int,
    *,
    moved: int = 0,
    presence: int = 0,
    failover_ms: float | None = None,
    first_decision_ms: float | None = None,
    lease_ms: int = 5000,
) -> RunRecord:
    r = RunRecord(scenario, n, 0.0, lease_ms, leader_before="primary", leader_after="primary")
    r.takeovers, r.presence_takeovers = moved, presence
    r.failover_ms, r.first_decision_ms = failover_ms, first_decision_ms
    if moved % 2:
        r.leader_after = "backup"
    return r


def test_the_row_sums_takeovers_and_shows_them() -> None:
    runs = [run("kill-active", 1, moved=1), run("kill-active", 2, moved=2, presence=1)]
    row = ScenarioRow.of("kill-active", runs)
    assert (row.takeovers, row.takeovers_max, row.presence_takeovers) == (3, 2, 1)
    assert ScenarioRow.of("none", []).takeovers_max == 0
    lines = render_table([row]).splitlines()
    assert "takeovers" in lines[0] and "presence" in lines[0]
    assert " 3 / 2 " in lines[2]
    assert any(line.startswith("takeovers: the lead moving") for line in lines)
    md = markdown_table([row]).splitlines()
    header = [c.strip() for c in md[0].strip("|").split("|")]
    cells = [c.strip() for c in md[2].strip("|").split("|")]
    assert cells[header.index("takeovers (total / most in a run)")] == "3 / 2"
    assert cells[header.index("takeovers by presence")] == "1"


def test_the_takeover_summary_says_zero_and_at_most_one() -> None:
    rows = [
        ScenarioRow.of("venue-invisible", [run("venue-invisible", i) for i in (1, 2)]),
        ScenarioRow.of("kill-active", [run("kill-active", i, moved=1) for i in (1, 2)]),
    ]
    expects = {"venue-invisible": "stay", "kill-active": "failover"}
    assert takeover_summary(rows, expects) == [
        "- stay scenarios (venue-invisible): zero takeovers — 0 takeovers in 2 runs",
        "- failover scenarios (kill-active): at most one takeover per run (per crash) — "
        "2 takeovers in 2 runs",
        "- takeovers started by presence: 0 of 2",
    ]
    bad = [ScenarioRow.of("venue-invisible", [run("venue-invisible", 1, moved=1)])]
    (line, _) = takeover_summary(bad, expects)
    assert "NOT zero takeovers: venue-invisible (up to 1)" in line


def test_the_report_lists_takeovers_and_targets(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    runs = [run("kill-active", 1, moved=1, failover_ms=5200.0, first_decision_ms=5230.0)]
    rows = [ScenarioRow.of("kill-active", runs)]
    targets = texts(runs)
    write_report(tmp_path, rows, runs, {}, targets=targets, expects={"kill-active": "failover"})
    md = (tmp_path / "chaos.md").read_text()
    takeovers_part = md.split("## Takeovers\n\n")[1].split("\n\n")[0].splitlines()
    assert takeovers_part == [
        "- failover scenarios (kill-active): at most one takeover per run (per crash) — "
        "1 takeover in 1 run",
        "- takeovers started by presence: 0 of 1",
    ]
    targets_part = md.split("## Targets\n\n")[1].split("\n\n")[0].splitlines()
    assert targets_part == [f"- {t}" for t in targets] and len(targets) == 2
    doc = json.loads((tmp_path / "chaos.json").read_text())
    assert doc["targets"] == targets
    assert doc["runs"][0]["takeovers"] == 1 and doc["rows"][0]["takeovers_max"] == 1


# --- the targets ---------------------------------------------------------------------------


def texts(runs: list[RunRecord], lease_ms: int = 5000) -> list[str]:
    return [t.text() for t in evaluate(runs, lease_ms)]


def test_first_decision_after_a_kill_against_300_and_150_ms() -> None:
    fast = [
        run("kill-active", i, moved=1, first_decision_ms=ms)
        for i, ms in enumerate([90.0, 140.0, 280.0], 1)
    ]
    got = evaluate(fast, 5000)
    (first,) = [t for t in got if t.goal.startswith("kill-active: the kill")]
    assert first.is_met is True
    assert first.measured == "p50 140 ms, p99 280 ms over 3 runs"
    slow_median = [
        run("kill-during-catchup", i, first_decision_ms=ms)
        for i, ms in enumerate([160.0, 170.0, 200.0], 1)
    ]
    (t,) = evaluate(slow_median, 5000)
    assert t.is_met is False  # p99 within 300 ms, the median not within 150
    assert t.text().endswith("— MISSED")


def test_the_kill_target_at_the_lease_path_today() -> None:
    """The lease path: ~5.1 s to the first decision at a 5 s lease — missed, said so."""
    runs = [run("kill-active", 1, moved=1, failover_ms=5200.0, first_decision_ms=5230.0)]
    lines = texts(runs)
    assert lines[0] == (
        "target: failover p99 after kill -9 ≤ lease + 1 s (6000 ms): p50 5200 ms, p99 5200 ms "
        "over 1 run — MET"
    )
    assert lines[1].startswith("target: kill-active: the kill → the new active's first decision")
    assert lines[1].endswith("p50 5230 ms, p99 5230 ms over 1 run — MISSED")


def test_failover_beyond_the_lease_per_lease_bound_scenario() -> None:
    runs = [
        run("pause-long", 1, moved=1, failover_ms=5250.0),
        run("pause-long", 2, moved=1, failover_ms=5100.0),
        run("partition-active", 1, moved=1, failover_ms=5400.0),
        run("kill-active-host", 1, moved=1),  # no failover measured
        run("kill-active-host", 2, moved=1, failover_ms=2200.0, lease_ms=2000),
    ]
    runs[0].beyond_expiry_ms, runs[1].beyond_expiry_ms = 120.0, 310.0
    got = evaluate(runs, 5000)
    by_goal = {t.goal.split(":")[0]: t for t in got if "failover time − the lease" in t.goal}
    expiry = {t.goal.split(":")[0]: t for t in got if "the lease's expiry" in t.goal}
    assert set(by_goal) == set(expiry) == {"pause-long", "partition-active", "kill-active-host"}
    assert expiry["pause-long"].is_met is False  # 310 ms after the expiry: missed
    assert expiry["pause-long"].measured == "p50 120 ms, p99 310 ms over 2 runs"
    assert expiry["partition-active"].is_met is None  # no renewal seen: not measured
    assert by_goal["pause-long"].is_met is True
    assert by_goal["pause-long"].measured == "p50 100 ms, p99 250 ms over 2 runs"
    assert by_goal["partition-active"].is_met is False
    assert by_goal["kill-active-host"].measured == (
        "p50 200 ms, p99 200 ms over 1 run (1 run without a measurement)"
    )  # each run's own lease
    nothing = evaluate([run("kill-active-host", 1)], 5000)
    assert [t.is_met for t in nothing] == [None, None]
    assert nothing[0].text().endswith("no run measured it (1 run) — NOT MEASURED")


def test_no_takeover_where_the_lead_stays_nor_by_presence_in_a_pause() -> None:
    runs = [
        run("standby-restart", 1),
        run("venue-error-burst", 1),
        run("listen-key-expired", 1, moved=1),
        run("pause-short", 1, moved=1),
        run("pause-long", 1, moved=1, presence=1),
        run("kill-nats-node", 1, moved=1),  # "either": no such target
    ]
    stays, presence = [t for t in evaluate(runs, 5000) if "takeovers" in t.goal]
    assert stays.goal.startswith(
        "takeovers where the lead stays (standby-restart, venue-error-burst, listen-key-expired)"
    )
    assert (stays.is_met, stays.measured) == (False, "1 in 3 runs (listen-key-expired run 1)")
    assert presence.goal == "takeovers started by presence (pause-short, pause-long) = 0"
    assert (presence.is_met, presence.measured) == (False, "1 in 2 runs (pause-long run 1)")
    clean = [run("standby-restart", 1), run("pause-short", 1, moved=1)]
    assert all(t.is_met for t in evaluate(clean, 5000))


def test_targets_of_scenarios_that_did_not_run_are_left_out() -> None:
    assert evaluate([], 5000) == []
    assert evaluate([run("kill-nats-node", 1, moved=1)], 5000) == []


# --- the held black hole -------------------------------------------------------------------


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """The server side saw the client go (EOF or reset) within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


@pytest.mark.parametrize("hold", [True, False])
async def test_a_client_closing_behind_a_cut_is_held_open_towards_the_server(
    hold: bool,
) -> None:
    accepted: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []

    async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        writers.append(w)
        await accepted.put(r)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with PartitionProxy("127.0.0.1", port) as proxy:
            host, proxy_port = proxy.url.rsplit("//", 1)[1].rsplit(":", 1)
            _, cw = await asyncio.open_connection(host, int(proxy_port))
            upstream = await asyncio.wait_for(accepted.get(), 5)
            cw.write(b"PING\r\n")
            await cw.drain()
            assert await asyncio.wait_for(upstream.readexactly(6), 5) == b"PING\r\n"
            proxy.cut(hold=hold)
            cw.write(b"dropped\r\n")
            cw.transport.abort()  # the client's process killed: its kernel closes the socket
            if hold:
                assert not await _closed_within(upstream, 0.5)  # still connected, silent
                writers[0].write(b"PING\r\n")  # the server can still write into it
                await writers[0].drain()
                proxy.heal()
                assert await _closed_within(upstream, 2)  # the heal lets the server know
            else:
                assert await _closed_within(upstream, 2)  # a plain cut passes the close on
    finally:
        for w in writers:
            with contextlib.suppress(Exception):
                w.transport.abort()
        server.close()
        await server.wait_closed()
