from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.adapters.venue.exchange.engine import EngineConfig
from titan_exec.runtime.app import EMBEDDED_MAX_PAYLOAD
from titan_exec.sim.server import SimSettings, VenueSim


@pytest.fixture
async def service_nats(nats_server_factory: Any) -> EmbeddedNats:
    """A JetStream server configured like the service's embedded default."""
    server: EmbeddedNats = await nats_server_factory(extra_config=EMBEDDED_MAX_PAYLOAD)
    return server


@pytest.fixture
async def venue_sim(service_nats: EmbeddedNats) -> AsyncIterator[VenueSim]:
    """The venue simulator on a free port, publishing its tickers to `service_nats`."""
    sim = VenueSim(
        SimSettings(port=0, nats_url=service_nats.url, venue_name="sim"),
        EngineConfig(initial_balance=Decimal(1_000_000), fill_slices=2, slice_interval_ms=50),
    )
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture(params=["paper", "sim"])
async def backend(
    request: pytest.FixtureRequest, service_nats: EmbeddedNats
) -> AsyncIterator[dict[str, Any]]:
    """World arguments for each venue: the in-process paper venue, and the simulator
    reached through the ccxt venue (the production code path)."""
    if request.param == "paper":
        yield {}
        return
    sim = VenueSim(
        SimSettings(port=0, nats_url=service_nats.url, venue_name="sim"),
        EngineConfig(initial_balance=Decimal(1_000_000), fill_slices=2, slice_interval_ms=50),
    )
    await sim.start()
    try:
        yield {"sim": sim}
    finally:
        await sim.stop()
