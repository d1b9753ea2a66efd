"""``itt power EXPERIMENT_DIR``: how many seeds does the next search need? Power from a pilot search.

A pilot search (any finished search with 2+ seeds on some IF orders) estimates the two variance
components behind every question the report asks: the seed noise of an order's score (sigma: the
pooled within-order sd of the per-seed figure) and the spread of the orders' true scores (tau: the
between-order sd of a one-way random-effects model, tau^2 = (MS_between - MS_within) / n0, the same
mean squares as the report's ICC(1); Searle, Casella & McCulloch, *Variance Components*, ch. 3).
Under that model (true order scores ~ N(0, tau^2), seeds ~ N(0, sigma^2)) this module simulates a search
of k orders with n seeds each and gives, per n:

* the power of the report's primary test (Kruskal–Wallis over IF orders at alpha, its p-value from
  label permutations): the rank statistic depends on the data only through tau / sigma, and without
  ties its permutation null depends only on (k, n), so one null sample per (k, n) serves every
  simulated table (the report draws its own; same distribution);
* the chance that the order with the best mean is the truly best order, the expected regret of
  picking it (true best minus the pick's true score) and the winner's curse (how far the pick's mean
  over its seeds overstates its true score: what ``itt confirm`` measures on fresh seeds);
* the half-width of the best order's 95% t interval;
* the smallest spread tau (as a fraction of sigma, and in score units) found with 80% power;
* the power of the report's arrangement test (order alone: Kruskal–Wallis within each task set, H
  summed over sets, labels permuted within sets) on the pilot's task sets with 2+ orders, at the
  pilot's within-set spread (the nested model's method of moments).

Power is at the pilot's point estimate and at half of it (a pilot with few seeds estimates tau loosely
and, reported after a significant result, tends to overstate it), so a plan should read both columns.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from itt.errors import UserError
from search import stats as S
from search.space import task_set
from search.storage import writable_file

SEEDS = (3, 5, 8, 10)
REPS = 1000  # simulated searches per cell
RANKED_REPS = 60  # ... for what the report's ranking would say, at --reps 1000 (a Bayesian fit per search: slower)
NULL_PERMUTATIONS = 40000  # one null sample serves every simulated search of a row: its Monte Carlo error is
# in every power figure of the row (4,000 left the 5% critical value of 12 orders x 3 seeds at a size of 0.043)
NULL_CHUNK = 4000  # permutations drawn at a time (memory)
TARGET_POWER = 0.8
RATIOS = np.round(np.arange(0.05, 3.0001, 0.05), 2)  # tau / sigma grid for the smallest detectable spread


def components(fig: pd.DataFrame, figure: str = "mean") -> dict:
    """Variance components of a pilot's per-seed figures (IF orders with 2+ seeds)."""
    d = fig[(fig["order"] != S.F) & fig[figure].notna()]
    groups = [g.to_numpy(float) for _, g in d.groupby("order")[figure] if len(g) >= 2]
    if len(groups) < 2:
        raise UserError(f"{len(groups)} IF order(s) with 2+ seeds in the pilot: need 2 or more to estimate "
                        f"seed noise and the spread of orders (run the pilot with search.seeds: [0, 1, 2])")
    msb, msw, n0 = S.one_way_mean_squares(groups)
    tau2 = max(0.0, (msb - msw) / n0)
    if all(np.ptp(g) == 0 for g in groups):  # (equal values leave float dust in msw, not noise)
        raise UserError("the pilot's seeds give identical scores for every order: no seed noise to plan with")
    sigma = math.sqrt(msw)
    return {"figure": figure, "orders": len(groups), "seeds_per_order": float(np.median([len(g) for g in groups])),
            "sigma": sigma, "tau": math.sqrt(tau2), "ratio": math.sqrt(tau2) / sigma,
            "icc": tau2 / (tau2 + msw)}


