"""The pure part of ``titan-exec nats migrate`` (``cmdmigrate.py`` runs it against NATS):
which stream ``TITAN_CMD`` and its copy are (``classify_cmd``), the steps left from each
state a migration can be found in (``plan_migration``: so an interrupted one resumes), the
forms a message takes in the copy and back (``copy_form``, ``restored_form``), what the dry
run counts (``Survey``) and the stream configurations involved. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from nats.js.api import RetentionPolicy, StorageType, StreamConfig, SubjectTransform

from titan_exec.adapters.nats.headers import MSG_ID
from titan_exec.adapters.nats.streams import (
    CMD_STREAM,
    MIGRATION_COPY_STREAM,
    MIGRATION_RESTORE_PREFIX,
    stream_config,
)

CMD = CMD_STREAM.name
COPY = MIGRATION_COPY_STREAM
OLD_SUBJECTS = ("titan.cmd.>",)
CLOSED_SUBJECT = "titan-migrate.closed.TITAN_CMD"
COPY_PREFIX = "titan-migrate.copy."
RESTORE_PREFIX = MIGRATION_RESTORE_PREFIX
SEQ_HEADER = "Titan-Migrate-Seq"
HEADER_PREFIX = "Titan-Migrate-"


class MigrationFailed(RuntimeError):
    """A step or a check failed half way; what was not verified was not deleted, and
    running the migration again resumes it."""


# --- recognising the streams (pure) ---------------------------------------------------


class CmdKind(StrEnum):
    ABSENT = "absent"
    OLD = "the old deployment's WorkQueue stream"
    OLD_CLOSED = "the old deployment's WorkQueue stream, closed by an interrupted migration"
    RESTORING = "this service's stream, being restored by an interrupted migration"
    OURS = "this service's limits stream"
    UNKNOWN = "not recognised"


def _value(v: object) -> object:
    return getattr(v, "value", v)


def classify_cmd(cfg: StreamConfig | None) -> CmdKind:
    """What ``TITAN_CMD`` is, from its subjects and retention."""
    if cfg is None:
        return CmdKind.ABSENT
    subjects = tuple(cfg.subjects or ())
    retention = _value(cfg.retention)
    if retention == RetentionPolicy.WORK_QUEUE.value:
        if subjects == OLD_SUBJECTS:
            return CmdKind.OLD
        if subjects == (CLOSED_SUBJECT,):
            return CmdKind.OLD_CLOSED
    elif retention == RetentionPolicy.LIMITS.value:
        if subjects == (RESTORE_PREFIX + ">",):
            return CmdKind.RESTORING
        if OLD_SUBJECTS[0] in subjects:
            return CmdKind.OURS
    return CmdKind.UNKNOWN


def is_our_copy(cfg: StreamConfig) -> bool:
    return tuple(cfg.subjects or ()) == (COPY_PREFIX + ">",) and (
        _value(cfg.retention) == RetentionPolicy.LIMITS.value
    )


class Step(StrEnum):
    CLOSE = "close"
    DISCARD_COPY = "discard-copy"
    COPY = "copy"
    VERIFY_COPY = "verify-copy"
    DELETE_OLD = "delete-old"
    CREATE = "create"
    RESTORE = "restore"
    VERIFY_RESTORE = "verify-restore"
    OPEN = "open"
    VERIFY_KEPT = "verify-kept"
    DELETE_COPY = "delete-copy"


STEP_TEXT = {
    Step.CLOSE: f"close {CMD}: point its subjects to {CLOSED_SUBJECT}, so that no new "
    "command lands in it (producers' publishes on titan.cmd.> fail until it is open again)",
    Step.DISCARD_COPY: f"delete the copy {COPY} left by an interrupted run ({CMD} still "
    "holds every message)",
    Step.COPY: f"copy every message of {CMD}, in order, to {COPY} (subjects "
    f"{COPY_PREFIX}>; Nats-* headers stored as {HEADER_PREFIX}Nats-*)",
    Step.VERIFY_COPY: f"verify the copy against {CMD} message by message, and that {CMD} "
    "did not change meanwhile",
    Step.DELETE_OLD: f"delete {CMD} (its consumers go with it)",
    Step.CREATE: f"create {CMD} with the target configuration, taking only "
    f"{RESTORE_PREFIX}> (mapped back to the original subjects)",
    Step.RESTORE: f"restore the messages from {COPY} in order (continuing after those "
    "already restored, which are checked)",
    Step.VERIFY_RESTORE: f"verify {CMD} against {COPY} message by message",
    Step.OPEN: f"open {CMD}: subjects titan.cmd.>, the target configuration exactly",
    Step.VERIFY_KEPT: f"verify that {CMD} begins with every message of {COPY}",
    Step.DELETE_COPY: f"delete {COPY}",
}

_FULL = (
    Step.COPY,
    Step.VERIFY_COPY,
    Step.DELETE_OLD,
    Step.CREATE,
    Step.RESTORE,
    Step.VERIFY_RESTORE,
    Step.OPEN,
    Step.DELETE_COPY,
)


@dataclass(frozen=True, slots=True)
class Plan:
    """What the migration does from here: ``steps`` (empty: nothing to do), or why it
    refuses (``refusal``); ``summary`` is the sentence to show."""

    cmd: CmdKind
    has_copy: bool
    steps: tuple[Step, ...] = ()
    refusal: str | None = None
    summary: str = ""


def plan_migration(cmd: StreamConfig | None, copy: StreamConfig | None) -> Plan:
    """The steps from the current state of ``TITAN_CMD`` and its copy."""
    kind = classify_cmd(cmd)
    has_copy = copy is not None
    if kind is CmdKind.UNKNOWN:
        assert cmd is not None
        return Plan(
            kind,
            has_copy,
            refusal=f"{CMD} is not a stream this tool knows (subjects {cmd.subjects}, "
            f"retention {_value(cmd.retention)}): neither the old deployment's "
            f"(WorkQueue, {list(OLD_SUBJECTS)}) nor this service's (limits, with "
            f"{OLD_SUBJECTS[0]}); it is left alone, migrate it by hand",
        )
    if copy is not None and not is_our_copy(copy):
        return Plan(
            kind,
            has_copy,
            refusal=f"a stream {COPY} exists that this tool did not make (subjects "
            f"{copy.subjects}, retention {_value(copy.retention)}); it is left alone: "
            "remove or rename it first",
        )
    if kind is CmdKind.ABSENT and not has_copy:
        return Plan(
            kind,
            has_copy,
            summary=f"nothing to do: {CMD} does not exist "
            "(titan-exec run creates it with this service's configuration)",
        )
    if kind is CmdKind.OURS and not has_copy:
        return Plan(
            kind,
            has_copy,
            summary=f"nothing to do: {CMD} already has limits "
            "retention (this service's configuration)",
        )
    if kind is CmdKind.OURS:
        return Plan(
            kind,
            has_copy,
            (Step.VERIFY_KEPT, Step.DELETE_COPY),
            summary=f"an interrupted migration opened {CMD}; its copy is left to remove",
        )
    if kind in (CmdKind.OLD, CmdKind.OLD_CLOSED):
        close = (Step.CLOSE,) if kind is CmdKind.OLD else ()
        discard = (Step.DISCARD_COPY,) if has_copy else ()
        return Plan(
            kind,
            has_copy,
            (*close, *discard, *_FULL),
            summary=f"{CMD} is {kind.value}: it will be rebuilt with limits retention",
        )
    if kind is CmdKind.ABSENT:
        return Plan(
            kind,
            has_copy,
            _FULL[3:],
            summary=f"an interrupted migration deleted the old {CMD} after verifying its "
            f"copy {COPY}: the restore continues from the copy",
        )
    # RESTORING
    if has_copy:
        return Plan(
            kind,
            has_copy,
            _FULL[4:],
            summary=f"an interrupted migration was restoring {CMD}: it continues",
        )
    return Plan(
        kind,
        has_copy,
        (Step.OPEN,),
        summary=f"{CMD} was being restored but its copy {COPY} is gone (removed by hand?): "
        "it is opened as it is, without a check",
    )


# --- messages and their forms (pure) -----------------------------------------------------


Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class StoredMsg:
    """One stored message, as ``STREAM.MSG.GET`` returns it."""

    seq: int
    subject: str
    headers: Headers
    data: bytes
    is_exact: bool = True
    """False when its subject or headers were not valid UTF-8 or repeat a header name:
    what is written back is then the closest nats-py can publish."""


def parse_headers(block: bytes) -> tuple[Headers, bool]:
    """The (name, value) pairs of a NATS header block, and whether they are exact."""
    text = block.decode("utf-8", errors="replace")
    exact = "\ufffd" not in text
    lines = text.split("\r\n")
    pairs: list[tuple[str, str]] = []
    for line in lines[1:]:  # the first is the version (and status) line
        if not line:
            continue
        name, sep, value = line.partition(":")
        if sep:
            pairs.append((name.strip(), value.strip()))
    names = [n for n, _ in pairs]
    return tuple(pairs), exact and len(set(names)) == len(names)


def _renamed(name: str) -> str:
    """A header's name in the copy: ours and the server's are moved out of the way."""
    if name.lower().startswith(("nats-", HEADER_PREFIX.lower())):
        return HEADER_PREFIX + name
    return name


def copy_form(m: StoredMsg) -> tuple[str, dict[str, str]]:
    """(subject, headers) that ``m`` is copied with."""
    headers = {SEQ_HEADER: str(m.seq)}
    for name, value in m.headers:
        headers[_renamed(name)] = value
    return COPY_PREFIX + m.subject, headers


def restored_form(c: StoredMsg, seen_ids: set[str]) -> tuple[str, dict[str, str]]:
    """(original subject, headers) that the copy ``c`` is restored with; adds the
    ``Nats-Msg-Id`` it restores to ``seen_ids``."""
    if not c.subject.startswith(COPY_PREFIX):
        raise MigrationFailed(f"{COPY} seq {c.seq}: subject {c.subject!r} is not a copy's")
    headers: dict[str, str] = {}
    for name, value in c.headers:
        if name == SEQ_HEADER:
            continue
        if name == HEADER_PREFIX + MSG_ID and value not in seen_ids:
            seen_ids.add(value)
            headers[MSG_ID] = value
        elif name.startswith(HEADER_PREFIX + HEADER_PREFIX):
            headers[name.removeprefix(HEADER_PREFIX)] = value
        else:
            headers[name] = value
    return c.subject.removeprefix(COPY_PREFIX), headers


def same_message(m: StoredMsg, subject: str, headers: dict[str, str], data: bytes) -> bool:
    return m.subject == subject and dict(m.headers) == headers and m.data == data


@dataclass
class Survey:
    """What a stream holds, for the dry run and the checks."""

    messages: int = 0
    bytes: int = 0
    first_seq: int = 0
    last_seq: int = 0
    with_msg_id: int = 0
    repeated_ids: list[int] = field(default_factory=list)
    """Sequences whose Nats-Msg-Id an earlier message has: restored as
    Titan-Migrate-Nats-Msg-Id (the server would drop them as duplicates)."""
    other_nats_headers: dict[str, int] = field(default_factory=dict)
    """Nats-* headers other than Nats-Msg-Id, kept as Titan-Migrate-<name>."""
    inexact: list[int] = field(default_factory=list)
    _ids: set[str] = field(default_factory=set, repr=False)

    def add(self, m: StoredMsg) -> None:
        if not self.messages:
            self.first_seq = m.seq
        self.messages += 1
        self.last_seq = m.seq
        self.bytes += len(m.data)
        if not m.is_exact:
            self.inexact.append(m.seq)
        for name, value in m.headers:
            if name == MSG_ID:
                self.with_msg_id += 1
                if value in self._ids:
                    self.repeated_ids.append(m.seq)
                self._ids.add(value)
            elif name.lower().startswith("nats-"):
                self.other_nats_headers[name] = self.other_nats_headers.get(name, 0) + 1


def describe_config(cfg: StreamConfig) -> str:
    def limit(v: object) -> str:
        if v in (None, -1, 0, 0.0):
            return "unlimited"
        return f"{v:g}" if isinstance(v, float) else str(v)

    transform = cfg.subject_transform
    mapped = f", subject transform {transform.src} -> {transform.dest}" if transform else ""
    return (
        f"subjects {list(cfg.subjects or [])}{mapped}, retention {_value(cfg.retention)}, "
        f"storage {_value(cfg.storage)}, max_age {limit(cfg.max_age)} s, "
        f"max_msgs {limit(cfg.max_msgs)}, max_bytes {limit(cfg.max_bytes)}, "
        f"discard {_value(cfg.discard)}, duplicate_window {float(cfg.duplicate_window or 0):g} s, "
        f"replicas {cfg.num_replicas}"
    )


def target_config(*, replicas: int, duplicate_window_s: float) -> StreamConfig:
    """``TITAN_CMD`` as this service creates it (``streams.CMD_STREAM``)."""
    return stream_config(CMD_STREAM, replicas=replicas, duplicate_window_s=duplicate_window_s)


def restoring_config(target: StreamConfig) -> StreamConfig:
    return target.evolve(
        subjects=[RESTORE_PREFIX + ">"],
        subject_transform=SubjectTransform(src=RESTORE_PREFIX + ">", dest=">"),
        description=f"{CMD} being restored by titan-exec nats migrate (not open to producers yet)",
    )


def copy_config(replicas: int) -> StreamConfig:
    return StreamConfig(
        name=COPY,
        description=f"the waiting messages of {CMD} during titan-exec nats migrate; "
        "deleted when it completes: do not delete it by hand",
        subjects=[COPY_PREFIX + ">"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=replicas,
    )
