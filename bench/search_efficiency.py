"""How good is the order a search recommends, for how much compute? Regret curves per table and strategy.

Every search goes through ``search.runner.run_search`` (Ray Tune + Optuna + the scheduler, exactly as
``itt search`` runs it) on a bench config whose ``search.simulate.table`` makes each trial report its
probes and final score from a CSV table instead of training:

    python bench/search_efficiency.py --seeds 3                                  # a quick look (~15 min)
    python bench/search_efficiency.py --seeds 30 --json bench/data/search_efficiency.json \
        --plot bench/data/search_efficiency.png                                   # the committed figures
    python bench/search_efficiency.py --merge a.json b.jsonl --json all.json --plot all.png   # pool runs
    (with --json X, every run is also appended to Xl as it ends: a run cut short keeps what it ran)
    python bench/search_efficiency.py --overhead                                  # proposal time only
    python bench/search_efficiency.py --offline --seeds 30 --strategies order_bo,random   # the same accounting
        without Ray: the sampler in an Optuna study, trials answered from the table in-process
    python bench/search_efficiency.py --check-offline --seeds 3                   # the Ray path and the offline
        replay give the same trials, seed for seed (concurrency 1, no scheduler)

Tables (``--tables``; ``mode`` = how a trial reads a table with one row per seed):
``toy3`` (bench/data/toy_3of5_s3_runs.csv: 60 orders of 3 of 5 toy tasks, real chains, 3 seeds each;
bench/make_toy_table.py), ``planted`` (bench/data/planted.csv: 120 orders, one row each, a planted
additive + precedence structure; bench/make_planted_table.py), ``curriculum`` (bench/data/curriculum.csv:
259 orders of lengths 1-3 of 7 tasks, 3 seeds, recency, easy-to-hard steps, interfering neighbours and an
enabler task; bench/make_curriculum_table.py). ``toy3:noisy`` and ``curriculum:noisy``: each trial reads
ONE seed's row (``search.simulate.draw: one_seed``), as a one-seed search sees it; planted has no seeds.

Strategies (``--strategies``): ``exhaustive`` (every order once, shuffled per seed), ``random`` (uniform over the
orders not run yet, search/searchers/uniform_random.py), ``tpe``, ``gp`` (Optuna's TPE and GP samplers over
Lehmer digits; a repeat they propose is told its earlier score and not run, as the search's searcher does), ``tpe_asha`` (TPE + ASHA, the default before this
benchmark), ``order_bo`` (the order-aware, cost-aware GP searcher, search/searchers/order_bo.py, no
scheduler), ``order_bo_asha`` (with ASHA; stopped orders continue when proposed again: promotion),
``order_bo_asha_nopromo`` (ASHA stops are final), ``order_bo_nocost`` / ``order_bo_noprobe`` (ablations),
``order_bo_end`` / ``order_bo_start`` (one GP instead of the default's two: ``search.order_bo.from_start``
``never``, the default before 2026-12-06, or ``always``),
``order_bo_prior`` (``search.prior: transferability``) and ``order_bo_prior_seeds`` (the prior's best orders
as seed points; bench/transfer_prior.py runs both).

Compute = stage-trainings with the stage cache, in trial start order: a trial pays each prefix stage no
earlier trial trained, plus its final fine-tune if it completes (a stopped trial pays no final). The unit
is exhaustive's cached compute: every distinct prefix once + one final per order. With ``--costs logu10``
a stage of each task costs its own seconds (log-uniform over [1, 10], drawn per seed; a final the median
task's), the simulated trials report them as real ones measure them, and compute is counted in seconds:
``order_bo`` counts stages as if they cost the same (``search.order_bo.cost: stages``, the default),
``order_bo_measured`` prices orders at the seconds reported (``cost: measured``). Searches run one trial
at a time (``--concurrency 1``: the proposals do not depend on timing) until they have spent 50% of it.

Figures per (table, strategy), median and IQR over seeds:
* ``regret@f``: normalized regret (best - value) / (best - median order) of the RECOMMENDED order after
  spending a fraction f of exhaustive's compute; values are the table's means over seeds (the truth).
  In mean mode a trial's score is that mean, so the recommended order is the best observed one, for
  every strategy. In noisy mode it is the searcher's own choice where it has a model (order_bo: its
  posterior mean, from the trace in summary.json, one entry per proposal), else the best observed
  one-seed score (the winner's curse at work). Before the first completed trial the regret counts as 1.
* ``area``: the mean of regret over f = 1%..50% (the area under the curve, normalized).
* ``to_eps``: compute until the first completed order within eps of the best (eps = the table's standard
  error of an order's mean over seeds; planted: its final noise sd), as a fraction of exhaustive's.
* ``to_best``: compute until the best order first completes (inf: not within 50%).
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
TABLES = {"toy3": DATA / "sim_toy3_seeds.yaml", "planted": DATA / "sim_planted.yaml", "curriculum": DATA / "sim_curriculum.yaml"}
FRACTIONS = [i / 100 for i in range(1, 51)]
REPORT_AT = (0.05, 0.10, 0.25, 0.50)
TRIES = 20  # repeats in a row before the searcher enqueues an order not run yet (OrderSearcher's tries)


def _plain(searcher: str, *extra: str) -> list[str]:
    return [f"search.searcher={searcher}", "search.scheduler.type=none", *extra]


def _asha(searcher: str, *extra: str) -> list[str]:
    return [f"search.searcher={searcher}", "search.scheduler.type=asha", *extra]


STRATEGIES = {
    "exhaustive": _plain("exhaustive"),
    "random": _plain("random"),
    "tpe": _plain("tpe"),
    "gp": _plain("gp"),
    "tpe_asha": _asha("tpe", "search.scheduler.continue_stopped=false"),
    "order_bo": _plain("order_bo"),
    "order_bo_asha": _asha("order_bo"),
    "order_bo_asha_nopromo": _asha("order_bo", "search.scheduler.continue_stopped=false"),
    "order_bo_nocost": _plain("order_bo", "search.order_bo.cost_aware=false"),
    "order_bo_measured": _plain("order_bo", "search.order_bo.cost=measured"),  # priced at each task's measured seconds
    "order_bo_noprobe": _plain("order_bo", "search.order_bo.use_probes=false"),
    # where a task sits (search.order_bo.from_start): depth from the end alone (the default before 2026-12),
    # or with positions from the start alone; the default averages the two GPs
    "order_bo_end": _plain("order_bo", "search.order_bo.from_start=never"),
    "order_bo_start": _plain("order_bo", "search.order_bo.from_start=always"),
    # the transferability prior (search/transfer.py; bench/transfer_prior.py): as order_bo's prior, or as seed points
    "order_bo_prior": _plain("order_bo", "search.prior=transferability"),
    "order_bo_prior_seeds": _plain("order_bo", "search.seed_points.heuristics=[transferability]"),
}
DEFAULT_STRATEGIES = ["exhaustive", "random", "tpe", "gp", "tpe_asha", "order_bo", "order_bo_asha"]
DEFAULT_TABLES = ["toy3", "planted", "curriculum", "toy3:noisy", "curriculum:noisy"]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default=",".join(DEFAULT_TABLES))
    ap.add_argument("--strategies", default=None,
                    help=f"comma list of {sorted(STRATEGIES)} (default: {','.join(DEFAULT_STRATEGIES)}); with --merge: keep only these")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=0.5, help="stop a search after this fraction of exhaustive's compute")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--num-cpus", type=int, default=4)
    ap.add_argument("--json", default=None, help="write every run and the summary here")
    ap.add_argument("--plot", default=None, help="regret against compute, one panel per table (PNG)")
    ap.add_argument("--runs-of", default=None, metavar="STRATEGIES",
                    help="--json keeps the trials of these strategies only (comma list; the others' curves and summary stay)")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON", help="no search: pool these --json files")
    ap.add_argument("--offline", action="store_true",
                    help="replay searches without Ray (order_bo variants without a scheduler, random, exhaustive)")
    ap.add_argument("--check-offline", action="store_true", help="run each search both ways and compare their trials")
    ap.add_argument("--costs", choices=sorted(COSTS), default=None,
                    help="stages of different tasks cost different seconds (drawn per seed); compute is counted in seconds")
    ap.add_argument("--overhead", action="store_true", help="only: order_bo's proposal time, 300 trials, 10^4 candidates")
    a = ap.parse_args(argv)
    missing = [f for f in a.merge or [] if not Path(f).is_file()]
    if missing:
        ap.error(f"--merge: no file {missing[0]}")
    if a.overhead or a.merge:
        return a
    check_counts(ap, seeds=a.seeds, concurrency=a.concurrency, num_cpus=a.num_cpus)
    check_budget(ap, a.budget)
    bad = [s for s in (a.strategies or ",".join(DEFAULT_STRATEGIES)).split(",") if s and s not in STRATEGIES]
    if bad:
        ap.error(f"--strategies: unknown '{bad[0]}' (one of {', '.join(STRATEGIES)})")
    check_tables(ap, a.tables)
    return a


def check_counts(ap: argparse.ArgumentParser, **counts: int) -> None:
    """Each of these options at least 1 (else one error line, exit 2)."""
    for name, v in counts.items():
        if v < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1 (got {v})")


def check_budget(ap: argparse.ArgumentParser, budget: float, option: str = "--budget") -> None:
    if not 0 < budget <= 1:
        ap.error(f"{option} must lie in (0, 1], a fraction of exhaustive's compute (got {budget})")


def check_tables(ap: argparse.ArgumentParser, text: str) -> list[str]:
    """``--tables`` as a list, every table read before any search runs: a bad name or mode is one error
    line (exit 2) at once, not a traceback after the tables before it have run."""
    from itt.errors import UserError

    specs = [s for s in text.split(",") if s]
    if not specs:
        ap.error("--tables: no table given")
    for spec in specs:
        name, _, mode = spec.partition(":")
        if mode not in ("", "noisy"):
            ap.error(f"--tables: {spec}: unknown mode '{mode}' (none, or ':noisy')")
        if name not in TABLES and not Path(name).is_file():
            ap.error(f"--tables: unknown table '{name}' (one of {', '.join(TABLES)}, or a bench config's path)")
        try:
            table_info(spec)
        except (UserError, ValueError) as e:
            ap.error(f"--tables: {e}")
    return specs


# ------------------------------------------------------------------ the table's truth
def table_info(spec: str) -> dict:
    """Orders, their true (mean over seeds) scores, eps, and exhaustive's cached compute."""
    from search.config import load_search

    name, _, mode = spec.partition(":")
    scfg, _, _ = load_search(TABLES.get(name, Path(name)))
    by: dict[str, list[float]] = {}
    with open(scfg.simulate.table, newline="") as f:
        for r in csv.DictReader(f):
            by.setdefault(r["order"], []).append(float(r["final"]))
    space = scfg.space()
    orders = [">".join(o) for o in space.orders()]
    truth = {o: statistics.mean(by[o]) for o in orders}
    seeded = all(len(v) > 1 for v in by.values())
    if mode == "noisy" and not seeded:
        raise ValueError(f"{spec}: the table has one row per order; noisy mode needs one row per seed")
    # eps: the standard error of an order's mean over seeds (planted: its documented final noise sd, 0.004)
    eps = statistics.mean(statistics.stdev(v) for v in by.values()) / math.sqrt(len(next(iter(by.values())))) if seeded else 0.004
    prefixes = {tuple(o.split(">"))[:i] for o in orders for i in range(1, o.count(">") + 2)}
    ranked = sorted(orders, key=lambda o: -truth[o])
    return {"spec": spec, "config": str(TABLES.get(name, name)), "mode": mode or "mean", "orders": orders,
            "truth": truth, "best": ranked[0], "best_score": truth[ranked[0]], "median": statistics.median(truth.values()),
            "eps": eps, "exhaustive_cost": len(prefixes) + len(orders), "n": len(orders)}


