"""Child processes the service starts (the embedded nats-server, the venue simulator)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: on Linux, get SIGTERM when the parent dies, so a killed
    service (kill -9, a crashed test runner) never leaves its children behind."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # pragma: no cover - best effort
        pass


async def stop_process(proc: asyncio.subprocess.Process, timeout_s: float = 10.0) -> int:
    """SIGTERM, wait, then SIGKILL: returns the exit code."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return proc.returncode if proc.returncode is not None else -1
