"""Configuration: one place that reads the TOML file, the environment and the flags.

Precedence: defaults < TOML file < environment < command-line flags. Every section is a
frozen dataclass; unknown keys are rejected; types are checked; the first invalid setting
stops start-up with a message that names it (`ConfigError`). Secrets are never printed
(`redacted()` is what logs see).

Environment variables of the existing service keep their meaning: `HMAC_SECRET`,
`HMAC_TIMESTAMP_TOLERANCE` (seconds), `NATS_URL`, `NATS_USER`/`NATS_PASS`, `PORT`,
`TITAN_EXECUTION_API_KEY`. Others: `HMAC_SECRETS` (``key_id:secret,...``), `NATS_TOKEN`,
`NATS_CREDS`, `TITAN_STATE_DIR`, `TITAN_INSTANCE_ID`, `TITAN_NAMESPACE`, `TITAN_CONFIG`,
`EXECUTION_MODE`, `TITAN_VENUE_*`. Every secret variable also has a `<VAR>_FILE` form that
names a file holding it (Docker secrets).

Everything that can be checked without the network is checked here, so that a bad setting
stops start-up (exit 78) before any server starts or anything is written: every value, the
lease timing (`ha.*`, the leadership core's rules), the HMAC secrets (`key_id:secret` pairs,
each at least `MIN_SECRET_BYTES` long) and the risk policy file (read and parsed).

`TITAN_UNSAFE_DISABLE_FENCING=1` is the deliberately broken build of the chaos tests
(issue 5): no epoch fence on event writes, no self-fencing of a leader. It is read from the
environment only (no file key, no flag: a production config cannot reach it by a typo);
any value other than ``1`` (or unset/empty) stops start-up.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from titan_exec.adapters.nats.connect import redact_url
from titan_exec.core.leadership import LeaseTiming, LeaseTimingError
from titan_exec.core.policy import PolicyError, parse_policy


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it."""


def _repr_without_url_secrets(self: Any) -> str:
    """The dataclass repr, with the password or token of every URL setting redacted (the
    secret fields themselves are left out: `repr=False`)."""
    shown = []
    for f in dataclasses.fields(self):
        if f.repr:
            value = getattr(self, f.name)
            if f.name in ("url", "base_url"):
                value = redact_urls(value)
            shown.append(f"{f.name}={value!r}")
    return f"{type(self).__name__}({', '.join(shown)})"


@dataclass(frozen=True)
class ServiceConfig:
    instance_id: str = "primary"
    namespace: str = "exec"
    state_dir: str = "./state"
    producer: str = "titan-execution"
    account: str = "main"
    mode: str = "active"
    """`active` (take over at once) or `standby` (EXECUTION_MODE, `--mode`)."""
    hot_standby: bool = False
    """The RFC's field: true is the same as mode = standby."""
    shard: str = "main"
    """The epoch subject's shard (`titan.evt.<ns>.epoch.v1.<shard>`)."""


@dataclass(frozen=True)
class NatsConfig:
    url: str = ""
    """Empty: start the embedded nats-server under `state_dir`."""
    user: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    creds_file: str = ""
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    replicas: int = 1
    embedded_host: str = "127.0.0.1"
    embedded_port: int = 4222
    embedded_monitor_port: int = 0
    duplicate_window_s: int = 120
    connect_timeout_s: float = 5.0

    __repr__ = _repr_without_url_secrets


@dataclass(frozen=True)
class SecurityConfig:
    hmac_secret: str = field(default="", repr=False)
    hmac_secrets: dict[str, str] = field(default_factory=dict, repr=False)
    timestamp_tolerance_s: int = 300
    api_key: str = field(default="", repr=False)
    max_payload_bytes: int = 256 * 1024
    max_json_depth: int = 32
    max_json_values: int = 512
    """JSON values one command may hold, bounded before parsing (wire/envelope.py)."""
    unsigned_risk_reducing: str = "accept"
    """`accept` | `refuse`: a control without a valid signature that only reduces risk
    (halt, disarm, flatten, a tightening policy; `core/controls.py`). Risk-increasing
    controls always need a signature."""


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    """The admin API's bind address; one that is not loopback needs `security.api_key`."""
    port: int = 3002
    metrics_requires_key: bool = False
    """`/metrics` answers only with the API key (it has no per-order data, but balances and
    counts); `/health`, `/ready` and the minimal `/status` never need it."""


