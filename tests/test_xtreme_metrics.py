"""XTREME metrics against values computed by hand on small fixed prediction sets.

Every expected number is worked out in the comments from the rules of the official scripts
(SQuAD v1.1 evaluate-v1.1.py, MLQA mlqa_evaluation_v1.py, seqeval/conlleval, LASER's BUCC
threshold, XTREME's evaluate.py), never taken from the library under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from itt import metrics as M


# --------------------------------------------------------------------------- SQuAD v1.1 / MLQA
@pytest.mark.parametrize("pred, gold, em, f1", [
    ("The Eiffel Tower!", "eiffel tower", 1.0, 1.0),           # case, article, ASCII punctuation
    ("  new\tyork  ", "New York", 1.0, 1.0),                   # whitespace collapsed
    ("a big  red   apple", "the red apple", 0.0, 0.8),        # [big red apple] vs [red apple]: P 2/3, R 1
    ("Paris", "London", 0.0, 0.0),
    ("", "London", 0.0, 0.0),
    ("the", "a", 1.0, 0.0),                                   # both normalise to "": equal, but no token in common
    ("„Faust“", "Faust", 0.0, 0.0),                           # „ and “ are not ASCII punctuation: SQuAD keeps them
    ("Der Hund", "Hund", 0.0, 2 / 3),                         # German article kept by SQuAD: P 1/2, R 1
    ("北京大学", "北京", 0.0, 0.0),                            # SQuAD: one whitespace token each, unequal
])
def test_squad_normalisation_by_hand(pred, gold, em, f1):
    assert M.qa_exact(pred, gold, "en", "squad") == em
    assert M.qa_f1(pred, gold, "en", "squad") == pytest.approx(f1)


@pytest.mark.parametrize("lang, pred, gold, em, f1", [
    ("de", "Der Hund", "hund", 1.0, 1.0),                     # German articles removed
    ("de", "„Faust“", "Faust", 1.0, 1.0),                     # Unicode punctuation (Ps/Pe/Pi/Pf) removed
    ("de", "einen großen Hund", "großer Hund", 0.0, 0.5),     # [großen hund] vs [großer hund]: 1 common
    ("es", "la casa", "casa", 1.0, 1.0),
    ("es", "Los perros, y el gato", "perros gato", 0.0, 0.8),  # [perros y gato] vs [perros gato]: P 2/3, R 1
    ("en", "The cat", "cat", 1.0, 1.0),
    ("ar", "الكتاب", "كتاب", 1.0, 1.0),                        # every "ال" is removed (as the official regex does)
    ("hi", "भारत की राजधानी।", "भारत की राजधानी", 1.0, 1.0),   # no articles; danda (Po) is punctuation
    ("zh", "北京大学", "北京", 0.0, 2 / 3),                     # characters: [北 京 大 学] vs [北 京]: P 1/2, R 1
    ("zh", "北京，大学", "北京大学", 1.0, 1.0),                  # CJK comma removed, characters compared
    ("zh", "NBA 球队", "nba球队", 1.0, 1.0),                    # latin run kept whole, CJK split: [nba 球 队]
    ("zh", "2008年", "2008 年", 1.0, 1.0),
])
def test_mlqa_normalisation_by_hand(lang, pred, gold, em, f1):
    assert M.qa_exact(pred, gold, lang, "mlqa") == em
    assert M.qa_f1(pred, gold, lang, "mlqa") == pytest.approx(f1)


def test_mlqa_segmentation_and_unknown_language():
    assert M.mlqa_normalize("北京 大学 is Big!", "zh") == "北 京 大 学 is big"
    assert M.mlqa_normalize("  Die   Katze.  ", "de") == "katze"
    with pytest.raises(ValueError, match="no language 'el'"):
        M.mlqa_normalize("x", "el")


def test_qa_averages_best_gold_per_question():
    golds = [["the red apple", "apple"], ["Paris"], ["Rome"]]
    preds = ["red apple", "paris.", "Milan"]
    # q1: EM with gold 1 (normalised "red apple") -> 1, F1 1; q2: 1, 1; q3: 0, 0
    m = M.qa(golds, preds)
    assert m == {"f1": pytest.approx(2 / 3), "exact_match": pytest.approx(2 / 3)}
    # XTREME's QA figure: (EM + F1) / 2
    assert M.xtreme_value({"f1": 0.5, "exact_match": 0.25}, "em_f1") == pytest.approx(0.375)


# --------------------------------------------------------------------------- tagging
def test_ner_entity_f1_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG", "O"]]
    # sentence 1: PER(0-1) truncated to PER(0-0): wrong boundary; LOC right.
    # sentence 2: ORG(0-2) predicted as ORG(0-1): wrong boundary; plus a spurious LOC(3).
    pred = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "I-ORG", "O", "B-LOC"]]
    m = M.tagging(gold, pred, iob=True)
    # gold entities 3, predicted 4, correct 1 (LOC in sentence 1): P 1/4, R 1/3, F1 2PR/(P+R) = 2/7
    assert m["precision"] == pytest.approx(1 / 4)
    assert m["recall"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(2 / 7)


@pytest.mark.parametrize("pred, p, r", [
    (["I-PER", "I-PER", "O", "O"], 1.0, 0.5),        # conlleval: an I- after O opens an entity: PER(0-1) is right
    (["B-ORG", "I-ORG", "O", "B-LOC"], 0.5, 0.5),    # right span, wrong type: ORG counts as wrong
    (["B-PER", "I-PER", "I-PER", "B-LOC"], 0.5, 0.5),  # span runs one token too far
    (["B-PER", "B-PER", "O", "B-LOC"], 1 / 3, 0.5),  # one entity split in two: both halves wrong
    (["O", "O", "O", "O"], 0.0, 0.0),
])
def test_ner_boundary_errors_by_hand(pred, p, r):
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    m = M.tagging(gold, [pred], iob=True)
    assert m["precision"] == pytest.approx(p)
    assert m["recall"] == pytest.approx(r)
    assert m["f1"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)


def test_pos_accuracy_and_xtreme_f1_by_hand():
    gold = [["NOUN", "VERB", "NOUN"], ["DET", "NOUN"]]
    pred = [["NOUN", "NOUN", "NOUN"], ["DET", "NOUN"]]
    m = M.tagging(gold, pred, iob=False)
    assert m["accuracy"] == pytest.approx(4 / 5)
    # XTREME's UD-POS "F1" is seqeval on the raw tags: a run of one tag is one chunk. Gold chunks:
    # NOUN(0) VERB(1) NOUN(2) | DET(0) NOUN(1) = 5; predicted: NOUN(0-2) | DET(0) NOUN(1) = 3;
    # correct 2: P 2/3, R 2/5, F1 = 2*(2/3)*(2/5)/(2/3+2/5) = 1/2
    assert m["f1"] == pytest.approx(0.5)


# --------------------------------------------------------------------------- retrieval
def test_tatoeba_nearest_source_by_hand():
    src = np.array([[1, 0], [0, 1], [1, 1]], float)
    tgt = np.array([[1, 0.1], [1, 1.2], [0.1, 1]], float)
    # cosines: tgt0 -> src0 .995, src2 .774 => 0 (right); tgt1 -> src1 .768, src2 .996 => 2 (wrong);
    # tgt2 -> src1 .995 => 1 (wrong, gold 2)
    m, pred = M.tatoeba(src, tgt)
    assert list(pred) == [0, 2, 1]
    assert m["accuracy"] == pytest.approx(1 / 3)


def test_bucc_ratio_margin_mining_by_hand():
    src = np.array([[1, 0], [0, 1]], float)
    tgt = np.array([[1, 0], [0.6, 0.8]], float)
    # cos: (0,0)=1 (0,1)=.6 (1,0)=0 (1,1)=.8; k=2 neighbourhoods are everything:
    # src means .8 and .4; tgt means .5 and .7. ratio margin cos / ((m_src + m_tgt) / 2):
    # (0,0) = 1/.65, (0,1) = .6/.75, (1,1) = .8/.55; best forward and backward: (0,0), (1,1)
    cand = M.bucc_mine(src, tgt, k=2)
    assert set(cand) == {(0, 0), (1, 1)}
    assert cand[(0, 0)] == pytest.approx(1 / 0.65)
    assert cand[(1, 1)] == pytest.approx(0.8 / 0.55)


def test_bucc_mines_each_distinct_sentence_once_and_drops_repeated_ones():
    """XTREME's BUCC mining (utils_retrieve.py, from LASER): a sentence is embedded and mined once however
    often it occurs, and one that occurs twice maps back to no sentence id."""
    first, repeated = M.distinct(["a b", "c", "a b", "d", "c", "e"])
    assert first == [0, 1, 3, 5] and repeated == {"a b", "c"}
    assert M.distinct([]) == ([], set())


def test_retrieval_default_layer_is_xtremes():
    """XTREME's run_tatoeba.sh embeds with --specific_layer 7 (12-layer models) or 13 (XLM-R large, 24),
    indexing the transformer layers' outputs without the embeddings (evaluate_retrieval.py:
    all_layer_outputs[-num_layers:]): hidden states 8 and 14, counting the embeddings as 0."""
    from itt.kinds.retrieval import layer_index

    assert layer_index(12, None) == 8 and layer_index(24, None) == 14
    assert layer_index(2, None) == 2 and layer_index(1, None) == 1  # tiny encoders: the last layer
    assert layer_index(12, 7) == 7 and layer_index(12, -1) == 12  # (an explicit layer is the hidden state asked for)


@pytest.mark.parametrize("task, pooling, arch, expect", [
    ("bucc2018", "auto", "bert", "first"),      # run_bucc2018.sh: --pool_type cls
    ("bucc2018", "auto", "xlnet", "last"),      # (XLNet's summary token is its last, as model.pooling: auto)
    ("tatoeba", "auto", "bert", "mean"),        # run_tatoeba.sh: evaluate_retrieval.py's default, mean
    ("bucc2018", "mean", "bert", "mean"),       # (asked for: kept)
])
def test_retrieval_pooling_is_xtremes_per_task(task, pooling, arch, expect):
    from types import SimpleNamespace

    import transformers

    from itt.kinds.retrieval import retrieval_pooling
    from itt.tasks import resolve_task

    config = transformers.AutoConfig.for_model(arch)
    ctx = SimpleNamespace(cfg=SimpleNamespace(eval=SimpleNamespace(retrieval=SimpleNamespace(pooling=pooling))),
                          task=resolve_task(task))
    assert retrieval_pooling(ctx, SimpleNamespace(config=config)) == expect


def test_bucc_threshold_of_the_official_procedure_by_hand():
    cand = {(0, 0): 0.9, (1, 1): 0.8, (2, 5): 0.7, (3, 3): 0.6, (5, 6): 0.5}
    gold = {(0, 0), (1, 1), (3, 3), (4, 4)}
    # walking down the scores: F1 after each candidate .4, .667, .571, .75 (best), .667;
    # the threshold lies halfway between the best cut (.6) and the next score (.5)
    th = M.bucc_optimize(cand, gold)
    assert th == pytest.approx(0.55)
    m = M.bucc_f1(cand, gold, th)
    # kept: 4 candidates, 3 correct; 4 gold pairs: P = R = F1 = .75
    assert m == {"f1": pytest.approx(0.75), "precision": pytest.approx(0.75), "recall": pytest.approx(0.75)}
    assert M.bucc_f1(cand, gold, 0.95) == {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def test_bucc_gold_that_is_not_one_to_one(tmp_path, monkeypatch):
    """A source sentence in two gold pairs (BUCC's gold need not be one-to-one) is one sentence, mined once:
    it was two rows with the same text, taken for a repeated sentence and never extracted. Embeddings by hand:
    de-0 is nearest en-0 (then en-1), de-1 nearest en-2; de-2 and en-3 are orthogonal to all (margin 0, never
    a candidate). Mined one-to-one: (de-0, en-0), (de-1, en-2), both gold; gold holds 3 pairs, so the best cut
    keeps both: P 1, R 2/3, F1 0.8 (before: only (de-1, en-2) could be right, F1 0.5)."""
    from types import SimpleNamespace

    import datasets

    from itt.data import read_bucc
    from itt.kinds import retrieval

    for name, text in (("de", "de-0\ta\nde-1\tb\nde-2\tc\n"), ("en", "en-0\tA\nen-1\tA2\nen-2\tB\nen-3\tz\n"),
                       ("gold", "de-0\ten-0\nde-0\ten-1\nde-1\ten-2\n")):
        (tmp_path / name).write_text(text, encoding="utf-8")
    ds = datasets.Dataset.from_list(read_bucc(*(str(tmp_path / n) for n in ("de", "en", "gold"))))
    vec = {"a": [1, 0, 0, 0], "A": [1, 0.05, 0, 0], "A2": [1, 0.2, 0, 0], "b": [0, 1, 0, 0], "B": [0, 1, 0.05, 0],
           "c": [0, 0, 1, 0], "z": [0, 0, 0, 1]}
    monkeypatch.setattr(retrieval, "_embed", lambda ctx, enc, texts: np.array([vec[t] for t in texts], dtype=float))
    ctx = SimpleNamespace(cfg=SimpleNamespace(eval=SimpleNamespace(retrieval=SimpleNamespace(bucc_neighbors=2))),
                          task=SimpleNamespace(name="bucc2018", metric="f1"), split="test", state={})
    scores, rows = retrieval.RetrievalHandler().evaluate(ctx, SimpleNamespace(encoder=None), ds, None, "de")
    assert scores["f1"] == pytest.approx(0.8) and scores["recall"] == pytest.approx(2 / 3)
    assert {(r["id"], r["pred"]) for r in rows if r["kept"]} == {("de-0", "en-0"), ("de-1", "en-2")}
    assert all(r["gold"] for r in rows if r["kept"])
