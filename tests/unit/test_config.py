"""Configuration: precedence, strictness, and secrets that never show."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from titan_exec.config import ConfigError, load

SECRET = "unit-test-secret"  # 16 bytes


def test_precedence_defaults_file_environment_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[http]\nport = 4000\n[service]\ninstance_id = "from-file"\n')
    cfg = load(f, env={"HMAC_SECRET": SECRET, "PORT": "5000"}, overrides={"http.port": None})
    assert cfg.http.port == 5000  # env beats file
    assert cfg.service.instance_id == "from-file"
    cfg = load(f, env={"HMAC_SECRET": SECRET, "PORT": "5000"}, overrides={"http.port": 6000})
    assert cfg.http.port == 6000  # flag beats env
    assert load(None, env={"HMAC_SECRET": SECRET}).http.port == 3002  # default


def test_legacy_environment_keeps_its_meaning() -> None:
    cfg = load(
        None,
        env={
            "HMAC_SECRET": SECRET,
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
    cfg = load(None, env={"HMAC_SECRETS": "k1:secret-1, k2:secret-2", "HMAC_SECRET": SECRET})
    assert cfg.keyring_secrets == {
        "k1": b"secret-1",
        "k2": b"secret-2",
        "default": SECRET.encode(),
    }


def test_secrets_never_appear_in_the_redacted_view() -> None:
    cfg = load(
        None,
        env={
            "HMAC_SECRET": "hunter2-hunter2",
            "NATS_USER": "u",
            "NATS_PASS": "pw-secret",
            "TITAN_EXECUTION_API_KEY": "api-secret",
            "HMAC_SECRETS": "k:ks-secret-value",
        },
    )
    text = json.dumps(cfg.redacted())
    for secret in ("hunter2", "pw-secret", "api-secret", "ks-secret-value"):
        assert secret not in text


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("[nats]\nreplica = 3\n", "unknown setting nats.replica"),
        ("[http]\nport = true\n", "http.port"),
        ('[service]\nnamespace = "a.b"\n', "service.namespace"),
        ('[venue]\nkind = "ftx"\n', "venue.kind"),
        ("[orders]\nin_doubt_absent_after_ms = 10\n", "orders.in_doubt_absent_after_ms"),
        ("[orders]\nrecovery_send_within_ms = 0\n", "orders.recovery_send_within_ms"),
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
        ('[nats]\nfenced_writes = "fast"\n', "nats.fenced_writes"),
        ('[nats]\nfenced_writes = "pipelined"\nreplicas = 3\n', "nats.fenced_writes"),
    ],
)
def test_bad_settings_name_themselves(tmp_path: Path, toml: str, fragment: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load(f, env={"HMAC_SECRET": SECRET})


def test_the_recovery_window_is_a_setting(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[orders]\nrecovery_send_within_ms = 20000\n")
    assert load(f, env={"HMAC_SECRET": SECRET}).orders.recovery_send_within_ms == 20_000
    assert load(None, env={"HMAC_SECRET": SECRET}).orders.recovery_send_within_ms == 5_000


def test_lease_election_from_the_environment() -> None:
    cfg = load(
        None, env={"HMAC_SECRET": SECRET, "TITAN_HA_ENABLED": "true", "TITAN_HA_LEASE_MS": "2000"}
    )
    assert (cfg.ha.enabled, cfg.ha.lease_ms) == (True, 2000)


def test_fencing_is_disabled_only_by_the_environment_variable_set_to_1(tmp_path: Path) -> None:
    """The broken build of the chaos tests (issue 5): no file key or flag can reach it."""
    assert load(None, env={"HMAC_SECRET": SECRET}).is_unsafe_fencing_disabled is False
    assert load(None, env={"HMAC_SECRET": SECRET}).unsafe == []
    for unset in ({}, {"TITAN_UNSAFE_DISABLE_FENCING": ""}):
        assert not load(None, env={"HMAC_SECRET": SECRET, **unset}).is_unsafe_fencing_disabled
    cfg = load(None, env={"HMAC_SECRET": SECRET, "TITAN_UNSAFE_DISABLE_FENCING": "1"})
    assert cfg.is_unsafe_fencing_disabled and cfg.unsafe == ["fencing disabled"]
    assert cfg.redacted()["is_unsafe_fencing_disabled"] is True  # in the start-up log line

    f = tmp_path / "c.toml"
    f.write_text("is_unsafe_fencing_disabled = true\n")
    with pytest.raises(ConfigError, match="unknown setting is_unsafe_fencing_disabled"):
        load(f, env={"HMAC_SECRET": SECRET})
    with pytest.raises(ConfigError, match="unknown setting is_unsafe_fencing_disabled"):
        load(None, env={"HMAC_SECRET": SECRET}, overrides={"is_unsafe_fencing_disabled": True})


@pytest.mark.parametrize("value", ["0", "true", "yes", "on", " 1", "1 ", "2"])
def test_any_other_value_of_the_unsafe_variable_stops_start_up(value: str) -> None:
    with pytest.raises(ConfigError, match=r"TITAN_UNSAFE_DISABLE_FENCING: only 1 .* got"):
        load(None, env={"HMAC_SECRET": SECRET, "TITAN_UNSAFE_DISABLE_FENCING": value})


def test_reconcile_defaults_and_the_old_name_of_the_open_orders_interval(tmp_path: Path) -> None:
    rc = load(None, env={"HMAC_SECRET": SECRET}).reconcile
    assert (rc.open_orders_interval_ms, rc.positions_interval_ms, rc.balances_interval_ms) == (
        2000,
        10_000,
        60_000,
    )
    assert (rc.position_confirm_ms, rc.positions_authoritative) == (2000, True)
    f = tmp_path / "c.toml"
    f.write_text("[orders]\nreconcile_interval_ms = 500\n")
    assert load(f, env={"HMAC_SECRET": SECRET}).reconcile.open_orders_interval_ms == 500
    f.write_text(
        "[orders]\nreconcile_interval_ms = 500\n[reconcile]\nopen_orders_interval_ms = 500\n"
    )
    assert load(f, env={"HMAC_SECRET": SECRET}).reconcile.open_orders_interval_ms == 500


# --- issue 12: every local failure is a ConfigError at load, naming the key ----------------


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        (
            "[ha]\nenabled = true\nlease_ms = 5000\nrenew_interval_ms = 2000\n",
            "ha.renew_interval_ms",
        ),
        ("[ha]\nenabled = true\nlease_ms = 1000\nsafety_margin_ms = 100\n", "ha.safety_margin_ms"),
        ("[ha]\nenabled = true\nlease_ms = 1000\nsafety_margin_ms = 600\n", "ha.safety_margin_ms"),
        ("[ha]\nlease_ms = 5000\nrenew_interval_ms = -1\n", "ha.renew_interval_ms"),
    ],
)
def test_a_lease_timing_the_leadership_core_refuses_is_refused_at_load(
    tmp_path: Path, toml: str, fragment: str
) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match="^" + re.escape(f"{fragment}: ")):
        load(f, env={"HMAC_SECRET": SECRET})


def test_the_default_and_the_demo_lease_timings_load() -> None:
    for lease in ("1000", "2000", "5000"):
        env = {"HMAC_SECRET": SECRET, "TITAN_HA_ENABLED": "true", "TITAN_HA_LEASE_MS": lease}
        assert load(None, env=env).ha.lease_ms == int(lease)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (":abc-secret-value", "pair 1 has an empty key id"),
        ("k1:", "key id 'k1': empty secret"),
        ("k1:secret-one, :secret-two", "pair 2 has an empty key id"),
        ("k1", "pair 1 has no ':'"),
        ("k1:secret-one,k1:secret-two", "key id 'k1' is given twice"),
        ("k1:short", "key id 'k1': the secret is 5 bytes, at least 8"),
    ],
)
def test_a_malformed_hmac_secrets_variable_is_refused_without_showing_a_secret(
    value: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, env={"HMAC_SECRETS": value}, require_secret=False)
    message = str(caught.value)
    assert message.startswith("security.hmac_secrets (HMAC_SECRETS): "), message
    assert fragment in message
    for secret in ("abc-secret-value", "secret-one", "secret-two", "short"):
        assert secret not in message


def test_an_empty_secret_in_the_file_table_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[security.hmac_secrets]\nk1 = ""\n')
    with pytest.raises(ConfigError, match=r"security\.hmac_secrets .*'k1': empty secret"):
        load(f, env={})


@pytest.mark.parametrize("secret", ["x", "1234567"])
def test_a_too_short_hmac_secret_is_refused(secret: str) -> None:
    with pytest.raises(ConfigError, match=r"^security\.hmac_secret \(HMAC_SECRET\): .*at least 8"):
        load(None, env={"HMAC_SECRET": secret})
    # the tools that only sign or verify (send, envelope verify) refuse it too
    with pytest.raises(ConfigError, match="at least 8"):
        load(None, env={"HMAC_SECRET": secret}, require_secret=False)


def test_a_secret_of_the_minimum_length_is_accepted() -> None:
    assert load(None, env={"HMAC_SECRET": "12345678"}).keyring_secrets == {"default": b"12345678"}
    # bytes, not characters: 4 two-byte characters are 8 bytes
    assert load(None, env={"HMAC_SECRET": "éééé"}).keyring_secrets["default"] == "éééé".encode()


def test_a_password_or_token_inside_the_nats_url_never_shows() -> None:
    cfg = load(
        None,
        env={
            "HMAC_SECRET": SECRET,
            "NATS_URL": "nats://trader:PASSWORD-1@n1:4222, nats://TOKEN-2@n2:4222,nats://n3:4222",
            "TITAN_VENUE_BASE_URL": "http://proxy:PROXY-3@venue:8080",
        },
    )
    shown = json.dumps(cfg.redacted()) + repr(cfg)
    for secret in ("PASSWORD-1", "TOKEN-2", "PROXY-3", SECRET):
        assert secret not in shown
    doc = cfg.redacted()
    assert doc["nats"]["url"] == "nats://trader:***@n1:4222,nats://***@n2:4222,nats://n3:4222"
    assert doc["venue"]["base_url"] == "http://proxy:***@venue:8080"
    assert cfg.nats.url.startswith("nats://trader:PASSWORD-1@")  # the value itself is intact


def test_a_nats_url_without_a_scheme_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError, match=r"^nats\.url \(NATS_URL\): URL 2 must start") as caught:
        load(None, env={"HMAC_SECRET": SECRET, "NATS_URL": "nats://n1:4222,u:PASSWORD@n2:4222"})
    assert "PASSWORD" not in str(caught.value)


CONTRACT_POLICY = Path(__file__).resolve().parents[1] / "fixtures" / "contract" / "risk_policy.json"


def test_the_risk_policy_file_is_read_and_checked_at_load(tmp_path: Path) -> None:
    """Read now, not at genesis (which follows the epoch marker)."""
    f = tmp_path / "c.toml"
    f.write_text(f'[risk]\npolicy_file = "{CONTRACT_POLICY}"\n')
    assert load(f, env={"HMAC_SECRET": SECRET}).risk.policy_file == str(CONTRACT_POLICY)
    bad = tmp_path / "policy.json"
    f.write_text(f'[risk]\npolicy_file = "{bad}"\n')
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"^risk\.policy_file: .*not a JSON risk policy"):
        load(f, env={"HMAC_SECRET": SECRET})
    doc = json.loads(CONTRACT_POLICY.read_text())
    del doc["maxAccountLeverage"]
    bad.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"^risk\.policy_file: .*maxAccountLeverage"):
        load(f, env={"HMAC_SECRET": SECRET})
