"""The command line: envelope verify (the operator's debugging tool) and loud config errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import CONTRACT

VECTORS = json.loads((CONTRACT / "hmac-vectors.json").read_text())["vectors"]
SECRET = "unit-test-secret"


def run_cli(
    args: list[str], *, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HMAC", "NATS", "TITAN"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "titan_exec", *args],
        input=stdin,
        env=full_env,
        capture_output=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_envelope_verify_accepts_every_vector(vector: dict[str, str]) -> None:
    res = run_cli(
        ["envelope", "verify", "--ignore-time"],
        stdin=vector["envelope_wire"].encode(),
        env={"HMAC_SECRET": vector["secret"]},
    )
    assert res.returncode == 0, res.stderr
    assert b"ok: signature verifies" in res.stdout


def test_envelope_verify_names_the_reason_for_a_tampered_envelope() -> None:
    wire = VECTORS[0]["envelope_wire"].replace('"size":0.1', '"size":0.2')
    res = run_cli(
        ["envelope", "verify", "--ignore-time"],
        stdin=wire.encode(),
        env={"HMAC_SECRET": VECTORS[0]["secret"]},
    )
    assert res.returncode == 1
    assert b"hmac_signature_mismatch" in res.stderr


def test_envelope_verify_reports_a_stale_timestamp() -> None:
    res = run_cli(
        ["envelope", "verify"],
        stdin=VECTORS[0]["envelope_wire"].encode(),
        env={"HMAC_SECRET": VECTORS[0]["secret"]},
    )
    assert res.returncode == 4
    assert b"stale_timestamp" in res.stderr


def test_envelope_verify_without_secret_or_with_garbage() -> None:
    assert run_cli(["envelope", "verify"], stdin=b"{}").returncode == 2
    res = run_cli(["envelope", "verify"], stdin=b"nope", env={"HMAC_SECRET": SECRET})
    assert res.returncode == 3 and b"invalid envelope" in res.stderr


@pytest.mark.parametrize(
    ("env", "toml", "fragment"),
    [
        ({}, "", b"security.hmac_secret"),
        ({"HMAC_SECRET": SECRET, "PORT": "http"}, "", b"http.port"),
        ({"HMAC_SECRET": SECRET, "NATS_USER": "u"}, "", b"nats.user"),
        ({"HMAC_SECRET": SECRET}, "[nats]\nreplicas = 9\n", b"nats.replicas"),
        ({"HMAC_SECRET": SECRET}, "[orders]\nttl_msec = 5\n", b"orders.ttl_msec"),
        ({"HMAC_SECRET": SECRET, "HMAC_TIMESTAMP_TOLERANCE": "-1"}, "", b"timestamp_tolerance"),
        (
            {"HMAC_SECRET": SECRET, "TITAN_UNSAFE_DISABLE_FENCING": "0"},
            "",
            b"UNSAFE_DISABLE_FENCING",
        ),
        (
            {"HMAC_SECRET": SECRET},
            "[ha]\nenabled = true\nlease_ms = 5000\nrenew_interval_ms = 2000\n",
            b"ha.renew_interval_ms",
        ),
        ({"HMAC_SECRETS": ":abc"}, "", b"security.hmac_secrets (HMAC_SECRETS)"),
        ({"HMAC_SECRETS": "k1:"}, "", b"security.hmac_secrets (HMAC_SECRETS)"),
        ({"HMAC_SECRET": "x"}, "", b"security.hmac_secret (HMAC_SECRET)"),
        ({"HMAC_SECRET": SECRET, "NATS_URL": "u:pw@host:4222"}, "", b"nats.url"),
    ],
    ids=[
        "no-secret",
        "bad-port",
        "user-without-password",
        "replicas",
        "unknown-key",
        "tolerance",
        "unsafe-fencing-not-1",
        "lease-timing",
        "hmac-secrets-empty-key-id",
        "hmac-secrets-empty-secret",
        "one-byte-secret",
        "nats-url-without-scheme",
    ],
)
def test_bad_configuration_stops_start_up_naming_the_setting(
    tmp_path: Path, env: dict[str, str], toml: str, fragment: bytes
) -> None:
    args = ["run", "--state-dir", str(tmp_path)]
    if toml:
        cfg = tmp_path / "c.toml"
        cfg.write_text(toml)
        args += ["--config", str(cfg)]
    res = run_cli(args, env=env)
    assert res.returncode == 78, res.stderr
    assert b"configuration error" in res.stderr and fragment in res.stderr
    # one line, no traceback, and before anything started: no embedded server's data
    assert res.stderr.count(b"\n") == 1 and b"Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "nats").exists()


@pytest.mark.parametrize("size", ["abc", "0", "-1", "1e-400", "1e400", "nan", ""])
def test_send_refuses_a_size_that_is_not_a_positive_number_before_connecting(size: str) -> None:
    """argparse's own message and exit status 2, no traceback (and no NATS needed)."""
    res = run_cli(["send", "intent", "--size", size], env={"HMAC_SECRET": SECRET})
    assert res.returncode == 2, res.stderr
    assert b"Traceback" not in res.stderr
    assert b"error: argument --size: expected a positive" in res.stderr
    assert repr(size).encode() in res.stderr


def test_send_reads_size_and_entry_as_the_numbers_the_payload_carries() -> None:
    from titan_exec.cli.main import build_parser

    args = build_parser().parse_args(["send", "intent", "--size", "0.5", "--entry", "101.25"])
    assert (args.size, args.entry) == (0.5, 101.25)
    assert build_parser().parse_args(["send", "intent"]).size == 0.01  # the default
    with pytest.raises(SystemExit):
        build_parser().parse_args(["send", "--timeout", "0", "intent"])
