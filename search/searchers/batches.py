"""``Batches``: the searcher of a reproducible search (``search.reproducible``) proposes ``size`` trials
at a time and sees none of their results until all of them have ended.

With trials running side by side, a searcher that proposes into each free slot at once proposes from
whatever results happen to be in: which trial finished first, and so which orders run next, changes
from run to run. In batches the searcher always proposes from the same results (every earlier batch),
and with its seed, the same trials follow. The price: slots idle while a batch's longest trial finishes.
Ray Tune's ``ConcurrencyLimiter(batch=True)`` does the waiting. It tells the searcher a batch's results
in the order the trials ended, which order_bo does not depend on: it reads the study in trial order.

Ray's limiter saves only its searcher's state: an ``itt resume`` started it with no batch open, so a new
batch ran beside the interrupted one's trials. ``Batches`` saves the open batch with the searcher's state
(under ``BATCH_KEY``) and resumes it: the resumed search waits for that batch as the uninterrupted one did.
"""

from __future__ import annotations

import copy

from ray.tune.search import ConcurrencyLimiter


BATCH_KEY = "_open_batch"  # the open batch, riding in the searcher's saved state (save/restore)
OPEN_BATCH = ("live_trials", "cached_results", "num_unfinished_live_trials")


class Batches(ConcurrencyLimiter):
    def __init__(self, searcher, size: int):
        super().__init__(searcher, max_concurrent=size, batch=True)

    def save(self, checkpoint_path: str) -> None:
        vars(self.searcher)[BATCH_KEY] = {k: copy.deepcopy(getattr(self, k)) for k in OPEN_BATCH}
        try:
            self.searcher.save(checkpoint_path)
        finally:
            del vars(self.searcher)[BATCH_KEY]

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)
        vars(self).update(vars(self.searcher).pop(BATCH_KEY, {}))  # (none: saved before it was kept)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live_trials:
            # not of a batch: an errored trial `itt resume --retry-errored` runs again (under a new id), or one
            # of a search saved before the open batch was: Ray's limiter would drop it; the searcher gets it
            self.searcher.on_trial_complete(trial_id, result=result, error=error)
            return
        super().on_trial_complete(trial_id, result=result, error=error)
