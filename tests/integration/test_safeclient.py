"""The connection keeps reading past what nats-py 2.16 alone cannot read: a subject that
is not UTF-8, a forged server status in a stored message's headers."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client

from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.wire.text import has_raw_bytes, printable_subject, subject_bytes

pytestmark = pytest.mark.integration


async def raw_pub(
    server: EmbeddedNats, subject: bytes, payload: bytes, headers: bytes = b""
) -> None:
    """Publish by writing the protocol by hand (nats-py only publishes str subjects)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n')
        if headers:
            hdr = b"NATS/1.0" + headers + b"\r\n\r\n"
            line = b"HPUB %s %d %d\r\n" % (subject, len(hdr), len(hdr) + len(payload))
            writer.write(line + hdr + payload + b"\r\n")
        else:
            writer.write(b"PUB %s %d\r\n%s\r\n" % (subject, len(payload), payload))
        writer.write(b"PING\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), 5)
        assert answer.startswith(b"PONG"), answer
    finally:
        writer.close()


async def test_a_stored_subject_that_is_not_utf8_is_delivered_and_the_next_one_too(
    nats_server: EmbeddedNats, nats_client: Client
) -> None:
    js = nats_client.jetstream()
    await js.add_stream(name="T", subjects=["t.>"])
    bad = b"t.place.BTC_\xff\xfe"
    await raw_pub(nats_server, bad, b"{}")
    await js.publish("t.place.ok", b"next")
    psub = await js.pull_subscribe("t.>", durable="d", stream="T")
    msgs = await psub.fetch(2, timeout=5)
    assert [m.data for m in msgs] == [b"{}", b"next"]
    assert has_raw_bytes(msgs[0].subject)
    assert subject_bytes(msgs[0].subject) == bad
    assert printable_subject(msgs[0].subject) == "t.place.BTC_\\xff\\xfe"
    for m in msgs:
        await m.ack()
    assert nats_client.is_connected


@pytest.mark.parametrize(
    "headers",
    [b" 408 Request Timeout", b" 404 No Messages", b"\r\nStatus: 408", b" 100 \xff\xfe"],
)
async def test_a_forged_status_in_a_stored_message_is_data_not_a_server_answer(
    nats_server: EmbeddedNats, nats_client: Client, headers: bytes
) -> None:
    js = nats_client.jetstream()
    await js.add_stream(name="T", subjects=["t.>"])
    await raw_pub(nats_server, b"t.forged", b"", headers=headers)
    await js.publish("t.after", b"after")
    psub = await js.pull_subscribe("t.>", durable="d", stream="T")
    got = []
    for _ in range(4):
        try:
            got.extend(await psub.fetch(2, timeout=2))
        except TimeoutError:
            pass
        if len(got) >= 2:
            break
    assert [m.subject for m in got] == ["t.forged", "t.after"]
    assert "Status" not in (got[0].headers or {})
    assert nats_client.is_connected
