from __future__ import annotations

from typing import Any

import pytest

from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.runtime.app import EMBEDDED_MAX_PAYLOAD


@pytest.fixture
async def service_nats(nats_server_factory: Any) -> EmbeddedNats:
    """A JetStream server configured like the service's embedded default."""
    server: EmbeddedNats = await nats_server_factory(extra_config=EMBEDDED_MAX_PAYLOAD)
    return server
