"""Running one instance: embedded or external NATS, the venue, the service and its HTTP API.

`RunningInstance` is what the CLI (`titan-exec run`, `titan-exec demo`, `titan-exec bench`)
and the integration tests start; it owns every process and socket it opens and closes
them on exit, failures included.

Start-up order: what can fail locally comes first. The configuration was checked when it
was loaded (`config.load`: values, lease timing, secrets, policy file); then the embedded
nats-server (when there is one) and the admin HTTP port are bound; only then does the
service connect to NATS, replay, campaign and write (epoch marker, genesis, intake). A port
in use therefore stops the start with `StartupError` before anything reaches NATS.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import AsyncExitStack
from decimal import Decimal
from pathlib import Path
from types import TracebackType

import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]

from titan_exec.adapters.nats.connect import NatsConfigError, NatsSettings
from titan_exec.adapters.nats.embedded import EmbeddedNats, EmbeddedNatsError
from titan_exec.adapters.venue.base import Venue
from titan_exec.adapters.venue.ccxt_venue import CcxtVenue, VenueConfigError, settings_from_env
from titan_exec.adapters.venue.paper import PaperVenue
from titan_exec.api.http import HttpServer
from titan_exec.clock import wall_clock_ms
from titan_exec.config import Config, ConfigError, VenueConfig
from titan_exec.runtime.node import Node
from titan_exec.runtime.venues import VenueSet

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """A local resource could not be had at start-up (the admin port, the embedded
    nats-server): one line for the operator, raised before anything was written to NATS."""


def embedded_failure(err: EmbeddedNatsError) -> str:
    """One line of why the embedded server did not start: its fatal log line when it wrote
    one (``Error listening on port: ... address already in use``), else the error's first."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    fatal = [line for line in lines if "[FTL]" in line or "[ERR]" in line]
    if fatal:
        return fatal[-1].split("] ", 2)[-1]  # without the pid and the timestamp
    return lines[0] if lines else repr(err)


def make_venue(cfg: Config, clock: Callable[[], int], v: VenueConfig | None = None) -> Venue:
    """The venue object of one entry (the default's when `v` is None), trading its account."""
    v = v or cfg.venue
    account = cfg.account_of(v)
    if v.kind == "ccxt":
        return _ccxt_venue(cfg, v, account)
    p = v.paper
    if p.prices_exchange_id and not hasattr(ccxt_async, p.prices_exchange_id):
        raise ConfigError(
            f"venue {v.name}: paper.prices_exchange_id: ccxt has no exchange "
            f"{p.prices_exchange_id!r}"
        )
    return PaperVenue(
        v.name,
        account=account,
        balance_usdt=Decimal(p.balance_usdt),
        taker_fee_bps=Decimal(p.taker_fee_bps),
        maker_fee_bps=Decimal(p.maker_fee_bps),
        fill_slices=p.fill_slices,
        slice_interval_ms=p.slice_interval_ms,
        clock=clock,
    )


def _ccxt_venue(cfg: Config, v: VenueConfig, account: str) -> Venue:
    try:
        settings = settings_from_env(
            exchange_id=v.exchange_id,
            name=v.name,
            is_testnet=v.testnet,
            base_url=v.base_url,
            api_key=v.api_key,
            api_secret=v.api_secret,
            api_password=v.api_password,
            timeout_ms=v.timeout_ms,
            poll_interval_ms=v.poll_interval_ms,
            enable_rate_limit=v.enable_rate_limit,
            rate_limit_ms=v.rate_limit_ms,
            weight_limit_1m=v.weight_limit_1m or None,
            weight_share=Decimal(str(v.weight_share)),
            user_stream=v.user_stream,
            stream_silence_ms=v.stream_silence_ms,
            sweep_interval_ms=v.sweep_interval_ms,
            # several venues: none falls back to the single venue's TITAN_VENUE_API_KEY
            env={} if len(cfg.venues) > 1 else None,
        )
        return CcxtVenue(settings, account=account)
    except VenueConfigError as err:
        raise ConfigError(str(err)) from None


def make_venues(cfg: Config, clock: Callable[[], int]) -> VenueSet:
    """One venue object per configured venue (each its own account), the default first."""
    made: dict[str, Venue] = {}
    for v in cfg.venue_list:
        made[v.name] = make_venue(cfg, clock, v)
    return VenueSet(made, cfg.default_venue)


