"""Is order_bo's "could an order the search did not finish beat its pick?" calibrated?

A search with ``order_bo`` ends by saying, under its GP, how likely it is that one of the orders it did
not finish scores above the order it recommends, and the expected gain of the best of them
(``OrderBOSampler.unexplored``, summary.json's ``recommended.unexplored``). This replays order_bo
searches offline on the benchmark tables (bench/search_efficiency.py's ``offline_search``: the sampler in
an Optuna study, every trial answered from the table) up to a share of exhaustive's compute, and checks
the answer against the table's truth (each order's mean over its seeds): whether some unfinished order's
true score is above the recommended order's, and by how much.

    python bench/unexplored_calibration.py [--tables toy3,planted] [--budgets 0.1,0.25] [--seeds 15]
                                           [--json bench/data/unexplored_calibration.json]
                                           [--report [--min-finished 1]]

Printed per table and budget: the mean predicted probability against how often an unfinished order was
truly better (calibration in the large), the Brier score (and the Brier score of always saying the
observed frequency), the predicted expected gain against the realised gain max(0, best unfinished truth
- pick's truth), and the predictions in bins against their outcome.

``--report`` also asks `itt report`'s version of the question (search/ranking.py ``unfinished``: the
structured ranking model on the finished orders' per-seed rows, its most likely order as the pick) on
the same searches, whose finished orders a searcher chose (bench/ranking_calibration.py part 3 draws
them at random); against the table's ``true`` column where it has one (curriculum), else the mean over
seeds (toy3: the same seeds the model sees, so its truth is noisy). Tables with one row per order
(planted) have no seeds to rank by. The report says nothing with under 20 finished IF orders
(search/ranking.py ``UNFINISHED_MIN``, set from this bench's toy3 rows before that limit).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_efficiency import check_budget, check_counts, check_tables, offline_search, table_info  # noqa: E402

BINS = ((0.0, 0.1), (0.1, 0.5), (0.5, 0.9), (0.9, 1.01))


def one(info: dict, budget: float, seed: int, seeds: pd.DataFrame | None = None) -> dict:
    """One offline order_bo search to ``budget`` of exhaustive's compute; its prediction and the truth
    (and, with the table's per-seed rows ``seeds``, the report's prediction under ``"report"``)."""
    run = offline_search(info, "order_bo", seed, SimpleNamespace(budget=budget))
    u, pick = run["unexplored"], run["recommended"]
    done = {r["order"] for r in run["rows"]}
    left = [o for o in info["orders"] if o not in done]
    gap = max((info["truth"][o] for o in left), default=-np.inf) - info["truth"][pick]
    out = {"seed": seed, "budget": budget, "trials": len(run["rows"]), "pick": pick, "left": len(left),
           "p_better": u["p_better"], "expected_gain": u["expected_gain"], "better": bool(gap > 0),
           "gain": float(max(gap, 0.0))}
    if seeds is not None:
        out["report"] = reported(info, seeds, done)
    return out


def seed_rows(info: dict) -> pd.DataFrame | None:
    """The table's per-seed rows (order, seed, mean = final) and each order's truth (``true`` where the
    table has it); None for a table with one row per order."""
    from search.config import load_search

    scfg, _, _ = load_search(info["config"])
    t = pd.read_csv(scfg.simulate.table, keep_default_na=False)
    if "seed" not in t:
        return None
    t = t.rename(columns={"final": "mean"})
    t["truth"] = t["true"] if "true" in t else t["order"].map(info["truth"])
    return t[["order", "seed", "mean", "truth"]]


def reported(info: dict, seeds: pd.DataFrame, done: set[str]) -> dict:
    """`itt report`'s answer for a search that finished ``done`` (every seed of the table)."""
    from search.ranking import analyse

    r = analyse(seeds[seeds["order"].isin(done)], space=info["orders"])
    truth = seeds.groupby("order")["truth"].first()
    u, pick = r.get("unfinished") or {}, r.get("most_likely")
    if "p_better" not in u:  # (too few finished orders: the report does not say)
        return {"pick": pick, "skipped": u.get("underpowered") or r.get("underpowered")}
    gap = truth.drop(list(done)).max() - truth[pick]
    return {"pick": pick, "p_better": u["p_better"], "expected_gain": u["expected_gain"], "better": bool(gap > 0),
            "gain": float(max(gap, 0.0))}


def summarize(runs: list[dict]) -> dict:
    p = np.array([r["p_better"] for r in runs])
    y = np.array([r["better"] for r in runs], dtype=float)
    bins = []
    for lo, hi in BINS:
        m = (p >= lo) & (p < hi)
        if m.any():
            bins.append({"bin": f"{lo:.1f}-{min(hi, 1.0):.1f}", "n": int(m.sum()), "said": float(p[m].mean()),
                         "right": float(y[m].mean())})
    return {"searches": len(runs), "trials": float(np.median([r["trials"] for r in runs])),
            "said": float(p.mean()), "right": float(y.mean()), "brier": float(((p - y) ** 2).mean()),
            "brier_base": float(((y.mean() - y) ** 2).mean()),
            "gain_said": float(np.mean([r["expected_gain"] for r in runs])),
            "gain_right": float(np.mean([r["gain"] for r in runs])), "bins": bins}


def _line(name: str, b: float, s: dict) -> None:
    bins = "  ".join(f"{x['bin']}: {x['said']:.2f}/{x['right']:.2f} ({x['n']})" for x in s["bins"])
    print(f"{name:<9} {b:<6}  {s['searches']:>8}  {s['trials']:>6.0f}  {s['said']:>6.2f}  {s['right']:>7.2f}  "
          f"{s['brier']:.3f} ({s['brier_base']:.3f})  {s['gain_said']:>9.4f}  {s['gain_right']:>10.4f}  {bins}",
          flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", default="toy3,planted")
    ap.add_argument("--budgets", default="0.1,0.25", help="shares of exhaustive's cached compute")
    ap.add_argument("--seeds", type=int, default=15)
    ap.add_argument("--json")
    ap.add_argument("--report", action="store_true", help="also `itt report`'s figure on the same searches")
    ap.add_argument("--min-finished", type=int, help="--report: ask the report's model with this many finished IF "
                    "orders or more (default: search/ranking.py UNFINISHED_MIN, what the report uses)")
    args = ap.parse_args(argv)
    check_counts(ap, seeds=args.seeds)
    try:
        budgets = [float(x) for x in args.budgets.split(",")]
    except ValueError:
        ap.error(f"--budgets: '{args.budgets}' is not a comma list of numbers")
    for b in budgets:
        check_budget(ap, b, "--budgets")
    specs = check_tables(ap, args.tables)
    if args.min_finished is not None:
        from search import ranking

        ranking.UNFINISHED_MIN = args.min_finished
    t0, out = time.perf_counter(), {}
    print("table     budget  searches  trials  P said  P right  Brier (base)    gain said  gain right  bins: said/right (n)")
    for spec in specs:
        info = table_info(spec)
        seeds = seed_rows(info) if args.report else None
        for b in budgets:
            runs = [one(info, b, s, seeds) for s in range(args.seeds)]
            s = summarize(runs)
            out[f"{spec}@{b}"] = {**s, "runs": runs}
            _line(spec, b, s)
            if seeds is not None:
                said = [{**r["report"], "trials": r["trials"]} for r in runs if "p_better" in r["report"]]
                if said:
                    out[f"{spec}@{b}"]["report"] = summarize(said)
                    _line("  report", b, out[f"{spec}@{b}"]["report"])
                else:
                    print(f"  report  {b:<6}  not said: {runs[0]['report']['skipped']}")
    print(f"{time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