def _h(values: np.ndarray) -> np.ndarray:
    """Kruskal–Wallis H of (reps, k, n) tables (no ties: continuous simulated scores)."""
    reps, k, n = values.shape
    return S.kw_h(stats.rankdata(values.reshape(reps, k * n), axis=1), [n] * k)


def _null_draws(k: int, n: int, permutations: int, seed: int) -> np.ndarray:
    """H of ``permutations`` random labellings (ranks 1..kn shuffled: no ranking needed), in chunks."""
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, permutations, NULL_CHUNK):
        m = min(NULL_CHUNK, permutations - start)
        ranks = rng.permuted(np.broadcast_to(np.arange(1, k * n + 1, dtype=float), (m, k * n)).copy(), axis=1)
        out.append(S.kw_h(ranks, [n] * k))
    return np.concatenate(out)


def null_h(k: int, n: int, *, permutations: int = NULL_PERMUTATIONS, seed: int = S.PERMUTATION_SEED) -> np.ndarray:
    """H of ``permutations`` random labellings of k groups of n: the permutation null of the report's test."""
    return np.sort(_null_draws(k, n, permutations, seed))


def null_arrangement(strata: list[int], n: int, *, permutations: int = NULL_PERMUTATIONS,
                     seed: int = S.PERMUTATION_SEED) -> np.ndarray:
    """The arrangement test's null: H summed over task sets (``strata``: orders per set), labels
    permuted within each set independently."""
    return np.sort(sum(_null_draws(k, n, permutations, seed + i) for i, k in enumerate(strata)))


def _p_values(h: np.ndarray, null: np.ndarray) -> np.ndarray:
    exceed = len(null) - np.searchsorted(null, h - 1e-9, side="left")
    return (1 + exceed) / (len(null) + 1)


