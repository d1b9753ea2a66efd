"""Loading the XTREME kinds: real files in ../shared/data through the local-file path, long-sentence
windows, and bad input (one clear error naming the file and line or question)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from itt.config import DataSpec, TaskSpec
from itt.data import load_split
from itt.errors import DataError
from itt.tasks import resolve_task

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data not found at {SHARED}")
WIKIANN = dict(format="conll", conll_columns=(1, 2))
CSQA = dict(files="intermediate/commonsenseqa/commonsense_qa.llmfoundry.jsonl", columns={"label": "gold"},
            extract={"query": r"(?s)^Question: (?P<question>.*?)\nChoices:\n(?P<choices>.*)\nAnswer:\s*$"})


def _load(task, split, lang, root=SHARED, **spec):
    t = resolve_task(task, {task: TaskSpec(**{split: {lang: DataSpec(**spec)}})})
    return load_split(t, split, lang, data_root=str(root))


def _blocks(path: Path) -> list[list[list[str]]]:
    """Sentences of a CoNLL file as lists of split lines (independent of the library)."""
    out, cur = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur = []
        elif not line.startswith("#"):
            cur.append(line.split("\t"))
    if cur:
        out.append(cur)
    return out


# --------------------------------------------------------------------------- real data
@needs_data
@pytest.mark.parametrize("lang", ["de", "en", "ru"])
def test_wikiann_conll_sentences_and_tags(lang):
    path = SHARED / "panx_wikiann" / f"wikiann.{lang}.test.conllu"
    ds = _load("panx", "test", lang, files=str(path), **WIKIANN)
    blocks = _blocks(path)
    assert len(ds) == len(blocks) == 10000  # README: 10,000 sentences per file
    names = ds.features["label"].feature.names
    for i in (0, 1, 9999):
        assert ds[i]["tokens"] == [c[1] for c in blocks[i]]
        assert [names[t] for t in ds[i]["label"]] == [c[2] for c in blocks[i]]
    if lang == "de":
        assert ds[0]["tokens"][:2] == ["WEITERLEITUNG", "Hu"]


@needs_data
@pytest.mark.parametrize("name, n", [("en_ewt-ud-dev", 2001), ("fr_gsd-ud-test", 416), ("zh_gsd-ud-test", 500)])
def test_ud_conllu_words_skips_ranges_and_reads_upos(name, n):
    path = SHARED / "pos" / f"{name}.conllu"
    ds = _load("udpos", "test", "en", files=str(path), conllu_multiword="words")
    assert len(ds) == n
    words = [[c for c in b if c[0].isdigit()] for b in _blocks(path)]  # no "3-4" ranges, no "5.1" nodes
    names = ds.features["label"].feature.names
    assert sum(len(x) for x in ds["tokens"]) == sum(len(b) for b in words)
    assert ds[0]["tokens"] == [c[1] for c in words[0]]
    assert [names[t] for t in ds[0]["label"]] == [c[3] for c in words[0]]
    if name.startswith("en"):  # EWT has multiword tokens ("don't" = do + n't): the words are kept, not the range
        assert any(any("-" in c[0] for c in b) for b in _blocks(path))


def _conllu(rows: list[tuple]) -> str:
    """A CoNLL-U sentence from (id, form, upos, head[, deps]) rows; a range row has upos and head None."""
    return "".join(f"{r[0]}\t{r[1]}\t_\t{r[2] or '_'}\t_\t_\t{r[3] if r[3] is not None else '_'}\t_\t"
                   f"{r[4] if len(r) > 4 else '_'}\t_\n" for r in rows) + "\n"


@pytest.mark.parametrize("lang, tag", [("en", "PRON"), ("es", "AUX")])
def test_conllu_multiword_as_xtreme(tmp_path, lang, tag):
    """ud-conversion-tools' --replace_subtokens_with_fused_forms, worked by hand: "du" = de (ADP) + le (DET), le
    the head of de, gives "du" DET though ADP ranks first in French; "dámelo" = da (VERB, the root) + me + lo
    gives VERB; "x" = a PRON and an AUX equally deep gives PRON by the default rank (en), AUX by the Spanish;
    "w" = the same two, the PRON with a second head among its enhanced dependencies (one more ancestor, as
    the converter counts them), gives AUX in both."""
    f = tmp_path / "x.conllu"
    f.write_text(_conllu([("1-2", "du", None, None), (1, "de", "ADP", 2), (2, "le", "DET", 3), (3, "pain", "NOUN", 0)])
                 + _conllu([("1-3", "dámelo", None, None), (1, "da", "VERB", 0), (2, "me", "PRON", 1), (3, "lo", "PRON", 1),
                            (4, "ya", "ADV", 1)])
                 + _conllu([(1, "Ha", "VERB", 0), ("2-3", "x", None, None), (2, "y", "PRON", 1), (3, "z", "AUX", 1),
                            (4, "Hà Nội", "PROPN", 1), (5, "a\u200cb", "NOUN", 1)])
                 + _conllu([(1, "_", "NOUN", 0), (2, "_", "VERB", 1), (3, "x", "PUNCT", 1)])
                 + _conllu([(1, "Ha", "VERB", 0, "0:root"), ("2-3", "w", None, None), (2, "y", "PRON", 1, "1:nsubj|4:nsubj:xsubj"),
                            (3, "z", "AUX", 1, "1:aux"), (4, "go", "VERB", 1, "1:xcomp")]), encoding="utf-8")
    ds = _load("udpos", "test", lang, files=str(f))
    names = ds.features["label"].feature.names
    got = [(r["tokens"], [names[t] for t in r["label"]]) for r in ds]
    assert got == [(["du", "pain"], ["DET", "NOUN"]), (["dámelo", "ya"], ["VERB", "ADV"]),
                   (["Ha", "x", "HàNội", "ab"], ["VERB", tag, "PROPN", "NOUN"]),  # (all "_" but one: dropped)
                   (["Ha", "w", "go"], ["VERB", "AUX", "VERB"])]
    words = _load("udpos", "test", lang, files=str(f), conllu_multiword="words")
    assert [r["tokens"] for r in words][0] == ["de", "le", "pain"] and len(words) == 5


@needs_data
def test_ud_conllu_fused_forms_tagged_as_xtremes_conversion_in_ewt():
    """English EWT (enhanced DEPS), as XTREME's conllu_to_conll.py tags it (its lib/conll.py run on this file, both
    files of each of en_ewt, fr_gsd and zh_gsd give the same tokens and tags as itt): "I'll" in "I'll probably start
    looking" is an AUX (I: 3 ancestors by its xsubj edge, 'll 2), and of the two "it's" in "Folks, if it's Islamic,
    and fascist, it's an Islamic fascist." the first (it: nsubj of Islamic and, enhanced, of fascist) is an AUX, the
    second a PRON (the root's nsubj and cop tie; the default rank puts PRON first)."""
    ds = _load("udpos", "test", "en", files=str(SHARED / "pos" / "en_ewt-ud-test.conllu"))
    names = ds.features["label"].feature.names
    tagged = {" ".join(r["tokens"]): [names[t] for t in r["label"]] for r in ds}
    assert tagged["I'll probably start looking next weekend ."][0] == "AUX"
    folks = "Folks , if it's Islamic , and fascist , it's an Islamic fascist ."
    assert [t for w, t in zip(folks.split(), tagged[folks]) if w == "it's"] == ["AUX", "PRON"]


@needs_data
def test_ud_conllu_fused_forms_replace_their_words():
    """French GSD: each multiword token's words give way to its one surface form (independent count)."""
    path = SHARED / "pos" / "fr_gsd-ud-test.conllu"
    ds = _load("udpos", "test", "fr", files=str(path))
    blocks = _blocks(path)
    spans = [[tuple(map(int, c[0].split("-"))) for c in b if "-" in c[0]] for b in blocks]
    words = [[c for c in b if c[0].isdigit()] for b in blocks]
    expect = sum(len(w) - sum(b - a for a, b in s) for w, s in zip(words, spans))
    assert sum(len(x) for x in ds["tokens"]) == expect < sum(len(w) for w in words)
    i = next(k for k, s in enumerate(spans) if s)
    fused = {c[1] for c in blocks[i] if "-" in c[0]}
    assert fused <= set(ds[i]["tokens"])
    assert {t for x in ds["tokens"] for t in x} >= {"du", "au", "des", "aux"}


@needs_data
def test_squad_format_files():
    xq = _load("xquad", "test", "zh", files="xquad/xquad.zh.json", format="squad")
    raw = json.loads((SHARED / "xquad" / "xquad.zh.json").read_text(encoding="utf-8"))
    first = raw["data"][0]["paragraphs"][0]
    assert len(xq) == 1190
    assert xq[0]["id"] == first["qas"][0]["id"] and xq[0]["context"] == first["context"]
    assert xq[0]["answer_text"] == [a["text"] for a in first["qas"][0]["answers"]]
    ml = _load("mlqa", "dev", "de", files="mlqa/dev-context-de-question-de.squadfmt.json", format="squad")
    assert len(ml) == 512  # README: all 512 spans match their contexts (the loader checks each)


@needs_data
def test_tatoeba_parallel_and_commonsenseqa():
    ds = _load("tatoeba", "test", "de", files=["tatoeba/tatoeba.deu-eng.deu", "tatoeba/tatoeba.deu-eng.eng"],
               format="parallel")
    assert len(ds) == 1000
    assert ds[0]["source"] == "Maria sagte, sie wisse nicht, wo Tom sei."
    assert ds[0]["target"] == "Mary said she didn't know where Tom was."
    cs = _load("commonsenseqa", "train", "en", **CSQA)
    assert len(cs) == 1221
    assert cs[0]["question"].startswith("A revolving door is convenient for two direction travel")
    assert cs[0]["choices"] == ["bank", "department store", "mall", "new york"] and cs[0]["label"] == 0
    assert all(len(c) == 4 for c in cs["choices"])  # README: 4 of the 5 original options kept


# --------------------------------------------------------------------------- bad input
def test_conll_malformed_line_names_file_and_line(tmp_path):
    f = tmp_path / "bad.conll"
    f.write_text("0\tAnton\tB-PER\n1\tWilhelm\n\n")
    with pytest.raises(DataError, match=r"bad\.conll: line 2: expected at least 3 columns"):
        _load("panx", "test", "de", files=str(f), **WIKIANN)


def test_tag_outside_label_set_names_file_and_line(tmp_path):
    f = tmp_path / "misc.conll"
    f.write_text("0\tAnton\tB-PER\n\n0\tDie\tO\n1\tBeatles\tB-MISC\n")
    with pytest.raises(DataError, match=r"misc\.conll: line 4: tag 'B-MISC' is not in the label set"):
        _load("panx", "test", "de", files=str(f), **WIKIANN)


def test_conllu_wrong_column_count(tmp_path):
    f = tmp_path / "x.conllu"
    f.write_text("# text = Hi\n1\tHi\thi\tINTJ\n")
    with pytest.raises(DataError, match=r"x\.conllu: line 2: expected 10 tab-separated CoNLL-U columns, got 4"):
        _load("udpos", "test", "en", files=str(f))


def test_qa_answer_not_in_context_names_file_and_question(tmp_path):
    f = tmp_path / "qa.json"
    data = {"data": [{"title": "t", "paragraphs": [{"context": "Paris is the capital of France.", "qas": [
        {"id": "ok1", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 0}]},
        {"id": "q-bad", "question": "Country?", "answers": [{"text": "France", "answer_start": 3}]}]}]}]}
    f.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"qa\.json: question 'q-bad': answer 'France' at 3 does not match the context"):
        _load("squad", "train", "en", files=str(f), format="squad")
    f.write_text("{\"data\": [\n  {\"title\": }\n]}")
    with pytest.raises(DataError, match=r"qa\.json: line 2: not valid JSON"):
        _load("squad", "train", "en", files=str(f), format="squad")


