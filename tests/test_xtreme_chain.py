"""Tiny chains on real ../shared/data files for every new kind: tagging, QA, multiple choice,
retrieval; hand-off between stages of different kinds; metrics recomputed from prediction files;
the XTREME score; determinism. Tiny encoders, a few steps, a few dozen examples each."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from itt import metrics as M
from itt.chain import prepare, run_chain
from itt.config import load_config

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.is_dir():
    pytest.skip(f"real data folder not found: {SHARED}", allow_module_level=True)

WIKIANN = {"format": "conll", "conll_columns": [1, 2]}
BASE = {
    "data_root": str(SHARED),
    "model": {"tiny": {"arch": "bert", "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
              "tokenizer": str(SHARED / "tokenizers" / "bert-base-multilingual-cased")},
    "train": {"lr": 1e-3, "batch_size": 8, "max_steps": 4, "max_examples": 32, "max_length": 48},
    "eval": {"max_examples": 24, "batch_size": 32},
    "save_checkpoint": False,
    "tasks": {
        "squad": {"train": {"files": "xquad/xquad.en.json", "format": "squad"}, "dev": None},
        "xnli": {"train": {"files": "xnli/xnli.dev.en.tsv", "columns": {"premise": "sentence1_en", "hypothesis": "sentence2_en"}},
                 "languages": ["en", "sw"],
                 "test": {"en": {"files": "xnli/xnli.test.en.tsv", "columns": {"premise": "sentence1_en", "hypothesis": "sentence2_en"}},
                          "sw": {"files": "xnli/xnli.test.sw.tsv", "columns": {"premise": "sentence1_sw", "hypothesis": "sentence2_sw"}}}},
        "panx": {"train": {"files": "panx_wikiann/wikiann.en.val.conllu", **WIKIANN},
                 "test": {"files": "panx_wikiann/wikiann.{lang}.test.conllu", **WIKIANN}},
        "udpos": {"train": {"files": "pos/en_ewt-ud-dev.conllu"}, "test": {"files": "pos/{lang}_*-ud-test.conllu"}},
        "mlqa": {"train": {"files": "xquad/xquad.en.json", "format": "squad"},
                 "test": {"en": {"files": "xquad/xquad.en.json", "format": "squad"},
                          "de": {"files": "mlqa/dev-context-de-question-de.squadfmt.json", "format": "squad"},
                          "zh": {"files": "xquad/xquad.zh.json", "format": "squad"}}},
        "commonsenseqa": {"train": {"files": "intermediate/commonsenseqa/commonsense_qa.llmfoundry.jsonl",
                                    "columns": {"label": "gold"},
                                    "extract": {"query": "(?s)^Question: (?P<question>.*?)\\nChoices:\\n(?P<choices>.*)\\nAnswer:\\s*$"}},
                          "dev": None},
        "tatoeba": {"test": {lang: {"files": [f"tatoeba/tatoeba.{iso}-eng.{iso}", f"tatoeba/tatoeba.{iso}-eng.eng"],
                                    "format": "parallel"} for lang, iso in (("de", "deu"), ("zh", "cmn"))}},
    },
}


def _cfg(write_config, **over):
    return load_config(write_config(over, base=BASE))


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _run(cfg, tmp_path):
    return run_chain(cfg, out_dir=tmp_path, log=lambda *a: None)


def test_squad_then_panx_tagging_chain(write_config, tmp_path):
    """QA → NER hand-off; entity F1 recomputed from the prediction files; long sentences fully predicted."""
    cfg = _cfg(write_config, order=["squad"], target={"task": "panx", "languages": ["en", "de"]},
               eval={"splits": ["test"]}, train={"max_length": 12})  # 12: many sentences need several windows
    lines = []
    res = run_chain(cfg, out_dir=tmp_path, log=lambda *a: lines.append(" ".join(map(str, a))))
    seed = res["seeds"]["0"]
    assert [s["task"] for s in seed["stages"]] == ["squad", "panx"]
    # QA and tagging train on windows of their examples, and the stage's line says so
    for s in seed["stages"]:
        assert sum(ln.strip().startswith(f"{s['task']}: {s['steps']} steps, {s['examples']} windows, loss ")
                   for ln in lines) == 1, lines
    per = seed["test"]["per_language"]
    for lang in ("en", "de"):
        rows = _rows(tmp_path / "seed0" / "predictions" / f"test.{lang}.jsonl")
        assert len(rows) == 24 and all(len(r["pred"]) == len(r["tokens"]) == len(r["gold"]) for r in rows)
        assert any(len(r["tokens"]) > 10 for r in rows)  # longer than one window, still one tag per word
        mine = M.tagging([r["gold"] for r in rows], [r["pred"] for r in rows], iob=True)
        assert per[lang] == pytest.approx(mine)
    x = seed["test"]["xtreme"]
    assert x["metric"] == "f1" and x["tasks"]["panx"] == pytest.approx((per["en"]["f1"] + per["de"]["f1"]) / 2)
    assert res["aggregate"]["test"]["xtreme"]["average"]["mean"] == pytest.approx(x["average"])


def test_csqa_then_xnli_then_mlqa_chain(write_config, tmp_path):
    """Multiple choice → pair classification → QA; MLQA scoring with its language rules, XTREME (EM+F1)/2."""
    cfg = _cfg(write_config, order=["commonsenseqa", "xnli"], target={"task": "mlqa", "languages": ["en", "de", "zh"]},
               eval={"splits": ["test"]}, train={"max_length": 64})
    calls = []
    res = run_chain(cfg, out_dir=tmp_path, log=lambda *a: None, report=lambda m, s: calls.append((s, m)))
    seed = res["seeds"]["0"]
    assert [s["task"] for s in seed["stages"]] == ["commonsenseqa", "xnli", "mlqa"]
    assert [s for s, _ in calls] == [1, 2, 3] and "test_xtreme_mlqa" in calls[-1][1]
    vals = {}
    for lang in ("en", "de", "zh"):
        rows = _rows(tmp_path / "seed0" / "predictions" / f"test.{lang}.jsonl")
        assert len(rows) == 24 and all(isinstance(r["pred"], str) for r in rows)
        mine = M.qa([r["gold"] for r in rows], [r["pred"] for r in rows], lang, "mlqa")
        assert seed["test"]["per_language"][lang] == pytest.approx(mine)
        vals[lang] = (mine["f1"] + mine["exact_match"]) / 2
    assert seed["test"]["xtreme"]["tasks"]["mlqa"] == pytest.approx(np.mean(list(vals.values())))
    assert calls[-1][1]["test_xtreme_average"] == pytest.approx(seed["test"]["xtreme"]["average"])


def test_squad_then_xnli_and_xnli_then_udpos(write_config, tmp_path):
    """The hand-offs the issue names: SQuAD then XNLI; XNLI then a tagging target (POS accuracy)."""
    res = _run(_cfg(write_config, order=["squad"], target={"task": "xnli"}, eval={"splits": ["test"]}), tmp_path / "a")
    assert [s["task"] for s in res["seeds"]["0"]["stages"]] == ["squad", "xnli"]
    assert set(res["seeds"]["0"]["test"]["per_language"]) == {"en", "sw"}
    res = _run(_cfg(write_config, order=["xnli"], target={"task": "udpos", "languages": ["en", "zh"]},
                    eval={"splits": ["test"]}), tmp_path / "b")
    for lang in ("en", "zh"):
        rows = _rows(tmp_path / "b" / "seed0" / "predictions" / f"test.{lang}.jsonl")
        gold = [t for r in rows for t in r["gold"]]
        pred = [t for r in rows for t in r["pred"]]
        acc = sum(g == p for g, p in zip(gold, pred)) / len(gold)
        assert res["seeds"]["0"]["test"]["per_language"][lang]["accuracy"] == pytest.approx(acc)


def test_tatoeba_on_the_encoder_after_the_chain(write_config, tmp_path):
    """Retrieval: no target fine-tune; the encoder after the intermediate stages is evaluated, and the
    intermediate stage changes the embeddings (so the score is of that encoder, not a fresh one)."""
    cfg = _cfg(write_config, order=["udpos"], target={"task": "tatoeba", "languages": ["de", "zh"]},
               eval={"splits": ["test"], "max_examples": 40})
    res = _run(cfg, tmp_path / "if")
    seed = res["seeds"]["0"]
    assert [s["task"] for s in seed["stages"]] == ["udpos"]  # no target stage
    for lang in ("de", "zh"):
        rows = _rows(tmp_path / "if" / "seed0" / "predictions" / f"test.{lang}.jsonl")
        assert len(rows) == 40
        assert seed["test"]["per_language"][lang]["accuracy"] == pytest.approx(np.mean([r["gold"] == r["pred"] for r in rows]))
    base = _run(_cfg(write_config, order=[], target={"task": "tatoeba", "languages": ["de", "zh"]},
                     eval={"splits": ["test"], "max_examples": 40}), tmp_path / "f")
    assert base["seeds"]["0"]["stages"] == []
    a = [r["pred"] for r in _rows(tmp_path / "if" / "seed0" / "predictions" / "test.de.jsonl")]
    b = [r["pred"] for r in _rows(tmp_path / "f" / "seed0" / "predictions" / "test.de.jsonl")]
    assert a != b


@pytest.mark.parametrize("splits", [["dev", "test"], ["test", "dev"]])
def test_bucc_dev_threshold_applies_to_test(write_config, tmp_path, splits):
    """BUCC files (synthetic, in the official layout): the test split uses the threshold chosen on dev, whatever
    the order eval.splits names them in (test first optimised the threshold on test's own gold pairs)."""
    src = [x.rstrip("\n") for x in (SHARED / "tatoeba" / "tatoeba.deu-eng.deu").open(encoding="utf-8")][:30]
    tgt = [x.rstrip("\n") for x in (SHARED / "tatoeba" / "tatoeba.deu-eng.eng").open(encoding="utf-8")][:30]
    for split, rng in (("dev", range(0, 15)), ("test", range(15, 30))):
        (tmp_path / f"{split}.de").write_text("".join(f"de-{i}\t{src[i]}\n" for i in rng), encoding="utf-8")
        (tmp_path / f"{split}.en").write_text("".join(f"en-{i}\t{tgt[i]}\n" for i in rng), encoding="utf-8")
        (tmp_path / f"{split}.gold").write_text("".join(f"de-{i}\ten-{i}\n" for i in list(rng)[:10]))  # 5 distractors each
    spec = lambda s: {"files": [str(tmp_path / f"{s}.{x}") for x in ("de", "en", "gold")], "format": "bucc"}  # noqa: E731
    cfg = _cfg(write_config, order=[], target={"task": "bucc2018", "languages": ["de"]},
               tasks={"bucc2018": {"dev": {"de": spec("dev")}, "test": {"de": spec("test")}}},
               eval={"splits": splits, "max_examples": None})
    res = _run(cfg, tmp_path / "o")
    dev, test = (res["seeds"]["0"][s]["per_language"]["de"] for s in ("dev", "test"))
    assert dev["threshold_from_dev"] == 0.0 and test["threshold_from_dev"] == 1.0
    assert test["threshold"] == dev["threshold"]
    rows = _rows(tmp_path / "o" / "seed0" / "predictions" / "test.de.jsonl")
    kept = [r for r in rows if r["kept"]]
    assert all((r["score"] >= test["threshold"]) == r["kept"] for r in rows)
    correct = sum(r["gold"] for r in kept)
    p = correct / len(kept) if kept else 0.0
    r_ = correct / 10
    assert test["f1"] == pytest.approx(2 * p * r_ / (p + r_) if correct else 0.0)


def test_same_config_and_seed_same_numbers(write_config):
    cfg = _cfg(write_config, order=["commonsenseqa"], target={"task": "panx", "languages": ["de"]},
               eval={"splits": ["test"], "max_examples": 16}, train={"max_steps": 3})
    a = run_chain(cfg, log=lambda *x: None)
    b = run_chain(cfg, log=lambda *x: None)
    assert a["seeds"]["0"]["test"] == b["seeds"]["0"]["test"]
    assert [s["train_loss"] for s in a["seeds"]["0"]["stages"]] == [s["train_loss"] for s in b["seeds"]["0"]["stages"]]


def test_qa_windows_cover_long_contexts(write_config):
    """A context longer than the window gives several overlapping windows; training labels point at
    the answer's tokens (or [CLS] where a window does not hold it)."""
    cfg = _cfg(write_config, order=[], target={"task": "mlqa", "languages": ["de"]},
               eval={"splits": ["test"], "max_examples": 8}, train={"max_length": 48, "doc_stride": 16})
    p = prepare(cfg, log=lambda *a: None)
    feats = p.eval_tok[("test", "de")]
    ex = feats.meta["example"]
    assert len(ex) > 8 and sorted(set(ex)) == list(range(8))  # every question, most in several windows
    train = p.train["mlqa"]
    tok = p.tokenizer
    hits = 0
    for ids, (s, e) in zip(train["input_ids"], train["labels"]):
        if s == 0:
            assert e == 0
            continue
        hits += 1
        assert s <= e and tok.sep_token_id not in ids[s:e + 1]
    assert hits > 0


def test_eval_also_retrieval_beside_the_target_and_xtreme_average(write_config, tmp_path):
    """``eval.also``: Tatoeba on the encoder the intermediate stage produced (before the XNLI fine-tune);
    the XTREME average is the mean of the two task scores; Tatoeba's numbers equal a Tatoeba-target
    chain of the same prefix (same encoder), recomputed from the prediction files."""
    over = dict(order=["udpos"], eval={"splits": ["test"], "max_examples": 30, "also": {"tatoeba": ["de", "zh"]}})
    res = _run(_cfg(write_config, target={"task": "xnli", "languages": ["en", "sw"]}, **over), tmp_path / "x")
    seed = res["seeds"]["0"]
    assert [s["task"] for s in seed["stages"]] == ["udpos", "xnli"]
    x = seed["test"]["xtreme"]
    tat = seed["also"]["tatoeba"]["test"]
    for lang in ("de", "zh"):
        rows = _rows(tmp_path / "x" / "seed0" / "predictions" / f"tatoeba.test.{lang}.jsonl")
        assert tat["per_language"][lang]["accuracy"] == pytest.approx(np.mean([r["gold"] == r["pred"] for r in rows]))
    want_tat = np.mean([tat["per_language"][lang]["accuracy"] for lang in ("de", "zh")])
    want_xnli = np.mean([seed["test"]["per_language"][lang]["accuracy"] for lang in ("en", "sw")])
    assert x["tasks"]["tatoeba"] == pytest.approx(want_tat) and x["tasks"]["xnli"] == pytest.approx(want_xnli)
    assert x["average"] == pytest.approx((want_tat + want_xnli) / 2)
    # the same encoder evaluated as a Tatoeba target chain gives the same retrieval numbers
    ref = _run(_cfg(write_config, target={"task": "tatoeba", "languages": ["de", "zh"]},
                    **{**over, "eval": {"splits": ["test"], "max_examples": 30}}), tmp_path / "t")
    for lang in ("de", "zh"):
        assert ref["seeds"]["0"]["test"]["per_language"][lang]["accuracy"] == pytest.approx(
            tat["per_language"][lang]["accuracy"])


def test_eval_also_fine_tunes_other_targets_as_their_own_chains_would(write_config, tmp_path, capsys):
    """``eval.also`` with tasks that need fine-tuning (PAN-X tagging, XNLI classification) beside an MLQA
    target: each is fine-tuned on a copy of the encoder the intermediate stage produced (``finetune``, with
    ``stages.<task>`` on top), so its numbers equal a chain of the same order with it as the target, and the
    target's equal a chain without ``eval.also``; entity F1 recomputed from the prediction files; the XTREME average is the mean of the
    three task scores."""
    over = dict(order=["udpos"], train={"max_steps": 3})
    ev = {"splits": ["test"], "max_examples": 16}
    res = _run(_cfg(write_config, target={"task": "mlqa", "languages": ["en", "de"]}, stages={"panx": {"max_steps": 2}},
                    eval={**ev, "also": {"panx": ["en", "de"], "xnli": None}}, **over), tmp_path / "x")
    seed = res["seeds"]["0"]
    assert [s["task"] for s in seed["stages"]] == ["udpos", "mlqa"]
    also = seed["also"]
    assert set(also) == {"panx", "xnli"} and also["panx"]["fine_tune"]["task"] == "panx"
    # each fine-tune with `finetune` (here train's 3 steps), and stages.<task> on top of it for that task
    assert also["panx"]["fine_tune"]["steps"] == 2 and also["xnli"]["fine_tune"]["steps"] == 3
    rows = _rows(tmp_path / "x" / "seed0" / "predictions" / "panx.test.de.jsonl")
    assert len(rows) == 16
    assert also["panx"]["test"]["per_language"]["de"]["f1"] == pytest.approx(
        M.tagging([r["gold"] for r in rows], [r["pred"] for r in rows], iob=True)["f1"])
    x = seed["test"]["xtreme"]
    assert set(x["tasks"]) == {"mlqa", "panx", "xnli"}
    assert x["average"] == pytest.approx(np.mean(list(x["tasks"].values())))
    flat = res["aggregate"]["test"]["xtreme"]
    assert flat["average"]["mean"] == pytest.approx(x["average"])
    # `itt run`'s console: one XTREME line per split with every task and the average
    from search.cli import _print_summary

    _print_summary(res)
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("XTREME test"))
    assert all(f"{t} {v:.4f}" in line for t, v in x["tasks"].items()) and f"average {x['average']:.4f}" in line
    # each task as the target of its own chain: the same numbers
    for task, langs in (("panx", ["en", "de"]), ("xnli", ["en", "sw"])):
        fine = {"finetune": {"max_steps": 2}} if task == "panx" else {}
        ref = _run(_cfg(write_config, target={"task": task, "languages": langs}, eval=ev, **over, **fine), tmp_path / task)
        got = also[task]["test"]["per_language"]
        for lang in langs:
            assert ref["seeds"]["0"]["test"]["per_language"][lang] == pytest.approx(got[lang]), (task, lang)
    alone = _run(_cfg(write_config, target={"task": "mlqa", "languages": ["en", "de"]}, eval=ev, **over), tmp_path / "m")
    for lang in ("en", "de"):
        assert alone["seeds"]["0"]["test"]["per_language"][lang] == pytest.approx(seed["test"]["per_language"][lang])


