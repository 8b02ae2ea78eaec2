"""The request-weight budget of a venue account (pure, on a hand-moved clock): reads
stretch to keep the account under its share, writes never wait, 429 / 418 honour
Retry-After, a ban refuses writes before sending."""

from __future__ import annotations

from decimal import Decimal

import pytest

from titan_exec.adapters.venue.budget import (
    ESSENTIAL_SHARE,
    MAX_STRETCH,
    MINUTE_MS,
    WeightBudget,
)
from titan_exec.adapters.venue.ccxt_weights import request_weight

T0 = 1_700_000_040_000 - 1_700_000_040_000 % MINUTE_MS  # a minute's start


def budget(limit: int = 2400, share: str = "0.5") -> WeightBudget:
    return WeightBudget(venue="binance", account="main", limit_1m=limit, share=Decimal(share))


def run_polls(b: WeightBudget, *, start_ms: int, seconds: int, base_ms: int, weight: int) -> int:
    """Polls of `weight` every stretched `base_ms` for `seconds`; the weight they sent."""
    now, sent = start_ms, 0
    while now < start_ms + seconds * 1000:
        b.note_sent(weight, now)
        sent += weight
        now += b.interval_ms(base_ms, now)
    return sent


def test_an_idle_account_does_not_stretch() -> None:
    b = budget()
    assert b.interval_ms(250, T0) == 250
    assert b.read_wait_ms(T0) == 0
    assert b.write_refusal(T0) is None


def test_a_steady_demand_settles_under_the_share() -> None:
    # 20 symbols of userTrades (5 each) every 250 ms: 24 000 a minute unstretched
    b = budget()
    run_polls(b, start_ms=T0, seconds=60, base_ms=250, weight=100)
    sent = run_polls(b, start_ms=T0 + MINUTE_MS, seconds=60, base_ms=250, weight=100)
    assert sent <= 1200 + 100  # the target, within one poll
    assert sent >= 1000  # and close to it: the budget is used, not wasted
    assert 15 <= b.stretch <= 25  # 24 000 / 1200


def test_writes_count_but_are_never_stretched_and_leave_less_room_for_reads() -> None:
    b = budget()
    now, next_read, next_write = T0, T0, T0
    while now < T0 + 2 * MINUTE_MS:
        if now >= next_write:
            b.note_sent(10, now, is_write=True)  # 600 a minute of order writes
            next_write += 1000
        if now >= next_read:
            b.note_sent(5, now)  # reads: 1200 a minute unstretched
            next_read = now + b.interval_ms(250, now)
        now += 50
    # 1200 - 600 = 600 left for the reads: about twice their interval
    assert 1.7 <= b.stretch <= 2.4
    assert b.used(now - 1) <= 1200 + 10


def test_the_venues_own_count_holds_what_other_clients_spent() -> None:
    b = budget()
    now = T0 + 20_000
    b.note_sent(5, now)
    b.note_used(1300, now)  # another process on the account spent the rest
    assert b.used(now) == 1300
    assert b.read_wait_ms(now) == MINUTE_MS - 20_000  # over the share: reads wait the minute
    assert b.write_refusal(now) is None  # writes still go
    assert b.interval_ms(250, now + 1000) == int(250 * MAX_STRETCH)
    later = T0 + MINUTE_MS
    assert b.used(later) == 0 and b.read_wait_ms(later) == 0  # a new minute


def test_essential_reads_have_the_room_between_the_share_and_ninety_percent() -> None:
    """In-doubt queries and fill polls: past the share they still go (a takeover after
    restarts within a minute finds the account's count high); past 90 % of the limit, or
    under a 429's Retry-After, they wait like the others."""
    b = budget()
    now = T0 + 20_000
    b.note_used(1300, now)  # over the 1200 share
    assert b.read_wait_ms(now) == MINUTE_MS - 20_000
    assert b.read_wait_ms(now, is_essential=True) == 0
    b.note_used(int(2400 * ESSENTIAL_SHARE) - 1, now)
    assert b.read_wait_ms(now, is_essential=True) == 0
    b.note_used(int(2400 * ESSENTIAL_SHARE), now)  # 2160: the essential ceiling
    assert b.read_wait_ms(now, is_essential=True) == MINUTE_MS - 20_000
    fresh = budget()
    fresh.note_throttled(429, 3, now)
    assert fresh.read_wait_ms(now, is_essential=True) == 3000  # the venue's word holds all
    unknown = budget(limit=0)
    unknown.note_used(10_000, now)
    assert unknown.read_wait_ms(now, is_essential=True) == 0  # no limit known: no ceiling


def test_a_429_makes_reads_wait_its_retry_after() -> None:
    b = budget()
    b.note_throttled(429, 7, T0 + 1000)
    assert b.read_wait_ms(T0 + 1000) == 7000
    assert b.read_wait_ms(T0 + 8000) == 0
    assert b.write_refusal(T0 + 1000) is None  # a 429 does not stop orders
    assert b.throttled["429"] == 1


def test_a_418_bans_reads_and_refuses_writes_until_it_ends() -> None:
    b = budget()
    b.note_throttled(418, 120, T0)
    assert b.read_wait_ms(T0 + 1000) == 119_000
    assert b.write_refusal(T0 + 1000) is not None
    assert "418" in (b.write_refusal(T0 + 119_999) or "")
    assert b.write_refusal(T0 + 120_000) is None
    view = b.view(T0 + 1000)
    assert view.banned_until_ms == T0 + 120_000 and view.throttled["418"] == 1


def test_a_418_without_retry_after_waits_at_least_two_minutes() -> None:
    b = budget()
    b.note_throttled(418, None, T0)
    assert b.write_refusal(T0 + 2 * MINUTE_MS - 1) is not None


