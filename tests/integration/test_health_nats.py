"""`/health` follows the NATS connection (the existing deployment's compose healthcheck is
`curl -f http://localhost:3002/health`, and compose restarts on it): 200 while connected,
503 once the instance has seen its server go away, 200 again after it reconnected. `/ready`
is unchanged (503 "NATS disconnected" meanwhile)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import wait_for, world

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def get(url: str) -> tuple[int, dict[str, Any]]:
    """GET in a thread: the service's HTTP server runs on this test's event loop."""
    return await asyncio.to_thread(_get, url)


async def test_health_is_503_while_nats_is_unreachable_and_200_again_after(
    service_nats: Any, tmp_path: Path
) -> None:
    # no truth timer: nothing to publish while the server is away
    async with world(service_nats.url, tmp_path, **{"truth.interval_ms": 3_600_000}) as w:
        assert await get(f"{w.http_url}/health") == (200, {"status": "ok", "nats": "connected"})
        nc = w.svc.nc
        assert nc is not None

        await service_nats.astop()
        await wait_for(lambda: not nc.is_connected, "the instance to see NATS go away")
        code, doc = await get(f"{w.http_url}/health")
        assert code == 503 and doc["status"] == "unhealthy"
        assert doc["nats"] in ("reconnecting", "disconnected")
        ready_code, ready = await get(f"{w.http_url}/ready")
        assert ready_code == 503 and ready["reason"] == "NATS disconnected"

        await service_nats.astart()  # same port and store
        await wait_for(lambda: nc.is_connected, "the instance to reconnect", timeout_s=30)
        assert await get(f"{w.http_url}/health") == (200, {"status": "ok", "nats": "connected"})
