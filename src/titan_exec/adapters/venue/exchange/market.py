"""Symbols and prices of the venue simulator (pure: no I/O, clock or randomness).

This module owns:

- `SymbolSpec`: a futures symbol's filters as Binance publishes them (tick size, step
  size, minimum quantity, minimum notional, leverage), the default symbols and the
  simulator's longer list (`SIM_SYMBOLS`, 24);
- `PathParams` / `PricePath`: a seeded, deterministic price path per symbol. The mid price
  at time ``t`` is ``start_price * exp(volatility * W(i))`` with ``i`` the path step of
  ``t`` (``(t - origin_ms) // step_ms``) and ``W`` a random walk built as a Brownian bridge
  over dyadic intervals, each interval's midpoint drawn from a SHA-256 hash of
  ``(seed, symbol, interval)``. So ``W(i)`` is a pure function of ``(seed, symbol, i)``,
  computed in O(log i) whatever the order or spacing of the calls: the same seed gives
  the same path, however often the simulator ticks and across restarts;
- `Book`: the top of book, mid ± half the spread, on the tick grid;
- Decimal helpers (multiples, fixed formatting) shared by the engine and the renderer.

All arithmetic is Decimal in `DECIMAL_CONTEXT` (never float).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_HALF_EVEN, Decimal, localcontext

from titan_exec.core.model import DECIMAL_CONTEXT

ZERO = Decimal(0)
ONE = Decimal(1)

_LEVELS = 44
"""The bridge covers 2**44 steps (about 55 000 years of 100 ms steps)."""
_SPAN = 1 << _LEVELS


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One USDⓈ-M perpetual as the simulator lists it."""

    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    start_price: Decimal
    min_price: Decimal
    max_price: Decimal
    leverage: int = 20
    maint_margin_ratio: Decimal = Decimal("0.004")

    @property
    def canonical(self) -> str:
        """The service's symbol form: ``BTC/USDT``."""
        return f"{self.base}/{self.quote}"

    @property
    def price_decimals(self) -> int:
        return decimals_of(self.tick_size)

    @property
    def qty_decimals(self) -> int:
        return decimals_of(self.step_size)


def _spec(
    base: str,
    tick: str,
    step: str,
    min_notional: str,
    start: str,
    *,
    max_qty: str,
    min_price: str,
    max_price: str,
) -> SymbolSpec:
    return SymbolSpec(
        symbol=f"{base}USDT",
        base=base,
        quote="USDT",
        tick_size=Decimal(tick),
        step_size=Decimal(step),
        min_qty=Decimal(step),
        max_qty=Decimal(max_qty),
        min_notional=Decimal(min_notional),
        start_price=Decimal(start),
        min_price=Decimal(min_price),
        max_price=Decimal(max_price),
    )


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    # the filters of Binance's USDⓈ-M perpetuals (tick, step = min qty, min notional)
    _spec("BTC", "0.10", "0.001", "100", "60000", max_qty="1000", min_price="556.80",
          max_price="4529764"),
    _spec("ETH", "0.01", "0.001", "20", "3000", max_qty="10000", min_price="39.86",
          max_price="306177"),
    _spec("SOL", "0.0100", "1", "5", "150", max_qty="1000000", min_price="0.4200",
          max_price="6857"),
    _spec("BNB", "0.010", "0.01", "5", "600", max_qty="100000", min_price="6.600",
          max_price="180000"),
)  # fmt: skip


def _listed(base: str, tick: str, step: str, min_notional: str, start: str) -> SymbolSpec:
    """A further perpetual of the simulator's list: its price band is one tick up to a
    thousand times the start price, its maximum quantity a million steps."""
    tick_d = Decimal(tick)
    with localcontext(DECIMAL_CONTEXT):
        max_price = (Decimal(start) * 1000 / tick_d).to_integral_value(ROUND_DOWN) * tick_d
        max_qty = Decimal(step) * 1_000_000
    return _spec(
        base, tick, step, min_notional, start,
        max_qty=f"{max_qty.normalize():f}", min_price=tick, max_price=f"{max_price:f}",
    )  # fmt: skip


SIM_SYMBOLS: tuple[SymbolSpec, ...] = (
    *DEFAULT_SYMBOLS,
    # more USDⓈ-M perpetuals, with Binance's tick and step sizes and minimum notionals
    _listed("XRP", "0.0001", "0.1", "5", "0.6000"),
    _listed("DOGE", "0.000010", "1", "5", "0.150000"),
    _listed("ADA", "0.00010", "1", "5", "0.45000"),
    _listed("AVAX", "0.0010", "1", "5", "35.0000"),
    _listed("LINK", "0.001", "0.01", "20", "15.000"),
    _listed("DOT", "0.001", "0.1", "5", "7.000"),
    _listed("LTC", "0.01", "0.001", "20", "80.00"),
    _listed("TRX", "0.00001", "1", "5", "0.12000"),
    _listed("BCH", "0.01", "0.001", "20", "400.00"),
    _listed("NEAR", "0.0010", "1", "5", "5.0000"),
    _listed("ATOM", "0.001", "0.01", "5", "8.000"),
    _listed("UNI", "0.0010", "1", "5", "8.0000"),
    _listed("APT", "0.00010", "0.1", "5", "9.00000"),
    _listed("ARB", "0.0001", "0.1", "5", "1.1000"),
    _listed("OP", "0.0001", "0.1", "5", "2.2000"),
    _listed("FIL", "0.001", "0.1", "5", "5.000"),
    _listed("ETC", "0.001", "0.01", "20", "25.000"),
    _listed("SUI", "0.00010", "0.1", "5", "1.50000"),
    _listed("INJ", "0.001", "0.1", "5", "25.000"),
    _listed("AAVE", "0.010", "0.1", "5", "100.000"),
)
"""What the venue simulator lists by default: the four of `DEFAULT_SYMBOLS` first, then
twenty more (`sim_symbols` takes the first N)."""


