"""Paired comparison of two strategies searched side by side in one bench/search_efficiency.py log.

python bench/data/screened/paired_log.py LOG BASE VARIANT RANDOM_MEDIAN
LOG: the per-seed lines bench/search_efficiency.py printed; BASE, VARIANT: strategy names in it;
RANDOM_MEDIAN: random search's median area on that table (for the ratios). Prints, per table of the log
(its "== table" lines: a log of several tables keeps their seeds apart), both medians, the paired mean
difference, how many searches were better or worse, and Wilcoxon's signed-rank p.
"""
import re, statistics as st, sys

from scipy.stats import wilcoxon
log, base, var, rnd = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
a, tab = {}, None
for l in open(log):
    if l.startswith("== "): tab = l.split()[1].rstrip(":")
    m = re.match(r"\s+(\S+)\s+seed\s+(\d+)\s+area ([\d.]+)", l)
    if m: a.setdefault(tab, {}).setdefault(m.group(1), {})[int(m.group(2))] = float(m.group(3))
for tab, runs in a.items():
    s = sorted(set(runs.get(base, {})) & set(runs.get(var, {})))
    if not s: continue
    x = [runs[base][i] for i in s]; y = [runs[var][i] for i in s]
    d = [yy - xx for xx, yy in zip(x, y)]
    better = sum(v < 0 for v in d); worse = sum(v > 0 for v in d)
    p = wilcoxon(x, y).pvalue if any(d) else 1.0
    print(f"{tab}: {var} vs {base}: n={len(s)} median {st.median(x):.3f} -> {st.median(y):.3f} (/random {st.median(x)/rnd:.2f} -> {st.median(y)/rnd:.2f}); mean diff {st.mean(d):+.4f}; better {better} worse {worse}; Wilcoxon p={p:.3f}")
