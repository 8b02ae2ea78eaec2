"""The venue simulator: a Binance USDⓈ-M futures look-alike that real clients talk to.

`titan-exec venue-sim` serves the subset of the `/fapi` REST API that ccxt's `binanceusdm`
client uses, so the service's ccxt venue runs unchanged against it (only the base URLs
differ). Modules:

- the exchange core it serves (orders, fills, fees, positions, wallet, dead-man switch,
  state export) is the service's exchange model, `titan_exec.adapters.venue.exchange`.
- `render`: the engine's objects as Binance JSON documents (pure).
- `endpoints`: what each `/fapi` endpoint does with its parameters.
- `faults`: the fault-injection knobs.
- `weights`: Binance's request weight per endpoint, counted per client and minute (the
  ``X-MBX-USED-WEIGHT-1M`` header, 429 past the limit, 418 for a client that keeps going).
- `stream`: the websocket book-ticker stream (what ccxt.pro's `watch_bids_asks` reads).
- `userstream`: listen keys and the user-data websocket (what ccxt.pro's `watch_orders` /
  `watch_my_trades` read); `userevents`: its events from the engine's records (pure).
- `server`: the aiohttp app (authentication, errors, faults, `/sim/*`) and `VenueSim`, the
  runner with its tick loop, NATS book tickers and state file.
- `ccxt_client`: `sim_urls` / `ccxt_config`, pointing ccxt's `binanceusdm` at it.

Nothing is imported here, so `render` can be used without aiohttp or ccxt. The
`venue-sim` subcommand is `titan_exec_lab.cli.venue_sim`.
"""
