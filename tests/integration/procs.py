"""Helpers for tests that run real processes: free ports, HTTP polling, graceful stops."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
import urllib.request
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout_s: float = 2, headers: dict[str, str] | None = None) -> Any:
    """The JSON at `url`, or None when it cannot be read (not up yet, gone)."""
    try:
        req = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


async def poll(fn: Any, what: str, timeout_s: float = 20) -> Any:
    """Call `fn` in a thread until it returns something true (the event loop stays free)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(fn)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    """SIGCONT (in case it is paused), SIGTERM, then SIGKILL after the timeout."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
