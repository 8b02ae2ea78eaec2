"""What an instance shows: the documents of the admin API (`/status` in full and its public
part, `/positions`), the truth snapshot, the gauges refreshed at each scrape, and the trade
record of a closed round trip.

Every document is rendered from plain values: the composition root (`runtime/node.py`)
gathers a `Sources` value in one place and nothing here changes what it is given (the
one cache, `HashCache`, belongs to the caller).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from titan_exec.adapters.nats import follow
from titan_exec.adapters.venue.budget import BudgetView
from titan_exec.api.metrics import Metrics, observe_budget, observe_stream
from titan_exec.core.events import RISK_STATES, Event, OrderFilled
from titan_exec.core.leadership_io import Role, role_name
from titan_exec.core.positions import ClosedTrade
from titan_exec.core.state import State, state_hash
from titan_exec.runtime.checkpoint import Checkpoint
from titan_exec.runtime.market import MarketData
from titan_exec.wire import contract

if TYPE_CHECKING:
    from titan_exec.config import Config
    from titan_exec.runtime.drift import DriftMonitor
    from titan_exec.runtime.ha import HaDriver
    from titan_exec.runtime.intake import CommandIntake
    from titan_exec.runtime.standby import Standby


@dataclass(slots=True)
class Health:
    started_at_ms: int = 0
    is_ready: bool = False
    is_stopping: bool = False
    fatal: str | None = None
    replayed_events: int = 0
    snapshot_seq: int = 0
    """The watermark of the snapshot the last start (or rebuild) loaded; 0: none."""
    startup_ms: dict[str, int] = field(default_factory=dict)


class HashCache:
    """The hash of the live state, computed again only when an event was folded since the
    last call (`/status` is polled; hashing is O(state))."""

    def __init__(self) -> None:
        self._seen: tuple[int, int, str] | None = None

    def of(self, st: State) -> str:
        seen = self._seen
        if seen is not None and seen[0] == id(st) and seen[1] == st.event_count:
            return seen[2]
        h = state_hash(st)
        self._seen = (id(st), st.event_count, h)
        return h


@dataclass(frozen=True, slots=True)
class Sources:
    """Everything `/status` and the gauges read, gathered at one moment."""

    cfg: Config
    now_ms: int
    role: Role | None
    epoch: int
    health: Health
    state: State
    stream_seq: int
    """The sequence the state has folded up to (its position in the stream)."""
    written_seq: int
    """The sequence of the last event this instance's writer knows of."""
    events_unacked: int
    market: MarketData
    venue_names: tuple[str, ...]
    """Every venue, the default (`auto`) first."""
    drift: DriftMonitor
    ha: HaDriver | None
    standby: Standby | None
    intake: CommandIntake | None
    checkpoint: Checkpoint | None
    budgets: tuple[BudgetView, ...] = ()
    """The request-weight budget of each venue account that keeps one, at `now_ms`."""
    streams: tuple[StreamView, ...] = ()
    """The user-data stream of each venue account that has one."""


@dataclass(frozen=True, slots=True)
class StreamView:
    venue: str
    account: str
    is_running: bool
    stats: Mapping[str, int]

    def to_doc(self) -> dict[str, Any]:
        return {
            "venue": self.venue,
            "account": self.account,
            "running": self.is_running,
            **{k: v for k, v in sorted(self.stats.items()) if v},
        }


def stream_of(venue: object) -> StreamView | None:
    """The user-data stream of a venue adapter that has one (the ccxt venue), else None."""
    stream = getattr(venue, "stream", None)
    stats = getattr(stream, "stats", None)
    if stream is None or not isinstance(stats, Mapping):
        return None
    return StreamView(
        venue=str(getattr(venue, "name", "")),
        account=str(getattr(venue, "account", "")),
        is_running=bool(getattr(stream, "is_running", False)),
        stats=dict(stats),
    )


def trade_messages(
    state: State, trade: ClosedTrade, ev: Event, *, producer: str, subject: str
) -> list[tuple[str, bytes]]:
    reason = "OPPOSITE_FILL"
    if isinstance(ev, OrderFilled):
        order = state.orders.get(ev.client_order_id)
        if order is not None and order.is_reduce_only:
            reason = "MANUAL"
    body = contract.trade_record(
        trade,
        close_reason=reason,
        metadata={
            "venue": trade.venue,
            "producer": producer,
            "fee_asset": ev.fee_currency if isinstance(ev, OrderFilled) else "USDT",
        },
    )
    return [(subject, body)]


