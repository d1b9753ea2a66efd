"""Loaders, tokenizer and one tiny chain on the REAL public data in ../shared/data.

Skipped as a whole when that folder is absent. Every expected number below comes from
shared/data/README.md or from reading the files themselves, never from the library under test.
Runs offline on a 2-core CPU in well under a minute (the chain is ~25 s of it).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.is_dir():
    pytest.skip(f"real data folder not found: {SHARED}", allow_module_level=True)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may touch the Hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from itt.config import DataSpec, TaskSpec, load_config  # noqa: E402
from itt.data import _files, load_split  # noqa: E402
from itt.errors import ConfigError  # noqa: E402
from itt.tasks import resolve_task  # noqa: E402

CONFIG = ROOT / "configs" / "local_xnli_mbert_tiny.yaml"
TOKENIZER = SHARED / "tokenizers" / "bert-base-multilingual-cased"
NLI = ["entailment", "neutral", "contradiction"]
X = "xnli"  # folder of the XNLI files


# --------------------------------------------------------------------------- helpers
def _xnli_col(lang: str) -> dict:
    """myXNLI-derived files: header `genre label sentence1_<lang> sentence2_<lang>`."""
    return {"premise": f"sentence1_{lang}", "hypothesis": f"sentence2_{lang}"}


XGLUE = dict(header=False, column_names=["premise", "hypothesis", "label"])
TEXTFOOLER = dict(header=False, column_names=["label", "premise", "hypothesis"])
ANLI = dict(columns={"premise": "context", "hypothesis": "statement", "label": "gold_label"},
            label_map={"e": "entailment", "n": "neutral", "c": "contradiction"})
SST = dict(format="text", line_pattern=r"^(?P<label>[01]) (?P<sentence>.*)$")


def _load(task: str, split: str, lang: str, **spec):
    """One split through the library's public path: a TaskSpec re-pointing a built-in task."""
    ts = TaskSpec(**{split: {lang: DataSpec(**spec)}})
    t = resolve_task(task, {task: ts})
    return load_split(t, split, lang, data_root=str(SHARED))


def _raw_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _names(ds) -> list[str]:
    names = ds.features["label"].names
    return [names[i] for i in list(ds["label"])]


def _check_fields(ds, fields) -> None:
    for f in fields:
        empty = [i for i, s in enumerate(list(ds[f])) if not s.strip()]
        assert not empty, f"field {f!r} empty in rows {empty[:5]}"


