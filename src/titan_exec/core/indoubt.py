"""In-doubt orders of the execution driver (`core/execution`): a SUBMITTED order with no
place call in flight (its answer lost, a restart, a takeover) is resolved by querying its
client order id, never sent again.

- Queried once ``in_doubt_query_after_ms`` old, then with a back-off (half its age, at
  least the query delay, at most ``in_doubt_max_backoff_ms``).
- Found → `OrderAcknowledged`; still absent at ``in_doubt_absent_after_ms`` → `OrderRejected`.
- A failed query (no answer: the venue's weight, a ban, an outage) decides nothing and is
  asked again after the query delay: an order is declared absent only on the venue's word.

Pure: every input carries ``now_ms``.
"""

from __future__ import annotations

from dataclasses import replace

from titan_exec.core.events import OrderAcknowledged, OrderRejected
from titan_exec.core.execution_io import (
    Driver,
    ExecConfig,
    OrderQueried,
    QueryFailed,
    UnexpectedResult,
)
from titan_exec.core.execution_out import Out, order_of, with_key, without_key
from titan_exec.core.model import ClientOrderId, OrderStatus
from titan_exec.core.orders import Order, lifecycle
from titan_exec.core.state import State


def queried(state: State, out: Out, cfg: ExecConfig, inp: OrderQueried | QueryFailed) -> None:
    """The answer to an in-doubt query (or its failure)."""
    coid = inp.coid
    d = out.driver
    if coid not in d.querying:
        raise UnexpectedResult(f"order {coid}: a query result, but no query in flight")
    out.driver = d = replace(d, querying=d.querying - {coid})
    order = order_of(state, coid)
    if order.status is OrderStatus.ACCEPTED:
        raise UnexpectedResult(f"order {coid}: a query result, but it was never sent")
    if isinstance(inp, QueryFailed):
        # retried after the query delay, not on the next tick: a venue refusing reads (its
        # weight, a ban, an outage) is not asked again every poll
        retry_at = inp.now_ms + cfg.in_doubt_query_after_ms
        out.note("warning", f"in-doubt order {coid}: query failed ({inp.detail}); retrying")
        out.driver = _asked_again(d, coid, retry_at)
        return
    if not order.is_in_doubt:
        out.note("debug", f"in-doubt order {coid}: {order.status} meanwhile")
        out.driver = replace(d, in_doubt_next=without_key(d.in_doubt_next, coid))
        return
    now = inp.now_ms
    if inp.report is not None:
        out.note("info", f"in-doubt order {coid} found at venue ({inp.report.status})")
        vid = inp.report.venue_order_id
        out.event(order, lifecycle(OrderAcknowledged, order, now, venue_order_id=vid))
        out.driver = replace(d, in_doubt_next=without_key(d.in_doubt_next, coid))
        return
    age = now - order.t_submitted
    if age >= cfg.in_doubt_absent_after_ms:
        out.note("warning", f"in-doubt order {coid} not at venue after {age} ms: absent")
        why = f"absent at venue after {age} ms"
        out.event(order, lifecycle(OrderRejected, order, now, reason=why))
        out.driver = replace(d, in_doubt_next=without_key(d.in_doubt_next, coid))
        return
    backoff = min(max(age // 2, cfg.in_doubt_query_after_ms), cfg.in_doubt_max_backoff_ms)
    out.driver = _asked_again(d, coid, now + backoff)


def _asked_again(d: Driver, coid: ClientOrderId, at: int) -> Driver:
    """The order queried again at `at` (the tick's next pass no later)."""
    return replace(
        d, in_doubt_next=with_key(d.in_doubt_next, coid, at), scan_at_ms=min(d.scan_at_ms, at)
    )


def is_query_due(order: Order, d: Driver, cfg: ExecConfig, now: int) -> bool:
    """In doubt, nothing of it in flight, old enough, and its back-off over."""
    coid = order.client_order_id
    return (
        order.is_in_doubt
        and coid not in d.placing
        and coid not in d.written
        and coid not in d.querying
        and now - order.t_submitted >= cfg.in_doubt_query_after_ms
        and d.in_doubt_next.get(coid, 0) <= now
    )
