"""How to point ccxt's `binanceusdm` client at the venue simulator.

This module owns `sim_urls` (the ``urls['api']`` override) and `ccxt_config` (the whole
recommended constructor config). Found by reading ccxt 4.5.90's `binance.py`:

- ``sign()`` takes the base URL of a request from ``urls['api'][<api name>]``; USDⓈ-M uses
  ``fapiPublic`` (/fapi/v1), ``fapiPublicV2``, ``fapiPublicV3``, ``fapiPrivate``
  (/fapi/v1), ``fapiPrivateV2``, ``fapiPrivateV3`` and ``fapiData`` (/futures/data).
  `sim_urls` points *every* key of ccxt's table at the simulator (same paths), so a call
  outside the simulated subset fails against the simulator instead of reaching Binance.
- ``load_markets`` calls ``fetch_currencies`` first, which (with credentials) calls the
  spot wallet endpoint ``sapi/v1/capital/config/getall``: ``fetchCurrencies: False``
  avoids it. ``fetch_markets`` reads ``options['fetchMarkets']['types']`` (binanceusdm:
  ``['linear']`` -> only ``GET /fapi/v1/exchangeInfo``); ``fetchMargins: False`` keeps the
  margin-pair calls off as well.
- Error codes: binance looks codes up first in a per-market table chosen by the request
  URL's *host* (``https://fapi.binance.com/`` -> ``exceptions['linear']``) and then in the
  generic table. With any other host (the simulator's) the linear table is skipped, so
  for example -4116 (duplicate client order id), -2019, -2022 and -4164 would surface as
  a bare ``ExchangeError``. `ccxt_config` merges the client's own linear table into the
  generic one so the simulator's errors map exactly as the real venue's do (-4116 ->
  ``InvalidOrder``: ccxt does not use ``DuplicateOrderId`` for it).
- ``fetch_open_orders()`` without a symbol raises unless
  ``options['fetchOpenOrders']['warnWithoutSymbol']`` is False.
"""

from __future__ import annotations

import functools
from typing import Any

# ccxt's urls['api'] keys and their paths (the hosts differ at Binance, not at the simulator)
_API_PATHS: dict[str, str] = {
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "dapiPublic": "/dapi/v1",
    "dapiPrivate": "/dapi/v1",
    "dapiPrivateV2": "/dapi/v2",
    "dapiData": "/futures/data",
    "eapiPublic": "/eapi/v1",
    "eapiPrivate": "/eapi/v1",
    "sapi": "/sapi/v1",
    "sapiV2": "/sapi/v2",
    "sapiV3": "/sapi/v3",
    "sapiV4": "/sapi/v4",
    "public": "/api/v3",
    "private": "/api/v3",
    "v1": "/api/v1",
    "papi": "/papi/v1",
    "papiV2": "/papi/v2",
}


def sim_urls(base_url: str) -> dict[str, str]:
    """The ``urls['api']`` table for a simulator at ``base_url`` (``http://127.0.0.1:8765``)."""
    base = base_url.rstrip("/")
    return {key: base + path for key, path in _API_PATHS.items()}


@functools.cache
def _linear_exceptions() -> dict[str, dict[str, Any]]:
    import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]

    probe = ccxt_async.binanceusdm({})  # no session is opened by the constructor
    linear: dict[str, dict[str, Any]] = probe.exceptions.get("linear", {})
    return {kind: dict(linear.get(kind, {})) for kind in ("exact", "broad")}


def ccxt_config(base_url: str, api_key: str, secret: str, **overrides: Any) -> dict[str, Any]:
    """Constructor config for ``ccxt.async_support.binanceusdm`` against the simulator.

    ``overrides`` are merged at the top level (``timeout``, ``enableRateLimit``, ...);
    ``options`` in ``overrides`` are merged into the recommended options.
    """
    options: dict[str, Any] = {
        "fetchMarkets": {"types": ["linear"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
        "fetchOpenOrders": {"warnWithoutSymbol": False},
        "defaultType": "swap",
        "defaultSubType": "linear",
    }
    options.update(overrides.pop("options", {}))
    config: dict[str, Any] = {
        "apiKey": api_key,
        "secret": secret,
        "enableRateLimit": True,
        "urls": {"api": sim_urls(base_url)},
        "options": options,
        "exceptions": {kind: dict(table) for kind, table in _linear_exceptions().items()},
    }
    config.update(overrides)
    return config
