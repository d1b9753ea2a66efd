"""``itt search``: Ray Tune + Optuna (or an exhaustive grid) + ASHA over orders of intermediate tasks.

The experiment directory is ``<storage>/<name>/`` (Ray Tune's own layout), plus ``results.csv`` (one
row per trial, rewritten atomically as trials report and finish), ``dedup/`` (finished trials by
content key, replayed instead of retrained) and ``trials/<trial_id>/`` (each chain's results.json,
predictions and checkpoint).
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
import threading
import time
from functools import partial
from pathlib import Path

from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler

from itt.errors import ConfigError, UserError
from search.config import SearchConfig, load_search
from search.searcher import DedupSearcher
from search.space import order_key
from search.storage import Storage, echo
from search.trial import (
    TrialContext,
    chain_trial,
    define,
    in_trial_process,
    release_train_resources,
    split_config,
    trial_resources,
)

SEARCHERS = ("tpe", "gp", "random", "exhaustive")


class Status:
    """Trial outcomes as written to results.csv."""

    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"  # by the scheduler (ASHA), before the final report
    ERRORED = "errored"


# ------------------------------------------------------------------ results.csv + progress
WRITE_GAP = 20  # results.csv: the pause after a rewrite, in multiples of its duration (at most ~5% of the driver's time)


class ResultsWriter(Callback):
    """Keeps ``results.csv`` up to date and prints a progress line whenever a trial ends."""

    def __init__(self, storage: Storage, scfg: SearchConfig, metric: str, languages: list[str], log=echo,
                 seeds: list[int] | None = None):
        self.storage, self.scfg, self.metric, self.languages, self.log = storage, scfg, metric, languages, log
        self.seeds = list(seeds or [])  # the chain's seeds (trial folders hold seed<S>/ for each)
        self.space = scfg.space()
        self.rows: dict[str, dict] = {}
        self.t0 = time.time()
        self._next_write, self._dirty = 0.0, False  # results.csv rewrites, throttled (see _write)

    # Tune hooks ----------------------------------------------------------
    def setup(self, **info):
        """Called when a fit starts. A restored search (``itt resume``) unpickles this callback as it
        was when the search began, without rows: the rows come back from ``results.csv`` instead (it
        is rewritten on every report, so it is newer than any Tune snapshot, also after a SIGKILL)."""
        self.t0 = time.time()
        self._next_write, self._dirty = 0.0, False  # an unpickled writer's clock was another process's
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
        row = self._row(trial)
        if row.get("_restored") == Status.COMPLETED:
            return  # finished before the driver stopped, after Tune's last snapshot: it replays, row stays
        if row["status"] != Status.RUNNING:  # a retried trial (errored, or its worker died) starts over
            row.update(status=Status.RUNNING, stopped_early="", score=None)
        self._write()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        row = self._row(trial)
        if row.get("_restored") == Status.COMPLETED:
            return
        done = int(row.get("order_length") or 0) if result.get("final") else int(result.get("step", 0))
        row["stages_completed"] = max(row.get("stages_completed") or 0, done)
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
            self._progress(trials)
            return
        final = row.get("_final")
        row["status"] = Status.COMPLETED if final else Status.STOPPED
        row["stopped_early"] = "false" if final else "true"
        if final:
            m = self.metric
            row["score"] = final.get("objective")
            for lang in self.languages:
                row[lang] = final.get(f"test_{m}_{lang}")
            for fig in ("mean", "std", "worst", "transfer_gap"):
                row[f"test_{fig}"] = final.get(f"test_{m}_{fig}")
            row["dev_mean"] = final.get(f"dev_{m}_mean")
            row["perturbation_score"] = final.get("perturbation_score")
            # XTREME's per-task scores and their average (test split), when the target has them
            row.update({k[len("test_"):]: v for k, v in final.items() if k.startswith("test_xtreme_")})
            row["replayed"] = "true" if final.get("replayed") else "false"
        self._write()
        self._retain_checkpoints()
        self._progress(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        release_train_resources(self.storage, trial.trial_id)
        row = self._row(trial)
        row["status"], row["stopped_early"] = Status.ERRORED, "false"
        self._write()
        self._progress(trials)

    def on_experiment_end(self, trials, **info):
        """A trial that started after Ray Tune's last snapshot of a search whose driver was killed is
        unknown to the restored Tuner (which proposes a new trial in its place): drop its row."""
        known = {t.trial_id for t in trials}
        lost = [tid for tid in self.rows if tid not in known]
        for tid in lost:
            del self.rows[tid]
        if lost:
            self.log(f"{len(lost)} trial(s) started after Ray Tune's last snapshot before the driver stopped "
                     f"({', '.join(lost)}); Tune ran others in their place (their finished stages came from the stage cache)")
            self._dirty = True
        self.flush()
        if self.scfg.cache.enabled and not self.scfg.simulate:
            self.log(self.cache_line())

    # helpers ---------------------------------------------------------------
    def _retain_checkpoints(self) -> None:
        """Disk bound: final checkpoints only for the best K completed trials (K = keep_checkpoints,
        at least tracking.best_k, whose checkpoints go to MLflow at the end); the rest are removed."""
        k = self.scfg.keep_checkpoints
        if k is None or self.scfg.simulate:
            return
        k = max(k, self.scfg.tracking.best_k if self.scfg.tracking.enabled else 0)
        done = sorted((r for r in self.rows.values() if r["status"] == Status.COMPLETED and r.get("score") is not None),
                      key=lambda r: -float(r["score"]))
        self.pruned = getattr(self, "pruned", set())
        for r in done[k:]:
            tid = r["trial_id"]
            if tid in self.pruned:
                continue
            self.pruned.add(tid)
            for seed in self.scfg.seeds or self.seeds:
                try:
                    self.storage.delete("trials", tid, f"seed{seed}", "checkpoint")
                except Exception as e:  # never let cleanup stop a search
                    self.log(f"warning: could not remove the checkpoint of trial {tid}: {e}")

    def _row(self, trial) -> dict:
        if trial.trial_id not in self.rows:
            order, hp = split_config(trial.config, self.space)
            self.rows[trial.trial_id] = {"trial_id": trial.trial_id, "status": Status.RUNNING, "order": order_key(order),
                                         "order_length": len(order), "stages_completed": 0, "stopped_early": "",
                                         "score": None, **{f"hp:{k}": v for k, v in sorted(hp.items())}}
        return self.rows[trial.trial_id]

    def columns(self) -> list[str]:
        hp_cols = sorted({k for r in self.rows.values() for k in r if k.startswith("hp:")})
        return (["trial_id", "status", "order", "order_length", "stages_completed", "stopped_early", "score"] + hp_cols
                + list(self.languages) + ["test_mean", "test_std", "test_worst", "test_transfer_gap", "dev_mean",
                                          "perturbation_score"]
                + sorted({k for r in self.rows.values() for k in r if k.startswith("xtreme_")}) + ["replayed"]
                + ["stages_trained", "stages_from_cache", "cache_seconds_saved"])

    def on_step_end(self, iteration, trials, **info):
        """Every loop of Tune's controller: a rewrite that _write held back goes out once its time comes."""
        if getattr(self, "_dirty", False) and time.monotonic() >= self._next_write:
            self._write()

    def _write(self, force: bool = False) -> None:
        """Rewrite results.csv (whole, atomically). A rewrite costs O(trials), and a search of many short
        trials reports several times a second: after one that took d seconds, the next waits
        ``WRITE_GAP`` x d (~0.4 s at 1,000 rows here), and the events in between are written together
        (on_step_end, the next event, or the end of the search: ``force``)."""
        now = time.monotonic()
        if not force and now < getattr(self, "_next_write", 0.0):
            self._dirty = True
            return
        self._dirty = False
        self._write_now()
        self._next_write = now + WRITE_GAP * (time.monotonic() - now)

    def flush(self) -> None:
        """Write what a throttled rewrite held back (the end of a search, or an interrupted one)."""
        if getattr(self, "_dirty", False):
            self._write(force=True)

    def _write_now(self) -> None:
        cols = self.columns()
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in self.rows.values():
            w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
        self.storage.write_text(buf.getvalue(), "results.csv")

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

    def best(self, n: int = 5) -> list[dict]:
        """The best distinct configurations (a replayed repeat is the same result, listed once)."""
        done = [r for r in self.rows.values() if r["status"] == Status.COMPLETED and r.get("score") is not None]
        seen, out = set(), []
        for r in sorted(done, key=lambda r: -float(r["score"])):
            key = (r["order"], tuple(sorted((k, str(v)) for k, v in r.items() if k.startswith("hp:"))))
            if key not in seen:
                seen.add(key)
                out.append(r)
        return out[:n]

    def _progress(self, trials) -> None:
        c = {s: 0 for s in (Status.RUNNING, Status.COMPLETED, Status.STOPPED, Status.ERRORED)}
        for r in self.rows.values():
            c[r["status"]] += 1
        pending = sum(1 for t in trials if t.status == "PENDING")
        best = self.best(1)
        b = f"best {float(best[0]['score']):.4f} ({best[0]['order'] or 'F'})" if best else "best -"
        self.log(f"[{time.time() - self.t0:6.0f}s] trials: {c[Status.RUNNING]} running, {pending} pending, "
                 f"{c[Status.COMPLETED]} finished, {c[Status.STOPPED]} stopped by ASHA, {c[Status.ERRORED]} errored; {b}")