# --------------------------------------------------------------------------- 1. loaders
# (task, split, lang, spec, expected rows from the README, text fields)
CASES = {
    "xnli.dev.en": ("xnli", "dev", "en", dict(files=f"{X}/xnli.dev.en.tsv", columns=_xnli_col("en")), 2490),
    "xnli.test.en": ("xnli", "test", "en", dict(files=f"{X}/xnli.test.en.tsv", columns=_xnli_col("en")), 5010),
    "xnli.dev.sw": ("xnli", "dev", "sw", dict(files=f"{X}/xnli.dev.sw.tsv", columns=_xnli_col("sw")), 2490),
    "xnli.test.sw": ("xnli", "test", "sw", dict(files=f"{X}/xnli.test.sw.tsv", columns=_xnli_col("sw")), 5010),
    "xnli.dev.ur": ("xnli", "dev", "ur", dict(files=f"{X}/xnli.dev.ur.tsv", columns=_xnli_col("ur")), 2490),
    "xnli.test.ur": ("xnli", "test", "ur", dict(files=f"{X}/xnli.test.ur.tsv", columns=_xnli_col("ur")), 5010),
    "xnli.test.es": ("xnli", "test", "es", dict(files=f"{X}/xnli.test.es.tsv"), 5010),
    "xnli.test.de": ("xnli", "test", "de", dict(files=f"{X}/xnli.test.de.xglue.tsv", **XGLUE), 5010),
    "xnli.dev.de.part2245": ("xnli", "dev", "de", dict(files=f"{X}/xnli.dev.de.xglue_part2245.tsv", **XGLUE), 2245),
    "xnli.dev.de.part250": ("xnli", "dev", "de", dict(files=f"{X}/xnli.dev.de.xglue_part250.tsv", **XGLUE), 250),
    "xnli.dev.zh": ("xnli", "dev", "zh", dict(files=f"{X}/xnli.dev.zh.csv",
                                             columns={"premise": "sentence1", "hypothesis": "sentence2",
                                                      "label": "gold_label"}), 2490),
    "pawsx.dev.de": ("pawsx", "dev", "de", dict(files="pawsx/pawsx.dev.de.tsv"), 2000),
    "pawsx.test.de": ("pawsx", "test", "de", dict(files="pawsx/pawsx.test.de.tsv"), 2000),
    "mnli.matched": ("mnli", "train", "en", dict(files="intermediate/mnli/mnli_dev_matched_1k.textfooler.tsv",
                                                 **TEXTFOOLER), 1000),
    "mnli.mismatched": ("mnli", "dev", "en", dict(files="intermediate/mnli/mnli_dev_mismatched_1k.textfooler.tsv",
                                                  **TEXTFOOLER), 1000),
    "snli": ("snli", "train", "en", dict(files="intermediate/snli/snli_test_1k.textfooler.tsv", **TEXTFOOLER), 1000),
    "anli.r1": ("anli", "train", "en", dict(files="intermediate/anli/anli_r1_dev_annotated.csv", **ANLI), 1000),
    "anli.r2": ("anli", "train", "en", dict(files="intermediate/anli/anli_r2_dev_annotated.csv", **ANLI), 1000),
    "anli.r3": ("anli", "train", "en", dict(files="intermediate/anli/anli_r3_dev_annotated.csv", **ANLI), 1198),
    "sst2.train": ("sst2", "train", "en", dict(files="intermediate/sst2/stsa.binary.train", **SST), 6920),
    "sst2.dev": ("sst2", "dev", "en", dict(files="intermediate/sst2/stsa.binary.dev", **SST), 872),
    "sst2.test": ("sst2", "test", "en", dict(files="intermediate/sst2/stsa.binary.test", **SST), 1821),
}


@pytest.fixture(scope="module")
def loaded():
    cache = {}

    def get(key):
        if key not in cache:
            task, split, lang, spec, _ = CASES[key]
            cache[key] = _load(task, split, lang, **spec)
        return cache[key]

    return get


@pytest.mark.parametrize("key", list(CASES))
def test_row_counts_labels_and_fields(loaded, key):
    task, split, lang, spec, rows = CASES[key]
    ds = loaded(key)
    assert len(ds) == rows, f"{key}: {len(ds)} rows, README says {rows}"
    t = resolve_task(task)
    assert ds.features["label"].names == list(t.labels)
    assert set(ds["label"]) == set(range(len(t.labels))), f"{key}: some label never occurs"
    _check_fields(ds, t.fields)
    assert len(set(ds["id"])) == len(ds), f"{key}: ids are not unique"


def test_xnli_known_rows(loaded):
    en = loaded("xnli.dev.en")
    assert en[0]["premise"] == "And he said, Mama, I'm home."
    assert en[0]["hypothesis"] == "He called his mom as soon as the school bus dropped him off."
    assert _names(en)[:2] == ["neutral", "contradiction"]
    # the XNLI label balance: a third of each class
    assert Counter(_names(en)) == {"entailment": 830, "neutral": 830, "contradiction": 830}
    assert Counter(_names(loaded("xnli.test.en"))) == {"entailment": 1670, "neutral": 1670, "contradiction": 1670}

    de = loaded("xnli.test.de")  # XGLUE, no header: the first line is data, not column names
    assert de[0]["premise"].startswith("Nun, daran dachte ich nicht einmal")
    assert de[0]["hypothesis"] == "Ich habe nicht wieder mit ihm gesprochen."
    assert _names(de)[:3] == ["contradiction", "entailment", "neutral"]

    zh = loaded("xnli.dev.zh")
    assert zh[0]["premise"] == "他说，妈妈，我回来了。"
    assert _names(zh)[:2] == ["neutral", "contradiction"]

    sw = loaded("xnli.dev.sw")
    assert sw[0]["premise"] == "Naye akasema, Mama, niko nyumbani."


