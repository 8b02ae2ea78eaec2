"""What an instance shows: the documents of the admin API (`/status` in full and its public
part, `/positions`), the truth snapshot, the answers to the contract's request/reply
subjects, and the trade record of a closed round trip. Read-only views of a `Service`;
nothing here changes it."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg

from titan_exec.adapters.nats import follow
from titan_exec.core.events import Event, OrderFilled
from titan_exec.core.positions import ClosedTrade
from titan_exec.core.state import state_hash
from titan_exec.wire import contract, replies

if TYPE_CHECKING:
    from titan_exec.runtime.service import Service


def trade_messages(svc: Service, trade: ClosedTrade, ev: Event) -> list[tuple[str, bytes]]:
    reason = "OPPOSITE_FILL"
    if isinstance(ev, OrderFilled):
        order = svc.state.orders.get(ev.client_order_id)
        if order is not None and (order.is_reduce_only):
            reason = "MANUAL"
    body = contract.trade_record(
        trade,
        close_reason=reason,
        metadata={
            "venue": trade.venue,
            "producer": svc.cfg.service.producer,
            "fee_asset": ev.fee_currency if isinstance(ev, OrderFilled) else "USDT",
        },
    )
    return [(svc.subjects.trade_completed, body)]


def positions_doc(svc: Service) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (venue, symbol), pos in sorted(svc.state.positions.items()):
        if pos.is_flat and pos.realized_pnl == 0:
            continue
        key = symbol if venue == svc.venue.name else f"{venue}:{symbol}"
        out[key] = contract.position_doc(pos, mark=svc.market.mark(venue, symbol))
    return out


def truth_doc(svc: Service) -> dict[str, Any]:
    st = svc.state
    return {
        "timestamp": svc.clock(),
        "service": "titan-execution",
        "positions": positions_doc(svc),
        "policy_hash": st.policy.hash if st.policy else None,
        "meta": {
            "instance_id": svc.cfg.service.instance_id,
            # the hash of the last checkpoint: exact at its watermark (`runtime/checkpoint.py`)
            **checkpoint_meta(svc),
            "open_orders": sum(len(v) for v in st.open_orders.values()),
            "is_halted": st.is_halted,
            "is_armed": st.is_armed,
            "risk_state": st.risk_state,
        },
    }


def checkpoint_meta(svc: Service) -> dict[str, Any]:
    cp = svc.checkpoints.last if svc.checkpoints is not None else None
    if cp is None:
        return {"state_hash": None, "event_seq": 0, "watermark_seq": 0, "event_count": 0}
    return {"event_seq": cp.watermark_seq, **cp.meta()}


async def reply(msg: Msg, doc: Any) -> None:
    if msg.reply:
        await msg.respond(json.dumps(doc, default=str).encode())


async def rpc_positions(svc: Service, msg: Msg) -> None:
    """`get_positions.v1.<venue>`: our open positions at that venue (`wire/replies.py`)."""
    doc = replies.positions_reply(
        svc.state.positions.values(),
        venue=svc.subjects.rpc_venue(msg.subject),
        mark_of=svc.market.mark,
        ts_ms=svc.clock(),
    )
    await reply(msg, doc)


async def rpc_balances(svc: Service, msg: Msg) -> None:
    """`get_balances.v1.<venue>`: the venue account's balances; this instance has one
    venue, so a token naming another gets no balances and an error."""
    asked = svc.subjects.rpc_venue(msg.subject)
    name = svc.venue.name
    if not replies.is_venue(asked, name):
        error = f"unknown venue {asked!r}: this instance trades {name!r}"
        await reply(msg, replies.balances_error_reply(error, venue=asked, ts_ms=svc.clock()))
        return
    try:
        reports = await asyncio.wait_for(svc.venue.balances(), 5)
        doc = replies.balances_reply(reports, venue=name, ts_ms=svc.clock())
    except Exception as err:
        error = f"balances unavailable: {err!r}"
        doc = replies.balances_error_reply(error, venue=name, ts_ms=svc.clock())
    await reply(msg, doc)


async def rpc_policy_hash(svc: Service, msg: Msg) -> None:
    await reply(msg, replies.policy_hash_reply(svc.state.policy, ts_ms=svc.clock()))


def current_hash(svc: Service) -> str:
    """The hash of the live state, computed again only when an event was folded since the
    last call (`/status` is polled; hashing is O(state))."""
    st = svc.state
    seen = svc.status_hash
    if seen is not None and seen[0] == id(st) and seen[1] == st.event_count:
        return seen[2]
    h = state_hash(st)
    svc.status_hash = (id(st), st.event_count, h)
    return h


def svc_confirmed(svc: Service) -> dict[str, Any] | None:
    c = svc.drift.confirmed
    if c is None:
        return None
    return {"watermark_seq": c.watermark_seq, "state_hash": c.state_hash, "snapshot": c.snapshot}


def utc_date(day: int) -> str:
    """The state's day number (days since 1970-01-01, `core.model.day_of`) as an ISO date."""
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def public_status_doc(svc: Service) -> dict[str, Any]:
    """`/status` without the API key: who the instance is and whether it can serve, nothing
    about what it holds (no positions, orders, PnL, rejects, hashes or stream positions)."""
    return {
        "instance_id": svc.cfg.service.instance_id,
        "role": svc.role,
        "lease_role": svc.ha.role if svc.ha is not None else None,
        "epoch": svc.epoch,
        "ready": svc.health.is_ready,
        "view": "public",
    }