# ------------------------------------------------------------------ building the Tuner
def make_searcher(scfg: SearchConfig, seed_points: list[list[str]]):
    """Optuna (TPE, GP, random) through Ray's OptunaSearch, or Ray's grid for exhaustive."""
    if scfg.searcher == "exhaustive":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=scfg.seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=scfg.seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=scfg.seed),
    }[scfg.searcher]()
    space = scfg.space()
    points = [space.encode(o) for o in seed_points]
    if points and scfg.hparams:  # a seed point fixes the order; its hparams take the middle of their range
        points = [{**p, **_hparam_defaults(scfg, o)} for p, o in zip(points, seed_points)]
    inner = OptunaSearch(space=partial(define, space=space, hparams=scfg.hparams), metric="objective", mode="max",
                         sampler=sampler, points_to_evaluate=points or None)
    return DedupSearcher(inner, space, has_hparams=bool(scfg.hparams), seed=scfg.seed)


def _hparam_defaults(scfg: SearchConfig, order: list[str]) -> dict:
    out = {}
    for key, hp in scfg.hparams.items():
        for name in ([key.replace("*", t) for t in order] if "*" in key else [key]):
            if hp.choice is not None:
                out[name] = hp.choice[0]
            elif hp.int is not None:
                out[name] = (hp.int[0] + hp.int[1]) // 2
            else:
                lo, hi = hp.float
                out[name] = math.sqrt(lo * hi) if hp.log else (lo + hi) / 2
    return out


