"""MLflow tracking of a search, checked through a real ``MlflowClient`` on real stores: a sqlite file,
and a real ``mlflow server`` process on 127.0.0.1 (started by ``itt ui``)."""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from search.cli import main
from search.space import OrderSpace
from tests.conftest import TINY
from tests.test_search import TOY3, _search_config, _table


mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

LANGS = ["en", "xa", "xb", "xc"]


def _rows(exp) -> dict[str, dict]:
    with open(exp / "results.csv") as f:
        return {r["trial_id"]: r for r in csv.DictReader(f)}


def _runs(client: MlflowClient, experiment: str):
    """(parent run, {trial id: child run}) of the only search in ``experiment``; fails on duplicates."""
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment '{experiment}'"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("itt_role") == "search"]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = [r for r in runs if r.data.tags.get("itt_role") == "trial"]
    by_trial = {r.data.tags["trial_id"]: r for r in children}
    assert len(by_trial) == len(children), "a trial has two runs"
    assert len(runs) == 1 + len(children)
    return parents[0], by_trial


def _sim_search(tmp_path, *, missing: str | None = None, seconds: float = 0.0, hparams: bool = True,
                concurrent: int = 1, asha: bool = True):
    """Every order of 1-2 of three toy tasks on the planted table (``missing``: an order whose row is
    dropped, so that trial errors)."""
    space = OrderSpace(candidates=TOY3, lengths=[1, 2])
    table = _table(tmp_path, space)
    if missing:
        lines = table.read_text().splitlines()
        table.write_text("\n".join(ln for ln in lines if not ln.startswith(missing + ",")) + "\n")
    search = {"candidates": TOY3, "length": [1, 2], "searcher": "exhaustive",
              "simulate": {"table": str(table), "seconds_per_stage": seconds},
              "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2} if asha else {"type": "none"},
              "seed_points": {"orders": ["toy_topic>toy_align"]}, "resources": {"max_concurrent": concurrent}}
    if hparams:
        search["hparams"] = {"train.lr": {"float": [1.0e-4, 1.0e-2], "log": True}}
    return _search_config(tmp_path, search), table


def _check_search(client, experiment: str, exp, *, hparams: bool = True) -> tuple:
    """What every tracked simulated search must show: one child per results.csv row, the params and
    metrics a comparison needs, statuses that agree with results.csv, nothing RUNNING."""
    rows = _rows(exp)
    parent, runs = _runs(client, experiment)
    assert set(runs) == set(rows)
    want_params = {"order", "order_length", "pos_1", "pos_2", "seeds"} | ({"train.lr"} if hparams else set())
    for tid, run in runs.items():
        row, p, m, t = rows[tid], run.data.params, run.data.metrics, run.data.tags
        assert t["mlflow.parentRunId"] == parent.info.run_id
        assert set(p) == want_params, p
        order = [x for x in row["order"].split(">") if x]
        assert p["order"] == row["order"] and p["order_length"] == str(len(order))
        assert [p["pos_1"], p["pos_2"]] == (order + ["-"])[:2]
        if hparams:
            assert float(p["train.lr"]) == pytest.approx(float(row["hp:train.lr"]), rel=0.01)
            assert run.info.run_name.startswith(f"{row['order']} · lr=")
        else:
            assert run.info.run_name == row["order"]
        assert t["status"] == row["status"]
        if row["status"] == "completed":
            assert run.info.status == "FINISHED" and t["outcome"] == "completed"
            assert m["score"] == pytest.approx(float(row["score"])) and m["dev_accuracy_mean"] == m["score"]
            assert {"objective", "probe_accuracy_mean"} <= set(m)
        elif row["status"] == "stopped":
            assert run.info.status == "FINISHED" and "score" not in m
            assert t["outcome"] == f"stopped by ASHA at stage {row['stages_completed']}"
        else:
            assert row["status"] == "errored" and run.info.status == "FAILED" and t["outcome"] == "errored"
    assert all(r.info.status != "RUNNING" for r in [parent, *runs.values()])
    # the parent: search description, summary figures, results.csv as an artifact
    pm = parent.data.metrics
    done = [r for r in rows.values() if r["status"] == "completed"]
    assert pm["trials"] == len(rows) and pm["trials_completed"] == len(done)
    assert pm["trials_stopped"] == sum(r["status"] == "stopped" for r in rows.values())
    assert pm["trials_errored"] == sum(r["status"] == "errored" for r in rows.values())
    best = max(done, key=lambda r: float(r["score"]))
    assert pm["best_score"] == pytest.approx(float(best["score"])) and parent.data.tags["best_order"] == best["order"]
    assert parent.data.params["candidates"] == ",".join(TOY3) and parent.data.params["orders"] == "9"
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "search_space.json", "results.csv"} <= arts
    return parent, runs, rows


