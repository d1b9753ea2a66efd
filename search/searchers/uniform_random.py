"""``random``: a uniform random order without replacement, as an Optuna sampler.

Optuna's ``RandomSampler`` over the Lehmer digits (search/space.py) draws the order length uniformly
and then each digit: on 8 tasks and lengths 1-4 it proposes one of the 8 single-task orders as
often as one of the 1,680 four-task ones, so the short orders come back again and again and each
repeat costs the search an Optuna ask and tell (2,158 repeats for 1,000 trials, bench/data/
driver_overhead.txt). This sampler instead draws every proposal uniformly from the orders no
trial has tried yet (so a length in proportion to its number of orders), over the space's
constraints, and the hyperparameters as ``RandomSampler`` does.

Like ``OrderBOSampler`` (order_bo.py) it decides the whole order at the first digit Optuna asks
for (``sample_independent``) and answers the later digits from it. Drawing is by rejection: an
order of length k with probability proportional to the k-permutations of the candidates (a random
permutation's first k tasks), kept when it is valid and untried, which is exactly uniform over the
valid untried orders (von Neumann's acceptance-rejection; no enumeration, so any size of space).
When rejection keeps failing (a tightly constrained or nearly exhausted space) the valid untried
orders are listed once and drawn from. Once every order has been tried it proposes a stopped order
(a continuation, _base.py) if there is one, else any order (the searcher answers the repeat).

Tried = proposed or enqueued (seed points, the searcher's fallback) and not failed: a trial that
fails (an error, or a repeat the searcher answered while its original runs) frees its order unless
another trial holds it. Seeded and picklable (Ray saves the searcher with the experiment).
"""

from __future__ import annotations

import random

import optuna
from optuna.samplers import BaseSampler
from optuna.trial import TrialState

from search.space import MAX_ENUMERATE, OrderSpace, is_order_param

REJECT_TRIES = 64  # random draws before the untried orders are listed instead
REJECT_TRIES_UNLISTED = 20_000  # ... in a space too large to list (a draw costs microseconds)


class UniformOrderSampler(BaseSampler):
    """Uniform random orders without replacement; hyperparameters from Optuna's ``RandomSampler``.

    >>> s = UniformOrderSampler(OrderSpace(candidates=["a", "b", "c"], lengths=[1, 2]), seed=0)
    >>> study = optuna.create_study(sampler=s)
    """

    def __init__(self, space: OrderSpace, *, seed: int = 0):
        self.space, self.seed = space, seed
        self._rng = random.Random(f"uniform-order:{seed}")
        self._hp = optuna.samplers.RandomSampler(seed=seed)
        self._holders: dict[tuple, set[int]] = {}  # order -> numbers of its trials not ended yet
        self._stopped: set[tuple] = set()  # orders whose trial the scheduler stopped (PRUNED)
        self._done: set[tuple] = set()  # orders with a COMPLETE trial
        self._proposals: dict[int, dict] = {}  # trial number -> the digits decided for it
        self._held_by: dict[int, tuple] = {}  # trial number -> its order, until the trial ends
        self._tight = False  # rejection gave up once (a tight or nearly exhausted space): draw from the list
        self._listed: list[tuple] | None = None  # every valid order, listed when first needed (not pickled)

    def __getstate__(self):
        return {**self.__dict__, "_listed": None}  # derived, and possibly large

    # ------------------------------------------------------------------ Optuna's sampler API
    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def before_trial(self, study, trial) -> None:
        """An enqueued trial (a seed point, the searcher's fallback) never asks for its digits: hold its order here."""
        fixed = trial.system_attrs.get("fixed_params")
        order = self._order_of(fixed) if fixed else None
        if order is not None:
            self._hold(order, trial.number)

    def sample_independent(self, study, trial, param_name, param_distribution):
        if not is_order_param(param_name):
            return self._hp.sample_independent(study, trial, param_name, param_distribution)
        params = self._proposals.get(trial.number)
        if params is None:
            order = self._draw()
            self._hold(order, trial.number)
            params = self._proposals[trial.number] = self.space.encode(list(order))
        if param_name in params:
            return params[param_name]
        return self._hp.sample_independent(study, trial, param_name, param_distribution)  # (not reached)

    def after_trial(self, study, trial, state, values) -> None:
        self._proposals.pop(trial.number, None)
        order = self._held_by.get(trial.number)
        order = self._order_of(trial.params) if order is None else order
        if order is None:
            return
        self._release(order, trial.number)  # (a failed trial's order is free again, unless another holds it)
        if state == TrialState.COMPLETE:
            self._done.add(order)
        elif state == TrialState.PRUNED:
            self._stopped.add(order)

    def reseed_rng(self) -> None:
        self._rng.seed(self._rng.getrandbits(64))
        self._hp.reseed_rng()

    # ------------------------------------------------------------------ bookkeeping
    def _order_of(self, params: dict) -> tuple | None:
        try:
            return tuple(self.space.decode(params))
        except (KeyError, IndexError, ZeroDivisionError, ValueError, TypeError):
            return None  # not an order's digits (a trial without them)

    def _hold(self, order: tuple, number: int) -> None:
        self._holders.setdefault(order, set()).add(number)
        self._held_by[number] = order

    def _release(self, order: tuple, number: int) -> None:
        self._held_by.pop(number, None)
        held = self._holders.get(order)
        if held is not None:
            held.discard(number)
            if not held:
                del self._holders[order]

    def tried(self, order: tuple) -> bool:
        return order in self._holders or order in self._done or order in self._stopped

    # ------------------------------------------------------------------ drawing
    def _draw(self) -> tuple:
        """A uniformly random valid untried order; when none is left, a stopped one, else any."""
        listable = self.space.length_cum_weights[-1] <= MAX_ENUMERATE
        order = None if self._tight else self._reject(REJECT_TRIES if listable else REJECT_TRIES_UNLISTED)
        if order is not None:
            return order
        listed = self._all()
        self._tight = listed is not None
        if listed is None:  # too many orders to list: a valid one by the constrained Lehmer map (maybe tried)
            return self._lehmer()
        for _ in range(REJECT_TRIES):  # uniform over the listed orders, kept when untried
            order = self._rng.choice(listed)
            if not self.tried(order):
                return order
        untried = [o for o in listed if not self.tried(o)]  # (few left: list them)
        if untried:
            return self._rng.choice(untried)
        stopped = [o for o in listed if o in self._stopped and o not in self._done and o not in self._holders]
        return self._rng.choice(stopped or listed)

    def _reject(self, tries: int) -> tuple | None:
        """Acceptance-rejection from uniform unconstrained orders (a length in proportion to its
        k-permutations, then a random permutation's first k tasks); None after ``tries`` misses (a tight
        or nearly exhausted space: the valid orders are drawn from a list from then on)."""
        return self.space.draw(self._rng, self.tried, tries)

    def _all(self) -> list[tuple] | None:
        """Every valid order (listed once, on demand), or None when there are too many to list."""
        if self._listed is None:
            if self.space.length_cum_weights[-1] > MAX_ENUMERATE:  # (unconstrained orders: a bound on the valid)
                return None
            self._listed = [tuple(o) for o in self.space.orders()]
        return self._listed

    def _lehmer(self) -> tuple:
        n, k = len(self.space.candidates), self._rng.choices(self.space.lengths, cum_weights=self.space.length_cum_weights)[0]
        digits = {f"l{i}": self._rng.randrange(n - i) for i in range(k)}
        return tuple(self.space.decode({"k": k, **digits}))
