"""The configuration's shape: one frozen dataclass per section, and `Config` over them.

Every field has its default here; `load` fills them from the file, the environment and
the flags, and `validate` checks them. Secrets are fields with ``repr=False``, and
`Config.redacted()` is what logs see (the password or token inside a URL redacted too).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from titan_exec.adapters.nats.connect import redact_url


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
    fenced_writes: str = "auto"
    """How the leader's fenced events are stored (`adapters/nats/fencedwrite.py`):
    ``batch`` (group commit: everything queued as one atomic batch, nats-server 2.12+),
    ``pipelined`` (one message each, not waiting; a single server only: a replicated
    stream refuses a second fenced write in flight), ``alone`` (one at a time); ``auto``:
    ``batch`` with replicas, ``pipelined`` on one server (the faster there)."""
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
    api_password: str = field(default="", repr=False)
    """The API passphrase some venues add (OKX); or TITAN_VENUE_API_PASSWORD (`_FILE`)."""
    timeout_ms: int = 5000
    enable_rate_limit: bool = True
    """ccxt's request pacing (keep it on against real venues)."""
    rate_limit_ms: int = 0
    """ccxt's pace: milliseconds per unit of request cost; 0 keeps ccxt's value for the
    exchange (binanceusdm: 50 ms, and an order costs 4 units: at most 5 orders/s)."""
    poll_interval_ms: int = 250
    """How often the venue's trades are polled for fills (REST venues; mind rate limits)."""
    account: str = ""
    """The account this venue entry trades; empty: `service.account`. One entry per
    (exchange, account): the venue name is what intents route by."""
    api_key_env: str = ""
    """`[venues.<name>]` only: the environment variable holding the API key (or its
    ``<VAR>_FILE`` form); read at load when `api_key` is empty."""
    api_secret_env: str = ""
    """The same for the API secret."""
    api_password_env: str = ""
    """The same for the API passphrase (OKX)."""
    weight_limit_1m: int = 0
    """The account's request-weight limit per minute; 0: the venue's published limit where
    the adapter knows it (Binance USDⓈ-M: 2400), else the weight is counted, not limited."""
    weight_share: float = 0.5
    """The share of that limit this service may use (the rest is left to others)."""
    user_stream: bool = True
    """Fills from the venue's user-data stream where the adapter has one (ccxt kind)."""
    stream_silence_ms: int = 60_000
    """A user-data stream silent for this long is treated as lost (a REST sweep follows)."""
    sweep_interval_ms: int = 300_000
    """The REST fill sweep's slow safety-net timer."""
    paper: PaperConfig = field(default_factory=PaperConfig)

    __repr__ = _repr_without_url_secrets


@dataclass(frozen=True)
class RoutingConfig:
    """Which venue an intent goes to: its `exchange` (lower case, as the brain sends it),
    else its subject's venue token; `auto` (or no exchange) goes to `default`."""

    default: str = ""
    """The venue `auto` means. Empty: the only venue (required with more than one)."""


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
    open_orders_streaming_interval_ms: int = 30_000
    """The open-orders pass while the venue's user-data stream is running (its order
    updates are pushed; the pass is the safety net); never below the interval above."""
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
    presence_interval_ms: int = 10
    """How often a standby probes the lease holder's presence subject (`core/presence.py`:
    a holder whose process is gone is replaced without waiting for its lease); 0: off."""
    presence_timeout_ms: int = 100
    presence_confirm_count: int = 3
    """"No responders" answers in a row that mean the holder is gone..."""
    presence_confirm_ms: int = 30
    """... the first and the last at least this far apart (a live holder whose NATS node
    died is away this long while it reconnects elsewhere) ..."""
    presence_window_ms: int = 300
    """... and all within this window."""


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
    """The single-venue shape (`[venue]`); with `[venues.<name>]` tables, the default
    venue's entry (filled in at load, so that what reads one venue reads the default)."""
    venues: dict[str, VenueConfig] = field(default_factory=dict)
    """Every venue by name (`[venues.<name>]`; the single `[venue]` as its one entry).
    Filled at load: never empty in a loaded configuration."""
    routing: RoutingConfig = field(default_factory=RoutingConfig)
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
    def venue_list(self) -> list[VenueConfig]:
        """Every venue entry, the default first (a configuration built by hand without
        `load`: the single `venue`)."""
        if not self.venues:
            return [self.venue]
        default = self.default_venue
        return sorted(self.venues.values(), key=lambda v: (v.name != default, v.name))

    @property
    def default_venue(self) -> str:
        """The venue `auto` routes to."""
        return self.routing.default or self.venue.name

    def account_of(self, v: VenueConfig) -> str:
        return v.account or self.service.account

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
        for entry in doc["venues"].values():
            for key in ("api_key", "api_secret", "api_password"):
                if entry[key]:
                    entry[key] = "***"
            entry["base_url"] = redact_urls(entry["base_url"])
        return doc


SECRET_KEYS = [
    ("security", "hmac_secret"),
    ("security", "hmac_secrets"),
    ("security", "api_key"),
    ("nats", "password"),
    ("nats", "token"),
    ("venue", "api_key"),
    ("venue", "api_secret"),
    ("venue", "api_password"),
]

URL_KEYS = [("nats", "url"), ("venue", "base_url")]
"""Settings holding URLs, which may carry a password or a token (``user:pass@``)."""


def redact_urls(value: str) -> str:
    """A comma-separated list of URLs with the password or token of each replaced."""
    return ",".join(redact_url(u.strip()) if u.strip() else u for u in value.split(","))
