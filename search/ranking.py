"""Which IF order is best, and how sure is that? Bayesian ranking of a search's orders.

The leaderboard ranks orders by their mean over seeds. With a few seeds per order the top of it is
partly luck: the order with the best mean is often not the truly best, and its mean overstates its
true score (the winner's curse, which ``itt confirm`` measures on fresh seeds). This module says, from
the search's own seeds, how sure the ranking is.

Two models. Where orders have tasks in common (what a search runs), the *structured* model (below)
shares evidence between them; elsewhere, and for comparison, the *exchangeable* one.

The exchangeable model: the one-way random-effects model of ``itt power`` (search/power.py): an order's true score
theta_i ~ N(mu, tau^2), a seed's score ~ N(theta_i, sigma^2). The normal hierarchical model of Gelman
et al., *Bayesian Data Analysis* (3rd ed.), section 5.4, with sigma unknown too: priors flat on mu,
1/sigma on sigma, and half-Cauchy on tau with the scale of an order mean's seed noise (sigma_hat /
sqrt(n); Gelman 2006, "Prior distributions for variance parameters in hierarchical models", Bayesian
Analysis 1, for a hierarchy with few groups). (sigma, tau) are drawn from their joint posterior on a
grid (stratified, so the same data give the same figures); given them each order's true score is

    theta_i | sigma, tau, data ~ N(mu_hat + B_i (ybar_i - mu_hat), B_i sigma^2 / n_i),  B_i = tau^2 / (tau^2 + sigma^2 / n_i)

(mu at its conditional mean mu_hat: a shift shared by every order, which moves no order past another
when the seed counts are equal). Averaged over the draws:

* ``p_best``: P(theta_i > theta_j for every other j) = integral of phi_i(x) prod_{j != i} Phi_j(x) dx,
  one grid integral for all orders per draw (sum of log Phi_j once, each order's own term divided out);
* the set of orders that could be best: the fewest orders whose P(best) adds up to ``level`` (a
  credible set);
* ``shrunk``: the posterior mean. For the top order, its mean minus its shrunk score is the winner's
  curse the seeds imply.

Measured on simulated searches (``python bench/ranking_calibration.py``; 300 searches per setting
of 6-30 orders x 2-3 seeds, tau / sigma 0.5-2): where P(best) says 0.2-0.6 the order was the true
best 0.32-0.42 of the time against 0.31-0.38 said, and above 0.6, 0.74-0.83 against 0.75-0.85 said
(with a small spread, tau = sigma / 2, the 18 such cases were right 0.44 of the time against 0.71);
the 95% set held the true best in 98-99% of searches (conservative); the top order's shrunk score was
nearer its true score than its mean (RMSE 0.43-0.69 against 0.64-0.84, in units of sigma). On the
committed real chains (``bench/winners_curse.py``, toy3, two search seeds) the shrunk score took a
third of the curse out against the fresh seed (+0.037 against +0.053), and on the simulated curriculum
table 90% of it against the true mean. Orders a searcher chose to run are not a random sample of the
space, and orders sharing tasks are more alike than this model assumes.

The structured model: an order's true score is mu plus random effects of its features - which tasks it
trains, where each sits (its depth from the end; where the orders differ in length, also its position
from the start: what order_bo's two averaged GPs see), which precedes which (search/searchers/features.py)
- plus its own effect, one variance per component: a Gaussian process whose kernel is a sum of linear
kernels, i.e. a linear mixed model with crossed random effects. Its four or five variances and sigma are
integrated out: draws from their posterior (restricted likelihood of the order means, the seeds'
spread, half-Cauchy priors as above) by importance sampling from a Student-t around the mode; given
them the true scores are jointly normal (kriging with an unknown mean), and P(best) is counted over
4000 joint draws. The exchangeable model is its special case with
only the order's own effect. bench/ranking_calibration.py (part 2) has both models on the same
simulated searches over 5 tasks.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import integrate, linalg, optimize, special, stats
from threadpoolctl import threadpool_limits

LEVEL = 0.95  # the credible set of possible best orders
DRAWS = 40  # (sigma, tau) draws from their posterior (stratified over the grid)
GRID = 2001  # points of each P(best) integral (more where a posterior is narrow, see p_best)
HYPER_GRID = 120  # grid points per hyperparameter (sigma, tau)
MODELS = ("auto", "structured", "exchangeable")
# IF orders "auto" needs for the structured model: as many contrasts between them as its 4 shared variances
# (5 with orders of several lengths; the half-Cauchy priors hold the variances the data cannot tell apart)
MIN_STRUCTURED = 5


def analyse(fig: pd.DataFrame, figure: str = "mean", level: float = LEVEL, draws: int = DRAWS,
            model: str = "auto", space: list[str] | None = None) -> dict:
    """``fig``: per-seed figures (search.stats.seed_figures), F's rows included or not (F is left out).
    ``model``: "structured" (orders share evidence through their tasks, below), "exchangeable" (each
    order on its own seeds), or "auto": structured where some task is in two or more of the orders and
    there are ``MIN_STRUCTURED`` or more.
    ``space``: every IF order of the search's space ('a>b'); with the structured model, also how likely an
    order the search did not finish beats the most likely one (``unfinished``). Returns the
    hyperparameters' posterior medians, each IF order's posterior and P(best), the credible set of
    possible best orders; or ``{"underpowered": reason}``."""
    from search.stats import F

    if model not in MODELS:
        raise ValueError(f"ranking model {model!r}: one of {', '.join(MODELS)}")
    d = fig[(fig["order"] != F) & fig[figure].notna()]
    g = d.groupby("order", sort=False)[figure]
    means = g.mean()
    orders, n, ybar = list(means.index), g.size().reindex(means.index).to_numpy(float), means.to_numpy(float)
    replicated = int((n >= 2).sum())
    if replicated < 2:
        return {"underpowered": f"{replicated} IF order(s) with 2+ seeds; seed noise and the spread of orders are "
                                f"told apart on 2+ IF orders with 2+ seeds each (search.seeds)"}
    ssw = float(g.apply(lambda v: ((v - v.mean()) ** 2).sum()).sum())
    dfw = int((n - 1).sum())
    if ssw <= 1e-12 * max(1.0, float((ybar ** 2).mean())) * dfw:  # (equal values leave float dust)
        return {"underpowered": "the seeds give identical scores for every order: no seed noise to model"}
    alone = _exchangeable(ybar, n, ssw, dfw, draws)
    fit = alone
    if model == "structured" or (model == "auto" and len(orders) >= MIN_STRUCTURED and shares_tasks(orders)):
        with threadpool_limits(1):  # (hundreds of small solves: BLAS threads cost 5x more than they save)
            fit = _structured(orders, ybar, n, ssw, dfw, draws)
    rows = sorted(({"order": o, "n_seeds": int(k), "observed": float(y), "shrunk": float(m), "sd": float(s_),
                    "p_best": float(pb)} for o, k, y, m, s_, pb in zip(orders, n, ybar, fit["mean"], fit["sd"], fit["p"])),
                  key=lambda r: (-r["p_best"], -r["shrunk"]))
    best = credible_set([r["p_best"] for r in rows], level)
    top = max(rows, key=lambda r: r["observed"])  # the leaderboard's first IF order
    out = {"figure": figure, "model": fit["model"], **fit["hyper"], "orders": len(orders), "level": level,
           "draws": draws, "rows": rows, "set": [r["order"] for r in rows[:best]],
           "set_p": float(sum(r["p_best"] for r in rows[:best])), "most_likely": rows[0]["order"],
           "top_observed": top["order"], "curse": top["observed"] - top["shrunk"]}
    if fit is not alone:  # what each order's own seeds say, for comparison
        p = sorted(zip(alone["p"], orders), key=lambda x: -x[0])
        out["exchangeable"] = {"most_likely": p[0][1], "p_best": float(p[0][0]),
                               "set": [o for _, o in p[:credible_set([x for x, _ in p], level)]]}
        if space is not None and len(orders) < UNFINISHED_MIN:
            out["unfinished"] = {"underpowered": f"{len(orders)} finished IF orders; the model predicts the unfinished "
                                                 f"ones from {UNFINISHED_MIN} or more"}
        elif space is not None:
            with threadpool_limits(1):
                out["unfinished"] = unfinished(orders, ybar, n, fit["logs"], space, orders.index(rows[0]["order"]),
                                               fit["blocks"])
    return out


def _exchangeable(ybar: np.ndarray, n: np.ndarray, ssw: float, dfw: int, draws: int) -> dict:
    """The one-way random-effects model: (sigma, tau) draws, each order's posterior given them, averaged."""
    sig, tau = hyper_draws(ybar, n, ssw, dfw, draws)
    p, mean, second = np.zeros(len(ybar)), np.zeros(len(ybar)), np.zeros(len(ybar))
    for s_, t_ in zip(sig, tau):
        post = posterior(ybar, n, s_, t_)
        p += p_best(post["mean"], post["sd"])
        mean += post["mean"]
        second += post["sd_total"] ** 2 + post["mean"] ** 2  # (mu's uncertainty too: the report's posterior sd)
    p, mean = p / draws, mean / draws
    sd = np.sqrt(np.maximum(second / draws - mean ** 2, 0.0))
    s_med, t_med = float(np.median(sig)), float(np.median(tau))
    return {"model": "exchangeable", "p": p, "mean": mean, "sd": sd,
            "hyper": {"sigma": s_med, "tau": t_med, "mu": float(posterior(ybar, n, s_med, t_med)["mu"])}}


