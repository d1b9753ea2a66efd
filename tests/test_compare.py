"""``itt compare``: do orders hold up across searches? The statistics against scipy and hand
computations, planted agreement found and none found at the false-positive rate, and the command on
experiment directories (files, console answer, bad input)."""

from __future__ import annotations

import csv
import itertools
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from search import compare as C
from search import stats as S
from search.cli import main
from tests.test_report import LANGS, _fake_experiment, _orders

ORDERS = _orders()  # F, 4 singles, 12 pairs of 4 toy tasks


def _tidy(rng, effects, *, seeds=3, seed_sd=0.01) -> pd.DataFrame:
    """Per-seed, per-language scores: order i gets effects[i], each seed a shared shift."""
    rows = []
    for o, e in zip(ORDERS, effects):
        for s in range(seeds):
            shift = rng.normal(0, seed_sd)
            rows += [(o, s, lang, 0.7 - 0.1 * i + e + shift + rng.normal(0, 0.002)) for i, lang in enumerate(LANGS)]
    return pd.DataFrame(rows, columns=["order", "seed", "language", "score"])


def _fig(t: pd.DataFrame) -> pd.DataFrame:
    return S.seed_figures(t)


# ------------------------------------------------------------------ the statistics
def test_kendall_w_against_friedman_spearman_and_a_permutation_test():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 6, size=(9, 4)).astype(float)  # ties in every column
    w, _ = C.kendall_w(v)
    chi2 = sps.friedmanchisquare(*v).statistic  # orders are the treatments, searches the blocks
    assert chi2 == pytest.approx(4 * (9 - 1) * w)
    # two searches without ties: W = (rho + 1) / 2, and the permutation p-value is the one-sided test of rho
    x, y = rng.normal(size=10), rng.normal(size=10)
    y = 0.6 * x + 0.8 * y
    w, p = C.kendall_w(np.column_stack([x, y]))
    rho = sps.spearmanr(x, y).statistic
    assert w == pytest.approx((rho + 1) / 2)
    ref = sps.permutation_test((x, y), lambda a, b: sps.spearmanr(a, b).statistic, permutation_type="pairings",
                               alternative="greater", n_resamples=9999, rng=np.random.default_rng(1)).pvalue
    assert abs(p - ref) < 0.02, (p, ref)
    assert C.kendall_w(np.column_stack([x, y])) == (w, p)  # seeded
    assert C.kendall_w(np.column_stack([x, x, x]))[0] == pytest.approx(1.0)


def test_kendall_w_rejects_at_the_false_positive_rate_and_finds_planted_agreement():
    rng = np.random.default_rng(1)
    null = [C.kendall_w(rng.normal(size=(12, 3)), permutations=500)[1] for _ in range(200)]
    rate = np.mean(np.array(null) < 0.05)
    assert 0.01 <= rate <= 0.10, rate  # binomial(200, 0.05): 0.02-0.08 in 99% of draws
    shared = rng.normal(size=12)
    planted = [C.kendall_w(np.column_stack([shared + 0.5 * rng.normal(size=12) for _ in range(3)]),
                           permutations=500)[1] for _ in range(20)]
    assert np.mean(np.array(planted) < 0.05) >= 0.9


def test_split_half_reliability_against_every_split_enumerated():
    """With 2 seeds per order a split sends one seed of each order to each half: 2^n assignments. The
    sampled mean rho matches the mean over all of them (Monte Carlo error), and Spearman–Brown steps it up."""
    rng = np.random.default_rng(2)
    orders = ORDERS[:6]
    fig = _fig(_tidy(rng, rng.normal(0, 0.01, len(ORDERS)), seeds=2, seed_sd=0.01))
    fig = fig[fig["order"].isin(orders)]
    r = C.split_half(fig, splits=400)
    wide = fig.pivot(index="order", columns="seed", values="mean").loc[orders].to_numpy()
    every = [sps.spearmanr(wide[np.arange(6), bits], wide[np.arange(6), 1 - np.array(bits)]).statistic
             for bits in itertools.product([0, 1], repeat=6)]
    se = np.std(every) / np.sqrt(400)
    assert abs(r["half_rho"] - np.mean(every)) < 4 * se, (r["half_rho"], np.mean(every), se)
    assert r["reliability"] == pytest.approx(max(0.0, 2 * r["half_rho"] / (1 + r["half_rho"])))
    # seed noise only: no reliability to speak of; strong effects: close to 1
    noise = C.split_half(_fig(_tidy(rng, np.zeros(len(ORDERS)), seeds=4, seed_sd=0.02)))
    strong = C.split_half(_fig(_tidy(rng, rng.normal(0, 0.05, len(ORDERS)), seeds=4, seed_sd=0.005)))
    assert noise["reliability"] < 0.5 < 0.95 < strong["reliability"]
    assert "underpowered" in C.split_half(_fig(_tidy(rng, np.zeros(len(ORDERS)), seeds=1)))


