"""A synthetic simulated-objective table with a planted structure, deterministic from a seed.

    python bench/make_planted_table.py                       # -> bench/data/planted.csv (3 of 6 = 120 orders)
    python bench/make_planted_table.py --tasks 5 --out /tmp/p5.csv --seed 3

The score of an order ``o = (o_1, .., o_k)`` is

    final = BASE + sum_i c(o_i, i) + sum_{a before b in o} bonus(a, b) + N(0, NOISE_FINAL)
    c(t, i) = W[i] * main(t) + pos(t, i)        main ~ N(0, MAIN_SD), pos ~ N(0, POS_SD)

so each task has a main effect that weighs more the later it comes (``W`` rises with the position),
a position-specific deviation, and a few planted precedence pairs pay a bonus when both appear in
that order (the bonus is earned at the stage where ``b`` arrives). The probe after stage ``s`` is the
same sum over the first ``s`` stages, shifted down by ``PROBE_SHIFT`` (a short probe fine-tune scores
lower than a full one), plus a larger noise ``N(0, NOISE_PROBE)`` drawn once per prefix (orders that
share a prefix share its probes, as they do in a real search with a fixed seed): early stages carry real but noisy
signal, as ASHA needs. Everything is drawn from ``numpy.random.default_rng(seed)`` in a fixed order.

Columns as ``bench/make_toy_table.py`` writes (what ``search.simulate.table`` reads): order ('>'-joined
task names), probe_1..probe_k, final, test_mean (final plus independent noise), seconds (0: synthetic).
The candidates are the five toy intermediate tasks plus ``toy_extra`` for the sixth, which the bench
config ``bench/data/sim_planted.yaml`` defines as a task of its own (it is never trained).
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np
from _outputs import write_rows  # (bench/ is on the path when a script runs)

ROOT = Path(__file__).resolve().parents[1]
TASKS6 = ["toy_topic", "toy_align", "toy_length", "toy_parity", "toy_sim", "toy_extra"]
LENGTH = 3
BASE, PROBE_SHIFT = 0.55, 0.12
W = (0.6, 0.8, 1.0)  # weight of a task's main effect at positions 1, 2, 3
MAIN_SD, POS_SD = 0.03, 0.012
N_PAIRS, BONUS = 4, (0.015, 0.035)
NOISE_FINAL, NOISE_PROBE, NOISE_TEST = 0.004, 0.012, 0.006


def make_table(tasks: list[str], seed: int, source: dict | None = None, rho: float = 0.0) -> tuple[list[dict], dict]:
    """The table and its truth. ``source`` (another table's truth) makes a *related target*
    (bench/prior_from.py): the precedence bonuses, a property of the task pairs, are the source's; the
    effects on the target (main, pos) are ``rho * source + sqrt(1 - rho^2) * fresh`` (same spread).
    Several sources (a list, with a list of rhos; the bonuses are the first's): ``sum rho_i * source_i
    + sqrt(1 - sum rho_i^2) * fresh``."""
    rng = np.random.default_rng(seed)
    main = {t: float(rng.normal(0, MAIN_SD)) for t in tasks}
    pos = {t: [float(rng.normal(0, POS_SD)) for _ in range(LENGTH)] for t in tasks}
    pairs_all = [(a, b) for a in tasks for b in tasks if a != b]
    idx = rng.choice(len(pairs_all), size=N_PAIRS, replace=False)
    bonus = {pairs_all[i]: float(rng.uniform(*BONUS)) for i in sorted(idx)}
    if source is not None:
        sources, rhos = _sources(source, rho)
        main = {t: _mix([s["main"][t] for s in sources], rhos, main[t]) for t in tasks}
        pos = {t: [_mix([s["pos"][t][i] for s in sources], rhos, pos[t][i]) for i in range(LENGTH)] for t in tasks}
        bonus = {tuple(k.split(">")): v for k, v in sources[0]["bonus"].items()}
    rows, prefix_noise = [], {}
    for order in itertools.permutations(tasks, LENGTH):
        stage = []  # the true gain of each stage
        for i, t in enumerate(order):
            g = W[i] * main[t] + pos[t][i]
            g += sum(v for (a, b), v in bonus.items() if b == t and a in order[:i])
            stage.append(g)
        cum = np.cumsum(stage)
        final = BASE + cum[-1] + rng.normal(0, NOISE_FINAL)
        # a probe scores the encoder trained on the prefix: orders sharing a prefix share its probe
        # (as in a real search with a fixed seed), so its noise is drawn once per prefix
        for s in range(LENGTH):
            prefix_noise.setdefault(order[: s + 1], float(rng.normal(0, NOISE_PROBE)))
        probes = [BASE - PROBE_SHIFT + cum[s] + prefix_noise[order[: s + 1]] for s in range(LENGTH)]
        test = final + rng.normal(0, NOISE_TEST)
        rows.append({"order": ">".join(order), **{f"probe_{s + 1}": f"{probes[s]:.6f}" for s in range(LENGTH)},
                     "final": f"{final:.6f}", "test_mean": f"{test:.6f}", "seconds": "0"})
    truth = {"main": main, "pos": pos, "bonus": {f"{a}>{b}": v for (a, b), v in bonus.items()}}
    return rows, truth


def _sources(source, rho) -> tuple[list[dict], list[float]]:
    sources, rhos = (source, list(rho)) if isinstance(source, list) else ([source], [rho])
    if len(sources) != len(rhos) or sum(r * r for r in rhos) > 1 + 1e-12:
        raise ValueError(f"one rho per source, sum of squares <= 1: got {rhos} for {len(sources)} sources")
    return sources, rhos


def _mix(values: list[float], rhos: list[float], fresh: float) -> float:
    """sum rho_i * value_i + sqrt(1 - sum rho_i^2) * fresh: the same spread as each input when they are
    independent draws of it."""
    return sum(r * v for r, v in zip(rhos, values)) + math.sqrt(max(0.0, 1 - sum(r * r for r in rhos))) * fresh


def describe(rows: list[dict]) -> str:
    from scipy.stats import spearmanr  # noqa: PLC0415 (scipy comes with optuna's extras; optional)

    fin = np.array([float(r["final"]) for r in rows])
    rank = np.argsort(-fin)
    lines = [f"{len(rows)} orders; best {rows[rank[0]]['order']} {fin[rank[0]]:.4f}, "
             f"2nd {rows[rank[1]]['order']} {fin[rank[1]]:.4f} (gap {fin[rank[0]] - fin[rank[1]]:.4f}), "
             f"median {np.median(fin):.4f}"]
    for s in range(1, LENGTH + 1):
        pr = np.array([float(r[f"probe_{s}"]) for r in rows])
        top = int((pr > pr[rank[0]]).sum())
        lines.append(f"  probe_{s}: Spearman with final {spearmanr(pr, fin).statistic:.3f}; best order's probe is "
                     f"beaten by {top} of {len(rows)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", type=int, default=6, choices=(5, 6), help="5: the toy tasks; 6: plus toy_extra")
    ap.add_argument("--out", default=str(ROOT / "bench" / "data" / "planted.csv"))
    args = ap.parse_args(argv)
    rows, truth = make_table(TASKS6[: args.tasks], args.seed)
    out = Path(args.out)
    write_rows(out, rows)
    print(f"wrote {out} (seed {args.seed}); planted precedence bonuses: "
          + ", ".join(f"{k} +{v:.3f}" for k, v in truth["bonus"].items()))
    try:
        print(describe(rows))
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
