"""The demo's stand-in for the real Titan brain, RiskGuardian and the ops scripts: their
messages in the shapes they send (read from `peycheff-com/titan-trading-system` at a7c05a02;
written here, not copied), so that `make demo` shows what the service does with each.

    signal_processor   services/titan-brain/src/engine/SignalProcessor.ts:214-255
                       (t_signal = the signal's time, timestamp = Date.now(): they differ;
                       entry_zone [0, 0], stop_loss 0, take_profits [0]: none; PENDING)
    forward_signal     services/titan-brain/src/server/ExecutionEngineClient.ts:81-164
                       (the same signal again with the same Nats-Msg-Id: JetStream drops it)
    halt_system        ExecutionEngineClient.ts:238-255 (unsigned, bare)
    ops_arm            scripts/ops/set_trading_mode.sh:44-77 (unsigned, bare)
    risk_state         services/titan-brain/src/features/Risk/RiskGuardian.ts:198-216
                       (a bare JSON string on titan.evt.risk.state.v1)
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

from nats.js import api

from titan_exec.wire.canonical import sha256_hex_canonical
from titan_exec_lab.harness.feeds import Brain

RISK_STATE_SUBJECT = "titan.evt.risk.state.v1"


class UpstreamBrain:
    def __init__(self, brain: Brain, policy: dict[str, Any]) -> None:
        self.brain = brain
        self.policy_hash = sha256_hex_canonical(policy)

    def signal_processor(
        self, signal_id: str, symbol: str, side: str, size: str, *, age_ms: int = 700
    ) -> dict[str, Any]:
        now = self.brain.clock()
        return {
            "schema_version": "1.0.0",
            "signal_id": signal_id,
            "source": "brain",
            "symbol": symbol,
            "direction": 1 if side == "BUY" else -1,
            "type": "BUY_SETUP" if side == "BUY" else "SELL_SETUP",
            "entry_zone": [0, 0],
            "stop_loss": 0,
            "take_profits": [0],
            "size": float(size),
            "status": "PENDING",
            "received_at": datetime.fromtimestamp(now / 1000, UTC).isoformat(),
            "t_signal": now - age_ms,
            "timestamp": now,
            "policy_hash": self.policy_hash,
            "metadata": {"original_source": "phase1", "brain_processed_at": now},
            "child_fills": [],
        }

    def forward_signal(self, processed: dict[str, Any], exchange: str) -> dict[str, Any]:
        """forwardSignal's payload for the same signal (`exchange` as given)."""
        t = processed["t_signal"]
        return {
            "schema_version": "1.0.0",
            "signal_id": processed["signal_id"],
            "source": "scavenger",
            "symbol": processed["symbol"],
            "t_signal": t,
            "timestamp": t,
            "direction": processed["direction"],
            "type": processed["type"],
            "entry_zone": [],
            "stop_loss": 0,
            "take_profits": [],
            "size": processed["size"],
            "status": "VALIDATED",
            "exchange": exchange,
            "policy_hash": self.policy_hash,
            "metadata": {"source": "scavenger", "brain_authorized": True},
        }

    async def place(self, payload: dict[str, Any], venue: str = "auto") -> api.PubAck:
        """Signed like `publishEnvelope`, with Nats-Msg-Id = the signal id."""
        b = self.brain
        subject = f"titan.cmd.{b.ns}.place.v1.{venue}.main.{payload['symbol'].replace('/', '_')}"
        return await b.publish(subject, b.envelope(payload), str(payload["signal_id"]))

    async def halt_system(self, reason: str) -> api.PubAck:
        body = {
            "state": "HARD_HALT",
            "reason": reason,
            "timestamp": self.brain.clock(),
            "source": "brain",
        }
        return await self._bare("titan.cmd.sys.halt.v1", body)

    async def ops_arm(self) -> api.PubAck:
        body = {
            "id": str(uuid.uuid4()),
            "type": "ARM_SYSTEM",
            "reason": "demo: the ops script",
            "operator_id": "ops",
            "timestamp": self.brain.clock(),
        }
        return await self._bare("titan.cmd.operator.arm.v1", body)

    async def risk_state(self, name: str) -> api.PubAck:
        return await self.brain.js.publish(RISK_STATE_SUBJECT, json.dumps(name).encode())

    async def _bare(self, subject: str, body: dict[str, Any]) -> api.PubAck:
        data = json.dumps(body).encode()
        return await self.brain.js.publish(
            subject, data, headers={"Nats-Msg-Id": f"up-{os.urandom(6).hex()}"}
        )