# ------------------------------------------------------------------ what a stage costs
# --costs: the seconds a stage of each task costs, drawn per bench seed (the seed also decides WHICH task
# is expensive, so a table's good tasks are not systematically the cheap or the dear ones). Real
# intermediate tasks differ by about a decade (SST-2's 67k short sentences against ANLI's 163k pairs or
# SQuAD at 384 tokens): logu10 draws each task's cost log-uniformly over [1, 10]. A trial's fixed part
# (its final fine-tune, data, evaluation) costs the median task's stage, as the unweighted count has it.
# fixed4: every stage costs the same and a trial's fixed part four stages (a target fine-tune on MNLI's 393k
# pairs against intermediate stages capped at 100k examples, as configs/search_xnli_xlmr_base.yaml has it).
COSTS = {"logu10": (10.0, 1.0), "fixed4": (1.0, 4.0)}  # (span of a task's stage cost, fixed part in median stages)


def task_costs(info: dict, seed: int, kind: str | None) -> dict | None:
    """{task: stage seconds, "_fixed": a trial's fixed part}, or None: every stage and final one unit."""
    if kind is None:
        return None
    span, fixed = COSTS[kind]
    tasks = sorted({t for o in info["orders"] for t in o.split(">") if t})
    rng = random.Random(f"costs:{kind}:{seed}")
    out = {t: round(span ** rng.random(), 4) for t in tasks}
    return {**out, "_fixed": fixed * statistics.median(out.values())}


