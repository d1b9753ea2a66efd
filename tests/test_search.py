"""Order space, searchers and scheduler (on the simulated objective), bad input, and one real search."""

from __future__ import annotations

import csv
import json
import itertools
import math
import pickle
from functools import partial
from types import SimpleNamespace

import optuna
import pytest
import yaml

from search.cli import main
from search.space import OrderSpace, order_key
from tests.conftest import ROOT, TINY


TOY3 = ["toy_topic", "toy_align", "toy_length"]


# ------------------------------------------------------------------ the space (pure)
def _all_digit_vectors(n: int, k: int):
    return itertools.product(*[range(n - i) for i in range(k)])


@pytest.mark.parametrize("n, lengths", [(4, [4]), (4, [0, 1, 2, 3, 4]), (5, [3])])
def test_lehmer_space_is_a_bijection(n, lengths):
    cands = [f"t{i}" for i in range(n)]
    space = OrderSpace(candidates=cands, lengths=lengths)
    seen = []
    for k in lengths:
        for digits in _all_digit_vectors(n, k):
            params = {"k": k, **{f"l{i}": d for i, d in enumerate(digits)}} if len(lengths) > 1 else \
                {f"l{i}": d for i, d in enumerate(digits)}
            order = space.suggest(optuna.trial.FixedTrial(params))
            assert space.is_valid(order)
            assert space.encode(order) == params  # the inverse
            seen.append(tuple(order))
    expected = sum(math.perm(n, k) for k in lengths)
    assert len(seen) == len(set(seen)) == expected == space.count()
    assert sorted(seen) == sorted(tuple(o) for o in space.orders())


def test_constrained_space_every_sample_valid_every_order_reachable():
    space = OrderSpace(candidates=["a", "b", "c", "d", "e"], lengths=[2, 3, 4], include=["a"], before=[("b", "c")], last="e")
    valid = {tuple(o) for o in space.orders()}
    assert valid and all(o[-1] == "e" and "a" in o for o in valid)
    reached = set()
    for k in space.lengths:
        for digits in _all_digit_vectors(5, k):
            o = space.suggest(optuna.trial.FixedTrial({"k": k, **{f"l{i}": d for i, d in enumerate(digits)}}))
            assert space.is_valid(o), o
            reached.add(tuple(o))
    assert reached == valid
    for o in valid:
        assert space.decode(space.encode(list(o))) == list(o)
    rows = [{"k": k, **{f"l{i}": d for i, d in enumerate(digits)}} for k in space.lengths for digits in _all_digit_vectors(5, k)]
    assert space.decode_many(rows) == [space.decode(r) for r in rows]  # (the feasible tasks of a prefix computed once)


def test_order_bo_samples_valid_candidates_where_a_constraint_leaves_a_length_empty():
    """A constrained space above max_candidates is sampled, not enumerated: a length with no valid order (1,
    with two tasks included; 0, the F of a space that must hold a task) made the first proposal divide by
    zero or offered F, which the space refuses; space.sample (the prior's scale) drew them too."""
    from search.searchers.order_bo import Observations, OrderBOSampler
    from search.trial import define

    tasks = [f"t{i}" for i in range(12)]
    for space, possible in ((OrderSpace(tasks, [1, 2, 3, 4, 5], include=["t0", "t1"]), [2, 3, 4, 5]),
                            (OrderSpace(tasks, [0, 1, 2, 3, 4], include=["t0"]), [1, 2, 3, 4])):
        assert space.count() > 2000 and space.possible_lengths == possible
        s = OrderBOSampler(space, seed=0, max_candidates=2000)
        assert all(space.is_valid(o) for o in s._orders(Observations()))
        study = optuna.create_study(direction="maximize", sampler=s)
        t = study.ask()
        define(t, space=space, hparams={})
        assert space.is_valid(space.decode(t.params))
        assert all(space.is_valid(o) for o in space.sample(300))


def test_suggest_draws_only_lengths_that_hold_a_valid_order():
    """The TPE and GP searchers (and any Optuna sampler) draw ``k`` through ``OrderSpace.suggest``: a length
    with no valid order (0 when a task must be included; 1 with two included) gave F, which the space
    refuses, or divided by zero in the decoding."""
    from search.trial import define

    for space, possible in ((OrderSpace(["a", "b", "c"], [0, 1, 2], include=["a"]), [1, 2]),
                            (OrderSpace(["a", "b", "c"], [1, 2, 3], include=["a", "b"]), [2, 3]),
                            (OrderSpace(["a", "b", "c"], [0, 1, 2], last="c", before=[("c", "a"), ("c", "b")]), [0, 1])):
        assert space.possible_lengths == possible
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
        drawn = set()
        for _ in range(40):
            t = study.ask()
            define(t, space=space, hparams={})
            order = space.decode(t.params)
            assert space.is_valid(order), order
            drawn.add(len(order))
            study.tell(t, 0.0)
        assert drawn == set(possible)
        for o in space.orders():  # a seed point's parameters still decode to it
            assert space.decode(space.encode(o)) == o
            assert space.suggest(optuna.trial.FixedTrial(space.encode(o))) == o


def test_log_ei_against_an_exact_computation():
    """log EI of a unit-sd posterior, log(phi(z) + z Phi(z)), against mpmath at 50 digits, through the switch to
    the tail forms (the asymptotic series alone was 1% off at z = -6)."""
    import numpy as np

    mpmath = pytest.importorskip("mpmath")
    from search.searchers.order_bo import log_ei

    mpmath.mp.dps = 50
    z = np.array([-3.0, -5.999, -6.0, -6.001, -8.0, -20.0, -999.0, -1001.0, -1e5])
    exact = [float(mpmath.log(mpmath.npdf(mpmath.mpf(x)) + mpmath.mpf(x) * mpmath.ncdf(mpmath.mpf(x)))) for x in z]
    assert log_ei(z, np.ones_like(z), 0.0) == pytest.approx(exact, abs=1e-9)


def test_an_int_range_on_a_log_scale_is_drawn_log_uniformly_by_every_searcher():
    """batch sizes as {int: [1, 64], log: true}: uniform draws have a median near 32, log-uniform near 8."""
    import statistics

    from ray import tune

    from search.config import HParam
    from search.searchers.exhaustive import exhaustive_param_space
    from search.searchers.order_bo import OrderBOSampler
    from search.trial import suggest_hparam

    hp = HParam(int=(1, 64), log=True)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    tpe = [suggest_hparam(study.ask(), "b", hp) for _ in range(400)]
    bo = OrderBOSampler(OrderSpace(candidates=TOY3, lengths=[1]), seed=0, hparams={"train.batch_size": hp})
    ours = [bo._random_hp(["toy_topic"])["train.batch_size"] for _ in range(400)]
    space = exhaustive_param_space(SimpleNamespace(hparams={"train.batch_size": hp}, seed=0,
                                        space=lambda: OrderSpace(candidates=TOY3, lengths=[1])), [])
    assert isinstance(space["train.batch_size"].get_sampler(), tune.search.sample.LogUniform)
    grid = space["train.batch_size"].sample(size=400)
    for draws in (tpe, ours, list(grid)):
        assert all(isinstance(v, (int,)) or float(v).is_integer() for v in draws)
        assert min(draws) >= 1 and max(draws) <= 64
        assert 5 <= statistics.median(draws) <= 12, statistics.median(draws)
    uniform = [suggest_hparam(study.ask(), "u", HParam(int=(1, 64))) for _ in range(400)]
    assert statistics.median(uniform) > 20  # (the test tells the two scales apart)


def test_space_and_define_by_run_pickle():
    from search.config import HParam
    from search.trial import define

    space = OrderSpace(candidates=TOY3, lengths=[1, 2], before=[("toy_topic", "toy_align")])
    fn = partial(define, space=space, hparams={"train.lr": HParam(float=(1e-4, 1e-2), log=True),
                                                "stages.*.epochs": HParam(choice=[1, 2])})
    fn2 = pickle.loads(pickle.dumps(fn))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), direction="maximize")
    for _ in range(10):
        t = study.ask()
        fn2(t)
        order = space.decode(t.params)
        assert space.is_valid(order)
        assert {k for k in t.params if k.startswith("stages.")} == {f"stages.{x}.epochs" for x in order}
        study.tell(t, 0.5)


# ------------------------------------------------------------------ configs and bad input
def _search_config(tmp_path, search: dict, base: dict | None = None, name="s.yaml"):
    cfg = dict(base or TINY)
    cfg["search"] = search
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def _error(args, capsys, *needles):
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    for n in needles:
        assert n in err[0], err[0]


@pytest.mark.ray
@pytest.mark.parametrize("search, needles", [
    ({"candidates": [], "length": 1}, ["no candidate tasks"]),
    ({"candidates": TOY3, "length": 4}, ["order length 4 is impossible with 3"]),
    ({"candidates": TOY3, "length": 2, "before": [["toy_topic", "toy_align"], ["toy_align", "toy_topic"]],
      "include": ["toy_topic", "toy_align"]}, ["no order satisfies the constraints"]),
    ({"candidates": TOY3, "length": 1, "searcher": "bayes"}, ["search.searcher"]),
    ({"candidates": TOY3, "length": 1, "scheduler": {"type": "hyperband"}}, ["search.scheduler.type"]),
    ({"candidates": ["toy_topic", "nope"], "length": 1}, ["unknown task 'nope'", "search.candidates"]),
    ({"candidates": TOY3, "length": 1, "include": ["toy_parity"]}, ["not a candidate"]),
    ({"candidates": TOY3, "length": 1, "hparams": {"model.tiny.hidden_size": {"choice": [32]}}}, ["not a training hyperparameter"]),
    ({"candidates": TOY3, "length": 1, "hparams": {"train.lr": {"float": [0.1, 0.01]}}}, ["low must be below high"]),
    ({"candidates": TOY3, "length": 1, "hparams": {"train.batch_size": {"int": [0, 64], "log": True}}},
     ["'log' needs a range whose low is above 0"]),
    ({"candidates": TOY3, "length": 1, "hparams": {"train.lr": {"choice": [1e-5, 1e-4], "log": True}}},
     ["'log' needs a range"]),
    ({"candidates": TOY3, "length": 1, "bogus": 1}, ["unknown key 'search.bogus'"]),
    ({"candidates": TOY3, "length": 1, "searcher": "bops"}, ["search.searcher", "order_bo"]),
    ({"candidates": TOY3, "length": 1, "order_bo": {"n_startup": "many"}}, ["search.order_bo.n_startup"]),
    ({"candidates": TOY3, "length": 1, "order_bo": {"cost_aware": "sometimes"}}, ["search.order_bo.cost_aware"]),
    ({"candidates": TOY3, "length": 1, "order_bo": {"startup": "sobol"}}, ["search.order_bo.startup"]),
    ({"candidates": TOY3, "length": 1, "order_bo": {"from_start": True}},
     ["search.order_bo.from_start", "'average', 'never' or 'always'"]),
    ({"candidates": TOY3, "length": 1, "order_bo": {"kernel": "rbf"}}, ["unknown key 'search.order_bo.kernel'"]),
    ({"candidates": TOY3, "length": 1, "optuna_storage": "runs/x.db"}, ["search.optuna_storage", "database URL"]),
    ({"candidates": TOY3, "length": 1, "seed": -1}, ["'search.seed'", "greater than or equal to 0"]),
    ({"candidates": TOY3, "length": 1, "seeds": [0, -2]}, ["'search.seeds'", "seed -2 is out of range"]),
    # the target as a candidate ran a whole search (itt run refused it); a retrieval task failed on "no data source"
    ({"candidates": ["toy_topic", "toy_xnli"], "length": 1}, ["search.candidates: 'toy_xnli' is the target task"]),
    ({"candidates": ["toy_topic", "tatoeba"], "length": 1},
     ["search.candidates: 'tatoeba' is a retrieval task", "not an intermediate task"]),
    ({"candidates": TOY3, "length": 1, "confirm": {"vary": {"train.lr": [1e-5, "fast"]}}},
     ["search.confirm.vary.train.lr=fast: 'train.lr'", "valid number"]),
    ({"candidates": TOY3, "length": 1, "confirm": {"vary": {"train.lrr": [1e-5]}}}, ["unknown key 'train.lrr'"]),
    ({"candidates": TOY3, "length": 1, "robust_weight": float("inf")}, ["'search.robust_weight'", "finite number"]),
    ({"candidates": TOY3, "length": 1, "seeds": []}, ["'search.seeds'", "give at least one seed"]),
    ({"candidates": TOY3, "length": 1, "seeds": [3, 3]}, ["'search.seeds'", "distinct"]),
    ({"candidates": TOY3, "length": [2, 1]}, ["'search.length'", "min 2 is above max 1"]),
    ({"candidates": TOY3, "length": 1, "metric": []}, ["'search.metric'", "give one metric name"]),
    ({"candidates": TOY3, "length": [1, 2], "scheduler": {"grace_period": 3}},
     ["search: scheduler.grace_period 3 is beyond the longest order (2 stage(s))", "give 1 to 2"]),
    ({"candidates": TOY3, "length": 1, "hparams": {"train.lr": {"choice": [1e-5, "fast"]}}},
     ["search.hparams.train.lr: 'fast'", "valid number"]),
    ({"candidates": TOY3, "length": 1, "hparams": {"stages.*.epochs": {"choice": [0, 1]}}},
     ["search.hparams.stages.*.epochs: 0", "greater than 0"]),
    ({"candidates": TOY3, "length": 1, "hparams": {"train.warmup_ratio": {"float": [0.1, 1.5]}}},
     ["search.hparams.train.warmup_ratio: 1.5"]),
    ({"candidates": TOY3, "length": 1, "hparams": {"train.batch_size": {"float": [8, 32]}}},
     ["a float range for a whole number", "int: [8, 32]"]),
    # the README's example search block had include: [mnli] with baseline: true: it loaded, then the searcher failed
    ({"candidates": TOY3, "length": [0, 2], "include": ["toy_topic"], "seed_points": {"baseline": True}},
     ["search.seed_points.baseline: F (the empty order) is not in the search space", "set baseline: false"]),
    ({"candidates": TOY3, "length": 1, "resources": {"workers_per_trial": 2, "gpus_per_worker": 0.5}},
     ["search.resources", "need whole GPUs"]),
    *[({"candidates": TOY3, "length": [0, 2], "searcher": searcher, "hparams": {"stages.*.lr": {"float": [1e-4, 1e-3]}},
        "seed_points": {"orders": ["toy_topic>toy_align"], "hparams": hp}}, needles) for searcher, hp, needles in (
        ("random", {"toy_align": {"stages.toy_align.lr": 5e-4}}, ["seed_points.hparams.toy_align: not a seed point"]),
        ("random", {"F": {}}, ["seed_points.hparams.F: not a seed point", "seed_points.baseline"]),
        ("random", {"toy_topic>toy_align": {"stages.toy_length.lr": 5e-4}},
         ["'stages.toy_length.lr' is not a searched hyperparameter of this order", "stages.toy_topic.lr"]),
        ("random", {"toy_topic>toy_align": {"stages.toy_topic.lr": 0.5}},
         ["seed_points.hparams.toy_topic>toy_align.stages.toy_topic.lr: 0.5 is outside"]),
        ("auto", {"toy_topic>toy_align": {"stages.toy_topic.lr": "fast"}}, ["'fast' is outside"]),
        ("exhaustive", {"toy_topic>toy_align": {}}, ["seed_points.hparams needs an Optuna searcher"]))],
])
def test_bad_search_config(search, needles, tmp_path, capsys):
    p = _search_config(tmp_path, search)
    _error(["space", str(p)], capsys, *needles)
    _error(["search", str(p), "--storage", str(tmp_path / "runs")], capsys, *needles)
    assert not (tmp_path / "runs").exists()


def test_a_task_before_itself_is_refused():
    """`before: [[a, a]]` can hold in no order that has a: the space silently lost every such order (a
    candidate that could never run), and `itt space` counted the rest as if nothing were wrong."""
    space = OrderSpace(candidates=TOY3, lengths=[1, 2], before=[("toy_topic", "toy_topic")])
    assert space.problems() == ["before: 'toy_topic' before itself would leave 'toy_topic' out of every order; "
                                "name two different tasks"]
    assert OrderSpace(candidates=TOY3, lengths=[1, 2], before=[("toy_topic", "toy_align")]).problems() == []


