"""Which IF order is best, and how sure is that? Bayesian ranking of a search's orders.

The leaderboard ranks orders by their mean over seeds. With a few seeds per order the top of it is
partly luck: the order with the best mean is often not the truly best, and its mean overstates its
true score (the winner's curse, which ``itt confirm`` measures on fresh seeds). This module says, from
the search's own seeds, how sure the ranking is.

Model: the one-way random-effects model of ``itt power`` (search/power.py): an order's true score
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
space, and orders sharing tasks are more alike than the model assumes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import integrate, special, stats

LEVEL = 0.95  # the credible set of possible best orders
DRAWS = 40  # (sigma, tau) draws from their posterior (stratified over the grid)
GRID = 2001  # points of each P(best) integral (more where a posterior is narrow, see p_best)
HYPER_GRID = 120  # grid points per hyperparameter (sigma, tau)


def analyse(fig: pd.DataFrame, figure: str = "mean", level: float = LEVEL, draws: int = DRAWS) -> dict:
    """``fig``: per-seed figures (search.stats.seed_figures), F's rows included or not (F is left out).
    Returns the hyperparameters' posterior medians, each IF order's posterior and P(best), the credible
    set of possible best orders; or ``{"underpowered": reason}``."""
    from search.stats import F

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
    sig, tau = hyper_draws(ybar, n, ssw, dfw, draws)
    p, mean, second = np.zeros(len(orders)), np.zeros(len(orders)), np.zeros(len(orders))
    for s_, t_ in zip(sig, tau):
        post = posterior(ybar, n, s_, t_)
        p += p_best(post["mean"], post["sd"])
        mean += post["mean"]
        second += post["sd"] ** 2 + post["mean"] ** 2
    p, mean = p / draws, mean / draws
    sd = np.sqrt(np.maximum(second / draws - mean ** 2, 0.0))
    rows = sorted(({"order": o, "n_seeds": int(k), "observed": float(y), "shrunk": float(m), "sd": float(s_),
                    "p_best": float(pb)} for o, k, y, m, s_, pb in zip(orders, n, ybar, mean, sd, p)),
                  key=lambda r: (-r["p_best"], -r["shrunk"]))
    best = credible_set([r["p_best"] for r in rows], level)
    top = max(rows, key=lambda r: r["observed"])  # the leaderboard's first IF order
    return {"figure": figure, "sigma": float(np.median(sig)), "tau": float(np.median(tau)),
            "mu": float(posterior(ybar, n, float(np.median(sig)), float(np.median(tau)))["mu"]),
            "orders": len(orders), "level": level, "draws": draws,
            "rows": rows, "set": [r["order"] for r in rows[:best]], "set_p": float(sum(r["p_best"] for r in rows[:best])),
            "most_likely": rows[0]["order"], "top_observed": top["order"], "curse": top["observed"] - top["shrunk"]}


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
    return {"mu": mu, "mean": mu + b * (ybar - mu), "sd": np.sqrt(b * v)}


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


def prob_text(v: float | None) -> str:
    """A probability for a table: three decimals, "<0.001" below, "–" for none."""
    return "–" if v is None else ("<0.001" if v < 0.0005 else f"{v:.3f}")


def text(r: dict, show) -> str:
    """The report's line: the most likely best order and the credible set."""
    if "underpowered" in r:
        return f"How sure the best order is: not computed: {r['underpowered']}."
    top = next(x for x in r["rows"] if x["order"] == r["top_observed"])
    lead = r["rows"][0]
    names = ", ".join(show(o) for o in r["set"][:8]) + (f" and {len(r['set']) - 8} more" if len(r["set"]) > 8 else "")
    return (f"How sure the best order is ({r['orders']} IF orders, a Bayesian hierarchical model): {show(lead['order'])} is the best "
            f"with probability {lead['p_best']:.2f}; the orders that could be best ({r['level']:.0%} credible set): "
            f"{names} ({len(r['set'])} of {r['orders']}). The top mean, {show(top['order'])} {top['observed']:.4f}, "
            f"shrinks to {top['shrunk']:.4f} (the winner's curse the seeds imply: {r['curse']:+.4f}).")