def test_qa_answer_a_few_chars_off_is_found_where_it_is(tmp_path):
    """google/xtreme's loader strips each XQuAD/MLQA/TyDiQA context without moving answer_start: an answer
    found within 20 characters of its start is taken there; one farther off is still an error."""
    f = tmp_path / "qa.json"
    ctx = "Paris is the capital of France."
    data = {"data": [{"title": "t", "paragraphs": [{"context": ctx, "qas": [
        {"id": "a", "question": "Country?", "answers": [{"text": "France", "answer_start": 26}]},
        {"id": "b", "question": "What?", "answers": [{"text": "capital", "answer_start": 11},
                                                      {"text": "the capital", "answer_start": 9}]}]}]}]}
    f.write_text(json.dumps(data))
    ds = _load("squad", "train", "en", files=str(f), format="squad")
    assert ds["answer_start"][:] == [[24], [13, 9]] and ctx[24:30] == "France" and ctx[13:20] == "capital"
    data["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 2  # 22 away
    f.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"question 'a': answer 'France' at 2 does not match the context"):
        _load("squad", "train", "en", files=str(f), format="squad")


def test_bucc_from_the_hub_is_refused_and_retrieval_text_is_stripped(tmp_path):
    """The Hub's bucc18 configs hold the gold pairs alone (no sentences to mine among): F1 there is not BUCC's,
    so it is one error line before any download; Tatoeba from the Hub keeps each line's newline: stripped."""
    with pytest.raises(DataError, match=r"task 'bucc2018', split 'test', language 'de': the Hub's google/xtreme "
                                        r"bucc18 configs hold only the gold pairs"):
        load_split(resolve_task("bucc2018"), "test", "de")
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"source_sentence": "Hallo Welt\n", "target_sentence": " Hello world\n"}) + "\n")
    ds = _load("tatoeba", "test", "de", files=str(f), columns={"source": "source_sentence", "target": "target_sentence"})
    assert (ds["source"][:], ds["target"][:]) == (["Hallo Welt"], ["Hello world"])


