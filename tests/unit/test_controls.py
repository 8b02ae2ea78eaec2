"""Every upstream control form, and the rule over all of them: without a valid signature a
command may only reduce risk. Each message is the upstream producer's shape
(`tests/fixtures/upstream/producer_*.json`, with the upstream file and line)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tests.builders import (
    NOW,
    SECRET,
    accepted,
    control_decision,
    default_policy,
    filled,
    genesis,
    submitted,
)
from tests.upstream import message
from titan_exec.core.controls import decide_risk_state
from titan_exec.core.decide import Decision, DecisionConfig
from titan_exec.core.events import ControlDecided, OrderAccepted, RiskStateDecided
from titan_exec.core.model import Side
from titan_exec.core.state import State, apply, replay
from titan_exec.wire.ingress import IngressConfig, ReceivedCommand, read_risk_state
from titan_exec.wire.signing import Keyring
from titan_exec.wire.subjects import Subjects

INGRESS = IngressConfig(subjects=Subjects("execution"), keyring=Keyring.single(SECRET))
CFG = DecisionConfig(
    venues=frozenset({"sim"}),
    default_venue="sim",
)


class Pair:
    """One state, the decisions applied to it as the active applies them."""

    def __init__(self, state: State | None = None, cfg: DecisionConfig = CFG) -> None:
        self.state = state or replay([genesis(armed=True)])
        self.cfg = cfg
        self.seq = 100
        self.evt_seq = 0

    def send(self, subject: str, data: bytes) -> Decision:
        self.seq += 1
        cmd = ReceivedCommand(seq=self.seq, subject=subject, data=data, t_ingress_ms=NOW)
        d = control_decision(self.state, cmd, self.cfg, NOW, INGRESS)
        (decided, *_) = d.events
        assert isinstance(decided, ControlDecided) and decided.cmd_seq == self.seq
        for ev in d.events:
            apply(self.state, ev)
        return d

    def upstream(self, name: str, **kw: Any) -> Decision:
        msg = message(name, **kw)
        return self.send(msg.subject, msg.data)

    def risk_state(self, body: bytes) -> Decision:
        self.evt_seq += 1
        d = decide_risk_state(self.state, self.evt_seq, read_risk_state(body), NOW)
        for ev in d.events:
            apply(self.state, ev)
        return d


def decided(d: Decision) -> ControlDecided:
    ev = d.events[0]
    assert isinstance(ev, ControlDecided)
    return ev


@pytest.mark.parametrize(
    ("name", "auth"),
    [
        ("producer_halt_brain", "unsigned"),
        ("producer_halt_riskmanager", "signed"),
        ("producer_halt_runbook_state", "unsigned"),
        ("producer_halt_runbook_operator", "unsigned"),
    ],
)
def test_every_upstream_halt_form_halts(name: str, auth: str) -> None:
    p = Pair()
    d = p.upstream(name)
    assert d.refusal is None and decided(d).action == "halt"
    assert decided(d).authentication == auth
    assert p.state.is_halted


def test_a_halt_as_plain_text_halts_too() -> None:
    p = Pair()
    d = p.send("titan.cmd.sys.halt.v1", b"emergency stop")
    assert d.refusal is None and p.state.is_halted
    assert decided(d).reason == "emergency stop"


def test_riskmanagers_inner_signature_alone_authenticates_it_once() -> None:
    p = Pair()
    msg = message("producer_halt_riskmanager", sign=False)
    d = p.send(msg.subject, msg.data)
    assert decided(d).authentication == "inner_signed" and p.state.is_halted
    again = p.send(msg.subject, msg.data)  # the same command id: a replay is not signed
    assert decided(again).authentication == "bad_signature"


def test_a_halt_is_lifted_only_by_a_signed_open() -> None:
    p = Pair()
    p.upstream("producer_halt_brain")
    unsigned = p.send("titan.cmd.sys.halt.v1", b'{"state":"OPEN","reason":"resume"}')
    assert unsigned.refusal is not None and unsigned.refusal.code == "unsigned_control"
    assert "titan-exec send control open" in unsigned.refusal.message
    assert p.state.is_halted
    signed = p.upstream("producer_halt_riskmanager")  # signed halt: still halted
    assert p.state.is_halted and signed.refusal is None
    from tests.builders import signed as sign

    d = p.send("titan.cmd.sys.halt.v1", sign({"state": "OPEN"}, type_="titan.cmd.sys.halt.v1"))
    assert d.refusal is None and decided(d).action == "open" and not p.state.is_halted


@pytest.mark.parametrize("name", ["producer_flatten_brain", "producer_flatten_runbook"])
def test_every_upstream_flatten_form_closes_every_position(name: str) -> None:
    s = replay([genesis(), accepted("a", qty="0.3"), submitted("a")])
    apply(s, filled("a", "t1", qty="0.3", price="50000"))
    p = Pair(s)
    d = p.upstream(name)
    orders = [e for e in d.events if isinstance(e, OrderAccepted)]
    assert [(o.symbol, o.side, o.qty, o.is_reduce_only) for o in orders] == [
        ("BTC/USDT", Side.SELL, Decimal("0.3"), True)
    ]
    assert decided(d).authentication == "unsigned"


def test_a_flatten_while_halted_and_in_emergency_still_flattens() -> None:
    s = replay([genesis(), accepted("a", qty="0.3"), submitted("a")])
    apply(s, filled("a", "t1", qty="0.3", price="50000"))
    p = Pair(s)
    p.upstream("producer_halt_brain")
    p.risk_state(b'"Emergency"')
    d = p.upstream("producer_flatten_brain")
    assert d.refusal is None and len(d.submit) == 1


def test_the_ops_scripts_arm_is_refused_unsigned_and_its_disarm_applies() -> None:
    p = Pair(replay([genesis(armed=False)]))
    d = p.upstream("producer_arm_ops")
    assert d.refusal is not None and d.refusal.code == "unsigned_control"
    assert "titan-exec send control arm" in d.refusal.message
    assert not p.state.is_armed
    from tests.builders import signed as sign

    ok = p.send("titan.cmd.operator.arm.v1", sign({"type": "ARM_SYSTEM"}, type_="arm"))
    assert ok.refusal is None and p.state.is_armed  # the signed way
    d = p.upstream("producer_disarm_ops")
    assert d.refusal is None and not p.state.is_armed


def test_an_arm_with_a_bad_signature_is_hmac_signature_mismatch() -> None:
    p = Pair(replay([genesis(armed=False)]))
    msg = message("producer_halt_riskmanager", secret=b"not-the-secret")
    body = json.loads(msg.data)
    body["payload"]["action"] = "ARM"
    d = p.send("titan.cmd.risk.control.v1", json.dumps(body).encode())
    assert d.refusal is not None and d.refusal.code == "hmac_signature_mismatch"
    assert not p.state.is_armed
    halt = p.send("titan.cmd.sys.halt.v1", msg.data)  # a bad signature counts as none
    assert halt.refusal is None and decided(halt).authentication == "bad_signature"


def test_a_body_that_contradicts_its_subject_is_refused() -> None:
    p = Pair()
    msg = message("producer_arm_ops")
    d = p.send("titan.cmd.operator.disarm.v1", msg.data)
    assert d.refusal is not None and d.refusal.code == "schema_invalid" and p.state.is_armed
    d = p.send("titan.cmd.sys.halt.v1", b'{"state":"PAUSE"}')
    assert d.refusal is not None and d.refusal.code == "unknown_action"
    assert not p.state.is_halted
    d = p.send("titan.cmd.risk.control.v1", b'{"action":"REBALANCE"}')
    assert d.refusal is not None and d.refusal.code == "unknown_action"
    d = p.send("titan.cmd.risk.flatten.v1", b'{"command":"OPEN_ALL"}')
    assert d.refusal is not None and d.refusal.code == "unknown_action" and not d.submit


def test_an_allocation_override_is_not_for_us_signed_and_refused_unsigned() -> None:
    p = Pair()
    d = p.upstream("producer_risk_control_override")
    assert d.refusal is None and decided(d).outcome == "ignored"
    forged = p.upstream("producer_risk_control_override", sign=False, secret=b"wrong-secret")
    assert forged.refusal is not None and forged.refusal.code == "hmac_signature_mismatch"
    bare = p.send("titan.cmd.risk.control.v1", b'{"action":"OVERRIDE_ALLOCATION"}')
    assert bare.refusal is not None and bare.refusal.code == "unsigned_control"
    assert p.state.control_counts["override_allocation:ignored:signed"] == 1


def test_the_brains_signed_policy_replaces_the_active_one() -> None:
    p = Pair()
    loose = dict(default_policy(), maxPositionNotional=90000.0)
    d = p.upstream("producer_policy_brain", policy=loose)
    assert d.refusal is None and p.state.policy is not None
    assert p.state.policy.max_position_notional == Decimal("90000.0")


def test_budget_services_broadcast_is_an_overlay_that_keeps_the_policy_hash() -> None:
    p = Pair()
    before = p.state.policy.hash if p.state.policy else ""
    d = p.upstream("producer_policy_budget_emergency")
    assert d.refusal is None, d.refusal
    assert p.state.risk_state == "Emergency"
    limits = p.state.limits
    assert limits is not None and limits.max_position_notional == 0
    assert limits.max_open_orders_per_symbol == 0
    assert p.state.policy is not None and p.state.policy.hash == before
    d = p.upstream("producer_policy_budget_normal")
    assert d.refusal is None and p.state.risk_state == "Normal"
    limits = p.state.limits
    assert limits is not None and limits.max_position_notional == Decimal("50000")


def test_an_unsigned_policy_that_loosens_one_limit_and_tightens_another_is_refused() -> None:
    p = Pair()
    body = {"max_position_notional": 1000, "max_account_leverage": 20}
    d = p.send("titan.cmd.risk.policy.v1", json.dumps(body).encode())
    assert d.refusal is not None and d.refusal.code == "unsigned_control"
    assert "maxAccountLeverage 20 > 10" in d.refusal.message
    assert p.state.overlay is None
    camel = dict(default_policy(), maxPositionNotional=1000.0)
    d = p.send("titan.cmd.risk.policy.v1", json.dumps({"policy": camel}).encode())
    assert d.refusal is None and decided(d).overlay == {
        "maxAccountLeverage": "10",
        "maxDailyLoss": "-1000",
        "maxOpenOrdersPerSymbol": 5,
        "maxPositionNotional": "1000",
        "maxSlippageBps": 100,
        "maxStalenessMs": 5000,
        "symbolWhitelist": ["BTC/USDT", "ETH/USDT", "SOL/USDT"],
    }
    assert p.state.policy is not None and p.state.policy.max_position_notional == 50000


def test_refuse_unsigned_risk_reducing_commands_when_configured() -> None:
    from dataclasses import replace

    p = Pair(cfg=replace(CFG, accept_unsigned_risk_reducing=False))
    d = p.upstream("producer_halt_brain")
    assert d.refusal is not None and d.refusal.code == "unsigned_control"
    assert not p.state.is_halted
    assert p.upstream("producer_halt_riskmanager").refusal is None
    assert p.state.is_halted


def test_riskguardians_states_in_both_directions_and_an_unknown_one_refused() -> None:
    p = Pair()
    for body, want in [(b'"Cautious"', "Cautious"), (b'"Defensive"', "Defensive")]:
        d = p.risk_state(body)
        assert d.refusal is None and p.state.risk_state == want
    d = p.risk_state(b'"Panic"')
    assert d.refusal is not None and d.refusal.code == "unknown_risk_state"
    assert p.state.risk_state == "Defensive"
    for bad in [b"Defensive", b"42", b'{"x":1}', b"\xff\xfe", b'"' + b"x" * 5000 + b'"']:
        d = p.risk_state(bad)
        assert d.refusal is not None and d.refusal.code == "unknown_risk_state"
        (ev,) = d.events
        assert isinstance(ev, RiskStateDecided) and ev.outcome == "rejected"
    assert p.risk_state(b'"Normal"').refusal is None and p.state.risk_state == "Normal"
    again = decide_risk_state(p.state, p.evt_seq, "Emergency", NOW)
    assert again.is_duplicate and p.state.risk_state == "Normal"


def test_the_risk_posture_is_in_the_hash_and_survives_a_snapshot() -> None:
    from titan_exec.core.snapshot import capture, encode_snapshot, restore
    from titan_exec.core.state import state_hash

    p = Pair()
    plain = state_hash(p.state)
    p.upstream("producer_policy_budget_emergency")
    p.risk_state(b'"Defensive"')
    assert state_hash(p.state) != plain
    _, data = encode_snapshot(capture(p.state), ns="execution", shard="main", watermark_seq=9)
    back = restore(data).state
    assert state_hash(back) == state_hash(p.state)
    assert back.risk_state == "Defensive" and back.risk_state_seq == p.evt_seq
    assert back.limits is not None and back.limits.max_position_notional == 0
    assert back.control_counts == p.state.control_counts


def test_emergency_cancels_the_open_orders_that_could_add_to_a_position() -> None:
    s = replay(
        [
            genesis(),
            accepted("open-1", limit="40000"),
            submitted("open-1"),
            accepted("close-1", side=Side.SELL, limit="60000", reduce_only=True, ts=2),
            submitted("close-1"),
        ]
    )
    d = decide_risk_state(s, 1, "Emergency", NOW)
    assert [str(c) for c in d.cancel] == ["open-1"]
    assert decide_risk_state(s, 1, "Defensive", NOW).cancel == ()