def test_a_retrieval_layer_out_of_range_is_refused_before_training(write_config):
    """eval.retrieval.layer beyond the encoder (2 layers here): the error came when the retrieval task was
    evaluated, after the chain's training (in a search with tatoeba in eval.also: at the end of every trial)."""
    from itt.errors import ConfigError

    for target, also in (({"task": "tatoeba", "languages": ["de"]}, {}), ({"task": "xnli", "languages": ["en"]},
                                                                        {"tatoeba": ["de"]})):
        cfg = _cfg(write_config, order=["udpos"], target=target,
                   eval={"splits": ["test"], "max_examples": 10, "also": also, "retrieval": {"layer": 3}})
        with pytest.raises(ConfigError, match=r"eval.retrieval.layer: 3 is out of range for a 2-layer encoder"):
            prepare(cfg, log=lambda *a: None)


def test_mlqa_normalisation_outside_its_languages_is_refused_before_training(write_config):
    """qa_normalization: mlqa on a language MLQA's script has no rules for (el): the error came when the
    target was scored, after its training and with the other languages' predictions already written."""
    from itt.errors import ConfigError, UserError

    mlqa = {"languages": ["en", "el"], "test": {lang: {"files": f"xquad/xquad.{lang}.json", "format": "squad"}
                                               for lang in ("en", "el", "de", "zh")}}
    with pytest.raises(ConfigError, match=r"target.languages: task 'mlqa': MLQA normalisation .* no language 'el'"):
        _cfg(write_config, order=[], target={"task": "mlqa", "languages": ["en", "el"]}, tasks={"mlqa": mlqa},
             eval={"splits": ["test"]})
    _cfg(write_config, order=[], target={"task": "mlqa", "languages": ["en"]}, tasks={"mlqa": mlqa},
         eval={"splits": ["test"]})  # its own languages are fine
    cfg = _cfg(write_config, order=[], target={"task": "xnli", "languages": ["en"]}, tasks={"mlqa": mlqa},
               eval={"splits": ["test"], "max_examples": 4, "also": {"mlqa": ["el"]}})
    with pytest.raises(UserError, match=r"eval.also.mlqa: task 'mlqa': MLQA normalisation .* no language 'el'"):
        prepare(cfg, log=lambda *a: None)