def test_an_unknown_limit_counts_but_never_stretches() -> None:
    b = budget(limit=0)
    run_polls(b, start_ms=T0, seconds=30, base_ms=50, weight=50)
    assert b.stretch == 1.0 and b.read_wait_ms(T0 + 30_000) == 0
    assert b.view(T0 + 30_000).used > 10_000


def test_the_status_document() -> None:
    b = budget()
    b.note_sent(5, T0)
    doc = b.view(T0).to_doc()
    assert doc["weight_limit_1m"] == 2400 and doc["weight_target_1m"] == 1200
    assert doc["weight_used_1m"] == 5 and doc["weight_share"] == "0.5"


@pytest.mark.parametrize("share", ["0", "1.5"])
def test_a_share_outside_zero_to_one_is_refused(share: str) -> None:
    with pytest.raises(ValueError, match="share"):
        budget(share=share)


def test_binance_usdm_weights_and_ccxt_costs_elsewhere() -> None:
    def cost() -> int:
        return 3

    assert request_weight("binanceusdm", "GET", "userTrades", {"symbol": "X"}, cost) == 5
    assert request_weight("binanceusdm", "GET", "openOrders", {"symbol": "X"}, cost) == 1
    assert request_weight("binanceusdm", "GET", "openOrders", {}, cost) == 40
    assert request_weight("binanceusdm", "GET", "positionRisk", {}, cost) == 5
    assert request_weight("binanceusdm", "GET", "balance", {}, cost) == 5
    assert request_weight("binanceusdm", "POST", "order", {}, cost) == 0
    assert request_weight("binanceusdm", "DELETE", "order", {}, cost) == 1
    assert request_weight("binanceusdm", "POST", "listenKey", {}, cost) == 1
    assert request_weight("binanceusdm", "GET", "depth", {"limit": 1000}, cost) == 20
    assert request_weight("binanceusdm", "GET", "somethingNew", {}, cost) == 3
    assert request_weight("bybit", "GET", "v5/order/realtime", {}, cost) == 3

    def broken() -> int:
        raise KeyError("cost")

    assert request_weight("okx", "GET", "api/v5/trade/order", {}, broken) == 1


def test_the_metrics_follow_the_budgets_cumulative_counts() -> None:
    from titan_exec.api.metrics import Metrics, observe_budget

    metrics = Metrics()
    b = budget()
    b.note_sent(5, T0)
    b.note_throttled(429, 3, T0)
    for _ in range(2):  # two scrapes: counted once
        view = b.view(T0)
        observe_budget(
            metrics,
            venue=view.venue,
            account=view.account,
            used=view.used,
            limit=view.limit_1m,
            stretch=view.stretch,
            throttled=view.throttled,
        )
    text = metrics.render().decode()
    assert 'titan_exec_venue_weight_used{account="main",venue="binance"} 5.0' in text
    assert 'titan_exec_venue_weight_limit{account="main",venue="binance"} 2400.0' in text
    assert (
        'titan_exec_venue_throttled_total{account="main",reason="429",venue="binance"} 1.0' in text
    )


class BudgetedVenue:
    """A venue stand-in that keeps a weight budget (as the ccxt venue does)."""

    name = "binance"
    account = "main"

    def __init__(self, b: WeightBudget) -> None:
        self.budget = b


def test_fill_polls_wait_their_stretched_interval_and_the_venues_retry_after() -> None:
    from titan_exec.api.metrics import Metrics
    from titan_exec.config import OrdersConfig
    from titan_exec.runtime.venuecalls import VenueRequests

    clock = [T0]
    b = budget()
    b.poll_interval_ms = 250
    calls = VenueRequests(
        venue=BudgetedVenue(b),  # type: ignore[arg-type]
        metrics=Metrics(),
        cfg=OrdersConfig(poll_interval_ms=50),
        clock=lambda: clock[0],
        gate=lambda: True,
    )
    assert calls.poll_wait_ms() == 0  # idle: poll at once
    run_polls(b, start_ms=T0 - 30_000, seconds=30, base_ms=250, weight=50)  # heavy
    calls._last_poll_ms = T0
    clock[0] = T0 + 250
    wait = calls.poll_wait_ms()
    assert wait > 0  # stretched: the next poll waits beyond the venue's 250 ms
    assert wait == b.interval_ms(250, clock[0]) - 250
    b.note_throttled(429, 9, clock[0])
    assert calls.poll_wait_ms() >= 9000
    # a venue whose user-data stream runs: its fills are pushed, the poll never waits
    # (its REST sweeps wait for the budget inside each read)
    calls.venue.is_streaming = True  # type: ignore[attr-defined]
    assert calls.poll_wait_ms() == 0


def test_reconciliation_intervals_stretch_with_the_budget() -> None:
    from titan_exec.runtime.reconcile import VenueReconciler

    b = budget()
    run_polls(b, start_ms=T0, seconds=30, base_ms=250, weight=50)

    class Runner:
        venue = BudgetedVenue(b)

    rec = VenueReconciler.__new__(VenueReconciler)
    rec.runner = Runner()  # type: ignore[assignment]
    rec.clock = lambda: T0 + 30_000
    assert rec.interval_ms(5000) > 5000
    Runner.venue = BudgetedVenue(budget())  # an idle account: as configured
    assert rec.interval_ms(5000) == 5000


def test_a_429_to_an_order_write_is_counted_and_holds_no_read_back() -> None:
    b = budget()
    b.note_throttled(429, None, T0, is_write=True)  # the order-count limit
    assert b.throttled["429"] == 1
    assert b.read_wait_ms(T0) == 0
    b.note_throttled(418, 60, T0, is_write=True)  # a ban is a ban, whoever got it
    assert b.write_refusal(T0) is not None and b.read_wait_ms(T0) == 60_000
