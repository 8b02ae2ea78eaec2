"""The chaos report: the table (terminal and Markdown), `chaos.json`, the timeline PNGs and the
figures behind them (nearest-rank percentiles, a scenario's sums, the representative run)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from titan_exec_lab.chaos.model import RoleSample, RunRecord, ScenarioRow, Spread, percentile
from titan_exec_lab.chaos.report import (
    markdown_table,
    plot_file_name,
    plot_timeline,
    render_table,
    representative_run,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk (the first chunk, right after the signature)."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def make_run(
    scenario: str,
    run: int,
    *,
    failover_ms: float | None = None,
    gap_ms: float | None = None,
    lost: int = 0,
    violations: list[str] | None = None,
) -> RunRecord:
    """A 10 s run at 40 decisions/s: primary active, a fault at 4 s, the backup active after
    the failover (or the gap), no decisions in between, the primary back as standby."""
    fault_at = 4.0
    pause_s = (failover_ms if failover_ms is not None else gap_ms or 0.0) / 1000
    takeover_at = fault_at + pause_s
    decided = [i / 40 for i in range(400) if not fault_at <= i / 40 < takeover_at]
    roles = [
        RoleSample(0.0, "primary", "starting"),
        RoleSample(0.0, "backup", "starting"),
        RoleSample(0.5, "primary", "active"),
        RoleSample(0.7, "backup", "standby"),
        RoleSample(fault_at + 0.1, "primary", "down" if failover_ms is not None else "draining"),
        RoleSample(takeover_at - 0.1, "backup", "promoting"),
        RoleSample(takeover_at, "backup", "active"),
        RoleSample(takeover_at + 1.5, "primary", "standby"),
    ]
    return RunRecord(
        scenario=scenario,
        run=run,
        started_at=1_700_000_000.0 + 100 * run,
        lease_ms=1500,
        fault="kill -9 primary (active)" if failover_ms is not None else "switchover",
        fault_at=fault_at,
        recovered_at=fault_at + 3.0 if failover_ms is not None else None,
        takeover_at=takeover_at,
        leader_before="primary",
        leader_after="backup",
        failover_ms=failover_ms,
        switchover_gap_ms=gap_ms,
        first_decision_ms=(pause_s * 1000 + 20) if pause_s else None,
        commands_sent=len(decided) + lost,
        commands_decided=len(decided),
        commands_lost=lost,
        fencings=1 if failover_ms is not None else 0,
        violations=violations or [],
        roles=roles,
        decided_at=decided,
    )


KILL_MS = [1900.0, 2100.0, 2000.0, 2500.0, 1800.0]
GAP_MS = [120.0, 95.0, 300.0]


def kill_runs() -> list[RunRecord]:
    return [make_run("kill-primary", i + 1, failover_ms=ms) for i, ms in enumerate(KILL_MS)]


def switchover_runs(*, lost_in_run: int | None = None) -> list[RunRecord]:
    return [
        make_run(
            "switchover",
            i + 1,
            gap_ms=ms,
            lost=1 if i + 1 == lost_in_run else 0,
            violations=["command c-17 sent and never decided"] if i + 1 == lost_in_run else None,
        )
        for i, ms in enumerate(GAP_MS)
    ]


META: dict[str, Any] = {
    "date": "2026-05-01T12:00:00Z",
    "machine": "test-host (8 cpu)",
    "command": "titan-exec chaos --runs 5 --report out",
    "lease_ms": 1500,
    "intent_rate": 40,
    "runs_per_scenario": 5,
    "total_s": 312.4,
}


# --- the model's figures -------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    twenty = [float(v) for v in range(1, 21)]
    assert percentile(twenty, 99) == 20.0  # rank ceil(19.8) = 20: the max
    assert percentile(twenty, 50) == 10.0  # rank 10
    assert percentile(twenty, 95) == 19.0  # rank 19
    assert percentile(twenty, 0) == 1.0  # rank at least 1
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0  # sorted first
    hundred = [float(v) for v in range(1, 101)]
    assert percentile(hundred, 99) == 99.0  # an observed value, not interpolated
    with pytest.raises(ValueError, match="nothing"):
        percentile([], 50)


def test_spread_of() -> None:
    s = Spread.of(KILL_MS)
    assert s == Spread(n=5, min=1800.0, p50=2000.0, p99=2500.0, max=2500.0)
    assert s.text() == "1800 / 2000 / 2500 / 2500"
    assert Spread.of([]) is None
    assert Spread.of([7.0]) == Spread(1, 7.0, 7.0, 7.0, 7.0)


def test_scenario_row_sums() -> None:
    runs = switchover_runs(lost_in_run=2)
    runs[0].commands_duplicated = 2
    runs[1].venue_duplicates = 1
    runs[2].hash_mismatches = 1
    runs[2].fencings = 3
    runs[2].leader_after = "primary"  # this one did not move the lead
    row = ScenarioRow.of("switchover", runs)
    assert row.runs == 3
    assert row.failovers == 2
    assert row.failover_ms is None
    assert row.switchover_gap_ms == Spread(3, 95.0, 120.0, 300.0, 300.0)
    assert row.commands_sent == sum(r.commands_sent for r in runs)
    assert row.commands_decided == sum(len(r.decided_at) for r in runs)
    assert row.commands_sent - row.commands_decided == 1
    assert row.commands_lost == 1
    assert row.commands_duplicated == 2
    assert row.venue_duplicates == 1
    assert row.hash_mismatches == 1
    assert row.fencings == 3
    assert row.violations == 1
    assert not row.is_clean
    assert ScenarioRow.of("kill-primary", kill_runs()).is_clean


# --- the representative run ----------------------------------------------------------------


def test_representative_run_is_closest_to_the_median_failover() -> None:
    runs = kill_runs()  # median (nearest rank) 2000 ms: run 3
    assert representative_run(runs).run == 3
    runs[2].failover_ms = 2040.0  # median now 2040: still run 3
    assert representative_run(runs).run == 3


def test_representative_run_falls_back_to_gap_then_first() -> None:
    assert representative_run(switchover_runs()).run == 1  # gaps 120/95/300: median 120
    unmeasured = [make_run("restart-standby", i) for i in (4, 5, 6)]
    assert representative_run(unmeasured).run == 4
    with pytest.raises(ValueError, match="no runs"):
        representative_run([])


def test_representative_run_skips_runs_without_a_figure() -> None:
    runs = [make_run("mixed", 1), *kill_runs()[:3]]  # run 1 has no failover time
    runs[1].run, runs[2].run, runs[3].run = 2, 3, 4  # failovers 1900, 2100, 2000
    assert representative_run(runs).run == 4


# --- the tables ----------------------------------------------------------------------------


def rows_for(runs: list[RunRecord]) -> list[ScenarioRow]:
    scenarios = list(dict.fromkeys(r.scenario for r in runs))
    return [ScenarioRow.of(s, [r for r in runs if r.scenario == s]) for s in scenarios]


def test_render_table() -> None:
    rows = rows_for([*kill_runs(), *switchover_runs(lost_in_run=2)])
    text = render_table(rows)
    lines = text.splitlines()
    assert len(lines) == 8  # header, rule, two scenarios, a blank line, the legend (3 lines)
    assert lines[4] == ""
    assert lines[5].startswith("failover ms, gap ms")
    assert lines[0].startswith("scenario")
    for word in ("runs", "failovers", "failover ms", "gap", "lost", "venue dup", "result"):
        assert word in lines[0]
    assert set(lines[1]) <= {"-", " "}
    kill, switch = lines[2], lines[3]
    assert kill.startswith("kill-primary")
    assert "1800 / 2000 / 2500 / 2500" in kill
    assert kill.endswith("PASS")
    assert switch.startswith("switchover")
    assert "95 / 120 / 300 / 300" in switch
    assert switch.endswith("FAIL")
    # Fixed width: the columns line up, so the result column starts at the same place.
    assert len({len(line) for line in lines[:2]}) == 1
    assert kill.rindex("PASS") == switch.rindex("FAIL")
    # A scenario without failovers shows "-" in the failover column.
    assert " - " in switch


def test_markdown_table() -> None:
    rows = rows_for([*kill_runs(), *switchover_runs()])
    lines = markdown_table(rows).splitlines()
    assert len(lines) == 4
    assert lines[1].startswith("| :---")
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:5] == ["kill-primary", "5", "5", "1800 / 2000 / 2500 / 2500", "-"]
    assert cells[-1] == "PASS"
    assert len(cells) == len([c for c in lines[0].strip("|").split("|")])


def test_markdown_table_escapes_pipes() -> None:
    row = ScenarioRow.of("a|b", kill_runs())
    assert "a\\|b" in markdown_table([row])


# --- the report ----------------------------------------------------------------------------


def test_write_report(tmp_path: Path) -> None:
    runs = [*kill_runs(), *switchover_runs(lost_in_run=3)]
    rows = rows_for(runs)
    out = tmp_path / "report"
    paths = write_report(out, rows, runs, META)

    names = [p.name for p in paths]
    assert names == [
        "chaos.md",
        "chaos.json",
        "timeline-kill-primary.png",
        "timeline-switchover.png",
    ]
    assert all(p.is_file() and p.parent == out for p in paths)

    for png in paths[2:]:
        data = png.read_bytes()
        width, height = png_size(data)
        assert (width, height) == (1000, 500)  # 10 x 5 in at 100 dpi
        assert 10_000 < len(data) < 400_000

    md = (out / "chaos.md").read_text()
    assert md.startswith("# Chaos matrix\n")
    for shown in (
        "- date: 2026-05-01T12:00:00Z",
        "- machine: test-host (8 cpu)",
        "- command line: `titan-exec chaos --runs 5 --report out`",
        "- lease: 1500 ms",
        "- intent rate: 40 intents/s",
        "- runs per scenario: 5",
        "- total time: 5.2 min (312 s)",
    ):
        assert shown in md
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 4
    kill = [c.strip() for c in table[2].strip("|").split("|")]
    switch = [c.strip() for c in table[3].strip("|").split("|")]
    assert kill[0] == "kill-primary"
    assert kill[3].split(" / ")[2] == "2500"  # the p99 of five values: the max
    assert kill[-1] == "PASS"
    assert switch[0] == "switchover"
    assert switch[4] == "95 / 120 / 300 / 300"
    assert switch[7] == "1"  # lost
    assert switch[-1] == "FAIL"
    assert "Result: **FAIL**" in md
    assert "## Violations" in md
    assert "- **switchover** run 3: 1 command(s) lost" in md
    assert "- **switchover** run 3: command c-17 sent and never decided" in md
    assert "run 1:" not in md.split("## Violations")[1].split("## Timelines")[0]
    assert "[timeline-kill-primary.png](timeline-kill-primary.png)" in md
    assert "![switchover, run 1](timeline-switchover.png)" in md
    assert "Run 3 (failover 2000 ms" in md

    doc = json.loads((out / "chaos.json").read_text())
    assert doc["meta"] == META
    assert doc["rows"] == [r.to_doc() for r in rows]
    assert len(doc["runs"]) == len(runs)
    assert doc["runs"] == [r.to_doc() for r in runs]
    back = [RunRecord(**{**d, "roles": [RoleSample(**s) for s in d["roles"]]}) for d in doc["runs"]]
    assert back == runs


def test_write_report_all_clean(tmp_path: Path) -> None:
    runs = [*kill_runs(), *switchover_runs()]
    write_report(tmp_path, rows_for(runs), runs, {"date": "today", "seed": 7})
    md = (tmp_path / "chaos.md").read_text()
    assert "Result: **PASS**" in md
    assert "## Violations" not in md
    assert "- seed: 7" in md  # unknown keys are listed too


def test_plot_timeline_without_data(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "empty.png"
    plot_timeline(RunRecord(scenario="idle", run=1, started_at=0.0, lease_ms=1500), path)
    assert png_size(path.read_bytes()) == (1000, 500)


def test_plot_file_name() -> None:
    assert plot_file_name("kill-primary") == "timeline-kill-primary.png"
    assert plot_file_name("partition primary/nats") == "timeline-partition-primary-nats.png"
    assert plot_file_name("///") == "timeline-scenario.png"


def test_service_does_not_import_matplotlib() -> None:
    source = (
        Path(__file__).resolve().parents[2] / "src" / "titan_exec_lab" / "chaos" / "report.py"
    ).read_text()
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in top_level if "matplotlib" in line]


def test_compact_roles_keeps_first_changes_and_last() -> None:
    from titan_exec_lab.chaos.model import compact_roles

    samples = [
        RoleSample(0.0, "a", "active"),
        RoleSample(0.0, "b", "standby"),
        RoleSample(0.1, "a", "active"),
        RoleSample(0.1, "b", "standby"),
        RoleSample(0.2, "a", "down"),
        RoleSample(0.2, "b", "active"),
        RoleSample(0.3, "a", "down"),
        RoleSample(0.3, "b", "active"),
        RoleSample(0.4, "b", "active"),
    ]
    assert compact_roles(samples) == [
        RoleSample(0.0, "a", "active"),
        RoleSample(0.0, "b", "standby"),
        RoleSample(0.2, "a", "down"),
        RoleSample(0.2, "b", "active"),
        RoleSample(0.3, "a", "down"),
        RoleSample(0.4, "b", "active"),
    ]
