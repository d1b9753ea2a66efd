"""`itt space`'s plan (search/plan.py): what a search will cost, counted and in hours from a pilot."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter

import pytest
import yaml
from scipy import stats

from search import plan
from search.cli import main
from search.space import OrderSpace
from tests.conftest import TINY

SPACES = [OrderSpace(["a", "b", "c", "d"], [0, 1, 2, 3]), OrderSpace(["a", "b", "c", "d", "e"], [2]),
          OrderSpace(["a", "b", "c", "d"], [1, 2, 3], include=["a"], before=[("b", "c")]),
          OrderSpace(["a", "b", "c", "d"], [2, 3], last="d")]


@pytest.mark.parametrize("space", SPACES, ids=["plain", "one-length", "include-before", "last"])
def test_exhaustive_counts_match_the_listed_orders(space):
    """The closed forms (no constraints) and the enumeration agree with counting the orders' prefixes."""
    orders = list(space.orders())
    assert plan.exhaustive_work(space) == plan.work(orders)
    assert plan.exhaustive_prefix_tasks(space) == {t: plan.stage_tasks(orders).get(t, 0) for t in space.candidates}
    by_hand = {tuple(o[:i]) for o in orders for i in range(1, len(o) + 1)}
    assert plan.exhaustive_work(space).stages == len(by_hand)
    assert plan.exhaustive_work(space).uncached == sum(len(o) for o in orders)


@pytest.mark.parametrize("listed", [True, False], ids=["listed", "rejection"])
def test_uniform_orders_are_uniform_distinct_and_valid(listed, monkeypatch):
    space = OrderSpace(["a", "b", "c", "d"], [1, 2], before=[("a", "b")])  # 4 + 11 = 15 orders
    if not listed:
        monkeypatch.setattr(plan, "LIST_UP_TO", 0)
    valid = [tuple(o) for o in space.orders()]
    rng = random.Random(0)
    counts = Counter(tuple(plan.uniform_orders(space, 1, rng)[0]) for _ in range(6000))
    assert set(counts) == set(valid)
    assert stats.chisquare([counts[o] for o in valid]).pvalue > 1e-3  # each order equally likely
    every = plan.uniform_orders(space, 20, random.Random(1), exclude=[["a"]])
    assert len(every) == 14 and len({tuple(o) for o in every}) == 14 and ["a"] not in every


def test_budget_keeps_seed_points_and_is_deterministic(tmp_path):
    from search.config import load_search

    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump({**TINY, "search": {"candidates": ["toy_topic", "toy_align", "toy_length"],
                                                     "length": [0, 2], "num_samples": 6,
                                                     "seed_points": {"baseline": True, "singles": True}}}))
    scfg, _, _ = load_search(p)
    b = plan.budget(scfg, 6, draws=50)
    assert b["fixed"] == 4 and all(r[:4] == [[], ["toy_topic"], ["toy_align"], ["toy_length"]] for r in b["orders"])
    assert all(len({tuple(o) for o in r}) == 6 for r in b["orders"])
    assert b == plan.budget(scfg, 6, draws=50)
    # the two pairs on top of the singles: each adds exactly one new prefix
    assert b["stages"] == b["stages_lo"] == b["stages_hi"] == 3 + 2
    assert plan.budget(scfg, 10, draws=5)["stages"] == plan.exhaustive_work(scfg.space()).stages


# ------------------------------------------------------------------ hours from a pilot
STAGE = {"toy_topic": 10.0, "toy_align": 20.0, "toy_length": 40.0}
FINETUNE, PER_CHAIN, PER_STAGE = 30.0, 5.0, 2.0


GPU_PEAK = {"toy_topic": 6000.0, "toy_align": 9000.0, "toy_length": 21000.0, "toy_xnli": 7000.0}  # MiB
H100 = {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "gpu_memory_mib": 81559.0}