def test_a_task_included_twice_is_refused(tmp_path, capsys):
    """`include: [a, a]` is a typo (the second name was meant to be another task); the space accepted it
    and counted its orders as if only one task had been named."""
    assert OrderSpace(candidates=TOY3, lengths=[2], include=["toy_topic", "toy_topic"]).problems() == [
        "include: a task is listed twice"]
    p = _search_config(tmp_path, {"candidates": TOY3, "length": 2, "include": ["toy_align", "toy_align"]})
    _error(["space", str(p)], capsys, "search: include: a task is listed twice")


def test_a_budget_for_exhaustive_points_to_a_searcher_that_num_samples_caps(tmp_path, capsys):
    """exhaustive runs every order whatever search.num_samples (Ray's grid, every order once): the refusal of
    search.budget there told the user to give num_samples instead, which exhaustive ignores."""
    p = _search_config(tmp_path, {"candidates": TOY3, "length": [1, 2], "searcher": "exhaustive",
                                  "scheduler": {"type": "none"}, "budget": {"hours": 1}})
    _error(["space", str(p)], capsys, "search.budget needs a searcher that proposes orders one by one",
           "whatever search.num_samples", "give searcher random (or order_bo) and search.num_samples")
    # num_samples with exhaustive was ignored without a word (a 1000-order space ran 1000 trials): one line now
    p = _search_config(tmp_path, {"candidates": TOY3, "length": [1, 2], "searcher": "exhaustive", "num_samples": 3,
                                  "scheduler": {"type": "none"}}, name="n.yaml")
    _error(["space", str(p)], capsys, "search.num_samples: 3, but searcher exhaustive runs every order once (9 trials "
           "here)", "--set search.num_samples=null", "give searcher random for 3 orders")
    assert main(["space", str(p), "--set", "search.num_samples=null"]) == 0
    assert "this search, 9 trials" in capsys.readouterr().out


def test_itt_space_refuses_a_task_before_itself(tmp_path, capsys):
    p = _search_config(tmp_path, {"candidates": TOY3, "length": [1, 2], "before": [["toy_align", "toy_align"]]})
    _error(["space", str(p)], capsys, "search: before: 'toy_align' before itself")


def test_a_simulated_table_trials_cannot_read_is_one_error_line(tmp_path, capsys):
    """Each trial of a simulated search reads the table: a missing column, a score that is not a number or
    draw: one_seed without seeds made every trial error (or, for the last, read the mean silently)."""
    for text, draw, needle in (("ordr,final\ntoy_topic,0.5\n", "mean", "no 'order' column (columns: ordr, final)"),
                               ("order,probe_1,final\ntoy_topic,high,0.5\n", "mean", "line 2: probe_1 'high' is not a number"),
                               ("order,probe_1,final\ntoy_topic,0.4,0.5\n", "one_seed", "no 'seed' column"),
                               # every trial of an order the table lacks errored, and the search ended with exit 0
                               ("order,probe_1,final\ntoy_topic,0.4,0.5\ntoy_align,0.4,0.5\n", "mean",
                                f"no row for order '{TOY3[2]}' of the search's 3 orders"),
                               ("order,probe_1,final\ntoy_topic,0.4,0.5\n", "mean",
                                f"no row for order '{TOY3[1]}' nor 1 other(s) of the search's 3 orders")):
        (tmp_path / "t.csv").write_text(text)
        p = _search_config(tmp_path, {"candidates": TOY3, "length": 1, "simulate": {"table": "t.csv", "draw": draw}})
        _error(["space", str(p)], capsys, f"search.simulate.table {tmp_path / 't.csv'}: {needle}")


def test_itt_space_reads_prior_from_as_the_search_does(tmp_path, capsys):
    """search.prior_from that is not a search: `itt space` said nothing of it, `itt search` refused it."""
    (tmp_path / "notasearch").mkdir()
    p = _search_config(tmp_path, {"candidates": TOY3, "length": 1, "prior_from": str(tmp_path / "notasearch")})
    _error(["space", str(p)], capsys, f"search.prior_from {tmp_path / 'notasearch'}: no results.csv here")


@pytest.mark.ray
def test_a_data_error_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    """A candidate whose data cannot be read stops `itt search` with one line before anything is written:
    no runs/ folder (the storage check made it and left it) and no mlflow.db (the tracking check had
    created it before the data was checked)."""
    base = {**TINY, "tasks": {"mine": {"kind": "single_classification", "fields": ["s"], "labels": ["a", "b"],
                                       "train": {"files": "missing.tsv"}}}}
    p = _search_config(tmp_path, {"candidates": ["toy_topic", "mine"], "length": 1}, base=base)
    monkeypatch.chdir(tmp_path)
    _error(["search", str(p)], capsys, "task 'mine', split 'train'", "file not found")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["s.yaml"]


def test_heuristic_chain_keeps_a_partial_override_of_a_built_in_task():
    """The chain a heuristic (or the transferability prior) prepares for every candidate keeps the
    config's partial override of a built-in task partial (a dump and re-validation had made it a full
    task without a kind: `itt space --heuristic` failed on configs/gpu_search_xnli_local.yaml)."""
    from itt.tasks import resolve_task
    from search.config import load_search
    from search.heuristics import chain_for_candidates
    from tests.conftest import ROOT

    scfg, chain, _ = load_search(str(ROOT / "configs" / "gpu_search_xnli_local.yaml"))
    cfg = chain_for_candidates(chain, list(scfg.candidates))
    assert cfg.order == list(scfg.candidates) and cfg.seeds == chain.seeds[:1] and not cfg.probe.enabled
    assert resolve_task("mnli", cfg.tasks).kind == resolve_task("mnli", chain.tasks).kind == "pair_classification"


def test_itt_space_prints_count_and_samples(tmp_path, capsys):
    p = _search_config(tmp_path, {"candidates": TOY3, "length": [0, 2]})
    assert main(["space", str(p), "--samples", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("10 orders of 3 candidate tasks")  # 1 + 3 + 6
    samples = [ln.strip() for ln in out[1:5]]
    assert len(set(samples)) == 4 and out[5].startswith("compute, per seed")  # four different orders, then the plan


# ------------------------------------------------------------------ searchers on the simulated objective
def _table(tmp_path, space: OrderSpace):
    """A planted objective: toy_topic early is good, toy_length late is bad; probes are partial sums."""
    path = tmp_path / "table.csv"
    eff = {"toy_topic": [0.3, 0.2, 0.1], "toy_align": [0.1, 0.15, 0.1], "toy_length": [0.0, -0.05, -0.2]}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["order", "probe_1", "probe_2", "final"])
        for o in space.orders():
            parts = [eff[t][i] for i, t in enumerate(o)]
            probes = [0.3 + sum(parts[: i + 1]) for i in range(len(o))]
            w.writerow([order_key(o), *(probes + [""] * (2 - len(probes))), 0.31 + sum(parts)])
    return path


def _rows(exp):
    with open(exp / "results.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("searcher", ["order_bo", "tpe", "gp", "random", "exhaustive"])
def test_searcher_contract_on_simulated_objective(searcher, tmp_path, ray_local):
    from search.runner import run_search

    space = OrderSpace(candidates=TOY3, lengths=[1, 2])
    table = _table(tmp_path, space)
    search = {"candidates": TOY3, "length": [1, 2], "searcher": searcher, "num_samples": 6, "seed": 1,
              "seed_points": {"singles": True}, "scheduler": {"type": "none"},
              "simulate": {"table": str(table)}, "resources": {"max_concurrent": 2}}
    if searcher == "exhaustive":  # (every order once: a num_samples there is a config error)
        del search["num_samples"]
    p = _search_config(tmp_path, search)
    lines = []
    exp = run_search(str(p), name=f"sim-{searcher}", storage=str(tmp_path / "runs"),
                     log=lambda *a: lines.append(" ".join(map(str, a))))
    rows = _rows(exp)
    orders = [r["order"] for r in rows]
    assert all(space.is_valid(o.split(">")) for o in orders)
    assert all(r["status"] == "completed" and r["stopped_early"] == "false" for r in rows)
    # seed points (each single-task order) come first (within the window of concurrent starts)
    assert set(TOY3) <= set(orders[: 3 + 1])
    if searcher == "exhaustive":
        assert sorted(orders) == sorted(order_key(o) for o in space.orders())  # every order exactly once
    else:
        assert len(rows) == 6
    assert len(set(orders)) == len(orders)  # no configuration is tried twice (DedupSearcher)
    # scores are the table's
    want = {r[0]: float(r[-1]) for r in csv.reader(open(table)) if r[0] != "order"}
    assert all(float(r["score"]) == pytest.approx(want[r["order"]]) for r in rows)
    summary = json.loads((exp / "summary.json").read_text())
    assert [b["order"] for b in summary["best_observed"]][0] == max(rows, key=lambda r: float(r["score"]))["order"]
    if searcher == "exhaustive":
        assert "searcher_time" not in summary  # (Ray's grid: no searcher of ours to time)
        return
    own = summary["searcher_time"]  # each proposal's seconds on the driver, and the console's line on them
    assert own["proposals"] == len(own["per_proposal"]) == 6 and 0 < own["propose_seconds"] < own["search_seconds"]
    assert "the searcher's own time on the driver: 6 proposals took " in "\n".join(lines)
    # the Optuna study is inspectable (optuna-dashboard <experiment>/optuna.journal): the trials Tune ran
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(exp / "optuna.journal")))
    study = optuna.load_study(study_name=f"sim-{searcher}", storage=journal)
    assert sorted(order_key(space.decode(t.params)) for t in study.trials) == sorted(orders)
    assert all(t.user_attrs["order"] == order_key(space.decode(t.params)) for t in study.trials)  # named there
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    if searcher == "order_bo":  # a recommendation from the model: one of the orders run, with its interval
        rec = summary["recommended"]
        assert rec["order"] in orders and rec["lo"] <= rec["mean"] <= rec["hi"]
        assert summary["trace"] and all(t["order"] in orders for t in summary["trace"])
        u = rec["unexplored"]  # the 12 orders of the space that did not run: could one beat the pick?
        assert (u["orders"], u["of"]) == (space.count() - 6, space.count()) and 0 <= u["p_better"] <= 1
        assert u["most_likely"] not in orders and u["expected_gain"] >= 0
        from search.tracking import recommendation_figures  # (the MLflow parent run's metrics)

        w = rec["positions"]  # the evidence weights of order_bo's two GPs (search.order_bo.from_start: average)
        assert set(w) == {"from_end", "from_start"} and sum(w.values()) == pytest.approx(1.0, abs=1e-3)
        assert recommendation_figures(rec) == {"recommended_mean": rec["mean"], "recommended_lo": rec["lo"],
                                               "recommended_hi": rec["hi"], "unfinished_p_better": u["p_better"],
                                               "unfinished_expected_gain": u["expected_gain"],
                                               "from_start_weight": w["from_start"]}
        assert (f"where a task sits, as the searcher's model weighs it (evidence of its two GPs): depth from the end "
                f"{w['from_end']:.2f}, position from the start too {w['from_start']:.2f}") in "\n".join(lines)


def test_a_study_copy_databases_password_stays_off_the_console(tmp_path, ray_local, capsys):
    """search.optuna_storage names a database (postgresql://user:password@host/db): the start line and the
    copy's failure warning printed the URL as given, password included."""
    from search.runner import run_search

    space = OrderSpace(candidates=TOY3, lengths=[1])
    search = {"candidates": TOY3, "length": 1, "searcher": "random", "num_samples": 2, "seed": 1,
              "scheduler": {"type": "none"}, "simulate": {"table": str(_table(tmp_path, space))},
              "resources": {"max_concurrent": 2}, "tracking": {"enabled": False},
              "optuna_storage": "postgresql://alice:s3cr3t@127.0.0.1:1/optuna"}
    lines = []
    run_search(str(_search_config(tmp_path, search)), name="pw", storage=str(tmp_path / "runs"),
               log=lambda *a: lines.append(" ".join(map(str, a))))
    shown = "\n".join(lines) + capsys.readouterr().out
    assert "optuna-dashboard postgresql://alice:***@127.0.0.1:1/optuna" in shown
    assert "the Optuna study copy at postgresql://alice:***@127.0.0.1:1/optuna failed" in shown
    assert "s3cr3t" not in shown


def test_asha_stops_bad_prefixes_on_simulated_objective(tmp_path, ray_local):
    from search.runner import run_search

    space = OrderSpace(candidates=TOY3, lengths=[2])
    table = _table(tmp_path, space)
    search = {"candidates": TOY3, "length": 2, "searcher": "exhaustive", "simulate": {"table": str(table)},
              "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
              "seed_points": {"orders": ["toy_topic>toy_align"]}, "resources": {"max_concurrent": 1}}
    exp = run_search(str(_search_config(tmp_path, search)), name="asha", storage=str(tmp_path / "runs"), log=lambda *a: None)
    rows = {r["order"]: r for r in _rows(exp)}
    assert len(rows) == 6
    # toy_length first has the worst first-stage probe: after the best prefix ran, ASHA stops it
    stopped = [o for o, r in rows.items() if r["status"] == "stopped"]
    assert stopped and all(r["stopped_early"] == "true" and r["score"] == "" for o, r in rows.items() if o in stopped)
    assert rows["toy_topic>toy_align"]["status"] == "completed"
    assert any(o.startswith("toy_length") for o in stopped)


def test_asha_rungs_never_rank_a_short_orders_final_against_longer_orders_probes(tmp_path, ray_local):
    """Orders of lengths 1 and 2: single-task orders finish high (a full fine-tune), every pair's
    stage-2 probe is lower (a short probe). Were a single's final reported at step 2 (its own length +
    1), ASHA's rung 2 would hold those finals and stop every pair there; every final lands at the
    common final step instead (longest + 1 = 3), so rung 2 ranks pairs' probes among themselves."""
    from search.runner import run_search

    space = OrderSpace(candidates=TOY3, lengths=[1, 2])
    path = tmp_path / "table.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["order", "probe_1", "probe_2", "final"])
        for i, o in enumerate(space.orders()):
            if len(o) == 1:
                w.writerow([order_key(o), 0.5, "", 0.9])
            else:  # pairs: the same stage-1 probe; stage-2 probes 0.30..0.35, far below any final
                w.writerow([order_key(o), 0.5, 0.30 + 0.01 * i, 0.6 + 0.01 * i])
    search = {"candidates": TOY3, "length": [1, 2], "searcher": "exhaustive", "simulate": {"table": str(path)},
              "seed_points": {"singles": True}, "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
              "resources": {"max_concurrent": 1}}
    exp = run_search(str(_search_config(tmp_path, search)), name="mixed", storage=str(tmp_path / "runs"),
                     log=lambda *a: None)
    rows = _rows(exp)
    assert len(rows) == 9 and [r["order_length"] for r in rows[:3]] == ["1", "1", "1"]
    pairs = [r for r in rows if r["order_length"] == "2"]
    done = [r for r in pairs if r["status"] == "completed"]
    assert len(done) >= 2, [(r["order"], r["status"]) for r in pairs]  # the old steps stopped all six
    # stages_completed counts intermediate stages, whatever step the final came at
    assert all(r["stages_completed"] == r["order_length"] for r in rows if r["status"] == "completed")
    assert all(r["stages_completed"] == "2" and r["stopped_early"] == "true"
               for r in pairs if r["status"] == "stopped")
    # what ASHA saw: every completed trial's last report at step 3 (tracking/ keeps each trial's reports)
    recs = [json.loads(p.read_text()) for p in (exp / "tracking" / "trials").glob("*.json")]
    finals = [rec["reports"][-1]["step"] for rec in recs if rec.get("final")]
    assert len(finals) == sum(r["status"] == "completed" for r in rows) and set(finals) == {3}


def test_asha_grace_period_defaults_to_the_longest_order():
    """The one default rung is the probe after the last intermediate stage (bench/search_efficiency.py)."""
    from search.config import SearchConfig

    assert SearchConfig(candidates=TOY3, length=3).scheduler.grace_period == 3
    assert SearchConfig(candidates=TOY3, length=(0, 2)).scheduler.grace_period == 2
    assert SearchConfig(candidates=TOY3, length=0).scheduler.grace_period == 1
    assert SearchConfig(candidates=TOY3, length=3, scheduler={"max_t": 4}).scheduler.grace_period == 3
    with pytest.raises(ValueError, match="scheduler.max_t 3 is below the step of every final report"):
        SearchConfig(candidates=TOY3, length=3, scheduler={"max_t": 3})  # every 3-stage order stopped at stage 3
    assert SearchConfig(candidates=TOY3, length=3, scheduler={"grace_period": 1}).scheduler.grace_period == 1


