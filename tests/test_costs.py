"""What a configuration costs: the seconds trials report reach order_bo's cost model (search/searchers/costs.py)."""

from __future__ import annotations

import statistics

import pytest

TASKS = ["toy_topic", "toy_length", "toy_align"]


def test_cost_model_counts_stages_or_measured_seconds():
    """``stages``: every untrained stage one unit plus final_cost. ``measured``: each task's median stage seconds,
    in units of the median measured task; an unmeasured task costs that median; the fixed part its median."""
    from search.searchers.costs import CostModel, Seconds

    sec = Seconds()
    sec.add_trial(["toy_topic", "toy_length"], {"stage_seconds_1": 10.0, "stage_seconds_2": 2.0, "fixed_seconds": 4.0})
    sec.add_trial(["toy_topic"], {"stage_seconds_1": 14.0, "fixed_seconds": 8.0})
    sec.add_trial(["toy_length"], {})  # (a repeat answered by the searcher reports nothing)
    assert sec.stage == {"toy_topic": [10.0, 14.0], "toy_length": [2.0]} and sec.fixed == [4.0, 8.0]
    m = CostModel("measured", 1.0, sec)
    unit = statistics.median([12.0, 2.0])  # the median measured task's stage: 7 s
    assert m.measured and m.stage("toy_topic") == pytest.approx(12.0 / unit)
    assert m.stage("toy_length") == pytest.approx(2.0 / unit) and m.stage("toy_align") == 1.0
    assert m.fixed == pytest.approx(6.0 / unit)
    s = CostModel("stages", 2.0, sec)
    assert not s.measured and s.stage("toy_topic") == 1.0 and s.fixed == 2.0
    # nothing measured yet: counted in stages, whatever the unit
    assert CostModel("measured", 3.0, Seconds()).fixed == 3.0 and not CostModel("measured", 3.0, Seconds()).measured
    # stages measured, no trial finished: the fixed part is final_cost median stages
    sec2 = Seconds()
    sec2.add_trial(["toy_topic"], {"stage_seconds_1": 5.0})
    assert CostModel("measured", 2.0, sec2).fixed == 2.0


def test_a_fixed_part_measured_at_zero_seconds_leaves_an_order_a_cost():
    """A simulation with fixed_seconds: 0 reports trials whose fixed part took no time: an order whose stages
    are all cached then cost 0, and its EI per cost was infinite whatever its EI (it took every choice)."""
    from search.searchers.costs import MIN_FIXED, CostModel, Seconds

    sec = Seconds()
    sec.add_trial(["toy_topic"], {"stage_seconds_1": 5.0, "fixed_seconds": 0.0})
    m = CostModel("measured", 1.0, sec)
    assert m.measured and m.fixed == MIN_FIXED > 0


def test_searcher_records_reported_seconds_and_order_bo_prices_orders_by_them():
    """Without Ray: OrderSearcher writes a trial's stage_seconds / fixed_seconds into its study trial; order_bo
    reads them back and prices an order's untrained stages by them (toy_topic ten times toy_length's); with
    ``cost: stages`` every stage is one unit."""
    from search.config import SearchConfig
    from search.searchers import make_searcher

    secs = {"toy_topic": 30.0, "toy_length": 3.0, "toy_align": 3.0}
    for unit in ("measured", "stages"):
        scfg = SearchConfig(candidates=TASKS, length=[1, 2], seed=0, searcher="order_bo", order_bo={"cost": unit})
        space = scfg.space()
        s = make_searcher(scfg, [])
        s.set_search_properties("objective", "max", {})
        for i in range(3):
            tid = f"t{i}"
            order = space.decode(s.suggest(tid))
            for step, task in enumerate(order, start=1):
                s.on_trial_result(tid, {"objective": 0.3, "step": step, "training_iteration": step,
                                        "stage_seconds": secs[task]})
            final = {"objective": 0.5, "final": 1, "fixed_seconds": 6.0, "step": 3, "training_iteration": len(order) + 1}
            s.on_trial_result(tid, final)
            s.on_trial_complete(tid, final)
            attrs = s.study.trials[-1].user_attrs
            assert attrs["fixed_seconds"] == 6.0
            assert [attrs[f"stage_seconds_{j}"] for j in range(1, len(order) + 1)] == [secs[t] for t in order]
        obs = s.sampler.observations(s.study)
        assert {t for o, _, _ in obs.finals for t in o} == set(TASKS)  # (the start-up design covers every task)
        costs = s.sampler.costs(obs)
        nothing = set()  # nothing trained: every stage is paid
        topic, length = (s.sampler.cost(["toy_align", t], {}, nothing, costs) for t in ("toy_topic", "toy_length"))
        if unit == "measured":  # in units of the median task's stage (3 s): align 1 + topic 10 + fixed 2
            assert costs.measured and (topic, length) == (pytest.approx(1 + 10 + 2), pytest.approx(1 + 1 + 2))
        else:
            assert not costs.measured and topic == length == 2 + 1


