"""NATS connection settings and the one place that opens a NATS connection.

This module owns ``NatsSettings`` (frozen, validated at construction: auth pairs,
mutually exclusive auth methods, timing values) and ``connect()``, which turns the
settings into nats-py options and fixes nats-py defaults that do not suit a trading
service:

- ping every 5 s (nats-py: 2 minutes), so a dead connection is noticed in seconds;
- reconnect forever (nats-py: give up after 60 attempts) once connected;
- but the *first* connect is bounded (attempts and a deadline) and fails with an error
  naming the URL. nats-py on its own retries an unreachable server forever when
  ``max_reconnect_attempts`` is -1, also on the very first connect.

Connection changes (disconnected, reconnected, errors, closed) are logged here and
passed to an optional ``on_event`` callback, so that the runtime can tell "NATS is
unreachable" apart from "the lease was lost". Secrets never appear in logs or reprs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nats import errors as nats_errors
from nats.aio.client import Client

from titan_exec.adapters.nats.safeclient import SafeClient

log = logging.getLogger(__name__)

_URL_SCHEMES = ("nats", "tls", "ws", "wss")


class NatsConfigError(ValueError):
    """The NATS settings are invalid (a programming or deployment error)."""


class NatsConnectError(ConnectionError):
    """The first connection to NATS could not be established."""


class ConnectionEventKind(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECONNECTED = "reconnected"
    ERROR = "error"
    CLOSED = "closed"
    DISCOVERED_SERVER = "discovered_server"
    LAME_DUCK = "lame_duck"


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """A change of the NATS connection, as reported to ``on_event``."""

    kind: ConnectionEventKind
    url: str | None  # the server concerned, credentials redacted
    error: str | None = None


OnConnectionEvent = Callable[[ConnectionEvent], None]


def redact_url(url: str) -> str:
    """``nats://user:secret@host:4222`` -> ``nats://user:***@host:4222``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    # user:password, or a bare token in the user part
    userinfo = f"{parts.username}:***" if parts.password is not None else "***"
    netloc = f"{userinfo}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, kw_only=True)
