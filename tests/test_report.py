"""``itt report``: the statistics core (pure, on tidy tables), a report from an experiment directory,
bad input, the heuristics, one simulated Ray search end to end, and the HTML in headless Chromium."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from search import stats as S
from search.cli import main
from tests.conftest import TINY

TASKS = ["ta", "tb", "tc", "td"]
LANGS = ["en", "xa", "xb"]


def _orders(tasks=TASKS, lengths=(0, 1, 2)):
    return [">".join(p) for k in lengths for p in itertools.permutations(tasks, k)]


def _tidy(rng, *, delta=0.0, seeds=3, orders=None, seed_sd=0.02, lang_sd=0.01) -> pd.DataFrame:
    """Per-seed, per-language scores; an order starting with 'ta' gets +delta (the planted effect)."""
    orders = orders if orders is not None else _orders()
    o, s, lg = (a.ravel() for a in np.meshgrid(np.arange(len(orders)), np.arange(seeds), np.arange(len(LANGS)),
                                               indexing="ij"))
    eff = np.array([delta if x.startswith("ta") else 0.0 for x in orders])
    shift = rng.normal(0, seed_sd, (len(orders), seeds))
    score = 0.7 - 0.1 * lg + eff[o] + shift[o, s] + rng.normal(0, lang_sd, len(o))
    return pd.DataFrame({"order": np.asarray(orders, object)[o] if orders else np.array([], object), "seed": s,
                         "language": np.asarray(LANGS)[lg], "score": score})


# ------------------------------------------------------------------ the statistics core (pure)
def test_welch_on_constant_groups_is_the_exact_permutation_p():
    """Two groups constant over their seeds (a tiny model predicting one class): t is infinite and scipy's p 0, which
    called the difference significant; the exact permutation p, enumerated here: of the 20 ways to split 6 models
    3/3, the observed and the swapped split reach the largest difference, p = 2/20; 3 against 2: 1/10."""
    from itertools import combinations

    def exact(a, b):
        y, n = np.array(a + b, float), len(a)
        obs = abs(np.mean(a) - np.mean(b))
        splits = list(combinations(range(len(y)), n))
        return sum(abs(y[list(c)].mean() - np.delete(y, list(c)).mean()) >= obs - 1e-12 for c in splits) / len(splits)

    for a, b in (([0.3, 0.3, 0.3], [0.4, 0.4, 0.4]), ([0.3, 0.3, 0.3], [0.4, 0.4])):
        assert S.welch(a, b) == pytest.approx(exact(a, b)) and S.welch(a, b) >= 0.1
    assert S.welch([0.3, 0.3, 0.3], [0.3, 0.3, 0.3]) == 1.0
    assert S.welch([0.3, 0.3, 0.3], [0.4, 0.41, 0.39]) < 0.01  # (one group varies: Welch's t as before)


def test_holm_against_hand_computation():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone: 0.02 0.03 0.06 0.06
    assert S.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert S.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_permutation_kruskal_wallis_against_scipy():
    """H equals scipy's kruskal (no ties); the permutation p-value matches scipy's permutation_test
    on the same statistic within Monte Carlo error."""
    rng = np.random.default_rng(7)
    groups = [rng.normal(0.3 * (i == 0), 1, 3) for i in range(6)]
    h, p = S.kw_permutation([groups])
    assert h == pytest.approx(sps.kruskal(*groups).statistic)

    def h_stat(*samples, axis=-1):
        x = np.concatenate(samples, axis=axis)
        r = sps.rankdata(x, axis=axis)
        n, out, start = x.shape[axis], 0.0, 0
        for smp in samples:
            k = smp.shape[axis]
            out = out + np.take(r, np.arange(start, start + k), axis=axis).sum(axis=axis) ** 2 / k
            start += k
        return 12.0 / (n * (n + 1)) * out - 3 * (n + 1)

    ref = sps.permutation_test(groups, h_stat, permutation_type="independent", vectorized=True, n_resamples=9999,
                               alternative="greater", rng=np.random.default_rng(1)).pvalue
    assert abs(p - ref) < 0.03, (p, ref)
    assert S.kw_permutation([groups]) == (h, p)  # seeded: the same data give the same p


def test_leaderboard_figures_against_independent_computation():
    rng = np.random.default_rng(3)
    t = _tidy(rng, orders=["", "ta", "tb>ta"], seeds=4)
    res = S.analyse(t)
    for row in res["leaderboard"]:
        g = t[t["order"] == row["order"]].pivot(index="seed", columns="language", values="score")
        per_seed_mean = g.mean(axis=1).to_numpy()
        n = len(per_seed_mean)
        half = sps.t.ppf(0.975, n - 1) * per_seed_mean.std(ddof=1) / math.sqrt(n)
        assert row["mean"] == pytest.approx(per_seed_mean.mean())
        assert row["std"] == pytest.approx(np.std(per_seed_mean, ddof=1))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((per_seed_mean.mean() - half, per_seed_mean.mean() + half))
        assert row["worst"] == pytest.approx(g.min(axis=1).mean())
        assert row["transfer_gap"] == pytest.approx((g["en"] - g[["xa", "xb"]].mean(axis=1)).mean())
        assert row["lang_std"] == pytest.approx(g.std(axis=1, ddof=0).mean())
    means = [r["mean"] for r in res["leaderboard"]]
    assert means == sorted(means, reverse=True)
    # the plot: the best orders, and F below them wherever it ranks (it was cut with the rest below 25)
    from search.report import leaderboard_rows

    assert [r["order"] for r in leaderboard_rows(res["leaderboard"], top=3)] == [r["order"] for r in res["leaderboard"]]
    f_rank = next(r["rank"] for r in res["leaderboard"] if r["order"] == "")
    shown = [r["order"] for r in leaderboard_rows(res["leaderboard"], top=1)]
    assert shown == ([""] if f_rank == 1 else [res["leaderboard"][0]["order"], ""])
    iv = res["if_vs_f"]
    f = t[t["order"] == ""].groupby("language")["score"].mean()
    for r in iv["per_language"]:
        assert r["F"] == pytest.approx(f[r["language"]])
        if "p_best_vs_F" in r:  # Welch's p of the pick, beside the permutation p that accounts for picking it
            lang = t[t["language"] == r["language"]]
            assert r["p_best_vs_F"] == pytest.approx(sps.ttest_ind(lang[lang["order"] == iv["best_order"]]["score"],
                                                                   lang[lang["order"] == ""]["score"], equal_var=False).pvalue)
            assert 0 < r["p_best_vs_F_picked"] <= 1 and r["significant"] == (r["p_best_vs_F_holm"] < S.ALPHA)
        assert r["mean_IF"] == pytest.approx(t[t["order"] != ""].groupby(["order", "language"])["score"].mean()
                                             .xs(r["language"], level="language").mean())


def test_task_choice_alone_is_not_called_an_order_effect():
    """Each task adds the same wherever it stands (ta>tb scores as tb>ta): the primary test over IF orders
    finds the task choice, and the headline says so ("the intermediate tasks chosen and their order"), then
    that order alone (the same tasks rearranged) has no detectable effect."""
    rng = np.random.default_rng(0)
    tasks, adds = ["ta", "tb", "tc", "td"], {"ta": 0.06, "tb": 0.0, "tc": 0.0, "td": -0.03}
    orders = [""] + [">".join(p) for k in (1, 2) for p in itertools.permutations(tasks, k)]
    rows = []
    for o in orders:
        for s in range(3):
            shift = sum(adds[t] for t in S.order_tasks(o)) + rng.normal(0, 0.02)
            rows += [(o, s, lg, 0.7 - 0.1 * i + shift + rng.normal(0, 0.01)) for i, lg in enumerate(LANGS)]
    res = S.analyse(pd.DataFrame(rows, columns=["order", "seed", "language", "score"]))
    h = res["headline"]
    assert h["order_matters"] is True and h["arrangement_matters"] is False
    assert h["text"].startswith("The intermediate tasks chosen and their order matter for the mean score over languages: ")
    assert "Order alone (the same tasks rearranged): no detectable effect, H = " in h["text"]
    assert "within 6 task set(s) (12 orders)" in h["text"]


def test_best_if_vs_f_accounts_for_picking_the_best():
    """The best IF order was picked on the seeds it is tested on: Welch's p of the pick is optimistic (with no
    order better than F, 40 IF orders x 5 seeds: some language significant in about 16% of searches). The
    report's p redoes the pick in each permutation of the orders' labels (max-statistic); checked against a
    loop written here, and for its false-positive rate on null tables."""
    rng = np.random.default_rng(3)
    orders = np.array([""] * 3 + [f"o{i}" for i in range(5) for _ in range(3)])
    y = rng.normal(0, 0.02, (len(orders), 2))
    y[orders == "o2"] += 0.05
    best = "o2"
    got = S.best_vs_f_permutation(y, orders, best, permutations=300, seed=7)
    labels, g = np.unique(orders, return_inverse=True)  # the same permutations, one by one
    perm_rng, hits = np.random.default_rng(7), np.zeros(2)
    d = np.abs(y[orders == best].mean(axis=0) - y[orders == ""].mean(axis=0))
    for _ in range(300):
        lab = labels[perm_rng.permutation(g)]
        means = {o: y[lab == o].mean() for o in labels if o != ""}
        pick = max(means, key=means.get)
        hits += np.abs(y[lab == pick].mean(axis=0) - y[lab == ""].mean(axis=0)) >= d - 1e-12
    assert got == pytest.approx(list((1 + hits) / 301))
    null, welch = 0, 0
    for r in range(120):  # no order differs from F
        orders = np.array([""] * 5 + [f"o{i}" for i in range(40) for _ in range(5)])
        y = rng.normal(0, 0.02, (len(orders), 3)) + rng.normal(0, 0.02, (len(orders), 1))
        means = {o: y[orders == o].mean() for o in set(orders) if o}
        pick = max(means, key=means.get)
        null += min(S.holm(S.best_vs_f_permutation(y, orders, pick, permutations=200, seed=r))) < 0.05
        welch += min(S.holm([S.welch(y[orders == pick][:, j], y[orders == ""][:, j]) for j in range(3)])) < 0.05
    assert null / 120 <= 0.08 and welch / 120 >= 0.1, (null, welch)


def test_the_if_vs_f_line_says_where_the_best_order_is_below_f():
    """The best IF order's test against F is two-sided: in a language where it is significantly below F, the
    console's IF-vs-F line said "significant in 3 of 3 languages (en, xa, xb)" as if it gained in each (and
    report.tex's dagger, "above F", marks only en and xa). It names the languages where it falls below."""
    from search.report import answer

    rng = np.random.default_rng(4)
    orders = [""] + [">".join(p) for k in (1, 2) for p in itertools.permutations(["ta", "tb", "tc"], k)]
    t = _tidy(rng, orders=orders, seeds=4, seed_sd=0.01, lang_sd=0.005)
    m = t["order"] == "ta"
    t.loc[m, "score"] += t.loc[m, "language"].map({"en": 0.12, "xa": 0.12, "xb": -0.08})
    res = S.analyse(t)
    res["experiment"], res["trials"]["search"] = "runs/x", {}
    assert res["if_vs_f"]["best_order"] == "ta" and all(r["significant"] for r in res["if_vs_f"]["per_language"])
    line = next(x for x in answer(res, "runs/x") if x.startswith("IF vs F"))
    assert "significant in 3 of 3 languages (above F: en, xa; below F: xb; permutations" in line, line