def positions_doc(state: State, *, venue_name: str, market: MarketData) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (venue, symbol), pos in sorted(state.positions.items()):
        if pos.is_flat and pos.realized_pnl == 0:
            continue
        key = symbol if venue == venue_name else f"{venue}:{symbol}"
        out[key] = contract.position_doc(pos, mark=market.mark(venue, symbol))
    return out


def truth_doc(
    state: State,
    *,
    now_ms: int,
    instance_id: str,
    checkpoint: Checkpoint | None,
    venue_name: str,
    market: MarketData,
) -> dict[str, Any]:
    return {
        "timestamp": now_ms,
        "service": "titan-execution",
        "positions": positions_doc(state, venue_name=venue_name, market=market),
        "policy_hash": state.policy.hash if state.policy else None,
        "meta": {
            "instance_id": instance_id,
            # the hash of the last checkpoint: exact at its watermark (`runtime/checkpoint.py`)
            **checkpoint_meta(checkpoint),
            "open_orders": sum(len(v) for v in state.open_orders.values()),
            "is_halted": state.is_halted,
            "is_armed": state.is_armed,
            "risk_state": state.risk_state,
        },
    }


def checkpoint_meta(cp: Checkpoint | None) -> dict[str, Any]:
    if cp is None:
        return {"state_hash": None, "event_seq": 0, "watermark_seq": 0, "event_count": 0}
    return {"event_seq": cp.watermark_seq, **cp.meta()}


def confirmed_doc(drift: DriftMonitor) -> dict[str, Any] | None:
    c = drift.confirmed
    if c is None:
        return None
    return {"watermark_seq": c.watermark_seq, "state_hash": c.state_hash, "snapshot": c.snapshot}


def utc_date(day: int) -> str:
    """The state's day number (days since 1970-01-01, `core.model.day_of`) as an ISO date."""
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def public_status_doc(src: Sources) -> dict[str, Any]:
    """`/status` without the API key: who the instance is and whether it can serve, nothing
    about what it holds (no positions, orders, PnL, rejects, hashes or stream positions)."""
    return {
        "instance_id": src.cfg.service.instance_id,
        "role": role_name(src.role),
        "lease_role": src.ha.role if src.ha is not None else None,
        "epoch": src.epoch,
        "ready": src.health.is_ready,
        "view": "public",
    }


def status_doc(src: Sources, hashes: HashCache) -> dict[str, Any]:
    """`/status` with the API key: everything an operator and the checking tools read."""
    return {
        **_identity(src),
        **_lease(src.ha),
        **_risk(src.state),
        **_stream(src, hashes),
        **_orders(src),
        "market": src.market.status_doc(),
        "budget": [b.to_doc() for b in src.budgets],
        "user_streams": [s.to_doc() for s in src.streams],
    }


def _identity(src: Sources) -> dict[str, Any]:
    standby = src.standby
    return {
        "instance_id": src.cfg.service.instance_id,
        "view": "full",
        "role": role_name(src.role),
        "unsafe": src.cfg.unsafe,
        "epoch": src.epoch,
        "stream_epoch": standby.newest_epoch if standby is not None else src.epoch,
        "namespace": src.cfg.service.namespace,
        "ready": src.health.is_ready,
        "fatal": src.health.fatal,
        "uptime_ms": src.now_ms - src.health.started_at_ms,
        "venue": src.venue_names[0],
        "venues": _venues(src),
    }


def _venues(src: Sources) -> dict[str, Any]:
    """Each venue: its account, whether it is the default, its open orders and positions."""
    st = src.state
    accounts = {v.name: src.cfg.account_of(v) for v in src.cfg.venue_list}
    out: dict[str, Any] = {}
    for name in src.venue_names:
        out[name] = {
            "account": accounts.get(name, src.cfg.service.account),
            "is_default": name == src.venue_names[0],
            "open_orders": sum(len(c) for (v, _), c in st.open_orders.items() if v == name),
            "positions": {
                symbol: str(pos.qty)
                for (v, symbol), pos in sorted(st.positions.items())
                if v == name and not pos.is_flat
            },
            "filled_orders": sum(1 for o in st.orders.values() if o.venue == name and o.filled_qty),
        }
    return out


def _lease(ha: HaDriver | None) -> dict[str, Any]:
    if ha is None:
        keys = ("lease_role", "lease_holder", "last_transition", "lease_age_ms", "last_takeover")
        return dict.fromkeys((*keys, "last_fencing", "loop_stall_max_ms"))
    return {
        "lease_role": ha.role,
        "lease_holder": ha.lease_holder(),
        "last_transition": ha.transitions[-1][2] if ha.transitions else None,
        "lease_age_ms": ha.lease_age_ms(),
        "last_takeover": ha.last_takeover,
        "last_fencing": ha.last_fencing,
        "loop_stall_max_ms": ha.largest_stall_ms,
    }


