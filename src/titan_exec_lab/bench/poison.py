"""`titan-exec bench --poison`: what a burst of hostile messages costs the active instance,
on the embedded server and on the production topology (three clustered nodes, R3).

One instance runs in this process with the lease election on (5 s lease: it fences
itself on a loop stall over 500 ms). A second process publishes each burst byte for
byte (`chaos.poison.raw_publish`), so that building and writing 25 MB costs this
process nothing. A watchdog task here measures the event loop's lag every 5 ms: the
instance's own stall, as its lease watchdog sees it.

Burst kinds, `count` messages each, on the place subjects of two symbols, alternated
round by round (the order rotates) so that a noisy machine hits them alike:

* ``small``: 64-byte garbage: the baseline, the per-message cost of any refusal;
* ``max-size``: 256 KiB messages (`chaos.poison.max_size_burst`): half random bytes,
  half well-formed envelopes full of numbers (the kind that cost up to 300 ms each
  to parse before the value bound);
* ``value-bound``: unsigned envelopes holding just under `DEFAULT_MAX_VALUES` values of
  the costliest shape (strings with a lone surrogate escape): the most work a message
  that passes the bound can ask for.

Per burst: the largest loop stall, and the time from the first message published to the
last one decided. Medians over the rounds, the ratio of each kind to ``small``, and the
instance's fencings (must be 0) and role (must stay active).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from titan_exec.adapters.nats.embedded import EmbeddedNats
from titan_exec.config import load
from titan_exec.runtime.app import EMBEDDED_MAX_PAYLOAD, RunningInstance
from titan_exec.wire.envelope import DEFAULT_MAX_VALUES
from titan_exec_lab.chaos.poison import RawRecord, max_size_burst, raw_publish
from titan_exec_lab.harness.cluster import LocalCluster

SECRET = "bench-poison-secret"
KINDS = ("small", "max-size", "value-bound")
WATCH_PERIOD_S = 0.005

SUBJECTS = (
    b"titan.cmd.exec.place.v1.sim.main.BTC_USDT",
    b"titan.cmd.exec.place.v1.sim.main.ETH_USDT",
)


def burst_records(kind: str, count: int, seed: int, now_ms: int) -> list[RawRecord]:
    """The messages of one burst of `kind` (module docstring)."""
    if kind == "max-size":
        return max_size_burst(seed, count, now_ms=now_ms)
    if kind == "small":
        return [RawRecord(kind, SUBJECTS[i % 2], None, b"x" * 64) for i in range(count)]
    items = ",".join(['"\\udc00"'] * (DEFAULT_MAX_VALUES - 40))
    envelope = {
        "type": "titan.cmd.exec.place.v1",
        "version": 1,
        "producer": "p",
        "ts": now_ms,
        "nonce": f"n{seed:031d}",
        "sig": "0" * 64,
        "payload": {"signal_id": "s", "symbol": "BTC/USDT", "x": "ITEMS"},
    }
    env = json.dumps(envelope, separators=(",", ":")).replace('"ITEMS"', f"[{items}]")
    return [RawRecord(kind, SUBJECTS[i % 2], None, env.encode()) for i in range(count)]


def publish_main(argv: list[str]) -> None:
    """The publisher process: `python -m titan_exec_lab.bench.poison HOST PORT KIND
    COUNT SEED`; prints the publish start time and each message's stream sequence."""
    host, port, kind, count, seed = argv[0], int(argv[1]), argv[2], int(argv[3]), int(argv[4])
    records = burst_records(kind, count, seed, int(time.time() * 1000))
    t0 = time.time()
    stored = asyncio.run(raw_publish(host, port, records))
    errors = [s.error for s in stored if s.seq is None]
    print(json.dumps({"t0": t0, "seqs": [s.seq for s in stored], "errors": errors}))


class LoopWatch:
    """The event loop's largest lag since the last `reset`, sampled every 5 ms."""

    def __init__(self) -> None:
        self.largest_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        self.largest_s = 0.0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(WATCH_PERIOD_S)
            self.largest_s = max(self.largest_s, loop.time() - before - WATCH_PERIOD_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bench-loop-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


@asynccontextmanager
async def _topology(kind: str, tmp: Path) -> AsyncIterator[tuple[str, int]]:
    """(NATS URL, replicas) of a fresh embedded server or three-node cluster."""
    if kind == "embedded":
        server = EmbeddedNats(tmp / "nats", extra_config=EMBEDDED_MAX_PAYLOAD)
        await server.astart()
        try:
            yield server.url, 1
        finally:
            server.stop()
    else:
        async with LocalCluster(tmp / "cluster") as cluster:
            yield cluster.urls, 3


async def _burst(
    url: str, kind: str, count: int, seed: int, svc: Any, watch: LoopWatch
) -> dict[str, Any]:
    first = url.split(",")[0].removeprefix("nats://")
    host, _, port = first.rpartition(":")
    watch.reset()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "titan_exec_lab.bench.poison",
        host,
        port,
        kind,
        str(count),
        str(seed),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"publisher failed: {err.decode(errors='replace')[-2000:]}")
    result = json.loads(out)
    seqs = [s for s in result["seqs"] if s is not None]
    if len(seqs) != count:
        raise RuntimeError(f"{count - len(seqs)} messages not stored: {result['errors'][:3]}")
    deadline = time.monotonic() + 120
    while not all(svc.state.is_decided(s) for s in seqs):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{kind}: not every message decided in 120 s")
        await asyncio.sleep(0.002)
    done = time.time()
    return {
        "kind": kind,
        "stall_ms": watch.largest_s * 1000,
        "burst_ms": (done - result["t0"]) * 1000,
    }


