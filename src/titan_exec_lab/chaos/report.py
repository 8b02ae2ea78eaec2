"""The chaos matrix's report: the table for the terminal, `chaos.md`, `chaos.json` and one
timeline plot per scenario (`timeline-<scenario>.png`).

matplotlib is a development dependency and is imported only inside `plot_timeline`: the
service never imports it, and `render_table` / `markdown_table` work without it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from titan_exec_lab.chaos.model import RunRecord, ScenarioRow, Spread

if TYPE_CHECKING:
    from matplotlib.axes import Axes

COLUMNS: tuple[str, ...] = (
    "scenario",
    "runs",
    "failovers",
    "failover ms (min / p50 / p99 / max)",
    "switchover gap ms (min / p50 / p99 / max)",
    "commands sent",
    "decided",
    "lost",
    "duplicated",
    "venue orders duplicated",
    "state-hash mismatches",
    "fencing events",
    "takeovers (total / most in a run)",
    "takeovers by presence",
    "violations",
    "result",
)
"""The Markdown table's columns; every one but the scenario (left) is right-aligned."""

SHORT_COLUMNS: tuple[str, ...] = (
    "scenario",
    "runs",
    "failovers",
    "failover ms",
    "gap ms",
    "sent",
    "decided",
    "lost",
    "dup",
    "venue dup",
    "hash diff",
    "fenced",
    "takeovers",
    "presence",
    "viol",
    "result",
)
"""The same columns in the terminal, where width is short."""

TABLE_LEGEND = (
    "failover ms, gap ms (switchover): min / p50 / p99 / max\n"
    "dup: commands decided more than once; venue dup: orders placed more than once; "
    "hash diff: state-hash mismatches; fenced: fencing events\n"
    "takeovers: the lead moving to the other instance, total / most in one run (0 where the "
    "lead stays, 1 per crash); presence: of them, started by the active's presence gone"
)
"""Printed under the terminal table: what its short column names stand for."""

ROLE_ORDER: tuple[str, ...] = (
    "down",
    "fenced",
    "starting",
    "standby",
    "candidate",
    "draining",
    "promoting",
    "active",
)
"""The roles bottom to top on the timeline's y axis; a role not listed goes above them."""

RATE_BIN_S = 0.25
"""The intent rate on the timeline: decisions counted in bins this wide, scaled to per second."""


def _spread(s: Spread | None) -> str:
    return s.text() if s is not None else "-"


def _cells(row: ScenarioRow) -> list[str]:
    return [
        row.scenario,
        str(row.runs),
        str(row.failovers),
        _spread(row.failover_ms),
        _spread(row.switchover_gap_ms),
        str(row.commands_sent),
        str(row.commands_decided),
        str(row.commands_lost),
        str(row.commands_duplicated),
        str(row.venue_duplicates),
        str(row.hash_mismatches),
        str(row.fencings),
        f"{row.takeovers} / {row.takeovers_max}",
        str(row.presence_takeovers),
        str(row.violations),
        "PASS" if row.is_clean else "FAIL",
    ]


def render_table(rows: Sequence[ScenarioRow]) -> str:
    """A fixed-width table for the terminal: a header, a rule, one line per scenario, and a
    line that explains the short column names."""
    lines = [list(SHORT_COLUMNS), *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]

    def fmt(cells: list[str]) -> str:
        out = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [fmt(cells) for cells in lines[1:]]
    return "\n".join([fmt(lines[0]), rule, *body, "", TABLE_LEGEND]) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[ScenarioRow]) -> str:
    """The same table as GitHub-flavoured Markdown."""
    header = "| " + " | ".join(COLUMNS) + " |"
    align = "| " + " | ".join([":---", *(["---:"] * (len(COLUMNS) - 1))]) + " |"
    body = ["| " + " | ".join(_md_cell(c) for c in _cells(r)) + " |" for r in rows]
    return "\n".join([header, align, *body]) + "\n"