def test_prior_from_an_earlier_search_starts_from_its_best_orders(tmp_path, ray_local, capsys, monkeypatch):
    """search.prior_from: an earlier search's measured scores are order_bo's prior. The earlier search ran
    every order (exhaustive), so the prior of each order is its measured score and the new search's
    start-up orders are the earlier table's best, best first (read from the table, not from the prior).
    An unreadable earlier search is one error line naming the key, before anything is written."""
    from search.runner import run_search

    monkeypatch.chdir(tmp_path)  # prior_from is relative to the working directory
    space = OrderSpace(candidates=TOY3, lengths=[1, 2])
    table = tmp_path / "earlier.csv"
    scores = {order_key(o): 0.40 + 0.03 * i for i, o in enumerate(reversed(list(space.orders())))}  # distinct
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["order", "probe_1", "probe_2", "final"])
        for o, v in scores.items():
            w.writerow([o, v - 0.1, (v - 0.05) if ">" in o else "", v])
    earlier = {"candidates": TOY3, "length": [1, 2], "searcher": "exhaustive", "scheduler": {"type": "none"},
               "simulate": {"table": str(table)}, "resources": {"max_concurrent": 1}}
    run_search(str(_search_config(tmp_path, earlier, name="a.yaml")), name="earlier", storage="runs", log=lambda *a: None)
    later = {**earlier, "searcher": "order_bo", "num_samples": 3, "order_bo": {"n_startup": 3}, "prior_from": "runs/earlier",
             "simulate": {"table": str(_table(tmp_path, space))}}
    cfg = _search_config(tmp_path, later, name="b.yaml")
    exp = run_search(str(cfg), name="later", storage="runs", log=lambda *a: None)
    top3 = sorted(scores, key=lambda o: -scores[o])[:3]
    assert [r["order"] for r in _rows(exp)] == top3
    prior = json.loads((exp / "prior.json").read_text())
    assert prior["measured"] == space.count() and prior["from"].endswith("earlier") and prior["measurements"] is None
    assert [o["order"] for o in prior["orders"][:3]] == top3
    from mlflow import MlflowClient  # the search's MLflow run names its prior's source

    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("later").experiment_id])
    assert [r.data.params.get("prior_from") for r in runs if "prior_from" in r.data.params] == [str(tmp_path / "runs" / "earlier")]
    # two earlier searches (the exhaustive one and the 3 orders just run): an ensemble, reweighed on this search's orders
    lines = []
    both = run_search(str(_search_config(tmp_path, {**later, "num_samples": 4, "prior_from": ["runs/earlier", "runs/later"]},
                                         name="c.yaml")), name="both", storage="runs", log=lines.append)
    summary = json.loads((both / "summary.json").read_text())
    weights = summary["prior_weights"]
    assert list(weights) == [str(tmp_path / "runs" / n) for n in ("earlier", "later")] and summary["prior_weights_from"] == 4
    assert sum(weights.values()) == pytest.approx(1.0) or set(weights.values()) == {0.0}
    assert [ln for ln in lines if ln.startswith("order prior:")][0].count("orders measured by") == 2
    assert any(ln.startswith("earlier searches' weight in the prior") for ln in lines)
    # bad input: one line naming the key; no experiment is left behind
    _error(["search", str(cfg), "--name", "nope", "--storage", "runs", "--no-tracking", "--set", "search.prior_from=runs/none"],
           capsys, "search.prior_from", "runs/none", "no results.csv")
    assert not (tmp_path / "runs" / "nope").exists()
    unreachable = "s3://nobucket/x?endpoint_override=127.0.0.1:9&scheme=http&region=us-east-1"
    _error(["search", str(cfg), "--name", "nope", "--storage", "runs", "--no-tracking", "--set", f"search.prior_from={unreachable}"],
           capsys, "search.prior_from s3://nobucket", "cannot reach the store")
    _error(["search", str(cfg), "--name", "nope", "--storage", "runs", "--set", "search.searcher=tpe"],
           capsys, "search.prior_from needs searcher order_bo")


@pytest.mark.parametrize("searcher", ["tpe", "random"])
def test_dedup_every_order_once_then_finished(searcher, tmp_path, ray_local):
    """More samples than orders: each order runs once, then the searcher ends the search."""
    from search.runner import run_search

    space = OrderSpace(candidates=TOY3, lengths=[2])
    table = _table(tmp_path, space)
    search = {"candidates": TOY3, "length": 2, "searcher": searcher, "num_samples": 20, "seed": 3,
              "scheduler": {"type": "none"}, "simulate": {"table": str(table)}, "resources": {"max_concurrent": 1}}
    exp = run_search(str(_search_config(tmp_path, search)), name=f"dd-{searcher}", storage=str(tmp_path / "runs"),
                     log=lambda *a: None)
    orders = [r["order"] for r in _rows(exp)]
    assert sorted(orders) == sorted(order_key(o) for o in space.orders())


@pytest.mark.parametrize("searcher", ["order_bo", "random"])
def test_an_errored_configuration_is_not_proposed_again(searcher):
    """Tune gave up on a trial (its retries used up): the searcher does not propose that configuration again
    in the search - a failure that repeats (out of memory on a long order) would take trial after trial;
    `itt resume --retry-errored` and the runner restart errored trials through Ray. Once the other orders
    have run, the search ends."""
    from ray.tune.search import Searcher

    from search.config import SearchConfig
    from search.searchers import make_searcher

    scfg = SearchConfig(candidates=TOY3, length=1, seed=0, searcher=searcher)
    space = scfg.space()
    s = make_searcher(scfg, [])
    s.set_search_properties("objective", "max", {})
    got = {f"t{i}": space.decode(s.suggest(f"t{i}"))[0] for i in range(2)}
    for tid, task in got.items():
        if task == got["t0"]:
            s.on_trial_complete(tid, None, error=True)
        else:
            s.on_trial_complete(tid, {"objective": 0.5, "final": 1})
    last = space.decode(s.suggest("t2"))[0]
    assert last not in got.values()  # the order neither trial ran
    s.on_trial_complete("t2", {"objective": 0.4, "final": 1})
    assert s.suggest("t3") is Searcher.FINISHED  # not the errored order again


@pytest.mark.parametrize("searcher", ["order_bo", "random"])
def test_a_running_trial_the_scheduler_may_stop_keeps_the_search_open_once_every_order_was_proposed(searcher):
    """Every order proposed, one still running: the searcher proposes nothing yet (None: Tune asks again)
    instead of FINISHED, which ends Ray's search for good - ASHA may still stop that trial, and its order
    is then continued (scheduler.continue_stopped) before the search ends."""
    from ray.tune.search import Searcher

    from search.config import SearchConfig
    from search.searchers import CONTINUES, make_searcher

    scfg = SearchConfig(candidates=TOY3[:2], length=1, seed=0, searcher=searcher)
    space = scfg.space()
    s = make_searcher(scfg, [])
    s.set_search_properties("objective", "max", {})
    got = {f"t{i}": space.decode(s.suggest(f"t{i}")) for i in range(2)}
    assert sorted(o[0] for o in got.values()) == sorted(TOY3[:2])  # both orders proposed, both running
    s.on_trial_complete("t0", {"objective": 0.5, "final": 1, "training_iteration": 2})
    assert s.suggest("t2") is None  # t1 runs on: not FINISHED
    s.on_trial_result("t1", {"objective": 0.2, "training_iteration": 1, "step": 1})
    s.on_trial_complete("t1", {"objective": 0.2, "training_iteration": 1, "step": 1})  # ASHA stopped it
    cont = s.suggest("t3")
    assert space.decode(cont) == got["t1"] and cont[CONTINUES] == "t1"  # its order continues
    s.on_trial_complete("t3", {"objective": 0.4, "final": 1, "training_iteration": 2})
    assert s.suggest("t4") is Searcher.FINISHED


def test_stop_rule_reads_the_searchers_answer():
    """search.stop holds only past min_trials, and only when every criterion given holds."""
    from search.config import Stop
    from search.searchers import stopping

    u = {"p_better": 0.04, "expected_gain": 0.003, "orders": 12, "of": 40}
    assert stopping.reason(Stop(p_better=0.05), u, 10)["p_better"] == 0.04
    assert stopping.reason(Stop(p_better=0.05), u, 9) is None  # min_trials 10
    assert stopping.reason(Stop(p_better=0.04), u, 10) is None  # strictly below
    assert stopping.reason(Stop(p_better=0.05, gain=0.002), u, 10) is None  # the gain criterion fails
    assert stopping.reason(Stop(p_better=0.05, gain=0.004, min_trials=3), u, 3)["rule"] == {"p_better": 0.05, "gain": 0.004}
    assert stopping.reason(Stop(gain=0.01), None, 50) is None  # no answer (hyperparameters searched): never
    line = stopping.text({**stopping.reason(Stop(gain=0.004), u, 10), "pick": "a>b"})
    assert "after 10 finished trials" in line and "(12 of 40) beats a>b with expected gain 0.003 < 0.004" in line


def test_search_stops_itself_then_more_goes_past_the_rule(tmp_path, ray_local, capsys):
    """search.stop: the searcher proposes no new trial once its model says an unfinished order beats its pick
    with P below the rule (past min_trials): fewer trials than num_samples, summary.json and the console say
    why. `itt resume --more 2` then runs exactly 2 more, past the rule."""
    from search.runner import resume_search, run_search

    tasks = TOY3 + ["toy_parity"]
    space = OrderSpace(candidates=tasks, lengths=[1, 2])
    table = tmp_path / "table.csv"
    eff = {"toy_topic": [0.3, 0.2], "toy_align": [0.1, 0.15], "toy_length": [0.0, -0.05], "toy_parity": [-0.1, 0.05]}
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["order", "probe_1", "probe_2", "final"])
        for o in space.orders():
            parts = [eff[t][i] for i, t in enumerate(o)]
            w.writerow([order_key(o), *[0.3 + sum(parts[: i + 1]) for i in range(len(o))], *[""] * (2 - len(o)),
                        0.31 + sum(parts)])
    search = {"candidates": tasks, "length": [1, 2], "searcher": "order_bo", "num_samples": 16, "seed": 0,
              "scheduler": {"type": "none"}, "simulate": {"table": str(table)}, "resources": {"max_concurrent": 1},
              "stop": {"p_better": 0.2, "min_trials": 5}}
    lines: list[str] = []
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = run_search(str(_search_config(tmp_path, search)), name="stops", storage=str(tmp_path / "runs"), log=lines.append,
                     tracking_uri=uri)
    n = len(_rows(exp))
    stop = json.loads((exp / "summary.json").read_text())["stopped_itself"]
    assert 5 <= stop["finished"] == n < 16 and stop["p_better"] < 0.2 and stop["rule"] == {"p_better": 0.2}, stop
    assert any(ln.startswith(f"the search stopped itself after {n} finished trials (search.stop)") for ln in lines), lines
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    parent = lambda: next(r for r in client.search_runs([client.get_experiment_by_name("stops").experiment_id])  # noqa: E731
                          if r.data.tags.get("itt_role") == "search")
    assert parent().data.tags["stopped_itself_after"] == str(n)
    resume_search(str(exp), more=2, log=lambda *a: None)
    assert len(_rows(exp)) == n + 2 and len({r["order"] for r in _rows(exp)}) == n + 2
    assert "stopped_itself" not in json.loads((exp / "summary.json").read_text())
    assert "stopped_itself_after" not in parent().data.tags
    own = json.loads((exp / "summary.json").read_text())["searcher_time"]  # kept over the resume, and in MLflow
    assert own["proposals"] == n + 2 and own["search_seconds"] > own["propose_seconds"] > 0
    assert parent().data.metrics["searcher_seconds"] == own["seconds"]  # (its parts are rounded apart: 3 decimals each)
    assert own["seconds"] == pytest.approx(own["propose_seconds"] + own["results_seconds"], abs=0.0015)
    # bad input: one line naming the key
    for extra, needle in [({"searcher": "tpe"}, "search.stop needs searcher order_bo"),
                          ({"hparams": {"train.lr": {"float": [1e-4, 1e-3]}}}, "search.stop cannot be asked with searched"),
                          ({"stop": {"min_trials": 3}}, "give p_better, gain or both"),
                          ({"stop": {"p_better": 1.5}}, "search.stop.p_better")]:
        cfg = _search_config(tmp_path, {**search, **extra}, name="bad.yaml")
        _error(["search", str(cfg), "--name", "bad", "--storage", str(tmp_path / "runs")], capsys, *[needle])
    assert not (tmp_path / "runs" / "bad").exists()
    assert main(["space", str(_search_config(tmp_path, search))]) == 0  # the plan says the rule may end it earlier
    assert "search.stop (p_better 0.2) may end it earlier, once 5 or more trials have finished" in capsys.readouterr().out


def test_search_stops_itself_once_its_budget_is_spent(tmp_path, ray_local, capsys):
    """search.budget: a simulated search whose trials take real seconds (seconds_per_stage) proposes no new
    trial once their device-hours reach the budget; summary.json, the console and `itt space` say so; a budget
    with nothing in it, or with the exhaustive searcher, is one error line."""
    from search.compute import devices_per_trial
    from search.runner import run_search

    search = {"candidates": TOY3, "length": [1, 2], "searcher": "random", "num_samples": 9, "seed": 0,
              "scheduler": {"type": "none"}, "resources": {"max_concurrent": 1},
              "simulate": {"table": str(_table(tmp_path, OrderSpace(candidates=TOY3, lengths=[1, 2]))),
                           "seconds_per_stage": 0.4}}
    per, _ = devices_per_trial({"search": search})
    budget = 2.0 * per / 3600  # two seconds of trial time: a few trials of 0.4-0.8 s and their start-up
    lines: list[str] = []
    exp = run_search(str(_search_config(tmp_path, {**search, "budget": {"device_hours": budget}})), name="budget",
                     storage=str(tmp_path / "runs"), log=lines.append)
    n = len(_rows(exp))
    stop = json.loads((exp / "summary.json").read_text())["stopped_itself"]
    assert stop["by"] == "budget" and stop["spent"]["device_hours"] >= budget and 1 <= stop["finished"] == n < 9, (n, stop)
    assert any(ln.startswith(f"the search stopped itself after {n} finished trials (search.budget)") for ln in lines)
    ends = [ln for ln in lines if ln.startswith("[") and " trial " in ln]  # one per finished trial, with the spend
    assert len(ends) == n and all("; budget: " in ln and f"of {budget:.3g} device-hours" in ln for ln in ends), ends
    for extra, needle in [({"budget": {}}, "give device_hours, hours or both"),
                          ({"budget": {"hours": -1}}, "search.budget.hours"),
                          ({"budget": {"hours": 1}, "searcher": "exhaustive"}, "search.budget needs a searcher")]:
        _error(["search", str(_search_config(tmp_path, {**search, **extra}, name="bad.yaml")), "--name", "bad",
                "--storage", str(tmp_path / "runs")], capsys, needle)
    assert not (tmp_path / "runs" / "bad").exists()
    assert main(["space", str(_search_config(tmp_path, {**search, "budget": {"hours": 12}}))]) == 0
    assert "search.budget (12 hours) ends it once spent" in capsys.readouterr().out


def test_the_budget_a_reproducible_search_shows_counts_a_trial_that_ended_in_the_open_batch():
    """search.reproducible's batches tell the searcher a batch's ends only once all of them have ended: the
    line of a trial that ended first said `budget: ...` without that trial's time (the quickstart's F:
    0.00349 device-hours where its own 24 s were 0.0067)."""
    from search.config import SearchConfig
    from search.searchers import make_searcher, stopping
    from search.searchers.batches import Batches

    scfg = SearchConfig(candidates=TOY3, length=1, searcher="random", seed_points={"singles": True},
                        budget={"device_hours": 1.0})
    inner = make_searcher(scfg, [[t] for t in TOY3])
    inner.budget = scfg.budget
    s = Batches(inner, 2)
    s.set_search_properties("objective", "max", {})
    s.suggest("a"), s.suggest("b")
    s.on_trial_result("b", {"objective": 0.4, "training_iteration": 1, "time_total_s": 18.0})
    s.on_trial_complete("a", {"objective": 0.5, "final": 1, "training_iteration": 1, "time_total_s": 36.0})
    per = inner.devices_per_trial
    assert "a" in s.cached_results  # the searcher has not been told a's end: the batch is open
    assert inner.spent()["device_hours"] == pytest.approx(54.0 * per / 3600)  # a's time counts already
    assert stopping.budget_text(inner.budget, inner.spent()) == f"budget: {54.0 * per / 3600:.3g} of 1 device-hours"
    s.on_trial_complete("b", {"objective": 0.6, "final": 1, "training_iteration": 2, "time_total_s": 40.0})
    assert not s.cached_results and inner.spent()["device_hours"] == pytest.approx(76.0 * per / 3600)  # (a once)


