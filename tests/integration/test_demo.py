"""`titan-exec demo` (`make demo`) as a user runs it: the pair demo passes its own final
checks, reports a failover time, and leaves no child process behind, also when it is
interrupted; the single-instance paper variant still runs."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import pytest

pytestmark = pytest.mark.integration


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HMAC", "NATS", "TITAN"))}


async def _start_demo(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "titan_exec", "demo", *args,
        env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def _pids(output: str) -> set[int]:
    """Every child process the demo names (nats-server, simulator, instances)."""
    pids = {int(p) for p in re.findall(r"\bpid (\d+)", output)}
    if "THE PAIR AT THE END" in output:
        pids |= {int(row["pid"]) for row in _table(output, "THE PAIR AT THE END").values()}
    return pids


def _table(output: str, title: str) -> dict[str, dict[str, str]]:
    """The rows of the printed table `title`, by first cell, as {column: cell}."""
    lines = output[output.index(title) :].splitlines()[1:]
    header = [c.strip() for c in lines[1].split("|")]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[3:]:
        if line.startswith("-"):
            break
        cells = [c.strip() for c in line.split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose (its parent, the demo, is gone)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


async def test_the_pair_demo_passes_its_checks_across_a_kill_9() -> None:
    proc = await _start_demo()
    out_b, _ = await asyncio.wait_for(proc.communicate(), 150)
    out = out_b.decode()
    assert proc.returncode == 0, out[-4000:]
    assert "8 of 8 checks passed" in out, out[-4000:]
    checks = {name: row["result"] for name, row in _table(out, "CHECKS").items()}
    assert checks == {
        "state hashes of the instances at the same stream position": "EQUAL",
        "net positions of every instance vs the venue's trades": "EQUAL",
        "no client order id twice at the venue": "PASS",
        "every command decided exactly once": "PASS",
        "every state event fenced by the epoch current when it landed": "PASS",
        "positions and open orders on venue binance vs its own trades": "EQUAL",
        "positions and open orders on venue bybit vs its own trades": "EQUAL",
        "titan-exec status shows both venues": "PASS",
    }
    match = re.search(
        r"backup active (\d+) ms after the kill, the next intent decided (\d+) ms", out
    )
    assert match, out[-3000:]
    to_active, to_decided = int(match[1]), int(match[2])
    assert 0 < to_active <= to_decided < 10_000
    pair = _table(out, "THE PAIR AT THE END")
    assert pair["primary"]["role"] == "standby" and pair["backup"]["role"] == "active"
    for column in ("event_seq", "state_hash", "net positions"):
        assert pair["primary"][column] == pair["backup"][column], column
    # two venues, each its own simulator, both traded on (`flow.second_venue`)
    assert {"venue binance", "venue bybit"} <= set(pair)
    assert all("orders placed" in pair[v]["decided"] for v in ("venue binance", "venue bybit"))
    assert "venue bybit" in out[out.index("the operator's view") :]
    await asyncio.sleep(0.5)
    assert not [p for p in _pids(out) if _is_alive(p)]


async def test_ctrl_c_stops_every_child_process() -> None:
    proc = await _start_demo()
    assert proc.stdout is not None
    seen = ""
    async with asyncio.timeout(90):
        while "kill -9 of the active" not in seen:
            line = await proc.stdout.readline()
            assert line, seen
            seen += line.decode()
    proc.send_signal(signal.SIGINT)
    rest, _ = await asyncio.wait_for(proc.communicate(), 30)
    out = seen + rest.decode()
    assert proc.returncode == 130, out[-3000:]
    assert "demo interrupted" in out
    children = _pids(out)
    assert len(children) >= 5  # nats-server, two simulators, primary, backup
    await asyncio.sleep(0.5)
    assert not [p for p in children if _is_alive(p)]


async def test_the_single_instance_paper_demo_still_runs() -> None:
    proc = await _start_demo("--venue", "paper")
    out_b, _ = await asyncio.wait_for(proc.communicate(), 90)
    out = out_b.decode()
    assert proc.returncode == 0, out[-4000:]
    assert "one in-process instance, venue: paper" in out
    assert "2 of 2 checks passed" in out  # the decisions and the fencing, from verify
