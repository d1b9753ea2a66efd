"""How much compute does each search strategy spend before it first finds the best order of a table?

Every search goes through ``search.runner.run_search`` (Ray Tune + Optuna + ASHA, exactly as ``itt
search`` runs) on a bench config whose ``search.simulate.table`` makes each trial report its probes
and final score from a CSV table instead of training:

    python bench/search_efficiency.py                         # toy3 + planted, 10 seeds, 6 strategies (~10 min)
    # what produced bench/data/search_efficiency.json and .log (~30 min on 2 idle cores):
    python bench/search_efficiency.py --tables planted,toy3 --seeds 30 --json a.json \
        --strategies exhaustive,random,tpe,tpe_asha_g2,tpe_asha_g3
    python bench/search_efficiency.py --tables planted,toy3 --seeds 10 --no-enum --json b.json --strategies tpe_asha,gp,gp_asha_g3
    python bench/search_efficiency.py --tables planted,toy3 --seeds 10 --no-enum --json c.json --strategies gp_asha_g2
    python bench/search_efficiency.py --tables planted,toy3 --seeds 10 --no-enum --json d.json --strategies tpe_asha_b3,tpe_asha_g2_b2
    python bench/search_efficiency.py --merge a.json b.json c.json d.json --json bench/data/search_efficiency.json
    python bench/search_efficiency.py --tables planted --seeds 3 --strategies exhaustive,tpe,tpe_asha_g2
    python bench/search_efficiency.py --no-reuse-actors       # Ray's defaults (a new process per trial: slow)

Tables (``--tables``): ``toy3`` (bench/data/toy_3of5_s3.csv: all 60 orders of 3 of 5 toy tasks,
real chains, each order the mean of 3 seeds; bench/make_toy_table.py, whose docstring shows the order
effect is real: ICC 0.82), ``planted`` (bench/data/planted.csv: 120 orders, a planted structure;
bench/make_planted_table.py), ``toy`` (the older one-seed toy_3of5.csv, kept as the example of a table
without searchable structure), or a path to a sim config.

Strategies (``--strategies``): ``exhaustive`` (the library's grid, every order once, with its order
shuffled per seed: the shuffled list is passed as ``search.seed_points.orders``, which the grid puts
first, so this is the library's own exhaustive path), ``random`` (Optuna's RandomSampler, with
replacement), ``tpe`` (Optuna TPE), ``tpe_asha`` (TPE + ASHA, grace 1, reduction factor 2, the
probes as its signal; set explicitly: no longer the library's default), ``tpe_asha_g2`` (grace period 2: the first rung is after stage 2). On
request: ``random_asha``; ``tpe_asha_g3`` (grace 3: one rung, after the last intermediate stage, so
ASHA only saves final fine-tunes; the library's default since this benchmark); ``tpe_mv`` / ``tpe_mv_asha_g2`` (Optuna's TPE with
``multivariate=True``: one joint density over the Lehmer digits instead of one per digit); ``tpe_dedup`` / ``tpe_asha_dedup`` / ``random_dedup`` (the library's searcher
wrapped in ``DedupSearch`` below, a prototype of a library fix: repeats never become trials);
``tpe_asha_dedup_pruned`` (stopped trials told to Optuna as PRUNED, not COMPLETE with their probe
score); ``tpe_asha_b3`` / ``tpe_asha_g2_b2`` (ASHA with 3 / 2 brackets, grace 1 / 2); ``gp``,
``gp_asha_g2``, ``gp_asha_g3`` (Optuna's GP sampler). One row more, ``exhaustive_enum``, is the library's grid in its plain enumeration order
(deterministic, one run). Exhaustive rows aside, ratios are to the median of the shuffled exhaustive
runs (``ratio_to_exhaustive``; 10 seeds make that denominator noisy) and to its expectation
(k+1)(N+1)/2 (``ratio_to_exh_expected``). ``median_cost_top3``: the same count, to the first
completed order among the table's best three.

``cost_cache`` / ``median_cost_cache`` / ``ratio_cache``: the same count as a search with the stage
cache (issue 6) would spend it: every DISTINCT prefix trained once (an order whose prefix an earlier
trial trained pays only its new stages), the final fine-tune always paid; exhaustive gets the same
treatment, and ``ratio_cache`` divides by exhaustive's cached median. Reported beside the plain
count, never instead of it.

Compute = stage-trainings, summed over trials in trial START order (results.csv order) up to and
including the first trial of the table's best order that completes: a completed order of length k
costs k intermediate stages + 1 final fine-tune; a trial ASHA stopped after s stages costs s; a
trial whose order completed in an EARLIER-started trial costs 0 (the real path replays it from
``dedup/``; the simulated path does not dedup, so this is applied here). A search that does not
find the best within ``--budget`` x (number of orders) trials counts as not found, with the compute
it spent (a lower bound): the medians then treat it as +inf.

Changes to Ray's setup made here from outside the library, for speed only (none changes which trials
run before the best order completes, or what they report): ``TuneConfig(reuse_actors=True)`` (Ray's
default starts a new worker process per trial: ~2 s each on a loaded 2-core machine);
``RunConfig(stop=..., callbacks=[...])`` with a stopper that ends the experiment once the best order
has completed (the measurement needs nothing after it); both monkeypatched onto ``ray.tune`` while a
search runs; and ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`` (no per-trial result.json/progress.csv/
TensorBoard files); ``search.tracking.enabled=false`` (no MLflow runs). Trials run one at a time by default (``--concurrency 1``): simulated trials take
no time, so more concurrency only makes Tune's loop slower (120 trials: 6 s at 1, 28 s at 4) and the
proposals depend on timing; a real search proposes with less information than this, so read the
searcher numbers as the sequential best case.

Results (bench/data/search_efficiency.json and .log; 30 seeds for the first five strategies, 10 for
the others; cost = median stage-trainings to the best order, IQR; ratio = median / median of the 30
shuffled exhaustive runs; "exp." = / its expectation (k+1)(N+1)/2 (planted 242, toy3 122); "cached" =
the stage-cache count and its ratio; found = runs that reached the best; "top3 exp." = cost to any of
the best three, / its expectation)::

    table    strategy         found  cost (IQR)        ratio  exp.   cached (IQR)    ratio  top3 exp.
    planted  exhaustive       30/30  280 (152-380)      1.00  1.16   175 (103-226)   1.00   1.16
    (120)    random           30/30  314 (116-428)      1.12  1.30   192 (88-250)    1.10   0.76
             tpe              30/30  106 (60-148)       0.38  0.44    78 (49-106)    0.44   0.40
             tpe_asha (g1)     0/10  inf                 inf   inf   inf              inf   0.38
             tpe_asha_g2      30/30   71 (50-98)        0.25  0.29    51 (37-67)     0.29   0.31
             tpe_asha_g3      30/30  102 (62-132)       0.37  0.42    74 (48-89)     0.42   0.36
             gp               10/10   64 (56-88)        0.23  0.26    51 (46-66)     0.29   0.46
             gp_asha_g2       10/10  135 (58-224)       0.48  0.56    82 (46-108)    0.47   0.50
             gp_asha_g3       10/10   85 (70-182)       0.30  0.35    61 (52-113)    0.35   0.59
             tpe_asha_b3       2/10  inf                 inf   inf   inf              inf   0.48
             tpe_asha_g2_b2   10/10   78 (50-102)       0.28  0.32    56 (39-73)     0.32   0.43
    toy3     exhaustive       30/30   98 (44-164)       1.00  0.80    70 (37-106)    1.00   0.59
    (60)     random           30/30  122 (64-168)       1.24  1.00    84 (50-109)    1.20   1.02
             tpe              30/30   74 (48-96)        0.76  0.61    56 (39-69)     0.81   0.79
             tpe_asha (g1)     1/10  inf                 inf   inf   inf              inf   1.22
             tpe_asha_g2       4/30  inf                 inf   inf   inf              inf   1.07
             tpe_asha_g3      20/30   88 (62-inf)       0.89  0.72    60 (47-inf)    0.86   0.81
             gp               10/10   64 (44-92)        0.65  0.52    50 (37-65)     0.71   0.89
             gp_asha_g2        4/10  inf                 inf   inf   inf              inf   1.10
             gp_asha_g3        9/10   86 (65-117)       0.88  0.70    58 (46-76)     0.83   1.34
             tpe_asha_b3       1/10  inf                 inf   inf   inf              inf   1.73
             tpe_asha_g2_b2    4/10  inf                 inf   inf   inf              inf   1.03

(An earlier 10-seed run of the same code read planted TPE at 0.23 and TPE+ASHA grace 3 at 0.27: 10
seeds were lucky for TPE; a plain-Optuna replay of TPE on planted over 40 seeds agrees with the 30-seed
figure, 0.46 of the expectation. ``tpe_mv`` / ``tpe_mv_asha_g2`` equal ``tpe`` / ``tpe_asha_g2`` seed for
seed: Optuna 5's TPESampler is already multivariate for one objective.)

The goal, TPE+ASHA at most 25% of exhaustive, is met only at its edge and only on planted: grace 2
spends 71 stage-trainings, 0.254 of the exhaustive median (0.29 of its expectation); on toy3 no
TPE+ASHA setting comes near it. Why:

* Early probes rank orders poorly, so ASHA's early rungs stop the best order: planted's best order
  has the 101st stage-1 probe of 120, toy3's the 34th stage-2 probe of 60; Spearman of prefix probe
  vs final 0.26-0.28 after stage 1 against 0.75-0.90 after stage 3. A stopped order is never run
  again (the same configuration is not trained twice), so grace 1 finds planted's best in 0 of 10
  searches, and on toy3 grace 2 in 4 of 30 and even grace 3 misses it in 10 of 30.
* Hyperband's hedge against misleading early rungs, several ASHA brackets (``tpe_asha_b3``: grace 1,
  3 brackets; ``tpe_asha_g2_b2``), does not rescue it: most trials still land in the aggressive
  bracket (Ray's weights e^(rungs - max)), and one stop of the best order is enough.
* Grace 3 (the library default: one rung, after the last intermediate stage) keeps the best order
  reachable on planted but saves at most the final fine-tune of a stopped trial, one stage-training
  in four, so it cannot go far below TPE alone (0.37 vs 0.38).
* TPE itself needs about 26 distinct orders of 120 on planted (0.38-0.44); Optuna's GP sampler
  needs 16 (0.23), but GP with ASHA does worse than GP alone for the reasons above.
* toy3's top is flat: its ten best orders lie within 0.038 accuracy (below one seed's sd, 0.055), the
  best two 0.1 standard errors apart, bootstrap P(best) = 0.33 (bench/make_toy_table.py). A search
  that learns the structure (toy_topic anywhere is worth +0.1) still has to hit one specific member of
  a tie: no searcher can rank it first without evaluating the group. The older one-seed toy table had
  no structure at all: random 1.18, TPE 1.22, TPE+ASHA 1.43 (commit 3fc45af).

Tried and measured without a gain (quick plain-Optuna replays of the same tables outside Ray, 30-40
seeds; those scripts are not kept): fewer TPE startup trials (5, 3), ``n_ei_candidates`` 100-200,
``prior_weight``/``gamma`` changes, other bijective encodings of an order (Lehmer digits last position
first; position-conditional categoricals), a non-bijective random-key encoding (1.03, worse), telling
Optuna a stopped trial's probe shifted to the final scale instead of PRUNED (identical proposals: TPE
uses only the good/bad split), and ASHA rungs that count a shared prefix once.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data"
TABLES = {"toy3": DATA / "sim_toy_3of5_s3.yaml", "planted": DATA / "sim_planted.yaml", "toy": DATA / "sim_toy_3of5.yaml"}
def _plain(searcher: str) -> list[str]:
    return [f"search.searcher={searcher}", "search.scheduler.type=none"]


def _asha(searcher: str, grace: int, rf: int = 2, brackets: int = 1) -> list[str]:
    return [f"search.searcher={searcher}", "search.scheduler.type=asha", f"search.scheduler.grace_period={grace}",
            f"search.scheduler.reduction_factor={rf}"] + ([f"search.scheduler.brackets={brackets}"] if brackets > 1 else [])


STRATEGIES = {
    "exhaustive": _plain("exhaustive"),
    "exhaustive_enum": _plain("exhaustive"),
    "random": _plain("random"),
    "tpe": _plain("tpe"),
    "tpe_asha": _asha("tpe", 1),
    "random_asha": _asha("random", 1),
    "tpe_asha_g2": _asha("tpe", 2),
    "tpe_asha_rf3": _asha("tpe", 1, rf=3),
    "tpe_asha_g3": _asha("tpe", 3),
    "tpe_asha_b3": _asha("tpe", 1, brackets=3),
    "tpe_asha_g2_b2": _asha("tpe", 2, brackets=2),
    "gp": _plain("gp"),
    "gp_asha_g2": _asha("gp", 2),
    "gp_asha_g3": _asha("gp", 3),
}
# strategies run with optuna's TPESampler built with extra keyword arguments (patched in while a search runs)
TPE_KW = {"tpe_mv": ("tpe", {"multivariate": True}),
          "tpe_mv_asha_g2": ("tpe_asha_g2", {"multivariate": True}),
          "tpe_mv_asha": ("tpe_asha", {"multivariate": True})}
STRATEGIES.update({k: STRATEGIES[base] for k, (base, _) in TPE_KW.items()})
DEFAULT_STRATEGIES = ["exhaustive", "random", "tpe", "tpe_asha", "tpe_asha_g2", "tpe_asha_g3"]
TOP_K = 3  # a second, softer target: compute until ANY of the table's top-3 orders completes


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default="toy3,planted", help=f"comma list of {sorted(TABLES)} or config paths")
    ap.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES), help=f"comma list of {sorted(STRATEGIES)}")
    ap.add_argument("--seeds", type=int, default=10, help="searcher seeds per (table, strategy)")
    ap.add_argument("--budget", type=float, default=4.0, help="trial cap of non-exhaustive searches, x orders")
    ap.add_argument("--concurrency", type=int, default=1,
                    help="search.resources.max_concurrent (1: sequential, deterministic, ~4x faster than 4)")
    ap.add_argument("--num-cpus", type=int, default=8, help="ray.init(num_cpus=...)")
    ap.add_argument("--no-reuse-actors", action="store_true", help="Ray's default: a new actor per trial")
    ap.add_argument("--no-early-stop", action="store_true", help="run every search to its trial cap")
    ap.add_argument("--tune-loggers", action="store_true",
                    help="keep Tune's per-trial JSON/CSV/TensorBoard loggers (3x slower per trial; results.csv "
                         "is the library's own and is written either way)")
    ap.add_argument("--no-enum", action="store_true", help="skip the exhaustive_enum reference row")
    ap.add_argument("--json", default=None, help="write the table and every run to this file")
    ap.add_argument("--keep", default=None, help="keep experiment directories under this folder")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="no search: print the tables of these --json files as one (and write it to --json)")
    return ap.parse_args(argv)


# ------------------------------------------------------------------ the table's truth
def table_info(config: Path) -> dict:
    from search.config import load_search

    scfg, _, _ = load_search(config)
    with open(scfg.simulate.table, newline="") as f:
        rows = list(csv.DictReader(f))
    space = scfg.space()
    keys = [">".join(o) for o in space.orders()]
    final = {r["order"]: float(r["final"]) for r in rows}
    missing = [k for k in keys if k not in final]
    if missing:
        raise SystemExit(f"{scfg.simulate.table}: {len(missing)} of {len(keys)} orders missing (e.g. {missing[0]})")
    ranked = sorted(keys, key=lambda k: -final[k])
    best = ranked[0]
    return {"config": str(config), "table": scfg.simulate.table, "orders": keys, "n": len(keys), "best": best,
            "best_score": final[best], "gap_to_2nd": final[best] - final[ranked[1]], "length": max(scfg.lengths),
            "top": ranked[:TOP_K], "top_scores": [final[k] for k in ranked[:TOP_K]]}


# ------------------------------------------------------------------ Ray setup from outside the library
class BestFound:
    """Ends the experiment once a trial of ``best`` has COMPLETED (its on_trial_complete has run, so the
    library's ResultsWriter, an earlier callback, has already written it to results.csv)."""

    def __init__(self, best: str, space):
        self.best, self.space, self.found = best, space, False

    def trial_complete(self, trial) -> None:
        from search.trial import split_config

        last = trial.last_result or {}
        if last.get("final") and ">".join(split_config(trial.config, self.space)[0]) == self.best:
            self.found = True


@contextlib.contextmanager
def patched_tune(reuse_actors: bool, best: BestFound | None):
    """``ray.tune.TuneConfig(reuse_actors=True)`` and ``RunConfig(stop=, callbacks=+)`` while a search runs."""
    from ray import tune
    from ray.tune import Callback, Stopper

    orig_tc, orig_rc = tune.TuneConfig, tune.RunConfig

    class Marker(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            best.trial_complete(trial)

    class Stop(Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return best.found

    class tc(orig_tc):  # subclasses: Ray checks isinstance against the names it imported
        def __init__(self, *a, **kw):
            if reuse_actors:
                kw.setdefault("reuse_actors", True)
            super().__init__(*a, **kw)

    class rc(orig_rc):
        def __init__(self, *a, **kw):
            if best is not None:
                kw.setdefault("stop", Stop())
                kw["callbacks"] = [*(kw.get("callbacks") or []), Marker()]
            super().__init__(*a, **kw)

    tune.TuneConfig, tune.RunConfig = tc, rc
    try:
        yield
    finally:
        tune.TuneConfig, tune.RunConfig = orig_tc, orig_rc


@contextlib.contextmanager
def patched_tpe(kwargs: dict):
    """``optuna.samplers.TPESampler`` with ``kwargs`` added while a search runs (search/runner.py builds
    ``TPESampler(seed=...)`` in the driver process, where the searcher lives)."""
    import optuna

    orig = optuna.samplers.TPESampler
    if kwargs:
        optuna.samplers.TPESampler = lambda *a, **kw: orig(*a, **{**kwargs, **kw})
    try:
        yield
    finally:
        optuna.samplers.TPESampler = orig


# ------------------------------------------------------------------ one search and its cost
def compute_to_best(results_csv: Path, best: str, top: list[str]) -> dict:
    """Stage-trainings in trial start order until the first completed trial of ``best`` (and of any
    order in ``top``)."""
    with open(results_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    done: set[str] = set()
    prefixes: set[tuple[str, ...]] = set()  # with a stage cache: each distinct prefix is trained once
    cost = cost_cache = trials = replays = truncated = 0
    found = False
    cost_top = None
    for r in rows:  # ResultsWriter keeps rows in on_trial_start order
        trials += 1
        completed = r["status"] == "completed"
        if r["order"] in done:
            replays += 1  # the real path replays a finished identical trial from dedup/: no training
        else:
            cost += int(r["stages_completed"] or 0) + (1 if completed else 0)
            truncated += r["status"] == "running"  # cut by the experiment stop (its cost is a lower bound)
            o = tuple(r["order"].split(">"))
            new = {o[:i] for i in range(1, int(r["stages_completed"] or 0) + 1)} - prefixes
            cost_cache += len(new) + (1 if completed else 0)  # the final fine-tune is never shared
            prefixes |= new
        if completed:
            done.add(r["order"])
            if cost_top is None and r["order"] in top:
                cost_top = cost
            if r["order"] == best:
                found = True
                break
    return {"found": found, "cost": cost, "cost_cache": cost_cache, "cost_top": cost_top, "trials": trials, "replays": replays,
            "stopped": sum(r["status"] == "stopped" for r in rows[:trials]), "truncated": truncated,
            "unique_orders": len({r["order"] for r in rows[:trials]}), "total_trials": len(rows)}


def one_search(config: Path, strategy: str, seed: int, info: dict, args, storage: str) -> dict:
    from search.runner import run_search
    from search.config import load_search

    n = info["n"]
    over = list(STRATEGIES[strategy]) + [f"search.seed={seed}", "search.tracking.enabled=false",
                                         f"search.resources.max_concurrent={args.concurrency}"]
    if strategy == "exhaustive":
        orders = list(info["orders"])
        random.Random(seed).shuffle(orders)  # the grid runs seed points first: a shuffled exhaustive search
        over.append("search.seed_points.orders=[" + ",".join(orders) + "]")
    elif strategy == "exhaustive_enum":
        pass  # the grid in the space's enumeration order
    else:
        over.append(f"search.num_samples={int(math.ceil(args.budget * n))}")
    scfg, _, _ = load_search(config, over)
    stopper = None if args.no_early_stop else BestFound(info["best"], scfg.space())
    name = f"{Path(config).stem}_{strategy}_s{seed}"
    t0 = time.perf_counter()
    with patched_tune(not args.no_reuse_actors, stopper), patched_tpe(TPE_KW.get(strategy, (None, {}))[1]):
        exp = run_search(str(config), name=name, storage=storage, overrides=over, log=lambda *a: None)
    wall = time.perf_counter() - t0
    res = compute_to_best(exp / "results.csv", info["best"], info["top"])
    res.update({"strategy": strategy, "seed": seed, "wall_s": round(wall, 2)})
    if not args.keep:
        shutil.rmtree(exp, ignore_errors=True)
    return res


# ------------------------------------------------------------------ summary
def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize(info: dict, runs: list[dict]) -> list[dict]:
    full = info["n"] * (info["length"] + 1)  # every order once, to the end
    by: dict[str, list[dict]] = {}
    for r in runs:
        by.setdefault(r["strategy"], []).append(r)

    def costs(rs, key="cost"):
        return [r[key] if r["found"] or (key == "cost_top" and r[key] is not None) else math.inf for r in rs]

    def q(c, f):  # the f-quantile of a sorted list (nearest rank), as the q25/q75 columns
        return c[min(int(f * len(c)), len(c) - 1)]

    ex = by.get("exhaustive")
    ex_med = _median(costs(ex)) if ex else math.nan
    ex_top = _median(costs(ex, "cost_top")) if ex else math.nan
    ex_cache = _median(costs(ex, "cost_cache")) if ex else math.nan
    out = []
    for s, rs in by.items():
        c = sorted(costs(rs))
        med, med_top = _median(c), _median(costs(rs, "cost_top"))
        cc = sorted(costs(rs, "cost_cache"))
        out.append({"table": Path(info["table"]).name, "strategy": s, "runs": len(rs),
                    "found": sum(r["found"] for r in rs), "median_cost": med,
                    "q25": c[len(c) // 4], "q75": c[(3 * len(c)) // 4],
                    "ratio_to_exhaustive": med / ex_med if ex else math.nan,
                    # the shuffled grid's expected cost, (k+1) * (N+1) / 2: a denominator without seed noise
                    "ratio_to_exh_expected": med / ((info["length"] + 1) * (info["n"] + 1) / 2),
                    "of_full_grid": med / full,
                    # the same with a stage cache (issue 6): each distinct prefix trained once, finals never shared
                    "median_cost_cache": _median(cc), "q25_cache": q(cc, 0.25), "q75_cache": q(cc, 0.75),
                    "ratio_cache": _median(cc) / ex_cache if ex else math.nan,
                    f"median_cost_top{TOP_K}": med_top,
                    f"ratio_top{TOP_K}": med_top / ex_top if ex else math.nan,
                    # a shuffled grid's expected cost to the first of the top K: (k+1) * (N+1) / (K+1)
                    f"ratio_top{TOP_K}_expected": med_top / ((info["length"] + 1) * (info["n"] + 1) / (TOP_K + 1)),
                    "median_trials": _median([r["trials"] for r in rs]),
                    "median_stopped": _median([r["stopped"] for r in rs]),
                    "median_wall_s": _median([r["wall_s"] for r in rs])})
    return out


def _finite(x):
    """inf/nan -> None, so the JSON is strict (inf = not found)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def fmt(v) -> str:
    if isinstance(v, float):
        return "inf" if math.isinf(v) else ("nan" if math.isnan(v) else f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}")
    return str(v)


def print_table(rows: list[dict]) -> None:
    cols = list(rows[0])
    cells = [[fmt(r[c]) for c in cols] for r in rows]
    w = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w[i]) for i, c in enumerate(cols)))
    for x in cells:
        print("  ".join(v.rjust(w[i]) for i, v in enumerate(x)))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.merge:  # runs of separate invocations (e.g. one per table, in parallel) as one table
        blobs = [json.loads(Path(f).read_text()) for f in args.merge]
        tables: list[dict] = []  # the summaries are recomputed from every run; one table's runs are pooled
        for t in (t for b in blobs for t in b["tables"]):  # across files, so every ratio has its exhaustive runs
            same = next((u for u in tables if u["table"] == t["table"]), None)
            if same is None:
                tables.append({**t, "runs": list(t["runs"])})
            else:
                same["runs"] += t["runs"]
        for t in tables:
            for r in t["runs"]:
                r["cost_cache"] = r.get("cost_cache", r["cost"])  # (files written before that column)
        merged = {"summary": [row for t in tables for row in summarize(t, t["runs"])], "tables": tables,
                  "args": [b["args"] for b in blobs], "seconds": sum(b["seconds"] for b in blobs), "merged_from": args.merge}
        print_table([{k: (math.inf if v is None and k != "table" else v) for k, v in r.items()} for r in merged["summary"]])
        if args.json:
            Path(args.json).write_text(json.dumps(merged, indent=2, default=str))
        return 0
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not args.tune_loggers:
        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    import ray

    configs = [TABLES.get(t, Path(t)) for t in args.tables.split(",") if t]
    strategies = [s for s in args.strategies.split(",") if s]
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise SystemExit(f"unknown strategy {bad[0]} (known: {', '.join(STRATEGIES)})")
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    storage = args.keep or tempfile.mkdtemp(prefix="itt_search_eff_")
    t_all = time.perf_counter()
    summary, detail = [], []
    try:
        for config in configs:
            info = table_info(config)
            print(f"== {Path(info['table']).name}: {info['n']} orders, best {info['best']} ({info['best_score']:.4f}, "
                  f"gap to 2nd {info['gap_to_2nd']:.4f}); full grid = {info['n'] * (info['length'] + 1)} stage-trainings",
                  flush=True)
            runs = []
            if not args.no_enum and "exhaustive" in strategies:
                r = one_search(config, "exhaustive_enum", 0, info, args, storage)
                print(f"  exhaustive_enum           cost {r['cost']:4d} (top{TOP_K} {r['cost_top']})  trials {r['trials']:4d}  "
                      f"{r['wall_s']:.1f}s", flush=True)
                runs.append(r)
            for s in strategies:
                for seed in range(args.seeds):
                    r = one_search(config, s, seed, info, args, storage)
                    runs.append(r)
                    print(f"  {s:14s} seed {seed:2d}  {'found ' if r['found'] else 'MISSED'}  cost {r['cost']:4d} "
                          f"(cached {r['cost_cache']:4d}) "
                          f"(top{TOP_K} {r['cost_top'] if r['cost_top'] is not None else '-'})  trials {r['trials']:4d} "
                          f"(unique {r['unique_orders']}, replays {r['replays']}, stopped {r['stopped']}, "
                          f"cut {r['truncated']})  {r['wall_s']:.1f}s", flush=True)
            summary += summarize(info, runs)
            detail.append({**{k: v for k, v in info.items() if k != "orders"}, "runs": runs})
    finally:
        ray.shutdown()
        if not args.keep:
            shutil.rmtree(storage, ignore_errors=True)
    total = time.perf_counter() - t_all
    print()
    print_table(summary)
    print(f"\ntotal {total:.0f}s; reuse_actors={not args.no_reuse_actors}, early stop={not args.no_early_stop}, "
          f"concurrency {args.concurrency}, Tune loggers {'on' if args.tune_loggers else 'off'}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        blob = {"summary": summary, "tables": detail, "args": vars(args), "seconds": total}
        Path(args.json).write_text(json.dumps(_finite(blob), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