def test_the_probe_asha_stops_a_trial_on_reaches_the_study():
    """Tune passes the result a scheduler answers STOP on to the searcher's on_trial_complete only, never to
    on_trial_result (TuneController._process_trial_result): the searcher puts that probe into the study itself,
    so a stopped order keeps the probe it was stopped on (order_bo's evidence, and its stage counted as cached)."""
    import optuna

    from search.config import SearchConfig
    from search.searchers import make_searcher

    scfg = SearchConfig(candidates=TOY3, length=2, seed=0)
    s = make_searcher(scfg, [])
    s.set_search_properties("objective", "max", {})
    s.suggest("t0")
    s.on_trial_result("t0", {"objective": 0.4, "step": 1, "training_iteration": 1})
    s.on_trial_complete("t0", {"objective": 0.3, "step": 2, "training_iteration": 2})  # as Tune: the stop probe
    (t,) = _study_of(s).trials
    assert t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values == {1: 0.4, 2: 0.3}


def test_a_restarted_errored_trial_reaches_the_study_under_its_new_id():
    """`itt resume --retry-errored` restarts an errored trial through Ray's Trial.reset, which gives it a new id
    the searcher never suggested: its probes and final go to a new study trial of the same order (they were
    dropped: the searcher kept the order as failed). Results of an unknown id whose order did not error stay out."""
    import optuna

    from search.config import SearchConfig
    from search.searchers import make_searcher

    scfg = SearchConfig(candidates=TOY3, length=2, seed=0)
    s = make_searcher(scfg, [])
    s.set_search_properties("objective", "max", {})
    cfg = s.suggest("t0")
    s.on_trial_complete("t0", None, error=True)
    flat = {f"config/{k}": v for k, v in cfg.items()}
    s.on_trial_result("t0b", {"objective": 0.4, "step": 1, "training_iteration": 1, **flat})
    s.on_trial_complete("t0b", {"objective": 0.6, "final": 1, "step": 3, "training_iteration": 3, **flat})
    first, retry = _study_of(s).trials
    assert first.state == optuna.trial.TrialState.FAIL and first.params == retry.params
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.value == 0.6 and retry.intermediate_values == {1: 0.4}
    other, n = s.suggest("t1"), len(_study_of(s).trials)
    s.on_trial_result("t9", {"objective": 0.5, "training_iteration": 1, **{f"config/{k}": v for k, v in other.items()}})
    assert len(_study_of(s).trials) == n and "t9" not in s.inner_id  # t1's order is running, not errored


def _study_of(searcher):
    return searcher.inner._ot_study


def test_dedup_searcher_answers_repeats_with_known_scores():
    """A repeat never becomes a trial: Optuna is told the earlier score (COMPLETE), PRUNED for a trial
    ASHA stopped, FAIL while the original still runs; a trial ASHA stops is PRUNED, not COMPLETE."""
    import optuna

    from search.config import SearchConfig
    from search.searchers import make_searcher

    scfg = SearchConfig(candidates=TOY3, length=1, seed=0)
    space = scfg.space()
    s = make_searcher(scfg, [])
    s.set_search_properties("objective", "max", {})
    scores = {"toy_topic": 0.7, "toy_align": 0.5}
    got = {}
    for i in range(3):
        cfg = s.suggest(f"t{i}")
        got[f"t{i}"] = space.decode(cfg)[0]
    assert sorted(got.values()) == sorted(TOY3)  # three distinct orders
    assert s.suggest("t3") is None  # every order proposed, no hparams: nothing new, and ASHA may stop one yet
    for tid, task in got.items():
        s.on_trial_result(tid, {"objective": 0.3, "training_iteration": 1})
        if task == "toy_length":  # stopped by ASHA after its probe: no final report
            s.on_trial_complete(tid, {"objective": 0.3})
        else:
            s.on_trial_complete(tid, {"objective": scores[task], "final": 1})
    by_task = {}
    for t in _study_of(s).trials:
        by_task.setdefault(space.decode(t.params)[0], []).append(t)
    assert [t.state for t in by_task["toy_length"]][0] == optuna.trial.TrialState.PRUNED
    # the study holds repeats the searcher answered itself (random fallbacks aside): their values are the known ones
    for task, trials in by_task.items():
        for t in trials:
            if t.state == optuna.trial.TrialState.COMPLETE:
                assert t.value == scores[task]
    assert len(_study_of(s).trials) == 3 + s.repeats_answered


def _replay(sampler, space: OrderSpace, table: dict, n_trials: int) -> list[str]:
    """A plain Optuna search on a simulated table (probes as intermediate values, as Ray's OptunaSearch
    reports them): the orders tried, in order."""
    from search.trial import define

    study = optuna.create_study(direction="maximize", sampler=sampler)
    tried = []
    for _ in range(n_trials):
        t = study.ask()
        define(t, space=space, hparams={})
        order = space.decode(t.params)
        probes, final = table[order_key(order)]
        for i, v in enumerate(probes, 1):
            t.report(v, i)
        study.tell(t, final)
        tried.append(order_key(order))
    return tried


def _planted(n_tasks: int = 5, length: int = 2, seed: int = 0):
    """A small planted table: additive task effects weighted by depth from the end, two precedence
    bonuses, noisy probes of the prefix."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tasks = [f"t{i}" for i in range(n_tasks)]
    w = {t: rng.normal(0, 0.05) for t in tasks}
    bonus = {("t1", "t3"): 0.06, ("t4", "t0"): 0.04}
    space = OrderSpace(candidates=tasks, lengths=[length])
    val = lambda o: 0.5 + sum(0.6 ** (len(o) - 1 - i) * w[t] for i, t in enumerate(o)) + sum(  # noqa: E731
        v for (a, b), v in bonus.items() if a in o and b in o and o.index(a) < o.index(b))
    noise = {}
    table = {}
    for o in space.orders():
        probes = [val(o[:i]) - 0.1 + noise.setdefault(tuple(o[:i]), rng.normal(0, 0.02)) for i in range(1, len(o) + 1)]
        table[order_key(o)] = (probes, val(o) + rng.normal(0, 0.005))
    return space, table


def test_order_bo_reaches_the_best_order_in_fewer_trials_than_random():
    """Deterministic (fixed seeds, no timing): on a planted table of 60 orders, order_bo (searcher seeds
    0-2, at most 30 trials each) tries fewer orders before the best one than random search without
    replacement does in expectation, (N + 1) / 2 = 30.5."""
    from search.searchers.order_bo import OrderBOSampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space, table = _planted(n_tasks=5, length=3)
    best = max(table, key=lambda k: table[k][1])
    cap = 30
    runs = [_replay(OrderBOSampler(space, seed=s), space, table, cap) for s in range(3)]
    to_best = [r.index(best) + 1 if best in r else cap + 1 for r in runs]
    assert sum(to_best) / len(to_best) < (len(table) + 1) / 2, to_best
    assert sum(best in r for r in runs) >= 2, to_best


@pytest.mark.parametrize("directions", [["maximize"], ["maximize", "minimize"]])
def test_order_bo_prices_a_finished_trials_stages_as_cached_with_one_or_several_objectives(directions):
    """A finished trial trained every stage of its order (the stage cache holds them): its order and
    every prefix cost only the fixed part now, also in a multi-objective study, where Ray's OptunaSearch
    reports no probes (intermediate values) - a prefix known from them alone was priced in full there."""
    from search.searchers.order_bo import OrderBOSampler
    from search.trial import define

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = OrderSpace(candidates=["a", "b", "c", "d"], lengths=[2])
    sampler = OrderBOSampler(space, seed=0)
    study = optuna.create_study(directions=directions, sampler=sampler)
    t = study.ask()
    define(t, space=space, hparams={})
    order = space.decode(t.params)
    if len(directions) == 1:  # (as Ray's OptunaSearch: probes only with one objective)
        t.report(0.4, 1)
        t.report(0.5, 2)
    study.tell(t, [0.5] * len(directions))
    obs = sampler.observations(study)
    other = next(x for x in space.candidates if x not in order)
    assert sampler.cost(order, {}, obs.trained) == 1.0  # the final fine-tune only
    assert sampler.cost([order[0], other], {}, obs.trained) == 2.0  # one new stage


def test_order_bo_start_up_design_covers_every_task_on_cached_prefixes():
    """The start-up design (startup: cover): the second order brings both tasks the first left out, on
    the first order's cached first stage (coverage per cost), for every searcher seed; ``random``
    draws orders that do not (in general)."""
    from search.searchers.order_bo import OrderBOSampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space, table = _planted(n_tasks=5, length=3)
    for seed in range(4):
        first, second = (k.split(">") for k in _replay(OrderBOSampler(space, seed=seed, n_startup=3), space, table, 2))
        assert set(first) | set(second) == set(space.candidates), (first, second)
        assert second[0] == first[0], (first, second)  # one stage of the three already paid
    pairs = [[k.split(">") for k in _replay(OrderBOSampler(space, seed=s, n_startup=3, startup="random"), space, table, 2)]
             for s in range(4)]
    assert not all(set(a) | set(b) == set(space.candidates) and a[0] == b[0] for a, b in pairs)


def test_order_bo_every_proposal_valid_never_a_finished_order_and_resumes_identically(tmp_path):
    """Contract of the sampler on its own: valid orders, no completed configuration proposed again,
    a pickle round trip (Ray saves the searcher with the experiment), and a restored sampler proposes
    what the original would have (resume continuity)."""
    from search.searchers.order_bo import OrderBOSampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space, table = _planted(n_tasks=4, length=2)  # 12 orders
    sampler = OrderBOSampler(space, seed=3, n_startup=2)
    tried = _replay(sampler, space, table, 8)
    assert all(space.is_valid(o.split(">")) for o in tried)
    assert len(set(tried)) == len(tried), tried  # a completed configuration is never proposed again
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for k in tried:  # the same history in a fresh study, then one more proposal from the original ...
        study.add_trial(optuna.trial.create_trial(params=space.encode(k.split(">")), value=table[k][1],
                                                  distributions=_dists(space, k), intermediate_values=dict(enumerate(table[k][0], 1))))
    restored = pickle.loads(pickle.dumps(sampler))
    nxt = [OrderBOSampler._propose(x, study) for x in (sampler, restored)]
    assert nxt[0] == nxt[1]  # ... and from its pickled copy: the same configuration
    assert order_key(space.decode(nxt[0])) not in tried
    rec = restored.recommend(study)
    assert rec["order"] in tried and rec["lo"] <= rec["mean"] <= rec["hi"]


@pytest.mark.parametrize("bad", ["probe", "inf", "-inf"])
def test_order_bo_keeps_its_model_after_a_non_finite_score(bad):
    """A NaN probe (Optuna stores it as an intermediate value) or an infinite final (Optuna keeps it
    COMPLETE) is no evidence the GP can take: it is left out, so the GP still fits (the recommendation has
    its interval) instead of every later proposal falling back to the start-up design, and an infinite
    final is never the recommendation."""
    from search.searchers.order_bo import OrderBOSampler
    from search.trial import define

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space, table = _planted(n_tasks=4, length=2)
    sampler = OrderBOSampler(space, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    poisoned = None
    for n in range(6):
        t = study.ask()
        define(t, space=space, hparams={})
        key = order_key(space.decode(t.params))
        probes, final = table[key]
        for i, v in enumerate(probes, 1):
            t.report(float("nan") if (n, i, bad) == (1, 1, "probe") else v, i)
        study.tell(t, float(bad) if n == 1 and bad != "probe" else final)
        if n == 1:
            poisoned = key
    rec = sampler.recommend(study)
    assert rec["lo"] is not None and math.isfinite(rec["mean"]), rec  # the GP was fitted
    assert bad == "probe" or rec["order"] != poisoned
    nxt = order_key(space.decode(sampler._propose(study)))
    assert nxt != poisoned and nxt not in [order_key(space.decode(t.params)) for t in study.trials]


def test_order_bo_proposes_the_same_orders_whatever_torch_generator_state():
    """Reproducible: the same table and searcher seed give the same orders, whatever drew from torch's
    global generator before (BoTorch initialises the task kernel from it)."""
    import torch

    from search.searchers.order_bo import OrderBOSampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space, table = _planted(n_tasks=4, length=2)
    runs = []
    for state in (1, 2):
        torch.manual_seed(state)
        runs.append(_replay(OrderBOSampler(space, seed=0, n_startup=2), space, table, 7))
    assert runs[0] == runs[1]


def test_fast_posterior_equals_botorch_posterior_with_and_without_believers():
    """``FinalPosterior`` (the proposals' batched posterior) gives BoTorch's own numbers: the mean and
    standard deviation of ``model.posterior`` at the final fidelity, and of the model conditioned on
    pending configurations at their posterior mean (``condition_on_observations``)."""
    import numpy as np
    import torch

    from search.searchers.order_bo import Observations, OrderBOSampler, _one_thread
    from search.searchers.posterior import FinalPosterior
    from search.searchers.surrogate import FINAL

    space, table = _planted(n_tasks=5, length=3)
    sampler = OrderBOSampler(space, seed=0, fit_iters=10, from_start="never")
    keys = sorted(table)
    obs = Observations()
    for k in keys[:25]:  # finals, and their probes (repeated prefixes: shared kernel columns)
        order = k.split(">")
        obs.finals.append((order, {}, table[k][1]))
        obs.probes += [(order[:i], {}, v) for i, v in enumerate(table[k][0], 1)]
    configs = [(k.split(">"), {}) for k in keys[20:]]
    pending = configs[10:13]
    with _one_thread():
        model = sampler.surrogates[0].fit(obs)
        F = sampler.features.matrix(configs)
        task = np.full((len(F), 1), FINAL)
        X = torch.tensor(np.hstack([F, task]))
        for pend in (None, pending):
            m = model
            if pend:
                Fp = sampler.features.matrix(pend)
                mu_p = model.posterior(torch.tensor(np.hstack([Fp, task[:len(Fp)]]))).mean.detach()
                m = model.condition_on_observations(torch.tensor(np.hstack([Fp, task[:len(Fp)]])), mu_p)
            with torch.no_grad():
                ref = m.posterior(X)
            mu, sd = FinalPosterior(model, sampler.features.matrix(pend) if pend else None)(F)
            assert len(FinalPosterior(model).inputs) < len(model.train_inputs[0])  # columns were shared
            np.testing.assert_allclose(mu, ref.mean.reshape(-1).numpy(), atol=1e-9)
            np.testing.assert_allclose(sd, ref.variance.reshape(-1).sqrt().numpy(), atol=1e-9)
            jm, jc = FinalPosterior(model, sampler.features.matrix(pend) if pend else None).joint(F[:8])
            np.testing.assert_allclose(jm, ref.mean.reshape(-1).numpy()[:8], atol=1e-9)  # ... and jointly
            np.testing.assert_allclose(jc, ref.covariance_matrix.numpy()[:8, :8], atol=1e-9)


def test_unexplored_orders_against_botorchs_joint_posterior_of_every_unfinished_order():
    """order_bo's "could an order not finished beat the pick?": its probability and expected gain equal a
    Monte Carlo of BoTorch's own joint posterior over the pick and every unfinished order (no truncation,
    other draws), its single most likely order the exact pairwise probability; every order finished
    leaves nothing; searched hyperparameters give no figure."""
    import numpy as np
    import torch
    from scipy.stats import norm

    from search.searchers.order_bo import Observations, OrderBOSampler, _one_thread
    from search.searchers.posterior import FinalPosterior
    from search.searchers.surrogate import FINAL, Averaged

    space, table = _planted(n_tasks=5, length=3)
    sampler = OrderBOSampler(space, seed=0, fit_iters=10, from_start="never")
    keys = sorted(table)
    obs = Observations()
    for k in keys[:25]:
        order = k.split(">")
        obs.finals.append((order, {}, table[k][1]))
        obs.probes += [(order[:i], {}, v) for i, v in enumerate(table[k][0], 1)]
    with _one_thread():
        model = sampler.surrogates[0].fit(obs)
    post = Averaged([(1.0, sampler.surrogates[0], FinalPosterior(model))])
    done = [(k.split(">"), {}) for k in keys[:25]]
    pick = done[int(np.argmax(post(done)[0]))]
    u = sampler.unexplored(post, obs, pick)
    left = [(list(o), {}) for o in space.orders() if ">".join(o) not in keys[:25]]
    assert (u["orders"], u["of"], u["considered"]) == (len(left), 60, 35)
    X = torch.tensor(np.hstack([sampler.features.matrix([pick] + left), np.full((1 + len(left), 1), FINAL)]))
    with torch.no_grad():
        ref = model.posterior(X)
    m, C = ref.mean.reshape(-1).numpy(), ref.covariance_matrix.numpy()
    draws = np.random.default_rng(123).multivariate_normal(m, C, size=40000, method="eigh")
    gain = draws[:, 1:].max(1) - draws[:, 0]
    assert abs(u["p_better"] - (gain > 0).mean()) < 0.02
    assert u["expected_gain"] == pytest.approx(np.clip(gain, 0, None).mean(), rel=0.05, abs=1e-4)
    pair = norm.cdf((m[1:] - m[0]) / np.sqrt(np.diag(C)[1:] + C[0, 0] - 2 * C[0, 1:]))
    assert u["most_likely"] == ">".join(left[int(np.argmax(pair))][0])
    assert u["p_most_likely"] == pytest.approx(pair.max(), abs=1e-6)
    obs.finals += [(o, {}, 0.5) for o, _ in left]  # every order finished
    assert sampler.unexplored(post, obs, pick) == {"orders": 0, "of": 60, "draws": 4000, "p_better": 0.0,
                                                   "expected_gain": 0.0}
    sampler.hparams = {"train.lr": None}
    assert sampler.unexplored(post, obs, pick) is None


def _effects_table(where: str, seed: int = 0):
    """40 orders of lengths 1-3 of 5 tasks scored by one effect per (task, position): positions counted
    from the start (``where="start"``) or as depths from the end (``"end"``)."""
    import numpy as np

    space = OrderSpace(candidates=list("abcde"), lengths=[1, 2, 3])
    rng = np.random.default_rng(seed)
    eff = {t: rng.normal(0, 0.05, 3) for t in space.candidates}
    at = (lambda o, i: i) if where == "start" else (lambda o, i: len(o) - 1 - i)  # noqa: E731
    orders = [list(o) for o in space.orders()]
    picked = [orders[i] for i in rng.choice(len(orders), 40, replace=False)]
    finals = [(o, {}, 0.6 + sum(eff[t][at(o, i)] for i, t in enumerate(o)) + rng.normal(0, 0.003)) for o in picked]
    return space, finals


@pytest.mark.parametrize("where", ["start", "end"])
def test_order_bo_averages_its_surrogates_by_evidence_toward_the_positions_the_data_follows(where):
    """search.order_bo.from_start: average (the default) fits a GP over depths from the end and one that
    also sees positions from the start; their evidence (BIC-style, at the fit) weighs them. On orders of
    mixed lengths scored by positions from the start the second takes the weight, scored by depths from
    the end the first (less decisively: the second holds the first's features too, and pays only for
    its two extra hyperparameters); where one takes it all, the averaged posterior is that surrogate's
    alone (the other's is not computed)."""
    import numpy as np

    from search.searchers.order_bo import Observations, OrderBOSampler, _one_thread

    winner = "from_start" if where == "start" else "from_end"
    for seed in (0, 3):
        space, finals = _effects_table(where, seed)
        sampler = OrderBOSampler(space, seed=0)
        assert [s.features.from_start for s in sampler.surrogates] == [False, True]
        with _one_thread():
            post = sampler._posterior(Observations(finals=finals))
        w = sampler.surrogate_weights()
        assert w[winner] > 0.95 and sum(w.values()) == pytest.approx(1.0, abs=1e-3), (seed, w)
    assert len(post.parts) == 1 and post.parts[0][1].features.from_start == (where == "start")
    configs = [(list(o), {}) for o in space.orders()][:30]
    single = OrderBOSampler(space, seed=0, from_start="always" if where == "start" else "never")
    with _one_thread():
        np.testing.assert_allclose(post(configs), single._posterior(Observations(finals=finals))(configs), atol=1e-9)
    assert [len(s.surrogates) for s in (single, OrderBOSampler(space, seed=0, from_start="never"))] == [1, 1]
    assert single.surrogate_weights() is None  # (one surrogate: nothing averaged)


def test_averaged_posterior_is_the_evidence_weighted_mixture_of_its_surrogates():
    """``surrogate.Averaged``: the mixture's mean and variance from its components' own posteriors, the
    pairwise P(above) as their weighted normal CDFs and its joint draws (``rivals``) with the mixture's moments and a
    share of draws per component equal to its weight; weights follow exp(evidence), one below
    ``NEGLIGIBLE`` is dropped."""
    import numpy as np
    from scipy.stats import norm

    from search.searchers.order_bo import Observations, OrderBOSampler, _one_thread
    from search.searchers.posterior import FinalPosterior
    from search.searchers.surrogate import Averaged

    space, finals = _effects_table("start", seed=3)
    sampler = OrderBOSampler(space, seed=0)
    obs = Observations(finals=finals)
    with _one_thread():
        models = [s.fit(obs) for s in sampler.surrogates]
    posts = [FinalPosterior(m) for m in models]
    parts = [(0.3, sampler.surrogates[0], posts[0]), (0.7, sampler.surrogates[1], posts[1])]
    mix = Averaged(parts)
    configs = [(list(o), {}) for o in space.orders()][:20]
    (m0, s0), (m1, s1) = (p(s.features_of(configs)) for _, s, p in parts)
    mean, sd = mix(configs)
    np.testing.assert_allclose(mean, 0.3 * m0 + 0.7 * m1, atol=1e-12)
    np.testing.assert_allclose(sd ** 2, 0.3 * (s0 ** 2 + m0 ** 2) + 0.7 * (s1 ** 2 + m1 ** 2) - mean ** 2, atol=1e-12)
    pick, rest = configs[0], configs[1:]
    ref = 0.0
    for w, s, p in parts:
        jm, jc = p.joint(s.features_of([pick] + rest))
        ref = ref + w * norm.cdf((jm[1:] - jm[0]) / np.sqrt(np.diag(jc)[1:] + jc[0, 0] - 2 * jc[0, 1:]))
    draws, above = mix.rivals(pick, rest, 40_000, np.random.default_rng(0))
    np.testing.assert_allclose(above, ref, atol=1e-9)
    assert draws.shape == (40_000, 20)
    np.testing.assert_allclose(draws.mean(0), mean, atol=4 * sd.max() / np.sqrt(40_000) + 1e-6)
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.03)
    for s, e in zip(sampler.surrogates, (0.0, np.log(3.0))):  # weights 1:3 by evidence
        s.evidence = e
    w = [x for x, _, _ in Averaged.of(list(zip(sampler.surrogates, models)), []).parts]
    assert w == pytest.approx([0.25, 0.75])
    sampler.surrogates[0].evidence = -20.0  # exp(-20) / (1 + ...) < NEGLIGIBLE: left out
    assert [s for _, s, _ in Averaged.of(list(zip(sampler.surrogates, models)), []).parts] == sampler.surrogates[1:]
    assert Averaged.of([(sampler.surrogates[0], None)], []) is None  # no fit: no posterior
    for s in sampler.surrogates:  # (restored from before averaging: no evidence yet) the first alone
        s.evidence = None
    assert [(w, s) for w, s, _ in Averaged.of(list(zip(sampler.surrogates, models)), []).parts] == [
        (1.0, sampler.surrogates[0])]