# ------------------------------------------------------------------ simulated searches on a sqlite store
def test_search_tracked_in_sqlite(tmp_path, ray_local, table_may_lack_orders):
    """ASHA stops some orders, one trial errors: every trial has its child run, statuses agree with
    results.csv, probe curves are logged per stage, the parent carries the summary and results.csv."""
    from search.runner import run_search

    p, table = _sim_search(tmp_path, missing="toy_align>toy_length")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = run_search(str(p), name="tracked", storage=str(tmp_path / "runs"), tracking_uri=uri, log=lambda *a: None)
    client = MlflowClient(uri)
    parent, runs, rows = _check_search(client, "tracked", exp)
    statuses = {r["status"] for r in rows.values()}
    assert statuses == {"completed", "stopped", "errored"}, statuses
    # probe per stage (step = stage index) as the planted table has it
    probes = {r[0]: (float(r[1]), float(r[2])) for r in csv.reader(open(table)) if r[0] == "toy_topic>toy_align"}
    run = next(r for r in runs.values() if r.data.params["order"] == "toy_topic>toy_align")
    hist = client.get_metric_history(run.info.run_id, "probe_accuracy_mean")
    assert sorted((m.step, round(m.value, 9)) for m in hist) == [(1, probes["toy_topic>toy_align"][0]),
                                                                (2, probes["toy_topic>toy_align"][1])]
    # the resolved config and the space, as artifacts of the parent
    cfg = yaml.safe_load(client.download_artifacts(parent.info.run_id, "config.yaml", str(tmp_path / "dl")) and
                         (tmp_path / "dl" / "config.yaml").read_text())
    assert cfg["search"]["candidates"] == TOY3 and cfg["target"]["task"] == "toy_xnli"
    csv_art = client.download_artifacts(parent.info.run_id, "results.csv", str(tmp_path / "dl"))
    assert open(csv_art).read() == (exp / "results.csv").read_text()
    # summary.json is written before the parent run ends, and goes with it
    summary_art = client.download_artifacts(parent.info.run_id, "summary.json", str(tmp_path / "dl"))
    assert open(summary_art).read() == (exp / "summary.json").read_text()
    # artifacts sit beside the database, not in the working directory
    assert client.get_experiment_by_name("tracked").artifact_location.startswith((tmp_path / "mlruns").as_uri())


