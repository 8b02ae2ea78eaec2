"""`titan-exec`: the command line of the execution service.

titan-exec run              one instance (embedded NATS unless --nats-url / NATS_URL)
titan-exec nats             the embedded nats-server on its own
titan-exec nats migrate     rebuild the old WorkQueue TITAN_CMD, keeping its commands
titan-exec send ...         sign and publish an intent or a control command
titan-exec feed             a stand-in brain heartbeat and book tickers (to try it by hand)
titan-exec envelope verify  verify a signed envelope read on stdin (HMAC_SECRET)
titan-exec status           a running instance's /status
titan-exec verify           check a run's invariants from the raw streams and the venue
titan-exec chaos            the chaos matrix: faults into the pair under load (make chaos)
titan-exec demo             the scripted end-to-end demo (make demo)
titan-exec bench            throughput and latency against the raw JetStream limits
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import math
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from titan_exec.adapters.nats.connect import NatsConfigError, NatsConnectError, NatsSettings
from titan_exec.config import Config, ConfigError, load

EXIT_CONFIG = 78  # EX_CONFIG
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: a port in use, NATS unreachable at start-up


def _config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML configuration file (or TITAN_CONFIG)")
    p.add_argument("--nats-url", dest="nats.url", help="NATS server(s); empty: embedded server")
    p.add_argument("--port", dest="http.port", type=int, help="admin HTTP port (PORT)")
    p.add_argument("--instance-id", dest="service.instance_id", help="identity tag")
    p.add_argument("--state-dir", dest="service.state_dir", help="state directory")
    p.add_argument("--namespace", dest="service.namespace", help="subject namespace (exec)")
    p.add_argument(
        "--mode",
        dest="service.mode",
        choices=["active", "standby"],
        help="active: take over at once; standby: hot standby (EXECUTION_MODE)",
    )
    p.add_argument(
        "--active-standby",
        dest="service.hot_standby",
        action="store_const",
        const=True,
        help="run as the hot standby of an active/standby pair (RFC 004)",
    )
    p.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))


def _load(args: argparse.Namespace, *, require_secret: bool = True) -> Config:
    overrides = {k: v for k, v in vars(args).items() if "." in k and v is not None}
    return load(args.config, env=os.environ, overrides=overrides, require_secret=require_secret)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# --- run ---------------------------------------------------------------------------------


async def _run(cfg: Config) -> int:
    from titan_exec.runtime.app import RunningInstance

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with RunningInstance(cfg) as inst:
        assert inst.service is not None
        stopped = asyncio.create_task(inst.service.wait_stopped())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({stopped, waiter}, return_when=asyncio.FIRST_COMPLETED)
        fatal = inst.service.health.fatal
        waiter.cancel()
        stopped.cancel()
    if fatal:
        logging.getLogger("titan_exec").critical("stopped: %s", fatal)
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from titan_exec.runtime.app import StartupError

    # The imported modules (ccxt's exchanges: ~220 000 objects) leave the cyclic collector's
    # view: a full collection over them stalled the event loop 90-115 ms, more than the
    # lease watchdog allows at a 1 s lease (lease / 10). Later objects are collected as usual.
    gc.collect()
    gc.freeze()
    cfg = _load(args)  # every setting checked: a bad one exits 78 before anything starts
    logging.getLogger("titan_exec").info("configuration: %s", json.dumps(cfg.redacted()))
    try:
        return asyncio.run(_run(cfg))
    except (StartupError, NatsConnectError) as err:
        # a port in use, the embedded server, the first connection: nothing was written
        print(f"titan-exec: cannot start: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE


# --- nats --------------------------------------------------------------------------------


async def _nats(cfg: Config) -> int:
    from titan_exec.adapters.nats.embedded import EmbeddedNats

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with EmbeddedNats(
        state_dir=Path(cfg.service.state_dir),
        host=cfg.nats.embedded_host,
        port=cfg.nats.embedded_port,
        monitor_port=cfg.nats.embedded_monitor_port or None,
    ) as server:
        print(f"nats-server with JetStream listening on {server.url} (Ctrl-C stops it)", flush=True)
        await stop.wait()
    return 0


def cmd_nats(args: argparse.Namespace) -> int:
    from titan_exec.adapters.nats.embedded import EmbeddedNatsError

    overrides = {"service.state_dir": args.state_dir, "nats.embedded_port": args.nats_port}
    cfg = load(args.config, env=os.environ, overrides=overrides, require_secret=False)
    try:
        return asyncio.run(_nats(cfg))
    except EmbeddedNatsError as err:
        from titan_exec.runtime.app import embedded_failure

        print(
            f"titan-exec nats: nats-server did not start: {embedded_failure(err)}", file=sys.stderr
        )
        return EXIT_UNAVAILABLE


# --- send ----------------------------------------------------------------------------------


def _env_secrets() -> dict[str, bytes]:
    """HMAC secrets from the environment, read the way the service reads them."""
    return load(None, env=os.environ, require_secret=False).keyring_secrets


def _secret(key_id: str) -> bytes:
    secret = _env_secrets().get(key_id)
    if secret is None:
        raise ConfigError(f"no HMAC secret for key_id '{key_id}' (set HMAC_SECRET or HMAC_SECRETS)")
    return secret


def _read_inputs(args: argparse.Namespace) -> None:
    """Files are read before the event loop starts (no blocking I/O inside it)."""
    args.policy_doc = None
    args.payload_doc = None
    if getattr(args, "policy_file", None):
        args.policy_doc = json.loads(Path(args.policy_file).read_text())
    if getattr(args, "payload_file", None):
        text = sys.stdin.read() if args.payload_file == "-" else Path(args.payload_file).read_text()
        args.payload_doc = json.loads(text)


def _positive_number(text: str) -> float:
    """`--size` / `--entry`: a positive finite number, as the JSON double the payload will
    carry (what is signed is what executes: ``1e-400`` would be 0, so it is refused)."""
    try:
        value = float(Decimal(text.strip()))
    except (InvalidOperation, ValueError):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive finite number, got {text!r} (as a JSON number: {value})"
        )
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def _send_settings(args: argparse.Namespace) -> NatsSettings:
    """The CLI's connection: bounded by `--timeout` (nats-py alone retries an unreachable
    server for minutes, printing a traceback every 2 s)."""
    urls = tuple(
        u if "://" in u else f"nats://{u}"
        for u in (part.strip() for part in args.nats_url.split(","))
        if u
    )
    return NatsSettings(
        urls=urls,
        name="titan-exec-cli",
        connect_timeout_s=min(2.0, args.timeout),
        first_connect_timeout_s=args.timeout,
    )


async def _send(args: argparse.Namespace) -> int:
    from nats.js import errors as js_errors

    from titan_exec.adapters.nats.connect import connect
    from titan_exec.wire.envelope import sign_envelope
    from titan_exec.wire.subjects import Subjects

    subjects = Subjects(args.namespace)
    now = time.time_ns() // 1_000_000
    nonce = os.urandom(16).hex()
    if args.what == "control":
        payload: dict[str, Any] = {"action": args.action, "reason": args.reason}
        if args.policy_doc is not None:
            payload["policy"] = args.policy_doc
        subject = subjects.control(args.action)
        type_ = subjects.control_type
        msg_id = f"control-{args.action}-{nonce}"
    else:
        if args.payload_doc is not None:
            payload = args.payload_doc
        else:
            payload = {
                "schema_version": "1.0.0",
                "signal_id": args.signal_id or f"cli-{nonce[:12]}",
                "source": "manual",
                "symbol": args.symbol,
                "direction": {"BUY_SETUP": 1, "SELL_SETUP": -1}.get(args.type, 0),
                "type": args.type,
                "size": args.size,
                "status": "VALIDATED",
                "t_signal": now,
            }
            if args.entry is not None:
                payload["entry_zone"] = [args.entry]
            if args.exchange:
                payload["exchange"] = args.exchange
        subject = subjects.place(args.venue, args.account, str(payload.get("symbol", "")))
        type_ = subjects.place_type
        msg_id = str(payload.get("signal_id", nonce))
    data = sign_envelope(
        payload,
        secret=_secret(args.key_id),
        ts_ms=now,
        nonce=nonce,
        type_=type_,
        producer="titan-exec-cli",
        key_id=args.key_id,
        id=f"cli-{nonce}",
        correlation_id=msg_id,
        idempotency_key=msg_id,
    )
    settings = _send_settings(args)
    try:
        nc = await connect(settings)
    except NatsConnectError as err:
        print(f"titan-exec send: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        ack = await nc.jetstream().publish(
            subject, data, headers={"Nats-Msg-Id": msg_id}, timeout=args.timeout
        )
    except (js_errors.NoStreamResponseError, TimeoutError) as err:
        print(
            f"titan-exec send: {subject} was not acknowledged by JetStream within "
            f"{args.timeout} s ({type(err).__name__}): no stream takes it (has the service "
            f"started in namespace {args.namespace!r}?)",
            file=sys.stderr,
        )
        return 1
    except js_errors.APIError as err:
        print(f"titan-exec send: JetStream refused {subject}: {err}", file=sys.stderr)
        return 1
    finally:
        await nc.close()
    print(
        json.dumps(
            {
                "subject": subject,
                "stream": ack.stream,
                "seq": ack.seq,
                "duplicate": bool(ack.duplicate),
                "msg_id": msg_id,
            }
        )
    )
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    _read_inputs(args)
    return asyncio.run(_send(args))


# --- feed ----------------------------------------------------------------------------------

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
    from titan_exec.runtime.feeds import TickerFeed

    prices = dict(args.price or [_symbol_price(p) for p in FEED_PRICES])
    try:
        nc = await connect(_send_settings(args))
    except NatsConnectError as err:
        print(f"titan-exec feed: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tickers = TickerFeed(nc, prices, venue=args.venue)
    from titan_exec.wire.subjects import Subjects

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


# --- envelope verify -------------------------------------------------------------------------


def cmd_envelope_verify(args: argparse.Namespace) -> int:
    from titan_exec.wire.envelope import parse_envelope, parse_intent, verify_envelope
    from titan_exec.wire.errors import WireError
    from titan_exec.wire.signing import Keyring

    data = sys.stdin.buffer.read()
    secrets = _env_secrets()
    if not secrets:
        print("error: HMAC_SECRET is not set", file=sys.stderr)
        return 2
    try:
        env = parse_envelope(data)
    except WireError as err:
        print(f"invalid envelope: {err}", file=sys.stderr)
        return 3
    now = time.time_ns() // 1_000_000
    tolerance_s = int(os.environ.get("HMAC_TIMESTAMP_TOLERANCE", "300"))
    # the signature is checked whatever the time; the time only when asked
    failure = verify_envelope(
        env, Keyring(secrets), now_ms=env.ts_ms, tolerance_ms=tolerance_s * 1000
    )
    if failure is not None:
        print(f"signature does not verify: {failure.message}", file=sys.stderr)
        return 1
    skew = now - env.ts_ms
    if not args.ignore_time and abs(skew) > tolerance_s * 1000:
        print(
            f"signature verifies but ts is {skew} ms from now (tolerance {tolerance_s} s): "
            "the service rejects it as stale_timestamp",
            file=sys.stderr,
        )
        return 4
    try:
        intent = parse_intent(env)
        what = f"intent {intent.signal_id} {intent.type} {intent.size} {intent.symbol}"
    except WireError as err:
        what = f"payload is not a place intent ({err.message})"
    print(f"ok: signature verifies with key '{env.key_id or 'default'}'; {what}; ts skew {skew} ms")
    return 0


# --- status ----------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from titan_exec.cli.status import is_healthy, read_status, render

    urls = args.url or [f"http://127.0.0.1:{os.environ.get('PORT', '3002')}"]
    if len(urls) > 1:  # the pair (or more): one view, and what needs acting on
        readings = [read_status(u) for u in urls]
        if args.json:
            print(json.dumps([r.doc or {"url": r.url, "error": r.error} for r in readings]))
        else:
            print(render(readings))
        return 0 if is_healthy(readings) else 1
    reading = read_status(urls[0])
    if reading.doc is None:
        print(reading.error, file=sys.stderr)
        return 1
    doc = reading.doc
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    keys = [
        "instance_id",
        "role",
        "lease_role",
        "epoch",
        "lease_age_ms",
        "standby_lag",
        "ready",
        "venue",
        "is_armed",
        "is_halted",
        "policy_hash",
        "state_hash",
        "event_seq",
        "event_count",
        "last_cmd_seq",
        "decided_commands",
        "open_orders",
        "trades",
        "brain_heartbeat_age_ms",
        "uptime_ms",
    ]
    width = max(len(k) for k in keys)
    for k in keys:
        print(f"{k:<{width}}  {doc.get(k)}")
    return 0


def cmd_switchover(args: argparse.Namespace) -> int:
    return _admin_post(args, "switchover")


def cmd_promote(args: argparse.Namespace) -> int:
    return _admin_post(args, "promote")


def _admin_post(args: argparse.Namespace, what: str) -> int:
    url = args.url.rstrip("/") + f"/{what}"
    key = args.api_key or os.environ.get("TITAN_EXECUTION_API_KEY", "")
    req = urllib.request.Request(url, method="POST", headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            print(json.loads(resp.read())["status"])
            return 0
    except urllib.error.HTTPError as err:
        print(f"{what} refused: {json.loads(err.read()).get('error')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as err:
        print(f"cannot reach {url}: {err}", file=sys.stderr)
        return 1


# --- demo / bench ----------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from titan_exec.runtime.demo import run_demo

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the children like Ctrl-C
    try:
        return asyncio.run(
            run_demo(keep_state=args.keep_state, venue=args.venue, single=args.single)
        )
    except KeyboardInterrupt:
        print("\ndemo interrupted: its child processes were stopped", file=sys.stderr)
        return 130


def cmd_bench(args: argparse.Namespace) -> int:
    from titan_exec.runtime.bench import run_bench

    if args.poison:
        from titan_exec.runtime.poisonbench import run_poisonbench

        topologies = ["embedded", "cluster"] if args.topology == "both" else [args.topology]
        return asyncio.run(
            run_poisonbench(
                rounds=args.rounds,
                count=args.count,
                topologies=topologies,
                lease_ms=args.lease_ms,
                kinds=tuple(args.kinds.split(",")),
            )
        )
    if args.startup:
        from titan_exec.runtime.startbench import SIZES, parse_sizes, run_startbench

        try:
            sizes = parse_sizes(args.sizes) if args.sizes else SIZES
        except ValueError as err:
            print(f"titan-exec bench --sizes: {err}", file=sys.stderr)
            return 2
        return asyncio.run(run_startbench(sizes=sizes, rounds=args.rounds, json_path=args.json))
    return asyncio.run(
        run_bench(
            intents=args.intents,
            paced=args.paced,
            pace_per_s=args.pace,
            rounds=args.rounds,
            venue=args.venue,
            ha=args.ha,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="titan-exec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run one instance")
    _config_flags(p)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("nats", help="run the embedded nats-server on its own")
    p.add_argument("--config")
    p.add_argument("--state-dir", default=None)
    p.add_argument("--nats-port", type=int, default=None)
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(fn=cmd_nats)
    from titan_exec.cli.migrate import add_parser as add_nats_migrate

    add_nats_migrate(p)  # titan-exec nats migrate

    p = sub.add_parser("send", help="sign and publish an intent or a control command")
    p.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    p.add_argument("--namespace", default=os.environ.get("TITAN_NAMESPACE", "exec"))
    p.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=5.0,
        help="seconds to connect to NATS, and again for the publish's acknowledgement",
    )
    p.add_argument("--key-id", default="default")
    p.add_argument("--log-level", default="WARNING")
    what = p.add_subparsers(dest="what", required=True)
    i = what.add_parser("intent", help="a place intent")
    i.add_argument("--venue", default="sim")
    i.add_argument("--account", default="main")
    i.add_argument("--symbol", default="BTC/USDT")
    i.add_argument(
        "--type",
        default="BUY_SETUP",
        choices=["BUY_SETUP", "SELL_SETUP", "CLOSE_LONG", "CLOSE_SHORT", "CLOSE"],
    )
    i.add_argument("--size", type=_positive_number, default="0.01", help="a positive number")
    i.add_argument(
        "--entry",
        type=_positive_number,
        default=None,
        help="limit price (entry_zone[0]); none: market",
    )
    i.add_argument("--exchange", default=None)
    i.add_argument("--signal-id", default=None)
    i.add_argument("--payload-file", default=None, help="a payload JSON file, or - for stdin")
    c = what.add_parser("control", help="a control command")
    c.add_argument("action", choices=["halt", "open", "arm", "disarm", "flatten", "policy"])
    c.add_argument("--reason", default="operator")
    c.add_argument("--policy-file", default=None)
    p.set_defaults(fn=cmd_send)

    p = sub.add_parser(
        "feed",
        help="publish a stand-in brain heartbeat and book tickers until stopped: what a first "
        "intent needs when no brain and no market-data feed run (trying it by hand)",
    )
    p.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    p.add_argument("--timeout", type=_positive_seconds, default=5.0, help="connect timeout (s)")
    p.add_argument("--venue", default="sim", help="the <venue> token of the ticker subjects")
    p.add_argument(
        "--price",
        type=_symbol_price,
        action="append",
        metavar="SYMBOL=PRICE",
        help=f"mid price of a symbol (repeatable; default: {' '.join(FEED_PRICES)})",
    )
    p.add_argument("--source", default="manual", help="heartbeat subject's last token")
    p.add_argument("--interval", type=_positive_seconds, default=1.0, help="seconds")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(fn=cmd_feed)

    p = sub.add_parser("envelope", help="envelope tools")
    env_sub = p.add_subparsers(dest="envelope_command", required=True)
    v = env_sub.add_parser("verify", help="verify a signed envelope read on stdin")
    v.add_argument("--ignore-time", action="store_true", help="check the signature only")
    v.add_argument("--log-level", default="WARNING")
    v.set_defaults(fn=cmd_envelope_verify)

    from titan_exec.sim.cli import add_parser as add_venue_sim

    add_venue_sim(sub)

    from titan_exec.cli.verify import add_parser as add_verify

    add_verify(sub)

    from titan_exec.cli.chaos import add_parser as add_chaos

    add_chaos(sub)

    p = sub.add_parser(
        "status",
        help="show a running instance's status; give --url for each instance of the pair "
        "to see them side by side (exit 1 unless exactly one is active and all answer)",
    )
    p.add_argument("--url", action="append", help="admin API URL (repeatable)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(fn=cmd_status)

    for name, fn, summary, target in (
        ("switchover", cmd_switchover, "planned hand-over of the active to the standby", "active"),
        (
            "promote",
            cmd_promote,
            "manual failover: make this standby campaign now (refused while the lease is held)",
            "standby",
        ),
    ):
        p = sub.add_parser(name, help=summary)
        p.add_argument(
            "--url",
            default=f"http://127.0.0.1:{os.environ.get('PORT', '3002')}",
            help=f"the {target}'s admin API",
        )
        p.add_argument("--api-key", default=None, help="default: TITAN_EXECUTION_API_KEY")
        p.add_argument("--log-level", default="WARNING")
        p.set_defaults(fn=fn)

    demo_help = (
        "scripted end-to-end demo: the hot-standby pair (two titan-exec run processes, lease "
        "1000 ms) and the venue simulator on an embedded NATS, kill -9 of the active mid-flow, "
        "restart as standby, final invariant checks (exit 1 if one fails)"
    )
    p = sub.add_parser("demo", help=demo_help, description=demo_help)
    p.add_argument("--keep-state", action="store_true", help="keep the state and logs directory")
    p.add_argument(
        "--venue",
        choices=["sim", "paper"],
        default="sim",
        help="sim: the venue simulator as a child process, reached through ccxt (default; the "
        "pair needs it); paper: the in-process paper venue, one instance only (its state lives "
        "in its process, so a pair cannot share it; implies --single)",
    )
    p.add_argument(
        "--single",
        action="store_true",
        help="one in-process instance instead of the pair (no failover)",
    )
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("bench", help="service throughput and latency vs raw JetStream")
    p.add_argument("--intents", type=int, default=2000)
    p.add_argument(
        "--venue",
        choices=["paper", "sim"],
        default="paper",
        help="paper: in-process; sim: the simulator process through the ccxt venue",
    )
    p.add_argument("--paced", type=int, default=600, help="intents in the paced latency run")
    p.add_argument("--pace", type=float, default=200.0, help="intents per second when paced")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--ha",
        action="store_true",
        help="each round also measures the instance with lease election and the epoch fence",
    )
    p.add_argument(
        "--startup",
        action="store_true",
        help="instead: start-up time (newest snapshot + tail) against the length of history",
    )
    p.add_argument(
        "--poison",
        action="store_true",
        help="instead: bursts of hostile messages against the active (loop stall, fencing)",
    )
    p.add_argument("--count", type=int, default=100, help="with --poison: messages a burst")
    p.add_argument("--lease-ms", type=int, default=5000, help="with --poison: the lease")
    p.add_argument(
        "--kinds",
        default="small,max-size,value-bound",
        help="with --poison: burst kinds, comma-separated",
    )
    p.add_argument(
        "--topology",
        choices=["embedded", "cluster", "both"],
        default="both",
        help="with --poison: the embedded server, three clustered nodes (R3), or both",
    )
    p.add_argument("--sizes", default=None, help="with --startup: events, e.g. 1e4,1e5,1e6")
    p.add_argument("--json", default=None, metavar="FILE", help="with --startup: results file")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(fn=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    _logging(args.log_level)
    try:
        code = args.fn(args)
    except (ConfigError, NatsConfigError) as err:
        print(f"titan-exec: configuration error: {err}", file=sys.stderr)
        code = EXIT_CONFIG
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)