@dataclass(frozen=True)
class RiskConfig:
    policy_file: str = ""
    """Empty: the embedded default (`titan_exec/data/risk_policy.json`, the contract's)."""
    freshness_ms: int = 5000
    heartbeat_stale_ms: int = 5000
    require_heartbeat: bool = True
    arm_on_genesis: bool = False


@dataclass(frozen=True)
class OrdersConfig:
    ttl_ms: int = 60_000
    poll_interval_ms: int = 50
    in_doubt_query_after_ms: int = 500
    in_doubt_absent_after_ms: int = 30_000
    reconcile_interval_ms: int = 0
    """Alias of `reconcile.open_orders_interval_ms` (its old name); 0: not set."""
    venue_timeout_ms: int = 5_000
    recovery_send_within_ms: int = 5_000
    """After a restart or takeover, an order recorded but never sent is sent if it was
    decided this recently (and is not past its time-to-live), else canceled."""


@dataclass(frozen=True)
class PaperConfig:
    balance_usdt: str = "100000"
    taker_fee_bps: str = "4"
    maker_fee_bps: str = "2"
    fill_slices: int = 1
    slice_interval_ms: int = 0
    prices_exchange_id: str = ""
    """The ccxt exchange whose public book tickers the paper venue fills against (and the
    risk guard prices with); empty: NATS tickers only."""
    prices_base_url: str = ""
    """Override of that exchange's API hosts, REST and websocket (the simulator)."""
    prices_testnet: bool = False


@dataclass(frozen=True)
class VenueConfig:
    kind: str = "paper"
    """`paper` (in-process), or `ccxt` (a real venue or the simulator through ccxt)."""
    name: str = "sim"
    """The venue's name inside Titan: subjects, events, positions."""
    exchange_id: str = "binanceusdm"
    """ccxt id (`binanceusdm`, `bybit`, `okx`, ...) when kind = ccxt."""
    testnet: bool = False
    base_url: str = ""
    """Override of the venue's API host (the simulator, a proxy)."""
    api_key: str = field(default="", repr=False)
    """Or TITAN_VENUE_API_KEY, or a file named by TITAN_VENUE_API_KEY_FILE."""
    api_secret: str = field(default="", repr=False)
    """Or TITAN_VENUE_API_SECRET, or a file named by TITAN_VENUE_API_SECRET_FILE."""
    timeout_ms: int = 5000
    enable_rate_limit: bool = True
    """ccxt's request pacing (keep it on against real venues)."""
    rate_limit_ms: int = 0
    """ccxt's pace: milliseconds per unit of request cost; 0 keeps ccxt's value for the
    exchange (binanceusdm: 50 ms, and an order costs 4 units: at most 5 orders/s)."""
    poll_interval_ms: int = 250
    """How often the venue's trades are polled for fills (REST venues; mind rate limits)."""
    paper: PaperConfig = field(default_factory=PaperConfig)

    __repr__ = _repr_without_url_secrets


@dataclass(frozen=True)
class MarketConfig:
    """Reference prices from the venue itself (`runtime/quotes.py`); the NATS ticker subject
    is read in any case."""

    venue_prices: bool = True
    """Read the venue's own book tickers (ccxt venue; paper venue with
    `venue.paper.prices_exchange_id`); false: NATS tickers only."""
    websocket: bool = True
    """Use the venue's websocket book ticker where ccxt.pro has one."""
    poll_interval_ms: int = 1000
    """REST polls of the venue's book tickers: every symbol without a websocket, the books
    quiet for this long with one. At most half the policy's `maxStalenessMs` (a lost poll
    leaves the price stale), at least 100."""


