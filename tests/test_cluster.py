"""cluster.yaml: valid for Ray's cluster launcher (its own validator, offline), and what it promises."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _load() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def _validate(cfg: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cfg)))


def test_cluster_yaml_passes_rays_validator():
    _validate(_load())


def test_validator_catches_a_broken_config():
    """The check above can fail: a misspelt key or a missing node type is rejected."""
    cfg = _load()
    cfg["available_node_types"]["gpu_worker"]["min_worker"] = 0  # typo of min_workers
    with pytest.raises(Exception, match="min_worker"):
        _validate(cfg)
    cfg = _load()
    cfg["head_node_type"] = "no_such_type"
    with pytest.raises(Exception):
        _validate(cfg)


def test_cluster_layout():
    cfg = _load()
    assert cfg["provider"]["type"] == "aws"
    nodes = cfg["available_node_types"]
    head = nodes[cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "no trials on the head"
    workers = [n for k, n in nodes.items() if k != cfg["head_node_type"]]
    assert workers and all(n["max_workers"] > n.get("min_workers", 0) for n in workers), "autoscaling workers"
    assert all(n["node_config"]["InstanceType"].startswith(("g", "p")) for n in workers), "GPU instances"
    # the project is installed on every node
    assert "." in cfg["file_mounts"].values()
    setup = " ".join(cfg["setup_commands"])
    assert "pip install" in setup and "[search]" in setup
    # into a virtual environment every later command runs in: Ubuntu 24.04's python3 refuses pip installs
    # (PEP 668, "externally-managed-environment") and its plain AMI has no pip
    installs = [c for c in cfg["setup_commands"] if "pip install" in c]
    assert installs and all(c.startswith("~/itt-venv/bin/python -m pip install") for c in installs), installs
    assert "python3 -m venv ~/itt-venv" in setup and "source ~/itt-venv/bin/activate' >> ~/.bashrc" in setup
    amis = [n["node_config"]["ImageId"] for n in nodes.values()]
    assert all(a.startswith("REPLACE_ME") for a in amis), "an AMI of the user's region (3.11+; 22.04's is 3.10)"
    head_cmds = " ".join(cfg["head_start_ray_commands"])
    # the dashboard stays on loopback; MLflow runs on the head with its artifacts on the shared store
    assert "--dashboard-host=127.0.0.1" in head_cmds
    assert "mlflow server" in head_cmds and "--artifacts-destination s3://" in head_cmds
    assert "security_group" not in cfg["provider"], "no extra inbound rules: only the cluster and SSH"


def test_every_node_runs_with_token_auth_and_gets_the_token():
    """Ray token authentication: RAY_AUTH_MODE=token for every `ray start`, the token file reaches every
    node from outside the repository, and no token is written in the config."""
    cfg = _load()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in cfg[key] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token ray start" in c for c in starts), key
    src = cfg["file_mounts"].get("~/.ray/auth_token")
    assert src and src.startswith(("~", "/")), "the token comes from the user's home, not from the project"
    setup = " ".join(cfg["setup_commands"])
    assert "chmod 600 ~/.ray/auth_token" in setup and "export RAY_AUTH_MODE=token" in setup
    text = (ROOT / "cluster.yaml").read_text()
    assert "RAY_AUTH_TOKEN=" not in text and not re.search(r"\b[0-9a-f]{32,}\b", text), "a token in cluster.yaml"
    readme = (ROOT / "README.md").read_text()
    assert "ray get-auth-token --generate" in readme and "export RAY_AUTH_MODE=token" in readme


def test_readme_shows_the_cluster_workflow():
    readme = (ROOT / "README.md").read_text()
    for cmd in ("ray up cluster.yaml", "ray job submit", "ray dashboard cluster.yaml", "ray down cluster.yaml",
                "--storage s3://", "itt resume"):
        assert cmd in readme, cmd


def test_the_readme_cluster_search_config_is_valid():
    """The config the README submits to the cluster: a GPU search with the fault and disk settings."""
    from search.config import load_search

    scfg, chain, _ = load_search(ROOT / "configs" / "search_xnli_xlmr_base.yaml")
    assert chain.model.name == "xlm-roberta-base" and chain.target.task == "xnli"
    assert scfg.resources.gpus_per_worker >= 1 and scfg.max_failures >= 1 and scfg.keep_checkpoints
    assert scfg.space().count() == 1 + 6 + 30 + 120
    assert "configs/search_xnli_xlmr_base.yaml" in (ROOT / "README.md").read_text()
