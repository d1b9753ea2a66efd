"""Merge the parts bench/gpu_all.sh measured into ``bench/data/gpu.json`` (issue 17's schema).

    python bench/gpu_collect.py --parts DIR [DIR ...] --out bench/data/gpu.json

DIR holds what gpu_all.sh wrote: ``throughput.json`` (bench/gpu_throughput.py), ``share.json``
(bench/gpu_share.py), ``equivalence.json`` (bench/gpu_equivalence.py), ``search.json`` (wall time and
the experiment folder of the ``itt search``) and ``dmon.txt`` (``nvidia-smi dmon -s u``). A part that
is missing leaves its fields null, so a partial run still gives a file. A DIR may instead hold
``details.tar.gz`` (what gpu_all.sh returns from the device's $OUT: the same files, archived); with
several DIRs (the $OUT of several device calls) a part comes from the last DIR that has it.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
import statistics
import sys
import tarfile
import tempfile
from pathlib import Path


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def parse_dmon(text: str) -> dict | None:
    """Mean and max SM utilisation (%) of ``nvidia-smi dmon -s u`` output (columns named by its header)."""
    cols, sm = None, []
    for line in text.splitlines():
        if line.startswith("#"):
            names = line.lstrip("#").split()
            if "sm" in names:
                cols = names
            continue
        parts = line.split()
        if cols and len(parts) == len(cols):
            try:
                sm.append(float(parts[cols.index("sm")]))
            except ValueError:
                continue  # "-" when the driver has no sample
    if not sm:
        return None
    busy = [v for v in sm if v > 0]
    return {"samples": len(sm), "sm_mean": statistics.fmean(sm), "sm_max": max(sm),
            "sm_mean_busy": statistics.fmean(busy) if busy else 0.0}


def search_figures(info: dict, parts: Path) -> dict:
    """Trials, outcomes and stage-cache reuse from the search's results.csv (``experiment``: a folder,
    relative to the parts folder unless absolute)."""
    out = {"wall_s": info.get("wall_s"), "rc": info.get("rc"), "experiment": info.get("experiment")}
    path = parts / (info.get("experiment") or "-") / "results.csv"
    if path.is_file():
        rows = list(csv.DictReader(path.open()))
        status = [r["status"] for r in rows]
        out.update(trials=len(rows), completed=status.count("completed"), stopped=status.count("stopped"),
                   errored=status.count("errored"),
                   stages_trained=sum(int(r.get("stages_trained") or 0) for r in rows),
                   stages_from_cache=sum(int(r.get("stages_from_cache") or 0) for r in rows))
        scored = [r for r in rows if r.get("score")]
        if scored:
            best = max(scored, key=lambda r: float(r["score"]))
            out["best"] = {"order": best["order"], "score": float(best["score"])}
    return out


def collect(parts: Path, smoke: bool = False) -> dict:
    tp, share = _load(parts / "throughput.json"), _load(parts / "share.json")
    eq, search = _load(parts / "equivalence.json"), _load(parts / "search.json")
    dmon = parse_dmon((parts / "dmon.txt").read_text()) if (parts / "dmon.txt").is_file() else None
    device = next((d.get("device") for d in (tp, share, eq) if d and d.get("device")), None)
    s = search_figures(search, parts) if search else {}
    return {
        "gpu": device,
        "date": dt.date.today().isoformat(),
        "smoke": smoke or any(d.get("smoke") for d in (tp, share) if d),
        "trainer_ratio": tp.get("ratio") if tp else None,
        "mfu": tp.get("mfu", {}).get("chain") if tp else None,
        "share_throughput": share.get("share_throughput") if share else None,
        "search": {"trials": s.get("trials"), "wall_s": s.get("wall_s"),
                   "gpu_util": dmon["sm_mean"] if dmon else None, **{k: v for k, v in s.items() if k not in
                                                                      ("trials", "wall_s")}, "dmon": dmon},
        "cpu_gpu_max_abs_diff": eq.get("cpu_gpu_max_abs_diff") if eq else None,
        "details": {
            "trainer_mfu": tp.get("mfu", {}).get("trainer") if tp else None,
            "throughput_profile": {side: {k: v for k, v in f.items() if k != "top_ops"}
                                   for side, f in (tp.get("profile") or {}).items() if isinstance(f, dict)}
            if tp else None,
            "tokens_per_s": tp.get("median_tokens_per_s") if tp else None,
            "share_peak_gpu_mib": {str(lv["procs"]): lv["peak_gpu_reserved_mib_max"] for lv in share["levels"]}
            if share else None,
            "advised_gpus_per_worker": share.get("advised_gpus_per_worker") if share else None,
            "share_oom_check": share.get("oom_check") if share else None,  # a capped process going on in micro-batches
            "equivalence": {k: eq.get(k) for k in ("runs", "cache_round_trip", "cache_chain", "cuda_repeat",
                                                   "cuda_skipped", "ok")}
            if eq else None,
        },
    }


def merge_parts(dirs: list[Path], into: Path) -> Path:
    """Copy the parts of ``dirs`` into one folder, later folders over earlier ones; a folder's
    ``details.tar.gz`` is unpacked first, so its own loose files take precedence over the archive's."""
    for d in dirs:
        if (d / "details.tar.gz").is_file():
            with tarfile.open(d / "details.tar.gz") as tar:
                tar.extractall(into, filter="data")
        for f in d.iterdir():
            if f.name == "details.tar.gz":
                continue
            if f.is_dir():
                shutil.copytree(f, into / f.name, dirs_exist_ok=True)
            else:
                shutil.copy2(f, into / f.name)
    return into


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", required=True, nargs="+", help="folder(s) with the parts gpu_all.sh wrote")
    ap.add_argument("--out", required=True, help="the merged JSON (bench/data/gpu.json)")
    ap.add_argument("--smoke", action="store_true", help="mark the figures as a smoke run's (meaningless)")
    ap.add_argument("--quiet", action="store_true", help="write the file, print nothing")
    args = ap.parse_args(argv)
    dirs = [Path(d) for d in args.parts]
    missing = next((d for d in dirs if not d.is_dir()), None)
    if missing is not None:  # (one folder alone skips the merge: check every path here, before either way)
        raise SystemExit(f"gpu_collect.py: --parts {missing}: no such folder")
    if len(dirs) == 1 and not (dirs[0] / "details.tar.gz").is_file():
        out = collect(dirs[0], args.smoke)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = collect(merge_parts(dirs, Path(tmp)), args.smoke)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    if not args.quiet:
        print(json.dumps({k: v for k, v in out.items() if k != "details"}, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
