"""What the brain does with the execution service's replies, restated in Python from the
upstream TypeScript, line for line (peycheff-com/titan-trading-system at a7c05a02, each
read citing its upstream file and line); the shapes are recorded in
tests/fixtures/upstream/consumer_*.json. JavaScript turns a numeric string into a number in
`-`, `/`, `<` and `<=`, so `js_number` does the same here: a test of what the brain
computes, not of our money (that never passes through float)."""

from __future__ import annotations

import json
from typing import Any

from tests.builders import FIXTURES

UPSTREAM = FIXTURES / "upstream"
BRAIN_HASH = "7ff820b56b12d89d64dcb78a261a8062087cde3bc3d47e03e11037a4de354a7d"
"""getCanonicalRiskPolicy().hash of the shared risk_policy.json."""


def fixture(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((UPSTREAM / f"consumer_{name}.json").read_text())
    assert doc["_source"].startswith("peycheff-com/titan-trading-system a7c05a02")
    return doc


def wire(doc: dict[str, Any]) -> Any:
    """What the brain's NatsClient.request decodes (NatsClient.ts:504: JSON)."""
    return json.loads(json.dumps(doc))


def js_number(value: Any) -> float:
    """JavaScript's ToNumber for what these replies carry: numbers and numeric strings."""
    return float(value) if isinstance(value, str) else float(value or 0)


def handshake(reply: dict[str, Any], local_hash: str) -> bool:
    """PolicyHandshake.ts:53-55 (a missing or empty policy_hash throws) and :94."""
    if not reply.get("policy_hash"):
        raise ValueError("Invalid response: missing policy_hash field")
    return bool(reply["policy_hash"] == local_hash)


def reconcile(internal: list[dict[str, Any]], reply: dict[str, Any]) -> list[tuple[str, str]]:
    """ExecutionEngineClient.ts:379 (`.positions || []`), ReconciliationService.ts:437-489:
    (symbol, reason) of each mismatch."""
    external = reply.get("positions") or []
    if not isinstance(external, list):
        raise TypeError("external.map is not a function")
    internal_map = {f"{p['symbol']}:{p['side']}": p for p in internal}
    external_map = {f"{p['symbol']}:{p['side']}": p for p in external}
    out = []
    for key, ip in internal_map.items():
        if key not in external_map:
            if js_number(ip.get("size")) <= 0.0001:
                continue
            out.append((ip["symbol"], "GHOST_POSITION"))
            continue
        ext_size = js_number(external_map[key]["size"])
        diff = abs(js_number(ip.get("size")) - ext_size)
        drift = diff / ext_size > 0.001 if ext_size > 0.0001 else diff > 0.0001
        if drift:
            out.append((ip["symbol"], "SIZE_MISMATCH"))
    for key, ep in external_map.items():
        if js_number(ep["size"]) <= 0.0001:
            continue
        if key not in internal_map:
            out.append((ep["symbol"], "UNTRACKED_POSITION"))
    return out


def equity(reply: dict[str, Any]) -> Any:
    """ExecutionEngineClient.ts:355 (`.balances || []`) and :273-274."""
    balances = reply.get("balances") or []
    usdt = next((b for b in balances if b.get("currency") == "USDT"), None)
    return usdt["total"] if usdt else 0


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness: every object and array is true, also `{}` and `[]`."""
    return isinstance(value, dict | list) or bool(value)


def truth_snapshot(payload: dict[str, Any], brain_hash: str) -> str:
    """ReconciliationService.ts:133-136 and :216-219: ignored, drift or ok."""
    if not js_truthy(payload.get("positions")) or not js_truthy(payload.get("timestamp")):
        return "ignored"
    if js_truthy(payload.get("policy_hash")) and payload["policy_hash"] != brain_hash:
        return "drift"
    return "ok"
