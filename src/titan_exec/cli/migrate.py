"""`titan-exec nats migrate`: rebuild the old deployment's WorkQueue `TITAN_CMD` as this
service's limits stream, keeping every waiting command (`adapters/nats/cmdmigrate.py`).

    titan-exec nats migrate [--config FILE] [--nats-url URL] [--apply]

Without `--apply` it is a dry run: it shows `TITAN_CMD`'s current configuration, the
target one, the waiting messages, the consumers and the steps it would take, and changes
nothing. With `--apply` it takes them, printing each, and checks every message it copied
and restored. An interrupted run is resumed by running it again. It needs a NATS user
that may create and delete streams (`--config` / `NATS_URL`, `NATS_USER`/`NATS_PASS`,
`NATS_TOKEN`, `NATS_CREDS` like `titan-exec run`), not the service's own.

Exit codes: 0 nothing to do, the dry run shown, or the migration done; 1 a step or check
failed half way (nothing unverified was deleted; the message says where the commands
are; run again to resume); 3 refused: `TITAN_CMD` or `TITAN_CMD_MIGRATION` is a stream it
does not recognise (nothing touched); 4 refused: a consumer still reads the old stream
(the old service seems to run; nothing touched); 69 NATS unreachable; 78 a configuration
error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from typing import Any

from nats.errors import Error as NatsError
from nats.js.errors import APIError

from titan_exec.adapters.nats import cmdmigrate as mig
from titan_exec.adapters.nats.connect import NatsConnectError, connect
from titan_exec.config import Config, load

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_REFUSED = 3
EXIT_BUSY = 4
EXIT_UNAVAILABLE = 69

_OLD = (mig.CmdKind.OLD, mig.CmdKind.OLD_CLOSED)


def _say(line: str) -> None:
    print(line, flush=True)


async def _show(nc: Any, cmd: Any, copy: Any, plan: mig.Plan, target: Any) -> None:
    """The dry run's report (also printed before `--apply` acts)."""
    js = nc.jetstream(timeout=mig.API_TIMEOUT_S)
    _say(f"{mig.CMD}: {plan.cmd.value}")
    if cmd is not None:
        _say(f"  current: {mig.describe_config(cmd.config)}")
    _say(f"  target:  {mig.describe_config(target)}")
    if cmd is not None:
        found = await mig.survey(nc, mig.CMD)
        span = f" (seq {found.first_seq}..{found.last_seq})" if found.messages else ""
        what = "waiting messages" if plan.cmd in _OLD else "messages"
        _say(
            f"  {what}: {found.messages}{span}, {found.bytes} bytes of data; "
            f"{found.with_msg_id} with Nats-Msg-Id"
        )
        if found.repeated_ids:
            _say(
                f"  {len(found.repeated_ids)} repeat an earlier message's Nats-Msg-Id (seq "
                f"{found.repeated_ids[:10]}): restored with it as Titan-Migrate-Nats-Msg-Id "
                "(the server would drop them as duplicates)"
            )
        for name, count in sorted(found.other_nats_headers.items()):
            _say(
                f"  {count} carry {name}: a condition of their original publish, kept as "
                f"Titan-Migrate-{name}"
            )
        if found.inexact:
            _say(
                f"  warning: {len(found.inexact)} have a subject or headers that are not "
                f"valid UTF-8 or repeat a header name (seq {found.inexact[:10]}): they are "
                "copied as closely as NATS reports them"
            )
        for c in await mig.consumers_of(js, mig.CMD):
            busy = " IN USE" if c.is_in_use else ""
            _say(
                f"  consumer {c.name} (filter {c.filter_subject}): {c.pending} pending, "
                f"{c.ack_pending} delivered and never acknowledged, {c.waiting} pull "
                f"requests waiting{', push bound' if c.push_bound else ''}{busy}"
            )
    if copy is not None:
        _say(f"{mig.COPY}: {copy.state.messages} messages (left by an interrupted run)")
    _say(plan.summary)
    for n, step in enumerate(plan.steps, 1):
        _say(f"  {n}. {mig.STEP_TEXT[step]}")


