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

Every state between the steps is recognised from the streams alone (``cmdplan.py``, the
pure part), so a migration that was interrupted is resumed by running it again
(``plan_migration``): before step 4 the old
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
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig, StreamInfo
from nats.js.errors import NotFoundError

from titan_exec.adapters.nats.cmdplan import (
    CLOSED_SUBJECT,
    CMD,
    COPY,
    RESTORE_PREFIX,
    STEP_TEXT,
    CmdKind,
    MigrationFailed,
    Plan,
    Step,
    StoredMsg,
    Survey,
    classify_cmd,
    copy_config,
    copy_form,
    describe_config,
    parse_headers,
    plan_migration,
    restored_form,
    restoring_config,
    same_message,
    target_config,
)
from titan_exec.adapters.nats.errors import NO_MESSAGE, reply_error_code

API_TIMEOUT_S = 5.0


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
        if reply_error_code(error) == NO_MESSAGE:
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
    "API_TIMEOUT_S",
    "CLOSED_SUBJECT",
    "CMD",
    "COPY",
    "RESTORE_PREFIX",
    "STEP_TEXT",
    "CmdKind",
    "ConsumerView",
    "Migration",
    "MigrationFailed",
    "Plan",
    "Step",
    "StoredMsg",
    "Survey",
    "classify_cmd",
    "consumers_of",
    "copy_config",
    "copy_form",
    "describe_config",
    "messages",
    "parse_headers",
    "plan_migration",
    "read_from",
    "restored_form",
    "restoring_config",
    "same_message",
    "stream_config_of",
    "survey",
    "target_config",
]
