"""Which order is best, and how sure (search/ranking.py): P(best) against Monte Carlo and quadrature,
the posterior against its closed form on the report's variance components, calibration and the
credible set's coverage on simulated searches, the degenerate cases, and the report's section."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy import stats as sps

from search import ranking as R
from search import stats as S
from tests.test_power import _fig
from tests.test_report import reported_fake


def test_p_best_against_monte_carlo_and_quadrature():
    rng = np.random.default_rng(3)
    mean, sd = rng.normal(0.6, 0.01, 12), rng.uniform(0.002, 0.008, 12)
    p = R.p_best(mean, sd)
    assert p.sum() == pytest.approx(1.0, abs=1e-9) and (p >= 0).all()
    draws = rng.normal(mean, sd, (300_000, 12))
    mc = np.bincount(draws.argmax(axis=1), minlength=12) / len(draws)
    assert np.abs(mc - p).max() < 5 * np.sqrt(p * (1 - p) / len(draws)).max()
    i = int(np.argmax(p))
    f = lambda x: sps.norm.pdf(x, mean[i], sd[i]) * np.prod(  # noqa: E731
        [sps.norm.cdf(x, mean[j], sd[j]) for j in range(12) if j != i])
    assert p[i] == pytest.approx(integrate.quad(f, 0.5, 0.7, points=[mean[i]], limit=200)[0], abs=1e-6)
    # a posterior far narrower than the spread of means: the grid still resolves it
    p = R.p_best(np.array([0.0, 1.0, 1.0 + 1e-4]), np.array([1e-5, 1e-5, 1e-5]))
    assert p == pytest.approx([0.0, 0.0, 1.0], abs=1e-6)


def test_posterior_given_sigma_and_tau_is_the_closed_form():
    ybar, n = np.array([0.61, 0.64, 0.58, 0.66]), np.array([3.0, 2.0, 3.0, 1.0])
    post = R.posterior(ybar, n, sigma=0.02, tau=0.03)
    v = 0.02 ** 2 / n
    w = 1 / (0.03 ** 2 + v)
    mu = (w * ybar).sum() / w.sum()
    b = 0.03 ** 2 / (0.03 ** 2 + v)
    assert post["mu"] == pytest.approx(mu)
    assert post["mean"] == pytest.approx(mu + b * (ybar - mu)) and post["sd"] == pytest.approx(np.sqrt(b * v))


def test_hyperparameter_draws_follow_their_posterior():
    """The grid's (sigma, tau) draws against the same posterior integrated by scipy: the posterior mean of
    tau by quadrature over tau and sigma (an independent computation of BDA3 5.21 with sigma unknown)."""
    rng = np.random.default_rng(2)
    k, n_seeds = 6, 3
    y = rng.normal(0, 0.02, k)[:, None] + rng.normal(0, 0.02, (k, n_seeds))
    ybar, n = y.mean(axis=1), np.full(k, float(n_seeds))
    ssw, dfw = float(((y - ybar[:, None]) ** 2).sum()), k * (n_seeds - 1)
    sig, tau = R.hyper_draws(ybar, n, ssw, dfw, draws=400)
    scale = np.sqrt(ssw / dfw) / np.sqrt(n_seeds)

    def post(t, s):
        w = 1 / (s ** 2 / n + t ** 2)
        mu = (w * ybar).sum() / w.sum()
        return (w.sum() ** -0.5 * np.prod(np.sqrt(w)) * np.exp(-0.5 * (w * (ybar - mu) ** 2).sum())
                * s ** -(dfw + 1) * np.exp(-ssw / (2 * s ** 2)) / (1 + (t / scale) ** 2))

    s_hat = np.sqrt(ssw / dfw)
    box = dict(a=0.2 * s_hat, b=3 * s_hat, gfun=lambda s: 0.0, hfun=lambda s: 6 * max(ybar.std(ddof=1), s_hat / np.sqrt(3)))
    z = integrate.dblquad(lambda t, s: post(t, s), box["a"], box["b"], box["gfun"], box["hfun"])[0]
    e_tau = integrate.dblquad(lambda t, s: t * post(t, s), box["a"], box["b"], box["gfun"], box["hfun"])[0] / z
    e_sig = integrate.dblquad(lambda t, s: s * post(t, s), box["a"], box["b"], box["gfun"], box["hfun"])[0] / z
    assert tau.mean() == pytest.approx(e_tau, rel=0.03) and sig.mean() == pytest.approx(e_sig, rel=0.02)


def test_analyse_leaves_f_out_and_its_set_and_curse_follow_from_the_rows():
    rng = np.random.default_rng(4)
    fig = _fig(rng, k=7, n=3, ratio=1.5).drop(index=[0, 4])  # unequal seeds: t0 and t1 keep 2
    r = R.analyse(fig)
    assert S.F not in {x["order"] for x in r["rows"]} and r["orders"] == 7
    assert {x["order"]: x["n_seeds"] for x in r["rows"]}["t0"] == 2
    ps = [x["p_best"] for x in r["rows"]]
    assert ps == sorted(ps, reverse=True) and sum(ps) == pytest.approx(1.0)
    k = len(r["set"])  # the fewest orders reaching 95%
    assert sum(ps[:k]) >= 0.95 > sum(ps[:k - 1]) and r["set_p"] == pytest.approx(sum(ps[:k]))
    top = max(r["rows"], key=lambda x: x["observed"])
    assert r["top_observed"] == top["order"] and r["curse"] == pytest.approx(top["observed"] - top["shrunk"])
    assert R.analyse(fig) == r  # deterministic: the same data, the same figures


def test_calibrated_on_simulated_searches_and_the_set_covers_the_true_best():
    """200 searches of 10 orders x 3 seeds under the model (tau = sigma): where P(best) says p, the order
    is the true best about p of the time (the figures bench/ranking_calibration.py prints); the
    95% set holds the true best in at least 95% of them; the shrunk score of the top order is nearer its
    true score than its mean (the winner's curse removed)."""
    rng = np.random.default_rng(11)
    pred, hit, covered, used, raw, shrunk = [], [], 0, 0, [], []
    for _ in range(200):
        truth = rng.normal(0, 1, 10)
        fig = pd.DataFrame([(f"o{i}", s, truth[i] + rng.normal()) for i in range(10) for s in range(3)],
                           columns=["order", "seed", "mean"])
        r = R.analyse(fig)
        used += 1
        best = f"o{int(truth.argmax())}"
        pred += [x["p_best"] for x in r["rows"]]
        hit += [x["order"] == best for x in r["rows"]]
        covered += best in r["set"]
        top = max(r["rows"], key=lambda x: x["observed"])
        t = truth[int(top["order"][1:])]
        raw.append((top["observed"] - t) ** 2)
        shrunk.append((top["shrunk"] - t) ** 2)
    pred, hit = np.array(pred), np.array(hit)
    for lo, hi, tol in ((0, 0.2, 0.03), (0.2, 0.6, 0.05), (0.6, 1.01, 0.08)):
        m = (pred >= lo) & (pred < hi)
        assert m.sum() >= 50 and abs(hit[m].mean() - pred[m].mean()) < tol, (lo, hit[m].mean(), pred[m].mean())
    # coverage: 95% nominal; the binomial 99% lower bound for 200 tables is about 0.915
    assert covered / used >= sps.binom.ppf(0.01, used, 0.95) / used
    assert np.mean(shrunk) < 0.8 * np.mean(raw)


def test_one_seed_or_no_noise_claims_no_ranking_and_no_spread_claims_no_winner():
    one = pd.DataFrame([(f"o{i}", 0, 0.5 + 0.01 * i) for i in range(5)], columns=["order", "seed", "mean"])
    assert "2+ seeds" in R.analyse(one)["underpowered"]
    flat = pd.DataFrame([(f"o{i}", s, 0.5 + 0.01 * i) for i in range(5) for s in range(3)], columns=["order", "seed", "mean"])
    assert "identical scores" in R.analyse(flat)["underpowered"]
    rng = np.random.default_rng(0)  # 8 orders alike but for seed noise: no order is likely the best
    none = pd.DataFrame([(f"o{i}", s, 0.5 + rng.normal(0, 0.02)) for i in range(8) for s in range(3)],
                        columns=["order", "seed", "mean"])
    r = R.analyse(none)
    assert r["rows"][0]["p_best"] < 0.4 and len(r["set"]) >= 6


def test_report_section_leaderboard_console_and_metrics(tmp_path, capsys):
    exp, tidy, out = reported_fake(tmp_path, capsys)
    res = json.loads((exp / "report" / "report.json").read_text())
    bo = res["best_order"]
    fig = S.seed_figures(tidy)
    again = R.analyse(fig)
    assert [x["order"] for x in bo["rows"]] == [x["order"] for x in again["rows"]]
    assert [x["p_best"] for x in bo["rows"]] == pytest.approx([x["p_best"] for x in again["rows"]])
    board = {r["order"]: r for r in res["leaderboard"]}
    for x in bo["rows"]:
        assert (board[x["order"]]["p_best"], board[x["order"]]["shrunk"]) == pytest.approx((x["p_best"], x["shrunk"]))
    assert board[S.F]["p_best"] is None
    lead = bo["rows"][0]
    assert f"{S.show(lead['order'])} is the best with probability {lead['p_best']:.2f}" in out
    md = (exp / "report" / "report.md").read_text()
    assert "## Which order is best, and how sure?" in md and "| P(best) |" in md
    from search.report import headline_metrics

    m = headline_metrics(res)
    assert m["report_best_p_best"] == pytest.approx(lead["p_best"]) and m["report_best_set_size"] == len(bo["set"])
    # per language: the same model on that language's per-seed scores
    for r in res["by_language"]["per_language"]:
        one = tidy[tidy["language"] == r["language"]].rename(columns={"score": "mean"})
        got = {x["order"]: x["p_best"] for x in R.analyse(one, draws=20)["rows"]}
        assert r["p_best_there"] == pytest.approx(got[r["best_order"]])
        assert r["overall_p_best_there"] == pytest.approx(got[res["by_language"]["overall_best"]])
    assert "| its P(best) |" in md
    # the searcher's own recommendation (order_bo's GP, summary.json) beside it, with its P(best) here
    from search.report import best_order_section, load_experiment, searcher_pick

    other = bo["rows"][1]
    assert searcher_pick(load_experiment(str(exp))) is None  # no summary.json: no searcher's model
    (exp / "summary.json").write_text(json.dumps({"searcher": "auto", "recommended": {
        "order": other["order"], "hparams": {}, "mean": 0.61, "lo": 0.6, "hi": 0.62}}))
    bo["searcher"] = searcher_pick(load_experiment(str(exp)))
    assert bo["searcher"] == {"searcher": "order_bo", "order": other["order"], "mean": 0.61, "lo": 0.6, "hi": 0.62}
    md = best_order_section(bo)[1]
    assert (f"The searcher's own model (order_bo: a GP over order features, on the dev score it optimised) recommends "
            f"{S.show(other['order'])} (posterior mean 0.6100, 95% [0.6000, 0.6200]); here its P(best) is "
            f"{other['p_best']:.3f}.") in md
    assert "did not finish" not in md  # (summary.json without order_bo's unexplored figure: nothing said)
    assert "By their evidence" not in md  # (no positions weights: nothing said)
    u = {"orders": 7, "of": 20, "p_better": 0.3, "expected_gain": 0.0042, "most_likely": "tb>ta", "p_most_likely": 0.12}
    (exp / "summary.json").write_text(json.dumps({"searcher": "auto", "recommended": {
        "order": other["order"], "hparams": {}, "mean": 0.61, "lo": 0.6, "hi": 0.62, "unexplored": u,
        "positions": {"from_end": 0.0312, "from_start": 0.9688}}}))
    bo["searcher"] = searcher_pick(load_experiment(str(exp)))
    md = best_order_section(bo)[1]
    assert ("The orders the search did not finish (7 of 20) could hold a better one: under that model with "
            "probability 0.30 (expected gain +0.0042; most likely tb>ta, 0.12)") in md
    assert ("By their evidence, its GP over each task's depth from the end weighs 0.03 and the one that also sees "
            "each task's position from the start 0.97") in md


# ---------------------------------------------------------------- the structured model
def _orders(rng, m: int, tasks=("a", "b", "c", "d", "e")) -> list[str]:
    space = [">".join(p) for k in (1, 2, 3) for p in itertools.permutations(tasks, k)]
    return [space[i] for i in rng.choice(len(space), m, replace=False)]


def test_woodbury_and_dense_paths_match_numpy():
    """log|C| and V^T C^-1 V for C = G G^T + diag(a), through Woodbury (few columns) and Cholesky (many),
    against numpy's slogdet and solve."""
    rng = np.random.default_rng(5)
    for r in (3, 25):  # 3 < 12 rows: Woodbury; 25: the dense Cholesky
        G, a, V = rng.normal(size=(12, r)), rng.uniform(0.1, 1.0, 12), rng.normal(size=(12, 2))
        C = G @ G.T + np.diag(a)
        logdet, q = R._log_det_and_quad(a, G, V)
        assert logdet == pytest.approx(np.linalg.slogdet(C)[1], rel=1e-10)
        assert q == pytest.approx(V.T @ np.linalg.solve(C, V), rel=1e-9)


def test_log_posterior_is_the_restricted_likelihood_with_mu_integrated_numerically():
    """Differences of the log posterior between two hyperparameter points against an independent
    computation: the order means' normal density integrated over mu by quadrature, times the seeds'
    within-order likelihood and the priors (constants cancel in the difference)."""
    rng = np.random.default_rng(6)
    orders = _orders(rng, 10)
    Fs = R.factors(orders)  # (all of length 3: three blocks, ``start`` being ``where`` read backwards)
    assert len(Fs) == 3
    Ks = R.kernels(Fs)
    n = rng.integers(2, 4, 10).astype(float)
    ybar, ssw, dfw, scale = rng.normal(0.6, 0.03, 10), 0.004, int((n - 1).sum()), 0.02

    def independent(x):
        s2, t2 = np.exp(x[0]), np.exp(x[1:])
        C = sum(t * K for t, K in zip(t2, Ks)) + np.diag(s2 / n)
        marginal = integrate.quad(lambda mu: sps.multivariate_normal.pdf(ybar, mu * np.ones(10), C), 0.3, 0.9,
                                  points=[ybar.mean()], epsabs=0, epsrel=1e-10, limit=200)[0]
        tau = np.sqrt(t2) / scale
        return (np.log(marginal) - 0.5 * dfw * x[0] - ssw / (2 * s2)
                + np.sum(np.log(tau) - np.log1p(tau ** 2)))

    x1, x2 = np.log([4e-4, 1e-4, 3e-5, 1e-5, 2e-4]), np.log([2e-4, 5e-4, 1e-5, 4e-5, 1e-5])
    got = R.log_posterior(x1, ybar, n, ssw, dfw, Fs, scale) - R.log_posterior(x2, ybar, n, ssw, dfw, Fs, scale)
    assert got == pytest.approx(independent(x1) - independent(x2), rel=1e-6)


def test_conditional_is_gaussian_conditioning_with_mu_as_a_variable():
    """The joint posterior of the true scores given the variances against the information form with mu
    an explicit variable: theta = mu + u, u ~ N(0, K), mu ~ N(0, 1e12) (the flat prior's limit), ybar =
    theta + noise; posterior precision of (mu, u) = prior precision + H^T D^-1 H, H = [1 | I]."""
    rng = np.random.default_rng(7)
    orders = _orders(rng, 8)
    Ks, n = R.kernels(R.factors(orders)), rng.integers(1, 4, 8).astype(float)
    ybar, s2, t2 = rng.normal(0.6, 0.03, 8), 3e-4, np.array([2e-4, 1e-4, 5e-5, 3e-5])
    mean, cov = R.conditional(ybar, n, Ks, s2, t2)
    K = sum(t * k for t, k in zip(t2, Ks))
    H, Dinv = np.hstack([np.ones((8, 1)), np.eye(8)]), np.diag(n / s2)
    prior = np.zeros((9, 9))
    prior[0, 0], prior[1:, 1:] = 1e-12, np.linalg.inv(K)
    S = np.linalg.inv(prior + H.T @ Dinv @ H)
    assert mean == pytest.approx(H @ S @ H.T @ Dinv @ ybar, abs=1e-9)
    assert cov == pytest.approx(H @ S @ H.T, abs=1e-10)


def test_auto_uses_the_structured_model_where_orders_share_tasks_and_is_deterministic():
    rng = np.random.default_rng(8)
    orders = _orders(rng, 12)
    fig = pd.DataFrame([(o, s, 0.6 + 0.01 * len(o) + rng.normal(0, 0.01)) for o in orders for s in range(2)],
                       columns=["order", "seed", "mean"])
    r = R.analyse(fig)
    assert r["model"] == "structured" and set(r["shares"]) == set(R.COMPONENTS)
    assert sum(r["shares"].values()) == pytest.approx(1.0) and r["ess"] > 20
    assert r["exchangeable"] == {k: v for k, v in r["exchangeable"].items()}  # what each order's seeds say alone
    alone = R.analyse(fig, model="exchangeable")
    assert alone["most_likely"] == r["exchangeable"]["most_likely"] and "exchangeable" not in alone
    ps = [x["p_best"] for x in r["rows"]]
    assert ps == sorted(ps, reverse=True) and sum(ps) == pytest.approx(1.0)
    assert R.analyse(fig) == r
    solo = fig.assign(order=fig["order"].map({o: f"t{i}" for i, o in enumerate(orders)}))  # nothing shared
    assert R.analyse(solo)["model"] == "exchangeable"
    few = fig[fig["order"].isin(orders[:R.MIN_STRUCTURED - 1])]  # too few orders to tell 4 variances apart
    assert R.analyse(few)["model"] == "exchangeable" and R.analyse(few, model="structured")["model"] == "structured"


def test_structured_model_finds_better_orders_with_sets_that_still_cover():
    """20 simulated searches of 30 orders over 5 tasks whose true scores are additive in their tasks and
    positions (plus a little of each order's own): the structured model's most likely order is truly
    better than the exchangeable model's on average, its 95% sets are smaller, and they hold the true
    best at least as often as the binomial 99% bound for 95% allows (bench/ranking_calibration.py has
    the full figures, on generators with effects neither model has a term for)."""
    rng = np.random.default_rng(9)
    tasks = ["a", "b", "c", "d", "e"]
    regret = {"structured": [], "exchangeable": []}
    sizes, covered = {"structured": [], "exchangeable": []}, 0
    for _ in range(20):
        main, pos = dict(zip(tasks, rng.normal(0, 0.02, 5))), {(t, d): rng.normal(0, 0.01) for t in tasks for d in range(3)}
        orders = _orders(rng, 30, tasks)
        truth = {o: sum(main[t] + pos[(t, len(o.split(">")) - 1 - i)] for i, t in enumerate(o.split(">")))
                 + rng.normal(0, 0.004) for o in orders}
        fig = pd.DataFrame([(o, s, v + rng.normal(0, 0.02)) for o, v in truth.items() for s in range(2)],
                           columns=["order", "seed", "mean"])
        best = max(truth, key=truth.get)
        for model in regret:
            r = R.analyse(fig, model=model)
            regret[model].append(truth[best] - truth[r["most_likely"]])
            sizes[model].append(len(r["set"]))
            covered += model == "structured" and best in r["set"]
    assert np.mean(regret["structured"]) < 0.9 * np.mean(regret["exchangeable"])  # (0.37-0.78 over 6 rng seeds)
    assert np.mean(sizes["structured"]) < np.mean(sizes["exchangeable"])
    assert covered >= sps.binom.ppf(0.01, 20, 0.95)


def test_structured_model_tells_position_from_the_start_from_depth_from_the_end():
    """Orders of 1-3 of 5 tasks whose true scores are the sum of (task, position) effects, the position
    counted from the start (a curriculum) or from the end (forgetting): the posterior share of the spread
    goes to the block that was planted, and the report's sentence names both; orders all of one length
    have no ``start`` block (a position from the start is then a depth from the end read backwards)."""
    tasks = ["a", "b", "c", "d", "e"]
    for seed, planted in ((0, "start"), (1, "where")):
        rng = np.random.default_rng(seed)
        eff = {(t, p): rng.normal(0, 0.03) for t in tasks for p in range(3)}

        def truth(o: str) -> float:
            ts = o.split(">")
            return 0.6 + sum(eff[(t, i if planted == "start" else len(ts) - 1 - i)] for i, t in enumerate(ts))

        orders = _orders(rng, 40, tasks)
        fig = pd.DataFrame([(o, s, truth(o) + rng.normal(0, 0.01)) for o in orders for s in range(2)],
                           columns=["order", "seed", "mean"])
        r = R.analyse(fig, model="structured")
        other = "where" if planted == "start" else "start"
        assert r["shares"][planted] > 0.5 and r["shares"][other] < 0.1, (planted, r["shares"])
        lo, hi = r["share_intervals"][planted]
        assert lo > r["share_intervals"][other][1] and lo <= r["shares"][planted] <= hi  # told apart, not by the prior
        assert "counted from the end" in R.shares_text(r) and "counted from the start" in R.shares_text(r)
    width = lambda r: np.mean([hi - lo for lo, hi in r["share_intervals"].values()])  # noqa: E731
    few = R.analyse(fig[fig["order"].isin(orders[:6])], model="structured")  # 6 orders: the prior speaks
    assert width(few) > 1.5 * width(r) and "90% intervals" in R.shares_text(few)
    three = [o for o in orders if o.count(">") == 2]
    r = R.analyse(fig[fig["order"].isin(three)], model="structured")
    assert set(r["shares"]) == {"which", "where", "precedes", "order"}
    assert "where each sits " in R.shares_text(r) and "counted from" not in R.shares_text(r)


def test_weight_draws_match_the_function_space_posterior(monkeypatch):
    """The pick's and two unfinished orders' joint draws (weight space: feature effects, then own
    effects) against the function-space posterior over all three, the unfinished ones entered with no
    data (seed noise 1e12 times larger): means and covariances within Monte Carlo error."""
    rng = np.random.default_rng(10)
    tasks = ["a", "b", "c", "d"]
    space = [">".join(p) for k in (1, 2) for p in itertools.permutations(tasks, k)]
    orders, left = space[:10], space[10:12]
    n = rng.integers(1, 4, 10).astype(float)
    ybar, s2, t2 = rng.normal(0.6, 0.03, 10), 3e-4, np.array([2e-4, 1e-4, 8e-5, 5e-5, 3e-5])
    assert R.blocks_of(orders) == R.BLOCKS  # (orders of lengths 1 and 2: both positions, five variances)
    X_run, X_new = R._design(orders, left)
    monkeypatch.setattr(R, "PER_DRAW", 200_000)
    pick_d, new_d = R.weight_draws(X_run, X_new, ybar, n, s2, t2, 3, np.random.default_rng(0))
    d = np.column_stack([pick_d, new_d])
    Ks = [np.vstack([a, b]) @ np.vstack([a, b]).T for a, b in zip(X_run, X_new)] + [np.eye(12)]
    mean, cov = R.conditional(np.r_[ybar, 0.6, 0.6], np.r_[n, 1e-12, 1e-12], Ks, s2, t2)
    idx = [3, 10, 11]
    se = np.sqrt(np.diag(cov)[idx] / len(d))
    assert np.abs(d.mean(axis=0) - mean[idx]).max() < 5 * se.max()
    c, v = cov[np.ix_(idx, idx)], np.diag(cov)[idx]
    mc = 5 * np.sqrt((np.outer(v, v) + c ** 2) / len(d))  # 5 sds of a normal sample's covariance
    assert np.all(np.abs(np.cov(d.T) - c) < mc)


def test_unfinished_orders_the_space_leaves_and_its_probability_by_hand():
    """The report's question for any searcher: with the space given, ``unfinished`` counts the orders the
    search did not finish, its P(better) is the share of draws where their best beats the pick, and an
    order with a strong task the search never ran first (only later in orders) is the likeliest to beat
    it; with fewer than 20 finished orders it is not estimated."""
    rng = np.random.default_rng(12)
    tasks = ["a", "b", "c", "d", "e"]
    space = [">".join(p) for k in (1, 2, 3) for p in itertools.permutations(tasks, k)]
    run = [o for o in space if o != "e" and not o.startswith("e>")][:24]
    eff = {"a": 0.0, "b": 0.01, "c": 0.0, "d": -0.01, "e": 0.06}
    fig = pd.DataFrame([(o, s, 0.6 + sum(eff[t] for t in o.split(">")) + rng.normal(0, 0.005)) for o in run
                        for s in range(2)], columns=["order", "seed", "mean"])
    r = R.analyse(fig, space=space)
    u = r["unfinished"]
    assert u["orders"] == len(space) - len(run) and u["of"] == len(space)
    assert "e" in u["most_likely"].split(">") and 0 <= u["p_most_likely"] <= u["p_better"] <= 1
    assert u["expected_gain"] >= 0 and r["rows"] == R.analyse(fig)["rows"]  # the ranking itself is unchanged
    assert R.analyse(fig, space=run)["unfinished"] == {"orders": 0, "of": len(run), "draws": u["draws"],
                                                       "p_better": 0.0, "expected_gain": 0.0}
    few = fig[fig["order"].isin(run[:R.UNFINISHED_MIN - 1])]
    assert "19 finished IF orders" in R.analyse(few, space=space)["unfinished"]["underpowered"]


def test_report_asks_whether_an_unfinished_order_beats_the_pick(tmp_path, capsys):
    """With the search's config kept (tracking/config.yaml), the report predicts every order of its space:
    orders of up to 3 of 4 tasks (40 IF orders); the fake search finished F and 25 of them."""
    import yaml

    from search.cli import main
    from search.report import headline_metrics
    from tests.test_report import _fake_experiment, _orders as all_orders, _tidy

    done = [o for o in all_orders(lengths=(1, 2, 3)) if o != "tc>td"][:25]
    exp = _fake_experiment(tmp_path, _tidy(np.random.default_rng(5), delta=0.1, orders=[""] + done))
    (exp / "tracking").mkdir(exist_ok=True)
    (exp / "tracking" / "config.yaml").write_text(yaml.safe_dump(
        {"search": {"candidates": ["ta", "tb", "tc", "td"], "length": [0, 3]}}))
    assert main(["report", str(exp), "--no-heuristics"]) == 0
    out = capsys.readouterr().out
    res = json.loads((exp / "report" / "report.json").read_text())
    bo = res["best_order"]
    u = bo["unfinished"]
    assert (u["orders"], u["of"]) == (40 - 25, 40) and u["most_likely"] not in done
    assert f"Could an order the search did not finish beat {S.show(bo['most_likely'])}? 15 of the space's 40" in out
    assert f"--top set --add '{u['most_likely']}'" in out
    assert headline_metrics(res)["report_unfinished_p_better"] == pytest.approx(u["p_better"])


def test_exchangeable_posterior_sd_integrates_the_grand_mean():
    """The report's posterior sd of an order under the exchangeable model holds the grand mean's
    uncertainty too (it was the sd given mu: 1.96 sd held the true score 0.88 of the time at 3 orders x 2
    seeds on searches drawn from the model). Against the kernel form of the same model (one identity
    block, mu integrated out by ``conditional``), on the same (sigma, tau) draws, orders with unequal seeds."""
    import pandas as pd

    rng = np.random.default_rng(5)
    for k, seeds in ((3, [2, 2, 2]), (5, [1, 2, 3, 4, 2])):
        theta = rng.normal(0, 0.5, k)
        fig = pd.DataFrame([(f"o{i}", s, theta[i] + rng.normal()) for i in range(k) for s in range(seeds[i])],
                           columns=["order", "seed", "mean"])
        rows = {x["order"]: x for x in R.analyse(fig, model="exchangeable")["rows"]}
        y = fig.groupby("order", sort=False)["mean"]
        ybar, n = y.mean().to_numpy(), y.size().to_numpy(float)
        ssw = float(y.apply(lambda v: ((v - v.mean()) ** 2).sum()).sum())
        sig, tau = R.hyper_draws(ybar, n, ssw, int((n - 1).sum()), R.DRAWS)
        mean, second = np.zeros(k), np.zeros(k)
        for s_, t_ in zip(sig, tau):
            m, cov = R.conditional(ybar, n, [np.eye(k)], s_ * s_, np.array([t_ * t_]))
            mean, second = mean + m, second + np.diag(cov) + m ** 2
        mean, second = mean / len(sig), second / len(sig)
        for i, o in enumerate(y.mean().index):
            assert rows[o]["shrunk"] == pytest.approx(mean[i], abs=1e-9)
            assert rows[o]["sd"] == pytest.approx(np.sqrt(second[i] - mean[i] ** 2), rel=1e-6)