def test_choice_label_out_of_range_and_parallel_mismatch(tmp_path):
    f = tmp_path / "mc.jsonl"
    f.write_text('{"q": "x?", "a": ["yes", "no"], "y": 0}\n{"q": "y?", "a": ["yes", "no"], "y": 2}\n')
    with pytest.raises(DataError, match=r"mc\.jsonl: row 2: label 2 is not an option index 0..1"):
        _load("hellaswag", "train", "en", files=str(f), columns={"question": "q", "choices": "a", "label": "y"})
    (tmp_path / "a.txt").write_text("eins\nzwei\n")
    (tmp_path / "b.txt").write_text("one\n")
    with pytest.raises(DataError, match=r"a\.txt: 2 lines, but .*b\.txt has 1"):
        _load("tatoeba", "test", "de", files=[str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], format="parallel")


def test_bucc_files(tmp_path):
    (tmp_path / "de").write_text("de-1\tHallo Welt\nde-2\tGuten Morgen\nde-3\tAllein\n")
    (tmp_path / "en").write_text("en-1\tHello world\nen-2\tGood morning\n")
    (tmp_path / "gold").write_text("de-1\ten-1\nde-2\ten-2\n")
    ds = _load("bucc2018", "test", "de", files=[str(tmp_path / n) for n in ("de", "en", "gold")], format="bucc")
    assert ds["source"] == ["Hallo Welt", "Guten Morgen", "Allein"]
    assert ds["target"] == ["Hello world", "Good morning", ""]  # de-3 is an unpaired distractor
    (tmp_path / "gold").write_text("de-1\ten-9\n")
    with pytest.raises(DataError, match=r"gold: line 1: expected 'source_id<TAB>target_id'"):
        _load("bucc2018", "test", "de", files=[str(tmp_path / n) for n in ("de", "en", "gold")], format="bucc")
    # an empty sentence read as "no partner": its gold pair left the gold set (recall over fewer pairs)
    (tmp_path / "gold").write_text("de-1\ten-1\nde-2\ten-2\n")
    (tmp_path / "en").write_text("en-1\tHello world\nen-2\t \n")
    with pytest.raises(DataError, match=r"en: line 2: sentence 'en-2' is empty"):
        _load("bucc2018", "test", "de", files=[str(tmp_path / n) for n in ("de", "en", "gold")], format="bucc")


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_line(tmp_path):
    """A UTF-8 file saved with a BOM (Notepad, Excel) reads as without it in every local format, as tsv, csv
    and jsonl already did through 🤗 datasets: not a first token or sentence with U+FEFF glued on, nor an
    error naming a first line that looks right."""
    bom = "\ufeff"
    (tmp_path / "x.conllu").write_text(bom + "# text = Hi\n1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_\n\n", encoding="utf-8")
    assert _load("udpos", "test", "en", files=str(tmp_path / "x.conllu"))["tokens"][:] == [["Hi"]]
    (tmp_path / "x.conll").write_text(bom + "0\tHu\tB-LOC\n\n", encoding="utf-8")
    assert _load("panx", "test", "de", files=str(tmp_path / "x.conll"), **WIKIANN)["tokens"][:] == [["Hu"]]
    (tmp_path / "de.txt").write_text(bom + "Hallo\n", encoding="utf-8")
    (tmp_path / "en.txt").write_text(bom + "Hello\n", encoding="utf-8")
    ds = _load("tatoeba", "test", "de", files=[str(tmp_path / "de.txt"), str(tmp_path / "en.txt")], format="parallel")
    assert (ds["source"][:], ds["target"][:]) == (["Hallo"], ["Hello"])
    (tmp_path / "de").write_text(bom + "de-1\tHallo\n", encoding="utf-8")
    (tmp_path / "en").write_text("en-1\tHello\n", encoding="utf-8")
    (tmp_path / "gold").write_text(bom + "de-1\ten-1\n", encoding="utf-8")
    ds = _load("bucc2018", "test", "de", files=[str(tmp_path / n) for n in ("de", "en", "gold")], format="bucc")
    assert ds["id"][:] == ["de-1\ten-1"] and ds["source"][:] == ["Hallo"]
    qa = {"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "1", "question": "q",
                                                              "answers": [{"text": "a", "answer_start": 0}]}]}]}]}
    (tmp_path / "qa.json").write_text(bom + json.dumps(qa), encoding="utf-8")
    assert len(_load("squad", "train", "en", files=str(tmp_path / "qa.json"), format="squad")) == 1
    (tmp_path / "sst.txt").write_text(bom + "1 a good film\n", encoding="utf-8")
    ds = _load("sst2", "train", "en", files=str(tmp_path / "sst.txt"), format="text",
               line_pattern=r"^(?P<label>[01]) (?P<sentence>.*)$", label_map={"0": "negative", "1": "positive"})
    assert ds["sentence"][:] == ["a good film"]
