"""What an interruption costs: `itt search` SIGKILLed mid-search, then `itt resume`, with real processes.

    python bench/resume_faults.py                              # the quickstart search, killed after 4 trials
    python bench/resume_faults.py --config configs/quickstart.yaml --kill-after 4 --out bench/data/resume_faults.txt

Prints:
- seconds from starting `itt resume` to the first new trial result (a report of any trial, read from
  the experiment's tracking/ log), and to the end of the search;
- stage-trainings: before the kill, after the resume, and how many were recomputed (an intermediate
  prefix trained a second time: only stages in flight at the kill should be), from ``ITT_STAGE_LOG``;
- disk used by the experiment with the retention rules (``search.keep_checkpoints``, default 3) and
  without them (``keep_checkpoints: null``: every completed trial keeps its final checkpoint), the
  latter from an uninterrupted run of the same search.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rows(exp: Path) -> list[dict]:
    p = exp / "results.csv"
    return list(csv.DictReader(io.StringIO(p.read_text()))) if p.is_file() else []


def events(log: Path) -> list[dict]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def report_times(exp: Path) -> list[float]:
    out = []
    for f in (exp / "tracking" / "trials").glob("*.json"):
        out += [r["time"] for r in json.loads(f.read_text()).get("reports", [])]
    return sorted(out)


def itt(*args: str) -> list[str]:
    return [sys.executable, "-m", "search.cli", *args]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    ap.add_argument("--kill-after", type=int, default=4, help="completed trials before the SIGKILL")
    ap.add_argument("--out", help="also write the figures here")
    ap.add_argument("--work", help="work folder (default: a temporary one)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="itt-resume-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "stages.log"
    env = {**os.environ, "ITT_STAGE_LOG": str(log), "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
    storage = work / "runs"
    exp = storage / "killed"
    lines = []

    def say(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)

    t0 = time.time()
    proc = subprocess.Popen(itt("search", args.config, "--name", "killed", "--storage", str(storage)), env=env,
                            stdout=open(work / "search.out", "w"), stderr=subprocess.STDOUT)
    while sum(r["status"] == "completed" for r in rows(exp)) < args.kill_after:
        if proc.poll() is not None:
            sys.exit(f"the search ended before {args.kill_after} trials completed: see {work / 'search.out'}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t_kill = time.time()
    at_kill = rows(exp)
    ev_before = events(log)
    running = sum(r["status"] == "running" for r in at_kill)
    say(f"search killed (SIGKILL) after {t_kill - t0:.0f} s: {len(at_kill)} trials started, "
        f"{sum(r['status'] == 'completed' for r in at_kill)} completed, {running} running")
    time.sleep(2)
    t_res = time.time()
    res = subprocess.run(itt("resume", str(exp)), env=env, capture_output=True, text=True)
    t_end = time.time()
    if res.returncode != 0:
        sys.exit(f"itt resume failed:\n{res.stdout}\n{res.stderr}")
    first_new = next((t for t in report_times(exp) if t > t_res), None)
    ev = events(log)
    ev_after = ev[len(ev_before):]
    seen = {(tuple(e["prefix"]), e["seed"]) for e in ev_before if e["event"] == "stage"}
    recomputed = [e for e in ev_after if e["event"] == "stage" and (tuple(e["prefix"]), e["seed"]) in seen]
    final = rows(exp)
    say(f"itt resume: first new trial result after {first_new - t_res:.1f} s; search done after {t_end - t_res:.0f} s; "
        f"{len(final)} trials, {sum(r['status'] == 'completed' for r in final)} completed, "
        f"{sum(r['status'] == 'stopped' for r in final)} stopped by ASHA")
    n_stage = lambda es: sum(e["event"] == "stage" for e in es)  # noqa: E731
    say(f"stage-trainings: {n_stage(ev_before)} before the kill, {n_stage(ev_after)} after the resume; "
        f"recomputed after the SIGKILL: {len(recomputed)} "
        f"({', '.join('>'.join(e['prefix']) for e in recomputed) or 'none'}); stages in flight at the kill: "
        f"at most {running} (one per running trial and seed)")
    say(f"disk with the retention rules (keep_checkpoints 3): {du(exp) / 1e6:.1f} MB")
    # the same search uninterrupted, every final checkpoint kept
    t1 = time.time()
    subprocess.run(itt("search", args.config, "--name", "keepall", "--storage", str(storage), "--no-tracking",
                       "--set", "search.keep_checkpoints=null"), env={**env, "ITT_STAGE_LOG": str(work / "s2.log")},
                   capture_output=True, text=True, check=True)
    say(f"the same search uninterrupted (no MLflow): {time.time() - t1:.0f} s wall")
    say(f"disk without them (keep_checkpoints null, uninterrupted): {du(storage / 'keepall') / 1e6:.1f} MB "
        f"(final checkpoints in {sum(1 for _ in (storage / 'keepall' / 'trials').glob('*/seed*/checkpoint'))} trial folders"
        f" vs {sum(1 for _ in (exp / 'trials').glob('*/seed*/checkpoint'))})")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
