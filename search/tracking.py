"""MLflow tracking of a search: one parent run per search, one child run per trial, all from the driver.

Every MLflow call happens in the driver process (``Tracker`` is a Ray Tune ``Callback`` beside
``ResultsWriter``), so Train workers never open a sqlite file and an ``http://`` server on a cluster
needs no access from the workers. Ray's ``MLflowLoggerCallback`` is not used: it keys runs by the
``Trial`` object and keeps no state, so a resumed search duplicates runs and leaves the old ones
RUNNING. Here runs are keyed by tags instead:

* the parent run by ``search_id`` (a uuid kept in ``<experiment>/tracking/search.json``);
* a child run by ``trial_id`` (Ray Tune's) under that parent (``mlflow.parentRunId``).

A resumed search, or ``itt mlflow-sync``, looks runs up by those tags and continues them. The tag
``reports_logged`` (written in the same ``log_batch`` as the metrics) says how many of a trial's
reports are in MLflow, so neither a resume nor a sync logs a report twice.

Besides MLflow, the tracker keeps ``<experiment>/tracking/`` through ``Storage`` (a folder or an object
store): ``search.json``, ``config.yaml``, ``search_space.json`` and ``trials/<trial_id>.json`` (every
report of the trial, its status and outcome). That log, ``results.csv`` and the trials' checkpoints
are all that ``itt mlflow-sync`` needs to rebuild the MLflow side after an outage, or for a search run
with tracking off.

Store: ``--tracking-uri`` > ``search.tracking.tracking_uri`` > ``$MLFLOW_TRACKING_URI`` >
``sqlite:///mlflow.db`` (MLflow's own default, in the working directory).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import shlex
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from ray.tune import Callback

from itt.errors import UserError, first_line
from search.space import order_key, order_tasks
from search.storage import Storage, echo, is_uri, local_path

DEFAULT_URI = "sqlite:///mlflow.db"
COMPARE_EXPERIMENT = "itt-compare"  # where `itt compare` logs its comparisons
F_NAME = "F (no intermediate task)"
SAVE_GAP = 2.0  # seconds between rewrites of a running trial's record in tracking/trials/ (its start and end always)


class Outcome:
    """Trial statuses as results.csv writes them, and the MLflow run status each one ends with."""

    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"
    ERRORED = "errored"
    INTERRUPTED = "interrupted"  # the driver stopped (Ctrl-C, exit) before the trial ended
    RUN_STATUS = {COMPLETED: "FINISHED", STOPPED: "FINISHED", ERRORED: "FAILED", INTERRUPTED: "KILLED",
                  RUNNING: "KILLED"}


# Tune's own bookkeeping in every result: not the chain's metrics
_TUNE_KEYS = {"timestamp", "done", "training_iteration", "time_this_iter_s", "time_total_s", "pid", "time_since_restore",
              "iterations_since_restore", "timesteps_total", "episodes_total", "timesteps_since_restore",
              "episodes_this_iter", "timesteps_this_iter", "episode_reward_mean", "should_checkpoint",
              # flags of a report, kept as tags or steps instead
              "step", "final", "replayed", "resumed", "simulated", "stage", "n_seeds"}


# ------------------------------------------------------------------ the store
def resolve_uri(cli: str | None = None, config: str | None = None) -> str:
    """The tracking URI to use; a relative sqlite path is made absolute (the working directory's)."""
    uri = cli or config or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        rel = uri[len("sqlite:///"):]
        if rel and rel != ":memory:":
            uri = "sqlite:///" + str(Path(rel).resolve())
    return uri


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):])
    return None


def _file_store(uri: str) -> bool:
    """Whether MLflow reads ``uri`` as a folder (its file store): a path or file: URI, not a database, a
    server or Databricks (``databricks``, ``databricks-uc``, ``uc``, ``databricks://profile``)."""
    if uri.startswith("file:"):
        return True
    return "://" not in uri and uri.split(":")[0] not in ("databricks", "databricks-uc", "uc")


@contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _quiet_mlflow() -> None:
    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # its SQLAlchemy errors come as a logged traceback before the exception the tracker reports in one line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def error_line(e: BaseException) -> str:
    """An exception's first line for one console line, a URL's password masked (MLflow's own messages
    quote the request URL, userinfo included)."""
    return first_line(e, clean=redact)


SEARCH_HINT = "start the server, pass another --tracking-uri, or set search.tracking.enabled: false"


def connect(uri: str, hint: str = SEARCH_HINT):
    """An ``MlflowClient`` on ``uri`` that answered one request, or a UserError naming the store (and
    ``hint``: what to do about it).

    The check is quick (no retries, a short timeout); later requests retry a little, so a server
    that drops mid-search costs the driver seconds, not minutes, before tracking stops."""
    for k, v in (("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true"), ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                 ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")):
        os.environ.setdefault(k, v)
    db = _sqlite_path(uri)
    if db is not None and not db.parent.is_dir():
        raise UserError(f"tracking: MLflow store {uri}: folder {db.parent} does not exist")
    if db is not None and not db.exists():  # (MLflow retried a file it could not create for 100 s)
        from search.storage import writable_folder

        writable_folder(db.parent, f"tracking: MLflow store {uri}")
    if _file_store(uri) and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
        raise UserError(f"tracking: MLflow store {uri}: a folder is MLflow's file store, which MLflow 3 no longer "
                        "writes; give a database (sqlite:///path/mlflow.db) or a server (http://host:5000), or set "
                        "MLFLOW_ALLOW_FILE_STORE=true")
    try:
        from mlflow.tracking import MlflowClient

        _quiet_mlflow()  # after the import: mlflow sets its own logger up when imported
        with _env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10"):
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)
    except Exception as e:
        raise UserError(f"tracking: cannot reach the MLflow store {redact(uri)} ({error_line(e)}); {hint}") from None
    return client


def check_store(client, uri: str, experiment: str) -> None:
    """What tracking will write can be written, checked before Ray starts (a UserError line): an experiment
    name MLflow takes, a sqlite store's folder (sqlite writes its journal beside the database, also when the
    file exists) and the folder the experiment's artifacts go to."""
    from urllib.parse import unquote, urlparse

    from mlflow.utils.validation import _validate_experiment_name

    from search.storage import writable_folder

    try:
        _validate_experiment_name(experiment)
    except Exception as e:
        shown = f"{experiment[:40]!r}..." if len(experiment) > 40 else repr(experiment)
        raise UserError(f"search.tracking.experiment {shown}: {error_line(e)}") from None
    db = _sqlite_path(uri)
    if db is None:
        return
    writable_folder(db.parent, f"tracking: MLflow store {uri}")
    exp = client.get_experiment_by_name(experiment)
    loc = exp.artifact_location if exp is not None else (db.parent / "mlruns").as_uri()
    if loc.startswith("file:"):
        writable_folder(Path(unquote(urlparse(loc).path)), f"tracking: artifacts of MLflow experiment '{experiment}'")


# ------------------------------------------------------------------ names, params, metrics
def _fmt(v) -> str:
    """Short and readable: 2e-5, 0.1, 3.14e+4 -> 3.14e4, 16."""
    if isinstance(v, float):
        s = f"{v:.2e}" if v and not 1e-2 <= abs(v) < 1e4 else f"{v:.3g}"
        if "e" in s:
            mant, exp = s.split("e")
            mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
            s = f"{mant}e{int(exp)}"
        return s
    return str(v)


def _short(key: str) -> str:
    if key.startswith("train."):
        return key[len("train."):]
    if key.startswith("stages."):
        return key[len("stages."):]
    return key


def run_name(order: list[str], hparams: dict) -> str:
    """What a person reads in the run list, e.g. ``toy_topic>toy_align · lr=2e-5``."""
    name = order_key(order) or F_NAME
    hp = " ".join(f"{_short(k)}={_fmt(v)}" for k, v in sorted(hparams.items()))
    return f"{name} · {hp}" if hp else name


