"""The ``random`` searcher (search/searchers/uniform_random.py): uniform random orders without replacement."""

from __future__ import annotations

import pickle
from collections import Counter

import optuna
import pytest

from search.config import HParam
from search.searchers.uniform_random import UniformOrderSampler
from search.space import OrderSpace, order_key
from search.trial import define

TASKS = [f"t{i}" for i in range(7)]
# include, precedence and a fixed last task: 68 valid orders of lengths 2-4 (of 1,099 of lengths 1-4 without
# constraints: rejection accepts 6%, so it also gives up and lists them, both ways of drawing are tested)
CONSTRAINED = OrderSpace(candidates=TASKS, lengths=[1, 2, 3, 4], include=["t0"], before=[("t1", "t2")], last="t3")


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def _ask(study, space: OrderSpace, hparams: dict | None = None) -> tuple[optuna.trial.Trial, str]:
    t = study.ask()
    define(t, space=space, hparams=hparams or {})
    return t, order_key(space.decode(t.params))


def _draws(space: OrderSpace, n: int, seed: int = 0, directions=("maximize",)) -> list[str]:
    """``n`` proposals, each told COMPLETE before the next."""
    study = optuna.create_study(directions=list(directions), sampler=UniformOrderSampler(space, seed=seed))
    out = []
    for _ in range(n):
        t, o = _ask(study, space)
        study.tell(t, [0.5] * len(directions) if len(directions) > 1 else 0.5)
        out.append(o)
    return out


def test_every_order_valid_and_none_twice_until_the_space_is_exhausted():
    n = CONSTRAINED.count()
    assert n == 68
    got = _draws(CONSTRAINED, n + 5)
    assert all(CONSTRAINED.is_valid(o.split(">")) for o in got)
    assert sorted(got[:n]) == sorted(order_key(o) for o in CONSTRAINED.orders())  # each exactly once
    assert set(got[n:]) <= set(got[:n])  # then any (the searcher answers the repeats, and ends the search)


def test_lengths_in_proportion_to_their_number_of_orders():
    """Optuna's RandomSampler over the Lehmer digits draws the length uniformly (1/3 each here); uniform
    over orders draws it in proportion to the orders of each length: 7, 42 and 210 of 259 without
    constraints, and the constrained space's own counts with them. (Fixed seeds: deterministic.)"""
    from scipy.stats import chisquare

    for space in (OrderSpace(candidates=TASKS, lengths=[1, 2, 3]), CONSTRAINED):
        per_length = Counter(len(o) for o in space.orders())
        total = sum(per_length.values())
        # the first 10 proposals of 60 searches: far from exhausting the space, so close to drawing with replacement
        drawn = Counter(len(o.split(">")) for seed in range(60) for o in _draws(space, 10, seed=seed))
        assert set(drawn) <= set(per_length)  # (the constrained space has no order of length 1)
        ks = sorted(per_length)
        expected = [600 * per_length[k] / total for k in ks]
        assert chisquare([drawn[k] for k in ks], expected).pvalue > 0.01, (drawn, expected)
        if space.lengths == [1, 2, 3] and not space.include:
            assert drawn[1] < 0.1 * 600  # (2.7% of the orders; a third of RandomSampler's draws)


def test_same_seed_same_orders_and_a_pickled_sampler_goes_on_the_same():
    assert _draws(CONSTRAINED, 20, seed=4) == _draws(CONSTRAINED, 20, seed=4)
    assert _draws(CONSTRAINED, 20, seed=4) != _draws(CONSTRAINED, 20, seed=5)
    space = OrderSpace(candidates=TASKS, lengths=[1, 2, 3])
    sampler = UniformOrderSampler(space, seed=2)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    first = []
    for _ in range(30):
        t, o = _ask(study, space)
        study.tell(t, 0.5)
        first.append(o)
    restored = pickle.loads(pickle.dumps(sampler))  # (Ray saves the searcher, its study and sampler, for resume)
    nxt = []
    for s in (sampler, restored):
        st = optuna.create_study(direction="maximize", sampler=s)
        nxt.append([_ask(st, space)[1] for _ in range(10)])
    assert nxt[0] == nxt[1] and not set(nxt[0]) & set(first)


def test_a_running_or_enqueued_order_is_not_proposed_and_a_failed_one_is_free_again():
    space = OrderSpace(candidates=TASKS[:3], lengths=[1, 2])  # 9 orders
    study = optuna.create_study(direction="maximize", sampler=UniformOrderSampler(space, seed=0))
    study.enqueue_trial(space.encode(["t0", "t1"]))  # a seed point: its digits are fixed, not asked
    assert _ask(study, space)[1] == "t0>t1"
    running = [_ask(study, space)[1] for _ in range(7)]  # the seed point still runs: 7 of the 8 other orders
    assert len(set(running)) == 7 and "t0>t1" not in running
    failed, last = _ask(study, space)
    assert set(running) | {last, "t0>t1"} == {order_key(x) for x in space.orders()}
    study.tell(failed, state=optuna.trial.TrialState.FAIL)  # an error: that order may run again
    assert _ask(study, space)[1] == last  # (the only order no trial holds)


def test_hyperparameters_drawn_as_optuna_random_does_and_orders_still_without_replacement():
    space = OrderSpace(candidates=TASKS[:4], lengths=[2])
    hparams = {"train.lr": HParam(float=(1e-5, 1e-3), log=True), "stages.*.epochs": HParam(choice=[1, 2, 3])}
    study = optuna.create_study(direction="maximize", sampler=UniformOrderSampler(space, seed=1))
    got = []
    for _ in range(12):
        t, o = _ask(study, space, hparams)
        assert 1e-5 <= t.params["train.lr"] <= 1e-3
        assert all(t.params[f"stages.{task}.epochs"] in (1, 2, 3) for task in o.split(">"))
        study.tell(t, 0.5)
        got.append(o)
    assert len(set(got)) == 12  # every order of the space once


def test_several_objectives_and_a_stopped_order_is_proposed_once_the_rest_is_tried():
    space = OrderSpace(candidates=TASKS[:3], lengths=[1])
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=UniformOrderSampler(space, seed=0))
    stopped, o = _ask(study, space)
    study.tell(stopped, state=optuna.trial.TrialState.PRUNED)  # ASHA stopped it
    for _ in range(2):
        t, _o = _ask(study, space)
        study.tell(t, [0.6, 0.1])
    assert _ask(study, space)[1] == o  # all tried: the stopped order (a continuation) before any repeat