def test_pair_against_scipy_and_by_hand():
    a = pd.Series({"": 0.50, "x": 0.60, "y": 0.55, "z": 0.40, "only_a": 0.9})
    b = pd.Series({"": 0.52, "x": 0.58, "y": 0.61, "z": 0.45, "only_b": 0.1})
    p = C.pair("A", a, "B", b)
    shared = ["", "x", "y", "z"]
    assert p["n_shared"] == 4
    assert p["tau"] == pytest.approx(sps.kendalltau(a[shared], b[shared]).statistic)
    assert p["rho"] == pytest.approx(sps.spearmanr(a[shared], b[shared]).statistic)
    # A's best shared order is x: 2nd of 4 in B, 0.61 - 0.58 below B's best (y); B's best y is 2nd in A
    assert p["best_of_a"] == {"order": "x", "rank_in_other": 2, "of": 4, "shortfall": pytest.approx(0.03),
                              "others_best": "y"}
    assert p["best_of_b"]["order"] == "y" and p["best_of_b"]["rank_in_other"] == 2
    assert p["best_of_b"]["shortfall"] == pytest.approx(0.05)
    assert "underpowered" in C.pair("A", a[["x", "y"]], "B", b)
    flat = C.pair("A", a, "B", b * 0 + 0.34)  # B scores every order alike: no ranking (scipy: nan)
    assert flat["underpowered"] == "B scores all 4 shared orders alike (0.3400)" and "tau" not in flat


def test_concordance_where_every_search_scores_the_shared_orders_alike_is_not_a_nan_w():
    """Chains that learned nothing score every order alike in every search: Kendall's W is 0/0. The
    comparison says there is no ranking to agree on (as a pair does), not 'W = nan ... rho +nan'."""
    orders = [S.F, "a", "b", "c", "d"]

    def fig(vals):
        return pd.DataFrame({"order": np.repeat(orders, 3), "seed": np.tile(range(3), 5), "mean": np.repeat(vals, 3)})

    flat = [0.3, 1 / 3, 1 / 3, 1 / 3, 1 / 3]
    res = C.analyse([{"name": n, "experiment": n, "fig": fig(flat)} for n in ("s1", "s2")])
    assert "nan" not in res["headline"], res["headline"]
    assert res["concordance"]["underpowered"] == "every search scores all 4 IF orders completed in both alike: no ranking to agree on"
    assert "W" not in res["concordance"]
    _, _, metrics = C.run_figures(res)
    assert "kendall_w" not in metrics


def test_concordance_says_when_no_rankings_could_be_significant():
    """Three IF orders in two searches: 3! = 6 ways to rank them, so W's permutation p cannot fall below 1/6.
    With identical rankings (W = 1) the headline said only "No evidence that the searches rank IF orders
    alike", as if they disagreed."""
    orders = [S.F, "a", "b", "c"]

    def fig(vals):
        return pd.DataFrame({"order": np.repeat(orders, 3), "seed": np.tile(range(3), 4),
                             "mean": np.repeat(vals, 3) + np.tile([0.0, 0.001, 0.002], 4)})

    res = C.analyse([{"name": "s1", "experiment": "s1", "fig": fig([0.5, 0.6, 0.7, 0.8])},
                     {"name": "s2", "experiment": "s2", "fig": fig([0.4, 0.62, 0.65, 0.9])}])
    c = res["concordance"]
    assert c["W"] == pytest.approx(1.0) and not c["significant"]
    assert c["p_floor"] == pytest.approx(1 / 6, abs=0.03) and c["p"] >= c["p_floor"] - 1e-12
    assert (f"(with 3 orders and 2 searches the smallest p any rankings could reach is {c['p_floor']:.2g} > α, so "
            f"this test cannot detect agreement here, however close)") in res["headline"], res["headline"]
    # four orders: 1/24 < 0.05, the test can reject, and the headline says nothing of a floor
    res = C.analyse([{"name": n, "experiment": n, "fig": pd.DataFrame(
        {"order": np.repeat(["a", "b", "c", "d"], 2), "seed": np.tile(range(2), 4),
         "mean": np.repeat([0.6, 0.7, 0.8, 0.9], 2) + k * np.tile([0.0, 0.01], 4)})} for k, n in enumerate(("s1", "s2"))])
    assert res["concordance"]["p_floor"] < 0.05 and "smallest p" not in res["headline"]


