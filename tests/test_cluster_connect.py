"""``--address``: joining a token-authenticated Ray cluster started with ``ray start`` (a head and a worker
node, real processes), a search whose trials run on both nodes, and one clear error line for each way
of failing to connect (no token, a wrong token, nothing listening) before anything is written."""

from __future__ import annotations

import collections
import csv
import os
import subprocess
import sys
import time

import pytest
import yaml

from itt.errors import UserError
from search import cluster
from tests.conftest import ROOT
from tests.ray_nodes import LocalRayCluster, free_port, ray_cli, two_hosts_unavailable

pytestmark = pytest.mark.ray  # its tests start Ray: they run one at a time, in one worker (tests/conftest.py)


@pytest.fixture(autouse=True)
def _resync_ray_auth_config():
    """After each test (and after monkeypatch restored the environment): Ray's C++ config and token cache
    follow the environment again (search.cluster switches RAY_AUTH_MODE in-process)."""
    yield
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _no_ray(monkeypatch, home):
    """This process as a fresh user: HOME without a token, no Ray variables (restored afterwards)."""
    import ray

    if ray.is_initialized():
        pytest.skip("Ray is initialised in this process (another module's fixture)")
    for k in {*(k for k in os.environ if k.startswith("RAY_")), "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS"}:
        monkeypatch.delenv(k, raising=False)  # (recorded, so each comes back as it was, set or not)
    monkeypatch.setenv("HOME", str(home))


# ------------------------------------------------------------------ without a cluster
def test_nothing_listening_is_one_line_at_once(tmp_path, monkeypatch):
    _no_ray(monkeypatch, tmp_path)
    port = free_port()
    t = time.time()
    with pytest.raises(UserError, match=rf"--address 127.0.0.1:{port}: no Ray cluster listens there \(connection "
                                        rf"refused\); start the head with `ray start --head --port {port}`"):
        cluster.check(f"127.0.0.1:{port}")
    assert time.time() - t < 5  # Ray's own ray.init waits 40 s here


def test_a_web_server_is_no_ray_cluster(tmp_path, monkeypatch):
    """The dashboard's or MLflow's port given by mistake: told apart at once (HTTP/1, not gRPC)."""
    import http.server
    import threading

    _no_ray(monkeypatch, tmp_path)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        t = time.time()
        with pytest.raises(UserError, match="something listens there but it is not a Ray cluster"):
            cluster.check(f"127.0.0.1:{srv.server_address[1]}")
        assert time.time() - t < 5
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("address, problem", [
    ("http://127.0.0.1:8265", "that is the Ray dashboard"),
    ("10.0.0.5", "expected HOST:PORT"),
    ("no-such-host.invalid:6379", "unknown host 'no-such-host.invalid'"),
    ("127.0.0.1:\u00b2", "expected HOST:PORT"),  # a digit to str.isdigit, not to int(): a ValueError traceback
    ("127.0.0.1:71915", r"port 71915 is out of range \(1 to 65535\)"),  # (the OS took it as 6379: joined that)
    ("ray://127.0.0.1:0", "port 0 is out of range"),
    ("", "--address '': empty"),  # (it started a local Ray and ran the whole search there)
    (" ", "--address ' ': empty"),
])
def test_malformed_addresses(address, problem, tmp_path, monkeypatch):
    _no_ray(monkeypatch, tmp_path)
    with pytest.raises(UserError, match=problem):
        cluster.check(address)


