"""The venue simulator's data types, records and their JSON-able forms (pure).

This module owns the engine's data types: `SimError` (a Binance error answer),
`EngineConfig`, `OrderRequest` (a new order as sent), the read-only `PositionView` /
`AccountView`, the mutable records the engine keeps — `SimOrder`, `SimTrade`,
`SimPosition`, `Rejection` (an order request the venue refused) — and their conversion to
and from plain dicts (Decimals as strings) for the state file. Field meanings follow
Binance's order and trade documents.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from titan_exec.adapters.venue.exchange.market import DEFAULT_SYMBOLS, ZERO, SymbolSpec


class SimError(Exception):
    """A Binance error answer: ``{"code": code, "msg": msg}`` with ``http_status``."""

    def __init__(self, code: int, msg: str, http_status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status


def missing_param(name: str) -> SimError:
    return SimError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


@dataclass(frozen=True, slots=True)
class EngineConfig:
    seed: int = 1
    origin_ms: int | None = None
    """Time of price step 0 (the start prices); None: `VenueSim` uses its clock at start-up."""
    symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS
    fill_slices: int = 3
    slice_interval_ms: int = 200
    maker_fee: Decimal = Decimal("0.0002")
    taker_fee: Decimal = Decimal("0.0005")
    initial_balance: Decimal = Decimal(10000)
    step_ms: int = 100
    volatility: Decimal = Decimal("0.0001")
    spread_bps: Decimal = Decimal(1)
    first_order_id: int = 4_000_000_001
    first_trade_id: int = 900_000_001
    quoted: bool = False
    """Books only from `Engine.set_quote` (an in-process venue fed market data), never from
    the price path: a symbol without a quote has no price (a MARKET order is refused)."""
    check_margin: bool = True
    """False: no margin check (-2019), for a venue that keeps no margin."""

    def __post_init__(self) -> None:
        if self.fill_slices < 1 or self.step_ms < 1:
            raise ValueError("fill_slices and step_ms must be >= 1")
        if self.slice_interval_ms < 0:
            raise ValueError("slice_interval_ms must be >= 0 (0: every slice at once)")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A new order as sent (Binance parameter values, strings as received)."""

    symbol: str | None
    side: str | None
    type: str | None
    quantity: str | None
    price: str | None = None
    client_order_id: str | None = None
    reduce_only: str | None = None
    time_in_force: str | None = None
    position_side: str | None = None
    """One-way mode: only BOTH (or nothing) is accepted."""


@dataclass(frozen=True, slots=True)
class PositionView:
    spec: SymbolSpec
    amount: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal
    notional: Decimal
    initial_margin: Decimal
    maint_margin: Decimal
    update_time_ms: int


@dataclass(frozen=True, slots=True)
class AccountView:
    wallet_balance: Decimal
    unrealized_pnl: Decimal
    position_initial_margin: Decimal
    open_order_initial_margin: Decimal
    maint_margin: Decimal
    available_balance: Decimal
    update_time_ms: int

    @property
    def margin_balance(self) -> Decimal:
        return self.wallet_balance + self.unrealized_pnl

    @property
    def initial_margin(self) -> Decimal:
        return self.position_initial_margin + self.open_order_initial_margin


@dataclass(slots=True)
class SimOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    orig_qty: Decimal
    price: Decimal
    """The limit price; zero for MARKET orders (as Binance shows it)."""
    reduce_only: bool
    status: str
    time_ms: int
    update_time_ms: int
    slice_qty: Decimal
    next_slice_ms: int | None
    """When the next taker slice is due; None while a LIMIT order rests."""
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    slices_done: int = 0
    resting: bool = False

    @property
    def avg_price(self) -> Decimal:
        return self.cum_quote / self.executed_qty if self.executed_qty else ZERO

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")


@dataclass(frozen=True, slots=True)
class SimTrade:
    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    realized_pnl: Decimal
    time_ms: int
    maker: bool
    commission_asset: str = "USDT"


@dataclass(slots=True)
class SimPosition:
    symbol: str
    amount: Decimal = ZERO
    """Signed: positive long, negative short (one-way mode)."""
    entry_price: Decimal = ZERO
    update_time_ms: int = 0

    def to_doc(self) -> dict[str, Any]:
        return {
            "amount": str(self.amount),
            "entry_price": str(self.entry_price),
            "update_time_ms": self.update_time_ms,
        }

    @classmethod
    def from_doc(cls, symbol: str, doc: dict[str, Any]) -> SimPosition:
        return cls(
            symbol=symbol,
            amount=Decimal(doc["amount"]),
            entry_price=Decimal(doc["entry_price"]),
            update_time_ms=int(doc["update_time_ms"]),
        )


@dataclass(frozen=True, slots=True)
class Rejection:
    """An order request the venue refused, as received."""

    time_ms: int
    symbol: str | None
    side: str | None
    type: str | None
    quantity: str | None
    price: str | None
    client_order_id: str | None
    reduce_only: str | None
    code: int
    msg: str

    @classmethod
    def of(cls, req: OrderRequest, code: int, msg: str, now_ms: int) -> Rejection:
        return cls(
            time_ms=now_ms,
            symbol=req.symbol,
            side=req.side,
            type=req.type,
            quantity=req.quantity,
            price=req.price,
            client_order_id=req.client_order_id,
            reduce_only=req.reduce_only,
            code=code,
            msg=msg,
        )

    def to_doc(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Rejection:
        return cls(**{f.name: doc[f.name] for f in fields(cls)})


_ORDER_DECIMALS = ("orig_qty", "price", "slice_qty", "executed_qty", "cum_quote")
_TRADE_DECIMALS = ("price", "qty", "quote_qty", "commission", "realized_pnl")
_SPEC_DECIMALS = (
    "tick_size",
    "step_size",
    "min_qty",
    "max_qty",
    "min_notional",
    "start_price",
    "min_price",
    "max_price",
    "maint_margin_ratio",
)
_CONFIG_DECIMALS = ("maker_fee", "taker_fee", "initial_balance", "volatility", "spread_bps")


def _to_doc(obj: Any, decimals: tuple[str, ...]) -> dict[str, Any]:
    return {
        f.name: str(getattr(obj, f.name)) if f.name in decimals else getattr(obj, f.name)
        for f in fields(obj)
    }


def _from_doc(doc: dict[str, Any], decimals: tuple[str, ...]) -> dict[str, Any]:
    return {k: Decimal(v) if k in decimals else v for k, v in doc.items()}


def order_to_doc(order: SimOrder) -> dict[str, Any]:
    return _to_doc(order, _ORDER_DECIMALS)


def order_from_doc(doc: dict[str, Any]) -> SimOrder:
    return SimOrder(**_from_doc(doc, _ORDER_DECIMALS))


def trade_to_doc(trade: SimTrade) -> dict[str, Any]:
    return _to_doc(trade, _TRADE_DECIMALS)


def trade_from_doc(doc: dict[str, Any]) -> SimTrade:
    return SimTrade(**_from_doc(doc, _TRADE_DECIMALS))


def config_to_doc(config: EngineConfig) -> dict[str, Any]:
    doc = _to_doc(config, _CONFIG_DECIMALS)
    doc["symbols"] = [_to_doc(s, _SPEC_DECIMALS) for s in config.symbols]
    return doc


def config_from_doc(doc: dict[str, Any]) -> EngineConfig:
    values = _from_doc(doc, _CONFIG_DECIMALS)
    values["symbols"] = tuple(SymbolSpec(**_from_doc(s, _SPEC_DECIMALS)) for s in doc["symbols"])
    return EngineConfig(**values)
