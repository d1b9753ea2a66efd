"""A search on a Ray cluster of two machines: a head and a worker in network namespaces of their own (own IPs,
token authentication over the link between them), the worker with its own view of the disk (a folder on
the head's disk is not on the worker's). A --storage or data_root the worker does not see is one error line
before any trial; a shared one runs trials on both machines, every trial's results where the driver reads
them (tests/ray_nodes.py: TwoHostRayCluster)."""

from __future__ import annotations

import collections
import contextlib
import csv
import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT
from tests.ray_nodes import WORKER_IP, TwoHostRayCluster, two_hosts_unavailable

pytestmark = pytest.mark.ray  # (starts Ray: one at a time, in one worker; tests/conftest.py)

WHY_NOT = two_hosts_unavailable()


@contextlib.contextmanager
def _two_machines():
    """A head and a worker machine (skips where they cannot be made); stopped, every process, at the end."""
    if WHY_NOT:
        pytest.skip(WHY_NOT)
    c = TwoHostRayCluster()
    try:
        c.start_head()
        c.add_worker()
        yield c
    finally:
        c.stop()
        assert not c.pids(), "the cluster's processes outlived stop()"


@pytest.fixture(scope="module")
def hosts():
    with _two_machines() as c:
        yield c


def _driver_env(hosts) -> dict:
    """A driver's environment on the head's machine: this checkout importable, HOME with the head's token in
    ~/.ray, and no RAY_AUTH_MODE (a user's shell has none)."""
    env = {**hosts.env(), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_AUTH_MODE")
    return env


def _search(hosts, cfg: dict, storage, tmp_path, *extra, on=None) -> subprocess.CompletedProcess:
    """``itt search`` on the head's machine (or ``on``: hosts.on_laptop), the head's token in its ~/.ray (the
    README's way)."""
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = _driver_env(hosts)
    cmd = [sys.executable, "-m", "search.cli", "search", str(path), "--address", hosts.address, "--storage",
           str(storage), "--tracking-uri", f"sqlite:///{storage.parent / 'mlflow.db'}", *extra]
    return subprocess.run((on or hosts.on_head)(cmd), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)


def _sim(name: str) -> dict:
    """Table lookups with per-language columns: each trial writes a results.json, as a chain does. Trials at
    once run on both machines however short they are: on a cluster each simulated trial has a process of its
    own (search.runner._reuse_actors; with Tune's actor reuse, the head's trial of 1 s ended before the
    worker's process was up, the next trials took the head's process, and all 4 ran on the head)."""
    cfg = yaml.safe_load((ROOT / "bench" / "data" / "sim_toy_3of5.yaml").read_text())
    cfg["name"] = name
    cfg["search"].update(searcher="random", num_samples=4, seed=0,
                         simulate={"table": str(ROOT / "bench" / "data" / "toy_3of5_s3.csv"), "seconds_per_stage": 0.3},
                         resources={"workers_per_trial": 1, "cpus_per_worker": 1, "trial_cpus": 1})
    return cfg


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (r.returncode, lines[-20:])
    return lines[0]


def test_storage_and_data_on_the_heads_disk_only_are_one_line_nothing_written(hosts, tmp_path):
    """A --storage and a real chain's local data (an intermediate task's jsonl file) on the head's disk: the
    worker sees neither; one line names both, before any trial, and nothing is written."""
    import json as js

    data = hosts.head_only / "data"
    data.mkdir()
    rows = [{"sentence": f"word{i} word{i % 3}", "label": ["a", "b"][i % 2]} for i in range(40)]
    (data / "mini.jsonl").write_text("".join(js.dumps(r) + "\n" for r in rows))
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg.update(data_root=str(data), name="on_the_head_only", order=["mini"])
    cfg["tasks"] = {"mini": {"kind": "single_classification", "fields": ["sentence"], "labels": ["a", "b"],
                             "train": {"files": "mini.jsonl"}, "dev": {"files": "mini.jsonl"}}}
    cfg["search"].update(candidates=["mini", "toy_topic"], length=[1, 1], num_samples=2, searcher="random",
                         seed_points={}, report=False)
    storage = hosts.head_only / "runs"
    line = _one_error_line(_search(hosts, cfg, storage, tmp_path))
    assert line.startswith(f"error: on a cluster of 2 node(s), --storage {storage}/on_the_head_only is not on node(s) "
                           f"{WORKER_IP}; data_root {data} is not on node(s) {WORKER_IP} (asked on each node): give "
                           "--storage a folder every node mounts"), line
    assert "put the files at that path on every node" in line
    assert not storage.exists() and not (storage.parent / "mlflow.db").exists()


def test_search_on_two_machines_with_shared_storage(hosts, tmp_path):
    storage = hosts.shared / "runs"
    r = _search(hosts, _sim("on_two_machines"), storage, tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "warning: --storage" not in out and hosts.token not in out
    exp = storage / "on_two_machines"
    rows = list(csv.DictReader(open(exp / "results.csv")))
    assert len(rows) == 4 and all(r["status"] == "completed" and r["score"] for r in rows)
    spread = collections.Counter(r["node_ip"] for r in rows)
    assert set(spread) == {"10.77.0.1", WORKER_IP}, (spread, out[-4000:])  # both machines ran trials
    for row in rows:  # every trial's own results where the driver (and the report) read them
        res = json.loads((exp / "trials" / row["trial_id"] / "results.json").read_text())
        assert res["order"] == (row["order"].split(">") if row["order"] else []), (res["order"], row)
    print(f"trials per machine: {dict(spread)}")
    # MLflow (the driver's): the parent run and one finished child run per trial; the token nowhere on disk
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{storage.parent / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("on_two_machines").experiment_id])
    children = [x for x in runs if x.data.tags.get("mlflow.parentRunId")]
    assert len(runs) == 5 and len(children) == 4 and all(x.info.status == "FINISHED" for x in runs)
    assert {x.data.tags["trial_id"] for x in children} == {r["trial_id"] for r in rows}
    for path in [storage.parent / "mlflow.db", *exp.rglob("*")]:
        if path.is_file():
            assert hosts.token.encode() not in path.read_bytes(), path
    # `itt resume --more 1` from the head: the nodes are asked again (the experiment's search.yaml), 1 more trial
    env = _driver_env(hosts)
    r = subprocess.run(hosts.on_head([sys.executable, "-m", "search.cli", "resume", str(exp), "--address", hosts.address,
                                      "--more", "1", "--tracking-uri", f"sqlite:///{storage.parent / 'mlflow.db'}"]),
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    rows = list(csv.DictReader(open(exp / "results.csv")))
    assert len(rows) == 5 and all(r["status"] == "completed" for r in rows)
    assert all((exp / "trials" / row["trial_id"] / "results.json").exists() for row in rows)


def test_a_driver_on_no_node_of_the_cluster_is_one_line_at_once(hosts, tmp_path):
    """From a machine that is no node (a laptop that reaches the head): Ray waited a minute, then "Failed to
    connect to Ray cluster" (or, where another cluster's raylets ran, aborted with a C++ stack trace)."""
    import time

    storage = hosts.shared / "runs"
    t = time.time()
    line = _one_error_line(_search(hosts, _sim("from_a_laptop"), storage, tmp_path, on=hosts.on_laptop))
    assert line.startswith(f"error: --address {hosts.address}: this machine is not a node of that cluster (no raylet "
                           "of it runs here), and a search's driver runs on one: run `itt search` on the head"), line
    assert time.time() - t < 30 and not (storage / "from_a_laptop").exists()


@pytest.mark.skipif(not os.environ.get("ITT_SLOW_TESTS"), reason="70 s (Ray marks a lost node dead after its "
                    "heartbeats stop): set ITT_SLOW_TESTS=1 to run it")
def test_a_machine_lost_mid_search(tmp_path):
    """The worker machine goes (every process on it killed, as a spot preemption): its trial fails there, runs
    again on the head, and the search ends with every trial completed; the console says it in one line, with
    no traceback and no raylet state dump."""
    import signal
    import time

    with _two_machines() as c:
        cfg = _sim("machine_lost")
        cfg["search"]["num_samples"] = 6
        cfg["search"]["simulate"]["seconds_per_stage"] = 4.0
        path = tmp_path / "search.yaml"
        path.write_text(yaml.safe_dump(cfg))
        env = _driver_env(c)
        out = tmp_path / "out.txt"
        p = subprocess.Popen(c.on_head([sys.executable, "-m", "search.cli", "search", str(path), "--address", c.address,
                                        "--storage", str(c.shared / "runs"), "--no-tracking"]),
                             env=env, cwd=tmp_path, stdout=out.open("w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while "running" not in out.read_text() and time.time() < deadline:  # (its first trials are under way)
            time.sleep(0.5)
        time.sleep(6)
        pids = subprocess.run(["ip", "netns", "pids", c.ns["worker"]], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert p.wait(timeout=400) == 0, out.read_text()[-3000:]
        text = out.read_text()
        rows = list(csv.DictReader(open(c.shared / "runs" / "machine_lost" / "results.csv")))
    assert len(rows) == 6 and all(r["status"] == "completed" for r in rows), rows
    assert f"failed on node {WORKER_IP} (" in text and "running it again" in text, text[-3000:]
    assert "Traceback" not in text and "state-dump" not in text, text[-3000:]
