"""The ``search:`` block of a config: the order space, searched hyperparameters, searcher, scheduler
and resources. The rest of the file is the chain config every trial starts from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from itt.config import (ChainConfig, ConfigError, _split_commas, _Strict, apply_overrides, checked_seeds, distinct_seeds,
                        read_yaml, validate)
from search.space import OrderSpace


_Float, _Int = float, int  # the field names below shadow the builtins inside the class


class HParam(_Strict):
    """One searched hyperparameter: exactly one of a float range, an int range or choices."""

    float: tuple[_Float, _Float] | None = None
    log: bool = False  # sample the range on a log scale (learning rates; batch sizes as an int range)
    int: tuple[_Int, _Int] | None = None
    choice: list[Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> HParam:
        given = [x is not None for x in (self.float, self.int, self.choice)]
        if sum(given) != 1:
            raise ValueError("give exactly one of 'float: [low, high]', 'int: [low, high]' or 'choice: [...]'")
        rng = self.float or self.int
        if rng is not None and not rng[0] < rng[1]:
            raise ValueError("low must be below high")
        if self.log and (rng is None or rng[0] <= 0):
            raise ValueError("'log' needs a range whose low is above 0 ('float: [low, high]' or 'int: [low, high]')")
        if self.choice is not None and not self.choice:
            raise ValueError("'choice' is empty")
        return self


def hparam_names(key: str, order: list[str]) -> list[str]:
    """The trial parameters of one searched hyperparameter for ``order``: ``stages.*.X`` gives one
    ``stages.<task>.X`` per task of the order, any other key itself."""
    return [key.replace("*", t) for t in order] if "*" in key else [key]


def hparams_text(hp: dict, sep: str = ", ") -> str:
    """``train.lr=0.0009487, stages.mnli.epochs=2``: searched values as a person reads them (a float drawn from
    a continuous range to 4 significant digits; results.csv and summary.json keep every digit)."""
    return sep.join(f"{k}={f'{v:.4g}' if isinstance(v, float) else v}" for k, v in hp.items())


class Confirm(_Strict):
    """``search.confirm``: ``itt confirm`` right after the search (search/confirm.py)."""

    # the best orders to train again (F comes with them); or "set": the orders that could be best (the
    # report's 95% credible set, search/ranking.py)
    top: Annotated[int, Field(ge=1)] | Literal["set"] = 3
    seeds: list[int] | None = None  # fresh seeds; null: as many as the search's (at least 5), after its largest
    # a search that tuned hyperparameters: each order with its trial's (own), or all with the first pick's (first)
    hparams: Literal["own", "first"] = "own"
    # is the best order robust to a hyperparameter? the same orders and seeds at each other value, then
    # `itt compare` over them (itt confirm --vary), e.g. {finetune.lr: [1.0e-5, 5.0e-5]}
    vary: dict[str, list[Any]] = Field(default_factory=dict)

    _csv = field_validator("seeds", mode="before")(_split_commas)  # --set search.confirm.seeds=10,11,12

    @field_validator("top", mode="before")
    @classmethod
    def _count_or_set(cls, v):
        if isinstance(v, str) and v != "set":
            raise ValueError(f"give a number of orders or 'set' (the orders that could be best), not {v!r}")
        return v

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v):
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError("give distinct seeds (or null)")
        return v if v is None else checked_seeds(v)

    @field_validator("vary")
    @classmethod
    def _values(cls, v):
        from search.confirm import _value

        out = {}
        for key, values in v.items():
            values = [_value(x) for x in values]
            if not values or len({repr(x) for x in values}) != len(values):
                raise ValueError(f"{key}: give one or more distinct values")
            out[key] = values
        return out


class SeedPoints(_Strict):
    """Orders evaluated first, before the searcher proposes its own."""

    baseline: bool = False  # F: the empty order (needs 0 among the lengths)
    singles: bool = False  # each single-task IF order (needs 1 among the lengths)
    orders: list[list[str]] = Field(default_factory=list)
    # heuristic orders (search/heuristics.py): curriculum (easy to hard), similarity (least to most similar);
    # transferability: the transferability prior's best order of each length (search/transfer.py, `itt rank`)
    heuristics: list[Literal["curriculum", "similarity", "transferability"]] = Field(default_factory=list)
    heuristics_from: str | None = None  # a finished search whose single-task orders give the difficulty
    # searched hyperparameters of given seed points, by order ("a>b"; "F" for the baseline), e.g.
    # {"a>b": {train.lr: 3.0e-5}}; any a point does not give takes the middle of its range
    hparams: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("orders", mode="before")
    @classmethod
    def _parse(cls, v):
        return [o.split(">") if isinstance(o, str) else o for o in (v or [])]

    def hparams_of(self, order: list[str]) -> dict[str, Any]:
        """The hyperparameters given for the seed point ``order`` (``{}``: none given)."""
        return self.hparams.get(">".join(order) if order else "F", {})


class Scheduler(_Strict):
    """ASHA (Li et al., 2020, "A System for Massively Parallel Hyperparameter Tuning"); time = stage."""

    type: Literal["asha", "none"] = "asha"
    # stages every order gets before it can be stopped; default: the longest order's length, so the one
    # rung is the probe after the last intermediate stage (earlier prefix probes rank orders poorly:
    # Spearman with the final score 0.26-0.28 after stage 1 vs 0.75-0.90 after stage 3 in
    # bench/search_efficiency.py's tables, and grace 1 found their best order in 1 of 20 searches)
    grace_period: int | None = Field(None, ge=1)
    reduction_factor: float = Field(2, gt=1)
    max_t: int | None = Field(None, ge=1)  # default: SearchConfig.final_step (where every final report lands)
    brackets: int = Field(1, ge=1)
    # a stopped order proposed again by the searcher continues (finished stages from the stage cache)
    # and runs to its final; false: it is answered as stopped, as before (a stop is final)
    continue_stopped: bool = True


class Resources(_Strict):
    """What a trial uses. One worker: the chain runs in the Tune trial's own process, which holds
    ``trial_cpus + cpus_per_worker`` CPUs and ``gpus_per_worker`` GPU; more: a Ray Train TorchTrainer
    whose workers each hold ``cpus_per_worker`` and ``gpus_per_worker``, beside the trial's ``trial_cpus``."""

    workers_per_trial: int = Field(1, ge=1)  # processes training one chain (DDP through Ray Train when > 1)
    gpus_per_worker: float = Field(0, ge=0)
    cpus_per_worker: float = Field(1, gt=0)
    trial_cpus: float = Field(0.25, gt=0)  # the trial's driver function (Ray needs a nonzero share)
    # a Ray Train TorchTrainer also for one worker (15-25 s of start-up per trial; to compare the paths)
    ray_train: bool = False
    max_concurrent: int | None = Field(None, ge=1)  # default: as many as the cluster's resources fit
    # a trial holding part of a GPU (gpus_per_worker < 1) keeps to that part of its memory (itt/train.py:
    # cap_gpu_memory); beyond it a stage goes on in micro-batches (hardware.split_on_oom)
    cap_gpu_memory: bool = True

    @model_validator(mode="after")
    def _whole_gpus_for_ddp(self) -> Resources:
        # Ray Train's GPU workers talk NCCL, which cannot hold two ranks of one group on one GPU; with
        # fractional GPUs Ray may pack a trial's workers onto the same one
        if self.workers_per_trial > 1 and 0 < self.gpus_per_worker < 1:
            raise ValueError(f"workers_per_trial {self.workers_per_trial} with gpus_per_worker {self.gpus_per_worker:g}: "
                             "the workers of one trial need whole GPUs (NCCL cannot put two ranks on one GPU); "
                             "share GPUs between trials with workers_per_trial: 1")
        return self