async def _measure(
    topology: str, rounds: int, count: int, lease_ms: int, kinds: tuple[str, ...]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="titan-poisonbench-") as tmp_name:
        tmp = Path(tmp_name)
        async with _topology(topology, tmp) as (url, replicas):
            cfg = load(
                None,
                env={},
                overrides={
                    "nats.url": url,
                    "nats.replicas": replicas,
                    "service.state_dir": str(tmp / "state"),
                    "service.instance_id": "bench",
                    "security.hmac_secret": SECRET,
                    "security.api_key": "bench-api-key",
                    "http.port": 0,
                    "risk.arm_on_genesis": True,
                    "ha.enabled": True,
                    "ha.lease_ms": lease_ms,
                },
            )
            async with RunningInstance(cfg) as inst:
                svc = inst.service
                assert svc is not None and svc.ha is not None
                deadline = time.monotonic() + 30
                while svc.role != "active":
                    if time.monotonic() > deadline:
                        raise RuntimeError("the instance did not become active in 30 s")
                    await asyncio.sleep(0.05)
                watch = LoopWatch()
                watch.start()
                runs: list[dict[str, Any]] = []
                try:
                    for r in range(rounds):
                        order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]
                        for kind in order:
                            run = await _burst(url, kind, count, r, svc, watch)
                            runs.append(run)
                            print(
                                f"  {topology:8s} round {r + 1}/{rounds} {kind:11s} "
                                f"largest stall {run['stall_ms']:7.1f} ms, "
                                f"burst {run['burst_ms']:7.0f} ms",
                                flush=True,
                            )
                finally:
                    await watch.stop()
                fencings = _count(svc)
                return {
                    "topology": topology,
                    "runs": runs,
                    "fencings": fencings,
                    "role": svc.role,
                    "watchdog_max_ms": svc.ha.largest_stall_ms,
                    "lease_ms": lease_ms,
                }


def _count(svc: Any) -> int:
    """Fencings this instance counted (all reasons)."""
    total = 0
    for metric in svc.metrics.fencings.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                total += int(sample.value)
    return total


def _summary(result: dict[str, Any]) -> list[str]:
    by_kind: dict[str, dict[str, float]] = {}
    for kind in sorted({r["kind"] for r in result["runs"]}, key=KINDS.index):
        runs = [r for r in result["runs"] if r["kind"] == kind]
        by_kind[kind] = {
            "stall_ms": statistics.median(r["stall_ms"] for r in runs),
            "burst_ms": statistics.median(r["burst_ms"] for r in runs),
            "worst_stall_ms": max(r["stall_ms"] for r in runs),
        }
    base = by_kind.get("small", next(iter(by_kind.values())))
    lines = [
        f"{result['topology']}: kind         median stall  worst stall  median burst  "
        "stall/small  burst/small"
    ]
    for kind, m in by_kind.items():
        lines.append(
            f"{'':{len(result['topology'])}s}  {kind:11s}  {m['stall_ms']:9.1f} ms "
            f"{m['worst_stall_ms']:9.1f} ms  {m['burst_ms']:9.0f} ms  "
            f"{m['stall_ms'] / max(base['stall_ms'], 0.1):10.2f}  "
            f"{m['burst_ms'] / max(base['burst_ms'], 0.1):10.2f}"
        )
    lines.append(
        f"{'':{len(result['topology'])}s}  fencings {result['fencings']}, role at the end "
        f"{result['role']}, lease watchdog's largest stall {result['watchdog_max_ms']} ms "
        f"(fences over {result['lease_ms'] // 10} ms)"
    )
    return lines


async def run_poisonbench(
    *,
    rounds: int,
    count: int,
    topologies: list[str],
    lease_ms: int = 5000,
    kinds: tuple[str, ...] = KINDS,
) -> int:
    print(
        f"poison bench: {count} messages a burst, {rounds} rounds, kinds {', '.join(kinds)}, "
        f"lease {lease_ms} ms; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        flush=True,
    )
    results = [await _measure(t, rounds, count, lease_ms, kinds) for t in topologies]
    print()
    failed = False
    for result in results:
        for line in _summary(result):
            print(line)
        failed |= result["fencings"] != 0 or result["role"] != "active"
    if failed:
        print("FAILED: the instance fenced itself or lost the lead under a burst")
        return 1
    return 0


if __name__ == "__main__":
    publish_main(sys.argv[1:])
