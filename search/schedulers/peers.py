"""``Peers``: whom a trial's probe is compared with in a reproducible search (``search.reproducible``).

ASHA stops a trial whose probe falls below the rung's quantile of the probes recorded there so far. With
several trials running at once, "so far" depends on which trial reported first, so the same config and
seed can stop different orders from run to run. In a reproducible search the searcher proposes trials in
batches and waits for a whole batch to end before the next (search/searchers/batches.py). There, "the
trials that had ended when this one started" is the same set in every run: every trial of the earlier
batches. A trial is compared with those trials' probes only. Kept as the order in which trials ended and,
per trial, how many had ended when it started: the state saved with each snapshot (state.py) grows with
the number of trials, not with its square.
"""

from __future__ import annotations


class Peers:
    def __init__(self):
        self.ended: list[str] = []  # trial ids in the order they ended
        self.of: dict[str, int] = {}  # trial id -> how many had ended when it started: its peers are those

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if isinstance(self.ended, set):  # pickled before the order was kept (a search begun then: empty)
            self.ended = sorted(self.ended)

    def started(self, trial_id: str) -> None:
        self.of.setdefault(trial_id, len(self.ended))  # (a trial Tune restarts keeps its peers)

    def end(self, trial_id: str) -> None:
        if trial_id not in self.ended:
            self.ended.append(trial_id)

    def only(self, trial_id: str, recorded: dict) -> dict:
        """The part of a rung's ``recorded`` (trial id -> probe) that ``trial_id`` is compared with."""
        peers = set(self.ended[:self.of.get(trial_id, 0)])
        return {k: v for k, v in recorded.items() if k in peers}
