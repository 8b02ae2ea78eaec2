"""Checking a configuration at load: everything that can be checked without the network.

A bad setting stops start-up (exit 78) before any server starts or anything is written:
every value, the lease timing (`ha.*`, the leadership core's rules), the HMAC secrets
(`key_id:secret` pairs, each at least `MIN_SECRET_BYTES` long) and the risk policy file
(read and parsed). The first invalid setting raises `ConfigError`, naming it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from titan_exec.config.model import (
    Config,
    ConfigError,
    HaConfig,
    NatsConfig,
    OrdersConfig,
    RiskConfig,
    SecurityConfig,
    ServiceConfig,
    VenueConfig,
)
from titan_exec.core.leadership import LeaseTiming, LeaseTimingError
from titan_exec.core.policy import PolicyError, parse_policy
from titan_exec.core.presence import PresenceTiming, PresenceTimingError

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")

FENCED_WRITES = ("auto", "batch", "pipelined", "alone")
MIN_SECRET_BYTES = 8
"""The shortest HMAC secret accepted (each of them, in bytes): a floor against a
truncated file or a placeholder like ``x``, not a measure of strength. Use 32 random
bytes (``openssl rand -hex 32``)."""

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
    """Raise `ConfigError` for the first invalid setting (the checks run in this order)."""
    _validate_service(cfg.service)
    if require_secret and not cfg.keyring_secrets:
        raise ConfigError(
            "security.hmac_secret: no HMAC secret configured (set HMAC_SECRET): refusing to start"
        )
    _validate_secrets(cfg.security)
    _validate_nats(cfg.nats)
    if not 0 <= cfg.http.port <= 65535:
        raise ConfigError(f"http.port: out of range: {cfg.http.port}")
    if require_secret:  # the service itself (the tools that load a config serve no HTTP)
        _validate_http_access(cfg)
    _validate_security_limits(cfg.security)
    if cfg.consumer.max_deliveries < 1:
        raise ConfigError(
            f"consumer.max_deliveries: must be >= 1, got {cfg.consumer.max_deliveries}"
        )
    _validate_risk(cfg.risk)
    _validate_orders(cfg.orders)
    _validate_snapshots(cfg)
    _validate_venues(cfg)
    if cfg.ha.enabled and cfg.ha.lease_ms < 1000:
        raise ConfigError("ha.lease_ms: must be >= 1000")
    _validate_lease_timing(cfg.ha)
    if cfg.truth.interval_ms <= 0:
        raise ConfigError("truth.interval_ms: must be > 0")
    _validate_reconcile(cfg)
    _validate_market(cfg)


def _validate_service(s: ServiceConfig) -> None:
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


def _validate_nats(n: NatsConfig) -> None:
    _validate_nats_urls(n.url)
    if not 1 <= n.replicas <= 5:
        raise ConfigError(f"nats.replicas: must be between 1 and 5, got {n.replicas}")
    if n.fenced_writes not in FENCED_WRITES:
        raise ConfigError(
            f"nats.fenced_writes: must be one of {', '.join(FENCED_WRITES)}, "
            f"got {n.fenced_writes!r}"
        )
    if n.fenced_writes == "pipelined" and n.replicas > 1:
        raise ConfigError(
            "nats.fenced_writes: 'pipelined' needs a single server (nats.replicas = 1): a "
            "replicated stream refuses a fenced write while another is in flight; use "
            "'batch' or 'auto'"
        )
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


def _validate_security_limits(sec: SecurityConfig) -> None:
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


def _validate_risk(r: RiskConfig) -> None:
    if r.policy_file:
        _validate_policy_file(r.policy_file)
    for key in ("freshness_ms", "heartbeat_stale_ms"):
        if getattr(r, key) <= 0:
            raise ConfigError(f"risk.{key}: must be > 0")


def _validate_orders(o: OrdersConfig) -> None:
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


def _validate_venue(v: VenueConfig, where: str) -> None:
    """One venue entry; `where` is how its keys are named (`venue` or `venues.<name>`)."""
    if v.kind not in ("paper", "ccxt"):
        raise ConfigError(f"{where}.kind: unknown venue kind {v.kind!r} (known: paper, ccxt)")
    if v.kind == "ccxt":
        if not v.exchange_id.isidentifier():
            raise ConfigError(f"{where}.exchange_id: not a ccxt id: {v.exchange_id!r}")
        if v.base_url and not v.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.base_url: must be an http(s) URL, got {v.base_url!r}")
        if v.timeout_ms <= 0:
            raise ConfigError(f"{where}.timeout_ms: must be > 0")
        if v.rate_limit_ms < 0:
            raise ConfigError(f"{where}.rate_limit_ms: must be >= 0 (0: ccxt's own pace)")
        if v.poll_interval_ms < 10:
            raise ConfigError(f"{where}.poll_interval_ms: must be >= 10")
    if not _TOKEN.match(v.name):
        raise ConfigError(f"{where}.name: must be one NATS token, got {v.name!r}")
    if v.account and not _TOKEN.match(v.account):
        raise ConfigError(f"{where}.account: must be one NATS token, got {v.account!r}")
    if v.paper.fill_slices < 1:
        raise ConfigError(f"{where}.paper.fill_slices: must be >= 1")
    _validate_budget(v, where)


def _validate_budget(v: VenueConfig, where: str) -> None:
    """The request-weight budget and the user-data stream's timers."""
    if v.weight_limit_1m < 0:
        raise ConfigError(f"{where}.weight_limit_1m: must be >= 0, got {v.weight_limit_1m}")
    if not 0 < v.weight_share <= 1:
        raise ConfigError(f"{where}.weight_share: must be in (0, 1], got {v.weight_share}")
    if v.stream_silence_ms < 1000:
        raise ConfigError(f"{where}.stream_silence_ms: must be >= 1000, got {v.stream_silence_ms}")
    if v.sweep_interval_ms < 1000:
        raise ConfigError(f"{where}.sweep_interval_ms: must be >= 1000, got {v.sweep_interval_ms}")


