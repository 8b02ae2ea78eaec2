"""What one step of the execution driver (`core/execution`) builds: the events, the
requests, the notes and the next timer, each event checked against the order's status
(an input the status cannot take raises `UnexpectedResult`); and the small helpers the
driver's rules share. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from titan_exec.core.events import Event, OrderEvent
from titan_exec.core.execution_io import (
    Decision,
    Driver,
    Note,
    Request,
    Step,
    UnexpectedResult,
)
from titan_exec.core.model import ClientOrderId
from titan_exec.core.orders import Order, can_apply
from titan_exec.core.state import State

K = TypeVar("K")
V = TypeVar("V")


@dataclass(slots=True)
class Out:
    """What one step is building (local to `step`)."""

    driver: Driver
    events: list[Event] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    next_timer_ms: int | None = None

    def note(self, level: str, text: str) -> None:
        self.notes.append(Note(level, text))

    def event(self, order: Order, ev: OrderEvent) -> None:
        if not can_apply(order, ev):
            raise UnexpectedResult(
                f"order {order.client_order_id}: {type(ev).__name__} in {order.status}"
            )
        self.events.append(ev)

    def done(self) -> Step:
        return Step(
            self.driver,
            Decision(
                events=tuple(self.events),
                requests=tuple(self.requests),
                next_timer_ms=self.next_timer_ms,
                notes=tuple(self.notes),
            ),
        )


def without_key(mapping: Mapping[K, V], key: K) -> dict[K, V]:
    return {k: v for k, v in mapping.items() if k != key}


def with_key(mapping: Mapping[K, V], key: K, value: V) -> dict[K, V]:
    return {**mapping, key: value}


def order_of(state: State, coid: ClientOrderId) -> Order:
    order = state.orders.get(coid)
    if order is None:
        raise UnexpectedResult(f"order {coid} is not known")
    return order