def test_sync_backfills_a_search_run_without_tracking(tmp_path, ray_local, capsys, table_may_lack_orders, monkeypatch):
    """`--no-tracking`: nothing in MLflow (not in the default store, mlflow.db in the working directory);
    `itt mlflow-sync` then builds the same runs from the experiment directory (probe curves included); a
    second sync adds nothing."""
    p, _ = _sim_search(tmp_path, missing="toy_length>toy_topic")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs_dir = tmp_path / "runs"
    monkeypatch.chdir(tmp_path)
    assert main(["search", str(p), "--storage", str(runs_dir), "--name", "offline", "--no-tracking"]) == 0
    exp = runs_dir / "offline"
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    capsys.readouterr()
    assert main(["mlflow-sync", str(exp), "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    n = len(_rows(exp))
    assert f"{n} runs created" in out, out
    client = MlflowClient(uri)
    parent, runs, rows = _check_search(client, "offline", exp)
    history = {tid: len(client.get_metric_history(r.info.run_id, "objective")) for tid, r in runs.items()}
    assert all(history[tid] == len(json.loads((exp / "tracking" / "trials" / f"{tid}.json").read_text())["reports"])
               for tid in rows)
    assert main(["mlflow-sync", str(exp), "--tracking-uri", uri]) == 0
    assert "0 runs created, 0 updated" in capsys.readouterr().out
    parent2, runs2 = _runs(client, "offline")
    assert parent2.info.run_id == parent.info.run_id and {t: r.info.run_id for t, r in runs2.items()} == \
        {t: r.info.run_id for t, r in runs.items()}
    assert {tid: len(client.get_metric_history(r.info.run_id, "objective")) for tid, r in runs2.items()} == history
    assert len(client.get_metric_history(parent.info.run_id, "trials")) == 1


def test_interrupted_search_leaves_no_run_running(tmp_path, ray_local):
    """Ctrl-C in the driver mid-search: the parent and the trials still open end KILLED."""
    from search.runner import run_search

    p, _ = _sim_search(tmp_path, seconds=0.5, concurrent=2, asha=False, hparams=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def log(msg):
        if msg.startswith("["):  # the first trial ended: the others are still running
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(str(p), name="cut", storage=str(tmp_path / "runs"), tracking_uri=uri, log=log)
    parent, runs = _runs(MlflowClient(uri), "cut")
    assert parent.info.status == "KILLED"
    assert runs and all(r.info.status in ("FINISHED", "KILLED") for r in runs.values())
    killed = [r for r in runs.values() if r.info.status == "KILLED"]
    assert killed and all(r.data.tags["outcome"] == "interrupted" for r in killed)


@pytest.mark.ray
def test_unreachable_tracking_server_stops_before_ray(tmp_path, capsys):
    p, _ = _sim_search(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    code = main(["search", str(p), "--storage", str(tmp_path / "runs"), "--tracking-uri", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: tracking: cannot reach the MLflow store"), err
    assert f"127.0.0.1:{port}" in err[0] and time.time() - t0 < 60
    assert not _experiments(tmp_path / "runs")
    code = main(["search", str(p), "--storage", str(tmp_path / "runs"), "--tracking-uri",
                 f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "does not exist" in err[0] and not _experiments(tmp_path / "runs")
    # a folder that cannot be written (MLflow retried creating the file for 100 s before its error)
    t0 = time.time()
    code = main(["search", str(p), "--storage", str(tmp_path / "runs"), "--tracking-uri", "sqlite:////proc/itt.db"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: tracking: MLflow store sqlite:////proc/itt.db: cannot write to /proc "
                                 "(No such file or directory)"], err
    assert time.time() - t0 < 20 and not _experiments(tmp_path / "runs")
    # a folder (or a word MLflow reads as one): its file store, which MLflow 3 refuses in a long paragraph
    for uri in ("mlruns", f"file://{tmp_path / 'mlruns'}"):
        code = main(["search", str(p), "--storage", str(tmp_path / "runs"), "--tracking-uri", uri])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "a folder is MLflow's file store" in err[0], err
        assert "sqlite:///path/mlflow.db" in err[0] and not (tmp_path / "mlruns").exists()


def _experiments(storage) -> list:
    """What a search left in its storage root (the write check leaves the root itself, empty)."""
    return sorted(p.name for p in storage.iterdir()) if storage.exists() else []


def test_default_store_is_mlflow_db_in_the_working_directory(tmp_path, monkeypatch):
    from search.tracking import resolve_uri, run_name

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_uri(None, "http://h:5000") == "http://h:5000"
    assert resolve_uri("http://a:1", "http://h:5000") == "http://a:1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_uri() == "http://env:5000" and resolve_uri(None, "sqlite:///x.db") == f"sqlite:///{tmp_path / 'x.db'}"
    assert run_name(["mnli", "anli", "sst2"], {"train.lr": 2e-5}) == "mnli>anli>sst2 · lr=2e-5"
    assert run_name([], {}) == "F (no intermediate task)"


@pytest.mark.ray
def test_a_search_interrupted_while_mlflow_makes_its_store_leaves_no_store(tmp_path, write_config, monkeypatch):
    """Ctrl-C in the first seconds of the first `itt search` in a folder, while MLflow creates mlflow.db's
    tables: the half-made store stayed, and every later search there failed with "cannot reach the MLflow
    store ((sqlite3.OperationalError) table evaluation_datasets already exists); start the server, ..." until
    the user removed it. The store the check was making goes with the interrupted search."""
    import sqlite3

    import mlflow.tracking

    from search.runner import run_search

    db = tmp_path / "mlflow.db"

    class Interrupted:  # MLflow's client, stopped by Ctrl-C halfway through its schema
        def __init__(self, tracking_uri=None):
            sqlite3.connect(db).execute("create table experiments (id integer)").connection.commit()
            raise KeyboardInterrupt

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", Interrupted)
    table = tmp_path / "table.csv"
    table.write_text("order,probe_1,final\ntoy_topic,0.3,0.5\ntoy_align,0.3,0.4\n")
    cfg = write_config({"search": {"candidates": ["toy_topic", "toy_align"], "length": 1, "num_samples": 1,
                                   "simulate": {"table": str(table)}, "scheduler": {"type": "none"}}})
    with pytest.raises(KeyboardInterrupt):
        run_search(str(cfg), name="i", storage=str(tmp_path / "runs"), tracking_uri=f"sqlite:///{db}", log=lambda *a: None)
    assert not db.exists()
    assert not (tmp_path / "runs" / "i").exists()


def test_itt_ui_without_a_store_is_one_error_line(tmp_path, capsys):
    code = main(["ui", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: no MLflow store at"), err


def test_itt_ui_on_a_store_mlflow_cannot_open_is_one_error_line(tmp_path, capsys, monkeypatch):
    """A database path without sqlite:/// (MLflow's retired file store), a file that is no database, an unknown
    scheme: the UI's address was printed, then the server's traceback with exit status 1. One line, no server."""
    monkeypatch.setattr("search.cli._serve", lambda *a, **k: pytest.fail("the server was started"))
    junk = tmp_path / "notes.db"
    junk.write_text("not a database\n")
    cases = {str(tmp_path / "mlflow.db"): "a folder is MLflow's file store",
             f"sqlite:///{junk}": "file is not a database",
             "bogus://x": "unsupported URI 'bogus://x'"}
    for uri, says in cases.items():
        code = main(["ui", "--tracking-uri", uri])
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: tracking: ") and says in lines[0], (uri, err)
        assert not out, out
    assert junk.read_text() == "not a database\n" and not (tmp_path / "mlflow.db").exists()


def test_itt_ui_on_a_bad_address_is_one_error_line(tmp_path, capsys):
    """A port out of range, one in use, or a host this machine does not have: one error line, exit 2,
    before the UI's address is printed (the server itself would log the error and exit 0)."""
    db = tmp_path / "mlflow.db"
    db.touch()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = {("--port", "70000"): "error: --port 70000: give a port from 1 to 65535",
                 ("--port", str(port)): f"error: --port {port}: 127.0.0.1:{port} is in use",
                 ("--host", "192.0.2.1"): "error: --host 192.0.2.1: cannot listen there"}
        for extra, want in cases.items():
            code = main(["ui", "--tracking-uri", f"sqlite:///{db}", *extra])
            out, err = capsys.readouterr()
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1 and lines[0].startswith(want) and not out, (extra, out, err)


# ------------------------------------------------------------------ a real mlflow server (itt ui), an outage
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _kill(pids: list[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def itt_ui(tmp_path):
    """``itt ui`` on a sqlite store in tmp_path: a real ``mlflow server`` on 127.0.0.1."""
    db = tmp_path / "server" / "mlflow.db"
    db.parent.mkdir()
    MlflowClient(f"sqlite:///{db}").search_experiments()  # the store exists before the UI opens it
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", "ui", "--tracking-uri", f"sqlite:///{db}",
                             "--port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    while True:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"itt ui did not come up: {proc.stdout.read()[-2000:]}")
        time.sleep(0.5)

    def stop():
        if proc.poll() is None:
            below = _descendants(proc.pid)  # (the server runs in a process group of its own)
            os.killpg(proc.pid, signal.SIGTERM)  # itt ui takes its server down with it
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                _kill(below)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    yield {"url": url, "db": db, "stop": stop, "proc": proc}
    stop()


def test_ui_stopped_by_sigterm_takes_its_server_down(itt_ui):
    """`itt ui` told to stop by SIGTERM (`kill`, a job scheduler; SIGHUP when its terminal closes) stops the
    mlflow server it started: the port is free again, no server outlives it."""
    proc = itt_ui["proc"]
    os.kill(proc.pid, signal.SIGTERM)  # the itt ui process alone, not its group
    proc.wait(30)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{itt_ui['url']}/health", timeout=2)
        except OSError:
            break  # nothing answers there any more
        time.sleep(0.5)
    else:
        pytest.fail("the mlflow server still answers after itt ui was stopped")


def test_http_server_then_outage_then_sync(tmp_path, ray_local, itt_ui, capsys):
    """Through a real `mlflow server` (http): a whole search is tracked; then the server dies mid-search:
    the search finishes with one warning, and `itt mlflow-sync` completes MLflow, twice without duplicates."""
    from search.runner import run_search

    url = itt_ui["url"]
    assert url.startswith("http://127.0.0.1:")
    client = MlflowClient(url)
    p, _ = _sim_search(tmp_path)
    exp = run_search(str(p), name="over-http", storage=str(tmp_path / "runs"), tracking_uri=url, log=lambda *a: None)
    _check_search(client, "over-http", exp)
    # the server goes away after the first trial ends; the search goes on (the log function is pickled
    # with the Tune callbacks: it holds plain values only)
    lines: list[str] = []
    pgid, port = itt_ui["proc"].pid, int(url.rsplit(":", 1)[1])
    below = _descendants(pgid)  # the mlflow server and its uvicorn (a process group of their own)

    def log(msg):
        lines.append(msg)
        if msg.startswith("[") and not any(ln.startswith("[") for ln in lines[:-1]):
            _kill(below)  # a crash: no clean shutdown
            os.killpg(pgid, signal.SIGKILL)
            for _ in range(50):  # until the port refuses connections
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    time.sleep(0.1)
                except OSError:
                    break

    exp2 = run_search(str(p), name="outage", storage=str(tmp_path / "runs"), tracking_uri=url, log=log)
    warnings = [ln for ln in lines if ln.startswith("warning: MLflow")]
    assert len(warnings) == 1 and "itt mlflow-sync" in warnings[0], lines
    rows = _rows(exp2)
    assert len(rows) == 9 and all(r["status"] in ("completed", "stopped") for r in rows.values())
    # the server's store, read directly: the search is incomplete there
    db_uri = f"sqlite:///{itt_ui['db']}"
    direct = MlflowClient(db_uri)
    exp_id = direct.get_experiment_by_name("outage").experiment_id
    assert len(direct.search_runs([exp_id])) < 1 + len(rows)
    capsys.readouterr()
    assert main(["mlflow-sync", str(exp2), "--tracking-uri", db_uri]) == 0
    _check_search(direct, "outage", exp2)
    assert main(["mlflow-sync", str(exp2), "--tracking-uri", db_uri]) == 0
    assert "0 runs created, 0 updated" in capsys.readouterr().out
    _check_search(direct, "outage", exp2)


# ------------------------------------------------------------------ a real (tiny) training search: checkpoints
def test_best_checkpoint_logged_and_reloaded_reproduces_dev_metric(tmp_path, ray_local):
    """The best trial's final checkpoint goes to MLflow; rebuilt from the downloaded artifacts with
    itt.models, it scores the trial's logged dev metric again (CPU, within 1e-6)."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    from itt.chain import _score, prepare
    from itt.config import load_config
    from itt.kinds import handler
    from itt.models import ClassificationHead, TaskModel, hidden_size
    from itt.train import make_accelerator
    from search.runner import run_search

    base = {**TINY, "save_checkpoint": True, "seeds": [0], "eval": {"batch_size": 64, "perturbation": {"enabled": True}}}
    search = {"candidates": ["toy_topic"], "length": [0, 1], "searcher": "exhaustive", "probe_steps": 3,
              "scheduler": {"type": "none"},
              "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "trial_cpus": 0.5, "max_concurrent": 1}}
    p = _search_config(tmp_path, search, base)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = run_search(str(p), name="ckpt", storage=str(tmp_path / "runs"), tracking_uri=uri, log=lambda *a: None)
    client = MlflowClient(uri)
    parent, runs = _runs(client, "ckpt")
    rows = _rows(exp)
    assert len(runs) == len(rows) == 2 and all(r["status"] == "completed" for r in rows.values())
    for tid, run in runs.items():  # a real chain logs every language and the robustness figures
        m = run.data.metrics
        assert {f"test_accuracy_{lang}" for lang in LANGS} <= set(m)
        assert {f"dev_accuracy_{x}" for x in ["mean", "std", "worst", "transfer_gap", *LANGS]} <= set(m)
        assert {"test_accuracy_mean", "test_accuracy_worst", "perturbation_score", "score"} <= set(m)
        assert m["test_accuracy_mean"] == pytest.approx(float(rows[tid]["test_mean"]))
        if run.data.params["order"] != "F":
            assert [h.step for h in client.get_metric_history(run.info.run_id, "probe_accuracy_mean")] == [1]
        else:
            assert run.info.run_name == "F (no intermediate task)" and "probe_accuracy_mean" not in m
    best_id = max(rows.values(), key=lambda r: float(r["score"]))["trial_id"]
    assert parent.data.tags["best_checkpoints"] == best_id
    best = runs[best_id]
    assert client.get_run(best.info.run_id).data.tags["best_rank"] == "1"
    assert all(not client.list_artifacts(r.info.run_id) for t, r in runs.items() if t != best_id)  # K = 1
    ck = client.download_artifacts(best.info.run_id, "checkpoint/seed0", str(tmp_path / "dl"))
    names = {f.name for f in Path(ck).iterdir()}
    assert {"model.safetensors", "config.json", "head.safetensors", "tokenizer.json"} <= names
    # rebuild: encoder + tokenizer + target head from the artifacts alone
    meta = json.loads(open(f"{ck}/itt_meta.json").read())
    enc = AutoModel.from_pretrained(ck)
    tok = AutoTokenizer.from_pretrained(ck)
    task_cfg = load_config(str(p)).model_copy(update={"order": []})  # the search's base chain: same data
    prepared = prepare(task_cfg.model_copy(update={"order": []}), log=lambda *a: None)
    target = prepared.target
    head = ClassificationHead(hidden_size(enc), len(target.labels))
    head.load_state_dict(load_file(f"{ck}/head.safetensors"))
    model = TaskModel(enc, head, meta["pooling"], target.is_regression).eval()
    prepared.tokenizer = tok
    h = handler(target.kind)
    hp = task_cfg.stage_hparams(None)
    sets = {lang: (prepared.eval[("dev", lang)], h.featurize(prepared.eval[("dev", lang)], target, tok, hp, train=False))
            for lang in prepared.languages}
    with torch.no_grad():
        per_lang = _score(prepared, make_accelerator(task_cfg.hardware), model, sets, None, "dev")
    dev_mean = sum(per_lang[lang]["accuracy"] for lang in prepared.languages) / len(prepared.languages)
    for lang in prepared.languages:
        assert per_lang[lang]["accuracy"] == pytest.approx(best.data.metrics[f"dev_accuracy_{lang}"], abs=1e-6)
    assert dev_mean == pytest.approx(best.data.metrics["dev_accuracy_mean"], abs=1e-6)
    assert best.data.metrics["dev_accuracy_mean"] == pytest.approx(float(rows[best_id]["score"]), abs=1e-12)


def test_resumed_search_continues_the_same_runs(tmp_path, ray_local):
    """The driver stops mid-search (runs end KILLED); `Tuner.restore` resumes it with the callbacks Tune
    saved: the interrupted trials' child runs are reopened and finished, never duplicated, and the
    parent run is the same one, FINISHED."""
    from ray import tune

    from search.config import load_search
    from search.runner import run_search
    from search.storage import Storage
    from search.trial import TrialContext, chain_trial

    p, _ = _sim_search(tmp_path, seconds=0.4, concurrent=2, asha=False, hparams=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    flag = str(tmp_path / "interrupted-once")

    def log(msg):  # pickled with the callbacks: interrupts the first fit only
        if msg.startswith("[") and not os.path.exists(flag):
            open(flag, "w").close()
            raise KeyboardInterrupt

    runs_dir = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt):
        run_search(str(p), name="resumed", storage=str(runs_dir), tracking_uri=uri, log=log)
    client = MlflowClient(uri)
    parent, before = _runs(client, "resumed")
    killed = {t for t, r in before.items() if r.info.status == "KILLED"}
    assert parent.info.status == "KILLED" and killed
    exp = runs_dir / "resumed"
    assert tune.Tuner.can_restore(str(exp))
    scfg, chain, _ = load_search(str(p))
    ctx = TrialContext(search=scfg, chain_raw=chain.model_dump(mode="json"), storage=Storage(str(runs_dir), "resumed"),
                       metric="accuracy")
    trainable = tune.with_resources(tune.with_parameters(chain_trial, ctx=ctx), {"cpu": scfg.resources.trial_cpus})
    tune.Tuner.restore(str(exp), trainable, resume_unfinished=True, resume_errored=True).fit()
    parent2, after = _runs(client, "resumed")  # fails on a duplicated run
    assert parent2.info.run_id == parent.info.run_id and parent2.info.status == "FINISHED"
    assert set(before) <= set(after) and all(after[t].info.run_id == before[t].info.run_id for t in before)
    assert len(after) == 9 and all(r.info.status == "FINISHED" for r in after.values())
    for t in killed:
        assert after[t].data.tags["outcome"] == "completed" and "score" in after[t].data.metrics


def _standalone_tracker(tmp_path, name: str):
    """The tracker on its own (no Ray run), set up on a sqlite store, and that store's URI."""
    from search.config import load_search
    from search.storage import Storage
    from search.tracking import Tracker

    p, _ = _sim_search(tmp_path, hparams=False)
    scfg, chain, _ = load_search(str(p))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tr = Tracker.create(st=Storage(str(tmp_path / "runs"), name), scfg=scfg, chain=chain, name=name, n_orders=9,
                        languages=LANGS, target="toy_xnli", uri=uri, log=lambda *a: None)
    tr.setup()
    return tr, uri


def test_the_ui_line_names_a_store_that_itt_ui_would_not_open(tmp_path, monkeypatch):
    """The search's last MLflow line says how to open its trials: `itt ui`, then the link. On a store other
    than the one `itt ui` opens by default (--tracking-uri, search.tracking.tracking_uri), a bare `itt ui`
    opened another store or none ("no MLflow store at <cwd>/mlflow.db"): the line names the store."""
    from search.tracking import resolve_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    tr, uri = _standalone_tracker(tmp_path, "where")  # (its store: tmp_path/mlflow.db, not ./mlflow.db)
    lines: list[str] = []
    tr.log = lines.append
    tr.close()
    said = next(ln for ln in lines if ln.startswith("compare the trials: "))
    hint = re.fullmatch(r"compare the trials: `itt ui --tracking-uri (\S+)`, then open http://127\.0\.0\.1:5000/#/"
                        r"experiments/\d+/runs\?viewStateShareKey=itt-\w+&workflowType=machine_learning", said)
    assert hint and resolve_uri(hint.group(1)) == uri, said
    # on the default store (mlflow.db in the working directory), `itt ui` alone opens it
    monkeypatch.chdir(tmp_path)
    tr, uri = _standalone_tracker(tmp_path, "here")
    assert uri == resolve_uri()
    lines.clear()
    tr.log = lines.append
    tr.close()
    assert next(ln for ln in lines if ln.startswith("compare the trials: ")).startswith(
        "compare the trials: `itt ui`, then open http://127.0.0.1:5000/#/experiments/"), lines


def test_replayed_trial_is_tagged(tmp_path):
    """The tracker on its own (no Ray run): a trial whose reports are replays of an identical earlier
    trial gets the tag `replayed`; its metrics and outcome are those reports'."""
    from types import SimpleNamespace

    tr, uri = _standalone_tracker(tmp_path, "replay")
    trial = SimpleNamespace(trial_id="t_00001", config={"order": "toy_topic"})
    tr.on_trial_start(0, [], trial)
    tr.on_trial_result(0, [], trial, {"step": 1, "objective": 0.4, "probe_accuracy_mean": 0.4, "replayed": 1,
                                      "training_iteration": 1, "time_total_s": 3.0})
    tr.on_trial_result(0, [], trial, {"step": 2, "objective": 0.6, "dev_accuracy_mean": 0.6, "final": 1,
                                      "replayed": 1, "training_iteration": 2})
    tr.on_trial_complete(0, [], trial)
    tr.close()
    _, runs = _runs(MlflowClient(uri), "replay")
    run = runs["t_00001"]
    assert run.data.tags["replayed"] == "true" and run.data.tags["outcome"] == "completed"
    assert run.data.metrics == {"objective": 0.6, "probe_accuracy_mean": 0.4, "dev_accuracy_mean": 0.6, "score": 0.6}
    assert run.info.run_name == "toy_topic" and run.info.status == "FINISHED"
    assert json.loads((tmp_path / "runs" / "replay" / "tracking" / "trials" / "t_00001.json").read_text())["replayed"]


def test_restarted_trial_logs_each_step_once_and_errors_carry_their_line(tmp_path):
    """The tracker on its own: a trial that a resumed search runs again from its start reports its steps
    again; its run keeps one point per step (it had [1, 2, 1, 2, 3]); an errored trial's run is tagged with
    the last line of its error file (Ray's ``get_error`` reads a storage copy not yet written then)."""
    from types import SimpleNamespace

    tr, uri = _standalone_tracker(tmp_path, "restart")
    trial = SimpleNamespace(trial_id="t_00001", config={"order": "toy_topic>toy_align"})
    probe = lambda step, v: {"step": step, "objective": v, "probe_accuracy_mean": v, "training_iteration": step}  # noqa: E731
    tr.on_trial_start(0, [], trial)
    tr.on_trial_result(0, [], trial, probe(1, 0.4))
    tr.on_trial_result(0, [], trial, probe(2, 0.5))
    tr.on_trial_start(0, [], trial)  # run again from its start (stages from the stage cache: the same reports)
    tr.on_trial_result(0, [], trial, probe(1, 0.4))
    tr.on_trial_result(0, [], trial, probe(2, 0.5))
    tr.on_trial_result(0, [], trial, {"step": 3, "objective": 0.6, "dev_accuracy_mean": 0.6, "final": 1, "training_iteration": 3})
    tr.on_trial_complete(0, [], trial)
    err = tmp_path / "error.txt"
    err.write_text("Traceback (most recent call last):\n  ...\nKeyError: 'toy_align>toy_topic' is not in the table\n")
    bad = SimpleNamespace(trial_id="t_00002", config={"order": "toy_align>toy_topic"}, error_file=str(err))
    tr.on_trial_start(0, [], bad)
    tr.on_trial_error(0, [], bad)
    tr.close()
    client = MlflowClient(uri)
    _, runs = _runs(client, "restart")
    steps = [m.step for m in client.get_metric_history(runs["t_00001"].info.run_id, "objective")]
    assert sorted(steps) == [1, 2, 3]
    assert runs["t_00002"].data.tags["error"] == "KeyError: 'toy_align>toy_topic' is not in the table"
    assert runs["t_00002"].info.status == "FAILED"


def test_hparams_exact_and_passwords_kept_out_of_mlflow_and_the_console():
    """A trial's hyperparameters are MLflow params as results.csv has them (they were rounded to 3 figures,
    so close values looked the same); a URL's password is masked wherever a store address is shown."""
    from search.tracking import redact, trial_params

    p = trial_params(["a"], {"train.lr": 0.0018789852661499496, "train.epochs": 3}, [0], 1)
    assert p["train.lr"] == "0.0018789852661499496" and p["train.epochs"] == "3"
    assert redact("tracking: http://alice:s3cr3t@127.0.0.1:5079 and postgresql://u:pw@db:5432/optuna") == \
        "tracking: http://alice:***@127.0.0.1:5079 and postgresql://u:***@db:5432/optuna"
    for plain in ("sqlite:////tmp/mlflow.db", "http://127.0.0.1:5000/#/experiments/1", "http://user@host/x"):
        assert redact(plain) == plain


def test_a_key_in_an_earlier_search_uri_is_kept_out_of_the_parent_params(tmp_path):
    """search.prior_from may name an earlier search on an object store with its key in the URI (pyarrow
    reads s3://KEY:SECRET@bucket/path): the parent run's param ``prior_from`` held the secret verbatim."""
    from search.config import load_search
    from search.storage import Storage
    from search.tracking import Tracker

    p, _ = _sim_search(tmp_path, hparams=False)
    scfg, chain, _ = load_search(str(p), ["search.searcher=order_bo",
                                          "search.prior_from=s3://AKIDEXAMPLE:wJalrSECRET@bucket/searches/xnli"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tr = Tracker.create(st=Storage(str(tmp_path / "runs"), "keyed"), scfg=scfg, chain=chain, name="keyed", n_orders=9,
                        languages=LANGS, target="toy_xnli", uri=uri, log=lambda *a: None)
    tr.setup()
    tr.close()
    parent, _ = _runs(MlflowClient(uri), "keyed")
    assert parent.data.params["prior_from"] == "s3://AKIDEXAMPLE:***@bucket/searches/xnli"
    assert not any("wJalrSECRET" in v for v in [*parent.data.params.values(), *parent.data.tags.values()])


def test_itt_ui_on_a_server_keeps_its_password_out_of_the_console(tmp_path, capsys):
    """`itt ui --tracking-uri http://user:password@host` printed the password (the server's address, then
    each search's link), where every other command masks it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["ui", "--tracking-uri", f"http://alice:s3cr3t@127.0.0.1:{port}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"http://alice:***@127.0.0.1:{port} is an MLflow server already") and "s3cr3t" not in out, out


def test_report_after_syncing_a_search_run_without_tracking_is_logged(tmp_path):
    """`--no-tracking`, then `itt mlflow-sync`, then `itt report` (as the report's own line asks): the report
    still said "not logged (tracking was off for this search; `itt mlflow-sync ...` creates its runs, then
    run `itt report` again" however often it was done. The sync records its store for the search."""
    from types import SimpleNamespace

    from search.config import load_search
    from search.storage import Storage
    from search.tracking import Tracker, log_report, sync

    p, _ = _sim_search(tmp_path, hparams=False)
    scfg, chain, _ = load_search(str(p), ["search.tracking.enabled=false"])
    st = Storage(str(tmp_path / "runs"), "offline")
    tr = Tracker.create(st=st, scfg=scfg, chain=chain, name="offline", n_orders=9, languages=LANGS, target="toy_xnli",
                        log=lambda *a: None)
    tr.setup()
    trial = SimpleNamespace(trial_id="t_00001", config={"order": "toy_topic"})
    tr.on_trial_start(0, [], trial)
    tr.on_trial_result(0, [], trial, {"step": 3, "objective": 0.6, "dev_accuracy_mean": 0.6, "final": 1})
    tr.on_trial_complete(0, [], trial)
    tr.close()
    st.write_text("trial_id,status,order,order_length,stages_completed,stopped_early,score\n"
                  "t_00001,completed,toy_topic,1,1,false,0.6\n", "results.csv")
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("# does order matter?\n")
    meta = st.read_json("tracking", "search.json")
    assert log_report(st, meta, report, {"report_best_mean": 0.6}).startswith("MLflow: not logged (tracking was off")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sync(st.display, uri, log=lambda *a: None)
    line = log_report(st, st.read_json("tracking", "search.json"), report, {"report_best_mean": 0.6})
    assert line.startswith("MLflow: report logged to parent run"), line
    client = MlflowClient(uri)
    parent, runs = _runs(client, "offline")
    assert parent.data.metrics["report_best_mean"] == 0.6 and set(runs) == {"t_00001"}
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "report")] == ["report/report.md"]


def test_a_trial_synced_from_its_results_row_logs_the_names_of_a_tracked_one():
    """A trial without its tracking/ record (lost, or never written) is synced from its results.csv row: its
    figures went to MLflow under the CSV's names (``en``, ``dev_mean``, ``xtreme_average``), so the runs
    page's columns ``test_accuracy_en``.. and the charts left it blank beside the other trials."""
    from search.tracking import _record_from_row

    row = {"trial_id": "t_00001", "status": "completed", "order": "toy_topic", "order_length": "1",
           "stages_completed": "1", "stopped_early": "false", "score": "0.64", "en": "0.9", "xa": "0.5",
           "test_mean": "0.7", "test_worst": "0.5", "dev_mean": "0.64", "xtreme_average": "0.7",
           "xtreme_toy_xnli": "0.7", "chain_tokens": "1000", "replayed": "false", "node_ip": "10.0.0.7"}
    rec = _record_from_row(row, {"metric": "accuracy", "languages": ["en", "xa"], "max_length": 2, "seeds": [0]})
    assert rec["reports"][0]["step"] == 3 and rec["reports"][0]["metrics"] == {
        "score": 0.64, "objective": 0.64, "test_accuracy_en": 0.9, "test_accuracy_xa": 0.5, "test_mean": 0.7,
        "test_accuracy_mean": 0.7, "test_worst": 0.5, "test_accuracy_worst": 0.5, "dev_accuracy_mean": 0.64,
        "test_xtreme_average": 0.7, "test_xtreme_toy_xnli": 0.7, "chain_tokens": 1000.0}


@pytest.mark.ray
def test_an_unreachable_store_keeps_its_password_out_of_the_error_line(tmp_path, capsys):
    """MLflow's own exception quotes the request URL, password included: the error line named the store
    masked, then printed the password in the reason after it."""
    p, _ = _sim_search(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["search", str(p), "--storage", str(tmp_path / "runs"), "--tracking-uri",
                 f"http://alice:s3cr3t@127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: tracking: cannot reach the MLflow store"), err
    assert "s3cr3t" not in err[0] and "alice:***@" in err[0], err


@pytest.mark.ray
def test_a_name_mlflow_refuses_is_one_error_line_before_ray(tmp_path, capsys):
    """An experiment name over MLflow's 500 characters failed after Ray started, and the search ran untracked."""
    p, _ = _sim_search(tmp_path)
    code = main(["search", str(p), "--storage", str(tmp_path / "runs"), "--tracking-uri",
                 f"sqlite:///{tmp_path / 'mlflow.db'}", "--set", f"search.tracking.experiment={'x' * 501}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: search.tracking.experiment 'xxxx"), err
    assert "500" in err[0] and not _experiments(tmp_path / "runs") and not (tmp_path / "mlflow.db").exists()


def test_a_figure_logged_again_unchanged_adds_no_point(tmp_path):
    """A second ``itt report`` or ``itt mlflow-sync`` logs no second point of an unchanged figure (every
    report metric had two points after two reports); a changed one is logged."""
    import time as _time

    from search.tracking import _log_per_trial

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("again", artifact_location=(tmp_path / "mlruns").as_uri())
    run = client.create_run(exp, tags={"itt_role": "trial", "search_id": "s1", "trial_id": "t1"})
    for value in (0.5, 0.5, 0.7):
        assert _log_per_trial(client, exp, "s1", {"t1": {"report_p_best": value}}, int(_time.time() * 1000)) == 1
    assert [m.value for m in client.get_metric_history(run.info.run_id, "report_p_best")] == [0.5, 0.7]


# ------------------------------------------------------------------ the runs page, in headless Chromium
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _chromium(url: str, profile: Path, *, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran (and a screenshot), from a fresh headless Chromium profile."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--window-size=1600,900", "--virtual-time-budget=30000"]
    if screenshot is not None:
        subprocess.run(args + [f"--screenshot={screenshot}", url], capture_output=True, timeout=180)
    return subprocess.run(args + ["--dump-dom", url], capture_output=True, text=True, timeout=180).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_runs_page_opens_on_the_trials(tmp_path, ray_local, itt_ui):
    """The link `itt search` prints opens MLflow's runs page (Model training workspace) on the search's
    trials: one row per trial, flat (not collapsed under the parent), with the score column."""
    from search.runner import run_search

    url = itt_ui["url"]
    p, _ = _sim_search(tmp_path, hparams=False, asha=False)
    lines: list[str] = []
    exp = run_search(str(p), name="ui-check", storage=str(tmp_path / "runs"), tracking_uri=url, log=lines.append,
                     progress="off")
    link = next(ln for ln in lines if ln.startswith("compare the trials: ")).split(": ", 1)[1]
    client = MlflowClient(url)
    e = client.get_experiment_by_name("ui-check")
    assert link.startswith(f"{url}/#/experiments/{e.experiment_id}/runs?viewStateShareKey=itt-")
    assert link.endswith("workflowType=machine_learning")
    assert e.tags["mlflow.experimentKind"] == "custom_model_development"
    rows = _rows(exp)
    dom = _chromium(link, tmp_path / "chromium", screenshot=tmp_path / "runs_page.png")
    (tmp_path / "runs_page.html").write_text(dom)
    text = " ".join(re.sub(r"<[^>]+>", " ", dom).split())
    assert f"{len(rows)} matching runs" in text, text[-2000:]  # the trials, without the parent run
    for r in rows.values():  # every trial's run name is a row of the table
        assert f">{html.escape(r['order'])}<" in dom, r["order"]
    # the columns a comparison needs, in the header and in every trial's row
    for col in ("metrics.`score`", "params.`order`", "tags.`outcome`"):
        assert dom.count(f'col-id="{col}"') == len(rows) + 1, col
    # the chart view opens on the search's charts: the best orders' scores, positions -> score, the probes
    chart_dom = _chromium(link + "&compareRunsMode=CHART", tmp_path / "chromium")
    charts = " ".join(re.sub(r"<[^>]+>", " ", chart_dom).split())
    assert "Orders (itt) (3)" in charts and "Parallel Coordinates" in charts, charts[-3000:]
    for axis in ("pos_1", "pos_2", "score", "objective"):
        assert f">{axis}<" in chart_dom, axis
    # `itt ui` lists the same link for the store's searches
    out = subprocess.run([sys.executable, "-m", "search.cli", "ui", "--tracking-uri", url], capture_output=True,
                         text=True, timeout=120).stdout
    assert f"  ui-check: {link}" in out, out
