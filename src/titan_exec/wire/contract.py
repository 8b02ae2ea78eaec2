"""Event messages on the wire: the service's events in and out of `TITAN_EVT`, and the
contract's outgoing telemetry (reject, dead letter, TradeRecord, truth snapshot).

Every published event is wrapped in the contract envelope
``{"id","type","version":1,"ts","producer","correlation_id","payload"}``; decimals are JSON
strings, timestamps integer ms. The envelope id is the event's deterministic id (also the
``Nats-Msg-Id``), and ``ts`` is the event's own time, so encoding is deterministic too.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

from titan_exec.core.events import (
    ControlDecided,
    Event,
    Genesis,
    IntentDecided,
    OrderFilled,
    PositionReconciled,
    RiskStateDecided,
    StateCompacted,
    event_id,
)
from titan_exec.core.positions import ClosedTrade, Position
from titan_exec.wire.canonical import parse_json_strict
from titan_exec.wire.decimals import plain, plain_or_none, rounded, rounded_or_none
from titan_exec.wire.envelope import DEFAULT_MAX_VALUES
from titan_exec.wire.errors import WireError
from titan_exec.wire.subjects import STATE_KINDS as STATE_KINDS  # re-exported
from titan_exec.wire.subjects import Subjects
from titan_exec.wire.text import has_raw_bytes, js_view, printable_subject, subject_bytes

FILL_TYPE = "titan.event.execution.fill.v1"
ORDER_TYPE = "titan.event.execution.order.v1"
DECISION_TYPE = "titan.event.execution.decision.v1"
CONTROL_TYPE = "titan.event.execution.control.v1"
GENESIS_TYPE = "titan.event.execution.genesis.v1"
TRADE_TYPE = "titan.event.analysis.trade_completed.v1"
TRUTH_TYPE = "titan.event.execution.truth.v1"
COMPACTION_TYPE = "titan.event.execution.compaction.v1"
POSITION_TYPE = "titan.event.execution.position.v1"
RISK_STATE_TYPE = "titan.event.execution.risk_state.v1"


class _EnvelopeIn(msgspec.Struct):
    payload: Event


_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder = msgspec.json.Decoder(_EnvelopeIn)


@functools.lru_cache(maxsize=16)
def _subjects(ns: str) -> Subjects:
    return Subjects(ns)


def event_subject(ns: str, event: Event) -> str:
    s = _subjects(ns)
    match event:
        case OrderFilled():
            return s.fill(event.venue, event.account, event.symbol)
        case IntentDecided():
            return s.decision(event.venue, event.account, event.symbol)
        case ControlDecided() | RiskStateDecided():
            return s.control_event
        case Genesis():
            return s.genesis
        case StateCompacted():
            return s.compaction
        case PositionReconciled():
            return s.position(event.venue, event.account, event.symbol)
        case _:
            return s.order(event.venue, event.account, event.symbol)


def _event_type(event: Event) -> str:
    match event:
        case OrderFilled():
            return FILL_TYPE
        case IntentDecided():
            return DECISION_TYPE
        case ControlDecided():
            return CONTROL_TYPE
        case RiskStateDecided():
            return RISK_STATE_TYPE
        case Genesis():
            return GENESIS_TYPE
        case StateCompacted():
            return COMPACTION_TYPE
        case PositionReconciled():
            return POSITION_TYPE
        case _:
            return ORDER_TYPE


def _correlation(event: Event) -> str:
    match event:
        case OrderFilled():
            return event.signal_id
        case IntentDecided():
            return event.signal_id or f"cmd-{event.cmd_seq}"
        case ControlDecided():
            return f"cmd-{event.cmd_seq}"
        case RiskStateDecided():
            return f"risk-state-{event.src_seq}"
        case Genesis():
            return "genesis"
        case StateCompacted():
            return "compaction"
        case PositionReconciled():
            return f"reconcile:{event.venue}:{event.symbol}"
        case _:
            return str(event.client_order_id)


def encode_event(event: Event, *, ns: str, producer: str) -> tuple[str, str, bytes]:
    """(subject, message id, body) of an event."""
    eid = event_id(event)
    envelope = {
        "id": eid,
        "type": _event_type(event),
        "version": 1,
        "ts": event.ts_ms,
        "producer": producer,
        "correlation_id": _correlation(event),
        "payload": event,
    }
    return event_subject(ns, event), eid, _encoder.encode(envelope)


def is_state_subject(subject: str, ns: str) -> bool:
    return _subjects(ns).is_state_event(subject)


def decode_event(subject: str, data: bytes, *, ns: str) -> Event | None:
    """The event in a `TITAN_EVT` message, or None for messages the fold does not read
    (telemetry, truth snapshots, other namespaces). A malformed state message raises
    `msgspec.ValidationError`/`DecodeError`: the stream is ours, so that is a bug."""
    if not is_state_subject(subject, ns):
        return None
    return _decoder.decode(data).payload


# --- outgoing contract telemetry -------------------------------------------------------


def reject_telemetry(
    *,
    intent_id: str,
    reason: str,
    expected_policy_hash: str,
    got_policy_hash: str,
    brain_instance_id: str,
    timestamp_ms: int,
    envelope_id: str = "N/A",
) -> bytes:
    """`intent_id` is the intent's `signal_id` (as the old service sent it and the upstream
    harness reads it); the envelope's own id travels as `envelope_id`."""
    return json.dumps(
        {
            "event_type": "execution.intent.rejected",
            "intent_id": intent_id,
            "reason": reason,
            "expected_policy_hash": expected_policy_hash,
            "got_policy_hash": got_policy_hash,
            "brain_instance_id": brain_instance_id,
            "timestamp": timestamp_ms,
            "envelope_id": envelope_id,
        },
        separators=(",", ":"),
    ).encode()