def test_order_bo_pickled_before_surrogates_were_averaged_resumes_with_its_one_gp():
    """A search pickled by the version with one GP (its state in the sampler: features, _warm,
    _fitted_at) resumes with that GP alone and proposes what it would have."""
    from search.searchers.order_bo import OrderBOSampler
    from search.trial import define

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space, table = _planted(n_tasks=5, length=2)
    before = OrderBOSampler(space, seed=0, n_startup=2, from_start="never")
    study = optuna.create_study(direction="maximize", sampler=before)
    for _ in range(6):
        t = study.ask()
        define(t, space=space, hparams={})
        probes, final = table[order_key(space.decode(t.params))]
        for i, v in enumerate(probes, 1):
            t.report(v, i)
        study.tell(t, final)
    state = before.__getstate__()
    (g,) = state.pop("surrogates")
    del g.features.__dict__["from_start"]  # (features pickled then had no such attribute)
    state.update(features=g.features, _warm=g.warm, _fitted_at=g.fitted_at, _cands=None)  # the old layout
    old = OrderBOSampler.__new__(OrderBOSampler)
    old.__setstate__(state)
    assert len(old.surrogates) == 1 and not old.features.from_start and old.surrogates[0].fitted_at == g.fitted_at
    assert OrderBOSampler._propose(old, study) == OrderBOSampler._propose(before, study)


def _dists(space: OrderSpace, key: str) -> dict:
    n = len(space.candidates)
    return {f"l{i}": optuna.distributions.CategoricalDistribution(list(range(n - i))) for i in range(len(key.split(">")))}


@pytest.mark.parametrize("searcher", ["order_bo", "tpe", "random"])
def test_searcher_state_pickles(searcher, tmp_path):
    """Ray saves the searcher (and the scheduler) with the experiment (resume); they must round-trip
    and continue where they were. The study's copy in <experiment>/optuna.db follows the searcher: a
    restored searcher rebuilds it from its snapshot (trials the killed driver finished after the
    snapshot leave it, and run again)."""
    from search.config import SearchConfig
    from search.schedulers import make_scheduler
    from search.searchers import make_searcher, study_copy_url
    from search.storage import Storage

    scfg = SearchConfig(candidates=TOY3, length=(1, 2), seed_points={"singles": True}, searcher=searcher)
    st = Storage(str(tmp_path), "exp")
    st.write_text("x", "search.yaml")
    url = study_copy_url(scfg, st)  # the default: a copy in the experiment folder
    assert url == st.path("optuna.journal")
    s = make_searcher(scfg, [[t] for t in TOY3], copy_url=url, study_name="exp")
    s.set_search_properties("objective", "max", {})

    def run(searcher, i, score):
        c = searcher.suggest(f"t{i}")
        searcher.on_trial_result(f"t{i}", {"objective": score - 0.3, "training_iteration": 1})
        searcher.on_trial_complete(f"t{i}", {"objective": score, "final": 1})
        return scfg.space().decode(c)

    first = [run(s, i, 0.5 + 0.1 * i) for i in range(3)]
    assert first == [[t] for t in TOY3]
    s.save(str(tmp_path / "searcher.pkl"))  # (a save copies what is new at once)
    journal = lambda: optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))  # noqa: E731
    copy = lambda: optuna.load_study(study_name="exp", storage=journal()).trials  # noqa: E731
    assert len(copy()) == 3 and sorted(t.value for t in copy()) == pytest.approx([0.5, 0.6, 0.7])
    ahead = run(s, 3, 0.9)  # finished after the snapshot, then the driver dies
    s.sync_copy(force=True)
    assert len(copy()) == 4
    s2 = make_searcher(scfg, [])
    s2.restore(str(tmp_path / "searcher.pkl"))
    assert s2.orders_seen == set(TOY3)  # the dedup state comes back with the Optuna study
    nxt = run(s2, 4, 0.8)
    assert scfg.space().is_valid(nxt) and nxt not in first
    s2.sync_copy(force=True)
    assert sorted(t.value for t in copy()) == pytest.approx([0.5, 0.6, 0.7, 0.8]), ahead  # what s2 knows
    sched = pickle.loads(pickle.dumps(make_scheduler(scfg)))
    assert type(sched).__name__ == "OrderASHA" and sched._rng.random() == make_scheduler(scfg)._rng.random()


def test_results_csv_rewrites_are_throttled_then_flushed(tmp_path, monkeypatch):
    """results.csv is rewritten whole (O(trials)): a burst of reports costs a few rewrites, not one
    each, and nothing is lost: Tune's next controller step or the end of the search writes the rest."""
    import time
    from types import SimpleNamespace

    from search.config import SearchConfig
    from search.runner import ResultsWriter
    from search.storage import Storage

    w = ResultsWriter(Storage(str(tmp_path / "runs"), "e"), SearchConfig(candidates=TOY3, length=1), "accuracy", ["en"],
                      log=lambda *a: None)
    writes = []
    real = w._write_now

    def slow_write():  # a rewrite that takes 5 ms (a large results.csv)
        time.sleep(0.005)
        writes.append(time.monotonic())
        real()

    monkeypatch.setattr(w, "_write_now", slow_write)
    t = SimpleNamespace(trial_id="a", config={"order": "toy_topic"}, status="RUNNING")
    w.on_trial_start(0, [t], t)
    for step in range(1, 201):  # 200 reports in a burst
        w.on_trial_result(0, [t], t, {"step": step})
    assert len(writes) < 20, len(writes)
    assert all(b - a >= 0.09 for a, b in zip(writes, writes[1:]))  # >= 20 x 5 ms apart (less the write itself)
    rows = lambda: list(csv.DictReader((tmp_path / "runs" / "e" / "results.csv").open()))
    assert rows()[0]["stages_completed"] != "200"  # held back ...
    time.sleep(max(0.0, w._next_write - time.monotonic()) + 0.01)  # the pause (20 x the last write) is over
    w.on_step_end(0, [t])  # ... until Tune's next step after the pause
    assert rows()[0]["stages_completed"] == "200"
    w.on_trial_result(0, [t], t, {"step": 201})
    w.on_trial_result(0, [t], t, {"step": 202})
    w.flush()  # the end of a search (or an interrupted one)
    assert rows()[0]["stages_completed"] == "202"


def test_a_trial_that_starts_again_counts_its_stages_from_zero(tmp_path):
    """A trial whose worker died runs again from its first stage (Tune starts it again, the same id). Its row
    kept the stages of the first try: stopped by ASHA after stage 1 of the second, results.csv (and the report)
    said "stopped by ASHA after stage 2", where its MLflow run said after stage 1."""
    from types import SimpleNamespace

    from search.config import SearchConfig
    from search.results import ResultsWriter
    from search.storage import Storage

    w = ResultsWriter(Storage(str(tmp_path), "e"), SearchConfig(candidates=TOY3, length=3), "accuracy", ["en"],
                      log=lambda *a: None)
    t = SimpleNamespace(trial_id="t1", config={"order": "toy_topic>toy_align>toy_length"}, status="RUNNING")
    w.on_trial_start(0, [t], t)
    w.on_trial_result(0, [t], t, {"step": 1, "objective": 0.5})
    w.on_trial_result(0, [t], t, {"step": 2, "objective": 0.6})
    w.on_trial_start(0, [t], t)  # (the worker died: the same trial again, from its start)
    w.on_trial_result(0, [t], t, {"step": 1, "objective": 0.5})
    t.status = "TERMINATED"
    w.on_trial_complete(0, [t], t)  # stopped by ASHA at its first rung
    w.flush()
    row = next(csv.DictReader((tmp_path / "e" / "results.csv").open()))
    assert (row["status"], row["stages_completed"]) == ("stopped", "1"), row


def test_best_orders_follow_the_first_objectives_direction(tmp_path):
    """search.metric: [std, mean]: the score is the first objective, std, lower is better. The best orders
    (console, summary.json's best_observed) and the progress line's best are the lowest std, not the highest."""
    from types import SimpleNamespace

    from search.config import SearchConfig
    from search.results import ResultsWriter
    from search.storage import Storage

    lines: list[str] = []
    w = ResultsWriter(Storage(str(tmp_path), "e"), SearchConfig(candidates=TOY3, length=1, metric=["std", "mean"]),
                      "accuracy", ["en", "de"], log=lines.append)
    for tid, task, std, mean in (("t1", "toy_topic", 0.02, 0.7), ("t2", "toy_align", 0.3, 0.6)):
        t = SimpleNamespace(trial_id=tid, config={"order": task}, status="RUNNING")
        w.on_trial_start(0, [t], t)
        w.on_trial_result(0, [t], t, {"step": 2, "final": 1, "objective": std, "objective_std": std, "objective_mean": mean})
        t.status = "TERMINATED"
        w.on_trial_complete(0, [t], t)
    assert [r["order"] for r in w.front()] == ["toy_topic"]  # toy_align: higher std and lower mean
    assert [r["order"] for r in w.best(2)] == ["toy_topic", "toy_align"]
    assert lines[-1].endswith("best 0.0200 (toy_topic)"), lines[-1]