@pytest.mark.parametrize("name, text, spec", [
    ("e.jsonl", "", {}),                                           # was "cannot read as jsonl: StopIteration"
    ("e.tsv", "\n", {}),                                           # was "No columns to parse from file"
    ("h.tsv", "premise\thypothesis\tlabel\n", {}),                 # was 'Instruction "train" corresponds to no data!'
    ("e.txt", "", dict(format="text", line_pattern=r"^(?P<label>\S+) (?P<premise>.*)$")),
    ("e.conllu", "# only a comment\n\n", {}),                     # was "missing column 'tokens' ... (columns: )"
    ("e.json", '{"data": []}', dict(format="squad")),
    ("e.parquet", None, {}),
])
def test_an_empty_file_is_one_line_that_says_so(tmp_path, name, text, spec):
    f = tmp_path / name
    if text is None:
        import pandas as pd

        pd.DataFrame({"premise": [], "hypothesis": [], "label": []}, dtype=str).to_parquet(f)
    else:
        f.write_text(text)
    task = {"e.conllu": "udpos", "e.json": "xquad"}.get(name, "xnli")
    lang = "en" if task == "udpos" else "de"
    with pytest.raises(DataError, match=rf"{name}: (the file is empty|no rows: task '{task}', split 'test', "
                                        rf"language '{lang}' is empty)"):
        _load(task, "test", lang, files=str(f), **spec)
