"""The risk policy (camelCase JSON shared with the brain) and its hash. Pure.

The hash is ``sha256_hex(canonical(policy))`` over the *active* policy exactly as it was
received (the same canonical JSON as signatures), so it matches the brain's value.
Typed limits are read as `Decimal` from the JSON numbers' shortest text form.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from titan_exec.wire.canonical import sha256_hex_canonical


class PolicyError(ValueError):
    """The policy document is not a valid risk policy (names the field)."""


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    max_account_leverage: Decimal
    max_position_notional: Decimal
    max_daily_loss: Decimal
    """A negative amount: realised PnL at or below it blocks new risk for the day."""
    max_open_orders_per_symbol: int
    symbol_whitelist: frozenset[str]
    max_slippage_bps: int
    max_staleness_ms: int
    version: int
    raw: dict[str, Any]
    hash: str


def _num(doc: dict[str, Any], key: str) -> Decimal:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"risk policy: {key} must be a number, got {value!r}")
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation as exc:  # pragma: no cover - repr of a float is valid
        raise PolicyError(f"risk policy: {key} is not a number") from exc
    if not d.is_finite():
        raise PolicyError(f"risk policy: {key} must be finite")
    return d


def _int(doc: dict[str, Any], key: str) -> int:
    d = _num(doc, key)
    if d != d.to_integral_value():
        raise PolicyError(f"risk policy: {key} must be an integer, got {d}")
    return int(d)


def parse_policy(doc: Any) -> RiskPolicy:
    if not isinstance(doc, dict):
        raise PolicyError("risk policy must be a JSON object")
    wl = doc.get("symbolWhitelist")
    if not isinstance(wl, list) or not all(isinstance(s, str) and s for s in wl):
        raise PolicyError("risk policy: symbolWhitelist must be a list of symbols")
    policy = RiskPolicy(
        max_account_leverage=_num(doc, "maxAccountLeverage"),
        max_position_notional=_num(doc, "maxPositionNotional"),
        max_daily_loss=_num(doc, "maxDailyLoss"),
        max_open_orders_per_symbol=_int(doc, "maxOpenOrdersPerSymbol"),
        symbol_whitelist=frozenset(wl),
        max_slippage_bps=_int(doc, "maxSlippageBps"),
        max_staleness_ms=_int(doc, "maxStalenessMs"),
        version=_int(doc, "version"),
        raw=doc,
        hash=sha256_hex_canonical(doc),
    )
    if policy.max_account_leverage <= 0:
        raise PolicyError("risk policy: maxAccountLeverage must be > 0")
    if policy.max_position_notional <= 0:
        raise PolicyError("risk policy: maxPositionNotional must be > 0")
    if policy.max_daily_loss > 0:
        raise PolicyError("risk policy: maxDailyLoss must be <= 0 (a loss)")
    if policy.max_open_orders_per_symbol < 1:
        raise PolicyError("risk policy: maxOpenOrdersPerSymbol must be >= 1")
    if policy.max_staleness_ms < 1:
        raise PolicyError("risk policy: maxStalenessMs must be >= 1")
    return policy