def _pilot(tmp_path, config: dict | None = None, gpu: bool = False):
    """An experiment whose trials took planted seconds: each trained stage its task's plus PER_STAGE, each
    chain (seed) PER_CHAIN plus the target fine-tune; stages from the cache cost nothing. A replay (an
    earlier result reported again) is left out. ``gpu``: on an H100, each stage holding its GPU_PEAK (a
    stage from the cache with more, its trainer's figure, which is not this chain's)."""
    exp = tmp_path / "pilot"
    orders = [["toy_topic"], ["toy_topic", "toy_align"], ["toy_length", "toy_align"], ["toy_length"], []]
    rows, trained = [], set()
    for i, order in enumerate(orders):
        tid = f"t{i}"
        seeds = {}
        for seed in (0, 1):
            stages = []
            for j, t in enumerate(order, 1):
                cached = (tuple(order[:j]), seed) in trained
                trained.add((tuple(order[:j]), seed))
                stages.append({"task": t, "seconds": STAGE[t], "from_cache": cached,
                               **({"peak_gpu_mib": 50000.0 if cached else GPU_PEAK[t]} if gpu else {})})
            stages.append({"task": "toy_xnli", "seconds": FINETUNE, **({"peak_gpu_mib": GPU_PEAK["toy_xnli"]} if gpu else {})})
            seeds[str(seed)] = {"stages": stages}
        new = [s for sr in seeds.values() for s in sr["stages"][:-1] if not s["from_cache"]]
        wall = 2 * (PER_CHAIN + FINETUNE) + sum(s["seconds"] + PER_STAGE for s in new)  # (seeds in lockstep: their sum)
        (exp / "trials" / tid).mkdir(parents=True)
        (exp / "trials" / tid / "results.json").write_text(json.dumps(
            {"order": order, "target": "toy_xnli", "seeds": seeds, "wall_seconds": wall,
             "hardware": H100 if gpu else {"device": "cpu", "device_name": "test"}}))
        rows.append({"trial_id": tid, "order": ">".join(order), "status": "completed", "replayed": "false"})
    (exp / "trials" / "t9").mkdir()  # a replay of t0: its record again, nothing trained
    (exp / "trials" / "t9" / "results.json").write_text((exp / "trials" / "t0" / "results.json").read_text())
    rows.append({"trial_id": "t9", "order": "toy_topic", "status": "completed", "replayed": "true"})
    with open(exp / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    if config is not None:
        (exp / "tracking").mkdir()
        (exp / "tracking" / "config.yaml").write_text(yaml.safe_dump(config))
    return exp


def test_timing_recovers_planted_seconds_and_predicts_other_orders(tmp_path):
    t = plan.timing_from(str(_pilot(tmp_path)))
    assert t.stage == pytest.approx(STAGE) and t.finetune == pytest.approx(FINETUNE)
    assert (t.per_chain, t.per_stage) == pytest.approx((PER_CHAIN, PER_STAGE))
    est, measured = t.check()
    assert est == pytest.approx(measured) and len(t.runs) == 5
    # orders the pilot never ran, computed by hand: prefixes a, a>b, a>b>c, c (each trained once) + 3 chains
    other = [["toy_align", "toy_topic"], ["toy_align", "toy_topic", "toy_length"], ["toy_length"]]
    by_hand = (20 + 10 + 40 + 40) + 4 * PER_STAGE + 3 * (FINETUNE + PER_CHAIN)
    assert t.seconds(plan.stage_tasks(other), len(other)) == pytest.approx(by_hand)


def test_itt_space_prints_the_plan_and_hours_from_a_pilot(tmp_path, capsys):
    search = {"candidates": ["toy_topic", "toy_align", "toy_length", "toy_parity"], "length": [0, 2], "num_samples": 8,
              "seed_points": {"baseline": True, "singles": True}}
    from itt.config import load_config

    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "seeds": [0, 1], "search": search}))
    settings = load_config(cfg).model_dump(mode="json")  # what a search keeps in tracking/config.yaml
    pilot = _pilot(tmp_path, config={**settings, "train": {**settings["train"], "lr": 0.5}})
    assert main(["space", str(cfg), "--samples", "2", "--from", str(pilot)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("17 orders of 4 candidate tasks") and "F, 4 of length 1, 12 of length 2" in lines[0]
    assert "every order once: 16 stage-trainings (28 without the stage cache), 17 fine-tunes" in out
    assert "this search, 8 trials (5 seed point(s) first; 47% of the orders): 7 stage-trainings" in out
    assert "not measured there: toy_parity" in out  # a task the pilot did not train
    assert "its trials ran other settings (train.lr)" in out  # ... and the one setting it ran otherwise
    # every order once, by hand: 16 prefixes (4 ending in each task; toy_parity at the median stage, 20 s)
    full = (4 * (10 + 20 + 40 + 20) + 16 * PER_STAGE + 17 * (FINETUNE + PER_CHAIN)) * 2  # seeds
    assert f"every order once: about {plan.hours(full)} of trial time" in out


def test_itt_space_says_how_many_trials_of_the_pilots_size_share_a_gpu(tmp_path, capsys):
    """From a pilot's peak GPU memory per stage: the largest (a stage it trained, not one from the cache), how
    many such trials the GPU holds (each with a CUDA context), and whether this search's share covers it."""
    t = plan.timing_from(str(_pilot(tmp_path, gpu=True)))
    assert (t.gpu.peak_mib, t.gpu.task, t.gpu.total_mib) == (21000.0, "toy_length", 81559.0)
    n = 81559 // (21000 + plan.CUDA_CONTEXT_MIB)
    assert t.gpu.fits() == n == 3
    cfg = tmp_path / "s.yaml"
    search = {"candidates": ["toy_topic", "toy_align", "toy_length"], "length": [0, 2], "num_samples": 4}
    for share, short in ((0.25, True), (0.5, False)):
        cfg.write_text(yaml.safe_dump({**TINY, "search": {**search, "resources": {"gpus_per_worker": share}}}))
        js = tmp_path / f"plan{share}.json"
        assert main(["space", str(cfg), "--samples", "0", "--from", str(tmp_path / "pilot"), "--json", str(js)]) == 0
        out = capsys.readouterr().out
        assert "GPU memory, as the pilot's stages held it: at most 20.5 GiB (a toy_length stage;" in out
        assert "its NVIDIA H100 80GB HBM3 (79.6 GiB) holds 3 such trial(s): search.resources.gpus_per_worker 0.333 or more" in out
        assert ("this search's gpus_per_worker 0.25 gives a trial 19.9 GiB of such a GPU: its largest stages will run "
                "out and go on in micro-batches" in out) == short
        assert json.loads(js.read_text())["gpu_memory"] == {"peak_mib": 21000.0, "task": "toy_length", "total_mib": 81559.0,
                                                            "device_name": "NVIDIA H100 80GB HBM3", "trials_per_gpu": 3}
    # a CPU pilot: no GPU lines
    t = plan.timing_from(str(_pilot(tmp_path / "cpu")))
    assert t.gpu is None and plan.memory_lines(None, t) == []


def test_itt_space_bad_pilot_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "search": {"candidates": ["toy_topic", "toy_align"], "length": 1}}))
    assert main(["space", str(cfg), "--samples", "-1"]) == 2
    cap = capsys.readouterr()
    assert cap.err.strip() == "error: --samples -1: give 0 or more (orders to print)" and not cap.out
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "results.csv").write_text("trial_id,order,status\nt0,toy_topic,completed\n")
    for where, needle in [(tmp_path / "nope", "neither an `itt search` experiment"), (tmp_path / "sim", "no trial with measured seconds")]:
        assert main(["space", str(cfg), "--from", str(where)]) == 2
        cap = capsys.readouterr()
        err = cap.err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and str(where) in err[0] and not cap.out  # nothing printed before
    (tmp_path / "afile").write_text("keep")
    js = tmp_path / "afile" / "plan.json"
    assert main(["space", str(cfg), "--json", str(js)]) == 2
    cap = capsys.readouterr()
    assert cap.err.strip() == f"error: --json {js}: {tmp_path / 'afile'} is a file, not a folder" and not cap.out


