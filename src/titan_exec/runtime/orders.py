"""Order execution and tracking: `OrderRunner` is the execution driver of `runtime/driver.py`.

The decisions (write-ahead, send after durability, in-doubt resolution, recovery, cancels and
their answers, fills, time-to-live) are in the pure `core/execution.py`; the driver steps them
and runs the venue calls. This name stays for the composition root and its collaborators.
"""

from __future__ import annotations

from titan_exec.runtime.driver import ExecutionDriver

OrderRunner = ExecutionDriver

__all__ = ["OrderRunner"]
