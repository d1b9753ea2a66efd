"""Power and false-positive rate of `itt report`'s order tests on planted tables (no training, no Ray).

Orders of length 1-2 of 4 tasks (16 IF orders) and F; per seed a shared shift (sd ``--seed-sd``) and
per-language noise; an order whose first task is ``ta`` gets +delta. Prints, per (delta, seeds), how
often the primary Kruskal–Wallis test (mean over languages) and the arrangement-only test (same
tasks, other order) reject at alpha over ``--reps`` replicate tables.

    python bench/report_power.py --reps 200
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import pandas as pd

from search import stats as S

TASKS = ["ta", "tb", "tc", "td"]
LANGS = ["en", "xa", "xb", "xc"]


def table(rng, orders, delta: float, seeds: int, seed_sd: float, lang_sd: float) -> pd.DataFrame:
    o, s, lg = (a.ravel() for a in np.meshgrid(np.arange(len(orders)), np.arange(seeds), np.arange(len(LANGS)),
                                               indexing="ij"))
    eff = np.array([delta if x.startswith("ta") else 0.0 for x in orders])
    shift = rng.normal(0, seed_sd, (len(orders), seeds))
    score = 0.7 - 0.05 * lg + eff[o] + shift[o, s] + rng.normal(0, lang_sd, len(o))
    return pd.DataFrame({"order": np.asarray(orders, object)[o], "seed": s, "language": np.asarray(LANGS)[lg],
                         "score": score})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--seed-sd", type=float, default=0.02)
    ap.add_argument("--lang-sd", type=float, default=0.01)
    ap.add_argument("--alpha", type=float, default=S.ALPHA)
    args = ap.parse_args()
    orders = [""] + [">".join(p) for k in (1, 2) for p in itertools.permutations(TASKS, k)]
    rng = np.random.default_rng(0)
    print(f"{len(orders) - 1} IF orders + F, {args.reps} replicates, seed sd {args.seed_sd}, language sd "
          f"{args.lang_sd}, alpha {args.alpha}")
    print(f"{'delta':>6} {'seeds':>5} {'primary':>8} {'arrangement':>11} {'seconds':>7}")
    for delta in (0.0, 0.01, 0.02, 0.04):
        for seeds in (3, 5):
            t0 = time.time()
            hit = {"primary": 0, "arrangement": 0}
            for _ in range(args.reps):
                fig = S.seed_figures(table(rng, orders, delta, seeds, args.seed_sd, args.lang_sd))
                hit["primary"] += S.order_effect(fig, "mean")["p"] < args.alpha
                hit["arrangement"] += S.arrangement_effect(fig, "mean")["p"] < args.alpha
            print(f"{delta:6.2f} {seeds:5d} {hit['primary'] / args.reps:8.3f} {hit['arrangement'] / args.reps:11.3f} "
                  f"{time.time() - t0:7.1f}")


if __name__ == "__main__":
    main()
