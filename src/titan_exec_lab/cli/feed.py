"""`titan-exec feed`: a stand-in brain heartbeat and book tickers, to try the service by
hand (what a first intent needs when no brain and no market-data feed run)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from titan_exec.adapters.nats.connect import NatsConnectError
from titan_exec.cli.args import EXIT_UNAVAILABLE, cli_nats_settings, positive_seconds
from titan_exec.wire.subjects import Subjects

FEED_PRICES = ("BTC/USDT=50000", "ETH/USDT=3000", "SOL/USDT=150")


def _symbol_price(text: str) -> tuple[str, Decimal]:
    symbol, sep, price = text.partition("=")
    try:
        mid = Decimal(price)
    except InvalidOperation:
        mid = Decimal(0)
    if not sep or not symbol or not mid.is_finite() or mid <= 0:
        raise argparse.ArgumentTypeError(f"expected SYMBOL=PRICE (BTC/USDT=50000), got {text!r}")
    return symbol, mid


async def _feed(args: argparse.Namespace) -> int:
    """What the service needs before it opens a position and nobody else provides when it
    is tried by hand: a brain heartbeat (`titan.sys.heartbeat.v1.<source>`, fresh within
    `risk.heartbeat_stale_ms`) and a book ticker per symbol (the reference price, fresh
    within the policy's `maxStalenessMs`), like the demo's stand-in brain and feed."""
    from titan_exec.adapters.nats.connect import connect
    from titan_exec_lab.harness.feeds import TickerFeed

    prices = dict(args.price or [_symbol_price(p) for p in FEED_PRICES])
    try:
        nc = await connect(cli_nats_settings(args.nats_url, args.timeout))
    except NatsConnectError as err:
        print(f"titan-exec feed: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tickers = TickerFeed(nc, prices, venue=args.venue)
    heartbeat = Subjects().heartbeat(args.source)
    quotes = ", ".join(f"{s} {p}" for s, p in prices.items())
    print(
        f"every {args.interval} s: a heartbeat on {heartbeat} and book tickers on venue "
        f"{args.venue} ({quotes}); Ctrl-C stops",
        flush=True,
    )
    try:
        while not stop.is_set():
            body = {"ts": time.time_ns() // 1_000_000, "status": "ok"}
            await nc.publish(heartbeat, json.dumps(body).encode())
            await tickers.publish_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.interval)
    finally:
        await nc.close()
    return 0


def cmd_feed(args: argparse.Namespace) -> int:
    return asyncio.run(_feed(args))


def add_parser(sub: Any) -> None:
    """Register ``feed`` on ``titan-exec``'s subparsers (a `titan_exec.commands` entry point)."""
    p = sub.add_parser(
        "feed",
        help="publish a stand-in brain heartbeat and book tickers until stopped: what a first "
        "intent needs when no brain and no market-data feed run (trying it by hand)",
    )
    p.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    p.add_argument("--timeout", type=positive_seconds, default=5.0, help="connect timeout (s)")
    p.add_argument("--venue", default="sim", help="the <venue> token of the ticker subjects")
    p.add_argument(
        "--price",
        type=_symbol_price,
        action="append",
        metavar="SYMBOL=PRICE",
        help=f"mid price of a symbol (repeatable; default: {' '.join(FEED_PRICES)})",
    )
    p.add_argument("--source", default="manual", help="heartbeat subject's last token")
    p.add_argument("--interval", type=positive_seconds, default=1.0, help="seconds")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(fn=cmd_feed)
