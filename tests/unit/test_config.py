"""Configuration: precedence, strictness, and secrets that never show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from titan_exec.config import ConfigError, load


def test_precedence_defaults_file_environment_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[http]\nport = 4000\n[service]\ninstance_id = "from-file"\n')
    cfg = load(f, env={"HMAC_SECRET": "s", "PORT": "5000"}, overrides={"http.port": None})
    assert cfg.http.port == 5000  # env beats file
    assert cfg.service.instance_id == "from-file"
    cfg = load(f, env={"HMAC_SECRET": "s", "PORT": "5000"}, overrides={"http.port": 6000})
    assert cfg.http.port == 6000  # flag beats env
    assert load(None, env={"HMAC_SECRET": "s"}).http.port == 3002  # default


def test_legacy_environment_keeps_its_meaning() -> None:
    cfg = load(
        None,
        env={
            "HMAC_SECRET": "s",
            "HMAC_TIMESTAMP_TOLERANCE": "60",
            "NATS_URL": "nats://x:4222",
            "NATS_USER": "u",
            "NATS_PASS": "p",
            "TITAN_EXECUTION_API_KEY": "k",
        },
    )
    assert cfg.security.timestamp_tolerance_s == 60
    assert cfg.nats.url == "nats://x:4222" and cfg.nats.user == "u" and cfg.nats.password == "p"
    assert cfg.security.api_key == "k"


def test_several_secrets_by_key_id() -> None:
    cfg = load(None, env={"HMAC_SECRETS": "k1:one, k2:two", "HMAC_SECRET": "zero"})
    assert cfg.keyring_secrets == {"k1": b"one", "k2": b"two", "default": b"zero"}


def test_secrets_never_appear_in_the_redacted_view() -> None:
    cfg = load(
        None,
        env={
            "HMAC_SECRET": "hunter2",
            "NATS_USER": "u",
            "NATS_PASS": "pw-secret",
            "TITAN_EXECUTION_API_KEY": "api-secret",
            "HMAC_SECRETS": "k:ks",
        },
    )
    text = json.dumps(cfg.redacted())
    for secret in ("hunter2", "pw-secret", "api-secret", '"ks"'):
        assert secret not in text


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("[nats]\nreplica = 3\n", "unknown setting nats.replica"),
        ("[http]\nport = true\n", "http.port"),
        ('[service]\nnamespace = "a.b"\n', "service.namespace"),
        ('[venue]\nkind = "ftx"\n', "venue.kind"),
        ("[orders]\nin_doubt_absent_after_ms = 10\n", "orders.in_doubt_absent_after_ms"),
        ('[risk]\npolicy_file = "/nope.json"\n', "risk.policy_file"),
        ('[venue]\nkind = "ccxt"\nrate_limit_ms = -1\n', "venue.rate_limit_ms"),
        ("not toml at all [", "config file"),
        ("[reconcile]\nunknown_ms = 1\n", "unknown setting reconcile.unknown_ms"),
        ("[reconcile]\npositions_interval_ms = 0\n", "reconcile.positions_interval_ms"),
        ("[reconcile]\nbalances_interval_ms = -5\n", "reconcile.balances_interval_ms"),
        (
            "[reconcile]\nopen_orders_interval_ms = 5000\npositions_interval_ms = 1000\n",
            "reconcile.open_orders_interval_ms",
        ),
        ("[reconcile]\nposition_confirm_ms = 90\n", "reconcile.position_confirm_ms"),
        (
            '[venue]\nkind = "ccxt"\npoll_interval_ms = 1500\n',
            "reconcile.position_confirm_ms",
        ),
        ("[reconcile]\npositions_authoritative = 3\n", "reconcile.positions_authoritative"),
        (
            "[orders]\nreconcile_interval_ms = 500\n[reconcile]\nopen_orders_interval_ms = 700\n",
            "orders.reconcile_interval_ms",
        ),
        ("[snapshots]\nevery_events = 0\n", "snapshots.every_events"),
        ("[snapshots]\nevery_ms = 10\n", "snapshots.every_ms"),
        ('[snapshots]\nbucket = "a.b"\n', "snapshots.bucket"),
        ("[retention]\npurge = true\n[snapshots]\nkeep = 1\n", "retention.purge"),
        ("[retention]\npurge = true\n[snapshots]\nenabled = false\n", "retention.purge"),
        ("[retention]\nhorizon_ms = 60000\n", "retention.horizon_ms"),
    ],
)
def test_bad_settings_name_themselves(tmp_path: Path, toml: str, fragment: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load(f, env={"HMAC_SECRET": "s"})


def test_lease_election_from_the_environment() -> None:
    cfg = load(
        None, env={"HMAC_SECRET": "s", "TITAN_HA_ENABLED": "true", "TITAN_HA_LEASE_MS": "2000"}
    )
    assert (cfg.ha.enabled, cfg.ha.lease_ms) == (True, 2000)


def test_fencing_is_disabled_only_by_the_environment_variable_set_to_1(tmp_path: Path) -> None:
    """The broken build of the chaos tests (issue 5): no file key or flag can reach it."""
    assert load(None, env={"HMAC_SECRET": "s"}).is_unsafe_fencing_disabled is False
    assert load(None, env={"HMAC_SECRET": "s"}).unsafe == []
    for unset in ({}, {"TITAN_UNSAFE_DISABLE_FENCING": ""}):
        assert not load(None, env={"HMAC_SECRET": "s", **unset}).is_unsafe_fencing_disabled
    cfg = load(None, env={"HMAC_SECRET": "s", "TITAN_UNSAFE_DISABLE_FENCING": "1"})
    assert cfg.is_unsafe_fencing_disabled and cfg.unsafe == ["fencing disabled"]
    assert cfg.redacted()["is_unsafe_fencing_disabled"] is True  # in the start-up log line

    f = tmp_path / "c.toml"
    f.write_text("is_unsafe_fencing_disabled = true\n")
    with pytest.raises(ConfigError, match="unknown setting is_unsafe_fencing_disabled"):
        load(f, env={"HMAC_SECRET": "s"})
    with pytest.raises(ConfigError, match="unknown setting is_unsafe_fencing_disabled"):
        load(None, env={"HMAC_SECRET": "s"}, overrides={"is_unsafe_fencing_disabled": True})


@pytest.mark.parametrize("value", ["0", "true", "yes", "on", " 1", "1 ", "2"])
def test_any_other_value_of_the_unsafe_variable_stops_start_up(value: str) -> None:
    with pytest.raises(ConfigError, match=r"TITAN_UNSAFE_DISABLE_FENCING: only 1 .* got"):
        load(None, env={"HMAC_SECRET": "s", "TITAN_UNSAFE_DISABLE_FENCING": value})


def test_reconcile_defaults_and_the_old_name_of_the_open_orders_interval(tmp_path: Path) -> None:
    rc = load(None, env={"HMAC_SECRET": "s"}).reconcile
    assert (rc.open_orders_interval_ms, rc.positions_interval_ms, rc.balances_interval_ms) == (
        2000,
        10_000,
        60_000,
    )
    assert (rc.position_confirm_ms, rc.positions_authoritative) == (2000, True)
    f = tmp_path / "c.toml"
    f.write_text("[orders]\nreconcile_interval_ms = 500\n")
    assert load(f, env={"HMAC_SECRET": "s"}).reconcile.open_orders_interval_ms == 500
    f.write_text(
        "[orders]\nreconcile_interval_ms = 500\n[reconcile]\nopen_orders_interval_ms = 500\n"
    )
    assert load(f, env={"HMAC_SECRET": "s"}).reconcile.open_orders_interval_ms == 500
