"""itt power: the variance components of a pilot search against the report's own ICC, the simulated
power against the report's test run on the same kind of tables, and the command's output and errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from search import power as P
from search import stats as S
from search.cli import main
from tests.test_report import _fake_experiment


def _fig(rng, *, k: int, n: int, ratio: float, sigma: float = 0.02) -> pd.DataFrame:
    """Per-seed figures of k IF orders (and F) under the random-effects model."""
    truth = rng.normal(0, ratio * sigma, k)
    rows = [(f"t{i}", s, 0.6 + truth[i] + rng.normal(0, sigma)) for i in range(k) for s in range(n)]
    rows += [(S.F, s, 0.5 + rng.normal(0, sigma)) for s in range(n)]
    return pd.DataFrame(rows, columns=["order", "seed", "mean"])


def test_h_matches_scipy_and_the_null_is_the_permutation_distribution():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(5, 4, 3))
    assert P._h(v) == pytest.approx([sps.kruskal(*t).statistic for t in v])
    null = P.null_h(4, 3, permutations=3000)
    assert np.all(np.diff(null) >= 0)
    # chi-square with k - 1 df is the large-sample null; with 4 x 3 the permutation null is close in the body
    assert np.median(null) == pytest.approx(sps.chi2.median(3), rel=0.15)


def test_components_agree_with_the_reports_icc():
    rng = np.random.default_rng(1)
    fig = _fig(rng, k=8, n=4, ratio=1.0)
    c = P.components(fig)
    ke = S.order_effect(fig.assign(worst=np.nan, lang_std=np.nan, transfer_gap=np.nan, perturbation=np.nan), "mean")
    assert c["icc"] == pytest.approx(ke["variance_share"])
    within = fig[fig["order"] != S.F].groupby("order")["mean"].var(ddof=1).mean()  # equal seeds: pooled variance
    assert c["sigma"] == pytest.approx(np.sqrt(within))
    assert c["orders"] == 8 and c["ratio"] == pytest.approx(c["tau"] / c["sigma"])


def test_simulated_power_matches_the_reports_test_on_the_same_tables():
    """The planner's shortcut (one permutation null per k x n) against S.order_effect, the report's
    test with its own permutations, on independently drawn tables of the same model."""
    k, n, ratio, reps = 5, 3, 0.9, 600
    sim = P.simulate(k, n, ratio, reps=reps, seed=3)["power"]
    rng = np.random.default_rng(4)
    direct = np.mean([S.order_effect(_fig(rng, k=k, n=n, ratio=ratio, sigma=1.0), "mean")["p"] < S.ALPHA
                      for _ in range(reps)])
    assert abs(sim - direct) < 3 * np.sqrt(2 * 0.25 / reps)  # two binomial proportions, 3 standard errors
    assert 0.2 < sim < 0.95  # a case where power is neither trivial nor saturated


def test_power_size_monotonicity_and_selection():
    null_rate = P.simulate(6, 3, 0.0, reps=2000)["power"]
    assert null_rate <= sps.binom.ppf(0.99, 2000, S.ALPHA) / 2000  # the test's size at no spread
    powers = [P.simulate(6, n, 0.6, reps=1000, seed=n)["power"] for n in (3, 5, 10)]
    assert powers == sorted(powers) and powers[-1] > powers[0] + 0.2
    big = P.simulate(6, 10, 3.0, reps=500)
    assert big["p_best"] > 0.85 and big["regret"] < 0.1  # large spread, many seeds: the best is found
    # the winner's curse: with no spread, the pick's mean overstates it by E[max of 6 N(0, 1/3)]
    flat = P.simulate(6, 3, 0.0, reps=4000)
    e_max6 = 1.2672  # expected maximum of 6 standard normals (Harter, 1961)
    assert flat["curse"] == pytest.approx(e_max6 / np.sqrt(3), rel=0.05)
    assert big["curse"] < flat["curse"]  # a clear best is overstated less
    none = P.simulate(6, 3, 0.0, reps=500)
    assert none["regret"] == 0.0 and none["p_best"] is None  # all orders truly equal: nothing to lose or find


def test_what_the_reports_ranking_would_say_sharpens_with_seeds():
    """The ranking columns: with more seeds the 95% set of possible best orders shrinks and the stated
    P(best) rises, while the set keeps holding the true best (its coverage, bench/ranking_calibration.py)."""
    few, many = P.ranked(8, 3, 1.0, reps=60), P.ranked(8, 12, 1.0, reps=60)
    assert many["set_size"] < few["set_size"] and many["p_best_said"] > few["p_best_said"]
    assert few["set_covers"] >= 0.9 and many["set_covers"] >= 0.9
    assert P.ranked(8, 3, 0.0, reps=20)["set_covers"] is None  # no spread: no true best to cover


def test_itt_power_on_a_pilot_experiment(tmp_path, capsys):
    rng = np.random.default_rng(6)
    fig = _fig(rng, k=7, n=3, ratio=1.2)
    langs = ["en", "xa", "xb"]
    tidy = pd.DataFrame([(r.order, r.seed, lg, r.mean + rng.normal(0, 0.002)) for r in fig.itertuples() for lg in langs],
                        columns=["order", "seed", "language", "score"])
    exp = _fake_experiment(tmp_path, tidy, stopped=())
    out_json = tmp_path / "power.json"
    assert main(["power", str(exp), "--seeds", "3,6", "--reps", "300", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    res = json.loads(out_json.read_text())
    c = P.components(S.seed_figures(tidy))
    assert res["pilot"]["sigma"] == pytest.approx(c["sigma"]) and res["orders"] == 7
    assert [r["seeds"] for r in res["rows"]] == [3, 6] and [r["chains"] for r in res["rows"]] == [21, 42]
    for r in res["rows"]:
        n = r["seeds"]  # the mean half-width of simulated t intervals (the sample sd is below sigma on average)
        draws = np.random.default_rng(n).normal(0, c["sigma"], (40000, n)).std(axis=1, ddof=1)
        assert r["ci_half_width"] == pytest.approx(sps.t.ppf(0.975, n - 1) * draws.mean() / np.sqrt(n), rel=0.01)
        assert 0 <= r["power_half"] <= r["power"] + 0.08
        assert 1 <= r["set_size"] <= 7 and 1 / 7 <= r["p_best_said"] <= 1
    assert "80% power for the order test" in out and "95% set said P(best)" in out and f"{c['sigma']:.4f}" in out


def test_bad_input_is_one_error_line(tmp_path, capsys):
    rng = np.random.default_rng(7)
    fig = _fig(rng, k=3, n=1, ratio=1.0)
    tidy = pd.DataFrame([(r.order, r.seed, lg, r.mean) for r in fig.itertuples() for lg in ("en", "xa", "xb")],
                        columns=["order", "seed", "language", "score"])
    one_seed = _fake_experiment(tmp_path, tidy, stopped=(), name="one_seed")
    for argv, needle in [([str(one_seed)], "IF order(s) with 2+ seeds"),
                         ([str(tmp_path / "nope")], "no such experiment"),
                         ([str(one_seed), "--seeds", "2,5"], "3 or more"),
                         ([str(one_seed), "--reps", "10"], "--reps 10"),
                         ([str(one_seed), "--alpha", "2"], "--alpha 2"),
                         ([str(one_seed), "--orders", "0"], "--orders 0"),
                         ([str(one_seed), "--json", str(tmp_path / "no" / "p.json")], "its folder does not exist"),
                         ([str(one_seed), "--json", str(tmp_path)], "is a folder; give a file path")]:
        assert main(["power", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_report_points_to_itt_power_when_order_effects_are_not_found(tmp_path):
    from search.report import build, load_experiment
    from tests.test_report import _tidy

    rng = np.random.default_rng(8)
    flat = _fake_experiment(tmp_path, _tidy(rng, delta=0.0, seeds=2), stopped=(), name="flat")
    md = build(load_experiment(str(flat)), heuristics=False, log=lambda *_: None)[2]
    assert f"`itt power {flat}`" in md
    strong = _fake_experiment(tmp_path, _tidy(rng, delta=0.2), stopped=(), name="strong")
    assert "itt power" not in build(load_experiment(str(strong)), heuristics=False, log=lambda *_: None)[2]


def _arrangement_fig(rng, *, n: int, arr_ratio: float, sigma: float = 1.0) -> pd.DataFrame:
    """Every order of 1-2 of three tasks; within each pair of tasks the two orders differ by the planted
    N(0, (arr_ratio * sigma)^2) effects; each set has its own offset."""
    rows = []
    for tasks in (("ta", "tb"), ("ta", "tc"), ("tb", "tc")):
        base = rng.normal(0, 3 * sigma)
        for o in (">".join(tasks), ">".join(reversed(tasks))):
            eff = base + rng.normal(0, arr_ratio * sigma)
            rows += [(o, s, eff + rng.normal(0, sigma)) for s in range(n)]
    rows += [(t, s, rng.normal(0, sigma)) for t in ("ta", "tb", "tc") for s in range(n)]
    return pd.DataFrame(rows, columns=["order", "seed", "mean"])


def test_arrangement_power_matches_the_reports_arrangement_test():
    strata, n, ratio, reps = [2, 2, 2], 5, 1.5, 400
    sim = P.simulate_arrangement(strata, n, ratio, reps=reps, seed=5)
    rng = np.random.default_rng(6)
    direct = np.mean([S.arrangement_effect(_arrangement_fig(rng, n=n, arr_ratio=ratio), "mean")["p"] < S.ALPHA
                      for _ in range(reps)])
    assert abs(sim - direct) < 3 * np.sqrt(2 * 0.25 / reps) and 0.2 < sim < 0.95
    # one pair of orders with 3 seeds: 10 distinct labelings, p >= 0.1, the test can never reject
    assert P.simulate_arrangement([2], 3, 5.0, reps=200) == 0.0
    assert abs(P.simulate_arrangement([2, 2, 2], 5, 0.0, reps=2000) - S.ALPHA) < 0.02  # the test's size


def test_arrangement_components_recover_the_planted_spread():
    rng = np.random.default_rng(7)
    est = [P.arrangement_components(_arrangement_fig(rng, n=20, arr_ratio=1.0), "mean", 1.0) for _ in range(40)]
    assert all(e["strata"] == [2, 2, 2] for e in est)
    assert np.median([e["ratio"] for e in est]) == pytest.approx(1.0, abs=0.35)  # 3 pairs: a loose estimate
    none = P.arrangement_components(_fig(rng, k=4, n=3, ratio=1.0), "mean", 1.0)  # single-task orders only
    assert none["strata"] == [] and "no set of tasks" in none["reason"]


def test_the_report_says_when_a_permutation_test_cannot_reject_at_all():
    """Two orders with 3 seeds: 20 labelings, 2 of them the most extreme: p >= 0.1 whatever the data."""
    rng = np.random.default_rng(9)
    two = [rng.normal(0, 1, 3), rng.normal(5, 1, 3)]  # as separated as data can be
    h, p, floor = S.kw_permutation([two], floor=True)
    assert floor == pytest.approx(0.1, abs=0.02) and p == pytest.approx(floor)
    assert S.kw_permutation([two]) == (h, p)  # the default keeps its two values
    many = [rng.normal(i, 1, 3) for i in range(5)]
    assert S.kw_permutation([many], floor=True)[2] < S.ALPHA
    from search.report import _floor

    assert "cannot detect an effect here" in _floor({"p_floor": floor}, S.ALPHA) and _floor({"p_floor": 0.001}, 0.05) == ""
    fig = S.seed_figures(pd.DataFrame([(o, s, "en", v) for o, g in (("ta>tb", two[0]), ("tb>ta", two[1]))
                                       for s, v in enumerate(g)], columns=["order", "seed", "language", "score"]))
    assert S.arrangement_effect(fig)["p_floor"] == pytest.approx(0.1, abs=0.02)


def test_planning_at_no_spread_says_what_power_is(capsys):
    """A spread of 0 assumed (no pilot): the text said "The pilot shows no spread ... every seed count has power
    alpha" beside a power of 0.00 (2 orders x 3 seeds cannot reach p <= 0.05)."""
    assert main(["power", "--seed-sd", "0.02", "--spread", "0", "--orders", "2", "--seeds", "3", "--reps", "200"]) == 0
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.split()[:2] == ["3", "6"])
    assert float(row[2]) == 0.0
    assert "The spread assumed is 0: at it, the order test's power is at most alpha" in out and "pilot shows" not in out


