"""``itt search`` and ``itt resume``: the run and resume flow, and nothing else.

Checks before Ray starts (config, storage, tracking store, cluster address, data), then one Ray Tune
``Tuner`` over the searcher (search/searchers/), the scheduler (search/schedulers/) and the trial
function (search/trial.py), with results.csv (search/results.py) and MLflow (search/tracking.py) as
callbacks; at the end ``summary.json`` (the recommendation) and, when asked, ``itt report``.

The experiment directory is ``<storage>/<name>/`` (Ray Tune's own layout), plus ``results.csv``,
``summary.json``, ``optuna.journal`` (a copy of the study), ``dedup/`` (finished trials by content key, replayed
instead of retrained) and ``trials/<trial_id>/`` (each chain's results.json, predictions, checkpoint).
"""

from __future__ import annotations

import math
import os
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from shlex import quote

import yaml

from itt.errors import ConfigError, RunFailed, UserError
from search import driver
from search.cluster import check as check_cluster, missing_on_nodes
from search.cluster import connect
from search.config import SearchConfig, hparams_text, load_search, settle_probe_also
from search.schedulers import make_scheduler
from search.schedulers.state import SchedulerState
from search.results import ResultsWriter, Status, errored_text  # (also re-exported: older experiments pickled it from here)
from search.searchers import (exhaustive_param_space, exhaustive_search_alg, make_searcher, seed_point_orders,
                              stopping, study_copy_url)
from search.storage import Storage, echo, first_missing, remove_made
from search.trial import TrialContext, chain_trial, in_trial_process, trial_resources

# ------------------------------------------------------------------ building the Tuner
# where `ray up` (the cluster launcher, cluster.yaml) leaves the autoscaler's config on the head node
AUTOSCALER_CONFIG = "~/ray_bootstrap_config.yaml"


def autoscaler_workers(address: str | None) -> int | None:
    """The most worker nodes the cluster's autoscaler may start (``max_workers`` of the config ``ray up`` left
    on the head), where the search joins such a cluster from its head (``ray job submit``); else None.
    ``address``: the cluster joined (:func:`joined`); None or ``local``: a private Ray, which nothing autoscales."""
    if address in (None, "local"):
        return None
    n = _autoscaler_config().get("max_workers")
    return int(n) if isinstance(n, int) and n > 0 else None


