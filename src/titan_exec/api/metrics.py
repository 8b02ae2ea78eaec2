"""Prometheus metrics of one service instance (own registry: tests run several instances)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from titan_exec.api.upstream_metrics import UpstreamNames

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.commands = Counter(
            "titan_exec_commands_total",
            "Commands decided, by kind, outcome and reason",
            ["kind", "outcome", "reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "titan_exec_command_redeliveries_total",
            "Commands seen again after their decision",
            registry=r,
        )
        self.orders = Counter(
            "titan_exec_order_events_total",
            "Order lifecycle events written, by event",
            ["event"],
            registry=r,
        )
        self.fills = Counter("titan_exec_fills_total", "Venue fills applied", ["venue"], registry=r)
        self.venue_calls = Counter(
            "titan_exec_venue_calls_total",
            "Venue calls by operation and outcome",
            ["op", "outcome"],
            registry=r,
        )
        self.venue_latency = Histogram(
            "titan_exec_venue_call_seconds",
            "Venue call latency by operation and outcome",
            ["op", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decision_latency = Histogram(
            "titan_exec_decision_seconds",
            "Command ingress to decision durable, by outcome",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.intent_to_ack = Histogram(
            "titan_exec_intent_to_ack_seconds",
            "Command ingress to venue acknowledgement",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.intent_to_fill = Histogram(
            "titan_exec_intent_to_fill_seconds",
            "Command ingress to first fill event durable",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.append_latency = Histogram(
            "titan_exec_event_append_seconds",
            "Event append (apply + publish + ack)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.loop_stall_max = Gauge(
            "titan_exec_loop_stall_max_seconds",
            "The longest event-loop stall the lease watchdog measured since the start",
            registry=r,
        )
        self.poison_commands = Counter(
            "titan_exec_poison_commands_total",
            "Commands refused: their decision raised in consumer.max_deliveries deliveries",
            registry=r,
        )
        self.dead_letters = Counter(
            "titan_exec_dead_letters_total",
            "Dead letters published, by reason code",
            ["reason"],
            registry=r,
        )
        self.anomalies = Gauge(
            "titan_exec_fill_anomalies",
            "Late fills, overfills and fills of unknown orders",
            registry=r,
        )
        self.open_orders = Gauge("titan_exec_open_orders", "Open orders", registry=r)
        self.positions = Gauge("titan_exec_open_positions", "Non-flat positions", registry=r)
        self.halted = Gauge("titan_exec_halted", "1 when trading is halted", registry=r)
        self.armed = Gauge("titan_exec_armed", "1 when the system is armed", registry=r)
        self.risk_state = Gauge(
            "titan_exec_risk_state",
            "1 for the current risk state (Normal, Cautious, Defensive, Emergency)",
            ["state"],
            registry=r,
        )
        self.control_decisions = Gauge(
            "titan_exec_control_decisions",
            "Control commands decided, from the folded state (both instances of the pair)",
            ["action", "outcome", "authentication"],
            registry=r,
        )
        self.unsigned_controls = Counter(
            "titan_exec_unsigned_controls_total",
            "Control commands without a valid signature accepted by this instance (risk-reducing)",
            ["action", "authentication"],
            registry=r,
        )
        self.slippage_breaches = Gauge(
            "titan_exec_slippage_breaches",
            "Fills worse than their reference price by more than maxSlippageBps (folded)",
            registry=r,
        )
        self.heartbeat_age = Gauge(
            "titan_exec_brain_heartbeat_age_seconds",
            "Age of the last brain heartbeat (-1 never)",
            registry=r,
        )
        self.last_event_seq = Gauge(
            "titan_exec_last_event_seq",
            "Stream sequence of the last event written",
            registry=r,
        )
        self.ready = Gauge("titan_exec_ready", "1 when the instance is ready", registry=r)
        self.epoch = Gauge(
            "titan_exec_epoch", "Epoch this instance writes under (0: none)", registry=r
        )
        self.is_active = Gauge("titan_exec_is_active", "1 on the active of the pair", registry=r)

        self.role = Gauge(
            "titan_exec_role",
            "1 for the role this instance is in (standby, candidate, promoting, active, "
            "draining, fenced)",
            ["role"],
            registry=r,
        )
        self.role_changes = Counter(
            "titan_exec_role_changes_total",
            "Role transitions, by the role entered",
            ["role"],
            registry=r,
        )
        self.takeovers = Counter(
            "titan_exec_takeovers_total",
            "Times this instance became the active (failovers and switchovers it won)",
            registry=r,
        )
        self.fencings = Counter(
            "titan_exec_fencings_total",
            "Times this instance fenced itself (deposed, lease lost, deadline, stall)",
            registry=r,
        )
        self.lease_renew = Histogram(
            "titan_exec_lease_renew_seconds",
            "Lease renewal round trip, by outcome",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lease_age = Gauge(
            "titan_exec_lease_age_seconds",
            "Time since the lease was last written (acquired or renewed), as last seen",
            registry=r,
        )
        self.standby_lag = Gauge(
            "titan_exec_standby_lag_events",
            "Stream messages the hot standby has not folded yet (0 on the active)",
            registry=r,
        )

        self.checkpoints = Counter(
            "titan_exec_checkpoints_total",
            "Checkpoints: written (active); matched or drifted (standby)",
            ["result"],
            registry=r,
        )
        self.snapshot_seconds = Histogram(
            "titan_exec_snapshot_seconds",
            "Snapshot work by phase (capture, hash, write, load, tail)",
            ["phase"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.snapshot_bytes = Gauge(
            "titan_exec_snapshot_bytes", "Size of the last snapshot written or loaded", registry=r
        )
        self.drift_alarm = Gauge(
            "titan_exec_drift_alarm",
            "1 while this standby's state differs from the active's at a checkpoint "
            "(it is ineligible for automatic promotion)",
            registry=r,
        )
        self.drift_detected = Counter(
            "titan_exec_drift_detected_total",
            "Checkpoints at which this standby's hash differed from the active's",
            registry=r,
        )
        self.startup_seconds = Gauge(
            "titan_exec_startup_seconds",
            "Last start-up (or rebuild) by phase: snapshot load, tail replay, total",
            ["phase"],
            registry=r,
        )
        self.reconcile_runs = Counter(
            "titan_exec_reconcile_runs_total",
            "Venue reconciliation passes, by kind (open_orders, positions, balances) and "
            "outcome (ok, error)",
            ["kind", "outcome"],
            registry=r,
        )
        self.reconcile_differences = Counter(
            "titan_exec_reconcile_differences_total",
            "Differences with the venue, counted when first seen, by kind",
            ["kind"],
            registry=r,
        )
        self.position_difference = Gauge(
            "titan_exec_position_difference",
            "Venue position minus ours, per symbol, at the last positions pass",
            ["venue", "symbol"],
            registry=r,
        )
        self.position_corrections = Counter(
            "titan_exec_position_corrections_total",
            "Positions set from an authoritative venue report (PositionReconciled)",
            ["venue"],
            registry=r,
        )
        self.venue_balance = Gauge(
            "titan_exec_venue_balance",
            "Venue balance (total) per asset, at the last balances pass (reported only)",
            ["venue", "asset"],
            registry=r,
        )
        self.venue_weight_used = Gauge(
            "titan_exec_venue_weight_used",
            "Request weight used on the venue account this minute (the venue's own count "
            "when it sends one, else what this instance sent)",
            ["venue", "account"],
            registry=r,
        )
        self.venue_weight_limit = Gauge(
            "titan_exec_venue_weight_limit",
            "Request weight per minute of the venue account (0: unknown)",
            ["venue", "account"],
            registry=r,
        )
        self.venue_weight_stretch = Gauge(
            "titan_exec_venue_weight_stretch",
            "Factor the weight budget stretches read intervals by (reconciliation, fill "
            "sweeps) to keep under its share of the limit (1: not stretched)",
            ["venue", "account"],
            registry=r,
        )
        self.venue_throttled = Counter(
            "titan_exec_venue_throttled_total",
            "Venue calls throttled, by reason: stretched / wait (a read held back by the "
            "weight budget), refused (not sent: a ban, a wait too long), 429 / 418 (the "
            "venue's answers)",
            ["venue", "account", "reason"],
            registry=r,
        )
        self.throttled_seen: dict[tuple[str, str, str], int] = {}
        self.venue_stream = Counter(
            "titan_exec_venue_stream_total",
            "The venue's user-data stream, by what happened: events, fills, connects, "
            "sweeps, gaps, malformed, duplicate_stream, duplicate_rest, out_of_order, "
            "listen_key_expired, keepalive_failed, ... (`ccxt_userstream.STAT_NAMES`)",
            ["venue", "account", "kind"],
            registry=r,
        )
        self.stream_seen: dict[tuple[str, str, str], int] = {}
        self.market_quotes = Counter(
            "titan_exec_market_quotes_total",
            "Book tickers read, by input (nats, ws, rest) and outcome (current; older: a "
            "newer one from another input was kept)",
            ["source", "outcome"],
            registry=r,
        )
        self.market_tickers_refused = Counter(
            "titan_exec_market_tickers_refused_total",
            "Book tickers that could not be used, by input (nats, ws, rest) and reason "
            "(wire/ticker.py REASONS)",
            ["source", "reason"],
            registry=r,
        )
        self.market_feed_errors = Counter(
            "titan_exec_market_feed_errors_total",
            "Failed reads of the venue's own prices, by source (ws, rest, markets, feed)",
            ["source"],
            registry=r,
        )

        # the same figures under titan-execution-rs's names (its dashboards and alerts)
        r.register(UpstreamNames(self))

    def set_role(self, role: str) -> None:
        for name in ("standby", "candidate", "promoting", "active", "draining", "fenced"):
            self.role.labels(name).set(1 if name == role else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _count_up(
    counter: Counter,
    seen: dict[tuple[str, str, str], int],
    venue: str,
    account: str,
    counts: Mapping[str, int],
) -> None:
    """A cumulative count kept elsewhere, added to `counter` by what is new since `seen`."""
    for kind, count in counts.items():
        key = (venue, account, kind)
        delta = count - seen.get(key, 0)
        if delta > 0:
            counter.labels(venue, account, kind).inc(delta)
        seen[key] = max(count, seen.get(key, 0))


def observe_stream(metrics: Metrics, *, venue: str, account: str, stats: Mapping[str, int]) -> None:
    """A venue account's user-data stream counts at scrape time (cumulative)."""
    _count_up(metrics.venue_stream, metrics.stream_seen, venue, account, stats)


def observe_budget(
    metrics: Metrics,
    *,
    venue: str,
    account: str,
    used: int,
    limit: int,
    stretch: float,
    throttled: Mapping[str, int],
) -> None:
    """A venue account's weight budget at scrape time (its counts are cumulative)."""
    metrics.venue_weight_used.labels(venue, account).set(used)
    metrics.venue_weight_limit.labels(venue, account).set(limit)
    metrics.venue_weight_stretch.labels(venue, account).set(stretch)
    _count_up(metrics.venue_throttled, metrics.throttled_seen, venue, account, throttled)
