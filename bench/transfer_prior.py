"""Is the transferability prior (search/transfer.py, ``itt rank``) worth anything? Three measurements:

1. ``corr``: Spearman correlation of the prior's order scores with the final scores of the toy3 table
   (bench/data/toy_3of5_s3_runs.csv: 60 orders of 3 of 5 toy tasks, real chains, mean of 3 seeds), for
   the combined prior and for each of its parts alone (LogME of the task, forward transfer to the
   target, text-embedding similarity), and its cost in seconds.
2. ``sweep``: a real tiny chain sweep on ../shared/data (``_sweep_config``: a tiny random-init BERT with
   the real mBERT vocabulary; the MNLI / ANLI / SNLI / SST-2 slices of configs/local_xnli_mbert_tiny.yaml
   -> PAN-X NER, zero-shot in de, es, nl, ru): F, the 4 single-task orders and 4 pairs, one seed each,
   scored by the test entity F1 averaged over languages; the prior's Spearman with it.
3. ``regret``: bench/search_efficiency.py's regret (Ray Tune path, simulated table) of order_bo without
   and with the prior (``search.prior: transferability``; and the prior's best order as a seed point),
   at 5% and 10% of exhaustive's cached compute, on toy3 and toy3:noisy.

    python bench/transfer_prior.py --parts corr,sweep,regret --seeds 5    # ~15 min on 2 shared cores
    (writes bench/data/transfer_prior.json; regret runs also in bench/data/transfer_prior_regret.json)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "bench" / "data"
SHARED = ROOT.parent / "shared" / "data"
SWEEP_ORDERS = ["", "mnli", "anli", "snli", "sst2", "mnli>sst2", "sst2>mnli", "anli>snli", "snli>anli"]


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


def part_scores(m: dict, orders: list[list[str]]) -> dict[str, list[float]]:
    """The prior's order scores, and those of each of its parts alone (same order formula)."""
    from search.transfer import _z, prior_of_measurements

    out = {"prior": [prior_of_measurements(m).score(o) for o in orders]}
    for key in ("logme", "transfer", "similarity"):
        p = prior_of_measurements(m)
        p.unit, p.link_weight = _z({t: v[key] for t, v in m["tasks"].items()}), 0.0
        out[key] = [p.score(o) for o in orders]
    p = prior_of_measurements(m)
    p.link_weight = 0.0
    out["prior_without_links"] = [p.score(o) for o in orders]
    return out


def corr_toy3() -> dict:
    from search.config import load_search
    from search.transfer import measure

    by: dict[str, list[float]] = {}
    with open(DATA / "toy_3of5_s3_runs.csv", newline="") as f:
        for r in csv.DictReader(f):
            by.setdefault(r["order"], []).append(float(r["final"]))
    truth = {o: statistics.mean(v) for o, v in by.items()}
    scfg, chain, _ = load_search(DATA / "sim_toy3_seeds.yaml")
    t0 = time.perf_counter()
    m = measure(scfg, chain)
    cost = time.perf_counter() - t0
    orders = list(truth)
    scores = part_scores(m, [o.split(">") for o in orders])
    rho = {k: spearman(v, [truth[o] for o in orders]) for k, v in scores.items()}
    best = max(orders, key=lambda o: scores["prior"][orders.index(o)])
    ranked = sorted(orders, key=lambda o: -truth[o])
    return {"orders": len(orders), "spearman": rho, "cost_s": round(cost, 2), "measure_s": m["seconds"],
            "prior_best": best, "prior_best_true_rank": ranked.index(best) + 1, "true_best": ranked[0],
            "tasks": m["tasks"]}


