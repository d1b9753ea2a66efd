"""``DedupSearcher``: every Tune trial gets a configuration this search has not run before.

Optuna's TPE re-proposes points it has already tried, often: on a space of 60 orders, plain TPE
spends about half of its trials on repeats once it has converged. Ray's ``OptunaSearch`` turns each
proposal into a Tune trial, so a repeat costs a trial slot (``num_samples``) even when the trial
itself replays the earlier result from ``dedup/``. This wrapper answers a repeat inside the
searcher instead, and asks Optuna again:

* a repeat of a **finished** configuration is told to Optuna as COMPLETE with the score it already
  has (the model must see it again, or TPE keeps proposing the same point);
* a repeat of one **stopped by ASHA** is told as PRUNED, like the original;
* a repeat of one still **running** is told as FAIL (no score yet; Optuna may propose it again later).

After ``tries`` repeats in a row, an order never proposed before is drawn at random (seeded) and
enqueued into the study, so the search keeps moving; once every order has been proposed (and the
search has no hyperparameters that could still differ) the searcher says FINISHED and the search
ends early instead of spinning.

A trial that ASHA stopped is told to Optuna as PRUNED (its probe scores are already in the study as
intermediate values), not as COMPLETE with its last probe score as ``OptunaSearch`` does on its own:
a probe after stage 1 and a final score after a full fine-tune are on different scales, and TPE
would read a stopped trial's probe as a final score.

The wrapper pickles with its inner searcher (``save``/``restore``), so a resumed search keeps the
set of seen configurations.
"""

from __future__ import annotations

import json
import pickle
import random

from ray.tune.search import Searcher

from search.space import OrderSpace, order_key

RUNNING, DONE, STOPPED = "running", "done", "stopped"


class DedupSearcher(Searcher):
    def __init__(self, inner, space: OrderSpace, has_hparams: bool, seed: int = 0, tries: int = 20):
        super().__init__(metric=inner.metric, mode=inner.mode)
        self.inner, self.space, self.has_hparams, self.tries = inner, space, has_hparams, tries
        self.rng = random.Random(f"dedup:{seed}")
        self.seen: dict[str, tuple[str, float | None]] = {}  # config key -> (state, score)
        self.orders_seen: set[str] = set()
        self.inner_id: dict[str, str] = {}  # Tune trial id -> the inner searcher's trial id
        self.key_of: dict[str, str] = {}
        self.repeats_answered = 0
        self.random_fallbacks = 0

    # ------------------------------------------------------------------ keys
    def _split(self, config: dict) -> tuple[str, dict]:
        from search.trial import split_config

        order, hp = split_config(config, self.space)
        return order_key(order), hp

    @staticmethod
    def _key(order: str, hp: dict) -> str:
        return json.dumps([order, sorted(hp.items())], default=str)

    # ------------------------------------------------------------------ Searcher API
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        ok = self.inner.set_search_properties(metric, mode, config, **spec)
        self._metric, self._mode = self.inner.metric, self.inner.mode
        return ok

    def suggest(self, trial_id: str):
        for attempt in range(self.tries + 1):
            iid = f"{trial_id}#{attempt}" if attempt else trial_id
            if attempt == self.tries:
                fallback = self._enqueue_unseen()
                if fallback is Searcher.FINISHED:
                    return Searcher.FINISHED
            cfg = self.inner.suggest(iid)
            if cfg is None or cfg is Searcher.FINISHED:
                return cfg
            order, hp = self._split(cfg)
            key = self._key(order, hp)
            if key not in self.seen or (attempt == self.tries and self.has_hparams):
                # (a repeat that gets through after every try becomes a trial; the trial replays it)
                self.seen.setdefault(key, (RUNNING, None))
                self.orders_seen.add(order)
                self.inner_id[trial_id], self.key_of[trial_id] = iid, key
                return cfg
            self._answer(iid, key)
        return None  # not reached

    def _answer(self, iid: str, key: str) -> None:
        """Tell Optuna, for a repeated proposal, what the earlier identical trial gave."""
        state, score = self.seen[key]
        self.repeats_answered += 1
        if state == DONE:
            self.inner.on_trial_complete(iid, {self.inner.metric: score})
        elif state == STOPPED:
            self.inner.on_trial_complete(iid, None)  # PRUNED
        else:
            self.inner.on_trial_complete(iid, None, error=True)  # FAIL: no score yet

    def _enqueue_unseen(self):
        unseen = [o for o in self.space.orders() if order_key(o) not in self.orders_seen]
        if not unseen:
            return None if self.has_hparams else Searcher.FINISHED
        self.inner._ot_study.enqueue_trial(self.space.encode(self.rng.choice(unseen)), skip_if_exists=False)
        self.random_fallbacks += 1
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.inner_id:
            self.inner.on_trial_result(self.inner_id[trial_id], result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.inner_id:
            return
        key = self.key_of[trial_id]
        score = (result or {}).get(self.inner.metric)
        if error or score is None:
            self.inner.on_trial_complete(self.inner_id[trial_id], None, error=True)
            if self.seen.get(key, (RUNNING,))[0] == RUNNING:
                del self.seen[key]  # an errored configuration may be proposed (and run) again
        elif not result.get("final"):  # stopped by the scheduler before its final report
            self.inner.on_trial_complete(self.inner_id[trial_id], None)  # PRUNED
            self.seen[key] = (STOPPED, score)
        else:
            self.inner.on_trial_complete(self.inner_id[trial_id], result)
            self.seen[key] = (DONE, score)

    # ------------------------------------------------------------------ checkpointing (resume)
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
