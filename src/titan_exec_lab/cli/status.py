"""`titan-exec status --url A --url B`: one view of the pair, read from each instance's
`/status`: role, epoch, lease, stream position, standby lag, state hash agreement, last
takeover and fencing. The verdict lines say what an operator must act on: no active, two
actives, an instance out of reach, state hashes that differ at the same stream position.

The full `/status` needs the API key (`X-API-Key`, from `TITAN_EXECUTION_API_KEY` unless
given); without it an instance answers its public part only (role, epoch, readiness), and
the hashes cannot be compared: a verdict says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from titan_exec_lab.verify import Problem, Violation, status_violations


@dataclass(frozen=True)
class Reading:
    url: str
    doc: dict[str, Any] | None
    error: str | None = None


API_KEY_ENV = "TITAN_EXECUTION_API_KEY"


def read_status(url: str, timeout_s: float = 5, api_key: str | None = None) -> Reading:
    """`GET <url>/status` with the API key (`api_key`, else `TITAN_EXECUTION_API_KEY`; none:
    the public part only)."""
    full = url.rstrip("/") + "/status"
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
    req = urllib.request.Request(full, headers={"X-API-Key": key} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return Reading(url, None, f"{full} refused: HTTP {err.code}: {_reason(err)}")
    except (urllib.error.URLError, OSError, ValueError) as err:
        return Reading(url, None, f"cannot reach {full}: {err}")
    if not isinstance(doc, dict):
        return Reading(url, None, f"{full} did not answer a JSON object")
    return Reading(url, doc)


def _reason(err: urllib.error.HTTPError) -> str:
    try:
        doc = json.loads(err.read())
    except (OSError, ValueError):
        return str(err.reason)
    return str(doc.get("error")) if isinstance(doc, dict) else str(err.reason)


def is_public(doc: dict[str, Any]) -> bool:
    """The public `/status` (read without the API key): no hashes, positions or orders."""
    return doc.get("view") == "public"


def _ago(at_ms: Any, now_ms: int) -> str:
    if not isinstance(at_ms, int):
        return "-"
    return f"{(now_ms - at_ms) / 1000:.1f} s ago"


def _row(doc: dict[str, Any], now_ms: int) -> dict[str, str]:
    took = doc.get("last_takeover") or {}
    fenced = doc.get("last_fencing") or {}
    lag = doc.get("standby_lag")
    lease_age = doc.get("lease_age_ms")
    return {
        "instance": str(doc.get("instance_id")),
        "role": f"{doc.get('role')} (lease: {doc.get('lease_role') or '-'})",
        "ready": str(doc.get("ready")),
        "epoch": (
            f"{doc.get('epoch')} (writes)"
            if doc.get("epoch")
            else f"- (stream at {doc.get('stream_epoch') or '-'})"
        ),
        "lease holder": str(doc.get("lease_holder") or "-"),
        "lease age": "-" if lease_age is None else f"{lease_age} ms",
        "stream position": str(doc.get("event_seq")),
        "standby lag": "-" if lag is None else f"{lag} msgs",
        "state hash": str(doc.get("state_hash", ""))[:16],
        "last command": str(doc.get("last_cmd_seq")),
        "open orders": str(doc.get("open_orders")),
        "last takeover": (
            f"epoch {took.get('epoch')}, {_ago(took.get('at_ms'), now_ms)}, "
            f"lease→intake {took.get('lease_won_to_intake_ms')} ms"
            if took
            else "-"
        ),
        "last fencing": (
            f"{_ago(fenced.get('at_ms'), now_ms)}: {fenced.get('reason')}" if fenced else "-"
        ),
        **{f"venue {name}": venue_cell(v) for name, v in venues_of(doc).items()},
    }


def venues_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `venues` section of a full `/status` (each venue: account, default, open orders,
    positions); an instance of an older build: its one `venue`, nothing known of it."""
    venues = doc.get("venues")
    if isinstance(venues, dict):
        return {str(k): v for k, v in venues.items() if isinstance(v, dict)}
    return {str(doc["venue"]): {}} if doc.get("venue") else {}


def venue_cell(v: dict[str, Any]) -> str:
    """``main (default): 0 open, BTC/USDT 0.05``."""
    if not v:
        return "-"
    positions = ", ".join(f"{s} {q}" for s, q in (v.get("positions") or {}).items()) or "flat"
    default = " (default)" if v.get("is_default") else ""
    return f"account {v.get('account')}{default}: {v.get('open_orders')} open, {positions}"


