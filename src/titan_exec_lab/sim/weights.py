"""Request weight of the venue simulator, counted as Binance USDⓈ-M counts it (pure).

This module owns the weight of each `/fapi` request (`request_weight`, Binance's published
weights; a request this table does not know weighs 1), and `WeightCounter`: the weight each
client used in the current minute (a fixed window, the minute of the server clock, as
Binance's ``X-MBX-USED-WEIGHT-1M``), a history of the last minutes, and the answer to a
request past the limit:

- within the limit: counted, answered (with the used weight in the header);
- past the limit: HTTP 429, -1003, ``Retry-After`` = the seconds to the next minute; not
  executed, not counted;
- a client that keeps going after `ban_after` 429s in one minute is banned for `ban_ms`:
  HTTP 418, -1003, ``Retry-After`` = the seconds the ban still lasts, for every request
  until it ends (Binance's rule: "repeatedly violating rate limits and/or failing to back
  off after receiving 429s will result in an automated IP ban").

A client is its API key (``X-MBX-APIKEY``), or ``ip:<address>`` for a request without one.
Time comes in as milliseconds; nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

MINUTE_MS = 60_000
HISTORY_MINUTES = 10

_FIXED: dict[tuple[str, str], int] = {
    ("GET", "/fapi/v1/ping"): 1,
    ("GET", "/fapi/v1/time"): 1,
    ("GET", "/fapi/v1/exchangeInfo"): 1,
    ("GET", "/fapi/v1/premiumIndex"): 1,
    ("POST", "/fapi/v1/order"): 0,  # counted in the order-count limits, not the IP weight
    ("GET", "/fapi/v1/order"): 1,
    ("DELETE", "/fapi/v1/order"): 1,
    ("GET", "/fapi/v1/openOrder"): 1,
    ("GET", "/fapi/v1/allOrders"): 5,
    ("DELETE", "/fapi/v1/allOpenOrders"): 1,
    ("POST", "/fapi/v1/countdownCancelAll"): 10,
    ("GET", "/fapi/v1/userTrades"): 5,
    ("GET", "/fapi/v1/leverageBracket"): 1,
    ("POST", "/fapi/v1/listenKey"): 1,
    ("PUT", "/fapi/v1/listenKey"): 1,
    ("DELETE", "/fapi/v1/listenKey"): 1,
}
for _version in (2, 3):
    for _name in ("positionRisk", "account", "balance"):
        _FIXED[("GET", f"/fapi/v{_version}/{_name}")] = 5

_BY_SYMBOL: dict[tuple[str, str], tuple[int, int]] = {
    # (with a symbol, without one)
    ("GET", "/fapi/v1/openOrders"): (1, 40),
    ("GET", "/fapi/v1/ticker/bookTicker"): (2, 5),
    ("GET", "/fapi/v1/ticker/price"): (1, 2),
    ("GET", "/fapi/v2/ticker/price"): (1, 2),
    ("GET", "/fapi/v1/ticker/24hr"): (1, 40),
}

_DEPTH = ((50, 2), (100, 5), (500, 10), (1000, 20))
"""``/fapi/v1/depth`` by ``limit``: up to 50 weighs 2, 100 weighs 5, 500 10, 1000 20."""


def request_weight(method: str, path: str, params: dict[str, str]) -> int:
    """The weight of one request (1 when the table does not know it)."""
    key = (method, path)
    if key in _FIXED:
        return _FIXED[key]
    if key in _BY_SYMBOL:
        with_symbol, without = _BY_SYMBOL[key]
        return with_symbol if params.get("symbol") else without
    if key == ("GET", "/fapi/v1/depth"):
        try:
            limit = int(params.get("limit") or 500)
        except ValueError:
            limit = 500
        return next((w for top, w in _DEPTH if limit <= top), 20)
    return 1


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request refused by the limiter: its HTTP status (429 or 418), code and message."""

    status: int
    code: int
    msg: str
    retry_after_s: int


@dataclass(slots=True)
class _Client:
    minute: int = -1
    used: int = 0
    refused: int = 0
    """429s answered in this minute."""
    banned_until_ms: int = 0
    bans: int = 0
    history: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=HISTORY_MINUTES))
    """(minute start ms, weight used) of the minutes before this one."""
    by_request: dict[str, int] = field(default_factory=dict)
    """The weight used in this minute by request (``GET /fapi/v1/userTrades``)."""

    def roll(self, minute: int) -> None:
        if minute == self.minute:
            return
        if self.minute >= 0:
            self.history.append((self.minute * MINUTE_MS, self.used))
            # the quiet minutes between: nothing used
            for m in range(max(self.minute + 1, minute - HISTORY_MINUTES), minute):
                self.history.append((m * MINUTE_MS, 0))
        self.minute, self.used, self.refused = minute, 0, 0
        self.by_request = {}


@dataclass(slots=True)
class WeightCounter:
    limit_1m: int = 2400
    """0: counted and shown, never refused."""
    ban_after: int = 5
    """429s in one minute after which the next request over the limit bans the client."""
    ban_ms: int = 120_000
    """How long a ban lasts (Binance starts at two minutes)."""
    clients: dict[str, _Client] = field(default_factory=dict)

    def admit(self, client: str, weight: int, now_ms: int, request: str = "") -> Refusal | None:
        """Count ``weight`` for ``client`` (by ``request``, its method and path); a
        `Refusal` (nothing counted) when it may not."""
        c = self.clients.setdefault(client, _Client())
        c.roll(now_ms // MINUTE_MS)
        if now_ms < c.banned_until_ms:
            return _banned(c, now_ms)
        if c.used + weight <= self.limit_1m or self.limit_1m == 0:
            c.used += weight
            if weight:
                c.by_request[request] = c.by_request.get(request, 0) + weight
            return None
        c.refused += 1
        if c.refused > self.ban_after:
            c.banned_until_ms = now_ms + self.ban_ms
            c.bans += 1
            return _banned(c, now_ms)
        retry_s = -(-((c.minute + 1) * MINUTE_MS - now_ms) // 1000)
        return Refusal(
            429,
            -1003,
            f"Too many requests; current limit of IP is {self.limit_1m} requests per minute. "
            "Please use the websocket for live updates to avoid polling the API.",
            max(1, retry_s),
        )

    def used(self, client: str, now_ms: int) -> int:
        """The weight ``client`` used in the current minute."""
        c = self.clients.get(client)
        if c is None:
            return 0
        c.roll(now_ms // MINUTE_MS)
        return c.used

    def to_doc(self, now_ms: int) -> dict[str, Any]:
        """For ``/sim/inspect``: per client the current minute (its weight by request), the
        last minutes, the bans."""
        clients: dict[str, Any] = {}
        for name, c in sorted(self.clients.items()):
            c.roll(now_ms // MINUTE_MS)
            clients[name] = {
                "minute_ms": c.minute * MINUTE_MS,
                "used": c.used,
                "refused": c.refused,
                "banned_until_ms": c.banned_until_ms if c.banned_until_ms > now_ms else None,
                "bans": c.bans,
                "by_request": dict(sorted(c.by_request.items(), key=lambda kv: -kv[1])),
                "history": [{"minute_ms": m, "used": u} for m, u in c.history],
            }
        return {"limit_1m": self.limit_1m, "clients": clients}


def _banned(c: _Client, now_ms: int) -> Refusal:
    retry_s = max(1, -(-(c.banned_until_ms - now_ms) // 1000))
    return Refusal(
        418,
        -1003,
        f"Way too many requests; IP banned until {c.banned_until_ms}. "
        "Please use the websocket for live updates to avoid bans.",
        retry_s,
    )