def _validate_venues(cfg: Config) -> None:
    """Every venue entry, named as the configuration names it."""
    if not cfg.venues or list(cfg.venues.values()) == [cfg.venue]:
        _validate_venue(cfg.venue, "venue")
        return
    for v in cfg.venue_list:
        _validate_venue(v, f"venues.{v.name}")


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


BUNDLED_POLICY_FILE = Path(__file__).resolve().parents[1] / "data" / "risk_policy.json"
"""The risk policy when `risk.policy_file` is empty."""

MARKET_POLL_MIN_MS = 100


def _validate_market(cfg: Config) -> None:
    """The poll interval, against the start policy's staleness bound (a later policy can
    tighten it; the refusal then says `market data ... ms old`)."""
    m = cfg.market
    if m.poll_interval_ms < MARKET_POLL_MIN_MS:
        raise ConfigError(
            f"market.poll_interval_ms: must be >= {MARKET_POLL_MIN_MS}, got {m.poll_interval_ms}"
        )
    is_single = not cfg.venues or list(cfg.venues.values()) == [cfg.venue]
    for v in cfg.venue_list:
        p, where = v.paper, "venue.paper" if is_single else f"venues.{v.name}.paper"
        if p.prices_exchange_id and not p.prices_exchange_id.isidentifier():
            raise ConfigError(
                f"{where}.prices_exchange_id: not a ccxt id: {p.prices_exchange_id!r}"
            )
        if p.prices_base_url and not p.prices_base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{where}.prices_base_url: must be an http(s) URL, got {p.prices_base_url!r}"
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
    try:
        presence = presence_timing(ha)
    except PresenceTimingError as err:
        name = re.search(r"presence (\w+)", str(err))
        key = f"presence_{name.group(1)}" if name else "presence_interval_ms"
        raise ConfigError(f"ha.{key}: {err}") from None
    if presence.is_on and presence.window_ms >= ha.lease_ms:
        raise ConfigError(
            f"ha.presence_window_ms: {presence.window_ms} must be below ha.lease_ms "
            f"({ha.lease_ms}): presence exists to be faster than the lease"
        )


def presence_timing(ha: HaConfig) -> PresenceTiming:
    return PresenceTiming(
        interval_ms=ha.presence_interval_ms,
        timeout_ms=ha.presence_timeout_ms,
        confirm_count=ha.presence_confirm_count,
        confirm_ms=ha.presence_confirm_ms,
        window_ms=ha.presence_window_ms,
    )


def _validate_reconcile(cfg: Config) -> None:
    rc = cfg.reconcile
    for key in (
        "open_orders_interval_ms",
        "open_orders_streaming_interval_ms",
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
    for v in cfg.venue_list:
        if v.kind == "ccxt":
            fill_poll_ms = max(fill_poll_ms, v.poll_interval_ms)
    if rc.position_confirm_ms < 2 * fill_poll_ms:
        raise ConfigError(
            f"reconcile.position_confirm_ms ({rc.position_confirm_ms}): must be at least "
            f"twice the fill poll interval ({fill_poll_ms} ms)"
        )