class Simulate(_Strict):
    """Take probe and final scores from a table instead of training (searcher/scheduler studies)."""

    table: str  # CSV: order (names joined by '>'), probe_1..probe_K, final; optional hparam columns
    seconds_per_stage: float = Field(0.0, ge=0)  # sleep per stage, to mimic training time
    # tables with one row per seed: report the mean over seeds (as a chain with those seeds), or one
    # seed's row, drawn per order from the search seed (as a one-seed search sees it: noisy)
    draw: Literal["mean", "one_seed"] = "mean"
    # the seconds a trial reports each stage of a task (and the rest of it: data, fine-tune, evaluation)
    # cost, as a real trial measures them: the searcher's cost model reads them (nothing is slept)
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    fixed_seconds: float | None = Field(None, ge=0)


class Tracking(_Strict):
    """MLflow tracking (search/tracking.py): a parent run per search, a child run per trial."""

    enabled: bool = True  # on by default: MLflow's embedded sqlite store costs seconds per search
    tracking_uri: str | None = None  # default: --tracking-uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str | None = None  # the MLflow experiment; default: the search name
    best_k: int = Field(1, ge=0)  # the final checkpoints of the best K trials are logged as artifacts


class Cache(_Strict):
    """The stage cache (itt/cache.py): orders sharing a prefix share the encoder trained on it when
    everything that determines it is equal (a searched hparam of an earlier stage breaks sharing)."""

    enabled: bool = True  # on by default: identical prefixes are never trained twice
    dir: str | None = None  # default: <experiment>/stage_cache/; a path (relative to this file) or URI shared across searches
    max_bytes: int | None = Field(None, ge=1)  # size limit; least-recently-used entries are evicted beyond it