@dataclass(frozen=True)
class ConsumerConfig:
    durable: str = ""
    """Empty: ``titan-exec-<instance_id>``."""
    ack_wait_s: int = 5
    """A command delivered but not acknowledged is delivered again after this long (a
    delivery lost with a stopped instance's fetch). Early redelivery is harmless: the
    decision is durable before the acknowledgement and a decided command is recognised."""
    max_ack_pending: int = 4096
    fetch_batch: int = 256
    max_deliveries: int = 5
    """A command whose decision raises is delivered again (after a second) at most this
    many times in all; then it is refused as `poison_command` (one decision, a dead
    letter, acknowledged) instead of being redelivered for ever."""


@dataclass(frozen=True)
class TruthConfig:
    interval_ms: int = 5000


@dataclass(frozen=True)
class SnapshotsConfig:
    """State snapshots (ha-protocol.md §8): the active writes one every `every_events`
    events or `every_ms`, whichever comes first; a standby compares its hash at each one
    (drift), and a start loads the newest and replays only the tail."""

    enabled: bool = True
    every_events: int = 10_000
    every_ms: int = 60_000
    keep: int = 3
    """Snapshots kept in the bucket (the newest ones); the others are deleted."""
    bucket: str = "TITAN_EXEC_SNAPSHOTS"
    max_bucket_bytes: int = -1
    """-1: unlimited. A full bucket fails the snapshot write loudly (never drops one)."""


@dataclass(frozen=True)
class RetentionConfig:
    """How much history the state and the stream keep."""

    horizon_ms: int = 86_400_000
    """Closed orders (and their signal ids, the duplicate-signal guard) and venue trade
    ids are compacted out of the state this long after their decision / trade. Orders
    still open are kept whatever their age."""
    compact: bool = True
    purge: bool = False
    """Purge the service's own event subjects of `TITAN_EVT` below the oldest snapshot kept
    (the epoch subject and other services' subjects are never purged)."""


@dataclass(frozen=True)
class ReconcileConfig:
    """The active compares its state with the venue's reports (`runtime/reconcile.py`)."""

    open_orders_interval_ms: int = 2_000
    positions_interval_ms: int = 10_000
    balances_interval_ms: int = 60_000
    position_confirm_ms: int = 2_000
    """A position difference must last this long (fills on their way arrive meanwhile)
    before the venue's report is written as a `PositionReconciled`."""
    positions_authoritative: bool = True
    """False (an account shared with other systems): differences are reported, never
    corrected."""


@dataclass(frozen=True)
class HaConfig:
    enabled: bool = False
    """Lease election in JetStream KV (ha-protocol.md §3); off: `service.mode` decides."""
    lease_ms: int = 5000
    renew_interval_ms: int = 0
    """0: lease / 4."""
    safety_margin_ms: int = 0
    """0: the leadership core's default."""
    manual_failover: bool = False
    """A standby never promotes by itself; `titan-exec promote` (POST /promote, operator)
    makes it campaign once the lease is free."""


UNSAFE_DISABLE_FENCING_ENV = "TITAN_UNSAFE_DISABLE_FENCING"