def hyper_draws(ybar: np.ndarray, n: np.ndarray, ssw: float, dfw: int, draws: int = DRAWS,
                points: int = HYPER_GRID) -> tuple[np.ndarray, np.ndarray]:
    """(sigma, tau) drawn from their joint posterior (BDA3 eq. 5.21 with sigma unknown: the within-order
    sum of squares ``ssw`` on ``dfw`` degrees of freedom, and the order means' marginal likelihood with mu
    integrated out), on a grid, at stratified quantiles of the flattened grid (deterministic)."""
    s_hat = math.sqrt(ssw / dfw)
    # sigma: where its within-order posterior (sigma^2 ~ ssw / chi2(dfw)) has its mass
    sig = np.sort(np.sqrt(ssw / stats.chi2.ppf(np.linspace(0.0005, 0.9995, points), dfw)))
    scale = s_hat / math.sqrt(float(n.mean()))  # the half-Cauchy prior's: an order mean's seed noise
    spread = max(float(np.std(ybar, ddof=1)) if len(ybar) > 1 else 0.0, s_hat / math.sqrt(float(n.min())))
    tau = np.linspace(0.0, 6 * spread, points + 1)[1:]
    sg, tg = np.meshgrid(sig, tau, indexing="ij")
    w = 1.0 / (sg[..., None] ** 2 / n + tg[..., None] ** 2)  # 1 / the variance of each order's mean
    mu = (w * ybar).sum(-1) / w.sum(-1)
    log_post = (-0.5 * np.log(w.sum(-1)) + 0.5 * np.log(w).sum(-1) - 0.5 * (w * (ybar - mu[..., None]) ** 2).sum(-1)
                - (dfw + 1) * np.log(sg) - ssw / (2 * sg ** 2)  # p(sigma) ~ 1/sigma, times the within likelihood
                - np.log1p((tg / scale) ** 2)  # the half-Cauchy prior on tau
                + np.log(np.gradient(sig))[:, None])  # (the sigma grid is uneven: each point's width)
    mass = np.exp(log_post - log_post.max()).ravel()
    cum = np.cumsum(mass / mass.sum())
    pick = np.minimum(np.searchsorted(cum, (np.arange(draws) + 0.5) / draws), cum.size - 1)
    return sg.ravel()[pick], tg.ravel()[pick]


