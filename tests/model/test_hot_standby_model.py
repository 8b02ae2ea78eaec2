"""The hot-standby protocol model (`model/hot_standby.pml`), checked by the SPIN model checker.

Each check runs the real tools in a temporary directory: ``spin -a`` writes the verifier
(pan.c), gcc compiles it, ``./pan -N <property>`` searches the whole state space. The
correct model must hold every property over more than a floor of states (a model that
does nothing cannot pass); the witnesses, the deliberately broken variants and their
properties must fail, with a trail that ``spin -t`` replays to the violated property.

SPIN is Debian's package `spin` (6.5.2): ``make tools`` or ``.ci/run`` installs it. A
missing spin or gcc fails these tests (it never skips them).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "model" / "hot_standby.pml"
STATES_FLOOR = 100_000  # the correct model explores ~340 000 (safety), ~470 000 (liveness)
PAN_FLAGS = ("-m10000", "-w20")  # search depth bound (reached: < 200), 2^20 hash slots
TOOL_TIMEOUT_S = 150


@dataclass(frozen=True)
class PanRun:
    output: str
    errors: int
    states: int
    trail: Path | None


def _require(tool: str, fix: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: {fix}", pytrace=False)
    return path


@pytest.fixture(scope="module")
def tools() -> tuple[str, str]:
    spin = _require(
        "spin",
        "install the SPIN model checker (Debian: `apt-get install spin`, or `make tools`)",
    )
    gcc = _require("gcc", "install a C compiler (Debian: `apt-get install gcc`)")
    return spin, gcc


class Verifiers:
    """One compiled pan per variant, built on first use in a module-wide temp dir."""

    def __init__(self, root: Path, spin: str, gcc: str) -> None:
        self.root = root
        self.spin = spin
        self.gcc = gcc
        self._built: dict[str, Path] = {}
        self._runs = 0

    def _defines(self, variant: str | None) -> list[str]:
        return [f"-D{variant}"] if variant else []

    def build(self, variant: str | None) -> Path:
        key = variant or "correct"
        if key not in self._built:
            work = self.root / key
            work.mkdir()
            shutil.copy(MODEL, work / MODEL.name)
            _run([self.spin, "-a", *self._defines(variant), MODEL.name], work)
            # -O1: compiles in a few seconds and searches nearly as fast as -O2
            _run([self.gcc, "-O1", "-w", "-DNFAIR=6", "-o", "pan", "pan.c"], work)
            self._built[key] = work / "pan"
        return self._built[key]

    def check(self, variant: str | None, prop: str) -> PanRun:
        pan = self.build(variant)
        self._runs += 1
        run_dir = self.root / f"run{self._runs}-{prop}"  # its own trail file
        run_dir.mkdir()
        shutil.copy(MODEL, run_dir / MODEL.name)
        liveness = ["-a", "-f"] if prop == "liveness" else []
        out = _run([str(pan), *PAN_FLAGS, *liveness, "-N", prop], run_dir)
        assert "max search depth too small" not in out, out  # the search must be complete
        errors = re.search(r"errors: (\d+)", out)
        states = re.search(r"(\d+(?:\.\d+)?(?:e\+\d+)?) states, stored", out)
        assert errors and states, f"unexpected pan output:\n{out}"
        trail = run_dir / f"{MODEL.name}.trail"
        return PanRun(out, int(errors[1]), int(float(states[1])), trail if trail.exists() else None)

    def replay(self, variant: str | None, run: PanRun) -> str:
        assert run.trail is not None
        return _run([self.spin, "-t", *self._defines(variant), MODEL.name], run.trail.parent)


def _run(cmd: list[str], cwd: Path) -> str:
    done = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{out}"
    return out


@pytest.fixture(scope="module")
def verifiers(tmp_path_factory: pytest.TempPathFactory, tools: tuple[str, str]) -> Verifiers:
    return Verifiers(tmp_path_factory.mktemp("spin"), *tools)


# ------------------------------------------------------------------ the correct model


@pytest.mark.parametrize("prop", ["safety1", "safety2", "safety3", "liveness"])
def test_the_protocol_holds_every_property(verifiers: Verifiers, prop: str) -> None:
    run = verifiers.check(None, prop)
    assert run.errors == 0, run.output
    assert run.trail is None
    assert run.states > STATES_FLOOR, f"only {run.states} states: the model does too little"
    if prop == "liveness":
        assert re.search(r"acceptance\s+cycles\s+\+ \(fairness enabled\)", run.output), run.output


@pytest.mark.parametrize(
    ("prop", "flag", "scenario"),
    [
        ("witness_two_active", "role[0]==2", "writes epoch marker 2"),
        ("witness_stale_write", "stale_write", "venue accepts order"),
        ("witness_wrong_presence", "wrong_presence", "no responders (a node blip, holder alive)"),
    ],
)
def test_the_model_reaches_the_dangerous_situations(
    verifiers: Verifiers, prop: str, flag: str, scenario: str
) -> None:
    """Two live actives, a stale leader's venue write landing after a newer epoch, and a
    wrong presence takeover all happen in the model: the safety properties are not true
    merely because the model never gets there."""
    run = verifiers.check(None, prop)
    assert run.errors >= 1 and run.trail is not None, run.output
    replay = verifiers.replay(None, run)
    assert "text of failed assertion" in replay and flag in replay, replay
    assert scenario in replay, replay


# ------------------------------------------------------------- the broken variants


@pytest.mark.parametrize(
    ("variant", "prop", "violated", "scenario"),
    [
        ("BROKEN_NO_EPOCH_MARKER", "safety1", "split", "(BROKEN: no marker)"),
        ("BROKEN_NO_EPOCH_MARKER", "safety3", "dup", "(BROKEN: no marker)"),
        ("BROKEN_NO_WRITE_AHEAD", "safety2", "wa_bad", "venue accepts order"),
        ("BROKEN_NO_WRITE_AHEAD", "safety3", "dup", "venue accepts order"),
        ("BROKEN_FENCED_STAYS", "liveness", "<<<<<START OF CYCLE>>>>>", "kill -9"),
    ],
)
def test_each_broken_variant_has_a_counterexample(
    verifiers: Verifiers, variant: str, prop: str, violated: str, scenario: str
) -> None:
    run = verifiers.check(variant, prop)
    assert run.errors >= 1, run.output
    assert run.trail is not None, "pan found an error but wrote no trail"
    replay = verifiers.replay(variant, run)
    if prop != "liveness":
        assert "text of failed assertion" in replay, replay
    assert violated in replay, replay
    assert scenario in replay, replay
