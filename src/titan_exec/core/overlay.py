"""The limits overlay: risk limits that may only tighten the active policy. Pure.

The active policy is the document the brain signs and hashes (`core/policy.py`); its hash is
what every intent must carry. Upstream also broadcasts limits *unsigned*: BudgetService
publishes a snake_case `RiskPolicy` on `titan.cmd.risk.policy.v1` every cycle (in an
Emergency with notional 0 and no open orders). Such a document is never made the active
policy — its hash would differ from the brain's and every intent would then be refused — it
becomes the overlay: each limit it names is compared with the active policy's, and the
effective limit is the tighter of the two. An unsigned document that would loosen any limit
of the active policy is refused whole (naming the limits), so without a signature the
effective limits can only ever be at or below the signed policy's.

An overlay replaces the previous overlay (BudgetService sends both directions on its one
channel, and each document is checked against the signed policy, not against the overlay
before it). A signed policy replaces the active policy and keeps the overlay.

"Tighter": a lower leverage, notional, open-order count, slippage or staleness bound; a daily
loss limit closer to zero (the limit is negative); a whitelist that is a subset.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from titan_exec.core.policy import RiskPolicy

__all__ = ["LimitsOverlay", "effective", "loosened", "overlay_from_doc", "read_limits"]

_CAMEL_TO_FIELD = {
    "maxAccountLeverage": "max_account_leverage",
    "maxPositionNotional": "max_position_notional",
    "maxDailyLoss": "max_daily_loss",
    "maxOpenOrdersPerSymbol": "max_open_orders_per_symbol",
    "symbolWhitelist": "symbol_whitelist",
    "maxSlippageBps": "max_slippage_bps",
    "maxStalenessMs": "max_staleness_ms",
}
_FIELD_TO_CAMEL = {v: k for k, v in _CAMEL_TO_FIELD.items()}
_INT_FIELDS = frozenset({"max_open_orders_per_symbol", "max_slippage_bps", "max_staleness_ms"})
SNAKE_KEYS = frozenset(_FIELD_TO_CAMEL)
"""The snake_case limit names of BudgetService's broadcast (and of the old service's
`RiskPolicy` struct)."""


@dataclass(frozen=True, slots=True)
class LimitsOverlay:
    """Limits that tighten the active policy; None: not named (the policy's own)."""

    max_account_leverage: Decimal | None = None
    max_position_notional: Decimal | None = None
    max_daily_loss: Decimal | None = None
    max_open_orders_per_symbol: int | None = None
    symbol_whitelist: frozenset[str] | None = None
    max_slippage_bps: int | None = None
    max_staleness_ms: int | None = None

    def to_doc(self) -> dict[str, Any]:
        """The event form: camelCase, decimals as strings, the whitelist sorted."""
        out: dict[str, Any] = {}
        for name, camel in _FIELD_TO_CAMEL.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, frozenset):
                out[camel] = sorted(value)
            elif isinstance(value, Decimal):
                out[camel] = str(value)
            else:
                out[camel] = value
        return out

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.to_doc().items()) or "no limits"


def _number(name: str, value: object) -> Decimal | str:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        return f"{name} must be a number, got {type(value).__name__}"
    try:
        d = Decimal(value) if not isinstance(value, Decimal) else value
    except ArithmeticError:
        return f"{name} is not a number: {str(value)[:40]!r}"
    if not d.is_finite():
        return f"{name} must be finite"
    return d


def _limit(field: str, value: object) -> Decimal | int | frozenset[str] | str:
    """One limit's value, or a message saying why it is not one."""
    camel = _FIELD_TO_CAMEL[field]
    if field == "symbol_whitelist":
        if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
            return f"{camel} must be a list of symbols"
        return frozenset(value)
    d = _number(camel, value)
    if isinstance(d, str):
        return d
    if field == "max_daily_loss":
        if d > 0:
            return f"{camel} must be <= 0 (a loss), got {d}"
        return d
    if d < 0:
        return f"{camel} must be >= 0, got {d}"
    if field in _INT_FIELDS:
        if d != d.to_integral_value():
            return f"{camel} must be an integer, got {d}"
        return int(d)
    return d


def read_limits(doc: dict[str, Any]) -> LimitsOverlay | str:
    """The limits a policy document names, camelCase or snake_case (BudgetService), or a
    message naming the first limit that is not valid. Other keys are not limits (a risk
    state, version, timestamps, the brain's strategy constraints) and are left alone."""
    values: dict[str, Any] = {}
    for key, value in doc.items():
        field = _CAMEL_TO_FIELD.get(key) or (key if key in SNAKE_KEYS else None)
        if field is None:
            continue
        if field in values:
            return f"limit {key} is given twice (camelCase and snake_case)"
        parsed = _limit(field, value)
        if isinstance(parsed, str):
            return parsed
        values[field] = parsed
    return LimitsOverlay(**values)


def overlay_from_doc(doc: dict[str, Any]) -> LimitsOverlay:
    """An overlay from its event form (`to_doc`); raises ValueError if it is not one."""
    overlay = read_limits(doc)
    if isinstance(overlay, str):
        raise ValueError(f"limits overlay: {overlay}")
    return overlay


def loosened(overlay: LimitsOverlay, policy: RiskPolicy) -> list[str]:
    """The limits of `overlay` that are looser than the policy's (camelCase names)."""
    out: list[str] = []
    for field, camel in _FIELD_TO_CAMEL.items():
        mine = getattr(overlay, field)
        if mine is None:
            continue
        theirs = getattr(policy, field)
        if field == "symbol_whitelist":
            if not mine <= theirs:
                out.append(f"{camel} adds {', '.join(sorted(mine - theirs))}")
        elif field == "max_daily_loss":
            if mine < theirs:
                out.append(f"{camel} {mine} < {theirs}")
        elif mine > theirs:
            out.append(f"{camel} {mine} > {theirs}")
    return out


def effective(policy: RiskPolicy, overlay: LimitsOverlay | None) -> RiskPolicy:
    """The limits the risk guard applies: the tighter of the policy and the overlay, each
    limit on its own. The raw document and the hash stay the policy's."""
    if overlay is None:
        return policy
    changes: dict[str, Any] = {}
    for field in _FIELD_TO_CAMEL:
        mine = getattr(overlay, field)
        if mine is None:
            continue
        theirs = getattr(policy, field)
        if field == "symbol_whitelist":
            changes[field] = theirs & mine
        elif field == "max_daily_loss":
            changes[field] = max(theirs, mine)
        else:
            changes[field] = min(theirs, mine)
    return replace(policy, **changes)
