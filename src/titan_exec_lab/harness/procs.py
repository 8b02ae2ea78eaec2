"""`titan-exec run` instances as real child processes: the one process harness of the
demo, the chaos matrix and the integration tests.

`InstanceSettings.toml` is the pair's configuration (lease election on, the ccxt venue
pointing at the venue simulator); `write_config` writes it, and an instance starts as
`python -m titan_exec run --config <toml>` with the secrets in its environment (never in
the file), logging to `<dir>/<name>.log`. Two ways to run it:

- `InstanceProcess` (asyncio: the demo, the chaos matrix): started, killed (SIGKILL),
  restarted on the same port and state directory, stopped (SIGTERM, then SIGKILL);
- `start_instance` (a `subprocess.Popen`: the tests, which pause and signal it) and `stop`.

Either is read over HTTP only (`/status`, `/positions`), like any deployment: `get_json`
(aiohttp) or `read_json` (blocking, for a thread), `poll` until something holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from titan_exec.adapters.process import die_with_parent, stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class InstanceSettings:
    name: str
    nats_url: str
    sim_url: str
    http_port: int
    lease_ms: int = 1000
    orders_ttl_ms: int | None = 3000
    """None: the service default."""
    poll_interval_ms: int = 100
    replicas: int = 1
    """Stream replicas (3 on a three-node cluster)."""
    ack_wait_s: int | None = None
    """The command consumer's ack wait (None: the service default)."""
    is_armed_on_genesis: bool = False
    rate_limit_ms: int | None = None
    in_doubt_absent_after_ms: int | None = None
    """When an order the venue does not know is declared never sent (None: the default)."""
    """The ccxt client's pause between venue calls (None: ccxt's own for the exchange)."""
    snapshot_every_ms: int | None = None
    """Checkpoints (snapshot + the standby's drift comparison) this often (None: default)."""
    is_manual_failover: bool = False
    """`[ha] manual_failover`: the standby campaigns only when promoted."""
    presence_interval_ms: int | None = None
    """`[ha] presence_interval_ms` (0: presence off, the lease alone; None: the default)."""
    extra_toml: str = ""
    """Appended to the configuration (more sections)."""
    venues: tuple[tuple[str, str], ...] = ()
    """(name, simulator URL) of each venue, the default first: `[venues.<name>]` tables
    instead of the one `[venue]` (named `sim`, at `sim_url`)."""

    def venue_toml(self, pace: str) -> str:
        """The venue section(s): each a ccxt venue on a simulator, its keys read from
        ``TITAN_VENUE_API_KEY`` / ``_SECRET`` (the simulators share the dev keys)."""
        if not self.venues:
            return f"""\
[venue]
kind = "ccxt"
name = "sim"
exchange_id = "binanceusdm"
base_url = "{self.sim_url}"
poll_interval_ms = {self.poll_interval_ms}
{pace}"""
        tables = [f'[routing]\ndefault = "{self.venues[0][0]}"\n']
        for name, url in self.venues:
            tables.append(f"""\
[venues.{name}]
kind = "ccxt"
exchange_id = "binanceusdm"
base_url = "{url}"
poll_interval_ms = {self.poll_interval_ms}
api_key_env = "TITAN_VENUE_API_KEY"
api_secret_env = "TITAN_VENUE_API_SECRET"
{pace}""")
        return "".join(tables)

    def toml(self, mode: str, state_dir: Path) -> str:
        consumer = (
            "" if self.ack_wait_s is None else f"[consumer]\nack_wait_s = {self.ack_wait_s}\n"
        )
        risk = "[risk]\narm_on_genesis = true\n" if self.is_armed_on_genesis else ""
        absent = (
            ""
            if self.in_doubt_absent_after_ms is None
            else f"in_doubt_absent_after_ms = {self.in_doubt_absent_after_ms}\n"
        )
        pace = "" if self.rate_limit_ms is None else f"rate_limit_ms = {self.rate_limit_ms}\n"
        ttl = "" if self.orders_ttl_ms is None else f"ttl_ms = {self.orders_ttl_ms}\n"
        manual = "manual_failover = true\n" if self.is_manual_failover else ""
        if self.presence_interval_ms is not None:
            manual += f"presence_interval_ms = {self.presence_interval_ms}\n"
        snapshots = (
            ""
            if self.snapshot_every_ms is None
            else f"[snapshots]\nevery_ms = {self.snapshot_every_ms}\n"
            f"[truth]\ninterval_ms = {min(5000, self.snapshot_every_ms)}\n"
        )
        return f"""\
[service]
instance_id = "{self.name}"
mode = "{mode}"
state_dir = "{state_dir}"
[nats]
url = "{self.nats_url}"
replicas = {self.replicas}
[http]
port = {self.http_port}
[ha]
enabled = true
lease_ms = {self.lease_ms}
{manual}[orders]
{ttl}in_doubt_query_after_ms = 200
{absent}{self.venue_toml(pace)}{consumer}{risk}{snapshots}{self.extra_toml}"""