def seed_point_orders(scfg: SearchConfig, chain=None, log=print) -> list[list[str]]:
    sp, space, out = scfg.seed_points, scfg.space(), []
    if sp.baseline:
        out.append([])
    if sp.singles:
        out += [[t] for t in scfg.candidates if space.is_valid([t])]
    out += [list(o) for o in sp.orders]
    if sp.heuristics and chain is None:
        raise ConfigError("search.seed_points.heuristics: the chain config is needed to compute them")
    for kind in sp.heuristics:  # curriculum / similarity orders (search/heuristics.py), one per length
        from search.heuristics import heuristic

        h = heuristic(kind, scfg, chain, from_exp=sp.heuristics_from, log=lambda *a: None)
        log(f"seed points ({kind}, {h['source']}): {', '.join(order_key(o) for o in h['orders']) or 'none in the space'}")
        out += h["orders"]
    seen, uniq = set(), []
    for o in out:
        if tuple(o) not in seen:
            seen.add(tuple(o))
            uniq.append(o)
    return uniq


def _param_space(scfg: SearchConfig, seed_points: list[list[str]]) -> dict:
    """Exhaustive: every order exactly once (seed points first); hparams sampled by Ray."""
    from ray import tune

    if scfg.searcher != "exhaustive":
        return {}
    if any("*" in k for k in scfg.hparams):
        raise ConfigError("search: per-stage hparams ('stages.*.X') need an Optuna searcher, not 'exhaustive'")
    rest = [o for o in scfg.space().orders() if o not in seed_points]
    # shuffled by the search seed: a search cut short must not cover only the first tasks' orders
    random.Random(scfg.seed).shuffle(rest)
    orders = seed_points + rest
    ps: dict = {"order": tune.grid_search([order_key(o) for o in orders])}
    for k, hp in scfg.hparams.items():
        if hp.choice is not None:
            ps[k] = tune.choice(hp.choice)
        elif hp.int is not None:
            ps[k] = tune.randint(hp.int[0], hp.int[1] + 1)
        else:
            ps[k] = tune.loguniform(*hp.float) if hp.log else tune.uniform(*hp.float)
    return ps


