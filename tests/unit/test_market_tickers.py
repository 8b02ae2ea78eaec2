"""Book tickers from outside (`wire/ticker.py`, `runtime/market.py`): our shape and Binance's
BookTicker on NATS, the venue's own quotes through ccxt; what cannot be used is counted by
reason, on the metric too, and logged at a bounded rate — never dropped silently."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from titan_exec.api.metrics import Metrics
from titan_exec.runtime.market import BoundedLog, MarketData
from titan_exec.wire.ticker import REASONS, TickerRefused, TickerSeen, parse_ticker_message

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "upstream" / "producer_bookticker.json"
NOW = 1_700_000_000_000
SUBJECT = "titan.data.market.ticker.v1.binance.BTC_USDT"


def book_ticker(**changes: Any) -> dict[str, Any]:
    """The fixture's BookTicker at `NOW`, with `changes` (None: the field removed)."""
    body: dict[str, Any] = json.loads(FIXTURE.read_text())["body"]
    doc = {k: NOW if v == "$NOW" else v for k, v in body.items()}
    for key, value in changes.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    return doc


def parse(doc: Any, subject: str = SUBJECT) -> TickerSeen | TickerRefused:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return parse_ticker_message(subject, data, now_ms=NOW + 5)


def refusal(doc: Any) -> str:
    seen = parse(doc)
    assert isinstance(seen, TickerRefused), seen
    assert seen.reason in REASONS
    return seen.reason


# --- Binance's BookTicker -------------------------------------------------------------------


def test_the_upstream_book_ticker_is_read_as_decimal_prices_at_its_event_time() -> None:
    seen = parse(book_ticker(E=NOW + 2, T=NOW + 1))
    assert isinstance(seen, TickerSeen)
    assert (seen.venue, seen.symbol, seen.shape) == ("binance", "BTC/USDT", "book_ticker")
    assert seen.ticker.bid == Decimal("50000.10") and seen.ticker.ask == Decimal("50000.20")
    assert seen.ticker.ts_ms == NOW + 2  # E, the event time


def test_the_websocket_form_with_its_event_type_and_update_id_is_read_too() -> None:
    ws = json.loads(FIXTURE.read_text())["ws_body"]
    doc = {k: NOW if v == "$NOW" else v for k, v in ws.items() if k != "_source"}
    seen = parse(doc)
    assert isinstance(seen, TickerSeen) and seen.ticker.ask == Decimal("50000.20")


@pytest.mark.parametrize("field", ["s", "b", "B", "a", "A", "T", "E"])
def test_a_book_ticker_missing_any_field_is_refused(field: str) -> None:
    assert refusal(book_ticker(**{field: None})) == "missing_field"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"b": "-1"}, "not_positive"),
        ({"b": "0"}, "not_positive"),
        ({"A": "-0.5"}, "not_positive"),  # a quantity may be 0, not negative
        ({"b": "NaN"}, "not_finite"),
        ({"a": "Infinity"}, "not_finite"),
        ({"b": "1e-400"}, "out_of_range"),
        ({"a": "1e40"}, "out_of_range"),
        ({"b": "50000.30"}, "crossed"),  # bid above the ask 50000.20
        ({"b": "abc"}, "number"),
        ({"b": " 50000"}, "number"),  # Decimal() would strip the space: not here
        ({"b": "1_000"}, "number"),  # nor read the underscore
        ({"b": True}, "type"),
        ({"b": None}, "missing_field"),
        ({"b": ["50000"]}, "type"),
        ({"E": 1.5}, "type"),
        ({"T": "1700000000000"}, "type"),
        ({"s": 7}, "type"),
        ({"s": "ETHUSDT"}, "symbol_mismatch"),
    ],
)
def test_a_book_ticker_with_a_bad_value_is_refused_with_its_reason(
    changes: dict[str, Any], reason: str
) -> None:
    assert refusal(book_ticker(**changes)) == reason


def test_nan_as_a_json_literal_is_not_json() -> None:
    raw = json.dumps(book_ticker()).replace('"50000.10"', "NaN").encode()
    assert refusal(raw) == "json"


def test_a_price_with_an_exponent_is_the_exact_decimal_it_writes() -> None:
    """rust_decimal, which titan-execution-rs read these with, falls back to scientific
    notation for a string: "1e5" is 100000 there and here (exact, no float)."""
    seen = parse(book_ticker(b="1e5", a="1.00001E5"))
    assert isinstance(seen, TickerSeen)
    assert seen.ticker.bid == Decimal(100000) and seen.ticker.ask == Decimal("100001")


def test_json_numbers_are_read_as_the_double_javascript_holds() -> None:
    seen = parse(book_ticker(b=50000.1, a=50000.2))
    assert isinstance(seen, TickerSeen)
    assert (seen.ticker.bid, seen.ticker.ask) == (Decimal("50000.1"), Decimal("50000.2"))


def test_a_locked_book_is_accepted_as_the_upstream_engine_builds_one_per_trade() -> None:
    seen = parse(book_ticker(b="50000.2", a="50000.2"))
    assert isinstance(seen, TickerSeen) and seen.ticker.bid == seen.ticker.ask


@pytest.mark.parametrize(
    "doc",
    [
        {"symbol": "BTC/USDT", "price": "50000"},  # the brain's NatsConsumer shape
        {"c": "50000"},  # powerlaw-lab's
        {},
        ["50000", "50001"],
        "50000",
    ],
)
def test_an_unknown_shape_is_refused_as_such(doc: Any) -> None:
    assert refusal(doc) == "unknown_shape"


