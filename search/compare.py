"""``itt compare EXP EXP [...]``: do orders hold up across searches (targets, encoders)?

One search answers *does order matter here*; a researcher with searches on several targets (XNLI and
PAWS-X, or XLM-R and mBERT on one target) next asks whether the same orders win everywhere, and which
order to use when the target is not known in advance. This module reads each search with
:func:`search.report.load_experiment` (completed trials, per-seed test scores) and compares them on one
figure per seed (the mean over languages by default):

* agreement of all searches on the orders every one of them completed: Kendall's coefficient of
  concordance W with the tie correction (Kendall & Babington Smith, 1939; ``W = chi2_Friedman / (m (n - 1))``),
  its p-value from seeded permutations of each search's scores (the chi-square approximation is poor
  with two or three searches);
* each pair of searches on the orders both completed: Kendall's tau-b and Spearman's rho (scipy), where
  one search's best order ranks in the other and how far below the other's best it scores;
* how far seed noise alone caps that agreement: each search's split-half reliability of its order
  ranking (random halves of every order's seeds, Spearman's rho between the halves' means, stepped up
  with Spearman–Brown), and the pair's ceiling sqrt(rel_a * rel_b) (Spearman's correction for
  attenuation, 1904);
* an order for all searches: the shared orders by mean rank, their gain over F in each search (Welch
  per search, Holm over searches) and the least they gain anywhere (the robust choice).

Everything is pure on tidy tables (:func:`analyse`); :func:`make_compare` reads, renders (the report's
renderers) and writes ``compare.html``, ``compare.md``, ``compare.json`` and the PNGs.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import tempfile
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from itt.errors import UserError
from search import latex, ranking
from search import stats as S
from search.stats import F, kendall_w, show

FIGURES = ("mean", "worst")  # per-seed figures to compare on (higher is better); or lang:<code>, one language
LANG = "lang:"
SPLITS = 200  # random seed splits behind a split-half reliability
MIN_ORDERS = 3  # shared orders before an agreement statistic is computed
TOP = 25  # orders in the plots
PLOTS = {"across", "ranks"}


# ------------------------------------------------------------------ statistics (pure)
def order_means(fig: pd.DataFrame, figure: str = "mean") -> pd.Series:
    """Per-seed figures (columns order, seed, <figure>) -> each order's mean over seeds."""
    return fig.groupby("order", sort=False)[figure].mean().dropna()


