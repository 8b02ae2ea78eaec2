"""A leader task that fails with an exception nothing handled (here: order tracking) stops
the instance loudly — fatal, `/ready` down, the reason named — instead of leaving an
active that no longer tracks its orders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import wait_for, world

pytestmark = pytest.mark.integration


async def test_an_unexpected_error_in_order_tracking_is_fatal(
    service_nats: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path) as w:
        svc = w.svc
        assert svc.health.fatal is None and svc.health.is_ready

        async def broken(*args: Any, **kw: Any) -> Any:
            raise KeyError("a field the venue adapter did not expect")

        svc.venue.fills_since = broken  # type: ignore[method-assign]
        await wait_for(lambda: svc.health.fatal is not None, "fatal", timeout_s=10)
        assert "order-tracker" in str(svc.health.fatal)
        assert "KeyError" in str(svc.health.fatal)
        assert not svc.health.is_ready


async def test_a_broken_event_log_in_order_tracking_fences_and_rebuilds_in_a_pair(
    service_nats: Any, tmp_path: Path
) -> None:
    """The tracker's event write failing (a stream without a leader, ...) is the known
    path, not a crash: the instance fences, rebuilds from the stream and rejoins."""
    from titan_exec.adapters.nats.eventlog import EventLogBroken

    async with world(service_nats.url, tmp_path, **{"ha.enabled": True, "ha.lease_ms": 1000}) as w:
        svc = w.svc
        await wait_for(lambda: svc.role == "active", "active")
        calls = 0

        async def broken(*args: Any, **kw: Any) -> Any:
            nonlocal calls
            calls += 1
            raise EventLogBroken("event publish failed (test)")

        svc.venue.fills_since = broken  # type: ignore[method-assign]
        await wait_for(lambda: calls > 0 and svc.role != "active", "stood down", timeout_s=10)
        assert svc.health.fatal is None
        assert svc.ha is not None
        await wait_for(lambda: svc.role == "standby" or svc.role == "active", "rejoined", 15)
