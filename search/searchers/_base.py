"""``OrderSearcher``: the Ray Tune searcher every search uses, around Ray's ``OptunaSearch``.

It owns what is true whatever Optuna sampler proposes the orders:

* **No configuration is trained twice.** Optuna's TPE re-proposes points it has tried (on 60 orders
  about half of its trials, once converged). A repeat is answered inside the searcher and Optuna is
  asked again: a repeat of a **finished** configuration is told COMPLETE with the score it has (the
  model must see it again, or TPE keeps proposing it); one still **running** is told FAIL (no score
  yet; Optuna may propose it later), and so is one that **errored** (it is not run again in this search:
  Tune retried it already; ``itt resume --retry-errored`` restarts it). After ``tries`` repeats in a row an order never proposed before
  is drawn at random (seeded) and enqueued; once every order has run (and no hyperparameter could
  still differ) the searcher says FINISHED - not while one still runs that the scheduler may stop: it
  waits (no proposal), so that a stop there can still be continued.
* **A stopped order can come back.** A trial the scheduler stopped is told to Optuna as PRUNED (its
  probes are in the study as intermediate values; a probe and a final are on different scales). When
  the sampler proposes that order again, it is not answered as PRUNED forever: it becomes a
  *continuation* trial (config key ``CONTINUES`` = the stopped trial's id). The continuation takes
  the finished stages from the stage cache, trains only what is left, and the scheduler lets it run
  to its final report (search/schedulers/asha.py): the searcher's model, which has seen the probes of
  every order, overrules one early rung.
* **It can stop itself** (``search.stop``, stopping.py): before each proposal, once a trial more has
  finished, it asks the sampler whether an unfinished order could still beat its pick; when the rule
  holds it says FINISHED (running trials finish, none new starts). So it does once ``search.budget``
  is spent (the trials' device-hours, from Tune's ``time_total_s``, or the search's wall-clock hours).
* **What trials cost.** The seconds a trial reports for each stage and for the rest of it become user
  attributes of its study trial (``stage_seconds_<i>``, ``fixed_seconds``): order_bo's cost model.
* **The study can be looked at.** With a ``StudyCopy`` (study_copy.py), finished trials are copied
  into a database for optuna-dashboard; the study itself stays in memory, saved with this searcher.
* **Its own time.** Each proposal's seconds on the driver (the sampler's fit and scoring included), and
  what taking in results costs, are kept (``own_time``): ``summary.json``'s ``searcher_time``, the
  console's last lines, the report's compute statement and ``itt space --from`` read them.
* **A recommendation, not only a maximum.** ``recommend()`` asks the sampler for the order its
  model rates best (posterior mean and interval) when it has a model (``OrderBOSampler``); a trace
  of recommendations, one per proposal, is kept for ``summary.json`` and the benchmark.

With several objectives (``search.metric: [mean, worst]``) the inner searcher's ``metric`` is a list;
a score is then the tuple of the objectives' values, and the rest works the same (a multi-objective
study takes no intermediate values, so a stopped trial is PRUNED without them).

It pickles with its inner searcher (``save``/``restore``), so a resumed search keeps all of this.
"""

from __future__ import annotations

import json
import pickle
import random
import statistics
import time

from ray.tune.search import Searcher

from search.space import OrderSpace, is_order_param, order_key

RUNNING, DONE, STOPPED, ERRORED = "running", "done", "stopped", "errored"
CONTINUES = "continues"  # trial config key: the id of the stopped trial this one continues


