"""``OrderBOSampler``: an Optuna sampler that knows what an order is, what it costs, and what probes say.

The surrogate is a Gaussian process fitted with BoTorch/GPyTorch (``MultiTaskGP``: per-fidelity means
and noise, an inter-fidelity correlation learned from the data) over ``features.OrderFeatures``: an
additive kernel of one RBF per feature group - which tasks (membership, one lengthscale per task),
where (task at depth from the end), which precedes which (Mallows kernel over the ordered pairs of a
partial ranking, as BOPS, Deshwal et al. AAAI 2022), and the searched hyperparameters (per dimension).
By default two such GPs are averaged by their evidence (surrogate.py): one over those features, one
that also sees each task's position from the *start* (``search.order_bo.from_start: average``), so the
data decides whether a task's effect follows it to the end of the chain or stays where it was trained.

* **Probes are evidence.** The probe after stage i of an order is a *low-fidelity observation of its
  prefix* (the encoder after those i stages, scored by a short target fine-tune): task 1 of the
  multi-task GP, finals are task 0. Orders that share or resemble the prefix learn from it as much
  as the fitted correlation says - early probes inform without deciding alone.
* **Cost-aware.** The acquisition is expected improvement per unit of expected cost (EI/cost, as in
  memoization-aware BO, EEIPU, arXiv 2411.03731): an order costs the prefix stages no trial has
  trained (the stage cache makes the others free) plus its final fine-tune, counted in stage-trainings
  (``cost: measured``: at the seconds trials have reported for each task; costs.py). A stopped
  order costs only what is left, so continuing it competes fairly with starting a new one.
* **Pending trials** (running, no final yet) enter as believers (their posterior mean, fixed
  hyperparameters; "kriging believer", Ginsbourger et al. 2010), so concurrent proposals differ.
* **Fast**: the posterior over the candidates is ``posterior.FinalPosterior`` (the model's exact
  mean and variance, computed for thousands of candidates at once).
* **Candidates**: every order of the space when it has at most ``max_candidates``; otherwise that
  many drawn at random plus the neighbours (swap, replace, insert, drop a task) of the best ones.
* **A prior** (``search.prior: transferability`` or ``search.prior_from``, search/transfer.py): the
  prior's score of an order is one more feature group of the GP, and until the GP is fitted (the first
  ``n_startup`` orders, or a fit that failed) the order proposed is the untried one the prior rates
  best, not a random one. A prior from several earlier searches (``PriorEnsemble``) is reweighed
  before each proposal by how well each ranks this search's completed orders.
* **Recommendation**: the order with the best posterior mean among those with a final score, with
  its 95% interval - not the best single observation, which the winner's curse biases upward.

* **Several objectives** (a study with several directions, ``search.metric: [mean, worst]``): ParEGO
  (Knowles, IEEE TEC 2006). At each proposal a weight vector is drawn from the simplex (seeded), each
  objective is scaled to [0, 1] over the finals observed (minimised ones flipped), and the GP above
  models their augmented Chebyshev scalarisation ``min_j w_j f_j + 0.05 sum_j w_j f_j``; its EI per cost
  picks the next order. Over many proposals the weights sweep the front, and every point of the front
  maximises the scalarisation for some weights. A multi-objective study holds no intermediate values,
  so probes do not enter, and there is no single recommendation (the search reports the front).

Optuna asks a sampler one parameter at a time; at a trial's first parameter this sampler decides the
whole configuration (Lehmer digits from ``OrderSpace.encode`` and the hyperparameters) and answers
every later parameter from it. The first ``n_startup`` orders are a cost-effective start-up design
(``startup: cover``): each covers the most tasks and (task, depth) cells no earlier order showed, per
unit of cost, so the GP's first fit has seen every task, mostly on cached prefixes (``random``: drawn
at random, seeded).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.samplers import BaseSampler
from optuna.trial import TrialState

from search.config import hparam_names
from search.searchers.costs import CostModel, Seconds
from search.searchers.features import OrderFeatures
from search.searchers import surrogate
from search.searchers.surrogate import CHOLESKY_UP_TO, Averaged, Surrogate
from search.space import OrderSpace, is_order_param

UNEXPLORED_DRAWS = 4000  # joint posterior draws behind "could an order the search never finished beat its pick?"
UNEXPLORED_MAX = 300  # ... over the unfinished orders most likely to (the rest add nothing visible)


@dataclass
class Observations:
    """What the study knows, as (order, hparams) configurations."""

    finals: list[tuple[list[str], dict, float]] = field(default_factory=list)
    probes: list[tuple[list[str], dict, float]] = field(default_factory=list)  # (prefix, hparams, probe score)
    done: set[str] = field(default_factory=set)  # configs with a final score
    pending: list[tuple[list[str], dict]] = field(default_factory=list)
    stopped: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)  # configs a trial errored on (not proposed again)
    trained: set[str] = field(default_factory=set)  # prefix keys trained (or being trained) by some trial
    seconds: Seconds = field(default_factory=Seconds)  # what trials reported their stages and the rest cost


def _hp_key(hp: dict) -> str:
    return repr(sorted(hp.items())) if hp else ""


def config_key(order: list[str], hp: dict) -> tuple:
    return tuple(order), _hp_key(hp)


class OrderBOSampler(BaseSampler):
    def __init__(self, space: OrderSpace, hparams: dict | None = None, *, seed: int = 0, n_startup: int = 2,
                 max_candidates: int = 10_000, cost_aware: bool = True, use_probes: bool = True, fit_iters: int = 40,
                 propose_stopped: bool = True, prior=None, startup: str = "cover", final_cost: float = 1.0,
                 cost: str = "stages", from_start: str = "average", cached: bool = True):
        self.space, self.hparams = space, dict(hparams or {})
        self.prior = prior  # search.transfer.OrderPrior or None
        # the surrogate(s): the default features, and/or the same plus positions from the start (averaged)
        scale = _prior_scale(prior, space)
        enumerate_orders = space.orders if _enumerable(space, self.hparams, max_candidates) else None
        self.surrogates = [
            Surrogate(OrderFeatures(space.candidates, max(space.lengths), self.hparams, prior=prior, prior_scale=scale,
                                    from_start=start), seed=seed, fit_iters=fit_iters, use_probes=use_probes,
                      enumerate_orders=enumerate_orders)
            for start in {"never": [False], "always": [True], "average": [False, True]}[from_start]]
        self.seed, self.n_startup, self.max_candidates = seed, n_startup, max_candidates
        self.cost_aware, self.use_probes, self.fit_iters = cost_aware, use_probes, fit_iters
        self.startup = startup  # the first n_startup orders: "cover" (coverage per cost) or "random"
        self.propose_stopped = propose_stopped  # False when the search answers a stopped order as stopped
        self.final_cost = final_cost  # a trial's final fine-tune(s), in stage-trainings (one per target)
        self.cost_unit = cost  # "stages": stage-trainings; "measured": the seconds trials report (costs.py)
        self.cached = cached  # False (search.cache.enabled: false): every trial trains all its stages
        self._rng = np.random.default_rng(seed)
        self._proposals: dict[int, dict] = {}  # Optuna trial number -> the configuration decided for it
        self._decoded: dict = {}  # trial params -> (order, hparams) (not pickled)
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        self.last_recommendation: dict | None = None
        _import_botorch()

    def __setstate__(self, state):
        # (pickled before start-up designs, or before a final could cost more than one stage-training)
        # (and before costs were measured: those count stages)
        # (and before surrogates were averaged: one GP, its state in the sampler)
        if "surrogates" not in state:
            state = _one_surrogate(state)
        self.__dict__.update({"_decoded": {}, "startup": "random", "final_cost": 1.0, "cost_unit": "stages", "cached": True,
                              **state})
        _import_botorch()

    def __getstate__(self):
        return {**self.__dict__, "_decoded": {}}  # rebuilt on demand: large and derived

    @property
    def features(self) -> OrderFeatures:
        """The default surrogate's features (the first)."""
        return self.surrogates[0].features

    def surrogate_weights(self) -> dict[str, float] | None:
        """Each surrogate's weight in the average at the last fit, by its feature set (``from_end``,
        ``from_start``); None with one surrogate or before a fit."""
        if len(self.surrogates) < 2 or any(s.evidence is None for s in self.surrogates):
            return None
        w = surrogate.weights([s.evidence for s in self.surrogates])
        return {("from_start" if s.features.from_start else "from_end"): round(float(x), 4)
                for s, x in zip(self.surrogates, w)}

    # ------------------------------------------------------------------ Optuna's sampler API
    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        params = self._proposals.get(trial.number)
        if params is None:
            with _one_thread():
                params = self._proposals[trial.number] = self._propose(study)
        if param_name in params:
            value = params[param_name]
            try:
                if param_distribution._contains(param_distribution.to_internal_repr(value)):
                    return value
            except Exception:
                pass
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._proposals.pop(trial.number, None)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng(self._rng.integers(2**32))
        self._fallback.reseed_rng()

    # ------------------------------------------------------------------ what the study knows
    def observations(self, study, scalarise=None) -> Observations:
        """The study as configurations; ``scalarise`` turns a multi-objective trial's values into one."""
        obs, seen_f, seen_p, ran = Observations(), set(), set(), set()
        for t in study.get_trials(deepcopy=False):
            if not t.params:
                continue
            decoded = self._decode(t.params)
            if decoded is None:
                continue  # a trial still being asked: its digits are not all there
            order, hp = decoded
            key = config_key(order, hp)
            # (before an error too: the stages an errored trial finished are in the stage cache, their probes measured)
            for step, v in t.intermediate_values.items():
                if 1 <= step <= len(order):
                    prefix = order[:step]
                    obs.trained.add(config_key(prefix, self._prefix_hp(prefix, hp, stages_only=True)))
                    ph = self._prefix_hp(prefix, hp)  # (the probe: its stages' hparams and the target's)
                    pk = config_key(prefix, ph)
                    if (pk, v) not in seen_p and math.isfinite(v):  # (a NaN probe: no evidence, the GP fails on it)
                        seen_p.add((pk, v))
                        obs.probes.append((prefix, ph, float(v)))
            if t.state == TrialState.FAIL or not all(map(math.isfinite, t.values or ())):
                # errored, or a repeat of a running one (told FAIL: no score yet); or a final Optuna kept that is
                # no score (inf: the GP's fit fails on it, and it would be the best): not proposed again either
                obs.failed.add(key)
                continue
            ran.add(key)
            obs.seconds.add_trial(order, t.user_attrs)
            value = None if t.values is None else (scalarise(t.values) if scalarise else t.values[0])
            if t.state == TrialState.COMPLETE and value is not None and (key, value) not in seen_f:
                seen_f.add((key, value))  # a repeat answered by the searcher carries the same value: once
                obs.finals.append((order, hp, float(value)))
                obs.done.add(key)
            if t.state in (TrialState.RUNNING, TrialState.COMPLETE):
                # every stage is trained or being trained (known from probes too, but a multi-objective study has none)
                obs.trained.update(config_key(order[:i], self._prefix_hp(order[:i], hp, stages_only=True))
                                   for i in range(1, len(order) + 1))
            if t.state == TrialState.RUNNING:
                obs.pending.append((order, hp))
            elif t.state == TrialState.PRUNED:
                obs.stopped.add(key)
        obs.failed -= ran  # a repeat's FAIL is no failure of its configuration (a stopped one may continue)
        return obs

    def _decode(self, params: dict) -> tuple[list[str], dict] | None:
        """A trial's (order, hyperparameters), remembered: the study is read at every proposal."""
        key = tuple(sorted(params.items(), key=lambda kv: kv[0]))
        if key not in self._decoded:
            try:
                order = self.space.decode(params)
            except (KeyError, IndexError, ZeroDivisionError):
                return None
            self._decoded[key] = (order, {k: v for k, v in params.items() if not is_order_param(k)})
        return self._decoded[key]

    def _prefix_hp(self, prefix: list[str], hp: dict, stages_only: bool = False) -> dict:
        """An order's hyperparameters as its prefix ``prefix`` has them: without the per-stage ones
        (``stages.*.X``) of tasks not in it (stages it did not train: the features say such a task is
        absent). ``stages_only``: also without the target fine-tune's (``finetune.*``), which the probe
        uses but the stage cache does not key a prefix's encoder on (itt/cache.py ``stage_keys``: each
        stage's resolved ``train`` + ``stages.<task>``), so a prefix trained with other ones is cached."""
        if not hp:
            return hp
        absent = lambda k: k.startswith("stages.") and k.split(".")[1] not in prefix  # noqa: E731 (stages.<task>.X)
        return {k: v for k, v in hp.items() if not absent(k) and not (stages_only and k.startswith("finetune."))}

    def costs(self, obs: Observations | None = None) -> CostModel:
        """The cost of a stage of each task and of a trial's fixed part (costs.py: ``cost`` = measured or stages)."""
        return CostModel(self.cost_unit, self.final_cost, obs.seconds if obs is not None else None)

    def cost(self, order: list[str], hp: dict, trained: set[tuple], costs: CostModel | None = None) -> float:
        """What this configuration would cost now, in stages: its untrained prefix stages + the fixed part
        (the final fine-tune per target, data, evaluation)."""
        costs = costs or self.costs()
        trained = trained if self.cached else set()  # (no stage cache: no prefix is free)
        stages = tuple(order)
        return sum(costs.stage(stages[i - 1]) for i in range(1, len(stages) + 1)
                   if (stages[:i], _hp_key(self._prefix_hp(order[:i], hp, stages_only=True))) not in trained) + costs.fixed

    # ------------------------------------------------------------------ one proposal
    def parego(self, study):
        """A random augmented-Chebyshev scalarisation of a multi-objective study's values (ParEGO), or
        None for a single objective. Weights from the sampler's seeded generator."""
        dirs = study.directions
        if len(dirs) < 2:
            return None
        w = self._rng.dirichlet(np.ones(len(dirs)))
        sign = np.array([1.0 if d == optuna.study.StudyDirection.MAXIMIZE else -1.0 for d in dirs])
        done = np.array([t.values for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                         if t.values is not None and all(map(math.isfinite, t.values))],
                        dtype=float).reshape(-1, len(dirs)) * sign
        lo, hi = (done.min(0), done.max(0)) if len(done) else (np.zeros(len(dirs)), np.ones(len(dirs)))
        span = np.where(hi > lo, hi - lo, 1.0)

        def scalarise(values) -> float:
            f = (np.asarray(values, float) * sign - lo) / span
            return float(np.min(w * f) + 0.05 * np.sum(w * f))

        return scalarise

    def _propose(self, study) -> dict:
        scalarise = self.parego(study)
        obs = self.observations(study, scalarise)
        self._reweigh_prior(study, obs if scalarise is None else None)
        cands = self._candidates(obs)
        busy = (obs.done | obs.failed | {config_key(o, h) for o, h in obs.pending}
                | (set() if self.propose_stopped else obs.stopped))
        free = [c for c in cands if config_key(*c) not in busy] or cands
        distinct = {config_key(o, h) for o, h, _ in obs.finals} | {config_key(o, h) for o, h in obs.pending} | obs.stopped
        # the first orders, or a fit that failed (degenerate data): a random untried configuration
        posterior = None if len(distinct) < self.n_startup or not obs.finals else self._posterior(obs)
        if posterior is None:
            if self.prior is not None:  # the prior's best untried configuration (first in candidate order on ties)
                at = getattr(self.prior, "start_score", None)  # several earlier searches: each proposes in turn
                score = (lambda o: at(o, len(distinct))) if at is not None else self.prior.score
                order, hp = free[int(np.argmax([score(o) for o, _ in free]))]
            elif self.startup == "cover":
                order, hp = self._covering(free, obs)
            else:
                order, hp = free[int(self._rng.integers(len(free)))]
            return self._params(order, hp)
        observed = self._observed_configs(obs)
        mu, sd = posterior(observed + free)
        rec = self._recommendation(observed, mu[:len(observed)], sd[:len(observed)], obs)
        if scalarise is None:  # (a scalarisation's best is no recommendation)
            self.last_recommendation = rec
        mu, sd = mu[len(observed):], sd[len(observed):]
        order, hp = free[int(np.argmax(self._acquisition(mu, sd, rec["mean"], free, obs)))]
        return self._params(order, hp)

    def _acquisition(self, mu, sd, best: float, free: list, obs: Observations) -> np.ndarray:
        """log EI over the best posterior mean among observed configurations, per unit of cost."""
        score = log_ei(mu, sd, best)
        if self.cost_aware:
            costs = self.costs(obs)
            score = score - np.log([self.cost(o, h, obs.trained, costs) for o, h in free])
        return score

    def _covering(self, free: list, obs: Observations) -> tuple[list[str], dict]:
        """A start-up configuration that covers the most of what no order tried so far has shown, per
        unit of cost: new tasks plus new (task, depth from the end) cells, divided by the stage-trainings
        it would cost (a cost-effective initial design, as CArBO's, Lee et al. 2020, with coverage as
        the value). The first order is a random one; the next ones bring the tasks not seen yet, on the
        cached prefixes where they can. Ties are broken at random (seeded)."""
        def cells(o) -> set:  # (task, depth from the end)
            return {(t, len(o) - 1 - i) for i, t in enumerate(o)}

        seen = [o for o, _, _ in obs.finals] + [o for o, _ in obs.pending] + [list(k[0]) for k in obs.stopped]
        seen_tasks, seen_cells = {t for o in seen for t in o}, set().union(*map(cells, seen))
        gain = np.array([len(set(o) - seen_tasks) + len(cells(o) - seen_cells) for o, _ in free], dtype=float)
        costs = self.costs(obs)
        cost = np.array([self.cost(o, h, obs.trained, costs) for o, h in free], dtype=float)
        score = gain / cost
        best = np.flatnonzero(score >= score.max() - 1e-12)
        return free[int(best[self._rng.integers(len(best))])]

    def _params(self, order: list[str], hp: dict) -> dict:
        return {**self.space.encode(order), **hp}  # (encode gives "k" too where the length is searched)

    # ------------------------------------------------------------------ candidates
    def _candidates(self, obs: Observations) -> list[tuple[list[str], dict]]:
        orders = self._orders(obs)
        if not self.hparams:
            return [(o, {}) for o in orders]
        best_hp = max(obs.finals, key=lambda f: f[2])[1] if obs.finals else None
        out = [(o, self._random_hp(o)) for o in orders]
        if best_hp is not None:
            out += [(o, self._fit_hp(best_hp, o)) for o in orders]
        return out

    def _orders(self, obs: Observations) -> list[list[str]]:
        if self.space.count() <= self.max_candidates:
            return [list(o) for o in self.space.orders()]
        index = {t: i for i, t in enumerate(self.space.candidates)}
        seen: set[tuple] = set()
        out: list[list[str]] = []
        ranked = sorted(obs.finals, key=lambda f: -f[2])[:5]
        for o, _, _ in ranked:
            for nb in self._neighbours(o):
                if tuple(index[t] for t in nb) not in seen and self.space.is_valid(nb):
                    seen.add(tuple(index[t] for t in nb))
                    out.append(nb)
        tasks = self.space.candidates
        for _ in range(20):  # (a bound: a constrained space may hold fewer)
            for o in self._random_orders(self.max_candidates):
                if len(out) >= self.max_candidates:
                    return out
                if o not in seen:
                    seen.add(o)
                    out.append([tasks[i] for i in o])
        return out

    def _random_orders(self, m: int) -> list[tuple[int, ...]]:
        """``m`` random orders (seeded, as tuples of candidate indices), drawn as arrays."""
        n, lengths = len(self.space.candidates), self.space.possible_lengths  # (a constraint may leave a length none)
        ks = self._rng.choice(lengths, size=m).tolist()
        if not self.space.constrained:
            # without constraints a random order is a prefix of a random permutation
            perms = np.argsort(self._rng.random((m, n)), axis=1).tolist()
            return [tuple(p[:k]) for p, k in zip(perms, ks)]
        # the constrained Lehmer decoding keeps every sample valid
        index = {t: i for i, t in enumerate(self.space.candidates)}
        digits = (self._rng.random((m, max(lengths))) * (n - np.arange(max(lengths)))).astype(int)
        rows = [{"k": k, **{f"l{i}": int(d) for i, d in enumerate(row)}} for k, row in zip(ks, digits)]
        return [tuple(index[t] for t in order) for order in self.space.decode_many(rows)]

    def _neighbours(self, order: list[str]) -> list[list[str]]:
        out = [order[:i] + [order[i + 1], order[i]] + order[i + 2:] for i in range(len(order) - 1)]  # swaps
        rest = [t for t in self.space.candidates if t not in order]
        out += [order[:i] + [t] + order[i + 1:] for i in range(len(order)) for t in rest]  # replace one
        out += [order[:i] + [t] + order[i:] for i in range(len(order) + 1) for t in rest]  # insert one
        out += [order[:i] + order[i + 1:] for i in range(len(order))]  # drop one
        return out

    def _random_hp(self, order: list[str]) -> dict:
        out = {}
        for key, spec in self.hparams.items():
            for name in hparam_names(key, order):
                if spec.choice is not None:
                    out[name] = spec.choice[int(self._rng.integers(len(spec.choice)))]
                elif spec.int is not None and spec.log:  # as Optuna: log-uniform over [low - 0.5, high + 0.5]
                    lo, hi = spec.int
                    x = math.exp(self._rng.uniform(math.log(lo - 0.5), math.log(hi + 0.5)))
                    out[name] = min(max(int(round(x)), lo), hi)
                elif spec.int is not None:
                    out[name] = int(self._rng.integers(spec.int[0], spec.int[1] + 1))
                elif spec.log:
                    out[name] = float(math.exp(self._rng.uniform(math.log(spec.float[0]), math.log(spec.float[1]))))
                else:
                    out[name] = float(self._rng.uniform(*spec.float))
        return out

    def _fit_hp(self, hp: dict, order: list[str]) -> dict:
        """The incumbent's hyperparameters, carried over to another order (per-stage ones by task)."""
        out = self._random_hp(order)
        out.update({k: v for k, v in hp.items() if k in out})
        return out

    # ------------------------------------------------------------------ the surrogate
    def _posterior(self, obs: Observations, pending: bool = True) -> Averaged | None:
        """Every surrogate fitted on ``obs`` (surrogate.py), their posteriors averaged by evidence, the
        pending configurations as believers; None when no fit succeeds (degenerate data)."""
        refit = any(s.due(obs) for s in self.surrogates)  # (together: their evidence on the same data)
        fitted = [(s, s.fit(obs, refit)) for s in self.surrogates]
        return Averaged.of(fitted, obs.pending if pending else [])

    @staticmethod
    def _observed_configs(obs: Observations) -> list[tuple[list[str], dict]]:
        configs, keys = [], set()
        for o, h, _ in obs.finals:
            if config_key(o, h) not in keys:
                keys.add(config_key(o, h))
                configs.append((o, h))
        return configs

    def _reweigh_prior(self, study, obs: Observations | None = None) -> None:
        """A prior from several earlier searches (search.transfer.PriorEnsemble) follows the ones that rank
        this search's completed orders best. It predicts their score, the first objective, so with several
        objectives its sources are weighed on that (``obs``: the study's observations when unscalarised)."""
        if hasattr(self.prior, "observe"):
            obs = obs if obs is not None else self.observations(study)
            self.prior.observe([(o, y) for o, _, y in obs.finals], self.seed)

    @staticmethod
    def _recommendation(configs, mu, sd, obs: Observations) -> dict:
        """The observed configuration with the best posterior mean, with its 95% interval."""
        i = int(np.argmax(mu))
        o, h = configs[i]
        observed = [y for oo, hh, y in obs.finals if config_key(oo, hh) == config_key(o, h)]
        return {"order": ">".join(o), "hparams": h, "mean": float(mu[i]), "lo": float(mu[i] - 1.96 * sd[i]),
                "hi": float(mu[i] + 1.96 * sd[i]), "observed": float(np.mean(observed)), "n_finals": len(obs.finals)}

    def recommend(self, study) -> dict | None:
        """The configuration the model rates best among those with a final score (posterior mean and
        95% interval of its score), fitted on everything the study holds; None before any final, and
        with several objectives (the search reports their Pareto front instead)."""
        if len(study.directions) > 1:
            return None
        obs = self.observations(study)
        if not obs.finals:
            return None
        self._reweigh_prior(study, obs)
        with _one_thread():
            posterior = self._posterior(obs, pending=False)
        if posterior is None:
            o, h, y = max(obs.finals, key=lambda f: f[2])
            return {"order": ">".join(o), "hparams": h, "mean": y, "lo": None, "hi": None, "observed": y,
                    "n_finals": len(obs.finals)}
        configs = self._observed_configs(obs)
        mu, sd = posterior(configs)
        rec = self._recommendation(configs, mu, sd, obs)
        rec["unexplored"] = self.unexplored(posterior, obs, configs[int(np.argmax(mu))])
        positions = self.surrogate_weights()  # which positions explain the scores better (surrogate.py)
        if positions is not None:
            rec["positions"] = positions
        self.last_recommendation = rec
        return rec

    def unexplored(self, posterior: Averaged, obs: "Observations", pick: tuple) -> dict | None:
        """Could an order the search never finished beat its pick? Under the surrogate's joint posterior of
        the true final scores (the GP over order features: orders with tasks in common move together), the
        probability that the best unfinished order scores above the pick, and the expected gain of that
        best over the pick, E[max(0, max_j f_j - f_pick)]: the question behind stopping a Bayesian
        optimisation (the regret bound of Makarova et al., "Automatic termination for hyperparameter
        optimization", AutoML 2022, asks it of the optimum's upper confidence bound). Monte Carlo over
        ``UNEXPLORED_DRAWS`` seeded draws of the pick and the ``UNEXPLORED_MAX`` unfinished orders most
        likely to beat it (each alone). None where "every unfinished configuration" is no finite set
        (searched hyperparameters, a space too large to enumerate)."""
        if not _enumerable(self.space, self.hparams, self.max_candidates):
            return None
        done = {config_key(o, h) for o, h, _ in obs.finals}
        left = [(list(o), {}) for o in self.space.orders() if config_key(list(o), {}) not in done]
        out = {"orders": len(left), "of": self.space.count(), "draws": UNEXPLORED_DRAWS}
        if not left:
            return {**out, "p_better": 0.0, "expected_gain": 0.0}
        mu, sd = posterior(left)
        (pmu,), (psd,) = posterior([pick])
        keep = np.argsort(-(mu - pmu) / np.sqrt(sd ** 2 + psd ** 2), kind="stable")[:UNEXPLORED_MAX]
        likely = [left[i] for i in keep]
        draws, pair = posterior.rivals(pick, likely, UNEXPLORED_DRAWS, np.random.default_rng(self.seed))
        gain = draws[:, 1:].max(axis=1) - draws[:, 0]
        j = int(np.argmax(pair))
        return {**out, "considered": len(keep), "p_better": float((gain > 0).mean()),
                "expected_gain": float(np.clip(gain, 0.0, None).mean()), "most_likely": ">".join(left[keep[j]][0]),
                "p_most_likely": float(pair[j])}


