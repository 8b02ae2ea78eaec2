"""A TCP proxy that can cut a process off from NATS, for the partition tests and the chaos
matrix (one proxy per instance and NATS node).

`cut()` black-holes the link: connections stay open but no byte passes either way (what a
partition looks like from inside: no error, just silence until the client's pings time
out). `heal()` drops the connections that lived through the cut (their TCP state would be
gone after a real partition) and forwards again, so the client reconnects.

`cut(hold=True)` is a host gone dark: besides dropping every byte, a side that closes its
socket during the cut does not close the other one. A client killed behind the cut (its
socket closed by its kernel) stays connected as far as the NATS server can tell, its
subscriptions in place, until the server's own ping timeout or the `heal()`. Without
`hold` the proxy passes a close on (the server learns at once that the client is gone).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any


class PartitionProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._is_cut = False
        self._is_held = False
        self._healed = asyncio.Event()
        self._links: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"nats://127.0.0.1:{port}"

    async def __aenter__(self) -> PartitionProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        self._drop_links()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self, *, hold: bool = False) -> None:
        """Black-hole the link; `hold`: a close on either side is not passed on either."""
        self._is_cut = True
        self._is_held = hold
        self._healed.clear()

    def heal(self) -> None:
        self._drop_links()
        self._is_cut = False
        self._is_held = False
        self._healed.set()

    def _drop_links(self) -> None:
        for w in list(self._links):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._is_cut:
            await self._healed.wait()  # a connect during the cut hangs, like a dead route
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._links |= {writer, up_w}
        for src, dst in ((reader, up_w), (up_r, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if self._is_cut:
                    continue  # black hole: read and drop
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not (self._is_cut and self._is_held):  # held: `heal()` closes it
                with contextlib.suppress(Exception):
                    dst.transport.abort()


class ThreadedProxy:
    """A `PartitionProxy` whose relaying runs on its own event loop in a thread, so that
    what the harness does on its own loop (reading 25 MB of a burst back from a stream,
    checking a run) never holds up the bytes of the instances it carries: their lease
    renewals, relayed late, made the active fence in the chaos matrix's long
    poison-burst run. Same interface: async context manager, `url`, `cut()`, `heal()`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._proxy = PartitionProxy(target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"proxy-{target_port}", daemon=True
        )

    @property
    def url(self) -> str:
        return self._proxy.url

    def _run(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def __aenter__(self) -> ThreadedProxy:
        self._thread.start()
        await asyncio.wrap_future(self._run(self._proxy.__aenter__()))
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await asyncio.wrap_future(self._run(self._proxy.__aexit__(None, None, None)))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 5)
            if not self._thread.is_alive():
                self._loop.close()

    def cut(self, *, hold: bool = False) -> None:
        self._run(_call(lambda: self._proxy.cut(hold=hold))).result(5)

    def heal(self) -> None:
        self._run(_call(self._proxy.heal)).result(5)


async def _call(fn: Callable[[], None]) -> None:
    fn()
