"""The search benchmark's bookkeeping (bench/search_efficiency.py, bench/search_bounds.py) on the toy3
table, offline (no Ray): pooling committed figures with new runs, and the noisy-mode oracles."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from tests.conftest import ROOT


def _bench(name: str):
    """A bench script's module (bench/ is on the path while it imports, as when the script runs)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "bench"))


def _one_seed(name: str, tmp_path):
    """Seed 0 of a prior_from bench on the planted generator, short budgets (5% of exhaustive each)."""
    mod = _bench(name)
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return mod.one_seed(("planted", 0, 0.05, 0.05, str(tmp_path)))
    finally:
        sys.path.remove(str(ROOT / "bench"))


@pytest.fixture(scope="module")
def se():
    return _bench("search_efficiency")


def test_merge_carries_summary_rows_of_strategies_without_trials(se, tmp_path):
    first = tmp_path / "first.json"
    assert se.main(["--offline", "--tables", "toy3", "--strategies", "random,exhaustive", "--seeds", "3",
                    "--json", str(first), "--runs-of", "random"]) == 0
    a = json.loads(first.read_text())
    assert {r["strategy"] for r in a["runs"]["toy3"]} == {"random"}  # exhaustive's trials were not kept
    more = tmp_path / "more.json"
    assert se.main(["--offline", "--tables", "toy3", "--strategies", "random", "--seeds", "2", "--first-seed", "3",
                    "--json", str(more)]) == 0
    merged = tmp_path / "merged.json"
    assert se.main(["--merge", str(first), str(more) + "l", "--json", str(merged)]) == 0
    m = json.loads(merged.read_text())
    rows = {r["strategy"]: r for r in m["summary"]}
    assert rows["random"]["runs"] == 5  # 3 pooled from the first file's trials + 2 new
    old = next(r for r in a["summary"] if r["strategy"] == "exhaustive")
    assert rows["exhaustive"]["runs"] == 3 and rows["exhaustive"]["area"] == old["area"]  # carried as it was
    assert rows["exhaustive"]["area/random"] == pytest.approx(old["area"][0] / rows["random"]["area"][0])
    assert sum(x["strategy"] == "exhaustive" for x in m["areas"]["toy3"]) == 3
    only = tmp_path / "only.json"
    assert se.main(["--merge", str(first), "--strategies", "exhaustive", "--json", str(only)]) == 0
    assert [r["strategy"] for r in json.loads(only.read_text())["summary"]] == ["exhaustive"]


def test_noisy_oracle_observes_one_seed_rows_and_recommends_the_best_of_them(se):
    sb = _bench("search_bounds")
    from search.config import load_search
    from search.trial import load_table, simulated_rows

    info = se.table_info("toy3:noisy")
    table = load_table(load_search(info["config"])[0].simulate.table)
    order = info["orders"][7]
    one = simulated_rows(table[order], order.split(">"), {}, 5, "one_seed")
    assert sb.score(info, order, 5) == pytest.approx(float(one[0]["final"]))  # one seed's row, not the mean
    assert sb.score(se.table_info("toy3"), order, 5) == info["truth"][order]
    run = sb.run_orders(info, info["orders"], 5)
    # the run stops at half of exhaustive's compute (stage cache counted); its last point is the regret of
    # the best single-seed score among the orders it ran, recomputed here by hand
    budget_orders = []
    spent, trained = 0, set()
    for o in info["orders"]:
        if spent >= 0.5 * info["exhaustive_cost"]:
            break
        t = tuple(o.split(">"))
        new = {t[:i] for i in range(1, len(t) + 1)} - trained
        trained |= new
        spent += len(new) + 1
        budget_orders.append(o)
    best = max(budget_orders, key=lambda o: sb.score(info, o, 5))
    expect = (info["best_score"] - info["truth"][best]) / (info["best_score"] - info["median"])
    assert run["regret"][-1] == pytest.approx(expect)