def _check_resources(scfg: SearchConfig) -> int:
    """Trials that fit at once; a clear error when no node can hold one trial's workers."""
    import ray

    r = scfg.resources
    if scfg.simulate:  # table lookups start no Ray Train workers: only the trial's own CPUs count
        return max(1, math.floor(ray.cluster_resources().get("CPU", 0) / max(r.trial_cpus, 1e-9) + 1e-9))
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    one = in_trial_process(r)  # the chain in the trial's process: its CPUs and the worker's on one node
    worker = {"CPU": r.cpus_per_worker + (r.trial_cpus if one else 0), "GPU": r.gpus_per_worker}
    fits = [min(math.floor(n["Resources"].get(k, 0) / v + 1e-9) for k, v in worker.items() if v > 0) for n in nodes]
    if not any(f >= 1 for f in fits):
        have = ", ".join(f"{n['Resources'].get('CPU', 0):g} CPU / {n['Resources'].get('GPU', 0):g} GPU" for n in nodes)
        raise UserError(f"search.resources: a {'trial' if one else 'worker'} needs {worker['CPU']:g} CPU and {r.gpus_per_worker:g} GPU, "
                        f"but no node has that (nodes: {have})")
    total = ray.cluster_resources()
    per_trial = {"CPU": r.trial_cpus + r.workers_per_trial * r.cpus_per_worker, "GPU": r.workers_per_trial * r.gpus_per_worker}
    if sum(fits) < r.workers_per_trial:
        raise UserError(f"search.resources: a trial needs {r.workers_per_trial} workers but the cluster holds {sum(fits)}")
    conc = min(math.floor(total.get(k, 0) / v + 1e-9) for k, v in per_trial.items() if v > 0)
    return max(1, conc)


SEARCH_FILE = "search.yaml"  # the resolved config (chain + search block) a resume rebuilds the search from
DRIVER_FILE = "driver.json"  # host and pid of the driver running the search now (removed when it stops)


