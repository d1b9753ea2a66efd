"""Search storage on an object store: a real S3 API (moto's server on 127.0.0.1) through pyarrow."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from itt.errors import UserError
from search.storage import Storage, writable_folder

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server; yields a function bucket -> storage URI (the bucket is created)."""
    exe = shutil.which("moto_server")
    if exe is None:
        pytest.fail("moto_server not found: install the test extra (pip install -e '.[test]')")
    port = _free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    old = {k: os.environ.get(k) for k in CREDS}
    os.environ.update(CREDS)

    def uri(bucket: str, prefix: str = "searches") -> str:
        import pyarrow.fs as pafs

        opts = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
        fs, _ = pafs.FileSystem.from_uri(f"s3://{bucket}?{opts}&allow_bucket_creation=true")
        fs.create_dir(bucket)
        return f"s3://{bucket}/{prefix}?{opts}"

    yield uri
    proc.terminate()
    proc.wait(10)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_storage_roundtrip_on_s3(s3, tmp_path):
    st = Storage(s3("unit"), "exp1")
    assert st.remote and st.display == "s3://unit/searches/exp1"
    assert not st.exists() and st.read_text("results.csv") is None
    st.check_writable()
    assert not st.exists()  # the write check leaves no experiment directory behind
    st.write_text("a,b\n1,2\n", "results.csv")
    st.write_text("a,b\n3,4\n", "results.csv")  # overwrite
    assert st.exists() and st.read_text("results.csv") == "a,b\n3,4\n"
    (tmp_path / "out" / "seed0").mkdir(parents=True)
    (tmp_path / "out" / "seed0" / "results.json").write_text('{"x": 1}')
    sent = st.upload_dir(tmp_path / "out", "trials", "t1")
    assert json.loads(st.read_text("trials", "t1", "seed0", "results.json")) == {"x": 1}
    # a second upload sends only what is new or changed (a trial's checkpoint goes up once)
    (tmp_path / "out" / "late.json").write_text("{}")
    st.write_text("overwritten remotely", "trials", "t1", "seed0", "results.json")
    st.upload_dir(tmp_path / "out", "trials", "t1", sent=sent)
    assert st.read_text("trials", "t1", "late.json") == "{}"
    assert st.read_text("trials", "t1", "seed0", "results.json") == "overwritten remotely"  # unchanged: skipped
    (tmp_path / "out" / "seed0" / "results.json").write_text('{"x": 22}')
    st.upload_dir(tmp_path / "out", "trials", "t1", sent=sent)
    assert json.loads(st.read_text("trials", "t1", "seed0", "results.json")) == {"x": 22}  # changed: sent again


def test_writable_folder_checks_and_leaves_the_place_as_it_was(tmp_path):
    writable_folder(tmp_path / "a" / "b" / "c", "--out x")  # writable: nothing made stays
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "there").mkdir()
    writable_folder(tmp_path / "there", "--out there")
    assert list((tmp_path / "there").iterdir()) == []  # (the probe file is gone too)
    (tmp_path / "f").write_text("keep")
    for folder, needle in [(tmp_path / "f", "is a file, not a folder"), (tmp_path / "f" / "g", "cannot write to")]:
        with pytest.raises(UserError, match=needle) as e:
            writable_folder(folder, "--out y")
        assert str(e.value).startswith("--out y: ") and "\n" not in str(e.value)
    assert (tmp_path / "f").read_text() == "keep"
    if os.geteuid() != 0:  # (root writes anywhere)
        (tmp_path / "ro").mkdir(mode=0o500)
        with pytest.raises(UserError, match="cannot write to"):
            writable_folder(tmp_path / "ro" / "new", "--out z")


def test_local_storage_is_a_plain_folder(tmp_path):
    st = Storage(str(tmp_path / "runs"), "e")
    assert not st.remote and st.display == str(tmp_path / "runs" / "e")
    st.write_text("x", "dedup", "k.json")
    assert (tmp_path / "runs" / "e" / "dedup" / "k.json").read_text() == "x"
    assert not [p for p in (tmp_path / "runs" / "e" / "dedup").iterdir() if p.name.startswith(".")]  # no temp left


TINY_SEARCH = """
name: s3demo
model:
  tiny: {arch: bert, hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}
  train_tokenizer: {vocab_size: 800}
target: {task: toy_xnli}
toy: {n_train: 200, n_eval: 40}
train: {max_steps: 5, batch_size: 16, max_length: 24}
finetune: {max_steps: 5}
eval: {batch_size: 64}
seeds: [0]
search:
  candidates: [toy_topic, toy_length]
  length: 1
  searcher: exhaustive
  probe_steps: 3
  scheduler: {type: none}
  resources: {workers_per_trial: 1, cpus_per_worker: 1, trial_cpus: 0.5, max_concurrent: 1}
"""


