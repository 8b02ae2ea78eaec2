"""The venue simulator as a real child process (`titan-exec venue-sim`), for the demo and
the bench: the service reaches it over HTTP through the ccxt venue, as it would a venue."""

from __future__ import annotations

import asyncio
import re
import sys
from types import TracebackType

from titan_exec.adapters.process import die_with_parent, stop_process

_LISTENING = re.compile(rb"listening on (http://\S+)")


class SimProcess:
    def __init__(
        self,
        *,
        nats_url: str,
        venue_name: str = "sim",
        fill_slices: int = 2,
        slice_interval_ms: int = 150,
        seed: int = 1,
        startup_timeout_s: float = 20.0,
    ) -> None:
        self.args = [
            "--port", "0", "--nats-url", nats_url, "--venue-name", venue_name,
            "--fill-slices", str(fill_slices), "--slice-interval-ms", str(slice_interval_ms),
            "--seed", str(seed), "--log-level", "WARNING",
        ]  # fmt: skip
        self.startup_timeout_s = startup_timeout_s
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self._drain: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SimProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "titan_exec", "venue-sim", *self.args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        assert self.proc.stdout is not None
        seen = b""
        try:
            async with asyncio.timeout(self.startup_timeout_s):
                while True:
                    line = await self.proc.stdout.readline()
                    if not line:
                        raise RuntimeError(f"venue-sim exited at start-up: {seen.decode()[-2000:]}")
                    seen += line
                    match = _LISTENING.search(line)
                    if match:
                        self.url = match.group(1).decode()
                        break
        except BaseException:
            await stop_process(self.proc)
            raise
        self._drain = asyncio.create_task(self._discard(), name="venue-sim-output")
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def _discard(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.readline():
            pass

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            await stop_process(self.proc)
        if self._drain is not None:
            self._drain.cancel()
            await asyncio.gather(self._drain, return_exceptions=True)
