"""Comparing groups of orders whose scores are not independent: orders that share a trained prefix.

The stage cache trains a prefix once per seed, so every order beginning with task T uses the same model of
T on a given seed, and the orders beginning with T>U the same model of T>U. Their scores move together
from seed to seed: a position test that takes orders as independent units ("T first scores better")
counts one lucky draw of T's first stage as many orders' evidence. Taking orders as units is also weak
where the tasks an order holds matter more than where they stand: the spread they give sits in the test's
noise.

The model (a linear mixed model, its variance components estimated by the method of moments): the score
of order o on seed s is

    y_os = x_o' beta + g_o + sum_{k = 0..len(o)} u_(prefix_k(o), s) + e_os

with ``x_o`` the fixed effects (the groups compared, and which other tasks the order holds), g_o an order's
own deviation (variance tau^2), u a random effect of each trained prefix on each seed (prefix_0, the empty
one, is what all orders share on a seed: the target fine-tune's data order and head), e the rest. For
two different orders whose longest common prefix has k stages, their scores on the same seed covary by
C_k = the sum of the u variances up to k, and not at all on different seeds. So

* C_k is estimated from the seed-to-seed residuals (each score minus its order's mean over seeds) of all
  pairs of orders sharing exactly k stages: E[r_os r_o's] = C_k (1 - 1/n_o - 1/n_o' + m/(n_o n_o')) for a
  seed both ran (n: their seeds, m: the seeds they share), pooled over pairs and seeds; C_k is then made
  non-negative and non-decreasing in k, as a sum of variances is;
* V, a score's variance around its order's true mean, is the pooled within-order variance;
* the order means' covariance is Sigma = diag(tau^2 + V / n_o) + C_k(o,o') m / (n_o n_o'), with tau^2
  from the residuals of the fixed-effects fit (its expectation solved for tau^2);
* beta by generalised least squares on the order means, and a Wald F test of the groups' equality with
  the residual degrees of freedom (orders minus fixed effects).

On simulated searches with no position effect (``bench/prefix_tests_calibration.py``: 60 orders of 3 of 5
tasks, 3 or 5 seeds) any of five position tests came out significant (Holm, alpha 0.05) in 2-5% of
searches at the toy chains' prefix covariances and 5-7% at stronger ones, against 7-25% with
Kruskal-Wallis over orders as units; where the tasks an order holds matter as much as on toy3 it found a
planted position effect in 12-31% of searches, Kruskal-Wallis in 0-2%.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def common_prefix(a: tuple, b: tuple) -> int:
    """Stages two orders share from the start."""
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


class PrefixCovariance:
    """The variance components of a search's per-seed scores (the module docstring): ``C[k]`` the
    covariance of two orders sharing k stages on one seed, ``V`` a score's variance around its order's
    mean; None-like (``ok`` False) where no order has two seeds."""

    def __init__(self, orders: list[tuple], Y: np.ndarray):
        self.orders, self.Y = orders, Y
        mask = ~np.isnan(Y)
        self.n = mask.sum(axis=1).astype(float)
        self.mean = np.array([np.nanmean(row) if k else np.nan for row, k in zip(Y, self.n)])
        self.K = np.array([[common_prefix(a, b) for b in orders] for a in orders], dtype=int)
        self.M = mask.astype(float) @ mask.T.astype(float)  # seeds two orders share
        rep = self.n >= 2
        self.ok = bool(rep.sum() >= 2)
        R = np.where(mask, Y - np.nan_to_num(self.mean)[:, None], 0.0)
        self.V = float((R[rep] ** 2).sum() / (self.n[rep] - 1).sum()) if rep.any() else 0.0
        self.pairs = np.zeros(self.K.max() + 1 if len(orders) else 1, dtype=int)
        self.C = self._moments(R, rep) if self.ok else np.zeros(len(self.pairs))

    def _moments(self, R: np.ndarray, rep: np.ndarray) -> np.ndarray:
        n, M = self.n, self.M
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = M * (1 - 1 / n[:, None] - 1 / n[None, :]) + M ** 2 / (n[:, None] * n[None, :])
        P = R @ R.T
        pair = rep[:, None] & rep[None, :] & (M > 0) & ~np.eye(len(n), dtype=bool)
        C = np.zeros(self.K.max() + 1)
        self.pairs = np.zeros(len(C), dtype=int)  # pairs of orders behind each C_k (0: C_k carried from below)
        for k in range(len(C)):
            sel = pair & (self.K == k)
            w = weight[sel].sum()
            C[k] = P[sel].sum() / w if w > 0 else 0.0
            self.pairs[k] = int(sel.sum() // 2)
        return np.maximum.accumulate(np.clip(C, 0.0, None))

    def between(self, idx: list[int]) -> np.ndarray:
        """Covariance of the means of orders ``idx`` through their shared prefixes (zero diagonal)."""
        sub = np.ix_(idx, idx)
        n = self.n[idx]
        cov = self.C[self.K[sub]] * self.M[sub] / (n[:, None] * n[None, :])
        np.fill_diagonal(cov, 0.0)
        return cov

    def figures(self) -> dict:
        """What the report prints, for each number of shared stages some pair of orders has: C_k, and as a
        correlation, C_k / V (V holds every prefix's variance and the rest: a seed's score around its
        order's mean)."""
        ks = [k for k in range(len(self.C)) if self.pairs[k]]
        return {"shared_stages": ks, "covariance": [float(self.C[k]) for k in ks], "pairs": [int(self.pairs[k]) for k in ks],
                "correlation": [float(self.C[k] / self.V) if self.V > 0 else 0.0 for k in ks], "seed_variance": self.V}


def _full_rank(X: np.ndarray, keep: int) -> np.ndarray:
    """X's first ``keep`` columns and, in turn, each later one that adds to the rank."""
    cols = list(range(keep))
    for j in range(keep, X.shape[1]):
        if np.linalg.matrix_rank(X[:, cols + [j]]) > len(cols):
            cols.append(j)
    return X[:, cols]


def groups_test(pc: PrefixCovariance, groups: list[list[int]], adjust: np.ndarray) -> dict:
    """Are the groups of orders (indices into ``pc.orders``) equal in mean score, the other tasks they hold
    (``adjust``: one 0/1 column per task, a row per order of ``pc``) accounted for? GLS and a Wald F test
    (the module docstring). Returns the test's F, degrees of freedom and p, each group's adjusted effect
    relative to the first (``diffs``), and tau^2; or ``underpowered`` where the orders are too few for the
    fixed effects."""
    idx = [i for g in groups for i in g]
    D = np.zeros((len(idx), len(groups)))
    at = 0
    for j, g in enumerate(groups):
        D[at:at + len(g), j] = 1.0
        at += len(g)
    X = _full_rank(np.hstack([D, adjust[idx]]), len(groups))
    N, p = X.shape
    if N - p < 1:
        return {"underpowered": f"{N} orders for {p} fixed effects (the groups and the other tasks they hold)"}
    y = pc.mean[idx]
    if np.ptp(y) == 0:
        return {"F": 0.0, "df": [len(groups) - 1, N - p], "p": 1.0, "diffs": [0.0] * (len(groups) - 1), "tau2": 0.0}
    cov = pc.between(idx)
    seed = pc.V / pc.n[idx]
    H = X @ np.linalg.pinv(X)
    resid = y - H @ y
    expected = np.trace((np.eye(N) - H) @ (cov + np.diag(seed)))  # E[residual SS] without tau^2
    tau2 = max(0.0, float(resid @ resid - expected) / (N - p))
    Sigma = cov + np.diag(np.maximum(tau2 + seed, 1e-12 * max(float(y.var()), 1e-300)))
    Si = np.linalg.inv(Sigma)
    A = np.linalg.pinv(X.T @ Si @ X)
    beta = A @ X.T @ Si @ y
    q = len(groups) - 1
    L = np.hstack([-np.ones((q, 1)), np.eye(q), np.zeros((q, p - len(groups)))])  # group j - group 0
    d = L @ beta
    F = float(d @ np.linalg.solve(L @ A @ L.T, d)) / q
    return {"F": F, "df": [q, N - p], "p": float(stats.f.sf(F, q, N - p)), "diffs": [float(x) for x in d], "tau2": tau2}


def per_seed_matrix(fig: pd.DataFrame, figure: str = "mean") -> tuple[list[str], np.ndarray]:
    """The IF orders (``fig``: one row per order and seed) and their scores, a row per order, a column per
    seed (NaN where an order lacks a seed)."""
    d = fig[(fig["order"] != "") & fig[figure].notna()]
    wide = d.pivot_table(index="order", columns="seed", values=figure, aggfunc="mean")
    return list(wide.index), wide.to_numpy(float)