def test_our_own_shape_is_still_read() -> None:
    seen = parse({"bid": "1.5", "ask": 2, "ts": NOW})
    assert isinstance(seen, TickerSeen) and seen.shape == "titan"
    assert (seen.ticker.bid, seen.ticker.ask, seen.ticker.ts_ms) == (Decimal("1.5"), 2, NOW)
    missing_ts = parse({"bid": "1.5", "ask": "2"})
    assert isinstance(missing_ts, TickerSeen) and missing_ts.ticker.ts_ms == NOW + 5
    assert refusal({"bid": "2", "ask": "1"}) == "crossed"
    assert refusal({"bid": "1"}) == "missing_field"


# --- counted, on the metric, logged at a bounded rate ---------------------------------------


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_every_refusal_is_counted_by_reason_and_on_the_metric() -> None:
    metrics = Metrics()
    market = MarketData(lambda: NOW, metrics=metrics)
    market.on_ticker(SUBJECT, json.dumps(book_ticker(b="50000.30")).encode())
    market.on_ticker(SUBJECT, json.dumps(book_ticker(b="50000.30")).encode())
    market.on_ticker(SUBJECT, b'{"price": 1}')
    assert market.tickers == {}
    assert market.refused == {("nats", "crossed"): 2, ("nats", "unknown_shape"): 1}
    assert market.bad_tickers == 3
    text = generate_latest(metrics.registry).decode()
    assert 'titan_exec_market_tickers_refused_total{reason="crossed",source="nats"} 2.0' in text
    assert 'reason="unknown_shape",source="nats"} 1.0' in text
    assert market.status_doc()["refused"] == {"nats:crossed": 2, "nats:unknown_shape": 1}


def test_refusals_are_logged_once_per_reason_per_ten_seconds_with_the_suppressed_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeMonotonic()
    market = MarketData(lambda: NOW, monotonic=clock)
    bad = json.dumps(book_ticker(b="-1")).encode()
    with caplog.at_level(logging.WARNING, logger="titan_exec.runtime.market"):
        for _ in range(5):
            market.on_ticker(SUBJECT, bad)
            clock.now += 1
        market.on_ticker(SUBJECT, b"[]")  # another reason: its own line at once
        clock.now += 6  # 11 s after the first line
        market.on_ticker(SUBJECT, bad)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "not_positive" in lines[0] and "more like it" not in lines[0]
    assert "unknown_shape" in lines[1]
    assert "not_positive" in lines[2] and "(4 more like it in the last 11 s)" in lines[2]
    assert market.refused[("nats", "not_positive")] == 6


def test_the_bounded_log_says_nothing_twice_within_its_period() -> None:
    clock = FakeMonotonic()
    logger = logging.getLogger("test.bounded")
    bounded = BoundedLog(logger, every_s=10, monotonic=clock)
    assert bounded.warning("k", "first")
    assert not bounded.warning("k", "second")
    assert bounded.warning("other", "other key")
    clock.now += 10
    assert bounded.warning("k", "third")


# --- the venue's own quotes (ccxt's floats) -----------------------------------------------------


def test_a_venue_quote_is_read_by_the_float_repr_never_float_arithmetic() -> None:
    market = MarketData(lambda: NOW)
    ticker = market.on_venue_quote("binance", "BTC/USDT", 0.1, 0.30000000000000004, "ws")
    assert ticker is not None
    assert ticker.bid == Decimal("0.1") and ticker.ask == Decimal("0.30000000000000004")
    assert ticker.ts_ms == NOW  # stamped when it arrived
    assert market.sources[("binance", "BTC/USDT")] == "ws"


@pytest.mark.parametrize(
    ("bid", "ask", "reason"),
    [
        (float("nan"), 1.0, "not_finite"),
        (1.0, float("inf"), "not_finite"),
        (None, 1.0, "missing_field"),
        (-1.0, 1.0, "not_positive"),
        (0.0, 1.0, "not_positive"),
        (2.0, 1.0, "crossed"),
        (True, 1.0, "type"),
        ({"p": 1}, 1.0, "type"),
    ],
)
def test_a_venue_quote_that_cannot_be_a_price_is_refused_and_counted(
    bid: object, ask: object, reason: str
) -> None:
    metrics = Metrics()
    market = MarketData(lambda: NOW, metrics=metrics)
    assert market.on_venue_quote("binance", "BTC/USDT", bid, ask, "rest") is None
    assert market.refused == {("rest", reason): 1}
    assert market.tickers == {}
    assert market.bad_tickers == 0  # NATS input only


def test_the_newest_ticker_wins_across_inputs_and_arrival_order_within_one() -> None:
    now = [NOW]
    market = MarketData(lambda: now[0])
    key = ("binance", "BTC/USDT")
    assert market.on_venue_quote("binance", "BTC/USDT", 100.0, 101.0, "ws") is not None
    # a NATS ticker older than the venue's quote is not used
    old = json.dumps({"bid": "90", "ask": "91", "ts": NOW - 1000}).encode()
    assert market.on_ticker(SUBJECT, old) is None
    assert market.tickers[key].bid == 100
    # a newer one is
    new = json.dumps({"bid": "95", "ask": "96", "ts": NOW + 10}).encode()
    assert market.on_ticker(SUBJECT, new) is not None
    assert market.sources[key] == "nats"
    # within one input the later message wins whatever its time
    older_again = json.dumps({"bid": "94", "ask": "95", "ts": NOW}).encode()
    assert market.on_ticker(SUBJECT, older_again) is not None
    assert market.tickers[key].bid == 94
    now[0] += 20
    assert market.on_venue_quote("binance", "BTC/USDT", 99.0, 99.5, "rest") is not None
    assert market.sources[key] == "rest" and market.mark(*key) == Decimal("99.25")
