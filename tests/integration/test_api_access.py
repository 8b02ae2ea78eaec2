"""The admin API's access rules on a running instance (real nats-server, real HTTP port):
without the API key only `/health`, `/ready` and the public `/status` answer; the full
`/status` and `/positions` need the key; `/metrics` has no per-order label values and
needs the key with `http.metrics_requires_key`; daily PnL is keyed by ISO date."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import API_KEY, World, wait_for, world
from titan_exec.core.model import OrderStatus
from titan_exec.runtime.views import utc_date
from titan_exec_lab.verify.read import CannotRead, read_statuses

pytestmark = pytest.mark.integration

PUBLIC_FIELDS = {"instance_id", "role", "lease_role", "epoch", "ready", "view"}
SECRET_FIELDS = (
    "net_positions",
    "orders",
    "daily_realized_pnl",
    "recent_rejects",
    "state_hash",
    "open_orders",
    "trades",
    "event_seq",
)
LABEL_NAMES = {"kind", "outcome", "reason", "event", "venue", "op", "phase", "result", "role"}
LABEL_NAMES |= {"symbol", "asset"}
LABEL_NAMES |= {"source"}  # the input of a ticker: nats, ws, rest
LABEL_NAMES |= {"action", "authentication", "state"}  # controls: closed sets


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET in a thread (the service's HTTP server runs on this test's event loop)."""
    return await asyncio.to_thread(_get, url, headers or {})


def _get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


async def trade(w: World, sid: str, type_: str, size: str) -> tuple[str, ...]:
    ack = await w.brain.place(w.brain.intent(sid, "BTC/USDT", type_, size))
    await w.decided(ack.seq)
    coids = w.svc.state.accepted_signals[sid]
    st = w.svc.state
    await wait_for(lambda: all(st.orders[c].status is OrderStatus.FILLED for c in coids), sid)
    return coids


async def round_trip_and_a_reject(w: World) -> list[str]:
    """An open, a close at a higher price (realised PnL today) and a refused command: what
    the full /status shows. Returns the per-order identifiers it produced."""
    opened = await trade(w, "api-open", "BUY_SETUP", "0.1")
    w.feed.move("BTC/USDT", Decimal("51000"))
    await w.feed.publish_all()
    await wait_for(lambda: w.svc.market.mark("sim", "BTC/USDT") == Decimal("51000"), "price moved")
    closed = await trade(w, "api-close", "CLOSE_LONG", "0.1")
    await w.decided(await w.publish_raw(b"not an envelope", msg_id="api-garbage"))
    await wait_for(lambda: bool(w.svc.state.daily_realized), "realised PnL")
    return ["api-open", "api-close", *opened, *closed]


async def test_without_the_key_only_health_ready_and_the_public_status(
    service_nats: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path) as w:
        ids = await round_trip_and_a_reject(w)
        assert (await get(f"{w.http_url}/health"))[0] == 200
        code, body = await get(f"{w.http_url}/ready")
        assert code == 200 and json.loads(body)["ready"] is True

        code, body = await get(f"{w.http_url}/status")
        doc = json.loads(body)
        assert code == 200 and set(doc) == PUBLIC_FIELDS
        assert doc["view"] == "public" and doc["role"] == "active" and doc["ready"] is True
        assert doc["epoch"] == w.svc.epoch > 0 and doc["instance_id"] == "primary"
        assert not any(key in doc for key in SECRET_FIELDS)
        assert not any(i in body.decode() for i in ids)
        # an empty key header is no key: the public part, not a refusal
        code, body = await get(f"{w.http_url}/status", {"X-API-Key": ""})
        assert code == 200 and set(json.loads(body)) == PUBLIC_FIELDS

        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": f"Bearer {API_KEY}x"}):
            code, body = await get(f"{w.http_url}/positions", headers)
            assert code == 401 and json.loads(body)["error"].startswith("unauthorized"), headers
        code, body = await get(f"{w.http_url}/status", {"X-API-Key": "wrong"})
        assert code == 401 and json.loads(body) == {"error": "unauthorized: wrong API key"}

        code, body = await get(f"{w.http_url}/metrics")
        assert code == 200 and b"titan_exec_commands_total" in body
        assert not any(i.encode() in body for i in ids)