@dataclass(frozen=True)
class Config:
    service: ServiceConfig = field(default_factory=ServiceConfig)
    nats: NatsConfig = field(default_factory=NatsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    orders: OrdersConfig = field(default_factory=OrdersConfig)
    venue: VenueConfig = field(default_factory=VenueConfig)
    consumer: ConsumerConfig = field(default_factory=ConsumerConfig)
    truth: TruthConfig = field(default_factory=TruthConfig)
    snapshots: SnapshotsConfig = field(default_factory=SnapshotsConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    ha: HaConfig = field(default_factory=HaConfig)
    reconcile: ReconcileConfig = field(default_factory=ReconcileConfig)
    market: MarketConfig = field(default_factory=MarketConfig)
    is_unsafe_fencing_disabled: bool = field(
        default=False, metadata={"env_only": UNSAFE_DISABLE_FENCING_ENV}
    )
    """UNSAFE, tests only (TITAN_UNSAFE_DISABLE_FENCING=1, never a file key): events carry
    no epoch fence and a leader never fences itself. The chaos checker must catch it."""

    @property
    def unsafe(self) -> list[str]:
        """What makes this instance an unsafe test build (empty in production)."""
        return ["fencing disabled"] if self.is_unsafe_fencing_disabled else []

    @property
    def is_standby(self) -> bool:
        return self.service.hot_standby or self.service.mode == "standby"

    @property
    def durable_name(self) -> str:
        return self.consumer.durable or f"titan-exec-{self.service.instance_id}"

    @property
    def keyring_secrets(self) -> dict[str, bytes]:
        secrets = {k: v.encode() for k, v in self.security.hmac_secrets.items()}
        if self.security.hmac_secret:
            secrets.setdefault("default", self.security.hmac_secret.encode())
        return secrets

    def redacted(self) -> dict[str, Any]:
        """The configuration as logs may show it: secrets as ``***``, and the password or
        token inside a URL (``nats://user:***@host``) too."""
        doc = dataclasses.asdict(self)
        for section, key in SECRET_KEYS:
            if doc[section][key]:
                doc[section][key] = (
                    "***"
                    if isinstance(doc[section][key], str)
                    else {k: "***" for k in doc[section][key]}
                )
        for section, key in URL_KEYS:
            doc[section][key] = redact_urls(doc[section][key])
        return doc


SECRET_KEYS = [
    ("security", "hmac_secret"),
    ("security", "hmac_secrets"),
    ("security", "api_key"),
    ("nats", "password"),
    ("nats", "token"),
    ("venue", "api_key"),
    ("venue", "api_secret"),
]

URL_KEYS = [("nats", "url"), ("venue", "base_url")]
"""Settings holding URLs, which may carry a password or a token (``user:pass@``)."""

MIN_SECRET_BYTES = 8
"""The shortest HMAC secret accepted (each of them, in bytes): a floor against a
truncated file or a placeholder like ``x``, not a measure of strength. Use 32 random
bytes (``openssl rand -hex 32``)."""


def redact_urls(value: str) -> str:
    """A comma-separated list of URLs with the password or token of each replaced."""
    return ",".join(redact_url(u.strip()) if u.strip() else u for u in value.split(","))


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
}

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


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
        if dataclasses.is_dataclass(tp):
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


MIN_HORIZON_MS = 3_600_000
"""The ccxt venue re-reads trades up to an hour back after a start: a trade id must be
remembered longer than that (and than any signed command's timestamp tolerance)."""


def _validate_snapshots(cfg: Config) -> None:
    sn, rt = cfg.snapshots, cfg.retention
    if sn.every_events < 1:
        raise ConfigError(f"snapshots.every_events: must be >= 1, got {sn.every_events}")
    if sn.every_ms < 100:
        raise ConfigError(f"snapshots.every_ms: must be >= 100, got {sn.every_ms}")
    if sn.keep < 1:
        raise ConfigError(f"snapshots.keep: must be >= 1, got {sn.keep}")
    if not _TOKEN.match(sn.bucket):
        raise ConfigError(f"snapshots.bucket: letters, digits, _ and - only, got {sn.bucket!r}")
    if rt.purge and not sn.enabled:
        raise ConfigError("retention.purge: needs snapshots.enabled (nothing else can rebuild)")
    if rt.purge and sn.keep < 2:
        raise ConfigError("retention.purge: needs snapshots.keep >= 2 (a fallback snapshot)")
    floor = max(MIN_HORIZON_MS, 2 * cfg.security.timestamp_tolerance_s * 1000)
    if rt.horizon_ms < floor:
        raise ConfigError(f"retention.horizon_ms: must be >= {floor}, got {rt.horizon_ms}")


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback IP address (an empty host binds every interface)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_http_access(cfg: Config) -> None:
    """The admin API answers anyone who can reach it: off loopback, the key is required."""
    h, key = cfg.http, cfg.security.api_key
    if not key and not is_loopback_host(h.host):
        raise ConfigError(
            f"security.api_key: http.host {h.host!r} is not a loopback address and no API key "
            "is configured (set TITAN_EXECUTION_API_KEY, or bind http.host = 127.0.0.1)"
        )
    if h.metrics_requires_key and not key:
        raise ConfigError(
            "security.api_key: http.metrics_requires_key = true needs an API key "
            "(set TITAN_EXECUTION_API_KEY)"
        )


def validate(cfg: Config, *, require_secret: bool = True) -> None:
    s, n, sec, h, r, o = cfg.service, cfg.nats, cfg.security, cfg.http, cfg.risk, cfg.orders
    if not _TOKEN.match(s.namespace):
        raise ConfigError(f"service.namespace: must be one NATS token, got {s.namespace!r}")
    if not _TOKEN.match(s.instance_id):
        raise ConfigError(
            f"service.instance_id: letters, digits, _ and - only, got {s.instance_id!r}"
        )
    if s.mode not in ("active", "standby"):
        raise ConfigError(f"service.mode: active or standby (EXECUTION_MODE), got {s.mode!r}")
    if not _TOKEN.match(s.shard):
        raise ConfigError(f"service.shard: must be one NATS token, got {s.shard!r}")
    if not _TOKEN.match(s.account):
        raise ConfigError(f"service.account: must be one NATS token, got {s.account!r}")
    if require_secret and not cfg.keyring_secrets:
        raise ConfigError(
            "security.hmac_secret: no HMAC secret configured (set HMAC_SECRET): refusing to start"
        )
    _validate_secrets(sec)
    _validate_nats_urls(n.url)
    if not 1 <= n.replicas <= 5:
        raise ConfigError(f"nats.replicas: must be between 1 and 5, got {n.replicas}")
    if bool(n.user) != bool(n.password):
        raise ConfigError(
            "nats.user / nats.password: set both (NATS_USER and NATS_PASS) or neither"
        )
    if n.creds_file and not Path(n.creds_file).is_file():
        raise ConfigError(f"nats.creds_file: {n.creds_file} does not exist")
    for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        value = getattr(n, key)
        if value and not Path(value).is_file():
            raise ConfigError(f"nats.{key}: {value} does not exist")
    if bool(n.tls_cert_file) != bool(n.tls_key_file):
        raise ConfigError("nats.tls_cert_file / nats.tls_key_file: set both or neither")
    if not 0 <= n.embedded_port <= 65535:
        raise ConfigError(f"nats.embedded_port: out of range: {n.embedded_port}")
    if not 0 <= h.port <= 65535:
        raise ConfigError(f"http.port: out of range: {h.port}")
    if require_secret:  # the service itself (the tools that load a config serve no HTTP)
        _validate_http_access(cfg)
    if sec.timestamp_tolerance_s <= 0:
        raise ConfigError("security.timestamp_tolerance_s: must be > 0 (HMAC_TIMESTAMP_TOLERANCE)")
    if sec.max_payload_bytes < 1024:
        raise ConfigError("security.max_payload_bytes: must be >= 1024")
    if not 2 <= sec.max_json_depth <= 512:
        raise ConfigError("security.max_json_depth: must be between 2 and 512")
    if sec.unsigned_risk_reducing not in ("accept", "refuse"):
        raise ConfigError(
            "security.unsigned_risk_reducing: must be 'accept' or 'refuse', "
            f"got {sec.unsigned_risk_reducing!r}"
        )
    if not 16 <= sec.max_json_values <= 65536:
        raise ConfigError(
            f"security.max_json_values: must be between 16 and 65536, got {sec.max_json_values}"
        )
    if cfg.consumer.max_deliveries < 1:
        raise ConfigError(
            f"consumer.max_deliveries: must be >= 1, got {cfg.consumer.max_deliveries}"
        )
    if r.policy_file:
        _validate_policy_file(r.policy_file)
    for key in ("freshness_ms", "heartbeat_stale_ms"):
        if getattr(r, key) <= 0:
            raise ConfigError(f"risk.{key}: must be > 0")
    for key in (
        "ttl_ms",
        "poll_interval_ms",
        "in_doubt_query_after_ms",
        "venue_timeout_ms",
        "recovery_send_within_ms",
    ):
        if getattr(o, key) <= 0:
            raise ConfigError(f"orders.{key}: must be > 0")
    if o.reconcile_interval_ms < 0:
        raise ConfigError("orders.reconcile_interval_ms: must be >= 0 (0: not set)")
    if o.in_doubt_absent_after_ms <= o.in_doubt_query_after_ms:
        raise ConfigError(
            "orders.in_doubt_absent_after_ms: must exceed orders.in_doubt_query_after_ms"
        )
    _validate_snapshots(cfg)
    if cfg.venue.kind not in ("paper", "ccxt"):
        raise ConfigError(f"venue.kind: unknown venue kind {cfg.venue.kind!r} (known: paper, ccxt)")
    if cfg.venue.kind == "ccxt":
        if not cfg.venue.exchange_id.isidentifier():
            raise ConfigError(f"venue.exchange_id: not a ccxt id: {cfg.venue.exchange_id!r}")
        if cfg.venue.base_url and not cfg.venue.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"venue.base_url: must be an http(s) URL, got {cfg.venue.base_url!r}")
        if cfg.venue.timeout_ms <= 0:
            raise ConfigError("venue.timeout_ms: must be > 0")
        if cfg.venue.rate_limit_ms < 0:
            raise ConfigError("venue.rate_limit_ms: must be >= 0 (0: ccxt's own pace)")
        if cfg.venue.poll_interval_ms < 10:
            raise ConfigError("venue.poll_interval_ms: must be >= 10")
    if not _TOKEN.match(cfg.venue.name):
        raise ConfigError(f"venue.name: must be one NATS token, got {cfg.venue.name!r}")
    if cfg.venue.paper.fill_slices < 1:
        raise ConfigError("venue.paper.fill_slices: must be >= 1")
    if cfg.ha.enabled and cfg.ha.lease_ms < 1000:
        raise ConfigError("ha.lease_ms: must be >= 1000")
    _validate_lease_timing(cfg.ha)
    if cfg.truth.interval_ms <= 0:
        raise ConfigError("truth.interval_ms: must be > 0")
    _validate_reconcile(cfg)
    _validate_market(cfg)


