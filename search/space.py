"""The order space: orders of k of n candidate tasks, with optional constraints, for Optuna.

Optuna has no permutation distribution, so an order is a Lehmer code: position ``i`` picks digit
``l{i}`` in ``[0, n-1-i]`` (a categorical parameter) among the tasks still unused. With constraints (a task that must be
included, A before B, a fixed last task) the digit indexes the *feasible* choices at that position
(those that still admit a valid completion), wrapping around modulo their number. So every sample is
a valid order, every valid order is reached (by digits below the feasible count), and without
constraints the map is the plain Lehmer bijection. The space is a pure function of the Optuna trial
(test it with ``optuna.trial.FixedTrial``); ``suggest`` lives at module level so Ray can pickle the
searcher for resume.

>>> s = OrderSpace(candidates=["a", "b", "c"], lengths=[2])
>>> s.count(), s.decode({"k": 2, "l0": 2, "l1": 0})
(6, ['c', 'a'])
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

from itt.errors import ConfigError

MAX_ENUMERATE = 2_000_000  # beyond this an exhaustive listing is refused (and counting is by formula)


@dataclass(frozen=True)
class OrderSpace:
    candidates: list[str]
    lengths: list[int]  # allowed order lengths, ascending; 0 = the F baseline
    include: list[str] = field(default_factory=list)  # tasks every order must contain
    before: list[tuple[str, str]] = field(default_factory=list)  # (a, b): a precedes b when both appear
    last: str | None = None  # every non-empty order ends with this task

    # ------------------------------------------------------------------ validity
    @property
    def constrained(self) -> bool:
        """Whether an include, before or last constraint narrows the orders of k of n tasks."""
        return bool(self.include or self.before or self.last)

    def problems(self) -> list[str]:
        n, out = len(self.candidates), []
        if not self.candidates:
            out.append("no candidate tasks")
        if len(set(self.candidates)) != n:
            out.append("a candidate task is listed twice")
        for k in self.lengths:
            if k < 0 or k > n:
                out.append(f"order length {k} is impossible with {n} candidate task(s)")
        for t in [*self.include, *(x for p in self.before for x in p), *([self.last] if self.last else [])]:
            if t not in self.candidates:
                out.append(f"constraint names '{t}', which is not a candidate")
        if len(set(self.include)) != len(self.include):
            out.append("include: a task is listed twice")
        for a, b in self.before:  # (a task cannot precede itself: every order holding it was left out, silently)
            if a == b:
                out.append(f"before: '{a}' before itself would leave '{a}' out of every order; name two different tasks")
        return out

    def is_valid(self, order: list[str]) -> bool:
        if len(order) not in self.lengths or len(set(order)) != len(order) or any(t not in self.candidates for t in order):
            return False
        if order and any(t not in order for t in self.include):
            return False
        if not order and self.include:
            return False
        if self.last and order and order[-1] != self.last:
            return False
        pos = {t: i for i, t in enumerate(order)}
        return all(pos[a] < pos[b] for a, b in self.before if a in pos and b in pos)

    def _completable(self, prefix: list[str], k: int) -> bool:
        """Does some valid order of length k start with ``prefix``? (small k: a direct check)"""
        rest = [t for t in self.candidates if t not in prefix]
        need = k - len(prefix)
        missing = [t for t in self.include if t not in prefix]
        if len(missing) > need:
            return False
        pos = {t: i for i, t in enumerate(prefix)}
        for a, b in self.before:
            if b in pos and a in pos and pos[a] > pos[b]:
                return False
            if b in pos and a not in pos and a in self.include:
                return False  # a must still come, but b is already placed
        if self.last:
            if self.last in prefix[:-1] or (len(prefix) == k and k and prefix[-1] != self.last):
                return False
            if len(prefix) < k and self.last in prefix:
                return False
        if need == 0:
            return self.is_valid(prefix)
        # exact check for the remainder (orders are short; the feasible set is small)
        for tail in itertools.permutations(rest, need):
            if self.is_valid(prefix + list(tail)):
                return True
        return False

    def feasible(self, prefix: list[str], k: int) -> list[str]:
        """Tasks that may come next after ``prefix`` in some valid order of length k (candidate order)."""
        if not self.constrained:  # any task not used yet
            return [t for t in self.candidates if t not in prefix] if len(prefix) < k else []
        return [t for t in self.candidates if t not in prefix and self._completable(prefix + [t], k)]

    # ------------------------------------------------------------------ encode / decode
    def decode(self, params: dict) -> list[str]:
        return self.decode_many([params])[0]

    def decode_many(self, rows: list[dict]) -> list[list[str]]:
        """``decode`` of many parameter sets at once: the feasible tasks after each prefix are computed once
        (with constraints each is a completability check per task; 10^4 candidate orders took 5 s)."""
        memo: dict[tuple, list[str]] = {}
        out = []
        for params in rows:
            k, order = int(params.get("k", self.lengths[0])), ()
            for i in range(k):
                choices = memo.get((order, k))
                if choices is None:
                    choices = memo[(order, k)] = self.feasible(list(order), k)
                order += (choices[int(params[f"l{i}"]) % len(choices)],)
            out.append(list(order))
        return out

    def encode(self, order: list[str]) -> dict:
        """Canonical parameters of a valid order (for Optuna ``points_to_evaluate``)."""
        if not self.is_valid(order):
            raise ConfigError(f"order {'>'.join(order) or '(empty)'} is not in the search space")
        params: dict = {"k": len(order)} if len(self.lengths) > 1 else {}
        for i, t in enumerate(order):
            params[f"l{i}"] = self.feasible(order[:i], len(order)).index(t)
        return params

    def suggest(self, trial) -> list[str]:
        """Define-by-run: sample an order through an Optuna trial (fixed ranges per parameter)."""
        n = len(self.candidates)
        # (only the lengths that hold a valid order: under a constraint another has no task to pick, or gives F
        # where the space refuses it; "k" stays a parameter wherever the config gives several lengths, as encode)
        k = trial.suggest_categorical("k", self.possible_lengths) if len(self.lengths) > 1 else self.lengths[0]
        # categorical, not int: a digit names a task among those left, it has no order or distance
        # (TPE's int kernel would smooth between neighbouring task indices)
        digits = {f"l{i}": trial.suggest_categorical(f"l{i}", list(range(n - i))) for i in range(k)}
        return self.decode({"k": k, **digits})

    # ------------------------------------------------------------------ listing
    def count(self) -> int:
        return self._count

    @functools.cached_property
    def _count(self) -> int:  # (a constrained space is listed to count it: once per space)
        if not self.constrained:
            n = len(self.candidates)
            return sum(math.perm(n, k) for k in self.lengths)
        return sum(1 for _ in self.orders())

    @functools.cached_property
    def possible_lengths(self) -> list[int]:
        """The lengths that hold a valid order: a constraint can leave none at some (F with an include; a
        length below the number of included tasks), where a Lehmer decoding has no task to pick."""
        if not self.constrained:
            return list(self.lengths)
        return [k for k in self.lengths if (self.feasible([], k) if k else self.is_valid([]))]

    @functools.cached_property
    def length_cum_weights(self) -> list[int]:
        """Cumulative unconstrained orders per length (k-permutations of n): a uniform random order picks
        its length by these; the last is the number of unconstrained orders."""
        return list(itertools.accumulate(math.perm(len(self.candidates), k) for k in self.lengths))

    def draw(self, rng, taken, tries: int) -> tuple | None:
        """A uniformly random valid order for which ``taken(order)`` is false, by acceptance-rejection
        from uniform unconstrained orders (a length in proportion to its k-permutations, then a random
        permutation's first k tasks: exactly uniform over the valid untaken orders); None after ``tries``
        misses (a tight or nearly exhausted space). ``rng``: a ``random.Random``."""
        for _ in range(tries):
            k = rng.choices(self.lengths, cum_weights=self.length_cum_weights)[0]
            order = tuple(rng.sample(self.candidates, k))
            if not taken(order) and self.is_valid(list(order)):
                return order
        return None

    def orders(self):
        """Every valid order, each exactly once (lengths ascending, then candidate order)."""
        n = len(self.candidates)
        if sum(math.perm(n, k) for k in self.lengths) > MAX_ENUMERATE:
            raise ConfigError(f"the order space is too large to list (> {MAX_ENUMERATE:,} orders)")
        for k in self.lengths:
            for perm in itertools.permutations(self.candidates, k):
                if self.is_valid(list(perm)):
                    yield list(perm)

    def sample(self, n: int = 2000) -> list[list[str]]:
        """Every order when there are at most ``n``, else ``n`` seeded draws (seed 0: the same sample
        every time), e.g. to put a prior's scores on a common scale."""
        import numpy as np

        if self.count() <= n:
            return list(itertools.islice(self.orders(), n))
        rng = np.random.default_rng(0)
        return self.decode_many([{"k": int(rng.choice(self.possible_lengths)),
                                  **{f"l{i}": int(rng.integers(len(self.candidates) - i)) for i in range(max(self.lengths))}}
                                 for _ in range(n)])


def is_order_param(name: str) -> bool:
    """Whether a trial parameter is one of the order's digits (``k``, ``l0``, ``l1``, ...) rather than a
    hyperparameter."""
    return name == "k" or (name[:1] == "l" and name[1:].isdigit())


def order_key(order: list[str]) -> str:
    """Orders as text: task names joined by '>', empty for the F baseline."""
    return ">".join(order)


def order_tasks(key: str | None) -> list[str]:
    """The inverse of :func:`order_key`: an order's text back to its tasks ('' or None: F, [])."""
    return [t for t in (key or "").split(">") if t]


def task_set(key: str) -> str:
    """The tasks of an order regardless of their arrangement ('b>a' and 'a>b' share 'a>b')."""
    return order_key(sorted(order_tasks(key)))
