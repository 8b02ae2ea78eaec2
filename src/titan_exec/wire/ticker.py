"""Book tickers from outside, checked into a `Ticker` or refused with a reason (pure).

Two inputs. A NATS message on ``titan.data.market.ticker.v1.<venue>.<symbol>`` in one of
two shapes (`parse_ticker_message`):

- ours, ``{"bid", "ask", "ts"}``: ``ts`` in ms, optional (``timestamp`` is its old name;
  missing or 0: the time of arrival);
- Binance's BookTicker, as titan-execution-rs read it (`src/market_data/types.rs:5-20`):
  ``{"s", "b", "B", "a", "A", "T", "E"}``, every field required (the Rust struct has no
  optional field); ``s`` the venue's symbol (``BTCUSDT``), which must name the subject's
  symbol; ``b``/``a`` the best bid and ask, ``B``/``A`` their quantities; ``T`` the
  transaction time and ``E`` the event time, ms integers. The ticker's time is ``E``.
  Other fields (``e``, ``u`` of the websocket message) are ignored.

And a venue's quote through ccxt (`venue_quote`): ccxt's floats, read by their ``repr``
(the shortest text that round-trips: ``0.1`` is 0.1, never 0.1000000000000000055...).

Prices are exact decimals. A JSON string is read as decimal text, exponent included as
rust_decimal's deserializer did (``"1e5"`` is 100000); a JSON number as the double
JavaScript holds (`js_decimal`). Refused: NaN and infinities, a price <= 0 or a negative
quantity, a magnitude outside 1e-28 .. 1e28 (rust_decimal's range; keeps the core's
arithmetic far from its context's limits) and a crossed book (ask < bid; ask = bid is a
locked book, accepted).

Every refusal names one of `REASONS` (a closed set: the label values of
``titan_exec_market_tickers_refused_total``) and says what was wrong in `detail`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from titan_exec.core.risk import Ticker
from titan_exec.wire.canonical import js_decimal, parse_json_strict
from titan_exec.wire.errors import WireError
from titan_exec.wire.subjects import Subjects
from titan_exec.wire.text import has_raw_bytes, has_surrogates

TICKER_MAX_BYTES: Final = 16 * 1024
TICKER_MAX_VALUES: Final = 64
TICKER_MAX_DEPTH: Final = 4
"""A ticker is a few fields: anything larger is refused before it is parsed."""

REASONS: Final = frozenset(
    {
        "subject",  # not titan.data.market.ticker.v1.<venue>.<symbol>, or not UTF-8
        "json",  # not strict JSON within the bounds above (NaN literal, duplicate key, ...)
        "unknown_shape",  # not an object, or neither of the two shapes
        "missing_field",  # a field the shape requires is absent (or null)
        "type",  # a field of the wrong type (a boolean price, a fractional time, ...)
        "number",  # price or quantity text that is not a decimal number
        "not_finite",  # NaN or an infinity
        "not_positive",  # a price <= 0, a quantity < 0
        "out_of_range",  # a magnitude outside 1e-28 .. 1e28
        "crossed",  # ask below bid
        "symbol_mismatch",  # BookTicker `s` names another symbol than the subject
    }
)

BOOK_TICKER_FIELDS: Final = ("s", "b", "B", "a", "A", "T", "E")

_DECIMAL_TEXT = re.compile(
    r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"  # 50000.1, .5, 1e5
    r"|[+-]?(?i:nan|inf|infinity)"  # read, then refused as not finite
)
_MAX_TEXT = 64
_MIN_ADJUSTED = -28
_MAX_ADJUSTED = 27


@dataclass(frozen=True, slots=True)
class TickerRefused:
    reason: str
    """One of `REASONS`."""
    detail: str


@dataclass(frozen=True, slots=True)
class TickerSeen:
    venue: str
    symbol: str
    """Canonical (``BTC/USDT``)."""
    ticker: Ticker
    shape: str
    """``titan`` or ``book_ticker``."""


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decimal_text(text: str, what: str) -> Decimal:
    """A price or quantity written as text: a decimal number, exponent allowed."""
    if len(text) > _MAX_TEXT or not _DECIMAL_TEXT.fullmatch(text):
        raise _Refused("number", f"{what} {text[:_MAX_TEXT]!r} is not a decimal number")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only what Decimal reads
        raise _Refused("number", f"{what} {text!r} is not a decimal number") from None


def _json_number(value: object, what: str) -> Decimal:
    """A price or quantity from JSON: text, or a number as JavaScript holds it."""
    if value is None:
        raise _Refused("missing_field", f"{what} is null")
    if isinstance(value, str):
        return decimal_text(value, what)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refused("type", f"{what} is a {type(value).__name__}, not a number or a string")
    return js_decimal(value)


def _venue_number(value: object, what: str) -> Decimal:
    """A price from ccxt: a float (by its repr), an int, or text."""
    if value is None:
        raise _Refused("missing_field", f"the venue gave no {what}")
    if isinstance(value, bool):
        raise _Refused("type", f"{what} is a boolean")
    if isinstance(value, float):
        return decimal_text(repr(value), what)
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        return decimal_text(value, what)
    raise _Refused("type", f"{what} is a {type(value).__name__}")


def _in_range(value: Decimal, what: str, *, is_price: bool) -> Decimal:
    if not value.is_finite():
        raise _Refused("not_finite", f"{what} is {value}")
    if (value <= 0) if is_price else (value < 0):
        raise _Refused("not_positive", f"{what} {value} is not {'> 0' if is_price else '>= 0'}")
    if value != 0 and not _MIN_ADJUSTED <= value.adjusted() <= _MAX_ADJUSTED:
        raise _Refused("out_of_range", f"{what} {value} is outside 1e-28 .. 1e28")
    return value


def checked_book(bid: Decimal, ask: Decimal) -> tuple[Decimal, Decimal]:
    """Both prices finite, positive, in range, and the book not crossed (or `_Refused`)."""
    _in_range(bid, "bid", is_price=True)
    _in_range(ask, "ask", is_price=True)
    if ask < bid:
        raise _Refused("crossed", f"crossed book: ask {ask} < bid {bid}")
    return bid, ask


def _ms(value: object, what: str) -> int:
    if value is None:
        raise _Refused("missing_field", f"{what} is null")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Refused("type", f"{what} {value!r} is not an integer of milliseconds")
    if value < 0:
        raise _Refused("type", f"{what} {value} is negative")
    return value


def _compact(symbol: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", symbol.upper())


def _titan_shape(doc: dict[str, Any], now_ms: int) -> Ticker:
    for key in ("bid", "ask"):
        if key not in doc:
            raise _Refused("missing_field", f"{key} is missing")
    bid, ask = checked_book(_json_number(doc["bid"], "bid"), _json_number(doc["ask"], "ask"))
    ts_raw = doc.get("ts") or doc.get("timestamp") or now_ms
    return Ticker(bid=bid, ask=ask, ts_ms=_ms(ts_raw, "ts"))


def _book_ticker_shape(doc: dict[str, Any], symbol: str) -> Ticker:
    missing = [key for key in BOOK_TICKER_FIELDS if key not in doc]
    if missing:
        raise _Refused("missing_field", f"BookTicker field {', '.join(missing)} missing")
    s = doc["s"]
    if not isinstance(s, str):
        raise _Refused("type", f"s is a {type(s).__name__}, not a string")
    if _compact(s) != _compact(symbol):
        raise _Refused("symbol_mismatch", f"s {s[:40]!r} is not the subject's {symbol}")
    bid, ask = checked_book(_json_number(doc["b"], "b"), _json_number(doc["a"], "a"))
    _in_range(_json_number(doc["B"], "B"), "B", is_price=False)
    _in_range(_json_number(doc["A"], "A"), "A", is_price=False)
    _ms(doc["T"], "T")
    return Ticker(bid=bid, ask=ask, ts_ms=_ms(doc["E"], "E"))


_SUBJECTS: Final = Subjects()
"""The ticker subjects are the same in every namespace."""


def parse_ticker_message(subject: str, data: bytes, *, now_ms: int) -> TickerSeen | TickerRefused:
    """A NATS ticker message in either shape, or why it cannot be used."""
    try:
        if has_raw_bytes(subject) or has_surrogates(subject):
            raise WireError("subject", "not UTF-8")
        route = _SUBJECTS.parse_ticker(subject)
    except WireError:
        return TickerRefused("subject", "not titan.data.market.ticker.v1.<venue>.<symbol>")
    venue, symbol = route.venue, route.symbol
    try:
        try:
            doc = parse_json_strict(
                data,
                max_bytes=TICKER_MAX_BYTES,
                max_depth=TICKER_MAX_DEPTH,
                max_values=TICKER_MAX_VALUES,
            )
        except WireError as err:
            raise _Refused("json", str(err)) from None
        if not isinstance(doc, dict):
            raise _Refused("unknown_shape", f"a ticker is an object, not a {type(doc).__name__}")
        if "bid" in doc or "ask" in doc:
            return TickerSeen(venue, symbol, _titan_shape(doc, now_ms), "titan")
        if any(key in doc for key in BOOK_TICKER_FIELDS):
            return TickerSeen(venue, symbol, _book_ticker_shape(doc, symbol), "book_ticker")
        keys = ", ".join(sorted(doc)[:8])
        raise _Refused("unknown_shape", f"neither {{bid, ask, ts}} nor a BookTicker: {keys}")
    except _Refused as refused:
        return TickerRefused(refused.reason, refused.detail)


def venue_quote(bid: object, ask: object, ts_ms: int) -> Ticker | TickerRefused:
    """A venue's best bid and ask as ccxt gives them (floats), stamped `ts_ms`."""
    try:
        prices = checked_book(_venue_number(bid, "bid"), _venue_number(ask, "ask"))
    except _Refused as refused:
        return TickerRefused(refused.reason, refused.detail)
    return Ticker(bid=prices[0], ask=prices[1], ts_ms=ts_ms)
