"""The JetStream streams the execution service relies on, and creating them idempotently.

This module owns the stream definitions (``StreamSpec``: ``TITAN_CMD``, ``TITAN_EVT``,
``TITAN_DLQ``) and ``ensure_streams``, which creates them or brings an existing stream
to the wanted settings. It never changes what NATS cannot change in place and never
deletes anything: an old WorkQueue ``TITAN_CMD`` (as made by titan-execution-rs) is
reported with the migration steps instead.

Choices (see the contract README, JetStream paragraph):
- ``TITAN_CMD`` uses limits retention: a work queue would split commands between the
  active and the standby; with limits each instance reads every command through its
  own durable consumer.
- All streams keep a duplicate window; producers set ``Nats-Msg-Id`` (the intent's
  idempotency key), so a re-published intent is stored once.
- ``TITAN_EVT`` is the service's event log (the state is a fold over it). When a size
  limit is configured it discards *new* writes, which fail loudly, instead of silently
  dropping the oldest events; it never has an age or count limit (one would delete the
  newest epoch marker after a quiet spell, and events no snapshot covers yet). Its
  history is trimmed by the active below the oldest snapshot kept (`retention.purge`).
- Subjects that an existing stream has beyond ours are kept (another service may rely
  on them); ours are added if missing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import APIError, NotFoundError

from titan_exec.adapters.nats.errors import is_stream_name_in_use, is_subjects_overlap

log = logging.getLogger(__name__)

_NS = 1_000_000_000
_DAY_S = 86_400.0


class StreamSetupError(RuntimeError):
    """A stream could not be created or brought to the wanted settings."""


class StreamMigrationError(StreamSetupError):
    """An existing stream needs a manual migration (NATS cannot change it in place)."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """What one stream must look like. ``max_age_s`` 0 and ``max_bytes`` -1 mean unlimited."""

    name: str
    subjects: tuple[str, ...]
    description: str
    retention: RetentionPolicy = RetentionPolicy.LIMITS
    discard: DiscardPolicy = DiscardPolicy.OLD
    storage: StorageType = StorageType.FILE
    max_age_s: float = 0.0
    max_bytes: int = -1
    allow_atomic: bool = False
    """Atomic batch publish (nats-server 2.12+): the event log's group commit."""


CMD_STREAM = StreamSpec(
    name="TITAN_CMD",
    subjects=("titan.cmd.>",),
    description="Titan commands (intents, control). Limits retention: every instance "
    "reads every command with its own durable consumer.",
    max_age_s=7 * _DAY_S,
)
EVT_STREAM = StreamSpec(
    name="TITAN_EVT",
    subjects=("titan.evt.>",),
    description="Titan events; the execution service's event log (epoch-fenced writes).",
    discard=DiscardPolicy.NEW,
    allow_atomic=True,
)
DLQ_STREAM = StreamSpec(
    name="TITAN_DLQ",
    subjects=("titan.dlq.>",),
    description="Titan dead letters: {payload, reason, t_ingress}.",
    max_age_s=30 * _DAY_S,
)
TITAN_STREAMS: tuple[StreamSpec, ...] = (CMD_STREAM, EVT_STREAM, DLQ_STREAM)


def stream_config(spec: StreamSpec, *, replicas: int, duplicate_window_s: float) -> StreamConfig:
    """The nats-py ``StreamConfig`` for ``spec``."""
    return StreamConfig(
        name=spec.name,
        description=spec.description,
        subjects=list(spec.subjects),
        retention=spec.retention,
        discard=spec.discard,
        storage=spec.storage,
        num_replicas=replicas,
        duplicate_window=duplicate_window_s,
        max_age=spec.max_age_s,
        max_bytes=spec.max_bytes,
        allow_atomic=True if spec.allow_atomic else None,
    )


def _ns(seconds: float | None) -> int:
    return round((seconds or 0.0) * _NS)


def _value(v: object) -> object:
    """Enum members and the raw strings nats-py returns from stream info compare equal."""
    return getattr(v, "value", v)


def _differences(current: StreamConfig, wanted: StreamConfig) -> list[str]:
    """The managed settings in which ``current`` differs from ``wanted``, human readable."""
    diffs: list[str] = []
    missing = [s for s in wanted.subjects or [] if s not in (current.subjects or [])]
    if missing:
        diffs.append(f"subjects: add {missing}")
    for name in ("retention", "storage", "discard", "num_replicas", "max_bytes", "description"):
        have, want = _value(getattr(current, name)), _value(getattr(wanted, name))
        if have != want:
            diffs.append(f"{name}: {have!r} -> {want!r}")
    for name in ("max_age", "duplicate_window"):
        have_s, want_s = getattr(current, name), getattr(wanted, name)
        if _ns(have_s) != _ns(want_s):
            diffs.append(f"{name}: {have_s}s -> {want_s}s")
    if wanted.allow_atomic and not current.allow_atomic:
        diffs.append("allow_atomic: off -> on")
    return diffs


