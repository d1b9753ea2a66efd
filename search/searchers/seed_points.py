"""Orders a search evaluates first (``search.seed_points``): F, each single task, given orders, heuristics."""

from __future__ import annotations

from itt.errors import ConfigError
from search.space import order_key


def given_orders(scfg) -> list[list[str]]:
    """The seed points that need no measurement: F, each single task, the orders the config lists."""
    sp, space, out = scfg.seed_points, scfg.space(), []
    if sp.baseline:
        out.append([])
    if sp.singles:
        out += [[t] for t in scfg.candidates if space.is_valid([t])]
    return out + [list(o) for o in sp.orders]


def seed_point_orders(scfg, chain=None, log=print, prior=None) -> list[list[str]]:
    """``prior``: the transferability prior (search.transfer.OrderPrior) when the driver has one already."""
    sp, space, out = scfg.seed_points, scfg.space(), given_orders(scfg)
    if sp.heuristics and chain is None:
        raise ConfigError("search.seed_points.heuristics: the chain config is needed to compute them")
    for kind in sp.heuristics:  # curriculum / similarity orders (search/heuristics.py), one per length
        from search.heuristics import heuristic

        if kind == "transferability":  # the prior's best order of each length (search/transfer.py)
            from search.transfer import best_orders, order_prior

            p = prior if prior is not None else order_prior(scfg, chain)
            best = best_orders(p, space, 0, per_length=True)
            log(f"seed points (transferability prior): {', '.join(order_key(o) for o in best) or 'none in the space'}")
            out += best
            continue
        h = heuristic(kind, scfg, chain, from_exp=sp.heuristics_from, log=lambda *a: None)
        log(f"seed points ({kind}, {h['source']}): {', '.join(order_key(o) for o in h['orders']) or 'none in the space'}")
        out += h["orders"]
    seen, uniq = set(), []
    for o in out:
        if tuple(o) not in seen:
            seen.add(tuple(o))
            uniq.append(o)
    return uniq
