"""The ccxt venue's decisions that need no network: outcome mapping, precision, secrets."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from ccxt.base import errors as cx  # type: ignore[import-untyped]

from titan_exec.adapters.venue.base import VenueRejected, VenueUnavailable, VenueUnknownOutcome
from titan_exec.adapters.venue.ccxt_answers import UNKNOWN_STATUS, order_status
from titan_exec.adapters.venue.ccxt_setup import rebase
from titan_exec.adapters.venue.ccxt_venue import (
    CcxtSettings,
    CcxtVenue,
    VenueConfigError,
    read_secret,
)
from titan_exec.core.model import ClientOrderId, OrderType, Side
from titan_exec.core.reports import PlaceRequest, VenueOrderStatus

MARKET = {
    "symbol": "BTC/USDT:USDT",
    "limits": {"amount": {"min": 0.001}, "cost": {"min": 100}},
}


class FakeExchange:
    """Stands in for a ccxt exchange object: the unified calls the venue makes."""

    def __init__(self, raise_on_create: Exception | None = None) -> None:
        self.markets = {"BTC/USDT:USDT": MARKET, "ETH/USDT": {"symbol": "ETH/USDT"}}
        self.raise_on_create = raise_on_create
        self.created: list[tuple[Any, ...]] = []

    async def load_markets(self) -> dict[str, Any]:
        return self.markets

    def market(self, symbol: str) -> dict[str, Any]:
        return self.markets[symbol]

    currencies: ClassVar[dict[str, Any]] = {}

    def set_markets(self, markets: dict[str, Any], currencies: Any = None) -> None:
        self.markets = markets

    def amount_to_precision(self, symbol: str, amount: str) -> str:
        return str(Decimal(amount).quantize(Decimal("0.001"), rounding="ROUND_DOWN"))

    def price_to_precision(self, symbol: str, price: str) -> str:
        return str(Decimal(price).quantize(Decimal("0.1")))

    async def create_order(self, *args: Any) -> dict[str, Any]:
        self.created.append(args)
        if self.raise_on_create is not None:
            raise self.raise_on_create
        return {"id": "42", "status": "open", "filled": 0, "info": {"status": "NEW"}}


def venue(fake: FakeExchange) -> CcxtVenue:
    v = CcxtVenue(CcxtSettings(exchange_id="binanceusdm", name="binance"))
    v.exchange = v._writer = fake  # reads and order writes: two clients in production
    return v


def req(
    qty: str = "0.01", limit: str | None = "50000.04", symbol: str = "BTC/USDT"
) -> PlaceRequest:
    return PlaceRequest(
        client_order_id=ClientOrderId("tx1c0"),
        symbol=symbol,
        side=Side.BUY,
        order_type=OrderType.LIMIT if limit else OrderType.MARKET,
        qty=Decimal(qty),
        limit_price=Decimal(limit) if limit else None,
        is_reduce_only=False,
    )


async def test_place_sends_precise_strings_and_the_client_order_id() -> None:
    fake = FakeExchange()
    placed = await venue(fake).place(req(qty="0.0109"))
    assert placed.venue_order_id == "42" and placed.status == "NEW"
    symbol, kind, side, amount, price, params = fake.created[0]
    assert (symbol, kind, side) == ("BTC/USDT:USDT", "limit", "buy")
    assert (amount, price) == ("0.010", "50000.0")  # strings at the market's precision
    assert params == {"clientOrderId": "tx1c0"}  # ccxt's unified parameter


@pytest.mark.parametrize(
    ("error", "outcome", "is_duplicate"),
    [
        (cx.DuplicateOrderId("-4116"), VenueRejected, True),
        (cx.InsufficientFunds("-2019"), VenueRejected, False),
        (cx.InvalidOrder("-1111"), VenueRejected, False),
        (
            cx.InvalidOrder('binance {"code":-4116,"msg":"ClientOrderId is duplicated."}'),
            VenueRejected,
            True,
        ),
        (cx.AuthenticationError("-2015"), VenueUnavailable, False),
        (cx.RateLimitExceeded("429"), VenueUnavailable, False),
        (cx.DDoSProtection("429 Too Many Requests"), VenueUnavailable, False),
        (cx.OperationFailed("-1001 Internal error"), VenueUnknownOutcome, False),
        (cx.RequestTimeout("timeout"), VenueUnknownOutcome, False),
        (cx.NetworkError("reset"), VenueUnknownOutcome, False),
        (cx.ExchangeNotAvailable("503"), VenueUnknownOutcome, False),
        (cx.ExchangeError("-1001 internal"), VenueUnknownOutcome, False),
    ],
)
async def test_ccxt_errors_map_to_definite_or_unknown_outcomes(
    error: Exception, outcome: type[Exception], is_duplicate: bool
) -> None:
    with pytest.raises(outcome) as info:
        await venue(FakeExchange(raise_on_create=error)).place(req())
    if isinstance(info.value, VenueRejected):
        assert info.value.is_duplicate is is_duplicate


async def test_minimum_amount_and_notional_are_checked_before_sending() -> None:
    fake = FakeExchange()
    with pytest.raises(VenueRejected, match="below the minimum"):
        await venue(fake).place(req(qty="0.0001"))
    with pytest.raises(VenueRejected, match="min notional"):
        await venue(fake).place(req(qty="0.001", limit="50000"))  # 50 < 100
    assert fake.created == []


async def test_an_unlisted_symbol_is_a_clear_rejection() -> None:
    with pytest.raises(VenueRejected, match="not listed"):
        await venue(FakeExchange()).place(req(symbol="DOGE/USDT"))


def test_symbols_map_to_the_linear_swap_then_spot() -> None:
    v = venue(FakeExchange())
    assert v.market_symbol("BTC/USDT") == "BTC/USDT:USDT"
    assert v.market_symbol("ETH/USDT") == "ETH/USDT"
    assert v.canonical("BTC/USDT:USDT") == "BTC/USDT"


def test_base_url_override_keeps_the_api_paths() -> None:
    assert rebase("https://fapi.binance.com/fapi/v1", "http://127.0.0.1:8765") == (
        "http://127.0.0.1:8765/fapi/v1"
    )
    v = CcxtVenue(CcxtSettings(exchange_id="binanceusdm", base_url="http://127.0.0.1:9/x"))
    assert v.exchange.urls["api"]["fapiPrivate"] == "http://127.0.0.1:9/x/fapi/v1"
    assert v._writer.urls["api"]["fapiPrivate"] == "http://127.0.0.1:9/x/fapi/v1"
    assert v._writer is not v.exchange  # its own rate-limit queue


def test_the_pace_is_ccxts_own_unless_set() -> None:
    own = CcxtVenue(CcxtSettings(exchange_id="binanceusdm"))
    assert own.exchange.rateLimit == own._writer.rateLimit == 50  # ccxt's binanceusdm pace
    fast = CcxtVenue(CcxtSettings(exchange_id="binanceusdm", rate_limit_ms=10))
    assert fast.exchange.rateLimit == fast._writer.rateLimit == 10


def test_unknown_exchange_id_names_the_setting() -> None:
    with pytest.raises(VenueConfigError, match=r"venue\.exchange_id"):
        CcxtVenue(CcxtSettings(exchange_id="nosuchexchange"))


def test_secrets_from_setting_environment_or_file(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text("from-file\n")
    assert read_secret("direct", {}, "K") == "direct"
    assert read_secret("", {"K": "from-env"}, "K") == "from-env"
    assert read_secret("", {"K_FILE": str(f)}, "K") == "from-file"
    assert read_secret("", {}, "K") == ""
    with pytest.raises(VenueConfigError, match="K_FILE"):
        read_secret("", {"K_FILE": str(tmp_path / "missing")}, "K")


def test_credentials_never_show_in_repr() -> None:
    v = CcxtVenue(CcxtSettings(api_key="AKEY-SECRET", api_secret="SSECRET"))
    assert "SECRET" not in repr(v) and "SECRET" not in repr(v.settings)


class PositionsExchange(FakeExchange):
    """positionRisk v3 as Binance answers it: only the non-flat symbols."""

    async def fetch_positions(self) -> list[dict[str, Any]]:
        return [
            {
                "symbol": "BTC/USDT:USDT",
                "contracts": 0.25,
                "side": "short",
                "info": {"positionAmt": "-0.250", "entryPrice": "50000.10"},
            }
        ]


@pytest.mark.parametrize(
    ("exchange_id", "expected"),
    [
        # Binance's list is complete: an asked symbol it leaves out is flat, explicitly
        ("binanceusdm", {"BTC/USDT": Decimal("-0.25"), "ETH/USDT": Decimal(0)}),
        # elsewhere a symbol left out stays unreported (unknown, never flat)
        ("bybit", {"BTC/USDT": Decimal("-0.25")}),
    ],
)
async def test_positions_report_flat_only_where_the_venue_says_so(
    exchange_id: str, expected: dict[str, Decimal]
) -> None:
    v = CcxtVenue(CcxtSettings(exchange_id=exchange_id, name="binance"))
    v.exchange = v._writer = PositionsExchange()
    # DOGE is not a market of this venue: unknown, not flat
    reports = await v.positions(frozenset({"BTC/USDT", "ETH/USDT", "DOGE/USDT"}))
    assert {r.symbol: r.qty for r in reports} == expected
    btc = next(r for r in reports if r.symbol == "BTC/USDT")
    assert btc.entry_price == Decimal("50000.10")


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ({"status": "open", "filled": 0, "info": {"status": "NEW"}}, "NEW"),
        (
            {"status": "open", "filled": 0.5, "info": {"status": "PARTIALLY_FILLED"}},
            "PARTIALLY_FILLED",
        ),
        ({"status": "closed", "info": {"status": "EXPIRED"}}, "EXPIRED"),  # Binance's own word wins
        ({"status": "open", "filled": 0.5, "info": {}}, "PARTIALLY_FILLED"),
        ({"status": "closed", "info": {}}, "FILLED"),
        ({"status": "canceled"}, "CANCELED"),
        ({"status": "expired"}, "EXPIRED"),
        ({"status": "rejected"}, "REJECTED"),
        ({"status": "pending_something", "info": {"status": "EXPIRED_IN_MATCH"}}, "NEW"),
    ],
)
def test_order_status_reads_both_vocabularies_into_the_enum(
    order: dict[str, Any], expected: str
) -> None:
    status = order_status(order)
    assert type(status) is VenueOrderStatus
    assert status is VenueOrderStatus(expected)
    if expected == "NEW" and order["status"] != "open":
        assert status is UNKNOWN_STATUS  # an unknown word is read as still open


def test_the_venue_names_its_account_on_its_order_reports() -> None:
    assert CcxtVenue(CcxtSettings(exchange_id="binanceusdm")).account == "main"  # the default
    v = CcxtVenue(CcxtSettings(exchange_id="binanceusdm", name="binance"), account="acct-7")
    rep = v.report(
        {"id": "42", "symbol": "BTC/USDT:USDT", "clientOrderId": "tx-1", "status": "open"}
    )
    assert (rep.venue, rep.account, rep.client_order_id) == ("binance", "acct-7", "tx-1")