def trial_params(order: list[str], hparams: dict, seeds: list[int], max_length: int) -> dict[str, str]:
    """order, order_length, pos_1..pos_<longest> ('-' past the end, so parallel coordinates keep
    every run), every hyperparameter under its dotted key, the seeds."""
    p = {"order": order_key(order) or "F", "order_length": str(len(order)),
         "seeds": ",".join(str(s) for s in seeds)}
    for i in range(1, max(max_length, len(order)) + 1):
        p[f"pos_{i}"] = order[i - 1] if i <= len(order) else "-"
    p.update({k: str(v) for k, v in hparams.items()})  # exact, as results.csv's hp:<key> (run_name shortens them)
    return p


SHORT_FIGURES = ("mean", "std", "worst", "transfer_gap")  # test_<metric>_<fig> also as test_<fig>, as in results.csv


def report_metrics(result: dict, metric: str | None = None) -> dict[str, float]:
    """The chain's numeric figures in one Tune result (Tune's bookkeeping left out). A final result
    also gets ``test_mean``, ``test_worst``, ... (results.csv's names, whatever the target's metric),
    so the runs page shows the same columns for every search."""
    out = {}
    for k, v in result.items():
        if k in _TUNE_KEYS or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            continue
        out[k] = float(v)
    if result.get("final") and result.get("objective") is not None:
        out["score"] = float(result["objective"])  # the optimised dev metric (results.csv's score)
    if result.get("final") and metric:
        out.update({f"test_{f}": out[f"test_{metric}_{f}"] for f in SHORT_FIGURES if f"test_{metric}_{f}" in out})
    return out


def outcome_text(status: str, stages: int) -> str:
    if status == Outcome.STOPPED:
        return f"stopped by ASHA at stage {stages}"
    return status


# ------------------------------------------------------------------ the MLflow side
class _Mlflow:
    """Idempotent operations on one MLflow experiment (runs found by tag, never duplicated)."""

    def __init__(self, client, experiment: str, artifact_root: Path | None):
        self.client = client
        exp = client.get_experiment_by_name(experiment)
        if exp is not None and exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        if exp is None:
            loc = None
            if artifact_root is not None:  # sqlite: artifacts beside the database, not in the working dir
                loc = (artifact_root / re.sub(r"[^\w.-]", "_", experiment)).as_uri()
            self.exp_id = client.create_experiment(experiment, artifact_location=loc)
        else:
            self.exp_id = exp.experiment_id

    def show_trials(self, meta: dict) -> None:
        """The experiment opens on the runs page, in the Model training workspace, on this search's
        trials (see :func:`view_state`): tags the UI reads, set on every start (idempotent)."""
        show_trials(self.client, self.exp_id, meta)

    def _find(self, filt: str):
        runs = self.client.search_runs([self.exp_id], filter_string=filt, max_results=2,
                                       order_by=["attributes.start_time ASC"])
        return runs[0] if runs else None

    def parent(self, search_id: str, name: str, tags: dict):
        run = self._find(f"tags.search_id = '{search_id}' and tags.itt_role = 'search'")
        if run is None:
            run = self.client.create_run(self.exp_id, run_name=name, tags={**tags, "search_id": search_id,
                                                                           "itt_role": "search"})
        elif run.info.status != "RUNNING":
            self.client.update_run(run.info.run_id, status="RUNNING")
        return run

    def child(self, parent_id: str, search_id: str, trial_id: str, name: str, params: dict, *, reopen: bool):
        """The trial's run (created when missing), with every param logged; returns (run_id, reports_logged)."""
        from mlflow.entities import Param

        run = self._find(f"tags.trial_id = '{trial_id}' and tags.search_id = '{search_id}'")
        if run is None:
            run = self.client.create_run(self.exp_id, run_name=name, tags={
                "mlflow.parentRunId": parent_id, "trial_id": trial_id, "search_id": search_id, "itt_role": "trial",
                "status": Outcome.RUNNING, "outcome": Outcome.RUNNING})
            have, logged = {}, 0
        else:
            have, logged = run.data.params, int(run.data.tags.get("reports_logged", 0))
            if reopen and run.info.status != "RUNNING":
                self.client.update_run(run.info.run_id, status="RUNNING")
        missing = [Param(k, v) for k, v in params.items() if k not in have]
        for i in range(0, len(missing), 100):
            self.client.log_batch(run.info.run_id, params=missing[i:i + 100])
        return run.info.run_id, logged

    def log_reports(self, run_id: str, reports: list[dict], start: int, skip_upto: int = 0) -> None:
        """Reports ``start..`` (each ``{"step", "time", "metrics"}``), and ``reports_logged`` in the same batch.
        A report at a step up to ``skip_upto`` (a restarted trial's step that its earlier run logged) only counts."""
        from mlflow.entities import Metric, RunTag

        for n, rep in enumerate(reports[start:], start=start + 1):
            tags = [RunTag("reports_logged", str(n))]
            if int(rep["step"]) <= skip_upto:
                self.client.log_batch(run_id, tags=tags)
                continue
            ms = [Metric(k, v, int(rep.get("time", time.time()) * 1000), int(rep["step"])) for k, v in rep["metrics"].items()]
            for i in range(0, max(len(ms), 1), 900):
                self.client.log_batch(run_id, metrics=ms[i:i + 900], tags=tags if i + 900 >= len(ms) else [])

    def end(self, run_id: str, status: str, tags: dict) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        self.client.set_terminated(run_id, status=status)


# ------------------------------------------------------------------ what both the live tracker and sync use
TRIAL_COLUMNS = ("trial_id", "status", "order")  # what a reader of each trial's files needs of results.csv


def read_rows(st: Storage, need: tuple[str, ...] = ("status", "order")) -> list[dict]:
    return rows_of(st.read_text("results.csv"), f"{st.display}/results.csv", need)


def rows_of(text: str | None, where: str = "results.csv", need: tuple[str, ...] = ("status", "order")) -> list[dict]:
    """results.csv's text as its rows (none for no text); a UserError naming ``where`` for a file the search did
    not write so: another table (without the columns ``need``), or one cut short or edited (a KeyError, or a
    row read as half a trial)."""
    if not text:
        return []
    reader = csv.DictReader(io.StringIO(text))
    missing = [k for k in need if k not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{where}: no {', '.join(missing)} column (header: {', '.join(reader.fieldnames or [])[:200]}): "
                        "not the results.csv `itt search` writes; restore it")
    rows = list(reader)
    for i, row in enumerate(rows, 2):
        if None in row or None in row.values():  # (DictReader: more fields than the header, or fewer)
            more = "more" if None in row else "fewer"
            raise UserError(f"{where}: line {i} (trial {row.get('trial_id')}) has {more} fields than the header: "
                            "cut short or edited? restore it")
    return rows


def finite(v) -> float | None:
    """A results.csv cell as a finite float, else None (empty, text, nan, inf)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def row_hparams(row: dict) -> dict:
    """A results.csv row's hyperparameters: its set ``hp:<key>`` cells, as written."""
    return {k[3:]: v for k, v in row.items() if k.startswith("hp:") and v not in ("", None)}