def posterior(ybar: np.ndarray, n: np.ndarray, sigma: float, tau: float) -> dict:
    """Each order's true score given sigma and tau: normal, its mean shrunk toward the precision-weighted
    grand mean, more so with fewer seeds."""
    v = sigma ** 2 / n  # the variance of an order's mean over its seeds
    w = 1.0 / (tau ** 2 + v)
    mu = float((w * ybar).sum() / w.sum())  # the grand mean, each order weighted by its precision
    b = tau ** 2 / (tau ** 2 + v)
    # "sd" given mu (what p_best's independent posteriors take: mu is a shift shared by every order);
    # "sd_total" with mu integrated out too (its posterior variance 1 / sum w, weighing 1 - b on each order)
    return {"mu": mu, "mean": mu + b * (ybar - mu), "sd": np.sqrt(b * v),
            "sd_total": np.sqrt(b * v + (1 - b) ** 2 / w.sum())}


def p_best(mean: np.ndarray, sd: np.ndarray, grid: int = GRID) -> np.ndarray:
    """P(order i's true score is the largest) for independent normal posteriors: the integral of
    phi_i(x) prod_{j != i} Phi_j(x) over a grid fine enough for the narrowest posterior (points added
    up to 20 per its sd). The grid starts where the likeliest-high order is 8 sd below its mean: lower
    down, every integrand is below Phi(-8) (that order's Phi, or for that order itself its phi). Sums to 1."""
    lo, hi = float((mean - 8 * sd).max()), float((mean + 8 * sd).max())
    points = int(min(max(grid, math.ceil((hi - lo) / sd.min() * 20)), 200_001))
    x = np.linspace(lo, hi, points)
    z = (x[None, :] - mean[:, None]) / sd[:, None]
    log_cdf = special.log_ndtr(z)  # (scipy.stats.norm.logcdf without its wrapper: twice as fast)
    others = log_cdf.sum(axis=0)[None, :] - log_cdf  # log prod_{j != i} Phi_j(x)
    dens = np.exp(others - 0.5 * z * z) / (sd[:, None] * math.sqrt(2 * math.pi))
    p = integrate.trapezoid(dens, x, axis=1)
    return p / p.sum()  # (the trapezoid rule leaves the sum a hair off 1)


