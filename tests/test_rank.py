"""The transferability prior (search/transfer.py): LogME against an independent computation, `itt rank`
end to end on a tiny toy config, config validation, and the prior reaching order_bo."""

from __future__ import annotations

import json
import math
import pickle
from types import SimpleNamespace

import numpy as np
import optuna
import pytest

from search.cli import main
from search.space import OrderSpace, order_key
from search.transfer import OrderPrior, calibrate, log_evidence, logme, logme_fit

# ------------------------------------------------------------------ LogME vs an independent computation


def _dense_evidence(f, y, alpha, beta):
    """log N(y | 0, beta^-1 I + alpha^-1 F F^T): the marginal likelihood of Bayesian linear regression,
    computed directly in N dimensions (no SVD, no posterior mean)."""
    N = len(y)
    C = np.eye(N) / beta + f @ f.T / alpha  # (alpha = inf: y ~ N(0, I / beta))
    _, logdet = np.linalg.slogdet(C)
    return -0.5 * (N * math.log(2 * math.pi) + logdet + y @ np.linalg.solve(C, y))


def _plain_logme(f, labels, *, regression=False, iters=5000):
    """The fixed point of You et al. (2021), Algorithm 1, with dense D x D matrices (no SVD trick):
    A = alpha I + beta F^T F, m = beta A^-1 F^T y, gamma = D - alpha tr(A^-1), alpha = gamma / m.m,
    beta = (N - gamma) / |F m - y|^2; the score is the dense evidence at the fixed point / N."""
    N, D = f.shape
    Y = labels.reshape(N, -1).astype(float) if regression else np.stack(
        [(labels == c).astype(float) for c in np.unique(labels)], 1)
    out = []
    for y in Y.T:
        a, b = 1.0, 1.0
        for _ in range(iters):
            A = a * np.eye(D) + b * f.T @ f
            Ainv = np.linalg.inv(A)
            m = b * Ainv @ f.T @ y
            g = D - a * np.trace(Ainv)
            a2, b2 = g / (m @ m), (N - g) / np.sum((f @ m - y) ** 2)
            if a2 / b2 > 1e12:  # the features carry no evidence for y: alpha -> inf, m -> 0, beta -> N / y.y
                a, b = math.inf, N / (y @ y)
                break
            if abs(a2 / b2 - a / b) <= 1e-12 * (a / b):
                a, b = a2, b2
                break
            a, b = a2, b2
        out.append(_dense_evidence(f, y, a, b) / N)
    return float(np.mean(out))


@pytest.mark.parametrize("n,d,c", [(120, 8, 3), (300, 24, 2), (60, 16, 4)])
def test_logme_matches_an_independent_dense_computation(n, d, c):
    rng = np.random.default_rng(n + d + c)
    f = rng.normal(size=(n, d))
    y = np.argmax(f @ rng.normal(size=(d, c)) + 2 * rng.normal(size=(n, c)), 1)
    assert logme(f, y) == pytest.approx(_plain_logme(f, y), abs=1e-6)
    # regression, two outputs
    t = f @ rng.normal(size=(d, 2)) + rng.normal(size=(n, 2))
    assert logme(f, t, regression=True) == pytest.approx(_plain_logme(f, t, regression=True), abs=1e-6)


def test_log_evidence_formula_equals_the_gaussian_marginal_for_fixed_alpha_beta():
    rng = np.random.default_rng(1)
    f, y = rng.normal(size=(40, 6)), rng.normal(size=40)
    for a, b in [(0.3, 2.0), (5.0, 0.7), (1.0, 1.0)]:
        assert log_evidence(f, y, a, b) == pytest.approx(_dense_evidence(f, y, a, b), abs=1e-8)


def test_logme_rank_deficient_and_weights_shape():
    """N < D (a base-size encoder on a small sample): the SVD basis is completed; same fixed point."""
    rng = np.random.default_rng(0)
    f = rng.normal(size=(20, 30))
    y = np.argmax(f @ rng.normal(size=(30, 3)) + rng.normal(size=(20, 3)), 1)
    score, m = logme_fit(f, y)
    assert m.shape == (3, 30) and math.isfinite(score)
    assert score == pytest.approx(_plain_logme(f, y), abs=1e-6)


def test_logme_prefers_informative_features():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(200, 10))
    y = (f[:, 0] + 0.1 * rng.normal(size=200) > 0).astype(int)
    assert logme(f, y) > logme(rng.normal(size=(200, 10)), y)


# ------------------------------------------------------------------ the order score and its calibration