class OrderBO(_Strict):
    """Options of the ``order_bo`` searcher (search/searchers/order_bo.py)."""

    n_startup: int = Field(2, ge=1)  # start-up orders before the GP proposes (seed points count)
    # the start-up orders: cover = each brings the most unseen tasks and (task, depth) cells per unit of
    # cost (cheap on cached prefixes; bench/search_efficiency.py); random = drawn at random
    startup: Literal["cover", "random"] = "cover"
    max_candidates: int = Field(10_000, ge=10)  # spaces up to this size are scored whole; larger ones sampled
    cost_aware: bool = True  # expected improvement per unit of cost still to pay (the stage cache)
    # what a unit of cost is: stages = every stage-training one unit, whatever its task, a final final_cost;
    # measured = the seconds trials report (each task's stage, training and probe; a trial's fixed part:
    # data, fine-tune(s), evaluation). stages is the default: neither won across the benchmark's tables
    # where stages cost different seconds (bench/data/search_costs.txt; costs.py)
    cost: Literal["stages", "measured"] = "stages"
    # what a trial's final fine-tune(s) cost in stage-trainings; null = one per target it fine-tunes (the
    # target and each eval.also task that trains: search.metric xtreme's several targets)
    final_cost: float | None = Field(None, gt=0)
    use_probes: bool = True  # probes enter the GP as low-fidelity observations of their prefix
    # where a task sits: average = two GPs, one over its depth from the end and one that also sees its
    # position from the start, averaged by their evidence (surrogate.py; bench/README.md); never = the
    # first alone (the default before 2026-12); always = the second alone
    from_start: Literal["average", "never", "always"] = "average"


class Stop(_Strict):
    """``search.stop``: end the search once its model says a longer one would not pay (search/searchers/stopping.py)."""

    p_better: float | None = Field(None, gt=0, lt=1)  # P(an unfinished order beats the pick) below this
    gain: float | None = Field(None, gt=0)  # the expected gain of the best unfinished order below this (metric units)
    min_trials: int = Field(10, ge=1)  # finished trials before the rule is asked

    @model_validator(mode="after")
    def _some(self) -> Stop:
        if self.p_better is None and self.gain is None:
            raise ValueError("give p_better, gain or both (when to stop)")
        return self


class Budget(_Strict):
    """``search.budget``: the search proposes no new trial once it has spent this much (running trials finish)."""

    device_hours: float | None = Field(None, gt=0)  # trial time x the GPUs (or CPU cores) a trial holds
    hours: float | None = Field(None, gt=0)  # wall-clock time of the search, over its sessions (itt resume)

    @model_validator(mode="after")
    def _some(self) -> Budget:
        if self.device_hours is None and self.hours is None:
            raise ValueError("give device_hours, hours or both (what the search may spend)")
        return self