class OrderASHA(ASHAScheduler):
    """Ray's ASHA, with rungs that hold probes only.

    Ray records a trial's LAST result when it completes, in the highest rung it has not visited: a
    length-1 order's final (a full target fine-tune) would land in rung 2 beside longer orders'
    stage-2 probes (a 30-step probe fine-tune) and raise that rung's cutoff past every probe. A final
    decides nothing anyway (the trial has ended); it is left out of the rungs. Finals are reported at
    one common step, ``SearchConfig.final_step``, for the same reason (see search/trial.py).

    With ``brackets`` > 1 each trial's bracket is drawn from the search seed (Ray draws it from
    numpy's global state), with Ray's weights, so the same config and seed stop the same trials."""

    def __init__(self, *args, seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self._rng = random.Random(f"asha:{seed}")  # bracket draws: Ray's come from numpy's global state

    def on_trial_add(self, tune_controller, trial):
        super().on_trial_add(tune_controller, trial)  # (its checks; its draw is replaced below)
        if len(self._brackets) > 1:  # Ray's bracket probabilities, from the search's seed
            sizes = [len(b._rungs) for b in self._brackets]
            weights = [math.e ** (n - max(sizes)) for n in sizes]
            self._trial_info[trial.trial_id] = self._rng.choices(self._brackets, weights=weights)[0]

    def on_trial_complete(self, tune_controller, trial, result):
        if result and result.get("final"):
            return
        super().on_trial_complete(tune_controller, trial, result)


class SearchInterrupted(KeyboardInterrupt):
    """The search stopped before it finished (Ctrl-C); ``itt resume`` continues it."""

    def __init__(self, exp: str):
        super().__init__(f"search interrupted; finished trials are kept. Continue it with:  itt resume {exp}")
        self.exp = exp


def run_search(config: str, *, name: str | None = None, storage: str | None = None, address: str | None = None,
               overrides: list[str] | None = None, tracking_uri: str | None = None, log=echo) -> Path | str:
    """Run a search; returns the experiment directory (a Path, or the URI on an object store). All
    config, storage and tracking-store checks happen before Ray starts."""
    import yaml

    scfg, chain, _ = load_search(config, overrides)
    name = name or chain.name
    st = Storage(storage or str(Path("runs").resolve()), name)
    if st.exists():
        raise UserError(f"experiment '{name}' exists already in {st.root} (continue it with `itt resume "
                        f"{st.display}`, or pick another --name)")
    st.check_writable()
    if scfg.cache.enabled and scfg.cache.dir and not scfg.simulate:  # a shared stage cache every trial writes to
        Storage(scfg.cache.dir, "", label="search.cache.dir").check_writable()
    target, languages = _target(chain)
    from search.tracking import Tracker

    tracker = Tracker.create(st=st, scfg=scfg, chain=chain, name=name, n_orders=scfg.space().count(), languages=languages,
                             target=target.name, uri=tracking_uri, log=log)  # an unreachable MLflow store stops here
    seed_points = seed_point_orders(scfg, chain, log=log)
    space = scfg.space()
    n_orders = space.count()
    num_samples = scfg.num_samples or (n_orders if scfg.searcher == "exhaustive" else 20)
    param_space = _param_space(scfg, seed_points)
    if scfg.searcher == "exhaustive":
        num_samples = 1  # the grid already lists every order once
    if not scfg.simulate:  # every trial's data and model must load: check once before any trial starts
        from itt.chain import prepare

        probe = chain.model_copy(update={"order": list(scfg.candidates), "seeds": [chain.seeds[0]]})
        prepare(probe, log=lambda *a: None)

    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    _init_ray(address, scfg)
    fits = _check_resources(scfg)  # fails here, clearly, when no node can hold a trial's workers
    concurrency = scfg.resources.max_concurrent or fits
    max_t = scfg.scheduler.max_t or scfg.final_step
    scheduler = (OrderASHA(time_attr="step", max_t=max_t, grace_period=scfg.scheduler.grace_period,
                           reduction_factor=scfg.scheduler.reduction_factor, brackets=scfg.scheduler.brackets,
                           seed=scfg.seed)
                 if scfg.scheduler.type == "asha" else FIFOScheduler())
    # what `itt resume` needs to rebuild the trainable (the Tuner's own state is Ray's tuner.pkl)
    config_text = yaml.safe_dump({**chain.model_dump(mode="json"), "search": scfg.model_dump(mode="json")},
                                 sort_keys=False, allow_unicode=True)
    st.write_text(config_text, SEARCH_FILE)
    writer = ResultsWriter(st, scfg, target.metric, languages, log=log, seeds=list(chain.seeds))
    log(f"search '{name}': {n_orders} orders of {len(scfg.candidates)} tasks (lengths {scfg.lengths}), "
        f"searcher {scfg.searcher}, {num_samples if scfg.searcher != 'exhaustive' else n_orders} trials, "
        f"scheduler {scfg.scheduler.type}, {concurrency} at a time; experiment: {st.display}")
    tuner = tune.Tuner(
        _trainable(scfg, chain, st, target.metric),
        param_space=param_space,
        tune_config=tune.TuneConfig(metric="objective", mode="max", search_alg=make_searcher(scfg, seed_points),
                                    scheduler=scheduler, num_samples=num_samples, max_concurrent_trials=concurrency,
                                    # a trial's process runs the next trial (no new process per trial);
                                    # a TorchTrainer's driver function is not reused (its worker group is new anyway)
                                    reuse_actors=bool(scfg.simulate) or in_trial_process(scfg.resources)),
        run_config=tune.RunConfig(name=name, storage_path=st.base, storage_filesystem=st.fs,
                                  callbacks=[writer, tracker], verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=scfg.max_failures)),
    )
    return _fit(tuner, st, writer, tracker, scfg, log=log)


