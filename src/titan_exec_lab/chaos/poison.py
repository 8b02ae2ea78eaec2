"""Hostile input for the chaos matrix's `poison-burst`: a corpus of raw messages for the
command subjects of a namespace, and a publisher that writes them byte for byte.

`build_corpus(seed, ...)` returns `RawRecord`s (subject, header block, payload, all bytes,
and the `kind` that names what is hostile about it): subjects that are not UTF-8, lone
surrogates escaped in JSON (`"\\udc00"`) and as raw CESU-8 bytes (`ED B0 80`), invalid
UTF-8, 10,000 levels of nesting, numbers a double cannot hold (`1e400`, `1e-400`, 10^5000),
`NaN`/`Infinity`, duplicate keys, a payload of exactly `DEFAULT_MAX_BYTES` (256 KiB) and
one byte more, an empty payload, header blocks with bytes that are not ASCII and header
blocks that look like a server's status line (`NATS/1.0 408`, `NATS/1.0 100 Idle
Heartbeat`, ...), and correctly signed intents whose unsigned envelope fields
(`correlation_id`, `id`, `idempotency_key`) or signed fields (`signal_id`, `symbol`, ...)
hold a lone surrogate. `max_size_burst(seed, n)` is item 5's burst: `n` messages of
exactly the size limit, garbage and well-formed unsigned envelopes (the ones that cost
parsing time). Both are deterministic for a seed (and `now_ms`, which the signed ones
carry: a receiver refuses a timestamp that is not fresh).

`raw_publish(host, port, records)` speaks the NATS client protocol itself over one TCP
connection (INFO, CONNECT, PUB/HPUB, PING/PONG): nats-py only publishes `str` subjects,
so it cannot send a subject that is not UTF-8, nor a header block it did not build. Each
message is published with a reply subject, so the stream's acknowledgement (its sequence
in `TITAN_CMD`, or the stream's error) comes back per record; the final PING/PONG says the
server processed every line. A `-ERR` from the server raises `RawPublishError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from titan_exec.wire.envelope import DEFAULT_MAX_BYTES, sign_envelope
from titan_exec.wire.subjects import Subjects

__all__ = [
    "KINDS",
    "MAX_SIZE_KINDS",
    "RawPublishError",
    "RawRecord",
    "Stored",
    "build_corpus",
    "max_size_burst",
    "raw_publish",
]

LONE: Final = "\udc00"
"""A lone (trailing) surrogate: what a JavaScript string can hold and UTF-8 cannot."""
CESU_LONE: Final = b"\xed\xb0\x80"
"""U+DC00 encoded as if it were a character (CESU-8 / WTF-8): invalid UTF-8."""

KINDS: Final[tuple[str, ...]] = (
    "subject-not-utf8",
    "surrogate-escaped",
    "surrogate-raw",
    "invalid-utf8",
    "deep-nesting",
    "huge-number",
    "tiny-number",
    "nan-infinity",
    "duplicate-keys",
    "max-size",
    "over-max-size",
    "empty",
    "header-not-ascii",
    "header-status-line",
    "signed-surrogate-unsigned-field",
    "signed-surrogate-signed-field",
)
"""Every kind `build_corpus` produces, at least one record each."""

MAX_SIZE_KINDS: Final[tuple[str, ...]] = ("max-size-garbage", "max-size-envelope")
"""The kinds of `max_size_burst`, alternating."""

_CRLF: Final = b"\r\n"
_PROTOCOL_DELIMITERS: Final = frozenset(b" \t\r\n")


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One message as it goes on the wire. `headers` is a whole header block
    (`NATS/1.0...\\r\\n\\r\\n`) or None for a plain PUB."""

    kind: str
    subject: bytes
    headers: bytes | None
    payload: bytes

    @property
    def size(self) -> int:
        """What counts against the server's max_payload: headers and payload."""
        return len(self.headers or b"") + len(self.payload)


