"""When a search should stop itself: its own model says a longer one would not pay.

``order_bo`` answers "could an order the search did not finish beat its pick?" (``OrderBOSampler.unexplored``:
under the GP's joint posterior, the probability ``p_better`` that the best unfinished order scores above
the recommended one, and the expected gain of that best over it). ``search.stop`` turns that answer into
a termination rule, as Makarova et al. ("Automatic termination for hyperparameter optimization", AutoML
2022) stop Bayesian optimisation once the regret its model still allows is small: once ``min_trials``
trials have finished, the searcher proposes no new trial when ``p_better`` is below ``search.stop.p_better``
and/or the expected gain below ``search.stop.gain`` (every criterion given must hold). Trials already
running finish; ``itt resume EXP --more N`` runs N more past the rule. ``bench/stop_rule.py`` measures
where the rule stops on the benchmark tables and the regret it leaves.

``search.budget`` is the other way a search ends itself: once the trials' time (``device_hours``: each
trial's seconds x the GPUs or CPU cores it holds) or the search's wall-clock time (``hours``, over its
sessions) reaches the budget, no new trial starts; running ones finish, so the search overshoots by at
most their remaining time.
"""

from __future__ import annotations


def given(rule) -> dict:
    """The criteria a ``search.stop`` sets (p_better, gain), without the unset one."""
    return {k: v for k, v in (("p_better", rule.p_better), ("gain", rule.gain)) if v is not None}


def describe(criteria: dict) -> str:
    """``p_better 0.05, gain 0.002``: the criteria as the console, ``itt space`` and the report name them."""
    return ", ".join(f"{k} {v:g}" for k, v in criteria.items())


def reason(rule, unexplored: dict | None, finished: int) -> dict | None:
    """The rule's verdict on the searcher's latest answer: a dict (what held) when the search should stop,
    else None. ``rule``: ``search.config.Stop``; ``finished``: trials with a final score so far."""
    if rule is None or unexplored is None or finished < rule.min_trials:
        return None
    p, gain = unexplored["p_better"], unexplored["expected_gain"]
    if rule.p_better is not None and not p < rule.p_better:
        return None
    if rule.gain is not None and not gain < rule.gain:
        return None
    return {"finished": finished, "p_better": p, "expected_gain": gain, "unfinished": unexplored["orders"],
            "of": unexplored["of"], "rule": given(rule)}


def budget_reason(budget, spent: dict, finished: int) -> dict | None:
    """``search.budget``'s verdict: a dict (what was spent of what) once any budget given is used up, else None.
    ``spent``: {"device_hours": ..., "hours": ...} so far, running trials included."""
    if budget is None:
        return None
    limits = budget_limits(budget)
    if not any(spent[k] >= v for k, v in limits.items()):
        return None
    return {"by": "budget", "finished": finished, "rule": limits, "spent": {k: round(spent[k], 4) for k in limits}}


def budget_text(budget, spent: dict) -> str:
    """``budget: 3.2 of 200 device-hours``: the progress lines' view of ``search.budget`` (empty once lifted)."""
    return "" if budget is None else "budget: " + _used(budget_limits(budget), spent)


def budget_limits(budget) -> dict[str, float]:
    """The budgets a ``search.budget`` gives: {"device_hours": ..., "hours": ...} without the unset one."""
    return {k: v for k, v in (("device_hours", budget.device_hours), ("hours", budget.hours)) if v is not None}


def _used(limits: dict, spent: dict) -> str:
    return ", ".join(f"{spent[k]:.3g} of {v:.3g} {k.replace('_', '-')}" for k, v in limits.items())


def text(stop: dict) -> str:
    """One console line: why the search stopped itself (``stop``: ``reason``'s or ``budget_reason``'s verdict,
    with the ``pick``)."""
    if stop.get("by") == "budget":
        return (f"the search stopped itself after {stop['finished']} finished trials (search.budget): "
                f"{_used(stop['rule'], stop['spent'])} spent; "
                f"trials already running finished, no new one started")
    said = []
    if "p_better" in stop["rule"]:
        said.append(f"P = {stop['p_better']:.3g} < {stop['rule']['p_better']:g}")
    if "gain" in stop["rule"]:
        said.append(f"expected gain {stop['expected_gain']:.4g} < {stop['rule']['gain']:g}")
    return (f"the search stopped itself after {stop['finished']} finished trials (search.stop): under the searcher's "
            f"model an order it did not finish ({stop['unfinished']} of {stop['of']}) beats {stop['pick'] or 'F'} with "
            f"{' and '.join(said)}; trials already running finished, no new one started")
