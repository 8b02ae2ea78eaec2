"""`titan-exec venue-sim`: run the Binance USDⓈ-M venue simulator until interrupted.

This module owns the subcommand's options (`add_parser`, wired into `titan-exec` by
`cli/main.py`) and `run_venue_sim`, which starts a `server.VenueSim` and stops it (saving
the state file, if any) on SIGINT / SIGTERM.

API credentials default to ``SIM_API_KEY`` / ``SIM_API_SECRET`` and, when those are not
set, to the development pair ``titan-sim-dev-key`` / ``titan-sim-dev-secret`` (the
simulator holds no real money; set your own pair when it is reachable by others).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from titan_exec.adapters.venue.exchange.engine import EngineConfig
from titan_exec.adapters.venue.exchange.market import SIM_SYMBOLS, sim_symbols
from titan_exec_lab.sim.faults import Faults
from titan_exec_lab.sim.server import DEV_API_KEY, DEV_API_SECRET, SimSettings, VenueSim


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``venue-sim`` on ``titan-exec``'s subparsers; ``args.fn(args)`` runs it."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "venue-sim", help="run the Binance USDⓈ-M venue simulator (ccxt binanceusdm speaks to it)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0: any free port")
    p.add_argument(
        "--api-key",
        default=os.environ.get("SIM_API_KEY", DEV_API_KEY),
        help="X-MBX-APIKEY to accept (SIM_API_KEY; default: the development key)",
    )
    p.add_argument(
        "--api-secret",
        default=os.environ.get("SIM_API_SECRET", DEV_API_SECRET),
        help="HMAC secret of signed requests (SIM_API_SECRET; default: the development secret)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the price paths")
    p.add_argument(
        "--nats-url",
        default=None,
        help="publish book tickers to this NATS server (comma-separated URLs); none: no tickers",
    )
    p.add_argument("--venue-name", default="sim", help="<venue> token of the ticker subjects")
    p.add_argument("--fill-slices", type=int, default=3, help="trades per taker order")
    p.add_argument("--slice-interval-ms", type=int, default=200, help="time between slices")
    p.add_argument(
        "--state-file", default=None, help="load at start, save periodically and at exit"
    )
    p.add_argument(
        "--symbols",
        type=int,
        default=len(SIM_SYMBOLS),
        help=f"how many perpetuals to list (1 to {len(SIM_SYMBOLS)}; BTC, ETH, SOL, BNB first)",
    )
    p.add_argument(
        "--weight-limit",
        type=int,
        default=2400,
        help="request weight per client and minute; past it 429, then 418 (a ban); 0: no limit",
    )
    p.add_argument("--latency-ms", type=int, default=0, help="added latency of every request")
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    p.set_defaults(fn=cmd_venue_sim)
    return p


def cmd_venue_sim(args: argparse.Namespace) -> int:
    return asyncio.run(run_venue_sim(args))


def build_sim(args: argparse.Namespace) -> VenueSim:
    if args.fill_slices < 1 or args.slice_interval_ms < 1:
        raise SystemExit("venue-sim: --fill-slices and --slice-interval-ms must be >= 1")
    if not 1 <= args.symbols <= len(SIM_SYMBOLS):
        raise SystemExit(f"venue-sim: --symbols must be 1 to {len(SIM_SYMBOLS)}")
    if args.weight_limit < 0:
        raise SystemExit("venue-sim: --weight-limit must be >= 0 (0: no limit)")
    settings = SimSettings(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        api_secret=args.api_secret,
        venue_name=args.venue_name,
        nats_url=args.nats_url or None,
        state_file=Path(args.state_file) if args.state_file else None,
        weight_limit_1m=args.weight_limit,
    )
    config = EngineConfig(
        seed=args.seed,
        symbols=sim_symbols(args.symbols),
        fill_slices=args.fill_slices,
        slice_interval_ms=args.slice_interval_ms,
    )
    return VenueSim(settings, config, faults=Faults(latency_ms=max(0, args.latency_ms)))


async def run_venue_sim(args: argparse.Namespace) -> int:
    sim = build_sim(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with sim:
        symbols = ", ".join(s.canonical for s in sim.engine.specs.values())
        print(
            f"venue-sim listening on {sim.url} (Binance USDⓈ-M /fapi; {symbols}; "
            f"api key {sim.settings.api_key!r}); Ctrl-C stops it",
            flush=True,
        )
        await stop.wait()
    return 0