def _itt(args, cwd, timeout=400, env=None):
    env = {**os.environ, **CREDS, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_a_write_that_fails_leaves_the_file_as_it_was_and_is_one_error_line(tmp_path, monkeypatch):
    """A full disk while results.csv (or any experiment file) is rewritten: the search ended in a traceback
    (OSError from a Ray callback) and left the half-written temporary file behind. Now: one error line naming
    the file and why, the file as it was, no temporary file."""
    import errno
    from pathlib import Path

    st = Storage(str(tmp_path), "exp")
    st.write_text("old\n", "results.csv")
    real = Path.write_bytes

    def full(self, data):
        real(self, data[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(UserError, match=r"exp/results.csv: cannot write \(No space left on device\)"):
        st.write_text("new rows\n", "results.csv")
    monkeypatch.undo()
    assert (tmp_path / "exp" / "results.csv").read_text() == "old\n"
    assert os.listdir(tmp_path / "exp") == ["results.csv"]  # no temporary file left behind


def test_a_file_uri_is_the_folder_pyarrow_and_ray_read(tmp_path):
    """--storage file:///.../my%20runs (a space, as a file URI writes it) went to a folder literally named
    'my%20runs', and file://localhost/... to a folder 'localhost' in the working directory; pyarrow (which
    every object-store path goes through) reads the first as 'my runs' and refuses the second."""
    from search.tracking import storage_of

    assert Storage(f"file://{tmp_path}/my%20runs", "x").display == f"{tmp_path}/my runs/x"
    assert storage_of(f"file://{tmp_path}/my%20runs/x").display == f"{tmp_path}/my runs/x"
    with pytest.raises(UserError, match="^--storage file://localhost/tmp/x: .*; a local folder is file:///path$"):
        Storage("file://localhost/tmp/x", "x").display


@pytest.mark.ray
def test_itt_search_on_s3(s3, tmp_path):
    """A real (tiny) search whose storage is an S3 bucket: results.csv, dedup records and every trial's
    outputs end up in the bucket; nothing is written to the working directory."""
    (tmp_path / "cfg.yaml").write_text(TINY_SEARCH)
    uri = s3("runs")
    r = _itt(["search", "cfg.yaml", "--storage", uri], tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "results: s3://runs/searches/s3demo/results.csv" in r.stdout
    st = Storage(uri, "s3demo")
    rows = list(csv.DictReader(io.StringIO(st.read_text("results.csv"))))
    assert sorted(r["order"] for r in rows) == ["toy_length", "toy_topic"]
    assert all(r["status"] == "completed" and r["score"] for r in rows)
    for row in rows:
        res = json.loads(st.read_text("trials", row["trial_id"], "results.json"))
        assert res["order"] == [row["order"]]
        assert st.exists("trials", row["trial_id"], "seed0", "predictions", "test.xc.jsonl")
    import pyarrow.fs as pafs

    dedup = st.fs.get_file_info(pafs.FileSelector(st.path("dedup")))
    assert len(dedup) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml"]
    # the search in the bucket as `itt space --from`'s pilot: its trials' seconds read from there
    from search import plan

    base, _, query = uri.partition("?")
    timing = plan.timing_from(f"{base}/s3demo?{query}")
    assert len(timing.runs) == 2 and timing.clock == "trial" and set(timing.stage) == {"toy_topic", "toy_length"}
    # MLflow (the session's store, see conftest): the best trial's checkpoint, read from the bucket
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("s3demo").experiment_id],
                              filter_string="tags.best_rank = '1'")
    assert len(runs) == 1, r.stdout[-3000:]
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id, "checkpoint/seed0")} >= {
        "checkpoint/seed0/model.safetensors", "checkpoint/seed0/head.safetensors", "checkpoint/seed0/config.json"}
    # the same name again is refused, before any trial starts
    r2 = _itt(["search", "cfg.yaml", "--storage", uri], tmp_path, timeout=120)
    assert r2.returncode == 2 and "exists already" in r2.stderr and "Traceback" not in r2.stderr


