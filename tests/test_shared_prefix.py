"""The position and precedence tests for orders that share a trained prefix (search/shared_prefix.py)."""

import itertools

import numpy as np
import pandas as pd
import pytest

from search import shared_prefix, stats


def _search(rng, seeds=3, prefix=(2e-4, 5e-4, 5e-4), seed_var=3e-3, member=0.0, effect=0.0, n_orders=60):
    """Per-seed scores of orders of 3 of 5 tasks, prefix draws shared as the stage cache shares them."""
    orders = list(itertools.permutations("abcde", 3))[:n_orders]
    task = dict(zip("abcde", rng.normal(0, member, 5)))
    rows = []
    for s in range(seeds):
        drawn = {}
        for o in orders:
            shared = sum(drawn.setdefault(o[:k], rng.normal(0, v ** 0.5)) for k, v in enumerate(prefix))
            y = sum(task[t] for t in o) + shared + rng.normal(0, (seed_var - sum(prefix)) ** 0.5) + effect * (o[0] == "a")
            rows.append({"order": ">".join(o), "seed": s, "mean": y})
    return pd.DataFrame(rows)


def test_prefix_covariances_against_a_loop_and_the_truth():
    """C_k equals the moment estimator written as a loop over pairs of orders and seeds (with a missing
    seed, so the weights differ between pairs), and on a large simulated search it recovers the planted
    cumulative prefix variances."""
    rng = np.random.default_rng(0)
    fig = _search(rng, seeds=4)
    fig = fig[~((fig["order"] == "a>b>c") & (fig["seed"] == 3))]  # one order lacks a seed
    names, Y = shared_prefix.per_seed_matrix(fig)
    orders = [tuple(o.split(">")) for o in names]
    pc = shared_prefix.PrefixCovariance(orders, Y)
    num, den = np.zeros(4), np.zeros(4)
    seeds = [set(np.flatnonzero(~np.isnan(row))) for row in Y]
    mean = [np.nanmean(row) for row in Y]
    for i, j in itertools.combinations(range(len(orders)), 2):
        k = shared_prefix.common_prefix(orders[i], orders[j])
        ni, nj, common = len(seeds[i]), len(seeds[j]), seeds[i] & seeds[j]
        for s in common:
            num[k] += (Y[i, s] - mean[i]) * (Y[j, s] - mean[j])
            den[k] += 1 - 1 / ni - 1 / nj + len(common) / (ni * nj)
    raw = num[:3] / den[:3]
    assert np.allclose(pc.C[:3], np.maximum.accumulate(np.clip(raw[:3], 0, None)))  # (no two orders share 3 stages)
    names, Y = shared_prefix.per_seed_matrix(_search(np.random.default_rng(1), seeds=100, prefix=(2e-4, 5e-4, 1e-3)))
    pc = shared_prefix.PrefixCovariance([tuple(o.split(">")) for o in names], Y)
    assert pc.C[0] == pytest.approx(2e-4, rel=0.5)  # (one draw per seed: 100 of them)
    assert pc.C[1:3] == pytest.approx([7e-4, 1.7e-3], rel=0.25)
    assert pc.V == pytest.approx(3e-3, rel=0.1)


