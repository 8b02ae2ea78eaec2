"""Shared test fixtures: real nats-server processes, always stopped after the test.

- ``nats_server_factory``: start any number of servers with any ``EmbeddedNats``
  options (auth, monitor port, ...) inside one test; all are stopped at teardown,
  also when the test fails.
- ``nats_server``: one JetStream server on a free port under ``tmp_path``.
- ``nats_client``: a connection to ``nats_server`` through the production ``connect``.

The suite's process also freezes the cyclic collector's view before every test, as
``titan-exec run`` does after its imports: after a thousand tests the heap held ~370 000
objects and one full collection stalled the loop 180-285 ms inside a running pair, more
than the lease watchdog allows (an active fenced itself in CI). Every 50 tests the frozen
objects are thawed and collected between tests, where a pause harms nothing.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, Protocol

import pytest
from nats.aio.client import Client

from titan_exec.adapters.nats.connect import NatsSettings, connect
from titan_exec.adapters.nats.embedded import EmbeddedNats

_TESTS = itertools.count()
COLLECT_EVERY = 50


def pytest_runtest_setup(item: pytest.Item) -> None:
    if next(_TESTS) % COLLECT_EVERY == 0:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


class NatsServerFactory(Protocol):
    def __call__(self, **options: Any) -> Awaitable[EmbeddedNats]: ...


@pytest.fixture
async def nats_server_factory(tmp_path: Path) -> AsyncIterator[NatsServerFactory]:
    servers: list[EmbeddedNats] = []

    async def start(**options: Any) -> EmbeddedNats:
        server = EmbeddedNats(tmp_path / f"nats-{len(servers)}", **options)
        servers.append(server)
        await server.astart()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def nats_server(nats_server_factory: NatsServerFactory) -> EmbeddedNats:
    return await nats_server_factory()


@pytest.fixture
async def nats_client(nats_server: EmbeddedNats) -> AsyncIterator[Client]:
    nc = await connect(NatsSettings(urls=(nats_server.url,), name="pytest"))
    try:
        yield nc
    finally:
        await nc.close()