_DLQ_JSON_MAX_BYTES = 1_048_576
_DLQ_JSON_MAX_DEPTH = 64
DLQ_INLINE_MAX_BYTES = 16 * 1024
"""A refused original larger than this is not copied into its dead letter (a hostile
publisher's bytes would be stored twice, R3): the dead letter references it instead."""
_DLQ_HEAD_BYTES = 1024


def dead_letter(original: bytes, *, reason: str, t_ingress_ms: int, subject: str) -> bytes:
    """``{"reason", "t_ingress", "subject", "payload_encoding", "payload": <original>}``,
    always valid JSON whatever the original holds, and nothing lost; `payload_encoding`
    says how to read `payload` back:

    - ``json``: an original that is strict JSON within bounded limits
      (`parse_json_strict`: no NaN, no duplicate key, at most `DEFAULT_MAX_VALUES`
      values) is spliced in byte for byte as ``payload`` (never re-serialised: a lone
      surrogate escape stays the escape);
    - ``text``: other UTF-8 text is ``payload`` as a JSON string;
    - ``base64``: anything else is ``payload: null`` with ``payload_b64``;
    - ``reference``: an original over `DLQ_INLINE_MAX_BYTES` (16 KiB) is not copied:
      ``payload: null`` with ``payload_bytes``, ``payload_sha256`` and its first KiB
      (``payload_head_b64``); the original itself stays in ``TITAN_CMD`` at the
      dead letter's ``Titan-Cmd-Seq`` (for the stream's max age, 7 days).

    A subject that was not UTF-8 is shown with ``\\xNN`` escapes and kept exactly as
    ``subject_b64``; the reason is kept in its `js_view`. The cost is bounded (the value
    count is checked before parsing), and every output is valid UTF-8 JSON."""
    head: dict[str, Any] = {
        "reason": js_view(reason),
        "t_ingress": t_ingress_ms,
        "subject": printable_subject(subject),
    }
    if has_raw_bytes(subject):
        head["subject_b64"] = base64.b64encode(subject_bytes(subject)).decode()
    if len(original) > DLQ_INLINE_MAX_BYTES:
        head["payload_encoding"] = "reference"
        head["payload"] = None
        head["payload_bytes"] = len(original)
        head["payload_sha256"] = hashlib.sha256(original).hexdigest()
        head["payload_head_b64"] = base64.b64encode(original[:_DLQ_HEAD_BYTES]).decode()
        return json.dumps(head, separators=(",", ":")).encode()
    try:
        text = original.decode("utf-8")
    except UnicodeDecodeError:
        head["payload_encoding"] = "base64"
        head["payload"] = None
        head["payload_b64"] = base64.b64encode(original).decode()
        return json.dumps(head, separators=(",", ":")).encode()
    try:
        parse_json_strict(
            original,
            max_bytes=_DLQ_JSON_MAX_BYTES,
            max_depth=_DLQ_JSON_MAX_DEPTH,
            max_values=DEFAULT_MAX_VALUES,
        )
    except WireError:
        head["payload_encoding"] = "text"
        head["payload"] = text
        return json.dumps(head, separators=(",", ":")).encode()
    head["payload_encoding"] = "json"
    return json.dumps(head, separators=(",", ":"))[:-1].encode() + b',"payload":' + original + b"}"


def rfc3339(ts_ms: int) -> str:
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def trade_record(trade: ClosedTrade, *, close_reason: str, metadata: dict[str, Any]) -> bytes:
    payload = {
        "signal_id": trade.signal_id,
        "symbol": trade.symbol,
        "side": trade.side,
        "entry_price": rounded(trade.entry_price),
        "exit_price": rounded(trade.exit_price),
        "size": plain(trade.size),
        "pnl": rounded(trade.pnl),
        "pnl_pct": rounded(trade.pnl_pct, 4),
        "fee": rounded(trade.fee),
        "fee_asset": metadata.get("fee_asset", "USDT"),
        "opened_at": rfc3339(trade.opened_at_ms),
        "closed_at": rfc3339(trade.closed_at_ms),
        "close_reason": close_reason,
        "metadata": metadata,
    }
    envelope = {
        "id": f"trade:{trade.venue}:{trade.symbol}:{trade.closed_at_ms}:{trade.signal_id}",
        "type": TRADE_TYPE,
        "version": 1,
        "ts": trade.closed_at_ms,
        "producer": metadata.get("producer", "titan-execution"),
        "correlation_id": trade.signal_id,
        "payload": payload,
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def position_doc(
    pos: Position, *, mark: Decimal | None, position_mode: str = "one_way"
) -> dict[str, Any]:
    """The contract's Position (for truth snapshots, `/positions` and `get_positions`):
    quantities and the intent's levels exact, what is computed (average entry, PnL, mark,
    fees split pro rata) at most 12 decimal places (`wire/decimals.py`)."""
    unrealized = (
        (mark - pos.avg_entry) * pos.qty if mark is not None and not pos.is_flat else Decimal(0)
    )
    return {
        "symbol": pos.symbol,
        "side": pos.side,
        "size": plain(abs(pos.qty)),
        "entry_price": rounded(pos.avg_entry),
        "stop_loss": plain_or_none(pos.stop_loss),
        "take_profits": [plain(t) for t in pos.take_profits],
        "signal_id": pos.signal_id,
        "opened_at": pos.opened_at_ms,
        "exchange": pos.venue,
        "position_mode": position_mode,
        "realized_pnl": rounded(pos.realized_pnl),
        "unrealized_pnl": rounded(unrealized),
        "fees_paid": rounded(pos.fees_paid),
        "last_mark_price": rounded_or_none(mark),
        "last_update_ts": pos.last_update_ms,
    }
