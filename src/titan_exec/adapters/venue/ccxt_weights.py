"""The weight of each request the ccxt venue sends, and the hooks that feed its budget.

`request_weight` knows the venue's own weights where we wrote them down (Binance USDⓈ-M,
`BINANCE_USDM`: the IP weight of each `/fapi` endpoint, by ccxt's path) and otherwise takes
ccxt's ``cost`` of the endpoint (its api definition; 1 when it has none). `instrument`
hooks one ccxt client (the reader or the order writer) to a `WeightBudget`:

- every request ccxt sends is counted at its weight before it goes (``fetch2``, the one
  door of ccxt's REST calls, with its rate-limit cost);
- every answer's status and headers (``on_rest_response``, called once per answer before
  ccxt maps errors): the venue's own ``X-MBX-USED-WEIGHT-1M``, and a 429 / 418 with its
  ``Retry-After``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from titan_exec.adapters.venue.base import VenueUnavailable
from titan_exec.adapters.venue.budget import KNOWN_LIMITS, WeightBudget
from titan_exec.clock import wall_clock_ms

if TYPE_CHECKING:
    from titan_exec.adapters.venue.ccxt_setup import CcxtSettings

USED_WEIGHT_HEADER = "x-mbx-used-weight-1m"
READ_WAIT_MAX_MS = 1000
"""A read waits for the weight budget this long at most; longer, it is refused before
sending (`VenueUnavailable`): the loops that can wait longer wait before they call."""

BINANCE_USDM: Mapping[tuple[str, str], int | tuple[int, int]] = {
    # (HTTP method, ccxt path) → weight, or (with a symbol, without one)
    ("GET", "ping"): 1,
    ("GET", "time"): 1,
    ("GET", "exchangeInfo"): 1,
    ("GET", "premiumIndex"): 1,
    ("GET", "ticker/bookTicker"): (2, 5),
    ("GET", "ticker/price"): (1, 2),
    ("GET", "ticker/24hr"): (1, 40),
    ("POST", "order"): 0,  # counted in the order-count limits, not the request weight
    ("GET", "order"): 1,
    ("DELETE", "order"): 1,
    ("GET", "openOrder"): 1,
    ("GET", "openOrders"): (1, 40),
    ("GET", "allOrders"): 5,
    ("DELETE", "allOpenOrders"): 1,
    ("POST", "countdownCancelAll"): 10,
    ("GET", "userTrades"): 5,
    ("GET", "leverageBracket"): 1,
    ("GET", "positionRisk"): 5,
    ("GET", "account"): 5,
    ("GET", "balance"): 5,
    ("POST", "listenKey"): 1,
    ("PUT", "listenKey"): 1,
    ("DELETE", "listenKey"): 1,
}
"""Binance USDⓈ-M's published weights (ccxt's costs differ for v2 / v3 account,
balance and positionRisk: 1 there, 5 at the venue)."""

_DEPTH = ((50, 2), (100, 5), (500, 10), (1000, 20))

TABLES: Mapping[str, Mapping[tuple[str, str], int | tuple[int, int]]] = {
    "binanceusdm": BINANCE_USDM,
}


def request_weight(
    exchange_id: str,
    method: str,
    path: str,
    params: Mapping[str, Any],
    ccxt_cost: Callable[[], Any],
) -> int:
    """The weight of one request: the venue's table, else ccxt's cost, else 1."""
    table = TABLES.get(exchange_id)
    if table is not None:
        if path == "depth":
            limit = int(params.get("limit") or 500)
            return next((w for top, w in _DEPTH if limit <= top), 20)
        known = table.get((method.upper(), path))
        if isinstance(known, tuple):
            return known[0] if params.get("symbol") else known[1]
        if known is not None:
            return known
    try:
        cost = ccxt_cost()
    except Exception:  # a cost ccxt cannot compute for these params: one unit
        return 1
    try:
        return max(0, round(float(cost)))
    except (TypeError, ValueError):
        return 1


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """A response header, whatever its case."""
    for key, value in (headers or {}).items():
        if str(key).lower() == name:
            return str(value)
    return None


def int_header(headers: Mapping[str, Any] | None, name: str) -> int | None:
    raw = header(headers, name)
    if raw is None:
        return None
    try:
        return int(raw.split(",")[0].strip())
    except ValueError:
        return None


def instrument(
    exchange: Any,
    budget: WeightBudget,
    *,
    exchange_id: str,
    is_writer: bool,
    clock: Callable[[], int],
) -> None:
    """Count ``exchange``'s requests and read its answers into ``budget``."""
    fetch2 = exchange.fetch2
    on_rest_response = exchange.on_rest_response

    async def counted_fetch2(
        path: str,
        api: Any = "public",
        method: str = "GET",
        params: Any = None,
        config: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        params = {} if params is None else params
        config = {} if config is None else config
        weight = request_weight(
            exchange_id,
            str(method),
            str(path),
            params if isinstance(params, Mapping) else {},
            lambda: exchange.calculate_rate_limiter_cost(api, method, path, params, config),
        )
        budget.note_sent(weight, clock(), is_write=is_writer)
        return await fetch2(path, api, method, params, config, *args, **kwargs)

    def observed(
        code: Any,
        reason: Any,
        url: Any,
        method: Any,
        response_headers: Any,
        *rest: Any,
    ) -> Any:
        now = clock()
        used = int_header(response_headers, USED_WEIGHT_HEADER)
        if used is not None:
            budget.note_used(used, now)
        if code in (418, 429):
            retry_s = int_header(response_headers, "retry-after")
            budget.note_throttled(int(code), retry_s, now, is_write=is_writer)
        return on_rest_response(code, reason, url, method, response_headers, *rest)

    exchange.fetch2 = counted_fetch2
    exchange.on_rest_response = observed


def budget_for(settings: CcxtSettings, account: str, reader: Any, writer: Any) -> WeightBudget:
    """The account's budget, fed by both clients (reads, and the order writer)."""
    limit = settings.weight_limit_1m
    budget = WeightBudget(
        venue=settings.name,
        account=account,
        limit_1m=KNOWN_LIMITS.get(settings.exchange_id, 0) if limit is None else limit,
        share=settings.weight_share,
        poll_interval_ms=settings.poll_interval_ms,
    )
    for client, is_writer in ((reader, False), (writer, True)):
        instrument(
            client,
            budget,
            exchange_id=settings.exchange_id,
            is_writer=is_writer,
            clock=wall_clock_ms,
        )
    return budget


async def wait_for_budget(
    budget: WeightBudget, clock: Callable[[], int], *, is_essential: bool = False
) -> None:
    """Before a read: wait for the budget (a 429's Retry-After, the minute's share spent;
    an essential read: past `ESSENTIAL_SHARE` of the limit), or refuse before sending when
    the wait is longer than a read should take."""
    wait_ms = budget.read_wait_ms(clock(), is_essential=is_essential)
    if wait_ms <= 0:
        return
    if wait_ms > READ_WAIT_MAX_MS:
        budget.note_waited("refused")
        raise VenueUnavailable(f"{budget.venue}: request weight: reads wait {wait_ms} ms")
    budget.note_waited("wait")
    await asyncio.sleep(wait_ms / 1000)
