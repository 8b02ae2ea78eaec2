"""The acked publisher and the epoch fence on a real nats-server: errors are answers."""

from __future__ import annotations

from typing import Any

import pytest
from nats.js import api

from titan_exec.adapters.nats.fence import fenced_headers, marker_headers
from titan_exec.adapters.nats.publisher import AckedPublisher, PublishRejected

pytestmark = pytest.mark.integration


async def test_sequences_in_order_and_errors_resolve_immediately(nats_client: Any) -> None:
    js = nats_client.jetstream()
    await js.add_stream(name="T", subjects=["t.>"], storage=api.StorageType.MEMORY)
    pub = AckedPublisher(nats_client)
    await pub.start()
    try:
        futures = [await pub.publish(f"t.{i}", b"x") for i in range(50)]
        seqs = [await f for f in futures]
        assert seqs == list(range(1, 51))
        # the fence: a marker at seq 51, then a write conditioned on an older epoch
        marker = await (await pub.publish("t.epoch", b"m", marker_headers(0)))
        ok = await (await pub.publish("t.evt", b"e", fenced_headers("t.epoch", marker)))
        assert ok == marker + 1
        newer = await (await pub.publish("t.epoch", b"m2", marker_headers(marker)))
        with pytest.raises(PublishRejected) as info:
            await (await pub.publish("t.evt", b"late", fenced_headers("t.epoch", marker)))
        assert info.value.code == 10071
        assert newer > marker
        with pytest.raises(PublishRejected) as info:
            await (await pub.publish("nostream.x", b"?"))
        assert info.value.code == 503
        assert pub.pending == 0
    finally:
        await pub.stop()