def credible_set(p_sorted: list[float], level: float) -> int:
    """How many of the orders (by P(best), descending) it takes for their P(best) to reach ``level``."""
    total = np.cumsum(p_sorted)
    return int(min(len(p_sorted), np.searchsorted(total, level - 1e-12) + 1))


# ---------------------------------------------------------------- the structured model
# order features evidence is shared through (search/searchers/features.py): which tasks, where each sits counted
# from the end (forgetting follows a task to the end of the chain) and from the start (a curriculum stays where
# its task was trained), which precedes which
BLOCKS = ("which", "where", "start", "precedes")
COMPONENTS = BLOCKS + ("order",)  # ... and what is each order's own
PROPOSALS = 400  # importance draws of the hyperparameters
PER_DRAW = 100  # joint draws of the orders' true scores per hyperparameter draw


def shares_tasks(orders: list[str]) -> bool:
    """Whether some task is in two or more of the orders (else there is no evidence to share)."""
    seen: set[str] = set()
    for o in orders:
        tasks = set(o.split(">"))
        if seen & tasks:
            return True
        seen |= tasks
    return False


def _blocks(orders: list[str], names: tuple[str, ...] = BLOCKS) -> list[np.ndarray]:
    """Each named block's order features (search/searchers/features.py) for ``orders``, over their tasks."""
    from search.searchers.features import OrderFeatures

    split = [o.split(">") for o in orders]
    f = OrderFeatures(sorted({t for o in split for t in o}), max(len(o) for o in split), from_start=True)
    X = f.matrix([(o, {}) for o in split])
    return [X[:, f.groups[b]] for b in names]


def blocks_of(orders: list[str]) -> tuple[str, ...]:
    """The blocks the structured model has for these orders: all of ``BLOCKS``, less ``start`` where it
    would covary the orders exactly as ``where`` does (orders all of one length: a position from the start
    is then a depth from the end read backwards, and the two variances could not be told apart)."""
    where, start = (B @ B.T for B in _blocks(orders, ("where", "start")))
    return tuple(b for b in BLOCKS if b != "start" or not np.array_equal(where, start))