class SearchConfig(_Strict):
    candidates: list[str]
    length: int | tuple[int, int] = Field(..., description="an order length k, or [min, max] (0 = F baseline)")
    include: list[str] = Field(default_factory=list)
    before: list[tuple[str, str]] = Field(default_factory=list)
    last: str | None = None
    # auto = order_bo: a GP over order features, cost-aware, probes as evidence (bench/search_efficiency.py)
    searcher: Literal["auto", "order_bo", "tpe", "gp", "random", "exhaustive"] = "auto"
    order_bo: OrderBO = Field(default_factory=OrderBO)
    # order_bo's prior (search/transfer.py, `itt rank`): transferability = LogME / text-embedding scores of
    # each order on the config's encoder, measured once before the search (seconds), as one more input of
    # the GP and the choice of its first orders. none (default): the prior is a heuristic that can be
    # wrong (bench/transfer_prior.py measures it), so a search uses it only when asked
    prior: Literal["none", "transferability"] = "none"
    # an earlier search (its experiment directory or URI; a path is relative to the working directory) whose measured
    # scores become order_bo's prior: e.g. the XNLI search when searching orders for PAWS-X. Its completed
    # orders keep their mean score, every other order gets a ridge fit of per-task effects (position-weighted
    # like the prior) - fitted on the transferability prior when `prior: transferability` (as `itt rank --from`).
    # A list of earlier searches: their priors weighed by how well each ranks this search's scores (RGPE-style)
    prior_from: list[str] | None = None
    # a copy of the Optuna study for optuna-dashboard, updated as trials finish: "experiment" (default) =
    # <experiment>/optuna.journal (a local experiment folder), a database URL, or null = none. The
    # searcher's own study stays in memory, saved with Ray's searcher state (a resume restores it exactly)
    optuna_storage: str | None = "experiment"
    num_samples: int | None = Field(None, ge=1)  # trials; default: every order once for exhaustive
    seed: int = Field(0, ge=0, lt=2**32)  # the searcher's own seed
    # true: the same config and seed run the same trials (orders, stops, scores) however fast each trial is.
    # The searcher proposes max_concurrent trials at a time and waits for all of them before the next batch
    # (slots idle while a batch's longest trial finishes); ASHA compares a trial's probe only with the trials
    # that had ended when it started. false (default): a free slot gets a new trial at once, so which
    # orders run depends on which trial finished first
    reproducible: bool = False
    seeds: list[int] | None = None  # repeats of every trial's chain; default: the chain config's seeds
    seed_points: SeedPoints = Field(default_factory=SeedPoints)
    hparams: dict[str, HParam] = Field(default_factory=dict)  # dotted chain-config keys; "stages.*.lr" = per stage
    # over target languages, on dev: mean | worst | robust, or a list of 2-3 of mean, worst, robust, std,
    # transfer_gap (std and transfer_gap: lower is better) for a multi-objective search (search/pareto.py);
    # or xtreme: the XTREME average over the target and the chain's eval.also tasks (alone)
    metric: str | list[str] = "mean"
    robust_weight: float = Field(1.0, ge=0)  # robust = mean - weight * std over languages
    scheduler: Scheduler = Field(default_factory=Scheduler)
    resources: Resources = Field(default_factory=Resources)
    simulate: Simulate | None = None
    probe_steps: int = Field(50, ge=1)  # the probe's fixed fine-tune budget (ASHA's signal per stage)
    # a trial whose process, worker or node dies runs again (its finished stages from the stage cache),
    # at most this many times; -1 = without limit
    max_failures: int = Field(2, ge=-1)
    # final checkpoints (trials/<id>/seed<S>/checkpoint) kept for the best K completed trials only (and,
    # with several objectives, the Pareto front's); the others' are removed as soon as K better ones
    # exist. null = keep every trial's
    keep_checkpoints: int | None = Field(3, ge=0)
    tracking: Tracking = Field(default_factory=Tracking)
    cache: Cache = Field(default_factory=Cache)
    # at the end of the search, `itt report` on it: report.html in <experiment>/report/, its answer printed
    report: bool = False
    # then `itt confirm` on it: its best orders and F again on fresh seeds, in <name>-confirm (null: not)
    confirm: Confirm | None = None
    # order_bo: no new trial once an unfinished order is unlikely to beat the pick, e.g. {p_better: 0.05}
    # (search/searchers/stopping.py); null: num_samples trials
    stop: Stop | None = None
    # no new trial once the search has spent this much, e.g. {device_hours: 200} (trial time x the devices a
    # trial holds) or {hours: 12} (wall clock); running trials finish. null: num_samples trials
    budget: Budget | None = None

    @field_validator("optuna_storage")
    @classmethod
    def _storage(cls, v):
        if v is not None and v != "experiment" and "://" not in v:
            raise ValueError(f"'{v}' is neither 'experiment', null nor a database URL (e.g. postgresql://host/db)")
        return v

    # a list, or comma-separated text (--set search.prior_from=runs/a,runs/b; --set search.include=mnli,sst2)
    _csv = field_validator("candidates", "include", "prior_from", "seeds", mode="before")(_split_commas)

    @field_validator("seeds")
    @classmethod
    def _seeds_in_range(cls, v):
        return v if v is None else distinct_seeds(v)

    @field_validator("length")
    @classmethod
    def _min_max(cls, v):
        if isinstance(v, tuple) and v[0] > v[1]:
            raise ValueError(f"min {v[0]} is above max {v[1]}")
        return v

    @field_validator("metric", mode="before")
    @classmethod
    def _metric(cls, v):
        from search.pareto import ALONE, OBJECTIVES, SINGLE

        if isinstance(v, str) and "," in v:  # --set search.metric=mean,worst
            v = [s.strip() for s in v.split(",") if s.strip()]
        if isinstance(v, (list, tuple)) and len(v) == 1:
            v = v[0]
        if isinstance(v, str):
            if v not in SINGLE:
                hint = (f" ('{v}' is lower-is-better: optimise it beside another, e.g. [mean, {v}])"
                        if v in OBJECTIVES else "")
                raise ValueError(f"'{v}' is not a metric to optimise alone: use one of {', '.join(SINGLE)}, or a "
                                 f"list of 2-3 of {', '.join(OBJECTIVES)} for a multi-objective search{hint}")
            return v
        if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, str) for x in v):
            raise ValueError(f"give one metric name or a list of 2-3 names (got {v!r})")
        alone = [x for x in v if x in ALONE]
        if alone:
            raise ValueError(f"'{alone[0]}' is optimised alone (search.metric: {alone[0]}), not beside other metrics")
        unknown = [x for x in v if x not in OBJECTIVES]
        if unknown:
            raise ValueError(f"unknown metric '{unknown[0]}' (a trial reports {', '.join(OBJECTIVES)})")
        if len(set(v)) != len(v):
            raise ValueError(f"{list(v)} names a metric twice")
        if len(v) > 3:
            raise ValueError(f"{list(v)}: at most 3 objectives (a front of 4+ holds most orders)")
        return list(v)

    @property
    def objectives(self) -> list[str]:
        """The optimised metrics, in order (one for a single-objective search)."""
        from search.pareto import names

        return names(self.metric)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @model_validator(mode="after")
    def _default_grace(self) -> SearchConfig:
        longest = max(self.lengths)
        max_t = self.scheduler.max_t
        if self.scheduler.type == "asha" and max_t is not None and max_t < longest + 1:
            # (OrderASHA stops every trial whose report reaches max_t: an order of max_t stages or more would be
            # stopped at its probe after stage max_t, whatever its score, and never reach its final)
            raise ValueError(f"scheduler.max_t {max_t} is below the step of every final report ({longest + 1}: the "
                             f"longest order + 1), so ASHA would stop every order of {max_t}+ stage(s) before its "
                             f"final: leave it out (or give {longest + 1} or more)")
        if self.scheduler.grace_period is None:
            self.scheduler.grace_period = min(max(1, longest), self.scheduler.max_t or 10**9)
        elif self.scheduler.type == "asha" and longest >= 1 and self.scheduler.grace_period > longest:
            # (Ray's ASHA then has no rung: it would never stop a trial, silently)
            raise ValueError(f"scheduler.grace_period {self.scheduler.grace_period} is beyond the longest order "
                             f"({longest} stage(s)), so ASHA would never stop a trial: give 1 to {longest}")
        return self

    @property
    def final_step(self) -> int:
        """ASHA time of every trial's final report: the longest order + 1, whatever the trial's own length.

        A final score (full target fine-tune) and a probe (a short one) are on different scales; were a
        length-1 order's final reported at step 2, ASHA's rung 2 would rank it against longer orders'
        stage-2 probes, and nearly every long order would lose there. At one common step, each rung
        holds probes after the same number of stages, and finals meet only finals."""
        return max(self.lengths) + 1

    @property
    def lengths(self) -> list[int]:
        if isinstance(self.length, int):
            return [self.length]
        lo, hi = self.length
        return list(range(lo, hi + 1))

    def space(self) -> OrderSpace:
        return OrderSpace(candidates=list(self.candidates), lengths=self.lengths, include=list(self.include),
                          before=[tuple(p) for p in self.before], last=self.last)