def _autoscaler_config() -> dict:
    """The autoscaler's config `ray up` left on this machine (AUTOSCALER_CONFIG); {} where there is none."""
    try:
        cfg = yaml.safe_load(Path(AUTOSCALER_CONFIG).expanduser().read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def autoscaler_node_types() -> dict[str, dict] | None:
    """The resources of each worker node type the autoscaler may start (``ray up`` fills them in from the
    instance type when it writes AUTOSCALER_CONFIG), with the most nodes of that type (its ``max_workers``,
    else the cluster's); None where the file or any type's resources are unknown."""
    cfg = _autoscaler_config()
    types = cfg.get("available_node_types")
    if not isinstance(types, dict):
        return None
    out = {name: {"resources": t.get("resources"), "max_workers": t.get("max_workers", cfg.get("max_workers"))}
           for name, t in types.items()
           if name != cfg.get("head_node_type") and isinstance(t, dict) and t.get("max_workers", 1) != 0}
    ok = all(isinstance(t["resources"], dict) and t["resources"] and isinstance(t["max_workers"], int)
             for t in out.values())
    return out if out and ok else None


def _per_node(resources: dict, worker: dict) -> int:
    """How many of a trial's workers (``worker``: its CPU and GPU) a node of these resources holds."""
    return min(math.floor(resources.get(k, 0) / v + 1e-9) for k, v in worker.items() if v > 0)


def autoscaled_trials(types: dict[str, dict], max_workers: int, worker: dict, workers_per_trial: int,
                      driver_cpus: float = 0.0) -> int:
    """Trials at once on the nodes the autoscaler may start: its ``max_workers`` nodes, the types holding the
    most workers first (each type up to its own max_workers), every trial's workers on them. ``driver_cpus``:
    a Ray Train trial's own share (``trial_cpus``, beside its workers; the head holds no trials), which the
    nodes' CPUs must hold too."""
    slots, left, cpus = 0, max_workers, 0.0
    for per_node, most, node_cpus in sorted(((_per_node(t["resources"], worker), t["max_workers"],
                                              float(t["resources"].get("CPU", 0))) for t in types.values()),
                                            reverse=True):
        n = min(left, most)
        slots, left, cpus = slots + n * per_node, left - n, cpus + n * node_cpus
    trials = slots // max(workers_per_trial, 1)
    if driver_cpus > 0:  # (8 one-GPU 8-CPU nodes, 2 workers of 8 CPUs a trial: 3 trials, not 4)
        trials = min(trials, math.floor(cpus / (workers_per_trial * worker.get("CPU", 0) + driver_cpus) + 1e-9))
    return trials


def joined(address: str | None) -> str | None:
    """The cluster a search joins: ``--address``, else ``RAY_ADDRESS`` (which `ray job submit` sets for its
    driver), else one `ray start` runs on this machine (search.cluster.check); None: a private Ray."""
    return check_cluster(address).address or address


JOB_WORKING_DIR = "/runtime_resources/working_dir_files/"  # where Ray unpacks a job's --working-dir on a node


def _check_nodes_see(st: Storage, scfg: SearchConfig, autoscale: int | None, log=echo, chain=None, *,
                     marker: str) -> None:
    """On a cluster of several nodes (or one that autoscales) trials write their results, dedup records and
    stage cache into the experiment from whichever node they run on, and read the config's local files
    (data_root, a local model) there. Every live node is asked whether it sees the experiment (``marker``,
    a file of it the driver wrote) and those files (search.cluster.missing_on_nodes): a node that does not
    is an error, before any trial (on a node's own disk, its trials' results.json, predictions and cached
    stages would stay where the driver, the report and a resume never read them). What cannot be asked
    (nodes the autoscaler starts later, a node that does not answer) and a local search.cache.dir (made by
    the trials) are warnings; so are local files inside the job's --working-dir, which Ray unpacks per
    node and per submit."""
    import ray

    nodes = sum(bool(n.get("Alive")) for n in ray.nodes())
    if nodes < 2 and not autoscale:
        return
    where = f"on a cluster of {nodes} node(s){' that autoscales' if autoscale else ''}"
    inputs = {} if scfg.simulate else _local_inputs(chain)
    paths = {} if st.remote else {f"--storage {st.display}": st.path(marker)}
    paths.update({f"{k} {v}": v for k, v in inputs.items() if JOB_WORKING_DIR not in v})
    missing, late = missing_on_nodes(paths) if paths and nodes > 1 else ({}, [])
    if missing:
        raise UserError(_not_seen_line(missing, where))
    unasked = [f"node(s) {', '.join(late)} did not answer whether they see it"] if late else []
    unasked += ["nodes the autoscaler starts later are not asked"] if autoscale else []
    if paths and unasked:
        log(f"warning: {', '.join(paths)} {where}: {'; '.join(unasked)}: trials there need the same folder (a "
            f"mount every node shares; an s3://... or gs://... --storage otherwise)")
    if scfg.cache.enabled and scfg.cache.dir and "://" not in str(scfg.cache.dir) and not scfg.simulate:
        log(f"warning: search.cache.dir {scfg.cache.dir} {where}: a trial on another node writes there on its own "
            f"disk unless it is a mount every node shares, and the stage cache is then shared less; give an s3://... "
            f"(or gs://) URI otherwise")
    job = [f"{k} {v}" for k, v in inputs.items() if JOB_WORKING_DIR in v]
    if job:
        log(f"warning: {', '.join(job)} {where}: inside this job's --working-dir, which Ray unpacks per node and per "
            f"submit; nodes started later and a resume submitted again may not have it: put the files at a path "
            f"every node has, or load them from the Hub")


def _not_seen_line(missing: dict[str, list[str]], where: str) -> str:
    """One error line: which node lacks what, and what to do about it."""
    lacks = {label: [ip for ip, ls in missing.items() if label in ls] for ls in missing.values() for label in ls}
    what = "; ".join(f"{label} is not on node(s) {', '.join(ips)}" for label, ips in lacks.items())
    todo = []
    if any(label.startswith("--storage") for label in lacks):
        todo.append("give --storage a folder every node mounts at the same path (a shared file system), or an "
                    "s3://... (or gs://) URI: on a node's own disk its trials' results stay where this driver "
                    "cannot read them")
    if any(not label.startswith("--storage") for label in lacks):
        todo.append("put the files at that path on every node (or load them from the Hub): trials there cannot "
                    "read them")
    return f"{where}, {what} (asked on each node): {'; '.join(todo)}"


def _local_inputs(chain) -> dict[str, str]:
    """The local paths a trial reads: data_root where a task reads local files, a local model or tokenizer."""
    if chain is None:
        return {}
    out = {}
    files = any(getattr(src, "files", None) or (isinstance(src, dict) and any(x.files for x in src.values()))
                for spec in chain.tasks.values() for src in (spec.train, spec.dev, spec.test) if src is not None)
    if files and chain.data_root:
        out["data_root"] = str(chain.data_root)
    for key, value in (("model.name", chain.model.name), ("model.tokenizer", chain.model.tokenizer)):
        if value and Path(value).exists():
            out[key] = str(value)
    return out


def _check_resources(scfg: SearchConfig, autoscale: int | None = None, log=echo) -> int:
    """Trials that fit at once; a clear error when no node can hold one trial's workers. On a cluster whose
    autoscaler may start ``autoscale`` workers (cluster.yaml's start from none), a trial no live node holds
    yet is what makes it start one: then a warning, and as many trials at once as it may start workers."""
    import ray

    r = scfg.resources
    if scfg.simulate:  # table lookups start no Ray Train workers: only the trial's own CPUs count
        return max(1, math.floor(ray.cluster_resources().get("CPU", 0) / max(r.trial_cpus, 1e-9) + 1e-9))
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    one = in_trial_process(r)  # the chain in the trial's process: its CPUs and the worker's on one node
    worker = {"CPU": r.cpus_per_worker + (r.trial_cpus if one else 0), "GPU": r.gpus_per_worker}
    fits = [_per_node(n["Resources"], worker) for n in nodes]
    if not any(f >= 1 for f in fits):
        have = ", ".join(f"{n['Resources'].get('CPU', 0):g} CPU / {n['Resources'].get('GPU', 0):g} GPU" for n in nodes)
        need = (f"a {'trial' if one else 'worker'} needs {worker['CPU']:g} CPU and {r.gpus_per_worker:g} GPU, but no node "
                f"has that (nodes: {have})")
        types = autoscaler_node_types() if autoscale else None
        if types and not any(_per_node(t["resources"], worker) >= 1 for t in types.values()):
            kinds = ", ".join(f"{name} {t['resources'].get('CPU', 0):g} CPU / {t['resources'].get('GPU', 0):g} GPU"
                              for name, t in types.items())
            raise UserError(f"search.resources: {need}, nor does any node type the autoscaler may start ({kinds}; "
                            f"{AUTOSCALER_CONFIG}): its trials would wait forever")
        if autoscale:
            most = _autoscaled(autoscale, types, worker, r.workers_per_trial, 0.0 if one else r.trial_cpus)
            log(f"search.resources: {need} yet: the autoscaler ({AUTOSCALER_CONFIG}, max_workers {autoscale}) starts "
                f"nodes as trials ask for them; up to {r.max_concurrent or most} trial(s) at once "
                f"(search.resources.max_concurrent)")
            return most
        raise UserError(f"search.resources: {need}")
    total = ray.cluster_resources()
    per_trial = {"CPU": r.trial_cpus + r.workers_per_trial * r.cpus_per_worker, "GPU": r.workers_per_trial * r.gpus_per_worker}
    conc = min(math.floor(total.get(k, 0) / v + 1e-9) for k, v in per_trial.items() if v > 0)
    if autoscale:  # more nodes come as trials ask for them
        return max(conc, _autoscaled(autoscale, autoscaler_node_types(), worker, r.workers_per_trial,
                                     0.0 if one else r.trial_cpus))
    if sum(fits) < r.workers_per_trial:
        raise UserError(f"search.resources: a trial needs {r.workers_per_trial} workers but the cluster holds {sum(fits)}")
    if conc < 1:  # (each worker fits somewhere, but not all of them beside the trial's own CPUs: Ray Train waits)
        raise UserError(f"search.resources: a trial needs {per_trial['CPU']:g} CPU (trial_cpus {r.trial_cpus:g} + "
                        f"{r.workers_per_trial} workers x cpus_per_worker {r.cpus_per_worker:g}) and "
                        f"{per_trial['GPU']:g} GPU, but the cluster has {total.get('CPU', 0):g} CPU and "
                        f"{total.get('GPU', 0):g} GPU in all")
    return conc


def _autoscaled(autoscale: int, types: dict | None, worker: dict, workers_per_trial: int,
                driver_cpus: float = 0.0) -> int:
    """Trials at once the autoscaler's nodes hold: from its node types where `ray up` filled in their
    resources, else one per node it may start."""
    return max(1, autoscaled_trials(types, autoscale, worker, workers_per_trial, driver_cpus)) if types else autoscale


SUMMARY_FILE = "summary.json"  # beside results.csv: the recommendation, the best observed, the searcher's trace
SEARCH_FILE = "search.yaml"  # the resolved config (chain + search block) a resume rebuilds the search from
DEFAULT_TRIALS = 20  # search.num_samples when a config leaves it out (exhaustive: every order once)
RETRY_ROUNDS = 2  # restarts of trials Ray Tune errored before search.max_failures, in one itt search / resume


class SearchInterrupted(KeyboardInterrupt):
    """The search stopped before it finished (Ctrl-C); ``itt resume`` continues it."""

    def __init__(self, exp: str):
        super().__init__(f"search interrupted; finished trials are kept. Continue it with:  itt resume {quote(str(exp))}")
        self.exp = exp


def run_search(config: str, *, name: str | None = None, storage: str | None = None, address: str | None = None,
               overrides: list[str] | None = None, tracking_uri: str | None = None, log=echo,
               progress: str = "auto") -> Path | str:
    """Run a search; returns the experiment directory (a Path, or the URI on an object store). All
    config, storage and tracking-store checks happen before Ray starts. ``progress``: the live view of
    the running trials (search/progress.py): auto | live | plain | off."""
    scfg, chain, _ = load_search(config, overrides)
    cluster = joined(address)  # a wrong address or a missing/wrong Ray token: one error line, nothing written
    settle_probe_also(scfg, chain)  # (in the chain config the search saves: a resume probes as it began)
    name = name or chain.name
    st = _new_experiment(storage, name, scfg)
    _check_chain_loads(scfg, chain)
    measured = None
    if scfg.prior_from:  # an unreadable earlier search fails here, before MLflow or the experiment has a trace
        from search.transfer import measured_sources

        measured = measured_sources(scfg.prior_from, scfg.space())
    target, languages = _target(chain)
    from search.tracking import Tracker

    tracker = Tracker.create(st=st, scfg=scfg, chain=chain, name=name, n_orders=scfg.space().count(), languages=languages,
                             target=target.name, metric=target.metric, uri=tracking_uri, log=log)  # an unreachable MLflow store stops here
    with tracker.removed_if_refused(), _claimed(st, name):
        prior = None
        if scfg.prior == "transferability" or scfg.prior_from:  # once per search, in the driver (search/transfer.py)
            from search.transfer import order_prior

            prior = order_prior(scfg, chain, st=st, log=log, measured=measured)
        seed_points = seed_point_orders(scfg, chain, log=log, prior=prior)
        # Ray: the cluster, then what runs on it
        _init_ray(address, scfg)
        autoscale = autoscaler_workers(cluster)
        fits = _check_resources(scfg, autoscale, log=log)  # fails here when no node can hold a trial
        _check_nodes_see(st, scfg, autoscale, log, chain, marker=driver.DRIVER_FILE)
        reuse = _reuse_actors(scfg, autoscale)
    concurrency = scfg.resources.max_concurrent or fits
    st.write_text(_search_file(chain, scfg), SEARCH_FILE)  # what `itt resume` rebuilds the trainable from
    study_url = study_copy_url(scfg, st)
    searcher = make_searcher(scfg, seed_points, copy_url=study_url, study_name=name, log=log, prior=prior)
    writer = ResultsWriter(st, scfg, target.metric, languages, log=log, seeds=list(chain.seeds))
    _show_budget(writer, scfg, searcher)
    num_samples, param_space = _trials(scfg, seed_points)
    _start_lines(scfg, chain, target.name, name, st, num_samples, concurrency, study_url, log)
    tuner = _tuner(scfg, chain, st, target.metric, name, searcher, num_samples, param_space, concurrency,
                   [writer, tracker], reuse_actors=reuse)
    restore = lambda: _restore(st, scfg, chain, target.metric, restart_errored=True, tracking_uri=tracking_uri, log=log)
    exp = _fit(tuner, st, writer, tracker, scfg, log=log, progress=progress, restore=restore)
    return _then_confirm(scfg, exp, address=address, tracking_uri=tracking_uri, progress=progress, log=log)


def _check_chain_loads(scfg: SearchConfig, chain) -> None:
    """Every trial's data and model must load (a moved file, a model the Hub does not have): checked once in
    the driver, before anything is written or Ray starts, instead of in each trial as it fails."""
    if scfg.simulate:
        return
    from itt.chain import prepare

    prepare(chain.model_copy(update={"order": list(scfg.candidates), "seeds": [chain.seeds[0]]}), log=lambda *a: None)


def _new_experiment(storage: str | None, name: str, scfg: SearchConfig) -> Storage:
    """The experiment's folder: not there yet, and writable (with the shared stage cache, if any)."""
    st = Storage(storage or str(Path("runs").resolve()), name)
    if st.exists():
        raise UserError(f"experiment '{name}' exists already in {st.root} (continue it with `itt resume "
                        f"{quote(st.arg)}`, or pick another --name)")
    st.check_writable()
    if scfg.cache.enabled and scfg.cache.dir and not scfg.simulate:  # a shared stage cache every trial writes to
        Storage(scfg.cache.dir, "", label="search.cache.dir").check_writable()
    return st


@contextmanager
def _claimed(st: Storage, name: str):
    """The new experiment as this driver's (driver.json, before anything is written there): a second search
    of the same name started meanwhile is refused; a start refused or interrupted before its trials leaves no
    experiment directory behind."""
    exp = None if st.remote else Path(st.path())
    made = None if exp is None else first_missing(exp)  # (the folders this start makes: gone again if it fails)
    other = driver.claim(st)
    if other is not None or set(st.listdir()) - {driver.DRIVER_FILE}:
        if other is None:
            driver.remove(st)
        by = f" by another driver (pid {other['pid']}) just now" if other is not None else " meanwhile"
        raise UserError(f"experiment '{name}' was started in {st.root}{by} (continue it with `itt resume "
                        f"{quote(st.arg)}` once it stops, or pick another --name)")
    try:
        yield
    except BaseException:
        st.delete()
        if made is not None and made != exp:  # (the storage folder too, where this start made it)
            remove_made(exp.parent, made)
        raise


def _trials(scfg: SearchConfig, seed_points) -> tuple[int, dict]:
    """Tune's ``num_samples`` and ``param_space``: the grid of ``exhaustive`` lists every order once."""
    if scfg.searcher == "exhaustive":
        return 1, exhaustive_param_space(scfg, seed_points)
    return scfg.num_samples or DEFAULT_TRIALS, {}


def _start_lines(scfg: SearchConfig, chain, target: str, name: str, st: Storage, num_samples: int, concurrency: int,
                 study_url: str | None, log) -> None:
    """What the search will do, as it starts (``num_samples``: Tune's, one for the grid of ``exhaustive``)."""
    n_orders = scfg.space().count()
    trials = n_orders if scfg.searcher == "exhaustive" else num_samples
    log(f"search '{name}': {n_orders} orders of {len(scfg.candidates)} tasks (lengths {scfg.lengths}), "
        f"searcher {scfg.searcher}, {trials} trials, scheduler {scfg.scheduler.type}, {concurrency} at a time"
        f"{' in reproducible batches (search.reproducible)' if scfg.reproducible else ''}; experiment: {st.display}")
    if scfg.metric == "xtreme":
        alone = not chain.probe.also  # (settled by settle_probe_also)
        log(f"score: the dev XTREME average over {', '.join([target, *chain.eval.also])} (the target and "
            f"eval.also); the probe after each stage "
            + (f"is {target}'s alone (probe.also: false)" if alone else
               f"too (each task fine-tuned for {scfg.probe_steps} steps; probe.also)")
            + (f", and search.prior: transferability rates transfer to {target} alone"
               if scfg.prior == "transferability" else ""))
    if study_url:
        from search.tracking import redact

        log(f"Optuna study '{name}' (copied as trials finish): optuna-dashboard {redact(study_url)}")


def _reuse_actors(scfg: SearchConfig, autoscale: int | None) -> bool:
    """Ray Tune's ``reuse_actors``: a trial's process runs the next trial. A chain in the trial's own process:
    yes (no new process, no imports of torch and the model code, per trial). Simulated trials: only on a
    Ray of one node. Tune hands a finished trial's process to a trial whose own is still starting, on
    whatever node that one is, and drops the starting one; a table lookup ends before a new process is up
    (seconds of imports), so on a cluster each next trial ran where the last one ended and the other nodes
    ran none: all 4 trials on the head of two 1-CPU machines, 2 at a time (tests/test_two_hosts.py). A
    simulated search on a cluster is there to try its nodes: there each trial gets a process of its own, on
    the node its placement group is on (trials at once on different nodes where one node holds one)."""
    import ray

    if not scfg.simulate:
        return in_trial_process(scfg.resources)
    return not autoscale and sum(bool(n.get("Alive")) for n in ray.nodes()) < 2


def _tuner(scfg: SearchConfig, chain, st: Storage, metric_name: str, name: str, searcher, num_samples: int,
           param_space: dict, concurrency: int, callbacks: list, *, reuse_actors: bool):
    """The Ray Tune run of the search: its trainable, searcher (or grid), scheduler and callbacks;
    ``reuse_actors``: :func:`_reuse_actors`."""
    from ray import tune

    from search.searchers.batches import Batches, Limiter

    # several objectives: the searcher and the scheduler carry their own metrics (Tune's must then be None)
    metric, mode = (None, None) if scfg.multi_objective else ("objective", "max")
    grid = exhaustive_search_alg(scfg, concurrency) if searcher is None else None
    batches = searcher is not None and scfg.reproducible  # (the batches hold the searcher to the concurrency)
    scheduler = make_scheduler(scfg)
    return tune.Tuner(
        _trainable(scfg, chain, st, metric_name),
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=metric, mode=mode,
                                    # (the grid limits itself; a searcher is limited by Limiter or Batches)
                                    search_alg=(Batches(searcher, concurrency) if batches else
                                                Limiter(searcher, concurrency) if searcher else grid),
                                    scheduler=scheduler, num_samples=num_samples,
                                    # a trial's process runs the next trial (no new process per trial);
                                    # a TorchTrainer's driver function is not reused (its worker group is new anyway)
                                    reuse_actors=reuse_actors),
        run_config=tune.RunConfig(name=name, storage_path=st.base, storage_filesystem=st.fs,
                                  callbacks=[*callbacks, SchedulerState(scheduler), *_tune_loggers(scfg)], verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=scfg.max_failures)),
    )