def test_xnli_es_integer_labels(loaded):
    es = loaded("xnli.test.es")
    raw = list(csv.reader((SHARED / X / "xnli.test.es.tsv").open(encoding="utf-8"), delimiter="\t",
                          quoting=csv.QUOTE_NONE))
    assert raw[0] == ["premise", "hypothesis", "label"]
    ints = [int(r[2]) for r in raw[1:]]
    assert set(ints) == {0, 1, 2}
    # 0=entailment, 1=neutral, 2=contradiction (README), row by row
    assert _names(es) == [NLI[i] for i in ints]
    assert _names(es)[:2] == ["contradiction", "entailment"]
    assert es[0]["hypothesis"] == "No he vuelto a hablar con él."


def test_xnli_translations_share_the_english_gold_labels(loaded):
    """XNLI languages are translations of one set: gold labels agree row by row across languages.
    This checks every label mapping (strings, ints 0/1/2, XGLUE and CSV layouts) against English."""
    en_test, en_dev = _names(loaded("xnli.test.en")), _names(loaded("xnli.dev.en"))
    for key in ("xnli.test.es", "xnli.test.de", "xnli.test.sw", "xnli.test.ur"):
        assert _names(loaded(key)) == en_test, key
    for key in ("xnli.dev.sw", "xnli.dev.ur", "xnli.dev.zh"):
        assert _names(loaded(key)) == en_dev, key


def test_intermediate_known_rows(loaded):
    mnli = loaded("mnli.matched")
    assert _names(mnli)[:3] == ["entailment", "entailment", "neutral"]
    assert mnli[2]["premise"] == "Impossible ."
    assert mnli[0]["hypothesis"] == "There is a bookshop at the gallery ."

    snli = loaded("snli")
    assert _names(snli)[:3] == ["entailment", "neutral", "contradiction"]
    assert snli[0]["premise"] == "A person in a black and green outfit is riding a bicycle ."

    r1 = loaded("anli.r1")  # quoted CSV fields with embedded quotes and commas
    assert r1[0]["premise"].startswith("Linguistics is the scientific study of language, and involves")
    assert r1[0]["hypothesis"] == "Form and meaning are the only aspects of language linguistics is concerned with."
    assert _names(r1)[0] == "contradiction"  # gold_label c (the adversary predicted n)

    sst = loaded("sst2.dev")
    lines = _raw_lines(SHARED / "intermediate/sst2/stsa.binary.dev")
    assert _names(sst) == ["negative" if ln[0] == "0" else "positive" for ln in lines]
    assert sst[0]["sentence"] == "one long string of cliches ."
    assert Counter(_names(sst)) == {"negative": 428, "positive": 444}
    assert _names(loaded("sst2.train"))[0] == "positive"


# --------------------------------------------------------------------------- 4. PAWS-X ids
def test_pawsx_de_uses_its_id_column(loaded):
    ds = loaded("pawsx.dev.de")
    raw = list(csv.reader((SHARED / "pawsx/pawsx.dev.de.tsv").open(encoding="utf-8"), delimiter="\t",
                          quoting=csv.QUOTE_NONE))
    assert raw[0] == ["id", "sentence1", "sentence2", "label"]
    ids = list(ds["id"])
    assert ids == [r[0] for r in raw[1:]]
    assert ids[:2] == ["4", "6"]
    assert not any(i.startswith("de-") for i in ids)  # not the positional fallback
    assert _names(ds) == ["paraphrase" if r[3] == "1" else "not_paraphrase" for r in raw[1:]]
    assert ds[0]["sentence1"].startswith("Durch die Zusammenlegung des Four Rivers Council")


# --------------------------------------------------------------------------- 2. tokenizer
@pytest.fixture(scope="module")
def mbert():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOKENIZER))