def stage_cost(costs: dict | None, prefix: tuple) -> float:
    return costs[prefix[-1]] if costs else 1.0


def fixed_cost(costs: dict | None) -> float:
    return costs["_fixed"] if costs else 1.0


def exhaustive_cost(info: dict, costs: dict | None) -> float:
    """Every distinct prefix trained once and one final per order (the unit of compute)."""
    if costs is None:
        return info["exhaustive_cost"]
    prefixes = {tuple(o.split(">"))[:i] for o in info["orders"] if o for i in range(1, o.count(">") + 2)}
    return sum(stage_cost(costs, p) for p in prefixes) + len(info["orders"]) * fixed_cost(costs)


# ------------------------------------------------------------------ one search
class Budget:
    """Counts cached compute as trials report (start order = Tune's trial order at concurrency 1) and
    ends the experiment once ``limit`` is spent (stage-trainings, or seconds with ``costs``)."""

    def __init__(self, limit: float, costs: dict | None = None):
        self.limit, self.spent, self.trained, self.running, self.costs = limit, 0, set(), 0, costs

    def result(self, order: list[str], result: dict) -> None:
        if result.get("final"):
            self.spent += fixed_cost(self.costs)
        else:
            p = tuple(order[: int(result.get("step", 0))])
            if p and p not in self.trained:
                self.trained.add(p)
                self.spent += stage_cost(self.costs, p)