def test_related_targets_share_the_tasks_properties_and_mix_their_effects():
    """bench/prior_from.py's new targets: rho = 1 reproduces the earlier target's effects, rho = 0 draws
    them afresh; the tasks' own properties (planted: precedence bonuses; curriculum: difficulty,
    interfering pairs, enabler) are the earlier target's either way; no source leaves the committed tables as they are."""
    import csv

    planted, curriculum = _bench("make_planted_table"), _bench("make_curriculum_table")
    rows0, src = planted.make_table(planted.TASKS6, 0)
    with open(ROOT / "bench" / "data" / "planted.csv", newline="") as f:
        assert [r["final"] for r in csv.DictReader(f)] == [r["final"] for r in rows0]
    _, same = planted.make_table(planted.TASKS6, 7, source=src, rho=1.0)
    _, fresh = planted.make_table(planted.TASKS6, 7, source=src, rho=0.0)
    assert same["main"] == pytest.approx(src["main"]) and same["pos"] == pytest.approx(src["pos"])
    assert fresh["main"] != pytest.approx(src["main"]) and fresh["bonus"] == same["bonus"] == src["bonus"]
    _, csrc = curriculum.make_table(curriculum.TASKS7, 0)
    _, c1 = curriculum.make_table(curriculum.TASKS7, 7, source=csrc, rho=1.0)
    _, c0 = curriculum.make_table(curriculum.TASKS7, 7, source=csrc, rho=0.0)
    assert c1["main"] == pytest.approx(csrc["main"]) and c0["main"] != pytest.approx(csrc["main"])
    for k in ("difficulty", "interfering", "enabler"):
        assert c0[k] == csrc[k]


def test_prior_from_bench_runs_one_seed(tmp_path):
    """One seed of bench/prior_from.py (short budgets): its tables (draw 0's earlier target is the committed
    one), the earlier search's results.csv, both new searches on every new target, figures in range; the
    rho = 0.9 target is more related to the earlier one than the unrelated draw."""
    out = _one_seed("prior_from", tmp_path)
    assert (tmp_path / "planted_d0_earlier.csv").read_text() == (ROOT / "bench" / "data" / "planted.csv").read_text()
    assert (tmp_path / "planted_earlier_s0" / "results.csv").is_file() and out["earlier_trials"] >= 2
    assert set(out["targets"]) == {"unrelated", "rho=0.9", "rho=0.5", "rho=0.0"}
    for fig in out["targets"].values():
        assert {"order_bo", "order_bo+prior_from"} <= set(fig)
        assert all(0 <= fig[k]["area"] < 10 and 0 < fig[k]["to_eps"] for k in ("order_bo", "order_bo+prior_from"))
    assert out["targets"]["rho=0.9"]["relatedness"] > 0.5 > out["targets"]["unrelated"]["relatedness"]


def test_a_target_related_to_two_earlier_ones_mixes_both():
    """make_table with several sources (bench/prior_from_several.py): sum rho_i * source_i +
    sqrt(1 - sum rho_i^2) * fresh, the fresh part being what rho = 0 draws from the same seed; the
    tasks' own properties are the first source's; rhos whose squares sum above 1 are refused."""
    import math

    for mod_name, tasks_name in (("make_planted_table", "TASKS6"), ("make_curriculum_table", "TASKS7")):
        mod = _bench(mod_name)
        tasks = getattr(mod, tasks_name)
        _, a = mod.make_table(tasks, 0)
        _, b = mod.make_table(tasks, 4000, source=a, rho=0.0)
        _, fresh = mod.make_table(tasks, 5000, source=a, rho=0.0)
        _, mixed = mod.make_table(tasks, 5000, source=[a, b], rho=[0.6, 0.6])
        expect = {t: 0.6 * a["main"][t] + 0.6 * b["main"][t] + math.sqrt(1 - 0.72) * fresh["main"][t] for t in tasks}
        assert mixed["main"] == pytest.approx(expect)
        shared = "bonus" if "bonus" in a else "difficulty"
        assert mixed[shared] == a[shared]
        with pytest.raises(ValueError, match="sum of squares"):
            mod.make_table(tasks, 1, source=[a, b], rho=[0.8, 0.8])