def test_mbert_vocab_and_special_tokens(mbert):
    assert len(mbert) == 119547
    assert (mbert.unk_token_id, mbert.cls_token_id, mbert.sep_token_id, mbert.mask_token_id) == (100, 101, 102, 103)
    enc = mbert("Er sagte kein Wort.", "他没说一句话。")
    ids = enc["input_ids"]
    assert ids[0] == 101 and ids[-1] == 102 and ids.count(102) == 2
    first_sep = ids.index(102)
    assert enc["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
    # cased, Chinese split into characters, German words kept whole where the vocab has them
    assert mbert.tokenize("他说，妈妈，我回来了。") == ["他", "说", "，", "妈", "妈", "，", "我", "回", "来", "了", "。"]
    assert mbert.tokenize("Er sagte seiner Mutter, er sei nach Hause gekommen.") == [
        "Er", "sagte", "seiner", "Mutter", ",", "er", "sei", "nach", "Hause", "gekommen", "."]
    assert mbert.tokenize("Mama")[0] == "Mama" and mbert.tokenize("mama")[0] != "Mama"


@pytest.mark.parametrize("key", ["xnli.test.de", "xnli.dev.zh", "xnli.dev.ur", "xnli.dev.sw"])
def test_real_text_is_mostly_known_pieces(mbert, loaded, key):
    ds = loaded(key).select(range(300))
    pieces = [p for text in list(ds["premise"]) + list(ds["hypothesis"]) for p in mbert.tokenize(text)]
    unk = pieces.count("[UNK]")
    assert len(pieces) > 1000
    # mBERT's vocab lacks some rare CJK interjections (呃, 嗯, 噢) and the curly quotes “ ”, which
    # puts zh at ~0.8% [UNK] on these rows; the other languages are far below that.
    assert unk / len(pieces) < 0.02, f"{key}: {unk} of {len(pieces)} pieces are [UNK]"


# --------------------------------------------------------------------------- the config
def test_config_resolves_from_any_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nowhere near the project
    cfg = load_config(str(CONFIG))
    assert Path(cfg.data_root) == SHARED.resolve()  # `data_root: ../../shared/data`, config-relative
    assert cfg.eval.splits == ["test"]
    assert cfg.model.tiny is not None
    assert Path(cfg.model.tokenizer) == TOKENIZER.resolve()  # local model paths are config-relative too
    tgt = resolve_task(cfg.target.task, cfg.tasks)
    assert list(tgt.languages) == ["en", "de", "es", "sw", "ur", "zh"]
    used = [(t, "train", "en") for t in cfg.order] + [(cfg.target.task, "train", "en")]
    used += [(cfg.target.task, s, lang) for s in cfg.eval.splits for lang in tgt.languages]
    for name, split, lang in used:
        spec = resolve_task(name, cfg.tasks).source(split, lang)
        assert spec is not None and spec.files is not None, (name, split, lang)  # all local, no Hub
        for f in _files(spec, lang, cfg.data_root):
            assert Path(f).resolve().is_relative_to(SHARED.resolve()), f
    # the English training set is XNLI en dev, so en is evaluated on XNLI en test
    assert Path(_files(tgt.source("train", "en"), "en", cfg.data_root)[0]).name == "xnli.dev.en.tsv"
    assert Path(_files(tgt.source("test", "en"), "en", cfg.data_root)[0]).name == "xnli.test.en.tsv"


def test_config_dev_split_needs_every_language(tmp_path):
    # es has no XNLI dev file and en dev is the training data: asking for dev must fail up front
    with pytest.raises(ConfigError, match="no 'dev' data for language 'en'"):
        load_config(str(CONFIG), ["eval.splits=[dev,test]"])
    cfg = load_config(str(CONFIG), ["eval.splits=[dev]", "target.languages=[de,sw,ur,zh]"])
    assert cfg.target.languages == ["de", "sw", "ur", "zh"]


# --------------------------------------------------------------------------- 3. one tiny chain
LANGS = ["en", "de", "es", "sw", "ur", "zh"]
N_EVAL = 200  # eval.max_examples of the config; every eval file has more rows


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory):
    """`itt run configs/local_xnli_mbert_tiny.yaml --out TMP` from the project root."""
    import torch

    from search.cli import main

    out = tmp_path_factory.mktemp("local_chain") / "run"
    old, threads = os.getcwd(), torch.get_num_threads()
    # One intra-op thread: on a busy 2-core box, two OpenMP threads fighting other processes make
    # this tiny model ~15x slower; one thread is as fast as two when the box is idle.
    torch.set_num_threads(1)
    os.chdir(ROOT)
    try:
        # the config exactly as shipped (its caps keep it to ~100 optimizer steps)
        rc = main(["run", "configs/local_xnli_mbert_tiny.yaml", "--out", str(out)])
    finally:
        os.chdir(old)
        torch.set_num_threads(threads)
    return rc, out


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _accuracy(gold: list[str], pred: list[str]) -> float:
    return sum(g == p for g, p in zip(gold, pred)) / len(gold)