@contextlib.contextmanager
def budget_stop(budget: Budget, space):
    """``RunConfig(stop=..., callbacks=+)`` patched onto ray.tune while a search runs (bench only)."""
    from ray import tune
    from ray.tune import Callback, Stopper

    from search.trial import split_config

    orig = tune.RunConfig

    class Count(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            budget.running += 1

        def on_trial_result(self, iteration, trials, trial, result, **info):
            budget.result(split_config(trial.config, space)[0], result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            budget.running -= 1

    class Stop(Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return budget.spent >= budget.limit and budget.running == 0  # (a trial cut short is no result)

    class rc(orig):
        def __init__(self, *a, **kw):
            kw.setdefault("stop", Stop())
            kw["callbacks"] = [*(kw.get("callbacks") or []), Count()]
            super().__init__(*a, **kw)

    tune.RunConfig = rc
    try:
        yield
    finally:
        tune.RunConfig = orig


def one_search(info: dict, strategy: str, seed: int, args, storage: str) -> dict:
    from search.config import load_search
    from search.runner import run_search

    over = list(STRATEGIES[strategy]) + [f"search.seed={seed}", "search.tracking.enabled=false",
                                         f"search.resources.max_concurrent={args.concurrency}",
                                         f"search.num_samples={2 * info['n']}"]
    if info["mode"] == "noisy":
        over.append("search.simulate.draw=one_seed")
    if strategy == "exhaustive":
        orders = list(info["orders"])
        random.Random(seed).shuffle(orders)
        over.append("search.seed_points.orders=[" + ",".join(orders) + "]")
    costs = task_costs(info, seed, args.costs)
    if costs:  # the simulated trials report them as a real trial measures them
        over += [f"search.simulate.stage_seconds={json.dumps({t: c for t, c in costs.items() if t != '_fixed'})}",
                 f"search.simulate.fixed_seconds={costs['_fixed']}"]
    scfg, _, _ = load_search(info["config"], over)
    budget = Budget(args.budget * exhaustive_cost(info, costs), costs)
    name = f"{info['spec'].replace(':', '_')}_{strategy}_s{seed}"
    t0 = time.perf_counter()
    with budget_stop(budget, scfg.space()):
        exp = run_search(info["config"], name=name, storage=storage, overrides=over, log=lambda *a: None)
    wall = time.perf_counter() - t0
    with open(exp / "results.csv", newline="") as f:
        rows = [{k: r[k] for k in ("order", "status", "stages_completed", "score")} for r in csv.DictReader(f)]
    summary = json.loads((exp / "summary.json").read_text())
    shutil.rmtree(exp, ignore_errors=True)
    return {"strategy": strategy, "seed": seed, "wall_s": round(wall, 2), "rows": rows,
            "trace": [{"trials_started": t["trials_started"], "order": t["order"]} for t in summary.get("trace", [])],
            "recommended": (summary.get("recommended") or {}).get("order"), "continuations": summary.get("continuations", 0),
            **({"costs": costs} if costs else {})}


def offline_search(info: dict, strategy: str, seed: int, args, prior=None) -> dict:
    """One search without Ray: what ``run_search`` does at concurrency 1 with no scheduler, in-process.
    ``exhaustive``: the table's orders shuffled by the seed; ``random`` and the ``order_bo`` variants:
    the search's own sampler (``sampler_for``) in an Optuna study, each proposal answered from the table as a
    simulated trial answers it (``search.trial._simulated``: probes as intermediate values, then the
    final; ``one_seed`` draws the same seed's row). ``--check-offline`` compares it with the Ray path.
    ``prior``: order_bo's prior (search.transfer.OrderPrior), as the search's driver would build it."""
    import optuna

    from search.config import load_search
    from search.searchers.optuna_samplers import sampler_for
    from search.trial import define, load_table

    over = list(STRATEGIES[strategy]) + [f"search.seed={seed}"]
    scfg, _, _ = load_search(info["config"], over)
    space, table = scfg.space(), load_table(scfg.simulate.table)
    costs = task_costs(info, seed, getattr(args, "costs", None))
    budget, t0 = Budget(args.budget * exhaustive_cost(info, costs), costs), time.perf_counter()
    rows, trace = [], []
    # a repeat is answered as search.searchers._base.OrderSearcher answers it: told its earlier score, not run
    # (no compute, no row); after TRIES repeats in a row an order not run yet is enqueued (its seeded draw)
    scores, repeats, dedup = {}, 0, random.Random(f"dedup:{seed}")
    if strategy == "exhaustive":
        orders = [o.split(">") for o in info["orders"]]
        random.Random(seed).shuffle(orders)
        ask, sampler = iter(orders + [None]).__next__, None  # None: every order has run
    else:
        if scfg.scheduler.type != "none":
            raise SystemExit(f"--offline replays searches without a scheduler; {strategy} has one")
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        sampler = sampler_for(scfg, prior)
        study = optuna.create_study(direction="maximize", sampler=sampler)
    while budget.spent < budget.limit:
        if sampler is None:
            order = ask()
            if order is None:
                break
        else:
            trial = study.ask()
            define(trial, space=space, hparams=scfg.hparams)
            order = space.decode(trial.params)
            if ">".join(order) in scores:  # (TPE and GP re-propose orders they have run)
                study.tell(trial, scores[">".join(order)])
                repeats += 1
                if repeats == TRIES:
                    unseen = [o for o in space.orders() if ">".join(o) not in scores]
                    if not unseen:
                        break
                    study.enqueue_trial(space.encode(dedup.choice(unseen)), skip_if_exists=False)
                    repeats = 0
                continue
            repeats = 0
            if getattr(sampler, "last_recommendation", None) and rows:
                trace.append({"trials_started": len(rows), "order": sampler.last_recommendation["order"]})
        probes, final = _table_scores(table, order, seed, info["mode"] == "noisy")
        for i, v in enumerate(probes, 1):
            budget.result(order, {"step": i})
            if sampler is not None:
                trial.report(v, i)
                if costs:  # what search.searchers._base.OrderSearcher records from a trial's reports
                    trial.set_user_attr(f"stage_seconds_{i}", costs[order[i - 1]])
        budget.result(order, {"final": 1})
        if sampler is not None:
            if costs:
                trial.set_user_attr("fixed_seconds", costs["_fixed"])
            study.tell(trial, final)
            scores[">".join(order)] = final
        rows.append({"order": ">".join(order), "status": "completed", "stages_completed": str(len(order)), "score": str(final)})
    rec = sampler.recommend(study) if hasattr(sampler, "recommend") else None
    return {"strategy": strategy, "seed": seed, "wall_s": round(time.perf_counter() - t0, 2), "rows": rows,
            "trace": trace, "recommended": rec and rec["order"], "continuations": 0, "offline": True,
            **({"costs": costs} if costs else {}),
            **({"unexplored": rec["unexplored"]} if rec and rec.get("unexplored") else {})}


def _table_scores(table: dict, order: list[str], seed: int, one_seed: bool) -> tuple[list[float], float]:
    """Probes and final of an order as a simulated trial reports them (the rows ``search.trial._simulated``
    takes the mean of, by the same function)."""
    from search.trial import simulated_rows

    rows = simulated_rows(table[">".join(order)], order, {}, seed, "one_seed" if one_seed else "mean")
    mean = lambda col: sum(float(r[col]) for r in rows) / len(rows)  # noqa: E731
    return [mean(f"probe_{i}") for i in range(1, len(order) + 1)], mean("final")


# ------------------------------------------------------------------ figures of one run
def curve(info: dict, run: dict) -> dict:
    """Regret of the recommendation at each fraction of exhaustive's compute; compute to eps and to best."""
    costs = run.get("costs")  # --costs: compute in seconds
    truth, best, med, E = info["truth"], info["best_score"], info["median"], exhaustive_cost(info, costs)
    regret = lambda o: (best - truth[o]) / (best - med)  # noqa: E731
    trained, spent, after = set(), 0, []  # after[j]: compute spent once trials 0..j have run
    to_eps = to_best = math.inf
    for r in run["rows"]:
        o = tuple(r["order"].split(">")) if r["order"] else ()
        new = {o[:i] for i in range(1, int(r["stages_completed"] or 0) + 1)} - trained
        trained |= new
        spent += sum(stage_cost(costs, p) for p in new) + (r["status"] == "completed") * fixed_cost(costs)
        after.append(spent)
        if r["status"] == "completed":
            if truth[r["order"]] >= best - info["eps"]:
                to_eps = min(to_eps, spent / E)
            if r["order"] == info["best"]:
                to_best = min(to_best, spent / E)
    # noisy mode: the searcher's own choice where it has a model; mean mode: a trial's score is the mean
    # over the table's seeds (the truth regret is measured on), so the best observed is the one to take
    model = info["mode"] == "noisy" and bool(run["trace"])
    trace = {t["trials_started"]: t["order"] for t in run["trace"]}
    out = []
    for f in FRACTIONS:
        m = sum(a <= f * E for a in after)  # trials finished within the budget
        if model and m == len(run["rows"]) and run["recommended"]:
            rec = run["recommended"]  # the final recommendation, fitted on everything
        elif model and m in trace:
            rec = trace[m]  # the model's choice when it proposed trial m, knowing trials 0..m-1
        else:
            done = [r for r in run["rows"][:m] if r["status"] == "completed" and r["score"] not in ("", None)]
            rec = max(done, key=lambda r: float(r["score"]))["order"] if done else None
        out.append(regret(rec) if rec is not None else 1.0)
    return {"regret": out, "area": statistics.mean(out), "to_eps": to_eps, "to_best": to_best}


def summarize(info: dict, runs: list[dict]) -> list[dict]:
    by: dict[str, list[dict]] = {}
    for r in runs:
        by.setdefault(r["strategy"], []).append(curve(info, r))

    def med_iqr(xs):
        xs = sorted(xs)
        return statistics.median(xs), xs[len(xs) // 4], xs[(3 * len(xs)) // 4]

    rows = []
    for s, cs in by.items():
        row = {"table": info["spec"], "strategy": s, "runs": len(cs)}
        for f in REPORT_AT:
            row[f"regret@{int(f * 100)}%"] = med_iqr([c["regret"][FRACTIONS.index(f)] for c in cs])
        for k in ("area", "to_eps", "to_best"):
            row[k] = med_iqr([c[k] for c in cs])
        row["curve"] = [statistics.median(c["regret"][i] for c in cs) for i in range(len(FRACTIONS))]
        rows.append(row)
    return with_ratios(rows)


def with_ratios(rows: list[dict]) -> list[dict]:
    """A table's summary rows with each one's area and compute to eps as fractions of random's."""
    rnd = next((r for r in rows if r["strategy"] == "random"), None)
    for r in rows:
        r["area/random"] = r["area"][0] / rnd["area"][0] if rnd and rnd["area"][0] else math.nan
        r["to_eps/random"] = (r["to_eps"][0] / rnd["to_eps"][0] if rnd and 0 < rnd["to_eps"][0] < math.inf
                              else math.nan)  # (random never within eps in the budget: no ratio)
    return rows


def fmt(v) -> str:
    if isinstance(v, tuple):
        return f"{fmt(v[0])} ({fmt(v[1])}-{fmt(v[2])})"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else ("nan" if math.isnan(v) else f"{v:.3f}" if abs(v) < 10 else f"{v:.0f}")
    return str(v)


def print_table(rows: list[dict]) -> None:
    cols = [c for c in rows[0] if c != "curve"]
    cells = [[fmt(r[c]) for c in cols] for r in rows]
    w = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w[i]) for i, c in enumerate(cols)))
    for x in cells:
        print("  ".join(v.ljust(w[i]) for i, v in enumerate(x)))


def plot(summary: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = list(dict.fromkeys(r["table"] for r in summary))
    names = list(dict.fromkeys(r["strategy"] for r in summary))
    color = {s: f"C{i}" for i, s in enumerate(names)}  # one colour per strategy in every panel
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 3.6), sharey=True)
    for ax, t in zip(axes if len(tables) > 1 else [axes], tables):
        for r in (r for r in summary if r["table"] == t):
            ax.plot([100 * f for f in FRACTIONS], r["curve"], label=r["strategy"], color=color[r["strategy"]],
                    lw=2.2 if r["strategy"].startswith("order_bo") else 1.2)
        ax.set_title(t)
        ax.set_xlabel("% of exhaustive's compute (cached)")
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.3)
    first = axes[0] if len(tables) > 1 else axes
    first.set_ylabel("normalized regret (median)")
    handles = [plt.Line2D([], [], color=color[s], lw=2.2 if s.startswith("order_bo") else 1.2) for s in names]
    first.legend(handles, names, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------ proposal overhead
def overhead() -> dict:
    """One proposal of order_bo with 300 trials observed (their finals and probes) over 10^4 candidate
    orders (9 tasks, lengths 1-5: 18,729 orders, so 10^4 are sampled), on this machine, side by side:
    one GP (``from_start: never``), the default average of two, and the average with both posteriors
    computed at every proposal (its worst case: neither GP's weight negligible; here the scores follow
    depths from the end, so the second GP's weight is ~0 and its posterior is skipped)."""
    from search.searchers import surrogate

    out = {"trials": 300, "candidates": 10_000}
    for name, from_start, negligible in (("one_gp", "never", surrogate.NEGLIGIBLE),
                                         ("average", "average", surrogate.NEGLIGIBLE), ("average_both", "average", 0.0)):
        kept, surrogate.NEGLIGIBLE = surrogate.NEGLIGIBLE, negligible
        try:
            out[name] = _proposal_times(from_start)
        finally:
            surrogate.NEGLIGIBLE = kept
    out["median_ratio_average_to_one_gp"] = round(out["average"]["median_s"] / out["one_gp"]["median_s"], 2)
    out["median_ratio_both_to_one_gp"] = round(out["average_both"]["median_s"] / out["one_gp"]["median_s"], 2)
    return out


def _proposal_times(from_start: str) -> dict:
    import numpy as np
    import optuna

    from search.searchers.order_bo import OrderBOSampler
    from search.space import OrderSpace
    from search.trial import define

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    tasks = [f"t{i}" for i in range(9)]
    space = OrderSpace(candidates=tasks, lengths=[1, 2, 3, 4, 5])
    rng = np.random.default_rng(0)
    w = {t: rng.normal(0, 0.03) for t in tasks}
    score = lambda o: 0.6 + sum(0.7 ** (len(o) - 1 - i) * w[t] for i, t in enumerate(o))  # noqa: E731
    sampler = OrderBOSampler(space, seed=0, max_candidates=10_000, from_start=from_start)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(300):  # 300 observed trials (random orders), probes after every stage
        t = study.ask()
        define(t, space=space, hparams={})
        o = space.decode(t.params)
        for i in range(1, len(o) + 1):
            t.report(score(o[:i]) - 0.1 + rng.normal(0, 0.01), i)
        study.tell(t, score(o) + rng.normal(0, 0.005))
    study.sampler = sampler
    times = []
    for _ in range(6):
        t0 = time.perf_counter()
        t = study.ask()
        define(t, space=space, hparams={})
        times.append(time.perf_counter() - t0)
        study.tell(t, score(space.decode(t.params)))
    return {"first_s": round(times[0], 2), "median_s": round(statistics.median(times), 2), "max_s": round(max(times), 2),
            "times": [round(x, 2) for x in times], "weights": sampler.surrogate_weights()}


# ------------------------------------------------------------------ main
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.overhead:
        print(json.dumps(overhead(), indent=1))
        return 0
    if args.merge:
        return merge(args)
    strategies = [s for s in (args.strategies or ",".join(DEFAULT_STRATEGIES)).split(",") if s]
    with ray_session(args) as storage:
        t_all, pooled, mismatches = time.perf_counter(), {}, 0
        for spec in (s for s in args.tables.split(",") if s):
            info = table_info(spec)
            print(f"== {spec}: {info['n']} orders, best {info['best']} ({info['best_score']:.4f}), eps {info['eps']:.4f}, "
                  f"exhaustive's cached compute {info['exhaustive_cost']}", flush=True)
            for s in strategies:
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    r = offline_search(info, s, seed, args) if args.offline else one_search(info, s, seed, args, storage)
                    if args.check_offline:
                        mismatches += compare_offline(info, s, seed, args, r)
                    record(args, pooled, spec, info, s, seed, r)
    if args.check_offline:
        print(f"offline replay: {mismatches} mismatching search(es)")
        return 1 if mismatches else 0
    return finish(args, pooled, time.perf_counter() - t_all)


@contextlib.contextmanager
def ray_session(args):
    """A local Ray and a scratch storage for the searches (nothing with ``--offline``)."""
    if args.offline:
        yield None
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    import ray

    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    storage = tempfile.mkdtemp(prefix="itt_search_eff_")
    try:
        yield storage
    finally:
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)