def test_across_searches_the_robust_order_and_its_significance():
    """Order 'ta' gains over F in both searches; 'tb' gains a lot in one and loses in the other: tb may
    rank first somewhere, but ta is the robust choice. Gains and Holm-corrected Welch tests are
    checked against an independent computation."""
    rng = np.random.default_rng(3)
    base = rng.normal(0, 0.005, len(ORDERS))
    e1, e2 = base.copy(), base.copy()
    ta, tb = ORDERS.index("ta"), ORDERS.index("tb")
    e1[ta], e2[ta] = 0.05, 0.04
    e1[tb], e2[tb] = 0.08, -0.05
    t1, t2 = _tidy(rng, e1, seed_sd=0.005), _tidy(rng, e2, seed_sd=0.005)
    res = C.analyse([{"name": "s1", "fig": _fig(t1)}, {"name": "s2", "fig": _fig(t2)}])
    acr = res["across"]
    assert acr["n_shared"] == len(ORDERS) and acr["most_robust"] == "ta"
    rows = {r["order"]: r for r in acr["orders"]}
    for name, t in (("s1", t1), ("s2", t2)):
        per_seed = t.groupby(["order", "seed"])["score"].mean()
        gain = per_seed["tb"].mean() - per_seed[""].mean()
        assert rows["tb"]["per_search"][name]["gain_over_F"] == pytest.approx(gain)
    ps = [sps.ttest_ind(t.groupby(["order", "seed"])["score"].mean()["ta"],
                        t.groupby(["order", "seed"])["score"].mean()[""], equal_var=False).pvalue for t in (t1, t2)]
    holm = S.holm(ps)
    assert [rows["ta"]["per_search"][k]["p_vs_F_holm"] for k in ("s1", "s2")] == pytest.approx(holm)
    assert rows["ta"]["helps_in"] == 2 and rows["tb"]["helps_in"] == 1 and rows["tb"]["hurts_in"] == 1
    assert rows["ta"]["least_gain_over_F"] > 0 > rows["tb"]["least_gain_over_F"]
    assert rows[""]["least_gain_over_F"] is None  # F against itself: no gain
    mean_rank = np.mean([rows["ta"]["per_search"][k]["rank"] for k in ("s1", "s2")])
    assert rows["ta"]["mean_rank"] == pytest.approx(mean_rank)
    assert "most robust: ta" in res["headline"]
    # the noise ceiling of a pair's rho: each search's split-half reliability on the IF orders the rho is over
    part = C.analyse([{"name": "s1", "fig": _fig(t1)}, {"name": "s2", "fig": _fig(t2[t2["order"].isin(ORDERS[:9])])}])
    shared = [o for o in ORDERS[:9] if o != ""]
    rel = [C.split_half(_fig(t[t["order"].isin(shared)]))["reliability"] for t in (t1, t2)]
    assert part["pairs"][0]["n_shared"] == len(shared) and part["pairs"][0]["ceiling"] == pytest.approx(np.sqrt(rel[0] * rel[1]))
    # P(best) in each search: the report's model on the shared orders of that search alone; everywhere: the product
    from search import ranking

    for name, t in (("s1", t1), ("s2", t2)):
        alone = {x["order"]: x["p_best"] for x in ranking.analyse(_fig(t))["rows"]}
        assert {o: r["per_search"][name]["p_best"] for o, r in rows.items() if o} == pytest.approx(alone)
    assert rows["ta"]["p_best_everywhere"] == pytest.approx(rows["ta"]["per_search"]["s1"]["p_best"]
                                                            * rows["ta"]["per_search"]["s2"]["p_best"])
    # tb is likely the best in s1 but not in s2; ta, second in s1 and first in s2, is the likelier everywhere
    assert rows["tb"]["per_search"]["s1"]["p_best"] > 0.5 > rows["tb"]["per_search"]["s2"]["p_best"]
    assert acr["most_likely_everywhere"] == "ta" and rows[""]["p_best_everywhere"] is None
    assert "most likely the best in every search: ta (P = " in res["headline"]


# ------------------------------------------------------------------ the command
def _three(tmp_path, seed=4):
    """Searches a and b share their order effects (b = 0.9 a + noise); c's are mostly its own."""
    rng = np.random.default_rng(seed)
    ea = rng.normal(0, 0.03, len(ORDERS))
    exps = [_fake_experiment(tmp_path, _tidy(rng, e), stopped=(), name=n)
            for n, e in (("a", ea), ("b", 0.9 * ea + 0.4 * rng.normal(0, 0.03, len(ORDERS))),
                         ("c", 0.3 * ea + rng.normal(0, 0.03, len(ORDERS))))]
    return exps