def test_groups_test_is_gls_with_the_estimated_covariance():
    """The Wald F equals the drop in the whitened residual sum of squares when the groups are made equal
    (a second computation of GLS: Cholesky whitening and least squares), with its covariance built here
    from C_k, V and tau^2 entry by entry."""
    rng = np.random.default_rng(2)
    fig = _search(rng, member=0.05, effect=0.02)
    names, Y = shared_prefix.per_seed_matrix(fig)
    orders = [tuple(o.split(">")) for o in names]
    pc = shared_prefix.PrefixCovariance(orders, Y)
    groups = [[i for i, o in enumerate(orders) if "a" in o and o.index("a") == p] for p in range(3)]
    holds = np.array([[t in o for t in "bcde"] for o in orders], float)
    r = shared_prefix.groups_test(pc, groups, holds)
    idx = [i for g in groups for i in g]
    n = len(idx)
    Sigma = np.empty((n, n))
    for a, i in enumerate(idx):
        for b, j in enumerate(idx):
            if i == j:
                Sigma[a, b] = r["tau2"] + pc.V / 3
            else:
                Sigma[a, b] = pc.C[shared_prefix.common_prefix(orders[i], orders[j])] * 3 / 9
    D = np.zeros((n, 3))
    for gi, g in enumerate(groups):
        D[[idx.index(i) for i in g], gi] = 1
    X = np.hstack([D, holds[idx][:, :-1]])  # (the last task's column is implied: every order holds 3 tasks)
    W = np.linalg.inv(np.linalg.cholesky(Sigma))
    y = pc.mean[idx]
    rss = lambda M: float(np.sum((W @ y - W @ M @ np.linalg.lstsq(W @ M, W @ y, rcond=None)[0]) ** 2))  # noqa: E731
    restricted = np.hstack([D.sum(1, keepdims=True), holds[idx][:, :-1]])
    assert r["F"] == pytest.approx((rss(restricted) - rss(X)) / 2, rel=1e-8)
    assert r["df"][0] == 2
    # the Satterthwaite df rest on V and each C_k written as quadratic forms of the per-seed scores
    obs, Q = pc.forms()
    y = Y[obs[:, 0], obs[:, 1]]
    assert [float(y @ q @ y) for q in Q] == pytest.approx([pc.V, *pc.C], rel=1e-9, abs=1e-15)


def _small_search(rng, seeds=3, prefix=(1e-4, 9e-4, 9e-4), seed_var=3e-3, effect=0.0):
    """The 16 orders of 1 or 2 of 4 tasks, each order's own deviation sd 0.02; ``effect``: a first in
    an order of two."""
    orders = [o for n in (1, 2) for o in itertools.permutations("abcd", n)]
    own = rng.normal(0, 0.02, len(orders))
    Y = np.empty((len(orders), seeds))
    for s in range(seeds):
        drawn = {}
        for i, o in enumerate(orders):
            shared = sum(drawn.setdefault(o[:k], rng.normal(0, prefix[k] ** 0.5)) for k in range(len(o) + 1))
            noise = rng.normal(0, (seed_var - sum(prefix[:len(o) + 1])) ** 0.5)
            Y[i, s] = own[i] + shared + noise + effect * (len(o) == 2 and o[0] == "a")
    return orders, Y


def test_groups_test_holds_its_level_where_tau2_rests_on_few_orders():
    """Task a first or second among the orders of two (3 orders each, the other task adjusted for: 2
    residual df): V and C_k rest on the 16 orders' seeds, tau^2 on those 2 df. With the residual df as the
    F test's denominator df it rejected 0.3% of null searches at alpha 0.05 (and found a planted effect of
    0.05 in 3%); the Satterthwaite df hold the level (and find it in about a fifth)."""
    rng = np.random.default_rng(5)
    hits = {0.0: 0, 0.05: 0}
    for effect, searches in ((0.0, 400), (0.05, 200)):
        for _ in range(searches):
            orders, Y = _small_search(rng, effect=effect)
            pc = shared_prefix.PrefixCovariance(orders, Y)
            groups = [[i for i, o in enumerate(orders) if len(o) == 2 and "a" in o and o.index("a") == p] for p in (0, 1)]
            holds = np.array([[t in o for t in "bcd"] for o in orders], float)
            hits[effect] += shared_prefix.groups_test(pc, groups, holds)["p"] < 0.05
    assert 0.025 <= hits[0.0] / 400 <= 0.08 and hits[0.05] >= 24, hits


