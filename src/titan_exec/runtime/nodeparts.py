"""The pieces the composition root builds from the configuration, each from what it uses."""

from __future__ import annotations

from collections.abc import Iterable

from nats.aio.client import Client as NatsClient

from titan_exec.adapters.nats.eventlog import EventLog
from titan_exec.config import Config
from titan_exec.core.decide import DecisionConfig
from titan_exec.core.events import Event
from titan_exec.core.positions import ClosedTrade
from titan_exec.core.risk import RiskLimits
from titan_exec.core.state import State
from titan_exec.runtime import views
from titan_exec.wire.ingress import IngressConfig
from titan_exec.wire.signing import Keyring
from titan_exec.wire.subjects import Subjects


def ingress_config(cfg: Config, subjects: Subjects) -> IngressConfig:
    """How the wire reads a command: subjects, keys, the signature tolerance, size limits."""
    sec = cfg.security
    return IngressConfig(
        subjects=subjects,
        keyring=Keyring(cfg.keyring_secrets),
        tolerance_ms=sec.timestamp_tolerance_s * 1000,
        max_payload_bytes=sec.max_payload_bytes,
        max_depth=sec.max_json_depth,
        max_values=sec.max_json_values,
    )


def decision_config(
    cfg: Config, venues: str | Iterable[str], default: str | None = None
) -> DecisionConfig:
    """What the core decides by: the venues (`default` is what `auto` means; one venue
    given by name: it) and the account each trades, the tolerance, the order TTL, the risk
    limits."""
    sec = cfg.security
    names = frozenset({venues} if isinstance(venues, str) else venues)
    default = default if default is not None else (venues if isinstance(venues, str) else "")
    if default not in names:
        raise ValueError(f"the default venue {default!r} is not among {sorted(names)}")
    return DecisionConfig(
        venues=names,
        default_venue=default,
        accounts={v.name: cfg.account_of(v) for v in cfg.venue_list if v.name in names},
        tolerance_ms=sec.timestamp_tolerance_s * 1000,
        order_ttl_ms=cfg.orders.ttl_ms,
        accept_unsigned_risk_reducing=sec.unsigned_risk_reducing == "accept",
        limits=RiskLimits(
            freshness_ms=cfg.risk.freshness_ms,
            heartbeat_stale_ms=cfg.risk.heartbeat_stale_ms,
            require_heartbeat=cfg.risk.require_heartbeat,
        ),
    )


def fenced_writes(cfg: Config) -> str:
    """``nats.fenced_writes`` resolved: ``auto`` is group commit on a replicated stream and
    pipelined single writes on one server, the faster of the two there (`titan-exec bench
    --cluster 3`: an atomic batch costs a single server more than a pipelined write)."""
    mode = cfg.nats.fenced_writes
    if mode == "auto":
        return "batch" if cfg.nats.replicas > 1 else "pipelined"
    return mode


def event_log(nc: NatsClient, state: State, cfg: Config, subjects: Subjects) -> EventLog:
    """The single writer over `state`, idle until an epoch is set; a closed round trip
    also publishes its trade record."""
    producer, subject = cfg.service.producer, subjects.trade_completed

    def trade_messages(trade: ClosedTrade, ev: Event) -> list[tuple[str, bytes]]:
        return views.trade_messages(state, trade, ev, producer=producer, subject=subject)

    return EventLog(
        nc,
        state,
        ns=cfg.service.namespace,
        producer=producer,
        on_closed_trade=trade_messages,
        is_batched=fenced_writes(cfg) == "batch",
        is_fence_pipelined=fenced_writes(cfg) == "pipelined",
        instance_id=cfg.service.instance_id,
        is_fencing_disabled=cfg.is_unsafe_fencing_disabled,
        # the server's limit, less room for the fence and id headers
        max_event_bytes=max(1024, int(nc.max_payload) - 4096),
    )