def resume_search(exp_dir: str, *, address: str | None = None, retry_errored: bool = False, more: int = 0,
                  tracking_uri: str | None = None, log=echo, progress: str = "auto") -> Path | str:
    """``itt resume``: continue an interrupted search (driver killed, Ctrl-C, machine rebooted).

    Finished trials are not rerun (Ray Tune's own state, plus ``dedup/`` for trials that finished
    after its last snapshot); unfinished ones run again, their finished stages taken from the stage
    cache; errored ones only with ``retry_errored``. The searcher (Optuna) continues from its saved
    state; MLflow runs are found again by trial id. ``more``: that many trials more than the search
    was to run, finished or not (``--more N``)."""
    from itt.config import ChainConfig, parse_yaml, validate
    from search.tracking import storage_of

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
    if tracking_uri and not scfg.tracking.enabled:  # (it was ignored: the resumed search tracked nothing there)
        raise UserError(f"itt resume --tracking-uri {tracking_uri}: this search runs without MLflow tracking "
                        f"(--no-tracking); leave --tracking-uri out, and backfill that store afterwards with "
                        f"`itt mlflow-sync {exp_dir} --tracking-uri {tracking_uri}`")
    if not st.exists("tuner.pkl"):
        raise UserError(f"itt resume: {exp_dir} holds no Ray Tune state (tuner.pkl): the search stopped before "
                        f"its first trial. Remove it and start again with `itt search`")
    _check_snapshots(st)
    _check_no_driver(st)  # (and this process recorded as its driver, until the resume stops)
    try:
        return _resume(st, scfg, chain, exp_dir, address=address, retry_errored=retry_errored, more=more,
                       tracking_uri=tracking_uri, log=log, progress=progress)
    finally:
        driver.remove(st)