QA_OK = {"id": "1", "question": "q", "context": "abc", "answers": {"text": ["a"], "answer_start": [0]}}


@pytest.mark.parametrize("task, lang, good, bad, error", [
    ("panx", "de", {"tokens": ["Hu"], "tags": ["B-LOC"]}, {"tokens": ["a"], "tags": None},
     r"row 2: tokens and tags must each be a list \(got list and null\)"),
    ("panx", "de", {"tokens": ["Hu"], "tags": ["B-LOC"]}, {"tokens": None, "tags": ["O"]},
     r"row 2: tokens and tags must each be a list \(got null and list\)"),
    ("xquad", "de", QA_OK, {"id": "2", "question": "q", "context": "abc", "answers": None},
     r"question '2': expected a text question and context and answers as \{text: \[...\], answer_start: \[...\]\}"),
    ("xquad", "de", QA_OK, {"id": "2", "question": "q", "context": None, "answers": QA_OK["answers"]},
     r"question '2': expected a text question and context"),
    ("xquad", "de", QA_OK, {"id": "2", "question": "q", "context": "abc", "answers": [{"text": "a", "answer_start": 0}]},
     r"question '2': expected a text question and context"),  # SQuAD's own layout in a jsonl: format squad reads it
    ("xquad", "de", QA_OK, {"id": "2", "question": "q", "context": "abc", "answers": {"text": ["a"], "answer_start": [None]}},
     r"question '2': answer_start \[None\] is not a list of character offsets"),
    ("hellaswag", "en", {"question": "q", "choices": ["a", "b"], "label": 0}, {"question": "q", "choices": None, "label": 0},
     r"row 2: the answer options are null, not a list"),
])
def test_a_null_or_misshapen_cell_of_a_tagging_qa_or_choice_file_is_one_error_line(tmp_path, task, lang, good, bad, error):
    """A JSON null (or a cell of the wrong shape) where a list or a text belongs: one DataError naming the file and
    the row or question, not a TypeError or AttributeError traceback from deep in the loader."""
    f = tmp_path / "rows.jsonl"
    f.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"rows\.jsonl: " + error):
        _load(task, "test" if task != "hellaswag" else "train", lang, files=str(f))
