"""What the service's commands and the commands added through the `titan_exec.commands`
entry points share: exit statuses, argument types, the command line's NATS connection."""

from __future__ import annotations

import argparse
import math

from titan_exec.adapters.nats.connect import NatsSettings

EXIT_CONFIG = 78  # EX_CONFIG
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: a port in use, NATS unreachable at start-up


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def cli_nats_settings(nats_url: str, timeout_s: float) -> NatsSettings:
    """The command line's connection: bounded by `--timeout` (nats-py alone retries an
    unreachable server for minutes, printing a traceback every 2 s)."""
    urls = tuple(
        u if "://" in u else f"nats://{u}"
        for u in (part.strip() for part in nats_url.split(","))
        if u
    )
    return NatsSettings(
        urls=urls,
        name="titan-exec-cli",
        connect_timeout_s=min(2.0, timeout_s),
        first_connect_timeout_s=timeout_s,
    )