def compare_offline(info: dict, strategy: str, seed: int, args, ray_run: dict) -> int:
    """1 when the offline replay of this search ran other trials than the Ray path did, else 0."""
    off = offline_search(info, strategy, seed, args)
    ours = [(r["order"], r["status"]) for r in ray_run["rows"]]
    theirs = [(r["order"], r["status"]) for r in off["rows"]]
    same = ours == theirs and ray_run["recommended"] == off["recommended"]
    print(f"  {strategy} seed {seed}: Ray {len(ours)} trials, offline {len(theirs)}: "
          f"{'same trials and recommendation' if same else 'DIFFERENT'}", flush=True)
    if not same:
        print(f"    Ray:     {ours} rec {ray_run['recommended']}\n    offline: {theirs} rec {off['recommended']}")
    return 0 if same else 1


def record(args, pooled: dict, spec: str, info: dict, strategy: str, seed: int, r: dict) -> None:
    c = curve(info, r)
    pooled.setdefault(spec, []).append(r)
    if args.json:  # every run as it ends (a long benchmark cut short keeps what it ran)
        with open(args.json + "l", "a") as f:
            f.write(json.dumps({"spec": spec, "run": r}) + "\n")
    print(f"  {strategy:22s} seed {seed:2d}  area {c['area']:.3f}  regret@10% {c['regret'][9]:.3f} "
          f"@25% {c['regret'][24]:.3f}  to_eps {fmt(c['to_eps'])}  trials {len(r['rows'])}  "
          f"continued {r['continuations']}  {r['wall_s']:.0f}s", flush=True)


