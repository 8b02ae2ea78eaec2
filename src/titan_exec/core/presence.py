"""Presence: telling a dead lease holder from a slow one, without waiting for its lease.

The active answers on a presence subject of its own (core NATS request/reply); the standby
probes the holder it sees in the lease every `PresenceTiming.interval_ms`. NATS answers a
request to a subject nobody subscribes to with "no responders" at once, and a process that
dies loses its subscriptions the moment the kernel closes its socket. A paused process keeps
them (its probes time out), and so does a host that vanished without closing its socket
(until the server's ping timeout). So:

- **Gone**: ``confirm_count`` "no responders" in a row for the same holder at the same lease
  revision (the holder did not renew meanwhile), the first and the last sent at least
  ``confirm_ms`` apart and all within ``window_ms``. Probes overlap (one leaves every
  interval, each waits up to ``timeout_ms``): an answer to a probe sent before the run's
  first "no responders" (the one in flight when the process died times out) is older
  evidence and leaves the run alone. ``confirm_ms`` rides out the moment a
  live holder's NATS node dies and its subscription vanishes until it reconnects elsewhere
  (measured: tens of ms on one machine).
- **Cannot tell**: a timeout, an answer, or this instance's own connection in trouble ends
  the run: the lease (its expiry) decides, as without presence.

A presence takeover is a compare-and-set on the holder's revision, so a holder that renews
meanwhile keeps its lease (the standby's write fails); and a holder wrongly believed gone is
deposed by the epoch marker the new leader writes before anything else: its event writes,
write-aheads included, are refused from then on, so it can start no new venue order. This
module is pure: the run and the verdict; `leadership.py` applies it in STANDBY.
"""

from __future__ import annotations

from dataclasses import dataclass

from titan_exec.core.leadership_io import Presence, PresenceProbed


class PresenceTimingError(ValueError):
    """The presence settings contradict each other (names the setting)."""


@dataclass(frozen=True, slots=True)
class PresenceTiming:
    interval_ms: int = 10
    """How often a standby probes the holder; 0: presence off (the lease alone decides)."""
    timeout_ms: int = 100
    """A probe without an answer this long is a timeout (cannot tell)."""
    confirm_count: int = 3
    confirm_ms: int = 30
    window_ms: int = 300

    def __post_init__(self) -> None:
        for name in ("interval_ms", "timeout_ms", "confirm_count", "confirm_ms", "window_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise PresenceTimingError(f"presence {name} must be an integer >= 0, got {value!r}")
        if self.interval_ms == 0:
            return
        if self.confirm_count < 2:
            raise PresenceTimingError(
                f"presence confirm_count={self.confirm_count}: at least 2 answers make a run"
            )
        if self.timeout_ms <= 0:
            raise PresenceTimingError("presence timeout_ms must be positive")
        if self.window_ms <= self.confirm_ms:
            raise PresenceTimingError(
                f"presence window_ms={self.window_ms} must exceed confirm_ms={self.confirm_ms}"
            )
        if self.window_ms < self.confirm_count * self.interval_ms:
            raise PresenceTimingError(
                f"presence window_ms={self.window_ms} cannot hold confirm_count="
                f"{self.confirm_count} probes every interval_ms={self.interval_ms}"
            )

    @property
    def is_on(self) -> bool:
        return self.interval_ms > 0


@dataclass(frozen=True, slots=True)
class PresenceRun:
    """ "No responders" answers in a row for one holder at one lease revision."""

    holder: str
    revision: int
    first_sent_ms: int
    count: int


def advance(
    run: PresenceRun | None, inp: PresenceProbed, timing: PresenceTiming
) -> tuple[PresenceRun | None, bool]:
    """The run after `inp` (the probe is for the holder the lease shows) and whether the
    holder is now known gone."""
    same = run is not None and (run.holder, run.revision) == (inp.holder, inp.revision)
    if inp.outcome is not Presence.NO_RESPONDERS:
        if run is not None and same and inp.sent_ms < run.first_sent_ms:
            return run, False  # sent before the run began: says nothing about now
        return None, False
    sent = inp.sent_ms
    if run is None or not same or sent - run.first_sent_ms > timing.window_ms:
        run = PresenceRun(inp.holder, inp.revision, sent, 1)
    elif sent < run.first_sent_ms:  # an earlier probe's answer, come late: the run is older
        run = PresenceRun(run.holder, run.revision, sent, run.count + 1)
    else:
        run = PresenceRun(run.holder, run.revision, run.first_sent_ms, run.count + 1)
    span = sent - run.first_sent_ms
    gone = run.count >= timing.confirm_count and span >= timing.confirm_ms
    return run, gone


def describe(run: PresenceRun | None, inp: PresenceProbed) -> str:
    """The sentence of a probe that did not decide a takeover."""
    match inp.outcome:
        case Presence.ANSWERED:
            return f"presence: {inp.holder} answered"
        case Presence.TIMEOUT:
            return f"presence: {inp.holder} did not answer in time: cannot tell, the lease decides"
        case Presence.UNHEALTHY:
            return "presence: our own connection is in trouble: cannot tell, the lease decides"
        case Presence.NO_RESPONDERS:
            count = run.count if run is not None else 0
            span = inp.sent_ms - run.first_sent_ms if run is not None else 0
            return f"presence: no responders for {inp.holder} ({count} in a row over {span} ms)"