def test_address_help_says_what_no_address_does(capsys):
    """`itt search --help` said "default: start a local Ray", but without --address a `ray start` cluster of
    this machine is joined (Ray's rule, README); `local` is the private Ray."""
    from search.cli import main

    for cmd in (["search", "c.yaml"], ["resume", "runs/x"], ["confirm", "runs/x"]):
        with pytest.raises(SystemExit):
            main([cmd[0], "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "default: start a local Ray" not in text, cmd[0]
        assert "`ray start` runs on this machine" in text and "local (a private Ray)" in text, cmd[0]


def test_no_address_means_a_local_ray(tmp_path, monkeypatch):
    _no_ray(monkeypatch, tmp_path)
    monkeypatch.setattr("ray._private.services.canonicalize_bootstrap_address", lambda addr, temp_dir=None: None)
    assert cluster.check(None) == cluster.Target(None)
    assert cluster.check("local") == cluster.Target("local")  # a private Ray even beside a `ray start` one


def test_no_address_and_a_stale_cluster_file_starts_a_private_ray(tmp_path, monkeypatch):
    """Ray's address file outlived its cluster: nothing listens there, so ray.init must not try to join it."""
    _no_ray(monkeypatch, tmp_path)
    port = free_port()  # nothing listens there
    monkeypatch.setattr("ray._private.services.canonicalize_bootstrap_address",
                        lambda addr, temp_dir=None: f"127.0.0.1:{port}")
    assert cluster.check(None) == cluster.Target("local")


@pytest.mark.parametrize("mode, token, asks, expect", [
    # (RAY_AUTH_MODE, token available?, the cluster's answers without/with a token, outcome)
    (None, False, {False: "ok"}, "none"),
    (None, True, {False: "ok"}, "none"),  # a cluster without auth ignores the token
    ("token", False, {False: "ok"}, "unset RAY_AUTH_MODE"),
    (None, False, {False: "denied"}, "no token was found"),
    ("disabled", True, {False: "denied"}, "but RAY_AUTH_MODE=disabled"),
    (None, True, {False: "denied", True: "denied"}, r"rejected the token from ~/.ray/auth_token \(not this"),
    (None, True, {False: "denied", True: "ok"}, "token"),
    (None, True, {False: "no answer"}, "it is not a Ray GCS"),
])
def test_auth_decisions(mode, token, asks, expect, tmp_path, monkeypatch):
    """Which token the driver uses and each error line, with the cluster's answers given."""
    _no_ray(monkeypatch, tmp_path)
    if mode:
        monkeypatch.setenv("RAY_AUTH_MODE", mode)
    if token:
        (tmp_path / ".ray").mkdir()
        (tmp_path / ".ray" / "auth_token").write_text("abc123")
    monkeypatch.setattr(cluster, "_ask", lambda gcs, token: asks[token])
    monkeypatch.setattr(cluster, "_set_mode", lambda m: os.environ.__setitem__("RAY_AUTH_MODE", m)
                        if m else os.environ.pop("RAY_AUTH_MODE", None))
    monkeypatch.setattr(cluster, "_reachable", lambda gcs, where: None)
    if expect in ("none", "token"):
        t = cluster.check("10.0.0.5:6379")
        assert t.address == "10.0.0.5:6379" and t.auth == expect
        assert t.token_source == ("~/.ray/auth_token" if expect == "token" else None)
        assert os.environ.get("RAY_AUTH_MODE") == ("token" if expect == "token" else mode)
    else:
        with pytest.raises(UserError, match=expect) as e:
            cluster.check("10.0.0.5:6379")
        assert "abc123" not in str(e.value)
        assert os.environ.get("RAY_AUTH_MODE") == mode  # left as it was


def test_token_sources_in_rays_order(tmp_path, monkeypatch):
    _no_ray(monkeypatch, tmp_path)
    assert cluster._token_source() is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("t1")
    assert cluster._token_source() == "~/.ray/auth_token"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(UserError, match="RAY_AUTH_TOKEN_PATH=.*missing: cannot read the token file"):
        cluster._token_source()  # Ray itself aborts the process on an unreadable path
    (tmp_path / "tok").write_text("t2")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "tok"))
    assert cluster._token_source() == f"RAY_AUTH_TOKEN_PATH ({tmp_path / 'tok'})"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t3")
    assert cluster._token_source() == "RAY_AUTH_TOKEN"


# ------------------------------------------------------------------ a real two-node cluster
@pytest.fixture(scope="module")
def token_cluster():
    """A head and one worker node (1 CPU each) from `ray start`, token auth on, in a temporary folder (the
    worker only for the two-node search, which skips where tests/test_two_hosts.py runs it)."""
    if ray_cli() is None or not os.path.isdir("/proc"):
        pytest.skip("needs the `ray` command (ray start) and Linux /proc")
    c = LocalRayCluster(cpus_per_node=1)
    try:
        c.start_head()
        if two_hosts_unavailable() is not None:
            c.add_worker()
        yield c
    finally:
        c.stop()
        assert not c.pids(), "the cluster's processes outlived stop()"