def test_budget_ends_the_search_once_its_device_hours_are_spent(tmp_path):
    """search.budget, without Ray: the searcher sums the trials' time_total_s x the devices a trial holds (here
    2 workers x 1 GPU); once that reaches the budget it proposes nothing more and says why. Its spending
    survives a save/restore (itt resume), and ``--more`` lifts the budget."""
    from ray.tune.search import Searcher

    from search.config import SearchConfig
    from search.searchers import make_searcher, stopping

    scfg = SearchConfig(candidates=TASKS, length=[1, 2], seed=0, searcher="random",
                        resources={"workers_per_trial": 2, "gpus_per_worker": 1},
                        budget={"device_hours": 100 * 2 / 3600})  # 100 s of trial time on 2 GPUs
    s = make_searcher(scfg, [])
    s.set_search_properties("objective", "max", {})
    assert s.devices_per_trial == 2
    for i, t in enumerate([30.0, 60.0]):  # 90 s: under the budget, a third trial starts
        tid = f"t{i}"
        assert isinstance(s.suggest(tid), dict)
        s.on_trial_result(tid, {"objective": 0.3, "step": 1, "training_iteration": 1, "time_total_s": t / 2})
        s.on_trial_complete(tid, {"objective": 0.5, "final": 1, "time_total_s": t})
    assert isinstance(s.suggest("t2"), dict)
    s.on_trial_result("t2", {"objective": 0.3, "step": 1, "training_iteration": 1, "time_total_s": 6.0})
    s.on_trial_result("t2", {"objective": 0.3, "step": 2, "training_iteration": 2, "time_total_s": 15.0})
    assert s.spent()["device_hours"] == pytest.approx(105 * 2 / 3600)  # the running trial counts too
    path = tmp_path / "searcher.pkl"
    s.save(str(path))
    again = make_searcher(scfg, [])
    again.restore(str(path))
    assert again.trial_seconds == s.trial_seconds and again.spent()["hours"] >= s.elapsed_before / 3600
    assert again.suggest("t3") is Searcher.FINISHED
    stop = again.ended
    assert stop["by"] == "budget" and stop["finished"] == 2 and stop["spent"]["device_hours"] >= stop["rule"]["device_hours"]
    assert stopping.text({**stop, "pick": None}).startswith(
        "the search stopped itself after 2 finished trials (search.budget): 0.0583 of 0.0556 device-hours spent")
    # t2 runs again after the resume (Tune counts its time from 0): its first run's 15 s still count
    again.on_trial_result("t2", {"objective": 0.3, "step": 1, "training_iteration": 1, "time_total_s": 4.0})
    again.on_trial_result("t2", {"objective": 0.4, "step": 2, "training_iteration": 2, "time_total_s": 9.0})
    assert again.trial_seconds["t2"] == 15.0 + 9.0
    lifted = make_searcher(scfg, [])
    lifted.lift_stop = True  # itt resume --more N: N more trials past the budget
    lifted.restore(str(path))
    assert lifted.budget is None and isinstance(lifted.suggest("t3"), dict)