def _prior_scale(prior, space: OrderSpace) -> float:
    """The spread (sd) of the prior's scores over the space (``OrderSpace.sample``), so the prior feature
    has about unit scale whatever its units."""
    if prior is None:
        return 1.0
    sd = float(np.std([prior.score(o) for o in space.sample()]))
    return sd if sd > 1e-12 else 1.0


def _enumerable(space: OrderSpace, hparams: dict | None, max_candidates: int) -> bool:
    """Whether the candidates are every order of the space (no searched hyperparameters, at most
    ``max_candidates`` orders): scored whole, their features computed once, "every unfinished one" finite."""
    return not hparams and space.count() <= max_candidates


def _one_surrogate(state: dict) -> dict:
    """A sampler pickled before surrogates were averaged (its one GP's state in the sampler) as one that
    goes on with that GP alone: a resumed search proposes as it did."""
    state = dict(state)
    s = Surrogate(state.pop("features"), seed=state["seed"], fit_iters=state.get("fit_iters", 40),
                  use_probes=state.get("use_probes", True),
                  enumerate_orders=(state["space"].orders
                                    if _enumerable(state["space"], state.get("hparams"), state["max_candidates"]) else None))
    s.warm, s.fitted_at = state.pop("_warm", None), state.pop("_fitted_at", 0)
    state.pop("_cands", None)
    return {**state, "surrogates": [s]}


