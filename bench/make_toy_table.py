"""A simulated-objective table from real toy chains: every order of 3 of 5 toy tasks, run once.

The exact command that produced ``bench/data/toy_3of5.csv`` (background, lowest priority, resume-safe)::

    cd /work/main && nohup nice -n 19 python bench/make_toy_table.py > bench/data/toy_3of5.log 2>&1 &

(20 minutes for the 60 chains on the shared 2-core machine, 8-11 s per chain when it had a core to
itself; a few took 40 s while Ray benchmarks ran beside it: the ``seconds`` column is wall time.)

Each of the 60 orders (3 of toy_topic, toy_align, toy_length, toy_parity, toy_sim) runs once through
``itt.chain.run_chain`` on the toy target toy_xnli, with a probe after every intermediate stage.
Settings: configs/quickstart.yaml plus the overrides in ``OVERRIDES`` below (2000 training examples
per task, 1 epoch (63 steps) per intermediate stage, a 4-epoch (250-step) target fine-tune, 50-step
probes, no checkpoint, no noisy dev, one torch thread; about 10 s per chain on a shared 2-core CPU).
With 1000 examples (125 target steps) or 30-step probes nearly every order stays at chance (0.32-0.35
dev accuracy, probes a constant 0.32), so the table would hold no structure to search for. Data and tokenizer are prepared once for all five tasks and shared by every
chain (``run_chain(prepared=...)``); the tokenizer of the toy benchmark depends only on the lexicon,
so each chain's numbers are the ones a standalone ``run_chain`` of that order gives.

Columns: order ('>'-joined), probe_1..probe_3 (probe dev accuracy, mean over languages, after each
intermediate stage), final (dev accuracy mean after the target fine-tune), test_mean, seconds.
Rows are appended (and flushed) as chains finish; orders already in the CSV are skipped, so the
command can be re-run after an interruption. ``search.simulate.table`` reads ``order``,
``probe_{i}`` and ``final`` (search/trial.py ``load_table``).

    python bench/make_toy_table.py --limit 1          # one chain, to time it
    python bench/make_toy_table.py --out /tmp/t.csv --set train.epochs=2
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["toy_topic", "toy_align", "toy_length", "toy_parity", "toy_sim"]
LENGTH = 3
OVERRIDES = [
    "toy.n_train=2000",  # 1000 x 4 target epochs (125 steps) stays at chance; 2000 (250) learns
    "train.epochs=1",
    "finetune.epochs=4",
    "probe.enabled=true",
    "probe.steps=50",  # 30 steps barely moves off the constant prediction
    "save_checkpoint=false",
    "eval.perturbation.enabled=false",
    "eval.splits=[dev,test]",
    "hardware.num_threads=1",
    "seeds=[0]",
]
COLUMNS = ["order", *[f"probe_{i}" for i in range(1, LENGTH + 1)], "final", "test_mean", "seconds"]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "data" / "toy_3of5.csv"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra key=value overrides")
    ap.add_argument("--limit", type=int, default=None, help="run at most this many new orders")
    return ap.parse_args(argv)


def done_orders(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    with open(path, newline="") as f:
        return {r["order"] for r in csv.DictReader(f) if r.get("order") and r.get("final")}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from itt.chain import prepare, run_chain
    from itt.config import load_config
    from itt.tasks import resolve_task

    overrides = OVERRIDES + args.overrides
    base = load_config(args.config, overrides + [f"order=[{','.join(TASKS)}]"])
    torch.set_num_threads(base.hardware.num_threads or 1)
    t0 = time.perf_counter()
    shared = prepare(base, log=lambda *a: None)  # data of all five tasks, tokenizer, probe sets: once
    print(f"prepared in {time.perf_counter() - t0:.1f}s", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    have = done_orders(out)
    orders = [list(p) for p in itertools.permutations(TASKS, LENGTH)]
    todo = [o for o in orders if ">".join(o) not in have]
    if args.limit is not None:
        todo = todo[: args.limit]
    print(f"{len(orders)} orders, {len(have)} in {out} already, running {len(todo)}", flush=True)
    new_file = not out.is_file() or out.stat().st_size == 0
    with open(out, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new_file:
            w.writeheader()
            f.flush()
        for n, order in enumerate(todo, 1):
            cfg = base.model_copy(update={"order": order})
            p = dataclasses.replace(shared, cfg=cfg, order=[resolve_task(t, cfg.tasks) for t in order])
            probes: dict[int, float] = {}

            def report(metrics: dict, step: int) -> None:
                if not metrics.get("final"):
                    probes[step] = metrics["probe_accuracy_mean"]

            t = time.perf_counter()
            res = run_chain(cfg, out_dir=None, report=report, log=lambda *a: None, prepared=p)
            secs = time.perf_counter() - t
            agg = res["aggregate"]
            row = {"order": ">".join(order), **{f"probe_{i}": f"{probes[i]:.6f}" for i in range(1, LENGTH + 1)},
                   "final": f"{agg['dev']['summary']['accuracy']['mean']['mean']:.6f}",
                   "test_mean": f"{agg['test']['summary']['accuracy']['mean']['mean']:.6f}",
                   "seconds": f"{secs:.1f}"}
            w.writerow(row)
            f.flush()
            print(f"[{n}/{len(todo)} {time.perf_counter() - t0:6.0f}s] {row['order']:34s} "
                  f"probes {row['probe_1']} {row['probe_2']} {row['probe_3']}  final {row['final']}  "
                  f"test {row['test_mean']}  {secs:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