def _validate_secrets(sec: SecurityConfig) -> None:
    """Every HMAC secret non-empty and at least MIN_SECRET_BYTES long (never printed)."""
    named = [("security.hmac_secret (HMAC_SECRET)", sec.hmac_secret)] if sec.hmac_secret else []
    for key_id, secret in sec.hmac_secrets.items():
        where = f"security.hmac_secrets (HMAC_SECRETS): key id {key_id!r}"
        if not key_id.strip():
            raise ConfigError(f"{where}: empty key id (expected key_id:secret)")
        named.append((where, secret))
    for where, secret in named:
        size = len(secret.encode())
        if size == 0:
            raise ConfigError(f"{where}: empty secret")
        if size < MIN_SECRET_BYTES:
            raise ConfigError(
                f"{where}: the secret is {size} byte{'s' if size > 1 else ''}, at least "
                f"{MIN_SECRET_BYTES} are required (use 32 random bytes: openssl rand -hex 32)"
            )


_NATS_SCHEMES = ("nats", "tls", "ws", "wss")


def _validate_nats_urls(value: str) -> None:
    """Each URL of `nats.url` has a scheme the client knows (checked here, so that a URL
    holding a password is never printed unredacted in an error further on)."""
    for i, url in enumerate((u.strip() for u in value.split(",") if u.strip()), 1):
        try:
            scheme = urlsplit(url).scheme
        except ValueError:
            scheme = ""
        if scheme not in _NATS_SCHEMES:
            raise ConfigError(
                f"nats.url (NATS_URL): URL {i} must start with "
                + ", ".join(f"{s}://" for s in _NATS_SCHEMES)
            )