def test_curriculum_from_a_search_without_seconds_still_works(tmp_path, capsys):
    """--from also gives --heuristic curriculum its task difficulty; a search without measured seconds (a
    simulated one) then leaves the hours out instead of failing."""
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "search": {"candidates": ["toy_topic", "toy_align"], "length": [1, 2]}}))
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "results.csv").write_text("trial_id,order,status,score\nt0,toy_topic,completed,0.7\n"
                                                  "t1,toy_align,completed,0.4\n")
    assert main(["space", str(cfg), "--samples", "0", "--heuristic", "curriculum", "--from", str(tmp_path / "sim")]) == 0
    out = capsys.readouterr().out
    assert "order: toy_topic>toy_align" in out and "hours" not in out  # easy (high score) first


def test_the_plan_counts_the_confirmation_the_config_asks_for(tmp_path, capsys):
    """search.confirm: its orders at the longest length and F, on its fresh seeds, per setting of vary."""
    search = {"candidates": ["toy_topic", "toy_align", "toy_length"], "length": [0, 2], "num_samples": 6,
              "confirm": {"top": 2, "seeds": [7, 8, 9], "vary": {"finetune.lr": [1e-4, 3e-4]}}}
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "search": search}))
    assert main(["space", str(cfg), "--samples", "0", "--from", str(_pilot(tmp_path))]) == 0
    out = capsys.readouterr().out
    # 2 orders x 2 stages, 3 fine-tunes (with F), 3 seeds, 3 settings (the base and two learning rates)
    assert "its 2 best orders and F on 3 fresh seeds x 3 settings (search.confirm.vary): at most 36 " \
           "stage-trainings and 27 fine-tunes in all" in out
    median_stage = 20.0  # of the pilot's 10, 20 and 40 s
    most = (2 * 2 * (median_stage + PER_STAGE) + 3 * (FINETUNE + PER_CHAIN)) * 3 * 3
    assert f"then itt confirm: at most about {plan.hours(most)}" in out


