"""Where the exchange model's books come from (pure): the seeded price path, or a pin.

This module owns `Prices`: the top of book of a symbol at a time, from the seeded
`market.PricePath`, unless a test pinned the symbol's mid (held on the tick grid).
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

    def __init__(self, params: PathParams) -> None:
        self.path = PricePath(params)
        self.pins: dict[str, Decimal] = {}

    @classmethod
    def of(cls, config: EngineConfig, origin_ms: int) -> Prices:
        return cls(
            PathParams(
                seed=config.seed,
                origin_ms=origin_ms,
                step_ms=config.step_ms,
                volatility=config.volatility,
                spread_bps=config.spread_bps,
            )
        )

    def book(self, spec: SymbolSpec, t_ms: int) -> Book:
        return self.path.book(spec, t_ms, self.pins.get(spec.symbol))

    def pin_mid(self, spec: SymbolSpec, mid: Decimal | None) -> None:
        """Hold the mid at ``mid`` (floored to the tick) instead of the path; None: release."""
        if mid is None:
            self.pins.pop(spec.symbol, None)
            return
        with localcontext(DECIMAL_CONTEXT):
            self.pins[spec.symbol] = floor_to(mid, spec.tick_size)