def test_the_if_vs_f_line_says_when_no_data_could_be_significant():
    """F and one IF order, 3 seeds each (does this task help?): the 20 labelings of 6 models give a permutation
    p of at least 2/20 = 0.1, 0.3 after Holm over 3 languages. With the IF order 0.3 above F in every language
    (Welch p < 0.001) the line said only "significant in 0 of 3 languages", as if it did not help."""
    from search.report import answer

    rows, rng = [], np.random.default_rng(0)
    for o, eff in (("", 0.0), ("ta", 0.30)):
        for s in range(3):
            sh = rng.normal(0, 0.01)
            rows += [(o, s, lg, 0.6 - 0.05 * i + eff + sh) for i, lg in enumerate(LANGS)]
    res = S.analyse(pd.DataFrame(rows, columns=["order", "seed", "language", "score"]))
    res["experiment"], res["trials"]["search"] = "runs/x", {}
    iv = res["if_vs_f"]
    assert all(r["p_best_vs_F"] < 0.001 and not r["significant"] for r in iv["per_language"])
    floor = iv["test"]["p_floor"]  # exact: 3 x 2/20; Monte Carlo over 2000 permutations
    assert floor == pytest.approx(0.3, abs=0.05)
    assert min(r["p_best_vs_F_holm"] for r in iv["per_language"]) >= floor - 1e-12
    line = next(x for x in answer(res, "runs/x") if x.startswith("IF vs F"))
    assert (f"significant in 0 of 3 languages (none; permutations with the best of 1 picked again in each, Holm) "
            f"(after Holm over 3 languages: with these seeds and orders the smallest p any data could reach is "
            f"{floor:.2g} > α, so this test cannot detect an effect here, however large)") in line, line
    # with three IF orders the floor lies far below alpha, and the line says nothing of it
    rows += [(o, s, lg, 0.6 - 0.05 * i + rng.normal(0, 0.01)) for o in ("tb", "tc") for s in range(3)
             for i, lg in enumerate(LANGS)]
    res = S.analyse(pd.DataFrame(rows, columns=["order", "seed", "language", "score"]))
    assert res["if_vs_f"]["test"]["p_floor"] < 0.01
    assert "smallest p" not in next(x for x in answer(res, "runs/x") if x.startswith("IF vs F"))


def test_planted_order_effect_is_detected():
    rng = np.random.default_rng(0)
    res = S.analyse(_tidy(rng, delta=0.08))
    main_test = res["order_effect"]["tests"][0]
    assert main_test["figure"] == "mean" and main_test["significant"] and main_test["p_holm"] < S.ALPHA
    assert main_test["variance_share"] > 0.5 and 0 < main_test["epsilon2"] <= 1
    assert res["headline"]["order_matters"] is True
    assert res["order_effect"]["arrangement"]["significant"]  # ta>tb vs tb>ta: the same tasks, another order
    assert res["leaderboard"][0]["order"].startswith("ta")
    cells = {(c["task"], c["position"]): c for c in res["position"]["cells"]}
    assert cells[("ta", 1)]["mean"] > cells[("ta", 2)]["mean"] + 0.05
    # one order on each side of every pair: too few to test precedence, and the report says so
    assert all("underpowered" in p and "p" not in p for p in res["precedence"]["pairs"])


