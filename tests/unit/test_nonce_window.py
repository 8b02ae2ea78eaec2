"""The nonce window folded into the state refuses a replay within the tolerance, forgets
afterwards, and goes with the compaction."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from titan_exec.core.events import SeenNonce
from titan_exec.core.nonces import NonceWindow, expiry_ms

WINDOW_MS = 300_000
T0 = 1_700_000_000_000


def nonce(n: str, ts: int, key: str = "default") -> SeenNonce:
    return SeenNonce(key_id=key, nonce=n, ts_ms=ts)


def test_a_nonce_is_replayed_within_the_window_and_fresh_after_it() -> None:
    w = NonceWindow()
    assert not w.is_replayed(nonce("n1", T0), T0, WINDOW_MS)
    w.remember(nonce("n1", T0), T0)
    assert w.is_replayed(nonce("n1", T0), T0 + WINDOW_MS - 1, WINDOW_MS)
    assert not w.is_replayed(nonce("n1", T0), T0 + WINDOW_MS, WINDOW_MS)
    assert not w.is_replayed(nonce("n1", T0, key="other"), T0, WINDOW_MS)


def test_expiry_is_the_later_of_timestamp_and_decision_plus_the_window() -> None:
    """A timestamp ahead of the decision keeps it longer, never beyond one more window (the
    timestamp check refuses an envelope further ahead anyway)."""
    assert expiry_ms(T0, T0, WINDOW_MS) == T0 + WINDOW_MS
    assert expiry_ms(T0 - 200_000, T0, WINDOW_MS) == T0 + WINDOW_MS
    assert expiry_ms(T0 + 100_000, T0, WINDOW_MS) == T0 + 100_000 + WINDOW_MS
    assert expiry_ms(T0 + 900_000, T0, WINDOW_MS) == T0 + 2 * WINDOW_MS


def test_a_snapshot_round_trip_keeps_every_live_entry() -> None:
    w = NonceWindow()
    w.remember(nonce("a", T0), T0)
    w.remember(nonce("b", T0 + 50_000), T0)
    back = NonceWindow()
    back.restore(w.entries(WINDOW_MS))
    for n, ts in (("a", T0), ("b", T0 + 50_000)):
        assert back.is_replayed(nonce(n, ts), T0 + WINDOW_MS - 1, WINDOW_MS)
    assert not back.is_replayed(nonce("a", T0), T0 + WINDOW_MS, WINDOW_MS)
    assert back.is_replayed(nonce("b", T0), T0 + WINDOW_MS, WINDOW_MS)


def test_the_compaction_drops_what_was_decided_before_its_bound() -> None:
    w = NonceWindow()
    w.remember(nonce("old", T0), T0)
    w.remember(nonce("new", T0 + 10), T0 + 10)
    w.prune(T0 + 5)
    assert [n for _, n, _ in w.entries(WINDOW_MS)] == ["new"]


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
    """Deciding a command = refuse it when replayed, else remember it: the same answers as
    a dictionary of 'remembered until' times."""
    w = NonceWindow()
    remembered_until: dict[tuple[str, str], int] = {}
    now = T0
    for key_id, n, skew, advance in steps:
        now += advance
        seen = nonce(n, now + skew, key_id)
        expected_replay = remembered_until.get((key_id, n), now) > now
        assert w.is_replayed(seen, now, WINDOW_MS) == expected_replay
        if not expected_replay:
            w.remember(seen, now)
            remembered_until[(key_id, n)] = max(now + skew, now) + WINDOW_MS
