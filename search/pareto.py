"""Several objectives at once: the figures a trial reports that a search may optimise, their
directions, and the Pareto front (the configurations no other one beats on every objective).

``search.metric: [mean, worst]`` makes a search multi-objective (search/config.py): each trial
reports one ``objective_<name>`` per objective (search/trial.py), a multi-objective Optuna study
behind Ray's OptunaSearch proposes orders (search/searchers/: order_bo by ParEGO scalarisations, or
Optuna's own TPE, GP, random), ``ParetoASHA`` stops only trials dominated by many others at a
rung (search/schedulers/pareto_asha.py), and the search ends with the front: on the console, in
``results.csv`` (column ``pareto``), ``summary.json``, MLflow and ``itt report``.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX, MIN = "maximize", "minimize"

# what a trial reports over its target languages (dev split; probes the same after each stage):
# name -> (direction, words: what the score is, after "the dev "; {w} is search.robust_weight). One metric
# alone must be one of SINGLE (a std alone rewards a model that scores every language equally badly).
OBJECTIVES: dict[str, tuple[str, str]] = {
    "mean": (MAX, "mean over the target's languages"),
    "worst": (MAX, "score of the worst target language"),
    "robust": (MAX, "mean - {w:g} x std over the target's languages"),
    "std": (MIN, "std over the target's languages (lower is better)"),
    "transfer_gap": (MIN, "English minus the mean of the target's other languages (lower is better)"),
    # not over the target's languages but over tasks: the target and every eval.also task, each task's
    # XTREME score the mean over its languages (optimised alone: a front against the target's own figures
    # would mix what the report reads per task with what it reads per language)
    "xtreme": (MAX, "XTREME average over the target and the eval.also tasks"),
}
SINGLE = ("mean", "worst", "robust", "xtreme")
ALONE = ("xtreme",)  # optimised alone only
PARETO_COLUMN = "pareto"  # results.csv: true on the front, false for other completed trials


def on_front(row: dict) -> bool:
    """Whether a results.csv row is on its search's Pareto front."""
    return row.get(PARETO_COLUMN) == "true"


def names(metric: str | Sequence[str]) -> list[str]:
    """``search.metric`` as a list of objective names (one for a single-objective search)."""
    return [metric] if isinstance(metric, str) else list(metric)


def directions(metric: str | Sequence[str]) -> list[str]:
    return [OBJECTIVES[n][0] for n in names(metric)]


def lower_is_better(metric: str | Sequence[str]) -> bool:
    """Whether the first objective (results.csv's score) is lower-is-better: std or transfer_gap first."""
    return directions(metric)[0] == MIN


def is_multi(metric: str | Sequence[str]) -> bool:
    return len(names(metric)) > 1


def column(name: str) -> str:
    """A trial report's (and results.csv's) key for one objective of a multi-objective search."""
    return f"objective_{name}"


def dominates(a: Sequence[float], b: Sequence[float], dirs: Sequence[str]) -> bool:
    """True when ``a`` is at least as good as ``b`` on every objective and better on one."""
    better = False
    for x, y, d in zip(a, b, dirs):
        if d == MIN:
            x, y = -x, -y
        if x < y:
            return False
        better = better or x > y
    return better


def front(points: Sequence[Sequence[float]], dirs: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points, in input order. Equal points are all kept (neither
    dominates the other). A sweep in lexicographic order (best first): a point can only be dominated
    by one before it, and only a point already on the front needs checking, so O(n * front size)."""
    sign = [1.0 if d == MAX else -1.0 for d in dirs]
    key = [tuple(s * v for s, v in zip(sign, p)) for p in points]
    kept: list[int] = []
    for i in sorted(range(len(points)), key=lambda i: key[i], reverse=True):
        if not any(dominates(points[j], points[i], dirs) for j in kept):
            kept.append(i)
    return sorted(kept)


def words(name: str, robust_weight: float) -> str:
    """What one objective is, for console lines: ``the dev mean over the target's languages``."""
    return "the dev " + OBJECTIVES[name][1].format(w=robust_weight)


def describe(metric: str | Sequence[str]) -> str:
    """``mean ↑, worst ↑`` for console lines."""
    return ", ".join(f"{n} {'↑' if OBJECTIVES[n][0] == MAX else '↓'}" for n in names(metric))