def test_prior_from_several_bench_runs_one_seed(tmp_path):
    """One seed of bench/prior_from_several.py (short budgets): three earlier searches, every strategy of
    both cases with figures in range; the related earlier search is more related to its new target
    than the unrelated one."""
    out = _one_seed("prior_from_several", tmp_path)
    assert all((tmp_path / f"planted_{s}_s0" / "results.csv").is_file() for s in ("A", "U", "B"))
    assert set(out["cases"]["related+unrelated"]) == {"relatedness", "order_bo", "+A", "+U", "+A+U"}
    assert set(out["cases"]["two halves"]) == {"relatedness", "order_bo", "+A", "+B", "+A+B"}
    for case in out["cases"].values():
        assert all(0 <= fig["area"] < 10 and 0 < fig["to_eps"] for k, fig in case.items() if k != "relatedness")
    rel = out["cases"]["related+unrelated"]["relatedness"]
    assert rel["A"] > 0.5 > rel["U"]


def test_winners_curse_bench_against_a_direct_computation(tmp_path, capsys):
    """One split of the real toy table by hand: the pick of a seed-0 search, its seed-0 score minus its
    mean on seeds 1 and 2; the committed figures are what the script prints now."""
    import pandas as pd

    wc = _bench("winners_curse")
    res = wc.main(["--json", str(tmp_path / "w.json")])
    t = pd.read_csv(ROOT / "bench" / "data" / "toy_3of5_s3_runs.csv", keep_default_na=False)
    w = t.pivot_table(index="order", columns="seed", values="final")
    pick = w[0].idxmax()
    row = next(r for r in res["toy3 (real chains)"]["splits"] if r["search_seeds"] == [0])
    assert row["pick"] == pick
    assert row["final_search_minus_fresh"] == pytest.approx(w.loc[pick, 0] - w.loc[pick, [1, 2]].mean())
    assert row["fresh_rank"] == int((w[[1, 2]].mean(axis=1) > w.loc[pick, [1, 2]].mean()).sum()) + 1
    committed = json.loads((ROOT / "bench" / "data" / "winners_curse.json").read_text())
    assert json.loads((tmp_path / "w.json").read_text()) == committed


def test_unexplored_calibration_scores_a_search_against_the_tables_truth(se):
    """bench/unexplored_calibration.py: one offline order_bo search on planted to 5% of exhaustive's
    compute; what it counts as truly beaten is recomputed from the table; the summary's figures by hand."""
    uc = _bench("unexplored_calibration")
    info = se.table_info("planted")
    r = uc.one(info, 0.05, 0)
    assert r["trials"] + r["left"] == info["n"] and 0 <= r["p_better"] <= 1
    run = se.offline_search(info, "order_bo", 0, type("A", (), {"budget": 0.05}))
    done = {x["order"] for x in run["rows"]}
    gap = max(info["truth"][o] for o in info["orders"] if o not in done) - info["truth"][run["recommended"]]
    assert r["better"] == (gap > 0) and r["gain"] == pytest.approx(max(gap, 0.0))
    s = uc.summarize([r, {**r, "p_better": 0.2, "better": False, "gain": 0.0}])
    assert s["said"] == pytest.approx((r["p_better"] + 0.2) / 2) and s["right"] == pytest.approx(r["better"] / 2)
    assert s["brier"] == pytest.approx(((r["p_better"] - r["better"]) ** 2 + 0.04) / 2)


