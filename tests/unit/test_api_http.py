"""The admin API's access rules against a stand-in service (no NATS): what answers without
the key, with a wrong one, with none configured; the metric families' label names; and
`titan-exec status` reading the full document with the key and saying when it could not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from titan_exec.api.http import build_app
from titan_exec.api.metrics import Metrics
from titan_exec.core.leadership_io import Role
from titan_exec.runtime.views import utc_date
from titan_exec_lab.cli.status import Reading, read_status, verdicts

KEY = "unit-api-key"
PUBLIC = {"instance_id": "primary", "role": "active", "lease_role": None, "epoch": 3}
PUBLIC = {**PUBLIC, "ready": True, "view": "public"}
FULL = {**PUBLIC, "view": "full", "state_hash": "h" * 64, "event_seq": 9, "orders": [{}]}


class FakeService:
    def __init__(self) -> None:
        self.metrics = Metrics()
        self.role: Role | None = Role.ACTIVE
        self.epoch = 3

    def status_doc(self) -> dict[str, Any]:
        return dict(FULL)

    def public_status_doc(self) -> dict[str, Any]:
        return dict(PUBLIC)

    async def settled_status_doc(self) -> dict[str, Any]:
        return dict(FULL)

    def positions_doc(self) -> dict[str, Any]:
        return {"BTC/USDT": {"size": "0.1"}}

    def is_ready(self) -> tuple[bool, str]:
        return True, "ok"

    def nats_health(self) -> tuple[bool, str]:
        return True, "connected"

    def refresh_metrics(self) -> None:
        self.metrics.ready.set(1)

    def request_switchover(self) -> bool:
        return False

    def request_promote(self) -> tuple[bool, str]:
        return False, "no"


@pytest.fixture(params=[False, True], ids=["metrics-open", "metrics-key"])
async def api(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, bool]]:
    app = build_app(FakeService(), api_key=KEY, metrics_requires_key=request.param)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/"), bool(request.param)


async def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with ClientSession() as http, http.get(url, headers=headers or {}) as resp:
        body = await resp.read()
        return resp.status, json.loads(body) if resp.content_type == "application/json" else body


async def test_each_endpoint_without_with_and_with_a_wrong_key(api: tuple[str, bool]) -> None:
    base, metrics_need_key = api
    good, wrong = {"X-API-Key": KEY}, {"X-API-Key": KEY + "x"}
    assert await fetch(f"{base}/health") == (200, {"status": "ok", "nats": "connected"})
    assert (await fetch(f"{base}/ready"))[0] == 200
    assert await fetch(f"{base}/status") == (200, PUBLIC)
    assert await fetch(f"{base}/status", good) == (200, FULL)
    assert await fetch(f"{base}/status", {"Authorization": f"Bearer {KEY}"}) == (200, FULL)
    assert await fetch(f"{base}/status", wrong) == (401, {"error": "unauthorized: wrong API key"})
    code, doc = await fetch(f"{base}/positions")
    assert code == 401 and "API key required" in doc["error"]
    assert (await fetch(f"{base}/positions", wrong))[0] == 401
    assert await fetch(f"{base}/positions", good) == (
        200,
        {"positions": {"BTC/USDT": {"size": "0.1"}}},
    )
    code, body = await fetch(f"{base}/metrics")
    if metrics_need_key:
        assert code == 401 and body["error"].startswith("unauthorized")
        assert (await fetch(f"{base}/metrics", wrong))[0] == 401
    else:
        assert code == 200 and b"titan_exec_ready 1.0" in body
    code, body = await fetch(f"{base}/metrics", good)
    assert code == 200 and b"titan_exec_ready 1.0" in body


async def test_a_key_header_that_is_not_utf8_is_refused_not_a_server_error(
    api: tuple[str, bool],
) -> None:
    base, _ = api
    reader, writer = await asyncio.open_connection(*base.removeprefix("http://").split(":"))
    writer.write(
        b"GET /status HTTP/1.1\r\nHost: x\r\nX-API-Key: \xff\xfe\xed\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    head = (await reader.read()).split(b"\r\n", 1)[0]
    writer.close()
    # aiohttp hands the value over with surrogate escapes: a strict encode would be a 500
    assert head == b"HTTP/1.1 401 Unauthorized"


async def test_without_a_configured_key_secrets_are_never_served() -> None:
    """No key configured: the public /status still answers; what needs the key is 503."""
    app = build_app(FakeService(), api_key="", metrics_requires_key=False)
    async with TestServer(app, host="127.0.0.1") as server:
        base = str(server.make_url("")).rstrip("/")
        assert await fetch(f"{base}/status") == (200, PUBLIC)
        for path in ("/status", "/positions"):
            for headers in ({"X-API-Key": ""}, {"X-API-Key": "anything"}):
                code, doc = await fetch(base + path, headers)
                if path == "/status" and not headers["X-API-Key"]:
                    assert code == 200 and doc == PUBLIC
                else:
                    assert code == 503 and "no API key configured" in doc["error"], path


def test_metric_label_names_are_bounded_kinds_never_per_order_identifiers() -> None:
    allowed = {"kind", "outcome", "reason", "event", "venue", "op", "phase", "result", "role"}
    allowed |= {"symbol", "asset"}
    allowed |= {"source"}  # the input of a ticker: nats, ws, rest
    allowed |= {"action", "authentication", "state"}  # controls: a closed set each
    allowed |= {"account"}  # a configured venue account (the weight budget's)
    m = Metrics()
    names: set[str] = set()
    for family in m.registry.collect():
        for sample in family.samples:
            names |= set(sample.labels)
    for metric in vars(m).values():
        names |= set(getattr(metric, "_labelnames", ()))
    assert names - {"le"} <= allowed and "reason" in names and "symbol" in names


def test_daily_pnl_days_are_shown_as_iso_dates() -> None:
    assert utc_date(20789) == "2026-12-02"
    assert utc_date(0) == "1970-01-01"


async def test_titan_exec_status_sends_the_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = build_app(FakeService(), api_key=KEY)
    async with TestServer(app, host="127.0.0.1") as server:
        base = str(server.make_url("")).rstrip("/")
        monkeypatch.delenv("TITAN_EXECUTION_API_KEY", raising=False)
        public = await asyncio.to_thread(read_status, base)
        assert public.doc == PUBLIC
        monkeypatch.setenv("TITAN_EXECUTION_API_KEY", KEY)
        full = await asyncio.to_thread(read_status, base)
        assert full.doc == FULL
        wrong = await asyncio.to_thread(read_status, base, 5, "wrong")
        assert wrong.doc is None
        assert wrong.error == f"{base}/status refused: HTTP 401: unauthorized: wrong API key"


def test_a_public_status_is_called_out_and_its_hashes_are_not_compared() -> None:
    a = {**PUBLIC, "instance_id": "primary", "role": "active"}
    b = {**PUBLIC, "instance_id": "backup", "role": "standby", "lease_role": "standby"}
    found = verdicts([Reading("a", a), Reading("b", b)])
    assert (True, "one active: primary") in found
    assert (
        False,
        "primary, backup: public /status only (no API key: set TITAN_EXECUTION_API_KEY): "
        "state hashes not compared",
    ) in found
    assert not any("hashes agree" in s or "DIFFER" in s for _, s in found)
