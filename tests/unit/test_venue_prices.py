"""Where the venue's own prices come from (`runtime/quotes.py`), which symbols are priced,
how the simulator's hosts replace the venue's (`adapters/venue/quotes.py`), and the
`[market]` settings checked at load."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from titan_exec.adapters.venue.quotes import market_symbol, rebase_urls
from titan_exec.config import ConfigError, load
from titan_exec.core.positions import Position
from titan_exec.core.state import State
from titan_exec.runtime.quotes import quote_feed_for, symbols_to_price
from titan_exec_lab.sim.ccxt_client import sim_urls


def cfg(**overrides: Any) -> Any:
    return load(None, env={}, overrides={"security.hmac_secret": "x" * 16, **overrides})


def test_the_ccxt_venue_is_priced_from_its_own_exchange_and_hosts() -> None:
    feed = quote_feed_for(
        cfg(
            **{
                "venue.kind": "ccxt",
                "venue.exchange_id": "binanceusdm",
                "venue.base_url": "http://127.0.0.1:9",
                "market.poll_interval_ms": 500,
            }
        )
    )
    assert feed is not None
    assert feed.ws_method == "watch_bids_asks"
    assert feed.settings.poll_interval_ms == 500
    assert "every 500 ms" in feed.describe() and "fetch_bids_asks" in feed.describe()


def test_the_paper_venue_is_priced_from_its_configured_exchange_or_nats_alone() -> None:
    assert quote_feed_for(cfg()) is None  # as before: NATS tickers only
    feed = quote_feed_for(
        cfg(**{"venue.paper.prices_exchange_id": "binanceusdm", "market.websocket": False})
    )
    assert feed is not None and feed.ws_method is None  # REST only
    assert quote_feed_for(cfg(**{"venue.kind": "ccxt", "market.venue_prices": False})) is None


def test_the_priced_symbols_are_the_whitelist_and_what_we_hold_or_have_open() -> None:
    wl = frozenset({"BTC/USDT", "ETH/USDT"})
    state = State()
    assert symbols_to_price(state, "sim", wl) == wl  # no policy in the stream yet
    state.positions[("sim", "DOGE/USDT")] = Position(
        venue="sim", symbol="DOGE/USDT", qty=Decimal("3")
    )
    state.positions[("sim", "XRP/USDT")] = Position(venue="sim", symbol="XRP/USDT")  # flat
    state.positions[("other", "ADA/USDT")] = Position(
        venue="other", symbol="ADA/USDT", qty=Decimal("1")
    )
    state.open_orders[("sim", "BNB/USDT")] = {"c1"}  # type: ignore[arg-type]
    state.open_orders[("sim", "LTC/USDT")] = set()
    assert symbols_to_price(state, "sim", wl) == wl | {"DOGE/USDT", "BNB/USDT"}


def test_every_rest_and_websocket_host_moves_to_the_base_url() -> None:
    api = {
        "fapiPublic": "https://fapi.binance.com/fapi/v1",
        "ws": {
            "linear": "wss://fstream.binance.com/ws",
            "spot": "wss://stream.binance.com:9443/ws",
        },
        "other": 5,
    }
    moved = rebase_urls(api, "http://127.0.0.1:8765")
    assert moved["fapiPublic"] == "http://127.0.0.1:8765/fapi/v1"
    assert moved["fapiPublic"] == sim_urls("http://127.0.0.1:8765")["fapiPublic"]
    assert moved["ws"] == {"linear": "ws://127.0.0.1:8765/ws", "spot": "ws://127.0.0.1:8765/ws"}
    assert rebase_urls(api, "https://proxy.example/p")["ws"]["linear"] == (
        "wss://proxy.example/p/ws"
    )
    assert moved["other"] == 5


def test_a_canonical_symbol_maps_to_the_linear_swap_then_spot() -> None:
    markets = {"BTC/USDT:USDT": {}, "ETH/USDT": {}}
    assert market_symbol(markets, "BTC/USDT") == "BTC/USDT:USDT"
    assert market_symbol(markets, "ETH/USDT") == "ETH/USDT"
    assert market_symbol(markets, "SOL/USDT") is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"market.poll_interval_ms": 50}, "market.poll_interval_ms: must be >= 100"),
        (
            {"market.poll_interval_ms": 3000},  # the bundled policy's maxStalenessMs is 5000
            "market.poll_interval_ms (3000): must be at most half the policy's maxStalenessMs",
        ),
        ({"market.poll_interval_ms": "fast"}, "market.poll_interval_ms: expected an integer"),
        ({"market.websocket": "maybe"}, "market.websocket: expected true/false"),
        ({"market.every_ms": 5}, "unknown setting market.every_ms"),
        ({"venue.paper.prices_exchange_id": "no such"}, "venue.paper.prices_exchange_id"),
        ({"venue.paper.prices_base_url": "ftp://x"}, "venue.paper.prices_base_url"),
    ],
)
def test_market_settings_are_checked_at_load(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cfg(**overrides)


def test_the_poll_interval_is_checked_against_the_configured_policy(tmp_path: Path) -> None:
    bundled = Path(__file__).resolve().parents[2] / "src" / "titan_exec" / "data"
    policy = json.loads((bundled / "risk_policy.json").read_text())
    policy["maxStalenessMs"] = 20_000
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    loaded = cfg(**{"risk.policy_file": str(path), "market.poll_interval_ms": 10_000})
    assert loaded.market.poll_interval_ms == 10_000
    assert cfg().market.poll_interval_ms == 1000  # the default fits the bundled 5 s
