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