def write_config(settings: InstanceSettings, mode: str, work_dir: Path) -> Path:
    """`<work_dir>/<name>.toml`, its state in `<work_dir>/<name>`."""
    cfg = work_dir / f"{settings.name}.toml"
    cfg.write_text(settings.toml(mode, work_dir / settings.name))
    return cfg


def instance_argv(cfg: Path) -> list[str]:
    return [sys.executable, "-m", "titan_exec", "run", "--config", str(cfg)]


def instance_env(secrets: dict[str, str]) -> dict[str, str]:
    """This environment without its HMAC / NATS / TITAN settings, plus `secrets`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HMAC", "NATS", "TITAN"))}
    env.update(secrets)
    return env


def start_instance(
    settings: InstanceSettings, mode: str, work_dir: Path, secrets: dict[str, str]
) -> subprocess.Popen[bytes]:
    """The instance as a `subprocess.Popen` (for tests that pause and signal it; `stop`
    ends it), logging to `<work_dir>/<name>.log`."""
    cfg = write_config(settings, mode, work_dir)
    with (work_dir / f"{settings.name}.log").open("ab") as log:
        return subprocess.Popen(
            instance_argv(cfg), env=instance_env(secrets), stdout=log, stderr=subprocess.STDOUT
        )


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


class InstanceProcess:
    """`titan-exec run` for one instance; `secrets` are environment variables
    (`HMAC_SECRET`, `TITAN_EXECUTION_API_KEY`, `TITAN_VENUE_API_KEY`, ...)."""

    def __init__(self, settings: InstanceSettings, work_dir: Path, secrets: dict[str, str]):
        self.settings = settings
        self.work_dir = work_dir
        self.secrets = secrets
        self.proc: asyncio.subprocess.Process | None = None
        self.url = f"http://127.0.0.1:{settings.http_port}"
        self.log_path = work_dir / f"{settings.name}.log"

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def is_running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, mode: str) -> None:
        """Start (or restart) the instance in `mode` (`active` | `standby`)."""
        if self.is_running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        cfg = write_config(self.settings, mode, self.work_dir)
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *instance_argv(cfg),
                env=instance_env(self.secrets), stdout=log, stderr=asyncio.subprocess.STDOUT,
                preexec_fn=die_with_parent,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops us in order
            )  # fmt: skip

    async def kill(self) -> None:
        """SIGKILL, as a crash would: no lease release, no goodbye."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None:
            await stop_process(self.proc)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def status(self, http: aiohttp.ClientSession) -> dict[str, Any] | None:
        """`/status`, or None while it does not answer (starting, killed)."""
        return await get_json(
            http,
            f"{self.url}/status",
            {"X-API-Key": self.secrets.get("TITAN_EXECUTION_API_KEY", "")},
        )

    async def wait_role(
        self, http: aiohttp.ClientSession, role: str, timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """Poll `/status` until the instance reports `role`; fails at once, with its log,
        if the process exits."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.is_running:
                raise RuntimeError(
                    f"{self.name} exited (code {self.proc.returncode if self.proc else None}) "
                    f"before becoming {role}; its log ({self.log_path}) ends:\n{self.log_tail()}"
                )
            doc = await self.status(http)
            if doc is not None and doc.get("role") == role:
                return doc
            if time.monotonic() > deadline:
                seen = doc.get("role") if doc else "no answer"
                raise TimeoutError(
                    f"{self.name} not {role} after {timeout_s:.0f} s (role: {seen}); "
                    f"its log ({self.log_path}) ends:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.02)


async def get_json(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """The JSON document at `url`, or None when the server does not answer (not up yet,
    killed); an answer other than 200 is an error naming the URL and the answer."""
    try:
        async with http.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=2)) as resp:
            if resp.status != 200:
                raise RuntimeError(f"GET {url}: HTTP {resp.status}: {(await resp.text())[:300]}")
            doc: dict[str, Any] = await resp.json()
            return doc
    except (aiohttp.ClientConnectionError, TimeoutError):
        return None


def read_json(url: str, timeout_s: float = 2, headers: dict[str, str] | None = None) -> Any:
    """The JSON at `url`, or None when it cannot be read (not up yet, gone); blocking (call
    it in a thread, as `poll` does)."""
    try:
        req = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


async def poll(fn: Callable[[], Any], what: str, timeout_s: float = 20) -> Any:
    """Call `fn` in a thread until it returns something true (the event loop stays free)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(fn)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