def test_eval_also_refuses_the_target_itself(write_config, tmp_path):
    from itt.errors import UserError

    cfg = _cfg(write_config, order=[], target={"task": "xnli", "languages": ["en"]},
               eval={"splits": ["test"], "also": ["xnli"]})
    with pytest.raises(UserError, match="eval.also: 'xnli' is the target itself"):
        prepare(cfg, log=lambda *a: None)

def test_probes_on_tagging_targets_with_the_stage_cache_and_probe_also(write_config, tmp_path):
    """A probe on a target whose eval inputs are windows (tagging, QA) failed at the stage cache's probe key
    (every trial of such a search). probe.also adds eval.also's tasks to the probe: its XTREME average is the
    mean of their probe scores, the chain's own results stay as they are, and the cache keeps the two apart."""
    tasks = {"panx": {"dev": {"files": "panx_wikiann/wikiann.{lang}.val.conllu", **WIKIANN}},
             "udpos": {"dev": {"files": "pos/{lang}_*-ud-dev.conllu"}}}

    def run(name, also):
        cfg = _cfg(write_config, order=["xnli"], target={"task": "panx", "languages": ["de", "es"]}, tasks=tasks,
                   eval={"splits": ["test"], "also": {"udpos": ["fr", "zh"]}}, cache_dir=str(tmp_path / "cache"),
                   probe={"enabled": True, "steps": 2, "max_eval_examples": 16, "also": also})
        res = _run(cfg, tmp_path / name)["seeds"]["0"]
        return res["stages"][0], res["test"]

    stage, test = run("a", True)
    probe = stage["probe"]
    assert stage["from_cache"] is False
    assert set(probe["xtreme_tasks"]) == {"panx", "udpos"} and 0 <= probe["xtreme_tasks"]["udpos"] <= 1
    assert probe["xtreme_tasks"]["panx"] == pytest.approx(np.mean(list(probe["per_language"].values())))  # (f1)
    assert probe["xtreme_average"] == pytest.approx(np.mean(list(probe["xtreme_tasks"].values())))
    again, test_again = run("b", True)
    assert again["from_cache"] is True and again["probe"] == probe and test_again == test
    alone, test_alone = run("c", False)  # the stage from the cache, the probe not (another probe key)
    assert alone["from_cache"] is True and "xtreme_tasks" not in alone["probe"]
    assert alone["probe"]["per_language"] == pytest.approx(probe["per_language"]) and test_alone == test


