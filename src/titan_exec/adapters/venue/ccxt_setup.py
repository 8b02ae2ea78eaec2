"""How the ccxt venue is set up: its settings (credentials from the environment or files,
never logged) and the ccxt clients built from them (sandbox, a rebased host for a proxy or
the simulator, Binance's per-market error tables kept behind another host)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class VenueConfigError(ValueError):
    """The venue configuration cannot work (names the setting)."""


@dataclass(frozen=True)
class CcxtSettings:
    exchange_id: str = "binanceusdm"
    name: str = "binance"
    """The venue's name inside Titan (subjects, events)."""
    is_testnet: bool = False
    base_url: str = ""
    """Override of every API host (the simulator, a proxy); empty: the venue's own."""
    api_key: str = field(default="", repr=False)
    api_secret: str = field(default="", repr=False)
    api_password: str = field(default="", repr=False)
    """The API key's passphrase, for venues that have one (OKX); empty: none."""
    timeout_ms: int = 5000
    enable_rate_limit: bool = True
    rate_limit_ms: int = 0
    """ccxt's `rateLimit` (ms per unit of request cost); 0: ccxt's value for the venue."""
    poll_interval_ms: int = 250
    fill_lookback_ms: int = 3_600_000
    """How far back the first trade poll of a symbol looks after a start."""
    fill_rescan_ms: int = 10_000
    """Each trade poll reads again this much of the past (by trade time), so that a trade
    the venue shows late — behind later ones, as with an order not yet visible to queries —
    is still found; trades already reported are skipped."""
    weight_limit_1m: int | None = None
    """The account's request weight per minute; None: the venue's published limit where
    known (`budget.KNOWN_LIMITS`: 2400 on binanceusdm), else 0 (unknown: counted only)."""
    weight_share: Decimal = Decimal("0.5")
    """The share of that limit the service keeps to (reads stretch to stay under it)."""
    user_stream: bool = True
    """Fills from the venue's user-data stream (ccxt.pro; Binance USDⓈ-M), REST trades only
    to fill gaps (`ccxt_userstream.py`); False, or a venue without one: polling only."""
    stream_silence_ms: int = 60_000
    """The stream's watchdog: silent this long while orders are open, the trades of those
    symbols are swept by REST (a quiet account and a socket that stopped delivering look
    alike: the sweep tells them apart, `ccxt_userevents.py`); also ccxt's ping period x 2."""
    sweep_interval_ms: int = 300_000
    """With the stream: a REST sweep at least this often anyway (the safety net)."""
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stream_silence_ms < 1000 or self.sweep_interval_ms < 1000:
            raise VenueConfigError(
                "venue.stream_silence_ms and venue.sweep_interval_ms must be >= 1000"
            )


def read_secret(value: str, env: Mapping[str, str], var: str) -> str:
    """A secret from the setting, else `$VAR`, else the file named by `$VAR_FILE`."""
    if value:
        return value
    if env.get(var):
        return env[var]
    path = env.get(f"{var}_FILE")
    if path:
        p = Path(path)
        if not p.is_file():
            raise VenueConfigError(f"{var}_FILE: {path} does not exist")
        return p.read_text().strip()
    return ""


def rebase(url: str, base: str) -> str:
    """`url` on `base`'s host, `base`'s path prefixed: an http(s) URL takes `base`'s scheme,
    a ws(s) URL ``ws`` for an http base, ``wss`` for https; any other text is kept."""
    b = urlsplit(base)
    u = urlsplit(url)
    if u.scheme in ("http", "https"):
        scheme = b.scheme
    elif u.scheme in ("ws", "wss"):
        scheme = "wss" if b.scheme == "https" else "ws"
    else:
        return url
    path = b.path.rstrip("/") + u.path
    return urlunsplit((scheme, b.netloc, path, u.query, u.fragment))


def rebase_tree(node: Any, base: str) -> Any:
    """ccxt's ``urls['api']`` with every REST and websocket host moved to `base` (the one
    rebase of the service: the ccxt venue, its user-data stream and the quote feed)."""
    if isinstance(node, str):
        return rebase(node, base)
    if isinstance(node, dict):
        return {k: rebase_tree(v, base) for k, v in node.items()}
    return node


def keep_market_error_codes(exchange: Any) -> None:
    """ccxt's Binance picks per-market error tables by the request's *host*; behind another
    host (a proxy, the simulator) -4116, -2019, -2022, -4164 would all become a bare
    ExchangeError. Merge the linear table into the generic one so they map as at Binance."""
    per_market = (
        exchange.exceptions.get("linear") if isinstance(exchange.exceptions, dict) else None
    )
    if not per_market:
        return
    for kind in ("exact", "broad"):
        merged = dict(exchange.exceptions.get(kind, {}))
        merged.update(per_market.get(kind, {}))
        exchange.exceptions[kind] = merged


def tls_context(client: Any) -> Any:
    """The TLS context ccxt would build on `client`'s first request (its CA bundle; 30 ms
    idle, over 100 ms on a busy machine): built here, for a caller to build it in a thread
    and give it to its clients before they first call out on the event loop."""
    if not client.verify:
        return client.verify
    return ssl.create_default_context(cafile=client.cafile)


def make_client(cls: Any, settings: CcxtSettings, options: dict[str, Any]) -> Any:
    config: dict[str, Any] = {
        "apiKey": settings.api_key,
        "secret": settings.api_secret,
        **({"password": settings.api_password} if settings.api_password else {}),
        "enableRateLimit": settings.enable_rate_limit,
        "timeout": settings.timeout_ms,
        "options": dict(options),
    }
    if settings.rate_limit_ms:
        config["rateLimit"] = settings.rate_limit_ms
    exchange = cls(config)
    if settings.is_testnet:
        exchange.set_sandbox_mode(True)
    if settings.base_url:
        exchange.urls["api"] = rebase_tree(exchange.urls["api"], settings.base_url)
        keep_market_error_codes(exchange)
    return exchange


def settings_from_env(
    *,
    exchange_id: str,
    name: str,
    is_testnet: bool,
    base_url: str,
    api_key: str,
    api_secret: str,
    timeout_ms: int,
    api_password: str = "",
    poll_interval_ms: int = 250,
    enable_rate_limit: bool = True,
    rate_limit_ms: int = 0,
    weight_limit_1m: int | None = None,
    weight_share: Decimal = Decimal("0.5"),
    user_stream: bool = True,
    stream_silence_ms: int = 60_000,
    sweep_interval_ms: int = 300_000,
    env: Mapping[str, str] | None = None,
) -> CcxtSettings:
    e = env if env is not None else os.environ
    return CcxtSettings(
        exchange_id=exchange_id,
        name=name,
        is_testnet=is_testnet,
        base_url=base_url,
        api_key=read_secret(api_key, e, "TITAN_VENUE_API_KEY"),
        api_secret=read_secret(api_secret, e, "TITAN_VENUE_API_SECRET"),
        api_password=read_secret(api_password, e, "TITAN_VENUE_API_PASSWORD"),
        timeout_ms=timeout_ms,
        poll_interval_ms=poll_interval_ms,
        enable_rate_limit=enable_rate_limit,
        rate_limit_ms=rate_limit_ms,
        weight_limit_1m=weight_limit_1m,
        weight_share=weight_share,
        user_stream=user_stream,
        stream_silence_ms=stream_silence_ms,
        sweep_interval_ms=sweep_interval_ms,
    )