def test_compare_writes_the_comparison_and_answers_on_the_console(tmp_path, capsys):
    a, b, c = _three(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), str(c), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for f in ("compare.html", "compare.md", "compare.json", "across.png", "ranks.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    res = json.loads((out / "compare.json").read_text())
    # W over the three searches' order means, computed here from the tidy files' results.json
    means = {}
    for exp in (a, b, c):
        rows = []
        for tr in (exp / "trials").iterdir():
            r = json.loads(tr.joinpath("results.json").read_text())
            order = next(x["order"] for x in csv.DictReader(open(exp / "results.csv")) if x["trial_id"] == tr.name)
            per_seed = [np.mean([v["accuracy"] for v in s["test"]["per_language"].values()]) for s in r["seeds"].values()]
            rows.append((order, np.mean(per_seed)))
        means[exp.name] = dict(rows)
    ifs = sorted(o for o in ORDERS if o != "")  # F left out: ranked last everywhere, it would make rankings agree
    v = np.array([[means[n][o] for n in "abc"] for o in ifs])
    w, p = C.kendall_w(v)
    assert res["concordance"]["W"] == pytest.approx(w) and res["concordance"]["p"] == pytest.approx(p)
    assert res["concordance"]["mean_rho"] == pytest.approx(np.mean([sps.spearmanr(v[:, i], v[:, j]).statistic
                                                                    for i, j in ((0, 1), (0, 2), (1, 2))]))
    assert res["concordance"]["n_orders"] == len(ifs) and res["concordance"]["significant"]
    ab = next(x for x in res["pairs"] if (x["a"], x["b"]) == ("a", "b"))
    assert ab["tau"] == pytest.approx(sps.kendalltau([means["a"][o] for o in ifs], [means["b"][o] for o in ifs]).statistic)
    assert ab["p_tau"] < 0.05 and 0 < ab["ceiling"] <= 1
    assert "The searches rank IF orders alike more than chance would" in printed and "a vs b: Kendall tau" in printed
    assert "1/3 = 0.33: chance; mean Spearman rho between searches +" in printed
    md = (out / "compare.md").read_text()
    assert "![An order for every search](across.png)" in md and "| a / b |" in md
    assert (out / "compare.html").read_text().count("data:image/png;base64,") == 2
    # --figure worst compares the worst language instead
    assert main(["compare", str(a), str(b), "--out", str(out), "--figure", "worst"]) == 0
    res = json.loads((out / "compare.json").read_text())
    assert res["figure"] == "worst" and len(res["searches"]) == 2 and len(res["pairs"]) == 1


def test_compare_names_two_searches_of_one_name_by_their_folder(tmp_path, capsys):
    rng = np.random.default_rng(5)
    x = _fake_experiment(tmp_path / "one", _tidy(rng, rng.normal(0, 0.03, len(ORDERS))), stopped=(), name="xnli")
    y = _fake_experiment(tmp_path / "two", _tidy(rng, rng.normal(0, 0.03, len(ORDERS))), stopped=(), name="xnli")
    assert main(["compare", str(x), str(y), "--out", str(tmp_path / "cmp")]) == 0
    names = [s["name"] for s in json.loads((tmp_path / "cmp" / "compare.json").read_text())["searches"]]
    assert names[0] == "xnli" and names[1] != "xnli" and str(y) in names[1]


def test_compare_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    a, b, _ = _three(tmp_path)
    out = tmp_path / "cmp"

    def err(args, *needles):
        assert main(["compare", *map(str, args), "--out", str(out)]) == 2
        e = capsys.readouterr().err.strip().splitlines()
        assert len(e) == 1 and e[0].startswith("error: "), e
        for n in needles:
            assert n in e[0], e[0]
        assert not out.exists()

    err([a], "two or more")
    err([a, tmp_path / "a"], "listed twice")
    err([a, tmp_path / "nope"], "no such experiment directory")
    err([a, b, "--alpha", "2"], "--alpha")
    (tmp_path / "empty").mkdir()
    err([a, tmp_path / "empty"], "no results.csv")


def test_compare_is_logged_to_mlflow_once_per_set_of_searches(tmp_path, capsys):
    """The searches' store (tracking/search.json) gets one run in experiment itt-compare: the files as
    artifacts, W and the pairs' tau as metrics; comparing the same searches again updates that run.
    Searches in different stores are not logged (one line says why); --no-mlflow says so."""
    from mlflow import MlflowClient

    from search.tracking import COMPARE_EXPERIMENT

    a, b, c = _three(tmp_path)
    uri = f"sqlite:///{tmp_path / 'ml.db'}"
    for exp in (a, b, c):
        (exp / "tracking").mkdir()
        (exp / "tracking" / "search.json").write_text(json.dumps({"name": exp.name, "tracking_uri": uri}))
    out = tmp_path / "cmp"
    for _ in range(2):
        assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert "these searches were compared before" in printed[-1] and "viewStateShareKey=itt-compare" in printed[-1]
    client = MlflowClient(uri)
    e = client.get_experiment_by_name(COMPARE_EXPERIMENT)
    assert e.tags["mlflow.experimentKind"] == "custom_model_development"
    assert e.artifact_location == (tmp_path / "mlruns" / COMPARE_EXPERIMENT).as_uri()  # beside the store
    runs = client.search_runs([e.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    res = json.loads((out / "compare.json").read_text())
    m = runs[0].data.metrics
    assert m["kendall_w"] == pytest.approx(res["concordance"]["W"]) and m["tau a vs b"] == pytest.approx(res["pairs"][0]["tau"])
    assert runs[0].data.params["searches"] == f"{a}, {b}"
    assert runs[0].data.tags["mlflow.note.content"] == res["headline"]
    arts = {x.path for x in client.list_artifacts(runs[0].info.run_id, "compare")}
    assert {"compare/compare.html", "compare/compare.json", "compare/across.png"} <= arts
    # another set of searches: a second run
    assert main(["compare", str(a), str(b), str(c), "--out", str(out)]) == 0
    assert len(client.search_runs([e.experiment_id])) == 2
    (c / "tracking" / "search.json").write_text(json.dumps({"name": "c", "tracking_uri": f"sqlite:///{tmp_path / 'other.db'}"}))
    capsys.readouterr()
    assert main(["compare", str(a), str(c), "--out", str(out)]) == 0
    assert "MLflow: not logged (the searches track to 2 different stores" in capsys.readouterr().out
    assert main(["compare", str(a), str(b), "--out", str(out), "--no-mlflow"]) == 0
    assert capsys.readouterr().out.strip().endswith("MLflow: not logged (--no-mlflow)")


def test_compare_on_one_language(tmp_path, capsys):
    a, b, c = _three(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out), "--figure", "lang:xa", "--no-mlflow"]) == 0
    res = json.loads((out / "compare.json").read_text())
    means = {}
    for exp in (a, b):  # xa's score per order, averaged over seeds, read here from the trials' results.json
        ids = {x["trial_id"]: x["order"] for x in csv.DictReader(open(exp / "results.csv"))}
        means[exp.name] = {ids[tr.name]: np.mean([s["test"]["per_language"]["xa"]["accuracy"] for s in
                                                  json.loads((tr / "results.json").read_text())["seeds"].values()])
                           for tr in (exp / "trials").iterdir()}
    v = np.array([[means[n][o] for n in "ab"] for o in sorted(ORDERS) if o != ""])
    assert res["figure"] == "lang:xa" and res["label"] == "score in xa"
    assert res["concordance"]["W"] == pytest.approx(C.kendall_w(v)[0])
    assert "score in xa" in (out / "compare.md").read_text() and "score in xa" in (out / "compare.tex").read_text()
    capsys.readouterr()
    for fig, needle in (("lang:zz", "no scores in language 'zz' (it has en, xa, xb)"), ("lang:", "--figure lang:"),
                        ("best", "--figure best: one of mean, worst, or lang:")):
        assert main(["compare", str(a), str(b), "--out", str(tmp_path / "x"), "--figure", fig, "--no-mlflow"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "x").exists()


def test_p_best_everywhere_says_it_assumes_unrelated_order_effects():
    """P(best everywhere) is the product of each search's P(best): the chance that an order is the best in
    every search only where the searches' order effects are unrelated. With the same effects in two
    searches of independent seeds (what `itt confirm --vary` hopes to find), orders it put at 0.1-0.3 were
    the best in both about half the time (/tmp/review_stats/sim_pbest_everywhere.py): the text says so
    and does not call it the chance for independent searches."""
    rng = np.random.default_rng(5)
    effects = rng.normal(0, 0.01, len(ORDERS))
    res = C.analyse([{"name": n, "experiment": n, "fig": _fig(_tidy(rng, effects))} for n in ("s1", "s2")])
    assert res["across"].get("most_likely_everywhere")
    assert "if the searches' order effects were unrelated" in res["headline"]
    (_, text, _, _), _ = C._across_sections(res)
    assert "(the searches are independent)" not in text
    assert "understates" in text and "Independent seeds are not enough" in text
