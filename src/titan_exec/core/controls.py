"""Control commands in every form the Titan deployment sends them, and the one security rule
over all of them: **without a valid signature a command may only reduce risk.** Pure.

Everything that affects how a control command is read and authorised lives here.

    subject                               body (as upstream producers send it)       action
    titan.cmd.<ns>.control.v1.<action>    signed envelope, payload {action, ...}      <action>
    titan.cmd.sys.halt.v1                 {state: HARD_HALT | SOFT_HALT, ...}         halt
                                          {state: OPEN, ...}                          open
                                          {action: HALT, ...} (RiskManager, signed)   halt
                                          no state/action, or text (a runbook's)      halt
    titan.cmd.risk.flatten.v1 | .flatten  {command: FLATTEN_ALL, ...} or anything     flatten
    titan.cmd.operator.arm.v1             {type: ARM_SYSTEM, ...}                     arm
    titan.cmd.operator.disarm.v1          {type: DISARM_SYSTEM, ...}                  disarm
    titan.cmd.risk.policy.v1              {policy: <camelCase>, ...} | snake_case     policy
    titan.cmd.risk.control.v1             {action: OVERRIDE_ALLOCATION | HALT | ...}  per action

A body is either a signed envelope (`{..., sig, nonce, payload}`: the command is its payload),
an unsigned envelope (no `sig`), or the bare command. Authentication, in this order:
`signed` (the envelope's HMAC verified and its nonce fresh), `inner_signed` (RiskManager's
own `signature` = HMAC(`timestamp:action:actor_id:command_id`) verified, the timestamp
within the tolerance and the command id not seen before), else `bad_signature` (a signature
was there and did not verify) or `unsigned`. A bad signature counts as none.

Risk-reducing: halt, disarm, flatten, a policy whose every limit is at or inside the active
policy's (it becomes the limits overlay, `core/overlay.py`). Accepted signed, and unsigned
unless `security.unsigned_risk_reducing = "refuse"`. Risk-increasing: open (resume after a
halt), arm, a policy that loosens any limit (only a signed, complete camelCase policy may
replace the active one), allocation overrides. Only signed; otherwise refused with a reason
naming the signed way (`titan-exec send control <action>`).

A body that contradicts its subject (a `type: ARM_SYSTEM` on the disarm subject, an unknown
`state` on the halt subject, an unknown `action`) is refused (`schema_invalid` /
`unknown_action`): the command does not say what it wants. An allocation override that is
signed is recorded as `ignored` (allocation is the brain's; nothing to execute here).
Every command ends in exactly one `ControlDecided`: accepted, rejected or ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import localcontext
from typing import Any

from titan_exec.core.commands import (
    ControlBody,
    ControlCommand,
    ControlRequest,
    Failure,
    InvalidInput,
)
from titan_exec.core.decide import (
    Decision,
    DecisionConfig,
    Refusal,
    is_replayed,
    replayed,
    with_nonce,
)
from titan_exec.core.events import (
    RISK_STATES,
    ControlDecided,
    OrderAccepted,
    RiskStateDecided,
    SeenNonce,
)
from titan_exec.core.model import (
    DECIMAL_CONTEXT,
    ClientOrderId,
    ControlAction,
    OrderType,
    Side,
    client_order_id,
)
from titan_exec.core.overlay import loosened, read_limits
from titan_exec.core.policy import PolicyError, parse_policy
from titan_exec.core.state import State

__all__ = [
    "RISK_REDUCING",
    "decide_control",
    "decide_risk_state",
]

RISK_REDUCING = frozenset({ControlAction.HALT, ControlAction.DISARM, ControlAction.FLATTEN})
RISK_INCREASING = frozenset({ControlAction.OPEN, ControlAction.ARM})
SIGNED = frozenset({"signed", "inner_signed"})
_TEXT_LIMIT = 200


def _string(fields: dict[str, Any] | None, key: str) -> str | None:
    value = fields.get(key) if fields is not None else None
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class _Auth:
    authentication: str
    """`signed`, `inner_signed`, `bad_signature` or `unsigned`."""
    nonce: SeenNonce | None
    """The nonce the decision records (the signature that counted)."""
    why: Failure | None
    """Why the envelope's signature did not count (a bad signature's refusal)."""


def _authenticate(state: State, body: ControlBody, cfg: DecisionConfig, now_ms: int) -> _Auth:
    """The envelope's signature if it verified and its nonce is fresh, else RiskManager's
    inner one (same rule, its command id the nonce); a bad signature counts as none."""
    envelope = body.envelope
    if isinstance(envelope, SeenNonce):
        if not is_replayed(state, envelope, cfg, now_ms):
            return _Auth("signed", envelope, None)
        envelope = Failure(*replayed(envelope))
    inner = body.inner
    if isinstance(inner, SeenNonce) and not is_replayed(state, inner, cfg, now_ms):
        return _Auth("inner_signed", inner, envelope)
    if inner is not None or envelope is not None:
        return _Auth("bad_signature", None, envelope)
    return _Auth("unsigned", None, None)


def decide_control(
    state: State, cmd: ControlCommand | InvalidInput, cfg: DecisionConfig, now_ms: int
) -> Decision:
    """One control command, in any of the forms above, to exactly one `ControlDecided`."""
    with localcontext(DECIMAL_CONTEXT):
        decision, nonce = _decide(state, cmd, cfg, now_ms)
        return with_nonce(decision, nonce)


def _refused(
    seq: int,
    now_ms: int,
    refusal: Refusal,
    *,
    action: str = "",
    authentication: str = "unsigned",
    form: str = "",
) -> Decision:
    ev = ControlDecided(
        ts_ms=now_ms,
        cmd_seq=seq,
        action=action,
        outcome="rejected",
        reason=f"{refusal.code}: {refusal.message}",
        authentication=authentication,
        form=form,
    )
    return Decision(
        events=(ev,),
        refusal=refusal,
        summary=f"control cmd {seq} ({form or 'unknown form'}, {authentication}) "
        f"rejected: {refusal.message}",
    )


def _decide(
    state: State, cmd: ControlCommand | InvalidInput, cfg: DecisionConfig, now_ms: int
) -> tuple[Decision, SeenNonce | None]:
    """The decision and the nonce it records."""
    if state.is_decided(cmd.seq):
        return Decision(is_duplicate=True, summary=f"cmd {cmd.seq} already decided"), None
    if isinstance(cmd, InvalidInput):
        return _refused(cmd.seq, now_ms, Refusal(cmd.code, cmd.message)), None
    auth = _authenticate(state, cmd.body, cfg, now_ms)
    request = cmd.request
    if isinstance(request, Failure):
        refusal = Refusal(request.code, request.message, intent_id=cmd.body.envelope_id)
        return _refused(cmd.seq, now_ms, refusal, authentication=auth.authentication), auth.nonce
    return _Deciding(state, cmd, request, auth, cfg, now_ms).decide(), auth.nonce


@dataclass(frozen=True, slots=True)
class _Deciding:
    """One authenticated control command being decided."""

    state: State
    cmd: ControlCommand
    request: ControlRequest
    auth: _Auth
    cfg: DecisionConfig
    now_ms: int

    @property
    def is_signed(self) -> bool:
        return self.auth.authentication in SIGNED

    def refuse(self, code: str, message: str, action: str) -> Decision:
        refusal = Refusal(code, message, intent_id=self.cmd.body.envelope_id)
        return _refused(
            self.cmd.seq,
            self.now_ms,
            refusal,
            action=action,
            authentication=self.auth.authentication,
            form=self.request.form,
        )

    def needs_signature(self, action: str, what: str) -> Decision:
        why = self.auth.why
        if self.auth.authentication == "bad_signature":
            return self.refuse(
                why.code if why is not None else "hmac_signature_mismatch",
                f"{what} needs a valid signature "
                f"({(why.message if why is not None else '') or 'it did not verify'}); "
                f"send it signed: titan-exec send control {action}",
                action,
            )
        return self.refuse(
            "unsigned_control",
            f"{what} increases risk and needs a signed command: titan-exec send control {action}",
            action,
        )

    def decide(self) -> Decision:
        if self.request.not_for_us:
            return self.not_for_us(self.request.not_for_us)
        action = self.request.action
        assert action is not None
        if action in RISK_INCREASING and not self.is_signed:
            return self.needs_signature(action.value, action.value)
        change: tuple[dict[str, Any] | None, dict[str, Any] | None, str | None] = (
            None,
            None,
            None,
        )
        if action is ControlAction.POLICY:
            read = _policy_change(self.state, self.cmd.body, self.is_signed)
            if isinstance(read, Refusal):
                if read.code == "unsigned_control":
                    return self.needs_signature("policy", read.message)
                return self.refuse(read.code, read.message, action.value)
            change = read
            is_reducing = change[0] is None
        else:
            is_reducing = action in RISK_REDUCING
        if is_reducing and not self.is_signed and not self.cfg.accept_unsigned_risk_reducing:
            return self.refuse(
                "unsigned_control",
                f"unsigned {action.value} refused (security.unsigned_risk_reducing = refuse): "
                f"send it signed: titan-exec send control {action.value}",
                action.value,
            )
        return self.accept(action, *change)

    def not_for_us(self, name: str) -> Decision:
        auth = self.auth.authentication
        if not self.is_signed:
            code = "hmac_signature_mismatch" if auth == "bad_signature" else "unsigned_control"
            return self.refuse(
                code,
                f"{name} is accepted only signed (RiskManager's envelope); this one is {auth}",
                name.lower(),
            )
        ev = ControlDecided(
            ts_ms=self.now_ms,
            cmd_seq=self.cmd.seq,
            action=name.lower(),
            outcome="ignored",
            reason=f"{name} is the brain's allocation: nothing to execute",
            authentication=auth,
            form=self.request.form,
        )
        return Decision(
            events=(ev,),
            summary=f"control cmd {self.cmd.seq} ({self.request.form}, {auth}) ignored: "
            f"{name} is not for the execution service",
        )

    def accept(
        self,
        action: ControlAction,
        policy_doc: dict[str, Any] | None,
        overlay_doc: dict[str, Any] | None,
        risk_state: str | None,
    ) -> Decision:
        state, cmd, body, auth = self.state, self.cmd, self.cmd.body, self.auth.authentication
        orders: list[OrderAccepted] = []
        cancels: tuple[ClientOrderId, ...] = ()
        if action is ControlAction.FLATTEN:
            # a runbook's `{"symbol": "ALL"}` (or none) is every position; a symbol, that one
            only = _string(body.fields, "symbol")
            only = None if only is None or only.strip().upper() == "ALL" else only
            orders = _flatten_orders(state, cmd, self.cfg, self.now_ms, only)
            cancels = tuple(
                o.client_order_id
                for o in state.iter_open_orders()
                if not o.is_cancel_requested and (only is None or o.symbol == only)
            )
        decided = ControlDecided(
            ts_ms=self.now_ms,
            cmd_seq=cmd.seq,
            action=action.value,
            outcome="accepted",
            reason=(_string(body.fields, "reason") or body.text or "")[:_TEXT_LIMIT],
            policy=policy_doc,
            client_order_ids=tuple(o.client_order_id for o in orders),
            authentication=auth,
            form=self.request.form,
            overlay=overlay_doc,
            risk_state=risk_state,
        )
        detail = ""
        if orders or cancels:
            detail = f" ({len(orders)} reduce-only orders, {len(cancels)} cancels)"
        if overlay_doc is not None or risk_state is not None:
            detail += f" (overlay {overlay_doc}, risk state {risk_state})"
        return Decision(
            events=(decided, *orders),
            submit=tuple(o.client_order_id for o in orders),
            cancel=cancels,
            summary=f"control cmd {cmd.seq} ({self.request.form}, {auth}) accepted: "
            f"{action.value}{detail}",
        )


_POLICY_KEYS = ("maxAccountLeverage", "maxPositionNotional", "maxDailyLoss")


def _policy_change(
    state: State, body: ControlBody, is_signed: bool
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None] | Refusal:
    """(policy to make active, overlay, risk state) of a policy command, or a refusal.

    A signed, complete camelCase policy replaces the active one. Anything else — unsigned,
    or a partial or snake_case document (BudgetService's broadcast) — is a limits overlay,
    accepted only if it loosens no limit of the active policy."""
    active = state.policy
    if active is None or body.fields is None or body.raw is None:
        return Refusal("schema_invalid", "a policy command must be a JSON object")
    nested_raw = body.raw.get("policy")
    nested = body.fields.get("policy")
    doc_raw = nested_raw if isinstance(nested_raw, dict) else body.raw
    doc = nested if isinstance(nested, dict) else body.fields
    state_name = doc.get("current_state", doc.get("currentState"))
    if state_name is not None and state_name not in RISK_STATES:
        return Refusal(
            "schema_invalid",
            f"current_state {str(state_name)[:40]!r} is not one of {', '.join(RISK_STATES)}",
        )
    risk_state = state_name if isinstance(state_name, str) else None
    if is_signed and all(k in doc for k in _POLICY_KEYS):
        if body.policy_has_surrogates:
            return Refusal("schema_invalid", "policy holds text that is not well-formed Unicode")
        try:
            parse_policy(doc_raw)
        except PolicyError as err:
            return Refusal("schema_invalid", str(err))
        return doc_raw, None, risk_state
    overlay = read_limits(doc)
    if isinstance(overlay, str):
        return Refusal("schema_invalid", f"risk policy: {overlay}")
    loose = loosened(overlay, active)
    if loose:
        return Refusal(
            "unsigned_control",
            f"a policy that loosens the active one ({'; '.join(loose)[:300]})"
            + (" and is not a complete camelCase policy" if is_signed else ""),
        )
    overlay_doc = overlay.to_doc()
    if not overlay_doc and risk_state is None:
        return Refusal("schema_invalid", "the policy names no limit and no risk state")
    return None, (overlay_doc or None), risk_state


def _flatten_orders(
    state: State, cmd: ControlCommand, cfg: DecisionConfig, now_ms: int, only: str | None
) -> list[OrderAccepted]:
    signal = f"flatten-{cmd.seq}"
    out: list[OrderAccepted] = []
    keys = sorted(
        k for k, p in state.positions.items() if not p.is_flat and (only is None or k[1] == only)
    )
    for i, key in enumerate(keys):
        pos = state.positions[key]
        venue, symbol = key
        out.append(
            OrderAccepted(
                ts_ms=now_ms,
                client_order_id=client_order_id(signal, venue, i),
                venue=venue,
                account=_account_of(state, venue, symbol),
                symbol=symbol,
                signal_id=signal,
                cmd_seq=cmd.seq,
                side=Side.SELL if pos.qty > 0 else Side.BUY,
                order_type=OrderType.MARKET,
                qty=abs(pos.qty),
                limit_price=None,
                is_reduce_only=True,
                intent_type=None,
                expires_at_ms=now_ms + cfg.order_ttl_ms,
                t_signal=now_ms,
                t_ingress=cmd.t_ingress_ms,
                correlation_id=signal,
            )
        )
    return out


def _account_of(state: State, venue: str, symbol: str) -> str:
    for order in reversed(list(state.orders.values())):
        if order.venue == venue and order.symbol == symbol:
            return order.account
    return "main"


# --- the brain's risk posture (RiskGuardian, `titan.evt.risk.state.v1`) ---------------------


def decide_risk_state(
    state: State, src_seq: int, risk_state: str | Failure, now_ms: int
) -> Decision:
    """One RiskGuardian message (at `src_seq` in `TITAN_EVT`), as the ingress read it
    (`wire.ingress.read_risk_state`), to one `RiskStateDecided`.
    Accepted in both directions without a signature (RiskGuardian sends them unsigned on one
    channel; only signed intents can trade, and a halt is lifted only by a signed command)."""
    if src_seq <= state.risk_state_seq:
        return Decision(is_duplicate=True, summary=f"risk state {src_seq} already decided")
    name = risk_state
    if isinstance(name, Failure):
        ev = RiskStateDecided(
            ts_ms=now_ms,
            src_seq=src_seq,
            risk_state="",
            outcome="rejected",
            reason=f"{name.code}: {name.message}",
        )
        refusal = Refusal(name.code, name.message)
        return Decision(
            events=(ev,), refusal=refusal, summary=f"risk state {src_seq} rejected: {name.message}"
        )
    ev = RiskStateDecided(
        ts_ms=now_ms, src_seq=src_seq, risk_state=name, outcome="accepted", reason="risk_guardian"
    )
    # Emergency is a full stop of new risk (RiskState.ts: "cancel all open orders"): the
    # open orders that could add to a position are canceled; reduce-only ones stay
    cancels: tuple[ClientOrderId, ...] = ()
    if name == "Emergency":
        cancels = tuple(
            o.client_order_id
            for o in state.iter_open_orders()
            if not o.is_reduce_only and not o.is_cancel_requested
        )
    return Decision(
        events=(ev,),
        cancel=cancels,
        summary=f"risk state {src_seq} accepted: {state.risk_state} -> {name} (risk_guardian)"
        + (f", {len(cancels)} opening orders canceled" if cancels else ""),
    )
