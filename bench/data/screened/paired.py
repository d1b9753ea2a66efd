"""Paired comparison of a screened variant's searches with committed ones on the same seeds.

python bench/data/screened/paired.py COMMITTED.json VARIANT.log
COMMITTED.json: a bench/search_efficiency.py --json file (its per-seed areas); VARIANT.log: the per-seed
lines bench/search_efficiency.py printed for the variant. Prints, per table, the variant's median area
against each committed strategy's on the same seeds, the paired mean difference, how many searches were
better or worse, and Wilcoxon's signed-rank p.
"""
import json, re, statistics as st, sys
from scipy.stats import wilcoxon
TIE = 0.00055 + 1e-9
ref = json.load(open(sys.argv[1]))["areas"]
base_name = sys.argv[3] if len(sys.argv) > 3 else "order_bo"
d = {}
tab, part = None, 0
for line in open(sys.argv[2]):
    # each "== table" part on its own: a log of several runs on one table (other settings) keeps their seeds apart
    if line.startswith('== '): tab, part = line.split()[1].rstrip(':'), part + 1
    m = re.match(r'\s+(\S+)\s+seed\s+(\d+)\s+area ([\d.]+)', line)
    if m: d.setdefault((part, tab), {}).setdefault(m[1], {})[int(m[2])] = float(m[3])
for (part, tab), strat in d.items():
    refs = {}
    for r in ref.get(tab, []):
        refs.setdefault(r["strategy"], {})[r["seed"]] = r["area"]
    for name, v in strat.items():
        for bn, base in refs.items():
            if bn not in ("order_bo", "order_bo_measured", "random"): continue
            common = sorted(set(v) & set(base))
            if len(common) < 5: continue
            # the log prints an area to 3 decimals, the JSON keeps 4: one search's two figures differ by up to
            # 0.00055 (a 4-decimal area ending in 5 rounds either way), so a difference within that is a tie
            diffs = [0.0 if abs(v[s] - base[s]) <= TIE else v[s] - base[s] for s in common]
            p = wilcoxon(diffs).pvalue if any(diffs) else 1.0
            print(f"{tab:12s} {name:24s} median {st.median(v[s] for s in common):.3f} vs {bn:18s} {st.median(base[s] for s in common):.3f} (n={len(common)}) mean diff {st.mean(diffs):+.4f} better in {sum(x<0 for x in diffs)}, worse in {sum(x>0 for x in diffs)} p={p:.3f}")
