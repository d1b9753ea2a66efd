"""Metrics per language and the robustness summary of a chain.

Scores are fractions in [0, 1]. Robustness over languages follows XTREME (Hu et al., 2020): the
cross-lingual transfer gap is the English score minus the mean score of the other languages.
"""

from __future__ import annotations

import math

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
