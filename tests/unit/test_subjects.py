"""Subjects follow the contract table for any namespace; inbound subjects are parsed at
the right tokens."""

from __future__ import annotations

import pytest

from titan_exec.wire.errors import WireError
from titan_exec.wire.subjects import PlaceRoute, Subjects, TickerRoute


@pytest.mark.parametrize("ns", ["exec", "execution"])
def test_every_contract_subject(ns: str) -> None:
    s = Subjects(ns)
    assert (
        s.place("binance", "main", "BTC/USDT") == f"titan.cmd.{ns}.place.v1.binance.main.BTC_USDT"
    )
    assert s.place_type == f"titan.cmd.{ns}.place.v1"
    assert s.control("halt") == f"titan.cmd.{ns}.control.v1.halt"
    assert s.control_type == f"titan.cmd.{ns}.control.v1"
    assert s.command_type("place") == s.place_type
    assert s.heartbeat("risk-guardian") == "titan.sys.heartbeat.v1.risk-guardian"
    assert s.heartbeat_wildcard == "titan.sys.heartbeat.v1.>"
    assert s.ticker("bybit", "ETH/USDT") == "titan.data.market.ticker.v1.bybit.ETH_USDT"
    assert s.ticker_wildcard == "titan.data.market.ticker.v1.>"
    assert s.fill("binance", "main", "BTC/USDT") == f"titan.evt.{ns}.fill.v1.binance.main.BTC_USDT"
    assert s.order("binance", "a", "SOL/USDT") == f"titan.evt.{ns}.order.v1.binance.a.SOL_USDT"
    assert s.decision("paper", "a", "BTC/USDT") == f"titan.evt.{ns}.decision.v1.paper.a.BTC_USDT"
    assert s.position("sim", "a", "BTC/USDT") == f"titan.evt.{ns}.position.v1.sim.a.BTC_USDT"
    assert s.reconcile("primary") == f"titan.sys.{ns}.reconcile.v1.primary"
    assert s.control_event == f"titan.evt.{ns}.control.v1"
    assert s.reject == f"titan.evt.{ns}.reject.v1"
    assert s.truth == f"titan.evt.{ns}.truth.v1"
    assert s.trade_completed == "titan.evt.analysis.trade_completed.v1"
    assert s.dlq == f"titan.dlq.{ns}.core"
    assert s.epoch("0") == f"titan.evt.{ns}.epoch.v1.0"
    assert s.rpc_get_positions == f"titan.rpc.{ns}.get_positions.v1.>"
    assert s.rpc_get_balances == f"titan.rpc.{ns}.get_balances.v1.>"
    assert s.req_policy_hash == f"titan.req.{ns}.policy_hash.v1"


def test_default_namespace_is_exec() -> None:
    assert Subjects().ns == "exec"


@pytest.mark.parametrize("ns", ["", "a.b", "ex*", "ex>", "ex ec", "exé"])
def test_namespace_must_be_one_token(ns: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        Subjects(ns)


def test_place_subject_round_trips() -> None:
    s = Subjects("execution")
    subject = s.place("auto", "acct-1", "BTC/USDT")
    assert s.parse_place(subject) == PlaceRoute(venue="auto", account="acct-1", symbol="BTC/USDT")


@pytest.mark.parametrize(
    "subject",
    [
        "titan.cmd.exec.place.v1.binance.main",  # too short
        "titan.cmd.exec.place.v1.binance.main.BTC_USDT.extra",  # too long
        "titan.cmd.execution.place.v1.binance.main.BTC_USDT",  # other namespace
        "titan.cmd.exec.place.v2.binance.main.BTC_USDT",  # other version
        "titan.cmd.exec.control.v1.binance.main.BTC_USDT",
        "titan.cmd.exec.place.v1.binance..BTC_USDT",  # empty token
        "titan.cmd.exec.place.v1.*.main.BTC_USDT",  # wildcard
    ],
)
def test_malformed_place_subjects_are_refused(subject: str) -> None:
    with pytest.raises(WireError) as caught:
        Subjects("exec").parse_place(subject)
    assert caught.value.code == "subject"
    assert "<venue>.<account>.<symbol>" in caught.value.message


def test_ticker_is_parsed_at_tokens_five_and_six() -> None:
    s = Subjects()
    assert s.parse_ticker("titan.data.market.ticker.v1.binance.BTC_USDT") == TickerRoute(
        venue="binance", symbol="BTC/USDT"
    )
    with pytest.raises(WireError):
        s.parse_ticker("titan.data.market.ticker.v1.binance")
    with pytest.raises(WireError):
        s.parse_ticker("titan.data.market.trade.v1.binance.BTC_USDT")


def test_control_action_is_read_from_the_command_subject() -> None:
    s = Subjects()
    assert s.command("titan.cmd.exec.control.v1.disarm").action == "disarm"
    assert s.command("titan.cmd.exec.control.v1").action is None


@pytest.mark.parametrize(
    ("venue", "symbol"), [("bin.ance", "BTC/USDT"), ("b", "BTC USDT"), ("", "X")]
)
def test_building_refuses_tokens_that_would_change_the_subject(venue: str, symbol: str) -> None:
    with pytest.raises(ValueError, match="NATS subject token"):
        Subjects().place(venue, "main", symbol)
    # an event subject never refuses (every event must be publishable): its route tokens
    # are sanitised (`token`), one token each
    assert len(Subjects().fill(venue, "main", symbol).split(".")) == 8