def test_the_headline_says_when_the_order_test_cannot_reject_whatever_the_data():
    """Two IF orders x 3 seeds have 20 labelings: the permutation p cannot fall below 0.1. With one order 0.3
    above the other (between-order share 100%) the headline said only "No detectable effect ..., p = 0.0875";
    the report's section carried the caveat, the headline (console, first paragraph) did not."""
    rows, rng = [], np.random.default_rng(0)
    for o, eff in (("", 0.0), ("ta", 0.30), ("tb", 0.0)):
        for s in range(3):
            sh = rng.normal(0, 0.01)
            rows += [(o, s, lg, 0.6 - 0.05 * i + eff + sh) for i, lg in enumerate(LANGS)]
    res = S.analyse(pd.DataFrame(rows, columns=["order", "seed", "language", "score"]))
    main_test = res["order_effect"]["tests"][0]
    assert main_test["p_floor"] > S.ALPHA and not main_test["significant"]
    assert f"the smallest p any data could reach is {main_test['p_floor']:.2g} > α, so this test cannot detect an " \
           "effect here" in res["headline"]["text"], res["headline"]["text"]
    # where the floor is below alpha, the headline carries no such clause
    res = S.analyse(_tidy(np.random.default_rng(0), delta=0.08))
    assert "smallest p any data could reach" not in res["headline"]["text"].split("Order alone")[0]


def test_false_positive_rate_stays_at_alpha():
    """No effect (scores = noise): over 200 replicate tables, the order test rejects at most α of
    the time, plus binomial slack (the 99th percentile of Binomial(200, α))."""
    rng = np.random.default_rng(12345)
    n, alpha = 200, S.ALPHA
    orders = _orders(lengths=(1, 2))
    rejections = {"mean": 0, "arrangement": 0}  # (robustness figures go through the same order_effect)
    for _ in range(n):
        fig = S.seed_figures(_tidy(rng, orders=orders))
        rejections["mean"] += S.order_effect(fig, "mean")["p"] < alpha
        rejections["arrangement"] += S.arrangement_effect(fig, "mean")["p"] < alpha
    slack = sps.binom.ppf(0.99, n, alpha)
    assert all(r <= slack for r in rejections.values()), rejections


def test_where_f_tops_the_leaderboard_the_best_order_line_does_not_call_it_a_pick_of_the_if_orders():
    """F above every IF order: the console said F's interval was "not adjusted for being the top of 9: the shrunk
    score below is", but F is none of the 9 IF orders and the shrunk score below is the top IF order's."""
    from search.report import answer

    orders = [""] + [">".join(p) for k in (1, 2) for p in itertools.permutations(["ta", "tb", "tc"], k)]
    t = _tidy(np.random.default_rng(3), orders=orders)
    t.loc[t["order"] == "", "score"] += 0.05
    res = S.analyse(t)
    res["experiment"], res["trials"]["search"] = "runs/x", {}
    assert res["leaderboard"][0]["order"] == "" and "rows" in res["best_order"]
    line = next(x for x in answer(res, "runs/x") if x.startswith("Best order: F"))
    assert "not adjusted for being the top of" not in line
    assert line.endswith("(fine-tuning alone scored above all 9 IF orders; the shrunk score below is the best IF order's).")


def test_too_few_seeds_or_orders_is_underpowered_not_a_p_value():
    rng = np.random.default_rng(1)
    res = S.analyse(_tidy(rng, seeds=2, delta=0.3))
    for t in res["order_effect"]["tests"]:
        assert "underpowered" in t and "p" not in t and "H" not in t
    assert res["order_effect"]["tests"][0]["underpowered"] == ("the test needs 2 or more IF orders with 3+ seeds "
                                                              "each; here 0 (seeds per order: at most 2)")
    assert res["headline"]["order_matters"] is None and "underpowered" in res["headline"]["text"]
    assert "underpowered" in res["if_vs_f"]["test"]
    one = S.analyse(_tidy(rng, seeds=5, orders=["", "ta"]))
    assert "underpowered" in one["order_effect"]["tests"][0]  # a single IF order: nothing to compare
    # the report's headline then says what would test it: a confirmation on enough fresh seeds (only where
    # seeds, not orders, are missing)
    from search.report import _next_step

    _next_step(res, "runs/x")
    assert res["headline"]["text"].endswith("To test the best orders: `itt confirm runs/x --top 5` trains them and F "
                                            "again on 5 fresh seeds each (its report runs this test on them).")
    _next_step(one, "runs/x")
    assert "itt confirm" not in one["headline"]["text"]


# ------------------------------------------------------------------ an experiment directory (no Ray)
def _fake_experiment(root, tidy: pd.DataFrame, *, stopped=("tc>td",), name="exp"):
    """results.csv and trials/<id>/results.json as a search writes them, from a tidy table."""
    exp = root / name
    exp.mkdir(parents=True)
    rows = []
    for i, (order, g) in enumerate(tidy.groupby("order", sort=False)):
        tid = f"t{i:03d}"
        seeds = {}
        for s, gs in g.groupby("seed"):
            per = {r.language: {"accuracy": float(r.score)} for r in gs.itertuples()}
            seeds[str(s)] = {"test": {"per_language": per},
                             "stages": [{"task": t, "train_loss": 0.5 + 0.1 * j,
                                         "probe": {"accuracy_mean": float(gs["score"].mean()) - 0.02 * (2 - j)}}
                                        for j, t in enumerate([x for x in order.split(">") if x])]}
        (exp / "trials" / tid).mkdir(parents=True, exist_ok=True)
        (exp / "trials" / tid / "results.json").write_text(json.dumps({"metric": "accuracy", "languages": LANGS,
                                                                        "seeds": seeds}))
        lang_means = g.groupby("language")["score"].mean()
        rows.append({"trial_id": tid, "status": "completed", "order": order, "order_length": len(order.split(">")) if order else 0,
                     "stages_completed": 0, "stopped_early": "false", "score": float(g["score"].mean()),
                     **{lang: float(lang_means[lang]) for lang in LANGS if lang in lang_means}})
    for j, o in enumerate(stopped):
        rows.append({"trial_id": f"s{j:03d}", "status": "stopped", "order": o, "order_length": 2, "stages_completed": 1,
                     "stopped_early": "true", "score": ""})
    with open(exp / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["trial_id", "status", "order", "order_length", "stages_completed",
                                          "stopped_early", "score", *LANGS], restval="")
        w.writeheader()
        w.writerows(rows)
    return exp


def reported_fake(tmp_path, capsys):
    """A fake experiment with a planted effect (tc>td stopped by ASHA), reported: (its folder, the
    tidy table, the console output)."""
    rng = np.random.default_rng(5)
    tidy = _tidy(rng, delta=0.1, orders=[o for o in _orders() if o != "tc>td"])
    exp = _fake_experiment(tmp_path, tidy)
    assert main(["report", str(exp), "--no-heuristics"]) == 0
    return exp, tidy, capsys.readouterr().out


