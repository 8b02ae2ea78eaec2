"""Our metrics under the names the existing Titan dashboards and alerts use
(`titan_execution_*`, from titan-execution-rs `src/metrics.rs`).

This module owns the mapping from those names to ours (`titan_exec_*`, `api/metrics.py`).
Each upstream family is derived at scrape time from the samples of our own metric, so the
two always agree and nothing is counted twice at the call sites: same type, no labels (as
upstream). A histogram keeps our buckets (`histogram_quantile` needs no particular ones).
The README ("Metrics under the old service's names") lists every upstream name, mapped or
not exported and why.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

INVALID_INTENT_REASONS = frozenset(
    {"invalid_subject", "invalid_envelope", "schema_invalid", "policy_hash_mismatch"}
)
"""What titan-execution-rs counted as an invalid intent: a payload that does not parse or
validate, and a policy-hash mismatch (its HMAC failures were not counted there)."""
RISK_REJECTION_REASONS = frozenset({"risk_rejection", "brain_heartbeat_stale"})
"""The risk guard's refusals (Rust: `check_pre_trade`, where a stale heartbeat was a
reduce-only refusal too)."""


def _samples(metric: Counter | Gauge | Histogram) -> list[Sample]:
    return [s for family in metric.collect() for s in family.samples]


@dataclass(frozen=True, slots=True)
class UpstreamName:
    """One upstream family: its name and type, the metric of ours it shows (`ours`, as the
    README lists it) and where it is read: the attribute of `Metrics` (`source`) and, for
    a counter of ours with a `reason` label, the reasons summed (None: all of them)."""

    name: str
    kind: str  # "counter", "gauge" or "histogram"
    ours: str
    help: str
    source: str
    reasons: frozenset[str] | None = None
    levels: tuple[str, ...] = ()
    """For a gauge of ours that is 1 for the current `state` label: the upstream value of
    each state (its position here)."""


UPSTREAM_NAMES: tuple[UpstreamName, ...] = (
    UpstreamName(
        "titan_execution_order_latency_seconds",
        "histogram",
        "titan_exec_intent_to_fill_seconds",
        "Intent to first fill (ours: command ingress to the first fill event durable)",
        "intent_to_fill",
    ),
    UpstreamName(
        "titan_execution_filled_orders_total",
        "counter",
        "titan_exec_intent_to_fill_seconds_count",
        "Orders filled (ours: orders whose first fill this instance recorded)",
        "intent_to_fill",
    ),
    UpstreamName(
        "titan_execution_active_positions",
        "gauge",
        "titan_exec_open_positions",
        "Number of currently active (non-flat) positions",
        "positions",
    ),
    UpstreamName(
        "titan_execution_risk_state",
        "gauge",
        "titan_exec_risk_state{state}",
        "Current Risk State (0=Normal, 1=Cautious, 2=Defensive, 3=Emergency)",
        "risk_state",
        levels=("Normal", "Cautious", "Defensive", "Emergency"),
    ),
    UpstreamName(
        "titan_execution_invalid_intents_total",
        "counter",
        "titan_exec_commands_total{reason=~invalid_subject|invalid_envelope|schema_invalid|"
        "policy_hash_mismatch}",
        "Commands refused as invalid: not parseable or valid, or a policy hash mismatch",
        "commands",
        INVALID_INTENT_REASONS,
    ),
    UpstreamName(
        "titan_execution_expired_intents_total",
        "counter",
        'titan_exec_commands_total{reason="intent_expired"}',
        "Intents refused as expired (freshness)",
        "commands",
        frozenset({"intent_expired"}),
    ),
    UpstreamName(
        "titan_execution_risk_rejections_total",
        "counter",
        "titan_exec_commands_total{reason=~risk_rejection|brain_heartbeat_stale}",
        "Risk guard refusals",
        "commands",
        RISK_REJECTION_REASONS,
    ),
    UpstreamName(
        "titan_execution_dlq_published_total",
        "counter",
        "sum(titan_exec_dead_letters_total)",
        "Dead letters published",
        "dead_letters",
    ),
    UpstreamName(
        "titan_execution_rejection_events_total",
        "counter",
        "sum(titan_exec_dead_letters_total)",
        "Reject telemetry events published (one with each dead letter)",
        "dead_letters",
    ),
)


def _family(u: UpstreamName, metrics: object | None) -> Metric:
    """`u`'s family, with its samples read from `metrics` (None: the name only)."""
    if metrics is None:
        if u.kind == "histogram":
            return HistogramMetricFamily(u.name, u.help)
        if u.kind == "gauge":
            return GaugeMetricFamily(u.name, u.help)
        return CounterMetricFamily(u.name, u.help)
    ours = getattr(metrics, u.source)
    if u.kind == "histogram":
        assert isinstance(ours, Histogram), u
        buckets: list[tuple[str, float]] = []
        total = 0.0
        for s in _samples(ours):
            if s.name.endswith("_bucket"):
                buckets.append((s.labels["le"], s.value))
            elif s.name.endswith("_sum"):
                total = s.value
        return HistogramMetricFamily(u.name, u.help, buckets=buckets, sum_value=total)
    if u.kind == "gauge":
        assert isinstance(ours, Gauge), u
        if u.levels:  # the position of the state whose gauge is 1 (none yet: the first)
            current = [s.labels.get("state") for s in _samples(ours) if s.value == 1]
            value = float(next((u.levels.index(c) for c in current if c in u.levels), 0))
        else:
            value = sum(s.value for s in _samples(ours))
        return GaugeMetricFamily(u.name, u.help, value=value)
    if isinstance(ours, Histogram):  # the number of observations
        value = sum(s.value for s in _samples(ours) if s.name.endswith("_count"))
    else:
        assert isinstance(ours, Counter), u
        value = sum(
            s.value
            for s in _samples(ours)
            if s.name.endswith("_total") and (u.reasons is None or s.labels["reason"] in u.reasons)
        )
    return CounterMetricFamily(u.name, u.help, value=value)


class UpstreamNames(Collector):
    """A collector on the service's registry that shows ours under the upstream names."""

    def __init__(self, metrics: object) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        # the names only, so that the registry refuses a clash with one of ours
        return [_family(u, None) for u in UPSTREAM_NAMES]

    def collect(self) -> Iterator[Metric]:
        for u in UPSTREAM_NAMES:
            yield _family(u, self._metrics)


__all__ = ["UPSTREAM_NAMES", "UpstreamName", "UpstreamNames"]
