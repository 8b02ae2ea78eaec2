"""The request-weight budget of one venue account: how much of the venue's per-minute limit
the service spends, and how far its reads must stretch to stay under its share.

The rules (everything that decides a wait or a refusal lives here):

- The window is the venue's minute (a fixed window on the clock's minute, as Binance counts
  ``X-MBX-USED-WEIGHT-1M``). *Used* is the larger of the weight we sent in it (`sent`) and
  the venue's own count from its last answer (`observed`): the venue's count also holds
  what other clients of the account spent.
- The *target* is ``share × limit`` (default 50 % of 2400). The *stretch* (≥ 1) is the
  factor by which the intervals of reads that can wait — reconciliation passes, fill
  sweeps, trade polls — are multiplied. Each read is recorded at its weight times the
  stretch it was sent under: the weight it would have cost unstretched, its *demand*.
  Over the last minute (sliding, by the second) the stretch is the read demand over what
  the target leaves once the writes and the other clients of the account (the venue's
  count beyond ours) are paid: at that stretch the reads spend exactly what is left. It
  is computed again at most every 100 ms, never below 1 nor above `MAX_STRETCH`.
- Over the target inside a minute, reads wait for the next minute (`read_wait_ms`).
  *Essential* reads — those that tell what became of orders already sent: the query of an
  order in doubt, the fill polls — wait only past `ESSENTIAL_SHARE` of the limit: the
  room between the target and the limit is theirs (a takeover after restarts within one
  minute can find the account's count past the target, and its in-doubt orders and fills
  must not wait for the next minute). Their intervals still stretch like the others.
- A 429 to a read (``Retry-After``: the seconds to wait to avoid a ban) makes reads wait
  that long (a 429 to an order write is the order-count limit: counted only); a
  418 (a ban, ``Retry-After``: until it ends) makes reads wait and refuses every order write
  before sending (`write_refusal`, the "certainly not sent" outcome).
- Order writes are never delayed by the budget: they count in it, nothing more.

A limit of 0 means "unknown": the weight is counted and shown, nothing stretches or waits
but for a 429 / 418. Pure: every method takes ``now_ms``; the venue adapter calls it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

MINUTE_MS = 60_000
ESSENTIAL_SHARE = Decimal("0.9")
"""Essential reads wait past 90 % of the limit (the rest: other clients, a margin to 429)."""
MAX_STRETCH = 60.0
"""Reads never wait more than 60 times their interval (a 250 ms poll: 15 s)."""
RESTRETCH_MS = 100
MIN_PROJECTION_MS = 2_000
"""A projection over the first moments of a session counts them as two seconds (a start
that is prudent, not wild: one sweep of twenty symbols, 100, projects 3000 a minute)."""

NO_RETRY_AFTER_429_MS = 5_000
KNOWN_LIMITS: Mapping[str, int] = {"binanceusdm": 2400}
"""Request weight per minute of an account, by ccxt id, where the venue publishes one."""

THROTTLE_REASONS = ("stretched", "wait", "refused", "429", "418")
"""`stretched`: a read loop waited longer than its interval; `wait`: a read waited for the
budget; `refused`: a call refused before sending (a ban, a wait too long to make); `429` /
`418`: the venue's own answers."""


@dataclass(frozen=True, slots=True)
class BudgetView:
    """What `/status` and the metrics show of one account's budget."""

    venue: str
    account: str
    limit_1m: int
    share: Decimal
    used: int
    sent: int
    venue_used: int | None
    stretch: float
    retry_until_ms: int | None
    banned_until_ms: int | None
    throttled: Mapping[str, int]

    def to_doc(self) -> dict[str, Any]:
        return {
            "venue": self.venue,
            "account": self.account,
            "weight_limit_1m": self.limit_1m,
            "weight_share": str(self.share),
            "weight_target_1m": int(self.limit_1m * self.share),
            "weight_used_1m": self.used,
            "weight_sent_1m": self.sent,
            "venue_reported_1m": self.venue_used,
            "stretch": round(self.stretch, 3),
            "retry_until_ms": self.retry_until_ms,
            "banned_until_ms": self.banned_until_ms,
            "throttled": dict(self.throttled),
        }


