"""Optuna samplers behind Ray Tune's ``OptunaSearch``, wrapped in ``OrderSearcher``; where the study's copy goes."""

from __future__ import annotations

import math
import warnings
from functools import partial

from search.config import hparam_names

STUDY_FILE = "optuna.journal"  # the study's copy in a local experiment folder (optuna-dashboard opens it)


def sampler_for(scfg, prior=None):
    """The Optuna sampler ``search.searcher`` names (``auto`` = ``order_bo``). Every one takes a study
    with several directions (``search.metric: [mean, worst]``): order_bo by ParEGO's random
    scalarisations (order_bo.py), TPE as Optuna's multi-objective TPE, GP by its expected hypervolume
    improvement, random (uniform over the untried orders, uniform_random.py) as it is. On the planted trade-off table (bench/make_pareto_table.py, 26 orders)
    order_bo found the whole front in 20 trials for 2 of 5 searcher seeds (4 of its 5 orders for the
    others); TPE found 4-5 of them in 20, random 2-4 in 16 (README)."""
    import optuna

    name = "order_bo" if scfg.searcher == "auto" else scfg.searcher
    if name == "order_bo":
        from search.searchers.order_bo import OrderBOSampler

        o = scfg.order_bo
        return OrderBOSampler(scfg.space(), scfg.hparams, seed=scfg.seed, n_startup=o.n_startup,
                              max_candidates=o.max_candidates, cost_aware=o.cost_aware, use_probes=o.use_probes,
                              propose_stopped=scfg.scheduler.continue_stopped, prior=prior, startup=o.startup,
                              final_cost=o.final_cost or 1.0, cost=o.cost, from_start=o.from_start,
                              cached=scfg.cache.enabled)
    if name == "random":
        from search.searchers.uniform_random import UniformOrderSampler

        return UniformOrderSampler(scfg.space(), seed=scfg.seed)
    return {
        "tpe": lambda: optuna.samplers.TPESampler(seed=scfg.seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=scfg.seed),
    }[name]()


def study_copy_url(scfg, st) -> str | None:
    """Where the study's copy for optuna-dashboard goes (``search.optuna_storage``): ``experiment`` (the
    default) = the journal file ``<experiment>/optuna.journal`` for a local experiment folder (none on an
    object store: name a database URL there), a database URL, or null = no copy."""
    if scfg.optuna_storage is None or scfg.searcher == "exhaustive":
        return None
    if scfg.optuna_storage == "experiment":
        return None if st.remote else st.path(STUDY_FILE)
    return scfg.optuna_storage


def make_searcher(scfg, seed_points: list[list[str]], copy_url: str | None = None, study_name: str = "itt", log=print,
                  prior=None):
    """The search's Ray Tune searcher: an Optuna sampler in ``OptunaSearch`` in ``OrderSearcher``
    (its study copied to ``copy_url`` for optuna-dashboard when given); None for ``exhaustive`` (Ray's
    grid, see exhaustive.py). ``prior``: order_bo's transferability prior (search.transfer.OrderPrior),
    computed once by the driver."""
    if scfg.searcher == "exhaustive":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from search.searchers._base import OrderSearcher
    from search.searchers.study_copy import StudyCopy
    from search.trial import define

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # order_bo decides the whole configuration at the first parameter Optuna asks for, inside the
    # define-by-run function: a GP fit there is expected, not training in the wrong place
    warnings.filterwarnings("ignore", message="Define-by-run function passed in the `space` argument took")
    space = scfg.space()
    points = [space.encode(o) for o in seed_points]
    if points and scfg.hparams:  # a seed point fixes the order; its hparams are given, or the middle of their range
        points = [{**p, **hparam_defaults(scfg, o), **scfg.seed_points.hparams_of(o)} for p, o in zip(points, seed_points)]
    metric, mode = tune_metric(scfg)
    inner = OptunaSearch(space=partial(define, space=space, hparams=scfg.hparams), metric=metric, mode=mode,
                         sampler=sampler_for(scfg, prior), points_to_evaluate=points or None, study_name=study_name)
    from search.compute import devices_per_trial

    per, _ = devices_per_trial({"search": {"resources": scfg.resources.model_dump()}})
    # (without a scheduler no trial is stopped: none to continue, nor to wait for at the end)
    return OrderSearcher(inner, space, has_hparams=bool(scfg.hparams), seed=scfg.seed,
                         continue_stopped=scfg.scheduler.continue_stopped and scfg.scheduler.type == "asha",
                         stop=scfg.stop, budget=scfg.budget,
                         devices_per_trial=per,
                         copy=StudyCopy(copy_url, study_name, log=log) if copy_url else None)


def tune_metric(scfg) -> tuple[str | list[str], str | list[str]]:
    """What the searcher optimises: ``objective`` (max) for one metric; one ``objective_<name>`` per
    objective, each with its direction, for several (Ray's OptunaSearch takes lists)."""
    from search.pareto import MAX, column, directions

    if not scfg.multi_objective:
        return "objective", "max"
    return [column(n) for n in scfg.objectives], ["max" if d == MAX else "min" for d in directions(scfg.metric)]


def hparam_defaults(scfg, order: list[str]) -> dict:
    out = {}
    for key, hp in scfg.hparams.items():
        for name in hparam_names(key, order):
            if hp.choice is not None:
                out[name] = hp.choice[0]
            elif hp.int is not None:
                lo, hi = hp.int
                out[name] = round(math.sqrt(lo * hi)) if hp.log else (lo + hi) // 2
            else:
                lo, hi = hp.float
                out[name] = math.sqrt(lo * hi) if hp.log else (lo + hi) / 2
    return out
