"""The demo's closing tables: orders and positions (read from the active over HTTP),
trades and dead letters (read raw from `TITAN_EVT` and `TITAN_DLQ`), the pair's state
(each instance's `/status`, the venue's `/sim/inspect`) and the invariant checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from nats.js import JetStreamContext

from titan_exec.wire.subjects import TRADE_COMPLETED
from titan_exec_lab.demo.flow import DemoFlow, dec
from titan_exec_lab.demo.streamcheck import (
    Check,
    instance_net_positions,
    positions_text,
    read_stream,
    venue_client_order_ids,
    venue_net_positions,
)


def table(title: str, header: list[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [f"\n{title}", line]
    for i, r in enumerate(cells):
        out.append("|".join(f" {c:<{w}} " for c, w in zip(r, widths, strict=True)))
        if i == 0:
            out.append(line)
    out.append(line)
    return "\n".join(out)


def _utc_day(key: str) -> str:
    """`20783` (days since 1970-01-01, the state's key) → `2026-11-26`."""
    return str(date(1970, 1, 1) + timedelta(days=int(key))) if key.isdigit() else key


async def print_activity(flow: DemoFlow, js: JetStreamContext) -> None:
    """Orders, positions, completed trades and where each rejected intent went."""
    status = await flow.status()
    rows = [
        [
            o["client_order_id"],
            o["signal_id"],
            o["symbol"],
            o["side"],
            dec(o["qty"]),
            dec(o["filled_qty"]),
            dec(o["avg_price"], "0.01"),
            o["status"],
        ]
        for o in status["orders"]
    ]
    header = ["client order id", "signal", "symbol", "side", "qty", "filled", "avg price", "status"]
    print(table(f"ORDERS (/status of {status['instance_id']})", header, rows))

    positions = await flow.positions()
    rows = [
        [
            symbol,
            p["side"],
            dec(p["size"]),
            dec(p["entry_price"], "0.01"),
            dec(p["realized_pnl"]),
            dec(p["fees_paid"]),
        ]
        for symbol, p in sorted(positions.items())
    ]
    header = ["symbol", "side", "size", "entry", "realised PnL", "fees"]
    print(table("POSITIONS (/positions, API key)", header, rows))

    trades = [m.doc()["payload"] for m in await read_stream(js, "TITAN_EVT", TRADE_COMPLETED)]
    rows = [
        [
            t["signal_id"],
            t["symbol"],
            t["side"],
            dec(t["entry_price"], "0.01"),
            dec(t["exit_price"], "0.01"),
            dec(t["size"]),
            dec(t["pnl"]),
            dec(t["fee"]),
        ]
        for t in trades
    ]
    header = ["opening signal", "symbol", "side", "entry", "exit", "size", "pnl", "fees"]
    print(table(f"TRADES (TradeRecord on {TRADE_COMPLETED}, from TITAN_EVT)", header, rows))
    daily = " ".join(f"{_utc_day(k)}: {dec(v)}" for k, v in status["daily_realized_pnl"].items())
    print(f"\nDaily realised PnL (UTC day of the venue's trade time): {daily or '0'}")

    dead = {
        int(m.headers.get("Titan-Cmd-Seq", "0")): (m.headers.get("Titan-Reason-Code"), m.doc())
        for m in await read_stream(js, "TITAN_DLQ")
    }
    rows = [
        [seq, label, dead[seq][0], str(dead[seq][1]["reason"])[:70]]
        for seq, label in flow.sent
        if seq in dead
    ]
    header = ["cmd", "intent", "reason code", "reason"]
    print(table("REJECTED INTENTS (dead letters read back from TITAN_DLQ)", header, rows))


def print_pair(
    statuses: Mapping[str, Mapping[str, Any] | None],
    pids: Mapping[str, int | None],
    inspect: Mapping[str, Any],
    sim_pid: int | None,
    per_venue: Mapping[str, tuple[Mapping[str, Any], int | None]] | None = None,
) -> None:
    """The instances' rows, then the venue's (`inspect`, the simulator's pid), or one row
    per venue (`per_venue`: its row name → its `/sim/inspect` and simulator pid)."""
    rows: list[list[Any]] = []
    for name, d in statuses.items():
        if d is None:
            rows.append([name, pids.get(name), "no answer", "", "", "", "", "", ""])
            continue
        rows.append(
            [
                name,
                pids.get(name),
                d["role"],
                # a standby writes in no epoch: show the one it follows, in brackets
                d["epoch"] or f"({d.get('stream_epoch') or '-'})",
                d["event_seq"],
                f"{str(d['state_hash'])[:16]}…",
                positions_text(instance_net_positions(d)),
                d["open_orders"],
                d["decided_commands"],
            ]
        )
    venues = per_venue or {"venue (simulator)": (inspect, sim_pid)}
    for name, (doc, pid) in venues.items():
        coids = venue_client_order_ids(doc)
        rows.append(
            [
                name,
                pid,
                "",
                "",
                "",
                "",
                positions_text(venue_net_positions(doc)),
                "",
                f"{len(coids)} orders placed",
            ]
        )
    header = [
        "instance",
        "pid",
        "role",
        "epoch",
        "event_seq",
        "state_hash",
        "net positions",
        "open orders",
        "decided",
    ]
    title = "THE PAIR AT THE END (each /status; each venue's /sim/inspect)"
    print(table(title, header, rows))


def print_checks(checks: Sequence[Check]) -> None:
    rows = [[c.name, c.verdict, c.detail] for c in checks]
    header = ["check", "result", "what was read"]
    print(table("CHECKS (raw TITAN_CMD and TITAN_EVT, each /status, /sim/inspect)", header, rows))
