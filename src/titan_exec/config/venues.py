"""Several venues in one instance: the `[venues.<name>]` tables and the default.

Two shapes, one result (`Config.venues`, never empty after `load`):

- the single ``[venue]`` section (and its `TITAN_VENUE_*` variables), as before: one entry,
  under its `name`, and the default;
- ``[venues.<name>]`` tables, one per venue (each takes every key of ``[venue]`` but
  `name`: the table's name is the venue's), with ``[routing] default = "<name>"`` naming
  the venue `auto` goes to (required with more than one). `Config.venue` is then the
  default's entry, so that what reads one venue reads the default.

Both shapes at once are refused. A venue name is what intents route by: lower case (the
brain lower-cases the exchange it sends), one NATS token, not a token the RPC subjects
reserve (`auto`, `main`). Two entries trading one account (the same exchange, endpoint and
account) are refused: positions are kept per venue name, and each would see the other's
as foreign.

Environment: ``TITAN_VENUES_<NAME>_<KEY>`` (name and key upper case, ``-`` as ``_``) sets
a key of a venue the file names; ``TITAN_ROUTING_DEFAULT`` the default. Credentials:
`api_key` / `api_secret` in the table, ``TITAN_VENUES_<NAME>_API_KEY`` (or its ``_FILE``),
or `api_key_env` / `api_secret_env` naming the variable (or its ``_FILE``) that holds them.
They are read here, at load, and never logged (`Config.redacted`); an entry of the tables
never falls back to the single venue's ``TITAN_VENUE_API_KEY``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from titan_exec.config.model import Config, ConfigError, VenueConfig

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
RESERVED_NAMES = frozenset({"auto", "main"})
"""RPC venue tokens that mean every venue (`wire/subjects.ALL_VENUES`)."""

SECRETS = ("api_key", "api_secret", "api_password")
ENV_KEYS = tuple(
    f.name
    for f in dataclasses.fields(VenueConfig)
    if f.name not in ("name", "paper", "api_key_env", "api_secret_env", "api_password_env")
)
"""The keys ``TITAN_VENUES_<NAME>_<KEY>`` can set."""


def env_name(venue: str, key: str) -> str:
    """``TITAN_VENUES_<NAME>_<KEY>``."""
    return f"TITAN_VENUES_{venue.upper().replace('-', '_')}_{key.upper()}"


def _read_file(var: str, env: Mapping[str, str]) -> str | None:
    path = env.get(f"{var}_FILE")
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{var}_FILE: {path} does not exist")
    return p.read_text().strip()


def env_layer(data: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The ``TITAN_VENUES_<NAME>_<KEY>`` values (and the secrets' ``_FILE`` forms) for the
    venues the file's `[venues]` tables name."""
    tables = data.get("venues")
    if not isinstance(tables, Mapping):
        return {}
    layer: dict[str, dict[str, Any]] = {}
    seen: dict[str, tuple[str, str]] = {}
    for name in tables:
        for key in ENV_KEYS:
            var = env_name(str(name), key)
            if var in seen:
                raise ConfigError(
                    f"venues.{name}: {var} would also set venues.{seen[var][0]}.{seen[var][1]}: "
                    "rename one of the venues"
                )
            seen[var] = (str(name), key)
            if env.get(var):
                layer.setdefault(str(name), {})[key] = env[var]
            elif key in SECRETS:
                value = _read_file(var, env)
                if value is not None:
                    layer.setdefault(str(name), {})[key] = value
    return layer


def resolve(cfg: Config, *, has_single: bool, env: Mapping[str, str]) -> Config:
    """Fill `venues` (either shape) and `venue` (the default's entry); check the names,
    the default and the accounts; read the credentials the tables name."""
    if not cfg.venues:
        v = cfg.venue
        if cfg.routing.default and cfg.routing.default != v.name:
            raise ConfigError(
                f"routing.default: {cfg.routing.default!r} is not a venue (the [venue] section "
                f"configures {v.name!r})"
            )
        v = _with_credentials(v, env)
        return dataclasses.replace(cfg, venue=v, venues={v.name: v})
    if has_single:
        raise ConfigError(
            "venue: both [venue] and [venues.<name>] tables are given (or a TITAN_VENUE_* "
            "variable with the tables): use one shape — the tables take every [venue] key, "
            "and TITAN_VENUES_<NAME>_<KEY> variables"
        )
    venues: dict[str, VenueConfig] = {}
    for name, entry in cfg.venues.items():
        _check_name(name, entry)
        venues[name] = _with_credentials(dataclasses.replace(entry, name=name), env)
    default = cfg.routing.default
    if not default:
        if len(venues) > 1:
            names = ", ".join(sorted(venues))
            raise ConfigError(
                f"routing.default: {len(venues)} venues are configured ({names}): name the "
                "one `auto` routes to"
            )
        default = next(iter(venues))
    if default not in venues:
        raise ConfigError(
            f"routing.default: {default!r} is not among the venues ({', '.join(sorted(venues))})"
        )
    _check_accounts(cfg, venues)
    return dataclasses.replace(
        cfg,
        venues=venues,
        venue=venues[default],
        routing=dataclasses.replace(cfg.routing, default=default),
    )


def _check_name(name: str, entry: VenueConfig) -> None:
    if not NAME.match(name):
        raise ConfigError(
            f"venues.{name}: a venue name is lower case letters, digits, _ and - (the brain "
            "sends its exchange lower case)"
        )
    if name in RESERVED_NAMES:
        raise ConfigError(f"venues.{name}: {name!r} is reserved (an RPC token for every venue)")
    if entry.name not in (name, VenueConfig.name):
        raise ConfigError(
            f"venues.{name}.name: the table's name is the venue's ({entry.name!r} given)"
        )


def _with_credentials(v: VenueConfig, env: Mapping[str, str]) -> VenueConfig:
    """`api_key` / `api_secret` from the variables `api_key_env` / `api_secret_env` name
    (or their ``_FILE``), when the table (or ``TITAN_VENUES_<NAME>_*``) gave none."""
    found: dict[str, Any] = {}
    for key in SECRETS:
        var = getattr(v, f"{key}_env")
        if getattr(v, key) or not var:
            continue
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", var):
            raise ConfigError(f"venues.{v.name}.{key}_env: not a variable name: {var!r}")
        value = env.get(var) or _read_file(var, env)
        if not value:
            raise ConfigError(f"venues.{v.name}.{key}_env: {var} is not set (nor {var}_FILE)")
        found[key] = value
    return dataclasses.replace(v, **found) if found else v


def _check_accounts(cfg: Config, venues: Mapping[str, VenueConfig]) -> None:
    """One entry per account: the same (exchange, endpoint, account) twice is refused."""
    seen: dict[tuple[str, bool, str, str], VenueConfig] = {}
    for v in venues.values():
        if v.kind != "ccxt":
            continue  # each paper venue is its own in-process exchange
        ident = (v.exchange_id, v.testnet, v.base_url.rstrip("/"), cfg.account_of(v))
        other = seen.get(ident)
        if other is not None:
            keys = (
                "with different API keys"
                if (other.api_key, other.api_secret) != (v.api_key, v.api_secret)
                else "(the same entry twice)"
            )
            raise ConfigError(
                f"venues.{v.name}: trades account {ident[3]!r} on {v.exchange_id} like "
                f"venues.{other.name} {keys}: one entry per account"
            )
        seen[ident] = v
