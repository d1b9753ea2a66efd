"""``itt confirm``: the search's picks, the confirmation's config, its statistics against scipy, and a
simulated search confirmed end to end through Ray (fresh seeds only, the report's section); bad input."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from search import confirm as C
from search import stats as S
from search.cli import main
from tests.conftest import TINY
from tests.test_report import _sim_table


def test_picks_take_the_recommendation_first_then_the_best_scores_with_their_hyperparameters():
    rows = [{"trial_id": "t1", "status": "completed", "order": "a>b", "score": "0.7", "hp:train.lr": "2e-05"},
            {"trial_id": "t2", "status": "completed", "order": "b", "score": "0.8", "hp:train.lr": "3e-05"},
            {"trial_id": "t3", "status": "stopped", "order": "c", "score": ""},
            {"trial_id": "t4", "status": "completed", "order": "", "score": "0.9"},  # F is the reference, never a pick
            {"trial_id": "t5", "status": "completed", "order": "b", "score": "0.75", "hp:train.lr": "1e-05"},
            {"trial_id": "t6", "status": "completed", "order": "c>a", "score": "0.6", "hp:train.lr": "2e-05"}]
    got = C.picks(rows, {"order": "a>b", "hparams": {"train.lr": 2e-5}}, top=3)
    assert [p["order"] for p in got] == ["a>b", "b", "c>a"]
    assert got[0]["why"] == "the searcher's recommendation" and got[1]["hparams"] == {"train.lr": 3e-5}
    assert [p["order"] for p in C.picks(rows, None, top=2)] == ["b", "a>b"]


def test_confirm_config_runs_only_the_picks_on_fresh_seeds_with_their_own_or_the_first_picks_hyperparameters():
    config = {"train": {"lr": 1e-3}, "seeds": [0], "search": {
        "candidates": ["a", "b", "c"], "length": [0, 2], "searcher": "auto", "num_samples": 40, "seeds": [0, 1, 2],
        "hparams": {"train.lr": {"float": [1e-5, 1e-3]}, "stages.*.epochs": {"choice": [1, 2]}},
        "scheduler": {"type": "asha"}, "prior_from": ["runs/x"], "seed_points": {"singles": True},
        "tracking": {"enabled": True, "experiment": "orders-xnli"}}}
    picks = [{"order": "a>b", "hparams": {"train.lr": 2e-5, "stages.a.epochs": 2, "stages.b.epochs": 1}},
             {"order": "c", "hparams": {"train.lr": 5e-4, "stages.c.epochs": 1}}]
    # own (the default): the search's hyperparameter space stays; each point fixes its trial's values
    cfg, notes = C.confirm_config(config, picks, [7, 8], baseline=True, f_hparams={"train.lr": 1e-4})
    s = cfg["search"]
    assert s["seed_points"] == {"baseline": True, "singles": False, "orders": ["a>b", "c"], "heuristics": [],
                                "hparams": {"a>b": picks[0]["hparams"], "c": picks[1]["hparams"],
                                            "F": {"train.lr": 1e-4}}}
    assert s["hparams"] == config["search"]["hparams"] and cfg["train"]["lr"] == 1e-3 and notes == []
    assert s["num_samples"] == 3 and s["seeds"] == [7, 8] and s["scheduler"] == {"type": "none"}
    assert s["prior_from"] is None and s["prior"] == "none" and s["report"] is False and s["searcher"] == "random"
    assert s["tracking"] == {"enabled": True, "experiment": None}  # MLflow experiment: the run's name
    # first: nothing searched, the first pick's set in the chain config (its per-stage values by task too)
    picks[0]["hparams"]["stages.*.warmup"] = 0.1  # (an unexpanded key: no single setting)
    cfg, notes = C.confirm_config(config, picks, [7, 8], baseline=True, hparams="first", f_hparams={"train.lr": 1e-4})
    s = cfg["search"]
    assert s["hparams"] == {} and s["seed_points"]["hparams"] == {}
    assert cfg["train"]["lr"] == 2e-5 and cfg["stages"] == {"a": {"epochs": 2}, "b": {"epochs": 1}}
    assert notes == ["per-stage hyperparameter stages.*.warmup keeps the config's default"]
    assert config["train"]["lr"] == 1e-3 and config["search"]["num_samples"] == 40  # the search's own is untouched


def test_top_set_picks_the_credible_set_with_each_orders_best_trial():
    rows = [{"trial_id": "t1", "status": "completed", "order": "a>b", "score": "0.7", "hp:train.lr": "2e-05"},
            {"trial_id": "t2", "status": "completed", "order": "a>b", "score": "0.8", "hp:train.lr": "3e-05"},
            {"trial_id": "t3", "status": "completed", "order": "c", "score": "0.6", "hp:train.lr": "1e-05"},
            {"trial_id": "t4", "status": "stopped", "order": "b", "score": ""}]
    ranked = {"level": 0.95, "set": ["c", "a>b", "b"], "rows": [{"order": "c", "p_best": 0.6},
                                                                {"order": "a>b", "p_best": 0.38},
                                                                {"order": "b", "p_best": 0.02}]}
    got = C.set_picks(rows, ranked)  # (b has no completed trial: nothing to run it with)
    assert [(p["order"], p["hparams"]) for p in got] == [("c", {"train.lr": 1e-5}), ("a>b", {"train.lr": 3e-5})]
    assert got[0]["why"] == "P(best) 0.60, in the 95% set of possible best orders"


def test_f_takes_the_searchs_f_trial_hyperparameters_or_the_first_picks():
    from search.config import SearchConfig

    scfg = SearchConfig(candidates=["a", "b"], length=[0, 2], hparams={"train.lr": {"float": [1e-5, 1e-3]}})
    rows = [{"trial_id": "t1", "status": "completed", "order": "", "score": "0.5", "hp:train.lr": "0.0001"},
            {"trial_id": "t2", "status": "completed", "order": "", "score": "0.6", "hp:train.lr": "0.0003"},
            {"trial_id": "t3", "status": "stopped", "order": "", "score": "", "hp:train.lr": "0.0009"}]
    chosen = [{"order": "a>b", "hparams": {"train.lr": 2e-5, "stages.a.epochs": 2}}]
    assert C.baseline_hparams(rows, chosen, scfg) == ({"train.lr": 3e-4}, None)
    hp, note = C.baseline_hparams(rows[:0], chosen, scfg)
    assert hp == {"train.lr": 2e-5} and note.startswith("the search ran no F, so F takes the first pick's")
    assert C.baseline_hparams(rows, chosen, SearchConfig(candidates=["a", "b"], length=[0, 2])) == ({}, None)


def test_an_added_order_takes_the_first_picks_hyperparameters_that_apply_to_it(write_config):
    """--add beside a pick of a search that searched per-stage values (stages.*.epochs): the pick's value for a
    task the added order lacks is no hyperparameter of that order; given anyway, the confirmation's own
    config was refused (an error naming a temporary file) and the confirmation never ran."""
    from search.config import SearchConfig, load_search

    tasks = ["toy_topic", "toy_align", "toy_length"]
    search = {"candidates": tasks, "length": [0, 2], "searcher": "random", "seeds": [0, 1],
              "hparams": {"train.lr": {"float": [1e-5, 1e-3]}, "stages.*.epochs": {"choice": [1, 2]}}}
    scfg = SearchConfig(**search)
    chosen = [{"order": "toy_topic>toy_align", "why": "trial t1",
               "hparams": {"train.lr": 2e-5, "stages.toy_topic.epochs": 2, "stages.toy_align.epochs": 1}}]
    got = C.added(["toy_length", "toy_topic>toy_length"], scfg, chosen)
    assert [p["hparams"] for p in got] == [{"train.lr": 2e-5}, {"train.lr": 2e-5, "stages.toy_topic.epochs": 2}]
    config = yaml.safe_load(write_config({"search": search}).read_text())
    cfg, _ = C.confirm_config(config, chosen + got, [5, 6], baseline=True, f_hparams={"train.lr": 1e-4})
    assert load_search(write_config(cfg, base=None, name="confirm.yaml"))[0].seed_points.hparams["toy_length"] == {"train.lr": 2e-5}


def test_confirmation_statistics_against_scipy():
    rng = np.random.default_rng(0)
    fresh = {"a>b": rng.normal(0.70, 0.01, 5), "c": rng.normal(0.66, 0.01, 5), "d": rng.normal(0.67, 0.01, 5),
             "": rng.normal(0.60, 0.01, 5)}
    fig = pd.DataFrame([(o, s, v) for o, vs in fresh.items() for s, v in enumerate(vs)], columns=["order", "seed", "mean"])
    confirm = {"source": "runs/x", "seeds": [3, 4, 5, 6, 7], "search_seeds": [0, 1, 2], "baseline": True,
               "picks": [{"order": "a>b"}, {"order": "c"}, {"order": "d"}],
               "search_means": {"a>b": {"mean": 0.73}, "c": {"mean": 0.65}, "d": {"mean": 0.64}, "": {"mean": 0.61}}}
    c = C.analyse(confirm, fig)
    rows = {r["order"]: r for r in c["orders"]}
    assert rows["a>b"]["shift"] == pytest.approx(fresh["a>b"].mean() - 0.73)
    lo, hi = sps.t.interval(0.95, 4, loc=fresh["c"].mean(), scale=sps.sem(fresh["c"]))
    assert (rows["c"]["ci_low"], rows["c"]["ci_high"]) == pytest.approx((lo, hi))
    ps = [sps.ttest_ind(fresh["a>b"], fresh[o], equal_var=False).pvalue for o in ("c", "d", "")]
    assert [t["b"] for t in c["tests"]] == ["c", "d", ""]
    assert [t["p_holm"] for t in c["tests"]] == pytest.approx(S.holm(ps))
    # the picks only: F, last on both sides, would count as a replicated rank
    rho = sps.spearmanr([0.73, 0.65, 0.64], [fresh[o].mean() for o in ("a>b", "c", "d")]).statistic
    assert c["replication"] == {"rho": pytest.approx(rho), "n": 3}
    two = C.analyse({**confirm, "picks": confirm["picks"][:2]}, fig[fig["order"] != "d"])
    assert two["replication"] == {"underpowered": "2 IF order(s) with both scores (need 3)"}
    assert C.headline(c).startswith("Confirmed on 5 fresh seed(s): a>b 0.")
    assert "against F +0." in C.headline(c)
    # every order scoring alike on the fresh seeds (a fine-tune that collapsed to one class): no ranking to
    # compare, said as such (scipy's rho is nan there; the report's section formatted it and crashed)
    flat = fig.assign(mean=lambda d: d["seed"] * 0.01 + 0.34)
    c = C.analyse(confirm, flat)
    assert c["replication"] == {"underpowered": "the fresh seeds scored all 3 orders alike (0.3600): no ranking to compare"}
    from search.report import confirmation_section

    assert "Replication of the ranking not measured: the fresh seeds scored all 3" in confirmation_section(c)[1]


def test_confirm_a_simulated_search_on_fresh_seeds(tmp_path, ray_local, capsys):
    """A search on seeds 0-2 of a simulated table with `search.confirm: {top: 2, seeds: [3, 4, 5]}`: the
    confirmation that follows it runs exactly the 2 best orders and F, each on seeds 3-5 only, and its
    report's confirmation figures are the table's. Then `itt confirm` itself: --dry-run, bad input."""
    from search.runner import run_search

    tasks = ["toy_topic", "toy_align", "toy_length"]
    table = _with_lr(_sim_table(tmp_path / "table.csv", tasks, delta=0.06, seeds=range(8)), tasks)
    # every order once, as seed points whose learning rate is given: 0.002 where tasks[1] leads, and for F
    orders = [">".join(o) for k in (1, 2) for o in itertools.permutations(tasks, k)]
    given = {o: {"train.lr": 0.002 if o.startswith(tasks[1]) else 0.001} for o in orders} | {"F": {"train.lr": 0.002}}
    cfg = {**TINY, "search": {"candidates": tasks, "length": [0, 2], "searcher": "random", "seeds": [0, 1, 2],
                              "num_samples": 10, "seed_points": {"baseline": True, "orders": orders, "hparams": given},
                              "scheduler": {"type": "none"}, "simulate": {"table": str(table)},
                              "hparams": {"train.lr": {"choice": [0.001, 0.002]}},
                              "tracking": {"enabled": False}, "resources": {"max_concurrent": 2},
                              "confirm": {"top": 2, "seeds": [3, 4, 5]}}}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(cfg))
    lines: list[str] = []
    exp = run_search(str(p), name="orders", storage=str(tmp_path / "runs"), log=lines.append, progress="off")
    rows = pd.read_csv(exp / "results.csv", keep_default_na=False)
    top2 = rows[rows["order"] != ""].sort_values("score", ascending=False)["order"].head(2).tolist()
    out = "\n".join(lines)
    assert out.index("did its best orders hold up on fresh seeds? (itt confirm)") < out.index("confirming 2 order(s)")
    new = tmp_path / "runs" / "orders-confirm"
    got = pd.read_csv(new / "results.csv", keep_default_na=False)
    assert sorted(got["order"]) == sorted(top2 + [""]) and set(got["status"]) == {"completed"}
    for tid in got["trial_id"]:
        assert sorted(json.loads((new / "trials" / tid / "results.json").read_text())["seeds"]) == ["3", "4", "5"]
    # the search ran each seed point at its given rate; the confirmation each order at its search trial's
    # rate (F too), so its figures are the table's rows at that rate
    lr = dict(zip(rows["order"], rows["hp:train.lr"]))
    assert len(rows) == 10 and lr == {(o if o != "F" else ""): v["train.lr"] for o, v in given.items()}
    assert dict(zip(got["order"], got["hp:train.lr"])) == {o: lr[o] for o in top2 + [""]}
    assert len({lr[o] for o in top2 + [""]}) == 2  # (not one rate for all, which --hparams first would give)
    res = json.loads((new / "report" / "report.json").read_text())["confirmation"]
    t = pd.read_csv(table, keep_default_na=False)
    langs = ["test_en", "test_xa", "test_xb", "test_xc"]
    t["m"] = t[langs].mean(axis=1)
    at = lambda o, seeds: t[(t["order"] == o) & (t["train.lr"] == lr[o]) & t["seed"].isin(seeds)]["m"]  # noqa: E731
    pick = res["pick"]
    assert pick == top2[0]
    r = next(x for x in res["orders"] if x["order"] == pick)
    fresh = at(pick, [3, 4, 5])
    assert len(fresh) == 3 and r["mean"] == pytest.approx(fresh.mean())
    assert r["search_mean"] == pytest.approx(at(pick, [0, 1, 2]).mean())
    f = at("", [3, 4, 5])
    vs_f = next(x for x in res["tests"] if x["b"] == "")
    assert vs_f["p"] == pytest.approx(sps.ttest_ind(fresh, f, equal_var=False).pvalue)
    assert out.index("confirming 2 order(s)") < out.index("Confirmed on 3 fresh seed(s): " + pick)
    md = (new / "report" / "report.md").read_text()
    assert "## Confirmation on fresh seeds" in md and "Each order ran with its search trial's hyperparameters" in md
    pick_row = next(x for x in md.splitlines() if x.startswith(f"| {pick} |"))
    assert pick_row.endswith(f"| train.lr={lr[pick]} |"), pick_row
    assert json.loads((new / "confirm.json").read_text())["seeds"] == [3, 4, 5]
    assert yaml.safe_load((new / "search.yaml").read_text())["search"]["confirm"] is None  # no confirmation of it
    # `itt resume` of the finished search confirms too: here its confirmation exists already, which one line says
    from search.runner import resume_search

    lines.clear()
    resume_search(str(exp), log=lines.append, progress="off")
    assert lines[-1].startswith("confirm: not run (experiment 'orders-confirm' exists already"), lines[-3:]
    capsys.readouterr()
    assert main(["confirm", str(exp), "--top", "2", "--seeds", "6,7", "--name", "dry", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "dry run: 3 trial(s) x 2 seed(s) = 6 chains would run in" in dry and "seed_points:" in dry
    assert sorted(x.name for x in (tmp_path / "runs").iterdir()) == ["orders", "orders-confirm"]
    # --top set: the orders that could be best (the report's credible set), most likely first
    from search import ranking
    from search.report import load_experiment

    ranked = ranking.analyse(S.seed_figures(load_experiment(str(exp)).scores.dropna(subset=["score"])))
    assert main(["confirm", str(exp), "--top", "set", "--seeds", "6,7", "--name", "dry", "--dry-run"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"confirming {len(ranked['set'])} order(s) of ") and "95% set of possible best" in first
    assert [x.split(" (")[0] for x in first.split("): ", 1)[1].split("; ")] == [S.show(o) for o in ranked["set"]]
    # --add: an order of the space the search did not pick (the report's unfinished one), with the first
    # pick's hyperparameters; one already picked is not added twice
    from search.confirm import plan

    extra = next(o for o in orders if o not in top2)
    p = plan(str(exp), top=1, seeds=[6, 7], name="dry", storage=None, add=[extra, top2[0]])
    assert [(x["order"], x["why"]) for x in p["record"]["picks"]][1:] == [(extra, "added (--add)")]
    assert p["config"]["search"]["seed_points"]["orders"] == [top2[0], extra]
    assert p["config"]["search"]["seed_points"]["hparams"][extra] == {"train.lr": lr[top2[0]]}
    # bad input: one line, exit 2, nothing new written
    for args, needle in ((["--seeds", "2,9"], "2 already used by the search"), (["--top", "0"], "--top 0"),
                         (["--add", "toy_topic>toy_nope"], "--add toy_topic>toy_nope: not an IF order"),
                         (["--add", ">".join(tasks)], "lengths [0, 1, 2]"),
                         (["--seeds", "a,b"], "--seeds a,b"), (["--name", "other", "--seeds", "3,3"], "distinct"),
                         (["--seeds", "6"], "'orders-confirm' exists already"), (["--top", "all"], "--top all")):
        assert main(["confirm", str(exp), *args, "--no-tracking"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert main(["confirm", str(tmp_path / "nope")]) == 2
    assert "no such experiment directory" in capsys.readouterr().err
    assert sorted(x.name for x in (tmp_path / "runs").iterdir()) == ["orders", "orders-confirm"]
    _vary(exp, tmp_path, t, lr, top2, capsys)


def _vary(exp, tmp_path, t, lr, top2, capsys):
    """--vary train.lr=0.002: the confirmation (each order at its own rate) and the same orders and fresh
    seeds with every order at 0.002, then itt compare over the two; bad --vary input first."""
    runs = tmp_path / "runs"
    for arg, needle in (("train.lr", "give KEY=V1,V2"), ("train.lr=1,1", "listed twice"),
                        ("train.lrr=0.1", "train.lrr"), ("search.seed=3", "the confirmation sets it")):
        assert main(["confirm", str(exp), "--seeds", "6,7", "--name", "lrs", "--vary", arg, "--no-tracking"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (arg, err)
    assert sorted(x.name for x in runs.iterdir()) == ["orders", "orders-confirm"]
    assert main(["confirm", str(exp), "--top", "2", "--seeds", "6,7", "--name", "lrs", "--vary", "train.lr=2e-3",
                 "--no-tracking", "--progress", "off"]) == 0
    out = capsys.readouterr().out
    var = runs / "lrs-train.lr=0.002"
    assert sorted(x.name for x in runs.iterdir()) == ["lrs", "lrs-train.lr=0.002", "orders", "orders-confirm"]
    assert "then at each other value of train.lr (this confirmation: each order's own, as searched; " in out
    assert f"interrupted, `itt resume {runs / 'lrs'}` finishes the confirmation, every value and their comparison" in out
    cfg = yaml.safe_load((var / "search.yaml").read_text())
    assert cfg["train"]["lr"] == 0.002 and "train.lr" not in cfg["search"]["hparams"]
    assert cfg["search"]["cache"]["dir"] == str(runs / "lrs" / "stage_cache")  # prefixes shared where lr allows
    assert json.loads((var / "confirm.json").read_text())["variant"] == {"train.lr": 0.002}
    assert "Confirmed on 2 fresh seed(s) at train.lr=0.002: " in out
    assert "Every order ran at train.lr=0.002 (itt confirm --vary)" in (var / "report" / "report.md").read_text()
    got = pd.read_csv(var / "results.csv", keep_default_na=False)
    assert sorted(got["order"]) == sorted(top2 + [""]) and set(got["status"]) == {"completed"}
    # each experiment's scores are the table's at its rates, on seeds 6 and 7
    m = lambda o, rate: t[(t["order"] == o) & (t["train.lr"] == rate) & t["seed"].isin([6, 7])]["m"].mean()  # noqa: E731
    comp = json.loads((runs / "lrs" / "vary" / "compare.json").read_text())
    by = {x["name"]: x for x in comp["searches"]}
    for name, rate in (("lrs", lambda o: lr[o]), ("lrs-train.lr=0.002", lambda o: 0.002)):
        means = {o: m(o, rate(o)) for o in top2 + [""]}
        assert by[name]["F"] == pytest.approx(means[""])
        assert by[name]["best"] == max(top2, key=means.get) and by[name]["best_mean"] == pytest.approx(max(means[o] for o in top2))
    assert "is the best order robust to train.lr? (itt compare of the confirmation and its variants)" in out
    # the order x value interaction: each (order, seed) measured at both rates, built here from the table
    one = lambda o, s, rate: t[(t["order"] == o) & (t["train.lr"] == rate) & (t["seed"] == s)]["m"].item()  # noqa: E731
    units = [(o, s) for o in sorted(top2) for s in (6, 7)]
    want = S.order_language_interaction(np.array([[one(o, s, lr[o]), one(o, s, 0.002)] for o, s in units]),
                                        [o for o, _ in units])
    got_i = json.loads((runs / "lrs" / "vary" / "interaction.json").read_text())["train.lr"]
    assert (got_i["F"], got_i["p"], got_i["df1"], got_i["df2"]) == pytest.approx((want["F"], want["p"], 1, 2))
    assert any(x.startswith("Order x train.lr: ") and f"F(1, 2) = {want['F']:.2f}" in x for x in out.splitlines()), out
    assert f"compare: {runs / 'lrs' / 'vary'}/compare.html" in out
    # interrupted before a value started: `itt resume` of the confirmation runs it, then the comparison
    import shutil

    from search.runner import resume_search

    shutil.rmtree(var)
    shutil.rmtree(runs / "lrs" / "vary")
    lines: list[str] = []
    resume_search(str(runs / "lrs"), log=lines.append, progress="off")
    again = pd.read_csv(var / "results.csv", keep_default_na=False)
    assert sorted(again["order"]) == sorted(top2 + [""]) and set(again["status"]) == {"completed"}
    assert json.loads((runs / "lrs" / "vary" / "compare.json").read_text())["searches"] == comp["searches"]
    assert json.loads((runs / "lrs" / "vary" / "interaction.json").read_text())["train.lr"]["F"] == pytest.approx(want["F"])
    assert "the same orders and seeds at train.lr=0.002 (lrs-train.lr=0.002)" in lines
    # the resumed confirmation is reported, and the value run afresh too
    assert lines.count("did the search's best hold up? (itt report)") == 2, lines
    # a variant's experiment that exists already is refused before anything runs (the confirmation's too)
    (runs / "other-train.lr=0.002").mkdir()
    assert main(["confirm", str(exp), "--seeds", "6,7", "--name", "other", "--vary", "train.lr=0.002", "--no-tracking"]) == 2
    assert "'other-train.lr=0.002' exists already" in capsys.readouterr().err and not (runs / "other").exists()


def _with_lr(path, tasks):
    """The table twice, at train.lr 0.001 and 0.002; 0.002 is better for orders that start with tasks[1],
    worse for the rest (plus a little noise per row): which learning rate each order ran with decides
    its scores."""
    t = pd.read_csv(path, keep_default_na=False)
    score = [c for c in t.columns if c.startswith(("test_", "probe_", "final", "perturbation"))]
    high = t.copy()
    sign = np.where(t["order"].str.startswith(tasks[1]), 1.0, -1.0)
    jitter = np.random.default_rng(1).normal(0, 0.01, len(t))  # (each model responds a little differently)
    for c in score:
        high[c] = pd.to_numeric(t[c], errors="coerce") + 0.03 * sign + jitter
    t["train.lr"], high["train.lr"] = 0.001, 0.002
    pd.concat([t, high]).to_csv(path, index=False)
    return path


def test_search_confirm_vary_reads_numbers_in_any_notation_and_refuses_a_repeated_value(write_config, capsys):
    from search.config import load_search

    path = write_config({"search": {"candidates": ["toy_topic", "toy_align"], "length": [0, 1]}})
    scfg, _, _ = load_search(path, ["search.confirm={vary: {finetune.lr: [1e-5, 5.0e-5]}}"])
    assert scfg.confirm.vary == {"finetune.lr": [1e-5, 5e-5]}
    assert C.parse_vary(["finetune.lr=1e-5,5e-5", "train.epochs=2"]) == [("finetune.lr", [1e-5, 5e-5]), ("train.epochs", [2])]
    assert main(["space", str(path), "--set", "search.confirm={vary: {finetune.lr: [1e-5, 1.0e-5]}}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "search.confirm.vary" in err[0] and "distinct values" in err[0], err


def test_a_variant_of_a_value_with_a_path_separator_is_one_folder_beside_the_confirmation():
    """--vary model.name=FacebookAI/xlm-roberta-large: the variant's experiment name was a path
    (runs/x-confirm-model.name=FacebookAI/ holding the experiment), against the rule that names are no paths."""
    from itt.config import name_problem

    for value in ("FacebookAI/xlm-roberta-large", "../models/xlmr", "C:\\models\\xlmr", 2e-5):
        name = C.variant_name("orders-confirm", "model.name", value)
        assert name.startswith("orders-confirm-model.name=") and name_problem(name) is None, name
    assert C.variant_name("orders-confirm", "model.name", "FacebookAI/xlm-roberta-large") == \
        "orders-confirm-model.name=FacebookAI_xlm-roberta-large"
    assert C.variant_name("orders-confirm", "finetune.lr", 1e-5) == "orders-confirm-finetune.lr=1e-05"


def test_a_simulated_trial_takes_the_search_seeds_rows_and_names_a_missing_seed():
    from search.trial import simulated_rows

    rows = [{"order": "a", "seed": str(s), "final": str(0.1 * s)} for s in (2, 0, 1, 3)]
    assert [r["seed"] for r in simulated_rows(rows, ["a"], {}, 0, "mean")] == ["0", "1", "2", "3"]
    assert [r["seed"] for r in simulated_rows(rows, ["a"], {}, 0, "mean", seeds=[3, 1])] == ["1", "3"]
    with pytest.raises(KeyError, match="no row for seed 9"):
        simulated_rows(rows, ["a"], {}, 0, "mean", seeds=[1, 9])


@pytest.mark.ray
def test_search_confirm_seeds_that_seed_the_search_are_a_config_error(write_config, capsys):
    cfg = write_config({"search": {"candidates": ["toy_topic", "toy_align"], "length": [0, 1], "seeds": [0, 1],
                                   "confirm": {"seeds": [1, 2]}}})
    assert main(["search", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "search.confirm.seeds: 1 also seed the search" in err[0], err


def test_search_confirm_that_itt_confirm_refuses_for_a_multi_objective_search_is_a_config_error(write_config, capsys):
    """search.confirm.vary or top: set with search.metric: [mean, worst]: itt confirm refuses both for a
    multi-objective search, which was one line after the whole search ("confirm: not run"), not before it."""
    for confirm, needle in (({"vary": {"train.lr": [1e-4]}}, "search.confirm.vary: a multi-objective search's"),
                            ({"top": "set"}, "search.confirm.top: set ranks orders by the mean")):
        cfg = write_config({"search": {"candidates": ["toy_topic", "toy_align"], "length": [0, 1],
                                       "metric": ["mean", "worst"], "confirm": confirm}})
        assert main(["space", str(cfg)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    cfg = write_config({"search": {"candidates": ["toy_topic", "toy_align"], "length": [0, 1], "metric": ["mean", "worst"],
                                   "confirm": {"top": 2}}})
    assert main(["space", str(cfg)]) == 0  # (its Pareto front: fine)


def test_a_simulated_trial_reads_the_rows_of_the_hyperparameters_its_config_sets():
    """What `itt confirm` relies on in simulation: a table with a train.lr column, a search that does not
    search it, a chain config that sets it (the best trial's value) - the rows of that value count."""
    from search.trial import config_hparams, simulated_rows

    rows = [{"order": "a", "seed": "0", "train.lr": lr, "final": f} for lr, f in (("0.001", "0.5"), ("0.002", "0.7"))]
    hp = config_hparams(rows[0], {"train": {"lr": 0.002, "batch_size": 32}, "seeds": [0]})
    assert hp == {"train.lr": 0.002}
    assert [r["final"] for r in simulated_rows(rows, ["a"], hp, 0, "mean")] == ["0.7"]
    assert config_hparams(rows[0], {"train": {}}) == {}  # not set: every row, as before


def test_a_multi_objective_search_confirms_its_pareto_front_on_every_objective():
    rows = [{"trial_id": "t1", "status": "completed", "order": "a", "score": "0.80", "pareto": "false"},
            {"trial_id": "t2", "status": "completed", "order": "b", "score": "0.70", "pareto": "true"},
            {"trial_id": "t3", "status": "completed", "order": "c", "score": "0.75", "pareto": "true"},
            {"trial_id": "t4", "status": "completed", "order": "d", "score": "0.60", "pareto": "false"}]
    got = C.picks(rows, None, top=3, front=True)
    assert [p["order"] for p in got] == ["c", "b", "a"] and "on the Pareto front" in got[0]["why"]
    assert "Pareto" not in got[2]["why"]
    assert [p["order"] for p in C.picks(rows, None, top=2)] == ["a", "c"]  # single objective: by score
    # fresh seeds: per-seed mean and worst language; b is dominated by c on both, F by everyone
    rng = np.random.default_rng(1)
    level = {"c": (0.75, 0.60), "b": (0.70, 0.55), "a": (0.72, 0.62), "": (0.50, 0.40)}
    tidy = pd.DataFrame([(o, s, lg, (m if lg == "en" else w) + rng.normal(0, 0.002))
                         for o, (m, w) in level.items() for s in range(4) for lg in ("en", "xa")],
                        columns=["order", "seed", "language", "score"])
    fig = S.seed_figures(tidy)
    confirm = {"source": "runs/x", "seeds": [3, 4, 5, 6], "search_seeds": [0, 1, 2], "baseline": True,
               "picks": got, "objectives": ["mean", "worst"],
               "search_means": {"c": {"mean": 0.7, "objectives": {"mean": 0.7, "worst": 0.6}}}}
    c = C.analyse(confirm, fig)
    rows_ = {r["order"]: r for r in c["orders"]}
    for o in level:
        g = fig[fig["order"] == o]
        assert rows_[o]["objectives"] == pytest.approx({"mean": g["mean"].mean(), "worst": g["worst"].mean()})
    assert {o: r["on_fresh_front"] for o, r in rows_.items()} == {"c": True, "b": False, "a": True, "": False}
    assert rows_["c"]["search_objectives"] == {"mean": 0.7, "worst": 0.6} and rows_["b"]["search_objectives"] is None
    assert "2 of 3 picked order(s) on the Pareto front (mean, worst, test) again" in C.headline(c)
    from search.report import confirmation_section

    table = confirmation_section(c)[2]
    assert table[0][-3:] == ["mean: fresh (search)", "worst: fresh (search)", "on the fresh front"]
    assert all(len(r) == len(table[0]) for r in table)


def test_a_search_on_std_first_confirms_its_lowest_std_orders_with_a_score_it_can_run(tmp_path, ray_local, write_config):
    """search.metric: [std, mean]: results.csv's score is std, lower is better. The runners-up after the front
    are the lowest std (not the highest: the worst orders), and the confirmation's own config scores its
    trials on an objective one can optimise alone (std alone was refused, an error naming a temporary file)."""
    import csv

    from search.config import load_search
    from search.runner import run_search

    tasks = ["toy_topic", "toy_align", "toy_length"]
    langs = ["en", "xa", "xb", "xc"]
    orders = [">".join(o) for k in (0, 1, 2) for o in itertools.permutations(tasks, k)]
    spread = {o: 0.01 * (i + 1) for i, o in enumerate(orders)}  # each order its own spread over languages
    with open(tmp_path / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["order", "seed", "probe_1", "probe_2", "probe_1_std", "probe_2_std", "final",
                    *[f"dev_{x}" for x in langs], *[f"test_{x}" for x in langs]])
        for o in orders:
            k = len(o.split(">")) if o else 0
            for s in range(6):
                sc = [0.7 - spread[o] * j + 0.001 * s for j in range(len(langs))]
                w.writerow([o, s, *([0.5] * k + [""] * (2 - k)), *([0.05] * k + [""] * (2 - k)), float(np.mean(sc)),
                            *sc, *sc])
    run = ["toy_length", "toy_topic", "toy_align>toy_topic", "toy_topic>toy_length"]
    cfg = {**TINY, "search": {"candidates": tasks, "length": [0, 2], "searcher": "random", "seeds": [0, 1, 2],
                              "num_samples": 5, "metric": ["std", "mean"], "seed_points": {"baseline": True, "orders": run},
                              "scheduler": {"type": "none"}, "simulate": {"table": str(tmp_path / "table.csv")},
                              "tracking": {"enabled": False}, "resources": {"max_concurrent": 2}}}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(cfg))
    exp = run_search(str(p), name="mo", storage=str(tmp_path / "runs"), log=lambda *a: None, progress="off")
    got = C.plan(str(exp), top=3, seeds=[3, 4], name=None, storage=None)
    lowest = sorted(run, key=spread.get)  # (spread orders the std; every order's mean falls with it)
    assert [x["order"] for x in got["record"]["picks"]] == lowest[:3]
    assert got["config"]["search"]["metric"] == "mean"
    assert "the trials' score is a score one can optimise alone (mean)" in got["record"]["notes"][-1]
    scfg, _, _ = load_search(write_config(got["config"], base=None, name="confirm.yaml"))
    assert scfg.metric == "mean" and scfg.seed_points.orders == [o.split(">") for o in lowest[:3]]