def test_stop_rule_bench_records_where_each_rule_stops(tmp_path, capsys):
    """bench/stop_rule.py on toy3, one seed: each rule's stop point is where the searcher's answer first fell
    below it, and the regret there is the table's, recomputed here from its truth."""
    mod = _bench("stop_rule")
    out = tmp_path / "stop.json"
    assert mod.main(["--tables", "toy3", "--seeds", "1", "--budget", "0.5", "--rules", "p=0.1,p=0.5",
                     "--min-trials", "6", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    run = res["runs"]["toy3"][0]
    loose, strict = run["stops"]["p=0.5"], run["stops"]["p=0.1"]
    assert 6 <= loose["trials"] <= strict["trials"] and loose["compute"] <= strict["compute"] <= 0.5 + 0.05
    assert loose["p_better"] < 0.5 and strict["p_better"] < 0.1
    import csv
    import statistics

    means: dict[str, list[float]] = {}
    with open(ROOT / "bench" / "data" / "toy_3of5_s3_runs.csv", newline="") as f:
        for r in csv.DictReader(f):
            means.setdefault(r["order"], []).append(float(r["final"]))
    truth = {o: statistics.mean(v) for o, v in means.items()}
    top, mid = max(truth.values()), statistics.median(truth.values())
    for s in (loose, strict):
        assert s["regret"] == pytest.approx((top - truth[s["pick"]]) / (top - mid))
        assert s["regret_observed"] == pytest.approx((top - truth[s["best_observed"]]) / (top - mid))
    assert "p=0.5" in capsys.readouterr().out


def test_costs_count_compute_in_seconds_and_reach_the_searcher(se):
    """--costs: each task's stage seconds, drawn per seed, price the compute axis (a prefix pays its last task's
    stage, a completed trial the fixed part), recomputed here from a run's trials."""
    import statistics

    info = se.table_info("toy3")
    costs = se.task_costs(info, 4, "logu10")
    tasks = sorted({t for o in info["orders"] for t in o.split(">")})
    assert set(costs) == set(tasks) | {"_fixed"} and all(1 <= costs[t] <= 10 for t in tasks)
    assert costs["_fixed"] == statistics.median(costs[t] for t in tasks) and costs == se.task_costs(info, 4, "logu10")
    assert se.task_costs(info, 5, "logu10") != costs and se.task_costs(info, 4, None) is None
    prefixes = {tuple(o.split(">"))[:i] for o in info["orders"] for i in range(1, o.count(">") + 2)}
    every = sum(costs[p[-1]] for p in prefixes) + len(info["orders"]) * costs["_fixed"]
    assert se.exhaustive_cost(info, costs) == pytest.approx(every)
    args = se.parse_args(["--offline", "--costs", "logu10", "--budget", "0.1"])
    run = se.offline_search(info, "order_bo_measured", 4, args)
    assert run["costs"] == costs
    trained, spent, after = set(), 0.0, []
    for r in run["rows"]:
        o = tuple(r["order"].split(">"))
        new = {o[:i] for i in range(1, len(o) + 1)} - trained
        trained |= new
        spent += sum(costs[p[-1]] for p in new) + costs["_fixed"]
        after.append(spent)
    assert after[-2] < 0.1 * every <= after[-1]  # the search ran until it had spent its 10%, in seconds
    c = se.curve(info, run)
    first = next((i for i, r in enumerate(run["rows"]) if info["truth"][r["order"]] >= info["best_score"] - info["eps"]),
                 None)
    assert c["to_eps"] == (pytest.approx(after[first] / every) if first is not None else float("inf"))


def test_paired_counts_the_same_searches_as_ties_at_the_logs_precision(tmp_path):
    """bench/data/screened/paired.py: a variant's log prints areas to 3 decimals, the committed JSON keeps
    4; the same 10 searches in both are 10 ties (not better or worse by the rounding), and a real
    difference still counts."""
    import subprocess

    areas = [0.2614 + 0.0123 * s for s in range(10)]
    (tmp_path / "c.json").write_text(json.dumps({"areas": {"toy3": [
        {"strategy": "order_bo", "seed": s, "area": round(a, 4)} for s, a in enumerate(areas)]}}))
    log = ["== toy3: 60 orders"] + [f"  {'same':22s} seed {s:2d}  area {a:.3f}  regret@10% 0.5" for s, a in enumerate(areas)]
    log += [f"  {'worse':22s} seed {s:2d}  area {a + 0.01 * (s + 1):.3f}  regret@10% 0.5" for s, a in enumerate(areas)]
    (tmp_path / "v.log").write_text("\n".join(log) + "\n")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "data" / "screened" / "paired.py"), str(tmp_path / "c.json"),
                          str(tmp_path / "v.log")], capture_output=True, text=True, check=True).stdout
    same = next(line for line in out.splitlines() if line.split()[1] == "same")
    assert "mean diff +0.0000 better in 0, worse in 0 p=1.000" in same, same
    worse = next(line for line in out.splitlines() if line.split()[1] == "worse")
    assert "better in 0, worse in 10" in worse, worse


