"""``Batches``: the searcher of a reproducible search (``search.reproducible``) proposes ``size`` trials
at a time and sees none of their results until all of them have ended.

With trials running side by side, a searcher that proposes into each free slot at once proposes from
whatever results happen to be in: which trial finished first, and so which orders run next, changes
from run to run. In batches the searcher always proposes from the same results (every earlier batch),
and with its seed, the same trials follow. The price: slots idle while a batch's longest trial finishes.
Ray Tune's ``ConcurrencyLimiter(batch=True)`` does the waiting. It tells the searcher a batch's results
in the order the trials ended, which order_bo does not depend on: it reads the study in trial order.
Ray saves the limiter's state (the open batch) with each snapshot and restores it at ``itt resume``
(``SearchGenerator.save_to_dir``): a resumed search waits for the batch it was in.
"""

from __future__ import annotations

from ray.tune.search import ConcurrencyLimiter


class Limiter(ConcurrencyLimiter):
    """Ray Tune's limiter of trials at once (what ``TuneConfig.max_concurrent_trials`` wraps a searcher in),
    except for the end of a trial it did not suggest: an errored trial started again under a new id (`itt
    resume --retry-errored`, or the runner's restart of trials Tune gave up on; Ray's ``Trial.reset``). Ray's
    limiter drops it; the searcher gets it (OrderSearcher takes the restart's results into its study)."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live_trials:
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        super().on_trial_complete(trial_id, result=result, error=error)


class Batches(Limiter):
    def __init__(self, searcher, size: int):
        super().__init__(searcher, max_concurrent=size, batch=True)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # the searcher hears of this end with the batch's, but its time is spent now (search.budget's
        # `budget: ...` on the trial's line and in the live view; the stop is decided at the next batch)
        if result and trial_id in self.live_trials and hasattr(self.searcher, "record_time"):
            self.searcher.record_time(trial_id, result)
        super().on_trial_complete(trial_id, result=result, error=error)