def status_doc(svc: Service) -> dict[str, Any]:
    """`/status` with the API key: everything an operator and the checking tools read."""
    st = svc.state
    orders = sorted(st.orders.values(), key=lambda o: o.t_decision)
    hb = svc.market.last_heartbeat_ms
    now = svc.clock()
    return {
        "instance_id": svc.cfg.service.instance_id,
        "view": "full",
        "role": svc.role,
        "unsafe": svc.cfg.unsafe,
        "epoch": svc.epoch,
        "stream_epoch": svc.follower.newest_epoch if svc.follower else svc.epoch,
        "lease_role": svc.ha.role if svc.ha is not None else None,
        "lease_holder": svc.ha.lease_holder() if svc.ha is not None else None,
        "last_transition": (svc.ha.transitions[-1][2] if svc.ha and svc.ha.transitions else None),
        "lease_age_ms": svc.ha.lease_age_ms() if svc.ha is not None else None,
        "last_takeover": svc.ha.last_takeover if svc.ha is not None else None,
        "last_fencing": svc.ha.last_fencing if svc.ha is not None else None,
        "loop_stall_max_ms": svc.ha.largest_stall_ms if svc.ha is not None else None,
        "namespace": svc.cfg.service.namespace,
        "ready": svc.health.is_ready,
        "fatal": svc.health.fatal,
        "uptime_ms": now - svc.health.started_at_ms,
        "venue": svc.venue.name,
        "is_halted": st.is_halted,
        "is_armed": st.is_armed,
        "risk_state": st.risk_state,
        "risk_state_source": st.risk_state_source,
        "risk_state_seq": st.risk_state_seq,
        "limits_overlay": st.overlay.to_doc() if st.overlay is not None else None,
        "slippage_breaches": st.slippage_breaches,
        "control_outcomes": dict(sorted(st.control_counts.items())),
        "policy_hash": st.policy.hash if st.policy else None,
        "state_hash": current_hash(svc),
        "event_seq": svc.stream_seq,
        # > 0: the active applied events not yet acknowledged, its state_hash is ahead of
        # event_seq and must not be compared with another instance's at that position
        "events_unacked": svc.events.unacked if svc.events is not None else 0,
        "event_count": st.event_count,
        "standby_lag": svc.follower.lag if svc.follower is not None else None,
        "commands_waiting": svc.shadow.waiting if svc.shadow is not None else None,
        "net_positions": {
            f"{venue}:{symbol}": str(pos.qty)
            for (venue, symbol), pos in sorted(st.positions.items())
            if not pos.is_flat
        },
        "replayed_events": svc.health.replayed_events,
        "snapshot_seq": svc.health.snapshot_seq,
        "startup_ms": svc.health.startup_ms,
        "checkpoint": checkpoint_meta(svc) if svc.role == "active" else svc_confirmed(svc),
        "drift": {
            "alarm": svc.drift.has_alarm,
            "persistent": svc.drift.is_persistent,
            "matched": svc.drift.matched,
            "mismatched": svc.drift.mismatched,
            "rebuilds": svc.drift.rebuilds,
            "last": svc.drift.last_alarm,
        },
        "last_cmd_seq": svc.intake.last_cmd_seq if svc.intake else 0,
        "commands_seen": svc.intake.commands_seen if svc.intake else 0,
        "decided_commands": len(st.decided_cmds),
        "brain_heartbeat_age_ms": None if hb is None else now - hb,
        "open_orders": sum(len(v) for v in st.open_orders.values()),
        "orders": [
            {
                "client_order_id": o.client_order_id,
                "signal_id": o.signal_id,
                "symbol": o.symbol,
                "side": o.side.value,
                "qty": str(o.qty),
                "filled_qty": str(o.filled_qty),
                "avg_price": str(o.avg_fill_price) if o.avg_fill_price is not None else None,
                "status": o.status.value,
                "reason": o.last_reason,
            }
            for o in orders[-200:]
        ],
        "daily_realized_pnl": {utc_date(k): str(v) for k, v in sorted(st.daily_realized.items())},
        "trades": st.trade_count,
        "anomalies": st.anomalies,
        "events_skipped": follow.SKIPPED_EVENTS[0],
        "reconciliations": st.reconciliations,
        "recent_rejects": svc.intake.recent_rejects[-20:] if svc.intake else [],
        "market": svc.market.status_doc(),
    }
