"""`LocalCluster`'s node configuration: advertised client URLs on or off."""

from __future__ import annotations

from pathlib import Path

from titan_exec_lab.harness.cluster import LocalCluster


def node_config(tmp_path: Path, **kw: bool) -> str:
    cluster = LocalCluster(tmp_path, **kw)
    cluster.route_ports = [14001, 14002, 14003]
    return cluster._node_config(0)


def test_nodes_advertise_each_other_by_default(tmp_path: Path) -> None:
    assert "no_advertise" not in node_config(tmp_path)


def test_not_advertised_keeps_clients_on_the_urls_they_were_given(tmp_path: Path) -> None:
    cfg = node_config(tmp_path, is_advertised=False)
    assert "no_advertise: true" in cfg
    assert cfg.count("listen:") == 1
