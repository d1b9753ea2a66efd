"""Metrics per language and the robustness summary of a chain.

Scores are fractions in [0, 1]. Robustness over languages follows XTREME (Hu et al., 2020): the
cross-lingual transfer gap is the English score minus the mean score of the other languages.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter

import numpy as np


def classification(gold, pred) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
    }


def regression(gold, pred) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr

    gold, pred = np.asarray(gold, float), np.asarray(pred, float)
    if len(gold) < 2 or np.ptp(pred) == 0 or np.ptp(gold) == 0:
        # correlation is undefined for constant input; a constant predictor carries no signal
        return {"pearson": 0.0, "spearman": 0.0}
    return {"pearson": float(pearsonr(gold, pred)[0]), "spearman": float(spearmanr(gold, pred)[0])}


def task_metrics(task, gold, pred) -> dict[str, float]:
    return regression(gold, pred) if task.is_regression else classification(gold, pred)


def summary(per_language: dict[str, float], english: str = "en") -> dict:
    """Mean, std (population, over languages), worst language and transfer gap of one metric."""
    langs = list(per_language)
    vals = np.array([per_language[lang] for lang in langs], float)
    worst = int(vals.argmin())
    others = [per_language[lang] for lang in langs if lang != english]
    gap = per_language[english] - float(np.mean(others)) if english in per_language and others else None
    return {
        "mean": float(vals.mean()),
        "std": float(vals.std()),
        "worst": float(vals[worst]),
        "worst_language": langs[worst],
        "transfer_gap": gap,
    }


def mean_std(values: list[float | None]) -> dict:
    """Mean and sample std over seeds (std 0 for one seed); None where any value is missing."""
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
        return {"mean": None, "std": None, "n": len(values)}
    arr = np.asarray(values, float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": len(arr)}


# --------------------------------------------------------------------------- token classification
def tagging(gold: list[list[str]], pred: list[list[str]], iob: bool) -> dict[str, float]:
    """Tag sequences per sentence. NER (``iob``): entity-level precision/recall/F1 by seqeval in its
    default (conlleval) mode, as XTREME's ``evaluate.py``. POS: token accuracy, and the seqeval F1
    XTREME's ``evaluate.py`` also computes for UD-POS (on the raw tags, where runs of one tag count
    as one chunk)."""
    import warnings

    from seqeval.metrics import f1_score, precision_score, recall_score

    with warnings.catch_warnings():  # seqeval warns on every non-IOB tag (POS)
        warnings.simplefilter("ignore")
        f1 = float(f1_score(gold, pred))
        if iob:
            return {"f1": f1, "precision": float(precision_score(gold, pred)), "recall": float(recall_score(gold, pred))}
    n = sum(len(g) for g in gold)
    acc = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p)) / n if n else 0.0
    return {"accuracy": float(acc), "f1": f1}


# --------------------------------------------------------------------------- extractive QA
# SQuAD v1.1's official evaluate script (Rajpurkar et al., 2016) normalises an answer by lower-casing,
# removing ASCII punctuation, the English articles a/an/the, and extra whitespace; F1 is over
# whitespace tokens. MLQA's evaluate script (Lewis et al., 2020, mlqa_evaluation_v1.py) removes all
# Unicode punctuation (categories P*), language-specific articles, and segments Chinese into single
# CJK characters and punctuation (mixed segmentation) instead of splitting on whitespace.
_SQUAD_PUNCT = set(string.punctuation)
_MLQA_PUNCT: set[str] | None = None
_MLQA_ARTICLES = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "ar": r"\sال^|ال",  # as in the official script: every "ال" goes, not only the prefix
    "hi": None,  # no formal articles
    "zh": None,
}
MLQA_LANGS = tuple(_MLQA_ARTICLES)
_WHITESPACE_LANGS = ("en", "es", "hi", "vi", "de", "ar")


def _mlqa_punct() -> set[str]:
    global _MLQA_PUNCT
    if _MLQA_PUNCT is None:
        import sys
        import unicodedata

        _MLQA_PUNCT = {chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")}
        _MLQA_PUNCT |= _SQUAD_PUNCT
    return _MLQA_PUNCT


def squad_normalize(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in _SQUAD_PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _mixed_segmentation(text: str, punct: set[str]) -> list[str]:
    out, buf = [], ""
    for ch in text:
        if re.search(r"[\u4e00-\u9fa5]", ch) or ch in punct:
            if buf:
                out.extend(buf.split())
                buf = ""
            out.append(ch)
        else:
            buf += ch
    if buf:
        out.extend(buf.split())
    return out


def mlqa_normalize(s: str, lang: str) -> str:
    if lang not in _MLQA_ARTICLES:
        raise ValueError(f"MLQA normalisation knows no language '{lang}' (known: {', '.join(MLQA_LANGS)})")
    punct = _mlqa_punct()
    s = "".join(ch for ch in s.lower() if ch not in punct)
    if _MLQA_ARTICLES[lang]:
        s = re.sub(_MLQA_ARTICLES[lang], " ", s)
    tokens = s.split() if lang in _WHITESPACE_LANGS else _mixed_segmentation(s, punct)
    return " ".join(t for t in tokens if t.strip())


def qa_normalize(s: str, lang: str, mode: str) -> str:
    return mlqa_normalize(s, lang) if mode == "mlqa" else squad_normalize(s)


def qa_f1(pred: str, gold: str, lang: str = "en", mode: str = "squad") -> float:
    p, g = qa_normalize(pred, lang, mode).split(), qa_normalize(gold, lang, mode).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    prec, rec = same / len(p), same / len(g)
    return 2 * prec * rec / (prec + rec)


def qa_exact(pred: str, gold: str, lang: str = "en", mode: str = "squad") -> float:
    return float(qa_normalize(pred, lang, mode) == qa_normalize(gold, lang, mode))


def qa(golds: list[list[str]], preds: list[str], lang: str = "en", mode: str = "squad") -> dict[str, float]:
    """Mean over questions of the best F1 / exact match against any gold answer (fractions, not %)."""
    if not golds:
        return {"f1": 0.0, "exact_match": 0.0}
    f1 = [max(qa_f1(p, g, lang, mode) for g in gs) for p, gs in zip(preds, golds)]
    em = [max(qa_exact(p, g, lang, mode) for g in gs) for p, gs in zip(preds, golds)]
    return {"f1": float(np.mean(f1)), "exact_match": float(np.mean(em))}


# --------------------------------------------------------------------------- retrieval
def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def tatoeba(src: np.ndarray, tgt: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """XTREME's Tatoeba: for every English (target) sentence, the nearest source sentence by cosine;
    accuracy = share whose neighbour is its translation. Returns the metrics and the predicted indices."""
    sims = _unit(tgt) @ _unit(src).T
    pred = sims.argmax(axis=1)
    return {"accuracy": float((pred == np.arange(len(pred))).mean()) if len(pred) else 0.0}, pred


def distinct(texts: list[str]) -> tuple[list[int], set[str]]:
    """BUCC's sentences as XTREME mines them (third_party/utils_retrieve.py, from LASER's bucc.py): each
    distinct sentence once (``text_load_unify``): the index of its first occurrence; and the sentences
    that occur more than once, which map back to no sentence id (``read_sent2id``), so a candidate pair
    holding one is not extracted."""
    first, seen, repeated = [], set(), set()
    for i, t in enumerate(texts):
        if t in seen:
            repeated.add(t)
        else:
            seen.add(t)
            first.append(i)
    return first, repeated


def bucc_mine(src: np.ndarray, tgt: np.ndarray, k: int = 4) -> dict[tuple[int, int], float]:
    """Candidate pairs with their ratio-margin scores (Artetxe & Schwenk, 2019), as LASER/XTREME's
    ``mine_bitext(mode='mine', retrieval='max', margin='ratio')``: each sentence's best partner by margin
    in both directions, then a greedy one-to-one selection by score."""
    x, y = _unit(src), _unit(tgt)
    sim = x @ y.T
    kx, ky = min(k, y.shape[0]), min(k, x.shape[0])
    x_nn = np.argsort(-sim, axis=1, kind="stable")[:, :kx]
    y_nn = np.argsort(-sim.T, axis=1, kind="stable")[:, :ky]
    x_mean = np.take_along_axis(sim, x_nn, axis=1).mean(axis=1)
    y_mean = np.take_along_axis(sim.T, y_nn, axis=1).mean(axis=1)
    margin = lambda i, j: sim[i, j] / ((x_mean[i] + y_mean[j]) / 2)  # noqa: E731
    cands = []
    for i in range(x.shape[0]):
        scores = [margin(i, j) for j in x_nn[i]]
        b = int(np.argmax(scores))
        cands.append((scores[b], i, int(x_nn[i][b])))
    for j in range(y.shape[0]):
        scores = [margin(i, j) for i in y_nn[j]]
        b = int(np.argmax(scores))
        cands.append((scores[b], int(y_nn[j][b]), j))
    out: dict[tuple[int, int], float] = {}
    seen_s, seen_t = set(), set()
    for score, i, j in sorted(cands, key=lambda c: -c[0]):  # stable: ties keep the forward-first order
        if i in seen_s or j in seen_t:
            continue
        seen_s.add(i)
        seen_t.add(j)
        if score > 0:
            out[(i, j)] = max(float(score), out.get((i, j), float(score)))
    return out


def bucc_optimize(cand: dict, gold: set) -> float:
    """The threshold of the official BUCC procedure (LASER's ``bucc_optimize``): walk the candidates by
    falling score, and put the threshold halfway between the candidate where F1 on the gold pairs is
    best and the next one."""
    items = sorted(cand.items(), key=lambda kv: -kv[1])
    n_correct = 0
    best_f1, threshold = 0.0, 0.0
    for i, (pair, score) in enumerate(items):
        n_correct += pair in gold
        if n_correct:
            prec, rec = n_correct / (i + 1), n_correct / len(gold)
            f1 = 2 * prec * rec / (prec + rec)
            if f1 > best_f1:
                best_f1 = f1
                # LASER indexes items[i + 1] unguarded; past the last candidate keep all of them
                threshold = (score + items[i + 1][1]) / 2 if i + 1 < len(items) else score
    return threshold


def bucc_f1(cand: dict, gold: set, threshold: float) -> dict[str, float]:
    """Precision/recall/F1 of the candidates scoring at least ``threshold`` (``bucc_extract``)."""
    pred = {p for p, s in cand.items() if s >= threshold}
    correct = len(pred & gold)
    if not correct:
        return {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    prec, rec = correct / len(pred), correct / len(gold)
    return {"f1": 2 * prec * rec / (prec + rec), "precision": prec, "recall": rec}


# --------------------------------------------------------------------------- XTREME score
def xtreme_value(metrics: dict[str, float], xtreme_metric: str) -> float:
    """One language's figure in XTREME's average: (EM + F1) / 2 for QA, else the named metric."""
    if xtreme_metric == "em_f1":
        return (metrics["exact_match"] + metrics["f1"]) / 2
    return metrics[xtreme_metric]