def _check_reproducible(scfg: SearchConfig, path) -> None:
    """What a reproducible search cannot hold: choices made from measured time."""
    if scfg.order_bo.cost == "measured" and scfg.searcher in ("auto", "order_bo"):
        raise ConfigError(f"{path}: search.reproducible: order_bo.cost measured prices orders by the seconds trials "
                          "took, which differ from run to run; use cost: stages")
    if scfg.searcher == "exhaustive" and scfg.scheduler.type == "asha":
        raise ConfigError(f"{path}: search.reproducible: exhaustive runs every order whatever the timing, but its "
                          "ASHA stops depend on which trial reports first (Ray's grid has no batches): set "
                          "search.scheduler.type none (or search.reproducible false), or use a searcher that "
                          "proposes orders")


def load_search(path: str | Path, overrides: list[str] | None = None) -> tuple[SearchConfig, ChainConfig, dict]:
    """(search settings, base chain config, the raw resolved mapping) from one YAML file: validated (one
    ConfigError naming the key at the first problem), defaults that depend on the chain filled in, and
    paths made absolute (Ray's workers run elsewhere)."""
    from itt.config import load_config

    raw = apply_overrides(read_yaml(path), overrides)
    if "search" not in raw or not isinstance(raw["search"], dict):
        raise ConfigError(f"{path}: no 'search:' block (the order space to search)")
    scfg: SearchConfig = validate(raw["search"], str(path), SearchConfig, prefix="search.", overrides=overrides)
    # the chain config the trials start from (its own `order` is ignored: the search sets it)
    chain = load_config(path, [o for o in overrides or [] if not o.startswith("search.")])
    space = _check_space(scfg, chain, path)
    _check_settings(scfg, chain, space, path)
    _check_vary(scfg, raw, path)
    _resolve(scfg, chain, path)
    if scfg.simulate is not None:
        _check_simulate(scfg, path)
    return scfg, chain, raw


def _check_space(scfg: SearchConfig, chain, path) -> OrderSpace:
    """The order space: known candidate tasks, satisfiable constraints, training hyperparameters that
    exist, seed points inside it. Returns it."""
    from itt.config import StageHParams
    from itt.tasks import intermediate_problem, resolve_task

    target = resolve_task(chain.target.task, chain.tasks, f"{path}: target.task").name
    for t in scfg.candidates:
        problem = intermediate_problem(resolve_task(t, chain.tasks, f"{path}: search.candidates"), target)
        if problem:
            raise ConfigError(f"{path}: search.candidates: {problem}")
    space = scfg.space()
    problems = space.problems()
    if problems:
        raise ConfigError(f"{path}: search: {problems[0]}")
    for key in scfg.hparams:
        if not key.startswith(("train.", "finetune.", "stages.")):
            raise ConfigError(f"{path}: search.hparams: '{key}' is not a training hyperparameter "
                              "(use train.*, finetune.* or stages.*.<name>)")
        field_name = key.rsplit(".", 1)[-1]
        if field_name not in StageHParams.model_fields:
            raise ConfigError(f"{path}: search.hparams: unknown hyperparameter '{field_name}' in '{key}'")
        problem = _value_problem(field_name, scfg.hparams[key])
        if problem:  # (a trial would fail on it, each time the searcher drew it)
            raise ConfigError(f"{path}: search.hparams.{key}: {problem}")
    if space.count() == 0:
        raise ConfigError(f"{path}: search: no order satisfies the constraints")
    for o in scfg.seed_points.orders:
        if not space.is_valid(o):
            raise ConfigError(f"{path}: search.seed_points.orders: '{'>'.join(o)}' is not in the search space")
    _check_point_hparams(scfg, path)
    return space


