"""Running one instance: embedded or external NATS, the venue, the service and its HTTP API.

`RunningInstance` is what the CLI (`titan-exec run`, `titan-exec demo`, `titan-exec bench`)
and the integration tests start; it owns every process and socket it opens and closes
them on exit, failures included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.adapters.venue.paper import PaperVenue
from titan_exec.api.http import HttpServer
from titan_exec.config import Config
from titan_exec.runtime.service import Service, wall_clock_ms

log = logging.getLogger(__name__)


def make_venue(cfg: Config, clock: Callable[[], int]) -> PaperVenue:
    p = cfg.venue.paper
    return PaperVenue(
        cfg.venue.name,
        balance_usdt=Decimal(p.balance_usdt),
        taker_fee_bps=Decimal(p.taker_fee_bps),
        maker_fee_bps=Decimal(p.maker_fee_bps),
        fill_slices=p.fill_slices,
        slice_interval_ms=p.slice_interval_ms,
        clock=clock,
    )


def nats_options(cfg: Config) -> dict[str, Any]:
    """Connection options for an external server (auth and TLS as operators expect)."""
    from titan_exec.adapters.nats.connect import NatsSettings, connect_options

    n = cfg.nats
    settings = NatsSettings(
        servers=[u.strip() for u in n.url.split(",") if u.strip()],
        user=n.user or None,
        password=n.password or None,
        token=n.token or None,
        creds_file=n.creds_file or None,
        tls_ca_file=n.tls_ca_file or None,
        tls_cert_file=n.tls_cert_file or None,
        tls_key_file=n.tls_key_file or None,
    )
    return connect_options(settings)


class RunningInstance:
    def __init__(
        self,
        cfg: Config,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        progress: Callable[[str], None] | None = None,
        venue: PaperVenue | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.progress = progress
        self.venue = venue or make_venue(cfg, clock)
        self._stack = AsyncExitStack()
        self.embedded: EmbeddedNats | None = None
        self.service: Service | None = None
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
        say = self.progress or (lambda m: log.info("%s", m))
        options: dict[str, Any] = {}
        if not self.cfg.nats.url:
            state_dir = Path(self.cfg.service.state_dir)
            self.embedded = EmbeddedNats(
                state_dir=state_dir,
                host=self.cfg.nats.embedded_host,
                port=self.cfg.nats.embedded_port,
                monitor_port=self.cfg.nats.embedded_monitor_port or None,
            )
            await self._stack.enter_async_context(self.embedded)
            self.nats_url = self.embedded.url
            say(f"embedded nats-server with JetStream at {self.nats_url} (data in {state_dir}/nats)")
        else:
            options = nats_options(self.cfg)
            say(f"connecting to NATS at {self.cfg.nats.url}")
        self.service = Service(
            self.cfg, venue=self.venue, nats_url=self.nats_url, clock=self.clock,
            nats_options=options,
        )
        await self.service.start(progress=say)
        self._stack.push_async_callback(self.service.stop)
        self.http = HttpServer(
            self.service, host=self.cfg.http.host, port=self.cfg.http.port,
            api_key=self.cfg.security.api_key,
        )
        await self.http.start()
        self._stack.push_async_callback(self.http.stop)
        say(f"admin API on http://{self.cfg.http.host}:{self.http.port}")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