@pytest.mark.parametrize("script,argv,says", [
    ("search_efficiency", ["--offline", "--tables", "toy3,nope", "--strategies", "random", "--seeds", "1"], "--tables: unknown table 'nope'"),
    ("search_efficiency", ["--offline", "--tables", "toy3,planted:noisy", "--seeds", "1"], "noisy mode needs one row per seed"),
    ("search_efficiency", ["--offline", "--tables", "toy3:nosy"], "unknown mode 'nosy'"),
    ("search_efficiency", ["--offline", "--tables", "toy3", "--strategies", "random,nope"], "--strategies: unknown 'nope'"),
    ("search_efficiency", ["--offline", "--tables", "toy3", "--seeds", "0"], "--seeds must be >= 1"),
    ("search_efficiency", ["--offline", "--tables", "toy3", "--budget", "2"], "--budget must lie in (0, 1]"),
    ("stop_rule", ["--tables", "planted,nope", "--seeds", "1"], "--tables: unknown table 'nope'"),
    ("stop_rule", ["--tables", "planted", "--rules", "q=0.1"], "--rules: 'q=0.1'"),
    ("unexplored_calibration", ["--tables", "toy3,nope", "--seeds", "1"], "--tables: unknown table 'nope'"),
    ("unexplored_calibration", ["--budgets", "0.1,x"], "--budgets: '0.1,x'"),
    ("search_bounds", ["--tables", "toy3,nope"], "--tables: unknown table 'nope'"),
    ("search_bounds", ["--draws", "0"], "--draws must be >= 1"),
    ("prior_from", ["--seeds", "0"], "--seeds must be >= 1 (got 0)"),
    ("prior_from", ["--generators", "planted,nope", "--seeds", "1"], "--generators: unknown 'nope'"),
    ("prior_from", ["--budget", "0"], "--budget must lie in (0, 1]"),
    ("prior_from_several", ["--workers", "0"], "--workers must be >= 1 (got 0)"),
    ("search_efficiency", ["--merge", "committed.json", "nowhere.jsonl"], "--merge: no file committed.json"),
    ("ranking_calibration", ["--reps", "0"], "--reps must be >= 1 (got 0)"),
    ("prefix_tests_calibration", ["--searches", "0"], "--searches must be >= 1 (got 0)"),
    ("transfer_prior", ["--parts", "corr,bogus"], "--parts: unknown 'bogus'"),
    ("transfer_prior", ["--seeds", "0"], "--seeds must be >= 1 (got 0)"),
])
def test_table_benches_refuse_bad_arguments_before_any_search(script, argv, says, capsys):
    """A bad table, mode, strategy, count or budget is one error line and exit 2 before the first search (a bad
    name last in --tables used to end a long run with a traceback after the tables before it had run)."""
    mod = _bench(script)
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        with pytest.raises(SystemExit) as e:
            mod.main(argv)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    err = capsys.readouterr()
    assert e.value.code == 2 and says in err.err and not err.out, err
    assert [line for line in err.err.splitlines() if "error:" in line] == [err.err.splitlines()[-1]]


def test_offline_exhaustive_stops_when_every_order_has_run(se):
    """With stage costs in seconds, exhaustive's spent compute can fall short of the whole budget by float
    rounding; the replay then ends with the last order instead of asking for one more (StopIteration)."""
    info = se.table_info("toy3")
    args = type("A", (), {"budget": 1.0, "costs": "logu10"})
    runs = [se.offline_search(info, "exhaustive", seed, args) for seed in range(3)]
    assert all(sorted(r["order"] for r in run["rows"]) == sorted(info["orders"]) for run in runs)