def summary(rows: list[dict]) -> tuple[dict[str, float], dict[str, str]]:
    """The parent run's figures: trial counts, the best trial's scores; tags naming the best order."""
    count = lambda s: sum(1 for r in rows if r.get("status") == s)  # noqa: E731
    m = {"trials": len(rows), "trials_completed": count(Outcome.COMPLETED), "trials_stopped": count(Outcome.STOPPED),
         "trials_errored": count(Outcome.ERRORED)}
    done = [r for r in rows if r.get("status") == Outcome.COMPLETED and finite(r.get("score")) is not None]
    tags = {}
    if done:
        best = max(done, key=lambda r: finite(r["score"]))
        m["best_score"] = finite(best["score"])
        for col in ("test_mean", "test_std", "test_worst", "test_transfer_gap", "dev_mean", "perturbation_score"):
            if finite(best.get(col)) is not None:
                m[f"best_{col}"] = finite(best[col])
        tags = {"best_order": best.get("order") or "F", "best_trial_id": best["trial_id"]}
    return m, tags


def best_with_checkpoints(st: Storage, rows: list[dict], k: int, seeds: list[int]) -> list[dict]:
    """The best ``k`` distinct configurations whose trial saved checkpoints (a replay has none: its
    original is taken instead)."""
    done = [r for r in rows if r.get("status") == Outcome.COMPLETED and finite(r.get("score")) is not None]
    seen, out = set(), []
    for r in sorted(done, key=lambda r: -finite(r["score"])):
        key = (r.get("order"), tuple(sorted((c, r[c]) for c in r if c.startswith("hp:"))))
        if key in seen or len(out) >= k:
            continue
        if all(st.exists("trials", r["trial_id"], f"seed{s}", "checkpoint", "config.json") for s in seeds):
            seen.add(key)
            out.append(r)
    return out


def _log_checkpoint(ml: _Mlflow, st: Storage, run_id: str, trial_id: str, seeds: list[int]) -> None:
    """``trials/<id>/seed<S>/checkpoint/`` -> the child run's artifacts ``checkpoint/seed<S>/``."""
    for s in seeds:
        rel = ("trials", trial_id, f"seed{s}", "checkpoint")
        if not st.remote:
            ml.client.log_artifacts(run_id, st.path(*rel), artifact_path=f"checkpoint/seed{s}")
            continue
        import pyarrow.fs as pafs

        tmp = Path(tempfile.mkdtemp(prefix="itt-ckpt-"))
        (tmp / "checkpoint").mkdir()  # pyarrow's local filesystem does not create it
        try:
            pafs.copy_files(st.path(*rel), str(tmp / "checkpoint"), source_filesystem=st.fs,
                            destination_filesystem=pafs.LocalFileSystem())
            ml.client.log_artifacts(run_id, str(tmp / "checkpoint"), artifact_path=f"checkpoint/seed{s}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


_USERINFO = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^/\s:@]*):[^@\s/]*@")


def redact(text: str) -> str:
    """URLs with their password masked (``postgresql://user:***@host/db``): what MLflow and the console get."""
    return _USERINFO.sub(r"\1:***@", text)


def _log_text(ml: _Mlflow, run_id: str, text: str | None, name: str) -> None:
    if text is not None:
        ml.client.log_text(run_id, redact(text), name)


def finish_parent(ml: _Mlflow, st: Storage, parent_id: str, search_id: str, meta: dict, *, status: str,
                  best_k: int) -> None:
    """Summary metrics, results.csv and the best K checkpoints on the parent run, then end it."""
    from mlflow.entities import RunTag

    rows = read_rows(st)
    figures, tags = summary(rows)
    ml.client.log_batch(parent_id, metrics=_changed(figures, ml.client.get_run(parent_id).data.metrics, int(time.time() * 1000)),
                        tags=[RunTag(k, v) for k, v in tags.items()])
    _log_text(ml, parent_id, st.read_text("results.csv"), "results.csv")
    _log_recommendation(ml, parent_id, st.read_text("summary.json"))
    _log_front(ml, parent_id, search_id, rows)
    seeds = meta.get("seeds") or []
    best = best_with_checkpoints(st, rows, best_k, seeds) if best_k and seeds else []
    for rank, r in enumerate(best, 1):
        run = ml._find(f"tags.trial_id = '{r['trial_id']}' and tags.search_id = '{search_id}'")
        if run is None:
            continue
        if run.data.tags.get("checkpoint_logged") != "true":
            _log_checkpoint(ml, st, run.info.run_id, r["trial_id"], seeds)
        ml.client.log_batch(run.info.run_id, tags=[RunTag("checkpoint_logged", "true"), RunTag("best_rank", str(rank))])
    if best:
        ml.client.set_tag(parent_id, "best_checkpoints", ",".join(r["trial_id"] for r in best))
    ml.client.set_terminated(parent_id, status=status)


def _log_front(ml: _Mlflow, parent_id: str, search_id: str, rows: list[dict]) -> None:
    """A multi-objective search's Pareto front (results.csv's ``pareto`` column): tag ``pareto=true`` on
    the child runs on it (``false`` on the other completed ones, so a resume that moves the front
    leaves no stale tag); on the parent run the tag ``pareto_front`` (its orders, ';'-joined), the
    metric ``pareto_size`` and the artifact ``pareto_front.json`` (orders with every objective)."""
    from mlflow.entities import Metric, RunTag

    from search.pareto import PARETO_COLUMN

    if not rows or PARETO_COLUMN not in rows[0]:
        return
    marked = {r["trial_id"]: r[PARETO_COLUMN] for r in rows if r.get(PARETO_COLUMN) in ("true", "false")}
    front = [r for r in rows if r.get(PARETO_COLUMN) == "true"]
    objectives = [c for c in rows[0] if c.startswith("objective_")]
    runs = ml.client.search_runs([ml.exp_id], filter_string=f"tags.search_id = '{search_id}' and tags.itt_role = 'trial'",
                                 max_results=50_000)
    for run in runs:
        tid = run.data.tags.get("trial_id")
        if tid in marked and run.data.tags.get(PARETO_COLUMN) != marked[tid]:
            ml.client.set_tag(run.info.run_id, PARETO_COLUMN, marked[tid])
    orders = list(dict.fromkeys(r.get("order") or "F" for r in front))
    ml.client.log_batch(parent_id, metrics=[Metric("pareto_size", float(len(orders)), int(time.time() * 1000), 0)],
                        tags=[RunTag("pareto_front", "; ".join(orders)[:5000])])
    doc = [{"order": r.get("order") or "", "trial_id": r["trial_id"],
            **{c[len("objective_"):]: finite(r.get(c)) for c in objectives}} for r in front]
    ml.client.log_text(parent_id, json.dumps(doc, indent=1), "pareto_front.json")


def _changed(figures: dict, have: dict, now: int) -> list:
    """``figures`` as metrics at step 0, less those a run already holds at the same value: a resume, a second
    ``itt mlflow-sync`` or ``itt report`` adds no second point to a figure that did not change."""
    from mlflow.entities import Metric

    return [Metric(k, float(v), now, 0) for k, v in figures.items() if have.get(k) != float(v)]


def _log_recommendation(ml: _Mlflow, run_id: str, text: str | None) -> None:
    """summary.json on the parent run, and the searcher's recommended order where it has one: tag
    ``recommended_order``, metrics ``recommended_mean/_lo/_hi`` (posterior mean and 95% interval) and
    ``unfinished_p_better``/``unfinished_expected_gain`` (could an order not finished beat it?); tag
    ``stopped_itself_after`` (finished trials) where ``search.stop`` ended the search; metrics
    ``searcher_seconds`` and ``searcher_median_proposal_seconds`` (the searcher's own time)."""
    import json

    from mlflow.entities import RunTag

    if not text:
        return
    _log_text(ml, run_id, text, "summary.json")
    summary = json.loads(text)
    if summary.get("stopped_itself"):  # search.stop ended it: after how many finished trials
        ml.client.set_tag(run_id, "stopped_itself_after", str(summary["stopped_itself"]["finished"]))
    elif "stopped_itself_after" in ml.client.get_run(run_id).data.tags:  # `itt resume --more` went past the rule
        ml.client.delete_tag(run_id, "stopped_itself_after")
    rec = summary.get("recommended")
    figures = {**(recommendation_figures(rec) if rec else {}), **searcher_time_figures(summary.get("searcher_time"))}
    if not figures and not rec:
        return
    now = int(time.time() * 1000)
    ml.client.log_batch(run_id, metrics=_changed(figures, ml.client.get_run(run_id).data.metrics, now),
                        tags=[RunTag("recommended_order", rec["order"] or "F")] if rec else [])