def test_past_its_size_limit_the_test_takes_the_residual_df_and_says_so(monkeypatch):
    """Satterthwaite's df cost O(scores^3): past SATTERTHWAITE_MAX scores the residual df (orders minus fixed
    effects), named in the result (the report's F line adds "residual df")."""
    rng = np.random.default_rng(5)
    orders, Y = _small_search(rng, effect=0.0)
    pc = shared_prefix.PrefixCovariance(orders, Y)
    groups = [[i for i, o in enumerate(orders) if len(o) == 2 and "a" in o and o.index("a") == p] for p in (0, 1)]
    holds = np.array([[t in o for t in "bcd"] for o in orders], float)
    full = shared_prefix.groups_test(pc, groups, holds)
    monkeypatch.setattr(shared_prefix, "SATTERTHWAITE_MAX", int((~np.isnan(Y)).sum()) - 1)
    cut = shared_prefix.groups_test(pc, groups, holds)
    assert full["df_by"] == "Satterthwaite" and cut["df_by"] == "residual"
    assert cut["df"] == [1, 2.0] and cut["F"] == full["F"] and cut["df"][1] != full["df"][1]  # 6 orders, 4 fixed effects


def test_position_tests_hold_their_level_where_orders_share_prefixes():
    """With no position effect and strong prefix sharing (15% of a seed's variance on each of the first
    two prefixes), the rank tests that take orders as independent units call some task's position
    significant far more often than alpha; the GLS tests stay near it; with task-membership effects as
    large as toy3's, GLS still finds a planted position effect the rank tests miss."""
    rng = np.random.default_rng(3)
    strong = (1.7e-4, 4.5e-4, 4.5e-4)
    hits = {"gls": 0, "rank": 0}
    for _ in range(80):
        fig = _search(rng, prefix=strong)
        means = fig.groupby("order")["mean"].mean().to_dict()
        for name, rank_only in (("gls", False), ("rank", True)):
            hits[name] += any(t.get("significant") for t in stats._positions(fig, means, 0.05, rank_only)["tests"])
    assert hits["gls"] <= 8 and hits["rank"] >= 2 * max(hits["gls"], 5), hits
    power = {"gls": 0, "rank": 0}
    for _ in range(40):
        fig = _search(rng, seeds=5, member=0.1, effect=0.04)
        means = fig.groupby("order")["mean"].mean().to_dict()
        for name, rank_only in (("gls", False), ("rank", True)):
            power[name] += any(t.get("significant") for t in stats._positions(fig, means, 0.05, rank_only)["tests"])
    assert power["gls"] >= 15 and power["rank"] <= 4, power


def test_one_seed_per_order_falls_back_to_rank_tests_and_says_so():
    """With one seed per order the prefix covariance cannot be estimated: the rank tests run, and the
    section carries the caveat; with seeds, the report gives the prefix correlations instead."""
    from search.report import _dependence

    fig = _search(np.random.default_rng(4), seeds=1)
    means = fig.groupby("order")["mean"].mean().to_dict()
    pos = stats._positions(fig, means, 0.05)
    assert pos["caveat"] == stats.SHARED_PREFIX and "rank test" in pos["method"]
    assert all("F" not in t for t in pos["tests"])
    assert _dependence(pos).startswith("Orders that share a trained prefix")
    fig = _search(np.random.default_rng(4), seeds=3)
    pre = stats._precedence(fig, fig.groupby("order")["mean"].mean().to_dict(), 0.05)
    assert pre["caveat"] is None and "GLS" in pre["method"]
    assert all("diff_adjusted" in p and "p_holm" in p for p in pre["pairs"])
    assert _dependence(pre).startswith("Correlation of two different orders' scores on one seed")


def test_the_calibration_bench_runs_every_scenario(capsys):
    """bench/prefix_tests_calibration.py on two searches per scenario: a row for each of its 20 scenarios,
    four shares in [0, 1] each."""
    import importlib
    import sys

    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        importlib.import_module("prefix_tests_calibration").main(["--searches", "2"])
    finally:
        sys.path.remove(str(ROOT / "bench"))
    rows = [line for line in capsys.readouterr().out.splitlines() if "| position:" in line and "gls" not in line]
    assert len(rows) == 20
    for line in rows:
        shares = [float(x) for part in line.split("|")[1:] for x in part.split(":")[1].split()]
        assert len(shares) == 4 and all(0.0 <= x <= 1.0 for x in shares), line