EMBEDDED_MAX_PAYLOAD = "max_payload: 8MB\n"
"""Above the service's own size limit, so an oversized intent reaches it and is dead-lettered
with a reason instead of being refused by the server with no trace."""


def nats_settings(cfg: Config, urls: tuple[str, ...] | None = None) -> NatsSettings:
    """How to reach NATS: the embedded server, or an external one with auth and TLS."""
    n = cfg.nats
    name = f"titan-exec-{cfg.service.instance_id}"
    if urls is not None:
        return NatsSettings(urls=urls, name=name)
    return NatsSettings(
        urls=tuple(u.strip() for u in n.url.split(",") if u.strip()),
        name=name,
        user=n.user or None,
        password=n.password or None,
        token=n.token or None,
        creds_file=Path(n.creds_file) if n.creds_file else None,
        tls_ca_file=Path(n.tls_ca_file) if n.tls_ca_file else None,
        tls_cert_file=Path(n.tls_cert_file) if n.tls_cert_file else None,
        tls_key_file=Path(n.tls_key_file) if n.tls_key_file else None,
        connect_timeout_s=n.connect_timeout_s,
    )


class RunningInstance:
    def __init__(
        self,
        cfg: Config,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        progress: Callable[[str], None] | None = None,
        venue: Venue | None = None,
        venues: VenueSet | None = None,
    ) -> None:
        """`venue`: the one venue of a single-venue configuration, made by the caller (a
        pair sharing one paper venue); `venues`: every venue, made by the caller; neither:
        made from the configuration."""
        self.cfg = cfg
        self.clock = clock
        self.progress = progress
        if venues is None:
            venues = VenueSet.one(venue) if venue is not None else make_venues(cfg, clock)
        self.venues = venues
        self.venue = venues.default_venue
        """The default venue (the only one of a single-venue configuration)."""
        self._stack = AsyncExitStack()
        self.embedded: EmbeddedNats | None = None
        self.service: Node | None = None
        self.http: HttpServer | None = None
        self.nats_url = cfg.nats.url

    async def __aenter__(self) -> RunningInstance:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        """Local resources first (the module's docstring), then NATS."""
        say = self.progress or (lambda m: log.info("%s", m))
        if not self.cfg.nats.url:
            state_dir = Path(self.cfg.service.state_dir)
            self.embedded = EmbeddedNats(
                state_dir=state_dir,
                host=self.cfg.nats.embedded_host,
                port=self.cfg.nats.embedded_port,
                monitor_port=self.cfg.nats.embedded_monitor_port or None,
                extra_config=EMBEDDED_MAX_PAYLOAD,
            )
            try:
                await self._stack.enter_async_context(self.embedded)
            except EmbeddedNatsError as err:
                raise StartupError(
                    f"embedded nats-server (nats.embedded_port {self.cfg.nats.embedded_port}) "
                    f"did not start: {embedded_failure(err)}"
                ) from None
            self.nats_url = self.embedded.url
            say(
                f"embedded nats-server with JetStream at {self.nats_url} (data in {state_dir}/nats)"
            )
            urls: tuple[str, ...] | None = (self.nats_url,)
        else:
            urls = None
        try:
            settings = nats_settings(self.cfg, urls)
        except NatsConfigError as err:
            raise ConfigError(f"nats: {err}") from None
        self.service = Node(self.cfg, venues=self.venues, nats=settings, clock=self.clock)
        # registered before it starts: a start that fails half-way closes what it opened
        self._stack.push_async_callback(self.service.stop)
        self.http = HttpServer(
            self.service,
            host=self.cfg.http.host,
            port=self.cfg.http.port,
            api_key=self.cfg.security.api_key,
            metrics_requires_key=self.cfg.http.metrics_requires_key,
        )
        self._stack.push_async_callback(self.http.stop)
        try:
            await self.http.start()
        except OSError as err:
            reason = os.strerror(err.errno) if err.errno else str(err)
            raise StartupError(
                f"http.port: cannot listen on {self.cfg.http.host}:{self.cfg.http.port}: "
                f"{reason} (set PORT or http.port, or stop the process that has it)"
            ) from None
        # until the service has started: /health answers, /ready says "starting"
        say(f"admin API on http://{self.cfg.http.host}:{self.http.port}")
        if urls is None:
            say(f"connecting to NATS at {settings.redacted_urls}")
        await self.service.start(progress=say)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