def factors(orders: list[str], names: tuple[str, ...] | None = None) -> list[np.ndarray]:
    """One factor F per shared component (``names``, by default ``blocks_of(orders)``), its kernel F F^T:
    the order features of each block (orders sharing a task, a (task, depth from the end), a (task,
    position from the start) or a precedence pair covary by one unit per shared feature), features no
    order has left out. Each order's own effect is the identity, kept apart."""
    return [B[:, B.any(axis=0)] for B in _blocks(orders, names or blocks_of(orders))]


def kernels(Fs: list[np.ndarray]) -> list[np.ndarray]:
    """Each component's covariance between the orders: the shared blocks' (``factors``), then the identity."""
    return [F @ F.T for F in Fs] + [np.eye(len(Fs[0]))]


def conditional(ybar: np.ndarray, n: np.ndarray, Ks: list[np.ndarray], s2: float, t2: np.ndarray):
    """The orders' true scores given the variances: joint normal (mean, covariance), mu integrated out
    under a flat prior (kriging with an unknown constant mean; Rasmussen & Williams, *Gaussian
    Processes for Machine Learning*, 2.7)."""
    K = sum(t * k for t, k in zip(t2, Ks))
    Ci = np.linalg.inv(K + np.diag(s2 / n))
    one = np.ones(len(ybar))
    mu = float(one @ Ci @ ybar / (one @ Ci @ one))
    KCi = K @ Ci
    g = one - KCi @ one  # how much each theta leans on mu
    return mu + KCi @ (ybar - mu), K - KCi @ K + np.outer(g, g) / float(one @ Ci @ one)


def log_posterior(x: np.ndarray, ybar: np.ndarray, n: np.ndarray, ssw: float, dfw: int, Fs: list[np.ndarray],
                  scale: float) -> float:
    """log p(log sigma^2, log tau_c^2 | data) up to a constant: the order means' likelihood with mu
    integrated out (restricted likelihood), the seeds' spread around their order means, flat priors on
    mu and log sigma^2, and a half-Cauchy prior of the exchangeable model's scale on each tau_c."""
    s2, t2 = math.exp(x[0]), np.exp(x[1:])
    G = np.hstack([F * math.sqrt(t) for F, t in zip(Fs, t2)])  # C = G G^T + diag(a)
    logdet, q = _log_det_and_quad(t2[-1] + s2 / n, G, np.stack([np.ones(len(ybar)), ybar], axis=1))
    rr = q[1, 1] - q[0, 1] ** 2 / q[0, 0]  # (y - mu_hat)^T C^-1 (y - mu_hat)
    tau = np.sqrt(t2) / scale
    return float(-0.5 * (logdet + rr + math.log(q[0, 0])) - 0.5 * (dfw * x[0] + ssw / s2)
                 + np.sum(np.log(tau) - np.log1p(tau ** 2)))


def _log_det_and_quad(a: np.ndarray, G: np.ndarray, V: np.ndarray) -> tuple[float, np.ndarray]:
    """log|C| and V^T C^-1 V for C = G G^T + diag(a): through the Woodbury identity and the matrix
    determinant lemma where G has fewer columns than rows (the features' rank, not the orders', sets the
    cost: a search of hundreds of orders over a few tasks), else a Cholesky of C."""
    m, r = G.shape
    if r < m:
        Ga = G / a[:, None]
        L = np.linalg.cholesky(np.eye(r) + G.T @ Ga)
        W = linalg.solve_triangular(L, Ga.T @ V, lower=True)
        return float(np.log(a).sum() + 2 * np.log(np.diag(L)).sum()), (V / a[:, None]).T @ V - W.T @ W
    L = np.linalg.cholesky(G @ G.T + np.diag(a))
    W = linalg.solve_triangular(L, V, lower=True)
    return float(2 * np.log(np.diag(L)).sum()), W.T @ W


