"""The statistics behind ``itt report``: does the order of intermediate tasks matter beyond seed noise?

A pure function (:func:`analyse`) over a tidy table — one row per (order, seed, language) with the
target metric on the test split — so it is testable without Ray or training. Units: a *seed* is one
replicate of an order (the statistics use per-seed values, never means of means where seeds exist);
position and precedence effects compare groups of different orders, on their means over seeds, with the
covariance of orders that share a trained prefix estimated from the seeds (search/shared_prefix.py).

Tests and their guards:

* order effect: Kruskal–Wallis over IF orders with at least ``MIN_SEEDS`` seeds each (Kruskal &
  Wallis, 1952), its p-value from 2000 seeded label permutations (scipy's chi² approximation is
  conservative with 3 seeds per order), effect size epsilon² = H / (n - 1) (Tomczak & Tomczak, 2014) and the share of
  variance between orders, ICC(1) of a one-way random-effects model. The mean over languages is the
  primary test; the same test for each robustness figure forms a secondary family, Holm-corrected;
* IF vs F (Phang et al., 2020; the comparison of arXiv 2210.01091): per language, F beside the best and
  the mean IF order; the best IF order against F by a max-statistic permutation test that picks the best
  again in each permutation (it was picked on the same seeds; Westfall & Young, 1993), Holm over languages,
  with Welch's p of the pick beside it;
* precedence (A before B vs B before A) and position (task T at position p; t intervals over orders
  for each cell): GLS of the order means with the other tasks an order holds as fixed effects and the
  shared-prefix covariance (a mixed model, its variance components by the method of moments), a Wald F
  test per pair or task, Holm over them; with one seed per order, Mann–Whitney U or Kruskal–Wallis over
  order means as independent units, with a caveat;
* order x language interaction (does the best order depend on the language?): a split-plot ANOVA,
  Greenhouse–Geisser corrected, with per-language best orders and gaps (Welch, Holm);
* task choice, arrangement or length: the nested sum-of-squares shares of sets, arrangement within a
  set and seeds; order means by length, Kruskal–Wallis over lengths.

With too few seeds or orders a test is not run: its entry says ``underpowered: ...`` and carries no
p-value.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from search import shared_prefix
from search.space import order_tasks, task_set

ALPHA = 0.05
MIN_SEEDS = 3  # seeds per order before an order-effect test is run
MIN_ORDERS = 3  # orders per side/position before a precedence or position test is run
CONFIDENCE = 0.95
PERMUTATIONS = 2000  # label permutations behind the order test's p-value
PERMUTATION_SEED = 0
ENGLISH = "en"
F = ""  # the empty order (fine-tune only)
# Orders as units are not independent where they share a prefix: the stage cache trains a prefix once per
# seed, so every order starting with T shares stage T's model. With 2+ seeds per order the position and
# precedence tests estimate that covariance (search/shared_prefix.py); with one seed they cannot, and say so
# (bench/prefix_tests_calibration.py: rank tests over orders as units call some position significant in up
# to a fifth of null searches).
SHARED_PREFIX = ("Orders that share a trained prefix share its model on each seed (the stage cache), so they are "
                 "not independent units, and with one seed per order that cannot be accounted for: these p-values "
                 "are optimistic")

# per-(order, seed) figures: name -> (label, higher is better)
FIGURES = {
    "mean": ("mean over languages", True),
    "worst": ("worst language", True),
    "lang_std": ("std over languages", False),
    "transfer_gap": ("transfer gap (en - others)", False),
    "perturbation": ("perturbation score (noisy dev)", True),
}


class Status:
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"
    ERRORED = "errored"


def show(order: str) -> str:
    return order if order else "F"


# ------------------------------------------------------------------ small helpers
def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm, 1979), in the input order."""
    m = len(pvalues)
    idx = sorted(range(m), key=lambda i: pvalues[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def t_interval(values) -> tuple[float | None, float | None]:
    """The ``CONFIDENCE`` t interval of a mean (None with fewer than two values)."""
    x = np.asarray(values, float)
    if len(x) < 2:
        return None, None
    sem = x.std(ddof=1) / math.sqrt(len(x))
    if sem == 0:
        return float(x.mean()), float(x.mean())
    lo, hi = stats.t.interval(CONFIDENCE, len(x) - 1, loc=x.mean(), scale=sem)
    return float(lo), float(hi)


def _f(x) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def complete_models(scores: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """The scores of the models (order, seed) that have a score in every language some model has, and the
    models left out, each with the languages it lacks. A model's mean, worst language and transfer gap over
    fewer languages are figures over easier (or harder) languages than the others': an order without its
    hardest language would rank above the rest (and the tests that read every language drop it anyway)."""
    s = scores.dropna(subset=["score"])
    langs = list(dict.fromkeys(s["language"]))
    have = s.groupby(["order", "seed"], sort=False)["language"].agg(set)
    short = {k: [lg for lg in langs if lg not in v] for k, v in have.items() if len(v) < len(langs)}
    if not short:
        return s, []
    keep = ~pd.MultiIndex.from_frame(s[["order", "seed"]]).isin(list(short))
    return s[keep], [{"order": o, "seed": int(sd), "missing": m} for (o, sd), m in short.items()]


def seed_figures(scores: pd.DataFrame, extra: pd.DataFrame | None = None, english: str = ENGLISH) -> pd.DataFrame:
    """One row per (order, seed): the robustness figures of that seed's per-language scores
    (mean, worst, population std over languages, English minus the mean of the others), plus
    ``extra`` figures (columns order, seed, figure, value; e.g. the perturbation score)."""
    wide = scores.pivot_table(index=["order", "seed"], columns="language", values="score", aggfunc="mean")
    out = pd.DataFrame(index=wide.index)
    out["mean"] = wide.mean(axis=1)
    out["worst"] = wide.min(axis=1)
    out["lang_std"] = wide.std(axis=1, ddof=0)
    others = [c for c in wide.columns if c != english]
    out["transfer_gap"] = (wide[english] - wide[others].mean(axis=1)) if english in wide and others else np.nan
    if extra is not None and len(extra):
        ex = extra.pivot_table(index=["order", "seed"], columns="figure", values="value", aggfunc="mean")
        out = out.join(ex, how="left")
    if "perturbation" not in out:
        out["perturbation"] = np.nan
    return out.reset_index()


# ------------------------------------------------------------------ the tests
def kw_h(ranks: np.ndarray, sizes) -> np.ndarray:
    """Kruskal–Wallis H along the last axis of ``ranks`` (ranks 1..n laid out group by group, ``sizes``
    long), without the tie correction: a constant of the pooled data, so permutations need none."""
    sizes = np.asarray(sizes)
    n, starts = int(sizes.sum()), np.r_[0, np.cumsum(sizes)[:-1]]
    return 12.0 / (n * (n + 1)) * (np.add.reduceat(ranks, starts, axis=-1) ** 2 / sizes).sum(axis=-1) - 3 * (n + 1)


def one_way_mean_squares(groups: list[np.ndarray]) -> tuple[float, float, float]:
    """(MS between, MS within, n0) of a one-way layout; n0 is the adjusted group size of unequal groups
    (the random-effects model behind ICC(1) and the variance components)."""
    n, k = sum(len(g) for g in groups), len(groups)
    grand = np.concatenate(groups).mean()
    msb = sum(len(g) * (g.mean() - grand) ** 2 for g in groups) / (k - 1)
    msw = sum(((g - g.mean()) ** 2).sum() for g in groups) / (n - k)
    return float(msb), float(msw), (n - sum(len(g) ** 2 for g in groups) / n) / (k - 1)


def kw_permutation(strata: list[list[np.ndarray]], *, permutations: int = PERMUTATIONS,
                   floor: bool = False) -> tuple[float, ...]:
    """(H summed over strata, its permutation p-value): group labels shuffled within each stratum
    (seeded, so the same data give the same p); p = (1 + #{H_perm >= H}) / (1 + permutations).
    ``floor``: also the smallest p any data of these group sizes could reach (the p of the most extreme
    permuted H): with few seeds and orders it can exceed alpha, and the test then cannot reject at all."""
    rng = np.random.default_rng(PERMUTATION_SEED)
    h_obs, h_perm = 0.0, np.zeros(permutations)
    for groups in strata:
        sizes = np.array([len(g) for g in groups])
        ranks = stats.rankdata(np.concatenate(groups))
        h_obs += float(kw_h(ranks, sizes))
        h_perm += kw_h(ranks[np.argsort(rng.random((permutations, len(ranks))), axis=1)], sizes)
    p = (1 + int((h_perm >= h_obs - 1e-9).sum())) / (permutations + 1)
    if not floor:
        return h_obs, p
    return h_obs, p, (1 + int((h_perm >= h_perm.max() - 1e-9).sum())) / (permutations + 1)


def kruskal_effect(groups: list[np.ndarray], *, permutations: int = PERMUTATIONS) -> dict:
    """Kruskal–Wallis H with a permutation p-value (orders' labels shuffled over the pooled per-seed
    values, seeded: the same data give the same p), epsilon² and the between-order share of variance
    (ICC(1)). The chi² approximation (``p_chi2``) is conservative with 3 seeds per order."""
    n = sum(len(g) for g in groups)
    k = len(groups)
    allv = np.concatenate(groups)
    if np.ptp(allv) == 0:  # every value equal: no evidence of any difference
        h, p, p_chi2, p_floor = 0.0, 1.0, 1.0, None
    else:
        h, p_chi2 = stats.kruskal(*groups)
        _, p, p_floor = kw_permutation([groups], permutations=permutations, floor=True)
    msb, msw, n0 = one_way_mean_squares(groups)
    denom = msb + (n0 - 1) * msw
    icc = max(0.0, (msb - msw) / denom) if denom > 0 and np.ptp(allv) > 0 else 0.0  # (equal values: float dust)
    return {"H": float(h), "p": float(p), "p_chi2": float(p_chi2), "p_floor": p_floor, "permutations": permutations,
            "epsilon2": float(h / (n - 1)), "variance_share": float(icc), "n_orders": k, "n_obs": n}


def order_effect(fig: pd.DataFrame, figure: str, *, min_seeds: int = MIN_SEEDS) -> dict:
    """Does the IF order change ``figure`` beyond seed noise? (F is left out: that is IF vs F.)"""
    d = fig[(fig["order"] != F) & fig[figure].notna()]
    sizes = d.groupby("order")[figure].size()
    ok = sizes[sizes >= min_seeds].index
    out = {"figure": figure, "label": FIGURES[figure][0], "orders_with_enough_seeds": int(len(ok)),
           "orders": int(len(sizes)), "max_seeds": int(sizes.max()) if len(sizes) else 0}
    if len(sizes) == 0:
        return {**out, "underpowered": "no IF order has this figure"}
    if len(ok) < 2:
        return {**out, "underpowered": f"the test needs 2 or more IF orders with {min_seeds}+ seeds each; here "
                                       f"{len(ok)} (seeds per order: at most {out['max_seeds']})"}
    by = {o: g.to_numpy(float) for o, g in d.groupby("order")[figure]}
    return {**out, **kruskal_effect([by[o] for o in ok])}


def arrangement_effect(fig: pd.DataFrame, figure: str = "mean", *, min_seeds: int = MIN_SEEDS) -> dict:
    """Order alone, task choice held fixed: Kruskal–Wallis within each set of tasks that has two or
    more orders with ``min_seeds``+ seeds, the H statistics summed over sets; p-value from labels
    permuted within each set (``p_chi2``: the chi² reference with the summed degrees of freedom)."""
    d = fig[(fig["order"] != F) & fig[figure].notna()]
    sizes = d.groupby("order")[figure].size()
    ok = [o for o in sizes.index if sizes[o] >= min_seeds]
    sets: dict[str, list[str]] = {}
    for o in ok:
        sets.setdefault(task_set(o), []).append(o)
    strata = [os_ for os_ in sets.values() if len(os_) >= 2]
    out = {"figure": figure, "task_sets": len(strata), "orders": sum(len(x) for x in strata)}
    if not strata:
        return {**out, "underpowered": f"no set of tasks has 2 or more orders with {min_seeds}+ seeds"}
    by = {o: g.to_numpy(float) for o, g in d.groupby("order")[figure]}
    h_obs, p, p_floor = kw_permutation([[by[o] for o in os_] for os_ in strata], floor=True)  # within each set
    df = sum(len(os_) - 1 for os_ in strata)
    return {**out, "H": h_obs, "df": df, "p": p, "p_chi2": float(stats.chi2.sf(h_obs, df)), "p_floor": p_floor}


def order_language_interaction(y: np.ndarray, groups) -> dict:
    """Does the effect of the order depend on the language? The order x language interaction of a
    split-plot ANOVA: orders vary between models (one per seed), languages within (every model is
    evaluated in every language), so the interaction is tested against the language x seed-within-order
    residual (Kirk, *Experimental Design*, ch. 12; unequal seeds per order keep the within-model
    partition exact). ``y``: one row per (order, seed) model, one column per language; ``groups``: each
    row's order. The p-value is Greenhouse–Geisser corrected (Greenhouse & Geisser, 1959; epsilon from
    the pooled within-order covariance of the languages, as SPSS and pingouin's ``mixed_anova`` do):
    languages' scores are not equally correlated, and the uncorrected F test is then liberal."""
    y = np.asarray(y, float)
    g = pd.factorize(np.asarray(groups))[0]
    n, n_lang = y.shape
    k = int(g.max()) + 1
    cell = np.stack([y[g == j].mean(axis=0) for j in range(k)])  # order x language means
    sizes = np.bincount(g, minlength=k).astype(float)
    lang = y.mean(axis=0)  # over models: the weights of the unequal seeds per order
    inter = cell - cell.mean(axis=1, keepdims=True) - lang + y.mean()
    resid = y - y.mean(axis=1, keepdims=True) - cell[g] + cell[g].mean(axis=1, keepdims=True)
    ss_int, ss_err = float((sizes[:, None] * inter ** 2).sum()), float((resid ** 2).sum())
    df_int, df_err = (k - 1) * (n_lang - 1), (n - k) * (n_lang - 1)
    out = {"orders": k, "models": n, "languages": n_lang, "df1": df_int, "df2": df_err, "ss_interaction": ss_int,
           "ss_error": ss_err}
    if np.allclose(resid, 0.0, atol=1e-12):  # (exact agreement leaves float dust, not an error term)
        return {**out, "underpowered": "the orders' seeds agree exactly in every language: no error term"}
    out["partial_eta2"] = ss_int / (ss_int + ss_err)
    f_stat = (ss_int / df_int) / (ss_err / df_err)
    dev = y - cell[g]
    cov = dev.T @ dev / (n - k)
    basis = np.linalg.svd(np.eye(n_lang) - 1.0 / n_lang)[0][:, : n_lang - 1]  # orthonormal contrasts of languages
    m = basis.T @ cov @ basis
    eps = float(np.trace(m) ** 2 / ((n_lang - 1) * np.trace(m @ m))) if np.trace(m @ m) > 0 else 1.0
    eps = min(1.0, max(eps, 1.0 / (n_lang - 1)))
    return {**out, "F": float(f_stat), "p_uncorrected": float(stats.f.sf(f_stat, df_int, df_err)), "epsilon": eps,
            "p": float(stats.f.sf(f_stat, eps * df_int, eps * df_err))}


def kendall_w(values: np.ndarray, *, permutations: int = PERMUTATIONS, seed: int = PERMUTATION_SEED) -> tuple[float, float]:
    """Kendall's W of ``values`` (n orders x m raters: searches, languages; each column ranked on its own, ties averaged),
    with the tie correction, and its permutation p-value (each column shuffled independently)."""
    n, m = values.shape
    ranks = np.column_stack([stats.rankdata(values[:, j]) for j in range(m)])
    ties = sum(float(((c := np.unique(ranks[:, j], return_counts=True)[1]) ** 3 - c).sum()) for j in range(m))
    denom = m ** 2 * (n ** 3 - n) - m * ties
    if denom <= 0:  # every rater ties every order: no ranking to agree on
        return float("nan"), float("nan")

    def w_of(r: np.ndarray) -> np.ndarray:  # r: (..., n, m)
        s = r.sum(axis=-1)
        return 12.0 * ((s - s.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1) / denom

    w = float(w_of(ranks))
    rng = np.random.default_rng(seed)
    perm = rng.permuted(np.broadcast_to(ranks, (permutations, n, m)).copy(), axis=1)
    p = (1 + int((w_of(perm) >= w - 1e-12).sum())) / (permutations + 1)
    return w, p


def alike_text(scores: dict[str, float]) -> str | None:
    """A warning where 3 or more orders (F among them or not) all scored the same: no test or search can tell
    them apart, and the usual cause is a chain that learned nothing (every model predicts one class)."""
    v = [float(x) for x in scores.values() if x is not None and np.isfinite(x)]
    if len(v) < 3 or max(v) - min(v) > 1e-9:
        return None
    return (f"warning: all {len(v)} orders{' (F too)' if F in scores else ''} scored {v[0]:.4f}: nothing tells them "
            f"apart. A chain that learns nothing (a fine-tune too short for its learning rate, every prediction "
            f"one class) scores like this; `itt run CONFIG` prints a chain's stage losses and per-language scores")


def welch(a, b) -> float:
    """Welch's t-test p. Where both groups are constant (a model that predicts one class on every seed) t is
    infinite and scipy's p 0; the exact permutation p of the difference of means is then the share of the
    relabelings that keep the two groups (or swap them, at equal sizes): 0.1 for 3 seeds against 3."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0
    if len(a) and len(b) and np.ptp(a) == 0 and np.ptp(b) == 0:
        return float((1 + (len(a) == len(b))) / math.comb(len(a) + len(b), len(a)))
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


# ------------------------------------------------------------------ the whole analysis
def analyse(scores: pd.DataFrame, *, extra: pd.DataFrame | None = None, trials: pd.DataFrame | None = None,
            stages: pd.DataFrame | None = None, alpha: float = ALPHA, english: str = ENGLISH,
            min_seeds: int = MIN_SEEDS, top: int = 30, space: list[str] | None = None) -> dict:
    """Every statistic of the report, as plain JSON-able data.

    ``scores``: columns order ('a>b', '' = F), seed, language, score — completed trials only (one
    trial per order). ``extra``: order, seed, figure, value (e.g. perturbation). ``trials``: every
    trial (trial_id, order, status, stages_completed, score) for the status overview. ``stages``:
    order, seed, stage, task, probe (probe curves). ``space``: every IF order of the search's space, for
    the chance that an order the search did not finish beats its best (search/ranking.py)."""
    scores, incomplete = complete_models(scores)  # (itt report leaves them out when it reads the search, saying so)
    langs = list(dict.fromkeys(scores["language"]))
    fig = seed_figures(scores, extra, english)
    res: dict = {"alpha": alpha, "min_seeds": min_seeds, "confidence": CONFIDENCE, "languages": langs,
                 "figures": {k: {"label": v[0], "higher_is_better": v[1]} for k, v in FIGURES.items()}}
    res["trials"] = _trial_overview(trials)
    res["incomplete_models"] = incomplete
    res["leaderboard"] = _leaderboard(scores, fig)
    res["if_vs_f"] = _if_vs_f(scores, fig, res["leaderboard"], alpha, min_seeds)
    res["heatmap"] = _heatmap(scores, res["leaderboard"], top)
    res["by_language"] = _languages(scores, res["leaderboard"], alpha, min_seeds)
    means = {r["order"]: r["mean"] for r in res["leaderboard"]}
    res["position"] = _positions(fig, means, alpha)
    res["precedence"] = _precedence(fig, means, alpha)
    res["lengths"] = _lengths(fig, means, alpha)
    res["variance_parts"] = variance_parts(fig)
    res["alike"] = alike_text(means)
    res["order_effect"] = _order_effects(fig, alpha, min_seeds)
    res["best_order"] = _best_order(fig, res["leaderboard"], space)
    res["probe_curves"] = _probe_curves(stages, res["leaderboard"]) if stages is not None else []
    res["headline"] = _headline(res)
    return res


def _best_order(fig: pd.DataFrame, board: list[dict], space: list[str] | None = None) -> dict:
    """How sure the best IF order is (search/ranking.py); each IF order's P(best) and shrunk score also
    go on its leaderboard row."""
    from search import ranking

    res = ranking.analyse(fig, space=space)
    by_order = {r["order"]: r for r in res.get("rows", [])}
    for row in board:
        r = by_order.get(row["order"])
        row["p_best"], row["shrunk"] = (r["p_best"], r["shrunk"]) if r else (None, None)
    return res


def _trial_overview(trials: pd.DataFrame | None) -> dict:
    if trials is None or not len(trials):
        return {"counts": {}, "stopped": [], "errored": []}
    counts = trials["status"].value_counts().to_dict()
    stopped = [{"trial_id": r.trial_id, "order": r.order, "stages_completed": int(r.stages_completed or 0)}
               for r in trials.itertuples() if r.status == Status.STOPPED]
    errored = [{"trial_id": r.trial_id, "order": r.order} for r in trials.itertuples() if r.status == Status.ERRORED]
    return {"counts": {k: int(v) for k, v in counts.items()}, "stopped": stopped, "errored": errored}


def _leaderboard(scores: pd.DataFrame, fig: pd.DataFrame) -> list[dict]:
    per_lang = scores.groupby(["order", "language"])["score"].mean()
    rows = []
    for order, g in fig.groupby("order", sort=False):
        m = g["mean"].to_numpy(float)
        lo, hi = t_interval(m)
        rows.append({
            "order": order, "length": len(order_tasks(order)), "n_seeds": int(len(m)),
            "mean": float(m.mean()), "std": float(m.std(ddof=1)) if len(m) > 1 else None, "ci_low": lo, "ci_high": hi,
            "per_language": {lang: float(v) for lang, v in per_lang[order].items()},
            **{k: _f(g[k].mean()) for k in ("worst", "lang_std", "transfer_gap", "perturbation")},
        })
    rows.sort(key=lambda r: -r["mean"])
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def _if_vs_f(scores: pd.DataFrame, fig: pd.DataFrame, board: list[dict], alpha: float, min_seeds: int) -> dict:
    ifs = [r for r in board if r["order"] != F]
    if not any(r["order"] == F for r in board):
        return {"available": False, "reason": "the F baseline (empty order) was not run: add `seed_points: "
                                               "{baseline: true}` with 0 among the search lengths"}
    if not ifs:
        return {"available": False, "reason": "no completed IF order"}
    best = ifs[0]["order"]
    f_row = next(r for r in board if r["order"] == F)
    rows = []
    for lang in f_row["per_language"]:
        mean_if = float(np.mean([r["per_language"][lang] for r in ifs if lang in r["per_language"]]))
        rows.append({"language": lang, "F": f_row["per_language"][lang], "best_IF": ifs[0]["per_language"].get(lang),
                     "mean_IF": mean_if})
    for r in rows:
        r["delta_best"] = None if r["best_IF"] is None else r["best_IF"] - r["F"]
        r["delta_mean"] = r["mean_IF"] - r["F"]
    out = {"available": True, "best_order": best, "n_if_orders": len(ifs), "per_language": rows,
           "overall": {"F": f_row["mean"], "best_IF": ifs[0]["mean"], "mean_IF": float(np.mean([r["mean"] for r in ifs]))}}
    # best IF vs F per language, on per-seed scores (Welch); the best was picked on these data: optimistic
    s = scores.groupby(["order", "seed", "language"])["score"].mean().reset_index()
    nf, nb = s[s["order"] == F]["seed"].nunique(), s[s["order"] == best]["seed"].nunique()
    if min(nf, nb) < min_seeds:
        out["test"] = {"underpowered": f"F has {nf} seed(s), the best IF order {nb} (need {min_seeds} each)"}
    else:
        ps = [welch(s[(s["order"] == best) & (s["language"] == r["language"])]["score"],
                    s[(s["order"] == F) & (s["language"] == r["language"])]["score"]) for r in rows]
        wide = s.pivot_table(index=["order", "seed"], columns="language", values="score").dropna()
        wide = wide[[r["language"] for r in rows]]
        orders = wide.index.get_level_values("order").to_numpy()
        picked, p_min = best_vs_f_permutation(wide.to_numpy(float), orders, best, floor=True)
        for r, p, pp, pa in zip(rows, ps, picked, holm(picked)):
            r["p_best_vs_F"], r["p_best_vs_F_picked"], r["p_best_vs_F_holm"], r["significant"] = p, pp, pa, pa < alpha
        out["test"] = {"method": f"best IF order vs F per language: the difference of their means, its p-value from "
                                 f"{PERMUTATIONS} permutations of the orders' labels over their seeds with the best of "
                                 f"the {len(ifs)} IF orders picked again in each (so picking it on these seeds is "
                                 f"accounted for; Westfall & Young's max-statistic), Holm over languages; Welch's "
                                 f"p without that (optimistic) beside it",
                       # Holm's smallest adjusted p is the number of languages times the smallest p
                       "p_floor": min(1.0, len(rows) * p_min), "languages": len(rows)}
    return out


def best_vs_f_permutation(y: np.ndarray, orders: np.ndarray, best: str, *, permutations: int = PERMUTATIONS,
                          seed: int = PERMUTATION_SEED, floor: bool = False) -> list[float] | tuple[list[float], float]:
    """Per language (``y``'s columns; rows: one model per (order, seed), ``orders`` their labels), the p-value
    of ``best``'s difference from F in mean score, where ``best`` was picked as the IF order with the highest
    mean over languages. Under the null that no order differs from F the labels are exchangeable, so each
    permutation shuffles them over the models, picks its own best IF order and takes its |difference| from
    its F; p = (1 + #{|d*| >= |d|}) / (1 + permutations): Westfall & Young's (1993) max-statistic over the IF
    orders. A plain Welch p of the picked order is optimistic (a statistics review: with no order better than
    F, some language came out significant in 5.5% of searches of 16 IF orders x 3 seeds, 16% of 40 x 5:
    bench/if_vs_f_calibration.py). The difference of means, not t, is the statistic: with 3 seeds a t's
    variance estimate makes it erratic. ``floor``: also the smallest p any data could reach (the permutations
    that keep F's models and the best's as they are, or swap them where the best is the only IF order, give the
    observed difference whatever the data): F and one IF order of 3 seeds each cannot go below 0.1."""
    labels, g = np.unique(orders, return_inverse=True)
    f = int(np.flatnonzero(labels == F)[0])
    row_mean, sizes = y.mean(axis=1), np.bincount(g)

    def diffs(groups: np.ndarray, b: int) -> np.ndarray:
        return np.abs(y[groups == b].mean(axis=0) - y[groups == f].mean(axis=0))

    d_obs = diffs(g, int(np.flatnonzero(labels == best)[0]))
    rng = np.random.default_rng(seed)
    b = int(np.flatnonzero(labels == best)[0])
    hits, same = np.zeros(y.shape[1]), 0
    for _ in range(permutations):
        gp = rng.permutation(g)
        means = np.bincount(gp, weights=row_mean, minlength=len(labels)) / sizes
        means[f] = -np.inf
        hits += diffs(gp, int(np.argmax(means))) >= d_obs - 1e-12
        kept = (gp[g == f] == f).all() and (gp[g == b] == b).all()
        same += bool(kept or (len(labels) == 2 and (gp[g == f] == b).all()))
    ps = [float(x) for x in (1 + hits) / (1 + permutations)]
    return (ps, (1 + same) / (1 + permutations)) if floor else ps


def _languages(scores: pd.DataFrame, board: list[dict], alpha: float, min_seeds: int) -> dict:
    """Is the best order the best in every language? Per language, among the IF orders: the best order
    there and how far the overall best falls below it; each language's ranking against the other
    languages' mean (Spearman, leave one out) and Kendall's W over languages (descriptive: a seed's
    luck lifts every language of its model, so languages agree more than independent raters would).
    The test is the order x language interaction (:func:`order_language_interaction`)."""
    ifs = [r for r in board if r["order"] != F]
    langs = list(dict.fromkeys(scores["language"]))
    out: dict = {"n_languages": len(langs), "n_orders": len(ifs), "min_seeds": min_seeds}
    if len(langs) < 2 or len(ifs) < 2:
        return {**out, "underpowered": f"{len(ifs)} completed IF order(s) in {len(langs)} language(s) (need 2 of each)"}
    best = ifs[0]
    table = pd.DataFrame([[r["per_language"].get(lg, np.nan) for lg in langs] for r in ifs],
                         index=[r["order"] for r in ifs], columns=langs)
    rows = [_language_row(table, lg, best["order"]) for lg in langs]
    out.update({"overall_best": best["order"], "per_language": rows,
                "best_in": sum(r["best_order"] == best["order"] for r in rows)})
    _gap_tests(scores, rows, best["order"], alpha, min_seeds)
    _language_p_best(scores, rows, best["order"])
    full = table.dropna()
    w = kendall_w(full.to_numpy(float), permutations=1)[0] if len(full) >= MIN_ORDERS else float("nan")
    if math.isfinite(w):  # (every language ties every order: no ranking, no W)
        out["W"] = w
        out["mean_rho"] = (len(langs) * w - 1) / (len(langs) - 1)  # average Spearman over language pairs
    out["interaction"] = _interaction(scores, langs, min_seeds, alpha)
    return out


def _language_row(table: pd.DataFrame, lang: str, overall: str) -> dict:
    """One language of ``table`` (IF orders x languages, means over seeds): its best order, the overall
    best's rank and gap there, and its ranking against the other languages' mean (Spearman)."""
    col, others = table[lang].dropna(), table.drop(columns=lang).mean(axis=1)
    top = col.idxmax()
    ranked = len(col) >= MIN_ORDERS and np.ptp(col) > 0 and np.ptp(others[col.index]) > 0  # else rho is undefined
    rho = stats.spearmanr(col, others[col.index]).statistic if ranked else None
    here = overall in col.index
    return {"language": lang, "best_order": top, "best": float(col[top]), "overall_best": _f(col.get(overall)),
            "overall_best_rank": int(col.rank(ascending=False, method="min")[overall]) if here else None,
            "gap": _f(col[top] - col[overall]) if here else None, "rho_with_others": _f(rho)}


def _language_p_best(scores: pd.DataFrame, rows: list[dict], overall: str) -> None:
    """Per language: how sure its best order is the best there, and the overall best's chance there (the
    report's hierarchical model, search/ranking.py, on that language's per-seed scores)."""
    from search import ranking

    for r in rows:
        one = scores[scores["language"] == r["language"]].rename(columns={"score": "mean"})
        got = {x["order"]: x["p_best"] for x in ranking.analyse(one, draws=20).get("rows", [])}  # (one per language)
        r["p_best_there"], r["overall_p_best_there"] = got.get(r["best_order"]), got.get(overall)


def _gap_tests(scores: pd.DataFrame, rows: list[dict], overall: str, alpha: float, min_seeds: int) -> None:
    """Where another order is best in a language: is it better than the overall best there beyond seed
    noise? Welch on that language's per-seed scores, Holm over those languages (optimistic: the
    language's best was picked on the same scores)."""
    s = scores.groupby(["order", "language", "seed"])["score"].mean()
    tested = []
    for r in rows:
        if r["best_order"] == overall or r["gap"] is None:
            continue
        a, b = s.get((r["best_order"], r["language"])), s.get((overall, r["language"]))
        if a is not None and b is not None and min(len(a), len(b)) >= min_seeds:
            r["p_gap"] = welch(a, b)
            tested.append(r)
    for r, pa in zip(tested, holm([r["p_gap"] for r in tested])):
        r["p_gap_holm"], r["gap_significant"] = pa, pa < alpha


def _interaction(scores: pd.DataFrame, langs: list[str], min_seeds: int, alpha: float) -> dict:
    wide = scores[scores["order"] != F].pivot_table(index=["order", "seed"], columns="language", values="score",
                                                   aggfunc="mean")[langs].dropna()
    sizes = wide.groupby(level="order").size()
    ok = sizes[sizes >= min_seeds].index
    if len(ok) < 2:
        return {"underpowered": f"the test needs 2 or more IF orders with {min_seeds}+ seeds in every language; here {len(ok)}"}
    wide = wide[wide.index.get_level_values("order").isin(ok)]
    res = order_language_interaction(wide.to_numpy(float), wide.index.get_level_values("order"))
    if "p" in res:
        res["significant"] = res["p"] < alpha
    return res


def _heatmap(scores: pd.DataFrame, board: list[dict], top: int) -> dict:
    orders = [r["order"] for r in board[:top]]
    if F not in orders and any(r["order"] == F for r in board):
        orders.append(F)
    langs = list(dict.fromkeys(scores["language"]))
    byo = {r["order"]: r for r in board}
    return {"orders": orders, "languages": langs,
            "values": [[byo[o]["per_language"].get(lang) for lang in langs] for o in orders],
            "shown": len(orders), "total": len(board)}


def _positions(fig: pd.DataFrame, means: dict[str, float], alpha: float, rank_only: bool = False) -> dict:
    """Score (order means) when task T stands at position p, with t intervals over orders; per task, a
    test that the positions with ``MIN_ORDERS``+ orders score alike (``_group_tests``), Holm over tasks."""
    at: dict[tuple[str, int], list[str]] = {}
    for order in means:
        for p, t in enumerate(order_tasks(order), 1):
            at.setdefault((t, p), []).append(order)
    cells = []
    for (t, p), v in sorted(at.items()):
        vals = [means[o] for o in v]
        lo, hi = t_interval(vals)
        cells.append({"task": t, "position": p, "n_orders": len(v), "mean": float(np.mean(vals)), "ci_low": lo, "ci_high": hi})
    wanted = {}
    for t in sorted({c["task"] for c in cells}):
        groups = [at[(t, c["position"])] for c in cells if c["task"] == t and c["n_orders"] >= MIN_ORDERS]
        wanted[t] = (groups, f"fewer than 2 positions with {MIN_ORDERS}+ orders holding {t}", (t,))
    tests, method = _group_tests(fig, means, wanted, alpha, rank_only)
    for t in tests:
        t["task"] = t.pop("key")
        if "diffs" in t:  # each position's adjusted effect against the first tested one
            t["positions"] = len(t["diffs"]) + 1
    return {"cells": cells, "tests": tests, **method}


def _group_tests(fig: pd.DataFrame, means: dict[str, float], wanted: dict, alpha: float,
                 rank_only: bool = False) -> tuple[list[dict], dict]:
    """For each key of ``wanted`` ((groups of orders, why too few, the tasks the groups are defined by)):
    are the groups equal in mean score? Where orders have 2+ seeds, by GLS with the other tasks an order
    holds as fixed effects and the covariance of orders sharing a trained prefix (search/shared_prefix.py);
    with one seed per order that covariance cannot be estimated, and Kruskal-Wallis (Mann-Whitney U for
    two groups) over order means runs, with a caveat (``rank_only``: that test whatever the seeds; the
    calibration benchmark compares the two). Holm over the keys tested."""
    names, Y = shared_prefix.per_seed_matrix(fig)
    pc = shared_prefix.PrefixCovariance([tuple(order_tasks(o)) for o in names], Y)
    pc.ok = pc.ok and not rank_only
    row = {o: i for i, o in enumerate(names)}
    tasks = sorted({t for o in names for t in order_tasks(o)})
    holds = np.array([[t in order_tasks(o) for t in tasks] for o in names], dtype=float).reshape(len(names), len(tasks))
    tests, ps = [], []
    for key, (groups, too_few, defined_by) in wanted.items():
        groups = [[o for o in g if o in row] for g in groups]
        if len(groups) < 2 or min(len(g) for g in groups) < MIN_ORDERS:
            tests.append({"key": key, "underpowered": too_few})
            continue
        if pc.ok:  # (defined_by None: nothing to adjust for)
            adjust = holds[:, [j for j, t in enumerate(tasks) if defined_by is not None and t not in defined_by]]
            r = shared_prefix.groups_test(pc, [[row[o] for o in g] for g in groups], adjust)
        else:
            r = _rank_test([np.asarray([means[o] for o in g]) for g in groups])
        tests.append({"key": key, **r})
        if "p" in r:
            ps.append(r["p"])
    adj = iter(holm(ps))
    for r in tests:
        if "p" in r:
            r["p_holm"] = next(adj)
            r["significant"] = r["p_holm"] < alpha
    if pc.ok:
        method = {"method": "GLS over the orders' mean scores with the other tasks an order holds as fixed effects and the "
                            "covariance of orders that share a trained prefix estimated from the seeds (a mixed model, "
                            f"method of moments), Wald F test (Satterthwaite's denominator df; groups with {MIN_ORDERS}+ orders), Holm",
                  "prefix_covariance": pc.figures(), "caveat": None}
    else:
        method = {"method": f"rank test over orders' mean scores (groups with {MIN_ORDERS}+ orders), Holm",
                  "caveat": SHARED_PREFIX}
    return tests, method


def _rank_test(groups: list[np.ndarray]) -> dict:
    """Kruskal-Wallis, or Mann-Whitney U for two groups, over order means (orders as independent units)."""
    allv = np.concatenate(groups)
    if np.ptp(allv) == 0:
        return {"p": 1.0}
    if len(groups) == 2:
        return {"p": float(stats.mannwhitneyu(*groups, alternative="two-sided").pvalue)}
    h, p = stats.kruskal(*groups)
    return {"H": float(h), "p": float(p)}


def variance_parts(fig: pd.DataFrame, figure: str = "mean") -> dict:
    """What the per-seed scores of the IF orders vary with: the set of tasks, their arrangement within
    the set, or the seed. The nested (hierarchical) sum-of-squares decomposition, exact for unequal
    sizes: SS_total = SS_sets + SS_arrangement-within-sets + SS_seeds-within-orders, each as a share of
    the total (descriptive; seed noise also lifts the two between-terms). A set fixes the number of
    tasks, so the set's share includes the effect of the order's length."""
    d = fig[(fig["order"] != F) & fig[figure].notna()][["order", figure]].copy()
    if d["order"].nunique() < 2:
        return {"underpowered": f"{d['order'].nunique()} IF order(s) with this figure (need 2 or more)"}
    d["set"] = d["order"].map(task_set)
    y = d[figure].to_numpy(float)
    if np.ptp(y) == 0:
        return {"underpowered": "every per-seed score of the IF orders is equal: no spread to split"}
    order_mean = d.groupby("order")[figure].transform("mean").to_numpy(float)
    set_mean = d.groupby("set")[figure].transform("mean").to_numpy(float)
    parts = {"sets": float(((set_mean - y.mean()) ** 2).sum()), "arrangement": float(((order_mean - set_mean) ** 2).sum()),
             "seeds": float(((y - order_mean) ** 2).sum())}
    total = float(((y - y.mean()) ** 2).sum())
    shares = {k: (v / total if total > 0 else 0.0) for k, v in parts.items()}
    one_seed = bool(d.groupby("order").size().max() < 2)  # no within-order spread: seed noise hides in the orders'
    return {"figure": figure, "ss": parts, "ss_total": total, "share": shares, "one_seed": one_seed,
            "n_orders": int(d["order"].nunique()),
            "n_sets": int(d["set"].nunique()), "sets_with_several_orders": int((d.groupby("set")["order"].nunique() > 1).sum()),
            "n_obs": int(len(y))}


def _lengths(fig: pd.DataFrame, means: dict[str, float], alpha: float) -> dict:
    """Is more intermediate training better? Order means by the number of intermediate tasks, t
    intervals (F is length 0 where it ran, shown but left out of the test: that is IF vs F); a test that
    the lengths 1+ with ``MIN_ORDERS``+ orders score alike: GLS with the shared-prefix covariance
    (an order of length 2 and the one of length 3 it begins share their first two stages' models;
    search/shared_prefix.py; nothing to adjust for: which tasks an order holds fixes its length), or
    Kruskal-Wallis over order means with one seed per order; Spearman's rho between length and score
    over the IF orders (descriptive)."""
    by: dict[int, list[tuple[str, float]]] = {}
    for order, m in means.items():
        by.setdefault(len(order_tasks(order)), []).append((order, m))
    cells = []
    for n, v in sorted(by.items()):
        vals = [m for _, m in v]
        lo, hi = t_interval(vals)
        best = max(v, key=lambda x: x[1])
        cells.append({"length": n, "n_orders": len(v), "mean": float(np.mean(vals)), "ci_low": lo, "ci_high": hi,
                      "best_order": best[0], "best": float(best[1])})
    groups = [[o for o, _ in by[c["length"]]] for c in cells if c["length"] > 0 and c["n_orders"] >= MIN_ORDERS]
    too_few = f"fewer than 2 lengths with {MIN_ORDERS}+ IF orders"
    tests, method = _group_tests(fig, means, {"length": (groups, too_few, None)}, alpha)
    t = tests[0]
    if "underpowered" in t:
        return {"cells": cells, "test": {"underpowered": too_few}}
    ifs = [(n, m) for n, v in by.items() if n > 0 for _, m in v]
    rho = stats.spearmanr([n for n, _ in ifs], [m for _, m in ifs]).statistic
    test = {k: v for k, v in t.items() if k not in ("key", "p_holm", "significant")}
    how = ("GLS over the orders' mean scores with the covariance of orders that share a trained prefix estimated "
           "from the seeds (a mixed model, method of moments), Wald F test" if method["caveat"] is None else
           "rank test over orders' mean scores (orders as units)")
    test.update(lengths=len(groups), significant=bool(t["p"] < alpha), rho=_f(rho),
                method=f"{how} over lengths with {MIN_ORDERS}+ orders; Spearman's rho of length and score over IF orders")
    return {"cells": cells, "test": test, **{k: v for k, v in method.items() if k != "method"}}


def _precedence(fig: pd.DataFrame, means: dict[str, float], alpha: float, rank_only: bool = False) -> dict:
    """A before B vs B before A among orders holding both (order means; ``_group_tests``, Holm over pairs)."""
    orders = {o: order_tasks(o) for o in means if o != F}
    tasks = sorted({t for ts in orders.values() for t in ts})
    pairs, wanted = [], {}
    for a, b in combinations(tasks, 2):
        ab = [o for o, ts in orders.items() if a in ts and b in ts and ts.index(a) < ts.index(b)]
        ba = [o for o, ts in orders.items() if a in ts and b in ts and ts.index(a) > ts.index(b)]
        if not ab and not ba:
            continue
        r = {"a": a, "b": b, "n_a_first": len(ab), "n_b_first": len(ba),
             "mean_a_first": float(np.mean([means[o] for o in ab])) if ab else None,
             "mean_b_first": float(np.mean([means[o] for o in ba])) if ba else None}
        r["diff"] = r["mean_a_first"] - r["mean_b_first"] if ab and ba else None
        pairs.append(r)
        wanted[(a, b)] = ([ab, ba], f"{len(ab)} vs {len(ba)} orders (need {MIN_ORDERS} each)", (a, b))
    tests, method = _group_tests(fig, means, wanted, alpha, rank_only)
    for r, t in zip(pairs, tests):
        t.pop("key")
        if "diffs" in t:  # B first minus A first, adjusted: the pair's difference is A first minus B first
            t["diff_adjusted"] = -t.pop("diffs")[0]
        r.update(t)
    return {"pairs": pairs, **method}


def _order_effects(fig: pd.DataFrame, alpha: float, min_seeds: int) -> dict:
    """The mean over languages is the primary test (at α as it stands); the robustness figures are a
    secondary family, Holm-corrected among themselves."""
    tests = [order_effect(fig, k, min_seeds=min_seeds) for k in FIGURES]
    if "p" in tests[0]:
        tests[0]["p_holm"] = tests[0]["p"]  # the primary test: a single comparison
        tests[0]["significant"] = tests[0]["p"] < alpha
    ran = [t for t in tests[1:] if "p" in t]
    for t, pa in zip(ran, holm([t["p"] for t in ran])):
        t["p_holm"] = pa
        t["significant"] = pa < alpha
    arr = arrangement_effect(fig, "mean", min_seeds=min_seeds)
    if "p" in arr:
        arr["significant"] = arr["p"] < alpha
    return {"tests": tests, "arrangement": arr, "method": f"Kruskal–Wallis over IF orders with {min_seeds}+ seeds (per-seed values; "
                                                          f"p-value from {PERMUTATIONS} label permutations), "
                                      f"epsilon² = H/(n-1), variance share = ICC(1); the mean over languages is the "
                                      f"primary test, the {len(ran)} robustness figure(s) are Holm-corrected among "
                                      f"themselves"}


def _probe_curves(stages: pd.DataFrame, board: list[dict], k: int = 5) -> list[dict]:
    out = []
    for r in [r for r in board if r["order"] != F][:k]:
        g = stages[(stages["order"] == r["order"]) & stages["probe"].notna()]
        if not len(g):
            continue
        by = g.groupby(["stage", "task"])["probe"].agg(["mean", "std", "size"]).reset_index().sort_values("stage")
        out.append({"order": r["order"], "final_test_mean": r["mean"],
                    "points": [{"stage": int(x.stage), "task": x.task, "probe": float(x["mean"]),
                                "std": _f(x["std"]), "n_seeds": int(x["size"])} for _, x in by.iterrows()]})
    return out


def _p_text(p: float) -> str:
    if p * (PERMUTATIONS + 1) <= 1 + 1e-9:  # no permutation reached the observed H: the floor
        return f"p ≤ {p:.2g} (no permuted H of {PERMUTATIONS} reached it)"
    return f"p = {p:.3g}"


def _headline(res: dict) -> dict:
    """The answer's first sentence. The primary test compares IF orders that differ in their tasks as well as
    in their arrangement, so it says "which tasks, in which order"; the arrangement test (the same tasks
    rearranged) says whether order alone matters."""
    main = res["order_effect"]["tests"][0]
    board = res["leaderboard"]
    h = {"n_orders": len(board), "best_order": board[0]["order"] if board else None,
         "best_mean": board[0]["mean"] if board else None}
    arr = res["order_effect"].get("arrangement") or {}
    h["arrangement_matters"] = bool(arr["significant"]) if "p" in arr else None
    if "p" in main:
        h.update({"order_matters": bool(main["significant"]), "p_holm": main["p_holm"], "epsilon2": main["epsilon2"],
                  "variance_share": main["variance_share"]})
        verdict = ("The intermediate tasks chosen and their order matter for the mean score over languages"
                   if main["significant"] else
                   "No detectable effect of the intermediate tasks chosen and their order on the mean score over languages")
        h["text"] = (f"{verdict}: Kruskal–Wallis over {main['n_orders']} IF orders, H = {main['H']:.2f}, {_p_text(main['p'])} "
                     f"(α = {res['alpha']}), epsilon² = {main['epsilon2']:.2f}, between-order share of variance "
                     f"{main['variance_share']:.0%}{floor_text(main, res['alpha'])}. {_arrangement_text(arr, res['alpha'])}")
    else:
        h["order_matters"] = None
        h["text"] = f"Does order matter? Not tested: underpowered: {main['underpowered']}."
    return h


def floor_text(t: dict, alpha: float, label: str = "",
               then: str = ", so this test cannot detect an effect here, however large",
               given: str = "with these seeds and orders the smallest p any data could reach") -> str:
    """Beside a permutation p-value: where no data of these group sizes could reach p <= alpha (too few seeds
    and orders for any labelling to be rare enough), say so; "no detectable effect" alone reads as evidence."""
    if (t.get("p_floor") or 0) <= alpha:
        return ""
    return f" ({label + ': ' if label else ''}{given} is {t['p_floor']:.2g} > α{then})"


def _arrangement_text(arr: dict, alpha: float = ALPHA) -> str:
    """The headline's second sentence: order alone, the same tasks rearranged."""
    if "p" not in arr:
        return f"Order alone (the same tasks rearranged): not tested: {arr.get('underpowered', 'no orders')}."
    verdict = "matters" if arr["significant"] else "no detectable effect"
    return (f"Order alone (the same tasks rearranged): {verdict}, H = {arr['H']:.2f} within {arr['task_sets']} task "
            f"set(s) ({arr['orders']} orders), {_p_text(arr['p'])}{floor_text(arr, alpha)}.")