def _workqueue_migration_message(name: str) -> str:
    return (
        f"stream {name} exists with WorkQueue retention (as the old titan-execution-rs "
        "service created it). A work queue hands each command to only one consumer, so a "
        "hot standby would miss commands; this service needs limits retention and one "
        "durable consumer per instance. NATS cannot change retention to or from WorkQueue "
        "in place, and this service will not delete the stream for you. To migrate: stop "
        f"the old service and every consumer of {name}; run `titan-exec nats migrate` (a dry "
        "run: what it would do, and how many commands are waiting), then `titan-exec nats "
        "migrate --apply`, which rebuilds it with limits retention and every waiting "
        "command in order; then start this service."
    )


MIGRATION_COPY_STREAM = "TITAN_CMD_MIGRATION"
"""Where `titan-exec nats migrate` keeps TITAN_CMD's waiting messages while it rebuilds it."""
MIGRATION_RESTORE_PREFIX = "titan-migrate.restore."
"""The only subjects TITAN_CMD takes while `titan-exec nats migrate` restores it."""


async def _refuse_unfinished_migration(js: JetStreamContext) -> None:
    """A start in the middle of `titan-exec nats migrate` would open TITAN_CMD before its
    waiting commands are back (or create an empty one beside their copy)."""
    try:
        await js.stream_info(MIGRATION_COPY_STREAM)
    except NotFoundError:
        return
    raise StreamMigrationError(
        f"a migration of {CMD_STREAM.name} has not finished: {MIGRATION_COPY_STREAM} holds "
        f"its waiting commands; run `titan-exec nats migrate --apply` again to complete it, "
        "then start this service"
    )


def _api_failure(name: str, action: str, exc: APIError) -> StreamSetupError:
    return StreamSetupError(
        f"cannot {action} stream {name}: {exc.description} "
        f"(code {exc.code}, err_code {exc.err_code})"
    )


async def _overlap_error(js: JetStreamContext, spec: StreamSpec, exc: APIError) -> StreamSetupError:
    owners: list[str] = []
    for subject in spec.subjects:
        try:
            owners.append(await js.find_stream_name_by_subject(subject))
        except APIError:
            continue
    who = f" (already captured by stream {', '.join(sorted(set(owners)))})" if owners else ""
    return StreamSetupError(
        f"cannot create stream {spec.name}: its subjects {list(spec.subjects)} overlap with "
        f"another stream{who}; remove or narrow that stream first "
        f"(err_code {exc.err_code})"
    )


async def ensure_stream(
    js: JetStreamContext, spec: StreamSpec, *, replicas: int = 1, duplicate_window_s: float = 120.0
) -> StreamInfo:
    """Create ``spec``'s stream, or bring the existing one to it. Idempotent."""
    wanted = stream_config(spec, replicas=replicas, duplicate_window_s=duplicate_window_s)
    try:
        info = await js.add_stream(config=wanted)
        log.debug("nats: stream %s present (created or identical)", spec.name)
        return _atomic_checked(spec, info)
    except APIError as exc:
        if is_subjects_overlap(exc):
            raise await _overlap_error(js, spec, exc) from exc
        if not is_stream_name_in_use(exc):
            raise _api_failure(spec.name, "create", exc) from exc

    try:
        current_info = await js.stream_info(spec.name)
    except APIError as exc:
        raise _api_failure(spec.name, "inspect", exc) from exc
    current = current_info.config
    if (
        _value(current.retention) == RetentionPolicy.WORK_QUEUE.value
        and spec.retention != RetentionPolicy.WORK_QUEUE
    ):
        raise StreamMigrationError(_workqueue_migration_message(spec.name))
    if _value(current.storage) != _value(spec.storage):
        raise StreamMigrationError(
            f"stream {spec.name} uses {_value(current.storage)} storage, wanted "
            f"{_value(spec.storage)}; NATS cannot change storage in place: back up and "
            "recreate the stream"
        )
    diffs = _differences(current, wanted)
    if not diffs:
        return current_info

    extra = [s for s in current.subjects or [] if s not in spec.subjects]
    updated = current.evolve(
        subjects=[*spec.subjects, *extra],
        retention=wanted.retention,
        discard=wanted.discard,
        num_replicas=wanted.num_replicas,
        duplicate_window=wanted.duplicate_window,
        max_age=wanted.max_age,
        max_bytes=wanted.max_bytes,
        description=wanted.description,
        allow_atomic=wanted.allow_atomic or current.allow_atomic,
    )
    log.warning("nats: updating stream %s: %s", spec.name, "; ".join(diffs))
    try:
        return _atomic_checked(spec, await js.update_stream(config=updated))
    except APIError as exc:
        raise _api_failure(spec.name, f"update ({'; '.join(diffs)})", exc) from exc


