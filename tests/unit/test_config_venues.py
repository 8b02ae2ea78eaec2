"""Several venues in one configuration: `[venues.<name>]` tables, the `[routing]` default, the
single `[venue]` as one entry, and every way of getting them wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from titan_exec.config import ConfigError, load

SECRET = "unit-test-secret"

TWO = """
[routing]
default = "binance"
[venues.binance]
kind = "ccxt"
exchange_id = "binanceusdm"
base_url = "http://127.0.0.1:9001"
api_key = "key-binance"
api_secret = "secret-binance"
[venues.bybit]
kind = "ccxt"
exchange_id = "bybit"
account = "sub1"
base_url = "http://127.0.0.1:9002"
poll_interval_ms = 500
weight_share = 0.25
"""


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "c.toml"
    f.write_text(text)
    return f


def test_the_single_venue_section_is_one_entry_and_the_default() -> None:
    cfg = load(None, env={"HMAC_SECRET": SECRET, "TITAN_VENUE_NAME": "binance"})
    assert list(cfg.venues) == ["binance"]
    assert cfg.venues["binance"] == cfg.venue
    assert cfg.default_venue == "binance"
    assert cfg.account_of(cfg.venue) == "main"  # service.account


def test_venue_tables_each_with_its_own_settings_and_account(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, TWO), env={"HMAC_SECRET": SECRET})
    assert [v.name for v in cfg.venue_list] == ["binance", "bybit"]  # the default first
    assert cfg.default_venue == "binance" and cfg.venue.name == "binance"
    bybit = cfg.venues["bybit"]
    assert (bybit.exchange_id, bybit.poll_interval_ms, bybit.weight_share) == ("bybit", 500, 0.25)
    assert cfg.account_of(bybit) == "sub1"
    assert cfg.account_of(cfg.venues["binance"]) == "main"


def test_one_table_needs_no_default(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, '[venues.okx]\nkind = "paper"\n'), env={"HMAC_SECRET": SECRET})
    assert cfg.default_venue == "okx" and list(cfg.venues) == ["okx"]


def test_environment_sets_a_key_of_a_named_venue(tmp_path: Path) -> None:
    env = {
        "HMAC_SECRET": SECRET,
        "TITAN_VENUES_BYBIT_POLL_INTERVAL_MS": "300",
        "TITAN_VENUES_BYBIT_BASE_URL": "http://127.0.0.1:9999",
        "TITAN_ROUTING_DEFAULT": "bybit",
    }
    cfg = load(write(tmp_path, TWO), env=env)
    assert cfg.venues["bybit"].poll_interval_ms == 300
    assert cfg.venues["bybit"].base_url == "http://127.0.0.1:9999"
    assert cfg.default_venue == "bybit" and cfg.venue_list[0].name == "bybit"


def test_credentials_from_named_variables_and_files_never_shown(tmp_path: Path) -> None:
    key_file = tmp_path / "bybit-secret"
    key_file.write_text("bybit-secret-from-file\n")
    text = TWO + 'api_key_env = "BYBIT_KEY"\napi_secret_env = "BYBIT_SECRET"\n'
    env = {"HMAC_SECRET": SECRET, "BYBIT_KEY": "bybit-key", "BYBIT_SECRET_FILE": str(key_file)}
    cfg = load(write(tmp_path, text), env=env)
    bybit = cfg.venues["bybit"]
    assert (bybit.api_key, bybit.api_secret) == ("bybit-key", "bybit-secret-from-file")
    shown = json.dumps(cfg.redacted()) + repr(cfg)
    for secret in ("bybit-key", "bybit-secret-from-file", "key-binance", "secret-binance"):
        assert secret not in shown
    assert cfg.redacted()["venues"]["bybit"]["api_key"] == "***"


def test_the_per_venue_key_variable_and_its_file_form(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    key_file.write_text("from-file")
    env = {"HMAC_SECRET": SECRET, "TITAN_VENUES_BYBIT_API_KEY_FILE": str(key_file)}
    assert load(write(tmp_path, TWO), env=env).venues["bybit"].api_key == "from-file"


@pytest.mark.parametrize(
    ("toml", "env", "fragment"),
    [
        (TWO + '[venue]\nkind = "paper"\n', {}, "both [venue] and [venues.<name>]"),
        (TWO, {"TITAN_VENUE_KIND": "paper"}, "both [venue] and [venues.<name>]"),
        (TWO.replace('[routing]\ndefault = "binance"\n', ""), {}, "name the one `auto`"),
        (TWO.replace('default = "binance"', 'default = "okx"'), {}, "'okx' is not among"),
        ('[routing]\ndefault = "okx"\n', {}, "'okx' is not a venue"),
        (TWO.replace("[venues.bybit]", "[venues.Bybit]"), {}, "lower case"),
        (TWO.replace("[venues.bybit]", "[venues.auto]"), {}, "reserved"),
        (TWO + 'name = "other"\n', {}, "venues.bybit.name"),
        (
            TWO.replace('kind = "ccxt"\nexchange_id = "bybit"', 'kind = "fix"'),
            {},
            "venues.bybit.kind",
        ),
        (TWO.replace("0.25", "2.0"), {}, "venues.bybit.weight_share"),
        (TWO + "colour = 1\n", {}, "unknown setting venues.bybit.colour"),
        (TWO + 'api_key_env = "NOT_SET_ANYWHERE"\n', {}, "NOT_SET_ANYWHERE is not set"),
        (TWO + "[venues.binance]\n", {}, "config file"),  # TOML: the same table twice
        (TWO + 'account = "s-1"\nbase_url = "ftp://x"\n', {}, "config file"),
        (
            TWO.replace(
                'exchange_id = "bybit"\naccount = "sub1"', 'exchange_id = "binanceusdm"'
            ).replace("9002", "9001")
            + 'api_key = "another-key"\n',
            {},
            "like venues.binance with different API keys",
        ),
        ("venues = 3\n", {}, "venues: expected tables"),
    ],
    ids=[
        "both-shapes",
        "both-shapes-by-env",
        "no-default",
        "default-not-a-venue",
        "default-not-the-single-venue",
        "upper-case-name",
        "reserved-name",
        "name-key-differs",
        "unknown-kind",
        "share-above-one",
        "unknown-key",
        "missing-key-variable",
        "duplicate-name",
        "duplicate-key",
        "one-account-twice",
        "not-tables",
    ],
)
def test_a_wrong_venue_configuration_stops_start_up(
    tmp_path: Path, toml: str, env: dict[str, str], fragment: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, toml), env={"HMAC_SECRET": SECRET, **env})
    assert fragment in str(err.value)


def test_two_paper_venues_on_one_account_are_two_exchanges(tmp_path: Path) -> None:
    text = '[routing]\ndefault = "a"\n[venues.a]\nkind = "paper"\n[venues.b]\nkind = "paper"\n'
    cfg = load(write(tmp_path, text), env={"HMAC_SECRET": SECRET})
    assert sorted(cfg.venues) == ["a", "b"]
