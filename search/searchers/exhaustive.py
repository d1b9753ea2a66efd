"""``exhaustive``: Ray's grid over every order of the space, each exactly once."""

from __future__ import annotations

import random

from itt.errors import ConfigError
from search.space import order_key


def exhaustive_param_space(scfg, seed_points: list[list[str]]) -> dict:
    """Every order exactly once (seed points first, the rest shuffled by the search seed: a search
    cut short must not cover only the first tasks' orders); hyperparameters sampled by Ray."""
    from ray import tune

    if any("*" in k for k in scfg.hparams):
        raise ConfigError("search: per-stage hparams ('stages.*.X') need an Optuna searcher, not 'exhaustive'")
    rest = [o for o in scfg.space().orders() if o not in seed_points]
    random.Random(scfg.seed).shuffle(rest)
    ps: dict = {"order": tune.grid_search([order_key(o) for o in seed_points + rest])}
    for k, hp in scfg.hparams.items():
        if hp.choice is not None:
            ps[k] = tune.choice(hp.choice)
        elif hp.int is not None:
            ps[k] = (tune.lograndint if hp.log else tune.randint)(hp.int[0], hp.int[1] + 1)
        else:
            ps[k] = tune.loguniform(*hp.float) if hp.log else tune.uniform(*hp.float)
    return ps


def exhaustive_search_alg(scfg, max_concurrent: int):
    """Ray's grid runner, seeded: the hyperparameters it draws for each order come from the search seed
    (Ray's default draws from numpy's global state, so a search's values changed with whatever ran
    before it in the process)."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(max_concurrent=max_concurrent, random_state=scfg.seed)
