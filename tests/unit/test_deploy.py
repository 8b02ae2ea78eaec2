"""The production deployment's structure (Docker is not available here, so the compose
file is checked as data, the NATS configuration by the real nats-server, and the service
configuration by the service's own loader)."""

from __future__ import annotations

import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml

from titan_exec.config import load

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.prod.yml"
NATS_BIN = Path(sysconfig.get_path("scripts")) / "nats-server"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def test_three_clustered_nats_nodes_with_persistent_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for i in (1, 2, 3):
        node = services[f"nats-{i}"]
        assert node["restart"] == "unless-stopped"
        assert "healthcheck" in node
        assert any(v.endswith(":/data") for v in node["volumes"])
        conf = ROOT / f"deploy/nats/nats-{i}.conf"
        text = conf.read_text()
        assert "jetstream" in text and f"server_name: nats-{i}" in text
        for j in {1, 2, 3} - {i}:
            assert f"nats-route://nats-{j}:6222" in text
        assert f"nats-{i}-data" in compose["volumes"]


@pytest.mark.parametrize("node", [1, 2, 3])
def test_nats_configurations_are_accepted_by_nats_server(node: int) -> None:
    res = subprocess.run(
        [str(NATS_BIN), "-c", str(ROOT / f"deploy/nats/nats-{node}.conf"), "-t"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 0, res.stderr.decode() + res.stdout.decode()


def test_primary_and_backup_share_image_and_config_and_differ_in_role(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    primary, backup = services["primary"], services["backup"]
    assert primary["environment"]["EXECUTION_MODE"] == "active"
    assert backup["environment"]["EXECUTION_MODE"] == "standby"
    assert primary["environment"]["TITAN_INSTANCE_ID"] != backup["environment"]["TITAN_INSTANCE_ID"]
    for svc in (primary, backup):
        assert svc["image"] == "titan-execution:latest"
        assert svc["restart"] == "unless-stopped"
        assert "/ready" in " ".join(svc["healthcheck"]["test"])
        assert {c["source"] for c in svc["configs"]} == {"titan-config"}
        assert set(svc["secrets"]) == set(compose["secrets"])
        assert all(
            v.endswith("_FILE") or not k.endswith(("SECRET", "KEY"))
            for k, v in svc["environment"].items()
        )
        assert any(v.endswith(":/var/lib/titan") for v in svc["volumes"])
        assert set(svc["depends_on"]) == {"nats-1", "nats-2", "nats-3"}


def test_the_service_configuration_loads_as_a_lease_elected_r3_pair(tmp_path: Path) -> None:
    secret = tmp_path / "hmac"
    secret.write_text("from-a-docker-secret\n")
    cfg = load(
        ROOT / "deploy/titan.toml",
        env={
            "HMAC_SECRET_FILE": str(secret),
            "TITAN_EXECUTION_API_KEY": "k",  # 0.0.0.0 is bound: the key is required
            "EXECUTION_MODE": "standby",
            "TITAN_INSTANCE_ID": "backup",
        },
    )
    assert cfg.ha.enabled and cfg.nats.replicas == 3
    assert cfg.nats.url.count("nats://") == 3
    assert cfg.is_standby and cfg.service.instance_id == "backup"
    assert cfg.keyring_secrets["default"] == b"from-a-docker-secret"
    assert cfg.venue.kind == "ccxt" and cfg.service.namespace == "execution"


def test_the_image_runs_the_service_entry_point() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["titan-exec"]' in text
    assert "pip install" in text and "HEALTHCHECK" in text and "USER titan" in text
