"""The report's position and precedence tests on simulated searches whose truth is known.

Orders of 3 of 5 tasks (all 60, or 30 drawn at random), each run on S seeds with the stage cache's
sharing: a score is

    (the tasks it holds: one effect per task, sd ``member``) + (the order's own deviation, sd 0.02)
    + (one draw per trained prefix and seed: the empty prefix, the first stage, the first two) + noise,

with the prefix variances of the toy chains (``toy``: estimated from bench/data/toy_3of5_s3_runs.csv's
finals by the report's own estimator, search/shared_prefix.py) or stronger ones (``strong``: 15% of a
seed's variance on each of the first two prefixes). No task's position matters, except with ``effect``:
task a scores +effect when it stands first. For each scenario the share of searches in which ANY of the
five position tests, or any of the ten precedence tests, is significant after Holm (alpha 0.05): under
no effect a false positive rate (at most 0.05 is right), under an effect the power. Both tests of the
report: ``gls`` (search/shared_prefix.py: the default where orders have 2+ seeds) and ``rank`` (the
rank tests over order means it replaced, which take orders as independent units).

    python bench/prefix_tests_calibration.py [--searches 300]    # about 18 min on 2 shared cores
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search import stats  # noqa: E402

TASKS = "abcde"
SEED_VAR = 3e-3  # a score's variance around its order's mean over seeds (toy3's finals: 3.05e-3)
PREFIX = {"toy": (1.7e-4, 4e-5, 4.3e-4), "strong": (1.7e-4, 0.15 * SEED_VAR, 0.15 * SEED_VAR)}  # empty, 1, 2 stages


def simulate(rng, seeds: int, n_orders: int, prefix: tuple, member: float, effect: float) -> pd.DataFrame:
    orders = list(itertools.permutations(TASKS, 3))
    if n_orders < len(orders):
        orders = [orders[i] for i in rng.choice(len(orders), n_orders, replace=False)]
    task = dict(zip(TASKS, rng.normal(0, member, len(TASKS))))
    own = rng.normal(0, 0.02, len(orders))
    noise = SEED_VAR - sum(prefix)
    rows = []
    for s in range(seeds):
        drawn: dict[tuple, float] = {}
        for o, g in zip(orders, own):
            shared = 0.0
            for k, var in enumerate(prefix):
                if o[:k] not in drawn:
                    drawn[o[:k]] = rng.normal(0, var ** 0.5)
                shared += drawn[o[:k]]
            y = sum(task[t] for t in o) + g + shared + rng.normal(0, noise ** 0.5) + (effect if o[0] == "a" else 0.0)
            rows.append({"order": ">".join(o), "seed": s, "mean": y})
    return pd.DataFrame(rows)


def any_significant(fig: pd.DataFrame, rank_only: bool) -> tuple[bool, bool]:
    means = fig.groupby("order")["mean"].mean().to_dict()
    pos = stats._positions(fig, means, 0.05, rank_only=rank_only)
    pre = stats._precedence(fig, means, 0.05, rank_only=rank_only)
    return (any(t.get("significant") for t in pos["tests"]), any(p.get("significant") for p in pre["pairs"]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--searches", type=int, default=300)
    args = ap.parse_args(argv)
    if args.searches < 1:
        ap.error(f"--searches must be >= 1 (got {args.searches})")
    print(f"share of {args.searches} simulated searches with any test significant (Holm, alpha 0.05); "
          "effect 0: false positives, effect 0.03: power")
    print(f"{'prefix':7s} {'member sd':9s} {'seeds':5s} {'orders':6s} {'effect':6s} | position: gls  rank | precedence: gls  rank")
    t0 = time.time()
    rng = np.random.default_rng(0)
    for name, prefix in PREFIX.items():
        for member in (0.0, 0.1):
            for seeds, n, effect in ((3, 60, 0.0), (5, 60, 0.0), (3, 30, 0.0), (3, 60, 0.03), (5, 60, 0.03)):
                hits = np.zeros((2, 2))
                for _ in range(args.searches):
                    fig = simulate(rng, seeds, n, prefix, member, effect)
                    hits[0] += any_significant(fig, rank_only=False)
                    hits[1] += any_significant(fig, rank_only=True)
                r = hits / args.searches
                print(f"{name:7s} {member:<9g} {seeds:<5d} {n:<6d} {effect:<6g} | position: {r[0, 0]:.3f} {r[1, 0]:.3f} "
                      f"| precedence: {r[0, 1]:.3f} {r[1, 1]:.3f}", flush=True)
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
