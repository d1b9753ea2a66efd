"""Several earlier searches as one prior (``search.prior_from: [A, B]``): does the GP follow the related one?

    python bench/prior_from_several.py --seeds 20 --json bench/data/prior_from_several.json   # the committed figures
    python bench/prior_from_several.py --seeds 2 --generators planted                         # a quick look

A user who searched orders for XNLI and for PAWS-X now searches them for a third target and passes both
earlier searches. Which of them resembles the new target is not known in advance; the prior
(``search.transfer.PriorEnsemble``) gives the GP one input per earlier search and lets its marginal
likelihood decide. Two cases, on both synthetic generators (bench/prior_from.py draws the tables the
same way, per searcher seed):

* **related + unrelated**: earlier searches on A (draw d of the generator) and on U (an unrelated draw:
  nothing shared); the new target is related to A only (``rho`` 0.7 on A's effects, A's task properties).
  Following both should be about as good as following A alone, and better than no prior.
* **two halves**: earlier searches on A and on B (A's task properties, fresh effects); the new target
  mixes both (``0.6 * A + 0.6 * B + 0.53 * fresh``). Both together should beat either alone.

Per case: order_bo without a prior, with each earlier search alone, and with both; same searcher seeds.
Each earlier search is order_bo at ``--earlier-budget`` (25%) of its own exhaustive compute; its compute
is not counted. Figures as bench/prior_from.py computes them (regret area f = 1..50%, compute to eps,
regret at 5% / 10%), medians and IQR over seeds; for each strategy with a prior, the share of seeds on
which its area is lower than without one, and a paired Wilcoxon signed-rank test on the areas.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from prior_from import GENERATORS, earlier_search, figures, parse_args, relatedness, run, stats  # noqa: E402

CASES = {  # new target -> (its sources and rhos, the earlier searches passed)
    "related+unrelated": ((("A", 0.7),), ("A", "U")),
    "two halves": ((("A", 0.6), ("B", 0.6)), ("A", "B")),
}


# ------------------------------------------------------------------ tables
def write_tables(gen: str, folder: Path, draw: int) -> dict[str, str]:
    """Draw ``draw``'s earlier targets (A, U, B) and the new ones (name -> bench config path)."""
    import importlib

    from _outputs import write_rows

    module, tasks_name, config = GENERATORS[gen]
    mod = importlib.import_module(module)
    tasks = getattr(mod, tasks_name)
    rows_a, a = mod.make_table(tasks, 0 if draw == 0 else 1000 + draw)  # as bench/prior_from.py's earlier target
    rows_b, b = mod.make_table(tasks, 4000 + draw, source=a, rho=0.0)
    tables, truths = {"A": rows_a, "U": mod.make_table(tasks, 3000 + draw)[0], "B": rows_b}, {"A": a, "B": b}
    for i, (case, (mix, _)) in enumerate(CASES.items()):
        tables[case] = mod.make_table(tasks, 5000 + 10 * draw + i, source=[truths[s] for s, _ in mix],
                                      rho=[r for _, r in mix])[0]
    text = (ROOT / "bench" / "data" / config).read_text()
    out = {}
    for name, rows in tables.items():
        stem = f"{gen}_d{draw}_{name.replace(' ', '_').replace('+', '_')}"
        write_rows(folder / f"{stem}.csv", rows)
        (folder / f"{stem}.yaml").write_text(text.replace(f"table: {gen}.csv", f"table: {folder / f'{stem}.csv'}"))
        out[name] = str(folder / f"{stem}.yaml")
    return out


# ------------------------------------------------------------------ searches
def one_seed(job: tuple) -> dict:
    """One searcher seed (and table draw): the earlier searches and, per case, the new searches."""
    import search_efficiency as se

    from search.config import load_search
    from search.transfer import order_prior

    gen, seed, budget, earlier_budget, folder = job
    configs = write_tables(gen, Path(folder), seed)
    infos = {name: se.table_info(cfg) for name, cfg in configs.items()}
    exps = {}
    for s in ("A", "U", "B"):
        exps[s] = str(Path(folder) / f"{gen}_{s}_s{seed}")
        earlier_search(infos[s], seed, earlier_budget, Path(exps[s]))
    out = {"seed": seed, "cases": {}}
    for case, (_, passed) in CASES.items():
        info = infos[case]
        strategies = {"order_bo": None, **{f"+{s}": [s] for s in passed}, f"+{'+'.join(passed)}": list(passed)}
        res = {"relatedness": {s: relatedness(infos[s], info) for s in passed}}
        for name, sources in strategies.items():
            prior = None
            if sources:
                scfg, chain, _ = load_search(info["config"], [f"search.prior_from={','.join(exps[s] for s in sources)}"])
                prior = order_prior(scfg, chain)
            res[name] = figures(info, se.offline_search(info, "order_bo", seed, SimpleNamespace(budget=budget), prior=prior))
        out["cases"][case] = res
    return out


# ------------------------------------------------------------------ figures
def summarize(gen: str, runs: list[dict]) -> list[dict]:
    rows = []
    for case, first in runs[0]["cases"].items():
        related = " ".join(f"{s}:{round(statistics.median(r['cases'][case]['relatedness'][s] for r in runs), 3):.2f}"
                           for s in first["relatedness"])
        base = [r["cases"][case]["order_bo"] for r in runs]
        for k in (k for k in first if k != "relatedness"):
            rows.append({"generator": gen, "case": case, "relatedness": related, "strategy": k,
                         **stats([r["cases"][case][k] for r in runs], base if k != "order_bo" else None)})
    return rows


def main(argv=None) -> int:
    cases = {k: {"target": [list(x) for x in mix], "passed": list(p)} for k, (mix, p) in CASES.items()}
    return run(parse_args(argv, __doc__), one_seed, summarize, {"cases": cases}, first="case")


if __name__ == "__main__":
    raise SystemExit(main())