def searcher_time_figures(t: dict | None) -> dict[str, float]:
    """The parent run's metrics of summary.json's ``searcher_time`` (the searcher's own seconds on the driver)."""
    if not t or not t.get("proposals"):
        return {}
    return {"searcher_seconds": t["seconds"],
            "searcher_median_proposal_seconds": t["median_proposal_seconds"]}


def recommendation_figures(rec: dict) -> dict[str, float]:
    """The parent run's metrics of summary.json's ``recommended``."""
    figures = {f"recommended_{k}": rec[k] for k in ("mean", "lo", "hi") if rec.get(k) is not None}
    u = rec.get("unexplored") or {}
    figures.update({f"unfinished_{k}": u[k] for k in ("p_better", "expected_gain") if u.get(k) is not None})
    if rec.get("positions"):  # order_bo's evidence weight of its GP that also sees positions from the start
        figures["from_start_weight"] = rec["positions"]["from_start"]
    return figures


def tracked_files(scfg, chain, n_orders: int) -> dict[str, str]:
    """The search's config and space as ``tracking/`` keeps them (config.yaml, search_space.json) and the
    parent run logs them."""
    import yaml

    config = {**chain.model_dump(mode="json"), "search": scfg.model_dump(mode="json")}
    return {"config.yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
            "search_space.json": json.dumps(_search_description(scfg, n_orders), indent=2)}


def _search_description(scfg, n_orders: int) -> dict:
    return {"candidates": list(scfg.candidates), "lengths": scfg.lengths, "include": list(scfg.include),
            "before": [list(p) for p in scfg.before], "last": scfg.last, "orders": n_orders,
            "hparams": {k: v.model_dump(exclude_none=True, exclude_defaults=True) for k, v in scfg.hparams.items()},
            "searcher": scfg.searcher, "num_samples": scfg.num_samples,
            "metric": scfg.metric if isinstance(scfg.metric, str) else ",".join(scfg.metric),
            "scheduler": scfg.scheduler.model_dump(), "probe_steps": scfg.probe_steps,
            "simulated": scfg.simulate is not None, "prior": scfg.prior, "prior_from": scfg.prior_from}


def _parent_params(desc: dict, meta: dict) -> dict[str, str]:
    p = {"candidates": ",".join(desc["candidates"]), "lengths": ",".join(map(str, desc["lengths"])),
         "orders": str(desc["orders"]), "searcher": desc["searcher"],
         "metric": desc["metric"], "scheduler": desc["scheduler"]["type"], "probe_steps": str(desc["probe_steps"]),
         "seeds": ",".join(map(str, meta.get("seeds") or [])), "target": meta.get("target", ""),
         "languages": ",".join(meta.get("languages") or []), "hparams": ",".join(desc["hparams"]) or "-"}
    if desc["num_samples"]:
        p["num_samples"] = str(desc["num_samples"])
    for k in ("include", "before", "last"):
        if desc[k]:
            p[k] = json.dumps(desc[k])
    if desc.get("prior", "none") != "none":
        p["prior"] = desc["prior"]
    if desc.get("prior_from"):
        src = desc["prior_from"]  # the earlier searches whose scores are the prior (one string before lists)
        p["prior_from"] = src if isinstance(src, str) else ",".join(src)
    return p


def _open_parent(ml: _Mlflow, st: Storage, meta: dict) -> str:
    from mlflow.entities import Param

    desc = st.read_json("tracking", "search_space.json", default={})
    note = (f"Order search **{meta['name']}** over {desc.get('orders', '?')} orders of "
            f"{', '.join(desc.get('candidates', []))} (lengths {desc.get('lengths')}); searcher {desc.get('searcher')}, "
            f"scheduler {desc.get('scheduler', {}).get('type')}. Experiment directory: `{meta['experiment_dir']}`.")
    run = ml.parent(meta["search_id"], meta["name"], {"experiment_dir": meta["experiment_dir"],
                                                      "mlflow.note.content": note})
    have = run.data.params
    if run.data.tags.get("experiment_dir", meta["experiment_dir"]) != meta["experiment_dir"]:
        ml.client.set_tag(run.info.run_id, "experiment_dir", meta["experiment_dir"])  # the experiment moved
    # (masked: search.prior_from may name an earlier search by a URI with its store's key, s3://KEY:SECRET@bucket/x)
    params = [Param(k, redact(v)) for k, v in _parent_params(desc, meta).items() if k not in have] if desc else []
    if params:
        ml.client.log_batch(run.info.run_id, params=params)
    if desc.get("num_samples") and have.get("num_samples", str(desc["num_samples"])) != str(desc["num_samples"]):
        # `itt resume --more`: a param cannot change, so the trial count the search now runs to is a tag
        ml.client.set_tag(run.info.run_id, "num_samples_now", str(desc["num_samples"]))
    if "config.yaml" not in {a.path for a in ml.client.list_artifacts(run.info.run_id)}:
        _log_text(ml, run.info.run_id, st.read_text("tracking", "config.yaml"), "config.yaml")
        _log_text(ml, run.info.run_id, st.read_text("tracking", "search_space.json"), "search_space.json")
    return run.info.run_id


# ------------------------------------------------------------------ the live tracker
def _keep_earlier_run(rec: dict) -> None:
    """A trial started again (``itt resume`` after the driver stopped, or an errored trial retried):
    the time its earlier run took, to its end or its last report, still counts in its run time
    (``earlier_seconds``), and ``first_started`` keeps when it first started."""
    if rec.get("started") is None:
        return
    end = rec.get("ended") or (rec["reports"][-1]["time"] if rec.get("reports") else None)
    if end is not None and end > rec["started"]:
        rec["earlier_seconds"] = rec.get("earlier_seconds", 0.0) + (end - rec["started"])
    rec.setdefault("first_started", rec["started"])


