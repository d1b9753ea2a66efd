"""``results.csv``: one row per trial, rewritten (atomically, throttled) as trials start, report and
end, and the console's line per finished trial; ``Status`` names the outcomes it writes."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from shlex import quote

from ray.tune import Callback

from search.config import SearchConfig
from search.pareto import MAX, PARETO_COLUMN, column, directions, lower_is_better, on_front
from search.pareto import front as pareto_front
from search.space import order_key
from search.storage import Storage, echo
from search.trial import NODE_KEY, release_train_resources, split_config


class Status:
    """Trial outcomes as written to results.csv."""

    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"  # by the scheduler (ASHA), before the final report
    ERRORED = "errored"


# ------------------------------------------------------------------ results.csv + progress
WRITE_GAP = 20  # results.csv: the pause after a rewrite, in multiples of its duration (at most ~5% of the driver's time)
MIN_GAP_S = 0.25  # ... and at least this long (a rewrite's fixed cost, a file replaced: at most 4 a second)


class ResultsWriter(Callback):
    """Keeps ``results.csv`` up to date and prints a progress line whenever a trial ends."""

    def __init__(self, storage: Storage, scfg: SearchConfig, metric: str, languages: list[str], log=echo,
                 seeds: list[int] | None = None):
        self.storage, self.scfg, self.metric, self.languages, self.log = storage, scfg, metric, languages, log
        self.seeds = list(seeds or [])  # the chain's seeds (trial folders hold seed<S>/ for each)
        self.space = scfg.space()
        self.objectives = list(getattr(scfg, "objectives", [scfg.metric]))  # (a writer pickled before issue 18)
        self.multi = len(self.objectives) > 1
        self.rows: dict[str, dict] = {}
        self.t0 = time.time()
        self.pending = 0  # trials Tune holds but has not started (at the last trial start or end)
        self._next_write, self._dirty = 0.0, False  # results.csv rewrites, throttled (see _write)
        self._reset_lines()

    # Tune hooks ----------------------------------------------------------
    def setup(self, **info):
        """Called when a fit starts. A restored search (``itt resume``) unpickles this callback as it
        was when the search began, without rows: the rows come back from ``results.csv`` instead (it
        is rewritten on every report, so it is newer than any Tune snapshot, also after a SIGKILL)."""
        self.t0 = time.time()
        self._next_write, self._dirty = 0.0, False  # an unpickled writer's clock was another process's
        self._reset_lines()
        from search.tracking import read_rows

        if not self.rows:
            for r in read_rows(self.storage):
                row = {k: (v if v != "" else None) for k, v in r.items()}
                for k in ("order_length", "stages_completed"):
                    row[k] = int(row[k] or 0)
                row["order"] = row["order"] or ""
                row["_restored"] = r.get("status")
                self.rows[r["trial_id"]] = row

    def on_trial_start(self, iteration, trials, trial, **info):
        self._forget_restarted(trials)
        row = self._row(trial)
        if row.get("_restored") == Status.COMPLETED:
            return  # finished before the driver stopped, after Tune's last snapshot: it replays, row stays
        if row["status"] != Status.RUNNING or row.get("stages_completed"):  # a retried or resumed trial starts
            # over (its worker died, or the driver did): its stages count again from 0, as its MLflow run's do
            row.update(status=Status.RUNNING, stopped_early="", score=None, stages_completed=0)
            for k in ("_final", "_last"):
                row.pop(k, None)
        row["_started"] = time.time()  # the live view's elapsed time (search/progress.py)
        self.pending = sum(1 for t in trials if t.status == "PENDING")
        self._write()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        row = self._row(trial)
        if row.get("_restored") == Status.COMPLETED:
            return
        done = int(row.get("order_length") or 0) if result.get("final") else int(result.get("step", 0))
        row["stages_completed"] = max(row.get("stages_completed") or 0, done)
        node = self._node_ip(result)
        if node:  # where the trial trains (a retry may move it)
            row["node_ip"] = node
        for k in ("stages_trained", "stages_from_cache", "cache_seconds_saved"):  # running counts (stage cache)
            if k in result:
                row[k] = result[k]
        if result.get("final"):
            row["_final"] = result
        row["_last"] = result
        self._write()

    def on_trial_complete(self, iteration, trials, trial, **info):
        release_train_resources(self.storage, trial.trial_id)
        row = self._row(trial)
        if row.get("_restored") == Status.COMPLETED:
            self._progress(trials, row)
            return
        final = row.get("_final")
        row["status"] = Status.COMPLETED if final else Status.STOPPED
        row["stopped_early"] = "false" if final else "true"
        if final:
            m = self.metric
            row["score"] = final.get("objective")
            for name in self.objectives if getattr(self, "multi", False) else []:  # each objective; `pareto`: on write
                row[column(name)] = final.get(column(name))
            for lang in self.languages:
                row[lang] = final.get(f"test_{m}_{lang}")
            for fig in ("mean", "std", "worst", "transfer_gap"):
                row[f"test_{fig}"] = final.get(f"test_{m}_{fig}")
            row["dev_mean"] = final.get(f"dev_{m}_mean")
            row["perturbation_score"] = final.get("perturbation_score")
            row["chain_tokens"] = final.get("chain_tokens")  # what training this order costs (per chain)
            # XTREME's per-task scores and their average (test split), when the target has them
            row.update({k[len("test_"):]: v for k, v in final.items() if k.startswith("test_xtreme_")})
            row["replayed"] = "true" if final.get("replayed") else "false"
        self._write()
        self._retain_checkpoints()
        self._progress(trials, row)

    def on_trial_error(self, iteration, trials, trial, **info):
        release_train_resources(self.storage, trial.trial_id)
        row = self._row(trial)
        row["status"], row["stopped_early"] = Status.ERRORED, "false"
        row["_error"] = error_line(trial.error_file)
        self._write()
        self._progress(trials, row)

    def on_trial_recover(self, iteration, trials, trial, **info):
        """A trial that failed and runs again (within search.max_failures): where it failed and why, in one
        line (Ray Tune's traceback is in its error.txt; TUNE_PRINT_ALL_TRIAL_ERRORS=1 prints it too)."""
        row = self._row(trial)
        cap = self.scfg.max_failures
        of = f"failure {trial.num_failures} of search.max_failures = {cap}" if cap >= 0 else f"failure {trial.num_failures}"
        node = f" on node {row['node_ip']}" if row.get("node_ip") else ""
        self.log(f"[{time.time() - self.t0:6.0f}s] trial {row['trial_id']} {row['order'] or 'F'}: failed{node} "
                 f"({error_line(trial.error_file, 200) or 'no error recorded'}); running it again"
                 f"{', its finished stages from the stage cache' if self.scfg.cache.enabled and not self.scfg.simulate else ''}"
                 f" ({of})")

    def on_experiment_end(self, trials, **info):
        """A trial that started after Ray Tune's last snapshot of a search whose driver was killed is
        unknown to the restored Tuner (which proposes a new trial in its place): drop its row."""
        self._forget_restarted(trials)
        known = {t.trial_id for t in trials}
        lost = [tid for tid in self.rows if tid not in known]
        for tid in lost:
            del self.rows[tid]
            self._keys = None  # (its columns may have been its own)
        if lost:
            self.log(f"{len(lost)} trial(s) started after Ray Tune's last snapshot before the driver stopped "
                     f"({', '.join(lost)}); Tune ran others in their place (their finished stages came from the stage cache)")
            self._dirty = True
        self.flush()
        if self.scfg.cache.enabled and not self.scfg.simulate:
            self.log(self.cache_line())

    # helpers ---------------------------------------------------------------
    def _forget_restarted(self, trials) -> None:
        """Rows read back from results.csv of errored trials Ray Tune started again under a new id (`itt resume
        --retry-errored`, the runner's restart: ``Trial.reset``, the same config): the restart has its own row,
        and the errored one is no trial of the search any more (not counted as errored, not 'lost')."""
        known = {t.trial_id for t in trials}
        old = {tid for tid, r in self.rows.items() if r.get("_restored") == Status.ERRORED and tid not in known}
        if not old:
            return
        restarts = {config_of(_config_columns(t.config, self.space)) for t in trials if t.trial_id not in self.rows
                    or not self.rows[t.trial_id].get("_restored")}
        for tid in old:
            if config_of(self.rows[tid]) in restarts:
                del self.rows[tid]
                self._keys, self._dirty = None, True

    def _node_ip(self, result: dict) -> str | None:
        """The address Ray registered the reporting node with (Tune's own ``node_ip`` is the address
        of the default route, the same for every node of a machine); nodes are looked up once each."""
        import ray

        nid = result.get(NODE_KEY)
        if not nid:
            return result.get("node_ip")
        self._nodes = getattr(self, "_nodes", {})
        if nid not in self._nodes:
            try:
                self._nodes.update({n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()})
            except Exception:
                pass
        return self._nodes.get(nid) or result.get("node_ip")

    def _retain_checkpoints(self) -> None:
        """Disk bound: final checkpoints only for the best K completed trials (K = keep_checkpoints,
        at least tracking.best_k, whose checkpoints go to MLflow at the end) and, with several
        objectives, the trials on the Pareto front; the rest are removed."""
        k = self.scfg.keep_checkpoints
        if k is None or self.scfg.simulate:
            return
        k = max(k, self.scfg.tracking.best_k if self.scfg.tracking.enabled else 0)
        self.front()  # a multi-objective search also keeps the front's checkpoints (an order off the front
        #              never comes back on it: the front only loses the orders newer ones dominate)
        done = sorted((r for r in self.rows.values() if r["status"] == Status.COMPLETED and r.get("score") is not None),
                      key=lambda r: -self._better(r))
        self.pruned = getattr(self, "pruned", set())
        for r in done[k:]:
            tid = r["trial_id"]
            if tid in self.pruned or on_front(r):
                continue
            self.pruned.add(tid)
            for seed in self.scfg.seeds or self.seeds:
                try:
                    self.storage.delete("trials", tid, f"seed{seed}", "checkpoint")
                except Exception as e:  # never let cleanup stop a search
                    self.log(f"warning: could not remove the checkpoint of trial {tid}: {e}")

    def _row(self, trial) -> dict:
        if trial.trial_id not in self.rows:
            self.rows[trial.trial_id] = {"trial_id": trial.trial_id, "status": Status.RUNNING, "stages_completed": 0,
                                         "stopped_early": "", "score": None, **_config_columns(trial.config, self.space)}
        self._stale.add(trial.trial_id)  # every hook changes its trial's row through here: its line is redone
        return self.rows[trial.trial_id]

    def columns(self) -> list[str]:
        keys = self._row_keys()
        mo = [*(column(n) for n in self.objectives), PARETO_COLUMN] if getattr(self, "multi", False) else []
        return (["trial_id", "status", "order", "order_length", "stages_completed", "stopped_early", "score", *mo]
                + sorted(k for k in keys if k.startswith("hp:"))
                + list(self.languages) + ["test_mean", "test_std", "test_worst", "test_transfer_gap", "dev_mean",
                                          "perturbation_score", "chain_tokens"]
                + sorted(k for k in keys if k.startswith("xtreme_")) + ["replayed"]
                + ["stages_trained", "stages_from_cache", "cache_seconds_saved", "node_ip"])

    def _row_keys(self) -> set[str]:
        """The rows' own columns (``hp:*``, ``xtreme_*``), kept up to date from the rows changed since."""
        if self._keys is None:
            self._keys = {k for r in self.rows.values() for k in r if k.startswith(("hp:", "xtreme_"))}
        for tid in self._stale:
            self._keys.update(k for k in self.rows.get(tid, ()) if k.startswith(("hp:", "xtreme_")))
        return self._keys

    def _reset_lines(self) -> None:
        """Forget results.csv's rendered lines (a new or restored writer: every row is rendered again)."""
        self._lines: dict[str, str] = {}  # trial id -> its results.csv line, for the columns in self._cols
        self._cols: list[str] = []
        self._stale: set[str] = set()  # trials whose row changed since their line was rendered
        self._keys: set[str] | None = None  # see _row_keys

    def on_step_end(self, iteration, trials, **info):
        """Every loop of Tune's controller: a rewrite that _write held back goes out once its time comes."""
        if getattr(self, "_dirty", False) and time.monotonic() >= self._next_write:
            self._write()

    def _write(self, force: bool = False) -> None:
        """Rewrite results.csv (whole, atomically; the rows changed since are rendered again). A search of
        many short trials reports several times a second: after a rewrite that took d seconds, the next
        waits ``WRITE_GAP`` x d, at least ``MIN_GAP_S`` (~2 ms a rewrite at 1,000 rows here: 0.25 s), and
        the events in between are written together (on_step_end, the next event, or the end of the
        search: ``force``)."""
        now = time.monotonic()
        if not force and now < getattr(self, "_next_write", 0.0):
            self._dirty = True
            return
        self._dirty = False
        self._write_now()
        self._next_write = now + max(WRITE_GAP * (time.monotonic() - now), MIN_GAP_S)

    def flush(self) -> None:
        """Write what a throttled rewrite held back (the end of a search, or an interrupted one)."""
        if getattr(self, "_dirty", False):
            self._write(force=True)

    def front(self) -> list[dict]:
        """The Pareto front of the completed trials on the search's objectives (a multi-objective search),
        best first objective first; a replayed repeat (the same configuration) listed once. Also marks
        every completed row's ``pareto`` (true/false)."""
        if not getattr(self, "multi", False):
            return []
        done = [r for r in list(self.rows.values()) if r["status"] == Status.COMPLETED
                and all(r.get(column(n)) not in (None, "") for n in self.objectives)]
        points = [tuple(float(r[column(n)]) for n in self.objectives) for r in done]
        dirs = directions(self.objectives)
        on = set(pareto_front(points, dirs))
        for r in self.rows.values():
            r[PARETO_COLUMN] = None
        for i, r in enumerate(done):
            r[PARETO_COLUMN] = "true" if i in on else "false"
        seen, out = set(), []
        signed = lambda i: tuple(v if d == MAX else -v for v, d in zip(points[i], dirs))  # noqa: E731
        for i in sorted(on, key=signed, reverse=True):
            r = done[i]
            key = config_of(r)
            if key not in seen:
                seen.add(key)
                out.append(r)
        return out

    def _write_now(self) -> None:
        """Only the rows changed since the last rewrite are rendered again (the rest reuse their line);
        all of them when the columns changed or, with several objectives, the Pareto marks may have."""
        self.front()  # (marks the `pareto` column of a multi-objective search)
        cols = self.columns()
        if cols != self._cols or getattr(self, "multi", False):
            self._lines, self._cols = {}, cols
        stale, self._stale = self._stale, set()
        lines = [_csv_line(cols)]
        for tid, r in self.rows.items():
            if tid in stale or tid not in self._lines:
                self._lines[tid] = _csv_line(["" if r.get(c) is None else r.get(c) for c in cols])
            lines.append(self._lines[tid])
        self.storage.write_text("".join(lines), "results.csv")

    def cache_line(self) -> str:
        """``stage cache: H hits, M misses, ~X s of training saved`` over every trial's last report
        (hits: stages taken from the cache, misses: stages trained, summed over seeds)."""
        from itt.cache import stats_line

        tot = {"hits": 0.0, "misses": 0.0, "seconds_saved": 0.0}
        for r in self.rows.values():
            for k, col in (("hits", "stages_from_cache"), ("misses", "stages_trained"), ("seconds_saved", "cache_seconds_saved")):
                try:
                    tot[k] += float(r.get(col) or 0)
                except (TypeError, ValueError):
                    pass
        return stats_line(tot)

    def _better(self, row: dict) -> float:
        """A completed row's score, signed so that higher is better (the first objective may be std or transfer_gap)."""
        v = float(row["score"])
        return -v if lower_is_better(getattr(self, "objectives", None) or self.scfg.objectives) else v

    def errored(self) -> list[dict]:
        return [r for r in list(self.rows.values()) if r["status"] == Status.ERRORED]

    def best(self, n: int = 5) -> list[dict]:
        """The best distinct configurations (a replayed repeat is the same result, listed once)."""
        done = [r for r in list(self.rows.values()) if r["status"] == Status.COMPLETED and r.get("score") is not None]
        seen, out = set(), []
        for r in sorted(done, key=lambda r: -self._better(r)):
            key = config_of(r)
            if key not in seen:
                seen.add(key)
                out.append(r)
                if len(out) == n:
                    break
        return out

    def status_line(self) -> str:
        """``2 running, 3 pending, 5 finished, 1 stopped by ASHA, 0 errored; best 0.8123 (a>b)``: one pass over
        the rows (it follows every trial's end), the best as ``best(1)`` picks it."""
        c = {s: 0 for s in (Status.RUNNING, Status.COMPLETED, Status.STOPPED, Status.ERRORED)}
        best, top = None, 0.0
        for r in list(self.rows.values()):
            if r["status"] == Status.RUNNING and "_started" not in r:
                continue  # read back from results.csv at `itt resume`, not started again yet: Tune's pending count has it
            c[r["status"]] = c.get(r["status"], 0) + 1
            if r["status"] == Status.COMPLETED and r.get("score") is not None:
                v = self._better(r)
                if best is None or v > top:
                    best, top = r, v
        b = f"best {float(best['score']):.4f} ({best['order'] or 'F'})" if best else "best -"
        spent = self.budget_status() if getattr(self, "budget_status", None) else ""  # search.budget (runner.py)
        return (f"{c[Status.RUNNING]} running, {getattr(self, 'pending', 0)} pending, {c[Status.COMPLETED]} finished, "
                f"{c[Status.STOPPED]} stopped by ASHA, {c[Status.ERRORED]} errored; {b}" + (f"; {spent}" if spent else ""))

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("budget_status", None)  # (the searcher's view, set again by the runner: not Tune's to pickle)
        return state

    def _progress(self, trials, row: dict) -> None:
        """One line per finished trial: its order, outcome and score, then the counts and the best."""
        self.pending = sum(1 for t in trials if t.status == "PENDING")
        outcome = row["status"]
        if outcome == Status.ERRORED and row.get("_error"):
            outcome = f"errored ({row['_error'][:200]}; the traceback: error.txt in its trial folder)"
        if outcome == Status.STOPPED:
            outcome = f"stopped by ASHA after stage {row.get('stages_completed') or 0}"
        score = f", score {float(row['score']):.4f}" if row.get("score") not in (None, "") else ""
        self.log(f"[{time.time() - self.t0:6.0f}s] trial {row['trial_id']} {row['order'] or 'F'}: {outcome}{score} | "
                 f"trials: {self.status_line()}")


def _csv_line(values: list) -> str:
    """One line of a CSV file, as ``csv.writer`` writes it."""
    buf = io.StringIO()
    csv.writer(buf).writerow(values)
    return buf.getvalue()


def _config_columns(config: dict, space) -> dict:
    """A Tune trial config as its row's columns: the order, its length and the searched hyperparameters (``hp:*``)."""
    order, hp = split_config(config, space)
    return {"order": order_key(order), "order_length": len(order), **{f"hp:{k}": v for k, v in sorted(hp.items())}}


def config_of(row: dict) -> tuple:
    """A row's configuration (order and searched hyperparameters): a replayed repeat has the same one."""
    # (a row read back from results.csv at `itt resume` has every hp: column, blank where its trial has no such
    # hyperparameter, e.g. stages.<task>.lr of a task not in its order: the same configuration as a live row's)
    return row["order"], tuple(sorted((k, str(v)) for k, v in row.items() if k.startswith("hp:") and v not in (None, "")))


def error_line(error_file: str | None, limit: int = 300) -> str:
    """The last line of a trial's ``error.txt`` (Ray Tune writes the traceback there; its last line is the
    exception and its message), shortened to ``limit`` characters; "" when there is none to read."""
    try:
        lines = [ln.strip() for ln in Path(error_file).read_text(errors="replace").splitlines() if ln.strip()]
    except (OSError, TypeError):
        return ""
    last = lines[-1] if lines else ""
    return last if len(last) <= limit else last[:limit - 3] + "..."


def errored_text(errored: list[dict], exp: str, every: bool = False) -> str:
    """What the end of a search says about its errored trials (``every``: all of its trials): how many, the
    first one's error, where the rest are, and how to run them again once the cause is mended."""
    first = next((r for r in errored if r.get("_error")), None)
    said = f"; the first, trial {first['trial_id']} ({first['order'] or 'F'}): {first['_error']}" if first else ""
    how_many = f"all {len(errored)} trials of the search" if every else f"{len(errored)} trial(s)"
    return (f"{how_many} errored{said}. Each trial's error is in error.txt of its folder in {exp}; once mended, "
            f"`itt resume {quote(str(exp))} --retry-errored` runs them again")
