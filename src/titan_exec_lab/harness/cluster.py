"""A local cluster of ``nats-server`` processes (JetStream, R3), for the chaos tests.

This module owns starting N clustered servers on loopback, telling when the cluster has
formed (every node knows the JetStream meta leader and all N meta peers), losing and
restoring one node, and placing the JetStream leaders. Each node is an ``EmbeddedNats``
(its own process, store dir, config, log and ports; it dies with its parent) whose
``extra_config`` adds a ``cluster {}`` block and the accounts. It knows nothing about
Titan subjects or streams.

- Ports: client and monitoring ports are chosen by each server (``-1``, reported through
  its ports file). Route ports cannot be: every node's config names all the routes
  before any node runs. They are reserved by binding to port 0 and released just before
  the servers start; if another process takes one in that window, the start is retried
  with new ports (``port_attempts``).
- Accounts: clients that connect without credentials are the user ``app`` of account
  ``APP`` (``no_auth_user``), which has JetStream. A system account ``SYS`` exists so
  that the cluster can ask the JetStream meta leader to step down (``place_leaders``).
- ``kill(i)`` is SIGKILL; ``restart(i)`` brings node ``i`` back on the same ports and store.

Observed with nats-server 2.15.1 on two cores (see ``tests/integration/test_pair_cluster``):
three nodes form in well under a second. After a ``kill -9`` the surviving replicas of a
stream, consumer or KV bucket elect a new leader only after the raft election timeout,
4 to 9 s (not configurable); meanwhile a write to that stream finds no responders (503)
because only the leader listens on its subjects. A graceful step-down hands over in
milliseconds. Node loss also drops whatever was in flight through that node to its
clients (pull-consumer deliveries, publish acks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import time
import urllib.request
from collections.abc import Collection
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from nats.aio.client import Client

from titan_exec.adapters.nats.connect import NatsSettings, connect
from titan_exec.adapters.nats.embedded import EmbeddedNats, EmbeddedNatsError

CLUSTER_MAX_PAYLOAD = "max_payload: 8MB\n"
"""As the service's embedded server (``runtime.app.EMBEDDED_MAX_PAYLOAD``): an oversized
intent reaches the service, which dead-letters it with a reason."""

APP_USER = "app"
SYSTEM_USER = "sys"
_POLL_INTERVAL_S = 0.05
_HTTP_TIMEOUT_S = 1.0
_API_TIMEOUT_S = 2.0
_ADDRESS_IN_USE = "address already in use"
META = "$META"
"""The JetStream meta group, in ``place_leaders``' bookkeeping."""


class ClusterError(RuntimeError):
    """The local cluster could not be started, did not form, or did not obey in time."""


def get_monitor_json(monitor_url: str, path: str, timeout_s: float = _HTTP_TIMEOUT_S) -> Any:
    """The JSON of a monitoring endpoint (``/jsz``, ``/connz``...), or None when the node
    does not answer (down, starting). Blocking: call it in a thread from async code."""
    try:
        with urllib.request.urlopen(f"{monitor_url}{path}", timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):  # refused, reset, timeout, HTTP error, partial body
        return None


