"""Builders so that tests read as domain sentences."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from titan_exec.core.commands import ControlCommand, InvalidInput, PlaceOrder
from titan_exec.core.controls import decide_control
from titan_exec.core.decide import Decision, DecisionConfig, decide_place, decide_unknown
from titan_exec.core.events import (
    Genesis,
    OrderAccepted,
    OrderAcknowledged,
    OrderFilled,
    OrderSubmitted,
)
from titan_exec.core.model import ClientOrderId, IntentType, OrderType, Side, VenueOrderId
from titan_exec.core.risk import MarketView
from titan_exec.core.state import State
from titan_exec.wire.ingress import IngressConfig, ReceivedCommand, read_command
from titan_exec.wire.signing import Keyring
from titan_exec.wire.subjects import Subjects

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# The wire contract's files, copied into the repository (tests/fixtures/contract/README.md).
CONTRACT = FIXTURES / "contract"
# Older name: the directory holding `contract/` (tests use `SHARED / "contract" / ...`).
SHARED = FIXTURES
POLICY_PATH = (
    Path(__file__).resolve().parents[1] / "src" / "titan_exec" / "data" / "risk_policy.json"
)


def decide_received(
    state: State,
    cmd: ReceivedCommand,
    cfg: DecisionConfig,
    market: MarketView,
    ingress: IngressConfig | None = None,
) -> Decision:
    """Read and decide one command as `CommandIntake` does (ingress, then the core); the
    ingress reads namespace `exec` with key `default` = `SECRET` unless told otherwise."""
    ingress = ingress or replace(INGRESS, tolerance_ms=cfg.tolerance_ms)
    command = read_command(cmd, ingress, market.now_ms)
    if isinstance(command, ControlCommand) or (
        isinstance(command, InvalidInput) and command.kind == "control"
    ):
        return decide_control(state, command, cfg, market.now_ms)
    if isinstance(command, InvalidInput) and command.kind == "other":
        return decide_unknown(state, command, market.now_ms)
    assert isinstance(command, PlaceOrder | InvalidInput)
    return decide_place(state, command, cfg, market)


def control_decision(
    state: State,
    cmd: ReceivedCommand,
    cfg: DecisionConfig,
    now_ms: int,
    ingress: IngressConfig | None = None,
) -> Decision:
    view = MarketView(now_ms=now_ms, last_heartbeat_ms=None, tickers={}, equity={})
    return decide_received(state, cmd, cfg, view, ingress)


def default_policy() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(POLICY_PATH.read_text())
    return doc


def genesis(*, armed: bool = True, halted: bool = False, ts: int = 0) -> Genesis:
    return Genesis(ts_ms=ts, policy=default_policy(), is_armed=armed, is_halted=halted)


def accepted(
    coid: str,
    *,
    side: Side = Side.BUY,
    qty: str = "1",
    symbol: str = "BTC/USDT",
    venue: str = "sim",
    limit: str | None = None,
    signal: str | None = None,
    ts: int = 1,
    reduce_only: bool = False,
) -> OrderAccepted:
    return OrderAccepted(
        ts_ms=ts,
        client_order_id=ClientOrderId(coid),
        venue=venue,
        account="main",
        symbol=symbol,
        signal_id=signal or f"sig-{coid}",
        cmd_seq=ts,
        side=side,
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        qty=Decimal(qty),
        limit_price=None if limit is None else Decimal(limit),
        is_reduce_only=reduce_only,
        intent_type=IntentType.BUY_SETUP if side is Side.BUY else IntentType.SELL_SETUP,
        expires_at_ms=ts + 60_000,
        t_signal=ts,
        t_ingress=ts,
    )


def submitted(coid: str, ts: int = 2) -> OrderSubmitted:
    return OrderSubmitted(
        ts_ms=ts,
        client_order_id=ClientOrderId(coid),
        venue="sim",
        account="main",
        symbol="BTC/USDT",
    )


def acknowledged(coid: str, ts: int = 3) -> OrderAcknowledged:
    return OrderAcknowledged(
        ts_ms=ts,
        client_order_id=ClientOrderId(coid),
        venue="sim",
        account="main",
        symbol="BTC/USDT",
        venue_order_id=VenueOrderId(f"v-{coid}"),
    )


def filled(
    coid: str,
    trade_id: str,
    *,
    side: Side = Side.BUY,
    qty: str = "1",
    price: str = "100",
    fee: str = "0",
    symbol: str = "BTC/USDT",
    venue: str = "sim",
    ts: int = 4,
    status: str = "FILLED",
) -> OrderFilled:
    return OrderFilled(
        ts_ms=ts,
        fill_id=trade_id,
        signal_id=f"sig-{coid}",
        symbol=symbol,
        side=side,
        price=Decimal(price),
        qty=Decimal(qty),
        fee=Decimal(fee),
        fee_currency="USDT",
        t_signal=1,
        t_ingress=1,
        t_decision=1,
        t_ack=3,
        t_exchange=ts,
        client_order_id=ClientOrderId(coid),
        execution_id=trade_id,
        status="FILLED" if status == "FILLED" else "PARTIALLY_FILLED",
        timestamp=ts,
        venue=venue,
        account="main",
    )


# --- signed commands -----------------------------------------------------------------------

SECRET = b"test-secret-123"
INGRESS = IngressConfig(subjects=Subjects(), keyring=Keyring({"default": SECRET}))
"""What the ingress of namespace `exec` with one key, `default`, reads."""
NOW = 1_700_000_000_000


def intent_payload(
    signal_id: str = "sig-1",
    *,
    symbol: str = "BTC/USDT",
    type_: str = "BUY_SETUP",
    direction: int | None = None,
    size: float | str = 0.1,
    t_signal: int = NOW,
    entry: list[float] | None = None,
    status: str = "VALIDATED",
    **extra: Any,
) -> dict[str, Any]:
    if direction is None:
        direction = {"BUY_SETUP": 1, "SELL_SETUP": -1}.get(type_, 0)
    doc: dict[str, Any] = {
        "schema_version": "1.0.0",
        "signal_id": signal_id,
        "source": "brain",
        "symbol": symbol,
        "direction": direction,
        "type": type_,
        "size": size,
        "status": status,
        "t_signal": t_signal,
    }
    if entry is not None:
        doc["entry_zone"] = entry
    doc.update(extra)
    return doc


_nonce_counter = [0]


def signed(
    payload: dict[str, Any],
    *,
    ts: int = NOW,
    secret: bytes = SECRET,
    nonce: str | None = None,
    type_: str = "titan.cmd.exec.place.v1",
    key_id: str = "default",
    correlation_id: str | None = None,
) -> bytes:
    from titan_exec.wire.envelope import sign_envelope

    if nonce is None:
        _nonce_counter[0] += 1
        nonce = f"{_nonce_counter[0]:032x}"
    return sign_envelope(
        payload,
        secret=secret,
        ts_ms=ts,
        nonce=nonce,
        type_=type_,
        producer="test",
        key_id=key_id,
        id=f"env-{nonce}",
        correlation_id=(
            str(payload.get("signal_id", "")) if correlation_id is None else correlation_id
        ),
        idempotency_key=str(payload.get("signal_id", "")),
    )