def resume_search(exp_dir: str, *, address: str | None = None, retry_errored: bool = False,
                  tracking_uri: str | None = None, log=echo) -> Path | str:
    """``itt resume``: continue an interrupted search (driver killed, Ctrl-C, machine rebooted).

    Finished trials are not rerun (Ray Tune's own state, plus ``dedup/`` for trials that finished
    after its last snapshot); unfinished ones run again, their finished stages taken from the stage
    cache; errored ones only with ``retry_errored``. The searcher (Optuna) continues from its saved
    state; MLflow runs are found again by trial id."""
    from itt.config import ChainConfig, parse_yaml, validate
    from search.tracking import Tracker, connect, resolve_uri, storage_of

    st = storage_of(exp_dir)
    text = st.read_text(SEARCH_FILE)
    if text is None:
        if not st.exists():
            raise UserError(f"itt resume: no experiment at {exp_dir}")
        raise UserError(f"itt resume: {exp_dir} is not an itt search (no {SEARCH_FILE}); give the experiment "
                        "directory `itt search` printed, e.g. runs/<name>")
    where = f"{exp_dir}/{SEARCH_FILE}"
    raw = parse_yaml(text, where)
    if not isinstance(raw.get("search"), dict):
        raise ConfigError(f"{where}: no 'search:' block (the file `itt search` wrote was changed)")
    scfg: SearchConfig = validate(raw.pop("search"), where, SearchConfig, prefix="search.")
    chain: ChainConfig = validate(raw, where, ChainConfig)
    if not st.exists("tuner.pkl"):
        raise UserError(f"itt resume: {exp_dir} holds no Ray Tune state (tuner.pkl): the search stopped before "
                        f"its first trial. Remove it and start again with `itt search`")
    _check_no_driver(st)
    target, _ = _target(chain)
    if tracking_uri and scfg.tracking.enabled:
        connect(resolve_uri(tracking_uri))  # an unreachable store: one error line before Ray starts

    from ray import tune

    _init_ray(address, scfg)
    _check_resources(scfg)
    n_done = _count_status(st)
    log(f"resuming search '{st.name}' ({n_done} trials finished before); experiment: {st.display}")
    tuner = tune.Tuner.restore(st.display if st.remote else st.path(), _trainable(scfg, chain, st, target.metric),
                               resume_unfinished=True, resume_errored=False, restart_errored=retry_errored,
                               storage_filesystem=st.fs)
    # the callbacks come back from Ray's pickle of the original Tuner; point them at this run
    callbacks = tuner._local_tuner.get_run_config().callbacks or []
    writer = next(c for c in callbacks if isinstance(c, ResultsWriter))
    tracker = next(c for c in callbacks if isinstance(c, Tracker))
    writer.log = tracker.log = log
    if tracking_uri and scfg.tracking.enabled:
        tracker.uri = resolve_uri(tracking_uri)
        tracker.meta["tracking_uri"] = tracker.uri
    return _fit(tuner, st, writer, tracker, scfg, log=log)


def _target(chain):
    from itt.tasks import resolve_task

    target = resolve_task(chain.target.task, chain.tasks)
    return target, list(chain.target.languages or target.languages)


def _init_ray(address: str | None, scfg: SearchConfig) -> None:
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if scfg.simulate:  # cheap trials: Ray's default per-trial loggers and fresh processes dominate
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 configure_logging=True)