def test_resume_on_s3_with_the_command_the_search_printed(s3, tmp_path, write_config, ray_local):
    """`itt resume` of a search whose experiment is in a bucket (Ray Tune's restore given the store's own
    path, not the URI), with --more: its Ray state is rewritten in the bucket and the new trials' rows join.
    The command is the one the search printed: on an S3-compatible store (--storage
    s3://bucket/x?endpoint_override=...) it was `itt resume s3://bucket/x/<name> --more N`, and without the
    endpoint that command (and its `itt report` at the end, search.report) went to AWS ("Could not resolve
    host: <bucket>.s3.us-east-1.amazonaws.com")."""
    import re

    from search.runner import resume_search, run_search

    tasks = ["toy_topic", "toy_align", "toy_length", "toy_parity"]
    table = tmp_path / "table.csv"
    table.write_text("order,seed,probe_1,final,test_en,test_de\n" + "".join(
        f"{t},{s},0.{i + 3},0.{i + 4}{s},0.{i + 4}{s},0.{i + 3}{s}\n" for i, t in enumerate(tasks) for s in (0, 1, 2)))
    cfg = write_config({"seeds": [0, 1, 2],
                        "search": {"candidates": tasks, "length": 1, "searcher": "order_bo", "num_samples": 3,
                                   "simulate": {"table": str(table)}, "scheduler": {"type": "none"},
                                   "tracking": {"enabled": False}, "report": True}})
    uri = s3("printed")
    lines: list[str] = []
    exp = run_search(str(cfg), name="p", storage=uri, log=lambda *a: lines.append(" ".join(map(str, a))), progress="off")
    st = Storage(uri, "p")
    first = list(csv.DictReader(io.StringIO(st.read_text("results.csv"))))
    base, _, query = uri.partition("?")
    assert exp == f"{base}/p?{query}"  # (with the endpoint options moto needs: what `itt confirm` reports on)
    said = next((ln for ln in lines if "--more N`" in ln), None)
    printed = re.search(r"`itt resume (\S+) --more N`", said or "")
    assert printed and printed.group(1) == f"'{base}/p?{query}'", lines  # (quoted: the shell reads & and ?)
    assert any(ln.startswith(f"report: {base}/p/report/report.html") for ln in lines), lines  # not "not written"
    resume_search(printed.group(1).strip("'"), more=1, log=lambda *a: None, progress="off")  # the printed command
    rows = list(csv.DictReader(io.StringIO(st.read_text("results.csv"))))
    assert len(first) == 3 and rows[:3] == first and len(rows) == 4, rows
    assert sorted(r["order"] for r in rows) == sorted(tasks) and all(r["status"] == "completed" for r in rows)
    assert "num_samples: 4" in st.read_text("search.yaml")


@pytest.mark.parametrize("storage, needle", [
    ("foo://bucket/x", "Unrecognized filesystem"),
    ("s3://nobucket/x?endpoint_override=127.0.0.1:9&scheme=http&region=us-east-1", "cannot reach the store"),
])
@pytest.mark.ray
def test_bad_storage_is_one_clear_error(storage, needle, tmp_path):
    (tmp_path / "cfg.yaml").write_text(TINY_SEARCH)
    r = _itt(["search", "cfg.yaml", "--storage", storage], tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: --storage") and needle in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml"]


@pytest.mark.ray
def test_a_store_that_does_not_answer_is_one_error_line_within_the_check_time(tmp_path):
    """A store that accepts the connection and never answers (as a GCS client without network or
    credentials retries for 15 minutes): the first request gets ITT_STORAGE_CHECK_S seconds, then one
    error line and exit 2 at once (S3's exit handler would otherwise wait for the blocked request: 100 s
    here). The same for `itt search --storage` and `itt report` on such an experiment."""
    (tmp_path / "cfg.yaml").write_text(TINY_SEARCH)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        opts = f"endpoint_override=127.0.0.1:{silent.getsockname()[1]}&scheme=http&region=us-east-1"
        env = {**CREDS, "ITT_STORAGE_CHECK_S": "2"}
        for args, label in ((["search", "cfg.yaml", "--storage", f"s3://bucket/x?{opts}"], "--storage"),
                            (["report", f"s3://bucket/x/exp?{opts}"], "experiment")):
            t0 = time.time()
            r = _itt(args, tmp_path, timeout=120, env=env)
            lines = r.stderr.strip().splitlines()
            assert r.returncode == 2 and len(lines) == 1, r.stderr
            assert lines[0].startswith(f"error: {label} s3://bucket") and "no answer in 2 s" in lines[0], lines[0]
            assert time.time() - t0 < 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml"]