def test_a_tatoeba_row_without_a_translation_is_an_error_when_loaded(tmp_path):
    """Tatoeba scores every row as a pair: a blank line on one side was loaded as an empty sentence and failed
    the chain only at its evaluation, after the intermediate stages had trained (each trial of a search),
    without naming the file. BUCC's unpaired sentences stay allowed."""
    (tmp_path / "de.txt").write_text("Hallo\n\nTschuess\n")
    (tmp_path / "en.txt").write_text("Hello\nThanks\nBye\n")
    with pytest.raises(DataError, match=r"de\.txt \(\+1 more\): row 2 \(id 1\): an empty source sentence; "
                                        r"Tatoeba-style retrieval needs a translation pair in every row"):
        _load("tatoeba", "test", "de", files=[str(tmp_path / "de.txt"), str(tmp_path / "en.txt")], format="parallel")
    (tmp_path / "de").write_text("de-1\tHallo\nde-2\tAllein\n")
    (tmp_path / "en").write_text("en-1\tHello\n")
    (tmp_path / "gold").write_text("de-1\ten-1\n")
    ds = _load("bucc2018", "test", "de", files=[str(tmp_path / n) for n in ("de", "en", "gold")], format="bucc")
    assert ds["target"][:] == ["Hello", ""]
def test_a_bad_line_of_the_second_text_file_is_named_in_that_file(tmp_path):
    """`format: text` over several files named the first file and a line counted across all of them."""
    (tmp_path / "a.txt").write_text("1 good\n0 bad\n1 fine\n")
    (tmp_path / "b.txt").write_text("1 ok\nGARBAGE\n")
    spec = dict(format="text", line_pattern=r"^(?P<label>[01]) (?P<sentence>.*)$", label_map={"0": "negative", "1": "positive"})
    with pytest.raises(DataError, match=r"b\.txt: line 2 does not match line_pattern"):
        _load("sst2", "train", "en", files=[str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], **spec)
    (tmp_path / "b.txt").write_text("1 ok\n")
    ds = _load("sst2", "train", "en", files=[str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], **spec)
    assert ds["sentence"][:] == ["good", "bad", "fine", "ok"] and ds["label"][:] == [1, 0, 1, 1]