def test_gpu_padding_to_multiples_of_8_changes_nothing(write_config, tmp_path, monkeypatch):
    """On a GPU every batch pads to a multiple of 8 (tensor cores). Forced here on CPU: a tagging target's
    loss (labels padded only to the longest row) and a tiny BERT's position table (sized from max_length,
    here 13 -> 16 wide) crashed on the first such batch; a QA and a classification stage come before it. With the padding (and no dropout, whose masks are
    drawn over the padded width), the same losses and scores."""
    import itt.train as T

    tiny = {**BASE["model"]["tiny"], "dropout": 0.0}  # (the heads take the encoder's dropout)
    cfg = _cfg(write_config, order=["squad", "xnli"], target={"task": "panx", "languages": ["en", "de"]},
               model={**BASE["model"], "tiny": tiny}, eval={"splits": ["test"], "max_examples": 24},
               train={"max_length": 13})
    plain = run_chain(cfg, out_dir=tmp_path / "plain", log=lambda *a: None)["seeds"]["0"]
    collator = T._collator
    monkeypatch.setattr(T, "_collator", lambda tok, on_gpu, ds=None: collator(tok, True, ds))
    padded = run_chain(cfg, out_dir=tmp_path / "padded", log=lambda *a: None)["seeds"]["0"]
    for a, b in zip(plain["stages"], padded["stages"]):
        assert b["tokens"] > a["tokens"] and b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)
    for lang in ("en", "de"):
        assert padded["test"]["per_language"][lang] == pytest.approx(plain["test"]["per_language"][lang], abs=1e-6)