def _sweep_config(tmp: Path) -> Path:
    """A tiny real sweep config: the four English classification slices of
    configs/local_xnli_mbert_tiny.yaml as candidates, PAN-X NER as the target (WikiANN en val as its
    English training data, zero-shot test in de, es, nl, ru), a tiny random-init BERT with the real mBERT
    vocabulary. (XNLI, that config's target, stays at chance from a random-init tiny encoder: every order
    scored 0.3517 there; entity F1 on names, many of which are spelled alike across these languages,
    moves.)"""
    import yaml

    raw = yaml.safe_load((ROOT / "configs" / "local_xnli_mbert_tiny.yaml").read_text())
    wikiann = {"format": "conll", "conll_columns": [1, 2]}
    tasks = {t: raw["tasks"][t] for t in ("mnli", "anli", "snli", "sst2")}
    tasks["panx"] = {"train": {"files": "panx_wikiann/wikiann.en.val.conllu", **wikiann},
                     "test": {"files": "panx_wikiann/wikiann.{lang}.test.conllu", **wikiann}}
    cfg = {"name": "prior_sweep", "data_root": str(SHARED),
           "model": {"tiny": raw["model"]["tiny"], "tokenizer": str(SHARED / "tokenizers" / "bert-base-multilingual-cased")},
           "order": [], "target": {"task": "panx", "languages": ["en", "de", "es", "nl", "ru"]}, "tasks": tasks,
           "train": {"lr": 1.0e-3, "batch_size": 32, "epochs": 2, "max_examples": 640, "max_length": 64, "warmup_ratio": 0.1},
           "finetune": {"max_examples": 1500, "epochs": 2},
           "eval": {"splits": ["test"], "batch_size": 128, "max_examples": 300},
           "seeds": [0], "save_checkpoint": False,
           "search": {"candidates": ["mnli", "anli", "snli", "sst2"], "length": [0, 2]}}
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def sweep(log=print) -> dict:
    import torch

    from itt.chain import prepare, run_chain
    from search.config import load_search
    from search.transfer import measure

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="itt_prior_sweep_"))
    cfg_path = _sweep_config(tmp)
    scfg, chain, _ = load_search(cfg_path)
    t0 = time.perf_counter()
    m = measure(scfg, chain)
    cost = time.perf_counter() - t0
    scores, seconds = {}, {}
    for o in SWEEP_ORDERS:
        cfg = chain.model_copy(update={"order": o.split(">") if o else []})
        t1 = time.perf_counter()
        res = run_chain(cfg, out_dir=tmp / (o.replace(">", "_") or "F"), prepared=prepare(cfg, log=lambda *a: None),
                        log=lambda *a: None)
        s = res["aggregate"]["test"]["summary"]["f1"]["mean"]["mean"]
        scores[o], seconds[o] = s, round(time.perf_counter() - t1, 1)
        log(f"  sweep {o or 'F':12s} test entity F1 (mean over languages) {s:.4f}  {seconds[o]:.0f}s", flush=True)
    orders = list(scores)
    ps = part_scores(m, [o.split(">") if o else [] for o in orders])
    rho = {k: spearman(v, [scores[o] for o in orders]) for k, v in ps.items()}
    il = [o for o in orders if o]  # IF orders only: the prior scores F as an average order (0)
    rho_if = {k: spearman([v[orders.index(o)] for o in il], [scores[o] for o in il]) for k, v in ps.items()}
    return {"orders": scores, "chain_seconds": seconds, "spearman": rho, "spearman_IF_only": rho_if,
            "cost_s": round(cost, 2), "tasks": m["tasks"], "target_logme": m["target"]["logme"]}


def regret(seeds: int, log=print) -> dict:
    import subprocess

    out = DATA / "transfer_prior_regret.json"
    for f in (out, Path(str(out) + "l")):
        f.unlink(missing_ok=True)
    cmd = [sys.executable, str(ROOT / "bench" / "search_efficiency.py"), "--tables", "toy3,toy3:noisy",
           "--strategies", "order_bo,order_bo_prior,order_bo_prior_seeds", "--seeds", str(seeds),
           "--budget", "0.12", "--num-cpus", "2", "--json", str(out)]
    log("  " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    Path(str(out) + "l").unlink(missing_ok=True)  # (the run-by-run copy; the json holds every run)
    blob = json.loads(out.read_text())
    rows = {}
    for r in blob["summary"]:
        rows[f"{r['table']} {r['strategy']}"] = {"runs": r["runs"], "regret@5%": r["regret@5%"], "regret@10%": r["regret@10%"]}
    return {"budget": 0.12, "seeds": seeds, "summary (median, q25, q75)": rows, "seconds": blob.get("seconds")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="corr,sweep,regret")
    ap.add_argument("--seeds", type=int, default=5, help="searches per strategy and table (regret)")
    ap.add_argument("--json", default=str(DATA / "transfer_prior.json"))
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    bad = [p for p in parts if p not in ("corr", "sweep", "regret")]
    if bad or not parts:
        ap.error(f"--parts: unknown '{bad[0] if bad else args.parts}' (a comma list of corr, sweep, regret)")
    if args.seeds < 1:
        ap.error(f"--seeds must be >= 1 (got {args.seeds})")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore")
    blob = json.loads(Path(args.json).read_text()) if Path(args.json).is_file() else {}
    if "corr" in parts:
        print("== toy3: the prior against the table's final scores", flush=True)
        blob["toy3"] = r = corr_toy3()
        print(f"  Spearman {json.dumps({k: round(v, 3) for k, v in r['spearman'].items()})}; cost {r['cost_s']:.1f} s; "
              f"prior's best {r['prior_best']} is number {r['prior_best_true_rank']} of {r['orders']} (best {r['true_best']})")
    if "sweep" in parts:
        if not SHARED.is_dir():
            print(f"  (no real data at {SHARED}: sweep skipped)")
        else:
            print("== a real tiny chain sweep on ../shared/data (NLI and SST-2 slices -> PAN-X, tiny random-init BERT)", flush=True)
            blob["sweep"] = r = sweep()
            print(f"  Spearman (9 orders incl. F) {json.dumps({k: round(v, 3) for k, v in r['spearman'].items()})}")
            print(f"  Spearman (8 IF orders) {json.dumps({k: round(v, 3) for k, v in r['spearman_IF_only'].items()})}; "
                  f"cost {r['cost_s']:.1f} s vs {sum(r['chain_seconds'].values()):.0f} s of chains")
    if "regret" in parts:
        print("== regret at 5% and 10% of exhaustive compute, order_bo without / with the prior", flush=True)
        blob["regret"] = r = regret(args.seeds)
        for k, v in r["summary (median, q25, q75)"].items():
            print(f"  {k:40s} regret@5% {v['regret@5%'][0]:.3f} ({v['regret@5%'][1]:.3f}-{v['regret@5%'][2]:.3f})  "
                  f"regret@10% {v['regret@10%'][0]:.3f} ({v['regret@10%'][1]:.3f}-{v['regret@10%'][2]:.3f})  runs {v['runs']}")
    Path(args.json).write_text(json.dumps(blob, indent=1, default=str))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
