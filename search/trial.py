"""What one Ray Tune trial runs: a chain (in the trial's own process with one worker; on a Ray Train
``TorchTrainer`` with Accelerate inside its workers with more), a replay of an earlier identical
trial, or a lookup in a simulated-objective table.

Every report carries ``step`` (ASHA's time attribute: the stage index; the final report of every
order at ``SearchConfig.final_step``, the longest order + 1, so finals never share a rung with
probes) and ``objective`` (the metric the search optimises: the probe score after an intermediate
stage, the final dev score at the end), plus ``final`` = 1 on the last report.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from search.config import HParam, SearchConfig, hparam_names
from search.progress import Phase, trial_progress
from search.searchers._base import CONTINUES
from search.space import OrderSpace, is_order_param, order_key, order_tasks
from search.storage import Storage



# ------------------------------------------------------------------ the define-by-run space
def define(trial, space: OrderSpace, hparams: dict[str, HParam]) -> None:
    """Optuna define-by-run: an order (Lehmer code), then its hyperparameters. Module-level so the
    searcher pickles for resume; ``stages.*.X`` gives one parameter per task of the sampled order."""
    order = space.suggest(trial)
    for key, hp in hparams.items():
        for name in hparam_names(key, order):
            suggest_hparam(trial, name, hp)


def suggest_hparam(trial, name: str, hp: HParam):
    if hp.float is not None:
        return trial.suggest_float(name, hp.float[0], hp.float[1], log=hp.log)
    if hp.int is not None:
        return trial.suggest_int(name, hp.int[0], hp.int[1], log=hp.log)
    return trial.suggest_categorical(name, hp.choice)


def split_config(config: dict, space: OrderSpace) -> tuple[list[str], dict]:
    """A Tune trial config -> (order, hyperparameters)."""
    if "order" in config:  # exhaustive searcher: the order itself
        order = order_tasks(str(config["order"]))
    else:
        order = space.decode(config)
    hp = {k: v for k, v in config.items() if k not in ("order", CONTINUES) and not is_order_param(k)}
    return order, hp


# ------------------------------------------------------------------ what every trial knows
@dataclass(frozen=True)
class TrialContext:
    search: SearchConfig
    chain_raw: dict  # the resolved chain config (a plain mapping; ChainConfig is rebuilt per trial)
    storage: Storage  # the experiment directory (a local/shared folder or an object-store URI)
    metric: str  # the target's primary metric (accuracy, pearson, ...)


def objective_values(metrics: dict, ctx: TrialContext) -> dict[str, float | None]:
    """Every optimised figure in one report (``search.metric``: one name, or several for a
    multi-objective search): probe figures mid-chain, dev figures at the end; None when missing."""
    m = ctx.metric
    prefix = f"dev_{m}" if metrics.get("final") else f"probe_{m}"
    fig = lambda f: metrics.get(f"{prefix}_{f}")  # noqa: E731
    out: dict[str, float | None] = {}
    for name in ctx.search.objectives:
        if name == "xtreme":  # the final's average over tasks; mid-chain the probe's (probe.also), else the target's
            out[name] = (metrics.get("dev_xtreme_average") if metrics.get("final")
                         else metrics.get("probe_xtreme_average", fig("mean")))
        elif name == "robust":
            mean, std = fig("mean"), fig("std")
            out[name] = None if mean is None else mean - ctx.search.robust_weight * (std or 0.0)
        else:
            out[name] = fig(name)
    return out


def objective(metrics: dict, ctx: TrialContext) -> float | None:
    """The optimised value in one report (the first objective of a multi-objective search): probe
    figures mid-chain, dev figures at the end."""
    if metrics.get(f"{'dev' if metrics.get('final') else 'probe'}_{ctx.metric}_mean") is None:
        return None
    return objective_values(metrics, ctx)[ctx.search.objectives[0]]


def set_objectives(m: dict, ctx: TrialContext, fallback: float | None = None) -> dict:
    """``objective`` (the first objective, results.csv's ``score``) into a report, and for a
    multi-objective search one ``objective_<name>`` per objective (what Optuna and ParetoASHA read)."""
    from search.pareto import column

    vals = objective_values(m, ctx)
    first = vals[ctx.search.objectives[0]]
    m["objective"] = fallback if first is None else first
    if ctx.search.multi_objective:
        m.update({column(n): v for n, v in vals.items() if v is not None})
    return m


def trial_chain_config(ctx: TrialContext, order: list[str], hp: dict) -> dict:
    """The chain config of one trial: the base config with this order, these hparams, a probe."""
    from itt.config import set_dotted

    raw = json.loads(json.dumps(ctx.chain_raw))
    raw["order"] = order
    if ctx.search.seeds:
        raw["seeds"] = list(ctx.search.seeds)
    raw.setdefault("eval", {})
    splits = raw["eval"].get("splits") or ["dev", "test"]
    raw["eval"]["splits"] = splits if "dev" in splits else ["dev", *splits]  # the objective is on dev
    raw["probe"] = {**raw.get("probe", {}), "enabled": True, "steps": ctx.search.probe_steps}
    for k, v in hp.items():
        set_dotted(raw, k, v, "search.hparams")
    return raw


def trial_key(chain_raw: dict) -> str:
    """Everything that determines a trial's numbers (order, hparams, seeds and the rest of the config)."""
    blob = json.dumps(chain_raw, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


# ------------------------------------------------------------------ the trainables
def chain_trial(config: dict, ctx: TrialContext) -> None:
    """A Tune function trial: replay an identical earlier trial, look up a table, or train."""
    from ray import tune

    space = ctx.search.space()
    order, hp = split_config(config, space)
    if ctx.search.simulate is not None:
        return _simulated(order, hp, ctx)
    chain_raw = trial_chain_config(ctx, order, hp)
    key = trial_key(chain_raw)
    record = ctx.storage.read_text("dedup", f"{key}.json")
    if record is not None:  # the same (order, hparams, seeds) ran before in this search: report it again
        record = json.loads(record)
        if record.get("trial_id") == tune.get_context().get_trial_id():
            # this trial's own run, which ended after Ray's last snapshot before the driver died (`itt
            # resume`): its reports, training counts and all, as they would have arrived ("resumed": ASHA
            # records its probes but does not stop a run that has ended)
            for m in record["reports"]:
                tune.report({**m, "resumed": 1, NODE_KEY: node_id()})
            return
        for m in record["reports"]:  # another trial's run: this one trained nothing, took nothing from the cache
            tune.report({**m, "replayed": 1, **({k: 0 for k in _CACHE_COUNTS if k in m}), NODE_KEY: node_id()})
        return
    _train(chain_raw, ctx, key)


def in_trial_process(res) -> bool:
    """True when a trial runs its chain in its own process (one worker, unless ``resources.ray_train``
    asks for a Ray Train ``TorchTrainer`` anyway); False: a ``TorchTrainer`` with its worker group."""
    return res.workers_per_trial == 1 and not res.ray_train


def trial_resources(scfg: SearchConfig) -> dict[str, float]:
    """What a Tune trial reserves: a simulated trial or a TorchTrainer's driver function only
    ``trial_cpus`` (Ray Train reserves its workers itself); a chain in the trial's own process also
    its one worker's CPUs and GPU fraction."""
    r = scfg.resources
    if scfg.simulate is not None or not in_trial_process(r):
        return {"cpu": r.trial_cpus}
    return {"cpu": r.trial_cpus + r.cpus_per_worker, **({"gpu": r.gpus_per_worker} if r.gpus_per_worker else {})}


def _train(chain_raw: dict, ctx: TrialContext, key: str) -> None:
    """One worker: the chain here, in the trial's process (no Ray Train start-up: a controller, a
    worker group and a placement group cost 15-25 s per trial). More: a ``TorchTrainer``."""
    from ray import tune

    res = ctx.search.resources
    trial_id = tune.get_context().get_trial_id()
    if in_trial_process(res):
        run_trial_chain(chain_raw, ctx, key, trial_id, rank=0, send=tune.report,
                        cpus=res.trial_cpus + res.cpus_per_worker)
        return

    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"chain": chain_raw, "ctx": ctx, "key": key, "trial_id": trial_id},
        scaling_config=ray.train.ScalingConfig(
            num_workers=res.workers_per_trial, use_gpu=res.gpus_per_worker > 0,
            resources_per_worker={"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if res.gpus_per_worker else {})}),
        # a name stable across restarts (from the Tune trial id) lets Train resume the same run
        run_config=ray.train.RunConfig(name=f"train-{trial_id}", storage_path=ctx.storage.path("train"),
                                       storage_filesystem=ctx.storage.fs, callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


_CACHE_COUNTS = ("stages_trained", "stages_from_cache", "cache_seconds_saved")
NODE_KEY = "node_id"  # in every report: the Ray node the reporting process runs on (results.csv's node_ip)


def node_id() -> str | None:
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def stage_cache(ctx: TrialContext, log=print):
    """The search's stage cache (``search.cache``): ``<experiment>/stage_cache/`` in the search's
    storage, or the shared ``dir``; None when disabled."""
    from itt.cache import StageCache

    c = ctx.search.cache
    if not c.enabled:
        return None
    if c.dir is not None:
        return StageCache(c.dir, max_bytes=c.max_bytes, log=log)
    st = ctx.storage
    return StageCache(st.path("stage_cache"), max_bytes=c.max_bytes, filesystem=st.fs, log=log)


def _worker_loop(loop_config: dict) -> None:
    """Inside each Ray Train worker: the chain, with Accelerate (``Accelerator(cpu=True)`` on CPU so
    gradients sync across processes); every report goes to Tune through Ray Train."""
    import ray.train

    ctx: TrialContext = loop_config["ctx"]
    rank = ray.train.get_context().get_world_rank()
    pg = ray.util.get_current_placement_group()
    if rank == 0 and pg is not None:  # the driver removes it when the trial ends (see release_train_resources)
        ctx.storage.write_text(pg.id.hex(), "trials", loop_config["trial_id"], PG_FILE)
    run_trial_chain(loop_config["chain"], ctx, loop_config["key"], loop_config["trial_id"], rank=rank,
                    send=ray.train.report, cpus=ctx.search.resources.cpus_per_worker)


def run_trial_chain(raw: dict, ctx: TrialContext, key: str, trial_id: str, *, rank: int, send, cpus: float) -> None:
    """Run one trial's chain in this process (the trial's own, or a Ray Train worker's): outputs to
    ``trials/<id>/``, every report through ``send`` (``tune.report`` or ``ray.train.report``), the final
    one recorded in ``dedup/`` (rank 0). ``cpus``: this process's share, its torch threads on CPU."""
    import torch

    from itt.chain import run_chain
    from itt.config import ChainConfig

    t_start = time.perf_counter()
    from search.cli import QUIET_ENV  # (the driver's: a trial on another node does not inherit its environment)

    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    cfg = ChainConfig.model_validate(raw)
    if cfg.hardware.num_threads is None and not torch.cuda.is_available():
        torch.set_num_threads(max(1, int(cpus)))
    from itt.train import cap_gpu_memory

    res = ctx.search.resources
    cap_gpu_memory(res.gpus_per_worker, res.cap_gpu_memory)
    os.environ["ITT_RUN_ID"] = trial_id  # the chain's ITT_STAGE_LOG lines name their trial
    st = ctx.storage
    # chain outputs: straight into the experiment directory when it is a folder; on an object store,
    # into a local scratch folder uploaded to trials/<id>/ when the chain ends
    out = Path(st.path("trials", trial_id)) if not st.remote else Path(tempfile.mkdtemp(prefix=f"itt-{trial_id}-"))
    reports: list[dict] = []

    def report(metrics: dict, step: int) -> None:
        m = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        m["step"] = ctx.search.final_step if m.get("final") else step
        if m.get("final"):  # what the trial cost besides the stages it trained: data, fine-tune(s), evaluation
            m["fixed_seconds"] = max(0.0, time.perf_counter() - t_start - float(m.get("trained_seconds", 0.0)))
        set_objectives(m, ctx)
        m[NODE_KEY] = node
        reports.append(m)
        if not m.get("final"):  # the final report waits for the chain's outputs (below)
            send(m)  # Ray Train: a barrier, every worker reports the same number of times

    log = print if rank == 0 else (lambda *a: None)
    node = node_id()  # where rank 0 trains (Train keeps rank 0's reports)
    try:
        with trial_progress(st.display, trial_id, enabled=rank == 0) as progress:  # the driver's live view
            run_chain(cfg, out_dir=out, report=report, log=log, cache=stage_cache(ctx, log=log), progress=progress)
        # The final report ends the trial (ASHA stops it at max_t: its process may go at once), so it
        # goes out only once results.json and the rest are in place, and the dedup record after them
        # (a dedup record must never point at missing files).
        if rank == 0:
            if st.remote:
                st.upload_dir(out, "trials", trial_id)
            st.write_text(json.dumps({"order": cfg.order, "reports": reports, "trial_id": trial_id}), "dedup",
                          f"{key}.json")
        send(reports[-1])
    finally:
        if st.remote:
            shutil.rmtree(out, ignore_errors=True)


PG_FILE = "placement_group"


def release_train_resources(storage: Storage, trial_id: str) -> None:
    """Remove the Ray Train worker group's placement group of a finished trial.

    With Ray 2.60, a TorchTrainer run inside a Tune function trial leaves its worker group's
    placement group CREATED after the trial ends (completed or stopped by ASHA): its CPUs stay
    reserved and later trials wait forever. The trial's rank 0 records the group; this removes it.
    A trial that ran its chain in its own process has no such group (Tune frees its own): a no-op.
    """
    try:
        pg_id = storage.read_text("trials", trial_id, PG_FILE)
    except Exception:
        return
    if not pg_id:
        return
    import ray
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    try:
        pg_id = pg_id.strip()
        state = ray.util.placement_group_table().get(pg_id, {}).get("state")
        if state not in (None, "REMOVED"):
            remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(pg_id))))
    except Exception:  # best effort: never let cleanup break the search
        pass


@lru_cache(maxsize=4)
def load_table(path: str) -> dict[str, list[dict]]:
    """Simulated objective: order (and hparams, if the table has their columns) -> rows."""
    table: dict[str, list[dict]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            table.setdefault(row["order"], []).append(row)
    return table


def simulated_rows(rows: list[dict], order: list[str], hp: dict, search_seed: int, draw: str,
                   seeds: list[int] | None = None) -> list[dict]:
    """The table rows a simulated trial of ``order`` reports the mean of: those whose hparam columns
    match the trial's values (tables without hparam columns: the first row), one per seed in seed order
    where the table has a ``seed`` column (``seeds``: the search's ``search.seeds``, when it sets them;
    else every seed of the table), and with ``draw: one_seed`` the one seed a one-seed search sees
    (fixed by the search seed and the order). bench/search_efficiency.py's offline replay uses it too."""
    match = [r for r in rows if all(_same_value(hp[k], r[k]) for k in hp if k in r)] or rows[:1]
    if "seed" not in match[0]:
        return match[:1]
    have = sorted({int(r["seed"]) for r in match})
    missing = [s for s in seeds or [] if s not in have]
    if missing:
        raise KeyError(f"simulated objective: order '{order_key(order)}' has no row for seed {missing[0]} "
                       f"(search.seeds; the table's seeds: {have})")
    seeds = sorted(seeds) if seeds else have
    match = [next(r for r in match if int(r["seed"]) == s) for s in seeds]
    if draw == "one_seed":  # what a one-seed search sees: one seed's row, not the mean
        digest = hashlib.sha256(f"{search_seed}:{order_key(order)}".encode()).hexdigest()
        match = [match[int(digest, 16) % len(match)]]
    return match


def _same_value(value, cell) -> bool:
    """A trial's hyperparameter value and a table cell: the same text, or the same number however written
    (2e-3, 0.002, 0.0020)."""
    if str(value) == cell:
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return float(value) == float(cell)
    except (TypeError, ValueError):
        return False


def config_hparams(row: dict, chain_raw: dict) -> dict:
    """A table's hyperparameter columns (dotted config keys, e.g. ``train.lr``) that the chain config
    itself sets: a simulated trial of a search that does not search them (``itt confirm`` fixes the best
    trial's in the config) reads the rows of the config's values, as a real chain would train with them."""
    out = {}
    for col in (c for c in row if "." in c):
        node = chain_raw
        for part in col.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None and not isinstance(node, dict):
            out[col] = node
    return out


def _simulated(order: list[str], hp: dict, ctx: TrialContext) -> None:
    """Probe and final scores from the table. Optional columns make it per seed and per language:
    ``seed`` (one row per seed: reports are means over the seeds, as a real chain's), ``test_<lang>``
    (or ``final_<lang>``) and ``dev_<lang>`` (zero-shot scores), ``perturbation``. With per-language
    columns the trial writes ``trials/<id>/results.json`` in a chain's schema (what ``itt report`` reads).
    ``simulate.stage_seconds`` / ``fixed_seconds``: the seconds each stage and the rest of a trial report
    having cost (not slept), as a real trial measures them, for the searcher's cost model."""
    from ray import tune

    sim = ctx.search.simulate
    rows = load_table(sim.table).get(order_key(order))
    if not rows:
        raise KeyError(f"simulated objective: order '{order_key(order)}' is not in {ctx.search.simulate.table}")
    hp = {**config_hparams(rows[0], ctx.chain_raw), **hp}
    match = simulated_rows(rows, order, hp, ctx.search.seed, ctx.search.simulate.draw, seeds=ctx.search.seeds)
    mean = lambda col: sum(float(r[col]) for r in match) / len(match)  # noqa: E731
    m = ctx.metric
    k = len(order) + 1
    row_figs = lambda col: {f: mean(f"{col}_{f}") for f in ("worst", "std", "transfer_gap") if f"{col}_{f}" in match[0]  # noqa: E731
                            and match[0][f"{col}_{f}"] not in (None, "")}
    # (a trial that takes no time shows no progress: the hub lookup and the sender thread cost ~4 ms a trial)
    with trial_progress(ctx.storage.display, tune.get_context().get_trial_id(),
                        enabled=ctx.search.simulate.seconds_per_stage > 0) as progress:
        for i in range(1, k):
            if progress is not None:  # the stages a real chain would be in, for the live view
                progress({"phase": Phase.STAGE, "stage": i, "stages": k, "task": order[i - 1]})
            time.sleep(ctx.search.simulate.seconds_per_stage)
            v = mean(f"probe_{i}")
            # optional probe_<i>_worst / _std / _transfer_gap columns: the other figures of the probe
            probe = {"step": i, f"probe_{m}_mean": v, **{f"probe_{m}_{f}": x for f, x in row_figs(f"probe_{i}").items()}}
            if order[i - 1] in sim.stage_seconds:
                probe["stage_seconds"] = sim.stage_seconds[order[i - 1]]
            tune.report({**set_objectives(probe, ctx, fallback=v), "simulated": 1, NODE_KEY: node_id()})
    v = mean("final")
    final = {"step": ctx.search.final_step, f"dev_{m}_mean": v, "final": 1, "simulated": 1, NODE_KEY: node_id()}
    if sim.fixed_seconds is not None:
        final["fixed_seconds"] = sim.fixed_seconds
    res = _simulated_results(order, match, m)
    if res is not None:
        for fig, val in _flat_means(res, m).items():
            final.setdefault(fig, val)
        ctx.storage.write_text(json.dumps(res, indent=1), "trials", tune.get_context().get_trial_id(), "results.json")
    # (a table's score is its `final` column whatever search.metric names, unless the table has the figure)
    set_objectives(final, ctx, fallback=v)
    missing = [n for n in ctx.search.objectives if ctx.search.multi_objective and final.get(f"objective_{n}") is None]
    if missing:
        raise KeyError(f"simulated objective: {ctx.search.simulate.table} gives no '{missing[0]}' for order "
                       f"'{order_key(order)}' (a multi-objective search needs dev_<language> columns)")
    tune.report(final)


def _simulated_results(order: list[str], rows: list[dict], metric: str) -> dict | None:
    """A chain's results.json (per seed: per-language scores and their summary, probes, perturbation)
    from per-language table columns; None when the table has none."""
    from itt import metrics as M

    summary = {"", "mean", "std", "worst", "transfer_gap"}  # e.g. a table's test_mean column is no language
    cols = {split: {c.split("_", 1)[1]: c for c in rows[0] if c.startswith(prefix) and c.split("_", 1)[1] not in summary}
            for split, prefix in (("test", "test_"), ("dev", "dev_"))}
    if not cols["test"]:
        cols["test"] = {c.split("_", 1)[1]: c for c in rows[0] if c.startswith("final_") and c.split("_", 1)[1] not in summary}
    if not cols["test"]:
        return None
    per_seed = {}
    for i, r in enumerate(rows):
        seed = r.get("seed", str(i))
        res: dict = {}
        for split, langs in cols.items():
            if langs:
                per = {lang: float(r[c]) for lang, c in langs.items()}
                res[split] = {"per_language": {lang: {metric: v} for lang, v in per.items()},
                              "summary": {metric: M.summary(per)}}
        res["stages"] = [{"task": t, "probe": {f"{metric}_mean": float(r[f"probe_{k}"])}}
                         for k, t in enumerate(order, 1) if r.get(f"probe_{k}") not in (None, "")]
        if r.get("perturbation") not in (None, ""):
            res["perturbation"] = {"metric": metric, "score": float(r["perturbation"])}
        per_seed[str(seed)] = res
    langs = list(cols["test"])
    return {"name": "simulated", "simulated": True, "setting": "IF" if order else "F", "order": list(order),
            "languages": langs, "metric": metric, "metrics": [metric], "seeds": per_seed}


def _flat_means(res: dict, metric: str) -> dict:
    """The final report's figures: means over seeds (as a real chain reports them)."""
    seeds = list(res["seeds"].values())
    out: dict = {}
    for split in ("dev", "test"):
        if split not in seeds[0]:
            continue
        for lang in seeds[0][split]["per_language"]:
            out[f"{split}_{metric}_{lang}"] = sum(s[split]["per_language"][lang][metric] for s in seeds) / len(seeds)
        for fig in ("mean", "std", "worst", "transfer_gap"):
            vals = [s[split]["summary"][metric][fig] for s in seeds]
            if all(v is not None for v in vals):
                out[f"{split}_{metric}_{fig}"] = sum(vals) / len(vals)
    if all("perturbation" in s for s in seeds):
        out["perturbation_score"] = sum(s["perturbation"]["score"] for s in seeds) / len(seeds)
    return out
