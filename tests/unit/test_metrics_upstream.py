"""The metrics under titan-execution-rs's names (`titan_execution_*`, what the existing
dashboards and alerts query) show our own figures: same type as upstream, no labels, fed
from our metric at scrape time; and the README's table names every upstream metric."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from titan_exec.api.metrics import Metrics
from titan_exec.api.upstream_metrics import UPSTREAM_NAMES

README = Path(__file__).resolve().parents[2] / "README.md"

# every titan_execution_* name in the upstream repository (metrics.rs, docs/operations,
# the module audit): exported here or listed in the README as not exported, with why
UPSTREAM_EVERYWHERE = {
    "titan_execution_order_latency_seconds",
    "titan_execution_slippage_bps",
    "titan_execution_bulgaria_adverse_selection_bps",
    "titan_execution_fill_quality_spread_capture_pct",
    "titan_execution_risk_state",
    "titan_execution_active_positions",
    "titan_execution_filled_orders_total",
    "titan_execution_invalid_intents_total",
    "titan_execution_expired_intents_total",
    "titan_execution_dlq_published_total",
    "titan_execution_fanout_orders_total",
    "titan_execution_position_flips_total",
    "titan_execution_risk_rejections_total",
    "titan_execution_rejection_events_total",
    "titan_execution_event_lag",
    "titan_execution_error_count",
    "titan_execution_ack_latency_ms",
    "titan_execution_orders_total",
    "titan_execution_latency_seconds",
}


def scrape(m: Metrics) -> dict[str, dict[str, float]]:
    """{family: {sample name with labels: value}} of the upstream families, as scraped."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(m.render().decode()):
        if family.name.startswith("titan_execution_"):
            samples = out.setdefault(f"{family.name}:{family.type}", {})
            for s in family.samples:
                label = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                samples[f"{s.name}{{{label}}}"] = s.value
    return out


def test_a_fresh_instance_exports_every_mapped_name_at_zero_with_upstreams_type() -> None:
    families = scrape(Metrics())
    expected = {f"{u.name.removesuffix('_total')}:{u.kind}" for u in UPSTREAM_NAMES}
    assert set(families) == expected
    for samples in families.values():
        assert all(v == 0 for v in samples.values())
        assert all("{}" in name or "{le=" in name for name in samples)  # no labels but le


def test_the_upstream_names_show_our_figures() -> None:
    m = Metrics()
    for reason, n in (
        ("invalid_envelope", 2),
        ("schema_invalid", 1),
        ("policy_hash_mismatch", 1),
        ("hmac_signature_mismatch", 4),  # not an invalid intent upstream
        ("intent_expired", 3),
        ("risk_rejection", 5),
        ("brain_heartbeat_stale", 1),
    ):
        m.commands.labels("place", "rejected", reason).inc(n)
        m.dead_letters.labels(reason).inc(n)
    m.commands.labels("place", "accepted", "accepted").inc(7)
    m.positions.set(2)
    for state in ("Normal", "Cautious", "Defensive", "Emergency"):
        m.risk_state.labels(state).set(1 if state == "Defensive" else 0)
    for seconds in (0.003, 0.004, 0.3):
        m.intent_to_fill.observe(seconds)

    f = scrape(m)
    assert f["titan_execution_invalid_intents:counter"] == {
        "titan_execution_invalid_intents_total{}": 4
    }
    assert f["titan_execution_expired_intents:counter"] == {
        "titan_execution_expired_intents_total{}": 3
    }
    assert f["titan_execution_risk_rejections:counter"] == {
        "titan_execution_risk_rejections_total{}": 6
    }
    assert f["titan_execution_dlq_published:counter"] == {
        "titan_execution_dlq_published_total{}": 17
    }
    assert f["titan_execution_rejection_events:counter"] == {
        "titan_execution_rejection_events_total{}": 17
    }
    assert f["titan_execution_filled_orders:counter"] == {
        "titan_execution_filled_orders_total{}": 3
    }
    assert f["titan_execution_active_positions:gauge"] == {"titan_execution_active_positions{}": 2}
    assert f["titan_execution_risk_state:gauge"] == {"titan_execution_risk_state{}": 2}
    latency = f["titan_execution_order_latency_seconds:histogram"]
    assert latency["titan_execution_order_latency_seconds_count{}"] == 3
    assert abs(latency["titan_execution_order_latency_seconds_sum{}"] - 0.307) < 1e-9
    assert latency["titan_execution_order_latency_seconds_bucket{le=0.005}"] == 2
    assert latency["titan_execution_order_latency_seconds_bucket{le=+Inf}"] == 3


def test_the_readme_lists_every_upstream_name_mapped_or_not() -> None:
    text = README.read_text()
    table = text[text.index("### Metrics under the old service's names") :]
    table = table[: table.index("\n\n", table.index("| upstream"))]
    rows = {
        name: line.split("|")[-2].strip()
        for line in table.splitlines()
        if line.startswith("| `titan_execution_")
        for name in re.findall(r"`(titan_execution_\w+)`", line.split("|")[1])
    }
    assert set(rows) == UPSTREAM_EVERYWHERE
    for u in UPSTREAM_NAMES:
        assert u.ours.split("{")[0].removeprefix("sum(").rstrip(")") in rows[u.name], u.name
    for name in UPSTREAM_EVERYWHERE - {u.name for u in UPSTREAM_NAMES}:
        assert rows[name].startswith("not exported:"), name
