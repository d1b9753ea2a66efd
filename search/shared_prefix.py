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
* beta by generalised least squares on the order means, and a Wald F test of the groups' equality, its
  denominator degrees of freedom by Satterthwaite's approximation (as lmerTest's): V, each C_k and tau^2
  are quadratic forms y'Qy of the per-seed scores, so under normality their sampling covariance is
  2 tr(Q_a Omega Q_b Omega) (Omega: the scores' covariance at the estimates), and the df are those of a
  scaled chi^2 with the contrast variance's mean and variance (the delta method). The residual df
  (orders minus fixed effects) would take the covariance as known: too few where V and C_k rest on many
  seeds of many orders and tau^2 on a few orders (a 16-order search rejected 0.3% of null position tests
  at alpha 0.05), too many where a shared prefix's few draws carry the contrast (7-9% with the first
  stage holding 70% of a seed's variance).

On simulated searches with no position effect (``bench/prefix_tests_calibration.py``: 60 orders of 3 of 5
tasks, 3 or 5 seeds) any of five position tests came out significant (Holm, alpha 0.05) in 2-5% of
searches at the toy chains' prefix covariances and 5-6% at stronger ones, against 7-25% with
Kruskal-Wallis over orders as units; where the tasks an order holds matter as much as on toy3 it found a
planted position effect in 11-31% of searches, Kruskal-Wallis in 0-2%.
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
        self.raw = self._moments(R, rep) if self.ok else np.zeros(len(self.pairs))
        self.C = np.maximum.accumulate(np.clip(self.raw, 0.0, None))
        self._forms = None

    def _pairs(self, rep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pairs of different orders with 2+ seeds each and a seed in common, and each pair's weight
        (the expectation of its summed residual products over C_k)."""
        n, M = self.n, self.M
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = M * (1 - 1 / n[:, None] - 1 / n[None, :]) + M ** 2 / (n[:, None] * n[None, :])
        return rep[:, None] & rep[None, :] & (M > 0) & ~np.eye(len(n), dtype=bool), weight

    def _moments(self, R: np.ndarray, rep: np.ndarray) -> np.ndarray:
        """The raw moment estimate of each C_k (before the clip at 0 and the running maximum)."""
        pair, weight = self._pairs(rep)
        P = R @ R.T
        C = np.zeros(self.K.max() + 1)
        self.pairs = np.zeros(len(C), dtype=int)  # pairs of orders behind each C_k (0: C_k carried from below)
        for k in range(len(C)):
            sel = pair & (self.K == k)
            w = weight[sel].sum()
            C[k] = P[sel].sum() / w if w > 0 else 0.0
            self.pairs[k] = int(sel.sum() // 2)
        return C

    def forms(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """The observed (order, seed) cells (in order: an order's cells together), and V and each C_k as
        quadratic forms y'Qy of their scores (a C_k is the raw moment the clip and the running maximum
        kept, or the constant 0): what the sampling covariance of the estimates is computed from
        (``groups_test``'s Satterthwaite df). Computed once."""
        if self._forms is None:
            obs = np.argwhere(~np.isnan(self.Y))
            o, s = obs[:, 0], obs[:, 1]
            res = np.eye(len(obs)) - (o[:, None] == o[None, :]) / self.n[o][None, :]  # score minus its order's mean
            rep = self.n >= 2
            Q = [res * (rep[o][:, None] & rep[o][None, :]) / (self.n[rep] - 1).sum()]
            pair, weight = self._pairs(rep)
            raw = []
            for k in range(len(self.C)):
                sel = pair & (self.K == k)
                w = weight[sel].sum()
                raw.append(res @ ((s[:, None] == s[None, :]) & sel[np.ix_(o, o)]) @ res / w if w > 0 else None)
            kept = np.clip(self.raw, 0.0, None)
            for k in range(len(self.C)):
                j = int(np.argmax(kept[:k + 1]))
                Q.append(raw[j] if kept[j] > 0 and raw[j] is not None else np.zeros_like(res))
            # Q Omega = Q Omega_0 + tau^2 Q S (Omega_0: same seed, by shared stages; S: same order), per test
            omega0 = (s[:, None] == s[None, :]) * np.where(o[:, None] == o[None, :], self.V, self.C[self.K[np.ix_(o, o)]])
            self._forms = (obs, Q, [q @ omega0 for q in Q], omega0)
        return self._forms[:2]

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
    cells = int((~np.isnan(pc.Y)).sum())
    df = _satterthwaite(pc, idx, X, Si, A, L, H, tau2) if cells <= SATTERTHWAITE_MAX else float(N - p)
    return {"F": F, "df": [q, df], "df_by": "Satterthwaite" if cells <= SATTERTHWAITE_MAX else "residual", "p": float(stats.f.sf(F, q, df)), "diffs": [float(x) for x in d], "tau2": tau2}


# scores (order x seed) up to which the df are Satterthwaite's: its quadratic forms are (scores x scores)
# matrices, O(scores^3) (2,100 scores: 3.7 s and 0.7 GB for the first test, 1.3 s each after, on this
# project's 2-core machine); beyond, the residual df (orders minus fixed effects), and the test says so
SATTERTHWAITE_MAX = 2500


def _satterthwaite(pc: PrefixCovariance, idx: list[int], X, Si, A, L, H, tau2: float) -> float:
    """The Wald F test's denominator df (the module docstring): per eigen-direction l of the contrasts'
    covariance L A L', nu = 2 (l A l')^2 / Var(l A l'), Var by the delta method over (V, C_k, tau^2);
    combined as lmerTest's contestMD does (Fai & Cornelius, 1996). At most the number of scores."""
    obs, Q = pc.forms()
    _, _, Q_omega0, omega0 = pc._forms
    o = obs[:, 0]
    new = np.r_[True, o[1:] != o[:-1]]
    starts, grp = np.flatnonzero(new), np.cumsum(new) - 1  # each order's first cell; each cell's order, 0..
    at = dict(zip(o[starts], range(len(starts))))
    N, p = X.shape
    n = pc.n[idx]
    dS = [np.diag(1 / n)]  # d Sigma / d V, / d C_k, / d tau^2
    for k in range(len(pc.C)):
        d = (pc.K[np.ix_(idx, idx)] == k) * pc.M[np.ix_(idx, idx)] / (n[:, None] * n[None, :])
        np.fill_diagonal(d, 0.0)
        dS.append(d)
    dS.append(np.eye(N))
    B = [qo + tau2 * np.add.reduceat(q, starts, axis=1)[:, grp] for q, qo in zip(Q, Q_omega0)]  # Q (Omega_0 + tau^2 S)
    if tau2 > 0:  # tau^2 = (residual SS of the order means - its expectation given V and C) / (N - p)
        R = np.eye(N) - H
        omega = omega0 + tau2 * (o[:, None] == o[None, :])
        mean_omega = np.add.reduceat(omega, starts, axis=0)[[at[i] for i in idx]] / n[:, None]  # (order means) Omega
        mean_of = (grp[None, :] == np.array([at[i] for i in idx])[:, None]) / n[:, None]
        B_tau = mean_of.T @ (R @ mean_omega) - sum(np.trace(R @ d) * b for d, b in zip(dS[:-1], B))
        B.append(B_tau / (N - p))
    else:  # clipped at 0: held there
        B.append(np.zeros_like(B[0]))
    cov = np.array([[2 * np.sum(a * b.T) for b in B] for a in B])
    lam, P = np.linalg.eigh(L @ A @ L.T)
    nus = []
    for m in range(len(lam)):
        u = Si @ X @ A @ (P[:, m] @ L)
        g = np.array([-(u @ d @ u) for d in dS])
        v = float(g @ cov @ g)
        nus.append(2 * lam[m] ** 2 / v if v > 0 else np.inf)
    nus = np.minimum(nus, len(o))
    if len(nus) == 1:
        return float(nus[0])
    E = float(sum(nu / (nu - 2) for nu in nus if nu > 2))
    return float(2 * E / (E - len(nus))) if E > len(nus) else float(nus.min())


def per_seed_matrix(fig: pd.DataFrame, figure: str = "mean") -> tuple[list[str], np.ndarray]:
    """The IF orders (``fig``: one row per order and seed) and their scores, a row per order, a column per
    seed (NaN where an order lacks a seed)."""
    d = fig[(fig["order"] != "") & fig[figure].notna()]
    wide = d.pivot_table(index="order", columns="seed", values=figure, aggfunc="mean")
    return list(wide.index), wide.to_numpy(float)