@dataclass(slots=True)
class WeightBudget:
    venue: str
    account: str
    limit_1m: int
    share: Decimal = Decimal("0.5")
    poll_interval_ms: int = 0
    """The venue's own trade-poll interval: what fill sweeps stretch from."""
    minute: int = -1
    sent: int = 0
    venue_used: int | None = None
    stretch: float = 1.0
    retry_until_ms: int = 0
    banned_until_ms: int = 0
    throttled: dict[str, int] = field(default_factory=lambda: dict.fromkeys(THROTTLE_REASONS, 0))
    _seconds: deque[list[float]] = field(default_factory=deque)
    """[second, read demand, write weight] of the last minute, one entry per second."""
    _first_ms: int | None = None
    _stretched_at_ms: int = -RESTRETCH_MS

    def __post_init__(self) -> None:
        if self.limit_1m < 0:
            raise ValueError(f"weight limit must be >= 0, got {self.limit_1m}")
        if not Decimal(0) < self.share <= Decimal(1):
            raise ValueError(f"weight share must be in (0, 1], got {self.share}")

    @property
    def target(self) -> int:
        return int(self.limit_1m * self.share)

    # --- inputs -----------------------------------------------------------------------------

    def note_sent(self, weight: int, now_ms: int, *, is_write: bool = False) -> None:
        """A request of ``weight`` is about to be sent (an order write: ``is_write``)."""
        self._roll(now_ms)
        self.sent += weight
        if self._first_ms is None:
            self._first_ms = now_ms
        second = now_ms // 1000
        if not self._seconds or self._seconds[-1][0] != second:
            self._seconds.append([second, 0.0, 0.0])
        if is_write:
            self._seconds[-1][2] += weight
        else:
            self._seconds[-1][1] += weight * self.stretch
        self._restretch(now_ms)

    def note_used(self, used: int, now_ms: int) -> None:
        """The venue's own count of the minute (``X-MBX-USED-WEIGHT-1M``)."""
        self._roll(now_ms)
        self.venue_used = max(self.venue_used or 0, used)

    def note_throttled(
        self, status: int, retry_after_s: int | None, now_ms: int, *, is_write: bool = False
    ) -> None:
        """The venue answered 429 (slow down) or 418 (banned), with its ``Retry-After``.
        A 429 to an order write is the order-count limit, not the request weight: counted,
        it holds no read back."""
        self._roll(now_ms)
        is_ban = status == 418
        self.throttled["418" if is_ban else "429"] += 1
        if is_write and not is_ban:
            return
        if retry_after_s is None:
            # no header (Binance always sends one): a 429 backs off a few seconds, a ban
            # lasts at least Binance's first ban
            wait_ms = NO_RETRY_AFTER_429_MS if not is_ban else 2 * MINUTE_MS
        else:
            wait_ms = max(0, retry_after_s) * 1000
        until = now_ms + wait_ms
        self.retry_until_ms = max(self.retry_until_ms, until)
        if is_ban:
            self.banned_until_ms = max(self.banned_until_ms, until)

    def note_waited(self, reason: str = "wait") -> None:
        """A caller waited for (`wait`) or gave up on (`refused`) the budget."""
        self.throttled[reason] += 1

    # --- questions --------------------------------------------------------------------------

    def used(self, now_ms: int) -> int:
        self._roll(now_ms)
        return max(self.sent, self.venue_used or 0)

    def interval_ms(self, base_ms: int, now_ms: int) -> int:
        """``base_ms`` (a read loop's interval) stretched to keep under the target."""
        self._roll(now_ms)
        self._restretch(now_ms)
        return int(base_ms * self.stretch)

    def read_wait_ms(self, now_ms: int, *, is_essential: bool = False) -> int:
        """How long a read should wait before it is sent (0: send now); an essential one
        (an in-doubt query, a fill poll) waits past `ESSENTIAL_SHARE` of the limit only."""
        used = self.used(now_ms)
        wait = max(self.retry_until_ms - now_ms, 0)
        ceiling = int(self.limit_1m * ESSENTIAL_SHARE) if is_essential else self.target
        if self.limit_1m and used >= ceiling:
            wait = max(wait, (self.minute + 1) * MINUTE_MS - now_ms)
        return wait

    def write_refusal(self, now_ms: int) -> str | None:
        """Why an order write must not be sent now (a ban), or None: send it."""
        if now_ms < self.banned_until_ms:
            return f"{self.venue}: banned by the venue (418) for {self.banned_until_ms - now_ms} ms"
        return None

    def view(self, now_ms: int) -> BudgetView:
        used = self.used(now_ms)
        return BudgetView(
            venue=self.venue,
            account=self.account,
            limit_1m=self.limit_1m,
            share=self.share,
            used=used,
            sent=self.sent,
            venue_used=self.venue_used,
            stretch=self.stretch,
            retry_until_ms=self.retry_until_ms if self.retry_until_ms > now_ms else None,
            banned_until_ms=self.banned_until_ms if self.banned_until_ms > now_ms else None,
            throttled=dict(self.throttled),
        )

    # --- the window -------------------------------------------------------------------------

    def _roll(self, now_ms: int) -> None:
        minute = now_ms // MINUTE_MS
        if minute != self.minute:
            self.minute, self.sent, self.venue_used = minute, 0, None

    def _restretch(self, now_ms: int) -> None:
        if not self.limit_1m or 0 <= now_ms - self._stretched_at_ms < RESTRETCH_MS:
            return
        self._stretched_at_ms = now_ms
        horizon = now_ms // 1000 - MINUTE_MS // 1000
        while self._seconds and self._seconds[0][0] <= horizon:
            self._seconds.popleft()
        span_ms = min(MINUTE_MS, max(now_ms - (self._first_ms or now_ms), MIN_PROJECTION_MS))
        per_minute = MINUTE_MS / span_ms
        reads = sum(b[1] for b in self._seconds) * per_minute
        writes = sum(b[2] for b in self._seconds) * per_minute
        others = max(0, (self.venue_used or 0) - self.sent)
        room = self.target - writes - others
        if reads <= 0:
            self.stretch = 1.0
        elif room <= 0:
            self.stretch = MAX_STRETCH
        else:
            self.stretch = min(MAX_STRETCH, max(1.0, reads / room))


def budget_of(venue: object) -> WeightBudget | None:
    """The weight budget of a venue adapter that keeps one (the ccxt venue), else None."""
    budget = getattr(venue, "budget", None)
    return budget if isinstance(budget, WeightBudget) else None