def _check_vary(scfg: SearchConfig, raw: dict, path) -> None:
    """``search.confirm.vary``: each value is one the chain config takes, as ``itt confirm --vary`` checks it
    (here, before the search: the confirmation would fail on it only after the whole search); and none,
    nor ``top: set``, for a multi-objective search (``itt confirm`` refuses both for it)."""
    from itt.errors import UserError
    from search.confirm import vary_config

    if scfg.confirm and scfg.multi_objective and scfg.confirm.vary:
        raise ConfigError(f"{path}: search.confirm.vary: a multi-objective search's confirmation compares on every "
                          "objective already; vary its hyperparameters with one objective")
    if scfg.confirm and scfg.multi_objective and scfg.confirm.top == "set":
        raise ConfigError(f"{path}: search.confirm.top: set ranks orders by the mean; a multi-objective search "
                          "confirms its Pareto front: give a number")
    for key, values in (scfg.confirm.vary if scfg.confirm else {}).items():
        for value in values:
            try:
                vary_config(raw, key, value, cache_dir=None, label=f"search.confirm.vary.{key}")
            except UserError as e:
                raise ConfigError(f"{path}: {e}") from None


def _value_problem(field_name: str, hp: HParam) -> str | None:
    """Why a value ``hp`` can take (a choice, or an end of its range) is not one the chain's setting
    ``field_name`` accepts (its type and bounds in itt.config.StageHParams), or None."""
    from pydantic import ValidationError

    from itt.config import StageHParams

    if hp.float is not None and StageHParams.model_fields[field_name].annotation == (int | None):
        return f"a float range for a whole number: give int: [{hp.float[0]:g}, {hp.float[1]:g}]"
    for value in hp.choice if hp.choice is not None else (hp.float or hp.int):
        try:
            StageHParams.model_validate({field_name: value})
        except ValidationError as e:
            return f"{value!r}: {e.errors()[0]['msg']}"
    return None


def _check_settings(scfg: SearchConfig, chain, space: OrderSpace, path) -> None:
    """Settings that only some searchers, schedulers or spaces allow together."""
    if scfg.multi_objective and scfg.scheduler.type == "asha" and scfg.scheduler.brackets > 1:
        raise ConfigError(f"{path}: search.scheduler.brackets: a multi-objective search runs one bracket "
                          f"(ParetoASHA); got {scfg.scheduler.brackets}")
    if scfg.seed_points.baseline and 0 not in scfg.lengths:
        raise ConfigError(f"{path}: search.seed_points.baseline needs 0 among the lengths")
    if scfg.seed_points.baseline and not space.is_valid([]):
        raise ConfigError(f"{path}: search.seed_points.baseline: F (the empty order) is not in the search space "
                          f"(search.include or search.last asks for a task in every order); set baseline: false")
    if scfg.prior != "none" and scfg.searcher not in ("auto", "order_bo"):
        raise ConfigError(f"{path}: search.prior: {scfg.prior} needs searcher order_bo (or auto), not {scfg.searcher} "
                          "(start another searcher from the prior with seed_points.heuristics: [transferability])")
    if scfg.prior_from is not None and scfg.searcher not in ("auto", "order_bo"):
        raise ConfigError(f"{path}: search.prior_from needs searcher order_bo (or auto), not {scfg.searcher}")
    if scfg.reproducible:
        _check_reproducible(scfg, path)
    if scfg.stop is not None:
        _check_stop(scfg, space, path)
    if scfg.budget is not None and scfg.searcher == "exhaustive":
        raise ConfigError(f"{path}: search.budget needs a searcher that proposes orders one by one, not exhaustive "
                          "(which runs every order once, whatever search.num_samples); for part of the space give "
                          "searcher random (or order_bo) and search.num_samples")
    if scfg.num_samples is not None and scfg.searcher == "exhaustive":  # (a 1000-order space ran 1000 trials)
        raise ConfigError(f"{path}: search.num_samples: {scfg.num_samples}, but searcher exhaustive runs every order "
                          f"once ({space.count()} trials here) whatever it says; leave num_samples out (--set "
                          f"search.num_samples=null), or give searcher random for {scfg.num_samples} orders without repeats")
    if scfg.objectives == ["xtreme"] and scfg.simulate is None:
        _check_xtreme(chain, path)
    if scfg.simulate is None:
        _check_language_figures(scfg, chain, path)
    if scfg.scheduler.type == "asha" and scfg.scheduler.brackets > 1:
        _check_brackets(scfg, path)
    if scfg.seed_points.singles and 1 not in scfg.lengths:
        raise ConfigError(f"{path}: search.seed_points.singles needs 1 among the lengths")
    again = sorted(set(scfg.confirm.seeds or []) & set(scfg.seeds or chain.seeds)) if scfg.confirm else []
    if again:
        raise ConfigError(f"{path}: search.confirm.seeds: {', '.join(map(str, again))} also seed the search; a "
                          "confirmation needs fresh seeds")


