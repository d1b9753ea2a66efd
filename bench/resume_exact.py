"""Does `itt resume` of a reproducible search run the trials an uninterrupted one runs?

    python bench/resume_exact.py                                  # planted table, 18 trials, 3 at a time, ASHA
    python bench/resume_exact.py --stops 4,6,10,14 --out bench/data/resume_exact.txt

A simulated search (``bench/data/sim_planted.yaml``, ``search.reproducible: true``, order_bo, ASHA) runs
once through. Then, for each stop point K, the same search runs again, gets Ctrl-C (SIGINT) once K of its
trials have ended, and is resumed with ``itt resume``. Prints, per K, how many of the uninterrupted
search's rows (order, status, score) the resumed one has, and which differ. With the open batch (Ray saves
the limiter's state) and ASHA's rungs saved (search/schedulers/state.py) every row should agree.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from resume_faults import ROOT, itt, rows  # noqa: E402  (bench/ is on the path when a script runs)


def settings(trials: int, concurrent: int, seconds: float, seed: int) -> list[str]:
    sets = {"search.num_samples": trials, "search.resources.max_concurrent": concurrent,
            "search.scheduler.type": "asha", "search.reproducible": "true", "search.seed": seed,
            "search.simulate.seconds_per_stage": seconds,
            "search.simulate.table": ROOT / "bench" / "data" / "planted.csv"}
    return [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


def key(r: dict) -> tuple:
    return r["order"], r["status"], r["score"]


def stopped_and_resumed(cfg: str, runs: Path, name: str, sets: list[str], stop: int, env: dict) -> list[dict]:
    exp = runs / name
    with open(runs / f"{name}.out", "w") as out:
        p = subprocess.Popen(itt("search", cfg, "--name", name, "--storage", str(runs), "--no-tracking", *sets),
                             env=env, stdout=out, stderr=subprocess.STDOUT)
        while sum(r["status"] != "running" for r in rows(exp)) < stop:
            if p.poll() is not None:
                raise SystemExit(f"the search ended before {stop} trials had ended: see {runs / name}.out")
            time.sleep(0.1)
        p.send_signal(signal.SIGINT)
        p.wait()
    time.sleep(2)  # the stopped driver's local Ray winds down
    subprocess.run(itt("resume", str(exp)), env=env, check=True, capture_output=True)
    return rows(exp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stops", default="4,6,10,14", help="Ctrl-C once this many trials have ended (one run each)")
    ap.add_argument("--trials", type=int, default=18)
    ap.add_argument("--concurrent", type=int, default=3)
    ap.add_argument("--seconds-per-stage", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", help="also write the printed lines here")
    a = ap.parse_args()
    cfg = str(ROOT / "bench" / "data" / "sim_planted.yaml")
    sets = settings(a.trials, a.concurrent, a.seconds_per_stage, a.seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    lines = [f"python bench/resume_exact.py --stops {a.stops} --trials {a.trials} --concurrent {a.concurrent} "
             f"--seconds-per-stage {a.seconds_per_stage} --seed {a.seed}"]
    with tempfile.TemporaryDirectory(prefix="itt-resume-exact-") as tmp:
        runs = Path(tmp) / "runs"
        subprocess.run(itt("search", cfg, "--name", "through", "--storage", str(runs), "--no-tracking", *sets),
                       env=env, check=True, capture_output=True)
        through = Counter(map(key, rows(runs / "through")))
        lines.append(f"uninterrupted: {a.trials} trials, {a.concurrent} at a time in reproducible batches, "
                     f"{sum(n for k, n in through.items() if k[1] == 'stopped')} stopped by ASHA")
        for stop in (int(x) for x in a.stops.split(",")):
            resumed = Counter(map(key, stopped_and_resumed(cfg, runs, f"stop{stop}", sets, stop, env)))
            same = sum((through & resumed).values())
            differ = sorted((through - resumed).elements())
            lines.append(f"Ctrl-C after {stop} ended, then itt resume: {same} of {sum(through.values())} rows agree"
                         + (f"; not found: {differ}" if differ else ""))
            print(lines[-1], flush=True)
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