class OrderSearcher(Searcher):
    def __init__(self, inner, space: OrderSpace, has_hparams: bool, seed: int = 0, tries: int = 20,
                 continue_stopped: bool = True, copy=None, stop=None, budget=None, devices_per_trial: float = 1.0):
        super().__init__(metric=inner.metric, mode=inner.mode)
        self.inner, self.space, self.has_hparams, self.tries = inner, space, has_hparams, tries
        self.continue_stopped = continue_stopped
        self.rng = random.Random(f"dedup:{seed}")
        self.seen: dict[str, tuple[str, float | None]] = {}  # config key -> (state, score)
        self.orders_seen: set[str] = set()
        self.inner_id: dict[str, str] = {}  # Tune trial id -> the inner searcher's trial id
        self.key_of: dict[str, str] = {}
        self.stopped_by: dict[str, str] = {}  # config key -> the Tune trial id that was stopped
        self.repeats_answered = 0
        self.random_fallbacks = 0
        self.continuations = 0
        self.trace: list[dict] = []  # the sampler's recommendation at each proposal
        self.copy = copy  # a StudyCopy: the study in a file or database, for optuna-dashboard
        self.tune_numbers: set[int] = set()  # Optuna trial numbers of the trials Tune runs (not the repeats)
        self.stop = stop  # search.stop (search/searchers/stopping.py), or None
        self.ended: dict | None = None  # what made the search stop itself (stopping.reason)
        self._asked_at = -1  # finished trials when the rule was last asked
        self.budget = budget  # search.budget (stopping.budget_reason), or None
        self.devices_per_trial = devices_per_trial  # GPUs (or CPU cores) a trial holds: its device-hours
        self.trial_seconds: dict[str, float] = {}  # Tune trial id -> its time so far (Tune's time_total_s)
        self.elapsed_before = 0.0  # wall-clock seconds of the search's earlier sessions (itt resume)
        self._session_start = time.time()
        self.proposal_seconds: list[float] = []  # each proposal's seconds on the driver (own_time)
        self.results_seconds = 0.0  # ... and the rest: calls that proposed nothing, results and ends told

    # ------------------------------------------------------------------ keys
    def _split(self, config: dict) -> tuple[str, dict]:
        from search.trial import split_config

        order, hp = split_config(config, self.space)
        return order_key(order), hp

    @staticmethod
    def _key(order: str, hp: dict) -> str:
        return json.dumps([order, sorted(hp.items())], default=str)

    @property
    def sampler(self):
        return getattr(self.inner, "_sampler", None)

    @property
    def study(self):
        return getattr(self.inner, "_ot_study", None)

    # ------------------------------------------------------------------ Searcher API
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        ok = self.inner.set_search_properties(metric, mode, config, **spec)
        self._metric, self._mode = self.inner.metric, self.inner.mode
        return ok

    def suggest(self, trial_id: str):
        t0 = time.perf_counter()
        cfg = self._suggest(trial_id)
        self._timed(t0, proposal=isinstance(cfg, dict))
        return cfg

    def _suggest(self, trial_id: str):
        if self._should_stop():
            return Searcher.FINISHED
        if self._waiting():
            return None
        for attempt in range(self.tries + 1):
            iid = f"{trial_id}#{attempt}" if attempt else trial_id
            if attempt == self.tries and self._enqueue_unseen() is Searcher.FINISHED:
                return Searcher.FINISHED
            cfg = self.inner.suggest(iid)
            if cfg is None or cfg is Searcher.FINISHED:
                return cfg
            order, hp = self._split(cfg)
            key = self._key(order, hp)
            state = self.seen.get(key, (None,))[0]
            runs = state is None or (state == STOPPED and self.continue_stopped)  # new, or a stopped one continued
            if runs or (attempt == self.tries and self.has_hparams):
                # (a repeat that gets through after every try becomes a trial; the trial replays it)
                if state == STOPPED and runs:  # the sampler wants a stopped order after all: continue it
                    cfg = {**cfg, CONTINUES: self.stopped_by[key]}
                    self.continuations += 1
                if runs:
                    self.seen[key] = (RUNNING, None)
                self.orders_seen.add(order)
                self.inner_id[trial_id], self.key_of[trial_id] = iid, key
                ot = getattr(self.inner, "_ot_trials", {}).get(iid)
                if ot is not None:
                    self.tune_numbers.add(ot.number)
                self._trace(trial_id)
                return cfg
            self._answer(iid, key)
        return None  # not reached

    def _answer(self, iid: str, key: str) -> None:
        """Tell Optuna, for a repeated proposal, what the earlier identical trial gave."""
        state, score = self.seen[key]
        self.repeats_answered += 1
        if state == STOPPED:
            self.inner.on_trial_complete(iid, None)  # PRUNED, like the original
        elif state == DONE:
            names = self.inner.metric if isinstance(self.inner.metric, list) else [self.inner.metric]
            values = score if isinstance(self.inner.metric, list) else [score]
            self.inner.on_trial_complete(iid, dict(zip(names, values)))
        else:
            self.inner.on_trial_complete(iid, None, error=True)  # FAIL: no score (yet: running; or errored)

    def _waiting(self) -> bool:
        """Every order proposed, none stopped, and some still running: no proposal now (Tune asks again), not
        FINISHED - Ray ends a searcher's search at FINISHED for good, and a running trial the scheduler stops
        would not be continued (search.scheduler.continue_stopped)."""
        if self.has_hparams or not self.continue_stopped or len(self.orders_seen) < self.space.count():
            return False
        states = {state for state, _ in self.seen.values()}
        return RUNNING in states and STOPPED not in states

    def _enqueue_unseen(self):
        """An order never proposed (or one stopped, which may continue), drawn at random, or FINISHED."""
        unseen = [o for o in self.space.orders() if order_key(o) not in self.orders_seen]
        if not unseen and self.continue_stopped:
            unseen = [o for o in self.space.orders() if self.seen.get(self._key(order_key(o), {}), (None,))[0] == STOPPED]
        if not unseen:
            return None if self.has_hparams else Searcher.FINISHED  # (_suggest waited first where trials may stop)
        self.study.enqueue_trial(self.space.encode(self.rng.choice(unseen)), skip_if_exists=False)
        self.random_fallbacks += 1
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.inner_id or self._adopt(trial_id, result):
            t0 = time.perf_counter()
            self._tell_result(trial_id, result)
            self._timed(t0)

    def _adopt(self, trial_id: str, result: dict | None) -> bool:
        """A trial this searcher did not suggest, of a configuration that errored: Tune restarted the errored
        trial (`itt resume --retry-errored`, the runner's retry of trials Ray gave up on early), and Ray's
        ``Trial.reset`` gives the restart a new id. Its results go to a new study trial of the same parameters
        (the errored one stays FAIL), so the searcher learns what the retry scores. Tune's results carry the
        trial's config, flattened as ``config/<key>``."""
        cfg = {k[len("config/"):]: v for k, v in (result or {}).items() if k.startswith("config/")}
        if not cfg or self.study is None:
            return False
        order, hp = self._split(cfg)
        key = self._key(order, hp)
        if self.seen.get(key, (None,))[0] != ERRORED:
            return False
        iid = f"{trial_id}#retry"
        self.study.enqueue_trial({k: v for k, v in cfg.items() if is_order_param(k) or k in hp}, skip_if_exists=False)
        if not isinstance(self.inner.suggest(iid), dict):
            return False
        self.inner_id[trial_id], self.key_of[trial_id] = iid, key
        self.tune_numbers.add(self.inner._ot_trials[iid].number)  # (a trial Tune runs: the study copy takes it)
        self.seen[key] = (RUNNING, None)
        return True

    def _tell_result(self, trial_id: str, result: dict) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        self._record_costs(trial_id, result)
        step = result.get("training_iteration")
        steps = self.__dict__.setdefault("steps_told", {}).setdefault(trial_id, set())  # (older pickles: none)
        if step is not None and step in steps:
            return  # a trial Tune restarted (its worker or node died) reports its steps again: Optuna has them
        steps.add(step)
        try:
            self.inner.on_trial_result(self.inner_id[trial_id], result)
        except UpdateFinishedTrialError:
            # the study's database is newer than Ray's snapshot of this searcher (the driver was killed
            # after the trial ended): the study has this trial's result already
            pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.inner_id or (not error and self._adopt(trial_id, result)):
            t0 = time.perf_counter()
            self._tell_end(trial_id, result, error)
            self._timed(t0)

    def _tell_end(self, trial_id: str, result: dict | None, error: bool) -> None:
        key = self.key_of[trial_id]
        score = self._score(result)
        self._record_costs(trial_id, result)
        # (with several objectives a probe may lack one, e.g. a table without probe_<i>_worst: still a stop)
        multi_stop = isinstance(self.inner.metric, list) and bool(result) and not result.get("final")
        if error or (score is None and not multi_stop):
            self.inner.on_trial_complete(self.inner_id[trial_id], None, error=True)
            if self.seen.get(key, (RUNNING,))[0] == RUNNING:
                # not proposed again in this search: Tune retried it search.max_failures times already, a
                # failure that repeats (e.g. out of memory on a long order) would take trial after trial, and
                # the runner (or `itt resume --retry-errored`) restarts errored trials through Ray itself
                self.seen[key] = (ERRORED, None)
        elif not result.get("final"):  # stopped by the scheduler before its final report
            if score is not None and result.get("training_iteration") is not None:
                # Tune gives the result a scheduler stops a trial on to on_trial_complete only (never to
                # on_trial_result): that probe goes into the study here, like the trial's earlier ones
                self._tell_result(trial_id, result)
            self.inner.on_trial_complete(self.inner_id[trial_id], None)  # PRUNED
            self.seen[key] = (STOPPED, score)
            self.stopped_by[key] = trial_id
        else:
            self.inner.on_trial_complete(self.inner_id[trial_id], result)
            self.seen[key] = (DONE, score)
        self.sync_copy()

    def _record_costs(self, trial_id: str, result: dict | None) -> None:
        """What a result says the trial cost: its time so far (Tune's ``time_total_s``: search.budget), and
        what it reported its stages and the rest cost (``stage_seconds`` per stage, ``fixed_seconds`` with its
        final) as user attributes of its study trial: order_bo's cost model reads them (searchers/costs.py),
        and optuna-dashboard shows them."""
        self.record_time(trial_id, result)
        ot = getattr(self.inner, "_ot_trials", {}).get(self.inner_id[trial_id])
        if ot is None or not result:
            return
        try:
            if result.get("final"):
                if isinstance(result.get("fixed_seconds"), (int, float)):
                    ot.set_user_attr("fixed_seconds", float(result["fixed_seconds"]))
            elif isinstance(result.get("stage_seconds"), (int, float)) and result.get("step"):
                ot.set_user_attr(f"stage_seconds_{int(result['step'])}", float(result["stage_seconds"]))
        except Exception:  # (a finished trial's attributes are fixed: nothing more to record)
            pass

    def record_time(self, trial_id: str, result: dict | None) -> None:
        """A result's time so far (Tune's ``time_total_s``), counted towards search.budget. Also called by
        ``Batches`` when a trial ends in an open batch, whose end the searcher is told only with the batch's:
        the progress lines' `budget: ...` counts it from its end."""
        t, it = (result or {}).get("time_total_s"), (result or {}).get("training_iteration")
        if isinstance(t, (int, float)):
            # a run Tune restarted (a dead worker or node, `itt resume`) counts its time from 0 again: the
            # earlier runs' time was spent all the same (search.budget)
            runs = self.__dict__.setdefault("trial_runs", {})  # id -> (earlier runs' seconds, last t, last iteration)
            before, last_t, last_it = runs.get(trial_id, (0.0, self.trial_seconds.get(trial_id, 0.0), 0))
            if it is not None and (it < last_it or (it == last_it and t < last_t)):
                before += last_t
            runs[trial_id] = (before, float(t), last_it if it is None else it)
            self.trial_seconds[trial_id] = before + float(t)

    def _timed(self, t0: float, proposal: bool = False) -> None:
        """Count the seconds since ``t0`` as one proposal's, or as the rest of the searcher's own time."""
        seconds = time.perf_counter() - t0
        if proposal:
            self.proposal_seconds.append(seconds)
        else:
            self.results_seconds += seconds

    def own_time(self) -> dict:
        """summary.json's ``searcher_time``: the searcher's own seconds on the driver (``seconds``: each
        proposal's, and taking in results), beside the search's wall-clock time. While it proposes, the slot the proposal
        is for waits: Ray Tune's driver loop does one thing at a time."""
        p = self.proposal_seconds
        return {"proposals": len(p), "seconds": round(sum(p) + self.results_seconds, 3), "propose_seconds": round(sum(p), 3),
                "median_proposal_seconds": round(statistics.median(p), 4) if p else None,
                "longest_proposal_seconds": round(max(p), 4) if p else None,  # (as the median: never below it)
                "results_seconds": round(self.results_seconds, 3), "search_seconds": round(self.spent()["hours"] * 3600.0, 1),
                "per_proposal": [round(s, 4) for s in p]}

    def spent(self) -> dict[str, float]:
        """What the search has spent so far, running trials included: device-hours and wall-clock hours."""
        return {"device_hours": sum(self.trial_seconds.values()) * self.devices_per_trial / 3600.0,
                "hours": (self.elapsed_before + time.time() - self._session_start) / 3600.0}

    def sync_copy(self, force: bool = False) -> None:
        if self.copy is not None:
            self.copy.sync(self.study, self.tune_numbers, force=force, order_of=self._order_of)

    def _order_of(self, params: dict) -> str:
        try:
            return order_key(self.space.decode(params))
        except (KeyError, IndexError, ZeroDivisionError):
            return ""

    def _score(self, result: dict | None):
        """The optimised value in a result: a float, or a tuple with several objectives (None when one is missing)."""
        if isinstance(self.inner.metric, list):
            values = tuple((result or {}).get(m) for m in self.inner.metric)
            return None if any(v is None for v in values) else values
        return (result or {}).get(self.inner.metric)

    def _should_stop(self) -> bool:
        """``search.stop``: asked once per newly finished trial; once it holds, the search proposes no more."""
        from search.searchers import stopping

        if self.ended is not None:
            return True
        finished = sum(state == DONE for state, _ in self.seen.values())
        self.ended = stopping.budget_reason(self.budget, self.spent(), finished)
        if self.ended is not None:
            return True
        if self.stop is None or finished == self._asked_at or finished < self.stop.min_trials:
            return False
        self._asked_at = finished
        try:
            rec = self.recommend()
        except Exception:  # a fit that fails (degenerate data) stops nothing; the next finished trial asks again
            return False
        self.ended = stopping.reason(self.stop, (rec or {}).get("unexplored"), finished)
        if self.ended is not None:
            self.ended["pick"] = rec["order"]
        return self.ended is not None

    # ------------------------------------------------------------------ the recommendation
    def recommend(self) -> dict | None:
        """The sampler's recommended order (a dict: order, mean, lo, hi, ...), or None without a model."""
        rec = getattr(self.sampler, "recommend", None)
        return rec(self.study) if rec is not None and self.study is not None else None

    def _trace(self, trial_id: str) -> None:
        last = getattr(self.sampler, "last_recommendation", None)
        if last is not None:
            self.trace.append({"trial_id": trial_id, "trials_started": len(self.inner_id) - 1, **last})

    # ------------------------------------------------------------------ checkpointing (resume)
    def save(self, checkpoint_path: str) -> None:
        self.sync_copy(force=True)
        self.elapsed_before, self._session_start = self.spent()["hours"] * 3600.0, time.time()
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        # what the runner decided for this resume (set on the restored Tuner's searcher before Ray loads its
        # state into it): the study copy's place in a moved experiment; `--more` lifts search.stop
        here, more = self.__dict__.get("copy_here"), self.__dict__.get("lift_stop", False)
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update({"tune_numbers": set(), "copy": None, "stop": None, "ended": None, "_asked_at": -1,
                                  "budget": None, "devices_per_trial": 1.0, "trial_seconds": {}, "elapsed_before": 0.0,
                                  "proposal_seconds": [], "results_seconds": 0.0,
                                  **pickle.load(f)})
        self._session_start = time.time()  # (the time between sessions is no search's)
        if here is not None and self.copy is not None:
            self.copy.url = here
        if more:
            self.stop = self.ended = self.budget = None