def _prior():
    return OrderPrior(tasks=["a", "b", "c"], unit={"a": 1.0, "b": 0.0, "c": -1.0}, link={"a>b": 2.0, "b>a": -2.0})


def test_order_score_weights_later_stages_and_links():
    p = _prior()
    assert p.score([]) == 0.0
    assert p.score(["a"]) == 1.0
    # b>a: 0.5 * 0 + 1 * (1 + 0.5 * -2) = 0 ; a>b: 0.5 * 1 + 1 * (0 + 0.5 * 2) = 1.5
    assert p.score(["b", "a"]) == pytest.approx(0.0) and p.score(["a", "b"]) == pytest.approx(1.5)


def test_calibration_keeps_measured_orders_and_maps_to_the_metric_scale():
    p = _prior()
    measured = {"a": 0.7, "b": 0.6, "c": 0.5, "a>b": 0.75}
    c = calibrate(p, measured)
    assert c.score(["a"]) == 0.7 and c.score(["a", "b"]) == 0.75
    assert 0.4 < c.score(["c", "a"]) < 0.9  # unmeasured: on the metric's scale
    assert c.score(["b", "a"]) > c.score(["b", "c"])  # a is the better task, at the end


def test_calibration_edge_cases_one_order_a_nan_score_and_f(tmp_path):
    """A search with one completed order keeps the prior's ranking (a zero slope made every other order
    tie); a NaN score in results.csv is left out (it made every calibrated score NaN); F (no task, raw
    score 0) is kept as measured but not fitted, or it tells the prior an average IF order scores as F
    does (simulated earlier searches: IF orders 0.70 + 0.01 raw, F 0.50)."""
    import csv

    from search.space import OrderSpace, order_key
    from search.transfer import OrderPrior, measured_scores

    tasks = list("abcde")
    rng = np.random.default_rng(0)
    base = OrderPrior(tasks=tasks, unit=dict(zip(tasks, rng.normal(size=5))),
                      link={f"{x}>{y}": float(rng.normal()) for x in tasks for y in tasks if x != y})
    orders = [o for o in OrderSpace(candidates=tasks, lengths=[3]).orders() if order_key(o) != "a>b>c"]
    one = calibrate(base, {"a>b>c": 0.70})
    assert one.score(["a", "b", "c"]) == 0.70
    assert np.argsort([one.score(o) for o in orders], kind="stable").tolist() == \
        np.argsort([base.raw(o) for o in orders], kind="stable").tolist()
    with open(tmp_path / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerows([["trial_id", "status", "order", "score"], ["t1", "completed", "a>b>c", "0.71"],
                     ["t2", "completed", "a>b>c", "nan"], ["t3", "completed", "c>d>e", "0.65"]])
    m, _ = measured_scores(str(tmp_path))
    assert m == {"a>b>c": 0.71, "c>d>e": 0.65}
    errors = []
    for rep in range(40):
        r = np.random.default_rng(rep)
        everything = [o for o in OrderSpace(candidates=tasks, lengths=[1, 2, 3]).orders()]
        true = {order_key(o): 0.70 + 0.01 * base.raw(o) + r.normal(0, 0.005) for o in everything}
        ran = [order_key(everything[i]) for i in r.choice(len(everything), 12, replace=False)]
        c = calibrate(base, {**{k: true[k] for k in ran}, "": 0.50})
        assert c.score([]) == 0.50
        errors += [c.score(k.split(">")) - v for k, v in true.items() if k not in ran and len(k) == 1]  # one task
    assert abs(np.mean(errors)) < 0.01, np.mean(errors)


def test_the_beam_over_a_large_space_follows_the_calibrated_prior():
    """Over 200,000 orders ``best_orders`` keeps a beam of prefixes; ranked by the raw prior while the
    earlier search's calibration reverses it (slope < 0), the beam's best came out near the bottom
    (rank 353,202 of 360,330). It must beat 99% of orders drawn at random."""
    from search.space import OrderSpace, order_key
    from search.transfer import OrderPrior, best_orders

    tasks = [f"t{i}" for i in range(15)]
    rng = np.random.default_rng(0)
    base = OrderPrior(tasks=tasks, unit=dict(zip(tasks, rng.normal(size=15))),
                      link={f"{a}>{b}": float(rng.normal()) for a in tasks for b in tasks if a != b})
    space = OrderSpace(candidates=tasks, lengths=[5])
    ran = [list(rng.choice(tasks, 5, replace=False)) for _ in range(30)]
    cal = calibrate(base, {order_key(o): 0.7 - 0.01 * base.raw(o) + rng.normal(0, 0.002) for o in ran})
    assert cal.calib["b"] < 0
    beam = max(cal.score(o) for o in best_orders(cal, space, 10) if order_key(o) not in cal.measured)
    drawn = np.quantile([cal.score(list(rng.choice(tasks, 5, replace=False))) for _ in range(2000)], 0.99)
    assert beam >= drawn


def _ranks(v):
    """Average ranks (1 = smallest), ties sharing their mean rank, by counting."""
    v = np.asarray(v, dtype=float)
    return np.array([(v < x).sum() + ((v == x).sum() + 1) / 2 for x in v])


def test_agreement_of_the_prior_with_measured_orders_against_a_hand_computation():
    from search.transfer import agreement, agreement_text

    p = _prior()
    # raw scores: a 1, b 0, c -1, a>b 1.5, b>a 0, c>a 0.5; F left out (the prior scores it 0 by construction)
    measured = {"": 0.9, "a": 0.60, "b": 0.55, "c": 0.40, "a>b": 0.58, "b>a": 0.62, "c>a": 0.50}
    a = agreement(p, measured)
    keys = [k for k in measured if k]
    x = np.array([p.raw(k.split(">")) for k in keys])
    y = np.array([measured[k] for k in keys])
    assert a["n"] == 6
    assert a["spearman"] == pytest.approx(np.corrcoef(_ranks(x), _ranks(y))[0, 1])
    # Kendall's tau-b by counting pairs (x has one tie: b and b>a both score 0)
    conc = disc = tx = ty = 0
    for i in range(6):
        for j in range(i + 1, 6):
            dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            conc += dx * dy > 0
            disc += dx * dy < 0
            tx += dx == 0
            ty += dy == 0
    n0 = 15
    assert a["kendall"] == pytest.approx((conc - disc) / math.sqrt((n0 - tx) * (n0 - ty)))
    # the prior's favourite (a>b, 1.5) is 3rd by measurement; the measured best (b>a, 0) ties 4th by the prior, with b
    assert (a["prior_best"], a["prior_best_rank"]) == ("a>b", 3)
    assert (a["measured_best"], a["measured_best_prior_rank"]) == ("b>a", 4)
    assert 0 < a["p"] < 1
    line = agreement_text(a, "of X")
    assert line.startswith("The prior against the 6 IF orders of X: Spearman rho = ") and "a>b, ranks 3 of 6" in line
    # too few, or nothing to rank: said, not computed
    assert "underpowered" in agreement(p, {"": 0.3, "a": 0.5, "b": 0.4})
    flat = OrderPrior(tasks=["a", "b", "c"], unit={}, link={})
    assert agreement(flat, measured)["underpowered"] == "the prior scores every measured order alike"


# ------------------------------------------------------------------ itt rank end to end

RANK_TINY = {"search": {"candidates": ["toy_topic", "toy_length", "toy_parity"], "length": [0, 2]}}


def test_itt_rank_prints_tasks_orders_and_cost_and_is_deterministic(write_config, capsys, tmp_path):
    path = write_config(RANK_TINY)
    out_json = tmp_path / "rank.json"
    assert main(["rank", str(path), "--top", "4", "--sample", "48", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "transferability to toy_xnli" in out and "toy_parity" in out
    assert "top 4 of 10 orders" in out and "cost:" in out and " s wall-clock" in out
    blob = json.loads(out_json.read_text())
    assert len(blob["orders"]) == 4 and set(blob["measurements"]["tasks"]) == {"toy_topic", "toy_length", "toy_parity"}
    for v in blob["measurements"]["tasks"].values():
        assert math.isfinite(v["logme"]) and math.isfinite(v["similarity"])
    # same config + seed: the same numbers (a fresh measurement, not the memo)
    from search import transfer
    from search.config import load_search

    scfg, chain, _ = load_search(path)
    again = transfer.measure(scfg, chain, sample=48)
    assert again["tasks"] == blob["measurements"]["tasks"]
    # the target's inputs it compares with are dev's (the split trials are scored on), never test's
    scfg, chain, _ = load_search(write_config({**RANK_TINY, "eval": {"splits": ["test", "dev"]}}))
    assert again["target"]["split"] == "dev" and transfer.measure(scfg, chain, sample=48)["target"]["split"] == "dev"


def test_a_score_edited_to_text_in_an_earlier_search_is_one_error_line(write_config, capsys, tmp_path):
    """A results.csv score cell that is no number (edited by hand) ended `itt rank --from` and a search with
    search.prior_from in ValueError: could not convert string to float. One line naming the trial; an empty or
    non-finite score is still a trial without a score."""
    from search.transfer import measured_scores

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "results.csv").write_text("trial_id,status,order,score\nt1,completed,toy_topic,0.61\nt2,completed,,nan\n"
                                     "t3,completed,toy_length,\n")
    assert measured_scores(str(exp))[0] == {"toy_topic": 0.61}
    with open(exp / "results.csv", "a") as f:
        f.write("t4,completed,toy_parity,0.5x\n")
    line = f"error: --from {exp}: results.csv: trial t4 (toy_parity) has score '0.5x', not a number"
    assert main(["rank", str(write_config(RANK_TINY)), "--from", str(exp)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line), err


def test_itt_rank_from_a_finished_search_calibrates(write_config, capsys, tmp_path):
    path = write_config(RANK_TINY)
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "results.csv").write_text("trial_id,status,order,score\nt1,completed,toy_topic,0.61\n"
                                     "t2,completed,toy_length,0.40\nt3,completed,,0.35\nt4,stopped,toy_parity,0.2\n"
                                     "t5,completed,toy_parity>toy_topic,0.57\nt6,completed,toy_length,0.42\n")
    assert main(["rank", str(path), "--from", str(exp), "--top", "10", "--sample", "48"]) == 0
    out = capsys.readouterr().out
    assert "calibrated on 4 measured order(s)" in out
    assert "toy_topic  +0.6100  measured" in out
    # the uncalibrated prior against the 3 IF orders the search completed (toy_length: its 2 trials' mean)
    from search import transfer
    from search.config import load_search

    scfg, chain, _ = load_search(path)
    prior = transfer.prior_of_measurements(transfer.transferability(scfg, chain, sample=48))
    x = [prior.raw(o.split(">")) for o in ("toy_topic", "toy_length", "toy_parity>toy_topic")]
    rho = np.corrcoef(_ranks(x), _ranks([0.61, 0.41, 0.57]))[0, 1]
    line = next(x for x in out.splitlines() if x.startswith("The prior against the 3 IF orders that "))
    assert f"{exp} completed (their searched score): Spearman rho = {rho:+.2f} (p = " in line, line


def test_itt_space_heuristic_transferability_prints_the_priors_best_order_of_each_length(write_config, capsys,
                                                                                           monkeypatch):
    from search import transfer
    from search.config import load_search

    path = write_config(RANK_TINY)
    scfg, chain, _ = load_search(path)
    m = transfer.transferability(scfg, chain, sample=48)  # the memo of the rank tests: no second measurement
    monkeypatch.setattr(transfer, "transferability", lambda *a, **k: m)
    assert main(["space", str(path), "--samples", "0", "--heuristic", "transferability"]) == 0
    out = capsys.readouterr().out
    prior = transfer.prior_of_measurements(m)
    for k in (1, 2):  # brute force over the space's orders of length k
        best = max((o for o in scfg.space().orders() if len(o) == k), key=prior.raw)
        assert f"  order: {'>'.join(best)}\n" in out
    assert "measured as: transferability prior on the initial encoder" in out
    assert "--set search.seed_points.heuristics=[transferability]" in out


def test_itt_rank_from_several_searches_shows_the_ensemble_and_a_searchs_first_orders(write_config, capsys, tmp_path):
    """--from twice (or A,B): each search calibrated, an equal-weight ensemble, and the start-up orders
    an order_bo search with that prior runs (checked against the sampler itself)."""
    from search import transfer
    from search.config import load_search
    from search.searchers.order_bo import OrderBOSampler

    path = write_config(RANK_TINY)
    for name, best in (("xnli", "toy_topic"), ("pawsx", "toy_parity")):
        (tmp_path / name).mkdir()
        rows = ["order,status,score"] + [f"{t},completed,{0.6 if t == best else 0.4}" for t in ("toy_topic", "toy_length", "toy_parity")]
        (tmp_path / name / "results.csv").write_text("\n".join(rows) + "\n")
    a, b = str(tmp_path / "xnli"), str(tmp_path / "pawsx")
    out_json = tmp_path / "r.json"
    assert main(["rank", str(path), "--from", a, "--from", b, "--sample", "48", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert f"3 measured order(s) of {a}; 3 measured order(s) of {b}" in out and "(z units over the space)" in out
    blob = json.loads(out_json.read_text())
    assert blob["from"] == [a, b] and [s["measured"] for s in blob["sources"]] == [3, 3]
    first = blob["first_orders"]
    assert len(first) == 2 and first[0] != first[1] and f"starts from: {first[0]}, {first[1]}" in out
    assert main(["rank", str(path), "--from", f"{a},{b}", "--sample", "48"]) == 0  # the comma form: the same
    assert capsys.readouterr().out.split("cost:")[0] == out.split("cost:")[0]
    scfg, chain, _ = load_search(path)
    res = transfer.rank(scfg, chain, from_exp=[a, b], sample=48)
    space = scfg.space()
    tried, _ = _run(OrderBOSampler(space, seed=0, prior=res["prior"]), space, {o: 0.5 for o in map(order_key, space.orders())}, 2)
    assert tried == res["first_orders"] == first  # what the sampler runs first
    assert first[0] == order_key(transfer.best_orders(res["prior"].parts[0], space, 1)[0])  # xnli's best, then pawsx's
    assert main(["rank", str(path), "--from", a, "--from", a]) == 2
    assert "listed twice" in capsys.readouterr().err


@pytest.mark.parametrize("args,needle", [
    (["--top", "0"], "--top 0"),
    (["--sample", "1"], "--sample 1"),
    (["--from", "NOWHERE"], "no results.csv"),
])
def test_itt_rank_bad_input_is_one_error_line(write_config, capsys, tmp_path, args, needle):
    path = write_config(RANK_TINY)
    code = main(["rank", str(path), *[a.replace("NOWHERE", str(tmp_path)) for a in args]])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and needle in err and "Traceback" not in err


def test_itt_rank_needs_a_search_block(write_config, capsys):
    path = write_config({})
    assert main(["rank", str(path)]) == 2
    assert "no 'search:' block" in capsys.readouterr().err


# ------------------------------------------------------------------ config


def test_search_prior_config(write_config, capsys):
    from search.config import load_search

    scfg, _, _ = load_search(write_config(RANK_TINY))
    assert scfg.prior == "none"
    scfg, _, _ = load_search(write_config(RANK_TINY), ["search.prior=transferability",
                                                       "search.seed_points.heuristics=[transferability]"])
    assert scfg.prior == "transferability" and scfg.seed_points.heuristics == ["transferability"]
    for over, needle in [(["search.prior=logme"], "search.prior"),
                         (["search.prior=transferability", "search.searcher=tpe"], "needs searcher order_bo")]:
        assert main(["space", str(write_config(RANK_TINY)), *[x for o in over for x in ("--set", o)]]) == 2
        assert needle in capsys.readouterr().err


def test_seed_points_from_the_prior(write_config):
    from search.config import load_search
    from search.searchers.seed_points import seed_point_orders

    scfg, chain, _ = load_search(write_config(RANK_TINY), ["search.seed_points.heuristics=[transferability]"])
    p = OrderPrior(tasks=list(scfg.candidates), unit={"toy_topic": 1.0, "toy_length": 0.5, "toy_parity": -1.0}, link={})
    assert seed_point_orders(scfg, chain, log=lambda *a: None, prior=p) == [["toy_topic"], ["toy_length", "toy_topic"]]


# ------------------------------------------------------------------ the prior reaches order_bo


def _table(space):
    rng = np.random.default_rng(0)
    w = {t: rng.normal(0, 0.05) for t in space.candidates}
    return {order_key(o): 0.5 + sum(0.5 ** (len(o) - 1 - i) * w[t] for i, t in enumerate(o)) for o in space.orders()}


def _run(sampler, space, table, n):
    from search.trial import define

    study = optuna.create_study(direction="maximize", sampler=sampler)
    tried = []
    for _ in range(n):
        t = study.ask()
        define(t, space=space, hparams={})
        o = order_key(space.decode(t.params))
        study.tell(t, table[o])
        tried.append(o)
    return tried, study


def test_order_bo_with_a_prior_starts_from_its_best_orders_and_uses_it_as_a_feature():
    from search.searchers.order_bo import OrderBOSampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = OrderSpace(candidates=["a", "b", "c", "d"], lengths=[2])
    table = _table(space)
    good = OrderPrior(tasks=space.candidates, unit={"a": -1.0, "b": 0.0, "c": 1.0, "d": 2.0}, link={})
    s = OrderBOSampler(space, seed=0, n_startup=2, prior=good)
    assert "prior" in s.features.groups and s.features.dim == OrderBOSampler(space, seed=0).features.dim + 1
    tried, study = _run(s, space, table, 5)
    assert tried[:2] == ["c>d", "b>d"]  # the startup follows the prior (its two best orders), not the rng
    again, _ = _run(OrderBOSampler(space, seed=0, n_startup=2, prior=good), space, table, 5)
    assert again == tried  # deterministic
    # the other prior leads elsewhere; the seed alone does not decide
    bad = OrderPrior(tasks=space.candidates, unit={"a": 2.0, "b": 1.0, "c": 0.0, "d": -1.0}, link={})
    other, _ = _run(OrderBOSampler(space, seed=0, n_startup=2, prior=bad), space, table, 2)
    assert other == ["b>a", "a>b"]  # 2.5, then 2.0 (a tie with c>a: the first in candidate order)
    # pickles with its prior (Ray saves the searcher), proposes the same after a round trip
    r = pickle.loads(pickle.dumps(s))
    assert OrderBOSampler._propose(r, study) == OrderBOSampler._propose(s, study)


def test_make_searcher_passes_the_prior_to_order_bo(write_config):
    from search.config import load_search
    from search.searchers.optuna_samplers import sampler_for

    scfg, _, _ = load_search(write_config(RANK_TINY), ["search.prior=transferability"])
    p = OrderPrior(tasks=list(scfg.candidates), unit={"toy_topic": 1.0}, link={})
    assert sampler_for(scfg, p).prior is p and sampler_for(scfg).prior is None


def _planted(space, seed, pair_sd=0.02):
    """Scores of every order: per-task effects by position plus effects of consecutive pairs."""
    r = np.random.default_rng(seed)
    w = {t: r.normal(0, 0.05, max(space.lengths)) for t in space.candidates}
    bonus = {(x, y): r.normal(0, pair_sd) for x in space.candidates for y in space.candidates if x != y}
    return {order_key(o): 0.5 + sum(w[t][i] for i, t in enumerate(o)) + sum(bonus[p] for p in zip(o, o[1:]))
            for o in space.orders()}


def test_several_earlier_searches_are_weighed_by_how_well_they_rank_the_new_targets_scores():
    """search.prior_from: [A, B] -> PriorEnsemble. Each calibrated prior is standardised over the space and
    their weighted sum has sd 1 (checked with numpy); the ranking loss is the share of discordant pairs
    ((1 - Kendall's tau) / 2 from scipy; a bootstrap resample counted = the resample itself); after 20 of the new target's scores the search that ranks them
    (A: measured the same target) gets most of the weight in either position, an anti-related one none,
    and when no search ranks them better than chance the prior goes flat."""
    from scipy.stats import kendalltau

    from search.transfer import PriorEnsemble, _discordant

    space = OrderSpace(candidates=["a", "b", "c", "d", "e"], lengths=[3])
    target, unrelated = _planted(space, 10), _planted(space, 11)
    anti = {k: -v for k, v in target.items()}
    orders = [order_key(o) for o in space.orders()]
    rng = np.random.default_rng(1)
    base = OrderPrior(tasks=list(space.candidates), unit={}, link={})

    def earlier(table):  # an earlier search that measured 20 orders of its table
        return calibrate(base, {o: table[o] for o in rng.choice(orders, 20, replace=False)})

    rel, unr, ant = earlier(target), earlier(unrelated), earlier(anti)
    tried = [orders[i].split(">") for i in np.random.default_rng(100).choice(len(orders), 20, replace=False)]
    finals = [(o, target[order_key(o)]) for o in tried]
    y = np.array([v for _, v in finals])
    for parts, names, expect in (([rel, unr], ["A", "U"], "A"), ([unr, rel], ["U", "A"], "A")):
        ens = PriorEnsemble.over(parts, names, space)
        z = np.array([ens.columns(o) for o in space.sample()])
        assert np.allclose(z.mean(0), 0, atol=1e-9) and np.allclose(z.std(0), 1)
        assert ens.weights == [0.5, 0.5] and np.std([ens.score(o) for o in space.sample()]) == pytest.approx(1.0)
        loss = _discordant(np.array([ens.columns(o) for o, _ in finals]), y)
        tau = [kendalltau([ens.columns(o)[i] for o, _ in finals], y).statistic for i in range(2)]
        assert loss == pytest.approx([(1 - t) / 2 for t in tau])
        draws = np.random.default_rng(3).integers(len(y), size=(4, len(y)))  # bootstrap resamples, counted
        counted = _discordant(np.array([ens.columns(o) for o, _ in finals]), y, np.array([np.bincount(d, minlength=len(y)) for d in draws]))
        for d, row in zip(draws, counted):
            assert row == pytest.approx(_discordant(np.array([ens.columns(finals[i][0]) for i in d]), y[d]))
        assert ens.observe(finals[:2]) is False and ens.weights == [0.5, 0.5]  # no evidence yet
        assert ens.observe(finals, seed=0) is True
        w = dict(zip(names, ens.weights))
        assert w[expect] > 0.8 and sum(ens.weights) == pytest.approx(1.0), w
        assert np.std([ens.score(o) for o in space.sample()]) == pytest.approx(1.0)
        assert ens.observe(finals, seed=0) is False  # nothing new
    ens = PriorEnsemble.over([ant, rel], ["anti", "A"], space)
    ens.observe(finals)
    assert ens.weights[0] == 0.0
    flat = PriorEnsemble.over([ant, earlier(anti)], ["anti", "anti2"], space)
    flat.observe(finals)
    assert flat.weights == [0.0, 0.0] and {flat.score(o) for o in space.sample()} == {0.0}


def test_order_bo_follows_the_related_earlier_search():
    """The start-up orders are each earlier search's best in turn; the sampler reweighs a PriorEnsemble
    before each proposal (its candidates' prior feature follows) from the orders it has completed, keeps
    them through a pickle round trip (resume), and the weights go to summary.json's prior_weights."""
    from search.runner import prior_weights
    from search.searchers.order_bo import OrderBOSampler
    from search.transfer import PriorEnsemble

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = OrderSpace(candidates=["a", "b", "c", "d", "e"], lengths=[3])
    target, unrelated = _planted(space, 20), _planted(space, 21)
    orders = [order_key(o) for o in space.orders()]
    rng = np.random.default_rng(2)
    base = OrderPrior(tasks=list(space.candidates), unit={}, link={})
    rel, unr = (calibrate(base, {o: t[o] for o in rng.choice(orders, 20, replace=False)}) for t in (target, unrelated))
    s = OrderBOSampler(space, seed=0, prior=PriorEnsemble.over([unr, rel], ["runs/u", "runs/a"], space))
    tried, study = _run(s, space, target, 12)
    best_of = lambda p, skip=(): max((o for o in orders if o not in skip), key=lambda o: p.score(o.split(">")))  # noqa: E731
    assert tried[:2] == [best_of(unr), best_of(rel, skip=tried[:1])]  # start-up: each earlier search's best in turn
    w = s.prior.weights
    assert s.prior.observed == 11 and w[1] > 0.9, w  # (reweighed before the 12th proposal)
    assert all(g._cands[2] == tuple(w) for g in s.surrogates)  # the candidates' features were rebuilt with these weights
    r = pickle.loads(pickle.dumps(s))  # Ray saves the searcher with its prior and weights: a resume proposes the same
    assert r.prior.weights == w and OrderBOSampler._propose(r, study) == OrderBOSampler._propose(s, study)
    summary = prior_weights(SimpleNamespace(sampler=s))
    assert summary["prior_weights"] == {"runs/u": round(w[0], 4), "runs/a": round(w[1], 4)}


def test_a_multi_objective_search_weighs_earlier_searches_on_its_first_objective():
    """With two objectives (ParEGO scalarises them anew at each proposal), the earlier searches' prior -
    which predicts their score, the first objective - is weighed on this search's first objective: the
    related search gets the weight, whatever the second objective does."""
    from search.searchers.order_bo import OrderBOSampler
    from search.transfer import PriorEnsemble

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = OrderSpace(candidates=["a", "b", "c", "d", "e"], lengths=[3])
    target, unrelated, second = _planted(space, 20), _planted(space, 21), _planted(space, 22)
    orders = [order_key(o) for o in space.orders()]
    rng = np.random.default_rng(2)
    base = OrderPrior(tasks=list(space.candidates), unit={}, link={})
    rel, unr = (calibrate(base, {o: t[o] for o in rng.choice(orders, 20, replace=False)}) for t in (target, unrelated))
    s = OrderBOSampler(space, seed=0, prior=PriorEnsemble.over([unr, rel], ["runs/u", "runs/a"], space))
    from search.trial import define

    study = optuna.create_study(directions=["maximize", "maximize"], sampler=s)
    for _ in range(12):
        t = study.ask()
        define(t, space=space, hparams={})
        o = order_key(space.decode(t.params))
        study.tell(t, [target[o], second[o]])
    assert s.prior.observed == 11 and s.prior.weights[1] > 0.9, s.prior.weights


@pytest.mark.ray
def test_prior_from_several_searches_config_files_and_errors(write_config, tmp_path, capsys, monkeypatch):
    """One earlier search or several (a YAML list or comma-separated --set), relative to the working
    directory; order_prior builds an ensemble for several and says where each came from in prior.json;
    a search listed twice or one that fails is one error line naming it."""
    from search.config import load_search
    from search.storage import Storage
    from search.transfer import OrderPrior as OP
    from search.transfer import PriorEnsemble, order_prior

    monkeypatch.chdir(tmp_path)
    for name, best in (("xnli", "toy_topic"), ("pawsx", "toy_parity")):
        (tmp_path / name).mkdir()
        rows = ["order,status,score"] + [f"{t},completed,{0.6 if t == best else 0.4}" for t in ("toy_topic", "toy_length", "toy_parity")]
        (tmp_path / name / "results.csv").write_text("\n".join(rows) + "\n")
    cfg = write_config(RANK_TINY)
    scfg, chain, _ = load_search(cfg, ["search.prior_from=xnli", "search.length=[1,2]"])
    assert scfg.prior_from == [str(tmp_path / "xnli")] and isinstance(order_prior(scfg, chain), OP)
    scfg, chain, _ = load_search(cfg, ["search.prior_from=xnli,pawsx", "search.length=[1,2]"])
    assert scfg.prior_from == [str(tmp_path / "xnli"), str(tmp_path / "pawsx")]
    lines = []
    st = Storage(str(tmp_path), "exp")
    prior = order_prior(scfg, chain, st=st, log=lines.append)
    assert isinstance(prior, PriorEnsemble) and len(prior.parts) == 2
    assert prior.score(["toy_topic"]) == pytest.approx(prior.score(["toy_parity"]))  # each best in one search
    assert prior.score(["toy_topic"]) > prior.score(["toy_length"])
    pj = json.loads((tmp_path / "exp" / "prior.json").read_text())
    assert pj["from"] == [str(tmp_path / "xnli"), str(tmp_path / "pawsx")] and pj["measured"] == 6
    assert [s["measured"] for s in pj["sources"]] == [3, 3]
    assert "3 orders measured by" in lines[0] and lines[0].count("orders measured by") == 2
    for sets, needle in ((["search.prior_from=xnli,xnli"], "listed twice"),
                         (["search.prior_from=[xnli, nowhere]"], "nowhere: no results.csv")):
        assert main(["search", str(cfg), "--name", "x", "--storage", "runs", "--no-tracking",
                     *[a for s in sets for a in ("--set", s)]]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "search.prior_from" in err[0] and needle in err[0], err
    assert not (tmp_path / "runs" / "x").exists()


# ------------------------------------------------------------------ every trainable kind gives LogME rows


def test_units_for_tagging_qa_and_choice_on_real_files(shared_data):
    """What LogME sees of a tagging, an extractive QA and a multiple-choice task (real ../shared/data
    files, a tokenizer fitted to them, a tiny random-init encoder): one row per word, per context token
    (1 inside the answer), per (question, option); finite scores."""
    import torch

    from itt.config import ModelConfig, TaskSpec
    from itt.data import load_split
    from itt.models import build_encoder, train_tokenizer
    from itt.tasks import resolve_task
    from search.transfer import Embedder, units

    specs = {"udpos": TaskSpec(train={"files": "pos/en_ewt-ud-dev.conllu"}),
             "squad": TaskSpec(train={"files": "xquad/xquad.en.json", "format": "squad"}, dev=None),
             "commonsenseqa": TaskSpec(train={"files": "intermediate/commonsenseqa/commonsense_qa.llmfoundry.jsonl",
                                              "columns": {"label": "gold"},
                                              "extract": {"query": "(?s)^Question: (?P<question>.*?)\\nChoices:\\n(?P<choices>.*)\\nAnswer:\\s*$"}},
                                       dev=None)}
    data = {n: load_split(resolve_task(n, specs), "train", "en", data_root=str(shared_data), max_examples=24) for n in specs}
    texts = [" ".join(w) for w in data["udpos"]["tokens"]] + list(data["squad"]["context"]) + list(data["commonsenseqa"]["question"])
    tok = train_tokenizer(texts, arch="bert", vocab_size=800)
    torch.manual_seed(0)
    tiny = {"arch": "bert", "hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32}
    enc = build_encoder(ModelConfig(tiny=tiny, train_tokenizer={"vocab_size": 800}), tok, max_length=64, sdpa=True)
    emb = Embedder(enc, tok, max_length=64)
    for name in specs:
        u = units(resolve_task(name, specs), data[name], emb, max_rows=300)
        assert u.features.shape[1] == 16 and len(u.features) == len(u.labels) <= 300
        assert len(np.unique(u.labels)) > 1 and math.isfinite(logme(u.features, u.labels))
        if name == "squad":
            assert 0 < u.labels.mean() < 0.5  # answer tokens are a minority of the context
        if name == "commonsenseqa":
            assert u.labels.sum() == 24  # one right option per question
