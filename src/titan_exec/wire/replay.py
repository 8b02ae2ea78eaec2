"""Nonce replay cache: refuse a signed envelope whose (key_id, nonce) was seen before
within the signature tolerance window.

A nonce only needs remembering while its envelope could still pass the timestamp check,
i.e. until `ts + window`; it is kept until `max(ts, now) + window` (at least a full window
after it was first seen; `ts` is clamped to `now + window`, beyond which the timestamp
check refuses the envelope anyway). Entries live in a dict for lookup and a deque in insertion
order for eviction, so each call costs amortised O(1).

Bounded: at `max_entries` the oldest entry is evicted to make room, even if it is still
live, and `evicted_live` counts those (export it as a metric; a non-zero value means the
cache is too small for the intent rate × window). Only envelopes whose signature already
verified should reach the cache, so filling it requires a producer's secret; the core's
`signal_id` de-duplication still stops a re-executed intent if that ever happens.
Evicting rather than refusing keeps the service able to trade under a burst.

Pure: time is an argument (`now_ms`); no clock, I/O or logging. Not thread-safe (one
driver owns it).
"""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["NonceCache"]

_NonceKey = tuple[str, str]


class NonceCache:
    """Remembers (key_id, nonce) pairs for `window_ms` (use the signature tolerance)."""

    DEFAULT_MAX_ENTRIES: Final = 1_000_000

    def __init__(self, window_ms: int, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if window_ms <= 0:
            raise ValueError("window_ms must be positive")
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self._window_ms = window_ms
        self._max_entries = max_entries
        self._expiry_ms: dict[_NonceKey, int] = {}
        self._order: deque[tuple[int, _NonceKey]] = deque()
        self._evicted_live = 0

    @property
    def window_ms(self) -> int:
        return self._window_ms

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @property
    def evicted_live(self) -> int:
        """How many still-live nonces were evicted because the cache was full."""
        return self._evicted_live

    def __len__(self) -> int:
        return len(self._expiry_ms)

    def __contains__(self, key: object) -> bool:
        return key in self._expiry_ms

    def check_and_remember(self, key_id: str, nonce: str, ts_ms: int, now_ms: int) -> bool:
        """True if the nonce is new (and now remembered); False if it is a replay, that
        is, seen before and not yet expired at `now_ms`."""
        self.evict_expired(now_ms)
        key = (key_id, nonce)
        expiry = self._expiry_ms.get(key)
        if expiry is not None and expiry > now_ms:
            return False
        while len(self._expiry_ms) >= self._max_entries:
            self._evict_oldest(now_ms)
        # ts beyond now + window fails the timestamp check anyway; clamping keeps expiries
        # close to insertion order so the front of the deque never blocks for long.
        new_expiry = min(max(ts_ms, now_ms), now_ms + self._window_ms) + self._window_ms
        self._expiry_ms[key] = new_expiry
        self._order.append((new_expiry, key))
        return True

    def entries(self) -> list[tuple[str, str, int]]:
        """(key id, nonce, expiry ms) of every entry: what a state snapshot carries."""
        return [(k, n, exp) for (k, n), exp in self._expiry_ms.items()]

    def restore(self, key_id: str, nonce: str, expiry_ms: int, now_ms: int) -> None:
        """Remember an entry read back from a snapshot (ignored once expired)."""
        if expiry_ms <= now_ms or (key_id, nonce) in self._expiry_ms:
            return
        while len(self._expiry_ms) >= self._max_entries:
            self._evict_oldest(now_ms)
        self._expiry_ms[(key_id, nonce)] = expiry_ms
        self._order.append((expiry_ms, (key_id, nonce)))

    def evict_expired(self, now_ms: int) -> int:
        """Drop entries expired at `now_ms` from the front of the insertion order; returns
        how many were dropped. Entries behind a longer-lived one wait for it (they are
        then treated as expired by the lookup), which keeps this amortised O(1)."""
        dropped = 0
        order = self._order
        while order and order[0][0] <= now_ms:
            expiry, key = order.popleft()
            if self._expiry_ms.get(key) == expiry:
                del self._expiry_ms[key]
                dropped += 1
        return dropped

    def _evict_oldest(self, now_ms: int) -> None:
        expiry, key = self._order.popleft()
        if self._expiry_ms.get(key) == expiry:
            del self._expiry_ms[key]
            if expiry > now_ms:
                self._evicted_live += 1
