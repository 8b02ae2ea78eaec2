"""A stream written by an earlier build replays, with this build, to the state it had then.

`tests/fixtures/streams/build-a7f0340.jsonl` holds events as the build at a7f0340 encoded
them (every event kind then: decisions, controls with a policy, orders through each terminal
state, fills, a flatten, a venue reconciliation, a compaction) and the state hash that build
computed from them. Changing an event or its encoding must keep this test green."""

from __future__ import annotations

import json

from tests.builders import FIXTURES
from titan_exec.core.state import State, apply, state_hash
from titan_exec.wire import contract

STREAM = FIXTURES / "streams" / "build-a7f0340.jsonl"


def test_the_stream_of_build_a7f0340_replays_to_the_same_state_hash() -> None:
    lines = STREAM.read_text().splitlines()
    header = json.loads(lines[0])
    state = State()
    folded = 0
    for line in lines[1:]:
        rec = json.loads(line)
        event = contract.decode_event(rec["subject"], rec["data"].encode(), ns="exec")
        assert event is not None, rec["subject"]
        assert (
            contract.encode_event(event, ns="exec", producer="titan-execution")[1]
            == (rec["msg_id"])
        )
        apply(state, event)
        folded += 1
    assert folded == header["events"] == 28
    assert state_hash(state) == header["state_hash"]
    assert not state.is_halted and state.is_armed
    assert str(state.position("sim", "ETH/USDT").qty) == "-0.03"