def _trainable(scfg: SearchConfig, chain, st: Storage, metric: str):
    from ray import tune

    ctx = TrialContext(search=scfg, chain_raw=chain.model_dump(mode="json"), storage=st, metric=metric)
    return tune.with_resources(tune.with_parameters(chain_trial, ctx=ctx), trial_resources(scfg))


def _count_status(st: Storage, status: str = Status.COMPLETED) -> int:
    from search.tracking import read_rows

    return sum(1 for r in read_rows(st) if r["status"] == status)


def _check_no_driver(st: Storage) -> None:
    """Two drivers on one experiment corrupt it: refuse while the recorded driver still lives."""
    import json
    import socket

    text = st.read_text(DRIVER_FILE)
    if not text:
        return
    d = json.loads(text)
    if d.get("host") == socket.gethostname():
        try:
            os.kill(int(d["pid"]), 0)
        except (ProcessLookupError, ValueError):
            return  # it died (SIGKILL, reboot): resuming is safe
        except PermissionError:
            pass
        raise UserError(f"itt resume: a driver (pid {d['pid']}) is still running this search; stop it first "
                        f"(Ctrl-C) or wait for it to end")


def _fit(tuner, st: Storage, writer: ResultsWriter, tracker, scfg: SearchConfig, *, log=echo) -> Path | str:
    """Run (or continue) the Tuner; end every MLflow run; print the best orders and the disk used.
    Raises SearchInterrupted after a Ctrl-C (Ray Tune's handler stops the trials and saves its state)."""
    import json
    import signal
    import socket

    st.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}), DRIVER_FILE)

    def _second_interrupt(sig, frame):  # Tune restores this after its own handler took the first Ctrl-C
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _second_interrupt) if main else None
    try:
        tuner.fit()
        # Tune's handler, once it has seen a Ctrl-C, puts back the one installed before it: ours
        interrupted = main and signal.getsignal(signal.SIGINT) is _second_interrupt
    except BaseException as e:
        writer.flush()
        tracker.close(interrupted=True)  # no MLflow run stays RUNNING when the driver stops
        _remove_driver_file(st)
        if isinstance(e, KeyboardInterrupt):  # a second Ctrl-C: Tune's state is that of its last snapshot
            raise SearchInterrupted(st.display) from None
        raise
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
    writer.flush()
    interrupted = interrupted or any(r["status"] == Status.RUNNING for r in writer.rows.values())
    tracker.close(interrupted=interrupted)
    _remove_driver_file(st)
    log("best orders:")
    for i, r in enumerate(writer.best(5), 1):
        log(f"  {i}. {r['order'] or '(F: no intermediate task)'}  score {float(r['score']):.4f}  (trial {r['trial_id']})")
    log(f"results: {st.display}/results.csv")
    log(disk_usage_line(st))
    if interrupted:
        raise SearchInterrupted(st.display)
    if scfg.report:
        _final_report(st, scfg, tracker, log=log)
    return st.display if st.remote else Path(st.path())


def _final_report(st: Storage, scfg: SearchConfig, tracker, *, log=echo) -> None:
    """``search.report``: ``itt report`` on the finished search; its answer ends the console output. A
    report that cannot be made (e.g. no completed trial) is one line: the search's results stand."""
    from search.report import make_report

    log("does order matter here? (itt report)")
    try:
        make_report(st.display if st.remote else st.path(), tracking_uri=getattr(tracker, "uri", None),
                    mlflow=scfg.tracking.enabled, log=log)
    except Exception as e:  # noqa: BLE001 - the search is done; say why the report is missing, and how to retry
        log(f"report: not written ({e}); once fixed: itt report {st.display}")


def _remove_driver_file(st: Storage) -> None:
    try:
        st.delete(DRIVER_FILE)
    except Exception:
        pass


def disk_usage_line(st: Storage) -> str:
    sizes = st.du()
    total = sum(sizes.values())
    top = sorted(sizes.items(), key=lambda kv: -kv[1])[:4]
    parts = ", ".join(f"{k} {_mb(v)}" for k, v in top if v)
    return f"disk: {_mb(total)} in {st.display} ({parts})"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"