def _resume(st: Storage, scfg: SearchConfig, chain, exp_dir: str, *, address: str | None, retry_errored: bool,
            more: int, tracking_uri: str | None, log, progress: str) -> Path | str:
    from search.tracking import connect, resolve_uri, tracked_files

    cluster = joined(address)  # a wrong address or Ray token: one error line before the MLflow store is touched
    st.read_json("tracking", "search.json")  # (the tracker's, read inside Ray: unreadable, one error line here)
    _check_chain_loads(scfg, chain)  # (the data may have moved since the search started)
    target, _ = _target(chain)
    if tracking_uri and scfg.tracking.enabled:
        connect(resolve_uri(tracking_uri))  # an unreachable store: one error line before Ray starts
    if more:
        _check_more(st, scfg, exp_dir)
    _init_ray(address, scfg)
    autoscale = autoscaler_workers(cluster)
    _check_resources(scfg, autoscale, log=log)
    _check_nodes_see(st, scfg, autoscale, log, chain, marker=SEARCH_FILE)
    reuse = _reuse_actors(scfg, autoscale)  # (for the Ray it runs on now: the search's may have been another)
    log(_resume_line(st, scfg, more=more, retry_errored=retry_errored))
    tuner, writer, tracker = _restore(st, scfg, chain, target.metric, restart_errored=retry_errored,
                                      tracking_uri=tracking_uri, log=log, reuse_actors=reuse)
    if more:  # (after the restore, which reads Ray's state but leaves the search generator's to the fit)
        scfg = _extend(st, scfg, chain, more, log=log)
        tracker.files = tracked_files(scfg, chain, scfg.space().count())  # (the new num_samples)
        searcher = _searcher_of(tuner)
        if searcher is not None:
            searcher.lift_stop = True  # N more trials whatever search.stop said
    restore = lambda: _restore(st, scfg, chain, target.metric, restart_errored=True, tracking_uri=tracking_uri, log=log,
                               reuse_actors=reuse)
    exp = _fit(tuner, st, writer, tracker, scfg, log=log, progress=progress, restore=restore)
    from search.confirm import SUFFIX, continue_variants  # a confirmation: its report; with --vary its other values too

    if more and scfg.confirm is not None and Storage(st.root, st.name + SUFFIX).exists():
        log(f"search.confirm: {st.name}{SUFFIX} confirmed this search before --more; the longer search's picks "
            f"on fresh seeds: itt confirm {quote(str(exp))} --name {quote(st.name + SUFFIX)}-2")
    else:
        _then_confirm(scfg, exp, address=address, tracking_uri=tracking_uri, progress=progress, log=log)

    continue_variants(st, address=address, tracking_uri=tracking_uri, progress=progress, log=log)
    return exp


def _snapshots(st: Storage, template: str) -> tuple[str, list[str]]:
    """Ray's snapshot files of one kind in the experiment (``template``: e.g. SearchGenerator.CKPT_FILE_TMPL):
    their name prefix, and their names oldest first (Ray restores from the last)."""
    prefix = template.split("{}")[0]
    return prefix, sorted(f for f in st.listdir() if f.startswith(prefix))


def _check_snapshots(st: Storage) -> None:
    """Ray Tune's newest snapshots must load: where one is damaged (cut short by a full disk), Ray's restore logs
    it and starts the search over, and the finished trials leave results.csv. One error line instead, before
    anything is written."""
    import json

    from ray import cloudpickle
    from ray.tune.callback import CallbackList
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search.search_generator import SearchGenerator
    from ray.tune.search.searcher import Searcher

    for template, load in ((TuneController.CKPT_FILE_TMPL, json.loads), (SearchGenerator.CKPT_FILE_TMPL, cloudpickle.loads),
                           (Searcher.CKPT_FILE_TMPL, cloudpickle.loads), (CallbackList.CKPT_FILE_TMPL, cloudpickle.loads)):
        _, files = _snapshots(st, template)
        if not files:
            continue
        try:
            load(st.read_bytes(files[-1]))
        except Exception:  # noqa: BLE001 (truncated JSON or pickle)
            before = (f"remove it to go on from Ray's snapshot before it ({files[-2]})" if len(files) > 1 else
                      "no earlier one to go on from; results.csv and the trials' folders are kept (`itt report` reads them)")
            raise UserError(f"itt resume: {st.display}/{files[-1]}: Ray Tune's last snapshot of the search is damaged "
                            f"(cut short: a full disk?), and Ray would start the search over from it; {before}") from None