BUNDLED_POLICY_FILE = Path(__file__).resolve().parent / "data" / "risk_policy.json"
"""The risk policy when `risk.policy_file` is empty."""

MARKET_POLL_MIN_MS = 100


def _validate_market(cfg: Config) -> None:
    """The poll interval, against the start policy's staleness bound (a later policy can
    tighten it; the refusal then says `market data ... ms old`)."""
    m, p = cfg.market, cfg.venue.paper
    if m.poll_interval_ms < MARKET_POLL_MIN_MS:
        raise ConfigError(
            f"market.poll_interval_ms: must be >= {MARKET_POLL_MIN_MS}, got {m.poll_interval_ms}"
        )
    if p.prices_exchange_id and not p.prices_exchange_id.isidentifier():
        raise ConfigError(
            f"venue.paper.prices_exchange_id: not a ccxt id: {p.prices_exchange_id!r}"
        )
    if p.prices_base_url and not p.prices_base_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"venue.paper.prices_base_url: must be an http(s) URL, got {p.prices_base_url!r}"
        )
    try:
        doc = json.loads(Path(cfg.risk.policy_file or BUNDLED_POLICY_FILE).read_text())
        staleness_ms = parse_policy(doc).max_staleness_ms
    except (OSError, ValueError):
        return  # reported by risk.policy_file's own check
    if 2 * m.poll_interval_ms > staleness_ms:
        raise ConfigError(
            f"market.poll_interval_ms ({m.poll_interval_ms}): must be at most half the "
            f"policy's maxStalenessMs ({staleness_ms} ms): one lost poll would leave every "
            "REST price stale"
        )