def _structured(orders: list[str], ybar: np.ndarray, n: np.ndarray, ssw: float, dfw: int, draws: int) -> dict:
    """Each order's true score theta = mu + the sum of random effects of its features (which tasks,
    where each sits, from the end and from the start (``blocks_of``), which precedes which) + its own
    effect: a Gaussian process with a sum of linear kernels, one variance per component (a linear mixed
    model with crossed random effects). The variances and sigma are integrated out (``_hyper_draws``);
    given them theta is jointly normal (``conditional``), so P(best) is counted over joint draws of all
    orders."""
    names = blocks_of(orders)
    Fs = factors(orders, names)
    Ks = kernels(Fs)
    logs, ess = _hyper_draws(ybar, n, ssw, dfw, Fs, draws)
    rng = np.random.default_rng(0)  # (the same data give the same figures)
    per_unit = np.array([_centred_trace(K) for K in Ks]) / max(len(ybar) - 1, 1)  # each component's spread per unit variance
    samples, shares, spread = [], [], []
    for x in logs:
        mean, cov = conditional(ybar, n, Ks, math.exp(x[0]), np.exp(x[1:]))
        w, V = np.linalg.eigh(cov)  # (not Cholesky: rounding may leave a tiny negative eigenvalue)
        samples.append(mean + (rng.standard_normal((PER_DRAW, len(ybar))) * np.sqrt(np.maximum(w, 0.0))) @ V.T)
        v = np.exp(x[1:]) * per_unit
        shares.append(v / v.sum())
        spread.append(math.sqrt(v.sum()))
    z = np.concatenate(samples)
    components = names + ("order",)
    return {"model": "structured", "p": np.bincount(z.argmax(axis=1), minlength=len(ybar)) / len(z),
            "mean": z.mean(axis=0), "sd": z.std(axis=0), "logs": logs, "blocks": names,
            "hyper": {"sigma": float(np.median(np.exp(logs[:, 0] / 2))), "tau": float(np.median(spread)),
                      "shares": dict(zip(components, np.mean(shares, axis=0).tolist())),
                      "share_intervals": dict(zip(components, np.percentile(shares, [5, 95], axis=0).T.tolist())),
                      "ess": ess}}


def _hyper_draws(ybar: np.ndarray, n: np.ndarray, ssw: float, dfw: int, Fs: list[np.ndarray],
                 draws: int) -> tuple[np.ndarray, float]:
    """``draws`` (log sigma^2, log tau_c^2 for each component) from their posterior: its mode, a
    Student-t (4 df) proposal with the curvature there, importance weights, then systematic resampling
    (seeded: deterministic). Also the effective sample size (Kish) of the weights: how well the
    proposal matched the posterior."""
    s2, k = ssw / dfw, len(Fs) + 1
    scale = math.sqrt(s2 / float(n.mean()))  # the exchangeable model's: an order mean's seed noise
    f = lambda x: -log_posterior(x, ybar, n, ssw, dfw, Fs, scale)  # noqa: E731
    v = max(float(np.var(ybar)), s2)
    bounds = [(math.log(s2) - 8, math.log(s2) + 8)] + [(math.log(v) - 20, math.log(v) + 8)] * k
    per_unit = [max(float((F ** 2).sum(axis=1).mean()), 1e-12) for F in Fs] + [1.0]  # each kernel's mean diagonal
    starts = [np.log([s2] + [v * share / u for u in per_unit]) for share in (0.05, 0.5)]
    mode = min((optimize.minimize(f, x0, method="L-BFGS-B", bounds=bounds) for x0 in starts), key=lambda r: r.fun).x
    w, V = np.linalg.eigh(_hessian(f, mode))
    cov = V @ np.diag(1.0 / np.maximum(w, 0.5)) @ V.T  # (a flat direction: at most variance 2 in log)
    proposal = stats.multivariate_t(loc=mode, shape=cov, df=4, seed=np.random.default_rng(0))
    x = proposal.rvs(PROPOSALS)
    logw = np.array([-f(xi) for xi in x]) - proposal.logpdf(x)
    w = np.exp(logw - logw.max())
    w /= w.sum()
    pick = np.minimum(np.searchsorted(np.cumsum(w), (np.arange(draws) + 0.5) / draws), PROPOSALS - 1)
    return x[pick], float(1.0 / np.sum(w ** 2))


