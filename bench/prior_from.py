"""Does an earlier search on a related target make order_bo find the best order sooner (``search.prior_from``)?

    python bench/prior_from.py --seeds 30 --json bench/data/prior_from.json    # the committed figures
    python bench/prior_from.py --seeds 2 --generators planted                  # a quick look

The question a user has: "I searched orders for XNLI; now I search them for PAWS-X. Should the new
search start from what the first one measured?" It depends on how related the two targets are, so the
benchmark measures it over a range, on the two synthetic generators (bench/make_planted_table.py,
bench/make_curriculum_table.py):

* the *earlier* target is a draw of the generator (searcher seed 0: the committed planted.csv /
  curriculum.csv; every seed draws its own earlier and new tables, so a median is over table draws too,
  not one table's luck); the earlier search is order_bo (the default searcher) on it, stopped at
  ``--earlier-budget`` (25%) of exhaustive's compute, its results.csv written as ``itt search`` writes it;
* the *new* targets share the tasks' own properties with the earlier one (planted: the precedence
  bonuses; curriculum: difficulty, interfering pairs, the enabler) and mix their effects on the target:
  ``rho * earlier + sqrt(1 - rho^2) * fresh`` for rho = 0.9, 0.5 and 0; plus an *unrelated* target
  (another seed of the generator: nothing shared), the case where the prior can only mislead;
* on each new target, order_bo without a prior and with ``search.prior_from`` pointing at the earlier
  search (the prior built by ``search.transfer.order_prior``, as the driver builds it), same seeds.

Figures as bench/search_efficiency.py computes them (its ``offline_search`` and ``curve``: compute in
stage-trainings with the stage cache as a fraction of the new target's exhaustive compute; regret of the
best observed order, normalised by best - median order): per new target, medians and IQR over seeds of
the regret area (f = 1..50%), compute to eps, regret at 5% and 10%; the share of seeds on which the
prior's area is lower, and a paired Wilcoxon signed-rank test on the areas (scipy). ``relatedness`` is
the Spearman correlation of the earlier and new tables' true order scores (over the orders of the space).
The earlier search's compute is not counted: it was spent for the earlier target.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

GENERATORS = {"planted": ("make_planted_table", "TASKS6", "sim_planted.yaml"),
              "curriculum": ("make_curriculum_table", "TASKS7", "sim_curriculum.yaml")}
RHOS = (0.9, 0.5, 0.0)


def parse_args(argv=None, description: str = __doc__) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description.splitlines()[0])
    ap.add_argument("--generators", default="planted,curriculum")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--earlier-budget", type=float, default=0.25, help="each earlier search's compute (fraction of exhaustive)")
    ap.add_argument("--budget", type=float, default=0.5, help="each new search's compute (fraction of exhaustive)")
    ap.add_argument("--workers", type=int, default=2, help="processes (one seed each at a time)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    # every argument checked before the first search: one error line (exit 2), not a traceback or an error
    # after the generators before a bad one have run
    bad = [g for g in a.generators.split(",") if g not in GENERATORS]
    if bad or not a.generators.strip(","):
        ap.error(f"--generators: unknown '{bad[0] if bad else ''}' (one of {', '.join(GENERATORS)})")
    for name in ("seeds", "workers"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be >= 1 (got {getattr(a, name)})")
    for name in ("budget", "earlier_budget"):
        if not 0 < getattr(a, name) <= 1:
            ap.error(f"--{name.replace('_', '-')} must lie in (0, 1], a fraction of exhaustive's compute "
                     f"(got {getattr(a, name)})")
    return a


# ------------------------------------------------------------------ tables
def write_targets(gen: str, folder: Path, draw: int) -> dict[str, str]:
    """Draw ``draw`` of the earlier target and of its new targets (name -> bench config path; tables in
    ``folder``). Draw 0's earlier target is the committed table; every draw has its own tables, so a
    median over draws is not one table's luck (one unrelated table can favour or punish a prior by chance)."""
    import importlib

    from _outputs import write_rows

    module, tasks_name, config = GENERATORS[gen]
    mod = importlib.import_module(module)
    tasks = getattr(mod, tasks_name)
    first = 0 if draw == 0 else 1000 + draw
    rows, source = mod.make_table(tasks, first)
    tables = {"earlier": rows, "unrelated": mod.make_table(tasks, 3000 + draw)[0]}
    for i, rho in enumerate(RHOS):
        tables[f"rho={rho}"] = mod.make_table(tasks, 2000 + 10 * draw + i, source=source, rho=rho)[0]
    text = (ROOT / "bench" / "data" / config).read_text()
    out = {}
    for name, rows in tables.items():
        table = folder / f"{gen}_d{draw}_{name}.csv"
        write_rows(table, rows)
        cfg = folder / f"{gen}_d{draw}_{name}.yaml"
        cfg.write_text(text.replace(f"table: {gen}.csv", f"table: {table}"))
        out[name] = str(cfg)
    return out


def relatedness(earlier: dict, new: dict) -> float:
    from scipy.stats import spearmanr

    orders = earlier["orders"]
    return float(spearmanr([earlier["truth"][o] for o in orders], [new["truth"][o] for o in orders]).statistic)


