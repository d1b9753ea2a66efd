"""A search on the XTREME average over several targets (``search.metric: xtreme`` with ``eval.also``):
the config's checks, and one real search on the toy benchmark whose score, results.csv columns, MLflow
runs and report (task mode: the statistics read each task's XTREME score where a one-target search
reads languages) are recomputed from the trials' per-language results."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.conftest import TINY
from tests.test_search import _error, _search_config


# toy_topic evaluated zero-shot in the toy languages beside the toy_xnli target
TOPIC_X = {"toy_topic": {"languages": ["en", "xa", "xb", "xc"], "dev": {"toy": True}, "test": {"toy": True}}}
BASE = {**TINY, "tasks": TOPIC_X, "eval": {**TINY["eval"], "also": ["toy_topic"]}}


@pytest.mark.parametrize("search, base, needles", [
    ({"metric": ["xtreme", "mean"]}, BASE, ["search.metric", "'xtreme' is optimised alone"]),
    ({"metric": "xtreme"}, {**BASE, "tasks": {"toy_topic": {"languages": ["en", "xa"], "dev": None, "test": {"toy": True}}}},
     ["search.metric: xtreme scores trials on dev", "eval.also task 'toy_topic' has no dev split in en, xa"]),
    ({"metric": "accuracy"}, BASE, ["search.metric", "xtreme"]),  # the message lists it among the choices
    ({"metric": "mean"}, {**BASE, "eval": {"also": ["nope"]}}, ["eval.also: unknown task 'nope'"]),
])
def test_bad_xtreme_search(search, base, needles, tmp_path, capsys):
    p = _search_config(tmp_path, {"candidates": ["toy_align", "toy_length"], "length": 1, **search}, base=base)
    _error(["space", str(p)], capsys, *needles, str(p))


def test_search_on_the_xtreme_average_of_two_targets(tmp_path, ray_local, capsys):
    import mlflow

    from search.report import make_report
    from search.runner import run_search

    search = {"candidates": ["toy_align", "toy_length"], "length": [0, 1], "metric": "xtreme", "num_samples": 3,
              "seed_points": {"baseline": True, "singles": True}, "scheduler": {"type": "none"}, "probe_steps": 2,
              "resources": {"cpus_per_worker": 1, "trial_cpus": 0.25}, "tracking": {"enabled": True}}
    p = _search_config(tmp_path, search, base={**BASE, "seeds": [0, 1]})
    lines: list[str] = []
    exp = run_search(str(p), name="xt", storage=str(tmp_path / "runs"), log=lines.append, progress="off")
    with open(exp / "results.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "completed"]
    assert sorted(r["order"] for r in rows) == ["", "toy_align", "toy_length"]
    for r in rows:
        res = json.loads((exp / "trials" / r["trial_id"] / "results.json").read_text())
        seeds = list(res["seeds"].values())
        # the score: each seed's dev XTREME average over the two tasks, each the mean over its languages
        dev = [np.mean([np.mean([v["accuracy"] for v in s["dev"]["per_language"].values()]),
                        np.mean([v["accuracy"] for v in s["also"]["toy_topic"]["dev"]["per_language"].values()])])
               for s in seeds]
        assert float(r["score"]) == pytest.approx(np.mean(dev))
        # results.csv's test columns: each task's XTREME score and their average
        topic = np.mean([np.mean([v["accuracy"] for v in s["also"]["toy_topic"]["test"]["per_language"].values()])
                         for s in seeds])
        xnli = np.mean([np.mean([v["accuracy"] for v in s["test"]["per_language"].values()]) for s in seeds])
        assert float(r["xtreme_toy_topic"]) == pytest.approx(topic) and float(r["xtreme_toy_xnli"]) == pytest.approx(xnli)
        assert float(r["xtreme_average"]) == pytest.approx((topic + xnli) / 2)
        assert float(r["test_mean"]) == pytest.approx(xnli)  # the target's own figures stay as they were
        for s in seeds if r["order"] else []:  # the probe after the stage covers both tasks too (probe.also)
            probe = s["stages"][0]["probe"]
            assert set(probe["xtreme_tasks"]) == {"toy_xnli", "toy_topic"}
            assert probe["xtreme_average"] == pytest.approx(np.mean(list(probe["xtreme_tasks"].values())))
    assert any("the probe after each stage too (each task fine-tuned for 2 steps; probe.also)" in ln for ln in lines)
    # MLflow: each trial run has the task scores; the search's view shows them as columns
    client = mlflow.MlflowClient()
    e = client.get_experiment_by_name("xt")
    runs = client.search_runs([e.experiment_id], "tags.itt_role = 'trial'")
    assert len(runs) == 3 and all("test_xtreme_toy_topic" in run.data.metrics for run in runs)
    view = json.loads(next(v for k, v in e.tags.items() if k.startswith("mlflow.sharedViewState.")))
    assert "metrics.`test_xtreme_average`" in view["selectedColumns"]
    assert "metrics.`test_xtreme_toy_topic`" in view["selectedColumns"]
    # the report in task mode: its columns are the two tasks, its mean over them the XTREME average
    out = tmp_path / "report"
    res = make_report(str(exp), out=str(out), log=lines.append)
    assert res["unit"] == "task" and res["languages"] == ["toy_xnli", "toy_topic"]
    by_order = {r["order"]: r for r in rows}
    # its probe curves are the probes' XTREME averages (probe.also), from results.json and from the trials' reports
    from search.report import load_experiment, stopped_probes

    assert res["probe_metric"] == "XTREME average of every task's probe" and res["probe_curves"]
    exp_t = load_experiment(str(exp))
    for c in res["probe_curves"]:
        tid = by_order[c["order"]]["trial_id"]
        seeds = json.loads((exp / "trials" / tid / "results.json").read_text())["seeds"].values()
        want = np.mean([s["stages"][0]["probe"]["xtreme_average"] for s in seeds])
        assert c["points"][0]["probe"] == pytest.approx(want)
        assert [p["probe"] for p in stopped_probes(exp_t, tid)] == pytest.approx([want])  # (as a stopped trial's)
    for b in res["leaderboard"]:
        r = by_order[b["order"]]
        assert b["mean"] == pytest.approx(float(r["xtreme_average"]))
        assert b["per_language"]["toy_topic"] == pytest.approx(float(r["xtreme_toy_topic"]))
    with open(out / "scores.csv") as f:
        scores = list(csv.DictReader(f))
    assert {"task", "xtreme_score"} <= set(scores[0]) and {s["task"] for s in scores} == {"toy_xnli", "toy_topic"}
    with open(out / "scores_by_language.csv") as f:  # every task's per-language figure, from the trials' results
        per_lang = list(csv.DictReader(f))
    assert len(per_lang) == 3 * 2 * 8  # orders x seeds x (4 toy_xnli + 4 toy_topic languages)
    for s in per_lang:
        seed = json.loads((exp / "trials" / by_order[s["order"]]["trial_id"] / "results.json").read_text())["seeds"][s["seed"]]
        part = seed["test"] if s["task"] == "toy_xnli" else seed["also"][s["task"]]["test"]
        assert float(s["score"]) == pytest.approx(part["per_language"][s["language"]]["accuracy"])
    md = (out / "report.md").read_text()
    assert "This search optimised the XTREME average over 2 tasks (toy_xnli, toy_topic" in md
    assert "| toy_xnli | toy_topic | worst | std (tasks) | transfer gap | perturbation (toy_xnli) |" in md
    assert "Does the best order depend on the task?" in md and "depend on the language" not in md
    assert "| transfer gap (en - others) |" in md and "(noisy dev)" not in md  # (no perturbation here; the target's)
    # a trial whose results.json is gone counts with results.csv's task columns, as one seed
    gone = by_order["toy_align"]["trial_id"]
    (exp / "trials" / gone / "results.json").unlink()
    res = make_report(str(exp), out=str(tmp_path / "report2"), log=lines.append, mlflow=False, heuristics=False)
    assert res["languages"] == ["toy_xnli", "toy_topic"]
    b = next(b for b in res["leaderboard"] if b["order"] == "toy_align")
    assert b["n_seeds"] == 1 and b["mean"] == pytest.approx(float(by_order["toy_align"]["xtreme_average"]))


def test_the_real_use_xtreme_search_config_validates():
    """configs/search_xtreme_xlmr_base.yaml: every eval.also task has Hub train and dev sources in each
    of its languages (what search.metric: xtreme needs), and `itt space` counts four fine-tunes a chain."""
    from itt.tasks import resolve_task
    from search.config import load_search
    from search.plan import fine_tuned, make
    from tests.conftest import ROOT

    scfg, chain, _ = load_search(str(ROOT / "configs" / "search_xtreme_xlmr_base.yaml"))
    assert scfg.metric == "xtreme" and fine_tuned(chain) == ("xnli", "pawsx", "panx", "mlqa")
    for name in chain.eval.also:
        task = resolve_task(name, chain.tasks)
        assert task.source("train", task.languages[0]).hub
        assert all(task.source("dev", lang).hub for lang in task.languages), name
    assert chain.also_hparams("panx").epochs == 10 and chain.also_hparams("mlqa").max_length == 384
    assert chain.also_hparams("pawsx").lr == chain.finetune.lr  # finetune's, where stages.<task> says nothing
    assert make(scfg, chain).fine_tuned == ("xnli", "pawsx", "panx", "mlqa")
    from search.plan import count_lines

    from search.config import settle_probe_also

    settle_probe_also(scfg, chain)  # (as itt space and itt search do)
    said = "\n".join(count_lines(make(scfg, chain)))  # the probes, each of the four tasks (probe.also)
    assert "a stage-training's probe fine-tunes each of them for 300 steps (probe.also" in said
    off = make(scfg, chain.model_copy(update={"probe": chain.probe.model_copy(update={"also": False})}))
    assert "probe.also" not in "\n".join(count_lines(off))


def test_the_offline_xtreme_config_loads_every_target_from_real_files():
    """configs/local_xtreme_mbert_tiny.yaml: XNLI, PAN-X and UD-POS from ../shared/data, each with a dev
    split in every language it is evaluated in (search.metric: xtreme's check passes), and the chain's
    preparation loads each target's English training data and its dev and test sets."""
    from itt.chain import prepare
    from search.config import load_search
    from tests.conftest import ROOT

    if not (ROOT.parent / "shared" / "data").is_dir():
        pytest.skip("real data folder ../shared/data not found")
    path = str(ROOT / "configs" / "local_xtreme_mbert_tiny.yaml")
    scfg, chain, _ = load_search(path)
    assert scfg.metric == "xtreme" and chain.eval.also == {"panx": ["de", "es", "nl", "pl", "ru"], "udpos": ["fr", "zh"]}
    # one language each (the files are read whole: 10k sentences per WikiANN file)
    _, chain, _ = load_search(path, ["eval.max_examples=8", "finetune.max_examples=16", "target.languages=de",
                                     "eval.also={panx: [nl], udpos: [zh]}"])
    p = prepare(chain.model_copy(update={"order": []}), log=lambda *a: None)
    assert set(p.also) == {"panx", "udpos"} and set(p.also_train) == {"panx", "udpos"}
    assert sorted(p.also["panx"][1]) == [("dev", "nl"), ("test", "nl")]
    assert sorted(p.also["udpos"][1]) == [("dev", "zh"), ("test", "zh")]
    assert len(p.also_train["panx"]) == 16 and all(len(ds) == 8 for ds in p.also["udpos"][1].values())


def test_order_bo_prices_a_final_at_one_fine_tune_per_target(tmp_path):
    """order_bo's cost of a configuration (EI per cost): its untrained stages plus one fine-tune per target
    (search.order_bo.final_cost, default the targets a chain fine-tunes), so a cached prefix saves
    relatively less where each final fine-tunes several targets."""
    from search.config import load_search
    from search.searchers.optuna_samplers import sampler_for

    search = {"candidates": ["toy_align", "toy_length"], "length": [0, 2], "metric": "xtreme"}
    several, _, _ = load_search(str(_search_config(tmp_path, search, base=BASE)))
    one, _, _ = load_search(str(_search_config(tmp_path, {**search, "metric": "mean"}, name="one.yaml")))
    set_, _, _ = load_search(str(_search_config(tmp_path, search, base=BASE)), ["search.order_bo.final_cost=0.5"])
    assert (several.order_bo.final_cost, one.order_bo.final_cost, set_.order_bo.final_cost) == (2.0, 1.0, 0.5)
    trained = {(("toy_align",), "")}  # the prefix toy_align is in the stage cache
    for scfg, final in ((several, 2.0), (one, 1.0), (set_, 0.5)):
        sampler = sampler_for(scfg)
        assert sampler.cost(["toy_align", "toy_length"], {}, trained) == 1 + final
        assert sampler.cost(["toy_length", "toy_align"], {}, trained) == 2 + final
        assert sampler.cost([], {}, trained) == final


def test_compare_says_what_its_searches_columns_are():
    """itt compare: tasks where every search optimised the XTREME average, languages otherwise, and a line
    naming which search reads which where they differ."""
    from search.compare import units

    task = lambda n: {"name": n, "unit": "task"}  # noqa: E731
    lang = lambda n: {"name": n, "unit": "language"}  # noqa: E731
    assert units([task("a"), task("b")]) == ("task", None)
    assert units([lang("a"), lang("b")]) == ("language", None)
    unit, line = units([task("xt"), lang("xnli"), lang("pawsx")])
    assert unit == "language" and line == ("Mixed figures: the XTREME average over tasks (search.metric: xtreme) for "
                                           "xt; the mean over the target's languages for xnli, pawsx.")


def test_an_xtreme_search_stops_on_the_probes_xtreme_average():
    """ASHA's signal mid-chain in a search.metric: xtreme search: the probe's average over the tasks where the
    trial probed them all (probe.also, settled on when such a search starts), the target's probe where it did
    not (probe: {also: false}, or a search saved before probe.also, resumed)."""
    from itt.config import ChainConfig
    from search.config import SearchConfig
    from search.config import settle_probe_also
    from search.trial import TrialContext, objective_values, trial_chain_config

    scfg = SearchConfig(candidates=["toy_align"], length=1, metric="xtreme")
    ctx = TrialContext(search=scfg, chain_raw={}, storage=None, metric="accuracy")
    assert objective_values({"probe_accuracy_mean": 0.5, "probe_xtreme_average": 0.4}, ctx) == {"xtreme": 0.4}
    assert objective_values({"probe_accuracy_mean": 0.5}, ctx) == {"xtreme": 0.5}
    assert objective_values({"final": True, "dev_accuracy_mean": 0.5, "dev_xtreme_average": 0.3}, ctx) == {"xtreme": 0.3}
    for metric, given, settled in (("xtreme", None, True), ("xtreme", False, False), ("mean", None, False),
                                   ("mean", True, True)):
        chain = ChainConfig.model_validate({**TINY, "probe": {"also": given}})
        settle_probe_also(SearchConfig(candidates=["toy_align"], length=1, metric=metric), chain)
        assert chain.probe.also is settled
    old = TrialContext(search=scfg, chain_raw={"probe": {"also": None}}, storage=None, metric="accuracy")
    assert not trial_chain_config(old, ["toy_align"], {})["probe"]["also"]  # (a resumed search as it began)
