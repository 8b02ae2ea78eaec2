"""The nonce cache refuses a replay within the tolerance window, forgets afterwards, and
stays bounded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from titan_exec.wire.replay import NonceCache

WINDOW_MS = 300_000
T0 = 1_700_000_000_000


def test_a_nonce_is_accepted_once_within_the_window() -> None:
    cache = NonceCache(WINDOW_MS)
    assert cache.check_and_remember("default", "n1", T0, T0)
    assert not cache.check_and_remember("default", "n1", T0, T0)
    assert not cache.check_and_remember("default", "n1", T0, T0 + WINDOW_MS - 1)
    assert cache.check_and_remember("default", "n2", T0, T0)


def test_a_nonce_is_forgotten_once_its_timestamp_can_no_longer_pass() -> None:
    cache = NonceCache(WINDOW_MS)
    assert cache.check_and_remember("default", "n1", T0, T0)
    assert cache.check_and_remember("default", "n1", T0, T0 + WINDOW_MS)
    assert len(cache) == 1


def test_a_future_timestamp_is_remembered_until_it_leaves_the_window() -> None:
    cache = NonceCache(WINDOW_MS)
    ts = T0 + WINDOW_MS  # the edge of what the timestamp check accepts
    assert cache.check_and_remember("default", "n1", ts, T0)
    assert not cache.check_and_remember("default", "n1", ts, ts + WINDOW_MS - 1)
    assert cache.check_and_remember("default", "n1", ts, ts + WINDOW_MS)


def test_nonces_are_scoped_by_key_id() -> None:
    cache = NonceCache(WINDOW_MS)
    assert cache.check_and_remember("a", "n1", T0, T0)
    assert cache.check_and_remember("b", "n1", T0, T0)
    assert ("a", "n1") in cache
    assert not cache.check_and_remember("a", "n1", T0, T0)


def test_expired_entries_are_evicted_as_time_passes() -> None:
    cache = NonceCache(WINDOW_MS)
    for i in range(100):
        cache.check_and_remember("default", f"n{i}", T0 + i, T0 + i)
    assert len(cache) == 100
    assert cache.evict_expired(T0 + WINDOW_MS + 49) == 50
    assert len(cache) == 50
    cache.check_and_remember("default", "late", T0 + 10 * WINDOW_MS, T0 + 10 * WINDOW_MS)
    assert len(cache) == 1


def test_when_full_the_oldest_is_evicted_and_counted() -> None:
    cache = NonceCache(WINDOW_MS, max_entries=3)
    for i in range(3):
        assert cache.check_and_remember("default", f"n{i}", T0, T0 + i)
    assert cache.check_and_remember("default", "n3", T0, T0 + 3)
    assert len(cache) == 3
    assert ("default", "n0") not in cache
    assert cache.evicted_live == 1
    # The evicted nonce is accepted again: the documented cost of staying bounded.
    assert cache.check_and_remember("default", "n0", T0, T0 + 4)
    assert not cache.check_and_remember("default", "n3", T0, T0 + 5)


@pytest.mark.parametrize(("window_ms", "max_entries"), [(0, 10), (-1, 10), (10, 0)])
def test_nonsense_limits_are_refused(window_ms: int, max_entries: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        NonceCache(window_ms, max_entries)


_steps = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.sampled_from([f"n{i}" for i in range(6)]),
        st.integers(min_value=-WINDOW_MS, max_value=WINDOW_MS),  # ts - now
        st.integers(min_value=0, max_value=WINDOW_MS // 2),  # time advance
    ),
    max_size=60,
)


@given(_steps)
def test_matches_a_naive_model_of_the_window(steps: list[tuple[str, str, int, int]]) -> None:
    cache = NonceCache(WINDOW_MS)
    remembered_until: dict[tuple[str, str], int] = {}
    now = T0
    for key_id, nonce, skew, advance in steps:
        now += advance
        ts = now + skew
        expected = remembered_until.get((key_id, nonce), now) <= now
        assert cache.check_and_remember(key_id, nonce, ts, now) == expected
        if expected:
            remembered_until[(key_id, nonce)] = max(ts, now) + WINDOW_MS
    live = {k for k, until in remembered_until.items() if until > now}
    assert live <= {k for k in remembered_until if k in cache}