def _resolve(scfg: SearchConfig, chain, path) -> None:
    """Defaults that depend on the chain, and paths made absolute: an earlier search (search.prior_from)
    relative to the working directory, as `itt search` wrote it there; the stage cache and a simulated
    table relative to the config's folder."""
    if scfg.order_bo.final_cost is None:
        from search.plan import fine_tuned

        scfg.order_bo.final_cost = float(max(1, len(fine_tuned(chain, path))))
    if scfg.prior_from is not None:
        scfg.prior_from = [d if "://" in d else str(Path(d).resolve()) for d in scfg.prior_from] or None
    d = scfg.cache.dir
    if d is not None and "://" not in d and not Path(d).is_absolute():
        scfg.cache.dir = str((Path(path).resolve().parent / d).resolve())
    if scfg.simulate is not None and not Path(scfg.simulate.table).is_absolute():
        scfg.simulate.table = str((Path(path).resolve().parent / scfg.simulate.table).resolve())


def settle_probe_also(scfg: SearchConfig, chain) -> None:
    """``probe.also`` left open (null): ASHA's probe measures the XTREME average when the search optimises
    it. Settled when a search starts (and for ``itt space``, which describes that search), in the chain
    config the search saves, so that a resume probes as the search began (a search saved before
    probe.also existed keeps its target-only probe)."""
    if chain.probe.also is None:
        chain.probe.also = scfg.metric == "xtreme"


def _check_simulate(scfg: SearchConfig, path) -> None:
    """A simulated search's table: there, its stage seconds for candidate tasks, per-language columns
    where the objectives need them."""
    if not Path(scfg.simulate.table).is_file():
        raise ConfigError(f"{path}: search.simulate.table: file not found: {scfg.simulate.table}")
    unknown = sorted(set(scfg.simulate.stage_seconds) - set(scfg.candidates))
    if unknown:
        raise ConfigError(f"{path}: search.simulate.stage_seconds: '{unknown[0]}' is not a candidate task "
                          f"(candidates: {', '.join(scfg.candidates)})")
    problem = _table_problem(scfg.simulate.table, scfg.simulate.draw, scfg.space())
    if problem:  # (each trial would fail on it)
        raise ConfigError(f"{path}: search.simulate.table {scfg.simulate.table}: {problem}")
    if scfg.multi_objective and any(n != "mean" for n in scfg.objectives):
        with open(scfg.simulate.table, newline="") as f:
            header = f.readline().strip().split(",")
        langs = [c for c in header if c.startswith("dev_") and c[4:] not in ("mean", "std", "worst", "transfer_gap")]
        if len(langs) < 2:
            raise ConfigError(f"{path}: search.metric: {', '.join(scfg.objectives)} need per-language dev scores, "
                              f"and {scfg.simulate.table} has no dev_<language> columns")
        # every report carries every objective (Ray Tune refuses a probe without one): probe_<i>_<objective>
        need = [f"probe_{i}_{n}" for i in range(1, max(scfg.lengths) + 1) for n in scfg.objectives
                if n in ("worst", "std", "transfer_gap")]
        absent = [c for c in need if c not in header]
        if absent:
            raise ConfigError(f"{path}: search.metric: {', '.join(scfg.objectives)}: every probe reports each objective, "
                              f"and {scfg.simulate.table} has no '{absent[0]}' column")


TABLE_SPACE_CHECKED = 200_000  # a simulated table must hold every order of a space up to this size