def _hessian(f, x: np.ndarray, h: float = 1e-2) -> np.ndarray:
    """Central differences (the posterior is smooth in the log variances)."""
    d = len(x)
    H = np.zeros((d, d))
    e = np.eye(d) * h
    for i in range(d):
        for j in range(i, d):
            H[i, j] = H[j, i] = (f(x + e[i] + e[j]) - f(x + e[i] - e[j]) - f(x - e[i] + e[j])
                                 + f(x - e[i] - e[j])) / (4 * h * h)
    return H


def _centred_trace(K: np.ndarray) -> float:
    """tr(H K H), H the centring matrix: (m - 1) times the expected spread a component puts between orders."""
    return float(np.trace(K) - K.sum() / len(K))


# ---------------------------------------------------------------- orders the search did not finish
UNFINISHED_MAX = 20_000  # orders of a space the report predicts (beyond: the question is left open)
# finished IF orders the prediction needs: with 6 and 13 that order_bo chose on toy3 it said 0.95 and
# 0.81 where 0.80 and 0.30 came true; with 21+ (curriculum) and 40-60 at random it was calibrated in the large
# (bench/unexplored_calibration.py --report, bench/ranking_calibration.py part 3)
UNFINISHED_MIN = 20


def unfinished(orders: list[str], ybar: np.ndarray, n: np.ndarray, logs: np.ndarray, space: list[str],
               pick: int, names: tuple[str, ...] | None = None) -> dict | None:
    """Could an order the search did not finish beat the most likely best one (``orders[pick]``)? Under
    the structured model (its hyperparameter draws ``logs``), the probability that the best unfinished
    order's true score is above the pick's, the expected gain E[max(0, max_j theta_j - theta_pick)], and
    the unfinished order most likely to beat it (alone). The question order_bo's ``unexplored`` asks of
    its own GP, here for any searcher. Joint draws through the weight-space view (``weight_draws``):
    an unfinished order shares the feature effects the finished ones estimate and has its own effect
    from the prior. ``names``: the model's blocks (``blocks_of(orders)``: the finished orders decide).
    None where the space is too large to list."""
    done = set(orders)
    left = [o for o in space if o and o not in done]
    out = {"orders": len(left), "of": len(left) + len(done & set(space)), "draws": len(logs) * PER_DRAW}
    if len(left) > UNFINISHED_MAX:
        return None
    if not left:
        return {**out, "p_better": 0.0, "expected_gain": 0.0}
    X_run, X_new = _design(orders, left, names)
    rng = np.random.default_rng(0)
    gains, beats = [], np.zeros(len(left))
    for x in logs:
        pick_draws, new_draws = weight_draws(X_run, X_new, ybar, n, math.exp(x[0]), np.exp(x[1:]), pick, rng)
        gains.append(new_draws.max(axis=1) - pick_draws)
        beats += (new_draws > pick_draws[:, None]).sum(axis=0)
    gain = np.concatenate(gains)
    j = int(np.argmax(beats))
    return {**out, "p_better": float((gain > 0).mean()), "expected_gain": float(np.clip(gain, 0.0, None).mean()),
            "most_likely": left[j], "p_most_likely": float(beats[j] / len(gain))}


