"""Where the exchange model's books come from (pure): the seeded price path, or quotes.

This module owns `Prices`: the top of book of a symbol at a time, from the seeded
`market.PricePath` unless a test pinned the symbol's mid (held on the tick grid); or, for
an engine configured `quoted`, the last bid and ask set from outside (none before the
first: no price).
"""

from __future__ import annotations

from decimal import Decimal, localcontext

from titan_exec.adapters.venue.exchange.market import (
    Book,
    PathParams,
    PricePath,
    SymbolSpec,
    floor_to,
)
from titan_exec.adapters.venue.exchange.records import EngineConfig
from titan_exec.core.model import DECIMAL_CONTEXT


class Prices:
    """The books of every symbol at any time; pins override the path."""

    def __init__(self, params: PathParams, *, quoted: bool = False) -> None:
        self.path = PricePath(params)
        self.pins: dict[str, Decimal] = {}
        self.quotes: dict[str, Book] | None = {} if quoted else None

    @classmethod
    def of(cls, config: EngineConfig, origin_ms: int) -> Prices:
        return cls(
            PathParams(
                seed=config.seed,
                origin_ms=origin_ms,
                step_ms=config.step_ms,
                volatility=config.volatility,
                spread_bps=config.spread_bps,
            ),
            quoted=config.quoted,
        )

    def book(self, spec: SymbolSpec, t_ms: int) -> Book | None:
        if self.quotes is not None:
            return self.quotes.get(spec.symbol)
        return self.path.book(spec, t_ms, self.pins.get(spec.symbol))

    def set_quote(self, symbol: str, bid: Decimal, ask: Decimal) -> None:
        if self.quotes is None:
            raise ValueError("this engine prices from its path: it takes no quotes")
        with localcontext(DECIMAL_CONTEXT):
            self.quotes[symbol] = Book(bid=bid, ask=ask, mid=(bid + ask) / 2)

    def pin_mid(self, spec: SymbolSpec, mid: Decimal | None) -> None:
        """Hold the mid at ``mid`` (floored to the tick) instead of the path; None: release."""
        if mid is None:
            self.pins.pop(spec.symbol, None)
            return
        with localcontext(DECIMAL_CONTEXT):
            self.pins[spec.symbol] = floor_to(mid, spec.tick_size)
