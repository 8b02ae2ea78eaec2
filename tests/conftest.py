"""Shared test fixtures: real nats-server processes, always stopped after the test.

- ``nats_server_factory``: start any number of servers with any ``EmbeddedNats``
  options (auth, monitor port, ...) inside one test; all are stopped at teardown,
  also when the test fails.
- ``nats_server``: one JetStream server on a free port under ``tmp_path``.
- ``nats_client``: a connection to ``nats_server`` through the production ``connect``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, Protocol

import pytest
from nats.aio.client import Client

from titan_exec.adapters.nats.connect import NatsSettings, connect
from titan_exec.adapters.nats.embedded import EmbeddedNats


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