# ------------------------------------------------------------------ searches
def earlier_search(info: dict, seed: int, budget: float, exp: Path) -> int:
    """order_bo on an earlier target, its results.csv written in ``exp`` as ``itt search`` writes it; its trials."""
    import search_efficiency as se

    run = se.offline_search(info, "order_bo", seed, SimpleNamespace(budget=budget))
    exp.mkdir(parents=True, exist_ok=True)
    with open(exp / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["order", "status", "score"])
        w.writeheader()
        w.writerows({k: r[k] for k in ("order", "status", "score")} for r in run["rows"])
    return len(run["rows"])


def one_seed(job: tuple) -> dict:
    """For one searcher seed (and table draw): the earlier search and, on every new target, the two new searches."""
    import search_efficiency as se

    from search.config import load_search
    from search.transfer import order_prior

    gen, seed, budget, earlier_budget, folder = job
    configs = write_targets(gen, Path(folder), seed)
    infos = {name: se.table_info(cfg) for name, cfg in configs.items()}
    exp = Path(folder) / f"{gen}_earlier_s{seed}"  # the earlier search's experiment, as results.csv has it
    out = {"seed": seed, "earlier_trials": earlier_search(infos["earlier"], seed, earlier_budget, exp), "targets": {}}
    for name, info in infos.items():
        if name == "earlier":
            continue
        scfg, chain, _ = load_search(info["config"], [f"search.prior_from={exp}"])
        prior = order_prior(scfg, chain)
        plain = se.offline_search(info, "order_bo", seed, SimpleNamespace(budget=budget))
        with_prior = se.offline_search(info, "order_bo", seed, SimpleNamespace(budget=budget), prior=prior)
        out["targets"][name] = {"relatedness": relatedness(infos["earlier"], info),
                                "order_bo": figures(info, plain), "order_bo+prior_from": figures(info, with_prior)}
    return out


# ------------------------------------------------------------------ figures
def figures(info: dict, run: dict) -> dict:
    import search_efficiency as se

    c = se.curve(info, run)
    return {"area": c["area"], "to_eps": c["to_eps"], "to_best": c["to_best"],
            "regret@5%": c["regret"][se.FRACTIONS.index(0.05)], "regret@10%": c["regret"][se.FRACTIONS.index(0.10)]}


def summarize(gen: str, runs: list[dict]) -> list[dict]:
    rows = []
    for name in runs[0]["targets"]:
        per = {k: [r["targets"][name][k] for r in runs] for k in ("order_bo", "order_bo+prior_from")}
        related = statistics.median(r["targets"][name]["relatedness"] for r in runs)
        for k, cs in per.items():
            rows.append({"generator": gen, "target": name, "relatedness": round(related, 3), "strategy": k,
                         **stats(cs, per["order_bo"] if k != "order_bo" else None)})
    return rows


def stats(cs: list[dict], base: list[dict] | None) -> dict:
    """A strategy's figures over seeds (median and IQR); against ``base`` (no prior, same seeds): the share
    of seeds with a lower area and a paired Wilcoxon signed-rank test on the areas."""
    from scipy.stats import wilcoxon

    row = {"runs": len(cs)}
    for m in ("area", "to_eps", "regret@5%", "regret@10%"):
        xs = sorted(c[m] for c in cs)
        row[m] = [statistics.median(xs), xs[len(xs) // 4], xs[(3 * len(xs)) // 4]]
    if base is not None:
        a, b = [c["area"] for c in base], [c["area"] for c in cs]
        diff = [y - x for x, y in zip(a, b)]
        row["lower_area_share"] = round(sum(d < 0 for d in diff) / len(diff), 3)
        row["wilcoxon_p"] = float(wilcoxon(a, b).pvalue) if any(diff) and len(diff) > 1 else math.nan
    return row


def fmt(v) -> str:
    if isinstance(v, list):
        return f"{v[0]:.3f} ({v[1]:.3f}-{v[2]:.3f})"
    return "" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def print_table(rows: list[dict], first: str = "target") -> None:
    cols = ["generator", first, "relatedness", "strategy", "runs", "area", "to_eps", "regret@5%", "regret@10%",
            "lower_area_share", "wilcoxon_p"]
    cells = [cols] + [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    for c in cells:
        print("  ".join(x.ljust(w) for x, w in zip(c, widths)))


def run(args, one_seed, summarize, out: dict, first: str = "target", progress=lambda runs: "") -> int:
    """Every generator's seeds (``one_seed`` jobs in ``args.workers`` processes), summarised and printed;
    ``out`` filled with the runs and the summary and written to ``args.json``."""
    t0 = time.perf_counter()
    out.update({"seeds": args.seeds, "earlier_budget": args.earlier_budget, "budget": args.budget, "summary": [], "runs": {}})
    with tempfile.TemporaryDirectory(prefix="prior_from_") as tmp:
        for gen in (g for g in args.generators.split(",") if g):
            jobs = [(gen, s, args.budget, args.earlier_budget, tmp) for s in range(args.seeds)]
            with ProcessPoolExecutor(max_workers=args.workers) as ex:
                runs = list(ex.map(one_seed, jobs))
            out["runs"][gen] = runs
            out["summary"] += summarize(gen, runs)
            print(f"{gen}: {args.seeds} seeds, {progress(runs)}{time.perf_counter() - t0:.0f} s so far", flush=True)
    print_table(out["summary"], first)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{out['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


def main(argv=None) -> int:
    return run(parse_args(argv), one_seed, summarize, {},
               progress=lambda runs: f"earlier search {statistics.median(r['earlier_trials'] for r in runs)} trials (median), ")


if __name__ == "__main__":
    sys.exit(main())