def _resume_line(st: Storage, scfg: SearchConfig, *, more: int, retry_errored: bool) -> str:
    """What a resume finds (results.csv): the trials that ended and how, and whether anything is left to run."""
    from search.tracking import read_rows

    counts = Counter(r["status"] for r in read_rows(st))
    how = ", ".join(f"{counts[s]} {words}" for s, words in ((Status.COMPLETED, "completed"),
                    (Status.STOPPED, "stopped by ASHA"), (Status.ERRORED, "errored")) if counts[s])
    ended = counts[Status.COMPLETED] + counts[Status.STOPPED] + counts[Status.ERRORED]
    if not more and not (retry_errored and counts[Status.ERRORED]) and _all_ended(st, scfg, counts, ended):
        errored = " (`--retry-errored` runs the errored ones again)" if counts[Status.ERRORED] else ""
        more_ = "" if _no_more(st, scfg, st.display) else f"; `itt resume {quote(st.arg)} --more N` runs N trials more"
        return (f"search '{st.name}' had ended ({ended} trials: {how}): no trial is left to run, its end is "
                f"printed again{errored}{more_}")
    return (f"resuming search '{st.name}' ({ended} trials ended before{': ' + how if how else ''}"
            f"{_carried_over(st, scfg)}); experiment: {st.display}")


def _all_ended(st: Storage, scfg: SearchConfig, counts: Counter, ended: int) -> bool:
    """Did the search end (its searcher done, every trial it made ended)? Ray's search-generator snapshot
    counts the trials made and says whether the searcher finished; the grid of ``exhaustive`` has none."""
    from ray.tune.search.search_generator import SearchGenerator

    if counts[Status.RUNNING]:
        return False
    state = _newest(st, SearchGenerator.CKPT_FILE_TMPL)
    if "counter" not in state:  # (none, or damaged)
        return scfg.searcher == "exhaustive" and ended >= scfg.space().count()
    return (state["finished"] or state["counter"] >= state["total_samples"]) and ended >= state["counter"]


def _newest(st: Storage, template: str) -> dict:
    """Ray's newest snapshot of one kind (``template``, e.g. SearchGenerator.CKPT_FILE_TMPL), as Ray restores it;
    {} where there is none or it is damaged (Ray's restore says so; the resume's first line only informs)."""
    from ray import cloudpickle

    _, files = _snapshots(st, template)
    try:
        return cloudpickle.loads(st.read_bytes(files[-1])) if files else {}
    except Exception:  # noqa: BLE001
        return {}


def _carried_over(st: Storage, scfg: SearchConfig) -> str:
    """What a resume takes over besides the trials, from Ray's newest snapshot: the probes in ASHA's rungs
    (schedulers/state.py) and a reproducible search's open batch (the limiter's state, which Ray saves)."""
    from ray.tune.callback import CallbackList
    from ray.tune.search.search_generator import SearchGenerator

    out = ""
    if scfg.scheduler.type == "asha":
        saved = next((s["state"] for s in _newest(st, CallbackList.CKPT_FILE_TMPL).values()
                      if isinstance(s, dict) and "class" in s), None)
        if saved is None:
            out += "; ASHA starts with empty rungs (none saved in this experiment)"
        else:
            rungs = list((saved.get("rungs") or {}).values()) + [r for b in saved.get("_brackets", []) for _, r in b._rungs]
            out += f"; ASHA goes on with the {sum(map(len, rungs))} probes recorded before"
    batch = _newest(st, SearchGenerator.CKPT_FILE_TMPL).get("name:Batches") if scfg.reproducible else None
    if batch and batch.get("num_unfinished_live_trials"):
        out += (f"; the open batch: {batch['num_unfinished_live_trials']} of its {len(batch['live_trials'])} "
                "trial(s) to end first")
    return out


def _check_more(st: Storage, scfg: SearchConfig, exp_dir: str) -> None:
    """``--more``: a UserError, before anything is written, where more trials cannot add anything."""
    why = _no_more(st, scfg, exp_dir)
    if why:
        raise UserError(f"itt resume --more: {why}")


def _no_more(st: Storage, scfg: SearchConfig, exp_dir: str) -> str | None:
    """Why more trials cannot add anything to the search (None where they can)."""
    from search.confirm import CONFIRM_FILE

    if st.exists(CONFIRM_FILE):
        return (f"{exp_dir} is a confirmation (`itt confirm`); it trains the picks it was given. Confirm more "
                "orders with `itt confirm <search> --top N`")
    if scfg.searcher == "exhaustive":
        return (f"{exp_dir} is an exhaustive search: it runs every order once, so there is no trial to add "
                "(`itt confirm` runs orders again on fresh seeds)")
    if scfg.hparams:
        return None  # another configuration of a finished order can always be proposed
    from search.tracking import read_rows

    # (the searcher proposes neither a completed order nor an errored one again; a stopped one may continue)
    ran = {r.get("order") or "" for r in read_rows(st) if r.get("status") in (Status.COMPLETED, Status.ERRORED)}
    if len(ran) >= scfg.space().count():
        return (f"every order of the space ({scfg.space().count()}) has run in {exp_dir} (completed, or errored: "
                "`--retry-errored` runs those again); more trials would only repeat them (`itt confirm` runs "
                "orders on fresh seeds)")
    return None


def _extend(st: Storage, scfg: SearchConfig, chain, more: int, *, log=echo) -> SearchConfig:
    """``more`` trials on top of the search's own count (or of the trials it started, when it stopped
    itself). Ray Tune keeps that count in its search generator's saved state and restores it over any new
    ``TuneConfig``, so that state's total is raised (and its "finished" flag cleared); ``search.yaml``
    records the new ``search.num_samples``."""
    from ray import cloudpickle
    from ray.tune.search.search_generator import SearchGenerator

    prefix, files = _snapshots(st, SearchGenerator.CKPT_FILE_TMPL)
    if not files:
        raise UserError(f"itt resume --more: {st.display} holds no searcher state ({prefix}*): the search "
                        "stopped before its first trial. Start it again with a larger search.num_samples")
    state = cloudpickle.loads(st.read_bytes(files[-1]))  # the newest, as Ray picks it
    # a searcher that said FINISHED (search.stop, or no order left) started its last trial: count from there
    before = int(state["counter"] if state["finished"] else state["total_samples"])
    state.update(total_samples=before + more, finished=False)
    st.write_bytes(cloudpickle.dumps(state), files[-1])
    scfg = scfg.model_copy(update={"num_samples": before + more})
    st.write_text(_search_file(chain, scfg), SEARCH_FILE)
    log(f"{more} trial(s) more: {before + more} in all (the searcher goes on from what it has seen)")
    return scfg


def _search_file(chain, scfg: SearchConfig) -> str:
    """``search.yaml``: the resolved chain and search config a resume rebuilds the trainable from (the
    Tuner's own state is Ray's tuner.pkl)."""
    import yaml

    return yaml.safe_dump({**chain_dump(chain), "search": scfg.model_dump(mode="json")}, sort_keys=False,
                          allow_unicode=True)