class Tracker(Callback):
    """Ray Tune callback (driver side): the ``tracking/`` log always, MLflow runs when enabled.

    Build it with :meth:`create` before Ray starts (that checks the store); runs open when Tune calls
    :meth:`setup`; :meth:`close` (from the runner after the fit and its summary, or on an exception; from
    ``on_experiment_end`` when no runner manages it) ends every run, also on Ctrl-C."""

    def __init__(self, *, st: Storage, meta: dict, files: dict[str, str], uri: str | None, client, best_k: int,
                 log=echo):
        self.st, self.meta, self.files, self.uri, self.best_k, self.log = st, meta, files, uri, best_k, log
        self.client = client
        self.ml: _Mlflow | None = None
        self.parent_id: str | None = None
        self.records: dict[str, dict] = {}
        self.runs: dict[str, tuple[str, int]] = {}  # trial id -> (run id, reports logged)
        self.skip: dict[str, int] = {}  # trial id -> the last step its run holds from before a restart
        self.warned = False
        self.closed = False
        self.managed = False  # the runner closes the runs (after summary.json); else on_experiment_end does
        self.made_store: Path | None = None  # a sqlite store the store check created (removed_if_refused)

    @classmethod
    def create(cls, *, st: Storage, scfg, chain, name: str, n_orders: int, languages: list[str], target: str,
               metric: str | None = None, uri: str | None = None, log=echo) -> Tracker:
        """Checks the MLflow store when tracking is on (a UserError before any Ray work when it fails)."""
        tcfg = scfg.tracking
        resolved = resolve_uri(uri, tcfg.tracking_uri) if tcfg.enabled else None
        db = _sqlite_path(resolved) if resolved else None
        new_db = db is not None and not db.exists()
        try:
            client = connect(resolved) if resolved else None
            if client is not None:
                check_store(client, resolved, tcfg.experiment or name)
        except BaseException:  # (also Ctrl-C while MLflow creates its tables: a half-made store fails every later search)
            if new_db:  # the store check made it: nothing stays behind
                db.unlink(missing_ok=True)
            raise
        seeds = list(scfg.seeds or chain.seeds)
        meta = {"name": name, "experiment": tcfg.experiment or name, "tracking_uri": resolved, "seeds": seeds,
                "max_length": max(scfg.lengths), "target": target, "metric": metric, "languages": languages,
                "best_k": tcfg.best_k, "experiment_dir": st.display}
        if scfg.metric == "xtreme":  # the XTREME average's tasks: the target's and eval.also's columns
            meta["xtreme_tasks"] = [target, *chain.eval.also]
        tracker = cls(st=st, meta=meta, files=tracked_files(scfg, chain, n_orders), uri=resolved, client=client,
                      best_k=tcfg.best_k, log=log)
        tracker.made_store = db if new_db else None
        return tracker

    @contextmanager
    def removed_if_refused(self):
        """A search refused after the store check (its resources, its seed points) leaves no store behind:
        the sqlite file the check created goes again, while no run is in it (another search may use it)."""
        try:
            yield
        except UserError:
            db = self.made_store
            if db is not None and self.client is not None and not self.client.search_runs(
                    [e.experiment_id for e in self.client.search_experiments()], max_results=1):
                db.unlink(missing_ok=True)
            raise

    def __getstate__(self):
        """Tune pickles its callbacks with the experiment: the client (sockets, locks) stays behind, and
        a Tuner restored without the runner closes the runs itself (``managed`` off)."""
        return {**self.__dict__, "client": None, "ml": None, "managed": False}

    # guarded MLflow calls ------------------------------------------------
    def _warn(self, e: BaseException) -> None:
        self.ml = None
        if not self.warned:
            self.warned = True
            self.log(f"warning: MLflow at {redact(self.uri)} failed ({error_line(e)}); tracking stops for this search. "
                     f"Results stay in {self.st.display}; backfill with `itt mlflow-sync {self.st.display}`")

    def _mlflow(self, fn, *args, **kw):
        """``fn(*args)`` while MLflow works; the first failure (the store went away) turns tracking off
        with one warning, and the search goes on."""
        if self.ml is None:
            return None
        try:
            return fn(*args, **kw)
        except Exception as e:
            self._warn(e)
            return None

    # Tune hooks ----------------------------------------------------------
    def setup(self, **info):
        prev = self.st.read_json("tracking", "search.json")
        # a restored search keeps its id: its MLflow runs are found again, not duplicated
        self.meta["search_id"] = prev["search_id"] if prev else uuid.uuid4().hex
        self.st.write_text(json.dumps(self.meta, indent=2), "tracking", "search.json")
        for fname, text in self.files.items():
            self.st.write_text(text, "tracking", fname)
        self.closed, self.runs, self.records, self.skip = False, {}, {}, {}
        if self.client is None and self.uri:  # unpickled by Tuner.restore: connect again
            try:
                self.client = connect(self.uri)
            except UserError as e:
                self._warn(e)
        if self.client is not None:
            db = _sqlite_path(self.uri)
            try:
                self.ml = _Mlflow(self.client, self.meta["experiment"], db.parent / "mlruns" if db else None)
                self.parent_id = _open_parent(self.ml, self.st, self.meta)
                self.ml.show_trials(self.meta)
            except Exception as e:
                self._warn(e)

    def _record(self, trial) -> dict:
        tid = trial.trial_id
        if tid not in self.records:
            from search.trial import split_config

            prev = self.st.read_text("tracking", "trials", f"{tid}.json")
            if prev:
                self.records[tid] = json.loads(prev)
            else:
                order, hp = split_config(trial.config, self._space())
                self.records[tid] = {"trial_id": tid, "order": order, "hparams": hp, "seeds": self.meta["seeds"],
                                     "run_name": run_name(order, hp), "status": Outcome.RUNNING,
                                     "stages_completed": 0, "replayed": False, "reports": []}
        return self.records[tid]

    def _space(self):
        if not hasattr(self, "_space_cache"):
            from search.space import OrderSpace

            d = json.loads(self.files["search_space.json"])
            self._space_cache = OrderSpace(candidates=d["candidates"], lengths=d["lengths"], include=d["include"],
                                           before=[tuple(p) for p in d["before"]], last=d["last"])
        return self._space_cache

    def _save(self, rec: dict, *, between: bool = False) -> None:
        """Write the trial's record; ``between`` (a report inside a trial): at most every ``SAVE_GAP`` s
        per trial (a record is rewritten whole; a resumed search restarts an unfinished trial's reports)."""
        now = time.monotonic()
        if between and now - rec.get("_saved", 0.0) < SAVE_GAP:
            return
        rec["_saved"] = now
        self.st.write_text(json.dumps({k: v for k, v in rec.items() if k != "_saved"}), "tracking", "trials",
                           f"{rec['trial_id']}.json")

    def _run(self, rec: dict, *, reopen: bool = False) -> tuple[str, int] | None:
        """(run id, reports logged) of the trial's child run, found or created on first use."""
        tid = rec["trial_id"]
        if self.ml is not None and (tid not in self.runs or reopen):
            params = trial_params(rec["order"], rec["hparams"], rec["seeds"], self.meta["max_length"])
            got = self._mlflow(self.ml.child, self.parent_id, self.meta["search_id"], tid, rec["run_name"], params,
                               reopen=reopen)
            if got is not None:
                self.runs[tid] = got
        return self.runs.get(tid) if self.ml is not None else None

    def _push(self, rec: dict) -> None:
        run = self._run(rec)
        if run is None or len(rec["reports"]) <= run[1]:
            return
        self._mlflow(self.ml.log_reports, run[0], rec["reports"], run[1], self.skip.get(rec["trial_id"], 0))
        if self.ml is not None:
            self.runs[rec["trial_id"]] = (run[0], len(rec["reports"]))

    def on_trial_start(self, iteration, trials, trial, **info):
        rec = self._record(trial)
        _keep_earlier_run(rec)
        restarted = rec["status"] != Outcome.RUNNING or bool(rec["reports"])
        if restarted:  # a resumed search runs the trial again from its start
            rec.update(status=Outcome.RUNNING, stages_completed=0, reports=[], final=False)
        rec["started"] = time.time()  # with "ended": the trial's run time (the report's compute section)
        rec.pop("ended", None)
        self._save(rec)
        run = self._run(rec, reopen=True)
        if run is not None and restarted:  # the steps its earlier run logged are not logged a second time
            hist = self._mlflow(self.ml.client.get_metric_history, run[0], "objective") or []
            self.skip[rec["trial_id"]] = max((h.step for h in hist), default=0)
        if run is not None and run[1]:  # its reports start over (MLflow keeps the earlier points)
            self._mlflow(self.ml.client.set_tag, run[0], "reports_logged", "0")
            self.runs[rec["trial_id"]] = (run[0], 0)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        rec = self._record(trial)
        step = int(result.get("step", 0))
        if result.get("final"):
            rec["final"] = True
        else:
            rec["stages_completed"] = max(rec["stages_completed"], step)
        if result.get("replayed"):
            rec["replayed"] = True
        rec["reports"].append({"step": step, "time": time.time(), "metrics": report_metrics(result, self.meta.get("metric"))})
        self._save(rec, between=True)
        self._push(rec)

    def on_trial_complete(self, iteration, trials, trial, **info):
        rec = self._record(trial)
        self._end(rec, Outcome.COMPLETED if rec.get("final") else Outcome.STOPPED)

    def on_trial_error(self, iteration, trials, trial, **info):
        rec = self._record(trial)
        from search.results import error_line

        rec["error"] = error_line(getattr(trial, "error_file", None)) or None  # (trial.get_error() reads the storage copy: not there yet)
        self._end(rec, Outcome.ERRORED)

    def _end(self, rec: dict, status: str) -> None:
        rec["status"] = status
        rec["ended"] = time.time()
        self._save(rec)
        self._push(rec)
        run = self._run(rec)
        if run is not None:
            self._mlflow(self.ml.end, run[0], Outcome.RUN_STATUS[status], end_tags(rec))

    # the end of the search ---------------------------------------------------------
    def on_experiment_end(self, trials, **info):
        self._drop_lost({t.trial_id for t in trials})
        # Tune ends a fit here, also after Ctrl-C (SIGINT) and after a restore. Under the runner (``managed``)
        # the runs are closed once it has flushed results.csv and written summary.json, which go to the parent
        if not getattr(self, "managed", False):
            self.close()

    def _drop_lost(self, known: set[str]) -> None:
        """Trials that started after Ray Tune's last snapshot of a killed search are unknown to the
        restored Tuner, which runs others in their place: delete their MLflow runs and records, so
        that no run stays RUNNING and every run is a trial of the search (as in results.csv)."""
        try:
            names = self.st.listdir("tracking", "trials")
        except Exception:
            return
        for name in names:
            tid = name[:-len(".json")]
            if not name.endswith(".json") or tid in known or tid in self.records:
                continue
            if self.ml is not None:
                run = self._mlflow(self.ml._find, f"tags.trial_id = '{tid}' and tags.search_id = '{self.meta['search_id']}'")
                if run is not None:
                    self._mlflow(self.ml.end, run.info.run_id, "KILLED", {"outcome": "lost: replaced after a resume"})
                    self._mlflow(self.ml.client.delete_run, run.info.run_id)
            try:
                self.st.delete("tracking", "trials", name)
            except Exception:
                pass

    def close(self, *, interrupted: bool = False) -> None:
        """End every run still open (KILLED when the search did not finish), log the summary,
        results.csv and the best K checkpoints to the parent run. Once per fit; never raises."""
        if self.closed:
            return
        self.closed = True
        open_ = [r for r in self.records.values() if r["status"] == Outcome.RUNNING]
        interrupted = interrupted or bool(open_)
        for rec in open_:
            rec["status"] = Outcome.INTERRUPTED
            try:
                self._save(rec)
            except Exception:
                pass
            run = self._run(rec)
            if run is not None:
                self._mlflow(self.ml.end, run[0], "KILLED", end_tags(rec))
        if self.ml is not None and self.parent_id is not None:
            self._mlflow(finish_parent, self.ml, self.st, self.parent_id, self.meta["search_id"], self.meta,
                         status="KILLED" if interrupted else "FINISHED", best_k=self.best_k)
            if self.ml is not None:
                self.log(f"MLflow: experiment '{self.meta['experiment']}', parent run {self.parent_id} in {redact(self.uri)}")
                link = runs_url(server_url(redact(self.uri)), self.ml.exp_id, view_key(self.meta["search_id"]))
                self.log(f"compare the trials: {ui_hint(self.uri)}{link}")


