"""Which events the fold cannot take, decided before anything is applied.

The service's own events are legal by construction (the core produced them and the
active applied them before publishing). But `TITAN_EVT` is a stream on a bus: anyone
allowed to publish on ``titan.evt.<ns>.>`` can put a message there that decodes as an
event the fold would refuse half way (an order accepted twice, a lifecycle event for an
unknown order, a fill of a negative quantity, a policy that does not parse, a NaN). The
fold used to raise on those after mutating part of the state, so one such message made
every later replay fail: no instance could start. `why_unfoldable` names the problem
without touching the state; the shell skips such an event (as the active, which never
saw it, did) and counts it. Deterministic: the same stream skips the same events.

A forged event that *is* legal cannot be told apart here: keeping others from
publishing on the event subjects is the deployment's NATS permissions (README).
Pure: no I/O.
"""

from __future__ import annotations

from decimal import Decimal

from titan_exec.core import orders as om
from titan_exec.core.events import (
    RISK_STATES,
    ControlDecided,
    Event,
    Genesis,
    OrderAccepted,
    OrderAcknowledged,
    OrderCanceled,
    OrderCancelRequested,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    RiskStateDecided,
)
from titan_exec.core.model import ZERO, ControlAction
from titan_exec.core.overlay import overlay_from_doc
from titan_exec.core.policy import PolicyError, parse_policy
from titan_exec.core.state import State, step

__all__ = ["fold_checked", "why_unfoldable"]


def _not_finite(event: Event) -> str | None:
    for name in event.__struct_fields__:
        value = getattr(event, name)
        if isinstance(value, Decimal) and not value.is_finite():
            return f"{name} is {value}"
        if isinstance(value, tuple):
            for item in value:
                if isinstance(item, Decimal) and not item.is_finite():
                    return f"{name} holds {item}"
    return None


def _policy_problem(doc: object) -> str | None:
    try:
        parse_policy(doc)
    except (PolicyError, ValueError, TypeError, ArithmeticError) as err:
        return f"policy does not parse: {err}"
    return None


def why_unfoldable(state: State, event: Event) -> str | None:
    """None if `step(state, event)` applies cleanly, else why it would not."""
    problem = _not_finite(event)
    if problem is not None:
        return problem
    match event:
        case Genesis():
            return _policy_problem(event.policy)
        case ControlDecided(outcome="accepted"):
            try:
                action = ControlAction(event.action)
            except ValueError:
                return f"unknown control action {event.action!r}"
            if event.risk_state is not None and event.risk_state not in RISK_STATES:
                return f"unknown risk state {event.risk_state!r}"
            if action is ControlAction.POLICY:
                if event.policy is None and event.overlay is None and event.risk_state is None:
                    return "policy control without a policy"
                if event.overlay is not None:
                    try:
                        overlay_from_doc(event.overlay)
                    except (ValueError, TypeError, ArithmeticError) as err:
                        return str(err)
                if event.policy is not None:
                    return _policy_problem(event.policy)
            return None
        case RiskStateDecided(outcome="accepted"):
            if event.risk_state not in RISK_STATES:
                return f"unknown risk state {event.risk_state!r}"
            return None
        case OrderAccepted():
            if event.client_order_id in state.orders:
                return f"order {event.client_order_id} accepted twice"
            return None
        case OrderFilled():
            if event.qty <= ZERO or event.price < ZERO:
                return f"fill of {event.qty} at {event.price}"
            return None
        case (
            OrderSubmitted()
            | OrderAcknowledged()
            | OrderCancelRequested()
            | OrderCanceled()
            | OrderRejected()
            | OrderExpired()
        ):
            order = state.orders.get(event.client_order_id)
            if order is None:
                return f"{type(event).__name__} for unknown order {event.client_order_id}"
            if not om.can_apply(order, event):
                return f"{type(event).__name__} not allowed in {order.status}"
    return None


def fold_checked(state: State, event: Event) -> str | None:
    """Apply `event` if the fold can take it; else leave the state as it is and say why."""
    problem = why_unfoldable(state, event)
    if problem is None:
        step(state, event)
    return problem
