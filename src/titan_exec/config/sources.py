"""Reading the configuration: defaults < TOML file < environment < command-line flags.

`load` merges the layers, builds the frozen `Config` (unknown keys refused, every value
coerced to its field's type, the setting named in every error) and validates it.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from titan_exec.config import venues
from titan_exec.config.checks import validate
from titan_exec.config.model import (
    SECRET_KEYS,
    UNSAFE_DISABLE_FENCING_ENV,
    Config,
    ConfigError,
    ReconcileConfig,
)

ENV: dict[str, tuple[str, str]] = {
    "HMAC_SECRET": ("security", "hmac_secret"),
    "HMAC_SECRETS": ("security", "hmac_secrets"),
    "HMAC_TIMESTAMP_TOLERANCE": ("security", "timestamp_tolerance_s"),
    "TITAN_EXECUTION_API_KEY": ("security", "api_key"),
    "NATS_URL": ("nats", "url"),
    "NATS_USER": ("nats", "user"),
    "NATS_PASS": ("nats", "password"),
    "NATS_TOKEN": ("nats", "token"),
    "NATS_CREDS": ("nats", "creds_file"),
    "PORT": ("http", "port"),
    "TITAN_STATE_DIR": ("service", "state_dir"),
    "TITAN_INSTANCE_ID": ("service", "instance_id"),
    "EXECUTION_MODE": ("service", "mode"),
    "TITAN_HA_ENABLED": ("ha", "enabled"),
    "TITAN_HA_LEASE_MS": ("ha", "lease_ms"),
    "TITAN_NAMESPACE": ("service", "namespace"),
    "TITAN_VENUE_KIND": ("venue", "kind"),
    "TITAN_VENUE_NAME": ("venue", "name"),
    "TITAN_VENUE_EXCHANGE_ID": ("venue", "exchange_id"),
    "TITAN_VENUE_BASE_URL": ("venue", "base_url"),
    "TITAN_ROUTING_DEFAULT": ("routing", "default"),
}
"""Fixed variables; the `[venues.<name>]` tables have ``TITAN_VENUES_<NAME>_<KEY>``
(`config/venues.py`)."""


def _coerce(name: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return str(value)
    if origin is dict:
        if isinstance(value, str):
            # the secrets themselves never appear in a message: pairs are named by position
            pairs = [p for p in value.split(",") if p.strip()]
            out: dict[str, str] = {}
            for i, pair in enumerate(pairs, 1):
                if ":" not in pair:
                    raise ConfigError(
                        f"{name}: pair {i} has no ':' (expected key_id:secret pairs "
                        "separated by commas)"
                    )
                k, v = pair.split(":", 1)
                if not k.strip():
                    raise ConfigError(
                        f"{name}: pair {i} has an empty key id (expected key_id:secret)"
                    )
                if k.strip() in out:
                    raise ConfigError(f"{name}: key id {k.strip()!r} is given twice")
                out[k.strip()] = v.strip()
            return out
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{name}: expected a table of strings")
        return dict(value)
    raise ConfigError(f"{name}: unsupported setting type {tp}")  # pragma: no cover


def _setting_name(dotted: str) -> str:
    """``security.hmac_secrets (HMAC_SECRETS)``: the key, and its variable if it has one."""
    variables = [var for var, key in ENV.items() if ".".join(key) == dotted]
    return f"{dotted} ({variables[0]})" if variables else dotted


def _build(cls: type[Any], data: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    # env_only settings have no file key or flag: they are set by `load` from the environment
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("env_only")}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown setting {prefix}{unknown[0]} (known: {', '.join(sorted(names))})"
        )
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        tp = hints[key]
        args = typing.get_args(tp)
        if typing.get_origin(tp) is dict and args and dataclasses.is_dataclass(args[1]):
            if not isinstance(value, Mapping) or not all(
                isinstance(v, Mapping) for v in value.values()
            ):
                raise ConfigError(f"{prefix}{key}: expected tables ([{prefix}{key}.<name>])")
            kwargs[key] = {
                str(name): _build(typing.cast(type[Any], args[1]), entry, f"{prefix}{key}.{name}.")
                for name, entry in value.items()
            }
        elif dataclasses.is_dataclass(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}{key}: expected a table")
            kwargs[key] = _build(typing.cast(type[Any], tp), value, f"{prefix}{key}.")
        else:
            if isinstance(tp, types.UnionType):  # pragma: no cover - not used
                raise ConfigError(f"{prefix}{key}: unsupported type")
            kwargs[key] = _coerce(_setting_name(f"{prefix}{key}"), tp, value)
    return cls(**kwargs)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def load(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    require_secret: bool = True,
) -> Config:
    """Load, merge and validate. `overrides` are dotted flags: ``{"nats.url": "..."}``."""
    env = env if env is not None else {}
    data: dict[str, Any] = {}
    path = path or env.get("TITAN_CONFIG") or None
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {p}: {err}") from None
    layer: dict[str, Any] = {}
    for var, (section, key) in ENV.items():
        if var in env and env[var] != "":
            layer.setdefault(section, {})[key] = env[var]
        elif (section, key) in SECRET_KEYS and env.get(f"{var}_FILE"):
            # Docker secrets: the value is in the file that VAR_FILE names
            secret_file = Path(env[f"{var}_FILE"])
            if not secret_file.is_file():
                raise ConfigError(f"{var}_FILE: {secret_file} does not exist")
            layer.setdefault(section, {})[key] = secret_file.read_text().strip()
    venue_layer = venues.env_layer(data, env)
    if venue_layer:
        layer["venues"] = venue_layer
    data = _merge(data, layer)
    flag_layer: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        *sections, key = dotted.split(".")
        node = flag_layer
        for s in sections:
            node = node.setdefault(s, {})
        node[key] = value
    data = _merge(data, flag_layer)
    cfg: Config = _build(Config, data, "")
    cfg = dataclasses.replace(cfg, is_unsafe_fencing_disabled=is_fencing_disabled_by(env))
    cfg = _resolve_aliases(cfg)
    cfg = venues.resolve(cfg, has_single="venue" in data, env=env)
    validate(cfg, require_secret=require_secret)
    return cfg


def _resolve_aliases(cfg: Config) -> Config:
    """`orders.reconcile_interval_ms` (the old name) sets `reconcile.open_orders_interval_ms`;
    both set to different values is refused."""
    alias = cfg.orders.reconcile_interval_ms
    if alias == 0:
        return cfg
    current = cfg.reconcile.open_orders_interval_ms
    if current not in (alias, ReconcileConfig.open_orders_interval_ms):
        raise ConfigError(
            f"orders.reconcile_interval_ms ({alias}) is the old name of "
            f"reconcile.open_orders_interval_ms ({current}): set one of them"
        )
    return dataclasses.replace(
        cfg, reconcile=dataclasses.replace(cfg.reconcile, open_orders_interval_ms=alias)
    )


def is_fencing_disabled_by(env: Mapping[str, str]) -> bool:
    """`TITAN_UNSAFE_DISABLE_FENCING`: ``1`` disables fencing (the test-only broken build);
    unset or empty leaves it on; anything else is refused, so that ``0``, ``false`` or a
    typo never leaves an operator guessing which build runs."""
    value = env.get(UNSAFE_DISABLE_FENCING_ENV, "")
    if value not in ("", "1"):
        raise ConfigError(
            f"{UNSAFE_DISABLE_FENCING_ENV}: only 1 (the unsafe test build without epoch "
            f"fencing) or unset is allowed, got {value!r}"
        )
    return value == "1"
