"""The two clocks of the shell, in one place. The core never reads either: time reaches it
as `now_ms` on every input.

- `wall_clock_ms`: milliseconds since the Unix epoch, for what goes on the wire and into
  events (timestamps, envelope freshness, daily PnL buckets).
- `monotonic_ms`: a clock that never steps back, for deadlines and durations measured
  inside one process (the lease deadline, back-offs, ages).
"""

from __future__ import annotations

import time


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000
