"""The ccxt venue's fill cursor: `fills_since(None)` starts from the session's start, also
when this venue object already read further for an earlier runner (a fenced active that
rejoined in process and leads again). Polling only (`user_stream=False`): the stream's
sweeps are `tests/unit/test_ccxt_userstream.py`."""

from __future__ import annotations

from typing import Any

from titan_exec.adapters.venue.ccxt_venue import CcxtSettings, CcxtVenue

MARKETS = {"BTC/USDT:USDT": {"symbol": "BTC/USDT:USDT"}}


class TradesExchange:
    """A ccxt stand-in with one market and its trades (`since` honoured; a hidden trade
    is not returned until shown)."""

    def __init__(self) -> None:
        self.markets = MARKETS
        self.currencies: dict[str, Any] = {}
        self.trades: list[dict[str, Any]] = []
        self.hidden: set[str] = set()
        self.calls: list[int | None] = []
        self.orders_fetched: list[str] = []

    async def load_markets(self) -> dict[str, Any]:
        return self.markets

    def set_markets(self, markets: dict[str, Any], currencies: Any = None) -> None:
        self.markets = markets

    def trade(self, tid: int, order: str, at_ms: int = 10**13) -> None:
        self.trades.append(
            {
                "id": str(tid),
                "order": order,
                "side": "buy",
                "price": 100.0,
                "amount": 0.01,
                "timestamp": at_ms,  # after any session start
                "info": {"price": "100", "qty": "0.01", "commission": "0"},
            }
        )

    async def fetch_my_trades(
        self, symbol: str, since: int | None, limit: int, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        self.calls.append(since)
        return [
            t
            for t in sorted(self.trades, key=lambda t: (t["timestamp"], int(t["id"])))
            if (since is None or t["timestamp"] >= since) and t["id"] not in self.hidden
        ][:limit]

    async def fetch_order(self, oid: str, symbol: str) -> dict[str, Any]:
        self.orders_fetched.append(oid)
        return {"id": oid, "clientOrderId": f"tx-{oid}", "status": "closed", "info": {}}


def venue(fake: TradesExchange) -> CcxtVenue:
    v = CcxtVenue(CcxtSettings(exchange_id="binanceusdm", name="sim", user_stream=False))
    v.exchange = v._writer = fake
    return v


async def test_a_new_runner_reads_the_trades_an_earlier_runner_already_read() -> None:
    fake = TradesExchange()
    v = venue(fake)
    fake.trade(1, "o1")
    first, cursor = await v.fills_since(None, frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in first] == ["1"]
    fake.trade(2, "o2")
    later, _ = await v.fills_since(cursor, frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in later] == ["2"]  # a cursor goes on from where it was

    # fenced before trade 2 was recorded; leading again, a new runner starts with None
    again, _ = await v.fills_since(None, frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in again] == ["1", "2"]


async def test_a_trade_shown_late_behind_later_ones_is_still_reported_once() -> None:
    fake = TradesExchange()
    v = venue(fake)
    t0 = 10**13
    fake.trade(1, "o1", t0)
    fake.trade(2, "o2", t0 + 100)  # its order not visible to queries yet
    fake.trade(3, "o3", t0 + 200)
    fake.hidden.add("2")
    first, cursor = await v.fills_since(None, frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in first] == ["1", "3"]
    fake.hidden.clear()  # visible now, behind trade 3
    later, cursor = await v.fills_since(cursor, frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in later] == ["2"]
    again, _ = await v.fills_since(cursor, frozenset({"BTC/USDT"}))
    assert again == []  # each trade reported once
    # each poll reads again from the newest trade seen minus the rescan window
    assert fake.calls[-1] == t0 + 200 - v.settings.fill_rescan_ms


async def test_more_trades_than_a_page_are_read_page_by_page() -> None:
    fake = TradesExchange()
    v = venue(fake)
    t0 = 10**13
    for i in range(1, 2501):
        fake.trade(i, f"o{i}", t0 + i)
    fills, _ = await v.fills_since(None, frozenset({"BTC/USDT"}))
    assert [int(f.trade_id) for f in fills] == list(range(1, 2501))


class ManyMarkets(TradesExchange):
    """Three markets; `fetch_my_trades` records which market each poll read."""

    def __init__(self) -> None:
        super().__init__()
        self.markets = {
            m: {"symbol": m} for m in ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT")
        }
        self.read: list[str] = []

    async def fetch_my_trades(
        self, symbol: str, since: int | None, limit: int, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        self.read.append(symbol)
        return []


async def test_a_poll_sweeps_only_the_symbols_asked_for_and_the_non_flat_positions() -> None:
    fake = ManyMarkets()
    v = venue(fake)
    await v._markets()
    for symbol in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        v.trades.symbols.add(v.market_symbol(symbol))  # each traded once in this process
    await v.fills_since(None, frozenset({"ETH/USDT"}))
    assert fake.read == ["ETH/USDT:USDT"]  # not every symbol ever traded
    fake.read.clear()
    v.trades.note_positions(frozenset({"SOL/USDT:USDT"}))  # the venue's last answer
    await v.fills_since(None, frozenset({"ETH/USDT"}))
    assert sorted(fake.read) == ["ETH/USDT:USDT", "SOL/USDT:USDT"]
    fake.read.clear()
    await v.fills_since(None, frozenset())  # nothing open: the positions alone
    assert fake.read == ["SOL/USDT:USDT"]


async def test_the_venues_position_answer_names_the_non_flat_symbols() -> None:
    fake = ManyMarkets()

    async def fetch_positions() -> list[dict[str, Any]]:
        return [
            {"symbol": "SOL/USDT:USDT", "info": {"positionAmt": "-3", "entryPrice": "150"}},
            {"symbol": "ETH/USDT:USDT", "info": {"positionAmt": "0", "entryPrice": "0"}},
        ]

    fake.fetch_positions = fetch_positions  # type: ignore[attr-defined]
    v = venue(fake)
    await v.positions()
    assert v.trades.nonflat == frozenset({"SOL/USDT:USDT"})


async def test_trades_already_recorded_as_fills_are_neither_reported_nor_looked_up() -> None:
    """After a takeover the lookback window holds the earlier active's trades: those the
    state has recorded cost no order lookup (one REST call each) and are not reported;
    an unrecorded one of an unknown order is looked up and reported once."""
    fake = TradesExchange()
    v = venue(fake)
    for tid in range(1, 101):
        fake.trade(tid, f"o{tid}", at_ms=10**13 + tid)  # orders of the previous active
    recorded = {str(t) for t in range(1, 100)}  # all but trade 100
    asked: list[tuple[str, int]] = []

    def is_recorded(trade_id: str, ts_ms: int) -> bool:
        asked.append((trade_id, ts_ms))
        return trade_id in recorded

    v.set_recorded_fills(is_recorded)
    fills, cursor = await v.fills_since(None, frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in fills] == ["100"]
    assert fills[0].client_order_id == "tx-o100"
    assert fake.orders_fetched == ["o100"]  # one lookup, not a hundred
    assert asked[0] == ("1", 10**13 + 1)
    again, _ = await v.fills_since(cursor, frozenset({"BTC/USDT"}))
    assert again == [] and fake.orders_fetched == ["o100"]  # none reported twice
    v.set_recorded_fills(None)  # no predicate (not leading): every new trade reported
    fake.trade(101, "o101", at_ms=10**13 + 101)
    later, _ = await v.fills_since(cursor, frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in later] == ["101"]
