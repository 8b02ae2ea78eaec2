"""The paper venue with the test knobs: inspection, faults and trades behind the service's back.

`InstrumentedPaper` is the production `PaperVenue` plus what only tests use:

- inspection: `all_orders()` (every order the venue received, refused ones too),
  `all_fills()` (every trade, in order), `place_count` (place requests that reached the
  venue, whatever their outcome);
- faults, in the simulator's fault model (`Faults`, the knobs of ``POST /sim/faults``)
  where it fits: ``latency_ms`` (a sleep before each order request), ``lose_next`` with
  ``lose_scope`` "place" / "order" / "private" / "all" (the place is executed, then its
  answer is lost: `VenueUnknownOutcome`), ``invisible_ms`` (an order placed while it is
  set is invisible to `query_order` / `open_orders` for that long; it still trades and
  can be canceled); and `fail_next_place`, an exception raised once instead of placing;
- `book_external_trade`: a position change the service never sees as a fill (a
  liquidation, a manual trade on another session).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from titan_exec.adapters.venue.base import Placed, VenueRejected, VenueUnknownOutcome
from titan_exec.adapters.venue.exchange.account import net_trade
from titan_exec.adapters.venue.paper import PaperVenue, paper_spec
from titan_exec.config import Config
from titan_exec.core.model import ClientOrderId, Side
from titan_exec.core.reports import FillReport, OrderReport, PlaceRequest
from titan_exec_lab.sim.faults import Faults

PLACE_TAGS = frozenset({"place", "order", "private", "all"})
QUERY_TAGS = frozenset({"query", "order", "private", "all"})


class InstrumentedPaper(PaperVenue):
    """`PaperVenue` with inspection, fault injection and external trades (tests only)."""

    def __init__(self, name: str = "sim", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.faults = Faults()
        self.fail_next_place: Exception | None = None
        self.place_count = 0
        self._hidden_until: dict[ClientOrderId, int] = {}

    @classmethod
    def from_config(cls, cfg: Config, clock: Callable[[], int]) -> InstrumentedPaper:
        """The paper venue `runtime.app.make_venue` builds for ``cfg``, instrumented."""
        p = cfg.venue.paper
        return cls(
            cfg.venue.name,
            account=cfg.service.account,
            balance_usdt=Decimal(p.balance_usdt),
            taker_fee_bps=Decimal(p.taker_fee_bps),
            maker_fee_bps=Decimal(p.maker_fee_bps),
            fill_slices=p.fill_slices,
            slice_interval_ms=p.slice_interval_ms,
            clock=clock,
        )

    # -- faults --------------------------------------------------------------------------

    async def place(self, req: PlaceRequest) -> Placed:
        await self._latency()
        if self.fail_next_place is not None:
            exc, self.fail_next_place = self.fail_next_place, None
            raise exc
        self.place_count += 1
        lose = self.faults.take("lose", PLACE_TAGS)
        invisible_ms = self.faults.invisible_ms
        try:
            placed = await super().place(req)
        except VenueRejected as exc:
            if lose:
                raise VenueUnknownOutcome(f"response lost (was: {exc.reason})") from exc
            raise
        finally:
            if invisible_ms > 0:
                self._hidden_until[req.client_order_id] = self.engine.now_ms + invisible_ms
        if lose:
            raise VenueUnknownOutcome(f"response lost for {req.client_order_id}")
        return placed

    async def query_order(self, symbol: str, coid: ClientOrderId) -> OrderReport | None:
        await self._latency()
        report = await super().query_order(symbol, coid)
        return report if report is not None and self._visible(coid) else None

    async def open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        await self._latency()
        return [r for r in await super().open_orders(symbol) if self._visible(r.client_order_id)]

    def _visible(self, coid: ClientOrderId) -> bool:
        return self._clock() >= self._hidden_until.get(coid, 0)

    async def _latency(self) -> None:
        if self.faults.latency_ms > 0:
            await asyncio.sleep(self.faults.latency_ms / 1000)

    # -- inspection ----------------------------------------------------------------------

    def all_orders(self) -> list[OrderReport]:
        """Every order the venue ever received (refused ones included, hidden ones too)."""
        return [self.report(o) for o in self.engine.orders.values()] + list(self.refused.values())

    def all_fills(self) -> list[FillReport]:
        """Every trade the venue ever delivered, in order."""
        return [self.fill(t) for t in self.engine.trades]

    def book_external_trade(self, symbol: str, side: Side, qty: Decimal, price: Decimal) -> None:
        """A trade the service never sees as a fill: only the position and wallet move."""
        self.engine.list_symbol(paper_spec(symbol))
        now = self.engine.now_ms
        realized = net_trade(self.engine.positions[symbol], qty * side.sign, price, now)
        self.engine.wallet += realized