def _table_problem(table: str, draw: str, space) -> str | None:
    """Why a simulated table cannot answer trials (search/trial.py reads it), or None: it needs an ``order``
    and a ``final`` column, numbers in ``final`` and the ``probe_<i>`` columns, a ``seed`` column for
    ``draw: one_seed``, and a row for every order of the search's space (any of them may be proposed)."""
    import csv

    from search.space import order_key

    orders = set()
    try:
        with open(table, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            missing = [c for c in ("order", "final", *(["seed"] if draw == "one_seed" else [])) if c not in columns]
            if missing:
                return f"no '{missing[0]}' column (columns: {', '.join(columns) or 'none'})"
            scores = [c for c in columns if c == "final" or c.startswith("probe_")]
            for i, row in enumerate(reader, 2):
                orders.add(row["order"] or "")
                for c in scores:
                    try:
                        float(row[c] or "nan")
                    except (TypeError, ValueError):
                        return f"line {i}: {c} '{row[c]}' is not a number"
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        return f"cannot read it ({e})"
    if space.count() <= TABLE_SPACE_CHECKED:
        absent = [k for k in map(order_key, space.orders()) if k not in orders]
        if absent:
            more = f" nor {len(absent) - 1} other(s)" if len(absent) > 1 else ""
            return (f"no row for order '{absent[0] or 'F'}'{more} of the search's {space.count()} orders "
                    "(search.candidates, length and constraints): a simulated search may propose any of them")
    return None


def _check_xtreme(chain, path: str) -> None:
    """``search.metric: xtreme`` scores a trial on the dev XTREME average over the target and every
    ``eval.also`` task: each of them needs a dev split in each language it is evaluated in, or the
    average would silently leave the task out."""
    from itt.tasks import resolve_task

    for name, langs in chain.eval.also.items():
        task = resolve_task(name, chain.tasks, f"{path}: eval.also")
        missing = [lang for lang in (langs or task.languages) if not task.source("dev", lang)]
        if missing:
            raise ConfigError(f"{path}: search.metric: xtreme scores trials on dev, and eval.also task '{name}' has "
                              f"no dev split in {', '.join(missing)} (give it one, or evaluate it on fewer languages)")


def _check_brackets(scfg: SearchConfig, path: str) -> None:
    """Each bracket ASHA adds needs a rung before the final: Ray's bracket s has its rungs at grace_period x
    reduction_factor^(k+s) below max_t (its own _Bracket, used here), and OrderASHA records no final in a
    rung. With the default grace_period (the longest order) a second bracket has none: a share of the trials
    (Ray's bracket weights) would never be stopped, without a word."""
    from ray.tune.schedulers.async_hyperband import _Bracket

    sch = scfg.scheduler
    max_t = sch.max_t or scfg.final_step
    idle = [b for b in range(1, sch.brackets) if not any(
        t < scfg.final_step for t, _ in _Bracket(sch.grace_period, max_t, sch.reduction_factor, b)._rungs)]
    if idle:
        raise ConfigError(f"{path}: search.scheduler.brackets: {sch.brackets}, and with grace_period {sch.grace_period}, "
                          f"reduction_factor {sch.reduction_factor:g} and max_t {max_t} bracket {idle[0]} (counting from "
                          f"0) has no rung before the final (bracket s stops trials at grace_period x reduction_factor^(k+s) "
                          f"stages): its trials would never be stopped; give brackets: {idle[0]}, or a smaller grace_period")


def _check_language_figures(scfg: SearchConfig, chain, path: str) -> None:
    """worst, robust and std are figures over the target's languages, transfer_gap English less the mean of
    the others (itt/metrics.py summary): on one language they are the mean, or 0, for every order (or, for
    the gap, missing), and a search on them ranks nothing it claims to."""
    from itt.tasks import resolve_task

    figures = [n for n in scfg.objectives if n in ("worst", "robust", "std", "transfer_gap")]
    if not figures:
        return
    target = resolve_task(chain.target.task, chain.tasks, f"{path}: target.task")
    langs = list(chain.target.languages or target.languages)
    if len(langs) < 2:
        raise ConfigError(f"{path}: search.metric: {figures[0]} is a figure over the target's languages, and "
                          f"{target.name} is evaluated in one ({', '.join(langs)}): give target.languages two or more, "
                          "or search.metric: mean")
    if "transfer_gap" in figures and "en" not in langs:
        raise ConfigError(f"{path}: search.metric: transfer_gap is English less the mean of the other languages, and "
                          f"target.languages ({', '.join(langs)}) has no en: add it (with a dev split), or drop transfer_gap")


def _check_stop(scfg: SearchConfig, space, path: str) -> None:
    """``search.stop`` asks order_bo whether an unfinished order could beat its pick: a question with an
    answer only for one objective, no searched hyperparameters and a space it scores whole."""
    if scfg.searcher not in ("auto", "order_bo"):
        why = f"needs searcher order_bo (or auto), not {scfg.searcher}"
    elif scfg.multi_objective:
        why = "needs one metric (a multi-objective search has a Pareto front, not one pick)"
    elif scfg.hparams:
        why = "cannot be asked with searched hyperparameters (every unfinished configuration is no finite set)"
    elif space.count() > scfg.order_bo.max_candidates:
        why = (f"needs a space of at most search.order_bo.max_candidates ({scfg.order_bo.max_candidates}) orders; "
               f"this one has {space.count()}")
    else:
        return
    raise ConfigError(f"{path}: search.stop {why}")


def _check_point_hparams(scfg: SearchConfig, path: str) -> None:
    """``search.seed_points.hparams``: each key a given seed point, each value a searched hyperparameter
    of that order (``stages.*.X`` as one ``stages.<task>.X`` per task) inside its range or choices."""
    sp = scfg.seed_points
    if sp.hparams and scfg.searcher == "exhaustive":
        raise ConfigError(f"{path}: search.seed_points.hparams needs an Optuna searcher ('exhaustive' draws "
                          f"hyperparameters through Ray)")
    points = {">".join(o): o for o in sp.orders} | ({"F": []} if sp.baseline else {})
    for key, given in sp.hparams.items():
        where = f"{path}: search.seed_points.hparams.{key}"
        if key not in points:
            raise ConfigError(f"{where}: not a seed point (list the order in seed_points.orders, or set "
                              f"seed_points.baseline for F)")
        names = {n: hp for k, hp in scfg.hparams.items()
                 for n in hparam_names(k, points[key])}
        for name, v in (given or {}).items():
            if name not in names:
                raise ConfigError(f"{where}: '{name}' is not a searched hyperparameter of this order (searched: "
                                  f"{', '.join(names) or 'none, search.hparams is empty'})")
            if not _in_range(names[name], v):
                raise ConfigError(f"{where}.{name}: {v!r} is outside its search.hparams range or choices")


def _in_range(hp: HParam, v) -> bool:
    if hp.choice is not None:
        return v in hp.choice
    lo, hi = hp.float or hp.int
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi
    return ok and (hp.int is None or float(v).is_integer())
