"""What running a configuration would cost now: order_bo's denominator in expected improvement per cost.

Memoization-aware BO (EEIPU, arXiv 2411.03731): a trial pays only the prefix stages no trial has trained
(the stage cache makes the others free) plus its fixed part (data, the final fine-tune or fine-tunes of
its targets, evaluation). What a unit is:

* ``stages`` (the default): every stage-training is one unit, whatever its task, and the fixed part
  ``final_cost`` units (one per target a chain fine-tunes).
* ``measured``: the seconds trials report. A stage of task t costs the median of the
  ``stage_seconds`` reported for t's stages (its training and its probe, measured when trained, or
  carried by the stage-cache entry a later trial loads); the fixed part the median ``fixed_seconds``
  (a trial's time besides the stages it trained). Until a trial has reported a stage, every cost is
  counted in stages; a task not measured yet costs the median measured task, and before any trial
  has finished the fixed part is ``final_cost`` median stages. Costs are returned in units of the
  median measured stage, so both units read the same.

Real tasks differ by an order of magnitude (SST-2's 67k short sentences against SQuAD's 88k questions at
384 tokens). EEIPU fits a GP to log costs; a stage's cost here depends on its task and not on its place
in the order or on the rest of the order, so a median per task is the estimate. Searched hyperparameters
that change a stage's length (epochs, max_length) are not modelled: their stages are pooled per task.

Why ``stages`` stays the default (bench/data/search_costs.txt: bench/search_efficiency.py --offline --costs,
30 seeds, compute counted in seconds, area under the regret curve as a share of random's): with each
task's stage drawn log-uniformly over a decade, pricing by the measured seconds was worse on planted
(0.62 against 0.53), equal on curriculum (0.32 / 0.32) and toy3 (0.66 / 0.67, though sooner within eps
there): EI per second puts off orders whose best tasks happen to be the dear ones (a myopic
acquisition's known bias against expensive regions; CArBO, Lee et al. 2020). With a fixed part four
stages long, pricing it at four was better on curriculum (0.22 / 0.29) and worse on planted (0.64 /
0.53). Neither unit wins across tables, so the simpler one stays.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


MIN_FIXED = 0.01  # the least a trial's fixed part costs, in median stages


@dataclass
class Seconds:
    """The seconds trials reported: per task, each stage's; per finished trial, its fixed part."""

    stage: dict[str, list[float]] = field(default_factory=dict)
    fixed: list[float] = field(default_factory=list)

    def add_trial(self, order: list[str], attrs: dict) -> None:
        """A study trial's user attributes (``stage_seconds_<i>``, ``fixed_seconds``: OrderSearcher sets them)."""
        for i, task in enumerate(order, start=1):
            v = attrs.get(f"stage_seconds_{i}")
            if isinstance(v, (int, float)) and v > 0:
                self.stage.setdefault(task, []).append(float(v))
        v = attrs.get("fixed_seconds")
        if isinstance(v, (int, float)) and v >= 0:
            self.fixed.append(float(v))

    def stage_medians(self) -> dict[str, float]:
        """Each task's median stage seconds."""
        return {t: statistics.median(v) for t, v in self.stage.items()}

    def fixed_median(self) -> float | None:
        return statistics.median(self.fixed) if self.fixed else None


class CostModel:
    """``stage(task)`` and ``fixed``, in stage units (see the module docstring)."""

    def __init__(self, unit: str, final_cost: float, seconds: Seconds | None = None):
        measured = unit == "measured" and seconds is not None and bool(seconds.stage)
        self.measured = measured
        if not measured:
            self._stage, self._other, self.fixed = {}, 1.0, float(final_cost)
            return
        per_task = seconds.stage_medians()
        unit_s = statistics.median(per_task.values()) or 1.0
        self._stage = {t: s / unit_s for t, s in per_task.items()}
        self._other = 1.0  # a task no trial has reported: the median measured task
        fixed = seconds.fixed_median()
        # (a trial always costs something: a fixed part measured at 0 s, as a simulation with fixed_seconds: 0
        # reports, made every fully cached order free, its EI per cost infinite whatever its EI)
        self.fixed = max(fixed / unit_s, MIN_FIXED) if fixed is not None else float(final_cost)

    def stage(self, task: str) -> float:
        return self._stage.get(task, self._other)