async def _busy(nc: Any) -> list[str]:
    """The consumers of the old stream that a client is still reading."""
    js = nc.jetstream(timeout=mig.API_TIMEOUT_S)
    return [c.name for c in await mig.consumers_of(js, mig.CMD) if c.is_in_use]


async def migrate(cfg: Config, *, apply: bool, timeout_s: float) -> int:
    from titan_exec.runtime.app import nats_settings

    settings = dataclasses.replace(
        nats_settings(cfg),
        name="titan-exec-migrate",
        connect_timeout_s=min(2.0, timeout_s),
        first_connect_timeout_s=timeout_s,
    )
    try:
        nc = await connect(settings)
    except NatsConnectError as err:
        print(f"titan-exec nats migrate: {err}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        js = nc.jetstream(timeout=mig.API_TIMEOUT_S)
        target = mig.target_config(
            replicas=cfg.nats.replicas, duplicate_window_s=cfg.nats.duplicate_window_s
        )
        cmd = await mig.stream_config_of(js, mig.CMD)
        copy = await mig.stream_config_of(js, mig.COPY)
        plan = mig.plan_migration(cmd.config if cmd else None, copy.config if copy else None)
        if plan.refusal is not None:
            print(f"titan-exec nats migrate: refused: {plan.refusal}", file=sys.stderr)
            return EXIT_REFUSED
        await _show(nc, cmd, copy, plan, target)
        if not plan.steps:
            return EXIT_DONE
        if not apply:
            _say("dry run: nothing was changed (--apply migrates)")
            return EXIT_DONE
        if plan.cmd in _OLD and (busy := await _busy(nc)):
            print(
                f"titan-exec nats migrate: refused: {mig.CMD}'s consumer(s) {busy} are being "
                "read (the old service seems to run): stop it first (a pull request of a "
                "client that died expires by itself: run again in a minute)",
                file=sys.stderr,
            )
            return EXIT_BUSY
        await mig.Migration(nc, target=target, replicas=cfg.nats.replicas, say=_say).run(plan)
        _say(f"done: {mig.CMD} has this service's configuration and every waiting command")
        return EXIT_DONE
    except (mig.MigrationFailed, APIError, NatsError, TimeoutError) as err:
        print(
            f"titan-exec nats migrate: stopped: {err!r}; nothing unverified was deleted; "
            "run it again to resume (it shows where the commands are)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        await nc.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    overrides = {"nats.url": args.nats_url} if args.nats_url else {}
    cfg = load(args.config, env=os.environ, overrides=overrides, require_secret=False)
    if not cfg.nats.url:  # the embedded server of `titan-exec run` / `titan-exec nats`
        cfg = dataclasses.replace(
            cfg,
            nats=dataclasses.replace(cfg.nats, url=f"nats://127.0.0.1:{cfg.nats.embedded_port}"),
        )
    return asyncio.run(migrate(cfg, apply=args.apply, timeout_s=args.timeout))


def add_parser(nats_parser: argparse.ArgumentParser) -> None:
    """`titan-exec nats migrate` under `titan-exec nats`."""
    sub = nats_parser.add_subparsers(dest="nats_command", metavar="{migrate}")
    summary = (
        "rebuild the old deployment's WorkQueue TITAN_CMD as this service's limits stream, "
        "keeping every waiting command in order (a dry run unless --apply)"
    )
    p = sub.add_parser(
        "migrate",
        help=summary,
        description=summary + ". Exit 0 done or nothing to do, 1 stopped half way (run "
        "again to resume), 3 a stream it does not recognise, 4 the old service still "
        "reads TITAN_CMD, 69 NATS unreachable, 78 configuration error.",
    )
    p.add_argument("--config", help="TOML configuration file (or TITAN_CONFIG)")
    p.add_argument("--nats-url", default=None, help="NATS server(s) (or NATS_URL / nats.url)")
    p.add_argument("--apply", action="store_true", help="migrate (default: a dry run)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to connect to NATS")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(fn=cmd_migrate)
