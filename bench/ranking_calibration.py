"""Is the report's P(best) calibrated? The ranking models (search/ranking.py) on simulated searches.

Part 1, orders without tasks in common (the exchangeable model, as `itt report` ranks them): searches
of k orders x n seeds are drawn from the random-effects model with a known true score per order
(tau / sigma as given, sigma = 1). The figures: where P(best) falls in a bin, how often that order is
the true best (calibration); how often the 95% set holds the true best (coverage) and its size; and
for the order with the top mean, how far its mean and its shrunk score lie from its true score (RMSE:
the winner's curse, and what the shrinkage leaves of it). Seconds per setting.

Part 2, orders over a few tasks (what a search runs): the structured model (evidence shared through
which tasks, where, which before which) against the exchangeable one on the same simulated searches.
Each search is m orders drawn at random from a table's space with its true scores, and n seeds with
noise sd around them: the planted table's generator (bench/make_planted_table.py: 120 orders of 3 of
5 tasks; position weights, precedence bonuses), the curriculum one (bench/make_curriculum_table.py:
orders of 1-3 of 5 tasks; recency, easy-to-hard steps, interference, an enabler: effects neither model
has a term for), each with a fresh truth per search, and orders of 1-3 of 5 tasks with independent true
scores (no structure: the structured model should cost nothing there). Besides calibration and
coverage: the regret of the order each model names most likely best (the true best's score minus
its), and the RMSE of every order's posterior mean. Part 3, on the same searches: the report's chance
that an order the search did not finish (the rest of the space) beats the structured model's most
likely order, against how often one truly did, and its expected gain against the true gain. A few
minutes (--reps2 searches per setting).

    python bench/ranking_calibration.py [--reps 300] [--reps2 100] [--json bench/data/ranking_calibration.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from search import ranking as R

import make_curriculum_table as curriculum  # noqa: E402  (bench/ is on the path when a script runs)
import make_planted_table as planted  # noqa: E402

TASKS5 = ["toy_topic", "toy_align", "toy_length", "toy_parity", "toy_sim"]
SETTINGS = ((10, 3, 1.0), (10, 3, 0.5), (10, 3, 2.0), (6, 2, 1.0), (30, 3, 1.0))  # (orders, seeds, tau / sigma)
BINS = ((0.0, 0.2), (0.2, 0.6), (0.6, 1.01))
SHARED = (("planted", 40, 2, 0.02), ("planted", 40, 3, 0.03), ("curriculum", 40, 2, 0.02), ("curriculum", 60, 3, 0.03),
          ("curriculum", 60, 2, 0.008), ("independent", 40, 2, 0.02))  # (truth, orders, seeds, seed sd)


def run(k: int, n: int, ratio: float, reps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    pred, hit, covered, sizes, raw, shrunk = [], [], 0, [], [], []
    for _ in range(reps):
        truth = rng.normal(0, ratio, k)
        fig = pd.DataFrame([(f"o{i}", s, truth[i] + rng.normal()) for i in range(k) for s in range(n)],
                           columns=["order", "seed", "mean"])
        r = R.analyse(fig)
        best = f"o{int(truth.argmax())}"
        pred += [x["p_best"] for x in r["rows"]]
        hit += [x["order"] == best for x in r["rows"]]
        covered += best in r["set"]
        sizes.append(len(r["set"]))
        top = max(r["rows"], key=lambda x: x["observed"])
        t = truth[int(top["order"][1:])]
        raw.append((top["observed"] - t) ** 2)
        shrunk.append((top["shrunk"] - t) ** 2)
    return {"orders": k, "seeds": n, "tau_over_sigma": ratio, "reps": reps, "coverage": covered / reps,
            "set_size": float(np.mean(sizes)), "rmse_top_mean": float(np.sqrt(np.mean(raw))),
            "rmse_top_shrunk": float(np.sqrt(np.mean(shrunk))), "bins": bins(np.array(pred), np.array(hit))}


def bins(pred: np.ndarray, hit: np.ndarray, edges=BINS) -> list[dict]:
    out = []
    for lo, hi in edges:
        m = (pred >= lo) & (pred < hi)
        out.append({"bin": [lo, min(hi, 1.0)], "n": int(m.sum()), "predicted": float(pred[m].mean()) if m.any() else None,
                    "observed": float(hit[m].mean()) if m.any() else None})
    return out


def _cells(bs: list[dict]) -> str:
    """The non-empty bins as printed: [lo,hi) predicted/observed (n)."""
    return "  ".join(f"[{b['bin'][0]:.1f},{b['bin'][1]:.1f}) {b['predicted']:.2f}/{b['observed']:.2f} ({b['n']})"
                     for b in bs if b["n"])


def truth_of(kind: str, rng: np.random.Generator) -> pd.Series:
    """Every order's true score under a fresh draw of one generator."""
    if kind == "independent":
        space = [">".join(o) for k in (1, 2, 3) for o in itertools.permutations(TASKS5, k)]
        return pd.Series(rng.normal(0.6, 0.02, len(space)), index=space)
    gen, column = (planted, "final") if kind == "planted" else (curriculum, "true")
    rows, _ = gen.make_table(TASKS5, int(rng.integers(2 ** 31)))
    return pd.DataFrame(rows).astype({column: float}).groupby("order")[column].first()


