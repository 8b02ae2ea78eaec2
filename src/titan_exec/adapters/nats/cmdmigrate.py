"""Migrating ``TITAN_CMD`` from the old deployment's WorkQueue stream to this service's
limits stream without losing a waiting command (``titan-exec nats migrate``).

The old deployment (titan-execution-rs, and the brain's ``ensureStreams``) created
``TITAN_CMD`` with subjects ``titan.cmd.>``, WorkQueue retention, file storage, 7 days'
age and a 60 s duplicate window. NATS cannot change retention to or from WorkQueue in
place, so the stream is rebuilt; its waiting messages go through a copy:

1. *close*: the old stream's subjects are pointed away (``CLOSED_SUBJECT``), so no new
   command lands in it while it is copied (a producer's publish then fails, it is not
   lost silently); its stored messages stay;
2. *copy* every stored message, in order, to ``TITAN_CMD_MIGRATION`` (subject
   ``titan-migrate.copy.<subject>``, header ``Titan-Migrate-Seq``; the headers the server
   would act on, ``Nats-*``, are stored as ``Titan-Migrate-Nats-*``: a copied
   ``Nats-Msg-Id`` must not be deduplicated);
3. *verify the copy* message by message against the old stream, and that the old stream
   did not change meanwhile;
4. only then *delete the old stream* (its consumers go with it);
5. *create* ``TITAN_CMD`` with the target configuration but taking only
   ``titan-migrate.restore.>``, mapped back to the original subject by a subject
   transform: no producer can slip a message in between the restored ones;
6. *restore* the copies in order: original subject, data and headers, ``Nats-Msg-Id``
   under its own name again (a repeat of an earlier id stays ``Titan-Migrate-Nats-Msg-Id``:
   the server would drop it as a duplicate; other ``Nats-*`` headers, conditions of the
   original publish such as ``Nats-Expected-*``, stay under their ``Titan-Migrate-`` name);
7. *verify the restore* message by message against the copy;
8. *open*: the subjects become ``titan.cmd.>``, the transform goes: exactly the target;
9. *delete the copy*.

Every state between the steps is recognised from the streams alone, so a migration that
was interrupted is resumed by running it again (``plan_migration``): before step 4 the old
stream still holds everything and a partial copy is discarded and made again; after it,
the verified copy does, and the restore continues where it stopped (checking what is
already there). Nothing is ever deleted before its copy was verified.

Messages are read by sequence (``STREAM.MSG.GET``, which does not consume from a work
queue) and written one at a time, each acknowledgement checked for the expected stream
and sequence. The original timestamps cannot be kept: the restored commands are stored
at the time of the migration (the 7-day age counts from then).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig, StreamInfo, SubjectTransform
from nats.js.errors import NotFoundError

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
MSG_ID = "Nats-Msg-Id"
ERR_NO_MESSAGE = 10037
API_TIMEOUT_S = 5.0


class MigrationRefused(RuntimeError):
    """A stream this tool does not recognise: it touches nothing."""


class MigrationBusy(RuntimeError):
    """The old stream still has a reader (the old service seems to run): nothing touched."""


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


# --- reading and writing (NATS) -----------------------------------------------------------


async def stream_config_of(js: JetStreamContext, name: str) -> StreamInfo | None:
    try:
        return await js.stream_info(name)
    except NotFoundError:
        return None


async def read_from(nc: Client, stream: str, seq: int) -> StoredMsg | None:
    """The first message of ``stream`` at or after ``seq`` (None: none left). A read by
    sequence, which takes nothing off a work queue."""
    request = json.dumps({"seq": seq, "next_by_subj": ">"}).encode()
    reply = await nc.request(f"$JS.API.STREAM.MSG.GET.{stream}", request, timeout=API_TIMEOUT_S)
    doc: dict[str, Any] = json.loads(reply.data)
    error = doc.get("error")
    if error is not None:
        if error.get("err_code") == ERR_NO_MESSAGE:
            return None
        raise MigrationFailed(f"cannot read {stream} at seq {seq}: {error.get('description')}")
    m = doc["message"]
    try:
        data = base64.b64decode(m.get("data") or "")
        block = base64.b64decode(m.get("hdrs") or "")
    except binascii.Error as err:
        raise MigrationFailed(f"{stream} seq {m.get('seq')}: undecodable reply ({err})") from err
    headers, exact = parse_headers(block) if block else ((), True)
    subject = str(m["subject"])
    return StoredMsg(
        seq=int(m["seq"]),
        subject=subject,
        headers=headers,
        data=data,
        is_exact=exact and "\ufffd" not in subject,
    )


async def messages(nc: Client, stream: str) -> AsyncIterator[StoredMsg]:
    """Every message of ``stream`` in stream order."""
    seq = 1
    while (m := await read_from(nc, stream, seq)) is not None:
        yield m
        seq = m.seq + 1


async def survey(nc: Client, stream: str) -> Survey:
    s = Survey()
    async for m in messages(nc, stream):
        s.add(m)
    return s


@dataclass(frozen=True, slots=True)
class ConsumerView:
    name: str
    filter_subject: str
    pending: int
    ack_pending: int
    waiting: int
    push_bound: bool

    @property
    def is_in_use(self) -> bool:
        return self.waiting > 0 or self.push_bound


async def consumers_of(js: JetStreamContext, stream: str) -> list[ConsumerView]:
    out: list[ConsumerView] = []
    for c in await js.consumers_info(stream):
        cfg = c.config
        filters = cfg.filter_subjects or ([cfg.filter_subject] if cfg.filter_subject else [])
        out.append(
            ConsumerView(
                name=c.name,
                filter_subject=",".join(filters) or ">",
                pending=c.num_pending or 0,
                ack_pending=c.num_ack_pending or 0,
                waiting=c.num_waiting or 0,
                push_bound=bool(c.push_bound),
            )
        )
    return out


Say = Callable[[str], None]
PROGRESS_EVERY = 500


class Migration:
    """The steps of a plan against one server (``run``)."""

    def __init__(self, nc: Client, *, target: StreamConfig, replicas: int, say: Say) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=API_TIMEOUT_S)
        self.target = target
        self.replicas = replicas
        self.say = say
        self._copied: tuple[int, int, int] | None = None
        """(messages, first_seq, last_seq) of the old stream when its copy was made."""

    async def run(self, plan: Plan) -> None:
        for n, step in enumerate(plan.steps, 1):
            self.say(f"step {n}/{len(plan.steps)}: {STEP_TEXT[step]}")
            await getattr(self, "_" + step.value.replace("-", "_"))()

    async def _info(self, name: str) -> StreamInfo:
        info = await stream_config_of(self.js, name)
        if info is None:
            raise MigrationFailed(f"stream {name} is gone")
        return info

    async def _publish(
        self, stream: str, seq: int, subject: str, headers: dict[str, str], data: bytes
    ) -> None:
        ack = await self.js.publish(subject, data, headers=headers, timeout=API_TIMEOUT_S)
        if ack.stream != stream or ack.seq != seq or ack.duplicate:
            raise MigrationFailed(
                f"writing seq {seq} of {stream}: the server stored it as {ack.stream} seq "
                f"{ack.seq}{' (duplicate)' if ack.duplicate else ''}"
            )

    async def _close(self) -> None:
        info = await self._info(CMD)
        if classify_cmd(info.config) is not CmdKind.OLD:
            raise MigrationFailed(f"{CMD} changed before it could be closed")
        await self.js.update_stream(info.config.evolve(subjects=[CLOSED_SUBJECT]))

    async def _discard_copy(self) -> None:
        await self.js.delete_stream(COPY)

    async def _copy(self) -> None:
        before = (await self._info(CMD)).state
        self._copied = (before.messages, before.first_seq, before.last_seq)
        await self.js.add_stream(copy_config(self.replicas))
        k = 0
        async for m in messages(self.nc, CMD):
            k += 1
            subject, headers = copy_form(m)
            await self._publish(COPY, k, subject, headers, m.data)
            if k % PROGRESS_EVERY == 0:
                self.say(f"  copied {k}/{before.messages}")
        self.say(f"  copied {k} messages")

    async def _verify_copy(self) -> None:
        old = await self._info(CMD)
        state = (old.state.messages, old.state.first_seq, old.state.last_seq)
        if self._copied is None or state != self._copied:
            raise MigrationFailed(
                f"{CMD} changed during the copy (messages, first, last seq: {self._copied} -> "
                f"{state}): is a consumer still taking from it? Nothing was deleted; run "
                "again once the old service is stopped"
            )
        copy = messages(self.nc, COPY)
        k = 0
        async for m in messages(self.nc, CMD):
            k += 1
            c = await anext(copy, None)
            subject, headers = copy_form(m)
            if c is None or c.seq != k or not same_message(c, subject, headers, m.data):
                raise MigrationFailed(
                    f"the copy differs from {CMD} at seq {m.seq} (copy seq {k}): nothing was "
                    "deleted; run again to make a new copy"
                )
        if await anext(copy, None) is not None or k != state[0]:
            raise MigrationFailed(f"the copy does not hold exactly the {state[0]} messages")
        self.say(f"  the copy holds the {k} messages of {CMD}, in order, with their headers")

    async def _delete_old(self) -> None:
        old = await self._info(CMD)
        state = (old.state.messages, old.state.first_seq, old.state.last_seq)
        if classify_cmd(old.config) is not CmdKind.OLD_CLOSED or state != self._copied:
            raise MigrationFailed(f"{CMD} changed after its copy was verified; not deleted")
        await self.js.delete_stream(CMD)

    async def _create(self) -> None:
        await self.js.add_stream(restoring_config(self.target))

    async def _restore(self) -> None:
        """Writes the copies not yet restored; those already there are checked."""
        present = (await self._info(CMD)).state.messages
        total = (await self._info(COPY)).state.messages
        if present:
            self.say(f"  {present} of {total} already restored: checking them, then going on")
        seen: set[str] = set()
        k = written = 0
        async for c in messages(self.nc, COPY):
            k += 1
            subject, headers = restored_form(c, seen)
            if k <= present:
                m = await read_from(self.nc, CMD, k)
                if m is None or m.seq != k or not same_message(m, subject, headers, c.data):
                    raise MigrationFailed(
                        f"{CMD} seq {k} is not the restored copy seq {c.seq}: stopped; "
                        f"{COPY} is kept (run `nats stream view` on both)"
                    )
                continue
            await self._publish(CMD, k, RESTORE_PREFIX + subject, headers, c.data)
            written += 1
            if k % PROGRESS_EVERY == 0:
                self.say(f"  restored {k}/{total}")
        self.say(f"  restored {written} messages ({k} in all)")

    async def _verify_restore(self, *, exact: bool = True) -> None:
        cmd = await self._info(CMD)
        copy_info = await self._info(COPY)
        seen: set[str] = set()
        k = 0
        async for c in messages(self.nc, COPY):
            k += 1
            subject, headers = restored_form(c, seen)
            m = await read_from(self.nc, CMD, k)
            if m is None or m.seq != k or not same_message(m, subject, headers, c.data):
                raise MigrationFailed(
                    f"{CMD} seq {k} differs from the copy seq {c.seq}: {COPY} is kept"
                )
        if k != copy_info.state.messages or (exact and cmd.state.messages != k):
            raise MigrationFailed(
                f"{CMD} holds {cmd.state.messages} messages, the copy {k}: {COPY} is kept"
            )
        self.say(f"  {CMD} holds the {k} messages of the copy, in order, with their headers")

    async def _open(self) -> None:
        info = await self._info(CMD)
        if classify_cmd(info.config) is not CmdKind.RESTORING:
            raise MigrationFailed(f"{CMD} is not in the restore state; not opened")
        await self.js.update_stream(self.target)

    async def _verify_kept(self) -> None:
        await self._verify_restore(exact=False)  # producers may have added more since

    async def _delete_copy(self) -> None:
        await self.js.delete_stream(COPY)


__all__ = [
    "CMD",
    "COPY",
    "CmdKind",
    "ConsumerView",
    "Migration",
    "MigrationBusy",
    "MigrationFailed",
    "MigrationRefused",
    "Plan",
    "Step",
    "StoredMsg",
    "Survey",
    "classify_cmd",
    "consumers_of",
    "copy_form",
    "describe_config",
    "plan_migration",
    "restored_form",
    "stream_config_of",
    "survey",
    "target_config",
]
