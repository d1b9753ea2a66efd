"""The README's main command as a user runs it, timed: `itt search CONFIG` in an empty folder.

    python bench/trial_startup.py                                   # configs/quickstart.yaml
    python bench/trial_startup.py --config configs/quickstart.yaml --set search.num_samples=6 --out bench/data/x.txt

Runs ``itt search`` in a subprocess (working directory: a fresh empty folder, so MLflow's store and
``runs/`` start empty; the environment as given, e.g. ``OMP_NUM_THREADS`` as the user has it) and prints:

- the wall time of the whole command, and the CPU time of its process tree (what it needs of the
  cores, whatever else runs on the machine);
- per-trial start-up: seconds from a trial's start (Ray Tune marks it RUNNING: its process is up) to
  its chain's first training starting (the first ``ITT_STAGE_LOG`` line of that trial: an intermediate
  stage, or the target fine-tune when every stage came from the stage cache); median, min, max. Trials
  that trained nothing (replays) have no such line and are left out;
- how many raylet ``N PYTHON worker processes have been started`` warnings reached the console;
- the console's last lines (the search's answer).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARNING = re.compile(r"PYTHON worker processes have been started")


def trial_starts(exp: Path) -> dict[str, float]:
    """Trial id -> the time Ray Tune set it RUNNING (its first start), from the experiment's state."""
    from ray.tune import ExperimentAnalysis

    return {t.trial_id: t.run_metadata.start_time for t in ExperimentAnalysis(str(exp)).trials
            if t.run_metadata.start_time is not None}


def first_trainings(log: Path) -> dict[str, float]:
    """Trial id -> the time of its first stage-training line (``run`` in ITT_STAGE_LOG)."""
    out: dict[str, float] = {}
    for line in log.read_text().splitlines() if log.is_file() else []:
        e = json.loads(line)
        if e.get("run"):
            out[e["run"]] = min(out.get(e["run"], e["time"]), e["time"])
    return out


def tree_cpu_seconds(proc: subprocess.Popen, every: float = 0.5) -> float:
    """Wait for ``proc``; the user+system CPU seconds of it and every descendant (Ray's daemons and
    workers), sampled every ``every`` s (a process that ends between samples loses at most that much).
    With other work on the machine, wall time stretches but CPU time does not: it says what the
    command needs of the cores."""
    import psutil

    seen: dict[int, float] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            try:
                t = p.cpu_times()
                seen[p.pid] = max(seen.get(p.pid, 0.0), t.user + t.system)
            except psutil.Error:
                pass
        time.sleep(every)
    return sum(seen.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    ap.add_argument("--set", action="append", default=[], help="a config override, as `itt search --set`")
    ap.add_argument("--work", help="an empty work folder (default: a temporary one)")
    ap.add_argument("--out", help="also write the figures here")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="itt-startup-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "stages.log"
    env = {**os.environ, "ITT_STAGE_LOG": str(log), "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)  # the embedded default: mlflow.db in the (empty) work folder
    cmd = [sys.executable, "-m", "search.cli", "search", str(Path(args.config).resolve()), "--name", "bench"]
    for s in args.set:
        cmd += ["--set", s]
    t0 = time.time()
    with open(work / "stdout.txt", "w") as out, open(work / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=err, text=True)
        cpu = tree_cpu_seconds(proc)
    wall = time.time() - t0
    res = subprocess.CompletedProcess(cmd, proc.returncode, (work / "stdout.txt").read_text(), (work / "stderr.txt").read_text())
    console = res.stdout + res.stderr
    (work / "console.txt").write_text(console)
    if res.returncode != 0:
        sys.exit(f"itt search failed (exit {res.returncode}):\n{console[-3000:]}")
    starts, firsts = trial_starts(work / "runs" / "bench"), first_trainings(log)
    gaps = sorted(firsts[t] - starts[t] for t in starts if t in firsts)
    lines = [f"config: {args.config} {' '.join(args.set)}",
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}, {os.cpu_count()} CPUs",
             (f"wall time of `itt search`: {wall:.1f} s ({len(starts)} trials); CPU time of its process tree "
              f"(driver, Ray, trials): {cpu:.0f} s = {cpu / (os.cpu_count() or 1):.0f} s per core; load average at the "
              f"end {os.getloadavg()[0]:.1f}"),
             f"raylet 'PYTHON worker processes have been started' warnings on the console: {len(WARNING.findall(console))}"]
    if gaps:
        lines.append(f"trial start -> first training: median {statistics.median(gaps):.1f} s, min {gaps[0]:.1f} s, "
                     f"max {gaps[-1]:.1f} s over {len(gaps)} trials that trained")
    lines.append("console, last lines:")
    lines += ["  " + x for x in res.stdout.strip().splitlines()[-14:]]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