def _restore(st: Storage, scfg: SearchConfig, chain, metric: str, *, restart_errored: bool,
             tracking_uri: str | None, log=echo, reuse_actors: bool | None = None):
    """Ray Tune's saved search as a Tuner again (finished trials kept, unfinished ones resumed, errored ones
    started again when ``restart_errored``), with its results.csv writer and MLflow tracker; ``reuse_actors``
    (:func:`_reuse_actors`) replaces the saved Tuner's where given."""
    from ray import tune

    from search.tracking import Tracker, resolve_uri

    tuner = tune.Tuner.restore(st.path(), _trainable(scfg, chain, st, metric),  # (a path of st.fs, also on a store)
                               resume_unfinished=True, resume_errored=False, restart_errored=restart_errored,
                               storage_filesystem=st.fs)
    # the callbacks come back from Ray's pickle of the original Tuner; point them at this run
    callbacks = tuner._local_tuner.get_run_config().callbacks or []
    writer = next(c for c in callbacks if isinstance(c, ResultsWriter))
    tracker = next(c for c in callbacks if isinstance(c, Tracker))
    writer.log = tracker.log = log
    # ... and at this experiment directory: it may have moved since (renamed, copied from the cluster)
    writer.storage = tracker.st = st
    tracker.meta["experiment_dir"] = st.display
    if reuse_actors is not None:
        tuner._local_tuner._tune_config.reuse_actors = reuse_actors
    for c in callbacks:  # (a search started before SchedulerState existed has none: its rungs start empty)
        if isinstance(c, SchedulerState):  # the rungs go into the scheduler the restored Tuner runs
            c.scheduler = tuner._local_tuner._tune_config.scheduler
    searcher = _searcher_of(tuner)
    _show_budget(writer, scfg, searcher)
    if searcher is not None and scfg.optuna_storage == "experiment":
        searcher.copy_here = study_copy_url(scfg, st)  # (applied when Ray restores the searcher's state)
    if tracking_uri and scfg.tracking.enabled:
        tracker.uri = resolve_uri(tracking_uri)
        tracker.meta["tracking_uri"] = tracker.uri
    return tuner, writer, tracker


def _then_confirm(scfg: SearchConfig, exp, *, address: str | None, tracking_uri: str | None, progress: str,
                  log=echo):
    """``search.confirm``: ``itt confirm`` on the finished search. One that cannot start (e.g. its
    experiment exists from an earlier run) is one line; the search's results stand."""
    if scfg.confirm is None:
        return exp
    from search.confirm import run_confirm

    log("did its best orders hold up on fresh seeds? (itt confirm)")
    try:
        run_confirm(str(exp), top=scfg.confirm.top, seeds=scfg.confirm.seeds, hparams=scfg.confirm.hparams,
                    vary=list(scfg.confirm.vary.items()), address=address, tracking_uri=tracking_uri,
                    no_tracking=not scfg.tracking.enabled, progress=progress, log=log)
    except UserError as e:
        log(f"confirm: not run ({e}); once fixed: itt confirm {quote(str(exp))}")
    return exp


def _target(chain):
    from itt.tasks import resolve_task

    target = resolve_task(chain.target.task, chain.tasks)
    return target, list(chain.target.languages or target.languages)


def _tune_loggers(scfg: SearchConfig) -> list:
    """Tune's CSV and JSON result files per trial (its ExperimentAnalysis reads them), for real searches."""
    if scfg.simulate:
        return []
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    return [CSVLoggerCallback(), JsonLoggerCallback()]


def _init_ray(address: str | None, scfg: SearchConfig) -> None:
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's automatic per-trial loggers: none; a real search names CSV and JSON itself (_tune_loggers).
    # Cheap simulated trials are dominated by them, and the TensorBoard one leaves, after a Ctrl-C on
    # Python 3.12, an atexit traceback ("can't create new thread at interpreter shutdown") from the
    # writers of the trials in flight; MLflow is where trials are compared.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # a trial's failure: itt's one line (results.py: on_trial_recover, on_trial_error) instead of Tune's traceback
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    _short_cluster_errors()
    if not ray.is_initialized():  # --address: checked first, with Ray's token authentication (search/cluster.py)
        target = connect(address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                         configure_logging=True)
        if target.running_here:
            echo(f"Ray: joined the cluster running on this machine at {target.address} (`ray start`); "
                 f"--address local starts a private Ray instead")


def _short_cluster_errors() -> None:
    """Ray prints the errors a cluster publishes to the driver (a node marked dead, a raylet killed) whatever
    ``log_to_driver`` says, each with the last 20 lines of that raylet's log: on a lost spot node, 25 lines
    of state dump (bench: tests/test_two_hosts.py's machine loss). Each keeps its first line; what became of
    the trials is the search's own line. (Ray 2.60's ``ray._private.worker.print_to_stdstream``, which
    ``listen_error_messages`` calls; left as it is where Ray has none.)"""
    from ray._private import worker

    plain = getattr(worker, "print_to_stdstream", None)
    if plain is None or getattr(plain, "itt_short", False):
        return

    def short(data, ignore_prefix):
        if data.get("pid") == "raylet":
            first = str((data.get("lines") or [""])[0]).split("\n", 1)[0].split(" Last 20 lines", 1)[0]
            data = {**data, "lines": [first.rstrip()]}
        return plain(data, ignore_prefix)

    short.itt_short = True
    worker.print_to_stdstream = short


def chain_dump(chain) -> dict:
    """The chain config as plain data that validates back to the same config. ``tasks.<name>`` blocks keep
    only the keys the config set: a re-pointed built-in task (``tasks.xnli: {train: ...}``) dumped whole
    would come back with ``kind: null``, ``test: null``, ... set, overriding the built-in's values."""
    raw = chain.model_dump(mode="json")
    raw["tasks"] = {k: v.model_dump(mode="json", exclude_unset=True) for k, v in chain.tasks.items()}
    return raw


def _trainable(scfg: SearchConfig, chain, st: Storage, metric: str):
    from ray import tune

    ctx = TrialContext(search=scfg, chain_raw=chain_dump(chain), storage=st, metric=metric)
    return tune.with_resources(tune.with_parameters(chain_trial, ctx=ctx), trial_resources(scfg))


def _check_no_driver(st: Storage) -> None:
    """Two drivers on one experiment corrupt it: refuse while the recorded driver still lives; else this process
    is recorded as the driver (driver.claim: of two resumes started at once, one goes on)."""
    d = driver.claim(st)
    if d is not None:  # (a driver on another host: nothing tells from here, so it is not refused)
        raise UserError(f"itt resume: a driver (pid {d['pid']}) is still running this search; stop it first "
                        f"(Ctrl-C) or wait for it to end")


def _fit(tuner, st: Storage, writer: ResultsWriter, tracker, scfg: SearchConfig, *, log=echo,
         progress: str = "auto", restore=None) -> Path | str:
    """Run (or continue) the Tuner; end every MLflow run; print the best orders and the disk used.
    Raises SearchInterrupted after a Ctrl-C (Ray Tune's handler stops the trials and saves its state).
    ``restore()``: the saved search as (tuner, writer, tracker) with its errored trials started again,
    for the trials Ray Tune gave up on before ``search.max_failures`` (see _gave_up_early)."""
    driver.record(st)
    try:  # recorded until the search's end is written, its report too: a resume started meanwhile is refused
        return _fit_and_end(tuner, st, writer, tracker, scfg, log=log, progress=progress, restore=restore)
    finally:
        driver.remove(st)