def sim_symbols(count: int) -> tuple[SymbolSpec, ...]:
    """The first ``count`` symbols of `SIM_SYMBOLS` (1 to its length)."""
    if not 1 <= count <= len(SIM_SYMBOLS):
        raise ValueError(f"symbol count must be 1 to {len(SIM_SYMBOLS)}, got {count}")
    return SIM_SYMBOLS[:count]


@dataclass(frozen=True, slots=True)
class PathParams:
    """What determines every price of a run."""

    seed: int
    origin_ms: int
    """Time of path step 0 (the price there is the symbol's start price)."""
    step_ms: int = 100
    volatility: Decimal = Decimal("0.0001")
    """Standard deviation of the log price per step (0.0001: ~0.8 % per minute)."""
    spread_bps: Decimal = Decimal(1)
    """Full spread in basis points of the mid; at least one tick each side."""


@dataclass(frozen=True, slots=True)
class Book:
    bid: Decimal
    ask: Decimal
    mid: Decimal


def decimals_of(step: Decimal) -> int:
    """Decimal places of a tick or step size (``0.010`` -> 3, ``1`` -> 0)."""
    exponent = step.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def is_multiple(value: Decimal, step: Decimal) -> bool:
    with localcontext(DECIMAL_CONTEXT):
        return (value % step) == ZERO


def floor_to(value: Decimal, step: Decimal) -> Decimal:
    with localcontext(DECIMAL_CONTEXT):
        return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def fixed(value: Decimal, places: int) -> str:
    """``value`` with exactly ``places`` decimals (half-even), Binance style."""
    with localcontext(DECIMAL_CONTEXT):
        q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if q == ZERO:
        q = abs(q)  # never "-0.00"
    return f"{q:f}"


def _unit_samples(seed: int, symbol: str, a: int, b: int) -> list[Decimal]:
    """Sixteen uniform samples in [0, 1) drawn from the interval's hash."""
    digest = hashlib.sha512(f"{seed}|{symbol}|{a}|{b}".encode()).digest()
    scale = Decimal(1 << 32)
    return [Decimal(int.from_bytes(digest[k : k + 4], "big")) / scale for k in range(0, 64, 4)]


def _normal(seed: int, symbol: str, a: int, b: int) -> Decimal:
    """An approximately standard normal sample (Irwin–Hall: 12 uniforms minus 6)."""
    return sum(_unit_samples(seed, symbol, a, b)[:12], ZERO) - 6


class PricePath:
    """Deterministic mid prices per symbol; results are memoised per (symbol, step)."""

    def __init__(self, params: PathParams) -> None:
        self.params = params
        self._cache: dict[tuple[str, int], Decimal] = {}
        self._nodes: dict[tuple[str, int, int], Decimal] = {}
        """Bridge midpoints: successive steps share all but the last few levels."""

    def step_of(self, t_ms: int) -> int:
        return max(0, (t_ms - self.params.origin_ms) // self.params.step_ms)

    def walk(self, symbol: str, i: int) -> Decimal:
        """``W(i)``: the random walk at step ``i`` (W(0) = 0, unit variance per step)."""
        seed = self.params.seed
        with localcontext(DECIMAL_CONTEXT):
            a, b = 0, _SPAN
            end = self._nodes.get((symbol, -1, -1))
            if end is None:
                end = _normal(seed, symbol, -1, -1) * Decimal(_SPAN).sqrt()
                self._nodes[(symbol, -1, -1)] = end
            wa, wb = ZERO, end
            while True:
                if i == a:
                    return wa
                if i == b:
                    return wb
                m = (a + b) // 2
                node = (symbol, a, b)
                wm_cached = self._nodes.get(node)
                if wm_cached is None:
                    noise = Decimal(b - a).sqrt() / 2 * _normal(seed, symbol, a, b)
                    wm_cached = (wa + wb) / 2 + noise
                    if len(self._nodes) > 65536:
                        self._nodes.clear()
                    self._nodes[node] = wm_cached
                wm = wm_cached
                if i < m:
                    b, wb = m, wm
                elif i > m:
                    a, wa = m, wm
                else:
                    return wm

    def mid(self, spec: SymbolSpec, t_ms: int) -> Decimal:
        i = self.step_of(t_ms)
        key = (spec.symbol, i)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        with localcontext(DECIMAL_CONTEXT):
            raw = spec.start_price * (self.params.volatility * self.walk(spec.symbol, i)).exp()
            price = (raw / spec.tick_size).to_integral_value(ROUND_HALF_EVEN) * spec.tick_size
            price = min(max(price, spec.min_price), spec.max_price)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = price
        return price

    def book(self, spec: SymbolSpec, t_ms: int, pinned_mid: Decimal | None = None) -> Book:
        mid = pinned_mid if pinned_mid is not None else self.mid(spec, t_ms)
        with localcontext(DECIMAL_CONTEXT):
            half = mid * self.params.spread_bps / 20000
            half = (half / spec.tick_size).to_integral_value(ROUND_CEILING) * spec.tick_size
            half = max(half, spec.tick_size)
            return Book(bid=mid - half, ask=mid + half, mid=mid)
