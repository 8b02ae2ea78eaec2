"""A nats-py client that keeps reading whatever bytes a publisher put on the wire.

nats-py 2.16 turns every delivered message into a `Msg` inside its one read loop
(`Client._build_message`), decoding the subject and the reply subject as strict UTF-8.
NATS subjects are bytes: nats-server stores and delivers a subject such as
``titan.cmd.exec.place.v1.sim.main.BTC_\\xff\\xfe`` as published. The strict decode then
raises `UnicodeDecodeError` in the read loop, nats-py treats it as a broken connection
and reconnects, and the same stored message is delivered again: the client never reads
past it (seen: an instance stopped ~60 s later with `EventLogBroken`; a restart died the
same way, the message still in the stream).

`SafeClient` changes three things, nothing else:

* subjects and reply subjects are decoded with ``errors="surrogateescape"``: every byte
  that is not UTF-8 becomes one code point U+DC80..U+DCFF, so the message is delivered
  and its raw bytes are recoverable (`wire.text.subject_bytes`; `has_raw_bytes` tells
  such a subject apart). The service dead-letters it by its stream sequence and acknowledges it
  (the reply subject of a stored message is the server's ASCII ``$JS.ACK...``).
* a header block nats-py cannot decode (a forged inline status line with bytes that
  are not UTF-8 raises outside nats-py's own guard) is delivered as "no headers"
  instead of breaking the read loop;
* on a message the server delivers from a stream (reply ``$JS.ACK.``), the headers
  ``Status`` and ``Description`` are the publisher's, not the server's: nats-py would
  read them as a server status (a forged ``408`` makes a pull fetch drop the message as
  a timeout, never acknowledged, redelivered for ever). They are renamed
  ``Titan-Untrusted-Status`` / ``Titan-Untrusted-Description``.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from nats.aio.client import Client

from titan_exec.adapters.nats.headers import DESCRIPTION, STATUS

log = logging.getLogger(__name__)

__all__ = ["SafeClient"]

_STORED_REPLY_PREFIX: Final = b"$JS.ACK."
_SERVER_HEADERS: Final = (STATUS, DESCRIPTION)


class SafeClient(Client):
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
            log.warning("a message with an unreadable header block: delivered without headers")
            return None
        return result