@contextlib.contextmanager
def _one_thread():
    """Small matrices: torch's threads only add overhead (and the driver shares its cores with trials)."""
    import torch

    import gpytorch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with gpytorch.settings.max_cholesky_size(CHOLESKY_UP_TO):
            yield
    finally:
        torch.set_num_threads(threads)


def _import_botorch() -> None:
    """BoTorch takes seconds to import: once when the sampler is built, not inside the first proposal
    (Ray warns about a define-by-run function that takes over a second)."""
    import botorch.fit  # noqa: F401
    import botorch.models  # noqa: F401


def log_ei(mu: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """log of expected improvement over ``best`` (maximisation), stable far in the tail (LogEI, Ament et
    al., NeurIPS 2023: log h(z) with h(z) = phi(z) + z Phi(z), asymptotic where it underflows)."""
    from scipy.special import erfcx
    from scipy.stats import norm

    z = (mu - best) / sd
    out = np.empty_like(z)
    ok = z > -6
    out[ok] = np.log(np.maximum(norm.pdf(z[ok]) + z[ok] * norm.cdf(z[ok]), 1e-300))
    mid = ~ok & (z > -1e3)  # h(z) = phi(z) (1 + z Phi(z) / phi(z)), Mills' ratio Phi/phi through erfcx (exact)
    zm = z[mid]
    out[mid] = norm.logpdf(zm) + np.log1p(zm * math.sqrt(math.pi / 2) * erfcx(-zm / math.sqrt(2)))
    far = z <= -1e3  # h(z) ~ phi(z) / z^2 (1 - 3 / z^2) for z -> -inf (next term 15 / z^4: < 2e-11)
    zt = z[far]
    out[far] = norm.logpdf(zt) - 2 * np.log(-zt) + np.log1p(-3 / zt**2)
    return out + np.log(sd)