def test_a_data_root_with_brackets_in_its_name_finds_its_files(tmp_path):
    """data_root (by default the config's folder) was globbed with the file's name: "run [v2]" matched "run v"
    or "run 2", so a file that is there was "not found", and 🤗 datasets read data_files as patterns too."""
    root = tmp_path / "run [v2]"
    root.mkdir()
    (root / "de.tsv").write_text("premise\thypothesis\tlabel\nEin Hund\tEin Tier\tentailment\n")
    (root / "de.jsonl").write_text(json.dumps({"premise": "a", "hypothesis": "b", "label": "neutral"}) + "\n")
    assert _load("xnli", "test", "de", root=root, files="de.tsv")["premise"][:] == ["Ein Hund"]
    assert _load("xnli", "test", "de", root=root, files="de.jsonl")["label"][:] == [1]
    assert _load("xnli", "test", "de", root=root, files="*.tsv")["hypothesis"][:] == ["Ein Tier"]  # the item's own *
    assert _load("xnli", "test", "de", files=str(root / "de.tsv"))["label"][:] == [0]  # an absolute path, too


# --------------------------------------------------------------------------- long sentences: windows
def test_long_sentence_split_into_windows_not_truncated():
    from transformers import AutoTokenizer

    from itt.kinds.tagging import featurize_words, windows

    assert windows([1, 2, 3, 1, 5], 4) == [(0, 2), (2, 4), (4, 5)]  # a word longer than a window stands alone
    if not SHARED.is_dir():
        pytest.skip("needs the mBERT vocabulary in ../shared/data")
    tok = AutoTokenizer.from_pretrained(str(SHARED / "tokenizers" / "bert-base-multilingual-cased"))
    words = [f"Wort{i}" for i in range(40)] + ["Donaudampfschifffahrtsgesellschaftskapitän"] * 2
    labels = [i % 7 for i in range(len(words))]
    feats, meta = featurize_words([words, ["kurz"]], [labels, [3]], tok, 16)
    assert all(len(x) <= 16 for x in feats["input_ids"])
    windows_of_0 = [m for m in meta if m[0] == 0]
    assert len(windows_of_0) > 3 and meta[-1] == (1, 0)
    # every word labelled exactly once, in order, with its own tag, on its first subword
    got = [lab for (ex, _), labs in zip(meta, feats["labels"]) if ex == 0 for lab in labs if lab != -100]
    assert got == labels
    for ids, labs in zip(feats["input_ids"], feats["labels"]):
        for t, lab in zip(ids, labs):
            if lab != -100:
                assert not tok.convert_ids_to_tokens(t).startswith("##")


def test_a_classlabel_source_is_read_by_name_where_its_names_are_the_tasks_labels(tmp_path):
    """A parquet (or Hub) source listing the task's own label names in another order is mapped by name, as
    token tasks are: its ints were taken as indices into the task's labels, so [entailment, neutral,
    contradiction] loaded as [neutral, contradiction, entailment]; names that are not the task's ("0"/"1")
    keep the ints."""
    import datasets

    names, gold = ["contradiction", "entailment", "neutral"], ["entailment", "neutral", "contradiction"]
    ds = datasets.Dataset.from_dict(
        {"premise": ["p1", "p2", "p3"], "hypothesis": ["h1", "h2", "h3"], "label": [names.index(g) for g in gold]},
        features=datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=names)}))
    ds.to_parquet(tmp_path / "nli.parquet")
    out = _load("xnli", "test", "de", files=str(tmp_path / "nli.parquet"))
    assert [out.features["label"].names[i] for i in out["label"]] == gold
    paws = datasets.Dataset.from_dict(
        {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1, 0]},
        features=datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["0", "1"])}))
    paws.to_parquet(tmp_path / "paws.parquet")
    out = _load("pawsx", "test", "de", files=str(tmp_path / "paws.parquet"))
    assert out["label"] == [1, 0]


