"""``Peers``: whom a trial's probe is compared with in a reproducible search (``search.reproducible``).

ASHA stops a trial whose probe falls below the rung's quantile of the probes recorded there so far. With
several trials running at once, "so far" depends on which trial reported first, so the same config and
seed can stop different orders from run to run. In a reproducible search the searcher proposes trials in
batches and waits for a whole batch to end before the next (search/searchers/batches.py). There, "the
trials that had ended when this one started" is the same set in every run: every trial of the earlier
batches. A trial is compared with those trials' probes only.
"""

from __future__ import annotations


class Peers:
    def __init__(self):
        self.ended: set[str] = set()
        self.of: dict[str, frozenset[str]] = {}  # trial id -> the trials that had ended when it started

    def started(self, trial_id: str) -> None:
        self.of.setdefault(trial_id, frozenset(self.ended))  # (a trial Tune restarts keeps its peers)

    def end(self, trial_id: str) -> None:
        self.ended.add(trial_id)

    def only(self, trial_id: str, recorded: dict) -> dict:
        """The part of a rung's ``recorded`` (trial id -> probe) that ``trial_id`` is compared with."""
        peers = self.of.get(trial_id, frozenset())
        return {k: v for k, v in recorded.items() if k in peers}
