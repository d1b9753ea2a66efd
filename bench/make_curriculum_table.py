"""A larger simulated-objective table (259 orders: lengths 1-3 of 7 tasks, 3 seeds per order) whose
structure differs from planted's (bench/make_planted_table.py), deterministic from a seed.

    python bench/make_curriculum_table.py          # -> bench/data/curriculum.csv (777 rows: 259 orders x 3 seeds)

The true score of an order ``o = (o_1, .., o_k)`` (depth from the end: ``d_i = k - i``, the last stage 0):

    final(o) = BASE + sum_i RHO ** d_i * main(o_i)                       recency: earlier stages are forgotten
             + sum_{adjacent a, b} CURR * (diff(b) - diff(a))  if diff(b) > diff(a)     easy-to-hard step
                                   - BACK * (diff(a) - diff(b))  otherwise               hard-to-easy step
             - sum_{adjacent a, b} INTERF * [(a, b) interferes]      3 random ordered pairs hurt when adjacent
             + ENABLE_FOLLOWED if the enabler task is followed by another stage, - ENABLE_LAST if it is last
    final_s(o) = final(o) + N(0, SEED_SD)                                 one row per seed s = 0, 1, 2

``diff`` is a difficulty in [0, 1] per task, ``main`` ~ N(0, MAIN_SD) per task, the enabler is one task
(it only helps when something follows it). Planted instead weighs positions from the START, pays bonuses
for non-adjacent precedence pairs and has no enabler, curriculum or interference.

The probe after stage ``i`` scores the encoder after the prefix ``o[:i]`` with a short fine-tune: it
sees recency more sharply (``RHO_PROBE``) and none of the curriculum, interference and enabler effects
except that the enabler looks BAD when it is last (as a short probe sees it), shifted down by
PROBE_SHIFT, with noise N(0, PROBE_SD) drawn once per (prefix, seed): orders that share a prefix share its
probes for the same seed, as in a real search with the stage cache.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from _outputs import write_rows  # (bench/ is on the path when a script runs)

ROOT = Path(__file__).resolve().parents[1]
TASKS7 = ["toy_topic", "toy_align", "toy_length", "toy_parity", "toy_sim", "toy_extra", "toy_extra2"]
LENGTHS, SEEDS = (1, 2, 3), 3
BASE, PROBE_SHIFT = 0.60, 0.10
RHO, RHO_PROBE = 0.55, 0.3
MAIN_SD = 0.025
CURR, BACK = 0.03, 0.015
N_INTERF, INTERF = 3, 0.03
ENABLE_FOLLOWED, ENABLE_LAST = 0.035, 0.02
SEED_SD, PROBE_SD = 0.008, 0.012


def make_table(tasks: list[str], seed: int, source: dict | None = None, rho: float = 0.0) -> tuple[list[dict], dict]:
    """The table and its truth. ``source`` (another table's truth) makes a *related target*
    (bench/prior_from.py): the properties of the tasks themselves (difficulty, interfering pairs, the
    enabler) are the source's; their effect on the target is ``rho * source + sqrt(1 - rho^2) * fresh``
    (several sources, a list with a list of rhos, as bench/make_planted_table.py mixes them)."""
    rng = np.random.default_rng(seed)
    main = {t: float(rng.normal(0, MAIN_SD)) for t in tasks}
    diff = dict(zip(tasks, rng.permutation(len(tasks)) / (len(tasks) - 1)))
    pairs = [(a, b) for a in tasks for b in tasks if a != b]
    interf = {pairs[i] for i in rng.choice(len(pairs), size=N_INTERF, replace=False)}
    enabler = tasks[int(rng.integers(len(tasks)))]
    if source is not None:
        from make_planted_table import _mix, _sources

        sources, rhos = _sources(source, rho)
        main = {t: _mix([s["main"][t] for s in sources], rhos, main[t]) for t in tasks}
        diff, enabler = dict(sources[0]["difficulty"]), sources[0]["enabler"]
        interf = {tuple(p.split(">")) for p in sources[0]["interfering"]}

    def true_final(o: tuple) -> float:
        k = len(o)
        v = BASE + sum(RHO ** (k - 1 - i) * main[t] for i, t in enumerate(o))
        for a, b in zip(o, o[1:]):
            v += CURR * (diff[b] - diff[a]) if diff[b] > diff[a] else -BACK * (diff[a] - diff[b])
            v -= INTERF * ((a, b) in interf)
        if enabler in o:
            v += ENABLE_FOLLOWED if o[-1] != enabler else -ENABLE_LAST
        return v

    def true_probe(p: tuple) -> float:
        k = len(p)
        v = BASE - PROBE_SHIFT + sum(RHO_PROBE ** (k - 1 - i) * main[t] for i, t in enumerate(p))
        return v - (ENABLE_LAST if p[-1] == enabler else 0.0)

    orders = [o for k in LENGTHS for o in itertools.permutations(tasks, k)]
    probe_noise = {}
    rows = []
    for o in orders:
        f = true_final(o)
        for s in range(SEEDS):
            probes = []
            for i in range(1, len(o) + 1):
                probe_noise.setdefault((o[:i], s), float(rng.normal(0, PROBE_SD)))
                probes.append(true_probe(o[:i]) + probe_noise[(o[:i], s)])
            final = f + float(rng.normal(0, SEED_SD))
            rows.append({"order": ">".join(o), "seed": s,
                         **{f"probe_{i}": (f"{probes[i - 1]:.6f}" if i <= len(o) else "") for i in (1, 2, 3)},
                         "final": f"{final:.6f}", "test_mean": f"{final + float(rng.normal(0, SEED_SD)):.6f}",
                         "true": f"{f:.6f}"})
    truth = {"main": main, "difficulty": diff, "interfering": [f"{a}>{b}" for a, b in sorted(interf)], "enabler": enabler}
    return rows, truth


def describe(rows: list[dict]) -> str:
    from scipy.stats import spearmanr

    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["order"], []).append(r)
    mean = {o: np.mean([float(r["final"]) for r in rs]) for o, rs in by.items()}
    sd = np.mean([np.std([float(r["final"]) for r in rs], ddof=1) for rs in by.values()])
    ranked = sorted(mean, key=lambda o: -mean[o])
    lines = [f"{len(by)} orders x {SEEDS} seeds; best {ranked[0]} {mean[ranked[0]]:.4f}, 2nd {ranked[1]} "
             f"{mean[ranked[1]]:.4f}, median {np.median(list(mean.values())):.4f}; standard error of an order's "
             f"mean {sd / np.sqrt(SEEDS):.4f}; orders within one standard error of the best: "
             f"{sum(mean[ranked[0]] - mean[o] <= sd / np.sqrt(SEEDS) for o in mean)}"]
    last = [o for o in by if o.count(">") == 2]
    pr = [np.mean([float(r["probe_3"]) for r in by[o]]) for o in last]
    lines.append(f"  length-3 orders: Spearman(probe after stage 3, final) {spearmanr(pr, [mean[o] for o in last]).statistic:.2f}")
    pr1 = [np.mean([float(r["probe_1"]) for r in by[o]]) for o in last]
    lines.append(f"  length-3 orders: Spearman(probe after stage 1, final) {spearmanr(pr1, [mean[o] for o in last]).statistic:.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "data" / "curriculum.csv"))
    args = ap.parse_args(argv)
    rows, truth = make_table(TASKS7, args.seed)
    out = Path(args.out)
    write_rows(out, rows)
    print(f"wrote {out} (seed {args.seed}); enabler {truth['enabler']}, interfering {', '.join(truth['interfering'])}")
    print(describe(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
