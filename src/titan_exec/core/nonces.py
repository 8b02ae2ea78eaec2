"""The nonce window: the (key id, nonce) pairs of the signed commands decided, folded from
the decision events (`IntentDecided.nonce`, `ControlDecided.nonce`). Pure.

A replay is a verified signature whose (key id, nonce) was decided before and is still
live: an envelope is refused once its timestamp is more than the tolerance `W` from now,
so a nonce needs remembering until

    expiry = min(max(ts, decided), decided + W) + W

(`ts` the envelope's timestamp, `decided` the decision's `ts_ms`; `ts` clamped to
`decided + W`, beyond which the timestamp check refuses the envelope anyway). The fold
records `(ts, decided)` and never needs `W`: the decision passes it to `is_replayed`.

Entries go with the compaction (`StateCompacted.orders_before_ms`): the retention horizon
is at least `2 W` (`config.py`), so every entry decided before it has expired. A snapshot
carries the entries as `(key id, nonce, expiry)` (its `nonce` lines, not hashed); those
read back are kept by expiry. Not part of the state hash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from titan_exec.core.events import SeenNonce

__all__ = ["NonceEntry", "NonceWindow", "expiry_ms"]

NonceEntry = tuple[str, str, int]
"""(key id, nonce, expiry ms): a snapshot's form of an entry."""
_Key = tuple[str, str]


def expiry_ms(ts_ms: int, decided_ms: int, window_ms: int) -> int:
    return min(max(ts_ms, decided_ms), decided_ms + window_ms) + window_ms


@dataclass(slots=True)
class NonceWindow:
    seen: dict[_Key, tuple[int, int]] = field(default_factory=dict)
    """(key id, nonce) -> (envelope ts, decision ts) of the nonces decided."""
    restored: dict[_Key, int] = field(default_factory=dict)
    """(key id, nonce) -> expiry, read back from a snapshot."""

    def __len__(self) -> int:
        return len(self.seen) + len(self.restored)

    def remember(self, nonce: SeenNonce, decided_ms: int) -> None:
        key = (nonce.key_id, nonce.nonce)
        self.restored.pop(key, None)
        self.seen[key] = (nonce.ts_ms, decided_ms)

    def is_replayed(self, nonce: SeenNonce, now_ms: int, window_ms: int) -> bool:
        """Whether this (key id, nonce) was decided before and is still live at `now_ms`."""
        key = (nonce.key_id, nonce.nonce)
        seen = self.seen.get(key)
        if seen is not None:
            return expiry_ms(seen[0], seen[1], window_ms) > now_ms
        restored = self.restored.get(key)
        return restored is not None and restored > now_ms

    def entries(self, window_ms: int) -> list[NonceEntry]:
        """Every entry with its expiry under the tolerance `window_ms` (a snapshot's lines)."""
        out = [(k, n, exp) for (k, n), exp in self.restored.items()]
        out.extend((k, n, expiry_ms(ts, d, window_ms)) for (k, n), (ts, d) in self.seen.items())
        return out

    def restore(self, entries: Iterable[NonceEntry]) -> None:
        for key_id, nonce, expiry in entries:
            if (key_id, nonce) not in self.seen:
                self.restored[(key_id, nonce)] = max(expiry, self.restored.get((key_id, nonce), 0))

    def prune(self, before_ms: int) -> None:
        """Drop the entries decided (or expired) before `before_ms`, the compaction bound."""
        self.seen = {k: v for k, v in self.seen.items() if v[1] >= before_ms}
        self.restored = {k: v for k, v in self.restored.items() if v > before_ms}
