"""Configuration: one place that reads the TOML file, the environment and the flags.

Precedence: defaults < TOML file < environment < command-line flags. Every section is a
frozen dataclass; unknown keys are rejected; types are checked; the first invalid setting
stops start-up with a message that names it (`ConfigError`). Secrets are never printed
(`redacted()` is what logs see).

Environment variables of the existing service keep their meaning: `HMAC_SECRET`,
`HMAC_TIMESTAMP_TOLERANCE` (seconds), `NATS_URL`, `NATS_USER`/`NATS_PASS`, `PORT`,
`TITAN_EXECUTION_API_KEY`. Others: `HMAC_SECRETS` (``key_id:secret,...``), `NATS_TOKEN`,
`NATS_CREDS`, `TITAN_STATE_DIR`, `TITAN_INSTANCE_ID`, `TITAN_NAMESPACE`, `TITAN_CONFIG`,
`EXECUTION_MODE`, `TITAN_VENUE_*`; with `[venues.<name>]` tables, `TITAN_VENUES_<NAME>_<KEY>`
and `TITAN_ROUTING_DEFAULT` (`config/venues.py`). Every secret variable also has a
`<VAR>_FILE` form that names a file holding it (Docker secrets).

Everything that can be checked without the network is checked at load, so that a bad setting
stops start-up (exit 78) before any server starts or anything is written: every value, the
lease timing (`ha.*`, the leadership core's rules), the HMAC secrets (`key_id:secret` pairs,
each at least `MIN_SECRET_BYTES` long) and the risk policy file (read and parsed).

`TITAN_UNSAFE_DISABLE_FENCING=1` is the deliberately broken build of the chaos tests
(issue 5): no epoch fence on event writes, no self-fencing of a leader. It is read from the
environment only (no file key, no flag: a production config cannot reach it by a typo);
any value other than ``1`` (or unset/empty) stops start-up.

The package: `model` (the sections and `Config`), `sources` (the layers, coercion, building),
`venues` (the two venue shapes as one `Config.venues`) and `checks` (`validate`); every name
is imported from ``titan_exec.config``.
"""

from __future__ import annotations

from titan_exec.config.checks import (
    BUNDLED_POLICY_FILE,
    MARKET_POLL_MIN_MS,
    MIN_HORIZON_MS,
    MIN_SECRET_BYTES,
    is_loopback_host,
    validate,
)
from titan_exec.config.model import (
    SECRET_KEYS,
    UNSAFE_DISABLE_FENCING_ENV,
    URL_KEYS,
    Config,
    ConfigError,
    ConsumerConfig,
    HaConfig,
    HttpConfig,
    MarketConfig,
    NatsConfig,
    OrdersConfig,
    PaperConfig,
    ReconcileConfig,
    RetentionConfig,
    RiskConfig,
    RoutingConfig,
    SecurityConfig,
    ServiceConfig,
    SnapshotsConfig,
    TruthConfig,
    VenueConfig,
    redact_urls,
)
from titan_exec.config.sources import ENV, is_fencing_disabled_by, load

__all__: list[str] = [
    "BUNDLED_POLICY_FILE",
    "ENV",
    "MARKET_POLL_MIN_MS",
    "MIN_HORIZON_MS",
    "MIN_SECRET_BYTES",
    "SECRET_KEYS",
    "UNSAFE_DISABLE_FENCING_ENV",
    "URL_KEYS",
    "Config",
    "ConfigError",
    "ConsumerConfig",
    "HaConfig",
    "HttpConfig",
    "MarketConfig",
    "NatsConfig",
    "OrdersConfig",
    "PaperConfig",
    "ReconcileConfig",
    "RetentionConfig",
    "RiskConfig",
    "RoutingConfig",
    "SecurityConfig",
    "ServiceConfig",
    "SnapshotsConfig",
    "TruthConfig",
    "VenueConfig",
    "is_fencing_disabled_by",
    "is_loopback_host",
    "load",
    "redact_urls",
    "validate",
]