def merge(args) -> int:
    """Pool --json files and the .jsonl files written run by run. A --json file's summary rows (and
    areas) of strategies whose trials it did not keep (``--runs-of``) are carried over as they are, so
    a committed benchmark can be extended with new strategies without re-running the old ones. With
    --strategies given, only those strategies are kept."""
    pooled: dict[str, list] = {}
    carried: dict[str, list] = {"summary": [], "areas": []}
    seconds = 0.0
    for f in args.merge:
        if f.endswith(".jsonl"):
            for line in Path(f).read_text().splitlines():
                d = json.loads(line)
                pooled.setdefault(d["spec"], []).append(d["run"])
                seconds += d["run"]["wall_s"]
            continue
        b = json.loads(Path(f).read_text())
        for spec, runs in b["runs"].items():
            pooled.setdefault(spec, []).extend(runs)
        with_runs = {(spec, r["strategy"]) for spec, runs in b["runs"].items() for r in runs}
        carried["summary"] += [row for row in b["summary"] if (row["table"], row["strategy"]) not in with_runs]
        carried["areas"] += [(spec, a) for spec, areas in b.get("areas", {}).items() for a in areas
                             if (spec, a["strategy"]) not in with_runs]
        seconds += b.get("seconds", 0)
    if args.strategies:
        keep = set(args.strategies.split(","))
        pooled = {spec: [r for r in runs if r["strategy"] in keep] for spec, runs in pooled.items()}
        carried["summary"] = [row for row in carried["summary"] if row["strategy"] in keep]
        carried["areas"] = [(spec, a) for spec, a in carried["areas"] if a["strategy"] in keep]
    for row in carried["summary"]:
        pooled.setdefault(row["table"], [])
    return finish(args, pooled, seconds, carried)


