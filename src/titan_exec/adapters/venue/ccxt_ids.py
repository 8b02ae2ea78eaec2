"""Our client order id on each venue ccxt speaks to: the field that carries it, the venue's
length and character rules (checked before sending), and how an order is cancelled and
queried by it.

A place always passes ccxt's unified ``clientOrderId`` (ccxt sends it as the venue's own
field). A cancel and a query pass the venue's own parameter, because ccxt's clients do not
all read the unified one there (ccxt's bybit sends its cancel's params as they are, so
only ``orderLinkId`` reaches the venue). A query is ccxt's ``fetch_order`` by that
parameter, but on Bybit, whose ``fetch_order`` always sends an ``orderId`` (``None``
when asked by client order id): there it is the open orders by ``orderLinkId``, then the
order history by ``orderLinkId`` (the venue's two lists).

Our ids (``tx`` + 24 hex + ``c`` + child index, at most 32 characters of ``[A-Za-z0-9]``,
`core/model.client_order_id`) fit every venue listed; an id that does not fit is a clear
`VenueRejected`, never sent.

Per ccxt id: the field (cancel / query param), the rule.

- binanceusdm, binance, binancecoinm: newClientOrderId (origClientOrderId),
  ``[.A-Z:/a-z0-9_-]{1,36}``;
- bybit: orderLinkId (orderLinkId; query: /v5/order/realtime then /v5/order/history),
  ``[A-Za-z0-9_-]{1,36}``;
- okx: clOrdId (clOrdId), ``[A-Za-z0-9]{1,32}``;
- any other: ccxt's unified clientOrderId everywhere, ``[A-Za-z0-9]{1,32}`` (our format).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ccxt.base import errors as cx  # type: ignore[import-untyped]

from titan_exec.adapters.venue.base import VenueRejected

FETCH_ORDER = "fetch_order"
OPEN_THEN_HISTORY = "open_then_history"


@dataclass(frozen=True, slots=True)
class ClientIdRules:
    venue_field: str
    """The venue's own field that carries the id (for messages and the README table)."""
    pattern: re.Pattern[str]
    rule: str
    """The rule in words, for the rejection."""
    by_id_param: str
    """The parameter a cancel and a query by client order id pass to ccxt."""
    query_params: Mapping[str, Any] = field(default_factory=dict)
    """Extra parameters of a query by client order id."""
    query_way: str = FETCH_ORDER
    """`FETCH_ORDER`: ccxt's fetch_order; `OPEN_THEN_HISTORY`: the open orders, then the
    closed ones, each filtered by the id."""

    def check(self, coid: str) -> None:
        """`VenueRejected` when ``coid`` breaks the venue's rule (never sent)."""
        if not self.pattern.fullmatch(coid):
            raise VenueRejected(
                f"client order id {coid!r} does not fit the venue's {self.venue_field}: {self.rule}"
            )

    def by_id(self, coid: str) -> dict[str, Any]:
        """The ccxt parameters of a cancel by client order id."""
        self.check(coid)
        return {self.by_id_param: coid}

    def query(self, coid: str) -> dict[str, Any]:
        """The ccxt parameters of a query by client order id."""
        return {**self.by_id(coid), **self.query_params}


_BINANCE = ClientIdRules(
    "newClientOrderId",
    re.compile(r"[\.A-Z\:/a-z0-9_-]{1,36}"),
    "1 to 36 of A-Z a-z 0-9 . : / _ -",
    "origClientOrderId",
)

RULES: Mapping[str, ClientIdRules] = {
    "binanceusdm": _BINANCE,
    "binance": _BINANCE,
    "binancecoinm": _BINANCE,
    "bybit": ClientIdRules(
        "orderLinkId",
        re.compile(r"[A-Za-z0-9_-]{1,36}"),
        "1 to 36 of A-Z a-z 0-9 _ -",
        "orderLinkId",
        query_way=OPEN_THEN_HISTORY,
    ),
    "okx": ClientIdRules(
        "clOrdId",
        re.compile(r"[A-Za-z0-9]{1,32}"),
        "1 to 32 of A-Z a-z 0-9",
        "clOrdId",
    ),
}

DEFAULT_RULES = ClientIdRules(
    "clientOrderId",
    re.compile(r"[A-Za-z0-9]{1,32}"),
    "1 to 32 of A-Z a-z 0-9 (the service's own format; the venue's rule is not known here)",
    "clientOrderId",
)


def rules_for(exchange_id: str) -> ClientIdRules:
    return RULES.get(exchange_id, DEFAULT_RULES)


def place_params(rules: ClientIdRules, coid: str) -> dict[str, Any]:
    """The ccxt parameters carrying ``coid`` on a place: ccxt's unified ``clientOrderId``."""
    rules.check(coid)
    return {"clientOrderId": coid}


async def fetch_by_client_id(exchange: Any, rules: ClientIdRules, msym: str, coid: str) -> Any:
    """The venue's order by our client order id, the venue's way; `cx.OrderNotFound` when
    the venue does not show it."""
    params = rules.query(coid)
    if rules.query_way == FETCH_ORDER:
        return await exchange.fetch_order(None, msym, params)
    for fetch in (exchange.fetch_open_orders, exchange.fetch_canceled_and_closed_orders):
        for order in await fetch(msym, None, None, dict(params)):
            if order.get("clientOrderId") == coid:
                return order
    raise cx.OrderNotFound(f"{rules.venue_field} {coid} is not listed")
