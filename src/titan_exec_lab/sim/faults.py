"""Fault injection of the venue simulator: what can go wrong, set per run.

This module owns `Faults`, the mutable set of knobs a test turns (in process through the
`VenueSim.faults` object, out of process through ``POST /sim/faults`` with the same keys
as JSON), how a knob is matched to a request (its *scope*), and the log of faults applied.

Knobs (all off by default):

- ``latency_ms``: every `/fapi` request waits this long before it is handled;
  ``response_delay_ms``: ... and this long after it was handled, before the answer.
- ``error_next``: the next N requests in ``error_scope`` are answered with
  ``error_status`` and ``{"code": error_code, "msg": error_msg}`` (default 503 / -1001
  "Internal error; ...") and are *not* executed. ``error_body=false`` answers without a body.
- ``rate_limit_next``: the next N requests in ``rate_limit_scope`` get HTTP 429 with -1003
  (not executed).
- ``lose_next``: the next N requests in ``lose_scope`` are executed, then the answer is
  lost: ``lose_mode`` "disconnect" closes the connection without a response (ccxt raises
  ExchangeNotAvailable), "504" answers 504 without a body (ccxt raises RequestTimeout).
- ``invisible_ms``: orders placed while this is > 0 are not visible to queries (GET order,
  openOrder, openOrders, allOrders, userTrades) for that long after placement; a query by
  id answers -2013. They exist all the same: they fill, count for positions and can be
  canceled.

User-data stream (`userstream.UserStreams`; the websocket, not `/fapi`):

- ``user_drop``: close every user-data socket now (acts once, then reads false again);
- ``user_expire``: expire the account's listen key now (its sockets get
  ``listenKeyExpired`` and are closed; acts once);
- ``user_silent``: sockets stay open (pings answered) but no event is sent — the events
  of the time are lost, as on a venue stream that stopped delivering — until cleared;
- ``user_delay_ms``: each event is sent this long after it happened;
- ``user_duplicate_next``: the next N events are sent twice.

Scopes: ``place`` (POST order), ``cancel`` (DELETE order, DELETE allOpenOrders), ``query``
(order reads), ``order`` (all three), ``private`` (any signed request), ``all``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCOPES = ("place", "cancel", "query", "order", "private", "all")
LOSE_MODES = ("disconnect", "504")
INTERNAL_ERROR = "Internal error; unable to process your request. Please try again."


@dataclass(slots=True)
class Faults:
    latency_ms: int = 0
    response_delay_ms: int = 0
    error_next: int = 0
    error_scope: str = "place"
    error_status: int = 503
    error_code: int = -1001
    error_msg: str = INTERNAL_ERROR
    error_body: bool = True
    rate_limit_next: int = 0
    rate_limit_scope: str = "place"
    lose_next: int = 0
    lose_scope: str = "place"
    lose_mode: str = "disconnect"
    invisible_ms: int = 0
    user_drop: bool = False
    user_expire: bool = False
    user_silent: bool = False
    user_delay_ms: int = 0
    user_duplicate_next: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    """Faults applied so far: ``{"time", "fault", "method", "path", "clientOrderId"}``."""

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("log")
        return doc

    def update(self, doc: dict[str, Any]) -> None:
        """Set knobs from a JSON object; unknown keys or bad values raise ValueError."""
        known = {f.name: f for f in fields(self) if f.name != "log"}
        for key, value in doc.items():
            f = known.get(key)
            if f is None:
                raise ValueError(f"unknown fault knob {key!r} (known: {', '.join(known)})")
            expected = {"int": int, "str": str, "bool": bool}[str(f.type)]
            if type(value) is not expected:
                raise ValueError(f"fault knob {key!r} must be {expected.__name__}, got {value!r}")
            if isinstance(value, int) and value < 0 and key != "error_code":
                raise ValueError(f"fault knob {key!r} must be >= 0")
            if key.endswith("_scope") and value not in SCOPES:
                raise ValueError(f"fault knob {key!r} must be one of {', '.join(SCOPES)}")
            if key == "lose_mode" and value not in LOSE_MODES:
                raise ValueError(f"fault knob 'lose_mode' must be one of {', '.join(LOSE_MODES)}")
        for key, value in doc.items():
            setattr(self, key, value)

    def reset(self) -> None:
        fresh = Faults()
        for f in fields(self):
            if f.name != "log":
                setattr(self, f.name, getattr(fresh, f.name))

    def take(self, kind: str, tags: frozenset[str]) -> bool:
        """Consume one count of fault ``kind`` ("error", "rate_limit", "lose") if it applies."""
        remaining: int = getattr(self, f"{kind}_next")
        if remaining <= 0 or getattr(self, f"{kind}_scope") not in tags:
            return False
        setattr(self, f"{kind}_next", remaining - 1)
        return True


def request_tags(method: str, path: str, signed: bool) -> frozenset[str]:
    """The scopes a request belongs to."""
    tags = {"all"}
    if signed:
        tags.add("private")
    if path == "/fapi/v1/order":
        tags.add("order")
        tags.add({"POST": "place", "DELETE": "cancel"}.get(method, "query"))
    elif path == "/fapi/v1/allOpenOrders":
        tags.update(("order", "cancel"))
    elif path in ("/fapi/v1/openOrder", "/fapi/v1/openOrders", "/fapi/v1/allOrders"):
        tags.update(("order", "query"))
    elif path == "/fapi/v1/userTrades":
        tags.add("query")
    return frozenset(tags)
