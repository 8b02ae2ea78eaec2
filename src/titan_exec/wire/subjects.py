"""The NATS subject namespace of the execution service (contract table "Subjects").

`Subjects(ns)` builds every subject the service subscribes to or publishes on, for the
namespace `ns` (`exec` by default, `execution` in legacy deployments), and parses the
inbound subjects whose tokens carry data:

    titan.cmd.<ns>.place.v1.<venue>.<account>.<symbol>   (symbol `BTC_USDT` = `BTC/USDT`)
    titan.cmd.<ns>.control.v1.<action>
    titan.data.market.ticker.v1.<venue>.<symbol>          (venue = token 5, symbol = token 6)

Symbols travel with `_` for `/` (`/` is not special in NATS, but the contract fixes this);
parsers turn `_` back into `/`, so a symbol whose own name contains `_` cannot be carried.
Every data token is validated: non-empty, no `.`, no wildcard (`*`, `>`), no whitespace.
Parse failures raise `WireError("subject", ...)`.

Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from titan_exec.wire.errors import WireError

__all__ = [
    "STATE_KINDS",
    "CommandSubject",
    "PlaceRoute",
    "Subjects",
    "TickerRoute",
    "symbol_from_token",
    "symbol_token",
    "token",
]

_NS_RE: Final = re.compile(r"[A-Za-z0-9_-]+\Z")
_BAD_TOKEN_RE: Final = re.compile(r"[.*>\s]")
_NOT_TOKEN_RE: Final = re.compile(r"[^A-Za-z0-9_\-]")

HEARTBEAT_WILDCARD: Final = "titan.sys.heartbeat.v1.>"
TICKER_WILDCARD: Final = "titan.data.market.ticker.v1.>"
TRADE_COMPLETED: Final = "titan.evt.analysis.trade_completed.v1"
RISK_COMMAND_WILDCARD: Final = "titan.cmd.risk.>"
BRAIN_POLICY_HASH: Final = "titan.req.exec.policy_hash.v1"
"""Where the brain's handshake asks, whatever the namespace: `exec` is hard-coded upstream
(packages/shared/src/messaging/PolicyHandshake.ts:12, titan_subjects.ts:362)."""
ALL_VENUES: Final = frozenset({"auto", "main"})
"""RPC venue tokens meaning every venue (the brain asks `get_balances.v1.main` for equity,
ExecutionEngineClient.ts:272; `auto` is the place subjects' "any venue")."""

# The control subjects of the real Titan deployment (titan-upstream.md §1a C1-C8, R1):
UPSTREAM_HALT: Final = "titan.cmd.sys.halt.v1"
UPSTREAM_FLATTEN: Final = ("titan.cmd.risk.flatten.v1", "titan.cmd.risk.flatten")
UPSTREAM_POLICY: Final = "titan.cmd.risk.policy.v1"
UPSTREAM_RISK_CONTROL: Final = "titan.cmd.risk.control.v1"
UPSTREAM_ARM: Final = "titan.cmd.operator.arm.v1"
UPSTREAM_DISARM: Final = "titan.cmd.operator.disarm.v1"
UPSTREAM_CONTROLS: Final = frozenset(
    {
        UPSTREAM_HALT,
        *UPSTREAM_FLATTEN,
        UPSTREAM_POLICY,
        UPSTREAM_RISK_CONTROL,
        UPSTREAM_ARM,
        UPSTREAM_DISARM,
    }
)
OPERATOR_WILDCARD: Final = "titan.cmd.operator.>"
RISK_STATE: Final = "titan.evt.risk.state.v1"
"""RiskGuardian's posture: a bare JSON string (`"Defensive"`), in `TITAN_EVT`."""
STATE_KINDS: Final = frozenset(
    {"fill", "order", "decision", "control", "genesis", "compaction", "position"}
)
"""Subject kinds (token 3 of ``titan.evt.<ns>.<kind>...``) that the state fold reads."""
_TICKER_PREFIX: Final = ("titan", "data", "market", "ticker", "v1")


def _check_token(what: str, token: str) -> str:
    if not token or _BAD_TOKEN_RE.search(token):
        raise ValueError(f"{what} {token!r} is not a single NATS subject token")
    return token


def symbol_token(symbol: str) -> str:
    """`BTC/USDT` -> `BTC_USDT` (the form symbols take in subjects)."""
    return _check_token("symbol", symbol.replace("/", "_"))


def symbol_from_token(token: str) -> str:
    """`BTC_USDT` -> `BTC/USDT`."""
    return token.replace("_", "/")


def token(value: str) -> str:
    """A value as one NATS subject token, never refused (``BTC/USDT`` → ``BTC_USDT``, any
    other character outside [A-Za-z0-9_-] → ``-``, empty → ``_``): the route of an event
    subject, so that every event can be published."""
    return _NOT_TOKEN_RE.sub("-", value.replace("/", "_")) or "_"


@dataclass(frozen=True, slots=True)
class PlaceRoute:
    """The data tokens of a place subject. `venue` may be `auto` (the payload decides)."""

    venue: str
    account: str
    symbol: str


@dataclass(frozen=True, slots=True)
class TickerRoute:
    venue: str
    symbol: str


@dataclass(frozen=True, slots=True)
class CommandSubject:
    """A `TITAN_CMD` subject read once: which kind of command, which intake worker decides
    it, and the data its tokens carry."""

    kind: Literal["place", "control", "other"]
    key: str
    """The intake worker: `place.<venue>.<symbol>` (the raw tokens), `control` or `other`."""
    place: PlaceRoute | None = None
    """A place subject's route; None when it does not parse (`error` says why)."""
    error: str = ""
    action: str | None = None
    """What follows `titan.cmd.<ns>.control.v1.` (None: not our control subject)."""


def _tokens_or_error(subject: str, expected: str, count: int) -> list[str]:
    tokens = subject.split(".")
    if len(tokens) != count or any(not t or _BAD_TOKEN_RE.search(t) for t in tokens):
        raise WireError("subject", f"{subject[:200]!r} does not match {expected}")
    return tokens


@dataclass(frozen=True, slots=True)
class Subjects:
    """All subjects for one namespace. `ns` must be one NATS token ([A-Za-z0-9_-]+)."""

    ns: str = "exec"

    def __post_init__(self) -> None:
        if not _NS_RE.match(self.ns):
            raise ValueError(f"namespace {self.ns!r} must match [A-Za-z0-9_-]+")

    # -- inbound: commands ---------------------------------------------------------------

    def place(self, venue: str, account: str, symbol: str) -> str:
        """`titan.cmd.<ns>.place.v1.<venue>.<account>.<symbol>` with `/` -> `_`."""
        return (
            f"titan.cmd.{self.ns}.place.v1.{_check_token('venue', venue)}"
            f".{_check_token('account', account)}.{symbol_token(symbol)}"
        )

    @property
    def place_type(self) -> str:
        """The envelope `type` producers put on place intents."""
        return f"titan.cmd.{self.ns}.place.v1"

    def parse_place(self, subject: str) -> PlaceRoute:
        """(venue, account, symbol with `_` -> `/`) of a place subject, or WireError."""
        expected = f"titan.cmd.{self.ns}.place.v1.<venue>.<account>.<symbol>"
        tokens = _tokens_or_error(subject, expected, 8)
        if tokens[:5] != ["titan", "cmd", self.ns, "place", "v1"]:
            raise WireError("subject", f"{subject[:200]!r} does not match {expected}")
        return PlaceRoute(venue=tokens[5], account=tokens[6], symbol=symbol_from_token(tokens[7]))

    def control(self, action: str) -> str:
        """`titan.cmd.<ns>.control.v1.<action>` (halt, open, arm, disarm, flatten, policy)."""
        return f"titan.cmd.{self.ns}.control.v1.{_check_token('action', action)}"

    @property
    def control_type(self) -> str:
        """The envelope `type` producers put on control commands."""
        return f"titan.cmd.{self.ns}.control.v1"

    def command_type(self, kind: str) -> str:
        """The envelope `type` of a `place` or `control` command."""
        return self.place_type if kind == "place" else self.control_type

    def command(self, subject: str) -> CommandSubject:
        """What a `TITAN_CMD` subject is: a place command (any subject with the place
        prefix and at least eight tokens, parsed or not), a control (ours or an upstream
        form) or something else."""
        parts = subject.split(".")
        if len(parts) >= 8 and parts[2] == self.ns and parts[3] == "place":
            key = f"place.{parts[5]}.{parts[7]}"
            try:
                return CommandSubject("place", key, place=self.parse_place(subject))
            except WireError as err:
                return CommandSubject("place", key, error=err.message)
        if subject in UPSTREAM_CONTROLS or (
            len(parts) >= 4 and parts[2] == self.ns and parts[3] == "control"
        ):
            prefix = f"titan.cmd.{self.ns}.control.v1."
            action = subject[len(prefix) :] if subject.startswith(prefix) else None
            return CommandSubject("control", "control", action=action)
        return CommandSubject("other", "other")

    @property
    def command_filters(self) -> tuple[str, ...]:
        """What this instance's durable consumer on `TITAN_CMD` reads: our namespace and
        the upstream control subjects (halt, risk, operator), none covering another."""
        ours = f"titan.cmd.{self.ns}.>"
        upstream = {
            "sys": UPSTREAM_HALT,
            "risk": RISK_COMMAND_WILDCARD,
            "operator": OPERATOR_WILDCARD,
        }
        return (ours, *(s for ns, s in upstream.items() if ns != self.ns))

    # -- inbound: system and market data -------------------------------------------------

    @property
    def heartbeat_wildcard(self) -> str:
        """Brain liveness; a wildcard, since the brain publishes `...v1.<instance>`."""
        return HEARTBEAT_WILDCARD

    def heartbeat(self, source: str) -> str:
        """`titan.sys.heartbeat.v1.<source>`: one producer's liveness (`source` may be
        several tokens: the wildcard is `>`)."""
        return f"titan.sys.heartbeat.v1.{source}"

    def ticker(self, venue: str, symbol: str) -> str:
        return f"titan.data.market.ticker.v1.{_check_token('venue', venue)}.{symbol_token(symbol)}"

    @property
    def ticker_wildcard(self) -> str:
        return TICKER_WILDCARD

    def parse_ticker(self, subject: str) -> TickerRoute:
        """venue = token 5, symbol = token 6 (with `_` -> `/`), or WireError."""
        expected = "titan.data.market.ticker.v1.<venue>.<symbol>"
        tokens = _tokens_or_error(subject, expected, 7)
        if tuple(tokens[:5]) != _TICKER_PREFIX:
            raise WireError("subject", f"{subject[:200]!r} does not match {expected}")
        return TickerRoute(venue=tokens[5], symbol=symbol_from_token(tokens[6]))

    # -- outbound events -----------------------------------------------------------------

    @property
    def events(self) -> str:
        """Every event of the namespace (`titan.evt.<ns>.>`): what a fold reads."""
        return f"titan.evt.{self.ns}.>"

    def is_state_event(self, subject: str) -> bool:
        """Whether a `TITAN_EVT` subject carries one of the namespace's state events."""
        parts = subject.split(".")
        return (
            len(parts) >= 4
            and parts[1] == "evt"
            and parts[2] == self.ns
            and parts[3] in STATE_KINDS
        )

    def event_kind(self, kind: str) -> str:
        """Every event of one kind (`titan.evt.<ns>.<kind>.>`): a purge's filter."""
        return f"titan.evt.{self.ns}.{_check_token('kind', kind)}.>"

    def _evt(self, kind: str, venue: str, account: str, symbol: str) -> str:
        """`titan.evt.<ns>.<kind>.v1.<venue>.<account>.<symbol>`, each value as `token`."""
        return f"titan.evt.{self.ns}.{kind}.v1.{token(venue)}.{token(account)}.{token(symbol)}"

    def fill(self, venue: str, account: str, symbol: str) -> str:
        """One FillReport per fill."""
        return self._evt("fill", venue, account, symbol)

    def order(self, venue: str, account: str, symbol: str) -> str:
        """Order lifecycle changes."""
        return self._evt("order", venue, account, symbol)

    def position(self, venue: str, account: str, symbol: str) -> str:
        """Position corrections from an authoritative venue report (`PositionReconciled`)."""
        return self._evt("position", venue, account, symbol)

    def decision(self, venue: str, account: str, symbol: str) -> str:
        """The service's decision for an intent (ours, not in the old service)."""
        return self._evt("decision", venue, account, symbol)

    @property
    def control_event(self) -> str:
        """Control state changes (halt/arm/policy, the risk state), ours."""
        return f"titan.evt.{self.ns}.control.v1"

    @property
    def genesis(self) -> str:
        """The first event of a namespace (its policy and flags)."""
        return f"titan.evt.{self.ns}.genesis.v1"

    @property
    def compaction(self) -> str:
        """`StateCompacted`: the bounds below which the fold forgets."""
        return f"titan.evt.{self.ns}.compaction.v1"

    @property
    def reject(self) -> str:
        return f"titan.evt.{self.ns}.reject.v1"

    @property
    def truth(self) -> str:
        return f"titan.evt.{self.ns}.truth.v1"

    @property
    def trade_completed(self) -> str:
        """TradeRecord on a full close; shared with analysis, not namespaced."""
        return TRADE_COMPLETED

    @property
    def dlq(self) -> str:
        return f"titan.dlq.{self.ns}.core"

    def epoch(self, shard: str) -> str:
        """Leadership epoch markers (design/ha-protocol.md)."""
        return f"{self.epoch_prefix}{_check_token('shard', shard)}"

    @property
    def epoch_prefix(self) -> str:
        """What every epoch marker's subject starts with (`titan.evt.<ns>.epoch.v1.`)."""
        return f"titan.evt.{self.ns}.epoch.v1."

    def checkpoint(self, shard: str) -> str:
        """Checkpoint markers: the state of a snapshot is the fold of every event of the
        namespace below the marker's stream sequence (its watermark)."""
        return f"titan.evt.{self.ns}.checkpoint.v1.{_check_token('shard', shard)}"

    def drift(self, instance_id: str) -> str:
        """A standby's drift alarm (telemetry, core NATS, like the role transitions)."""
        return f"titan.sys.{self.ns}.drift.v1.{_check_token('instance_id', instance_id)}"

    def role(self, instance_id: str) -> str:
        """Role transitions of one instance (telemetry, core NATS: every instance publishes
        them, and only the active may publish on `titan.evt.<ns>.>`)."""
        return f"titan.sys.{self.ns}.role.v1.{_check_token('instance_id', instance_id)}"

    def presence(self, holder: str) -> str:
        """The presence subject of one process (`core/presence.py`; core NATS request/reply):
        a lease holder ``<instance_id>/<session>`` answers on
        ``titan.sys.<ns>.presence.v1.<instance_id>.<session>``."""
        instance_id, _, session = holder.partition("/")
        return (
            f"titan.sys.{self.ns}.presence.v1.{_check_token('instance_id', instance_id)}."
            f"{_check_token('session', session)}"
        )

    def reconcile(self, instance_id: str) -> str:
        """Differences with the venue found by the active (telemetry, core NATS: not state,
        so not on `titan.evt.<ns>.>`, which followers fold)."""
        return f"titan.sys.{self.ns}.reconcile.v1.{_check_token('instance_id', instance_id)}"

    # -- request / reply -----------------------------------------------------------------

    @property
    def rpc_get_positions(self) -> str:
        return f"titan.rpc.{self.ns}.get_positions.v1.>"

    @property
    def rpc_get_balances(self) -> str:
        return f"titan.rpc.{self.ns}.get_balances.v1.>"

    @property
    def risk_state(self) -> str:
        return RISK_STATE

    @property
    def req_policy_hash(self) -> str:
        return f"titan.req.{self.ns}.policy_hash.v1"

    @property
    def rpc_positions_subjects(self) -> tuple[str, ...]:
        """`titan.rpc.<ns>.get_positions.v1[.<venue>]`: with a venue token and without."""
        return (f"titan.rpc.{self.ns}.get_positions.v1", self.rpc_get_positions)

    @property
    def rpc_balances_subjects(self) -> tuple[str, ...]:
        return (f"titan.rpc.{self.ns}.get_balances.v1", self.rpc_get_balances)

    @property
    def policy_hash_subjects(self) -> tuple[str, ...]:
        """The namespace's own and the brain's hard-coded `titan.req.exec.policy_hash.v1`
        (one subject when the namespace is `exec`)."""
        return tuple(dict.fromkeys((BRAIN_POLICY_HASH, self.req_policy_hash)))

    def rpc_venue(self, subject: str) -> str | None:
        """The venue an RPC subject asks about (`...get_positions.v1.<venue>`), or None for
        every venue: no token, `auto` or `main`. More than one token after `v1` is a name no
        venue has, returned joined (it matches nothing)."""
        venue = ".".join(subject.split(".")[5:])
        return None if not venue or venue in ALL_VENUES else venue