def test_planning_without_a_pilot(capsys, tmp_path):
    out_json = tmp_path / "p.json"
    argv = ["power", "--seed-sd", "0.02", "--spread", "0.01", "--orders", "16", "--seeds", "3,8", "--reps", "300"]
    assert main([*argv, "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    res = json.loads(out_json.read_text())
    assert res["pilot"]["assumed"] and res["pilot"]["ratio"] == pytest.approx(0.5) and res["orders"] == 16
    for r in res["rows"]:  # the same simulation as from a pilot with that ratio
        assert r["power"] == P.simulate(16, r["seeds"], 0.5, reps=300)["power"]
        assert "power_arrangement" not in r
    assert "assumed (no pilot search)" in out and "at the assumed spread" in out
    for extra, needle in ((["--seed-sd", "0.02"], "give all of --seed-sd, --spread and --orders"),
                          (["--seed-sd", "0", "--spread", "0.01", "--orders", "4"], "must be positive"),
                          (["--seed-sd", "inf", "--spread", "0.01", "--orders", "4"], "(both finite)"),
                          (["--seed-sd", "0.02", "--spread", "nan", "--orders", "4"], "(both finite)"),
                          (["x", "--seed-sd", "0.02", "--spread", "0.01"], "not both")):
        assert main(["power", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err


def test_simulated_power_has_size_alpha_without_a_spread():
    """Every simulated search of a row is compared with one null sample (null_h): its Monte Carlo error is
    the same in every figure of the row. With no spread between orders the simulated power is the test's
    size, alpha; 4,000 null permutations gave 0.043 for 12 orders x 3 seeds (20,000 searches: se 0.0015)."""
    for k, n in ((12, 3), (8, 5)):
        size = P.simulate(k, n, 0.0, reps=20000, seed=3)["power"]
        assert abs(size - 0.05) < 0.005, (k, n, size)