def test_a_restarted_trial_reporting_its_steps_again_reaches_optuna_once():
    """Tune restarts a trial whose worker or node died; the new run reports steps 1, 2, ... again. The searcher
    tells Optuna each step once (Optuna would warn "the reported value is ignored"), keeping the first value;
    the restarted run's later steps and final still arrive."""
    import warnings

    from search.config import SearchConfig
    from search.searchers import make_searcher

    scfg = SearchConfig(candidates=TASKS, length=2, seed=0, searcher="order_bo")
    s = make_searcher(scfg, [])
    s.set_search_properties("objective", "max", {})
    s.suggest("t0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna's warning would fail the test
        s.on_trial_result("t0", {"objective": 0.3, "step": 1, "training_iteration": 1})
        s.on_trial_result("t0", {"objective": 0.3, "step": 1, "training_iteration": 1})  # the restarted run
        s.on_trial_result("t0", {"objective": 0.4, "step": 2, "training_iteration": 2})
        final = {"objective": 0.5, "final": 1, "step": 3, "training_iteration": 3}
        s.on_trial_result("t0", final)
        s.on_trial_complete("t0", final)
    t = s.study.trials[-1]
    assert t.intermediate_values == {1: 0.3, 2: 0.4, 3: 0.5} and t.values == [0.5]


def test_the_searcher_times_its_own_proposals_and_keeps_them_over_a_resume(tmp_path, monkeypatch):
    """``own_time``: each proposal's seconds (the sampler's work inside it: here a planted 50 ms sleep) and
    the time taking in results; a save/restore (itt resume) keeps them; a pickle of a searcher made before
    these were kept restores with none."""
    import pickle
    import time

    from search.config import SearchConfig
    from search.searchers import make_searcher

    scfg = SearchConfig(candidates=TASKS, length=[1, 2], seed=0, searcher="random")
    s = make_searcher(scfg, [])
    s.set_search_properties("objective", "max", {})
    slow = s.inner.suggest
    monkeypatch.setattr(s.inner, "suggest", lambda tid: (time.sleep(0.05), slow(tid))[1])
    for i in range(3):
        assert isinstance(s.suggest(f"t{i}"), dict)
        s.on_trial_complete(f"t{i}", {"objective": 0.1 * i, "final": 1})
    t = s.own_time()
    assert t["proposals"] == 3 and len(t["per_proposal"]) == 3 and min(t["per_proposal"]) >= 0.05
    assert t["propose_seconds"] == pytest.approx(sum(s.proposal_seconds), abs=1e-3) and t["propose_seconds"] < 10
    assert t["median_proposal_seconds"] >= 0.05 and t["longest_proposal_seconds"] >= t["median_proposal_seconds"]
    assert 0 < s.results_seconds < t["propose_seconds"] and t["search_seconds"] >= t["propose_seconds"]
    assert t["seconds"] == pytest.approx(sum(s.proposal_seconds) + s.results_seconds, abs=2e-3)
    monkeypatch.undo()  # (the sleeping stand-in does not pickle)
    path = tmp_path / "searcher.pkl"
    s.save(str(path))
    again = make_searcher(scfg, [])
    again.restore(str(path))
    assert again.proposal_seconds == s.proposal_seconds and again.results_seconds == s.results_seconds
    state = pickle.loads(path.read_bytes())
    for k in ("proposal_seconds", "results_seconds"):
        del state[k]
    path.write_bytes(pickle.dumps(state))
    old = make_searcher(scfg, [])
    old.restore(str(path))
    assert old.own_time()["proposals"] == 0 and old.own_time()["median_proposal_seconds"] is None


def _order_bo_study(over: dict, hparams: dict | None = None):
    """An order_bo sampler on its own Optuna study (no Ray) over four toy tasks, lengths 1-3."""
    import optuna

    from search.config import SearchConfig
    from search.searchers.optuna_samplers import sampler_for

    scfg = SearchConfig(candidates=TASKS + ["toy_parity"], length=[1, 3], seed=0, searcher="order_bo",
                        hparams=hparams or {}, **over)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    sampler = sampler_for(scfg)
    return scfg.space(), sampler, optuna.create_study(direction="maximize", sampler=sampler)


def _run_order(study, space, order, hp=None, *, probes=(0.3, 0.3, 0.3), final=0.5, fail=False):
    """One trial of ``order`` (and hyperparameters ``hp``) through the study: its probes, then its final or an error."""
    from optuna.trial import TrialState

    from search.trial import define

    study.enqueue_trial({**space.encode(order), **(hp or {})})
    t = study.ask()
    define(t, space=space, hparams=study.sampler.hparams)
    assert space.decode(t.params) == order
    for step, v in zip(range(1, len(order) + 1), probes):
        t.report(v, step)
    if fail:
        study.tell(t, state=TrialState.FAIL)
    else:
        study.tell(t, final)
    return t


def test_order_bo_prices_the_prefixes_the_stage_cache_holds():
    """What order_bo counts as trained follows the stage cache: an errored trial's finished stages are there
    (published as each ends) and its probes were measured; nothing is, with search.cache.enabled false; a
    prefix is keyed by its own stages' hyperparameters (itt/cache.py stage_keys), not by a later stage's or
    the target fine-tune's, and its probe carries only those and the fine-tune's."""
    space, s, study = _order_bo_study({})
    _run_order(study, space, ["toy_topic", "toy_length", "toy_align"], probes=(0.31, 0.32), fail=True)
    obs = s.observations(study)
    assert [(tuple(p), v) for p, _, v in obs.probes] == [(("toy_topic",), 0.31), (("toy_topic", "toy_length"), 0.32)]
    assert s.cost(["toy_topic", "toy_length", "toy_parity"], {}, obs.trained, s.costs(obs)) == 1 + 1  # 3rd + final
    space, s, study = _order_bo_study({"cache": {"enabled": False}})
    _run_order(study, space, ["toy_topic", "toy_length"])
    obs = s.observations(study)
    assert s.cost(["toy_topic", "toy_length", "toy_align"], {}, obs.trained, s.costs(obs)) == 3 + 1  # no cache
    hp = {"stages.*.epochs": {"choice": [1, 2]}, "finetune.lr": {"float": [1e-5, 1e-4], "log": True}}
    space, s, study = _order_bo_study({}, hp)
    order = ["toy_topic", "toy_length", "toy_align"]
    params = {"stages.toy_topic.epochs": 1, "stages.toy_length.epochs": 2, "stages.toy_align.epochs": 1,
              "finetune.lr": 3e-5}
    _run_order(study, space, order, params)
    obs = s.observations(study)
    first = next(h for p, h, _ in obs.probes if p == ["toy_topic"])
    assert first == {"stages.toy_topic.epochs": 1, "finetune.lr": 3e-5}  # not toy_length's or toy_align's epochs
    other_lr = {**params, "finetune.lr": 9e-5}
    assert s.cost(order, other_lr, obs.trained, s.costs(obs)) == 1  # every stage cached: only the final
    later = {"stages.toy_topic.epochs": 1, "stages.toy_length.epochs": 2, "stages.toy_parity.epochs": 2, "finetune.lr": 3e-5}
    assert s.cost(["toy_topic", "toy_length", "toy_parity"], later, obs.trained, s.costs(obs)) == 1 + 1
    changed = {**later, "stages.toy_topic.epochs": 2}  # the first stage trained otherwise: nothing cached
    assert s.cost(["toy_topic", "toy_length", "toy_parity"], changed, obs.trained, s.costs(obs)) == 3 + 1
