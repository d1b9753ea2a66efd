"""A simulated-objective table with a planted accuracy/robustness trade-off, deterministic from a seed.

    python bench/make_pareto_table.py              # -> bench/data/pareto.csv (orders of 0-2 of 5 toy tasks)
    python bench/make_pareto_table.py --print-front

Four target languages as the toy benchmark has them (``en`` and the toy languages ``xa``, ``xb``,
``xc``, ever further from English). Each intermediate task ``t`` has a *gain* ``g(t)`` that helps
English-like languages and a *transfer* ``c(t)`` that helps the far language; its effect on a
language is a mix of the two by distance (``en``: g, ``xa``: .8g + .2c, ``xb``: .5g + .5c, ``xc``: c).
The planted trade-off: the task that raises the mean most (``toy_topic``: large g) hurts the far
language (negative c), the alignment task does the reverse, so the orders best on the mean over
languages are not those best on the worst language (``xc``), and the front holds several orders.
An order's score per language is

    score(lang) = BASE[lang] + sum_i W[i from the end] * effect(o_i, lang) + N(0, NOISE_ORDER) + N(0, NOISE_SEED)

(the last stage weighs 1, the one before ``W_EARLIER``: later stages are forgotten less), one row per
seed (3 seeds), dev and test per language (test = dev + ``N(0, NOISE_TEST)``). ``final`` is the
row's dev mean over languages; the probe after stage s is the prefix's dev mean (and ``probe_<s>_worst``
its worst language) shifted down by ``PROBE_SHIFT``, with noise drawn once per prefix and seed.

What a search reports for an order is the mean over its seeds (``search.simulate`` with a ``seed``
column): ``mean`` = the mean over seeds of ``final``, ``worst`` = the mean over seeds of the row's
worst dev language. :func:`true_front` computes the table's Pareto front on these two figures (what
``tests/test_pareto.py`` compares a search's front against). Columns: order, seed, probe_1, probe_2,
probe_1_worst, probe_2_worst, final, dev_<lang>, test_<lang>, seconds. The bench config is
``bench/data/sim_pareto.yaml``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from pathlib import Path

import numpy as np
from _outputs import write_rows  # (bench/ is on the path when a script runs)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASKS = ["toy_topic", "toy_align", "toy_length", "toy_parity", "toy_sim"]
LENGTHS = (0, 1, 2)
LANGS = ("en", "xa", "xb", "xc")
BASE = {"en": 0.80, "xa": 0.70, "xb": 0.60, "xc": 0.45}
MIX = {"en": (1.0, 0.0), "xa": (0.8, 0.2), "xb": (0.5, 0.5), "xc": (0.0, 1.0)}  # (weight of g, weight of c)
GAIN = {"toy_topic": 0.10, "toy_parity": 0.07, "toy_sim": 0.04, "toy_align": 0.01, "toy_length": -0.01}
TRANSFER = {"toy_topic": -0.02, "toy_parity": 0.00, "toy_sim": 0.03, "toy_align": 0.07, "toy_length": -0.01}
W_EARLIER = 0.7
SEEDS = (0, 1, 2)
PROBE_SHIFT = 0.1
NOISE_ORDER, NOISE_SEED, NOISE_PROBE, NOISE_TEST = 0.004, 0.004, 0.01, 0.004


def _effect(prefix: tuple[str, ...], lang: str) -> float:
    g, c = MIX[lang]
    k = len(prefix)
    return sum((1.0 if i == k - 1 else W_EARLIER) * (g * GAIN[t] + c * TRANSFER[t]) for i, t in enumerate(prefix))


def make_table(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    orders = [o for k in LENGTHS for o in itertools.permutations(TASKS, k)]
    for order in orders:
        order_noise = {lang: float(rng.normal(0, NOISE_ORDER)) for lang in LANGS}
        for s in SEEDS:
            dev = {lang: BASE[lang] + _effect(order, lang) + order_noise[lang] + float(rng.normal(0, NOISE_SEED))
                   for lang in LANGS}
            test = {lang: v + float(rng.normal(0, NOISE_TEST)) for lang, v in dev.items()}
            row = {"order": ">".join(order), "seed": s}
            for i in range(1, max(LENGTHS) + 1):  # probes after each stage (empty past the order's end)
                if i <= len(order):
                    pl = {lang: BASE[lang] - PROBE_SHIFT + _effect(order[:i], lang) + float(rng.normal(0, NOISE_PROBE))
                          for lang in LANGS}
                    row[f"probe_{i}"] = f"{np.mean(list(pl.values())):.6f}"
                    row[f"probe_{i}_worst"] = f"{min(pl.values()):.6f}"
                else:
                    row[f"probe_{i}"] = row[f"probe_{i}_worst"] = ""
            row["final"] = f"{np.mean(list(dev.values())):.6f}"
            row.update({f"dev_{lang}": f"{v:.6f}" for lang, v in dev.items()})
            row.update({f"test_{lang}": f"{v:.6f}" for lang, v in test.items()})
            row["seconds"] = "0"
            rows.append(row)
    return rows


def order_figures(path: str | Path) -> dict[str, dict[str, float]]:
    """order -> {mean, worst}: what a search's trial reports for it (means over the table's seeds)."""
    by: dict[str, list[dict]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            by.setdefault(r["order"], []).append(r)
    out = {}
    for order, rs in by.items():
        langs = [c for c in rs[0] if c.startswith("dev_")]
        out[order] = {"mean": float(np.mean([float(r["final"]) for r in rs])),
                      "worst": float(np.mean([min(float(r[c]) for c in langs) for r in rs]))}
    return out


def true_front(path: str | Path, objectives=("mean", "worst")) -> list[str]:
    """The table's Pareto front on ``objectives`` (orders, best first objective first)."""
    from search.pareto import directions, front

    figs = order_figures(path)
    orders = list(figs)
    idx = front([tuple(figs[o][n] for n in objectives) for o in orders], directions(list(objectives)))
    return sorted((orders[i] for i in idx), key=lambda o: -figs[o][objectives[0]])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "data" / "pareto.csv"))
    ap.add_argument("--print-front", action="store_true", help="only print the front of --out")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not args.print_front:
        rows = make_table(args.seed)
        write_rows(out, rows)
        print(f"wrote {out} (seed {args.seed}): {len(rows) // len(SEEDS)} orders x {len(SEEDS)} seeds")
    figs = order_figures(out)
    best_mean = max(figs, key=lambda o: figs[o]["mean"])
    best_worst = max(figs, key=lambda o: figs[o]["worst"])
    print(f"best mean: {best_mean or 'F'} ({figs[best_mean]['mean']:.4f}, worst {figs[best_mean]['worst']:.4f}); "
          f"best worst: {best_worst or 'F'} (mean {figs[best_worst]['mean']:.4f}, worst {figs[best_worst]['worst']:.4f})")
    front = true_front(out)
    print(f"true Pareto front (mean, worst), {len(front)} of {len(figs)} orders:")
    for o in front:
        print(f"  {o or 'F'}  mean {figs[o]['mean']:.4f}  worst {figs[o]['worst']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