def _fit_and_end(tuner, st: Storage, writer: ResultsWriter, tracker, scfg: SearchConfig, *, log, progress,
                 restore) -> Path | str:
    interrupted = _fit_once(tuner, st, writer, tracker, scfg, log=log, progress=progress)
    for _ in range(RETRY_ROUNDS):
        early, used_up = ([], []) if interrupted or restore is None else _gave_up_early(tuner, scfg)
        if early and used_up:
            log(f"{len(early)} trial(s) errored with retries left ({', '.join(early)}) and {len(used_up)} after using up "
                f"search.max_failures: `itt resume {quote(st.arg)} --retry-errored` runs them all again")
        if not early or used_up:
            break
        log(f"{len(early)} trial(s) errored with retries left ({', '.join(early)}; failures within search.max_failures "
            f"= {scfg.max_failures}: Ray Tune can give up on a trial when a lost node reports its failure twice): "
            f"starting them again{', their finished stages from the stage cache' if scfg.cache.enabled else ''}")
        writer.flush()
        tracker.close(interrupted=True)  # as a resume would find them; the restored tracker reopens the runs
        tuner, writer, tracker = restore()
        interrupted = _fit_once(tuner, st, writer, tracker, scfg, log=log, progress=progress)
    writer.flush()
    interrupted = interrupted or any(r["status"] == Status.RUNNING for r in writer.rows.values())
    searcher = _searcher_of(tuner)
    try:
        if searcher is not None:
            searcher.sync_copy(force=True)
        summary = write_summary(st, scfg, writer, searcher)
    finally:
        tracker.close(interrupted=interrupted)  # after summary.json: the parent run gets it
    errored = writer.errored()
    if errored and not interrupted and not writer.best(1):
        raise RunFailed(errored_text(errored, st.arg, every=True))
    log(f"best orders observed (score: {score_words(scfg)}; `itt report` reads the test split where there is one):"
        if not scfg.multi_objective else f"best orders observed (by {scfg.objectives[0]}, the first objective):")
    for i, r in enumerate(writer.best(5), 1):
        log(f"  {i}. {r['order'] or '(F: no intermediate task)'}  score {float(r['score']):.4f}  (trial {r['trial_id']})")
    from search.stats import alike_text

    alike = alike_text({r["order"]: float(r["score"]) for r in writer.best(len(writer.rows))})
    if alike:
        log(alike)
    if summary.get("pareto_front") is not None:
        for line in front_lines(summary):
            log(line)
    rec = summary.get("recommended")
    if rec:
        log(f"recommended (the searcher's model, not one lucky run): {rec['order'] or 'F'}  "
            f"{rec['mean']:.4f} [{rec['lo']:.4f}, {rec['hi']:.4f}] (posterior mean, 95% interval; "
            f"observed {rec['observed']:.4f}) -> {SUMMARY_FILE}")
        if rec.get("unexplored") and not interrupted:  # (stopped short: plain `itt resume` goes on, not --more)
            log(unexplored_text(rec["unexplored"], rec["order"], st.arg))
        if rec.get("positions"):
            log(positions_text(rec["positions"]))
    if summary.get("stopped_itself"):
        log(stopping.text(summary["stopped_itself"]))
    if summary.get("costs"):
        log(costs_text(summary["costs"]))
    if summary.get("searcher_time", {}).get("proposals"):
        log(searcher_time_text(summary["searcher_time"]))
    if summary.get("prior_weights"):
        log(f"earlier searches' weight in the prior (how well each ranked this search's {summary['prior_weights_from']} "
            f"completed orders): " + ", ".join(f"{src} {w:.2f}" for src, w in summary["prior_weights"].items()))
    if errored:
        log(f"warning: {errored_text(errored, st.arg)}")
    log(f"results: {st.display}/results.csv")
    log(disk_usage_line(st))
    if interrupted:
        raise SearchInterrupted(st.arg)
    if scfg.report:
        _final_report(st, scfg, tracker, log=log)
    return st.arg if st.remote else Path(st.path())  # (an S3-compatible store's options kept: `itt confirm` reports on it)


@contextmanager
def _without_tune_line(start: str):
    """Ray Tune's ERROR log lines that begin with ``start`` kept off the console while the block runs."""
    import logging

    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.msg).startswith(start)

    tune_log, drop = logging.getLogger("ray.tune.tune"), Drop()
    tune_log.addFilter(drop)
    try:
        yield
    finally:
        tune_log.removeFilter(drop)


def _fit_once(tuner, st: Storage, writer: ResultsWriter, tracker, scfg: SearchConfig, *, log=echo,
              progress: str = "auto") -> bool:
    """``tuner.fit()`` under the live progress view; True when a Ctrl-C stopped it (Tune saved its state).
    A second Ctrl-C, or any error: MLflow runs closed, SearchInterrupted (or the error) raised."""
    import signal

    def _second_interrupt(sig, frame):  # Tune restores this after its own handler took the first Ctrl-C
        raise KeyboardInterrupt

    def _terminate(sig, frame):  # SIGTERM (a job scheduler's time limit, `kill`): stop as after a Ctrl-C (Ray
        signal.raise_signal(signal.SIGINT)  # Tune's own handler saves the search); it ended in a stack dump

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _second_interrupt) if main else None
    previous_term = signal.signal(signal.SIGTERM, _terminate) if main else None
    from search.progress import LiveProgress

    tracker.managed = True  # it closes the MLflow runs when told to, after summary.json (_fit)
    try:
        # simulated trials that take no time send no progress (search/trial.py): no hub to start and poll
        events = not (scfg.simulate is not None and scfg.simulate.seconds_per_stage <= 0)
        with LiveProgress(st.display, writer, mode=progress, log=None if log is echo else log, events=events), \
                _without_tune_line("Trials did not complete"):  # (the search's own end names the errored trials)
            tuner.fit()
        # Tune's handler, once it has seen a Ctrl-C, puts back the one installed before it: ours
        return main and signal.getsignal(signal.SIGINT) is _second_interrupt
    except BaseException as e:
        writer.flush()
        tracker.close(interrupted=True)  # no MLflow run stays RUNNING when the driver stops (_fit removes driver.json)
        if isinstance(e, KeyboardInterrupt):  # a second Ctrl-C: Tune's state is that of its last snapshot
            raise SearchInterrupted(st.arg) from None
        if isinstance(e, UserError):  # the driver's own write failed (a full disk, a folder made read-only): Tune's
            # state is that of its last snapshot, so the search goes on once the storage is mended
            raise UserError(f"{e}; the search stopped, finished trials are kept. Once it can be written, continue it "
                            f"with:  itt resume {quote(st.arg)}") from None
        raise
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)


def _gave_up_early(tuner, scfg: SearchConfig) -> tuple[list[str], list[str]]:
    """Ids of the errored trials: those Ray Tune ended with fewer failures than ``search.max_failures``
    allows, and those that used them up (a restart would retry these too, so the runner restarts only
    when there are none). Tune 2.60 retries a failed trial only while it is RUNNING: when a lost node's
    actor reports two failed futures (ActorUnavailableError, ms apart), the first requeues the trial
    (PENDING) and the second errors it, whatever retries were left (seen in 2 of 41 runs of the
    node-loss test in tests/test_resume.py, e.g. 3 failures of max_failures 5)."""
    errored = [t for t in tuner.get_results()._experiment_analysis.trials if t.status == "ERROR"]
    left = lambda t: scfg.max_failures < 0 or t.num_failures <= scfg.max_failures  # noqa: E731 (Tune's should_recover)
    return [t.trial_id for t in errored if left(t)], [t.trial_id for t in errored if not left(t)]


def unexplored_text(u: dict, pick: str, exp: str) -> str:
    """One line on order_bo's answer to "could an order the search never finished beat its pick?"."""
    if not u["orders"]:
        return f"every order of the space finished: none left to beat {pick or 'F'}"
    return (f"could an order the search did not finish ({u['orders']} of {u['of']}) beat {pick or 'F'}? under the "
            f"searcher's model P = {u['p_better']:.2f}, expected gain {u['expected_gain']:+.4f} (most likely: "
            f"{u['most_likely'] or 'F'}, P = {u['p_most_likely']:.2f}): a longer search pays if that gain is worth its "
            f"trials (`itt resume {quote(exp)} --more N`)")


def _show_budget(writer: ResultsWriter, scfg: SearchConfig, searcher) -> None:
    """With ``search.budget``: the progress lines say how much of it the search has spent (the searcher's count)."""
    if scfg.budget is not None and searcher is not None:
        writer.budget_status = lambda: stopping.budget_text(searcher.budget, searcher.spent())


