"""Optuna samplers behind Ray Tune's ``OptunaSearch``, wrapped in ``OrderSearcher``; the study's storage."""

from __future__ import annotations

import math
from functools import partial


def sampler_for(scfg, prior=None):
    """The Optuna sampler ``search.searcher`` names (``auto`` = ``order_bo``)."""
    import optuna

    name = "order_bo" if scfg.searcher == "auto" else scfg.searcher
    if name == "order_bo":
        from search.searchers.order_bo import OrderBOSampler

        o = scfg.order_bo
        return OrderBOSampler(scfg.space(), scfg.hparams, seed=scfg.seed, n_startup=o.n_startup,
                              max_candidates=o.max_candidates, cost_aware=o.cost_aware, use_probes=o.use_probes,
                              propose_stopped=scfg.scheduler.continue_stopped, prior=prior)
    return {
        "tpe": lambda: optuna.samplers.TPESampler(seed=scfg.seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=scfg.seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=scfg.seed),
    }[name]()


def optuna_storage(scfg, st, name: str):
    """Where the Optuna study lives: ``search.optuna_storage: experiment`` = ``<experiment>/optuna.db``
    (sqlite) or a database URL, so ``optuna-dashboard <url>`` opens it during and after a search; null
    (the default) = in memory, saved with Ray's searcher state. (A database outlives a killed driver and is
    then newer than Ray's snapshot of the searcher; OrderSearcher tolerates that, but the in-memory
    study is the one a resume restores exactly.)"""
    import optuna

    if scfg.optuna_storage is None:  # in memory, saved with Ray's searcher state (consistent with it on resume)
        return None, None
    if scfg.optuna_storage == "experiment":  # (an experiment on an object store: in memory)
        url = None if st.remote else f"sqlite:///{st.path('optuna.db')}"
    else:
        url = scfg.optuna_storage
    if url is None:
        return None, None
    # sqlite: wait for a lock instead of failing (optuna-dashboard may read while the search writes)
    kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs), url


def make_searcher(scfg, seed_points: list[list[str]], storage=None, study_name: str | None = None, prior=None):
    """The search's Ray Tune searcher: an Optuna sampler in ``OptunaSearch`` in ``OrderSearcher``;
    None for ``exhaustive`` (Ray's grid, see exhaustive.py). ``prior``: order_bo's transferability prior
    (search.transfer.OrderPrior), computed once by the driver."""
    if scfg.searcher == "exhaustive":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from search.searchers._base import OrderSearcher
    from search.trial import define

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = scfg.space()
    points = [space.encode(o) for o in seed_points]
    if points and scfg.hparams:  # a seed point fixes the order; its hparams take the middle of their range
        points = [{**p, **hparam_defaults(scfg, o)} for p, o in zip(points, seed_points)]
    inner = OptunaSearch(space=partial(define, space=space, hparams=scfg.hparams), metric="objective", mode="max",
                         sampler=sampler_for(scfg, prior), points_to_evaluate=points or None, storage=storage,
                         study_name=study_name)
    return OrderSearcher(inner, space, has_hparams=bool(scfg.hparams), seed=scfg.seed,
                         continue_stopped=scfg.scheduler.continue_stopped)


def hparam_defaults(scfg, order: list[str]) -> dict:
    out = {}
    for key, hp in scfg.hparams.items():
        for name in ([key.replace("*", t) for t in order] if "*" in key else [key]):
            if hp.choice is not None:
                out[name] = hp.choice[0]
            elif hp.int is not None:
                out[name] = (hp.int[0] + hp.int[1]) // 2
            else:
                lo, hi = hp.float
                out[name] = math.sqrt(lo * hi) if hp.log else (lo + hi) / 2
    return out
