"""Real-use XTREME configs (Hub IDs) validate offline; `itt tasks` lists every task; config mistakes
with the new kinds stop before training with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from itt.config import load_config
from itt.errors import ConfigError, UserError
from itt.tasks import Kind, registered, resolve_task

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CONFIGS = ["panx", "udpos", "xquad", "mlqa", "tydiqa", "tatoeba", "bucc"]
HUB = {"google/xtreme", "rajpurkar/squad", "tau/commonsense_qa", "Rowan/hellaswag", "allenai/cosmos_qa",
       "nyu-mll/glue", "facebook/anli", "stanfordnlp/snli", "google-research-datasets/paws", "facebook/xnli",
       "google-research-datasets/paws-x"}


@pytest.mark.parametrize("name", CONFIGS)
def test_real_use_configs_validate_with_hub_sources(name):
    cfg = load_config(ROOT / "configs" / f"{name}_xlmr_base.yaml")
    assert cfg.model.name == "xlm-roberta-base"
    tgt = resolve_task(cfg.target.task, cfg.tasks)
    for t in [resolve_task(n, cfg.tasks) for n in cfg.order] + [tgt]:
        splits = [("train", t.languages[0])] if t.trains else []
        if t is tgt:
            splits += [(s, lang) for s in cfg.eval.splits for lang in tgt.languages]
        for split, lang in splits:
            spec = t.source(split, lang)
            if t.name == "bucc2018" and split != "train":  # its own files: the Hub's hold the gold pairs alone
                assert spec is not None and spec.format == "bucc" and len(spec.files) == 3, (split, lang)
                continue
            assert spec is not None and spec.hub in HUB, (t.name, split, lang)
    if tgt.kind == Kind.RETRIEVAL:
        assert cfg.eval.retrieval.layer == 8


def test_xtreme_tasks_registered_with_xtreme_languages():
    reg = registered()
    expect = {"panx": (Kind.TOKEN, 40, "f1"), "udpos": (Kind.TOKEN, 33, "accuracy"), "xquad": (Kind.QA, 11, "f1"),
              "mlqa": (Kind.QA, 7, "f1"), "tydiqa": (Kind.QA, 9, "f1"), "bucc2018": (Kind.RETRIEVAL, 4, "f1"),
              "tatoeba": (Kind.RETRIEVAL, 36, "accuracy"), "squad": (Kind.QA, 1, "f1"),
              "commonsenseqa": (Kind.CHOICE, 1, "accuracy"), "hellaswag": (Kind.CHOICE, 1, "accuracy"),
              "cosmosqa": (Kind.CHOICE, 1, "accuracy")}
    for name, (kind, n, metric) in expect.items():
        t = reg[name]
        assert (t.kind, len(t.languages), t.metric) == (kind, n, metric), name
    assert reg["mlqa"].metadata["qa_normalization"] == "mlqa" and reg["xquad"].metadata["qa_normalization"] == "squad"
    assert reg["xquad"].xtreme_metric == "em_f1" and reg["udpos"].xtreme_metric == "f1"
    assert reg["tydiqa"].source("test", "ar").id_prefix == "arabic-"
    assert reg["tatoeba"].source("test", "zh").config == "tatoeba.cmn"


def test_itt_tasks_lists_every_task(capsys):
    from search.cli import main

    assert main(["tasks"]) == 0
    out = capsys.readouterr().out.splitlines()
    for name, t in registered().items():
        line = next((ln for ln in out if ln.split()[0] == name), None)
        assert line is not None, name
        assert t.kind in line and t.metric in line and ",".join(t.languages) in line


def _local(write_config, **over):
    base = {"data_root": str(SHARED), "save_checkpoint": False,
            "model": {"tiny": {"arch": "bert", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
                      "tokenizer": str(SHARED / "tokenizers" / "bert-base-multilingual-cased")},
            "target": {"task": "mlqa", "languages": ["de"]}, "eval": {"splits": ["test"], "max_examples": 4},
            "train": {"max_steps": 1, "max_examples": 4, "max_length": 48},
            "tasks": {"mlqa": {"train": {"files": "xquad/xquad.en.json", "format": "squad"},
                               "test": {"de": {"files": "mlqa/dev-context-de-question-de.squadfmt.json", "format": "squad"}}}}}
    return write_config(over, base=base)


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_new_kind_config_mistakes(write_config):
    from itt.chain import prepare

    with pytest.raises(ConfigError, match="order: 'tatoeba' is a retrieval task"):
        load_config(_local(write_config, order=["tatoeba"]))
    with pytest.raises(ConfigError, match=r"doc_stride 40 \(context tokens between window starts\) leaves the windows no overlap"):
        prepare(load_config(_local(write_config, train={"doc_stride": 40})), log=lambda *a: None)
    with pytest.raises(ConfigError, match=r"^max_length 6 is too short for QA windows: .* holds 2 context tokens, and the "
                                          r"default doc_stride \(max_length // 3 = 2\) .*; give a larger max_length or a "
                                          r"doc_stride below 2$"):  # (it blamed "doc_stride 2", a value never set)
        prepare(load_config(_local(write_config, train={"max_length": 6})), log=lambda *a: None)
    with pytest.raises(UserError, match="noisy text is defined for classification targets only"):
        prepare(load_config(_local(write_config, eval={"splits": ["dev", "test"], "perturbation": {"enabled": True}},
                                   tasks={"mlqa": {"dev": {"de": {"files": "mlqa/dev-context-de-question-de.squadfmt.json",
                                                                  "format": "squad"}}}})), log=lambda *a: None)
    with pytest.raises(ConfigError, match="kind 'token_classification' uses the fields \\['tokens'\\]"):
        load_config(_local(write_config, order=["ner2"], tasks={"ner2": {"kind": "token_classification", "fields": ["words"],
                                                                         "labels": ["O", "B-X"], "train": {"files": "x.conll"}}}))
    with pytest.raises(ConfigError, match=r"tasks.ner2: a token_classification task needs 'labels', its label set of "
                                          r"two or more \(e.g. labels: \[O, B-PER, I-PER\]; none given\)"):
        load_config(_local(write_config, order=["ner2"], tasks={"ner2": {"kind": "token_classification",
                                                                         "train": {"files": "x.conll"}}}))
    with pytest.raises(ConfigError, match=r"a single_classification task needs 'labels'.*; got \['pos'\]\)"):
        load_config(_local(write_config, order=["sent"], tasks={"sent": {"kind": "single_classification", "labels": ["pos"], "fields": ["text"],
                                                                         "train": {"files": "x.tsv"}}}))
    with pytest.raises(ConfigError, match="format 'parallel' needs 2 files"):
        load_config(_local(write_config, tasks={"tatoeba": {"test": {"files": "a.txt", "format": "parallel"}}}))


def test_cli_turns_a_bad_conll_file_into_one_error_line(write_config, tmp_path, capsys):
    from search.cli import main

    (tmp_path / "train.conll").write_text("Anton\tB-PER\nist\n")
    cfg = write_config({"order": [], "target": {"task": "panx", "languages": ["en"]}, "eval": {"splits": ["test"]},
                        "model": {"train_tokenizer": {"vocab_size": 200}},
                        "tasks": {"panx": {"train": {"files": str(tmp_path / "train.conll")},
                                           "test": {"files": str(tmp_path / "train.conll")}}}})
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "train.conll: line 2: expected at least 2 columns (token and tag), got 1: 'ist'" in err[0]