def test_one_chain_of_itt_run_is_a_pilot_too(tmp_path):
    """An `itt run` folder (one results.json, its config inside) measures the seconds of one chain."""
    from itt.config import load_config

    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    chain = load_config(cfg)
    seeds = {str(s): {"stages": [{"task": "toy_topic", "seconds": STAGE["toy_topic"]},
                                 {"task": "toy_length", "seconds": STAGE["toy_length"]},
                                 {"task": "toy_xnli", "seconds": FINETUNE}]} for s in (0, 1)}
    wall = 2 * (STAGE["toy_topic"] + STAGE["toy_length"] + 2 * PER_STAGE + FINETUNE + PER_CHAIN)
    run = tmp_path / "runs" / "one"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"order": ["toy_topic", "toy_length"], "target": "toy_xnli",
                                                  "seeds": seeds, "wall_seconds": wall, "hardware": {"device": "cpu"},
                                                  "config": chain.model_dump(mode="json")}))
    t = plan.timing_from(str(run))
    assert t.stage == {"toy_topic": 10.0, "toy_length": 40.0} and t.finetune == FINETUNE
    assert t.check() == pytest.approx((wall, wall)) and "1 run on" in t.source
    assert plan.differences(t.config, chain) == []
    # probe.also: null in a config saved before it was settled, meaning the target's probe alone
    settled = chain.model_copy(update={"probe": chain.probe.model_copy(update={"also": False})})
    assert plan.differences(t.config, settled) == []
    every = chain.model_copy(update={"probe": chain.probe.model_copy(update={"also": True})})
    assert plan.differences(t.config, every) == ["probe.also"]