# ------------------------------------------------------------------------------ corpus
@dataclass
class _Maker:
    rng: random.Random
    secret: bytes
    now_ms: int
    subjects: Subjects
    venue: str
    account: str
    seed: int
    _n: int = 0

    def place(self, symbol: str = "BTC/USDT") -> bytes:
        return self.subjects.place(self.venue, self.account, symbol).encode()

    def control(self, action: str) -> bytes:
        return self.subjects.control(action).encode()

    def nonce(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def signal_id(self) -> str:
        self._n += 1
        return f"poison-{self.seed}-{self._n}"

    def intent(self, signal_id: str | None = None, **fields: Any) -> dict[str, Any]:
        """A valid intent payload, as the brain builds it: a small market order."""
        sid = signal_id if signal_id is not None else self.signal_id()
        kind = self.rng.choice(("BUY_SETUP", "SELL_SETUP"))
        doc: dict[str, Any] = {
            "schema_version": "1.0.0",
            "signal_id": sid,
            "source": "brain",
            "symbol": "BTC/USDT",
            "direction": 1 if kind == "BUY_SETUP" else -1,
            "type": kind,
            "size": 0.002,
            "status": "VALIDATED",
            "t_signal": self.now_ms,
            "metadata": {"correlation_id": sid},
        }
        doc.update(fields)
        return doc

    def signed(self, payload: dict[str, Any], **envelope: str) -> bytes:
        """Correctly signed envelope bytes (`sign_envelope`, the JavaScript signer's view:
        a lone surrogate goes on the wire as its escape `\\udxxx`, and is signed so)."""
        # the envelope's own fields plain ASCII unless asked otherwise: one hostile field
        # at a time
        sid = str(payload.get("signal_id", "")).encode("ascii", "ignore").decode()
        fields: dict[str, str] = {
            "id": f"env-{sid}",
            "correlation_id": sid,
            "idempotency_key": sid,
        }
        fields.update(envelope)
        return sign_envelope(
            payload,
            secret=self.secret,
            ts_ms=self.now_ms,
            nonce=self.nonce(),
            type_=self.subjects.place_type,
            producer="titan-brain",
            key_id="default",
            id=fields["id"],
            correlation_id=fields["correlation_id"],
            idempotency_key=fields["idempotency_key"],
        )

    def unsigned(self, payload_text: str, **top: str) -> bytes:
        """An envelope of the right shape whose signature is wrong, around a payload given
        as JSON text (which may be anything but valid)."""
        fields = "".join(f',"{k}":{v}' for k, v in top.items())
        return (
            f'{{"type":"{self.subjects.place_type}","version":1,"producer":"poison",'
            f'"ts":{self.now_ms},"nonce":"{self.nonce()}","sig":"{"0" * 64}"{fields},'
            f'"payload":{payload_text}}}'
        ).encode()

    def garbage(self, n: int) -> bytes:
        return self.rng.randbytes(n)


def build_corpus(
    seed: int,
    *,
    secret: bytes,
    now_ms: int,
    ns: str = "exec",
    venue: str = "sim",
    account: str = "main",
) -> list[RawRecord]:
    """The hostile messages for the command subjects of namespace `ns`, every kind of
    `KINDS` at least once, in a fixed order; the same list for the same arguments."""
    m = _Maker(random.Random(seed), secret, now_ms, Subjects(ns), venue, account, seed)
    out: list[RawRecord] = []

    def add(kind: str, subject: bytes, payload: bytes, headers: bytes | None = None) -> None:
        out.append(RawRecord(kind, subject, headers, payload))

    place = m.place()
    prefix = f"titan.cmd.{ns}.".encode()
    # subjects that are not UTF-8: a valid signed intent on them, so that a message the
    # service drops instead of deciding is seen missing
    for subject in (
        prefix + f"place.v1.{venue}.{account}.BTC_".encode() + b"\xff\xfe",
        prefix + f"place.v1.{venue}.{account}.".encode() + b"\xed\xa0\x80USDT",
        prefix + b"control.v1.h\xe4lt",
        prefix + b"\xc0\xae.v1",
    ):
        add("subject-not-utf8", subject, m.signed(m.intent()))
    # lone surrogates, escaped: in the envelope's own fields, a key, the payload
    add("surrogate-escaped", place, m.unsigned('{"signal_id":"\\udc00"}', producer='"\\ud800"'))
    add("surrogate-escaped", place, m.unsigned('{"\\udfff":1,"symbol":"BTC/USDT\\udc00"}'))
    add("surrogate-escaped", m.control("halt"), m.unsigned('{"action":"\\udc00"}'))
    # ... and raw (CESU-8 bytes)
    add("surrogate-raw", place, m.unsigned('{"signal_id":"LONE"}').replace(b"LONE", CESU_LONE))
    raw_signed = m.signed(m.intent(m.signal_id() + LONE))
    add("surrogate-raw", place, raw_signed.replace(b"\\udc00", CESU_LONE))
    # invalid UTF-8
    add("invalid-utf8", place, b'{"type":"\xff\xfe"}')
    add("invalid-utf8", place, m.unsigned('{"signal_id":"CUT"}').replace(b"CUT", b"\xe2\x82"))
    add("invalid-utf8", m.control("arm"), b"\x80\x81\x82\xc0\xc1\xf5\xff")
    add("invalid-utf8", place, m.garbage(512))
    # deep nesting
    add("deep-nesting", place, b"[" * 10_000)
    add("deep-nesting", place, b"[" * 10_000 + b"]" * 10_000)
    add("deep-nesting", place, m.unsigned('{"a":' * 5_000 + "1" + "}" * 5_000))
    # numbers a double cannot hold
    for text in ("1e400", "-1e400", "1" + "0" * 5_000):
        add("huge-number", place, m.unsigned(_intent_text(m, size=text)))
    add("huge-number", place, m.unsigned(_intent_text(m, size="0.002"), ts="1" + "0" * 5_000))
    for text in ("1e-400", "0." + "0" * 5_000 + "1"):
        add("tiny-number", place, m.unsigned(_intent_text(m, size=text)))
    for text in ("NaN", "Infinity", "-Infinity"):
        add("nan-infinity", place, m.unsigned(_intent_text(m, size=text)))
    # duplicate keys: an envelope with two payloads; a signed intent whose size is given
    # twice (the last one is what was signed)
    add("duplicate-keys", place, m.unsigned('{"size":1},"payload":{"size":2}'))
    dup = m.signed(m.intent())
    add("duplicate-keys", place, dup.replace(b'"payload":{', b'"payload":{"size":1000,', 1))
    # sizes: exactly the limit, one byte over it, nothing
    add("max-size", place, m.garbage(DEFAULT_MAX_BYTES))
    add("over-max-size", place, m.garbage(DEFAULT_MAX_BYTES + 1))
    add("empty", place, b"")
    # on a control subject that increases risk: an empty (unsigned) halt would be a halt,
    # by the rule that lets unsigned controls reduce risk (core/controls.py)
    add("empty", m.control("arm"), b"")
    # header blocks: bytes that are not ASCII; a forged server status line. Each carries a
    # valid signed intent: a client that takes the message for a status drops it.
    add(
        "header-not-ascii",
        place,
        m.signed(m.intent()),
        b"NATS/1.0\r\nX-Titan-\xc3\xa9: \xff\xfe\xfd\r\nX-Plain: caf\xc3\xa9 \xe2\x98\x83\r\n\r\n",
    )
    for status in (
        b"408",
        b"100 Idle Heartbeat",
        b"100 FlowControl Request",
        b"404 No Messages",
        b"409 Consumer Deleted",
        b"503",
        b"100 \xff\xfe",
    ):
        add("header-status-line", place, m.signed(m.intent()), b"NATS/1.0 " + status + b"\r\n\r\n")
    # correctly signed intents with a lone surrogate in a field the signature does not
    # cover (the envelope's own) or does (the payload's)
    for field in ("correlation_id", "id", "idempotency_key"):
        add("signed-surrogate-unsigned-field", place, m.signed(m.intent(), **{field: LONE}))
    add(
        "signed-surrogate-unsigned-field",
        place,
        m.signed(m.intent(), correlation_id=LONE, id="a" + LONE, idempotency_key=LONE + "b"),
    )
    for payload in (
        m.intent(m.signal_id() + LONE),
        m.intent(LONE),
        m.intent(symbol="BTC/USDT" + LONE),
        m.intent(source="brain\ud800", metadata={"note": "\udfff"}),
    ):
        add("signed-surrogate-signed-field", place, m.signed(payload))
    return out


def _intent_text(m: _Maker, *, size: str) -> str:
    """An intent payload as JSON text with `size` written as given (any number text)."""
    doc = m.intent()
    doc["size"] = 0
    text = json.dumps(doc, separators=(",", ":"))
    return text.replace('"size":0', f'"size":{size}', 1)


def max_size_burst(
    seed: int,
    count: int = 100,
    *,
    now_ms: int,
    ns: str = "exec",
    venue: str = "sim",
    account: str = "main",
    symbols: Sequence[str] = ("BTC/USDT", "ETH/USDT"),
) -> list[RawRecord]:
    """`count` messages of exactly `DEFAULT_MAX_BYTES`, alternating random bytes
    (`max-size-garbage`) and well-formed envelopes with a wrong signature whose payload
    is full of numbers (`max-size-envelope`: the ones that cost time to parse), on the
    place subjects of `symbols` in turn.

    Cheap to build (~10 ms for 100): the chaos harness builds it in the event loop that
    also relays the instances' NATS traffic (its partition proxies), so a slow build
    would stall the pair's connections, not test the pair. The envelopes share one list
    of numbers; their nonces, signal ids and padding differ."""
    m = _Maker(random.Random(seed), b"unused", now_ms, Subjects(ns), venue, account, seed)
    numbers = ",".join(f"0.{m.rng.getrandbits(20):06d}" for _ in range(22_000))
    out: list[RawRecord] = []
    for i in range(count):
        subject = m.place(symbols[i % len(symbols)])
        if i % 2 == 0:
            out.append(RawRecord(MAX_SIZE_KINDS[0], subject, None, m.garbage(DEFAULT_MAX_BYTES)))
        else:
            payload = _max_size_envelope(m, numbers)
            out.append(RawRecord(MAX_SIZE_KINDS[1], subject, None, payload))
    return out


def _max_size_envelope(m: _Maker, numbers: str) -> bytes:
    payload = json.dumps(m.intent(), separators=(",", ":"))
    body = payload[:-1] + f',"numbers":[{numbers}],"pad":""}}'
    data = m.unsigned(body)
    short = DEFAULT_MAX_BYTES - len(data)
    if short < 0:  # pragma: no cover - the numbers above leave room
        raise AssertionError(f"the max-size envelope is {-short} bytes over the limit")
    return data.replace(b'"pad":""', b'"pad":"' + b"x" * short + b'"', 1)


# --------------------------------------------------------------------------- publisher
class RawPublishError(RuntimeError):
    """The server refused the connection or a line (`-ERR`), or did not answer."""


@dataclass(frozen=True, slots=True)
class Stored:
    """What became of one published record: its stream sequence from the JetStream
    acknowledgement, or why there is none (the stream's error, no responders, no ack)."""

    record: RawRecord
    seq: int | None
    stream: str | None = None
    error: str | None = None


class _Conn:
    """The reading half of the connection: PONGs, the server's PINGs, -ERR and the
    acknowledgements sent to our inbox."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pongs: asyncio.Queue[None] = asyncio.Queue()
        self.acks: dict[int, tuple[bytes | None, bytes]] = {}
        self.acks_changed = asyncio.Event()
        self.error: str | None = None
        self.failed = asyncio.Event()
        self.inbox = f"_INBOX.poison.{os.urandom(8).hex()}"

    def fail(self, text: str) -> None:
        if self.error is None:
            self.error = text
        self.failed.set()
        self.acks_changed.set()

    async def read_loop(self) -> None:
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    self.fail("the server closed the connection")
                    return
                op = line.rstrip(_CRLF)
                if op == b"PONG":
                    self.pongs.put_nowait(None)
                elif op == b"PING":
                    self.writer.write(b"PONG\r\n")
                elif op.startswith(b"-ERR"):
                    self.fail(op.decode("utf-8", "backslashreplace"))
                elif op.startswith((b"MSG ", b"HMSG ")):
                    await self._message(op)
                # +OK, INFO (cluster updates): nothing to do
        except (OSError, asyncio.IncompleteReadError, ValueError) as err:
            self.fail(f"reading from the server failed: {err!r}")

    async def _message(self, op: bytes) -> None:
        parts = op.split()
        has_headers = parts[0] == b"HMSG"
        total = int(parts[-1])
        header_len = int(parts[-2]) if has_headers else 0
        body = await self.reader.readexactly(total + 2)
        subject = parts[1].decode("ascii", "replace")
        if not subject.startswith(self.inbox + "."):
            return
        with contextlib.suppress(ValueError):
            i = int(subject.rsplit(".", 1)[1])
            headers = body[:header_len] if has_headers else None
            self.acks[i] = (headers, body[header_len:total])
            self.acks_changed.set()

    async def pong(self, timeout_s: float) -> None:
        get = asyncio.ensure_future(self.pongs.get())
        failed = asyncio.ensure_future(self.failed.wait())
        try:
            done, _ = await asyncio.wait(
                {get, failed}, timeout=timeout_s, return_when="FIRST_COMPLETED"
            )
        finally:
            get.cancel()
            failed.cancel()
        self.raise_if_failed()
        if get not in done:
            raise RawPublishError(f"no PONG within {timeout_s:g} s")

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise RawPublishError(f"nats-server: {self.error}")


def _check_subject(subject: bytes) -> None:
    if not subject or any(b in _PROTOCOL_DELIMITERS for b in subject):
        raise ValueError(f"subject {subject!r} cannot go on a protocol line (empty or whitespace)")


def _stored(record: RawRecord, ack: tuple[bytes | None, bytes] | None) -> Stored:
    if ack is None:
        return Stored(record, None, error="no acknowledgement")
    headers, body = ack
    if headers is not None and not body:
        status = headers.split(_CRLF, 1)[0].decode("ascii", "replace")
        return Stored(record, None, error=f"server status {status!r} (no stream stored it)")
    try:
        doc = json.loads(body)
    except ValueError:
        return Stored(record, None, error=f"acknowledgement not JSON: {body[:200]!r}")
    if not isinstance(doc, dict) or "error" in doc or "seq" not in doc:
        return Stored(record, None, error=f"stream error: {doc!r}"[:300])
    return Stored(record, int(doc["seq"]), stream=str(doc.get("stream")))


async def raw_publish(
    host: str,
    port: int,
    records: Sequence[RawRecord],
    *,
    token: str | None = None,
    user: str | None = None,
    password: str | None = None,
    name: str = "titan-chaos-poison",
    timeout_s: float = 15.0,
) -> list[Stored]:
    """Publish `records` byte for byte over one NATS connection to `host:port` and return,
    per record in order, what the stream said (`Stored`). Raises `RawPublishError` on a
    `-ERR`, a record larger than the server's `max_payload`, or a server that does not
    answer within `timeout_s`; `ValueError` for a subject that cannot be written on a
    protocol line (empty, or with whitespace)."""
    for record in records:
        _check_subject(record.subject)
    if (user is None) != (password is None):
        raise ValueError("user and password go together")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    conn = _Conn(reader, writer)
    task: asyncio.Task[None] | None = None
    try:
        info_line = await asyncio.wait_for(reader.readline(), timeout_s)
        if not info_line.startswith(b"INFO "):
            raise RawPublishError(f"expected INFO from {host}:{port}, got {info_line[:200]!r}")
        info = json.loads(info_line[5:])
        max_payload = int(info.get("max_payload", 1024 * 1024))
        if not info.get("headers", False) and any(r.headers is not None for r in records):
            raise RawPublishError(f"the server at {host}:{port} does not support headers")
        options: dict[str, Any] = {
            "verbose": False,
            "pedantic": False,
            "headers": True,
            "no_responders": True,
            "lang": "python-raw",
            "version": "0",
            "protocol": 1,
            "name": name,
        }
        if token is not None:
            options["auth_token"] = token
        if user is not None:
            options["user"] = user
            options["pass"] = password
        task = asyncio.create_task(conn.read_loop(), name="raw-publish-reader")
        writer.write(b"CONNECT " + json.dumps(options).encode() + b"\r\nPING\r\n")
        await writer.drain()
        await conn.pong(timeout_s)  # an authorization failure is an -ERR before this
        writer.write(f"SUB {conn.inbox}.* 1\r\n".encode())
        for i, record in enumerate(records):
            if record.size > max_payload:
                raise RawPublishError(
                    f"record {i} ({record.kind}) is {record.size} bytes, over the server's "
                    f"max_payload {max_payload}"
                )
            reply = f"{conn.inbox}.{i}".encode()
            if record.headers is None:
                line = b"PUB %s %s %d\r\n" % (record.subject, reply, len(record.payload))
            else:
                line = b"HPUB %s %s %d %d\r\n" % (
                    record.subject, reply, len(record.headers), record.size,
                )  # fmt: skip
                line += record.headers
            writer.write(line + record.payload + _CRLF)
            await writer.drain()
            conn.raise_if_failed()
        writer.write(b"PING\r\n")
        await writer.drain()
        await conn.pong(timeout_s)  # every line above was processed
        await _wait_for_acks(conn, len(records), timeout_s)
        return [_stored(r, conn.acks.get(i)) for i, r in enumerate(records)]
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _wait_for_acks(conn: _Conn, count: int, timeout_s: float) -> None:
    """Until each record has its acknowledgement (they come from the stream leader, after
    the PONG of the node we talk to) or `timeout_s` passed; -ERR raises."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        conn.acks_changed.clear()
        conn.raise_if_failed()
        left = deadline - loop.time()
        if len(conn.acks) >= count or left <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(conn.acks_changed.wait(), left)
