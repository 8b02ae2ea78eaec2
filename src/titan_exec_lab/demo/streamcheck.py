"""The pair's invariants (design/ha-protocol.md §10) read from the outside: the raw
JetStream streams and the venue simulator's own record (`GET /sim/inspect`), never an
instance's view of itself.

1. every command in `TITAN_CMD` has exactly one decision in `TITAN_EVT` (the `cmdSeq` of
   the decision and control events);
2. no client order id was placed twice at the venue;
3. every state event is fenced, by the epoch whose marker was the newest when it landed
   (no event of a deposed active is in the stream);
4. the instances agree: the same stream position and state hash, and net positions equal
   to the venue's (summed from the simulator's own trades).

The demo's pass/fail view of the checker in `titan_exec_lab.verify` (which reads the raw
messages, folds them and names every violation with its ids; `titan-exec verify`): the
reading (`read_stream`) and the folds come from there. `pair_checks` is a pure function of
what was read, so that each failure can be shown by a test. Plain JSON, no service code: an
independent reading of what happened. `titan-exec demo` ends with these checks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext

from titan_exec_lab.verify.facts import (
    DECISION_KINDS,
    EXPECTED_SEQ,
    EXPECTED_SUBJECT,
    STATE_KINDS,
    epoch_markers,
    instance_net_positions,
    positions_text,
    venue_net_positions,
)
from titan_exec_lab.verify.facts import decision_counts as decisions_per_command
from titan_exec_lab.verify.invariants import epoch_violations
from titan_exec_lab.verify.read import RawMsg, read_stream

__all__ = [  # the names the demo and the tests import, some of them from titan_exec_lab.verify
    "DECISION_KINDS",
    "EXPECTED_SEQ",
    "EXPECTED_SUBJECT",
    "SAME",
    "STATE_KINDS",
    "Check",
    "RawMsg",
    "check_decisions",
    "check_fencing",
    "check_instances_agree",
    "check_positions",
    "check_venue_orders",
    "decisions_per_command",
    "epoch_markers",
    "fencing_problems",
    "instance_net_positions",
    "instances_agree",
    "pair_checks",
    "positions_text",
    "read_pair_checks",
    "read_stream",
    "venue_client_order_ids",
    "venue_net_positions",
]


SAME = ("EQUAL", "DIFFERENT")


@dataclass(frozen=True, slots=True)
class Check:
    """One invariant: `ok`, and a sentence saying what was found."""

    name: str
    ok: bool
    detail: str
    verdicts: tuple[str, str] = ("PASS", "FAIL")
    """How `ok` reads: (true, false), e.g. ("EQUAL", "DIFFERENT")."""

    @property
    def verdict(self) -> str:
        return self.verdicts[0] if self.ok else self.verdicts[1]


def fencing_problems(events: Sequence[RawMsg], ns: str = "exec", shard: str = "main") -> list[str]:
    """State events that are not fenced, or fenced by an epoch other than the newest marker
    at the time they landed (`titan_exec_lab.verify`'s invariant `epochs`)."""
    return [v.text for v in epoch_violations(events, ns, shard)]


def venue_client_order_ids(inspect: Mapping[str, Any]) -> list[str]:
    return [str(o.get("clientOrderId")) for o in inspect.get("orders", [])]


def instances_agree(statuses: Mapping[str, Mapping[str, Any] | None]) -> bool:
    docs = list(statuses.values())
    return (
        bool(docs)
        and all(d is not None for d in docs)
        and not any((d or {}).get("events_unacked") for d in docs)
        and len({(d or {}).get("event_seq") for d in docs}) == 1
        and len({(d or {}).get("state_hash") for d in docs}) == 1
    )


def check_instances_agree(statuses: Mapping[str, Mapping[str, Any] | None]) -> Check:
    name = "state hashes of the instances at the same stream position"
    silent = sorted(n for n, d in statuses.items() if d is None)
    if silent or not statuses:
        return Check(name, False, f"no /status from {silent or 'any instance'}", SAME)
    docs = {n: d for n, d in statuses.items() if d is not None}
    if instances_agree(statuses):
        first = next(iter(docs.values()))
        return Check(
            name,
            True,
            f"{len(docs)} instances at event_seq {first.get('event_seq')}: "
            f"{first.get('state_hash')}",
            SAME,
        )
    return Check(
        name,
        False,
        "; ".join(
            f"{n} at event_seq {d.get('event_seq')}: {str(d.get('state_hash'))[:16]}…"
            for n, d in sorted(docs.items())
        ),
        SAME,
    )


def check_positions(
    statuses: Mapping[str, Mapping[str, Any] | None], inspect: Mapping[str, Any]
) -> Check:
    venue_net = venue_net_positions(inspect)
    differing = {
        n: instance_net_positions(d or {})
        for n, d in sorted(statuses.items())
        if d is None or instance_net_positions(d) != venue_net
    }
    return Check(
        "net positions of every instance vs the venue's trades",
        bool(statuses) and not differing,
        f"venue: {positions_text(venue_net)}"
        + "".join(f"; {n}: {positions_text(p)}" for n, p in differing.items()),
        SAME,
    )


def check_venue_orders(inspect: Mapping[str, Any]) -> Check:
    coids = venue_client_order_ids(inspect)
    twice = sorted(c for c, n in Counter(coids).items() if n > 1)
    return Check(
        "no client order id twice at the venue",
        not twice,
        f"{len(coids)} orders, {len(set(coids))} distinct client order ids"
        + (f"; more than once: {twice[:10]}" if twice else ""),
    )


def check_decisions(
    commands: Sequence[RawMsg], events: Sequence[RawMsg], ns: str = "exec"
) -> Check:
    decided = decisions_per_command(events, ns)
    cmd_seqs = {m.seq for m in commands}
    twice = sorted(s for s, n in decided.items() if n > 1)
    missing = sorted(cmd_seqs - set(decided))
    stray = sorted(set(decided) - cmd_seqs)
    detail = f"{len(cmd_seqs)} commands in TITAN_CMD, {sum(decided.values())} decisions"
    for what, seqs in (("more than once", twice), ("undecided", missing), ("unknown", stray)):
        if seqs:
            detail += f"; {what}: {seqs[:10]}"
    return Check(
        "every command decided exactly once",
        bool(cmd_seqs) and not (twice or missing or stray),
        detail,
    )


def check_fencing(events: Sequence[RawMsg], ns: str = "exec", shard: str = "main") -> Check:
    problems = fencing_problems(events, ns, shard)
    markers = epoch_markers(events, ns, shard)
    return Check(
        "every state event fenced by the epoch current when it landed",
        bool(markers) and not problems,
        f"{len(markers)} epoch markers (stream seq {', '.join(map(str, markers)) or '-'})"
        + (f"; {len(problems)} problems, first: {problems[0]}" if problems else ""),
    )


def pair_checks(
    statuses: Mapping[str, Mapping[str, Any] | None],
    inspect: Mapping[str, Any],
    commands: Sequence[RawMsg],
    events: Sequence[RawMsg],
    *,
    ns: str = "exec",
    shard: str = "main",
) -> list[Check]:
    """The four invariants over what was read: each instance's `/status` (None: it did not
    answer), the simulator's `/sim/inspect`, and the raw `TITAN_CMD` and `TITAN_EVT`."""
    return [
        check_instances_agree(statuses),
        check_positions(statuses, inspect),
        check_venue_orders(inspect),
        check_decisions(commands, events, ns),
        check_fencing(events, ns, shard),
    ]


async def read_pair_checks(
    js: JetStreamContext,
    statuses: Mapping[str, Mapping[str, Any] | None],
    inspect: Mapping[str, Any],
    *,
    ns: str = "exec",
    shard: str = "main",
) -> list[Check]:
    """Read `TITAN_CMD` and `TITAN_EVT` raw and check the invariants (`pair_checks`)."""
    commands = await read_stream(js, "TITAN_CMD")
    events = await read_stream(js, "TITAN_EVT", f"titan.evt.{ns}.>")
    return pair_checks(statuses, inspect, commands, events, ns=ns, shard=shard)