def _design(orders: list[str], left: list[str], names: tuple[str, ...] | None = None
            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each block's features (``names``, by default ``blocks_of(orders)``) for the finished and the
    unfinished orders, over the tasks of both."""
    blocks = _blocks(orders + left, names or blocks_of(orders))
    return [B[:len(orders)] for B in blocks], [B[len(orders):] for B in blocks]


def weight_draws(X_run: list[np.ndarray], X_new: list[np.ndarray], ybar: np.ndarray, n: np.ndarray, s2: float,
                 t2: np.ndarray, pick: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``PER_DRAW`` joint draws of the pick's true score and the unfinished orders', given the variances:
    beta = (mu, the feature effects) has a normal posterior (flat prior on mu, N(0, tau_b^2) on block b's
    effects; each finished order's own effect folded into its noise, a = tau_order^2 + sigma^2 / n); the
    pick's own effect is then drawn given beta and its mean, an unfinished order's from its prior."""
    G = np.hstack([np.ones((len(ybar), 1))] + X_run)
    a = t2[-1] + s2 / n
    prior = np.concatenate([[0.0]] + [np.full(B.shape[1], 1.0 / t) for B, t in zip(X_run, t2[:-1])])
    L = np.linalg.cholesky((G / a[:, None]).T @ G + np.diag(prior))
    m = linalg.cho_solve((L, True), G.T @ (ybar / a))
    beta = m + linalg.solve_triangular(L.T, rng.standard_normal((len(m), PER_DRAW)), lower=False).T
    fitted = beta @ G[pick]
    k = t2[-1] / a[pick]  # the pick's own effect given beta: shrunk residual, reduced variance
    own = k * (ybar[pick] - fitted) + math.sqrt(k * s2 / n[pick]) * rng.standard_normal(PER_DRAW)
    new = beta @ np.hstack([np.ones((len(X_new[0]), 1))] + X_new).T
    return fitted + own, new + math.sqrt(t2[-1]) * rng.standard_normal(new.shape)


def prob_text(v: float | None) -> str:
    """A probability for a table: three decimals, "<0.001" below, "–" for none."""
    return "–" if v is None else ("<0.001" if v < 0.0005 else f"{v:.3f}")


def text(r: dict, show) -> str:
    """The report's line: the most likely best order and the credible set (and, with the structured model,
    what each order's own seeds say where that differs)."""
    if "underpowered" in r:
        return f"How sure the best order is: not computed: {r['underpowered']}."
    top = next(x for x in r["rows"] if x["order"] == r["top_observed"])
    lead = r["rows"][0]
    names = ", ".join(show(o) for o in r["set"][:8]) + (f" and {len(r['set']) - 8} more" if len(r["set"]) > 8 else "")
    model = ("a Bayesian model sharing evidence between orders with tasks in common" if r.get("model") == "structured"
             else "a Bayesian hierarchical model")
    return (f"How sure the best order is ({r['orders']} IF orders, {model}): {show(lead['order'])} is the best "
            f"with probability {lead['p_best']:.2f}; the orders that could be best ({r['level']:.0%} credible set): "
            f"{names} ({len(r['set'])} of {r['orders']}). The top mean, {show(top['order'])} {top['observed']:.4f}, "
            f"shrinks to {top['shrunk']:.4f} (the winner's curse the seeds imply: {r['curse']:+.4f}).{_alone_text(r, show)}")


def _alone_text(r: dict, show) -> str:
    """With the structured model: what each order's own seeds say (the exchangeable model)."""
    ex = r.get("exchangeable")
    if not ex:
        return ""
    same = ex["most_likely"] == r["most_likely"]
    return (f" Each order on its own seeds (the exchangeable model) {'also names' if same else 'names'} "
            f"{show(ex['most_likely'])}{'' if same else ' instead'} (P(best) {ex['p_best']:.2f}; {len(ex['set'])} "
            f"orders could be best).")


def shares_text(r: dict) -> str:
    """The structured model's split of the true spread between orders."""
    sh = r.get("shares")
    if not sh:
        return ""
    names = {"which": "which tasks", "where": "where each sits", "precedes": "which precedes which",
             "order": "each order's own"}
    if "start" in sh:  # (orders of several lengths: the two positions are told apart)
        names.update(where="where each sits counted from the end", start="counted from the start")
    iv = r["share_intervals"]
    parts = [f"{names[k]} {v:.0%} ({iv[k][0]:.0%}-{iv[k][1]:.0%})" for k, v in sh.items()]
    return ("The spread of the orders' true scores (sd " + f"{r['tau']:.4g}) comes from " + ", ".join(parts) +
            " (posterior means and 90% intervals; a wide interval: the data do not pin that share down).")
