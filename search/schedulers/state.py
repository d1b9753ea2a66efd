"""``SchedulerState``: the scheduler's rungs survive ``itt resume``.

Ray Tune saves the searcher's state and each callback's with every experiment snapshot, but not the
scheduler's (``TuneController.__getstate__`` leaves ``_scheduler_alg`` out): a resumed search started
ASHA with empty rungs, so the first trials after it were ranked among none of the probes recorded
before, and stopped fewer orders than the uninterrupted search would. This callback saves the
scheduler's state with the callbacks' (``get_state``) and puts it back into the restored scheduler
before Tune adds the restored trials (``set_state``; Tune restores callbacks first).
"""

from __future__ import annotations

from ray.tune import Callback


class SchedulerState(Callback):
    def __init__(self, scheduler):
        self.scheduler = scheduler

    def get_state(self) -> dict:
        # (Tune pickles it at once: rungs, each trial's bracket, the bracket draws' RNG, peers, counts)
        return {"class": type(self.scheduler).__name__, "state": dict(vars(self.scheduler))}

    def set_state(self, state: dict) -> None:
        if state.get("class") == type(self.scheduler).__name__:
            vars(self.scheduler).update(state["state"])