def split_half(fig: pd.DataFrame, figure: str = "mean", *, splits: int = SPLITS, seed: int = 0) -> dict:
    """How reproducible a search's order ranking is under seed noise: for ``splits`` random halvings of
    every order's seeds, Spearman's rho between the two halves' order means; the mean rho stepped up
    to the full seed count with Spearman–Brown, 2 rho / (1 + rho)."""
    g = fig.dropna(subset=[figure]).groupby("order", sort=False)[figure].apply(lambda s: s.to_numpy(float))
    g = g[g.map(len) >= 2]
    if len(g) < MIN_ORDERS:
        return {"underpowered": f"{len(g)} order(s) with 2+ seeds (need {MIN_ORDERS})"}
    rng = np.random.default_rng(seed)
    rhos = []
    for _ in range(splits):
        a, b = [], []
        for v in g:
            idx = rng.permutation(len(v))
            a.append(v[idx[: len(v) // 2]].mean())
            b.append(v[idx[len(v) // 2:]].mean())
        if np.ptp(a) > 0 and np.ptp(b) > 0:  # (a constant half has no ranking: scipy warns and gives nan)
            rhos.append(stats.spearmanr(a, b).statistic)
    if not rhos:
        return {"underpowered": "the halves' means are constant"}
    r = float(np.mean(rhos))
    rel = 2 * r / (1 + r) if r > -1 else float("nan")
    return {"n_orders": int(len(g)), "half_rho": r, "reliability": max(rel, 0.0) if np.isfinite(rel) else None}


def pair(name_a: str, a: pd.Series, name_b: str, b: pd.Series) -> dict:
    """Two searches on the orders both completed: tau-b, rho, and each one's best order in the other."""
    shared = [o for o in a.index if o in b.index]
    out: dict = {"a": name_a, "b": name_b, "n_shared": len(shared)}
    if len(shared) < MIN_ORDERS:
        out["underpowered"] = f"{len(shared)} order(s) completed in both (need {MIN_ORDERS})"
        return out
    x, y = a[shared].to_numpy(float), b[shared].to_numpy(float)
    flat = next(((n, v) for n, v in ((name_a, x), (name_b, y)) if np.ptp(v) == 0), None)
    if flat:  # no ranking to compare (scipy's tau and rho would be nan)
        out["underpowered"] = f"{flat[0]} scores all {len(shared)} shared orders alike ({flat[1][0]:.4f})"
        return out
    tau = stats.kendalltau(x, y)
    out.update(tau=float(tau.statistic), p_tau=float(tau.pvalue), rho=float(stats.spearmanr(x, y).statistic))
    for side, s, d in (("a", a[shared], b[shared]), ("b", b[shared], a[shared])):
        best = s.idxmax()
        out[f"best_of_{side}"] = {"order": best, "rank_in_other": int((d > d[best]).sum()) + 1, "of": len(shared),
                                  "shortfall": float(d.max() - d[best]), "others_best": d.idxmax()}
    return out


def across(figs: dict[str, pd.DataFrame], means: dict[str, pd.Series], figure: str, alpha: float,
           min_seeds: int = S.MIN_SEEDS) -> dict:
    """The orders every search completed, by mean rank over searches (rank 1 = best in that search,
    among the shared orders), with each search's gain over F and whether it is significant. ``means``:
    each search's ``order_means``."""
    shared = [o for o in next(iter(means.values())).index if all(o in m.index for m in means.values())]
    names = list(figs)
    out: dict = {"n_shared": len(shared), "orders": []}
    if not shared:
        return out
    ranks = {k: means[k][shared].rank(ascending=False, method="average") for k in names}
    has_f = {k: F in means[k].index for k in names}
    p_best = {k: best_among(figs[k], shared, figure) for k in names}
    for o in shared:
        row = {"order": o, "mean_rank": float(np.mean([ranks[k][o] for k in names])),
               "per_search": {}}
        for k in names:
            cell = {"mean": float(means[k][o]), "rank": float(ranks[k][o]), "p_best": p_best[k].get(o)}
            if has_f[k] and o != F:
                fo = figs[k]
                x, f0 = fo[fo["order"] == o][figure].dropna(), fo[fo["order"] == F][figure].dropna()
                cell["gain_over_F"] = float(means[k][o] - means[k][F])
                if min(len(x), len(f0)) >= min_seeds:
                    cell["p_vs_F"] = S.welch(x, f0)
            row["per_search"][k] = cell
        ps = [(k, c["p_vs_F"]) for k, c in row["per_search"].items() if "p_vs_F" in c]
        for (k, _), pa in zip(ps, S.holm([p for _, p in ps])):
            c = row["per_search"][k]
            c["p_vs_F_holm"], c["helps"] = pa, bool(pa < alpha and c["gain_over_F"] > 0)
            c["hurts"] = bool(pa < alpha and c["gain_over_F"] < 0)
        gains = [c.get("gain_over_F") for c in row["per_search"].values()]
        row["least_gain_over_F"] = min(gains) if o != F and all(g is not None for g in gains) else None
        ps = [c["p_best"] for c in row["per_search"].values()]
        row["p_best_everywhere"] = float(np.prod(ps)) if o != F and all(x is not None for x in ps) else None
        row["helps_in"] = sum(c.get("helps", False) for c in row["per_search"].values())
        row["hurts_in"] = sum(c.get("hurts", False) for c in row["per_search"].values())
        out["orders"].append(row)
    out["orders"].sort(key=lambda r: (r["mean_rank"], r["order"]))
    ifs = [r for r in out["orders"] if r["order"] != F]
    if ifs:
        out["best_overall"] = ifs[0]["order"]
        robust = [r for r in ifs if r["least_gain_over_F"] is not None]
        if robust:
            out["most_robust"] = max(robust, key=lambda r: (r["least_gain_over_F"], -r["mean_rank"]))["order"]
        likely = [r for r in ifs if r["p_best_everywhere"] is not None]
        if likely:
            out["most_likely_everywhere"] = max(likely, key=lambda r: r["p_best_everywhere"])["order"]
    return out


def best_among(fig: pd.DataFrame, orders: list[str], figure: str) -> dict[str, float]:
    """Each IF order's P(best) among ``orders`` in one search (search/ranking.py: the report's model, on
    these orders only); {} where the search cannot rank them (too few seeds)."""
    r = ranking.analyse(fig[fig["order"].isin(orders)], figure)
    return {x["order"]: x["p_best"] for x in r.get("rows", [])}


def analyse(searches: list[dict], *, figure: str = "mean", alpha: float = S.ALPHA,
            min_seeds: int = S.MIN_SEEDS) -> dict:
    """``searches``: [{name, target, metric, fig (per-seed figures: order, seed, mean, worst, ...)}]."""
    figs = {s["name"]: s["fig"] for s in searches}
    means = {k: order_means(f, figure) for k, f in figs.items()}
    res: dict = {"figure": figure, "label": figure_label(figure), "alpha": alpha, "min_seeds": min_seeds,
                 "searches": []}
    for s in searches:
        m = means[s["name"]]
        ifs = m.drop(F, errors="ignore")
        row = {"name": s["name"], "experiment": s.get("experiment"), "target": s.get("target"),
               "metric": s.get("metric"), "n_orders": int(len(m)),
               "seeds_per_order": float(s["fig"].groupby("order")["seed"].nunique().median()),
               "F": float(m[F]) if F in m.index else None,
               "best": ifs.idxmax() if len(ifs) else None, "best_mean": float(ifs.max()) if len(ifs) else None,
               "reliability": split_half(s["fig"][s["fig"]["order"] != F], figure), "notes": s.get("notes", [])}
        res["searches"].append(row)
    res["across"] = across(figs, means, figure, alpha, min_seeds)
    # IF orders only: F, far below every IF order in most searches, would rank last everywhere and make
    # unrelated rankings agree (the gain over F is its own question, in `across`)
    shared = sorted(r["order"] for r in res["across"]["orders"] if r["order"] != F)  # (fixed: a fixed permutation p)
    if len(shared) < MIN_ORDERS:
        res["concordance"] = {"n_orders": len(shared), "n_searches": len(figs),
                              "underpowered": f"{len(shared)} IF order(s) completed in every search (need {MIN_ORDERS})"}
    else:
        w, p = kendall_w(np.column_stack([means[k][shared].to_numpy(float) for k in figs]))
        m = len(figs)  # W's chance level is 1/m; (m W - 1) / (m - 1) is the mean Spearman rho over pairs of searches
        if not math.isfinite(w):  # every search ties every shared order: no ranking to agree on (as `pair` says)
            res["concordance"] = {"n_orders": len(shared), "n_searches": m,
                                  "underpowered": f"every search scores all {len(shared)} IF orders completed in "
                                                  f"{'both' if m == 2 else f'all {m}'} alike: no ranking to agree on"}
        else:
            # the smallest p any data could reach: every search ranking the orders alike (3 orders, 2 searches: 1/6)
            floor = kendall_w(np.tile(np.arange(len(shared), dtype=float)[:, None], (1, m)))[1]
            res["concordance"] = {"n_orders": len(shared), "n_searches": m, "W": w, "p": p, "p_floor": floor,
                                  "mean_rho": (m * w - 1) / (m - 1), "significant": bool(p < alpha) if math.isfinite(p) else False}
    res["pairs"] = []
    if_means = {k: m.drop(F, errors="ignore") for k, m in means.items()}  # (IF orders: see W)
    for a, b in combinations(figs, 2):
        pr = pair(a, if_means[a], b, if_means[b])
        if "rho" in pr:  # each search's reliability on the orders the pair's rho is over
            both = set(if_means[a].index) & set(if_means[b].index)
            rel = [split_half(figs[k][figs[k]["order"].isin(both)], figure).get("reliability") for k in (a, b)]
            if None not in rel:
                pr["ceiling"] = math.sqrt(rel[0] * rel[1])
        res["pairs"].append(pr)
    res["headline"] = headline(res)
    return res


def headline(res: dict) -> str:
    c, acr = res["concordance"], res["across"]
    n = len(res["searches"])
    if "underpowered" in c:
        text = f"Agreement across the {n} searches not tested: {c['underpowered']}."
    else:
        verdict = ("The searches rank IF orders alike more than chance would" if c["significant"] else
                   "No evidence that the searches rank IF orders alike")
        text = (f"{verdict} ({res['label']}): Kendall's W = {c['W']:.2f} over the {c['n_orders']} IF orders completed in "
                f"{'both' if n == 2 else f'all {n}'} searches (permutation {_ptext(c['p'], S.PERMUTATIONS)}, α = {res['alpha']}; "
                f"W = 1: identical rankings, 1/{n} = {1 / n:.2f}: chance; mean Spearman rho between searches "
                f"{c['mean_rho']:+.2f}){_floor_text(c, res['alpha'])}.")
    if acr.get("best_overall"):
        b = next(r for r in acr["orders"] if r["order"] == acr["best_overall"])
        with_f = " shared orders, F among them" if any(r["order"] == F for r in acr["orders"]) else ""
        text += f" Best IF order across searches: {show(b['order'])} (mean rank {b['mean_rank']:.1f} of {acr['n_shared']}{with_f})"
        if acr.get("most_robust"):
            r = next(x for x in acr["orders"] if x["order"] == acr["most_robust"])
            lead = "most robust" if r["least_gain_over_F"] > 0 else "no IF order beats F in every search; closest"
            text += (f"; {lead}: {show(r['order'])} (least gain over F in any search "
                     f"{r['least_gain_over_F']:+.4f}, significant gain in {r['helps_in']} of {n})")
        if acr.get("most_likely_everywhere"):
            r = next(x for x in acr["orders"] if x["order"] == acr["most_likely_everywhere"])
            text += (f"; most likely the best in every search: {show(r['order'])} (P = {r['p_best_everywhere']:.2f} if the "
                     f"searches' order effects were unrelated: the product of its P(best) among the shared orders in "
                     f"each; more where they rank orders alike)")
        text += "."
    return text


def _floor_text(c: dict, alpha: float) -> str:
    """Where no rankings of these orders could make W significant (3 orders, 2 searches: p >= 1/6), say so;
    "no evidence" beside W = 1 reads as evidence of disagreement."""
    return S.floor_text(c, alpha, then=", so this test cannot detect agreement here, however close",
                        given=f"with {c['n_orders']} orders and {c['n_searches']} searches the smallest p any rankings "
                              f"could reach")


# ------------------------------------------------------------------ reading and naming
def load(exp_dirs: list[str], *, figure: str = "mean") -> list[dict]:
    """Each experiment directory -> {name, experiment, target, metric, fig}; UserErrors before anything
    is written (fewer than two, one listed twice, or any the report could not read)."""
    from search.report import load_experiment

    if len(exp_dirs) < 2:
        raise UserError("itt compare needs two or more experiment directories (one search: `itt report`)")
    seen: dict[str, str] = {}
    for d in exp_dirs:
        key = d if "://" in d else str(Path(d).resolve())
        if key in seen:
            raise UserError(f"{d}: listed twice")
        seen[key] = d
    out, names = [], set()
    for d in exp_dirs:
        exp = load_experiment(d)
        fig = _figures(exp, figure, d)
        if fig[figure].notna().sum() == 0:
            raise UserError(f"{d}: no per-seed {figure_label(figure)} in its completed trials")
        name = exp.meta.get("name") or exp.st.name
        if name in names:  # two searches of one name (e.g. runs/a/xnli, runs/b/xnli): the folder tells them apart
            name = f"{name} ({exp.st.display})"
        names.add(name)
        target = exp.meta.get("target") or ((exp.config or {}).get("target") or {}).get("task")
        out.append({"name": name, "experiment": exp.st.display, "target": target, "metric": exp.metric, "fig": fig,
                    "notes": exp.notes, "tracking_uri": exp.meta.get("tracking_uri"), "unit": exp.unit})
    return out


def figure_label(figure: str) -> str:
    return f"score in {figure[len(LANG):]}" if figure.startswith(LANG) else S.FIGURES[figure][0]


def _figures(exp, figure: str, where: str) -> pd.DataFrame:
    """The per-seed figures of one search; ``lang:<code>``: that language's own score per seed."""
    scores = exp.scores.dropna(subset=["score"])
    fig = S.seed_figures(scores, exp.extra)
    if figure.startswith(LANG):
        lang = figure[len(LANG):]
        if lang not in set(scores["language"]):
            raise UserError(f"{where}: no scores in language {lang!r} (it has {', '.join(sorted(set(scores['language'])))})")
        one = scores[scores["language"] == lang].groupby(["order", "seed"])["score"].mean().rename(figure)
        fig = fig.join(one, on=["order", "seed"])
    return fig


# ------------------------------------------------------------------ rendering
def plots(res: dict) -> dict[str, bytes]:
    """The shared orders x searches heatmap (gain over F where every search ran F, else rank) and
    each order's rank in every search (lines: the same order across searches)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from search.report import _fig_png

    rows = [r for r in res["across"]["orders"] if r["order"] != F][:TOP]
    names = [s["name"] for s in res["searches"]]
    if not rows:
        return {}
    out = {}
    gain = all(r["per_search"][k].get("gain_over_F") is not None for r in rows for k in names)
    key = "gain_over_F" if gain else "rank"
    v = np.array([[r["per_search"][k][key] for k in names] for r in rows], float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 1.0 + 0.32 * len(rows)))
    lim = float(np.nanmax(np.abs(v))) or 1.0
    if gain:
        im = ax.imshow(v, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    else:
        im = ax.imshow(v, cmap="viridis_r", aspect="auto")
    fig.colorbar(im, ax=ax, label=("gain over F, " if gain else "rank among shared orders, ") + res["label"])
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            c = rows[i]["per_search"][names[j]]
            mark = " *" if c.get("helps") or c.get("hurts") else ""
            dark = gain and abs(v[i, j]) > 0.6 * lim
            ax.text(j, i, (f"{v[i, j]:+.3f}" if gain else f"{v[i, j]:g}") + mark, ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_yticks(range(len(rows)), [show(r["order"]) for r in rows], fontsize=8)
    ax.set_title("Shared orders by mean rank" + (" (* Welch vs F, Holm over searches)" if gain else ""))
    out["across"] = _fig_png(fig, res.get("unit"))
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(names), 1.0 + 0.32 * len(rows)))
    for r in rows[:10]:
        ax.plot(range(len(names)), [r["per_search"][k]["rank"] for k in names], marker="o", label=show(r["order"]))
    ax.invert_yaxis()
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel(f"rank among the {res['across']['n_shared']} shared orders (1 = best)")
    ax.set_title("The 10 best orders across searches: their rank in each")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    out["ranks"] = _fig_png(fig, res.get("unit"))
    return out


def _ptext(p: float, permutations: int | None = None) -> str:
    if p is None or not math.isfinite(p):
        return "p –"
    if permutations and p * (permutations + 1) <= 1 + 1e-9:  # no permutation reached the observed value
        return f"p ≤ {p:.2g}"
    return f"p = {p:.2g}"


def _f(v, nd: int = 4) -> str:
    from search.report import _x

    return _x(v, nd)


def sections(res: dict) -> list[tuple[str, str, list[list[str]], str | None]]:
    """(title, text, table rows (first = header), plot name), for the report's renderers."""
    secs = [_searches_section(res), *_across_sections(res), _pairs_section(res)]
    notes = [f"{s['name']}: {n}" for s in res["searches"] for n in s.get("notes", [])]
    if notes:
        secs.append(("Notes", " ".join(notes), [], None))
    return secs


def _searches_section(res: dict):
    head = ["search", "experiment", "target", "metric", "orders", "seeds/order", "F", "best IF order", "best",
            "split-half reliability"]
    rows = [head] + [[s["name"], s["experiment"] or "–", s["target"] or "–", s["metric"] or "–", str(s["n_orders"]),
                      "–" if s["seeds_per_order"] is None else f"{s['seeds_per_order']:g}", _f(s["F"]), show(s["best"]) if s["best"] is not None else "–",
                      _f(s["best_mean"]), _f(s["reliability"].get("reliability"), 2)
                      if "reliability" in s["reliability"] else s["reliability"]["underpowered"]]
                     for s in res["searches"]]
    text = (f"{res['headline']} Figure: test {res['label']}, per seed, averaged over each order's seeds; completed "
            f"trials only. Split-half reliability: how well a search's own seeds agree on its order ranking (random "
            f"halves of each order's seeds, Spearman–Brown); seed noise alone keeps two searches' agreement below "
            f"sqrt(rel_a × rel_b). Where a searcher chose which orders to complete (ASHA stopped others), the shared "
            f"orders are a selected, narrower set, which also lowers the agreement.")
    return ("Do orders hold up across searches?", text, rows, None)


def _across_sections(res: dict) -> list:
    acr, n = res["across"], len(res["searches"])
    names = [s["name"] for s in res["searches"]]
    if not acr["orders"]:
        return []
    rows = [["mean rank", "order", *[f"{k}: mean (rank)" for k in names], *[f"{k}: gain over F" for k in names],
             "least gain", "helps in", "hurts in", *[f"{k}: P(best)" for k in names], "P(best everywhere)"]]
    for r in acr["orders"]:
        ps = r["per_search"]
        rows.append([f"{r['mean_rank']:.1f}", show(r["order"]), *[f"{_f(ps[k]['mean'])} ({ps[k]['rank']:g})" for k in names],
                     *[_f(ps[k].get("gain_over_F")) + (" *" if ps[k].get("helps") or ps[k].get("hurts") else "")
                       for k in names],
                     _f(r["least_gain_over_F"]), f"{r['helps_in']} of {n}", f"{r['hurts_in']} of {n}",
                     *[ranking.prob_text(ps[k].get("p_best")) for k in names],
                     ranking.prob_text(r.get("p_best_everywhere"))])
    text = (f"The {acr['n_shared']} orders completed in {'both' if n == 2 else f'all {n}'} searches, by mean rank "
            f"(1 = best in that search among these orders). Gain over F: the order's mean minus F's in that search "
            f"(– where F was not run); * = Welch t-test on per-seed values against F, Holm over the searches (per "
            f"order, not over orders), at α = {res['alpha']} ({res['min_seeds']}+ seeds each). Least gain: the worst "
            f"case over searches — the order to pick when the target is not known in advance is the one whose least "
            f"gain is highest. P(best): the chance that the order is the best of these orders in that search (the "
            f"report's hierarchical model on them; – where a search has too few seeds); P(best everywhere): their "
            f"product, the chance it is the best in every search if the orders' effects in one search said nothing "
            f"about those in another. Independent seeds are not enough: where the searches rank orders alike (W "
            f"above; the values of one hyperparameter in `itt confirm --vary`) the product understates that chance "
            f"(simulated searches with the same order effects: orders it put at 0.1-0.3 were the best in both about "
            f"half the time).")
    return [("An order for every search", text, rows, "across"),
            ("Ranks across searches", "Each of the 10 best shared orders: its rank in every search; flat lines are "
             "orders that hold their place.", [], "ranks")]


def _pairs_section(res: dict):
    def best(b: dict) -> str:
        return f"{show(b['order'])}: rank {b['rank_in_other']} of {b['of']}, {b['shortfall']:.4f} below its best"

    rows = [["searches", "shared orders", "Kendall tau-b", "p", "Spearman rho", "noise ceiling", "A's best in B",
             "B's best in A"]]
    for p in res["pairs"]:
        if "underpowered" in p:
            rows.append([f"{p['a']} / {p['b']}", str(p["n_shared"]), p["underpowered"], "", "", "", "", ""])
        else:
            rows.append([f"{p['a']} / {p['b']}", str(p["n_shared"]), f"{p['tau']:.2f}", _ptext(p["p_tau"]),
                         f"{p['rho']:.2f}", _f(p.get("ceiling"), 2), best(p["best_of_a"]), best(p["best_of_b"])])
    text = ("Each pair on the orders both completed: rank correlation of the order means (scipy's tau-b and its "
            "p-value), the noise ceiling sqrt(rel_a × rel_b) from the searches' split-half reliabilities, and where "
            "one search's best order ranks in the other, with how much it scores below that search's own best (the "
            "cost of taking the order from the other search).")
    return ("Pairs of searches", text, rows, None)


def answer(res: dict) -> list[str]:
    lines = [res["headline"]]
    for p in res["pairs"]:
        if "underpowered" in p:
            lines.append(f"{p['a']} vs {p['b']}: not compared: {p['underpowered']}.")
            continue
        b = p["best_of_a"]
        ceil = f", noise ceiling {p['ceiling']:.2f}" if p.get("ceiling") is not None else ""
        lines.append(f"{p['a']} vs {p['b']}: Kendall tau {p['tau']:.2f} ({_ptext(p['p_tau'])}), Spearman "
                     f"{p['rho']:.2f} over {p['n_shared']} shared orders{ceil}; {p['a']}'s best ({show(b['order'])}) "
                     f"ranks {b['rank_in_other']} of {b['of']} in {p['b']}, {b['shortfall']:.4f} below its best.")
    return lines


# ------------------------------------------------------------------ MLflow
def tracking_store(searches: list[dict], cli: str | None) -> tuple[str | None, str]:
    """(store, '') for the comparison's MLflow run: --tracking-uri, else the one store the searches
    tracked to; (None, why) when there is none to choose."""
    from search.tracking import resolve_uri

    if cli:
        return resolve_uri(cli), ""
    stores = list(dict.fromkeys(s["tracking_uri"] for s in searches if s.get("tracking_uri")))
    if not stores:
        return None, "the searches were not tracked; pass --tracking-uri"
    if len(stores) > 1:
        return None, f"the searches track to {len(stores)} different stores ({', '.join(stores)}); pass --tracking-uri"
    return stores[0], ""


def _metric_name(text: str) -> str:
    return re.sub(r"[^\w\-. /]", "_", text)[:250]


def run_figures(res: dict) -> tuple[str, dict[str, str], dict[str, float]]:
    """The comparison's MLflow identity (the same searches and figure: the same key), params and metrics."""
    exps = [s["experiment"] for s in res["searches"]]
    key = hashlib.sha1(json.dumps([sorted(exps), res["figure"]]).encode()).hexdigest()[:16]
    params = {"searches": ", ".join(exps), "figure": res["figure"], "alpha": str(res["alpha"])}
    c = res["concordance"]
    m = {"shared_orders": c["n_orders"], "kendall_w": c.get("W"), "kendall_w_p": c.get("p")}
    for p in res["pairs"]:
        m[_metric_name(f"tau {p['a']} vs {p['b']}")] = p.get("tau")
        m[_metric_name(f"rho {p['a']} vs {p['b']}")] = p.get("rho")
    return key, params, {k: float(v) for k, v in m.items() if v is not None and math.isfinite(v)}


# ------------------------------------------------------------------ the command
def make_compare(exp_dirs: list[str], *, out: str, figure: str = "mean", alpha: float = S.ALPHA,
                 tracking_uri: str | None = None, mlflow: bool = True, log=print) -> dict:
    """``itt compare``: read every search, analyse, render, write into ``out``, then log the files and
    figures to MLflow (experiment ``itt-compare``; one run per set of searches)."""
    from search.report import _json_safe, per_unit, per_unit_sections, render_html, render_md
    from search.storage import writable_folder

    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: must lie between 0 and 1")
    if figure not in FIGURES and not (figure.startswith(LANG) and len(figure) > len(LANG)):
        raise UserError(f"--figure {figure}: one of {', '.join(FIGURES)}, or {LANG}<language code> (e.g. {LANG}sw)")
    searches = load(exp_dirs, figure=figure)
    writable_folder(out, f"--out {out}")
    res = _json_safe(analyse(searches, figure=figure, alpha=alpha))
    unit, mixed = units(searches)
    res["unit"] = unit
    pngs = plots(res)
    title = "Do orders hold up across searches? — " + ", ".join(s["name"] for s in res["searches"])
    secs = sections(res)
    lines = [per_unit(x, unit) for x in answer(res)] + ([mixed] if mixed else [])
    secs = per_unit_sections(secs, unit)
    if mixed:
        secs[0] = (secs[0][0], f"{mixed} {secs[0][1]}", secs[0][2], secs[0][3])
    tmp = Path(tempfile.mkdtemp(prefix="itt-compare-"))
    try:
        (tmp / "compare.json").write_text(json.dumps(res, indent=2, ensure_ascii=False))
        (tmp / "compare.md").write_text(render_md(secs, title, pngs))
        (tmp / "compare.html").write_text(render_html(secs, title, pngs))
        (tmp / "compare.tex").write_text(latex.compare_table(res))
        for name, data in pngs.items():
            (tmp / f"{name}.png").write_bytes(data)
        dest = Path(out)
        dest.mkdir(parents=True, exist_ok=True)
        for stale in PLOTS - set(pngs):  # an earlier comparison's plot this one has not drawn
            (dest / f"{stale}.png").unlink(missing_ok=True)
        for f in tmp.iterdir():
            shutil.copy2(f, dest / f.name)
        log(f"compare: {dest}/compare.html  (compare.md, compare.json, compare.tex, {len(pngs)} PNGs)")
        for line in lines:
            log(line)
        log(_track(res, searches, tmp, tracking_uri) if mlflow else "MLflow: not logged (--no-mlflow)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def units(searches: list[dict]) -> tuple[str, str | None]:
    """What the searches' columns are (``report.per_unit``): tasks where every search optimised the XTREME
    average (search.metric: xtreme), else languages; and, where they differ, a line that says which is which."""
    task = [s["name"] for s in searches if s.get("unit") == "task"]
    if not task or len(task) == len(searches):
        return ("task" if task else "language"), None
    other = [s["name"] for s in searches if s.get("unit") != "task"]
    return "language", (f"Mixed figures: the XTREME average over tasks (search.metric: xtreme) for {', '.join(task)}; "
                        f"the mean over the target's languages for {', '.join(other)}.")


def _track(res: dict, searches: list[dict], folder: Path, cli_uri: str | None) -> str:
    from search.tracking import log_compare

    uri, why = tracking_store(searches, cli_uri)
    if uri is None:
        return f"MLflow: not logged ({why})"
    key, params, metrics = run_figures(res)
    name = "compare " + " vs ".join(s["name"] for s in res["searches"])
    return log_compare(folder, key=key, name=name[:250], params=params, metrics=metrics, note=res["headline"], uri=uri)
