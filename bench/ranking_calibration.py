"""Is the report's P(best) calibrated? The ranking model (search/ranking.py) on simulated searches.

Searches of k orders x n seeds are drawn from the random-effects model with a known true score per
order (tau / sigma as given, sigma = 1); each is ranked as `itt report` ranks a search, and the
figures are: where P(best) falls in a bin, how often that order is the true best (calibration); how
often the 95% set holds the true best (coverage) and its size; and for the order with the top mean,
how far its mean and its shrunk score lie from its true score (RMSE: the winner's curse, and what
the shrinkage leaves of it). Seconds per setting.

    python bench/ranking_calibration.py [--reps 300] [--json bench/data/ranking_calibration.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from search import ranking as R

SETTINGS = ((10, 3, 1.0), (10, 3, 0.5), (10, 3, 2.0), (6, 2, 1.0), (30, 3, 1.0))  # (orders, seeds, tau / sigma)
BINS = ((0.0, 0.2), (0.2, 0.6), (0.6, 1.01))


def run(k: int, n: int, ratio: float, reps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    pred, hit, covered, sizes, raw, shrunk = [], [], 0, [], [], []
    for _ in range(reps):
        truth = rng.normal(0, ratio, k)
        fig = pd.DataFrame([(f"o{i}", s, truth[i] + rng.normal()) for i in range(k) for s in range(n)],
                           columns=["order", "seed", "mean"])
        r = R.analyse(fig)
        best = f"o{int(truth.argmax())}"
        pred += [x["p_best"] for x in r["rows"]]
        hit += [x["order"] == best for x in r["rows"]]
        covered += best in r["set"]
        sizes.append(len(r["set"]))
        top = max(r["rows"], key=lambda x: x["observed"])
        t = truth[int(top["order"][1:])]
        raw.append((top["observed"] - t) ** 2)
        shrunk.append((top["shrunk"] - t) ** 2)
    pred, hit = np.array(pred), np.array(hit)
    bins = []
    for lo, hi in BINS:
        m = (pred >= lo) & (pred < hi)
        bins.append({"bin": [lo, min(hi, 1.0)], "n": int(m.sum()), "predicted": float(pred[m].mean()) if m.any() else None,
                     "observed": float(hit[m].mean()) if m.any() else None})
    return {"orders": k, "seeds": n, "tau_over_sigma": ratio, "reps": reps, "coverage": covered / reps,
            "set_size": float(np.mean(sizes)), "rmse_top_mean": float(np.sqrt(np.mean(raw))),
            "rmse_top_shrunk": float(np.sqrt(np.mean(shrunk))), "bins": bins}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=300, help="simulated searches per setting (default 300)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    out = [run(k, n, r, args.reps, seed=11 + i) for i, (k, n, r) in enumerate(SETTINGS)]
    print(f"{'orders':>6} {'seeds':>5} {'tau/sigma':>9} {'95% set covers':>14} {'set size':>8} {'RMSE mean':>9} "
          f"{'RMSE shrunk':>11}  P(best) bins: predicted / observed (n)")
    for r in out:
        cells = "  ".join(f"[{b['bin'][0]:.1f},{b['bin'][1]:.1f}) {b['predicted']:.2f}/{b['observed']:.2f} ({b['n']})"
                          for b in r["bins"] if b["n"])
        print(f"{r['orders']:>6} {r['seeds']:>5} {r['tau_over_sigma']:>9} {r['coverage']:>14.3f} {r['set_size']:>8.1f} "
              f"{r['rmse_top_mean']:>9.3f} {r['rmse_top_shrunk']:>11.3f}  {cells}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