def _reserve_ports(host: str, count: int) -> list[int]:
    """``count`` distinct free TCP ports (held together while choosing, then released)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _only_start_failures(exc: BaseException) -> bool:
    """True when every error in ``exc`` (a TaskGroup's group) is a node that did not start."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_start_failures(e) for e in exc.exceptions)
    return isinstance(exc, EmbeddedNatsError)


def _q(value: str) -> str:
    return json.dumps(value)  # JSON strings are valid NATS config strings


class LocalCluster:
    """``size`` clustered JetStream servers on ``host``, stored under ``<state_dir>/node-<i>``.

    ``async with LocalCluster(tmp) as cluster: ... cluster.urls`` starts them all, returns
    once the cluster has formed, and stops them all on exit (failures included). Node
    ``i`` is named ``<name>-<i>``.
    """

    def __init__(
        self,
        state_dir: Path | str,
        *,
        size: int = 3,
        name: str = "titan",
        host: str = "127.0.0.1",
        extra_config: str = CLUSTER_MAX_PAYLOAD,
        binary: Path | str | None = None,
        form_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
        port_attempts: int = 3,
        is_advertised: bool = True,
    ) -> None:
        if size < 1:
            raise ValueError(f"LocalCluster: size must be >= 1, got {size}")
        if port_attempts < 1:
            raise ValueError(f"LocalCluster: port_attempts must be >= 1, got {port_attempts}")
        self.state_dir = Path(state_dir)
        self.size = size
        self.name = name
        self.host = host
        self.extra_config = extra_config
        self.binary = binary
        self.form_timeout_s = form_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.port_attempts = port_attempts
        self.is_advertised = is_advertised
        """False: the nodes do not tell clients each other's addresses (`no_advertise`), so
        a client reconnects only to the URLs it was given — a proxy in front of each node
        stays in the path (the chaos matrix cuts an instance off through its proxies)."""
        self.route_ports: list[int] = []
        self.nodes: list[EmbeddedNats] = []
        self._app_password = secrets.token_hex(8)
        self._system_password = secrets.token_hex(8)

    # ------------------------------------------------------------- addresses
    def server_name(self, i: int) -> str:
        return f"{self.name}-{i}"

    def node_index(self, server_name: str) -> int | None:
        for i in range(self.size):
            if self.server_name(i) == server_name:
                return i
        return None

    @property
    def node_urls(self) -> tuple[str, ...]:
        """Each node's client URL, in node order."""
        return tuple(node.url for node in self.nodes)

    @property
    def urls(self) -> str:
        """All client URLs comma-joined (the form ``NATS_URL`` and ``[nats] url`` take).
        nats-py itself wants a list: ``nats.connect(list(cluster.node_urls))``."""
        return ",".join(self.node_urls)

    def monitor_url(self, i: int) -> str:
        url = self.nodes[i].monitor_url
        assert url is not None  # every node is started with a monitoring port
        return url

    def running_nodes(self) -> list[int]:
        return [i for i, node in enumerate(self.nodes) if node.is_running]

    # ---------------------------------------------------------------- config
    def _node_config(self, i: int) -> str:
        bind = f"[{self.host}]" if ":" in self.host else self.host
        # Every node lists every route, its own included: the server recognises and drops
        # the route to itself, so all configs are alike.
        routes = "\n".join(f"    {_q(f'nats-route://{bind}:{p}')}" for p in self.route_ports)
        return (
            f"{self.extra_config.rstrip()}\n"
            "accounts {\n"
            f"  SYS {{ users: [ {{ user: {_q(SYSTEM_USER)}, "
            f"password: {_q(self._system_password)} }} ] }}\n"
            f"  APP {{ jetstream: enabled, users: [ {{ user: {_q(APP_USER)}, "
            f"password: {_q(self._app_password)} }} ] }}\n"
            "}\n"
            "system_account: SYS\n"
            f"no_auth_user: {_q(APP_USER)}\n"
            "cluster {\n"
            f"  name: {_q(self.name)}\n"
            + ("" if self.is_advertised else "  no_advertise: true\n")
            + f"  listen: {_q(f'{bind}:{self.route_ports[i]}')}\n"
            f"  routes: [\n{routes}\n  ]\n"
            "}\n"
        )

    def _make_nodes(self) -> None:
        self.route_ports = _reserve_ports(self.host, self.size)
        self.nodes = [
            EmbeddedNats(
                self.state_dir / f"node-{i}",
                host=self.host,
                port=0,
                monitor_port=0,
                server_name=self.server_name(i),
                extra_config=self._node_config(i),
                binary=self.binary,
                # each node's own wait: it serves clients and its /healthz is OK, which
                # in a cluster needs a meta leader, i.e. a quorum of nodes up
                startup_timeout_s=self.form_timeout_s,
                stop_timeout_s=self.stop_timeout_s,
            )
            for i in range(self.size)
        ]

    # ------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start every node and wait until the cluster has formed (or raise ClusterError)."""
        for attempt in range(1, self.port_attempts + 1):
            self._make_nodes()
            try:
                async with asyncio.TaskGroup() as tg:
                    for node in self.nodes:
                        tg.create_task(node.astart())
            except BaseException as exc:
                self.stop()
                if not _only_start_failures(exc):
                    raise
                if attempt < self.port_attempts and _ADDRESS_IN_USE in self.log_tails():
                    continue  # a reserved route port was taken meanwhile: new ports
                raise ClusterError(
                    f"nats cluster of {self.size} did not start: {exc}\n{self.log_tails()}"
                ) from exc
            break
        try:
            await self.wait_formed()
        except BaseException:
            self.stop()
            raise

    def formation_problem(self) -> str | None:
        """Why the cluster (its running nodes) is not formed yet, or None when it is: every
        running node must know the meta leader and have all ``size`` meta peers."""
        for i in self.running_nodes():
            jsz = get_monitor_json(self.monitor_url(i), "/jsz")
            if jsz is None:
                return f"{self.server_name(i)}: /jsz does not answer"
            meta = jsz.get("meta_cluster") or {}
            if not meta.get("leader"):
                return f"{self.server_name(i)}: no JetStream meta leader yet"
            if meta.get("cluster_size") != self.size:
                return (
                    f"{self.server_name(i)}: meta group has {meta.get('cluster_size')} "
                    f"peers, wants {self.size}"
                )
        return None

    async def wait_formed(self, timeout_s: float | None = None) -> None:
        """Wait until ``formation_problem()`` is None (or raise ClusterError with logs)."""
        timeout = self.form_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        while True:
            problem = await asyncio.to_thread(self.formation_problem)
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"nats cluster of {self.size} not formed after {timeout}s: {problem}\n"
                    f"{self.log_tails()}"
                )
            await asyncio.sleep(_POLL_INTERVAL_S)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL). Idempotent; keeps going past errors."""
        errors: list[BaseException] = []
        for node in self.nodes:
            try:
                node.stop()
            except Exception as exc:  # stop the others, then report
                errors.append(exc)
        if errors:
            raise ClusterError(f"stopping the nats cluster: {errors}")

    async def astop(self) -> None:
        """``stop()`` in a worker thread; completes even if the caller is cancelled."""
        await asyncio.shield(asyncio.to_thread(self.stop))

    def kill(self, i: int) -> None:
        """SIGKILL node ``i`` (its store stays; ``restart(i)`` brings it back)."""
        self.nodes[i].kill()

    async def restart(self, i: int) -> None:
        """Start node ``i`` again on the same ports and store, and wait until it serves
        (its /healthz: it knows the meta leader and its streams have caught up)."""
        await self.nodes[i].astart()
        await self.wait_formed()

    # --------------------------------------------------------- who is where
    def node_of_client(self, client_name: str) -> int | None:
        """The node a client (by its connection name) is connected to. Blocking."""
        for i in self.running_nodes():
            connz = get_monitor_json(self.monitor_url(i), "/connz?limit=4096") or {}
            if any(c.get("name") == client_name for c in connz.get("connections") or []):
                return i
        return None

    def meta_leader(self) -> int | None:
        """The node leading the JetStream meta group, as a running node sees it. Blocking."""
        for i in self.running_nodes():
            jsz = get_monitor_json(self.monitor_url(i), "/jsz") or {}
            leader = (jsz.get("meta_cluster") or {}).get("leader")
            if leader:
                return self.node_index(leader)
        return None

    def leaders(self) -> dict[str, int]:
        """Which node leads each replicated stream (``<stream>``) and consumer
        (``<stream>/<consumer>``), from the running nodes' ``/jsz``. Blocking.
        Single-replica assets (ordered consumers, R1 streams) have no raft group to lose
        a leader in and are left out."""
        out: dict[str, int] = {}
        path = "/jsz?accounts=true&streams=true&consumers=true"
        for i in self.running_nodes():
            jsz = get_monitor_json(self.monitor_url(i), path) or {}
            for account in jsz.get("account_details") or []:
                for stream in account.get("stream_detail") or []:
                    name = stream.get("name", "")
                    self._note_leader(out, name, stream.get("cluster"))
                    for consumer in stream.get("consumer_detail") or []:
                        group = f"{name}/{consumer.get('name', '')}"
                        self._note_leader(out, group, consumer.get("cluster"))
        return out

    def _note_leader(self, out: dict[str, int], group: str, cluster: Any) -> None:
        if not cluster or not cluster.get("replicas"):
            return
        leader = self.node_index(cluster.get("leader") or "")
        if leader is not None:
            out[group] = leader

    # ----------------------------------------------------------- placement
    async def place_leaders(
        self,
        on: Collection[int],
        *,
        meta_on: Collection[int] | None = None,
        timeout_s: float = 15.0,
    ) -> None:
        """Move the leader of every replicated stream and consumer onto a node of ``on``,
        and the JetStream meta leader onto a node of ``meta_on`` (None: leave it), by
        graceful step-downs with a preferred placement; return once all of them are
        there (or raise ClusterError)."""
        targets, meta_targets = set(on), None if meta_on is None else set(meta_on)
        running = set(self.running_nodes())
        for wanted in (targets, meta_targets):
            if wanted is not None and (not wanted or not wanted <= running):
                raise ValueError(f"place_leaders: {wanted} is not a set of running nodes")
        app = await self._connect(None)
        system = await self._connect(SYSTEM_USER) if meta_targets is not None else None
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                wrong = await asyncio.to_thread(self._misplaced, targets, meta_targets)
                if not wrong:
                    return
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"leaders not moved: {wrong} (to {targets}, meta {meta_targets})"
                    )
                for group in wrong:
                    to = meta_targets if group == META else targets
                    nc = system if group == META else app
                    assert nc is not None and to
                    body = json.dumps({"placement": {"preferred": self.server_name(min(to))}})
                    with contextlib.suppress(Exception):  # asked again on the next round
                        await nc.request(
                            self._stepdown_subject(group), body.encode(), _API_TIMEOUT_S
                        )
                await asyncio.sleep(0.3)
        finally:
            await app.close()
            if system is not None:
                await system.close()

    def _misplaced(self, targets: set[int], meta_targets: set[int] | None) -> dict[str, int | None]:
        wrong: dict[str, int | None] = {g: n for g, n in self.leaders().items() if n not in targets}
        if meta_targets is not None:
            leader = self.meta_leader()
            if leader not in meta_targets:
                wrong[META] = leader
        return wrong

    @staticmethod
    def _stepdown_subject(group: str) -> str:
        if group == META:
            return "$JS.API.META.LEADER.STEPDOWN"
        stream, _, consumer = group.partition("/")
        if consumer:
            return f"$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{consumer}"
        return f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}"

    async def _connect(self, user: str | None) -> Client:
        """A connection as the app (no credentials) or as the system user."""
        urls = tuple(self.nodes[i].url for i in self.running_nodes())
        if user is None:
            return await connect(NatsSettings(urls=urls, name="local-cluster"))
        settings = NatsSettings(
            urls=urls, name="local-cluster-sys", user=user, password=self._system_password
        )
        return await connect(settings)

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {self.server_name(i)} ({node.log_path}):\n{node.log_tail()}"
            for i, node in enumerate(self.nodes)
        )

    # -------------------------------------------------------- context manager
    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.astop()
            return
        with contextlib.suppress(ClusterError):  # do not hide the error that got us here
            await self.astop()

    def __repr__(self) -> str:
        return f"LocalCluster({self.state_dir}, size={self.size}, running={self.running_nodes()})"


__all__: list[str] = [
    "APP_USER",
    "CLUSTER_MAX_PAYLOAD",
    "SYSTEM_USER",
    "ClusterError",
    "LocalCluster",
    "get_monitor_json",
]