def test_a_replayed_repeat_after_a_resume_is_listed_once_among_the_best(tmp_path):
    """stages.*.lr: a row has an hp: column per task, blank for the tasks not in its order. After `itt resume` the
    rows come back from results.csv with every column; a repeat of a finished configuration (a trial that replays
    it) is still the same configuration: listed once among the best orders (summary.json's best_observed)."""
    from types import SimpleNamespace

    from search.config import SearchConfig
    from search.results import ResultsWriter
    from search.storage import Storage

    scfg = SearchConfig(candidates=TOY3, length=1, hparams={"stages.*.lr": {"choice": [1e-3, 1e-4]}})
    st = Storage(str(tmp_path), "e")
    trial = lambda tid, task, lr: SimpleNamespace(trial_id=tid, config={"order": task, f"stages.{task}.lr": lr},  # noqa: E731
                                                  status="RUNNING")

    def run(w, trials, t, score, **extra):
        w.on_trial_start(0, trials, t)
        w.on_trial_result(0, trials, t, {"step": 2, "final": 1, "objective": score, **extra})
        t.status = "TERMINATED"
        w.on_trial_complete(0, trials, t)

    w = ResultsWriter(st, scfg, "accuracy", ["en"], log=lambda *a: None)
    ts = [trial("t1", "toy_topic", 1e-3), trial("t2", "toy_align", 1e-4)]
    run(w, ts, ts[0], 0.7)
    run(w, ts, ts[1], 0.5)
    w.flush()
    w2 = ResultsWriter(st, scfg, "accuracy", ["en"], log=lambda *a: None)  # `itt resume`: rows from results.csv
    w2.setup()
    t3 = trial("t3", "toy_topic", 1e-3)
    run(w2, [*ts, t3], t3, 0.7, replayed=1)
    assert [(r["order"], float(r["score"])) for r in w2.best(5)] == [("toy_topic", 0.7), ("toy_align", 0.5)]


def test_resumed_search_counts_its_waiting_and_restarted_trials_as_tune_runs_them(tmp_path):
    """`itt resume --retry-errored` of a search whose driver died: results.csv says t2 running and t3 errored. Ray
    Tune puts t2 back in its queue (PENDING) and starts t3 again as a new trial (Trial.reset: a new id, t3's config).
    Until t2 starts it is pending, not also running (nor in the live view); t3 is no errored trial any more, and
    at the end it is not one that 'started after Ray Tune's last snapshot'."""
    import time
    from types import SimpleNamespace

    from search.config import SearchConfig
    from search.progress import running_trials
    from search.results import ResultsWriter
    from search.storage import Storage

    scfg = SearchConfig(candidates=TOY3, length=1)
    st = Storage(str(tmp_path), "e")
    trial = lambda tid, task, status: SimpleNamespace(trial_id=tid, config={"order": task}, status=status,  # noqa: E731
                                                      error_file=None)
    w = ResultsWriter(st, scfg, "accuracy", ["en"], log=lambda *a: None)
    ts = [trial("t1", "toy_topic", "RUNNING"), trial("t2", "toy_align", "RUNNING"), trial("t3", "toy_length", "RUNNING")]
    for t in ts:
        w.on_trial_start(0, ts, t)
    w.on_trial_result(0, ts, ts[0], {"step": 2, "final": 1, "objective": 0.7})
    w.on_trial_complete(0, ts, ts[0])
    w.on_trial_error(0, ts, ts[2])
    w.flush()  # (the driver dies here)
    lines: list[str] = []
    w2 = ResultsWriter(st, scfg, "accuracy", ["en"], log=lines.append)
    w2.setup()
    again = [trial("t1", "toy_topic", "TERMINATED"), trial("t2", "toy_align", "PENDING"), trial("t3b", "toy_length", "RUNNING")]
    w2.on_trial_start(0, again, again[2])
    assert [r.trial_id for r in running_trials(w2.rows, {}, time.time())] == ["t3b"]
    w2.on_trial_result(0, again, again[2], {"step": 2, "final": 1, "objective": 0.5})
    again[2].status = "TERMINATED"
    w2.on_trial_complete(0, again, again[2])
    assert "trials: 0 running, 1 pending, 2 finished, 0 stopped by ASHA, 0 errored;" in lines[-1], lines[-1]
    again[1].status = "RUNNING"
    w2.on_trial_start(0, again, again[1])
    assert "1 running, 0 pending" in w2.status_line()
    w2.on_trial_result(0, again, again[1], {"step": 2, "final": 1, "objective": 0.6})
    again[1].status = "TERMINATED"
    w2.on_trial_complete(0, again, again[1])
    w2.on_experiment_end(again)
    assert not any("last snapshot" in ln for ln in lines), lines
    assert {r["trial_id"]: r["status"] for r in csv.DictReader((tmp_path / "e" / "results.csv").open())} == {
        "t1": "completed", "t2": "completed", "t3b": "completed"}


# ------------------------------------------------------------------ where a trial's chain runs
@pytest.mark.ray
def test_one_worker_trials_run_in_their_own_process_with_its_resources(monkeypatch):
    """One worker: the Tune trial itself holds the worker's CPUs and GPU fraction (no TorchTrainer);
    more workers (or ``ray_train``): the trial holds its driver share, Ray Train the workers'. A trial's
    process runs the next trial (Tune's reuse_actors) for a chain in it, on any Ray; for a simulated one
    only on one node: on a cluster Tune handed the process of the trial just ended to the next one, and the
    other nodes' processes, still starting, were dropped (tests/test_two_hosts.py: all 4 trials on the head)."""
    import ray

    from search import runner
    from search.config import SearchConfig
    from search.trial import in_trial_process, trial_resources

    def cfg(**res):
        return SearchConfig(candidates=TOY3, length=1, resources={"cpus_per_worker": 0.75, "trial_cpus": 0.25, **res})

    one = cfg(gpus_per_worker=0.5)
    assert in_trial_process(one.resources) and trial_resources(one) == {"cpu": 1.0, "gpu": 0.5}
    assert trial_resources(cfg()) == {"cpu": 1.0}
    for train in (cfg(workers_per_trial=2, gpus_per_worker=1), cfg(ray_train=True)):
        assert not in_trial_process(train.resources) and trial_resources(train) == {"cpu": 0.25}
    sim = cfg().model_copy(update={"simulate": {"table": "t.csv"}})
    assert trial_resources(sim) == {"cpu": 0.25}  # a table lookup: the cheapest trial
    for alive, autoscale, sim_reuses in (([True], None, True), ([True, False], None, True), ([True, True], None, False),
                                         ([True], 4, False)):
        monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": a} for a in alive])
        assert runner._reuse_actors(sim, autoscale) is sim_reuses, (alive, autoscale)
        assert runner._reuse_actors(one, autoscale) and not runner._reuse_actors(cfg(ray_train=True), autoscale)


# ------------------------------------------------------------------ one real search through Ray
@pytest.mark.parametrize("ray_train", [False], ids=["own-process"])  # (the Ray Train path: test_resume's fault test)
def test_real_tiny_search_stopped_order_continues_and_repeat_replays(ray_train, tmp_path, ray_local, capsys):
    """Real chains through Ray (in the trial's own process, or on a Ray Train TorchTrainer): ASHA stops an order after its first stage; when the searcher proposes it
    again it CONTINUES (stage 1 from the stage cache, only stage 2 trained, counted in ITT_STAGE_LOG) and
    runs to its final; a repeat of a completed order is replayed, not retrained."""
    import ray

    log = tmp_path / "stages.log"
    if ray.is_initialized():  # trial processes must see ITT_STAGE_LOG: a Ray of our own with it set
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"ITT_STAGE_LOG": str(log)}})
    # quickstart-sized: big enough that probes carry signal (the probe after toy_topic beats the one
    # after toy_parity), so ASHA stops the second order at its first rung
    base = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    base.pop("search")
    base.update({"train": {"lr": 1e-3, "batch_size": 32, "max_steps": 60, "max_length": 32},
                 "finetune": {"max_steps": 100}, "toy": {"n_train": 2000, "n_eval": 100}, "save_checkpoint": False,
                 "eval": {"batch_size": 256}, "seeds": [0]})
    a, b = "toy_topic>toy_length", "toy_parity>toy_length"
    search = {"candidates": ["toy_topic", "toy_parity", "toy_length"], "length": 2, "last": "toy_length",
              "searcher": "random", "num_samples": 4, "seed_points": {"orders": [a, b]}, "probe_steps": 100,
              # a one-value hparam: once every order has run, the searcher lets a repeat through as a
              # trial (hparams could differ in general), and the trial replays the earlier result
              "hparams": {"train.lr": {"choice": [0.001]}},
              "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
              "resources": {"workers_per_trial": 1, "cpus_per_worker": 0.75, "trial_cpus": 0.25, "max_concurrent": 1,
                            "ray_train": ray_train}}
    p = _search_config(tmp_path, search, base)
    code = main(["search", str(p), "--storage", str(tmp_path / "runs"), "--name", "real"])
    out = capsys.readouterr().out
    assert code == 0, out
    exp = tmp_path / "runs" / "real"
    rows = _rows(exp)
    assert [r["order"] for r in rows[:3]] == [a, b, b], [(r["order"], r["status"]) for r in rows]
    first, stopped, continued = rows[:3]
    assert first["status"] == "completed" and first["stopped_early"] == "false"
    assert stopped["status"] == "stopped" and stopped["stages_completed"] == "1" and stopped["score"] == ""
    assert continued["status"] == "completed" and continued["score"] and continued["test_mean"]
    # the continuation took stage 1 from the cache and trained only stage 2 (the chain's counts) ...
    assert (continued["stages_from_cache"], continued["stages_trained"]) == ("1", "1")
    # ... and so says the audit trail of every stage-training in every process
    trained = [tuple(e["prefix"]) for e in _events(log) if e["event"] == "stage"]
    assert trained.count(("toy_parity",)) == 1 and trained.count(("toy_parity", "toy_length")) == 1, trained
    assert trained.count(("toy_topic",)) == 1 and trained.count(("toy_topic", "toy_length")) == 1, trained
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["continuations"] == 1
    # what each stage cost reaches the study (order_bo's cost model; optuna-dashboard shows it): measured by
    # the trial that trained it, carried by the stage cache to the continuation that loaded it
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(exp / "optuna.journal")))
    attrs = [t.user_attrs for t in sorted(optuna.load_study(study_name="real", storage=journal).trials,
                                          key=lambda t: t.number)[:3]]
    assert all(a["stage_seconds_1"] > 0 for a in attrs) and attrs[0]["stage_seconds_2"] > 0
    assert attrs[2]["stage_seconds_1"] == attrs[1]["stage_seconds_1"] and "fixed_seconds" not in attrs[1]
    assert attrs[0]["fixed_seconds"] > 0 and attrs[2]["fixed_seconds"] > 0
    # a fourth trial repeats a completed order: replayed, not retrained
    assert len(rows) == 4 and rows[3]["replayed"] == "true" and rows[3]["score"] == {a: first, b: continued}[rows[3]["order"]]["score"]
    assert ("best orders observed (score: search.metric mean, the dev mean over the target's languages; "
            "`itt report` reads the test split where there is one):") in out
    assert str(exp / "results.csv") in out
    # every trial (trained, stopped, continued or replayed) records the node it ran on, as Ray registered it
    assert {r["node_ip"] for r in rows} == {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    # a TorchTrainer keeps its runs under train/ and records its placement group; a trial's own process neither
    assert (exp / "train").is_dir() == ray_train
    assert any((exp / "trials").glob("*/placement_group")) == ray_train
    # XTREME's score of an accuracy task is the mean accuracy over languages (test split)
    done = [r for r in rows if r["status"] == "completed"]
    assert all(r["en"] and r["xc"] and float(r["xtreme_average"]) == pytest.approx(float(r["test_mean"])) ==
               pytest.approx(float(r["xtreme_toy_xnli"])) for r in done)
    # what training each order costs, in tokens: the same for the completed order and its replay
    assert all(float(r["chain_tokens"]) > 0 for r in done) and rows[3]["chain_tokens"] == {a: first, b: continued}[
        rows[3]["order"]]["chain_tokens"]
    # the search as a pilot for `itt space`'s hours: its chains' seconds, its own settings (no difference)
    from search import plan

    timing = plan.timing_from(str(exp))
    assert set(timing.stage) == {"toy_topic", "toy_parity", "toy_length"} and timing.finetune > 0
    est, measured = timing.check()
    assert 0.75 < est / measured < 1.33, (est, measured)
    assert main(["space", str(p), "--samples", "0", "--from", str(exp)]) == 0
    out = capsys.readouterr().out
    assert "hours, at the seconds measured by" in out and "other settings" not in out and "not measured" not in out


def _events(log) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


@pytest.mark.ray
def test_existing_experiment_is_refused(tmp_path, capsys):
    p = _search_config(tmp_path, {"candidates": TOY3, "length": 1})
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    _error(["search", str(p), "--storage", str(tmp_path / "runs"), "--name", "taken"], capsys, "exists already", "itt resume")


def test_resources_no_node_can_hold(tmp_path, ray_local, capsys):
    p = _search_config(tmp_path, {"candidates": TOY3, "length": 1, "resources": {"gpus_per_worker": 1}})
    _error(["search", str(p), "--storage", str(tmp_path / "runs")], capsys, "search.resources", "no node has that")
    p = _search_config(tmp_path, {"candidates": TOY3, "length": 1, "resources": {"workers_per_trial": 9}}, name="w.yaml")
    _error(["search", str(p), "--storage", str(tmp_path / "runs2")], capsys, "9 workers")
    # each worker fits, but not both beside the trial's own CPUs: Ray Train waited for them forever
    p = _search_config(tmp_path, {"candidates": TOY3, "length": 1, "resources": {"workers_per_trial": 2}}, name="x.yaml")
    db = tmp_path / "new.db"  # the store check creates it: a refused search leaves no store behind
    _error(["search", str(p), "--storage", str(tmp_path / "runs3"), "--tracking-uri", f"sqlite:///{db}"], capsys,
           "search.resources: a trial needs 2.25 CPU (trial_cpus 0.25 + 2 workers x cpus_per_worker 1) and 0 GPU, "
           "but the cluster has 2 CPU and 0 GPU in all")
    assert not db.exists() and not (tmp_path / "runs3").exists()
    from mlflow.tracking import MlflowClient

    old = tmp_path / "old.db"  # a store that was there before stays, whatever it holds
    MlflowClient(f"sqlite:///{old}").search_experiments()
    _error(["search", str(p), "--storage", str(tmp_path / "runs3"), "--tracking-uri", f"sqlite:///{old}"], capsys,
           "search.resources: a trial needs 2.25 CPU")
    assert old.exists()


def test_an_autoscaling_cluster_with_no_worker_yet_is_not_refused(tmp_path, monkeypatch):
    """cluster.yaml's workers start from none: a search joining it from the head saw 0 CPU / 0 GPU and refused
    every GPU search. Where `ray up` left the autoscaler's config on the head, the missing node is what the
    trials ask the autoscaler for: a warning, and as many trials at once as it may start workers. Without
    such a config (a local Ray, a fixed cluster) it is still one error line. (Ray itself is mocked.)"""
    import ray

    from itt.errors import UserError
    from search import runner
    from search.config import load_search

    head = [{"Alive": True, "Resources": {"CPU": 0.0}}]
    monkeypatch.setattr(ray, "nodes", lambda: head)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 0.0})
    p = _search_config(tmp_path, {"candidates": TOY3, "length": 1, "resources": {"gpus_per_worker": 1, "cpus_per_worker": 6}})
    scfg, _, _ = load_search(str(p))
    boot = tmp_path / "ray_bootstrap_config.yaml"
    monkeypatch.setattr(runner, "AUTOSCALER_CONFIG", str(boot))
    assert runner.autoscaler_workers("auto") is None  # no launcher config here
    with pytest.raises(UserError, match=r"a trial needs 6.25 CPU and 1 GPU, but no node has that \(nodes: 0 CPU / 0 GPU\)"):
        runner._check_resources(scfg, runner.autoscaler_workers("auto"))
    boot.write_text("cluster_name: itt\nmax_workers: 8\navailable_node_types: {}\n")
    assert runner.autoscaler_workers(None) is None  # a local Ray started by the search: nothing autoscales it
    assert runner.autoscaler_workers("auto") == 8
    said = []
    assert runner._check_resources(scfg, 8, log=said.append) == 8
    assert said == ["search.resources: a trial needs 6.25 CPU and 1 GPU, but no node has that (nodes: 0 CPU / 0 GPU) yet: "
                    f"the autoscaler ({boot}, max_workers 8) starts nodes as trials ask for them; up to 8 trial(s) at once "
                    "(search.resources.max_concurrent)"]
    head.append({"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}})  # one worker up: still up to 8 at once
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0, "GPU": 1.0})
    assert runner._check_resources(scfg, 8, log=said.append) == 8 and len(said) == 1
    # trials on other nodes write into the experiment from there: each live node is asked whether it sees a
    # local --storage (tests/test_two_hosts.py asks real ones); the nodes the autoscaler starts later cannot be
    from search.storage import Storage

    asked = []
    monkeypatch.setattr(runner, "missing_on_nodes", lambda paths: (asked.append(paths), ({}, []))[1])
    said.clear()
    local = Storage(str(tmp_path / "runs"), "e")
    runner._check_nodes_see(local, scfg, runner.autoscaler_workers("auto"), said.append, marker="driver.json")
    assert asked == [{f"--storage {tmp_path / 'runs' / 'e'}": str(tmp_path / "runs" / "e" / "driver.json")}]
    assert said == [f"warning: --storage {tmp_path / 'runs' / 'e'} on a cluster of 2 node(s) that autoscales: nodes the "
                    "autoscaler starts later are not asked: trials there need the same folder (a mount every node "
                    "shares; an s3://... or gs://... --storage otherwise)"]
    monkeypatch.setattr(runner, "missing_on_nodes", lambda paths: ({"10.0.0.7": list(paths)}, []))
    with pytest.raises(UserError, match=rf"^on a cluster of 2 node\(s\) that autoscales, --storage {tmp_path / 'runs' / 'e'} "
                                        r"is not on node\(s\) 10.0.0.7 \(asked on each node\): give --storage a folder"):
        runner._check_nodes_see(local, scfg, 8, said.append, marker="driver.json")
    # local files a trial reads, inside the job's --working-dir (Ray unpacks it per node and per submit)
    from types import SimpleNamespace

    from itt.config import DataSpec

    job = "/tmp/ray/session_x/runtime_resources/working_dir_files/_ray_pkg_ab12/configs"
    chain = SimpleNamespace(data_root=job, model=SimpleNamespace(name="xlm-roberta-base", tokenizer=None),
                            tasks={"panx": SimpleNamespace(train=DataSpec(files="panx/en.conll"), dev=None, test=None)})
    on_s3 = SimpleNamespace(remote=True, display="s3://bucket/runs/e")  # (no network here: only what it reads)
    said.clear()
    runner._check_nodes_see(on_s3, scfg, 8, said.append, chain, marker="driver.json")
    assert said == [f"warning: data_root {job} on a cluster of 2 node(s) that autoscales: inside this job's --working-dir, "
                    "which Ray unpacks per node and per submit; nodes started later and a resume submitted again may "
                    "not have it: put the files at a path every node has, or load them from the Hub"]
    chain.tasks = {}  # Hub data only: data_root is never read
    said.clear()
    runner._check_nodes_see(on_s3, scfg, 8, said.append, chain, marker="driver.json")
    assert said == []
    head.pop()
    boot.unlink()
    runner._check_nodes_see(local, scfg, runner.autoscaler_workers("auto"), said.append, marker="driver.json")
    assert said == []  # one machine


