"""The report's best-IF-vs-F test on simulated tables: how often it rejects when no order beats F, and its power.

The best IF order is picked on the seeds it is then tested on. Welch's p of the pick ignores that; the
report's p (``search.stats.best_vs_f_permutation``) redoes the pick in every permutation of the orders'
labels (Westfall & Young's max-statistic). Per case: the share of simulated searches in which some
language came out significant (Holm over 3 languages, alpha 0.05), for both.

    python bench/if_vs_f_calibration.py              # about 10 s: the figures in README "IF vs F"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search import stats as S  # noqa: E402


def rejections(k: int, n: int, *, reps: int, perms: int, shift: float = 0.0) -> tuple[float, float]:
    """(permutation, Welch): the share of ``reps`` searches of ``k`` IF orders x ``n`` seeds (and F) in which some
    language is significant. Scores: seed sd 0.02 shared by a model's 3 languages plus 0.02 per language; order
    o0 gets ``shift`` (0: no order differs from F)."""
    rng = np.random.default_rng(1)
    perm = welch = 0
    for r in range(reps):
        orders = np.array([""] * n + [f"o{i}" for i in range(k) for _ in range(n)])
        y = rng.normal(0, 0.02, (len(orders), 3)) + rng.normal(0, 0.02, (len(orders), 1))
        y[orders == "o0"] += shift
        means = {o: y[orders == o].mean() for o in set(orders) if o}
        best = max(means, key=means.get)
        perm += min(S.holm(S.best_vs_f_permutation(y, orders, best, permutations=perms, seed=r))) < S.ALPHA
        welch += min(S.holm([S.welch(y[orders == best][:, j], y[orders == ""][:, j]) for j in range(3)])) < S.ALPHA
    return perm / reps, welch / reps


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=200, help="simulated searches per case (default 200)")
    ap.add_argument("--perms", type=int, default=400, help="permutations per test (default 400; the report: 2000)")
    args = ap.parse_args(argv)
    print("case                                 permutation  Welch")
    for k, n, shift, what in ((16, 3, 0.0, "no effect"), (40, 5, 0.0, "no effect"), (16, 3, 0.06, "o0 +0.06")):
        p, w = rejections(k, n, reps=args.reps, perms=args.perms, shift=shift)
        print(f"{k:>2} IF orders x {n} seeds, {what:<10}      {p:>6.3f}    {w:>6.3f}")


if __name__ == "__main__":
    main()
