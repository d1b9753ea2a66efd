"""Does the best order depend on the language? The report's per-language section and its test (the
order x language interaction of a split-plot ANOVA), checked against pingouin and a least-squares fit."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from search import stats as S
from tests.test_report import LANGS, _orders, reported_fake


def _pingouin_table():
    """Four orders with 3, 4, 3 and 5 seeds, five languages of unequal noise (non-spherical)."""
    rng = np.random.default_rng(7)
    sizes, n_lang = [3, 4, 3, 5], 5
    y, groups = [], []
    for j, nj in enumerate(sizes):
        effect = rng.normal(0, 0.5, n_lang)
        for _ in range(nj):
            y.append(np.arange(n_lang) * 0.3 + effect + rng.normal() + rng.normal(size=n_lang) * np.linspace(0.5, 2, n_lang))
            groups.append(f"o{j}")
    return np.array(y), groups


def test_interaction_matches_pingouin_mixed_anova():
    # reference: pingouin 0.7.0, mixed_anova(dv="score", within="lang", between="order", subject="subj",
    # correction=True) on this table in long form, row "Interaction" (computed once outside the suite)
    y, groups = _pingouin_table()
    r = S.order_language_interaction(y, groups)
    assert (r["df1"], r["df2"]) == (12, 44)
    assert r["ss_interaction"] == pytest.approx(34.90786780244528, rel=1e-9)
    assert r["F"] == pytest.approx(1.6515932348762457, rel=1e-9)
    assert r["p_uncorrected"] == pytest.approx(0.1121136704350052, rel=1e-7)
    assert r["epsilon"] == pytest.approx(0.4594602214036691, rel=1e-9)
    assert r["p"] == pytest.approx(0.18797638734712996, rel=1e-7)
    assert r["partial_eta2"] == pytest.approx(0.31055143326054674, rel=1e-9)


def test_interaction_sums_of_squares_are_a_least_squares_model_comparison():
    """Independently: y ~ model + language (+ order:language). The residual of the full model is the
    error term; what the interaction adds is the drop in residual sum of squares."""
    y, groups = _pingouin_table()
    n, n_lang = y.shape
    g = pd.factorize(np.asarray(groups))[0]
    rows = [(i, lg) for i in range(n) for lg in range(n_lang)]
    target = np.array([y[i, lg] for i, lg in rows])
    model = np.array([[i == m for m in range(n)] for i, _ in rows], float)
    lang = np.array([[lg == k for k in range(1, n_lang)] for _, lg in rows], float)
    inter = np.array([[g[i] == o and lg == k for o in range(1, g.max() + 1) for k in range(1, n_lang)] for i, lg in rows],
                     float)

    def rss(x):
        return float(((target - x @ np.linalg.lstsq(x, target, rcond=None)[0]) ** 2).sum())

    reduced, full = rss(np.hstack([model, lang])), rss(np.hstack([model, lang, inter]))
    r = S.order_language_interaction(y, groups)
    assert r["ss_error"] == pytest.approx(full, rel=1e-8)
    assert r["ss_interaction"] == pytest.approx(reduced - full, rel=1e-8)


def _cube(rng, *, orders, seeds=3, bump=0.0, bump_lang="xb", lang_noise=(0.01, 0.01, 0.03)):
    """Per-seed, per-language scores: languages of different difficulty and noise, a seed's luck shared
    by its languages, orders starting with 'ta' better by 0.03 everywhere, and by ``bump`` more in
    ``bump_lang`` only (the planted interaction)."""
    rows = []
    for o in orders:
        for s in range(seeds):
            luck = rng.normal(0, 0.02)
            for k, lg in enumerate(LANGS):
                eff = (0.03 if o.startswith("ta") else 0.0) + (bump if o.startswith("tb") and lg == bump_lang else 0.0)
                rows.append((o, s, lg, 0.7 - 0.1 * k + eff + luck + rng.normal(0, lang_noise[k])))
    return pd.DataFrame(rows, columns=["order", "seed", "language", "score"])


def test_no_interaction_rejects_at_alpha_and_a_planted_one_is_found():
    rng = np.random.default_rng(11)
    orders = _orders(lengths=(1, 2))[:8]
    def interaction(t):  # the report's own path to the test (S.analyse minus its other statistics)
        return S._interaction(t, LANGS, S.MIN_SEEDS, S.ALPHA)

    null = [interaction(_cube(rng, orders=orders)) for _ in range(200)]
    corrected = sum(r["p"] < S.ALPHA for r in null)
    assert corrected <= sps.binom.ppf(0.99, 200, S.ALPHA)
    assert corrected < sum(r["p_uncorrected"] < S.ALPHA for r in null)  # unequal noise: uncorrected F is liberal
    found = [interaction(_cube(rng, orders=orders, bump=0.1)) for _ in range(30)]
    assert sum(r["significant"] for r in found) >= 27


def test_per_language_rows_against_an_independent_computation():
    rng = np.random.default_rng(3)
    orders = [""] + _orders(lengths=(1, 2))[:8]
    tidy = _cube(rng, orders=orders, seeds=8, bump=0.08)
    la = S.analyse(tidy)["by_language"]
    means = tidy[tidy["order"] != ""].groupby(["order", "language"])["score"].mean().unstack()
    overall = means.mean(axis=1).idxmax()
    assert la["overall_best"] == overall and la["n_orders"] == len(orders) - 1  # F is not an IF order
    for r in la["per_language"]:
        col = means[r["language"]]
        assert r["best_order"] == col.idxmax() and r["best"] == pytest.approx(col.max())
        assert r["gap"] == pytest.approx(col.max() - col[overall]) and r["gap"] >= 0
        assert r["overall_best_rank"] == 1 + int((col > col[overall]).sum())
        rest = means.drop(columns=r["language"]).mean(axis=1)
        assert r["rho_with_others"] == pytest.approx(sps.spearmanr(col, rest).statistic)
    assert la["best_in"] == sum(means[lg].idxmax() == overall for lg in LANGS)
    # the planted bump makes a 'tb' order the best in xb, and the overall best ('ta...') is not
    xb = next(r for r in la["per_language"] if r["language"] == "xb")
    assert xb["best_order"].startswith("tb") and not overall.startswith("tb") and xb["gap"] > 0.02
    # where another order wins a language: Welch against the overall best there, Holm over those languages
    others = [r for r in la["per_language"] if r["best_order"] != overall]
    cell = tidy.set_index(["order", "language"])["score"]
    ps = [sps.ttest_ind(cell[(r["best_order"], r["language"])], cell[(overall, r["language"])], equal_var=False).pvalue
          for r in others]
    assert [r["p_gap"] for r in others] == pytest.approx(ps)
    assert [r["p_gap_holm"] for r in others] == pytest.approx(S.holm(ps)) and xb["gap_significant"]
    assert all("p_gap" not in r for r in la["per_language"] if r["best_order"] == overall)
    # W over languages: Friedman's chi-square over the orders / (m (n - 1)); average rho = (m W - 1) / (m - 1)
    chi2 = sps.friedmanchisquare(*[means.loc[o].to_numpy() for o in means.index]).statistic  # languages as blocks
    assert la["W"] == pytest.approx(chi2 / (len(LANGS) * (len(means) - 1)))
    rhos = [sps.spearmanr(means[a], means[b]).statistic for i, a in enumerate(LANGS) for b in LANGS[i + 1:]]
    assert la["mean_rho"] == pytest.approx(np.mean(rhos))


def test_too_few_orders_seeds_or_languages_is_underpowered():
    rng = np.random.default_rng(4)
    one_lang = _cube(rng, orders=["ta", "tb", "tc"])
    one_lang = one_lang[one_lang["language"] == "en"]
    assert "underpowered" in S.analyse(one_lang)["by_language"]
    two_seeds = S.analyse(_cube(rng, orders=["ta", "tb", "tc"], seeds=2))["by_language"]
    assert "per_language" in two_seeds and "underpowered" in two_seeds["interaction"]
    assert "p" not in two_seeds["interaction"]


def test_report_section_console_line_and_mlflow_figures(tmp_path, capsys):
    exp, _, out = reported_fake(tmp_path, capsys)
    res = json.loads((exp / "report" / "report.json").read_text())
    la = res["by_language"]
    it = la["interaction"]
    assert f"F({it['df1']}, {it['df2']}) = {it['F']:.2f}" in out  # the answer's line on the console
    assert f"is the best IF order in {la['best_in']} of {len(LANGS)} languages" in out
    md = (exp / "report" / "report.md").read_text()
    assert "## Does the best order depend on the language?" in md
    assert "![Does the best order depend on the language?](by_language.png)" in md
    assert (exp / "report" / "by_language.png").stat().st_size > 5000  # each order's rank per language
    section = md.split("## Does the best order depend on the language?")[1].split("\n## ")[0]
    assert sum(line.startswith("|") for line in section.splitlines()) == 1 + 1 + len(LANGS)  # header, rule, rows
    from search.report import headline_metrics
    m = headline_metrics(res)
    assert m["report_language_interaction_p"] == pytest.approx(it["p"])
    assert m["report_language_best_in"] == pytest.approx(la["best_in"] / len(LANGS))
