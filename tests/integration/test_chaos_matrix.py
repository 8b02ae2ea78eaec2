"""The chaos matrix, CI-sized (issue 5): every scenario twice on its own real topology
(three clustered nats-servers, the venue simulator, the pair as processes, lease 2 s,
20 signed intents/s), with the invariants checked after each run from the raw streams
and the venue. The long run (20 runs per scenario, with the report) is `make chaos`.

And the proof that the checker can fail: the deliberately broken build (epoch fencing
disabled in both instances) paused past its lease must be caught — events written by the
deposed active after the new epoch's marker.

Nothing here is timed against a bound: the figures are printed (`-s`), the README quotes
the long run's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from titan_exec.chaos.report import render_table
from titan_exec.chaos.runner import ChaosSettings, run_matrix
from titan_exec.chaos.scenarios import SCENARIOS

pytestmark = pytest.mark.integration

CI_RUNS = 2


@pytest.mark.timeout(420)
@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_scenario(name: str, tmp_path: Path) -> None:
    settings = ChaosSettings(scenarios=(name,), runs=CI_RUNS, work_dir=tmp_path)
    (result,) = await run_matrix(settings)
    row = result.row
    print("\n" + render_table([row]))
    problems = [f"run {r.run}: {v}" for r in result.runs for v in r.violations]
    assert not problems, "\n".join(problems)
    assert row.runs == CI_RUNS
    assert row.commands_sent > 0
    assert row.commands_sent == row.commands_decided
    assert row.is_clean, row
    scenario = SCENARIOS[name]
    for r in result.runs:
        assert r.fault, f"run {r.run}: no fault was injected"
        if scenario.expects == "failover":
            assert r.leader_after != r.leader_before, f"run {r.run}: the lead did not move"
            measured = r.switchover_gap_ms if scenario.is_planned else r.failover_ms
            assert measured is not None, f"run {r.run}: no takeover moment measured"
        if scenario.expects == "stay":
            assert r.leader_after == r.leader_before, f"run {r.run}: {r.notes}"


@pytest.mark.timeout(300)
def test_cli_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "titan_exec", "chaos", "kill-active", "--runs", "1",
         "--report", str(out)],
        capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "kill-active" in proc.stdout
    assert "target: failover p99 after kill -9" in proc.stdout
    doc = json.loads((out / "chaos.json").read_text())
    assert [row["scenario"] for row in doc["rows"]] == ["kill-active"]
    assert len(doc["runs"]) == 1
    assert (out / "timeline-kill-active.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| kill-active |" in (out / "chaos.md").read_text()


@pytest.mark.timeout(300)
def test_the_checker_catches_the_broken_build(tmp_path: Path) -> None:
    """Fencing disabled, the active paused for twice the lease: when it resumes it still
    believes it leads and writes under its old epoch after the backup's marker."""
    proc = subprocess.run(
        [sys.executable, "-m", "titan_exec", "chaos", "pause-long", "--runs", "1",
         "--unsafe-disable-fencing", "--work-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    out = proc.stdout
    print(out[-4000:])
    assert proc.returncode == 1, out[-3000:] + proc.stderr[-3000:]
    assert "VIOLATIONS" in out
    assert "epochs:deposed_epoch" in out, out[-3000:]
    assert "is deposed" in out, out[-3000:]
