"""What the service reads off the bus besides commands is untrusted too: a ticker that
cannot be read is counted and ignored, never raised into the subscription, never stored;
a truth event or an epoch marker no active wrote is ignored."""

from __future__ import annotations

from decimal import Decimal

import pytest

from titan_exec.runtime.market import MarketData

SUBJECT = "titan.data.market.ticker.v1.sim.BTC_USDT"


@pytest.mark.parametrize(
    ("subject", "data"),
    [
        (SUBJECT, b"[" * 100_000 + b"]" * 100_000),  # deep: RecursionError before
        (SUBJECT, b'["bid", "ask"]'),  # not an object: AttributeError before
        (SUBJECT, b'{"bid": 1, "ask": 2, "ts": 1e400}'),  # inf ts: OverflowError before
        (SUBJECT, b'{"bid": 1, "ask": 2, "ts": 1.5}'),
        (SUBJECT, b'{"bid": NaN, "ask": 2}'),
        (SUBJECT, b'{"bid": "nan", "ask": "2"}'),
        (SUBJECT, b'{"bid": "1", "bid": "3", "ask": "2"}'),
        (SUBJECT, b'{"bid": true, "ask": 2}'),
        (SUBJECT, b"\xff\xfe"),
        (SUBJECT, b'{"bid": "1", "ask": "2", "pad": "' + b"x" * 20_000 + b'"}'),
        (SUBJECT.replace("BTC_USDT", "BTC_\udcff"), b'{"bid": "1", "ask": "2"}'),
        (SUBJECT.replace("BTC_USDT", "BTC_" + chr(0xD800)), b'{"bid": "1", "ask": "2"}'),
    ],
)
def test_a_ticker_that_cannot_be_read_is_counted_and_ignored(subject: str, data: bytes) -> None:
    market = MarketData(lambda: 5)
    assert market.on_ticker(subject, data) is None
    assert market.bad_tickers == 1
    assert market.tickers == {}


def test_a_ticker_as_numbers_is_read_as_the_double_javascript_sends() -> None:
    market = MarketData(lambda: 5)
    seen = market.on_ticker(SUBJECT, b'{"bid": 50000.1, "ask": "50000.2", "ts": 7}')
    assert seen is not None
    assert seen[2].bid == Decimal("50000.1") and seen[2].ask == Decimal("50000.2")
    assert seen[2].ts_ms == 7


def test_a_heartbeat_subject_is_kept_printable() -> None:
    market = MarketData(lambda: 5)
    market.on_heartbeat("titan.sys.heartbeat.v1.\udcff")
    assert market.heartbeat_source == "titan.sys.heartbeat.v1.\\xff"
    assert market.last_heartbeat_ms == 5


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"meta": []}',
        b'{"meta": {"watermark_seq": "x"}}',
        b'{"meta": {"watermark_seq": 5, "event_count": [1]}}',
        b"\xff",
    ],
)
def test_a_truth_message_no_active_wrote_is_ignored(data: bytes) -> None:
    from titan_exec.api.metrics import Metrics
    from titan_exec.core.snapshot import capture
    from titan_exec.core.state import State
    from titan_exec.runtime.drift import DriftMonitor

    heard: list[object] = []

    async def publish(doc: dict[str, object]) -> None:
        heard.append(doc)

    async def rebuild(reason: str, snapshot: str | None) -> None:
        heard.append(reason)

    monitor = DriftMonitor(
        State,
        lambda: None,
        publish=publish,
        report=heard.append,
        rebuild=rebuild,
        metrics=Metrics(),
        instance_id="standby",
        clock=lambda: 0,
    )
    monitor.pending[5] = capture(State())
    monitor.on_truth(data)
    assert monitor.matched == monitor.mismatched == 0
    assert 5 in monitor.pending and heard == []  # nothing compared, nothing reported


@pytest.mark.parametrize(
    ("data", "token"),
    [(b"[" * 100_000, None), (b'{"token": 5}', None), (b'{"token": "t"}', "t"), (b"\xff", None)],
)
def test_an_epoch_marker_token_is_read_safely(data: bytes, token: str | None) -> None:
    from titan_exec.runtime.epoch import marker_token

    assert marker_token(data) == token
