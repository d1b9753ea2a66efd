"""The quickstart search on a Ray cluster of two machines, beside the same search on one machine.

The two machines are made on this one (tests/ray_nodes.py: TwoHostRayCluster): a head and a worker node in
network namespaces of their own (10.77.0.1 and 10.77.0.2, linked only by a veth pair, token authentication
on), the worker with its own view of the disk (the head's Ray folder, HOME and ``head_only/`` are not on
it; ``shared/`` is, as a shared mount would be). One CPU each; the one-machine run gets a local Ray of two
CPUs, so both run two trials at a time. Per run: wall time, exit code, each order's score, the node each
trial ran on, the stage cache's hits and how many of them a trial took from a stage trained on the other
machine; then the same search with ``--storage`` on the head's disk only (one error line, how fast).

    sudo python bench/two_hosts.py --out bench/data/two_hosts.json     # about 6 minutes on 2 busy cores

Needs root, iproute2 (``ip netns``) and util-linux (``unshare``): where they are missing it says why and exits 2.
"""

from __future__ import annotations

import collections
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._outputs import write_json  # noqa: E402
from tests.ray_nodes import TwoHostRayCluster, two_hosts_unavailable  # noqa: E402

CONFIG = ROOT / "configs" / "quickstart.yaml"


def search(cmd_prefix: list[str], env: dict, cwd: Path, storage: Path, *extra: str) -> dict:
    """``itt search`` on the quickstart: wall time, exit code, the lines that are not progress lines."""
    cmd = [*cmd_prefix, sys.executable, "-m", "search.cli", "search", str(CONFIG), "--storage", str(storage),
           "--tracking-uri", f"sqlite:///{storage.parent / 'mlflow.db'}", "--set", "search.report=false", *extra]
    storage.parent.mkdir(parents=True, exist_ok=True)
    t = time.time()
    r = subprocess.run(cmd, env={**env, "PYTHONPATH": str(ROOT)}, cwd=cwd, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip() and not ln[:2].isdigit()]
    return {"wall_s": round(time.time() - t, 1), "exit": r.returncode, "lines": lines}


def trials(exp: Path) -> dict:
    """Per order: score, node; the stage cache's hits per node (results.csv, every trial), and of the
    completed trials' hits (their results.json) those across machines: the stage was trained by a trial
    on the other node."""
    rows = list(csv.DictReader(open(exp / "results.csv")))
    node = {r["trial_id"]: r["node_ip"] for r in rows}
    trained_on, used = {}, []
    for r in rows:
        res_file = exp / "trials" / r["trial_id"] / "results.json"
        res = json.loads(res_file.read_text()) if res_file.exists() else {"seeds": {}}
        for seed, per in res["seeds"].items():
            for k, stage in enumerate(s for s in per.get("stages", []) if "from_cache" in s):
                key = (seed, tuple(res["order"][:k + 1]))
                if stage["from_cache"]:
                    used.append((key, node[r["trial_id"]]))
                else:
                    trained_on[key] = node[r["trial_id"]]
    across = sum(trained_on.get(key) not in (None, ip) for key, ip in used)
    return {"orders": {r["order"] or "F": {"score": r["score"], "status": r["status"], "node": r["node_ip"]}
                       for r in rows},
            "per_node": dict(collections.Counter(r["node_ip"] for r in rows)),
            "stages_from_cache_per_node": {ip: sum(int(r["stages_from_cache"] or 0) for r in rows if r["node_ip"] == ip)
                                           for ip in sorted(set(node.values()))},
            "cache_hits": len(used), "cache_hits_across_machines": across,
            "results_json": sum((exp / "trials" / r["trial_id"] / "results.json").exists() for r in rows)}


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    why = two_hosts_unavailable()
    if why:
        print(f"error: two machines cannot be made here: {why}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="itt-bench-hosts-"))
    c = TwoHostRayCluster()
    try:
        c.start_head()
        c.add_worker()
        env = c.env()
        env.pop("RAY_AUTH_MODE")  # the README's way: the head's token in its ~/.ray
        two = search(c.on_head([]), env, work, c.shared / "runs", "--address", c.address)
        t2 = trials(c.shared / "runs" / "quickstart") if two["exit"] == 0 else {}
        wrong = search(c.on_head([]), env, work, c.head_only / "runs", "--address", c.address, "--name", "wrong")
    finally:
        c.stop()
    one = search([], {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, work, work / "one" / "runs")
    t1 = trials(work / "one" / "runs" / "quickstart") if one["exit"] == 0 else {}
    diffs = [abs(float(t2["orders"][o]["score"]) - float(t1["orders"][o]["score"]))
             for o in t2.get("orders", {}) if o in t1.get("orders", {}) and t2["orders"][o]["score"] and t1["orders"][o]["score"]]
    blob = {"date": time.strftime("%Y-%m-%d"), "command": "python bench/two_hosts.py",
            "two_machines": {"wall_s": two["wall_s"], "exit": two["exit"], **t2, **({} if t2 else {"lines": two["lines"]})},
            "one_machine": {"wall_s": one["wall_s"], "exit": one["exit"], **t1, **({} if t1 else {"lines": one["lines"]})},
            "max_abs_score_diff": max(diffs) if diffs else None, "orders_compared": len(diffs),
            "storage_on_the_heads_disk": {"wall_s": wrong["wall_s"], "exit": wrong["exit"], "lines": wrong["lines"]}}
    shutil.rmtree(work, ignore_errors=True)
    for name in ("two_machines", "one_machine"):
        b = blob[name]
        print(f"{name}: exit {b['exit']}, {b['wall_s']} s; trials per node {b.get('per_node')}; stage cache hits "
              f"{b.get('stages_from_cache_per_node')} per node, of completed trials' {b.get('cache_hits')} "
              f"{b.get('cache_hits_across_machines')} across machines; results.json {b.get('results_json')}")
        if b["exit"]:
            print("  | " + "\n  | ".join(b["lines"][-5:]))
    print(f"scores: {blob['orders_compared']} orders in both, largest difference {blob['max_abs_score_diff']}")
    w = blob["storage_on_the_heads_disk"]
    print(f"--storage on the head's disk only: exit {w['exit']} after {w['wall_s']} s: {' | '.join(w['lines'])}")
    if args.out:
        write_json(args.out, blob)
    return 0


if __name__ == "__main__":
    sys.exit(main())