def end_tags(rec: dict) -> dict:
    tags = {"status": rec["status"], "outcome": outcome_text(rec["status"], rec.get("stages_completed", 0)),
            "stages_completed": rec.get("stages_completed", 0)}
    if rec.get("replayed"):
        tags["replayed"] = "true"
    if rec.get("error"):
        tags["error"] = rec["error"][:500]
    return tags


# ------------------------------------------------------------------ itt mlflow-sync
def storage_of(exp_dir: str, label: str = "--storage") -> Storage:
    """An experiment directory (a folder or a store URI with its query) -> Storage(root, name); ``label``:
    what its error lines call it."""
    if is_uri(exp_dir):
        base, _, query = exp_dir.partition("?")
        base = base.rstrip("/")
        root, _, name = base.rpartition("/")
        return Storage(root + (f"?{query}" if query else ""), name, label)
    p = Path(local_path(exp_dir, label)).resolve()
    return Storage(str(p.parent), p.name, label)


def sync(exp_dir: str, uri: str | None = None, log=print) -> dict:
    """Backfill MLflow from an experiment directory: every trial of results.csv gets its child run
    (found by trial id, created when missing), the reports MLflow lacks, its final status; the parent
    gets its summary, results.csv and the best K checkpoints. Running it twice changes nothing."""
    st = storage_of(exp_dir)
    results = st.read_text("results.csv")
    if results is None:  # (missing, or a folder of that name: nothing to sync)
        raise UserError(f"{exp_dir}: no results.csv file here (not an `itt search` experiment directory)")
    meta = st.read_json("tracking", "search.json", default={})
    records_kept = bool(meta)
    if not meta:  # an experiment from before tracking/ existed: what results.csv holds is enough
        meta = {"name": st.name, "experiment": st.name, "search_id": f"dir-{st.name}", "seeds": [],
                "max_length": 0, "best_k": 1, "experiment_dir": st.display}
    meta["experiment_dir"] = st.display
    # everything read from the experiment first: a damaged file is one error line before MLflow holds a
    # trace of it (a parent run left RUNNING, a store made for nothing)
    rows = rows_of(results, f"{st.display}/results.csv", TRIAL_COLUMNS)
    if not rows:  # (an empty file, or its header alone: a store made and a parent run opened for nothing)
        raise UserError(f"{st.display}/results.csv: no trial in it (nothing to sync)")
    records = {r["trial_id"]: st.read_json("tracking", "trials", f"{r['trial_id']}.json") for r in rows}
    target_uri = resolve_uri(uri, meta.get("tracking_uri"))
    client = connect(target_uri)
    db = _sqlite_path(target_uri)
    ml = _Mlflow(client, meta["experiment"], db.parent / "mlruns" if db else None)
    parent_id = _open_parent(ml, st, meta)
    ml.show_trials(meta)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    max_len = max([meta.get("max_length") or 0] + [int(r.get("order_length") or 0) for r in rows])
    for row in rows:
        tid = row["trial_id"]
        rec = records[tid] or _record_from_row(row, meta)
        status = row.get("status") or rec["status"]
        if status == Outcome.RUNNING:  # the driver stopped before the trial ended (a resume continues it)
            status = Outcome.INTERRUPTED
        existed = ml._find(f"tags.trial_id = '{tid}' and tags.search_id = '{meta['search_id']}'")
        params = trial_params(rec["order"], rec["hparams"], rec["seeds"], max_len)
        run_id, logged = ml.child(parent_id, meta["search_id"], tid, rec["run_name"], params, reopen=False)
        new_reports = len(rec["reports"]) > logged
        if new_reports:
            ml.log_reports(run_id, rec["reports"], logged)
        rec["status"] = status
        want = Outcome.RUN_STATUS.get(status, "KILLED")
        if existed is None:
            counts["created"] += 1
        elif new_reports or existed.info.status != want or existed.data.tags.get("status") != status:
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
            continue
        ml.end(run_id, want, end_tags(rec))
    finish_parent(ml, st, parent_id, meta["search_id"], meta,
                  status="FINISHED" if all(r.get("status") in Outcome.RUN_STATUS and r.get("status") != Outcome.RUNNING
                                           for r in rows) else "KILLED",
                  best_k=meta.get("best_k", 1))
    if records_kept and not meta.get("tracking_uri"):  # a search run with --no-tracking: `itt report` (and `itt
        # confirm`, `itt compare`) now find its runs in this store, as for a search tracked from its start
        st.write_text(json.dumps({**meta, "tracking_uri": target_uri}, indent=2), "tracking", "search.json")
    log(f"mlflow-sync: {len(rows)} trials -> experiment '{meta['experiment']}' in {redact(target_uri)}: "
        f"{counts['created']} runs created, {counts['updated']} updated, {counts['unchanged']} already complete")
    return {**counts, "parent_run_id": parent_id}