def test_a_trial_no_autoscaler_node_type_can_hold_is_one_line(tmp_path, monkeypatch):
    """`ray up` writes the workers' resources (from the instance type) into the autoscaler's config on the
    head: a trial that asks more than any node type has (2 GPUs of a g5.2xlarge's 1) was a warning and
    trials pending forever (Ray's autoscaler cannot start a node for them); now one error line. A private Ray
    (--address local) beside that config is not autoscaled."""
    import ray

    from itt.errors import UserError
    from search import runner
    from search.config import load_search

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 0.0}}])
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 0.0})
    boot = tmp_path / "ray_bootstrap_config.yaml"
    monkeypatch.setattr(runner, "AUTOSCALER_CONFIG", str(boot))
    boot.write_text(yaml.safe_dump({  # (as `ray up cluster.yaml` leaves it: resources filled in)
        "max_workers": 8, "head_node_type": "head",
        "available_node_types": {"head": {"resources": {"CPU": 0}, "node_config": {}},
                                 "gpu_worker": {"min_workers": 0, "max_workers": 8, "node_config": {},
                                                "resources": {"CPU": 8, "GPU": 1, "memory": 2.5e10}}}}))
    assert runner.autoscaler_workers("local") is None
    assert runner.autoscaler_node_types() == {"gpu_worker": {"resources": {"CPU": 8, "GPU": 1, "memory": 2.5e10},
                                                             "max_workers": 8}}
    two = _search_config(tmp_path, {"candidates": TOY3, "length": 1, "resources": {"gpus_per_worker": 2}})
    with pytest.raises(UserError, match=r"^search.resources: a trial needs 1.25 CPU and 2 GPU, but no node has that "
                                        r"\(nodes: 0 CPU / 0 GPU\), nor does any node type the autoscaler may start "
                                        r"\(gpu_worker 8 CPU / 1 GPU; .*\): its trials would wait forever$"):
        runner._check_resources(load_search(str(two))[0], runner.autoscaler_workers("auto"))
    one = _search_config(tmp_path, {"candidates": TOY3, "length": 1, "resources": {"gpus_per_worker": 1, "cpus_per_worker": 7}})
    said = []
    assert runner._check_resources(load_search(str(one))[0], 8, log=said.append) == 8 and len(said) == 1
    # trials at once: what the 8 nodes it may start hold (it was max_workers, 8, whatever a node holds)
    half = _search_config(tmp_path, {"candidates": TOY3, "length": 1, "resources": {"gpus_per_worker": 0.5}})
    assert runner._check_resources(load_search(str(half))[0], 8, log=said.append) == 16  # 2 a node (GPU 1 / 0.5)
    assert said[-1].endswith("up to 16 trial(s) at once (search.resources.max_concurrent)"), said[-1]
    pair = _search_config(tmp_path, {"candidates": TOY3, "length": 1, "resources": {"gpus_per_worker": 1, "workers_per_trial": 2}})
    assert runner._check_resources(load_search(str(pair))[0], 8, log=said.append) == 4  # 8 GPUs, 2 a trial
    # a Ray Train trial's own CPUs (trial_cpus 0.25) beside its workers: a worker of 8 CPUs fills a node, the 8
    # nodes hold 4 trials' workers, but their 64 CPUs only 3 trials of 16.25 (a 4th waits for one to end)
    full = _search_config(tmp_path, {"candidates": TOY3, "length": 1, "resources": {
        "gpus_per_worker": 1, "cpus_per_worker": 8, "workers_per_trial": 2}})
    assert runner._check_resources(load_search(str(full))[0], 8, log=said.append) == 3
    boot.write_text(yaml.safe_dump({"max_workers": 3, "available_node_types": {  # the cluster's cap, big nodes first
        "small": {"max_workers": 5, "resources": {"CPU": 4, "GPU": 1}},
        "big": {"max_workers": 2, "resources": {"CPU": 32, "GPU": 4}}}}))
    assert runner.autoscaled_trials(runner.autoscaler_node_types(), 3, {"CPU": 1, "GPU": 1}, 1) == 4 + 4 + 1
    assert runner.autoscaled_trials(runner.autoscaler_node_types(), 3, {"CPU": 1, "GPU": 1}, 2) == 4
    boot.write_text("max_workers: 8\navailable_node_types: {w: {resources: {}}}\n")  # not filled in: not judged
    assert runner.autoscaler_node_types() is None
    assert runner._check_resources(load_search(str(two))[0], 8, log=said.append) == 8

def test_asha_brackets_are_drawn_from_the_search_seed():
    """With brackets > 1, Ray's ASHA picks each trial's bracket from numpy's global state; ours from
    the search seed, so the same config and seed stop the same trials."""
    from types import SimpleNamespace

    import numpy as np

    from search.schedulers import OrderASHA

    calls = iter(range(100))

    def draws(seed):
        s = OrderASHA(time_attr="step", metric="objective", mode="max", max_t=4, grace_period=1,
                      reduction_factor=2, brackets=3, seed=seed)
        np.random.seed(next(calls))  # numpy's global state differs on every call: it must not matter
        out = []
        for i in range(40):
            t = SimpleNamespace(trial_id=f"t{i}")
            s.on_trial_add(None, t)
            out.append(s._brackets.index(s._trial_info[t.trial_id]))
        return out

    a, b = draws(0), draws(0)
    assert a == b and len(set(a)) == 3  # reproducible, and every bracket is used
    assert draws(1) != a
    assert a.count(0) > a.count(2)  # Ray's weights: the bracket with the most rungs is the likeliest


def test_a_bracket_with_no_rung_before_the_final_is_one_error_line(tmp_path, capsys):
    """brackets: 2 with the default grace_period (the longest order, 2 here; max_t 3): Ray's bracket 1 has
    its first rung at 2 x 2 = 4 stages, past the final, so about a quarter of the trials (Ray's weights)
    were never stopped, without a word. The rungs are Ray's own (_Bracket)."""
    from ray.tune.schedulers.async_hyperband import _Bracket

    assert [t for t, _ in _Bracket(2, 3, 2, 1)._rungs] == []  # (what the check reads)
    p = _search_config(tmp_path, {"candidates": TOY3, "length": [1, 2], "scheduler": {"brackets": 2}})
    _error(["space", str(p)], capsys, "search.scheduler.brackets: 2, and with grace_period 2, reduction_factor 2 and "
           "max_t 3 bracket 1 (counting from 0) has no rung before the final", "give brackets: 1, or a smaller grace_period")
    assert main(["space", str(p), "--set", "search.scheduler.grace_period=1"]) == 0  # bracket 1 stops at stage 2
    _error(["space", str(p), "--set", "search.scheduler.grace_period=1", "--set", "search.scheduler.brackets=3"],
           capsys, "bracket 2 (counting from 0) has no rung", "give brackets: 2")
    capsys.readouterr()


def test_simulated_rows_per_seed_one_seed_draw_and_hparams():
    """A simulated trial's rows (search.trial.simulated_rows, shared with the benchmark's offline replay):
    one per seed in seed order, the matching hparam rows only, and with ``one_seed`` one row fixed by the
    search seed and the order (the same every time; different search seeds reach different rows)."""
    from search.trial import simulated_rows

    rows = [{"order": "a", "seed": str(s), "lr": lr, "final": str(s + (10 if lr == "0.1" else 0))}
            for s in (2, 0, 1) for lr in ("0.1", "0.01")]
    got = simulated_rows(rows, ["a"], {"lr": 0.1}, 0, "mean")
    assert [r["seed"] for r in got] == ["0", "1", "2"] and all(r["lr"] == "0.1" for r in got)
    drawn = {simulated_rows(rows, ["a"], {"lr": 0.1}, s, "one_seed")[0]["seed"] for s in range(20)}
    assert len(drawn) > 1 and drawn <= {"0", "1", "2"}
    assert simulated_rows(rows, ["a"], {"lr": 0.1}, 7, "one_seed") == simulated_rows(rows, ["a"], {"lr": 0.1}, 7, "one_seed")
    assert simulated_rows([{"order": "a", "final": "1"}, {"order": "a", "final": "2"}], ["a"], {}, 0, "mean") == [
        {"order": "a", "final": "1"}]  # no seed column: the first row


def test_simulated_rows_match_a_hyperparameter_written_another_way():
    """A table's hyperparameter column holds numbers as a person writes them (2e-3): a trial of train.lr 0.002
    reads the 2e-3 rows, not the table's first row (another learning rate's scores)."""
    from search.trial import simulated_rows

    rows = [{"order": "a", "train.lr": "1e-3", "final": "0.5"}, {"order": "a", "train.lr": "2e-3", "final": "0.9"},
            {"order": "a", "train.lr": "2e-3", "train.batch_size": "16", "final": "0.9"}]
    assert [r["final"] for r in simulated_rows(rows, ["a"], {"train.lr": 0.002}, 0, "mean")] == ["0.9"]
    assert [r["final"] for r in simulated_rows(rows, ["a"], {"train.lr": 0.001}, 0, "mean")] == ["0.5"]
    assert simulated_rows(rows[:1], ["a"], {"train.lr": True}, 0, "mean") == rows[:1]  # (no match: the first row)


def test_exhaustive_draws_its_hyperparameters_from_the_search_seed():
    """Ray's grid draws the hyperparameters of each order; seeded by the search seed, not numpy's global
    state (which whatever ran before in the process moves: a confirmation test saw other values)."""
    import numpy as np

    from search.config import SearchConfig
    from search.searchers import exhaustive_param_space, exhaustive_search_alg

    def draw(seed):
        scfg = SearchConfig(candidates=TOY3, length=[1, 2], searcher="exhaustive", seed=seed,
                            hparams={"train.lr": {"float": [1e-5, 1e-3], "log": True}})
        grid = exhaustive_search_alg(scfg, 2)
        grid.add_configurations({"x": {"run": _noop, "config": exhaustive_param_space(scfg, []), "num_samples": 1}})
        out = []
        while (t := grid.next_trial()) is not None:
            out.append((t.config["order"], t.config["train.lr"]))
            grid.on_trial_complete(t.trial_id)  # (2 at a time)
        return out

    first = draw(0)
    np.random.seed(123)  # the global state a test before might leave
    assert draw(0) == first and len(first) == 9 and len({lr for _, lr in first}) == 9
    assert draw(1) != first


def _noop(config):
    pass


# ------------------------------------------------------------------ search.reproducible
def test_reproducible_search_runs_the_same_trials_however_fast_they_run(tmp_path, ray_local, capsys, monkeypatch):
    """search.reproducible: the same simulated search (order_bo, ASHA, 3 trials at a time) with stages that
    take 0.02 s and 0.3 s runs the same orders in the same batches, with the same stops and scores. (Without
    it, 1 of 12 rows agreed on such a pair of runs: a free slot takes a trial proposed from whatever results
    were in.) The trials start in batches: none before every trial of the batch before has ended. A third
    run, stopped by Ctrl-C in its second batch and resumed, runs the same trials too: Ray saves the open
    batch, and ASHA's rungs are saved with the search (with empty rungs after a resume, 15-16 of 18 rows
    agreed on a longer search)."""
    import signal

    from search.runner import SearchInterrupted, resume_search, run_search
    from tests.conftest import signal_after_trials

    runs = []
    for i, secs in enumerate((0.02, 0.3, 0.1)):
        if i == 2:  # Ctrl-C once the 4th trial has ended (Tune's handler saves the search and stops)
            signal_after_trials(monkeypatch, 4, signal.SIGINT)
        search = {"candidates": list(TOY3) + ["toy_parity", "toy_sim"], "length": 3, "num_samples": 9, "seed": 3,
                  "reproducible": True, "simulate": {"table": str(ROOT / "bench/data/toy_3of5.csv"),
                                                     "seconds_per_stage": secs},
                  "scheduler": {"type": "asha"}, "resources": {"max_concurrent": 3}, "tracking": {"enabled": False}}
        lines: list[str] = []
        cfg = str(_search_config(tmp_path, search, name=f"r{i}.yaml"))
        try:
            exp = run_search(cfg, name=f"r{i}", storage=str(tmp_path / "runs"), log=lines.append)
        except SearchInterrupted:
            monkeypatch.undo()
            # stopped short, the search's own plan goes on with a plain resume (the SearchInterrupted line):
            # "could an order the search did not finish beat ...? (`itt resume EXP --more N`)" was premature
            assert not any(ln.startswith("could an order the search did not finish") for ln in lines), lines
            stopped = _rows(tmp_path / "runs" / "r2")
            assert 4 <= sum(r["status"] != "running" for r in stopped) < 9, stopped
            exp = resume_search(str(tmp_path / "runs" / "r2"), log=lines.append)
        assert any("3 at a time in reproducible batches (search.reproducible)" in ln for ln in lines), lines[:5]
        runs.append(_rows(exp))
    resumed = next(ln for ln in lines if ln.startswith("resuming search 'r2'"))
    assert "; ASHA goes on with the " in resumed and " probes recorded before" in resumed, resumed
    # batch by batch (results.csv lists trials as they start, and a batch's trials start in any order)
    seq = [[sorted((r["order"], r["status"], r["score"]) for r in rows[b:b + 3]) for b in (0, 3, 6)] for rows in runs]
    assert sum(map(len, seq[0])) == 9 and seq[0] == seq[1] == seq[2], seq
    for i, rows in enumerate(runs[:2]):  # batches of 3: each trial starts after every trial of the batch before ended
        recs = {r["trial_id"]: r for r in (json.loads(p.read_text()) for p in
                                           (tmp_path / "runs" / f"r{i}" / "tracking" / "trials").glob("*.json"))}
        start, end = ([recs[r["trial_id"]][k] for r in rows] for k in ("started", "ended"))
        for b in range(1, 3):
            assert min(start[3 * b:3 * b + 3]) >= max(end[3 * b - 3:3 * b]) - 1e-6, (start, end)
    assert main(["space", str(tmp_path / "r0.yaml")]) == 0  # `itt space` names the batches
    assert "search.reproducible: trials in batches (3 at a time)" in capsys.readouterr().out


