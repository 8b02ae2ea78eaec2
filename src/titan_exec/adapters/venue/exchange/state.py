"""The exchange model's state file (pure): an engine as a JSON-able dict and back.

Decimals are strings; the document carries a version (1) and everything needed to continue
the run: the configuration, the clock, the wallet, the id counters, every order, trade and
refused order, the positions, the dead-man switches and the pinned prices.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from titan_exec.adapters.venue.exchange.records import (
    Rejection,
    SimPosition,
    config_to_doc,
    order_from_doc,
    order_to_doc,
    trade_from_doc,
    trade_to_doc,
)

if TYPE_CHECKING:
    from titan_exec.adapters.venue.exchange.engine import Engine

VERSION = 1


def export_state(engine: Engine) -> dict[str, Any]:
    return {
        "version": VERSION,
        "config": config_to_doc(engine.config),
        "now_ms": engine.now_ms,
        "wallet": str(engine.wallet),
        "wallet_update_ms": engine.wallet_update_ms,
        "next_order_id": engine.next_order_id,
        "next_trade_id": engine.next_trade_id,
        "orders": [order_to_doc(o) for o in engine.orders.values()],
        "trades": [trade_to_doc(t) for t in engine.trades],
        "rejections": [r.to_doc() for r in engine.rejections],
        "positions": {s: p.to_doc() for s, p in engine.positions.items()},
        "countdowns": dict(engine.countdowns),
        "pins": {s: str(p) for s, p in engine.prices.pins.items()},
    }


def restore_state(engine: Engine, doc: dict[str, Any]) -> None:
    """Load ``doc`` into ``engine``, freshly built from ``doc["config"]``."""
    engine.now_ms = int(doc["now_ms"])
    engine.wallet = Decimal(doc["wallet"])
    engine.wallet_update_ms = int(doc["wallet_update_ms"])
    engine.next_order_id = int(doc["next_order_id"])
    engine.next_trade_id = int(doc["next_trade_id"])
    for raw in doc["orders"]:
        order = order_from_doc(raw)
        engine.orders[order.order_id] = order
        engine.by_client_id[order.client_order_id] = order.order_id
        if order.is_open:
            engine.open[order.order_id] = order
    engine.trades = [trade_from_doc(t) for t in doc["trades"]]
    engine.rejections = [Rejection.from_doc(r) for r in doc["rejections"]]
    for symbol, raw in doc["positions"].items():
        engine.positions[symbol] = SimPosition.from_doc(symbol, raw)
    engine.countdowns = {s: int(v) for s, v in doc["countdowns"].items()}
    engine.prices.pins = {s: Decimal(v) for s, v in doc["pins"].items()}


def check_version(doc: dict[str, Any]) -> None:
    if doc.get("version") != VERSION:
        raise ValueError(f"unsupported simulator state version {doc.get('version')!r}")