def _macro_f1(gold: list[str], pred: list[str]) -> float:
    """Mean per-class F1 over the classes that occur in gold or pred (sklearn's 'macro' with
    zero_division=0): precision tp/(tp+fp), recall tp/(tp+fn), a 0/0 counts as 0."""
    classes = sorted(set(gold) | set(pred))
    f1s = []
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return sum(f1s) / len(f1s)


def _summary(per_lang: dict[str, float]) -> dict:
    vals = list(per_lang.values())
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))  # population std
    others = [v for lang, v in per_lang.items() if lang != "en"]
    worst_lang = min(per_lang, key=lambda lang: per_lang[lang])
    return {"mean": mean, "std": std, "worst": per_lang[worst_lang], "worst_language": worst_lang,
            "transfer_gap": per_lang["en"] - sum(others) / len(others)}


def test_chain_runs_and_writes_predictions(chain_run):
    rc, out = chain_run
    assert rc == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["target"] == "xnli" and results["order"] == ["mnli", "anli", "snli", "sst2"]
    assert results["languages"] == LANGS
    assert list(results["seeds"]) == ["0"] and list(results["aggregate"]) == ["test"]
    pred_dir = out / "seed0" / "predictions"
    assert sorted(p.name for p in pred_dir.iterdir()) == sorted(f"test.{lang}.jsonl" for lang in LANGS)
    for lang in LANGS:
        rows = _read_jsonl(pred_dir / f"test.{lang}.jsonl")
        assert len(rows) == N_EVAL
        assert all(set(r) == {"id", "gold", "pred"} for r in rows)
        assert all(r["gold"] in NLI and r["pred"] in NLI for r in rows)
        assert len({r["id"] for r in rows}) == N_EVAL


def test_prediction_gold_matches_the_data_files(chain_run, loaded):
    """The gold label written next to each id is the one in the source file."""
    _, out = chain_run
    sources = {"en": "xnli.test.en", "de": "xnli.test.de", "es": "xnli.test.es", "sw": "xnli.test.sw",
               "ur": "xnli.test.ur", "zh": "xnli.dev.zh"}  # zh: dev stands in for test (see the config)
    for lang, key in sources.items():
        ds = loaded(key)
        gold_by_id = dict(zip(ds["id"], _names(ds)))
        rows = _read_jsonl(out / "seed0" / "predictions" / f"test.{lang}.jsonl")
        assert all(r["id"].startswith(f"{lang}-") for r in rows)
        assert [gold_by_id[r["id"]] for r in rows] == [r["gold"] for r in rows], lang


def test_metrics_and_robustness_recomputed_from_predictions(chain_run):
    _, out = chain_run
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    seed = results["seeds"]["0"]["test"]
    agg = results["aggregate"]["test"]
    mine: dict[str, dict[str, float]] = {"accuracy": {}, "macro_f1": {}}
    for lang in LANGS:
        rows = _read_jsonl(out / "seed0" / "predictions" / f"test.{lang}.jsonl")
        gold, pred = [r["gold"] for r in rows], [r["pred"] for r in rows]
        mine["accuracy"][lang] = _accuracy(gold, pred)
        mine["macro_f1"][lang] = _macro_f1(gold, pred)
        for m in ("accuracy", "macro_f1"):
            assert seed["per_language"][lang][m] == pytest.approx(mine[m][lang], abs=1e-9), (lang, m)
            assert agg["per_language"][lang][m]["mean"] == pytest.approx(mine[m][lang], abs=1e-9), (lang, m)
            assert agg["per_language"][lang][m]["std"] == 0.0  # one seed
    for m in ("accuracy", "macro_f1"):
        expect = _summary(mine[m])
        got = seed["summary"][m]
        for fig in ("mean", "std", "worst", "transfer_gap"):
            assert got[fig] == pytest.approx(expect[fig], abs=1e-9), (m, fig)
            assert agg["summary"][m][fig]["mean"] == pytest.approx(expect[fig], abs=1e-9), (m, fig)
        assert mine[m][got["worst_language"]] == pytest.approx(expect["worst"], abs=1e-9)