def verdicts(readings: list[Reading]) -> list[tuple[bool, str]]:
    """(is_ok, sentence) for each check across the instances. What fails is what the
    checker says (`titan_exec_lab.verify.status_violations`: roles, and hashes compared at
    the same stream position); the sentences here say it for an operator."""
    out: list[tuple[bool, str]] = [
        (False, r.error or f"{r.url}: no answer") for r in readings if r.doc is None
    ]
    docs = {str(r.doc.get("instance_id", r.url)): r.doc for r in readings if r.doc is not None}
    violations = status_violations(docs)
    found = {v.problem: v for v in violations}
    out += [(False, v.text) for v in violations if v.problem is Problem.STANDBY_WITHOUT_ELECTION]
    roles = found.get(Problem.NO_ACTIVE) or found.get(Problem.TWO_ACTIVES)
    active = [n for n, d in docs.items() if d.get("role") == "active"]
    out.append((False, roles.text) if roles else (True, f"one active: {active[0]}"))
    public = [n for n, d in docs.items() if is_public(d)]
    if public:
        out.append(
            (
                False,
                f"{', '.join(public)}: public /status only (no API key: set "
                f"{API_KEY_ENV}): state hashes not compared",
            )
        )
    out += _hash_verdicts({n: d for n, d in docs.items() if not is_public(d)}, found)
    return out


def _hash_verdicts(
    docs: dict[str, dict[str, Any]], found: dict[Problem | None, Violation]
) -> list[tuple[bool, str]]:
    """Where the hashes were compared, in words (the verdict is the checker's)."""
    if len(docs) < 2:
        return []
    deciding = [n for n, d in docs.items() if d.get("events_unacked")]
    if deciding:
        return [(True, f"{', '.join(deciding)} deciding (events in flight): not compared")]
    seqs = sorted({int(d.get("event_seq") or 0) for d in docs.values()})
    out: list[tuple[bool, str]] = []
    if Problem.HASH_MISMATCH in found:
        out.append((False, f"state hashes DIFFER at stream position {seqs[0]}: drift"))
    elif len(seqs) == 1:
        out.append((True, f"state hashes agree at stream position {seqs[0]}"))
    else:
        listed = ", ".join(map(str, seqs))
        out.append((True, f"at different stream positions ({listed}): hashes not comparable"))
    if Problem.CONTROL_MISMATCH in found:
        out.append((False, found[Problem.CONTROL_MISMATCH].text))
    return out


def render(readings: list[Reading], now_ms: int | None = None) -> str:
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    rows = [_row(r.doc, now) for r in readings if r.doc is not None]
    lines: list[str] = []
    if rows:
        keys = list(dict.fromkeys(k for row in rows for k in row))  # every venue of any
        width = max(len(k) for k in keys)
        cols = [max(len(row.get(k, "-")) for k in keys) for row in rows]
        for k in keys:
            cells = "  ".join(f"{row.get(k, '-'):<{w}}" for row, w in zip(rows, cols, strict=True))
            lines.append(f"{k:<{width}}  {cells}".rstrip())
        lines.append("")
    for ok, sentence in verdicts(readings):
        lines.append(f"{'ok ' if ok else '!! '} {sentence}")
    return "\n".join(lines)


def is_healthy(readings: list[Reading]) -> bool:
    return all(ok for ok, _ in verdicts(readings))


# --- the command -----------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    urls = args.url or [f"http://127.0.0.1:{os.environ.get('PORT', '3002')}"]
    if len(urls) > 1:  # the pair (or more): one view, and what needs acting on
        readings = [read_status(u) for u in urls]
        if args.json:
            print(json.dumps([r.doc or {"url": r.url, "error": r.error} for r in readings]))
        else:
            print(render(readings))
        return 0 if is_healthy(readings) else 1
    reading = read_status(urls[0])
    if reading.doc is None:
        print(reading.error, file=sys.stderr)
        return 1
    doc = reading.doc
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    keys = [
        "instance_id",
        "role",
        "lease_role",
        "epoch",
        "lease_age_ms",
        "standby_lag",
        "ready",
        "venue",
        "is_armed",
        "is_halted",
        "policy_hash",
        "state_hash",
        "event_seq",
        "event_count",
        "last_cmd_seq",
        "decided_commands",
        "open_orders",
        "trades",
        "brain_heartbeat_age_ms",
        "uptime_ms",
    ]
    width = max(len(k) for k in keys)
    for k in keys:
        print(f"{k:<{width}}  {doc.get(k)}")
    for name, v in venues_of(doc).items():
        print(f"{'venue ' + name:<{width}}  {venue_cell(v)}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``status`` on ``titan-exec``'s subparsers (a `titan_exec.commands` entry
    point)."""
    p = sub.add_parser(
        "status",
        help="show a running instance's status; give --url for each instance of the pair "
        "to see them side by side (exit 1 unless exactly one is active and all answer)",
    )
    p.add_argument("--url", action="append", help="admin API URL (repeatable)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(fn=cmd_status)
