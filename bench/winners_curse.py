"""How much does a search's best order owe to its seeds? The gap `itt confirm` measures, on tables.

On a table with one row per (order, seed), every split of the seeds into *search* seeds (the search
sees their mean) and *fresh* seeds (a confirmation run's) is replayed: the search picks the order
with the best `final` (the search score) on its seeds; the figures are that pick's score on the
search seeds minus its score on the fresh seeds (the winner's curse, which `itt confirm` reports as
the negative *shift*), on `final` and on `test_mean` where the table has it, and - for a simulated
table with its `true` column - both against the true mean (the fresh seeds should be unbiased:
their gap to the truth averages about 0). Averaged over every split; pure table arithmetic, seconds.
With 2+ search seeds also what the report's *Which order is best, and how sure?* section
(search/ranking.py) says from the search seeds alone: the pick's shrunk score minus its fresh score
(the shrinkage should take out the curse: near 0), the pick's P(best), the size of the 95% set of
orders that could be best, whether the order best on the fresh seeds is in that set, and how much
better the model's most likely order does on the fresh seeds (and truly) than the top mean's
(likely - pick: above 0 where the model, which shares evidence between orders with tasks in common,
picks better than the leaderboard).

    python bench/winners_curse.py [--json bench/data/winners_curse.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent / "data"
TABLES = {  # name -> (file, what it is)
    "toy3 (real chains)": ("toy_3of5_s3_runs.csv", "60 orders of 3 of 5 toy tasks, each trained with 3 seeds"),
    "curriculum (simulated)": ("curriculum.csv", "259 orders, 3 seeds, with the true mean"),
    "pareto (simulated)": ("pareto.csv", "26 orders, 3 seeds"),
}


def splits(seeds: list[int]):
    """Every (search seeds, fresh seeds) split with both sides non-empty."""
    for k in range(1, len(seeds)):
        for s in itertools.combinations(seeds, k):
            yield list(s), [x for x in seeds if x not in s]


def replay(table: pd.DataFrame) -> list[dict]:
    """One row per split: the pick and its search / fresh (/ true) figures."""
    seeds = sorted(table["seed"].unique())
    cols = [c for c in ("final", "test_mean") if c in table]
    wide = {c: table.pivot_table(index="order", columns="seed", values=c) for c in cols}
    true = table.groupby("order")["true"].first() if "true" in table else None
    out = []
    for search, fresh in splits(seeds):
        seen = wide["final"][search].mean(axis=1)
        pick = seen.idxmax()
        row = {"search_seeds": [int(x) for x in search], "fresh_seeds": [int(x) for x in fresh], "pick": pick,
               "fresh_rank": int((wide["final"][fresh].mean(axis=1) > wide["final"].loc[pick, fresh].mean()).sum()) + 1}
        for c in cols:
            s, f = float(wide[c].loc[pick, search].mean()), float(wide[c].loc[pick, fresh].mean())
            row[f"{c}_search_minus_fresh"] = s - f
            if true is not None and c == "final":
                row["search_minus_true"], row["fresh_minus_true"] = s - float(true[pick]), f - float(true[pick])
        if len(search) >= 2:
            row.update(ranked(wide["final"], search, fresh, pick, true))
        out.append(row)
    return out


def ranked(final: pd.DataFrame, search: list, fresh: list, pick: str, true: pd.Series | None) -> dict:
    """The ranking section's figures from the search seeds, against the fresh seeds (and the truth)."""
    from search.ranking import analyse

    fig = final[search].stack().rename("mean").reset_index()  # order, seed, mean
    r = analyse(fig)
    if "rows" not in r:
        return {}
    row = {x["order"]: x for x in r["rows"]}[pick]
    fresh_best = final[fresh].mean(axis=1).idxmax()
    likely = r["most_likely"]  # the model's pick, against the top mean's
    out = {"shrunk_minus_fresh": row["shrunk"] - float(final.loc[pick, fresh].mean()), "p_best": row["p_best"],
           "set_size": len(r["set"]), "fresh_best_in_set": float(fresh_best in r["set"]),
           "likely_gain_fresh": float(final.loc[likely, fresh].mean() - final.loc[pick, fresh].mean())}
    if true is not None:
        out.update(shrunk_minus_true=row["shrunk"] - float(true[pick]), true_best_in_set=float(true.idxmax() in r["set"]),
                   likely_gain_true=float(true[likely] - true[pick]))
    return out


def summarize(rows: list[dict]) -> dict:
    keys = sorted({k for r in rows for k in r if k.endswith(("_minus_fresh", "_minus_true"))
                   or k in ("p_best", "set_size", "fresh_best_in_set", "true_best_in_set", "likely_gain_fresh",
                            "likely_gain_true")})
    out = {}
    for n in sorted({len(r["search_seeds"]) for r in rows}):
        rs = [r for r in rows if len(r["search_seeds"]) == n]
        out[str(n)] = {"splits": len(rs), **{k: float(np.mean([r[k] for r in rs])) for k in keys if k in rs[0]},
                       "fresh_rank_median": float(np.median([r["fresh_rank"] for r in rs]))}
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    res = {}
    for name, (file, what) in TABLES.items():
        t = pd.read_csv(DATA / file, keep_default_na=False)
        rows = replay(t)
        sd = float(t.groupby("order")["final"].std(ddof=1).median())  # how noisy one seed is, per order
        res[name] = {"table": file, "what": what, "orders": int(t["order"].nunique()), "seed_sd": sd, "splits": rows,
                     "summary": summarize(rows)}
    print("the search's pick: its score on the search seeds minus on fresh seeds (mean over splits; final = the "
          "search score, test = test mean over languages), and against the true mean where the table has it; seed sd: "
          "the median over orders of final's sd over seeds; pick fresh rank: where the pick ranks on the fresh seeds")
    print(f"{'table':<24} {'orders':>6} {'seed sd':>7} {'search seeds':>12} {'splits':>6} {'final':>8} {'test':>8} "
          f"{'search-true':>11} {'fresh-true':>10} {'pick fresh rank':>15} {'shrunk-fresh':>12} {'P(best)':>7} "
          f"{'95% set':>7} {'fresh best in set':>17} {'shrunk-true':>11} {'true best in set':>16} "
          f"{'likely-pick fresh':>17} {'likely-pick true':>16}")
    for name, r in res.items():
        for n, s in r["summary"].items():
            f = lambda k: f"{s[k]:+.4f}" if k in s else "-"  # noqa: E731
            g = lambda k, fmt: format(s[k], fmt) if k in s else "-"  # noqa: E731
            print(f"{name:<24} {r['orders']:>6} {r['seed_sd']:>7.4f} {n:>12} {s['splits']:>6} {f('final_search_minus_fresh'):>8} "
                  f"{f('test_mean_search_minus_fresh'):>8} {f('search_minus_true'):>11} {f('fresh_minus_true'):>10} "
                  f"{s['fresh_rank_median']:>15g} {f('shrunk_minus_fresh'):>12} {g('p_best', '.2f'):>7} "
                  f"{g('set_size', '.1f'):>7} {g('fresh_best_in_set', '.0%'):>17} {f('shrunk_minus_true'):>11} "
                  f"{g('true_best_in_set', '.0%'):>16} {f('likely_gain_fresh'):>17} {f('likely_gain_true'):>16}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