def _sim_config(tmp_path) -> str:
    cfg = yaml.safe_load((ROOT / "bench" / "data" / "sim_toy_3of5.yaml").read_text())
    cfg["name"] = "on_two_nodes"
    cfg["search"].update(searcher="random", num_samples=4, seed=0,
                         simulate={"table": str(ROOT / "bench" / "data" / "toy_3of5.csv"), "seconds_per_stage": 1.0},
                         resources={"workers_per_trial": 1, "cpus_per_worker": 1, "trial_cpus": 1})
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _itt(args: list[str], env: dict, cwd) -> subprocess.CompletedProcess:
    env = {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "search.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=240)


def test_wrong_token_and_no_token_against_a_token_cluster(token_cluster, tmp_path, monkeypatch):
    _no_ray(monkeypatch, tmp_path)
    t = time.time()
    with pytest.raises(UserError, match=rf"the Ray cluster at {token_cluster.address} requires token authentication "
                                        r"and no token was found: set RAY_AUTH_TOKEN"):
        cluster.check(token_cluster.address)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0" * 64)
    with pytest.raises(UserError, match=r"rejected the token from RAY_AUTH_TOKEN \(not this cluster's token\)") as e:
        cluster.check(token_cluster.address)
    assert "0" * 64 not in str(e.value)
    assert time.time() - t < 10  # both; Ray's ray.init retries ~20 s for each
    monkeypatch.setenv("RAY_AUTH_TOKEN", token_cluster.token)
    assert cluster.check(token_cluster.address).auth == cluster.Auth.TOKEN
    assert os.environ["RAY_AUTH_MODE"] == "token"  # (monkeypatch restores it)


def test_cli_without_a_token_one_line_nothing_written(token_cluster, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token
    r = _itt(["search", _sim_config(tmp_path), "--address", token_cluster.address, "--storage", str(tmp_path / "runs"),
              "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"], env, tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the Ray cluster at ") and "RAY_AUTH_TOKEN" in lines[0], lines
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.skipif(two_hosts_unavailable() is None, reason="tests/test_two_hosts.py runs it on two machines (own "
                    "IPs and disks): the same search, these checks included")
def test_search_on_two_nodes_with_token_auth(token_cluster, tmp_path):
    """The README's way: the head's token in ~/.ray/auth_token, no RAY_AUTH_MODE set; trials on both nodes."""
    import mlflow

    env = token_cluster.env()
    env.pop("RAY_AUTH_MODE")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = _itt(["search", _sim_config(tmp_path), "--address", token_cluster.address, "--storage", str(tmp_path / "runs"),
              "--tracking-uri", uri], env, tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "Traceback" not in out and token_cluster.token not in out
    rows = list(csv.DictReader(open(tmp_path / "runs" / "on_two_nodes" / "results.csv")))
    assert len(rows) == 4 and all(r["status"] == "completed" and r["score"] for r in rows)
    spread = collections.Counter(r["node_ip"] for r in rows)
    assert "127.0.0.2" in spread and len(spread) == 2, spread  # the worker node and the head
    print(f"trials per node: {dict(spread)}")
    # MLflow: the parent run and one finished child run per trial
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("on_two_nodes")
    runs = client.search_runs([exp.experiment_id])
    children = [x for x in runs if x.data.tags.get("mlflow.parentRunId")]
    assert len(runs) == 5 and len(children) == 4 and all(x.info.status == "FINISHED" for x in runs)
    assert {x.data.tags["trial_id"] for x in children} == {r["trial_id"] for r in rows}
    # nothing of the token in the experiment's files nor in MLflow's store
    for path in [tmp_path / "mlflow.db", *(tmp_path / "runs").rglob("*")]:
        if path.is_file():
            assert token_cluster.token.encode() not in path.read_bytes(), path


def test_resume_checks_the_address_before_touching_the_experiment(tmp_path, monkeypatch, capsys):
    """`itt resume --address` where nothing listens: one error line, exit 2, the experiment unchanged."""
    from search.cli import main
    from search.config import load_search

    _no_ray(monkeypatch, tmp_path)
    scfg, chain, _ = load_search(_sim_config(tmp_path))
    exp = tmp_path / "runs" / "on_two_nodes"
    exp.mkdir(parents=True)
    (exp / "search.yaml").write_text(yaml.safe_dump({**chain.model_dump(mode="json"),
                                                     "search": scfg.model_dump(mode="json")}))
    (exp / "tuner.pkl").write_bytes(b"")
    before = sorted(p.name for p in exp.iterdir())
    port = free_port()
    db = tmp_path / "mlflow.db"
    assert main(["resume", str(exp), "--address", f"127.0.0.1:{port}", "--tracking-uri", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --address 127.0.0.1:{port}: no Ray cluster listens there (connection refused); start the "
                   f"head with `ray start --head --port {port}`, or check the address `ray start --head` printed"]
    assert sorted(p.name for p in exp.iterdir()) == before
    assert not db.exists()  # (the store's check created it, then the address failed)


def test_no_address_joins_the_cluster_running_here_checked_and_said(token_cluster, tmp_path, monkeypatch):
    """Without --address, ray.init joins a `ray start` cluster of this machine (Ray's own rule): the same
    pre-flight check runs on it (its token), and the target says so, for the console's line."""
    _no_ray(monkeypatch, tmp_path)
    # (the fixture's cluster keeps its address file in its own temp folder: point Ray's lookup at it)
    monkeypatch.setattr("ray._private.services.canonicalize_bootstrap_address",
                        lambda addr, temp_dir=None: token_cluster.address)
    with pytest.raises(UserError, match=r"^no --address given, so Ray joins the cluster `ray start` runs on this machine, and the "
                                        r"Ray cluster at .* no token was found.*--address local for a private Ray\)$"):
        cluster.check(None)
    monkeypatch.setenv("RAY_AUTH_TOKEN", token_cluster.token)
    target = cluster.check(None)
    assert target.running_here and target.address == token_cluster.address and target.auth == cluster.Auth.TOKEN


def test_a_head_of_another_ray_version_is_one_line_with_both_versions(token_cluster, tmp_path):
    """Ray's version mismatch: its first line ("Version mismatch: The cluster was started with:") was the error
    line, without the versions; now both versions in the line, exit 2, nothing written. (This process plays
    the other version: Ray compares what the head recorded with compute_version_info here.)"""
    env = {**token_cluster.env(RAY_AUTH_TOKEN=token_cluster.token), "HOME": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    code = ("import sys, ray._private.utils as u; mine = u.compute_version_info(); "
            "u.compute_version_info = lambda: ('2.59.0', mine[1]); "
            "from search.cli import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "search", _sim_config(tmp_path), "--address", token_cluster.address,
                        "--storage", str(tmp_path / "runs"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    import platform
    import ray
    assert r.returncode == 2 and lines == [
        f"error: could not join the Ray cluster at {token_cluster.address}: the cluster runs Ray {ray.__version__} on "
        f"Python {platform.python_version()}, this process Ray 2.59.0 on Python {platform.python_version()} (Ray "
        f"requires both to match): run itt in the Python environment the cluster's `ray start` ran in, or install Ray "
        f"{ray.__version__} on Python {platform.python_version()} here"], lines
    assert not (tmp_path / "runs" / "on_two_nodes").exists() and not (tmp_path / "mlflow.db").exists()


def test_ray_address_joins_an_autoscaling_cluster_as_address_does(token_cluster, tmp_path):
    """`ray job submit` gives its driver RAY_ADDRESS: without --address the search joined the cluster but not
    its autoscaler's config (~/ray_bootstrap_config.yaml, what `ray up` leaves on the head), so it refused
    trials no worker holds yet where --address auto starts them; now both ways read it (here: the warning
    that nodes started later are not asked about a local --storage)."""
    (tmp_path / "ray_bootstrap_config.yaml").write_text("max_workers: 3\n")
    env = {**token_cluster.env(RAY_AUTH_TOKEN=token_cluster.token, RAY_ADDRESS=token_cluster.address), "HOME": str(tmp_path)}
    r = _itt(["search", _sim_config(tmp_path), "--storage", str(tmp_path / "runs"), "--progress", "off",
              "--set", "search.num_samples=1", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"], env, tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert (f"warning: --storage {tmp_path / 'runs' / 'on_two_nodes'} on a cluster of "
            f"{len(token_cluster.node_ips)} node(s) that autoscales: nodes the autoscaler starts later are not asked") in out, out