def _closest_to_median(
    runs: Sequence[RunRecord], key: Callable[[RunRecord], float | None]
) -> RunRecord | None:
    measured = [(r, v) for r in runs if (v := key(r)) is not None]
    if not measured:
        return None
    spread = Spread.of([v for _, v in measured])
    assert spread is not None
    # The first of equally close runs: a stable choice.
    return min(measured, key=lambda rv: abs(rv[1] - spread.p50))[0]


def representative_run(runs: Sequence[RunRecord]) -> RunRecord:
    """The run to draw for a scenario: the one whose failover time is closest to the scenario's
    median failover; without failover times, the same by switchover gap; else the first run."""
    if not runs:
        raise ValueError("no runs to choose from")
    return (
        _closest_to_median(runs, lambda r: r.failover_ms)
        or _closest_to_median(runs, lambda r: r.switchover_gap_ms)
        or runs[0]
    )


def plot_file_name(scenario: str) -> str:
    """`timeline-<scenario>.png`, the scenario reduced to characters safe in a file name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", scenario).strip("-.") or "scenario"
    return f"timeline-{safe}.png"


def _fmt_seconds(v: Any) -> str:
    if isinstance(v, int | float) and not isinstance(v, bool):
        s = float(v)
        if s >= 120:
            return f"{s / 60:.1f} min ({s:.0f} s)"
        return f"{s:.1f} s"
    return str(v)


def _fmt_ms(v: Any) -> str:
    return f"{v} ms" if isinstance(v, int | float) and not isinstance(v, bool) else str(v)


def _fmt_rate(v: Any) -> str:
    return f"{v} intents/s" if isinstance(v, int | float) and not isinstance(v, bool) else str(v)


META_FIELDS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("date", "date", str),
    ("machine", "machine", str),
    ("command", "command line", lambda v: f"`{v}`"),
    ("lease_ms", "lease", _fmt_ms),
    ("intent_rate", "intent rate", _fmt_rate),
    ("runs_per_scenario", "runs per scenario", str),
    ("total_s", "total time", _fmt_seconds),
)
"""The `meta` keys `write_report` knows, in the order `chaos.md` lists them, with their label
and formatting; any other key is listed after them as `key: value`."""


def _meta_lines(meta: dict[str, Any]) -> list[str]:
    known = {k for k, _, _ in META_FIELDS}
    lines = [f"- {label}: {fmt(meta[k])}" for k, label, fmt in META_FIELDS if k in meta]
    lines += [f"- {k}: {v}" for k, v in meta.items() if k not in known]
    return lines


def _failure_lines(runs: Sequence[RunRecord]) -> list[str]:
    lines: list[str] = []
    for r in runs:
        where = f"**{r.scenario}** run {r.run}"
        counts = [
            (r.commands_lost, "command(s) lost"),
            (r.commands_duplicated, "command(s) decided more than once"),
            (r.venue_duplicates, "venue order(s) placed more than once"),
            (r.hash_mismatches, "state-hash mismatch(es)"),
        ]
        nonzero = [f"{n} {what}" for n, what in counts if n]
        if nonzero:
            lines.append(f"- {where}: " + ", ".join(nonzero))
        lines += [f"- {where}: {v}" for v in r.violations]
    return lines


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def takeover_summary(rows: Sequence[ScenarioRow], expects: Mapping[str, str]) -> list[str]:
    """What the takeover counts say, per kind of scenario (`expects`: scenario → "stay",
    "failover" or "either"): zero takeovers where the lead stays, at most one per run
    where it must move."""
    lines: list[str] = []
    for kind, bound, words in (
        ("stay", 0, "zero takeovers"),
        ("failover", 1, "at most one takeover per run (per crash)"),
        ("either", 1, "at most one takeover per run"),
    ):
        chosen = [r for r in rows if expects.get(r.scenario) == kind and r.runs]
        if not chosen:
            continue
        over = [r for r in chosen if r.takeovers_max > bound]
        runs = sum(r.runs for r in chosen)
        names = ", ".join(r.scenario for r in chosen)
        if over:
            bad = ", ".join(f"{r.scenario} (up to {r.takeovers_max})" for r in over)
            lines.append(f"- {kind} scenarios ({names}): NOT {words}: {bad}")
        else:
            total = sum(r.takeovers for r in chosen)
            lines.append(
                f"- {kind} scenarios ({names}): {words} — {_n(total, 'takeover')} in "
                f"{_n(runs, 'run')}"
            )
    presence = sum(r.presence_takeovers for r in rows)
    takeovers = sum(r.takeovers for r in rows)
    if takeovers:
        lines.append(f"- takeovers started by presence: {presence} of {takeovers}")
    return lines


def _takeover_label(run: RunRecord) -> str:
    if run.failover_ms is not None:
        return f"takeover (failover {run.failover_ms:.0f} ms)"
    if run.switchover_gap_ms is not None:
        return f"takeover (gap {run.switchover_gap_ms:.0f} ms)"
    return "takeover"


def _why(run: RunRecord) -> str:
    if run.failover_ms is not None:
        return f"failover {run.failover_ms:.0f} ms, the closest to the scenario's median"
    if run.switchover_gap_ms is not None:
        return f"switchover gap {run.switchover_gap_ms:.0f} ms, the closest to the median"
    return "no failover or switchover measured: the first run"


def write_report(
    out_dir: Path,
    rows: Sequence[ScenarioRow],
    runs: Sequence[RunRecord],
    meta: dict[str, Any],
    *,
    targets: Sequence[str] = (),
    expects: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write `chaos.md`, `chaos.json` and `timeline-<scenario>.png` (one representative run
    per scenario, see `representative_run`) into `out_dir` (created); return the paths.
    `targets`: lines listed under "Targets"; `expects` (scenario → its expectation): the
    takeover counts said per kind of scenario (`takeover_summary`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_scenario: dict[str, list[RunRecord]] = {}
    for r in runs:
        by_scenario.setdefault(r.scenario, []).append(r)
    order = [row.scenario for row in rows if row.scenario in by_scenario]
    order += [s for s in by_scenario if s not in order]

    pngs: list[tuple[str, RunRecord, Path]] = []
    for scenario in order:
        chosen = representative_run(by_scenario[scenario])
        png = out_dir / plot_file_name(scenario)
        plot_timeline(chosen, png)
        pngs.append((scenario, chosen, png))

    clean = all(row.is_clean for row in rows) and all(r.is_clean for r in runs)
    md: list[str] = ["# Chaos matrix", "", *_meta_lines(meta), "", markdown_table(rows)]
    md.append(f"Result: **{'PASS' if clean else 'FAIL'}**")
    md.append("")
    takeovers = takeover_summary(rows, expects or {})
    if takeovers:
        md += ["## Takeovers", "", *takeovers, ""]
    if targets:
        md += ["## Targets", "", *(f"- {t}" for t in targets), ""]
    failures = _failure_lines(runs)
    if failures:
        md += ["## Violations", "", *failures, ""]
    if pngs:
        md += ["## Timelines", ""]
        for scenario, chosen, png in pngs:
            md += [
                f"### {scenario}",
                "",
                f"Run {chosen.run} ({_why(chosen)}): [{png.name}]({png.name})",
                "",
                f"![{scenario}, run {chosen.run}]({png.name})",
                "",
            ]
    md_path = out_dir / "chaos.md"
    md_path.write_text("\n".join(md).rstrip("\n") + "\n", encoding="utf-8")

    doc = {
        "meta": meta,
        **({"targets": list(targets)} if targets else {}),
        "rows": [row.to_doc() for row in rows],
        "runs": [r.to_doc() for r in runs],
    }
    json_path = out_dir / "chaos.json"
    json_path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    return [md_path, json_path, *(png for _, _, png in pngs)]


def _rate_series(decided_at: Sequence[float], t_end: float) -> tuple[list[float], list[float]]:
    """Bin edges from 0 to `t_end` and the decisions per second in each bin."""
    n = max(1, math.ceil(t_end / RATE_BIN_S))
    counts = [0] * n
    for t in decided_at:
        if t >= 0:
            counts[min(n - 1, int(t / RATE_BIN_S))] += 1
    edges = [i * RATE_BIN_S for i in range(n + 1)]
    return edges, [c / RATE_BIN_S for c in counts]


def _event_lines(ax: Axes, run: RunRecord, *, labelled: bool) -> None:
    fault_label = f"fault: {run.fault[:48]}" if run.fault else "fault"
    if run.fault_at is not None:
        ax.axvline(
            run.fault_at, color="tab:red", ls="--", lw=1.2, label=fault_label if labelled else None
        )
        if run.recovered_at is not None:
            ax.axvspan(run.fault_at, run.recovered_at, color="tab:red", alpha=0.07, lw=0)
    if run.recovered_at is not None:
        ax.axvline(
            run.recovered_at,
            color="tab:green",
            ls=":",
            lw=1.4,
            label="recovered" if labelled else None,
        )
    if run.takeover_at is not None:
        ax.axvline(
            run.takeover_at,
            color="tab:blue",
            ls="-.",
            lw=1.2,
            label=_takeover_label(run) if labelled else None,
        )


def plot_timeline(run: RunRecord, path: Path) -> None:
    """One run on one time axis (seconds since its start), as a PNG at `path`: intents decided
    per second (top), each instance's role over time (bottom), the fault, the recovery and the
    takeover as vertical lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    times = [*run.decided_at, *(s.t for s in run.roles)]
    times += [t for t in (run.fault_at, run.recovered_at, run.takeover_at) if t is not None]
    t_end = max([1.0, *times])
    t_end = math.ceil(t_end / RATE_BIN_S) * RATE_BIN_S + RATE_BIN_S

    fig = Figure(figsize=(10, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1.3])

    edges, rate = _rate_series(run.decided_at, t_end)
    top.stairs(rate, edges, color="black", lw=1.0, fill=True, alpha=0.25)
    top.stairs(rate, edges, color="black", lw=1.0, label="intents decided / s")
    top.set_ylabel("decided / s")
    top.set_ylim(bottom=0, top=max([1.0, *rate]) * 1.15)
    top.grid(True, axis="y", alpha=0.3)
    _event_lines(top, run, labelled=True)

    roles = list(ROLE_ORDER)
    roles += sorted({s.role for s in run.roles} - set(ROLE_ORDER))
    level = {role: i for i, role in enumerate(roles)}
    instances = sorted({s.instance for s in run.roles})
    colours = ["tab:orange", "tab:purple", "tab:cyan", "tab:brown", "tab:pink", "tab:olive"]
    for k, instance in enumerate(instances):
        samples = sorted((s for s in run.roles if s.instance == instance), key=lambda s: s.t)
        # Nudge each instance a little so that lines on the same role stay visible.
        offset = (k - (len(instances) - 1) / 2) * 0.12
        xs = [s.t for s in samples] + [t_end]
        ys = [level[s.role] + offset for s in samples]
        ys.append(ys[-1])
        bottom.step(xs, ys, where="post", lw=2.0, color=colours[k % len(colours)], label=instance)
    bottom.set_yticks(range(len(roles)), roles)
    bottom.set_ylim(-0.6, len(roles) - 0.4)
    bottom.set_ylabel("role")
    bottom.set_xlabel("seconds since the run's start")
    bottom.grid(True, axis="y", alpha=0.3)
    bottom.set_xlim(0, t_end)
    _event_lines(bottom, run, labelled=False)

    handles, labels = top.get_legend_handles_labels()
    inst_handles, inst_labels = bottom.get_legend_handles_labels()
    fig.legend(
        [*handles, *inst_handles],
        [*labels, *inst_labels],
        loc="outside right upper",
        fontsize="small",
        frameon=False,
    )
    fig.suptitle(f"{run.scenario} — run {run.run} — lease {run.lease_ms} ms", fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