async def test_with_the_key_the_full_status_with_pnl_by_iso_date(
    service_nats: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path) as w:
        ids = await round_trip_and_a_reject(w)
        for headers in ({"X-API-Key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"}):
            code, body = await get(f"{w.http_url}/status", headers)
            doc = json.loads(body)
            assert code == 200 and doc["view"] == "full", headers
            assert set(doc) >= PUBLIC_FIELDS and all(key in doc for key in SECRET_FIELDS)
            assert {o["signal_id"] for o in doc["orders"]} == {"api-open", "api-close"}
            assert len(doc["state_hash"]) == 64 and doc["recent_rejects"]
            assert all(i in body.decode() for i in ids)
        days = w.svc.state.daily_realized
        assert all(isinstance(day, int) for day in days)  # the core keeps its day numbers
        assert doc["daily_realized_pnl"] == {utc_date(d): str(v) for d, v in days.items()}
        (iso,) = doc["daily_realized_pnl"]
        assert re.fullmatch(r"20\d\d-\d\d-\d\d", iso)
        assert Decimal(doc["daily_realized_pnl"][iso]) > 0  # bought 50000, sold 51000
        code, body = await get(f"{w.http_url}/positions", {"X-API-Key": API_KEY})
        assert code == 200 and "positions" in json.loads(body)
        # `titan-exec verify --url` reads the full document with the key, and refuses to
        # judge an instance from its public part (no key) rather than report false findings
        statuses = await asyncio.to_thread(read_statuses, [w.http_url], API_KEY)
        assert statuses["primary"] is not None and statuses["primary"]["view"] == "full"
        with pytest.raises(CannotRead, match="public part only"):
            await asyncio.to_thread(read_statuses, [w.http_url], "")


async def test_metrics_can_require_the_key(service_nats: Any, tmp_path: Path) -> None:
    async with world(service_nats.url, tmp_path, **{"http.metrics_requires_key": True}) as w:
        for headers in ({}, {"X-API-Key": "wrong"}):
            code, body = await get(f"{w.http_url}/metrics", headers)
            assert code == 401 and json.loads(body)["error"].startswith("unauthorized"), headers
        code, body = await get(f"{w.http_url}/metrics", {"X-API-Key": API_KEY})
        assert code == 200 and b"titan_exec_commands_total" in body
        assert (await get(f"{w.http_url}/health"))[0] == 200
        code, body = await get(f"{w.http_url}/status")
        assert code == 200 and set(json.loads(body)) == PUBLIC_FIELDS


async def test_no_metric_label_carries_a_per_order_value(service_nats: Any, tmp_path: Path) -> None:
    """After a round trip and a refusal, every label set of every metric is made of the
    bounded names above, and no value is a signal id, client order id, or order detail."""
    async with world(service_nats.url, tmp_path) as w:
        ids = await round_trip_and_a_reject(w)
        w.svc.refresh_metrics()
        per_order = set(ids)
        for o in w.svc.state.orders.values():
            per_order |= {o.client_order_id, o.signal_id, str(o.qty), str(o.avg_fill_price)}
        labelled = 0
        for family in w.svc.metrics.registry.collect():
            for sample in family.samples:
                labels = {k: v for k, v in sample.labels.items() if k not in ("le", "quantile")}
                assert set(labels) <= LABEL_NAMES, (sample.name, labels)
                assert not per_order & set(labels.values()), (sample.name, labels)
                labelled += bool(labels)
        fills = w.svc.metrics.registry.get_sample_value("titan_exec_fills_total", {"venue": "sim"})
        assert labelled > 10 and fills is not None and fills >= 2  # the orders were counted