def run_shared(kind: str, m: int, n: int, sd: float, reps: int, seed: int) -> dict:
    """Both models on the same simulated searches of m orders x n seeds."""
    rng = np.random.default_rng(seed)
    got = {model: {"pred": [], "hit": [], "covered": 0, "size": [], "regret": [], "rmse": []}
           for model in ("structured", "exchangeable")}
    left = {"said": [], "happened": [], "gain_said": [], "gain": []}  # could an unfinished order beat the pick?
    for _ in range(reps):
        full = truth_of(kind, rng)
        truth = full.iloc[rng.choice(len(full), m, replace=False)]
        fig = pd.DataFrame([(o, s, t + rng.normal(0, sd)) for o, t in truth.items() for s in range(n)],
                           columns=["order", "seed", "mean"])
        best = truth.idxmax()
        for model, g in got.items():
            r = R.analyse(fig, model=model, space=list(full.index) if model == "structured" else None)
            if model == "structured":
                u, rest = r["unfinished"], full.drop(truth.index)
                left["said"].append(u["p_better"])
                left["happened"].append(float(rest.max() > truth[r["most_likely"]]))
                left["gain_said"].append(u["expected_gain"])
                left["gain"].append(max(0.0, rest.max() - truth[r["most_likely"]]))
            g["pred"] += [x["p_best"] for x in r["rows"]]
            g["hit"] += [x["order"] == best for x in r["rows"]]
            g["covered"] += best in r["set"]
            g["size"].append(len(r["set"]))
            g["regret"].append(truth.max() - truth[r["most_likely"]])
            g["rmse"].append(np.mean([(x["shrunk"] - truth[x["order"]]) ** 2 for x in r["rows"]]))
    said, happened = np.array(left["said"]), np.array(left["happened"])
    unfinished = {"space": len(full), "said": float(said.mean()), "happened": float(happened.mean()),
                  "brier": float(np.mean((said - happened) ** 2)), "gain_said": float(np.mean(left["gain_said"])),
                  "gain": float(np.mean(left["gain"])),
                  "bins": bins(said, happened.astype(bool), ((0.0, 0.1), (0.1, 0.5), (0.5, 1.01)))}
    return {"truth": kind, "orders": m, "seeds": n, "seed_sd": sd, "reps": reps, "unfinished": unfinished,
            **{model: {"coverage": g["covered"] / reps, "set_size": float(np.mean(g["size"])),
                       "regret": float(np.mean(g["regret"])), "picks_true_best": float(np.mean(np.array(g["regret"]) == 0)),
                       "rmse_all": float(np.sqrt(np.mean(g["rmse"]))),
                       "bins": bins(np.array(g["pred"]), np.array(g["hit"]))} for model, g in got.items()}}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=300, help="simulated searches per setting (default 300)")
    ap.add_argument("--reps2", type=int, default=100, help="simulated searches per setting of part 2 (default 100)")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--no-start", action="store_true",
                    help="the structured model without its position-from-the-start block (as before 2026-12-06)")
    args = ap.parse_args(argv)
    for name in ("reps", "reps2"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1 (got {getattr(args, name)})")
    if args.no_start:
        full = R.blocks_of
        R.blocks_of = lambda orders: tuple(b for b in full(orders) if b != "start")
    out = [run(k, n, r, args.reps, seed=11 + i) for i, (k, n, r) in enumerate(SETTINGS)]
    print("Part 1: orders without tasks in common (the exchangeable model)")
    print(f"{'orders':>6} {'seeds':>5} {'tau/sigma':>9} {'95% set covers':>14} {'set size':>8} {'RMSE mean':>9} "
          f"{'RMSE shrunk':>11}  P(best) bins: predicted / observed (n)")
    for r in out:
        cells = _cells(r["bins"])
        print(f"{r['orders']:>6} {r['seeds']:>5} {r['tau_over_sigma']:>9} {r['coverage']:>14.3f} {r['set_size']:>8.1f} "
              f"{r['rmse_top_mean']:>9.3f} {r['rmse_top_shrunk']:>11.3f}  {cells}")
    shared = [run_shared(*setting, args.reps2, seed=31 + i) for i, setting in enumerate(SHARED)]
    print("\nPart 2: orders over 5 tasks, structured (S) against exchangeable (E) on the same searches; regret and "
          "RMSE in units of the seed sd")
    print(f"{'truth':>11} {'orders':>6} {'seeds':>5} {'model':>5} {'covers':>6} {'set':>5} {'regret':>6} "
          f"{'picks best':>10} {'RMSE':>5}  P(best) bins: predicted / observed (n)")
    for r in shared:
        for model in ("structured", "exchangeable"):
            g = r[model]
            cells = _cells(g["bins"])
            print(f"{r['truth']:>11} {r['orders']:>6} {r['seeds']:>5} {model[0].upper():>5} {g['coverage']:>6.2f} "
                  f"{g['set_size']:>5.1f} {g['regret'] / r['seed_sd']:>6.3f} {g['picks_true_best']:>10.2f} "
                  f"{g['rmse_all'] / r['seed_sd']:>5.3f}  {cells}")
    print("\nPart 3: could an order the search did not finish beat the structured model's most likely one? Its "
          "P(better) against how often one truly did, and the expected gain against the true gain (in seed sds)")
    print(f"{'truth':>11} {'orders':>6} {'of':>4} {'seeds':>5} {'P said':>6} {'happened':>8} {'Brier':>5} {'gain said':>9} "
          f"{'gain':>5}  bins: predicted / observed (n)")
    for r in shared:
        u = r["unfinished"]
        cells = _cells(u["bins"])
        print(f"{r['truth']:>11} {r['orders']:>6} {u['space']:>4} {r['seeds']:>5} {u['said']:>6.2f} {u['happened']:>8.2f} "
              f"{u['brier']:>5.3f} {u['gain_said'] / r['seed_sd']:>9.3f} {u['gain'] / r['seed_sd']:>5.3f}  {cells}")
    if args.json:
        Path(args.json).write_text(json.dumps({"exchangeable": out, "shared": shared}, indent=1))
    return out + shared


if __name__ == "__main__":
    main()
