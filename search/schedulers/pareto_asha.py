"""``ParetoASHA``: ASHA's rungs for a search with several objectives (``search.metric: [mean, worst]``).

One score per trial is what ASHA ranks; with several there is no "bottom half". The rule here
ranks by *domination count* (Fonseca & Fleming, 1993, the rank of MOGA; the successive-halving
setting is Schmucker et al., 2021, "Multi-objective Asynchronous Successive Halving"): a trial
reaching a rung is stopped when at least a ``1 - 1/reduction_factor`` share of the trials recorded
at that rung dominate its probe (at least as good on every objective, better on one), and at least
one does. So:

* with one objective it is close to ASHA's rule: stopped when that share of the rung's trials scored
  better, where Ray's ASHA compares with the rung's interpolated quantile (rung [1, 3], probe 2.5: ASHA's
  cutoff 2 lets it go on, here half the rung is better and it stops);
* a trial that no recorded trial dominates (on the rung's front so far) is never stopped, whatever
  its rank on any single objective: the trade-off orders the search is after survive;
* the first trial at a rung always goes on, as in ASHA.

As in ``OrderASHA`` (asha.py): rungs hold probes only (a final decides nothing; it ends the trial),
the rungs are ``grace_period * reduction_factor**k`` below ``max_t`` (Ray's one bracket), a
continuation (a stopped order the searcher proposed again) and a replay run to their final report.
A probe that lacks one of the objectives is not recorded and goes on. One bracket only. In a reproducible
search (``search.reproducible``) a trial is ranked among the trials that had ended when it started (peers.py).
"""

from __future__ import annotations

import math

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from search.pareto import dominates
from search.schedulers.peers import Peers
from search.searchers._base import CONTINUES


class ParetoASHA(FIFOScheduler):
    peers: Peers | None = None  # (also what one pickled before search.reproducible existed holds)

    def __init__(self, *, metrics: list[str], directions: list[str], time_attr: str = "step", grace_period: int = 1,
                 max_t: int = 100, reduction_factor: float = 2, reproducible: bool = False):
        super().__init__()
        self.peers = Peers() if reproducible else None
        self.metrics, self.directions, self.time_attr, self.rf = list(metrics), list(directions), time_attr, reduction_factor
        n = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)  # as Ray's _Bracket (s = 0)
        self.rungs: dict[float, dict[str, tuple[float, ...]]] = {grace_period * reduction_factor ** k: {} for k in range(n)}
        self.max_t = max_t
        self.num_stopped = 0

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # it carries its own metrics (TuneConfig has none in a multi-objective search)

    def decide(self, trial_id: str, step: float, values: tuple[float, ...]) -> str:
        """Record ``values`` at the highest rung ``step`` reached that the trial has not visited; STOP when
        enough recorded trials dominate it (see the module docstring). Pure bookkeeping: testable alone."""
        for milestone in sorted(self.rungs, reverse=True):
            recorded = self.rungs[milestone]
            if step < milestone or trial_id in recorded:
                continue
            peers = recorded if self.peers is None else self.peers.only(trial_id, recorded)
            beaten_by = sum(dominates(v, values, self.directions) for v in peers.values())
            # (a tolerance: (1 - 1/3) * 9 is 6.000000000000001 in floating point, and 6 of 9 is the share)
            stop = beaten_by >= 1 and beaten_by >= (1 - 1 / self.rf) * len(peers) - 1e-9
            recorded[trial_id] = values
            return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE
        return TrialScheduler.CONTINUE

    def on_trial_result(self, tune_controller, trial, result):
        if trial.config.get(CONTINUES) or result.get("replayed") or result.get("final"):
            return TrialScheduler.CONTINUE  # a continuation runs to its final; a replay costs nothing
        values = tuple(result.get(m) for m in self.metrics)
        if self.time_attr not in result or any(v is None for v in values):
            return TrialScheduler.CONTINUE
        action = self.decide(trial.trial_id, result[self.time_attr], values)
        if result.get("resumed"):  # its run ended before an `itt resume` (trial.py): recorded, not stopped
            return TrialScheduler.CONTINUE
        self.num_stopped += action == TrialScheduler.STOP
        if action == TrialScheduler.STOP and self.peers is not None:
            self.peers.end(trial.trial_id)
        return action

    def on_trial_add(self, tune_controller, trial):
        super().on_trial_add(tune_controller, trial)
        if self.peers is not None:
            self.peers.started(trial.trial_id)

    def on_trial_complete(self, tune_controller, trial, result):
        super().on_trial_complete(tune_controller, trial, result)
        if self.peers is not None:
            self.peers.end(trial.trial_id)

    def on_trial_error(self, tune_controller, trial):
        super().on_trial_error(tune_controller, trial)
        if self.peers is not None:
            self.peers.end(trial.trial_id)

    def on_trial_remove(self, tune_controller, trial):
        super().on_trial_remove(tune_controller, trial)
        if self.peers is not None:
            self.peers.end(trial.trial_id)

    def debug_string(self) -> str:
        return f"ParetoASHA: {self.num_stopped} stopped; rungs " + ", ".join(
            f"{m:g}: {len(r)} recorded" for m, r in sorted(self.rungs.items()))
