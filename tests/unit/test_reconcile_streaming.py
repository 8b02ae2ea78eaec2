"""The open-orders pass runs its streaming interval apart while the venue pushes its order
updates (a running user-data stream), its usual interval otherwise; the other passes keep
theirs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from titan_exec.api.metrics import Metrics
from titan_exec.config.model import ReconcileConfig
from titan_exec.runtime.reconcile import VenueReconciler, base_interval_ms


def _reconciler(venue: Any, cfg: ReconcileConfig) -> VenueReconciler:
    async def publish(subject: str, body: bytes) -> None:
        return None

    return VenueReconciler(
        runner=SimpleNamespace(venue=venue),  # type: ignore[arg-type]
        metrics=Metrics(),
        cfg=cfg,
        subject="titan.evt.exec.reconcile.v1.x",
        publish=publish,
        clock=lambda: 0,
    )


def test_a_streaming_venue_stretches_only_the_open_orders_pass() -> None:
    cfg = ReconcileConfig(open_orders_interval_ms=2000, open_orders_streaming_interval_ms=30000)
    venue = SimpleNamespace(name="sim", is_streaming=True)
    rc = _reconciler(venue, cfg)
    assert base_interval_ms(rc.runner.venue, rc.cfg, "open_orders", 2000) == 30000
    assert base_interval_ms(rc.runner.venue, rc.cfg, "positions", 10000) == 10000
    venue.is_streaming = False  # the stream stopped: back to the usual pace
    assert base_interval_ms(rc.runner.venue, rc.cfg, "open_orders", 2000) == 2000


def test_a_venue_without_a_stream_keeps_the_interval() -> None:
    cfg = ReconcileConfig(open_orders_interval_ms=2000, open_orders_streaming_interval_ms=30000)
    rc = _reconciler(SimpleNamespace(name="paper"), cfg)
    assert base_interval_ms(rc.runner.venue, rc.cfg, "open_orders", 2000) == 2000


def test_the_streaming_interval_never_shortens_the_pass() -> None:
    cfg = ReconcileConfig(open_orders_interval_ms=60000, open_orders_streaming_interval_ms=30000)
    rc = _reconciler(SimpleNamespace(name="sim", is_streaming=True), cfg)
    assert base_interval_ms(rc.runner.venue, rc.cfg, "open_orders", 60000) == 60000
