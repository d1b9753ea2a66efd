"""What a surrogate sees of an order (and its hyperparameters): three groups of features, one kernel each.

* ``which``: membership, one 0/1 per candidate task (which tasks the chain trains on at all).
* ``where``: one-hot (task, depth from the end): the last stage is at depth 0. Later stages are
  forgotten less, so *where* a task sits matters apart from *whether* it is there.
* ``start`` (``from_start=True`` only): one-hot (task, position from the start): the first stage is at
  position 0. A probe of a prefix shares these with every order that begins with it; an effect that
  stays where its task was trained (a curriculum: the first stage shapes what the later ones learn)
  shows here, one that follows it to the end of the chain (forgetting) under ``where``.
* ``precedes``: one 0/1 per ordered pair of tasks (a, b): 1 if a comes before b in the order. For two
  orders of the same tasks the squared distance between these vectors is twice the number of
  discordant pairs, so an RBF kernel over them is the Mallows kernel, exp(-lambda * discordant pairs),
  as BOPS uses it for permutation spaces (Deshwal et al., "Bayesian optimization over permutation
  spaces", AAAI 2022); it is Jiao & Vert's Kendall embedding up to an affine map ("The Kendall and
  Mallows kernels for permutations", ICML 2015). For partial rankings (orders over different tasks)
  the pairs not both present are 0, and "a before b" and "b before a" are separate features, so a
  pair can pay off in either order (a co-occurrence) as well as in one (a precedence).
* ``prior``: with a transferability prior (search/transfer.py), its score of the order, scaled by
  ``prior_scale`` (one dimension: orders the prior rates alike are alike to the GP, as far as the
  fitted lengthscale says the data agrees).
* ``hparams``: the searched hyperparameters, each scaled to [0, 1] (log scale where searched so;
  one-hot for choices); per-stage ones (``stages.*.lr``) get one feature per task (the middle of the
  range where the task is absent).

>>> f = OrderFeatures(["a", "b", "c"], max_length=2)
>>> f.vector(["b", "a"], {}).tolist()
[1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

import math

import numpy as np

from search.config import hparam_names


class OrderFeatures:
    from_start = False  # (a class default: features pickled before the ``start`` group have no attribute)

    def __init__(self, tasks: list[str], max_length: int, hparams: dict | None = None, prior=None,
                 prior_scale: float = 1.0, from_start: bool = False):
        self.tasks, self.L = list(tasks), max(1, max_length)
        self.prior, self.prior_scale = prior, prior_scale or 1.0
        self.index = {t: i for i, t in enumerate(self.tasks)}
        n = len(self.tasks)
        self.pairs = [(a, b) for a in range(n) for b in range(n) if a != b]  # ordered pairs
        self.hp_names = self._hp_names(hparams or {})
        self.hparams = hparams or {}
        self.from_start = from_start
        sizes = {"which": n, "where": n * self.L, "start": n * self.L if from_start else 0, "precedes": len(self.pairs),
                 "prior": 1 if prior is not None else 0, "hparams": sum(w for _, _, w in self.hp_names)}
        self.groups: dict[str, list[int]] = {}
        at = 0
        for name, size in sizes.items():
            if size:
                self.groups[name] = list(range(at, at + size))
            at += size
        self.dim = at

    def _hp_names(self, hparams: dict) -> list[tuple[str, str, int]]:
        """(feature name, config key, width): a per-stage key expands to one name per task."""
        out = []
        for key, hp in hparams.items():
            width = len(hp.choice) if hp.choice is not None else 1
            names = hparam_names(key, self.tasks)
            out += [(name, key, width) for name in names]
        return out

    def vector(self, order: list[str], hp: dict) -> np.ndarray:
        return self.matrix([(order, hp)])[0]

    def matrix(self, configs: list[tuple[list[str], dict]]) -> np.ndarray:
        """One row per configuration, built with array operations (10^4 candidates per proposal)."""
        n, L, m = len(self.tasks), self.L, len(configs)
        X = np.zeros((m, self.dim))
        if not m:
            return X
        lens = np.array([len(o) for o, _ in configs])
        task = np.array([self.index[t] for o, _ in configs for t in o], dtype=int)
        row = np.repeat(np.arange(m), lens)
        stage = np.arange(len(task)) - np.repeat(np.cumsum(lens) - lens, lens)
        pos = np.full((m, n), -1)  # pos[r, j]: the stage index of task j in order r, -1 when absent
        depth = np.full((m, n), -1)  # stages after it (0 = the last stage)
        pos[row, task] = stage
        depth[row, task] = lens[row] - 1 - stage
        present = pos >= 0
        X[:, :n] = present
        rows, tasks = np.nonzero(present & (depth < L))
        X[rows, n + tasks * L + depth[rows, tasks]] = 1.0
        if self.from_start:
            rows, tasks = np.nonzero(present & (pos < L))
            X[rows, self.groups["start"][0] + tasks * L + pos[rows, tasks]] = 1.0
        if self.pairs:
            a, b = np.array(self.pairs).T
            both = present[:, a] & present[:, b]
            at = self.groups["precedes"][0]
            X[:, at:at + len(a)] = both & (pos[:, a] < pos[:, b])
        if self.prior is not None:
            X[:, self.groups["prior"][0]] = [self.prior.score(o) / self.prior_scale for o, _ in configs]
        if self.hp_names:
            for r, (_, hp) in enumerate(configs):
                at = self.groups["hparams"][0]
                for name, key, w in self.hp_names:
                    X[r, at:at + w] = self._scale(self.hparams[key], hp.get(name), w)
                    at += w
        return X

    @staticmethod
    def _scale(spec, value, width: int) -> np.ndarray:
        if spec.choice is not None:
            v = np.zeros(width)
            if value in spec.choice:
                v[spec.choice.index(value)] = 1.0
            return v
        if value is None:
            return np.array([0.5])
        lo, hi = spec.float if spec.float is not None else spec.int
        if spec.log:
            return np.array([(math.log(value) - math.log(lo)) / (math.log(hi) - math.log(lo))])
        return np.array([(value - lo) / (hi - lo)])
