"""Task choice, arrangement or length? The report's nested sum-of-squares decomposition and its scores
by order length, against independent computations and planted structure."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from search import stats as S
from search.cli import main

TASKS = ["ta", "tb", "tc"]


def _fig(rng, *, set_size=0.0, arr_size=0.0, seed_sd=0.01, seeds=3, unequal=False) -> pd.DataFrame:
    """Per-seed means of every order of length 1-2 of three tasks: planted effects per task set (spread
    evenly over +-set_size) and per arrangement (+-arr_size for the two orders of each pair)."""
    orders = [">".join(p) for k in (1, 2) for p in itertools.permutations(TASKS, k)]
    sets = sorted({frozenset(o.split(">")) for o in orders}, key=sorted)
    set_eff = dict(zip(sets, np.linspace(-set_size, set_size, len(sets))))
    rows = []
    for j, o in enumerate(orders):
        tasks = o.split(">")
        eff = set_eff[frozenset(tasks)] + (arr_size if len(tasks) == 2 and tasks[0] < tasks[1] else -arr_size
                                           if len(tasks) == 2 else 0.0)
        for s in range(seeds + (j % 2 if unequal else 0)):
            rows.append((o, s, 0.6 + eff + rng.normal(0, seed_sd)))
    rows += [("", s, 0.4 + rng.normal(0, seed_sd)) for s in range(seeds)]
    return pd.DataFrame(rows, columns=["order", "seed", "mean"])


def test_nested_decomposition_against_loops_and_it_adds_up():
    fig = _fig(np.random.default_rng(0), set_size=0.03, arr_size=0.02, unequal=True)
    vp = S.variance_parts(fig)
    d = fig[fig["order"] != S.F]
    grand = d["mean"].mean()
    ss_set = ss_arr = ss_seed = 0.0
    for _, g in d.groupby(d["order"].map(lambda o: frozenset(o.split(">")))):
        ss_set += len(g) * (g["mean"].mean() - grand) ** 2
        for _, go in g.groupby("order"):
            ss_arr += len(go) * (go["mean"].mean() - g["mean"].mean()) ** 2
            ss_seed += ((go["mean"] - go["mean"].mean()) ** 2).sum()
    assert vp["ss"] == pytest.approx({"sets": ss_set, "arrangement": ss_arr, "seeds": ss_seed})
    assert sum(vp["ss"].values()) == pytest.approx(vp["ss_total"]) and sum(vp["share"].values()) == pytest.approx(1)
    assert (vp["n_orders"], vp["n_sets"], vp["sets_with_several_orders"]) == (9, 6, 3)


def test_planted_set_and_arrangement_effects_land_in_their_shares():
    rng = np.random.default_rng(1)
    by_set = S.variance_parts(_fig(rng, set_size=0.05))
    assert by_set["share"]["sets"] > 0.8 and by_set["share"]["arrangement"] < 0.05
    by_arr = S.variance_parts(_fig(rng, arr_size=0.05))
    assert by_arr["share"]["arrangement"] > 0.8 and by_arr["share"]["sets"] < 0.1
    noise = S.variance_parts(_fig(rng))
    assert noise["share"]["seeds"] > 0.5


def test_lengths_against_pandas_and_scipy():
    rng = np.random.default_rng(2)
    fig = _fig(rng, set_size=0.02)
    means = fig.groupby("order", sort=False)["mean"].mean().to_dict()
    ln = S._lengths(fig, means, S.ALPHA)
    length = {o: len([t for t in o.split(">") if t]) for o in means}
    for c in ln["cells"]:
        vals = [m for o, m in means.items() if length[o] == c["length"]]
        assert c["n_orders"] == len(vals) and c["mean"] == pytest.approx(np.mean(vals)) and c["best"] == max(vals)
    ones = [m for o, m in means.items() if length[o] == 1]
    twos = [m for o, m in means.items() if length[o] == 2]
    assert ln["test"]["rho"] == pytest.approx(sps.spearmanr([1] * 3 + [2] * 6, ones + twos).statistic)
    # with seeds: GLS with the shared-prefix covariance (search/shared_prefix.py, tested there), nothing adjusted
    from search import shared_prefix

    names, Y = shared_prefix.per_seed_matrix(fig)
    pc = shared_prefix.PrefixCovariance([tuple(o.split(">")) for o in names], Y)
    groups = [[i for i, o in enumerate(names) if length[o] == n] for n in (1, 2)]
    want = shared_prefix.groups_test(pc, groups, np.zeros((len(names), 0)))
    assert ln["test"]["p"] == pytest.approx(want["p"]) and ln["test"]["df"] == pytest.approx(want["df"])
    assert ln["test"]["df"][0] == 1 and ln["caveat"] is None
    # one seed per order: the rank test over order means (Mann-Whitney U for two lengths), with the caveat
    one = fig[fig["seed"] == fig["seed"].min()]
    m1 = one.groupby("order", sort=False)["mean"].mean().to_dict()
    ln1 = S._lengths(one, m1, S.ALPHA)
    ones1, twos1 = ([m for o, m in m1.items() if length[o] == n] for n in (1, 2))
    assert ln1["test"]["p"] == pytest.approx(sps.mannwhitneyu(ones1, twos1, alternative="two-sided").pvalue)
    assert ln1["caveat"] == S.SHARED_PREFIX
    tiny = pd.DataFrame({"order": ["ta", "tb", "ta>tb"], "seed": 0, "mean": [0.5, 0.6, 0.7]})
    assert "underpowered" in S._lengths(tiny, {"ta": 0.5, "tb": 0.6, "ta>tb": 0.7}, S.ALPHA)["test"]


def test_report_has_the_section_the_console_line_and_the_metrics(tmp_path, capsys):
    import json

    from search.report import headline_metrics
    from tests.test_report import _fake_experiment, _orders, _tidy

    exp = _fake_experiment(tmp_path, _tidy(np.random.default_rng(3), delta=0.1, orders=_orders()), stopped=())
    assert main(["report", str(exp), "--no-heuristics", "--no-mlflow"]) == 0
    out = capsys.readouterr().out
    res = json.loads((exp / "report" / "report.json").read_text())
    sh = res["variance_parts"]["share"]
    assert f"task set {sh['sets']:.1%}, arrangement within a set {sh['arrangement']:.1%}" in out
    md = (exp / "report" / "report.md").read_text()
    assert "## Task choice, arrangement or length?" in md and "| length | orders |" in md
    m = headline_metrics(res)
    assert m["report_share_arrangement"] == pytest.approx(sh["arrangement"])
    assert m["report_length_rho"] == pytest.approx(res["lengths"]["test"]["rho"])


def test_one_seed_per_order_says_seed_noise_hides_in_the_orders():
    from search.report import composition_line

    fig = _fig(np.random.default_rng(4), set_size=0.02, seeds=1)
    vp = S.variance_parts(fig)
    assert vp["one_seed"] and vp["share"]["seeds"] == 0.0
    assert "one seed per order, so seed noise is counted in the other two shares" in composition_line(vp)
    assert not S.variance_parts(_fig(np.random.default_rng(4)))["one_seed"]


def test_a_model_at_chance_everywhere_reports_without_made_up_figures():
    """A tiny model that predicts one class: every order scores the same in every language and seed. The
    whole report renders, and no share, effect size or rho is made up from floating-point dust."""
    import warnings

    from search import latex
    from search.report import _json_safe, answer, headline_metrics, plots, render_md, sections

    rows = [(o, s, lg, 0.333) for o in ["", "a", "b", "c", "a>b", "b>a"] for s in range(3) for lg in ["en", "de", "sw"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no division by zero on the way
        res = _json_safe(S.analyse(pd.DataFrame(rows, columns=["order", "seed", "language", "score"])))
    res.update(experiment="x", metric="accuracy")
    assert "underpowered" in res["variance_parts"] and "underpowered" in res["by_language"]["interaction"]
    assert "partial_eta2" not in res["by_language"]["interaction"] and "W" not in res["by_language"]
    assert all(r["rho_with_others"] is None for r in res["by_language"]["per_language"])
    assert res["order_effect"]["tests"][0]["variance_share"] == 0.0
    m = headline_metrics(res)
    assert not any(k.startswith(("report_share_", "report_language_interaction")) for k in m)
    text = render_md(sections(res, "x", "accuracy"), "t", plots(res, "accuracy"))
    assert "not tested" in "\n".join(answer(res, "w")) and "no spread to split" in text
    assert latex.table(res, name="x").count(r"\\") == 7  # header and six rows


def test_the_report_renders_any_ragged_table():
    """Random small tables — orders, seeds and languages missing at random, one seed or several, F or
    not, ties at chance level: every statistic, section, plot and table renders (a trial that was not
    scored in one language crashed the IF-vs-F plot before)."""
    import warnings

    from search import latex
    from search.report import _json_safe, answer, headline_metrics, plots, render_md, sections

    rng = np.random.default_rng(0)
    for _ in range(12):
        tasks = TASKS[: rng.integers(1, 4)]
        orders = [""] * rng.integers(0, 2) + [">".join(p) for k in (1, 2) for p in itertools.permutations(tasks, k)]
        orders = [o for o in orders if rng.random() < 0.8] or ["ta"]
        langs = ["en", "de", "sw", "zh"][: rng.integers(1, 5)]
        rows = [(o, s, lg, 0.333 if rng.random() < 0.3 else 0.5 + rng.normal(0, 0.05)) for o in orders
                for s in range(rng.integers(1, 5)) for lg in langs if rng.random() < 0.9]
        tidy = pd.DataFrame(rows, columns=["order", "seed", "language", "score"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns on constant inputs; the report says "not tested"
            res = _json_safe(S.analyse(tidy))
            res.update(experiment="x", metric="accuracy")
            md = render_md(sections(res, "x", "accuracy"), "t", plots(res, "accuracy"))
        assert md.startswith("# t") and answer(res, "w")[-1] == "Report: w/report.html"
        assert all(np.isfinite(v) for v in headline_metrics(res).values())
        assert latex.table(res, name="x").rstrip().endswith((r"\end{table}", r"\end{table*}"))
