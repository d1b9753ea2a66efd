"""What each order costs to train (search/training_cost.py, a section of `itt report`)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from search.cli import main
from search.stats import show


def _board(means: dict[str, float]) -> list[dict]:
    return [{"order": o, "mean": m} for o, m in sorted(means.items(), key=lambda kv: -kv[1])]


def test_front_and_cheapest_possible_best_against_a_hand_computation():
    """Five orders: a>b is most likely best; of the credible set {a>b, b, b>a}, b is cheapest (300 of 500
    tokens); b>a is dominated by a>b (lower mean at the same cost), every other order is on the front."""
    from search import training_cost as T

    means = {"": 0.30, "a": 0.50, "b": 0.60, "a>b": 0.61, "b>a": 0.55}
    tokens = {"": 100, "a": 200, "b": 300, "a>b": 500, "b>a": 500}
    work = pd.DataFrame([(o, s, 10.0 * tokens[o] / 100 + s, tokens[o] + (s - 2) * 10) for o in means for s in (1, 2, 3)],
                        columns=["order", "seed", "seconds", "tokens"])  # seed-to-seed spread: means are the tokens
    best = {"rows": [{"order": "a>b"}, {"order": "b"}], "set": ["a>b", "b", "b>a"]}
    tc = T.analyse(_board(means), work, best)
    assert tc["by"] == "tokens" and tc["best"] == "a>b" and tc["cheapest"] == "b"
    assert tc["front"] == ["", "a", "b", "a>b"]  # sorted by cost
    assert tc["cheapest_share"] == pytest.approx(300 / 500)
    assert tc["cheapest_cost"] == {"seconds": pytest.approx(32.0), "tokens": pytest.approx(300.0)}
    line = T.headline(tc, show)
    assert "a>b trains on 500 tokens (52.0 s here) per chain" in line and "b is the cheapest, 300 tokens" in line
    assert line.endswith("60% of it.")
    # a chain without token counts (stages trained before tokens were counted): the orders compare by seconds
    old = work.assign(tokens=work["tokens"].where(work["order"] != "a", None))
    tc = T.analyse(_board(means), old, best)
    assert tc["by"] == "seconds" and tc["cheapest"] == "b" and all(r["tokens"] is None for r in tc["rows"])
    assert "a>b trains in 52.0 s per chain" in T.headline(tc, show)
    # the best is the cheapest of its set: said so
    tc = T.analyse(_board(means), work, {"rows": [{"order": "b"}], "set": ["b", "a>b"]})
    assert T.headline(tc, show).endswith("the least of the 2 order(s) that could be best.")
    assert T.analyse(_board(means), work.iloc[0:0], best)["available"] is False


def test_without_a_credible_set_no_order_is_called_one_that_could_be_best():
    """With one seed per order the ranking model is not fitted (no credible set): the line said the top mean
    was "the least of the 1 order(s) that could be best" (a set of one, as if it were certainly the best),
    and named F where F had the top mean. It names the top IF mean and claims no set."""
    from search import training_cost as T

    means = {"": 0.70, "a": 0.50, "b": 0.60, "a>b": 0.61, "b>a": 0.55}
    tokens = {"": 100, "a": 200, "b": 300, "a>b": 500, "b>a": 500}
    work = pd.DataFrame([(o, 0, tokens[o] / 10, tokens[o]) for o in means], columns=["order", "seed", "seconds", "tokens"])
    tc = T.analyse(_board(means), work, {"underpowered": "0 IF order(s) with 2+ seeds"})
    assert tc["best"] == "a>b" and tc["could_be_best"] == [] and tc["cheapest_share"] is None
    line = T.headline(tc, show)
    assert line.startswith("Training cost: a>b trains on 500 tokens") and "could be best" in line
    assert "the least of" not in line and "of the 1" not in line, line


def test_report_section_reads_every_stage_and_fine_tune_from_results_json(tmp_path, capsys):
    """A search directory whose results.json stages carry seconds and tokens (and an eval.also fine-tune):
    the report's per-order tokens equal the sums over the files, recomputed here; section, plot, console line."""
    from tests.test_report import _fake_experiment, _orders, _tidy
    import numpy as np

    tidy = _tidy(np.random.default_rng(5), delta=0.1, orders=[o for o in _orders() if o != "tc>td"])
    exp = _fake_experiment(tmp_path, tidy)
    want = {}
    for i, f in enumerate(sorted((exp / "trials").glob("*/results.json"))):
        res = json.loads(f.read_text())
        for s, sr in res["seeds"].items():
            for j, st in enumerate(sr["stages"]):
                st.update(seconds=1.0 + j + i, tokens=1000 * (j + 1) + int(s))
            sr["stages"].append({"task": "target", "seconds": 2.0, "tokens": 5000})  # the target fine-tune
            sr["also"] = {"panx": {"fine_tune": {"seconds": 3.0, "tokens": 7000}}, "tatoeba": {"test": {}}}
        f.write_text(json.dumps(res))
        order = tidy["order"].unique()[i]
        want[order] = np.mean([sum(st["tokens"] for st in sr["stages"]) + 7000 for sr in res["seeds"].values()])
    assert main(["report", str(exp), "--no-heuristics"]) == 0
    out = capsys.readouterr().out
    tc = json.loads((exp / "report" / "report.json").read_text())["training_cost"]
    assert tc["by"] == "tokens" and {r["order"]: r["tokens"] for r in tc["rows"]} == pytest.approx(want)
    assert "Training cost: " in out and (exp / "report" / "training_cost.png").stat().st_size > 0
    md = (exp / "report" / "report.md").read_text()
    assert "## What each order costs to train" in md and "cost-effectiveness front" in md


def test_stage_tokens_count_every_batch_the_stage_trained_on():
    """StageStats.tokens: the input tokens (padding included) of every batch the stage stepped on,
    recomputed here by iterating the stage's own seeded loader as train_stage does."""
    from dataclasses import replace

    from itt.chain import prepare, run_chain
    from itt.config import validate
    from itt.train import train_loader
    from tests.test_cache import RAW

    cfg = validate({**RAW, "order": ["toy_topic"]}, "test")
    p = prepare(cfg, log=lambda *a: None)
    reports = []
    res = run_chain(cfg, prepared=replace(p), log=lambda *a: None, report=lambda m, s: reports.append(m))
    stage = res["seeds"]["0"]["stages"][0]
    # the final report's chain_tokens (results.csv, MLflow): the stage's and the target fine-tune's
    assert reports[-1]["chain_tokens"] == sum(s["tokens"] for s in res["seeds"]["0"]["stages"]) > stage["tokens"]
    hp = cfg.stage_hparams("toy_topic")
    loader = train_loader(p.train["toy_topic"], p.tokenizer, batch_size=hp.batch_size, seed=0 * 1000 + 1,
                          group_by_length=False, on_gpu=False, num_workers=cfg.hardware.num_workers)
    seen, tokens = 0, 0
    while seen < stage["steps"] * hp.grad_accum:
        for batch in loader:
            tokens += batch["input_ids"].numel()
            seen += 1
            if seen >= stage["steps"] * hp.grad_accum:
                break
    assert stage["tokens"] == tokens > stage["examples"]
