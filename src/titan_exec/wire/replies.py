"""The answers to the contract's request/reply subjects, as the brain parses them.

- ``titan.req.exec.policy_hash.v1`` (and ``titan.req.<ns>.policy_hash.v1``):
  ``{"policy_hash", "version", "timestamp"}``. The brain reads ``policy_hash`` only, as a
  string it compares with its own (packages/shared/src/messaging/PolicyHandshake.ts:53,94);
  Rust answered ``{policy_hash, timestamp}`` (titan-execution-rs nats_engine.rs:244-247).
- ``titan.rpc.<ns>.get_positions.v1.<venue>``: ``{"positions": [Position...], "timestamp"}``,
  an array (ExecutionEngineClient.ts:379 ``.positions || []``), open positions only, of the
  venue the subject names (every venue for ``auto``, ``main`` or no token). The brain keys
  each by ``symbol:side`` and compares ``size`` (ReconciliationService.ts:437-488): the
  symbol is the canonical ``BTC/USDT`` its own positions carry (they come from our fill
  reports, StateRecoveryService.ts:556-561), side ``LONG``/``SHORT``, size the base quantity.
- ``titan.rpc.<ns>.get_balances.v1.<venue>``: ``{"balances": [{"currency", "total",
  "available", "locked"}], "venue", "timestamp"}`` (ExecutionEngineClient.ts:273,355
  ``.balances || []`` then ``.find(b => b.currency === 'USDT').total``). When the venue
  cannot be read: ``balances: []`` and an ``error`` string (the brain then sees no USDT:
  equity 0, the same as its own ``|| []``).

Decimals are strings (`wire/decimals.py`); timestamps integer ms. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from titan_exec.core.policy import RiskPolicy
from titan_exec.core.positions import Position
from titan_exec.core.reports import BalanceReport
from titan_exec.wire.contract import position_doc
from titan_exec.wire.decimals import plain, plain_or_none


def is_venue(asked: str | None, venue: str) -> bool:
    """Whether an RPC's venue token (None: every venue) names `venue`; case does not matter
    (the brain lower-cases its exchange names, ExecutionEngineClient.ts:350,374)."""
    return asked is None or asked.lower() == venue.lower()


def policy_hash_reply(policy: RiskPolicy | None, *, ts_ms: int) -> dict[str, Any]:
    return {
        "policy_hash": policy.hash if policy else None,
        "version": policy.version if policy else None,
        "timestamp": ts_ms,
    }


def positions_reply(
    positions: Iterable[Position],
    *,
    venue: str | None,
    mark_of: Callable[[str, str], Decimal | None],
    ts_ms: int,
) -> dict[str, Any]:
    """The open positions of `venue` (None: every venue), in (venue, symbol) order."""
    return {
        "positions": [
            position_doc(pos, mark=mark_of(pos.venue, pos.symbol))
            for pos in sorted(positions, key=lambda p: (p.venue, p.symbol))
            if not pos.is_flat and is_venue(venue, pos.venue)
        ],
        "timestamp": ts_ms,
    }


def balance_doc(report: BalanceReport) -> dict[str, Any]:
    return {
        "currency": report.currency,
        "total": plain(report.total),
        "available": plain_or_none(report.free),
        "locked": plain_or_none(report.used),
    }


def balances_reply(reports: Iterable[BalanceReport], *, venue: str, ts_ms: int) -> dict[str, Any]:
    return {
        "balances": [balance_doc(r) for r in sorted(reports, key=lambda r: r.currency)],
        "venue": venue,
        "timestamp": ts_ms,
    }


def balances_error_reply(error: str, *, venue: str | None, ts_ms: int) -> dict[str, Any]:
    """No balances, and why: the brain's parser still finds an (empty) array."""
    return {"balances": [], "venue": venue, "error": error, "timestamp": ts_ms}
