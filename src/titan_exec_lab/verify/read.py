"""Reading a run from the outside: the raw JetStream streams and the HTTP documents of the
venue simulator (`GET /sim/inspect`) and the instances (`GET /status`).

This module is the only I/O of `titan_exec_lab.verify`; what it returns is checked by the pure
`invariants.check`. It imports no service code: messages are kept as they were on the
wire (subject, headers, bytes), documents as parsed JSON.

Everything that cannot be read raises `CannotRead` with a sentence saying what and why, so
that "the run broke an invariant" (a `Report` with violations) stays apart from "the run
could not be looked at" (an exception).

Its own connection (`read_streams_at`) is a `ReadingClient`: nats-py 2.16 decodes every
delivered subject as strict UTF-8 inside its read loop, and a stored command whose subject
is not UTF-8 breaks that loop for good (reconnect, the same message again) — the checker
could not read `TITAN_CMD` at all, let alone count that command. The same three changes
as the service's connection (`adapters/nats/safeclient.py`), repeated here because this
package imports no service code: subjects decoded with ``surrogateescape`` (the bytes
stay recoverable), an unreadable header block delivered as no headers, and a stored
message's own `Status`/`Description` headers renamed (a forged `408` would make a fetch
drop the message as a server timeout). A caller with a connection of its own (the chaos
runner: the service's `connect`) passes its JetStream context to `read_stream(s)`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

CMD_STREAM = "TITAN_CMD"
RISK_STATE_SUBJECT = "titan.evt.risk.state.v1"
"""RiskGuardian's risk state (read beside the namespace's events; the service decides each
message once, in a `risk_state.decided` event carrying its `srcSeq`)."""
EVT_STREAM = "TITAN_EVT"


class CannotRead(Exception):
    """A stream, the venue or NATS could not be read: no verdict is possible."""


_STORED_REPLY_PREFIX = b"$JS.ACK."
_SERVER_HEADERS = ("Status", "Description")


class ReadingClient(Client):
    """A nats-py client that reads every stored message, whatever bytes its subject and
    headers are (see the module's docstring)."""

    def _build_message(
        self,
        sid: int,
        subject: bytes,
        reply: bytes,
        data: bytes,
        headers: dict[str, str] | None,
    ) -> Any:
        if headers and reply.startswith(_STORED_REPLY_PREFIX):
            for name in _SERVER_HEADERS:
                if name in headers:
                    headers[f"Titan-Untrusted-{name}"] = headers.pop(name)
        return self.msg_class(
            subject=subject.decode("utf-8", "surrogateescape"),
            reply=reply.decode("utf-8", "surrogateescape"),
            data=data,
            headers=headers,
            _client=self,
            _sid=sid,
        )

    async def _process_headers(self, headers: bytes | None) -> dict[str, str] | None:
        try:
            result: dict[str, str] | None = await super()._process_headers(headers)
        except (UnicodeDecodeError, ValueError, IndexError):
            return None
        return result


@dataclass(frozen=True, slots=True)
class RawMsg:
    """One stream message as stored: its stream sequence, subject, headers and body, and
    `ts`, the time JetStream stored it (Unix seconds; 0.0 when unknown)."""

    seq: int
    subject: str
    headers: Mapping[str, str]
    data: bytes
    ts: float = 0.0

    def doc(self) -> Any:
        """The body as JSON; `ValueError` when it is not (also for nesting deeper than
        the parser's recursion limit, which CPython's `json` raises as RecursionError)."""
        try:
            return json.loads(self.data)
        except RecursionError:
            raise ValueError("JSON nested too deeply to read") from None


async def read_stream(
    js: JetStreamContext,
    stream: str,
    subject: str = ">",
    *,
    fetch_timeout_s: float = 1.0,
    patience_s: float = 15.0,
    start_seq: int = 1,
) -> list[RawMsg]:
    """Every message of `stream` on `subject` from stream sequence `start_seq` on, in
    stream order, up to the head as it was when the reading started (an ephemeral
    consumer that acknowledges nothing).

    The stream's leader says first how many messages it holds on `subject`; a read that
    brings fewer (the consumer was served by a replica still catching up after a node
    restart, or a fetch found no leader) is done again, and after `patience_s` it raises
    `CannotRead` rather than return a partial stream, which would read as lost commands
    or decisions of unknown ones. Raises nats-py's `NotFoundError` when the stream does
    not exist.

    `start_seq` > 1 (the whole stream, `subject` ">", only): for a caller that keeps what
    it read before, in a stream that only grows (`TITAN_CMD`: the chaos runner rereading
    it after every run). When the stream has deleted messages the leader cannot say how
    many lie above `start_seq`: then everything is read and the older ones dropped."""
    if start_seq > 1 and subject != ">":
        raise ValueError("read_stream: start_seq is for the whole stream (subject '>')")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience_s
    while True:
        expected, first = await _stored_count(js, stream, subject, start_seq)
        out = await _read_once(js, stream, subject, expected, fetch_timeout_s, deadline, first)
        if len(out) >= expected:
            return out if first >= start_seq else [m for m in out if m.seq >= start_seq]
        if loop.time() > deadline:
            raise CannotRead(
                f"{stream} ({subject}): read {len(out)} of the {expected} messages its "
                f"leader holds, for {patience_s:.0f} s"
            )
        await asyncio.sleep(0.5)


async def _stored_count(
    js: JetStreamContext, stream: str, subject: str, start_seq: int = 1
) -> tuple[int, int]:
    """(how many messages the stream's leader holds on `subject` from `start_seq` on, the
    sequence to read from): from 1 with the whole count when the messages above
    `start_seq` cannot be counted (deleted ones in the stream)."""
    if subject != ">":
        info = await js.stream_info(stream, subjects_filter=subject)
        return sum(int(n) for n in (info.state.subjects or {}).values()), 1
    state = (await js.stream_info(stream)).state
    if start_seq <= 1:
        return int(state.messages), 1
    if state.num_deleted:
        return int(state.messages), 1
    return max(0, int(state.last_seq) - max(start_seq, int(state.first_seq)) + 1), start_seq


async def _read_once(
    js: JetStreamContext,
    stream: str,
    subject: str,
    expected: int,
    fetch_timeout_s: float,
    deadline: float,
    start_seq: int = 1,
) -> list[RawMsg]:
    if expected == 0 and start_seq > 1:
        return []
    by_seq = {"deliver_policy": api.DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": start_seq}
    sub = await js.pull_subscribe(
        subject,
        stream=stream,
        config=api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=30.0,
            **(by_seq if start_seq > 1 else {"deliver_policy": api.DeliverPolicy.ALL}),
        ),
    )
    out: list[RawMsg] = []
    try:
        info = await sub.consumer_info()
        pending = int(info.num_pending or 0)
        while len(out) < pending:
            try:
                msgs = await sub.fetch(1000, timeout=fetch_timeout_s)
            except TimeoutError:
                if asyncio.get_running_loop().time() > deadline:
                    break  # the caller says how much was missing
                continue
            for m in msgs:
                meta: Any = m.metadata
                out.append(
                    RawMsg(
                        meta.sequence.stream,
                        m.subject,
                        dict(m.headers or {}),
                        m.data,
                        meta.timestamp.timestamp(),
                    )
                )
            if len(out) >= expected and msgs and msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return out


async def read_streams(js: JetStreamContext, ns: str = "exec") -> tuple[list[RawMsg], list[RawMsg]]:
    """(every command in `TITAN_CMD`, every event of namespace `ns` in `TITAN_EVT` and every
    RiskGuardian risk-state message there, in stream order).

    Raises `CannotRead` when a stream is missing."""
    try:
        commands = await read_stream(js, CMD_STREAM)
    except NotFoundError as err:
        raise CannotRead(f"stream {CMD_STREAM} not found ({err})") from err
    try:
        events = await read_stream(js, EVT_STREAM, f"titan.evt.{ns}.>")
        if ns != "risk":  # RiskGuardian's posture: each message needs one decision too
            events = sorted(
                events + await read_stream(js, EVT_STREAM, RISK_STATE_SUBJECT),
                key=lambda m: m.seq,
            )
    except NotFoundError as err:
        raise CannotRead(f"stream {EVT_STREAM} not found ({err})") from err
    return commands, events


async def read_streams_at(
    nats_url: str, ns: str = "exec", *, connect_timeout_s: float = 5.0
) -> tuple[list[RawMsg], list[RawMsg]]:
    """`read_streams` over a connection of its own to `nats_url` (closed afterwards)."""

    async def quiet(_err: Exception) -> None:
        return None  # nats-py logs each failed attempt with a traceback otherwise

    # floats for the durations: nats-py annotates them as int but only waits on them
    options: dict[str, Any] = {
        "connect_timeout": connect_timeout_s,
        "max_reconnect_attempts": 1,  # 0 would mean: retry this server forever
        "reconnect_time_wait": 0.2,
        "allow_reconnect": False,
        "error_cb": quiet,
    }
    nc = ReadingClient()
    try:
        await asyncio.wait_for(nc.connect(nats_url, **options), 2 * connect_timeout_s + 1)
    except (OSError, TimeoutError, nats.errors.Error) as err:
        raise CannotRead(
            f"cannot connect to NATS at {_redacted(nats_url)}: {err or type(err).__name__}"
        ) from err
    try:
        return await asyncio.wait_for(read_streams(nc.jetstream(), ns), 60)
    except (TimeoutError, nats.errors.Error) as err:
        raise CannotRead(
            f"cannot read the streams at {_redacted(nats_url)}: {err or type(err).__name__}"
        ) from err
    finally:
        await nc.close()


def get_json(url: str, *, timeout_s: float = 5.0, headers: Mapping[str, str] | None = None) -> Any:
    """GET `url` and parse the JSON answer (blocking: call it in a thread from asyncio).
    Raises `CannotRead`."""
    try:
        req = urllib.request.Request(url, headers=dict(headers or {}))
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise CannotRead(f"GET {url}: {err}") from err


def read_inspect(venue_url: str) -> dict[str, Any]:
    """The simulator's own record of the run (`GET /sim/inspect`). Raises `CannotRead`."""
    doc = get_json(venue_url.rstrip("/") + "/sim/inspect")
    if not isinstance(doc, dict) or "orders" not in doc or "trades" not in doc:
        raise CannotRead(f"{venue_url}/sim/inspect is not the simulator's inspection document")
    return doc


def read_statuses(
    urls: Sequence[str], api_key: str | None = None
) -> dict[str, dict[str, Any] | None]:
    """Each instance's full `/status` (the API key: `api_key`, else TITAN_EXECUTION_API_KEY),
    keyed by its `instance_id` (by its URL when it does not answer: None). An instance that
    does not answer is a finding, not a reading error; one that answers only the public part
    (no key) cannot be checked: `CannotRead`."""
    key = os.environ.get("TITAN_EXECUTION_API_KEY", "") if api_key is None else api_key
    out: dict[str, dict[str, Any] | None] = {}
    for url in urls:
        try:
            doc = get_json(url.rstrip("/") + "/status", headers={"X-API-Key": key})
        except CannotRead:
            out[url] = None
            continue
        if isinstance(doc, dict) and doc.get("view") == "public":
            raise CannotRead(f"{url}/status: the public part only (set TITAN_EXECUTION_API_KEY)")
        name = str(doc.get("instance_id") or url) if isinstance(doc, dict) else url
        out[name] = doc if isinstance(doc, dict) else None
    return out


def _redacted(urls: str) -> str:
    """NATS URLs with any password or token in them replaced by ``***``."""
    return re.sub(r"//([^/@:,]*):[^/@,]*@", r"//\1:***@", re.sub(r"//[^/@:,]+@", "//***@", urls))