class NatsSettings:
    """How to reach NATS. Durations are in seconds (``_s``)."""

    urls: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    name: str = "titan-exec"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_verify: bool = True
    tls_hostname: str | None = None
    tls_handshake_first: bool = False
    connect_timeout_s: float = 2.0
    ping_interval_s: float = 5.0
    max_outstanding_pings: int = 2
    max_reconnect_attempts: int = -1  # -1 = forever
    reconnect_time_wait_s: float = 0.5
    first_connect_attempts: int = 3  # per server; nats-py cannot do fewer than 2
    first_connect_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        urls: object = self.urls  # guard untyped callers (env/config loaders)
        if not isinstance(urls, tuple) or not all(isinstance(u, str) for u in urls):
            raise NatsConfigError(f"NatsSettings.urls must be a tuple of URL strings, got {urls!r}")
        if not self.urls:
            raise NatsConfigError("NatsSettings.urls is empty")
        for url in self.urls:
            scheme = urlsplit(url).scheme
            if scheme not in _URL_SCHEMES:
                raise NatsConfigError(
                    f"NatsSettings.urls: {redact_url(url)!r} must start with one of "
                    + ", ".join(f"{s}://" for s in _URL_SCHEMES)
                )
        if (self.user is None) != (self.password is None):
            missing = "password" if self.password is None else "user"
            present = "user" if missing == "password" else "password"
            raise NatsConfigError(
                f"NatsSettings.{present} is set but NatsSettings.{missing} is not: "
                "set both or neither"
            )
        methods = [
            name
            for name, is_set in (
                ("user/password", self.user is not None),
                ("token", self.token is not None),
                ("creds_file", self.creds_file is not None),
            )
            if is_set
        ]
        if len(methods) > 1:
            raise NatsConfigError(
                f"NatsSettings: choose one authentication method, got {' and '.join(methods)}"
            )
        if self.token == "" or self.user == "":
            raise NatsConfigError("NatsSettings: user/token must not be empty strings")
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise NatsConfigError("NatsSettings.tls_key_file is set without tls_cert_file")
        for name in ("connect_timeout_s", "ping_interval_s", "first_connect_timeout_s"):
            if getattr(self, name) <= 0:
                raise NatsConfigError(f"NatsSettings.{name} must be > 0")
        if self.reconnect_time_wait_s < 0:
            raise NatsConfigError("NatsSettings.reconnect_time_wait_s must be >= 0")
        if self.max_outstanding_pings < 1:
            raise NatsConfigError("NatsSettings.max_outstanding_pings must be >= 1")
        if self.max_reconnect_attempts != -1 and self.max_reconnect_attempts < 1:
            # nats-py treats 0 as "never discard the server", i.e. forever, which is
            # confusing; ask for -1 explicitly.
            raise NatsConfigError(
                "NatsSettings.max_reconnect_attempts must be -1 (forever) or >= 1"
            )
        if self.first_connect_attempts < 2:
            raise NatsConfigError(
                "NatsSettings.first_connect_attempts must be >= 2 "
                "(nats-py always tries a server at least twice)"
            )

    @property
    def uses_tls(self) -> bool:
        return (
            any(urlsplit(u).scheme in ("tls", "wss") for u in self.urls)
            or self.tls_ca_file is not None
            or self.tls_cert_file is not None
            or not self.tls_verify
            or self.tls_handshake_first
        )

    @property
    def redacted_urls(self) -> str:
        return ", ".join(redact_url(u) for u in self.urls)

    def check_files(self) -> None:
        """Check that every file the settings name exists (called by ``connect``)."""
        for name in ("creds_file", "tls_ca_file", "tls_cert_file", "tls_key_file"):
            path: Path | None = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise NatsConfigError(f"NatsSettings.{name}: file {str(path)!r} does not exist")
        if self.creds_file is not None and importlib.util.find_spec("nkeys") is None:
            raise NatsConfigError(
                "NatsSettings.creds_file needs the 'nkeys' package (pip install nkeys), "
                "which nats-py uses to sign with the creds; it is not installed"
            )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for these settings, or None when TLS is not used."""
        if not self.uses_tls:
            return None
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=str(self.tls_ca_file) if self.tls_ca_file is not None else None,
        )
        if self.tls_cert_file is not None:
            ctx.load_cert_chain(
                str(self.tls_cert_file),
                str(self.tls_key_file) if self.tls_key_file is not None else None,
            )
        if not self.tls_verify:
            log.warning("nats: TLS certificate verification is DISABLED (tls_verify=false)")
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def _describe_error(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


def _is_auth_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, nats_errors.AuthorizationError) or (
        "authorization" in text or "authentication" in text
    )


class _ConnectionWatcher:
    """nats-py callbacks: log, remember the last error, forward to ``on_event``.

    Before the first successful connect only errors are recorded (for the error
    message); the disconnect/close that nats-py reports while giving up is not news.
    """

    def __init__(self, nc: Client, on_event: OnConnectionEvent | None) -> None:
        self._nc = nc
        self._on_event = on_event
        self.last_error: BaseException | None = None
        self.auth_error: BaseException | None = None
        self.is_connected_once = False
        self._last_url: str | None = None

    def _url(self) -> str | None:
        url = self._nc.connected_url
        if url is not None:
            self._last_url = redact_url(url.geturl())
        return self._last_url

    def emit(self, kind: ConnectionEventKind, error: str | None = None) -> None:
        if self._on_event is None or not self.is_connected_once:
            return
        try:
            self._on_event(ConnectionEvent(kind=kind, url=self._url(), error=error))
        except Exception:
            log.exception("nats: on_event callback failed for %s", kind)

    async def error_cb(self, exc: Exception) -> None:
        self.last_error = exc
        if _is_auth_error(exc):
            self.auth_error = exc
        if self.is_connected_once:
            log.warning("nats: error: %s", _describe_error(exc))
        else:
            log.debug("nats: first connect attempt failed: %s", _describe_error(exc))
        self.emit(ConnectionEventKind.ERROR, _describe_error(exc))

    async def disconnected_cb(self) -> None:
        if not self.is_connected_once:
            return
        if self._nc.is_closed:
            log.info("nats: disconnected from %s (closing)", self._url())
        else:
            log.warning("nats: disconnected from %s", self._url())
        self.emit(ConnectionEventKind.DISCONNECTED)

    async def reconnected_cb(self) -> None:
        log.info("nats: reconnected to %s", self._url())
        self.emit(ConnectionEventKind.RECONNECTED)

    async def closed_cb(self) -> None:
        if not self.is_connected_once:
            return
        log.info("nats: connection closed")
        self.emit(ConnectionEventKind.CLOSED)

    async def discovered_server_cb(self) -> None:
        pool = ", ".join(redact_url(u.geturl()) for u in self._nc.servers)
        log.info("nats: discovered servers, pool now %s", pool)
        self.emit(ConnectionEventKind.DISCOVERED_SERVER)

    async def lame_duck_cb(self) -> None:
        log.warning("nats: server %s entered lame duck mode", self._url())
        self.emit(ConnectionEventKind.LAME_DUCK)


async def _close_quietly(nc: Client) -> None:
    try:
        await asyncio.wait_for(nc.close(), timeout=5)
    except Exception:
        log.debug("nats: close after failed connect raised", exc_info=True)


async def connect(settings: NatsSettings, *, on_event: OnConnectionEvent | None = None) -> Client:
    """Open a NATS connection per ``settings``.

    Raises NatsConfigError for invalid settings or missing files and NatsConnectError
    (naming the URLs and the last error) when the first connection cannot be made.
    Once connected, the client reconnects per ``settings.max_reconnect_attempts``.
    """
    settings.check_files()
    nc = SafeClient()  # keeps reading past subjects that are not UTF-8 (safeclient.py)
    watcher = _ConnectionWatcher(nc, on_event)
    # Floats for the durations: nats-py annotates them as int but only sleeps/waits on them.
    options: dict[str, Any] = {
        "servers": list(settings.urls),
        "name": settings.name,
        "error_cb": watcher.error_cb,
        "disconnected_cb": watcher.disconnected_cb,
        "reconnected_cb": watcher.reconnected_cb,
        "closed_cb": watcher.closed_cb,
        "discovered_server_cb": watcher.discovered_server_cb,
        "lame_duck_mode_cb": watcher.lame_duck_cb,
        "allow_reconnect": True,
        "connect_timeout": settings.connect_timeout_s,
        "reconnect_time_wait": settings.reconnect_time_wait_s,
        # Bounded for the first connect; switched to the configured value below.
        "max_reconnect_attempts": settings.first_connect_attempts - 1,
        "ping_interval": settings.ping_interval_s,
        "max_outstanding_pings": settings.max_outstanding_pings,
        "tls_handshake_first": settings.tls_handshake_first,
    }
    tls = settings.ssl_context()
    if tls is not None:
        options["tls"] = tls
    if settings.tls_hostname is not None:
        options["tls_hostname"] = settings.tls_hostname
    if settings.user is not None:
        options["user"] = settings.user
        options["password"] = settings.password
    if settings.token is not None:
        options["token"] = settings.token
    if settings.creds_file is not None:
        options["user_credentials"] = str(settings.creds_file)

    try:
        async with asyncio.timeout(settings.first_connect_timeout_s):
            await nc.connect(**options)
    except BaseException as exc:
        await _close_quietly(nc)
        if not isinstance(exc, Exception):  # CancelledError, KeyboardInterrupt
            raise
        # An authorization failure seen on any attempt explains the others: the server
        # closes the socket right after its -ERR, and depending on timing the client
        # reads the -ERR or only a connection reset.
        cause = watcher.auth_error or watcher.last_error or exc
        reason = _describe_error(cause)
        if isinstance(exc, TimeoutError) and watcher.last_error is None:
            reason = f"no answer within {settings.first_connect_timeout_s}s"
        hint = ""
        if watcher.auth_error is not None:
            hint = " (check the user/password, token or creds_file settings)"
        elif isinstance(cause, ConnectionResetError | EOFError):
            hint = (
                " (the server closed the connection during the handshake; if it requires "
                "authentication, check the user/password, token or creds_file settings)"
            )
        raise NatsConnectError(
            f"cannot connect to NATS at {settings.redacted_urls}: {reason}{hint}"
        ) from exc

    nc.options["max_reconnect_attempts"] = settings.max_reconnect_attempts
    watcher.is_connected_once = True
    log.info("nats: connected to %s as %r", watcher._url(), settings.name)
    watcher.emit(ConnectionEventKind.CONNECTED)
    return nc


__all__: list[str] = [
    "ConnectionEvent",
    "ConnectionEventKind",
    "NatsConfigError",
    "NatsConnectError",
    "NatsSettings",
    "OnConnectionEvent",
    "connect",
    "redact_url",
]