def test_report_from_an_experiment_directory(tmp_path, capsys):
    exp, tidy, out = reported_fake(tmp_path, capsys)
    scores = pd.read_csv(exp / "report" / "scores.csv", keep_default_na=False)  # the tidy scores, as they went in
    assert list(scores.columns) == ["order", "length", "seed", "language", "accuracy"] and len(scores) == len(tidy)
    both = scores.merge(tidy, on=["order", "seed", "language"])
    assert len(both) == len(tidy) and np.allclose(both["accuracy"], both["score"])
    assert (both["length"] == both["order"].map(lambda o: len(o.split(">")) if o else 0)).all()
    assert "The intermediate tasks chosen and their order matter" in out and "MLflow: not logged" in out  # no tracking/ in this directory
    rep = exp / "report"
    for f in ("report.html", "report.md", "report.json", "leaderboard.png", "heatmap.png", "if_vs_f.png",
              "position.png", "probe_curves.png"):
        assert (rep / f).is_file() and (rep / f).stat().st_size > 0, f
    res = json.loads((rep / "report.json").read_text())
    assert res["trials"]["stopped"] == [{"trial_id": "s000", "order": "tc>td", "stages_completed": 1, "probe": []}]
    assert "tc>td" not in {r["order"] for r in res["leaderboard"]}  # a stopped trial never enters the statistics
    assert len(res["leaderboard"]) == len(tidy["order"].unique())
    html = (rep / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5 and "<img" in html and "src='leaderboard.png'" not in html
    md = (rep / "report.md").read_text()
    assert "![Leaderboard of orders](leaderboard.png)" in md and "stopped by ASHA" in md
    # the answer's findings are paragraphs of their own, as the console prints them on lines of their own
    first = [p for p in md.split("## Does order matter?")[1].split("\n## ")[0].split("\n\n") if p.strip()]
    assert first[0].startswith("The intermediate tasks chosen and their order matter") and first[-1].startswith("Trials: ") and len(first) >= 3, first
    assert any(p.startswith("How sure the best order is") for p in first), first
    assert "<p>Trials: " in html and "<p>The intermediate tasks chosen and their order matter" in html


def test_a_trial_without_results_json_counts_its_results_csv_means_as_one_seed(tmp_path, capsys):
    """A completed trial whose results.json is gone (a copy without trials/, a disk that filled): its
    results.csv means per language are one observation (seed -1), with a note; one with neither is left
    out, with a note; the other orders keep every seed."""
    from search.report import load_experiment

    rng = np.random.default_rng(3)
    tidy = _tidy(rng, orders=_orders(lengths=(0, 1)))
    exp = _fake_experiment(tmp_path, tidy, stopped=())
    rows = list(csv.DictReader(open(exp / "results.csv")))
    gone, blank = rows[1], rows[2]
    for r in (gone, blank):
        (exp / "trials" / r["trial_id"] / "results.json").unlink()
    for lang in LANGS:
        blank[lang] = ""
    with open(exp / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    e = load_experiment(str(exp))
    mine = e.scores[e.scores["order"] == gone["order"]]
    assert set(mine["seed"]) == {-1} and len(mine) == len(LANGS)
    assert np.allclose(mine.set_index("language")["score"][LANGS], [float(gone[lang]) for lang in LANGS])
    assert blank["order"] not in set(e.scores["order"]) and blank["order"] not in e.counted
    assert e.counted[gone["order"]] == gone["trial_id"]
    assert any(f"trial {gone['trial_id']} has no results.json" in n for n in e.notes)
    assert any(f"trial {blank['trial_id']} has neither results.json" in n for n in e.notes)
    other = rows[3]["order"]
    assert sorted(set(e.scores[e.scores["order"] == other]["seed"])) == sorted(set(tidy["seed"]))
    assert len(e.stages[e.stages["order"] == other]) > 0 and e.finetunes_per_chain == 1
    # the console says so before the answer (a real search's trial outputs lost, e.g. on another node's disk);
    # report.md's notes are paragraphs of their own
    assert e.means_only == [gone["order"]]
    assert main(["report", str(exp), "--no-heuristics", "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    assert (f"note: 1 order(s) have no results.json in the experiment ({gone['order']}; e.g. trials that wrote "
            "their outputs on another node's own disk): only their results.csv means count, as one seed each") in out
    notes = (exp / "report" / "report.md").read_text().split("## Notes\n\n")[1].split("\n## ")[0]
    assert [p.split(":")[0] for p in notes.strip().split("\n\n")] == [f"order {gone['order']}", f"order {blank['order']}"]


def test_a_model_without_a_score_in_some_language_is_left_out_not_averaged_over_fewer(tmp_path, capsys):
    """No order differs from another, but tb has no score in xb (the hardest language): on one seed, its
    mean over the two easier languages put tb on top of the leaderboard; on every seed, the report crashed
    (IndexError: the IF-vs-F permutation's table drops incomplete models, the best order with them). Such a
    model is left out of every statistic, and the report says so."""
    rng = np.random.default_rng(1)
    orders = [""] + [">".join(p) for k in (1, 2) for p in itertools.permutations(["ta", "tb", "tc"], k)]
    tidy = _tidy(rng, orders=orders)
    one = tidy[~((tidy["order"] == "tb") & (tidy["language"] == "xb") & (tidy["seed"] == 0))]
    res = S.analyse(one)
    tb = next(r for r in res["leaderboard"] if r["order"] == "tb")
    full = tidy[(tidy["order"] == "tb") & (tidy["seed"] > 0)].groupby("seed")["score"].mean()
    assert tb["n_seeds"] == 2 and tb["mean"] == pytest.approx(full.mean())
    assert tb["mean"] == pytest.approx(np.mean(list(tb["per_language"].values())))  # the row agrees with itself
    assert res["incomplete_models"] == [{"order": "tb", "seed": 0, "missing": ["xb"]}]
    every = tidy[~((tidy["order"] == "tb") & (tidy["language"] == "xb"))]
    exp = _fake_experiment(tmp_path, every, stopped=())
    assert main(["report", str(exp), "--no-heuristics", "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    rep = json.loads((exp / "report" / "report.json").read_text())
    assert "tb" not in {r["order"] for r in rep["leaderboard"]} and len(rep["incomplete_models"]) == 3
    assert "note: 3 model(s) (order x seed) lack a score in some language" in out
    assert any("tb seed 0: no xb" in n for n in rep["notes"])
    assert "tb" not in set(pd.read_csv(exp / "report" / "scores.csv", keep_default_na=False)["order"])


def test_orders_tuned_at_unequal_numbers_of_settings_are_flagged(tmp_path, capsys):
    """With searched hyperparameters each order counts at its best dev setting: the headline names orders
    tried at more settings than others (they had more chances) and what compares them at one; report.json
    keeps the settings per order. Orders tried at one setting each: no such sentence."""
    rng = np.random.default_rng(5)
    tidy = _tidy(rng, delta=0.1, orders=[o for o in _orders() if o != "tc>td"])
    exp = _fake_experiment(tmp_path, tidy, stopped=())
    with open(exp / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["hp:train.lr"] = "3e-05"
    ta = next(r for r in rows if r["order"] == "ta")
    for i, lr in enumerate(["1e-05", "5e-05"]):  # two more settings of ta, scoring lower (not the counted one)
        tid = f"x{i}"
        rows.append({**ta, "trial_id": tid, "score": str(float(ta["score"]) - 0.1), "hp:train.lr": lr})
        shutil.copytree(exp / "trials" / ta["trial_id"], exp / "trials" / tid)
    rows.append({**ta, "trial_id": "x2"})  # a replay of ta's first setting: no new setting
    with open(exp / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["report", str(exp), "--no-heuristics"]) == 0
    out = capsys.readouterr().out
    assert "1 to 3 settings per order (ta: 3)" in out and f"itt confirm {exp} --top 5 --hparams first" in out
    res = json.loads((exp / "report" / "report.json").read_text())
    assert res["tuning"]["settings"]["ta"] == 3 and set(res["tuning"]["settings"].values()) == {1, 3}
    assert "settings per order" in res["headline"]["text"]
    for r in rows:
        r["hp:train.lr"] = "3e-05"
    with open(exp / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["report", str(exp), "--no-heuristics"]) == 0
    assert "settings per order" not in capsys.readouterr().out
    assert set(json.loads((exp / "report" / "report.json").read_text())["tuning"]["settings"].values()) == {1}


def test_a_search_that_stopped_itself_says_so_in_the_report(tmp_path, capsys):
    rng = np.random.default_rng(5)
    tidy = _tidy(rng, delta=0.1, orders=[o for o in _orders() if o != "tc>td"])
    exp = _fake_experiment(tmp_path, tidy, stopped=())
    stop = {"finished": 12, "p_better": 0.03, "expected_gain": 0.0001, "unfinished": 4, "of": 16,
            "rule": {"p_better": 0.05}, "pick": "ta"}
    (exp / "summary.json").write_text(json.dumps({"searcher": "auto", "stopped_itself": stop, "recommended": {
        "order": "ta", "mean": 0.6, "lo": 0.58, "hi": 0.62}}))
    assert main(["report", str(exp), "--no-heuristics"]) == 0
    capsys.readouterr()
    md = (exp / "report" / "report.md").read_text()
    assert "The search stopped itself there (search.stop: p_better 0.05) after 12 finished trials." in md



def test_a_report_on_a_search_that_has_not_ended_says_so(tmp_path, capsys):
    """`itt report` on a search whose driver still runs (driver.json names a live process) says it reads the
    trials completed so far, first in the console and the report; on one whose driver died with trials
    running, that `itt resume` continues it; once ended, neither line."""
    import os
    import socket

    rng = np.random.default_rng(5)
    tidy = _tidy(rng, delta=0.1, orders=[o for o in _orders() if o != "tc>td"])
    exp = _fake_experiment(tmp_path, tidy, stopped=())
    done = len(tidy["order"].unique())
    with open(exp / "results.csv", "a", newline="") as f:
        f.write("r000,running,tc>td,2,1,false,,,,\n")
    driver = subprocess.Popen(["sleep", "60"])  # the search's driver, alive
    try:
        live = {"host": socket.gethostname(), "pid": driver.pid, "started": time.time()}
        (exp / "driver.json").write_text(json.dumps(live))
        assert main(["report", str(exp), "--no-heuristics"]) == 0
    finally:
        driver.kill()
        driver.wait()
    out = capsys.readouterr().out.splitlines()
    running = (f"The search is still running (driver pid {driver.pid} on {socket.gethostname()}): this report reads "
               f"the {done} trial(s) completed so far; run `itt report {exp}` again when it ends.")
    assert out[1] == running, out[:3]
    md = (exp / "report" / "report.md").read_text()
    assert md.split("## Does order matter?\n\n")[1].startswith(running)
    assert json.loads((exp / "report" / "report.json").read_text())["trials"]["search"]["state"] == "running"
    # the driver is gone (killed): its file stays behind, its process does not
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (exp / "driver.json").write_text(json.dumps({**live, "pid": dead.pid}))
    assert main(["report", str(exp), "--no-heuristics"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        f"The search was interrupted with 1 trial(s) running: this report reads the {done} completed; "
        f"`itt resume {exp}` continues it.")
    # a driver recorded on another host (a cluster's head, read from a laptop): nothing tells from here
    (exp / "driver.json").write_text(json.dumps({**live, "host": "head-node-0"}))
    assert main(["report", str(exp), "--no-heuristics"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith(
        f"The search may still be running: its driver (pid {driver.pid} on head-node-0, not checked from here)")
    (exp / "driver.json").write_text("{not json")  # a file this tool did not write: as if no driver
    assert main(["report", str(exp), "--no-heuristics"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("The search was interrupted with 1 trial(s) running")
    _fake_experiment(tmp_path, tidy, stopped=(), name="ended")
    assert main(["report", str(tmp_path / "ended"), "--no-heuristics"]) == 0
    assert "The search" not in capsys.readouterr().out
    # the report the driver itself makes at the search's end (search.report), its record still there (a resume
    # started meanwhile is refused): the search has ended
    (tmp_path / "ended" / "driver.json").write_text(json.dumps({**live, "pid": os.getpid()}))
    assert main(["report", str(tmp_path / "ended"), "--no-heuristics"]) == 0
    assert "The search" not in capsys.readouterr().out
    assert json.loads((tmp_path / "ended" / "report" / "report.json").read_text())["trials"]["search"]["state"] == "ended"


def test_bad_experiment_dirs_give_one_error_line_and_write_nothing(tmp_path, capsys):
    def err(path, *needles):
        assert main(["report", str(path), "--no-heuristics"]) == 2
        e = capsys.readouterr().err.strip().splitlines()
        assert len(e) == 1 and e[0].startswith("error: "), e
        for n in needles:
            assert n in e[0], e[0]

    err(tmp_path / "nope", "no such experiment directory")
    (tmp_path / "empty").mkdir()
    err(tmp_path / "empty", "no results.csv")
    exp = _fake_experiment(tmp_path, pd.DataFrame(columns=["order", "seed", "language", "score"]), stopped=("ta>tb", "tb"))
    err(exp, "no completed trial", "2 stopped")
    assert not (tmp_path / "empty" / "report").exists() and not (exp / "report").exists()


@pytest.mark.parametrize("text, says", [
    ("a,b\n1,2\n", "results.csv: no trial_id, status, order column (header: a, b): not the results.csv `itt search` writes"),
    (None, "line 4 (trial t002) has fewer fields than the header: cut short or edited?"),  # cut in the middle of a row
    ("", "results.csv: no trial in it (nothing to sync)"),
    ("trial_id,status,order,score\n", "results.csv: no trial in it (nothing to sync)"),
])
def test_a_results_csv_of_another_shape_is_one_line_and_writes_nothing(tmp_path, capsys, text, says):
    """Another table saved as results.csv made `itt mlflow-sync` end in KeyError: 'trial_id' (and `itt report` say
    "no completed trial (1 trials: 0 running, ...)"); one cut mid-row was read as a trial of status 'complete'; an
    empty one was synced as "0 trials", a store made and a parent run opened for nothing."""
    exp = _fake_experiment(tmp_path, _tidy(np.random.default_rng(0)))
    full = (exp / "results.csv").read_text()
    (exp / "results.csv").write_text(full[:full.index("\n", full.index("t002")) - 30] if text is None else text)
    db = tmp_path / "sync.db"
    cmds = [["mlflow-sync", str(exp), "--tracking-uri", f"sqlite:///{db}"]]
    if "nothing to sync" not in says:  # (report and power say "no completed trial" there, as before)
        cmds += [["report", str(exp), "--no-heuristics", "--no-mlflow"], ["power", str(exp)]]
    for cmd in cmds:
        assert main(cmd) == 2, cmd
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {exp}/results.csv: ") and says in err[0], (cmd, err)
    assert not db.exists() and not (tmp_path / "mlruns").exists() and not (exp / "report").exists()


def test_a_file_of_the_search_this_user_may_not_read_is_one_line(tmp_path, capsys, monkeypatch):
    """results.csv (or any file of the experiment) the user may not read: a PermissionError traceback from
    itt report, power, compare, mlflow-sync, resume ..."""
    from pathlib import Path

    exp = _fake_experiment(tmp_path, _tidy(np.random.default_rng(0)))
    read = Path.read_bytes

    def denied(self):
        if self.name == "results.csv":
            raise PermissionError(13, "Permission denied", str(self))
        return read(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    db = tmp_path / "sync.db"
    for cmd in (["report", str(exp), "--no-heuristics", "--no-mlflow"], ["power", str(exp)],
                ["mlflow-sync", str(exp), "--tracking-uri", f"sqlite:///{db}"]):
        assert main(cmd) == 2, cmd
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: {exp}/results.csv: cannot read it (Permission denied)"], (cmd, err)
    assert not db.exists() and not (exp / "report").exists()


@pytest.mark.parametrize("rel, kind", [("summary.json", "JSON"), ("tracking/search.json", "JSON"),
                                       ("tracking/config.yaml", "YAML")])
def test_a_file_of_the_search_that_is_cut_short_is_one_line(tmp_path, capsys, rel, kind):
    """summary.json, tracking/search.json and tracking/config.yaml are written by the search; one cut short
    by a kill, or edited by hand, is one line naming it (itt report and itt mlflow-sync), not a traceback."""
    exp = _fake_experiment(tmp_path, _tidy(np.random.default_rng(0)))
    (exp / rel).parent.mkdir(exist_ok=True)
    (exp / rel).write_bytes(b'{"cut short\n\x00')
    for cmd in (["report", str(exp), "--no-heuristics", "--no-mlflow"], ["mlflow-sync", str(exp)]):
        if cmd[0] == "mlflow-sync" and rel != "tracking/search.json":
            continue  # (mlflow-sync reads only that one)
        assert main(cmd) == 2
        cap = capsys.readouterr()
        err = cap.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {exp}/{rel}: not valid {kind} ("), (cmd, cap.err)
    assert not (exp / "report").exists()


def test_mlflow_sync_of_a_damaged_trial_record_leaves_mlflow_as_it_was(tmp_path, capsys):
    """A trial's tracking record cut short: `itt mlflow-sync` says so in one line and writes nothing to
    MLflow (it made the store and left the search's parent run RUNNING there)."""
    exp = _fake_experiment(tmp_path, _tidy(np.random.default_rng(0)))
    tid = next(csv.DictReader(io.StringIO((exp / "results.csv").read_text())))["trial_id"]
    (exp / "tracking" / "trials").mkdir(parents=True, exist_ok=True)
    (exp / "tracking" / "trials" / f"{tid}.json").write_text('{"reports": [')
    db = tmp_path / "sync.db"
    assert main(["mlflow-sync", str(exp), "--tracking-uri", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {exp}/tracking/trials/{tid}.json: not valid JSON"), err
    assert not db.exists() and not (tmp_path / "mlruns").exists()


def test_mlflow_sync_of_a_folder_named_results_csv_is_one_line(tmp_path, capsys):
    """A folder named results.csv (not the search's file) was synced as "0 trials": the store made and a
    parent run opened for nothing."""
    (tmp_path / "exp" / "results.csv").mkdir(parents=True)
    db = tmp_path / "sync.db"
    assert main(["mlflow-sync", str(tmp_path / "exp"), "--tracking-uri", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'exp'}: no results.csv file here"), err
    assert not db.exists()


def test_an_out_folder_that_cannot_be_written_is_one_line_before_the_analysis(tmp_path, capsys):
    exp = _fake_experiment(tmp_path, _tidy(np.random.default_rng(0)))
    afile = tmp_path / "afile"
    afile.write_text("keep")
    for out, needle in [(afile, "afile is a file, not a folder"), (afile / "sub", "cannot write to")]:
        assert main(["report", str(exp), "--no-heuristics", "--no-mlflow", "--out", str(out)]) == 2
        cap = capsys.readouterr()
        err = cap.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --out {out}: ") and needle in err[0] and not cap.out, cap
    assert afile.read_text() == "keep" and not (exp / "report").exists()


def test_heuristic_orders_from_rankings():
    from search.heuristics import orders_from_ranking
    from search.space import OrderSpace

    diff = {"a": 0.9, "b": 0.1, "c": 0.5}
    assert orders_from_ranking("curriculum", diff, [0, 1, 2, 3]) == [["b"], ["b", "c"], ["b", "c", "a"]]
    sim = {"a": 0.9, "b": 0.1, "c": 0.5}
    assert orders_from_ranking("similarity", sim, [2, 3]) == [["c", "a"], ["b", "c", "a"]]  # most similar last
    space = OrderSpace(candidates=["a", "b", "c"], lengths=[2], last="b")
    assert orders_from_ranking("similarity", sim, [2], space) == []  # outside the constraints: dropped


def test_chance_loss_of_each_kind():
    """The curriculum's scale: a uniform guess's loss, ln #labels for classification and ln #options for the
    built-in multiple-choice tasks (they had 1, raw loss, beside classification's ln #labels), 1 else."""
    from types import SimpleNamespace

    from search.heuristics import chance_loss

    chain = SimpleNamespace(tasks={})  # (the built-in tasks only)
    assert chance_loss(chain, "mnli") == pytest.approx(math.log(3)) and chance_loss(chain, "sst2") == pytest.approx(math.log(2))
    assert chance_loss(chain, "commonsenseqa") == pytest.approx(math.log(5))
    assert chance_loss(chain, "hellaswag") == chance_loss(chain, "cosmosqa") == pytest.approx(math.log(4))
    assert chance_loss(chain, "stsb") == 1.0 and chance_loss(chain, "squad") == 1.0


def test_similarity_reads_a_retrieval_targets_own_language_side():
    """Tatoeba's and BUCC's rows pair a sentence in the language (source) with its English translation
    (target): the target text of the similarity heuristic is the language's side, not both."""
    from types import SimpleNamespace

    from itt.tasks import resolve_task
    from search.heuristics import _texts

    ds = {"source": ["Das ist gut"], "target": ["That is good"]}
    assert _texts(resolve_task("tatoeba", {}), ds) == ["Das ist gut"]
    assert _texts(resolve_task("bucc2018", {}), ds) == ["Das ist gut"]
    pair = SimpleNamespace(kind="pair", fields=("premise", "hypothesis"))
    assert _texts(pair, {"premise": ["a b"], "hypothesis": ["c"]}) == ["a b", "c"]


def test_itt_space_heuristic_similarity(write_config, capsys):
    cfg = write_config({"search": {"candidates": ["toy_topic", "toy_align", "toy_length"], "length": [1, 2]}})
    assert main(["space", str(cfg), "--samples", "0", "--heuristic", "similarity"]) == 0
    out = capsys.readouterr().out
    sims = {line.split(":")[0].strip(): float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if "similarity 0" in line}
    assert set(sims) == {"toy_topic", "toy_align", "toy_length"} and all(0 < v <= 1 for v in sims.values())
    ranked = sorted(sims, key=sims.get)
    assert f"  order: {ranked[-1]}" in out and f"  order: {ranked[-2]}>{ranked[-1]}" in out


# ------------------------------------------------------------------ end to end: a simulated Ray search
def _sim_table(path, tasks, *, delta, seeds=(0, 1, 2), seed=0):
    """Per-seed, per-language simulated scores; an order whose first task is tasks[0] gets +delta."""
    rng = np.random.default_rng(seed)
    langs = ["en", "xa", "xb", "xc"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["order", "seed", "probe_1", "probe_2", "final", *[f"test_{lang}" for lang in langs], "perturbation"])
        for k in (0, 1, 2):
            for o in itertools.permutations(tasks, k):
                eff = delta if o and o[0] == tasks[0] else 0.0
                for s in seeds:
                    shift = rng.normal(0, 0.01)
                    test = [0.75 - 0.08 * i + eff + shift + rng.normal(0, 0.005) for i in range(len(langs))]
                    probes = [0.5 + eff + shift] * k + [""] * (2 - k)
                    w.writerow([">".join(o), s, *probes, float(np.mean(test)), *test, float(np.mean(test)) - 0.05])
    return path


def test_report_end_to_end_on_a_simulated_search(tmp_path, ray_local, capsys):
    from mlflow.tracking import MlflowClient

    from search.runner import run_search
    from search.tracking import resolve_uri

    tasks = ["toy_topic", "toy_align", "toy_length"]
    table = _sim_table(tmp_path / "table.csv", tasks, delta=0.06)
    cfg = {**TINY, "search": {"candidates": tasks, "length": [0, 2], "searcher": "exhaustive", "seeds": [0, 1, 2],
                              "seed_points": {"baseline": True, "singles": True, "heuristics": ["similarity"]},
                              "scheduler": {"type": "none"}, "simulate": {"table": str(table)},
                              "resources": {"max_concurrent": 2}, "report": True}}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(cfg))
    lines: list[str] = []
    exp = run_search(str(p), name="rep", storage=str(tmp_path / "runs"), log=lines.append)
    seeded = next(x for x in lines if x.startswith("seed points (similarity"))
    # search.report: the search ends with the report's answer (test, IF vs F, best order, report.html)
    answer = lines[lines.index("does order matter here? (itt report)"):]
    assert (exp / "report" / "report.html").is_file()
    assert any(x.startswith(f"report: {exp}/report/report.html  (report.md, report.json") for x in answer), answer
    assert any(x.startswith("The intermediate tasks chosen and their order matter for the mean score over languages: Kruskal–Wallis over 9 IF orders")
               and "epsilon² = " in x for x in answer), answer
    assert any(x.startswith("IF vs F: F 0.") and "best IF (toy_topic" in x and "significant in" in x for x in answer), answer
    assert any(x.startswith("Best order: toy_topic") and "over 3 seed(s), 95% interval [" in x for x in answer), answer
    assert any(x.startswith("Compute: ") and "trials (" in x and "every order once would take" in x for x in answer), answer
    first = json.loads((exp / "report" / "report.json").read_text())
    said = next(h for h in first["heuristics"] if h["kind"] == "transferability")  # no prior.json: not measured
    assert "measured no transferability prior" in said["error"] and said["command"].startswith("itt rank ")
    # as a search with search.prior: transferability leaves it (measurements made up: toy_length the best task)
    units = {"toy_length": 1.0, "toy_align": 0.0, "toy_topic": -1.0}
    (exp / "prior.json").write_text(json.dumps({"measurements": {
        "tasks": {t: {"score": u} for t, u in units.items()}, "link_z": {}, "decay": 0.5, "link_weight": 0.5}}))
    assert main(["report", str(exp)]) == 0
    out = capsys.readouterr().out
    res = json.loads((exp / "report" / "report.json").read_text())
    assert len(res["leaderboard"]) == 10 and all(r["n_seeds"] == 3 for r in res["leaderboard"])
    assert res["headline"]["order_matters"] is True  # the planted effect, through the real search path
    assert res["leaderboard"][0]["order"].startswith("toy_topic")
    # per-seed values are the table's, not means of means
    want = pd.read_csv(table, keep_default_na=False)
    best = res["leaderboard"][0]
    assert best["per_language"]["xa"] == pytest.approx(want[want["order"] == best["order"]]["test_xa"].mean())
    assert best["perturbation"] == pytest.approx(want[want["order"] == best["order"]]["perturbation"].mean())
    # heuristics: curriculum from the search's single-task orders, similarity from the toy data
    kinds = {h["kind"]: h for h in res["heuristics"]}
    assert "1 - single-task final score" in kinds["curriculum"]["source"] and kinds["curriculum"]["orders"]
    assert all(o["evaluated"] for o in kinds["curriculum"]["orders"])  # length-2 orders all ran (exhaustive)
    assert "cosine" in kinds["similarity"]["source"]
    assert all(o["evaluated"] and o["order"] in seeded for o in kinds["similarity"]["orders"])  # the search started from them
    # transferability from prior.json: the prior's best order per length, and its ranking of the IF orders
    tr = kinds["transferability"]
    assert [o["order"] for o in tr["orders"]] == ["toy_length", "toy_align>toy_length"]
    ifs = [r for r in res["leaderboard"] if r["order"]]
    raw = [sum(0.5 ** (len(o) - 1 - i) * units[t] for i, t in enumerate(o))
           for o in (r["order"].split(">") for r in ifs)]
    rho = pd.Series(raw).rank().corr(pd.Series([r["mean"] for r in ifs]).rank())
    assert tr["agreement"]["n"] == 9 and tr["agreement"]["spearman"] == pytest.approx(rho)
    assert f"The prior against the 9 IF orders this search completed (test means): Spearman rho = {rho:+.2f}" in out
    # logged to the search's MLflow parent run
    assert "report logged to parent run" in out
    client = MlflowClient(resolve_uri())
    meta = json.loads((exp / "tracking" / "search.json").read_text())
    run = client.search_runs([client.get_experiment_by_name("rep").experiment_id],
                             filter_string=f"tags.search_id = '{meta['search_id']}' and tags.itt_role = 'search'")[0]
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/report.html", "report/report.json", "report/leaderboard.png"} <= arts
    assert run.data.metrics["report_order_effect_mean_p"] == pytest.approx(res["order_effect"]["tests"][0]["p_holm"])
    assert run.data.metrics["report_prior_spearman"] == pytest.approx(rho)
    # compute: every trial timed from Ray's own trial folders; the language test and report.tex logged too
    rows = list(csv.DictReader(open(exp / "results.csv")))
    c = res["compute"]
    assert c["trials"] == c["timed_trials"] == len(rows) and c["trial_seconds"] > 0 and c["span_seconds"] > 0
    assert run.data.metrics["report_compute_device_hours"] == pytest.approx(c["device_hours"])
    assert run.data.metrics["report_language_interaction_p"] == pytest.approx(res["by_language"]["interaction"]["p"])
    assert "report/report.tex" in arts
    # each IF order's P(best) and shrunk score on its trial's own run (sortable on the runs page)
    trial_runs = client.search_runs([run.info.experiment_id], filter_string=f"tags.search_id = '{meta['search_id']}' "
                                    "and tags.itt_role = 'trial'")
    order_of = {r["trial_id"]: r["order"] for r in rows}
    board = {r["order"]: r for r in res["leaderboard"]}
    ranked = [t for t in trial_runs if "report_p_best" in t.data.metrics]
    assert len(ranked) == len([r for r in res["leaderboard"] if r["order"]]) and f"P(best) on {len(ranked)} trial runs" in out
    for t in ranked:
        b = board[order_of[t.data.tags["trial_id"]]]
        assert (t.data.metrics["report_p_best"], t.data.metrics["report_shrunk"]) == pytest.approx((b["p_best"], b["shrunk"]))


def test_search_report_that_cannot_be_made_is_one_line(tmp_path, ray_local, monkeypatch):
    """search.report on a search whose trials have no per-language results: the search ends normally,
    and one line says why there is no report and how to make it later. The driver stays recorded while it
    makes the report (a resume started then was not refused, and wrote the report beside it), not after."""
    import os

    from search import driver, report
    from search.runner import run_search
    from search.storage import Storage

    recorded, make = [], report.make_report

    def make_report(path, **kw):
        recorded.append(driver.live(Storage(str(tmp_path / "runs"), "norep")))
        return make(path, **kw)

    monkeypatch.setattr(report, "make_report", make_report)

    table = tmp_path / "t.csv"
    table.write_text("order,probe_1,final\ntoy_topic,0.4,0.5\ntoy_align,0.3,0.4\n")
    cfg = {**TINY, "search": {"candidates": ["toy_topic", "toy_align"], "length": 1, "searcher": "exhaustive",
                              "scheduler": {"type": "none"}, "simulate": {"table": str(table)},
                              "tracking": {"enabled": False}, "report": True}}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(cfg))
    lines: list[str] = []
    exp = run_search(str(p), name="norep", storage=str(tmp_path / "runs"), log=lines.append)
    assert lines[-2] == "does order matter here? (itt report)"
    assert lines[-1].startswith("report: not written (") and lines[-1].endswith(f"once fixed: itt report {exp}"), lines
    assert not (exp / "report").exists()
    assert len(recorded) == 1 and recorded[0]["pid"] == os.getpid() and not (exp / "driver.json").exists()


# ------------------------------------------------------------------ the HTML, looked at
def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_html_shows_no_raw_markdown_stars(tmp_path, capsys):
    """The language section names *Which order is best, and how sure?*: italic in report.md, and in report.html an
    <em>, not two asterisks; a significance star in a paragraph ("ta: 5.6e-08 *;") stays as it is."""
    exp, _, _ = reported_fake(tmp_path, capsys)
    page = re.sub(r"src='data:[^']*'", "", (exp / "report" / "report.html").read_text(encoding="utf-8"))
    paras = " ".join(re.findall(r"<p>(.*?)</p>", page))
    assert "<em>Which order is best, and how sure?</em>" in paras and "*Which" not in paras
    assert re.search(r"Holm: ta: [0-9.e-]+ \*;", paras)
    assert "*Which order is best, and how sure?*" in (exp / "report" / "report.md").read_text(encoding="utf-8")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_report_html_renders_with_visible_plots_in_headless_chromium(tmp_path):
    from PIL import Image

    from search.report import make_report

    exp = _fake_experiment(tmp_path, _tidy(np.random.default_rng(2), delta=0.05))
    make_report(str(exp), heuristics=False, mlflow=False, log=lambda *a: None)
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1200,2200", f"--screenshot={shot}", (exp / "report" / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=90)
    img = np.asarray(Image.open(shot).convert("RGB"))
    non_white = (img < 235).any(axis=2).mean()
    colours = len(np.unique(img.reshape(-1, 3)[::7], axis=0))
    # text alone is grey on white: the plots' bars, heatmap and markers bring area and many colours
    assert non_white > 0.08 and colours > 200, (non_white, colours)
    green = ((img[..., 1] > 120) & (img[..., 0] < 80) & (img[..., 2] < 160)).mean()  # the leaderboard's bars
    assert green > 0.005


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_report_html_numbers_stay_on_one_line(tmp_path):
    """In a 900 px window, a number cell of the leaderboard ("0.6529 ± 0.0563", "[0.5130, 0.7928]") is one line
    (they broke into three); the report with a script appended counts each cell's lines of text in the browser."""
    from search.report import make_report

    exp = _fake_experiment(tmp_path, _tidy(np.random.default_rng(2), delta=0.05))
    make_report(str(exp), heuristics=False, mlflow=False, log=lambda *a: None)
    probe = ("<script>document.addEventListener('DOMContentLoaded', () => { const t = document.querySelector('table');"
             "const lines = c => { const r = document.createRange(); r.selectNodeContents(c);"
             "return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size; };"  # (a cell's lines of text)
             "const n = [...t.querySelectorAll('td')].filter(c => c.cellIndex !== 1).map(lines);"
             "document.body.setAttribute('data-wrapped', n.filter(k => k > 1).length + '/' + n.length); });</script>")
    dom = _dom_with(exp, probe, tmp_path, "900,2000")
    wrapped, cells = re.search(r'data-wrapped="(\d+)/(\d+)"', dom).groups()
    assert int(cells) > 20 and int(wrapped) == 0, (wrapped, cells)


def _dom_with(exp, probe: str, tmp_path, window: str) -> str:
    """The report page's DOM as headless Chromium leaves it, ``probe`` (a script writing what it measured into
    attributes of <body>) run in it at that window size."""
    page = tmp_path / "measured.html"
    page.write_text((exp / "report" / "report.html").read_text(encoding="utf-8").replace("</body>", probe + "</body>"),
                    encoding="utf-8")
    return subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={window}",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=90, check=True).stdout


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_report_html_on_40_languages_keeps_figures_legible_and_the_page_its_width(tmp_path, monkeypatch):
    """PAN-X has 40 languages: the IF vs F figure is then ~4400 px wide and was shrunk to the 1100 px page (its text
    2 px high), and the leaderboard table widened the whole page. Each figure shows at its own size and each wide
    figure or table scrolls in its own box; the page itself does not scroll sideways."""
    from search.report import make_report

    langs = ["en"] + [f"l{i:02d}" for i in range(39)]
    monkeypatch.setattr(sys.modules[__name__], "LANGS", langs)
    orders = _orders(TASKS[:3])
    rng = np.random.default_rng(4)
    o, s, lg = (a.ravel() for a in np.meshgrid(np.arange(len(orders)), np.arange(3), np.arange(len(langs)), indexing="ij"))
    tidy = pd.DataFrame({"order": np.asarray(orders, object)[o], "seed": s, "language": np.asarray(langs)[lg],
                         "score": 0.8 - 0.01 * lg + rng.normal(0, 0.02, len(o))})
    exp = _fake_experiment(tmp_path, tidy, stopped=())
    make_report(str(exp), heuristics=False, mlflow=False, log=lambda *a: None)
    probe = ("<script>window.addEventListener('load', () => { const d = document.documentElement;"
             "document.body.setAttribute('data-page', d.scrollWidth + '/' + window.innerWidth);"
             "document.body.setAttribute('data-scale', [...document.images].map(i => i.alt + ':' +"
             "(i.getBoundingClientRect().width / i.naturalWidth).toFixed(2)).join(',')); });</script>")
    dom = _dom_with(exp, probe, tmp_path, "1400,2000")
    wide, window = map(int, re.search(r'data-page="(\d+)/(\d+)"', dom).groups())
    scale = dict(x.split(":") for x in re.search(r'data-scale="([^"]*)"', dom).group(1).split(","))
    assert {"if_vs_f", "heatmap", "by_language", "leaderboard"} <= set(scale)
    assert all(float(v) == 1.0 for v in scale.values()), scale  # (if_vs_f was drawn at 0.25 of its size)
    assert wide <= window, (wide, window)


# ------------------------------------------------------------------ an experiment on an object store
from tests.test_storage import s3  # noqa: E402,F401  (the moto S3 server fixture)


def test_report_on_an_s3_experiment(s3, tmp_path, capsys):  # noqa: F811
    from search.storage import Storage

    local = _fake_experiment(tmp_path, _tidy(np.random.default_rng(4), delta=0.05))
    root = s3("reports")
    Storage(root, "exp").upload_dir(local)
    base, _, query = root.partition("?")
    uri = f"{base}/exp?{query}"
    assert main(["report", uri, "--no-heuristics"]) == 0
    assert "report: s3://reports/searches/exp/report/report.html" in capsys.readouterr().out
    st = Storage(root, "exp")
    res = json.loads(st.read_text("report", "report.json"))
    assert res["headline"]["order_matters"] is True and st.exists("report", "heatmap.png")
    assert "data:image/png;base64," in st.read_text("report", "report.html")


def test_report_not_logged_says_why(tmp_path):
    from search.storage import Storage
    from search.tracking import log_report

    st = Storage(str(tmp_path), "exp")
    assert "tracking was off" in log_report(st, {"search_id": "x", "tracking_uri": None}, tmp_path, {})
    assert "no MLflow store" in log_report(st, {"search_id": "x"}, tmp_path, {}, uri=f"sqlite:///{tmp_path}/none.db")
    line = log_report(st, {"search_id": "x", "experiment": "e"}, tmp_path, {}, uri="http://127.0.0.1:9")
    assert line.startswith("MLflow: not logged (") and "\n" not in line


def test_a_closed_pipe_ends_the_cli_quietly():
    """`itt tasks | head -0`: the reader is gone before the first line; no traceback on stderr."""
    import os
    import sys

    r, w = os.pipe()
    os.close(r)
    run = subprocess.run([sys.executable, "-m", "search.cli", "tasks"], stdout=w, stderr=subprocess.PIPE, text=True,
                         timeout=120)
    os.close(w)
    assert run.returncode == 141 and "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr, run.stderr