def simulate(k: int, n: int, ratio: float, *, reps: int = REPS, alpha: float = S.ALPHA, seed: int = 0,
             null: np.ndarray | None = None) -> dict:
    """Searches of k orders x n seeds under the random-effects model (sigma = 1, tau = ratio)."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, ratio, (reps, k))
    values = truth[:, :, None] + rng.normal(0.0, 1.0, (reps, k, n))
    p = _p_values(_h(values), null_h(k, n) if null is None else null)
    means = values.mean(axis=2)
    pick = means.argmax(axis=1)
    best = truth.max(axis=1)
    chosen = truth[np.arange(reps), pick]
    return {"power": float((p < alpha).mean()),  # with no spread no order is best: P(best) is undefined
            "p_best": float((chosen == best).mean()) if ratio > 0 else None, "regret": float((best - chosen).mean()),
            "curse": float((means[np.arange(reps), pick] - chosen).mean())}


def ranked(k: int, n: int, ratio: float, *, reps: int = RANKED_REPS, seed: int = 3) -> dict:
    """What the report's *Which order is best, and how sure?* would say (search/ranking.py) on searches of k
    orders x n seeds under the model (sigma = 1): the median size of its 95% set of possible best orders,
    the median P(best) of its most likely order, and how often the set holds the true best. The
    exchangeable model (orders with nothing in common): where orders share tasks the report's structured
    model borrows between them and says more (smaller sets), so these figures are the cautious ones."""
    from search import ranking

    rng = np.random.default_rng(seed)
    sizes, tops, covered = [], [], []
    for _ in range(reps):
        truth = rng.normal(0.0, ratio, k)
        values = truth[:, None] + rng.normal(0.0, 1.0, (k, n))
        fig = pd.DataFrame({"order": np.repeat([f"o{i}" for i in range(k)], n), "seed": np.tile(np.arange(n), k),
                            "mean": values.ravel()})
        r = ranking.analyse(fig, draws=20, model="exchangeable")
        sizes.append(len(r["set"]))
        tops.append(r["rows"][0]["p_best"])
        covered.append(f"o{int(truth.argmax())}" in r["set"])
    return {"set_size": float(np.median(sizes)), "p_best_said": float(np.median(tops)),
            "set_covers": float(np.mean(covered)) if ratio > 0 else None}


def simulate_arrangement(strata: list[int], n: int, ratio: float, *, reps: int = REPS, alpha: float = S.ALPHA,
                         seed: int = 0, null: np.ndarray | None = None) -> float:
    """Power of the report's arrangement test (order alone: Kruskal–Wallis within each task set, H summed)
    when the orders of a set differ by N(0, ratio^2) in seed-sd units. A set's own effect shifts all its
    orders alike and leaves the within-set ranks unchanged, so it is left out."""
    rng = np.random.default_rng(seed)
    h = sum(_h(rng.normal(0.0, ratio, (reps, k, 1)) + rng.normal(0.0, 1.0, (reps, k, n))) for k in strata)
    return float((_p_values(h, null_arrangement(strata, n) if null is None else null) < alpha).mean())


def arrangement_components(fig: pd.DataFrame, figure: str, sigma: float) -> dict:
    """The pilot's task sets with 2+ orders (each with 2+ seeds) and the spread of the orders' true scores
    within a set (tau_arr^2 = (MS_arrangement - sigma^2) / n0: the nested model's method of moments)."""
    d = fig[(fig["order"] != S.F) & fig[figure].notna()]
    sizes = d.groupby("order")[figure].size()
    d = d[d["order"].isin(sizes[sizes >= 2].index)]
    per_set = d.groupby(d["order"].map(task_set))["order"].nunique()
    d = d[d["order"].map(task_set).isin(per_set[per_set >= 2].index)]
    if d.empty:
        return {"strata": [], "reason": "no set of tasks with 2 or more orders of 2+ seeds in the pilot"}
    ss = S.variance_parts(d, figure).get("ss", {}).get("arrangement", 0.0)  # ("underpowered": no spread at all)
    strata = [int(v) for v in per_set[per_set >= 2].to_numpy()]
    ms = ss / sum(k - 1 for k in strata)
    tau2 = max(0.0, (ms - sigma ** 2) / float(d.groupby("order").size().mean()))
    return {"strata": strata, "tau": math.sqrt(tau2), "ratio": math.sqrt(tau2) / sigma}


def smallest_spread(k: int, n: int, *, reps: int, alpha: float, null: np.ndarray) -> float | None:
    """The smallest tau / sigma on the grid ``RATIOS`` whose power reaches ``TARGET_POWER`` (None above it)."""
    for r in RATIOS:
        if simulate(k, n, float(r), reps=reps, alpha=alpha, null=null)["power"] >= TARGET_POWER:
            return float(r)
    return None


def assumed(sigma: float, tau: float, orders: int, figure: str = "mean") -> tuple[dict, dict]:
    """Components given by hand (no pilot search: numbers from a paper or an earlier study)."""
    c = {"figure": figure, "orders": orders, "seeds_per_order": None, "sigma": sigma, "tau": tau,
         "ratio": tau / sigma, "icc": tau ** 2 / (tau ** 2 + sigma ** 2), "assumed": True}
    return c, {"strata": [], "reason": "no pilot search (its task sets name the arrangement test's sets)"}


def ci_half_width(n: int, sigma: float) -> float:
    """The expected half-width of a 95% t interval over ``n`` seeds: t(0.975, n-1) E[s] / sqrt(n), where the
    sample sd's mean is c4(n) sigma, below sigma (c4 = sqrt(2/(n-1)) Gamma(n/2) / Gamma((n-1)/2))."""
    from scipy.special import gammaln

    c4 = math.sqrt(2 / (n - 1)) * math.exp(gammaln(n / 2) - gammaln((n - 1) / 2))
    return float(stats.t.ppf(0.975, n - 1) * c4 * sigma / math.sqrt(n))


def plan(fig: pd.DataFrame | None = None, *, seeds=SEEDS, orders: int | None = None, figure: str = "mean",
         reps: int = REPS, alpha: float = S.ALPHA, given: tuple[dict, dict] | None = None) -> dict:
    """Every figure of ``itt power``: the pilot's components (or ``given`` ones, :func:`assumed`) and
    one row per seed count."""
    c, arr = given or (components(fig, figure), None)
    k = c["orders"] if orders is None else orders
    if k < 2:
        raise UserError(f"--orders {k}: the order test needs 2 or more orders")
    arr = arr or arrangement_components(fig, figure, c["sigma"])
    rows = []
    for n in seeds:
        null = null_h(k, n)
        at = simulate(k, n, c["ratio"], reps=reps, alpha=alpha, null=null)
        half = simulate(k, n, c["ratio"] / 2, reps=reps, alpha=alpha, null=null, seed=1)
        small = smallest_spread(k, n, reps=max(200, reps // 5), alpha=alpha, null=null)
        rows.append({"seeds": n, "chains": k * n, "power": at["power"], "power_half": half["power"],
                     "p_best": at["p_best"], "regret": at["regret"] * c["sigma"], "curse": at["curse"] * c["sigma"],
                     "ci_half_width": ci_half_width(n, c["sigma"]),
                     "smallest_ratio": small, "smallest_tau": None if small is None else small * c["sigma"],
                     **ranked(k, n, c["ratio"], reps=max(20, round(RANKED_REPS * reps / REPS)))})
        if arr["strata"]:
            rows[-1]["power_arrangement"] = simulate_arrangement(arr["strata"], n, arr["ratio"], reps=reps, alpha=alpha,
                                                                 seed=2)

    def first(key):
        return next((r["seeds"] for r in rows if r.get(key, 0) >= TARGET_POWER), None)

    return {"pilot": c, "arrangement": arr, "orders": k, "alpha": alpha, "reps": reps, "target_power": TARGET_POWER,
            "rows": rows, "seeds_needed": first("power"), "seeds_needed_half": first("power_half"),
            "seeds_needed_arrangement": first("power_arrangement") if arr["strata"] else None}


def lines(res: dict, where: str) -> list[str]:
    """The console table and the recommendation."""
    c = res["pilot"]
    label = S.FIGURES[c["figure"]][0]
    source = ("assumed (no pilot search)" if c.get("assumed") else
              f"pilot: {where}: {c['orders']} IF orders with 2+ seeds (median {c['seeds_per_order']:g})")
    out = [f"{source}; {label}: seed sd {c['sigma']:.4f}, spread of the orders' true scores {c['tau']:.4f} "
           f"(ICC {c['icc']:.2f}, spread / seed sd {c['ratio']:.2f})",
           f"a search of {res['orders']} IF orders, {res['reps']} simulated searches per row, alpha {res['alpha']}:",
           f"{'seeds':>5} {'chains':>6} {'power':>6} {'at half':>7} {'P(best)':>7} {'regret':>7} {'curse':>7} {'95% CI ±':>8} "
           f"{'80% power at spread':>21} {'arrangement':>11} {'95% set':>7} {'said P(best)':>12}"]
    for r in res["rows"]:
        small = "beyond 3 x sd" if r["smallest_tau"] is None else f"{r['smallest_tau']:.4f} ({r['smallest_ratio']:.2f} sd)"
        arr = f"{r['power_arrangement']:.2f}" if "power_arrangement" in r else "–"
        p_best = "–" if r["p_best"] is None else f"{r['p_best']:.2f}"
        out.append(f"{r['seeds']:>5} {r['chains']:>6} {r['power']:>6.2f} {r['power_half']:>7.2f} {p_best:>7} "
                   f"{r['regret']:>7.4f} {r['curse']:>7.4f} {r['ci_half_width']:>8.4f} {small:>21} {arr:>11} "
                   f"{r['set_size']:>7g} {r['p_best_said']:>12.2f}")
    need, half = res["seeds_needed"], res["seeds_needed_half"]
    tried = ", ".join(str(r["seeds"]) for r in res["rows"])
    if c["tau"] == 0:
        given = ("The spread assumed is 0" if c.get("assumed") else
                 "The pilot shows no spread between orders beyond seed noise")
        out.append(f"{given}: at it, the order test's power is at most alpha (its false positives; 0 where so few orders "
                   f"and seeds cannot reach p <= alpha). '80% power at spread' is the spread each seed count can find.")
    else:
        most = f"more than {max(r['seeds'] for r in res['rows'])}"
        which = "the assumed" if c.get("assumed") else "the pilot's"
        out.append(f"{TARGET_POWER:.0%} power for the order test: {need or most} seeds at {which} spread, "
                   f"{half or most} at half of it (tried {tried}).")
    out.append(arrangement_line(res))
    return out


def arrangement_line(res: dict) -> str:
    """The arrangement test (order alone, task choice fixed): the pilot's within-set spread and the seeds."""
    a = res["arrangement"]
    if not a["strata"]:
        return f"Arrangement (order alone): not planned: {a['reason']}."
    head = (f"Arrangement (order alone; Kruskal–Wallis within {len(a['strata'])} task set(s) of the pilot): spread "
            f"of the orders within a set {a['tau']:.4f} ({a['ratio']:.2f} seed sd)")
    if a["tau"] == 0:
        return head + ": none beyond seed noise, so its power is alpha at any seed count."
    need = res["seeds_needed_arrangement"]
    return head + (f": {TARGET_POWER:.0%} power from {need} seeds." if need else
                   f": under {TARGET_POWER:.0%} power with up to {max(r['seeds'] for r in res['rows'])} seeds.")


def make_power(exp_dir: str | None, *, seeds=SEEDS, orders: int | None = None, figure: str = "mean",
               reps: int = REPS, alpha: float = S.ALPHA, seed_sd: float | None = None, spread: float | None = None,
               json_out: str | None = None, log=print) -> dict:
    """``itt power``: from a pilot search (``exp_dir``), or from ``seed_sd`` and ``spread`` given by hand
    (then ``orders`` is needed too)."""
    from search.report import load_experiment

    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: must lie between 0 and 1")
    if reps < 100:
        raise UserError(f"--reps {reps}: use 100 or more simulated searches")
    if any(n < S.MIN_SEEDS for n in seeds):
        raise UserError(f"--seeds {','.join(map(str, seeds))}: each seed count must be {S.MIN_SEEDS} or more (the "
                        f"report tests orders with {S.MIN_SEEDS}+ seeds)")
    if orders is not None and orders < 2:
        raise UserError(f"--orders {orders}: the order test needs 2 or more orders")
    if json_out and not Path(json_out).resolve().parent.is_dir():
        raise UserError(f"--json {json_out}: its folder does not exist")
    if json_out:
        writable_file(json_out, f"--json {json_out}")
    if exp_dir is None:
        given = _given(seed_sd, spread, orders, figure)
        res = plan(seeds=sorted(seeds), orders=orders, figure=figure, reps=reps, alpha=alpha, given=given)
        where = None
    else:
        if seed_sd is not None or spread is not None:
            raise UserError("--seed-sd and --spread replace a pilot search: give them or EXPERIMENT_DIR, not both")
        exp = load_experiment(exp_dir)
        res = plan(S.seed_figures(exp.scores.dropna(subset=["score"]), exp.extra), seeds=sorted(seeds), orders=orders,
                   figure=figure, reps=reps, alpha=alpha)
        where = res["experiment"] = exp.st.display
    for line in lines(res, where):
        log(line)
    if json_out:
        Path(json_out).write_text(json.dumps(res, indent=2))
        log(f"power: {json_out}")
    return res


def _given(seed_sd: float | None, spread: float | None, orders: int | None, figure: str) -> tuple[dict, dict]:
    if seed_sd is None or spread is None or orders is None:
        raise UserError("without a pilot search give all of --seed-sd, --spread and --orders (or an EXPERIMENT_DIR)")
    if not 0 < seed_sd < math.inf or not 0 <= spread < math.inf:
        raise UserError(f"--seed-sd {seed_sd} --spread {spread}: the seed sd must be positive, the spread 0 or more "
                        "(both finite)")
    return assumed(seed_sd, spread, orders, figure)
