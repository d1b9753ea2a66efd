"""``OrderASHA``: ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020)
over stages of an order, as Ray's ``ASHAScheduler`` runs it, with these changes:

* **Rungs hold probes only.** Ray records a trial's LAST result when it completes, in the highest rung
  it has not visited: a length-1 order's final (a full target fine-tune) would land in rung 2 beside
  longer orders' stage-2 probes (a 30-step probe fine-tune) and raise that rung's cutoff past every
  probe. A final decides nothing anyway (the trial has ended); it is left out of the rungs. Finals are
  reported at one common step, ``SearchConfig.final_step``, for the same reason (see search/trial.py).
* **Brackets from the search seed.** With ``brackets`` > 1 each trial's bracket is drawn from the search
  seed (Ray draws it from numpy's global state), with Ray's weights: same config and seed, same stops.
* **Reproducible** (``search.reproducible``): a trial's probe is compared only with the probes of the
  trials that had ended when it started (peers.py), so the same config and seed stop the same orders
  however fast each trial runs.
* **Resumed with its rungs.** Ray saves no scheduler state; ``SchedulerState`` (state.py) does, and a
  trial Tune adds again at ``itt resume`` keeps its bracket and draws none. A trial whose run ended after
  Ray's last snapshot reports that run again (``resumed``): its probes are recorded, and it is not stopped.
* **Stopped orders can come back.** A continuation trial (config key ``CONTINUES``: the searcher
  proposed a stopped order again, its model having seen every probe since) runs to its final report
  and is not recorded in the rungs a second time: a stop is low-fidelity evidence, not a verdict. A
  replay (an identical trial's reports from ``dedup/``) is never stopped either: it trains nothing.
"""

from __future__ import annotations

import math
import random

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from search.schedulers.peers import Peers
from search.searchers._base import CONTINUES


class OrderASHA(ASHAScheduler):
    peers: Peers | None = None  # (also what one pickled before search.reproducible existed holds)

    def __init__(self, *args, seed: int = 0, reproducible: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._rng = random.Random(f"asha:{seed}")  # bracket draws: Ray's come from numpy's global state
        self.peers = Peers() if reproducible else None

    def on_trial_add(self, tune_controller, trial):
        # a resumed search (state.py) adds its trials again: one in flight keeps its bracket, and neither it
        # nor one that had ended draws, so the trials after the resume draw as they would have
        restored = self._trial_info.get(trial.trial_id)
        ended = getattr(trial, "status", None) in (Trial.TERMINATED, Trial.ERROR)
        super().on_trial_add(tune_controller, trial)  # (its checks; its draw is replaced below)
        if restored is not None or ended:
            self._trial_info[trial.trial_id] = restored or self._brackets[0]
        elif len(self._brackets) > 1:  # Ray's bracket probabilities, from the search's seed
            sizes = [len(b._rungs) for b in self._brackets]
            weights = [math.e ** (n - max(sizes)) for n in sizes]
            self._trial_info[trial.trial_id] = self._rng.choices(self._brackets, weights=weights)[0]
        if self.peers is not None:
            self.peers.started(trial.trial_id)

    def on_trial_result(self, tune_controller, trial, result):
        if trial.config.get(CONTINUES) or result.get("replayed"):
            return TrialScheduler.CONTINUE  # a continuation runs to its final; a replay costs nothing
        action = self._decide(trial, result)  # (records the probe in its rung)
        if result.get("resumed"):
            return TrialScheduler.CONTINUE  # its run ended before an `itt resume` (trial.py): recorded, not stopped
        self._num_stopped += action == TrialScheduler.STOP
        if action == TrialScheduler.STOP and self.peers is not None:
            self.peers.end(trial.trial_id)
        return action

    def _decide(self, trial, result) -> str:
        """Ray's ``AsyncHyperBandScheduler.on_trial_result`` and ``_Bracket.on_result`` (with Ray's default
        ``stop_last_trials``), the stop counted by the caller; with ``search.reproducible`` the rung's
        cutoff is taken over the trial's peers only (the probe is still recorded for later trials)."""
        if self._time_attr not in result or result.get(self._metric) is None:
            return TrialScheduler.CONTINUE
        t, reward = result[self._time_attr], self._metric_op * result[self._metric]
        if t >= self._max_t and self._stop_last_trials:
            return TrialScheduler.STOP
        bracket = self._trial_info[trial.trial_id]
        for milestone, recorded in bracket._rungs:  # (highest rung first)
            if t < milestone or trial.trial_id in recorded:
                continue
            peers = recorded if self.peers is None else self.peers.only(trial.trial_id, recorded)
            cutoff = bracket.cutoff(peers)
            recorded[trial.trial_id] = reward
            return TrialScheduler.STOP if cutoff is not None and reward < cutoff else TrialScheduler.CONTINUE
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        if self.peers is not None:
            self.peers.end(trial.trial_id)
        if (result and (result.get("final") or result.get("replayed"))) or trial.config.get(CONTINUES):
            return  # (a replay's and a continuation's probes are in the rungs already, from the original)
        super().on_trial_complete(tune_controller, trial, result)

    def on_trial_error(self, tune_controller, trial):
        if self.peers is not None:
            self.peers.end(trial.trial_id)
        super().on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial):
        if self.peers is not None:
            self.peers.end(trial.trial_id)
        super().on_trial_remove(tune_controller, trial)


def make_scheduler(scfg):
    """``search.scheduler``: OrderASHA on the stage index (ParetoASHA with several objectives), or
    Ray's FIFO (no stopping)."""
    if scfg.scheduler.type != "asha":
        return FIFOScheduler()
    if scfg.multi_objective:
        from search.pareto import column, directions
        from search.schedulers.pareto_asha import ParetoASHA

        return ParetoASHA(metrics=[column(n) for n in scfg.objectives], directions=directions(scfg.metric),
                          time_attr="step", grace_period=scfg.scheduler.grace_period,
                          max_t=scfg.scheduler.max_t or scfg.final_step, reduction_factor=scfg.scheduler.reduction_factor,
                          reproducible=scfg.reproducible)
    return OrderASHA(time_attr="step", max_t=scfg.scheduler.max_t or scfg.final_step,
                     grace_period=scfg.scheduler.grace_period, reduction_factor=scfg.scheduler.reduction_factor,
                     brackets=scfg.scheduler.brackets, seed=scfg.seed, reproducible=scfg.reproducible)