def _risk(st: State) -> dict[str, Any]:
    return {
        "is_halted": st.is_halted,
        "is_armed": st.is_armed,
        "risk_state": st.risk_state,
        "risk_state_source": st.risk_state_source,
        "risk_state_seq": st.risk_state_seq,
        "limits_overlay": st.overlay.to_doc() if st.overlay is not None else None,
        "slippage_breaches": st.slippage_breaches,
        "control_outcomes": dict(sorted(st.control_counts.items())),
        "policy_hash": st.policy.hash if st.policy else None,
    }


def _stream(src: Sources, hashes: HashCache) -> dict[str, Any]:
    st, standby, drift = src.state, src.standby, src.drift
    is_active = src.role is Role.ACTIVE
    return {
        "state_hash": hashes.of(st),
        "event_seq": src.stream_seq,
        # > 0: the active applied events not yet acknowledged, its state_hash is ahead of
        # event_seq and must not be compared with another instance's at that position
        "events_unacked": src.events_unacked,
        "event_count": st.event_count,
        "standby_lag": standby.lag if standby is not None else None,
        "commands_waiting": standby.waiting if standby is not None else None,
        "replayed_events": src.health.replayed_events,
        "snapshot_seq": src.health.snapshot_seq,
        "startup_ms": src.health.startup_ms,
        "checkpoint": checkpoint_meta(src.checkpoint) if is_active else confirmed_doc(drift),
        "drift": {
            "alarm": drift.has_alarm,
            "persistent": drift.is_persistent,
            "matched": drift.matched,
            "mismatched": drift.mismatched,
            "rebuilds": drift.rebuilds,
            "last": drift.last_alarm,
        },
        "events_skipped": follow.SKIPPED_EVENTS[0],
    }


def _orders(src: Sources) -> dict[str, Any]:
    st, intake = src.state, src.intake
    hb = src.market.last_heartbeat_ms
    orders = sorted(st.orders.values(), key=lambda o: o.t_decision)
    return {
        "net_positions": {
            f"{venue}:{symbol}": str(pos.qty)
            for (venue, symbol), pos in sorted(st.positions.items())
            if not pos.is_flat
        },
        "last_cmd_seq": intake.last_cmd_seq if intake else 0,
        "commands_seen": intake.commands_seen if intake else 0,
        "decided_commands": len(st.decided_cmds),
        "brain_heartbeat_age_ms": None if hb is None else src.now_ms - hb,
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
        "reconciliations": st.reconciliations,
        "recent_rejects": intake.recent_rejects[-20:] if intake else [],
    }


def refresh_gauges(metrics: Metrics, src: Sources) -> None:
    """The gauges read at scrape time, in every role."""
    st = src.state
    for b in src.budgets:
        observe_budget(
            metrics,
            venue=b.venue,
            account=b.account,
            used=b.used,
            limit=b.limit_1m,
            stretch=b.stretch,
            throttled=b.throttled,
        )
    for s in src.streams:
        observe_stream(metrics, venue=s.venue, account=s.account, stats=s.stats)
    metrics.open_orders.set(sum(len(v) for v in st.open_orders.values()))
    metrics.positions.set(sum(1 for p in st.positions.values() if not p.is_flat))
    metrics.halted.set(1 if st.is_halted else 0)
    metrics.armed.set(1 if st.is_armed else 0)
    for name in RISK_STATES:
        metrics.risk_state.labels(name).set(1 if st.risk_state == name else 0)
    for key, count in st.control_counts.items():
        action, outcome, auth = [*key.split(":"), "", ""][:3]
        metrics.control_decisions.labels(action, outcome, auth).set(count)
    metrics.slippage_breaches.set(st.slippage_breaches)
    metrics.anomalies.set(st.anomalies)
    hb = src.market.last_heartbeat_ms
    metrics.heartbeat_age.set(-1 if hb is None else (src.now_ms - hb) / 1000)
    metrics.last_event_seq.set(src.written_seq)
    metrics.epoch.set(src.epoch)
    metrics.is_active.set(1 if src.role is Role.ACTIVE else 0)
    metrics.standby_lag.set(src.standby.lag if src.standby is not None else 0)
    if src.ha is not None:
        age = src.ha.lease_age_ms()
        metrics.lease_age.set(-1 if age is None else age / 1000)
    else:
        metrics.set_role(role_name(src.role))