def _validate_policy_file(path: str) -> None:
    """The policy is read and checked now, not when genesis is written (after the epoch
    marker): a bad file must stop start-up before anything is written."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"risk.policy_file: {path} does not exist")
    try:
        parse_policy(json.loads(p.read_text()))
    except (OSError, ValueError) as err:  # PolicyError and JSONDecodeError are ValueErrors
        what = err if isinstance(err, PolicyError) else f"not a JSON risk policy: {err}"
        raise ConfigError(f"risk.policy_file: {path}: {what}") from None


_HA_TIMING_KEYS = ("lease_ms", "renew_interval_ms", "safety_margin_ms")


def _validate_lease_timing(ha: HaConfig) -> None:
    """The leadership core's timing rules (`LeaseTiming`), checked at load."""
    try:
        LeaseTiming(
            lease_ms=ha.lease_ms,
            renew_interval_ms=ha.renew_interval_ms,
            safety_margin_ms=ha.safety_margin_ms,
        )
    except LeaseTimingError as err:
        # the message starts with the setting it is about; derived values follow lease_ms
        first = re.split(r"[= ]", str(err), maxsplit=1)[0]
        key = first if first in _HA_TIMING_KEYS else "lease_ms"
        raise ConfigError(f"ha.{key}: {err}") from None


def _validate_reconcile(cfg: Config) -> None:
    rc = cfg.reconcile
    for key in (
        "open_orders_interval_ms",
        "positions_interval_ms",
        "balances_interval_ms",
        "position_confirm_ms",
    ):
        if getattr(rc, key) <= 0:
            raise ConfigError(f"reconcile.{key}: must be > 0")
    if rc.open_orders_interval_ms > rc.positions_interval_ms:
        raise ConfigError(
            f"reconcile.open_orders_interval_ms ({rc.open_orders_interval_ms}): must not "
            f"exceed reconcile.positions_interval_ms ({rc.positions_interval_ms})"
        )
    # fills are polled every orders.poll_interval_ms (a REST venue: at least every
    # venue.poll_interval_ms); a difference must outlast two polls before it is corrected
    fill_poll_ms = cfg.orders.poll_interval_ms
    if cfg.venue.kind == "ccxt":
        fill_poll_ms = max(fill_poll_ms, cfg.venue.poll_interval_ms)
    if rc.position_confirm_ms < 2 * fill_poll_ms:
        raise ConfigError(
            f"reconcile.position_confirm_ms ({rc.position_confirm_ms}): must be at least "
            f"twice the fill poll interval ({fill_poll_ms} ms)"
        )
