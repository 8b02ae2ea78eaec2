"""What the harness sees of the pair during a run, from the outside: each instance's role
from its `/status` (polled every 50 ms; "down" when it does not answer) and the role
transitions the instances publish on `titan.sys.<ns>.role.v1.<id>` (precise to the
millisecond, but silent while an instance is cut off from NATS). Times are Unix seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from titan_exec.adapters.nats.lease import BUCKET, lease_key
from titan_exec_lab.chaos.model import (
    LeaseWrite,
    RoleSample,
    Takeover,
    Transition,
    compact_roles,
    takeovers,
)
from titan_exec_lab.chaos.topology import NAMES, Topology

POLL_S = 0.05


@dataclass
class RoleWatch:
    topo: Topology
    ns: str = "exec"
    polled: list[tuple[float, str, str]] = field(default_factory=list)
    """(Unix time, instance, role) each poll."""
    lease_roles: list[tuple[float, str, str]] = field(default_factory=list)
    """(Unix time, instance, role in the lease election: `lease_role`) each poll."""
    transitions: list[Transition] = field(default_factory=list)
    lease_writes: list[LeaseWrite] = field(default_factory=list)
    """What was written to the lease key (acquire, renew, release) as the harness saw it
    go by on its subject: the moment the lease's expiry counts from."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _subs: list[Any] = field(default_factory=list)

    async def start(self) -> None:
        assert self.topo.nc is not None
        self._subs = [
            await self.topo.nc.subscribe(f"titan.sys.{self.ns}.role.v1.*", cb=self._on_transition),
            await self.topo.nc.subscribe(f"$KV.{BUCKET}.>", cb=self._on_lease_write),
        ]
        await self._seed_lease_write()
        self._tasks = [asyncio.create_task(self._poll(), name="chaos-role-poll")]

    async def _seed_lease_write(self) -> None:
        """The lease's newest entry as stored (the server's time): a renewal made before
        the watch began (one every lease / 4, the warm-up is shorter at a 5 s lease)."""
        assert self.topo.nc is not None
        try:
            msg = await self.topo.nc.jetstream().get_last_msg(
                f"KV_{BUCKET}", f"$KV.{BUCKET}.{lease_key()}"
            )
            holder = str(json.loads(msg.data or b"")["instance_id"])
        except (nats.errors.Error, ValueError, KeyError, TypeError):
            return  # none yet, or a marker: the subscription sees what comes next
        if msg.time is not None:
            self.lease_writes.append(LeaseWrite(msg.time.timestamp(), holder, "put"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []

    async def _on_lease_write(self, msg: Msg) -> None:
        at = time.time()
        op = (msg.headers or {}).get("KV-Operation", "")
        if op in ("DEL", "PURGE"):
            self.lease_writes.append(LeaseWrite(at, "", "del"))
            return
        try:
            holder = str(json.loads(msg.data)["instance_id"])
        except (ValueError, KeyError, TypeError):
            return  # not a lease value: not ours to judge here
        self.lease_writes.append(LeaseWrite(at, holder, "put"))

    async def _on_transition(self, msg: Msg) -> None:
        at = time.time()
        try:
            doc = json.loads(msg.data)
            self.transitions.append(
                Transition(
                    at, str(doc["instance_id"]), str(doc["from"]), str(doc["to"]),
                    str(doc.get("reason", "")),
                )
            )  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return  # telemetry only: a malformed one is not ours to judge here

    async def _poll(self) -> None:
        while True:
            at = time.time()
            docs = await asyncio.gather(*(self.topo.status(n) for n in NAMES))
            for name, doc in zip(NAMES, docs, strict=True):
                self.polled.append((at, name, str((doc or {}).get("role") or "down")))
                self.lease_roles.append((at, name, str((doc or {}).get("lease_role") or "down")))
            await asyncio.sleep(POLL_S)

    # ---------------------------------------------------------------- reading
    def samples(self, since: float) -> list[RoleSample]:
        """The polled roles as samples on the run's axis (seconds since `since`), plus a
        sample at each published transition (sharper edges)."""
        out = [RoleSample(round(t - since, 3), n, r) for t, n, r in self.polled]
        out += [
            RoleSample(round(tr.at - since, 3), tr.instance, tr.after) for tr in self.transitions
        ]
        return compact_roles(sorted(out, key=lambda s: (s.t, s.instance)))

    def first_active_after(self, t: float, *, other_than: str | None = None) -> float | None:
        """The first moment after `t` an instance (not `other_than`) became active: its
        published transition, else the first poll that saw it active after not being so."""
        seen = [
            tr.at
            for tr in self.transitions
            if tr.at >= t and tr.after == "active" and tr.instance != other_than
        ]
        last: dict[str, str] = {}
        for at, name, role in self.polled:
            if at >= t and role == "active" and last.get(name) != "active" and name != other_than:
                seen.append(at)
            last[name] = role
        return min(seen) if seen else None

    def takeovers(self, leader_before: str, since: float) -> list[Takeover]:
        """The lead moving from `since` on (`model.takeovers`), both sources."""
        return takeovers(leader_before, self.transitions, self.polled, since)

    def fencings(self, since: float) -> int:
        """Changes into `fenced` after `since`, per instance: the lease role each poll saw
        (an instance cut off from NATS cannot publish its transition) and the published
        transitions (a fencing shorter than a poll)."""
        count = 0
        for name in NAMES:
            seen = sorted(
                [(at, r) for at, n, r in self.lease_roles if n == name and at >= since]
                + [
                    (t.at, t.after)
                    for t in self.transitions
                    if t.instance == name and t.at >= since
                ]
            )
            previous = ""
            for _, role in seen:
                if role == "fenced" and previous != "fenced":
                    count += 1
                previous = role
        return count