def test_hellaswag_reads_the_hubs_parquet_conversion():
    """Rowan/hellaswag's main branch holds only its loading script, which datasets 4+ refuses: the task
    reads the Hub's Parquet conversion (refs/convert/parquet), as Cosmos QA does."""
    from itt.tasks import resolve_task

    t = resolve_task("hellaswag")
    for split in ("train", "dev"):
        spec = t.source(split, "en")
        assert spec.hub == "Rowan/hellaswag" and spec.revision == "refs/convert/parquet"
    assert resolve_task("cosmosqa").source("train", "en").revision == "refs/convert/parquet"


@pytest.mark.parametrize("name, text, spec, line", [
    ("x.tsv", "premise\thypothesis\tlabel\nA man\tA person\tentailment\tx\nB\tC\tneutral\n", {}, 2),
    ("x.csv", 'premise,hypothesis,label\n\n"A, man",A person,entailment,\nB,C,neutral\n', {}, 3),
    ("n.tsv", "A man\tA person\tentailment\tx\nB\tC\tneutral\n", dict(header=False, column_names=["premise", "hypothesis", "label"]), 1),
])
def test_a_first_row_with_a_stray_field_is_one_error_line(tmp_path, name, text, spec, line):
    """pandas takes a first row with one field more than the header for an index column: every row's fields
    moved one column left, silently (XNLI's label read from the hypothesis, the premise lost)."""
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(DataError, match=rf"{name}: line {line} has 4 fields, the header 3 \(premise, hypothesis, label\)"):
        _load("xnli", "test", "de", files=str(f), **spec)
    f.write_text(text.replace("\tx\n", "\n").replace("entailment,\n", "entailment\n"))  # (the stray field gone)
    assert _load("xnli", "test", "de", files=str(f), **spec)["label"][:2] == [0, 1]


def test_conll_columns_that_meet_on_a_short_line_are_one_error_line(tmp_path):
    """conll_columns [1, -1] on a line of two columns read the token as its own tag (column 1 twice), silently."""
    f = tmp_path / "x.conll"
    f.write_text("1\tHu\tB-LOC\n2\tDa\n\n")
    with pytest.raises(DataError, match=r"x.conll: line 2: the token and tag columns \(1, -1\) are the same column of its 2"):
        _load("panx", "test", "de", files=str(f), format="conll", conll_columns=(1, -1))
    f.write_text("1\tHu\tB-LOC\n2\tDa\tO\n\n")
    assert _load("panx", "test", "de", files=str(f), format="conll", conll_columns=(1, -1))["tokens"][:] == [["Hu", "Da"]]


@pytest.mark.parametrize("data", [["an article"], [{"paragraphs": ["a paragraph"]}],
                                  [{"paragraphs": [{"context": "abc", "qas": [{"id": "1", "question": "q", "answers": ["a"]}]}]}],
                                  [{"paragraphs": [{"context": "abc", "qas": [{"id": "1", "question": "q",
                                                                               "answers": [{"text": "a", "answer_start": "x"}]}]}]}]])
def test_a_squad_file_of_another_shape_is_one_error_line_naming_its_article(tmp_path, data):
    """An article, paragraph or answer that is not a mapping (or an offset that is no number) was a Python message
    ("'str' object has no attribute 'get'") naming nothing; the line names the file and the article."""
    f = tmp_path / "qa.json"
    f.write_text(json.dumps({"data": [{"paragraphs": []}, *data]}))
    with pytest.raises(DataError, match=r"qa.json: data\[1\](: not SQuAD format: articles hold 'paragraphs'|"
                                        r"\.paragraphs\[0\]: missing 'context' or 'qas')"):
        _load("xquad", "test", "de", files=str(f), format="squad")
