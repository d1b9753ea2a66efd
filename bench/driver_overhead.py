"""Driver overhead at scale: N simulated trials through `itt search` against plain Ray Tune, side by side.

    python bench/driver_overhead.py                           # 1,000 trials each, tracking off
    python bench/driver_overhead.py --trials 1000 --tracking --out bench/data/driver_overhead.txt

Two runs, each in a fresh Python process with its own local Ray (``--cpus`` CPUs), one after the other:

- ``itt``: ``search.runner.run_search`` on a simulated objective (a table of every order of 1-4 of 8
  tasks: 2,080 orders; every trial reads its probes and final from it, as ``search.simulate`` does),
  with the searcher given (default ``random``: uniform random orders without replacement behind the
  OrderSearcher, search/searchers/uniform_random.py), no scheduler, ``results.csv``, the trial
  records and MLflow tracking when ``--tracking``;
- ``plain``: ``ray.tune.Tuner`` on a trivial function trainable that reports as many results per
  trial as the simulated trial (one per stage, plus the final), with Tune's own random search over
  the same orders, no scheduler, the same concurrency and the same Ray settings (auto-callback
  loggers off, as run_search sets them for simulated trials).

Prints each run's wall time (from process start to the end, Ray's start-up included) and its
``Tuner.fit`` time alone, the driver's peak RSS (``ru_maxrss`` of the driver process), and the
ratios itt / plain. Goal (issue 15): wall time <= 1.2x plain Ray Tune, driver RSS <= 2 GB.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# registered tasks (a simulated trial loads none); 2,080 orders of 1-4 of them, twice the trials, so the
# searcher's deduplication (a re-proposed order is asked again) stays a small part of the run
TASKS = ["mnli", "anli", "snli", "qqp", "paws", "sst2", "stsb", "hellaswag"]
LENGTHS = (1, 4)


def orders() -> list[tuple[str, ...]]:
    return [o for k in range(LENGTHS[0], LENGTHS[1] + 1) for o in itertools.permutations(TASKS, k)]


def write_inputs(work: Path, args) -> Path:
    """The simulated table (seeded scores) and the search config; returns the config path."""
    import yaml

    rng = random.Random(0)
    k = LENGTHS[1]
    lines = ["order," + ",".join(f"probe_{i}" for i in range(1, k + 1)) + ",final"]
    for o in orders():
        probes = [f"{rng.random():.4f}" for _ in o] + [""] * (k - len(o))
        lines.append(">".join(o) + "," + ",".join(probes) + f",{rng.random():.4f}")
    (work / "table.csv").write_text("\n".join(lines) + "\n")
    cfg = {"name": "overhead", "model": {"tiny": {"arch": "bert", "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                                                  "intermediate_size": 64}, "train_tokenizer": {"vocab_size": 400}},
           "target": {"task": "toy_xnli"}, "seeds": [0],
           "search": {"candidates": TASKS, "length": list(LENGTHS), "searcher": args.searcher,
                      "num_samples": args.trials, "seed": 0, "simulate": {"table": str(work / "table.csv")},
                      "scheduler": {"type": "none"}, "tracking": {"enabled": bool(args.tracking)},
                      "resources": {"trial_cpus": 1, "max_concurrent": args.concurrency}}}
    path = work / "search.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def plain_trainable(config: dict) -> None:
    """What plain Ray Tune runs: one report per stage of the order, then the final one."""
    from ray import tune

    n = len(config["order"].split(">"))
    for i in range(1, n + 1):
        tune.report({"step": i, "objective": 0.5})
    tune.report({"step": LENGTHS[1] + 1, "objective": 0.5, "final": 1})


def run_phase(phase: str, work: Path, args) -> dict:
    """One run, in this process: returns its figures."""
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    t0 = time.time()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru.ru_utime + ru.ru_stime  # the driver's CPU time from here: its own work and Tune's, not Ray's start
    if phase == "itt":
        from search.runner import run_search

        cfg = write_inputs(work, args)
        os.chdir(work)  # MLflow's embedded store (with --tracking) lands in the work folder
        exp = run_search(str(cfg), name="itt", storage=str(work / "runs"), log=lambda *a: None)
        with open(Path(exp) / "results.csv") as f:
            n = sum(1 for _ in f) - 1
    else:
        from ray import tune

        tuner = tune.Tuner(
            tune.with_resources(plain_trainable, {"cpu": 1}),
            param_space={"order": tune.choice([">".join(o) for o in orders()])},
            tune_config=tune.TuneConfig(metric="objective", mode="max", num_samples=args.trials,
                                        max_concurrent_trials=args.concurrency, reuse_actors=True),
            run_config=tune.RunConfig(name="plain", storage_path=str(work / "runs"), verbose=0),
        )
        n = len(tuner.fit())
    fit = time.time() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    ray.shutdown()
    return {"phase": phase, "trials": n, "fit_s": fit, "rss_mb": ru.ru_maxrss / 1024,
            "cpu_s": ru.ru_utime + ru.ru_stime - cpu0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--cpus", type=int, default=2, help="the local Ray's CPUs (one per concurrent trial)")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--searcher", default="random", help="itt's searcher (tpe | gp | random)")
    ap.add_argument("--tracking", action="store_true", help="MLflow tracking on (an embedded sqlite store)")
    ap.add_argument("--phase", choices=["itt", "plain"], help=argparse.SUPPRESS)  # a child process's run
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--out", help="also write the figures here")
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, Path(args.work), args)))
        return
    res = {}
    for phase in ("plain", "itt"):
        work = Path(tempfile.mkdtemp(prefix=f"itt-overhead-{phase}-"))
        cmd = [sys.executable, __file__, "--phase", phase, "--work", str(work), "--trials", str(args.trials),
               "--cpus", str(args.cpus), "--concurrency", str(args.concurrency), "--searcher", args.searcher]
        t0 = time.time()
        p = subprocess.run(cmd + (["--tracking"] if args.tracking else []), capture_output=True, text=True, check=False,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        wall = time.time() - t0
        if p.returncode != 0:
            sys.exit(f"{phase} run failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
        res[phase] = {**json.loads(p.stdout.strip().splitlines()[-1]), "wall_s": wall}
    a, b = res["itt"], res["plain"]
    lines = [(f"{args.trials} trials, {args.concurrency} at a time on {args.cpus} CPUs; itt: searcher {args.searcher}, "
              f"no scheduler, tracking {'on (MLflow, sqlite)' if args.tracking else 'off'}")]
    for r in (b, a):
        lines.append(f"  {r['phase']:5s}: {r['trials']} trials, wall {r['wall_s']:.1f} s, Tuner.fit {r['fit_s']:.1f} s, "
                     f"driver CPU {r.get('cpu_s', float('nan')):.1f} s, driver peak RSS {r['rss_mb']:.0f} MB")
    lines.append(f"  ratio itt / plain: wall {a['wall_s'] / b['wall_s']:.2f}x, fit {a['fit_s'] / b['fit_s']:.2f}x, "
                 f"RSS {a['rss_mb'] / b['rss_mb']:.2f}x")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