def _atomic_checked(spec: StreamSpec, info: StreamInfo) -> StreamInfo:
    """A server older than 2.12 ignores ``allow_atomic`` (it answers without it)."""
    if spec.allow_atomic and not info.config.allow_atomic:
        raise StreamSetupError(
            f"stream {spec.name} does not allow atomic batch publish (allow_atomic), which "
            "the event log's group commit needs: the server ignored the setting, so it is "
            "older than nats-server 2.12. Upgrade nats-server (2.12 or newer), or write one "
            "fenced event at a time (nats.fenced_writes = 'alone', or 'pipelined' on a single "
            "server), several times slower on a replicated stream"
        )
    return info


async def ensure_streams(
    js: JetStreamContext,
    *,
    replicas: int = 1,
    duplicate_window_s: float = 120.0,
    max_age_s: float | None = None,
    max_bytes: int | None = None,
    specs: Sequence[StreamSpec] = TITAN_STREAMS,
    atomic: bool = True,
) -> dict[str, StreamInfo]:
    """Create or update ``TITAN_CMD``, ``TITAN_EVT`` and ``TITAN_DLQ``; return their infos.

    ``max_age_s`` / ``max_bytes``, when given, override every spec's own limit
    (0 / -1 = unlimited); ``max_age_s`` never applies to ``TITAN_EVT`` (retention there is
    by snapshot and purge, `runtime/checkpoint.py`). ``replicas`` is 1 for a single
    server, 3 for a cluster. ``atomic`` False: no stream asks for atomic batch publish
    (a server older than 2.12, the event log writing one fenced event at a time); an
    existing stream's setting is left as it is.
    Raises StreamMigrationError for an old WorkQueue ``TITAN_CMD`` or one whose migration
    (`titan-exec nats migrate`) has not finished, and StreamSetupError for anything else
    NATS refuses.
    """
    if not 1 <= replicas <= 5:
        raise ValueError(f"replicas must be between 1 and 5, got {replicas}")
    if duplicate_window_s <= 0:
        raise ValueError(f"duplicate_window_s must be > 0, got {duplicate_window_s}")
    if max_age_s is not None and max_age_s < 0:
        raise ValueError(f"max_age_s must be >= 0 (0 = unlimited), got {max_age_s}")
    if max_bytes is not None and max_bytes != -1 and max_bytes < 1:
        raise ValueError(f"max_bytes must be -1 (unlimited) or > 0, got {max_bytes}")
    resolved: list[StreamSpec] = []
    for spec in specs:
        if max_age_s is not None and spec.name != EVT_STREAM.name:
            # never on the event log: an age limit would delete the newest epoch marker
            # after a quiet spell (every fenced write then fails) and events no snapshot
            # covers yet; its history is trimmed by snapshots (`retention.purge`)
            spec = replace(spec, max_age_s=max_age_s)
        if max_bytes is not None:
            spec = replace(spec, max_bytes=max_bytes)
        if not atomic:
            spec = replace(spec, allow_atomic=False)
        if 0 < spec.max_age_s < duplicate_window_s:
            raise ValueError(
                f"stream {spec.name}: duplicate_window_s ({duplicate_window_s}) must not exceed "
                f"max_age_s ({spec.max_age_s})"
            )
        resolved.append(spec)
    if any(spec.name == CMD_STREAM.name for spec in resolved):
        await _refuse_unfinished_migration(js)
    infos: dict[str, StreamInfo] = {}
    for spec in resolved:
        infos[spec.name] = await ensure_stream(
            js, spec, replicas=replicas, duplicate_window_s=duplicate_window_s
        )
    return infos


async def stream_last_seq(js: JetStreamContext, stream: str) -> int:
    """The sequence of the last message stored in ``stream`` (0 when it never had one)."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError as exc:
        raise StreamSetupError(f"stream {stream} does not exist") from exc
    return info.state.last_seq


__all__: list[str] = [
    "CMD_STREAM",
    "DLQ_STREAM",
    "EVT_STREAM",
    "MIGRATION_COPY_STREAM",
    "MIGRATION_RESTORE_PREFIX",
    "TITAN_STREAMS",
    "StreamMigrationError",
    "StreamSetupError",
    "StreamSpec",
    "ensure_stream",
    "ensure_streams",
    "stream_config",
    "stream_last_seq",
]
