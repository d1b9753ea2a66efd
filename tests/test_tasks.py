"""Contract tests over every registered task, and config-defined tasks."""

from __future__ import annotations

import pickle

import pytest

from itt.config import DataSpec, TaskSpec
from itt.data import load_split
from itt.tasks import Kind, registered, resolve_task
from itt.tasks._base import SPLITS

ALL = sorted(registered())


def test_required_tasks_registered():
    reg = registered()
    for name in ["xnli", "pawsx", "mnli", "anli", "snli", "qqp", "paws", "sst2", "stsb"]:
        assert name in reg
    assert len(reg["xnli"].languages) == 15 and reg["xnli"].languages[0] == "en"
    assert len(reg["pawsx"].languages) == 7 and reg["pawsx"].languages[0] == "en"
    assert reg["stsb"].kind == Kind.REGRESSION and reg["sst2"].kind == Kind.SINGLE


@pytest.mark.parametrize("name", ALL)
def test_task_contract(name):
    t = registered()[name]
    assert t.problems() == []
    assert (t.train is not None) == t.trains  # retrieval tasks are evaluated without training
    assert pickle.loads(pickle.dumps(t)) == t  # Ray ships tasks between processes
    for split in SPLITS:
        for lang in t.languages:
            spec = t.source(split, lang)
            if spec is not None and spec.hub is not None:
                # real-use tasks name a parquet Hub dataset (owner/name) and a split
                assert "/" in spec.hub and spec.split


@pytest.mark.parametrize("name", [n for n in ALL if n.startswith("toy_")])
def test_toy_tasks_load(name):
    t = registered()[name]
    ds = load_split(t, "train", "en", toy_options={"n_train": 30})
    assert len(ds) == 30 and set(ds.column_names) == {"id", *t.fields, "label"}
    assert len(set(ds["id"])) == 30
    if t.is_regression:
        assert all(0 <= x <= 2 for x in ds["label"])
    else:
        assert set(ds["label"]) <= set(range(t.num_labels))
    # pure function of (task, split, lang, options)
    assert load_split(t, "train", "en", toy_options={"n_train": 30})[:] == ds[:]


def test_config_defined_task_without_code(tmp_path):
    f = tmp_path / "reviews.jsonl"
    f.write_text('{"review": "great", "stars": "pos"}\n{"review": "awful", "stars": "neg"}\n')
    spec = TaskSpec(kind="single_classification", fields=["text"], labels=["negative", "positive"],
                    train=DataSpec(files=str(f), columns={"text": "review", "label": "stars"},
                                   label_map={"pos": "positive", "neg": "negative"}))
    t = resolve_task("reviews", {"reviews": spec})
    assert t.metric == "accuracy" and t.languages == ("en",)
    ds = load_split(t, "train", "en")
    assert ds["text"] == ["great", "awful"] and ds["label"] == [1, 0]


def test_builtin_task_repointed_to_local_files(tmp_path):
    for lang in ("en", "de"):
        (tmp_path / f"dev.{lang}.csv").write_text("s1,s2,y\nhallo,welt,1\n\"a, b\",c,0\n")
    spec = TaskSpec(dev=DataSpec(files=str(tmp_path / "dev.{lang}.csv"), columns={"sentence1": "s1", "sentence2": "s2", "label": "y"}))
    t = resolve_task("pawsx", {"pawsx": spec})
    ds = load_split(t, "dev", "de")
    assert ds["sentence1"] == ["hallo", "a, b"] and ds["label"] == [1, 0]
    assert t.test.hub == "google-research-datasets/paws-x"  # what was not re-pointed stays on the Hub


def test_domain_adaptation_target(tmp_path):
    """A same-language target in another domain: evaluated on its own test split."""
    for split in ("train", "test"):
        (tmp_path / f"{split}.parquet").write_bytes(b"")
    import datasets

    for split in ("train", "test"):
        datasets.Dataset.from_dict({"premise": ["a b", "c d"], "hypothesis": ["a", "x"], "label": [0, 2]}).to_parquet(
            str(tmp_path / f"{split}.parquet"))
    spec = TaskSpec(kind="pair_classification", fields=["premise", "hypothesis"],
                    labels=["entailment", "neutral", "contradiction"],
                    train=DataSpec(files=str(tmp_path / "train.parquet")), test=DataSpec(files=str(tmp_path / "test.parquet")))
    t = resolve_task("med_nli", {"med_nli": spec})
    assert t.languages == ("en",)
    assert load_split(t, "test", "en")["label"] == [0, 2]


def test_text_format_with_line_pattern(tmp_path):
    f = tmp_path / "sst.txt"
    f.write_text("1 a fine film .\n0 dull .\n")
    spec = TaskSpec(train=DataSpec(files=str(f), format="text", line_pattern=r"^(?P<label>[01]) (?P<sentence>.*)$"))
    ds = load_split(resolve_task("sst2", {"sst2": spec}), "train", "en")
    assert ds["sentence"] == ["a fine film .", "dull ."] and ds["label"] == [1, 0]


def test_caps_are_seeded_and_stable():
    t = registered()["toy_topic"]
    a = load_split(t, "train", "en", toy_options={"n_train": 100}, max_examples=10, seed=3)
    b = load_split(t, "train", "en", toy_options={"n_train": 100}, max_examples=10, seed=3)
    c = load_split(t, "train", "en", toy_options={"n_train": 100}, max_examples=10, seed=4)
    assert len(a) == 10 and a["id"] == b["id"] and a["id"] != c["id"]


def test_rows_with_an_empty_text_field_are_kept_and_said(tmp_path):
    """A blank TSV cell or a JSON null was trained on as "" without a word (a column mapped wrong looks
    like that too). Kept as empty text, and the loader says how many, in which field, and the first id."""
    f = tmp_path / "nli.tsv"
    f.write_text("id\tpremise\thypothesis\tlabel\na1\tthe cat sat\t\tentailment\na2\tdogs bark\tdogs are loud\tneutral\n"
                 "a3\t  \tnothing\tcontradiction\n")
    spec = TaskSpec(train=DataSpec(files=str(f), format="tsv"))
    said = []
    ds = load_split(resolve_task("mnli", {"mnli": spec}), "train", "en", warn=said.append)
    assert ds["hypothesis"] == ["", "dogs are loud", "nothing"] and len(ds) == 3  # kept
    assert said == [f"warning: {f}: 1 of 3 rows have an empty 'premise' (the first: id a3); they are kept, as empty text",
                    f"warning: {f}: 1 of 3 rows have an empty 'hypothesis' (the first: id a1); they are kept, as empty text"]
    j = tmp_path / "reviews.jsonl"
    j.write_text('{"review": null, "stars": "pos"}\n{"review": "awful", "stars": "neg"}\n')
    spec = TaskSpec(kind="single_classification", fields=["text"], labels=["negative", "positive"],
                    train=DataSpec(files=str(j), columns={"text": "review", "label": "stars"},
                                   label_map={"pos": "positive", "neg": "negative"}))
    said.clear()
    load_split(resolve_task("reviews", {"reviews": spec}), "train", "en", warn=said.append)
    assert said == [f"warning: {j}: 1 of 2 rows have an empty 'text' (the first: id en-0); they are kept, as empty text"]
    said.clear()
    load_split(resolve_task("reviews", {"reviews": spec}), "train", "en")  # (no warn: nothing said, nothing fails)
    assert said == []