def _record_from_row(row: dict, meta: dict) -> dict:
    """A trial without a tracking/ log: params and final figures from its results.csv row."""
    order = order_tasks(row.get("order"))
    hp = row_hparams(row)
    skip = {"trial_id", "status", "order", "order_length", "stopped_early", "replayed", "stages_completed"}
    metrics = _live_names({k: finite(v) for k, v in row.items() if k not in skip and not k.startswith("hp:")
                           and finite(v) is not None}, meta)
    stages = int(row.get("stages_completed") or 0)
    return {"trial_id": row["trial_id"], "order": order, "hparams": hp, "seeds": meta.get("seeds") or [],
            "run_name": run_name(order, hp), "status": row.get("status"), "stages_completed": stages,
            "replayed": row.get("replayed") == "true",
            # the final at the search's common final step (SearchConfig.final_step), as the trial reported it
            "reports": [{"step": max(int(meta.get("max_length") or 0), len(order)) + 1, "time": time.time(),
                         "metrics": metrics}] if metrics else []}


def _live_names(figures: dict[str, float], meta: dict) -> dict[str, float]:
    """results.csv's columns under the names a tracked trial's final report logs (``en`` ->
    ``test_<metric>_en``, ``dev_mean`` -> ``dev_<metric>_mean``, ``xtreme_*`` -> ``test_xtreme_*``; ``objective``
    = ``score``), so that a run synced from its row fills the same columns of the runs page as the others."""
    m = meta.get("metric")
    if not m:  # (an experiment from before tracking/ existed: the metric's name is unknown)
        return figures
    langs = set(meta.get("languages") or [])
    out = {}
    for k, v in figures.items():
        if k in langs:
            out[f"test_{m}_{k}"] = v
        elif k == "dev_mean":
            out[f"dev_{m}_mean"] = v
        elif k.startswith("xtreme_"):
            out[f"test_{k}"] = v
        else:
            out[k] = v
            if k in {f"test_{f}" for f in SHORT_FIGURES}:
                out[f"test_{m}_{k[len('test_'):]}"] = v
    if "score" in out:
        out["objective"] = out["score"]
    return out


# ------------------------------------------------------------------ the runs page (MLflow 3.17's UI)
# Read from the UI bundle of mlflow 3.17 (server/js/build/static/js) and checked in headless Chromium
# (tests/test_tracking.py): the workspace comes from the URL's ``workflowType`` (else the browser's saved
# choice, GenAI by default, whose experiment page is an empty traces overview); an experiment's
# ``mlflow.experimentKind`` tag is what the UI infers its kind from; ``viewStateShareKey=K`` loads the
# runs page's view (search filter, sort, columns, which runs charts draw) from the experiment tag
# ``mlflow.sharedViewState.K``, as the UI's own "share view" does. Its filter keeps the search's trials
# only: without their parent run in the result, the child runs are listed flat instead of collapsed
# under it. (``runsExpanded`` is not taken from a shared view, so expanding the parent is no option.)
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
VIEW_TAG = "mlflow.sharedViewState."
LATEST_VIEW = "itt.view"  # the view of the latest search tracked in the experiment


def show_trials(client, experiment_id: str, meta: dict) -> None:
    """The tags that open the experiment on the runs page of this search's trials (see :func:`view_state`);
    set at every start and by ``itt report`` (a search from before a column was added gets it)."""
    key = view_key(meta["search_id"])
    state = view_state(meta["search_id"], meta.get("languages") or [], meta.get("metric"), meta.get("xtreme_tasks"),
                       int(meta.get("max_length") or 0))
    for k, v in ((EXPERIMENT_KIND, MODEL_TRAINING), (VIEW_TAG + key, json.dumps(state)), (LATEST_VIEW, key)):
        client.set_experiment_tag(experiment_id, k, v)


def view_key(search_id: str) -> str:
    return f"itt-{search_id[:12]}"


def view_state(search_id: str, languages: list[str], metric: str | None, xtreme_tasks: list[str] | None = None,
               max_length: int = 0) -> dict:
    """The runs page of one search: its trials (not the parent), best score first, with the columns a
    comparison needs (order, score, test mean, P(best) once `itt report` has run, worst language,
    transfer gap, outcome, length, the tokens training the order costs, per-language test scores; a search on the XTREME average: that average and
    each task's XTREME score instead of the target's figures), every run drawn in the charts (the
    UI's default draws the first 10 only), and the charts of :func:`order_charts` first in the chart view."""
    cols = ["params.`order`", "metrics.`score`", "metrics.`test_mean`", "metrics.`report_p_best`",
            "metrics.`test_worst`", "metrics.`test_transfer_gap`", "tags.`outcome`", "params.`order_length`",
            "metrics.`chain_tokens`"]
    if xtreme_tasks:
        cols[2:3] = ["metrics.`test_xtreme_average`"] + [f"metrics.`test_xtreme_{t}`" for t in xtreme_tasks[:12]]
    elif metric:
        cols += [f"metrics.`test_{metric}_{lang}`" for lang in languages[:12]]
    return {"searchFilter": f"tags.itt_role = 'trial' and tags.search_id = '{search_id}'",
            "orderByKey": "metrics.`score`", "orderByAsc": False,
            "selectedColumns": cols, "runsHiddenMode": "SHOW_ALL",
            **order_charts(search_id, max_length, robust=not xtreme_tasks)}


CHART_SECTION = "Orders (itt)"
BEST_BARS = 20  # the bar chart's orders: the best ones (the runs page sorts by score)


def order_charts(search_id: str, max_length: int, robust: bool = True) -> dict:
    """The chart view's first section (MLflow 3.17's ``compareRunCharts``/``compareRunSections``, as its
    UI serialises them): the best orders' scores as bars; a parallel-coordinates chart from the task at
    each position (``pos_1``.. ``pos_<longest>``, '-' past an order's end) to the score, where an order's
    path shows which task at which position goes with high scores; each trial's objective after each
    stage (the probes ASHA ranks, then the final); and, with per-language test scores, each order's mean
    against its worst language (accuracy against robustness). (A shared view's charts are the page's
    charts: MLflow adds no per-metric ones of its own to them.)"""
    sid = search_id[:12]
    section = f"itt-{sid}-orders"

    def card(name: str, kind: str, **fields) -> dict:
        return {"uuid": f"itt-{sid}-{name}", "type": kind, "runsCountToCompare": BEST_BARS, "metricSectionId": section,
                "deleted": False, "isGenerated": False, **fields}

    charts = [card("score", "BAR", metricKey="score",
                   selectedMetricKeys=None, datasetName=None, dataAccessKey=None)]
    if max_length:
        charts.append(card("positions", "PARALLEL", selectedParams=[f"pos_{i}" for i in range(1, max_length + 1)], selectedMetrics=["score"],
                           showAllRuns=True, runsCountToCompare=10_000))
    charts.append(card("probes", "LINE", metricKey="objective", selectedMetricKeys=["objective"], lineSmoothness=0, xAxisScaleType="linear",
                       scaleType="linear", range={"xMin": None, "xMax": None, "yMin": None, "yMax": None},
                       xAxisKey="step", selectedXAxisMetricKey="", yAxisKey="metric", yAxisExpressions=[],
                       ignoreOutliers=False, useGlobalXaxisKey=False, useGlobalLineSmoothing=False,
                       runsCountToCompare=10_000))
    if robust:
        charts.append(card("robust", "SCATTER", xaxis={"key": "test_mean", "type": "METRIC"}, yaxis={"key": "test_worst", "type": "METRIC"},
                           runsCountToCompare=10_000))
    return {"compareRunCharts": charts,
            "compareRunSections": [{"uuid": section, "name": CHART_SECTION, "display": True, "isReordered": False,
                                    "deleted": False, "isGenerated": False}]}


