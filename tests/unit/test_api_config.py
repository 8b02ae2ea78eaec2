"""The admin API's configuration: a non-loopback bind needs the API key, and so does
`http.metrics_requires_key`; the deployment's file binds 0.0.0.0 and says why."""

from __future__ import annotations

from pathlib import Path

import pytest

from titan_exec.config import ConfigError, is_loopback_host, load

ROOT = Path(__file__).resolve().parents[2]
BASE = {"HMAC_SECRET": "s" * 32}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "titan.internal"])
def test_a_non_loopback_bind_without_the_api_key_refuses_to_start(host: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(None, env=BASE, overrides={"http.host": host})
    assert "security.api_key" in str(err.value)
    assert "TITAN_EXECUTION_API_KEY" in str(err.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_a_loopback_bind_starts_without_the_api_key(host: str) -> None:
    cfg = load(None, env=BASE, overrides={"http.host": host})
    assert cfg.http.host == host and cfg.security.api_key == ""
    assert is_loopback_host(host)


def test_a_non_loopback_bind_with_the_api_key_starts() -> None:
    cfg = load(
        None, env={**BASE, "TITAN_EXECUTION_API_KEY": "k" * 24}, overrides={"http.host": "0.0.0.0"}
    )
    assert cfg.http.host == "0.0.0.0" and not cfg.http.metrics_requires_key


def test_metrics_requires_key_is_a_bool_setting_that_needs_the_key(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text("[http]\nmetrics_requires_key = true\n")
    cfg = load(f, env={**BASE, "TITAN_EXECUTION_API_KEY": "k" * 24})
    assert cfg.http.metrics_requires_key is True
    with pytest.raises(ConfigError, match=r"security\.api_key.*metrics_requires_key"):
        load(f, env=BASE)
    f.write_text('[http]\nmetrics_requires_key = "sometimes"\n')
    with pytest.raises(ConfigError, match=r"http\.metrics_requires_key"):
        load(f, env={**BASE, "TITAN_EXECUTION_API_KEY": "k" * 24})


def test_tools_that_serve_no_http_load_the_deployment_file_without_the_key() -> None:
    """`titan-exec nats --config deploy/titan.toml` (require_secret=False) serves no API."""
    cfg = load(ROOT / "deploy/titan.toml", env={}, require_secret=False)
    assert cfg.http.host == "0.0.0.0"
    with pytest.raises(ConfigError, match=r"security\.api_key"):
        load(ROOT / "deploy/titan.toml", env=BASE)


def test_the_deployment_file_documents_its_bind_and_the_new_setting() -> None:
    text = (ROOT / "deploy/titan.toml").read_text()
    http = text.split("[http]", 1)[1].split("\n[", 1)[0]
    assert 'host = "0.0.0.0"' in http and "metrics_requires_key = false" in http
    assert "TITAN_EXECUTION_API_KEY" in http and "published port" in http