def test_an_f_pilot_times_no_stage_so_its_hours_are_refused(tmp_path, capsys):
    """`itt run CONFIG --set order=` (the F baseline) trains no intermediate stage: its "median stage" would be
    0 s for every task, hours without any stage-training in them. One line instead, nothing printed; a space
    of F alone needs no stage, and the F pilot times it."""
    from itt.config import load_config

    run = tmp_path / "runs" / "f"
    run.mkdir(parents=True)
    chain = load_config(_write(tmp_path / "chain.yaml", {**TINY, "order": []}))
    seeds = {str(s): {"stages": [{"task": "toy_xnli", "seconds": FINETUNE}]} for s in (0, 1)}
    (run / "results.json").write_text(json.dumps({"order": [], "target": "toy_xnli", "seeds": seeds,
                                                  "wall_seconds": 2 * (FINETUNE + PER_CHAIN),
                                                  "hardware": {"device": "cpu"}, "config": chain.model_dump(mode="json")}))
    search = {"candidates": ["toy_topic", "toy_align"], "length": [0, 2], "num_samples": 4}
    cfg = _write(tmp_path / "s.yaml", {**TINY, "seeds": [0, 1], "search": search})
    assert main(["space", str(cfg), "--samples", "0", "--from", str(run)]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --from {run}: its chains trained no intermediate stage")
    assert not cap.out
    only_f = _write(tmp_path / "f.yaml", {**TINY, "seeds": [0, 1], "search": {**search, "length": 0}})
    assert main(["space", str(only_f), "--samples", "0", "--from", str(run)]) == 0
    # 1 order x 2 seeds x (fine-tune + per chain: one run puts all its overhead per chain)
    assert f"every order once: about {plan.hours(2 * (FINETUNE + PER_CHAIN))} of trial time" in capsys.readouterr().out


def _write(path, doc):
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_search_pilot_counts_its_trials_start_up(tmp_path):
    """Where the search recorded its trials' times (tracking/trials: start to end as the driver saw them),
    those are the seconds fitted: a trial's start-up lands in its per-chain overhead."""
    exp = _pilot(tmp_path)
    (exp / "tracking" / "trials").mkdir(parents=True)
    startup = 6.0
    for tid in ("t0", "t1", "t2", "t3", "t4"):
        wall = json.loads((exp / "trials" / tid / "results.json").read_text())["wall_seconds"]
        (exp / "tracking" / "trials" / f"{tid}.json").write_text(
            json.dumps({"trial_id": tid, "started": 100.0, "ended": 100.0 + wall + startup}))
    t = plan.timing_from(str(exp))
    assert t.clock == "trial" and t.per_chain == pytest.approx(PER_CHAIN + startup / 2)  # 2 seeds per trial
    assert t.per_stage == pytest.approx(PER_STAGE) and t.check()[0] == pytest.approx(t.check()[1])
    assert plan.timing_from(str(_pilot(tmp_path / "other"))).clock == "chain"  # (no records: the chains' wall time)


def test_a_cpu_pilot_for_a_gpu_search_is_named(tmp_path, capsys):
    search = {"candidates": ["toy_topic", "toy_align"], "length": 1}
    pilot = _pilot(tmp_path)  # its chains ran on "cpu"
    for gpus, said in ((0, False), (1, True)):
        cfg = tmp_path / f"s{gpus}.yaml"
        cfg.write_text(yaml.safe_dump({**TINY, "search": {**search, "resources": {"gpus_per_worker": gpus}}}))
        assert main(["space", str(cfg), "--samples", "0", "--from", str(pilot)]) == 0
        out = capsys.readouterr().out
        assert ("the pilot ran on cpu; this search's trials hold GPUs" in out) == said
        assert (" GPU-hours (1 GPU(s) per trial)" in out) == said


def test_itt_space_json_holds_the_printed_figures(tmp_path, capsys):
    search = {"candidates": ["toy_topic", "toy_align", "toy_length", "toy_parity"], "length": [0, 2], "num_samples": 8,
              "seed_points": {"baseline": True, "singles": True}}
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "seeds": [0, 1], "search": search}))
    out_json = tmp_path / "out" / "plan.json"
    assert main(["space", str(cfg), "--samples", "0", "--from", str(_pilot(tmp_path)), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    j = json.loads(out_json.read_text())
    assert j["orders"] == 17 and j["by_length"] == {"0": 1, "1": 4, "2": 12} and j["seeds"] == 2
    assert j["every_order_once"] == {"orders": 17, "stages": 16, "uncached": 28} and j["search"]["stages"] == 7
    h = j["hours"]
    assert h["stage_seconds"] == pytest.approx(STAGE) and h["unmeasured"] == ["toy_parity"]
    assert f"every order once: about {plan.hours(h['every_seconds'])} of trial time" in out
    assert main(["space", str(cfg), "--json", str(tmp_path)]) == 2  # a folder: one line, before anything
    assert capsys.readouterr().err.startswith("error: --json ")


def test_itt_space_adds_the_searchers_own_time_from_a_search_pilot(tmp_path, capsys):
    """A pilot search's summary.json says what its searcher spent per proposal (searcher_time): this
    search's trials at that mean, with a caveat where order_bo runs more trials than the pilot did, or
    where the searchers differ; an `itt run` pilot or an older search (no searcher_time) gives no line."""
    search = {"candidates": ["toy_topic", "toy_align", "toy_length"], "length": [1, 2], "num_samples": 8}
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "search": search}))
    pilot = _pilot(tmp_path, config={"search": {"searcher": "auto"}})
    assert main(["space", str(cfg), "--samples", "0", "--from", str(pilot)]) == 0
    assert "searcher's own time" not in capsys.readouterr().out.replace("the searcher's own on top", "")
    t = {"proposals": 5, "seconds": 2.5, "propose_seconds": 2.0, "results_seconds": 0.5, "median_proposal_seconds": 0.1,
         "longest_proposal_seconds": 1.5, "search_seconds": 300.0, "per_proposal": [0.1] * 4 + [1.6]}
    (pilot / "summary.json").write_text(json.dumps({"searcher": "auto", "searcher_time": t}))
    out_json = tmp_path / "plan.json"
    assert main(["space", str(cfg), "--samples", "0", "--from", str(pilot), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert json.loads(out_json.read_text())["hours"]["searcher_seconds"] == pytest.approx(8 * 2.5 / 5)
    line = next(ln for ln in out.splitlines() if "the searcher's own time on the driver" in ln)
    assert f"about {plan.hours(4.0)} (8 proposals at the pilot's 0.5 s each on average, longest 1.5 s" in line
    assert "the pilot ran 5: expect more" in line
    for broken in ('{"searcher_time": {"propos', '{"searcher_time": {"proposals": 3}}'):  # cut short, or keys missing
        (pilot / "summary.json").write_text(broken)
        assert main(["space", str(cfg), "--samples", "0", "--from", str(pilot)]) == 0
        assert "the searcher's own time on the driver" not in capsys.readouterr().out  # (the hours without the line)
    (pilot / "summary.json").write_text(json.dumps({"searcher": "auto", "searcher_time": t}))
    cfg.write_text(yaml.safe_dump({**TINY, "search": {**search, "searcher": "random"}}))
    assert main(["space", str(cfg), "--samples", "0", "--from", str(pilot)]) == 0
    assert "the pilot's searcher was order_bo, this search's is random" in capsys.readouterr().out