def server_url(uri: str, *, host: str = "127.0.0.1", port: int = 5000) -> str:
    """Where the UI of a store is: the server itself, or what ``itt ui`` starts for a sqlite store."""
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else f"http://{host}:{port}"


def ui_hint(uri: str) -> str:
    """What opens a store's runs page before its link: nothing for a server; for a database, ``itt ui`` with the
    store named when it is not the one ``itt ui`` opens by default here ($MLFLOW_TRACKING_URI, else mlflow.db in
    the working directory): a bare ``itt ui`` opened another store, or none ("no MLflow store at ...")."""
    if uri.startswith(("http://", "https://")):
        return ""
    flag = "" if uri == resolve_uri() else f" --tracking-uri {shlex.quote(redact(uri))}"
    return f"`itt ui{flag}`, then open "


def runs_url(base: str, experiment_id: str, key: str | None = None) -> str:
    """The experiment's runs page in the Model training workspace (with the search's view)."""
    q = (f"viewStateShareKey={key}&" if key else "") + "workflowType=machine_learning"
    return f"{base}/#/experiments/{experiment_id}/runs?{q}"


def search_links(client, base: str, limit: int = 20) -> list[tuple[str, str]]:
    """(experiment name, runs-page link) of the experiments holding itt searches, newest first."""
    exps = client.search_experiments(max_results=1000, order_by=["last_update_time DESC"])
    return [(e.name, runs_url(base, e.experiment_id, e.tags[LATEST_VIEW])) for e in exps if LATEST_VIEW in e.tags][:limit]


# ------------------------------------------------------------------ itt ui
def ui_command(uri: str, *, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """``mlflow server`` on the search's store; a sqlite store serves its artifacts from beside the
    database (where the tracker put them)."""
    import sys

    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host, "--port", str(port),
           "--workers", "1"]
    db = _sqlite_path(uri)
    if db is not None:
        cmd += ["--default-artifact-root", (db.parent / "mlruns").as_uri()]
    return cmd


# ------------------------------------------------------------------ itt report
def log_report(st: Storage, meta: dict, folder: str | Path, metrics: dict[str, float], uri: str | None = None,
               per_trial: dict[str, dict[str, float]] | None = None) -> str:
    """The report's files as artifacts (``report/``) and its headline figures as metrics of the search's
    parent run (found by ``search_id``); ``per_trial`` (trial id -> metrics) on each trial's run. Never
    raises: returns one line saying what was done."""
    target = uri or meta.get("tracking_uri")
    if not target:
        return (f"MLflow: not logged (tracking was off for this search; `itt mlflow-sync {st.display}` creates its "
                "runs, then run `itt report` again, or pass --tracking-uri)")
    if not meta.get("search_id"):
        return "MLflow: not logged (the experiment keeps no tracking/search.json, so its parent run is unknown)"
    target = resolve_uri(target)
    db = _sqlite_path(target)
    if db is not None and not db.is_file():
        return f"MLflow: not logged (no MLflow store at {db})"
    try:
        client = connect(target)
        exp = client.get_experiment_by_name(meta.get("experiment") or meta.get("name") or st.name)
        runs = client.search_runs([exp.experiment_id], filter_string=f"tags.search_id = '{meta['search_id']}' and "
                                  "tags.itt_role = 'search'", max_results=1) if exp is not None else []
        if not runs:
            return (f"MLflow: not logged (no parent run of this search in {target}; `itt mlflow-sync {st.display}` "
                    "creates it)")
        run_id = runs[0].info.run_id
        client.log_artifacts(run_id, str(folder), artifact_path="report")
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=_changed(metrics, runs[0].data.metrics, now))
        trials = _log_per_trial(client, exp.experiment_id, meta["search_id"], per_trial or {}, now)
        if trials:  # the runs page's P(best) column
            show_trials(client, exp.experiment_id, meta)
        return (f"MLflow: report logged to parent run {run_id} (artifacts report/, {len(metrics)} metrics"
                + (f"; P(best) on {trials} trial runs" if trials else "") + f") in {redact(target)}")
    except Exception as e:  # the store went away, a permission problem, ...
        return f"MLflow: not logged ({error_line(e)})"


def _log_per_trial(client, experiment_id: str, search_id: str, per_trial: dict[str, dict[str, float]],
                   now: int) -> int:
    """Report figures on the trials' own runs (one query for all of them); how many runs got them."""
    if not per_trial:
        return 0
    runs = client.search_runs([experiment_id], filter_string=f"tags.search_id = '{search_id}' and "
                              "tags.itt_role = 'trial'", max_results=50_000)
    done = 0
    for run in runs:
        figures = per_trial.get(run.data.tags.get("trial_id"))
        if figures:
            new = _changed(figures, run.data.metrics, now)
            if new:
                client.log_batch(run.info.run_id, metrics=new)
            done += 1
    return done


def compare_view() -> dict:
    """The runs page of the ``compare`` experiment: one row per comparison, with its agreement figures."""
    return {"searchFilter": "tags.itt_role = 'compare'", "orderByKey": "attributes.start_time", "orderByAsc": False,
            "selectedColumns": ["params.`searches`", "params.`figure`", "metrics.`kendall_w`", "metrics.`kendall_w_p`",
                                "metrics.`shared_orders`"], "runsHiddenMode": "SHOW_ALL"}


def log_compare(folder: str | Path, *, key: str, name: str, params: dict[str, str], metrics: dict[str, float],
                note: str, uri: str) -> str:
    """A comparison of searches (``itt compare``) as one run of the MLflow experiment ``itt-compare``: its
    files as artifacts (``compare/``), its figures as metrics, its headline as the run's description.
    The same searches compared again (``key``) update that run instead of adding one. Never raises:
    returns one line saying what was done."""
    from mlflow.entities import Metric, Param, RunTag

    db = _sqlite_path(uri)
    try:
        client = connect(uri, hint="start the server, or pass another --tracking-uri or --no-mlflow")
        ml = _Mlflow(client, COMPARE_EXPERIMENT, db.parent / "mlruns" if db else None)
        view = COMPARE_EXPERIMENT  # the runs page's shared view: every comparison
        for k, v in ((EXPERIMENT_KIND, MODEL_TRAINING), (VIEW_TAG + view, json.dumps(compare_view())), (LATEST_VIEW, view)):
            client.set_experiment_tag(ml.exp_id, k, v)
        run = ml._find(f"tags.compare_key = '{key}'")
        if run is None:
            run_id = client.create_run(ml.exp_id, run_name=name, tags={"itt_role": "compare", "compare_key": key}).info.run_id
            client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in params.items()])
        else:
            run_id = run.info.run_id
        client.log_artifacts(run_id, str(folder), artifact_path="compare")
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                         tags=[RunTag("mlflow.note.content", note)])
        client.set_terminated(run_id, status="FINISHED")
        again = " (updated: these searches were compared before)" if run is not None else ""
        return (f"MLflow: comparison logged to run {run_id} of experiment '{COMPARE_EXPERIMENT}' (artifacts compare/, "
                f"{len(metrics)} metrics) in {redact(uri)}{again}; {ui_hint(uri)}"
                f"{runs_url(server_url(redact(uri)), ml.exp_id, view)}")
    except UserError as e:
        return f"MLflow: not logged ({e})"
    except Exception as e:  # the store went away, a permission problem, ...
        return f"MLflow: not logged ({error_line(e)})"
