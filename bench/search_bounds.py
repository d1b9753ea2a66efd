"""How far can any searcher get on a table? Oracle searchers that are given the table's structure.

    python bench/search_bounds.py                       # toy3, planted, curriculum; 50 draws each
    python bench/search_bounds.py --out bench/data/search_bounds.txt

``bench/search_efficiency.py`` asks a searcher for half of random search's regret area. Whether that is
reachable depends on how much of a table is structure a searcher could learn and how much is noise no
searcher can predict. Each oracle here is handed knowledge a real search does not have, then spends
compute exactly as the benchmark counts it (the stage cache: a trial pays its untrained prefix stages
plus its final; ``search_efficiency.curve`` computes the regret curve, area and compute to within eps):

* ``structure:<features>``: ranks ALL orders by a ridge regression (scikit-learn's RidgeCV) of the
  table's true scores on the order's features, each order's prediction from a 10-fold cross-validated
  fit (the other 90% of the table: the structure that generalises, not the order's own noise), and
  runs them greedily, best predicted first. Features: ``which`` (membership), ``where`` (task at depth
  from the end), ``precedes`` (ordered pairs), the same groups order_bo's GP sees
  (search/searchers/features.py). 50 draws of the folds.
* ``membership-oracle random``: knows which task the table's best orders all contain (the task of the
  largest membership effect in that ridge fit) and runs uniformly random orders containing it
  (1,000 draws): a searcher that has found the dominant task, and nothing more.

A goal below what ``structure:which+where+precedes`` reaches needs knowledge beyond the table's
structure as those features see it; a goal between the membership oracle and the full-structure oracle
needs the searcher to learn position and precedence effects from the few orders it can afford.

Noisy tables (``toy3:noisy``): each order an oracle runs is observed as a one-seed search sees it (one
seed's row, drawn as ``search.trial.simulated_rows`` draws it, the draw seeded like a search), and the
order it recommends is its best single-seed score, as random search's is; the oracles still rank by
the table's means. ``every order once`` runs the whole table in one go and recommends its best
single-seed score: the regret that remains when nothing is left to search, the floor of a
recommendation by the best observed score.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import search_efficiency as se  # noqa: E402  (bench/ on the path)

FEATURES = ("which", "which+where", "which+where+precedes")


def design(info: dict, kind: str) -> np.ndarray:
    """The table's orders as rows of order_bo's own features (search/searchers/features.py), only the
    groups ``kind`` names (``+``-joined)."""
    from search.searchers.features import OrderFeatures

    split = [o.split(">") for o in info["orders"]]
    f = OrderFeatures(sorted({t for o in split for t in o}), max(map(len, split)))
    cols = [d for group in kind.split("+") for d in f.groups[group]]
    return f.matrix([(o, {}) for o in split])[:, cols]


def run_orders(info: dict, ranked: list[str], draw: int = 0) -> dict:
    """Run orders in this sequence until half of exhaustive's compute is spent (the benchmark's
    ``Budget``, as its offline replay runs it); the benchmark's figures. A noisy table's score is one
    seed's row (``draw`` seeds which, as a search's seed does)."""
    budget, rows = se.Budget(0.5 * info["exhaustive_cost"]), []
    for o in ranked:
        if budget.spent >= budget.limit:
            break
        order = o.split(">")
        for i in range(1, len(order) + 1):
            budget.result(order, {"step": i})
        budget.result(order, {"final": 1})
        rows.append({"order": o, "status": "completed", "stages_completed": str(len(order)), "score": str(score(info, o, draw))})
    return se.curve(info, {"rows": rows, "trace": [], "recommended": None})


def score(info: dict, order: str, draw: int) -> float:
    """What a trial of ``order`` reports: the table's mean, or in noisy mode one seed's row."""
    if info["mode"] != "noisy":
        return info["truth"][order]
    if "table" not in info:
        from search.config import load_search
        from search.trial import load_table

        info["table"] = load_table(load_search(info["config"])[0].simulate.table)
    return se._table_scores(info["table"], order.split(">"), draw, True)[1]


def every_order_once(info: dict, draws: int) -> tuple[float, float]:
    """Median and mean regret of the best single-seed score once every order has run (noisy tables)."""
    truth, best, med = info["truth"], info["best_score"], info["median"]
    regrets = [(best - truth[max(info["orders"], key=lambda o: score(info, o, d))]) / (best - med) for d in range(draws)]
    return statistics.median(regrets), statistics.mean(regrets)


def structure_oracle(info: dict, kind: str, draws: int) -> list[dict]:
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict

    orders, X = info["orders"], design(info, kind)
    y = np.array([info["truth"][o] for o in orders])
    out = []
    for d in range(draws):
        pred = cross_val_predict(RidgeCV(alphas=np.logspace(-4, 2, 20)), X, y, cv=KFold(10, shuffle=True, random_state=d))
        out.append(run_orders(info, [orders[i] for i in np.argsort(-pred, kind="stable")], d))
    return out


def membership_oracle(info: dict, draws: int) -> tuple[str, list[dict]]:
    from sklearn.linear_model import RidgeCV

    orders = info["orders"]
    tasks = sorted({t for o in orders for t in o.split(">")})  # (the columns of the "which" group)
    fit = RidgeCV(alphas=np.logspace(-4, 2, 20)).fit(design(info, "which"), [info["truth"][o] for o in orders])
    key = tasks[int(np.argmax(fit.coef_))]
    pool = [o for o in orders if key in o.split(">")]
    out = []
    for d in range(draws):
        ranked = list(pool)
        random.Random(d).shuffle(ranked)
        out.append(run_orders(info, ranked, d))
    return key, out


def line(table: str, name: str, runs: list[dict], random_area: float | None) -> str:
    area = statistics.median(r["area"] for r in runs)
    eps = statistics.median(r["to_eps"] for r in runs)
    ratio = f"{area / random_area:.2f}" if random_area else "-"
    return f"{table:11s} {name:40s} area {area:.3f} (/ random {ratio})  to_eps {eps:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default="toy3,planted,curriculum,toy3:noisy")
    ap.add_argument("--draws", type=int, default=50)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    se.check_counts(ap, draws=args.draws)
    lines = []
    for table in se.check_tables(ap, args.tables):
        info, first = se.table_info(table), len(lines)
        rand = [run_orders(info, random.Random(s).sample(info["orders"], len(info["orders"])), s) for s in range(1000)]
        random_area = statistics.median(r["area"] for r in rand)
        lines.append(line(table, "random without replacement (1,000 draws)", rand, random_area))
        key, runs = membership_oracle(info, 1000)
        lines.append(line(table, f"membership-oracle random (orders with {key})", runs, random_area))
        for kind in FEATURES:
            lines.append(line(table, f"structure:{kind}", structure_oracle(info, kind, args.draws), random_area))
        if info["mode"] == "noisy":
            med, mean = every_order_once(info, 1000)
            lines.append(f"{table:11s} {'every order once, best single-seed score':40s} regret median {med:.3f} mean {mean:.3f}")
        print("\n".join(lines[first:]), flush=True)
    if args.out:
        Path(args.out).write_text("# python bench/search_bounds.py --out " + args.out + "\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