def _with_carried(rows: list[dict], carried: list[dict]) -> list[dict]:
    """A table's summary rows plus the carried ones it has no runs of, ratios to random recomputed."""
    have = {r["strategy"] for r in rows}
    for row in carried:
        if row["strategy"] not in have:
            rows.append({k: tuple(v) if isinstance(v, list) and k != "curve" else v for k, v in row.items()})
            have.add(row["strategy"])
    return with_ratios(rows)


def finish(args, pooled: dict[str, list], seconds: float, carried: dict | None = None) -> int:
    carried = carried or {"summary": [], "areas": []}
    infos = {spec: table_info(spec) for spec in pooled}
    summary = [row for spec, runs in pooled.items()
               for row in _with_carried(summarize(infos[spec], runs), [c for c in carried["summary"] if c["table"] == spec])]
    print()
    print_table(summary)
    print(f"\n{seconds:.0f} s of searches")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        keep = set(args.runs_of.split(",")) if args.runs_of else None
        runs = {spec: [r for r in rs if keep is None or r["strategy"] in keep] for spec, rs in pooled.items()}
        areas = {spec: [{"strategy": r["strategy"], "seed": r["seed"], "area": round(curve(infos[spec], r)["area"], 4)}
                        for r in rs] for spec, rs in pooled.items()}  # every run's area, trials or not
        for spec, a in carried["areas"]:  # (a strategy run again here replaces its carried areas)
            if not any(r["strategy"] == a["strategy"] for r in pooled.get(spec, [])):
                areas.setdefault(spec, []).append(a)
        blob = {"summary": summary, "runs": runs, "areas": areas, "seconds": seconds, "args": vars(args)}
        Path(args.json).write_text(json.dumps(blob, default=lambda x: None if isinstance(x, float) else str(x)))
    if args.plot:
        plot(summary, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
