"""Stage cache savings: an exhaustive sweep of all 24 orders of 4 toy intermediate tasks, with and
without the cache (itt/cache.py), in one run.

Prints the stage trainings executed (goal: exactly the number of distinct prefixes, 4 + 12 + 24 = 64,
against 24 x 4 = 96 without the cache), the wall time of each sweep and their ratio, and whether every
order's reports (stage losses, probes, final metrics; not the seconds they took) are identical. The chains
run in-process through ``itt.chain.run_chain`` (one ``prepare`` shared by all orders: the tasks' data does
not depend on the order). ``--search`` also runs the same sweep through ``itt search`` (Ray Tune + Train, searcher
exhaustive, cache on) and prints the search's own cache line and the results.csv sums.

    python bench/stage_cache.py                 # in-process, ~5 min on 2 CPU cores
    python bench/stage_cache.py --search        # + the Ray search (several minutes more)
    python bench/stage_cache.py --search --no-sweep   # the Ray search only
"""

from __future__ import annotations

import argparse
import copy
import functools
import csv
import os
import sys
import tempfile
import time
from dataclasses import replace
from itertools import permutations
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

print = functools.partial(print, flush=True)  # noqa: A001  (progress reaches a redirected log at once)
TASKS = ["toy_topic", "toy_align", "toy_length", "toy_parity"]
COUNTS = ("stages_trained", "stages_from_cache", "cache_seconds_saved")
# what a chain measured rather than computed (a stage from the cache reports the seconds it took when trained):
# left out of the comparison with the counts, which differ by design
TIMES = ("stage_seconds", "trained_seconds")


def base_config(args) -> dict:
    """configs/quickstart.yaml's toy tasks and tiny model, with shorter stages."""
    raw = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    raw.pop("search")
    raw.update({"order": TASKS, "save_checkpoint": False, "seeds": [0],
                "train": {**raw["train"], "max_steps": args.steps},
                "finetune": {"max_steps": args.target_steps},
                "probe": {"enabled": True, "steps": args.probe_steps, "max_eval_examples": 100},
                "eval": {"batch_size": 256, "splits": ["dev", "test"]},
                "toy": {**raw["toy"], "n_train": args.n_train, "n_eval": 200},
                "hardware": {"device": "cpu", "num_threads": args.threads}})
    raw["eval"].pop("perturbation", None)
    return raw


def sweep(cfg, p, cache, orders: int | None = None):
    """Every order's chain (the first ``orders`` only, if given), its per-stage reports by order."""
    from itt.chain import run_chain

    out = {}
    for order in list(permutations(TASKS))[:orders]:
        c = cfg.model_copy(update={"order": list(order)})
        q = replace(p, cfg=c, order=[next(t for t in p.order if t.name == n) for n in order])
        reports = []
        run_chain(c, prepared=q, log=lambda *a: None, cache=cache, report=lambda m, s: reports.append(dict(m)))
        out[">".join(order)] = reports
    return out


def strip(reports):
    return [{k: v for k, v in m.items() if k not in COUNTS + TIMES} for m in reports]


def run_search(raw: dict, work: Path) -> None:
    from search.cli import main

    raw = copy.deepcopy(raw)
    raw.pop("hardware")
    raw["search"] = {"candidates": TASKS, "length": 4, "searcher": "exhaustive", "probe_steps": raw["probe"]["steps"],
                     "scheduler": {"type": "none"},
                     "resources": {"workers_per_trial": 1, "cpus_per_worker": 0.75, "trial_cpus": 0.25},
                     "tracking": {"enabled": False}}
    path = work / "search.yaml"
    path.write_text(yaml.safe_dump(raw))
    t0 = time.perf_counter()
    code = main(["search", str(path), "--storage", str(work / "runs"), "--name", "bench-cache"])
    wall = time.perf_counter() - t0
    rows = list(csv.DictReader((work / "runs" / "bench-cache" / "results.csv").open()))
    trained = sum(int(float(r["stages_trained"] or 0)) for r in rows)
    cached = sum(int(float(r["stages_from_cache"] or 0)) for r in rows)
    print(f"itt search (exhaustive, Ray, cache on): exit {code}, {len(rows)} trials, "
          f"{sum(r['status'] == 'completed' for r in rows)} completed; stage trainings {trained} "
          f"(from cache {cached}); wall {wall:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps per intermediate stage")
    ap.add_argument("--target-steps", type=int, default=40)
    ap.add_argument("--probe-steps", type=int, default=10)
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--search", action="store_true", help="also the sweep through `itt search` (Ray)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the in-process sweeps (with --search)")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from itt.cache import StageCache
    from itt.chain import prepare
    from itt.config import validate

    raw = base_config(args)
    cfg = validate(raw, "bench")
    p = prepare(cfg, log=lambda *a: None)
    print(f"sweep: all {len(list(permutations(TASKS)))} orders of {', '.join(TASKS)}; tiny BERT "
          f"(hidden {cfg.model.tiny.hidden_size}, {cfg.model.tiny.num_layers} layers), {args.steps} steps per stage, "
          f"probe {args.probe_steps} steps, target {args.target_steps} steps, {args.threads} thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        if args.no_sweep:
            if args.search:
                run_search(raw, Path(tmp))
            return
        sweep(cfg, p, None, orders=1)  # warm-up, untimed: the sweep timed first would pay first-use costs alone
        t0, c0 = time.perf_counter(), time.process_time()
        plain = sweep(cfg, p, None)
        t_plain, c_plain = time.perf_counter() - t0, time.process_time() - c0
        print(f"  sweep without cache: {t_plain:.1f} s")
        cache = StageCache(str(Path(tmp) / "stage_cache"))
        t0, c0 = time.perf_counter(), time.process_time()
        cached = sweep(cfg, p, cache)
        t_cache, c_cache = time.perf_counter() - t0, time.process_time() - c0
        n_plain = sum(r[-1]["stages_trained"] for r in plain.values())
        n_cache = sum(r[-1]["stages_trained"] for r in cached.values())
        prefixes = len({tuple(o.split(">")[:k]) for o in plain for k in range(1, 5)})
        same = [o for o in plain if strip(plain[o]) == strip(cached[o])]
        print(f"distinct prefixes: {prefixes}")
        print(f"stage trainings executed: without cache {n_plain}, with cache {n_cache} "
              f"(hits {cache.stats.hits}, misses {cache.stats.misses})")
        print(f"wall time: without cache {t_plain:.1f} s, with cache {t_cache:.1f} s, ratio {t_cache / t_plain:.2f} "
              f"(cache size {cache.size() / 1e6:.1f} MB in {len(cache.entries())} entries)")
        print(f"CPU time (robust to other load on the machine): without cache {c_plain:.1f} s, with cache "
              f"{c_cache:.1f} s, ratio {c_cache / c_plain:.2f}")
        print(f"identical reports (stage losses, probes, final metrics) for {len(same)}/{len(plain)} orders")
        finals = sorted(((r[-1]["test_accuracy_mean"], o) for o, r in cached.items()), reverse=True)
        print(f"final test accuracy (mean over languages): best {finals[0][0]:.4f} ({finals[0][1]}), "
              f"worst {finals[-1][0]:.4f} ({finals[-1][1]}), {len({f for f, _ in finals})} distinct values")
        if args.search:
            run_search(raw, Path(tmp))


if __name__ == "__main__":
    main()