def test_paired_keeps_the_parts_of_a_log_on_one_table_apart(tmp_path):
    """bench/data/screened/paired.py on a log of two runs on toy3 (a variant at two settings, as
    screened/gittins_index.log has three): one comparison per part, not the last part's seeds over the first's."""
    import subprocess

    (tmp_path / "c.json").write_text(json.dumps({"areas": {"toy3": [
        {"strategy": "order_bo", "seed": s, "area": 0.3} for s in range(6)]}}))
    log = []
    for area in (0.2, 0.4):
        log += ["== toy3: 60 orders"] + [f"  {'variant':22s} seed {s:2d}  area {area + 0.001 * s:.3f}  regret@10% 0.5"
                                        for s in range(6)]
    (tmp_path / "v.log").write_text("\n".join(log) + "\n")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "data" / "screened" / "paired.py"), str(tmp_path / "c.json"),
                          str(tmp_path / "v.log")], capture_output=True, text=True, check=True).stdout
    lines = [line for line in out.splitlines() if line.split()[1] == "variant"]
    assert len(lines) == 2, out
    assert "median 0.203 " in lines[0] and "better in 6, worse in 0" in lines[0], lines[0]
    assert "median 0.403 " in lines[1] and "better in 0, worse in 6" in lines[1], lines[1]


def test_stage_cache_bench_finds_the_reports_identical(tmp_path, monkeypatch):
    """bench/stage_cache.py says whether every order's reports are the same with and without the stage cache
    (README: final metrics identical). It compared the seconds a chain measures too (stage_seconds,
    trained_seconds, reported since 2026-12-05; a stage from the cache reports what it took when trained), so
    it printed 'identical ... for 0/24 orders' on every run. On 3 toy tasks (6 orders, 15 of 18 stages
    trained with the cache), each order's reports agree once the counts and the seconds are left out."""
    import argparse

    from itt.cache import StageCache
    from itt.chain import prepare
    from itt.config import validate

    mod = _bench("stage_cache")
    monkeypatch.setattr(mod, "TASKS", ["toy_topic", "toy_align", "toy_parity"])
    raw = mod.base_config(argparse.Namespace(steps=2, target_steps=2, probe_steps=2, n_train=64, threads=1))
    raw["toy"]["n_eval"] = 20
    cfg = validate(raw, "bench")
    p = prepare(cfg, log=lambda *a: None)
    plain = mod.sweep(cfg, p, None)
    cached = mod.sweep(cfg, p, StageCache(str(tmp_path / "stage_cache")))
    assert [sum(r[-1]["stages_trained"] for r in s.values()) for s in (plain, cached)] == [18, 15]
    assert all("stage_seconds" in m for m in cached["toy_topic>toy_align>toy_parity"][:3])
    for order in plain:
        assert mod.strip(plain[order]) == mod.strip(cached[order]), order


def test_offline_tpe_answers_repeats_as_the_search_does(se):
    """TPE re-proposes orders it has run; `itt search`'s searcher (search/searchers/_base.py) tells Optuna the
    earlier score and runs nothing. The offline replay ran each repeat as a trial again and charged it a final
    fine-tune: on planted seed 0, 60 trials (14 repeats, the 10th a repeat of the 6th) where the Ray path ran
    52 distinct orders, its 10th toy_topic>toy_sim>toy_align (`--check-offline --strategies tpe`)."""
    info = se.table_info("planted")
    run = se.offline_search(info, "tpe", 0, type("A", (), {"budget": 0.5}))
    orders = [r["order"] for r in run["rows"]]
    assert len(orders) == len(set(orders)) == 52
    assert orders[5] == "toy_extra>toy_length>toy_sim" and orders[9] == "toy_topic>toy_sim>toy_align"
    assert orders[-1] == "toy_extra>toy_align>toy_length"  # the Ray path's last trial
    # the compute: one final per trial and each distinct prefix once; exhaustive's is 6 + 30 + 120 prefixes and
    # 120 finals, and the search stops with the trial that crosses half of it
    prefixes = {tuple(o.split(">"))[:i] for o in orders for i in (1, 2, 3)}
    spent = len(prefixes) + len(orders)
    assert info["exhaustive_cost"] == 6 + 30 + 120 + 120
    assert spent >= 0.5 * 276 > spent - 4  # (the last trial crosses the budget; one trial costs at most 4)