def test_asha_in_a_reproducible_search_ranks_a_trial_among_those_that_had_ended_when_it_started():
    """Without Ray: trials a and b start together, a probes 0.9 then b 0.1 at the one rung. Plain ASHA stops b
    (below a); reproducible ASHA lets b go on (a had not ended when b started, so whether a reported first is
    timing). c, started after both ended, is ranked among them: 0.2 < their median 0.5 stops it."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from search.schedulers import OrderASHA, ParetoASHA

    def probe(s, t, v):
        return s.on_trial_result(None, t, {"step": 3, "objective": v})

    a, b, c = (SimpleNamespace(trial_id=x, config={}) for x in "abc")
    plain, rep = (OrderASHA(time_attr="step", metric="objective", mode="max", max_t=4, grace_period=3,
                            reduction_factor=2, reproducible=r) for r in (False, True))
    for s in (plain, rep):
        s.on_trial_add(None, a)
        s.on_trial_add(None, b)
        assert probe(s, a, 0.9) == TrialScheduler.CONTINUE
    assert probe(plain, b, 0.1) == TrialScheduler.STOP
    assert probe(rep, b, 0.1) == TrialScheduler.CONTINUE
    for t in (a, b):
        rep.on_trial_complete(None, t, {"step": 4, "objective": 0.5, "final": 1})
    rep.on_trial_add(None, c)
    assert set(rep.peers.ended[:rep.peers.of["c"]]) == {"a", "b"} and probe(rep, c, 0.2) == TrialScheduler.STOP
    # ParetoASHA alike: b is dominated by a, but a is no peer of b
    par = ParetoASHA(metrics=["m", "w"], directions=["max", "max"], grace_period=1, max_t=2, reproducible=True)
    for t in (a, b):
        par.on_trial_add(None, t)
    assert par.decide("a", 1, (0.9, 0.9)) == TrialScheduler.CONTINUE
    assert par.decide("b", 1, (0.1, 0.1)) == TrialScheduler.CONTINUE
    par.on_trial_complete(None, a, {})
    par.on_trial_complete(None, b, {})
    par.on_trial_add(None, c)
    assert par.decide("c", 1, (0.5, 0.05)) == TrialScheduler.STOP  # dominated by a, one of its 2 peers
    # a scheduler pickled before search.reproducible existed (itt resume of an older search) ranks as before
    del plain.__dict__["peers"]
    old = pickle.loads(pickle.dumps(plain))
    old.on_trial_add(None, c)
    assert old.peers is None and probe(old, c, 0.05) == TrialScheduler.STOP
    # peers pickled when `ended` was a set (the scheduler in an older search's tuner.pkl): a list again
    from search.schedulers.peers import Peers

    before = Peers()
    before.ended = {"x"}
    after = pickle.loads(pickle.dumps(before))
    after.end("y")
    after.started("z")
    assert after.ended == ["x", "y"] and after.only("z", {"x": 1, "y": 2, "w": 3}) == {"x": 1, "y": 2}


def test_batches_hold_the_searcher_until_a_batch_has_ended_and_pass_on_trials_from_before_a_resume(tmp_path):
    from ray.tune.search import Searcher

    from search.searchers.batches import Batches

    class Told(Searcher):
        def __init__(self):
            super().__init__(metric="objective", mode="max")
            self.told = []

        def suggest(self, trial_id):
            return {"x": trial_id}

        def on_trial_complete(self, trial_id, result=None, error=False):
            self.told.append(trial_id)

        def save(self, path):  # as OrderSearcher: its __dict__
            with open(path, "wb") as f:
                pickle.dump(vars(self), f)

        def restore(self, path):
            with open(path, "rb") as f:
                vars(self).update(pickle.load(f))

    inner = Told()
    b = Batches(inner, 2)
    assert b.suggest("t1") and b.suggest("t2") and b.suggest("t3") is None
    b.on_trial_complete("t2", {"objective": 1})
    assert inner.told == [] and b.suggest("t3") is None  # half a batch: nothing told, nothing proposed
    b.on_trial_complete("t1", {"objective": 1})
    assert sorted(inner.told) == ["t1", "t2"] and b.suggest("t3")
    b.on_trial_complete("t0", {"objective": 1})  # not of a batch (an errored trial run again): passed on
    assert inner.told[-1] == "t0"
    # `itt resume`: Ray's search generator saves the open batch with each snapshot (the limiter's state)
    # and restores it, so the resumed search waits for it (this checks Ray still does)
    from ray.tune.search.search_generator import SearchGenerator

    assert b.suggest("t4") and b.live_trials == {"t3", "t4"}
    b.on_trial_complete("t3", {"objective": 1})  # half a batch at the Ctrl-C
    SearchGenerator(b).save_to_dir(str(tmp_path), session_str="s")
    again = Batches(Told(), 2)
    SearchGenerator(again).restore_from_dir(str(tmp_path))
    assert again.live_trials == {"t3", "t4"} and again.suggest("t5") is None
    again.on_trial_complete("t4", {"objective": 1})
    assert again.searcher.told[-2:] == ["t3", "t4"] and again.suggest("t5")


@pytest.mark.ray
def test_asha_rungs_and_bracket_draws_survive_a_resume():
    """Ray Tune saves no scheduler state: a resumed search ran ASHA with empty rungs. SchedulerState saves it
    with the callbacks' state; the restored scheduler then stops what the uninterrupted one stops, and the
    trials Tune adds again (ended, or in flight) keep their brackets and draw none: later draws agree."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from search.schedulers import OrderASHA
    from search.schedulers.state import SchedulerState

    def asha():
        return OrderASHA(time_attr="step", metric="objective", mode="max", max_t=9, grace_period=1,
                         reduction_factor=3, brackets=3, seed=1, reproducible=True)

    t = [SimpleNamespace(trial_id=f"t{i}", config={}, status="RUNNING") for i in range(12)]
    a = asha()
    for x in t[:8]:
        a.on_trial_add(None, x)
        a.on_trial_result(None, x, {"step": 1, "objective": 0.5 + 0.01 * int(x.trial_id[1:])})
        a.on_trial_result(None, x, {"step": 3, "objective": 0.5 + 0.01 * int(x.trial_id[1:])})
    for x in t[:6]:
        a.on_trial_complete(None, x, {"step": 4, "objective": 0.6, "final": 1})
        x.status = "TERMINATED"
    saved = pickle.loads(pickle.dumps(SchedulerState(a).get_state()))  # (as Tune writes and reads it)
    b, fresh = asha(), asha()  # what Tuner.restore unpickles: the scheduler as the search began
    SchedulerState(b).set_state(saved)
    for s in (b, fresh):
        for x in t[:8]:  # Tune adds the restored trials again, the most recent first
            s.on_trial_add(None, x)
    brackets = lambda s, ids: [s._brackets.index(s._trial_info[i]) for i in ids]
    assert brackets(b, ["t6", "t7"]) == brackets(a, ["t6", "t7"])
    for s in (a, b, fresh):
        for x in t[8:]:
            s.on_trial_add(None, x)
    assert brackets(b, [x.trial_id for x in t[8:]]) == brackets(a, [x.trial_id for x in t[8:]])
    low = {"step": 1, "objective": 0.1}
    decide = lambda s, x: s.on_trial_result(None, x, dict(low))
    first = next(x for x in t[8:] if brackets(a, [x.trial_id]) == [0])  # (a bracket whose first rung is 1)
    assert decide(a, first) == decide(b, first) == TrialScheduler.STOP
    assert decide(fresh, first) == TrialScheduler.CONTINUE  # empty rungs: what a resume did before


def test_a_trial_whose_run_ended_after_the_last_snapshot_reports_that_run_as_its_own(tmp_path, monkeypatch):
    """After a killed driver, `itt resume` runs a trial again whose run ended after Ray's last snapshot.
    Its dedup record is its own: it reports that run as it was (training counts and all, flagged `resumed`),
    not as a replay of another trial's (which trained nothing: counts 0, `replayed`). The schedulers record
    a resumed run's probe and do not stop it."""
    from types import SimpleNamespace

    from ray import tune
    from ray.tune.schedulers import TrialScheduler

    from search.config import SearchConfig
    from search.schedulers import OrderASHA, ParetoASHA
    from search.storage import Storage
    from search.trial import TrialContext, chain_trial, trial_chain_config, trial_key

    scfg = SearchConfig(candidates=TOY3, length=2)
    ctx = TrialContext(search=scfg, chain_raw=yaml.safe_load(yaml.safe_dump(TINY)), storage=Storage(str(tmp_path), "e"),
                       metric="accuracy")
    order = ["toy_topic", "toy_align"]
    key = trial_key(trial_chain_config(ctx, order, {}))
    reports = [{"step": 1, "objective": 0.4, "stages_trained": 1}, {"step": 2, "objective": 0.6, "stages_trained": 1},
               {"step": 3, "objective": 0.7, "final": 1}]
    ctx.storage.write_text(json.dumps({"order": order, "reports": reports, "trial_id": "t1"}), "dedup", f"{key}.json")
    sent: list[dict] = []
    monkeypatch.setattr(tune, "report", sent.append)
    for me in ("t1", "t2"):
        monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: me))
        chain_trial(scfg.space().encode(order), ctx)
    own, other = sent[:3], sent[3:]
    assert [m["stages_trained"] for m in own[:2]] == [1, 1] and all(m.get("resumed") and "replayed" not in m for m in own)
    assert [m["stages_trained"] for m in other[:2]] == [0, 0] and all(m.get("replayed") for m in other)
    # the schedulers: a resumed probe below the rung's cutoff is recorded, and its run goes on
    a = OrderASHA(time_attr="step", metric="objective", mode="max", max_t=4, grace_period=1, reduction_factor=2)
    par = ParetoASHA(metrics=["m", "w"], directions=["max", "max"], grace_period=1, max_t=4)
    hi, lo, nxt = (SimpleNamespace(trial_id=x, config={}) for x in ("hi", "lo", "next"))
    for x in (hi, lo, nxt):
        a.on_trial_add(None, x)
        par.on_trial_add(None, x)
    assert a.on_trial_result(None, hi, {"step": 1, "objective": 0.9}) == TrialScheduler.CONTINUE
    assert a.on_trial_result(None, lo, {"step": 1, "objective": 0.1, "resumed": 1}) == TrialScheduler.CONTINUE
    assert a._brackets[0]._rungs[-1] == (1, {"hi": 0.9, "lo": 0.1}) and a._num_stopped == 0
    assert par.on_trial_result(None, hi, {"step": 1, "m": 0.9, "w": 0.9}) == TrialScheduler.CONTINUE
    assert par.on_trial_result(None, lo, {"step": 1, "m": 0.1, "w": 0.1, "resumed": 1}) == TrialScheduler.CONTINUE
    assert set(par.rungs[1]) == {"hi", "lo"} and par.num_stopped == 0
    # (a probe that is not a resumed run's is stopped there: ranked among hi and lo, lo's probe counting)
    assert a.on_trial_result(None, nxt, {"step": 1, "objective": 0.05}) == TrialScheduler.STOP
    assert par.on_trial_result(None, nxt, {"step": 1, "m": 0.05, "w": 0.05}) == TrialScheduler.STOP

@pytest.mark.ray
@pytest.mark.parametrize("extra, needle", [
    ({"order_bo": {"cost": "measured"}}, "search.reproducible: order_bo.cost measured"),
    ({"searcher": "exhaustive", "scheduler": {"type": "asha"}}, "search.reproducible: exhaustive runs every order"),
    ({"reproducible": "sometimes"}, "search.reproducible"),
])
def test_bad_reproducible_configs_are_one_error_line(tmp_path, capsys, extra, needle):
    search = {"candidates": list(TOY3), "length": 1, "reproducible": True, **extra}
    _error(["search", str(_search_config(tmp_path, search, name="bad.yaml")), "--name", "bad",
            "--storage", str(tmp_path / "runs")], capsys, needle)
    assert not (tmp_path / "runs" / "bad").exists()


def test_a_trial_that_fails_and_runs_again_is_one_line_with_its_node_and_error(tmp_path):
    """A trial Ray Tune retries (its node lost, its process killed): one console line with the node, the error
    (error.txt's last line) and how many failures it has used; an errored trial's line says why. Tune's own
    traceback is off (TUNE_PRINT_ALL_TRIAL_ERRORS=0 in the driver)."""
    from types import SimpleNamespace

    from search.config import SearchConfig
    from search.results import ResultsWriter
    from search.storage import Storage

    lines = []
    w = ResultsWriter(Storage(str(tmp_path), "e"), SearchConfig(candidates=TOY3, length=2, max_failures=3), "accuracy",
                      ["en"], log=lines.append)
    err = tmp_path / "error.txt"
    err.write_text("Failure # 1\nTraceback (most recent call last):\n  ...\nray.exceptions.ActorDiedError: the node died\n")
    t = SimpleNamespace(trial_id="t1", config={"order": "toy_topic>toy_align"}, status="RUNNING", num_failures=1,
                        error_file=str(err))
    w.on_trial_start(0, [t], t)
    w.on_trial_result(0, [t], t, {"step": 1, "objective": 0.5, "node_ip": "10.0.0.7"})
    w.on_trial_recover(0, [t], t)
    assert lines[-1].endswith("] trial t1 toy_topic>toy_align: failed on node 10.0.0.7 (ray.exceptions.ActorDiedError: "
                              "the node died); running it again, its finished stages from the stage cache (failure 1 "
                              "of search.max_failures = 3)"), lines[-1]
    t.status = "ERROR"
    w.on_trial_error(0, [t], t)
    assert "trial t1 toy_topic>toy_align: errored (ray.exceptions.ActorDiedError: the node died; the traceback: " \
           "error.txt in its trial folder) | trials:" in lines[-1], lines[-1]


def test_cluster_errors_keep_their_first_line(monkeypatch, capsys):
    """Ray prints a lost node's errors on the driver with the last 20 lines of its raylet's log (a state dump):
    the search keeps each one's first line; other output passes as it was."""
    from ray._private import worker

    from search.runner import _short_cluster_errors

    monkeypatch.setattr(worker, "print_to_stdstream", worker.print_to_stdstream)  # (restored after the test)
    _short_cluster_errors()
    _short_cluster_errors()  # (twice: wrapped once)
    msg = ("Raylet is terminated. Termination is unexpected. Possible reasons include: (1) SIGKILL. Last 20 lines of "
           "the Raylet logs:\n    [state-dump] NodeManager:\n    [state-dump] DebugString() time ms: 0")
    worker.print_to_stdstream({"lines": [msg], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    worker.print_to_stdstream({"lines": ["a trial's own line", "and its next"], "pid": 42, "ip": "10.0.0.7",
                               "is_err": False, "task_name": "t"}, ignore_prefix=True)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Raylet is terminated. Termination is unexpected. Possible reasons include: (1) SIGKILL." in text
    assert "state-dump" not in text and "Last 20 lines" not in text
    assert "a trial's own line" in text and "and its next" in text
