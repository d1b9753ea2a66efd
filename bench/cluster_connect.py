"""Connecting to a Ray cluster with ``--address``: what a user sees, and how long it takes, for each way of
getting it wrong, beside Ray's own ``ray.init(address=...)`` on the same case.

Starts a token-authenticated head and one without authentication with ``ray start`` on 127.0.0.1 (temporary
folders and HOMEs: the user's ~/.ray is untouched; stopped by their process sessions), then per case:

- ``itt search``: wall time of the whole command (Python start-up and imports included), exit code, and
  the lines it printed;
- ``check``: the time of ``search.cluster.check`` alone (after imports);
- ``ray.init``: the time of Ray's own ``ray.init(address=...)`` (after imports) and the lines it printed.

    python bench/cluster_connect.py            # about 3 minutes on 2 busy cores (Ray's retries dominate)
"""

from __future__ import annotations

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

from tests.ray_nodes import LocalRayCluster, free_port  # noqa: E402

CHECK = """
import json, sys, time
from itt.errors import UserError
from search.cluster import check
t = time.time()
try:
    out = "ok: " + repr(check(sys.argv[1]))
except UserError as e:
    out = "error: " + str(e)
print(json.dumps({"s": time.time() - t, "out": out}))
"""
RAY_INIT = """
import json, sys, time
import ray
t = time.time()
try:
    ray.init(address=sys.argv[1], logging_level="ERROR")
    out = "ok"
except BaseException as e:
    out = type(e).__name__ + ": " + (str(e).strip().splitlines() or [""])[0]
print(json.dumps({"s": time.time() - t, "out": out}))
"""
RAY_WAIT_S = 120  # Ray's ray.init towards a port where nothing listens was still retrying after 160 s here
CONFIG = {
    "name": "bench_connect", "seeds": [0], "target": {"task": "toy_xnli"},
    "model": {"tiny": {"arch": "bert", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
              "train_tokenizer": {"vocab_size": 400}},
    "search": {"candidates": ["toy_topic", "toy_align", "toy_length", "toy_parity", "toy_sim"], "length": 3,
               "searcher": "random", "num_samples": 2, "scheduler": {"type": "none"},
               "simulate": {"table": str(ROOT / "bench" / "data" / "toy_3of5.csv")}},
}


def run(cmd: list[str], env: dict, cwd: Path, timeout: float = 300) -> tuple[float, int | None, list[str], dict | None]:
    """Wall time, exit code, every non-empty line printed, and the JSON a probe script printed last
    (exit code None and no JSON: killed after ``timeout`` seconds)."""
    t = time.time()
    try:
        r = subprocess.run(cmd, env={**env, "PYTHONPATH": str(ROOT)}, cwd=cwd, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
        return time.time() - t, None, [ln for ln in text.splitlines() if ln.strip()], None
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    out = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    return time.time() - t, r.returncode, lines, (json.loads(out[-1]) if out else None)


def main(argv=None) -> None:
    import argparse

    import yaml

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="Takes no options; starts two local Ray heads for about 3 minutes.").parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="itt-bench-connect-"))
    (work / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    auth, noauth = LocalRayCluster(token=True), LocalRayCluster(token=False)
    try:
        auth.start_head()
        noauth.start_head()
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        empty = work / "home"
        empty.mkdir()
        nothing = f"127.0.0.1:{free_port()}"
        cases = [
            ("no token", auth.address, {**base, "HOME": str(empty)}),
            ("wrong token", auth.address, {**base, "HOME": str(empty), "RAY_AUTH_TOKEN": "0" * 64}),
            ("nothing listening", nothing, {**base, "HOME": str(empty)}),
            ("token in ~/.ray/auth_token", auth.address, {**base, "HOME": str(auth.home)}),
            ("cluster without auth", noauth.address, {**base, "HOME": str(empty)}),
        ]
        for i, (name, address, env) in enumerate(cases):
            storage = work / f"runs{i}"
            cli = [sys.executable, "-m", "search.cli", "search", str(work / "cfg.yaml"), "--address", address,
                   "--storage", str(storage), "--no-tracking"]
            s_cli, rc, lines, _ = run(cli, env, work)
            chk = run([sys.executable, "-c", CHECK, address], env, work)[3]
            s_ray, _, ray_lines, ray_res = run([sys.executable, "-c", RAY_INIT, address], env, work, timeout=RAY_WAIT_S)
            n_ray = len(ray_lines) - (ray_res is not None)  # the probe's own JSON line left out
            ray_res = ray_res or {"s": s_ray, "out": f"still connecting after {RAY_WAIT_S} s: killed"}
            print(f"== {name} ({address})", flush=True)
            print(f"  itt search: {s_cli:5.1f} s wall, exit {rc}, {len(lines)} line(s), experiment folder written: "
                  f"{storage.exists()}")
            for ln in (lines if rc else lines[-1:]):
                print(f"    | {ln}")
            print(f"  check alone: {chk['s']:5.2f} s -> {chk['out'][:160]}")
            print(f"  ray.init alone: {ray_res['s']:5.1f} s, {n_ray} line(s) printed -> {ray_res['out'][:160]}",
                  flush=True)
    finally:
        auth.stop()
        noauth.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
