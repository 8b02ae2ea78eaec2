"""The ccxt venue's fill cursor: `fills_since(None)` starts from the session's start, also
when this venue object already read further for an earlier runner (a fenced active that
rejoined in process and leads again)."""

from __future__ import annotations

from typing import Any

from titan_exec.adapters.venue.ccxt_venue import CcxtSettings, CcxtVenue

MARKETS = {"BTC/USDT:USDT": {"symbol": "BTC/USDT:USDT"}}


class TradesExchange:
    """A ccxt stand-in with one market and its trades (`fromId` and `since` honoured)."""

    def __init__(self) -> None:
        self.markets = MARKETS
        self.currencies: dict[str, Any] = {}
        self.trades: list[dict[str, Any]] = []

    async def load_markets(self) -> dict[str, Any]:
        return self.markets

    def set_markets(self, markets: dict[str, Any], currencies: Any = None) -> None:
        self.markets = markets

    def trade(self, tid: int, order: str) -> None:
        self.trades.append(
            {
                "id": str(tid),
                "order": order,
                "side": "buy",
                "price": 100.0,
                "amount": 0.01,
                "timestamp": 10**13,  # after any session start
                "info": {"price": "100", "qty": "0.01", "commission": "0"},
            }
        )

    async def fetch_my_trades(
        self, symbol: str, since: int | None, limit: int, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        first = int(params.get("fromId", 0))
        return [t for t in self.trades if int(t["id"]) >= first][:limit]

    async def fetch_order(self, oid: str, symbol: str) -> dict[str, Any]:
        return {"id": oid, "clientOrderId": f"tx-{oid}", "status": "closed", "info": {}}


def venue(fake: TradesExchange) -> CcxtVenue:
    v = CcxtVenue(CcxtSettings(exchange_id="binanceusdm", name="sim"))
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