def test_the_probe_reads_the_target_languages_that_have_a_dev_split(write_config):
    """XTREME's UD-POS has no dev split in 4 languages (Hub google/xtreme): a default target there is one
    config line naming the way out, and the probe (a search turns it on) keeps to the languages with dev."""
    from itt.errors import ConfigError, UserError
    from itt.tasks import resolve_task

    ud = resolve_task("udpos")
    assert [x for x in ud.languages if ud.source("dev", x) is None] == ["kk", "th", "tl", "yo"]
    with pytest.raises(ConfigError, match=r"target task 'udpos' has no 'dev' data for language 'kk' \(it has in 29 of "
                                          r"its 33 languages; choose them in target.languages, or leave 'dev' out"):
        _cfg(write_config, order=[], target={"task": "udpos"}, eval={"splits": ["dev", "test"]})
    dev_de = {"de": {"files": "panx_wikiann/wikiann.de.val.conllu", **WIKIANN}}
    cfg = _cfg(write_config, order=[], target={"task": "panx", "languages": ["en", "de"]}, eval={"splits": ["test"]},
               probe={"enabled": True}, tasks={"panx": {**BASE["tasks"]["panx"], "dev": dev_de}})
    assert list(prepare(cfg, log=lambda *a: None).probe) == ["de"]
    with pytest.raises(UserError, match=r"probe: target task 'panx' has no dev split in en to probe on"):
        prepare(_cfg(write_config, order=[], target={"task": "panx", "languages": ["en", "de"]},
                     eval={"splits": ["test"]}, probe={"enabled": True, "languages": ["en"]},
                     tasks={"panx": {**BASE["tasks"]["panx"], "dev": dev_de}}), log=lambda *a: None)


@pytest.mark.parametrize("arch", ["roberta", "xlm-roberta"])
def test_a_tiny_roberta_with_a_bert_style_tokenizer_runs_a_pair_task(arch, write_config, tmp_path):
    """model.tiny RoBERTa / XLM-R with mBERT's tokenizer (model.tokenizer): the tokenizer returns token_type_ids
    0 and 1 for a pair, and the size-1 type vocabulary these archs get with their own tokenizers failed with an
    IndexError at the first pair batch (a QA stage, an XNLI target), after prepare() had accepted the config."""
    cfg = _cfg(write_config, model={**BASE["model"], "tiny": {**BASE["model"]["tiny"], "arch": arch}}, order=["squad"],
               target={"task": "xnli", "languages": ["en"]}, train={**BASE["train"], "max_steps": 1},
               eval={"splits": ["test"], "max_examples": 8})
    res = _run(cfg, tmp_path)
    assert [s["task"] for s in res["seeds"]["0"]["stages"]] == ["squad", "xnli"]
