"""The command vocabulary: what the ingress (`wire/ingress.py`) makes of a `TITAN_CMD`
message, and all the core decides on. Pure values.

    PlaceOrder       a signed intent that read well (its signature verified; the replay
                     check is the core's, against the folded nonce window)
    ControlCommand   a control in one of the forms `core/controls.py` lists: what it asks
                     (or why that cannot be told) and the signatures it carries
    InvalidInput     anything else, with its reason code (`invalid_subject`,
                     `invalid_envelope`, `hmac_signature_mismatch`, `stale_timestamp`,
                     `schema_invalid`, `unknown_command`)

A signature is a `Signature`: the verified `SeenNonce`, a `Failure`, or None (none there).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import msgspec

from titan_exec.core.events import SeenNonce
from titan_exec.core.model import ControlAction

__all__ = [
    "Command",
    "ControlBody",
    "ControlCommand",
    "ControlRequest",
    "Direction",
    "Failure",
    "Intent",
    "IntentType",
    "InvalidInput",
    "PlaceOrder",
    "Signature",
]

Direction = Literal[-1, 0, 1]
IntentType = Literal["BUY_SETUP", "SELL_SETUP", "CLOSE_LONG", "CLOSE_SHORT", "CLOSE"]


class Intent(msgspec.Struct, frozen=True, kw_only=True):
    """A schema-valid intent payload. Money is Decimal from the wire text."""

    signal_id: str
    symbol: str
    direction: Direction
    type: IntentType
    size: Decimal
    status: str
    """As sent; `IntentStatus` names the contract's values."""
    t_signal_ms: int
    entry_zone: tuple[Decimal, ...] = ()
    stop_loss: Decimal | None = None
    take_profits: tuple[Decimal, ...] = ()
    exchange: str | None = None
    position_mode: str | None = None
    policy_hash: str | None = None
    leverage: Decimal | None = None
    confidence: Decimal | None = None
    max_slippage_bps: int | None = None
    source: str | None = None
    schema_version: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    child_fills: Any = None


@dataclass(frozen=True, slots=True)
class Failure:
    code: str
    """The refusal code (`hmac_signature_mismatch`, `stale_timestamp`, ...)."""
    message: str


Signature = SeenNonce | Failure | None
"""A signature that verified (its nonce), one that did not (why), or none at all."""


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """A signed intent on `titan.cmd.<ns>.place.v1.<venue>.<account>.<symbol>`."""

    seq: int
    """Stream sequence in TITAN_CMD: the command's identity."""
    t_ingress_ms: int
    venue: str
    """The subject's venue token (`auto`: the payload's `exchange` or the default)."""
    account: str
    symbol: str
    """The subject's symbol (`_` read back as `/`)."""
    intent: Intent
    nonce: SeenNonce
    policy_hash: str | None
    """The envelope's `policy_hash`, else the payload's."""
    correlation_id: str
    intent_id: str = "N/A"
    envelope_id: str = "N/A"
    signal_hint: str = "N/A"
    """The payload's `signal_id` as a command refused unread (halted, disarmed) reports it."""


@dataclass(frozen=True, slots=True)
class InvalidInput:
    seq: int
    t_ingress_ms: int
    kind: Literal["place", "control", "other"]
    code: str
    message: str
    intent_id: str = "N/A"
    envelope_id: str = "N/A"
    nonce: SeenNonce | None = None
    """A signature that verified before the input was found invalid (`schema_invalid`):
    checked for a replay first, then recorded with the refusal."""
    signal_hint: str = "N/A"


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """What a control command asks for, before it is authorised."""

    action: ControlAction | None
    form: str
    """`control.v1.<action>`, `sys.halt`, `risk.flatten`, `operator.arm`, ..."""
    not_for_us: str = ""
    """Set: a well-formed command that is not this service's business (recorded, ignored)."""


@dataclass(frozen=True, slots=True)
class ControlBody:
    fields: dict[str, Any] | None
    """The command object as the signer's JavaScript sees it (`kept_view`); None: not one."""
    raw: dict[str, Any] | None
    """The command object as parsed (numbers as the signer hashed them: policies)."""
    text: str
    """A printable form of a body that is not an object (a runbook's `nats pub` text)."""
    envelope: Signature = None
    """The envelope's HMAC: verified, failed, or absent (a bare or unsigned body)."""
    inner: Signature = None
    """RiskManager's own `signature` over `timestamp:action:actor_id:command_id`."""
    envelope_id: str = "N/A"
    policy_has_surrogates: bool = False
    """The policy document holds text that is not well-formed Unicode."""


@dataclass(frozen=True, slots=True)
class ControlCommand:
    seq: int
    t_ingress_ms: int
    request: ControlRequest | Failure
    """What the subject and body ask for, or why that cannot be told (`unknown_action`,
    `schema_invalid`, `unknown_command`): refused once the signature is known."""
    body: ControlBody


Command = PlaceOrder | ControlCommand | InvalidInput