def _searcher_of(tuner):
    """The OrderSearcher the Tuner ran (after a restore: the one Ray restored the state into), or None."""
    from search.searchers import OrderSearcher

    alg = getattr(getattr(tuner, "_local_tuner", None), "_tune_config", None)
    alg = getattr(alg, "search_alg", None)
    while alg is not None and not isinstance(alg, OrderSearcher):  # (Ray may wrap it, e.g. in a limiter)
        alg = getattr(alg, "searcher", None)
    return alg


def score_words(scfg: SearchConfig) -> str:
    """What a one-objective search's score is, as the console's list of best orders names it."""
    from search.pareto import words

    return f"search.metric {scfg.metric}, " + words(scfg.metric, scfg.robust_weight)


def write_summary(st: Storage, scfg: SearchConfig, writer: ResultsWriter, searcher) -> dict:
    """``summary.json``: the searcher's recommended order (posterior mean and 95% interval, when its
    sampler has a model: with one seed per trial the best observed score is biased upward, the winner's
    curse), the best observed orders, and the trace of recommendations (one per proposal)."""
    import json

    rec = None
    if searcher is not None:
        try:
            rec = searcher.recommend()
        except Exception as e:  # a failed fit never costs the search its results
            echo(f"warning: no recommendation ({type(e).__name__}: {e})")
    best = [{"order": r["order"], "score": float(r["score"]), "trial_id": r["trial_id"]} for r in writer.best(5)]
    out = {"searcher": scfg.searcher, "recommended": rec, "best_observed": best,
           **(front_summary(scfg, writer) if scfg.multi_objective else {}),
           "counts": {s: sum(r["status"] == s for r in writer.rows.values())
                      for s in (Status.COMPLETED, Status.STOPPED, Status.ERRORED, Status.RUNNING)},
           "continuations": getattr(searcher, "continuations", 0),
           **({"stopped_itself": searcher.ended} if getattr(searcher, "ended", None) else {}),
           **prior_weights(searcher),
           **stage_costs(searcher),
           **({"searcher_time": searcher.own_time()} if hasattr(searcher, "own_time") else {}),
           "trace": getattr(searcher, "trace", [])}
    st.write_text(json.dumps(out, indent=1, default=str), SUMMARY_FILE)
    return out


def stage_costs(searcher) -> dict:
    """summary.json's ``costs``: the median seconds trials reported for a stage of each task and for the rest
    of a trial (what order_bo priced orders by, with ``cost: measured``: search/searchers/costs.py)."""
    sampler, study = getattr(searcher, "sampler", None), getattr(searcher, "study", None)
    if not hasattr(sampler, "costs") or study is None:
        return {}
    sec = sampler.observations(study).seconds
    if not sec.stage:
        return {}
    fixed = sec.fixed_median()
    return {"costs": {"unit": sampler.cost_unit,
                      "stage_seconds": {t: round(s, 3) for t, s in sorted(sec.stage_medians().items())},
                      "fixed_seconds": round(fixed, 3) if fixed is not None else None}}


def costs_text(c: dict) -> str:
    """The console's line on what stages cost (summary.json's ``costs``)."""
    stages = ", ".join(f"{t} {s:.1f}" for t, s in sorted(c["stage_seconds"].items(), key=lambda kv: -kv[1]))
    fixed = f"; the rest of a trial (data, fine-tune, evaluation) {c['fixed_seconds']:.1f}" if c["fixed_seconds"] is not None else ""
    how = ("the searcher priced orders by these" if c["unit"] == "measured"
           else "the searcher counted stages instead (search.order_bo.cost: stages)")
    return f"seconds a stage of each task cost (median, training and probe): {stages}{fixed} - {how}"


def searcher_time_text(t: dict) -> str:
    """The console's line on the searcher's own time (summary.json's ``searcher_time``)."""
    from search.plan import hours

    share = f": {t['seconds'] / t['search_seconds']:.1%} of the search's {hours(t['search_seconds'])}" if t["search_seconds"] else ""
    return (f"the searcher's own time on the driver: {t['proposals']} proposals took {hours(t['propose_seconds'])} "
            f"(median {t['median_proposal_seconds']:.2g} s, longest {t['longest_proposal_seconds']:.2g} s), taking in "
            f"results {hours(t['results_seconds'])}{share}")


def positions_text(w: dict) -> str:
    """The console's line on order_bo's two surrogates (summary.json's ``recommended.positions``)."""
    return (f"where a task sits, as the searcher's model weighs it (evidence of its two GPs): depth from the end "
            f"{w['from_end']:.2f}, position from the start too {w['from_start']:.2f} (search.order_bo.from_start)")


def prior_weights(searcher) -> dict:
    """summary.json's ``prior_weights``: with several earlier searches as the prior (search.prior_from),
    each one's final weight (how well it ranked this search's scores: search/transfer.py PriorEnsemble)."""
    prior = getattr(getattr(searcher, "sampler", None), "prior", None)
    if not hasattr(prior, "weights"):
        return {}
    return {"prior_weights": {src: round(w, 4) for src, w in zip(prior.sources, prior.weights)},
            "prior_weights_from": prior.observed}


def front_summary(scfg: SearchConfig, writer: ResultsWriter) -> dict:
    """summary.json's multi-objective part: the objectives with their directions and the Pareto front
    (each order on it with every objective's dev value, its trial and hyperparameters)."""
    from search.pareto import OBJECTIVES, column

    front = [{"order": r["order"], "trial_id": r["trial_id"],
              "values": {n: float(r[column(n)]) for n in scfg.objectives},
              "hparams": {k[3:]: v for k, v in r.items() if k.startswith("hp:") and v not in (None, "")}}
             for r in writer.front()]  # (rows read back from results.csv hold every hp: column, blank where unused)
    return {"objectives": [{"name": n, "direction": OBJECTIVES[n][0], "column": column(n)} for n in scfg.objectives],
            "pareto_front": front}


def front_lines(summary: dict) -> list[str]:
    """The console's Pareto front: one line per order on it, every objective's dev value."""
    objs = summary["objectives"]
    front = summary["pareto_front"]
    arrows = ", ".join(f"{o['name']} {'↑' if o['direction'] == 'maximize' else '↓'}" for o in objs)
    out = [f"Pareto front ({arrows}; dev): {len(front)} order(s) no other completed trial beats on every objective"]
    for r in front:
        hp = hparams_text(r["hparams"], " ")
        figs = "  ".join(f"{n} {v:.4f}" for n, v in r["values"].items())
        out.append(f"  {r['order'] or 'F (no intermediate task)'}  {figs}{'  ' + hp if hp else ''}  (trial {r['trial_id']})")
    return out


def _final_report(st: Storage, scfg: SearchConfig, tracker, *, log=echo) -> None:
    """``search.report``: ``itt report`` on the finished search; its answer ends the console output. A
    report that cannot be made (e.g. no completed trial) is one line: the search's results stand."""
    from search.report import make_report

    log("does order matter here? (itt report)")
    try:
        make_report(st.arg if st.remote else st.path(), tracking_uri=getattr(tracker, "uri", None),
                    mlflow=scfg.tracking.enabled, log=log, mlflow_off="the search's tracking is off")
    except Exception as e:  # noqa: BLE001 - the search is done; say why the report is missing, and how to retry
        log(f"report: not written ({e}); once fixed: itt report {quote(st.arg)}")


def disk_usage_line(st: Storage) -> str:
    sizes = st.du()
    total = sum(sizes.values())
    top = sorted(sizes.items(), key=lambda kv: -kv[1])[:4]
    parts = ", ".join(f"{k} {_mb(v)}" for k, v in top if v)
    return f"disk: {_mb(total)} in {st.display} ({parts})"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"
