"""Where does ``search.stop`` end a search, and what regret does it leave?

A search with ``search.stop: {p_better: P}`` proposes no new trial once, after ``min_trials`` finished
trials, order_bo's model says an order it did not finish beats its pick with probability below P
(search/searchers/stopping.py). This replays order_bo searches offline on the benchmark tables (the sampler
in an Optuna study, each trial answered from the table, as bench/search_efficiency.py ``--offline``),
asks the searcher after every finished trial, and records for each rule where it would have stopped: the
compute spent (a fraction of exhaustive's cached compute, the benchmark's unit) and the normalized regret
of the recommended order there, (best - truth) / (best - median order). A search the rule never stopped
within ``--budget`` is counted as not stopped.

    python bench/stop_rule.py [--tables planted,curriculum,toy3] [--seeds 8] [--budget 0.6]
                              [--rules p=0.05,p=0.1,gain=0.002] [--min-trials 10] [--json PATH]
                              [--set search.order_bo.from_start=never ...]   (config overrides, as itt search's)

Printed per table and rule: how many searches stopped, the median (and IQR) compute at the stop and the
regret there (of the searcher's recommendation; and of the best observed score), how many stopped with
the best order recommended or one within eps of it (the table's standard error of an order's mean), and
the compute the same searches needed to first complete the best order (median).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_efficiency import Budget, _table_scores, check_budget, check_counts, check_tables, table_info  # noqa: E402


def parse_rules(text: str, min_trials: int) -> dict:
    from search.config import Stop

    rules = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        field = {"p": "p_better", "gain": "gain"}[key.strip()]
        rules[part.strip()] = Stop(**{field: float(value), "min_trials": min_trials})
    return rules


def one_search(info: dict, seed: int, rules: dict, budget: float, sets: tuple = ()) -> dict:
    """An offline order_bo search, the rules asked after every finished trial; where each would stop."""
    import optuna

    from search.config import load_search
    from search.searchers import stopping
    from search.searchers.optuna_samplers import sampler_for
    from search.trial import define

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    scfg, _, _ = load_search(info["config"], ["search.searcher=order_bo", "search.scheduler.type=none",
                                              f"search.seed={seed}", *sets])
    space = scfg.space()
    sampler = sampler_for(scfg)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    truth, E = info["truth"], info["exhaustive_cost"]
    regret = lambda o: (info["best_score"] - truth[o]) / (info["best_score"] - info["median"])  # noqa: E731
    spent, stops, to_best, done, scores = Budget(budget * E), {}, math.inf, set(), {}
    while spent.spent < spent.limit and len(stops) < len(rules) and len(done) < len(truth):
        trial = study.ask()
        define(trial, space=space, hparams=scfg.hparams)
        order = space.decode(trial.params)
        probes, final = _table_scores(info["table"], order, seed, info["mode"] == "noisy")
        for i, v in enumerate(probes, 1):
            spent.result(order, {"step": i})
            trial.report(v, i)
        spent.result(order, {"final": 1})
        study.tell(trial, final)
        done.add(">".join(order))
        scores[">".join(order)] = final
        if ">".join(order) == info["best"]:
            to_best = min(to_best, spent.spent / E)
        if len(done) < min(r.min_trials for r in rules.values()):
            continue
        rec = sampler.recommend(study)
        for name, rule in rules.items():
            if name not in stops and stopping.reason(rule, rec.get("unexplored"), len(done)):
                best_seen = max(scores, key=scores.get)
                stops[name] = {"compute": spent.spent / E, "trials": len(done), "pick": rec["order"],
                               "regret": regret(rec["order"]), "best_observed": best_seen,
                               "regret_observed": regret(best_seen),
                               "p_better": rec["unexplored"]["p_better"]}
    return {"seed": seed, "stops": stops, "to_best": to_best, "searched": spent.spent / E}


def summarize(info: dict, runs: list[dict], rules: dict) -> list[dict]:
    eps = info["eps"] / (info["best_score"] - info["median"])  # eps as a normalized regret
    out = []
    for name in rules:
        hits = [r["stops"][name] for r in runs if name in r["stops"]]
        comp = sorted(h["compute"] for h in hits)
        reg = sorted(h["regret"] for h in hits)
        obs = sorted(h["regret_observed"] for h in hits)
        q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else math.nan  # noqa: E731
        out.append({"table": info["spec"], "rule": name, "searches": len(runs), "stopped": len(hits),
                    "compute": statistics.median(comp) if comp else math.nan, "compute_iqr": (q(comp, 0.25), q(comp, 0.75)),
                    "regret": statistics.median(reg) if reg else math.nan, "at_best": sum(x <= 1e-12 for x in reg),
                    "regret_observed": statistics.median(obs) if obs else math.nan,
                    "within_eps": sum(x <= eps for x in reg), "regret_max": max(reg) if reg else math.nan,
                    "to_best": statistics.median(r["to_best"] for r in runs)})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default="planted,curriculum,toy3")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--budget", type=float, default=0.6, help="give up on a rule after this share of exhaustive's compute")
    ap.add_argument("--rules", default="p=0.05,p=0.1,gain=0.002")
    ap.add_argument("--min-trials", type=int, default=10)
    ap.add_argument("--json", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override (repeatable)")
    args = ap.parse_args(argv)
    check_counts(ap, seeds=args.seeds, min_trials=args.min_trials)
    check_budget(ap, args.budget)
    specs = check_tables(ap, args.tables)
    from search.trial import load_table

    try:
        rules = parse_rules(args.rules, args.min_trials)
    except (KeyError, ValueError) as e:
        ap.error(f"--rules: '{args.rules}' is not a comma list of p=P or gain=G ({e})")
    rows, all_runs, t0 = [], {}, time.perf_counter()
    for spec in specs:
        info = table_info(spec)
        from search.config import load_search

        info["table"] = load_table(load_search(info["config"])[0].simulate.table)
        runs = [one_search(info, s, rules, args.budget, tuple(args.set)) for s in range(args.seeds)]
        all_runs[spec] = runs
        rows += summarize(info, runs, rules)
    print(f"stop rules over {args.seeds} offline order_bo searches per table (min_trials {args.min_trials}, "
          f"budget {args.budget:.0%} of exhaustive's compute), {time.perf_counter() - t0:.0f} s")
    print("regret: of the recommended order (the posterior-mean pick) at the stop, median; at best / within eps:")
    print("searches whose pick there was the best order / within eps of it; observed: regret of the best observed score")
    print(f"{'table':>16} {'rule':>10} {'stopped':>8} {'compute at stop (IQR)':>22} {'regret':>7} {'at best':>8} "
          f"{'within eps':>10} {'worst':>6} {'observed':>8} {'to best':>8}")
    for r in rows:
        lo, hi = r["compute_iqr"]
        print(f"{r['table']:>16} {r['rule']:>10} {r['stopped']:>4}/{r['searches']:<3} {r['compute']:>8.2f} ({lo:.2f}-{hi:.2f})"
              f"{'':>6} {r['regret']:>7.3f} {r['at_best']:>8} {r['within_eps']:>10} {r['regret_max']:>6.3f} "
              f"{r['regret_observed']:>8.3f} {r['to_best']:>8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "summary": rows, "runs": all_runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
