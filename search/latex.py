"""``report.tex``: the report's leaderboard as a LaTeX table for a paper (booktabs).

The layout follows the per-language result tables of the XTREME papers (Hu et al., 2020; the IF vs F
tables of arXiv 2210.01091): one row per order, one column per target language, then the average and
the worst language, scores x 100 with one decimal, the best per column in bold. F (fine-tune only) is
the first row. A dagger marks the languages where the best IF order beats F significantly (the
report's permutation tests, the pick of the best order accounted for, Holm over languages). Pure: it reads the report's ``res`` dict
(:func:`search.stats.analyse`) and returns the file's text; the LaTeX needs ``\\usepackage{booktabs}`` and
``graphicx``. Many languages (XNLI's 15, PAN-X's 40) make a ``table*`` across the page with the languages
split over stacked tabulars, as the XTREME paper's appendix tables are; :func:`layout` says where.
"""

from __future__ import annotations

import math
import re

from search.space import order_tasks
from search.stats import F

TOP = 10  # IF orders in the table (the best ones), besides F
# Widths in pt, for a table that fits the paper it goes into: an ACL-style two-column page (a column 7.7 cm,
# the text 16 cm) and, at \small in Computer Modern, what pdflatex measured for report.tex's cells (a
# character of an order's names, a number column of "72.3" with bold and daggers, the extra of "± 0.2").
COLUMN_PT, TEXT_PT = 219.0, 455.0
CHAR_PT, NUMBER_PT, PM_PT = 4.9, 20.0, 15.0
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            # (not special to TeX, but the default OT1 text fonts print ¡ ¿ and a dash in their places)
            "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}


def escape(text: str) -> str:
    """Text safe inside a LaTeX table cell (every special character of plain LaTeX escaped, and < > |,
    which the default OT1 fonts print as other glyphs)."""
    return "".join(_SPECIAL.get(c, c) for c in str(text))


def order_cell(order: str) -> str:
    """'a>b' -> 'a → b' in LaTeX; the empty order is F."""
    return "F" if order == F else r" $\rightarrow$ ".join(escape(t) for t in order_tasks(order))


def _scale(values) -> float:
    """x 100 for scores in [0, 1] (accuracy, F1), as XTREME tables print them; otherwise as they are."""
    vals = [v for v in values if v is not None]
    return 100.0 if vals and max(abs(v) for v in vals) <= 1.0 else 1.0


def _column_pt(header: str, extra: float = 0.0) -> float:
    """A number column's width: its numbers (``extra``: the ± part) or its header, the wider."""
    return max(NUMBER_PT + extra, CHAR_PT * len(header))


def _tabular(columns: int, header: list[str], body: list[str]) -> str:
    """One tabular, shrunk to the line's width only where it is still wider (graphicx: ``\\width`` is its own
    width inside ``\\resizebox``)."""
    return "\n".join([r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
                      r"\begin{tabular}{l" + "r" * columns + "}", r"\toprule", " & ".join(header) + r" \\",
                      r"\midrule", *body, r"\bottomrule", r"\end{tabular}}"])


def _float(tabulars: list[str], caption: str, label: str, *, wide: bool) -> str:
    """The ``table`` around one or more tabulars (stacked); ``wide``: ``table*`` (both columns of a two-column
    paper; the same as ``table`` in a one-column one) with narrower column gaps."""
    env = "table*" if wide else "table"
    head = [rf"\begin{{{env}}}[t]", r"\centering", r"\small"] + ([r"\setlength{\tabcolsep}{4pt}"] if wide else [])
    body = "\n\\par\\medskip\n".join(tabulars).splitlines()
    return "\n".join([*head, *body, r"\caption{" + caption + "}", r"\label{tab:itt-" + label + "}",
                      rf"\end{{{env}}}"]) + "\n"


def order_chars(orders) -> int:
    """The longest order's length as printed (an arrow about two characters wide)."""
    return max((len(" -> ".join(order_tasks(o))) if o != F else 1 for o in orders), default=1)


def blocks(n: int, most: int) -> list[range]:
    """``n`` number columns in as few stacked blocks of at most ``most`` as will do, of even sizes (15 XNLI
    languages with Avg. and Worst, 12 at most: 9 and 8 columns)."""
    k = max(1, math.ceil(n / max(most, 1)))
    size, extra = divmod(n, k)
    starts = [j * size + min(j, extra) for j in range(k + 1)]
    return [range(a, b) for a, b in zip(starts, starts[1:])]


def layout(chars: int, widths: list[float]) -> tuple[bool, list[range]]:
    """Where number columns of these widths go (pt, :func:`_column_pt`), after an order column ``chars``
    characters wide: one tabular in a column of the page where it fits there; else a ``table*`` across the
    page, the columns split over as few stacked tabulars of even size as keep each within the text's width
    (each repeats the order column; a single column wider than the text stays alone, shrunk to it)."""
    n, order = len(widths), CHAR_PT * chars
    if order + 12.0 + sum(w + 12.0 for w in widths) <= COLUMN_PT:
        return False, [range(n)]
    room = TEXT_PT - order - 8.0
    k = 1
    while k < n and any(sum(widths[j] + 8.0 for j in b) > room for b in blocks(n, math.ceil(n / k))):
        k += 1
    return True, blocks(n, math.ceil(n / k))


def _stacked(rows: list[dict], cells: list[list[str]], header: list[str], widths: list[float], caption: str,
             label: str) -> str:
    """The table: each row's order cell, then its ``cells`` under ``header``, over the tabulars
    :func:`layout` says (F's row first and ruled off)."""
    wide, parts = layout(order_chars(r["order"] for r in rows), widths)
    tabulars = []
    for cols in parts:
        body = []
        for r, c in zip(rows, cells):
            body.append(order_cell(r["order"]) + " & " + " & ".join(c[j] for j in cols) + r" \\")
            if r["order"] == F and len(rows) > 1:
                body.append(r"\midrule")
        tabulars.append(_tabular(len(cols), ["Order", *(header[j] for j in cols)], body))
    return _float(tabulars, caption, label, wide=wide)


def _num(v, scale: float) -> str:
    return "--" if v is None or not math.isfinite(v) else f"{v * scale:.1f}"


def table(res: dict, *, name: str, target: str | None = None, top: int = TOP) -> str:
    """The leaderboard of ``res`` as a complete ``table`` environment."""
    board = res["leaderboard"]
    langs = res["languages"]
    ifs = [r for r in board if r["order"] != F]
    rows = ([r for r in board if r["order"] == F] + ifs[:top])
    scale = _scale(v for r in board for v in r["per_language"].values())
    cols = [[r["per_language"].get(lg) for lg in langs] + [r["mean"], r["worst"]] for r in rows]
    best = [max((c[j] for c in cols if c[j] is not None), default=None) for j in range(len(langs) + 2)]
    sig = _significant(res)
    row_cells = []
    for r, c in zip(rows, cols):
        cells = []
        for j, v in enumerate(c):
            s = _num(v, scale)
            if v is not None and best[j] is not None and round(v * scale, 1) == round(best[j] * scale, 1):
                s = rf"\textbf{{{s}}}"
            if r["order"] == res["if_vs_f"].get("best_order") and j < len(langs) and langs[j] in sig:
                s += r"$^\dagger$"
            if j == len(langs) and r.get("std") is not None:
                s += rf"\,{{\scriptsize$\pm${r['std'] * scale:.1f}}}"
            cells.append(s)
        row_cells.append(cells)
    header = [*(escape(lg) for lg in langs), "Avg.", "Worst"]
    widths = [*(_column_pt(lg) for lg in langs), _column_pt("Avg.", PM_PT), _column_pt("Worst")]
    caption = _caption(res, target, len(ifs), min(top, len(ifs)), scale, bool(sig))
    return _stacked(rows, row_cells, header, widths, caption, _label(name))


def _significant(res: dict) -> set[str]:
    iv = res["if_vs_f"]
    if not iv.get("available"):
        return set()
    return {r["language"] for r in iv["per_language"] if r.get("significant") and (r.get("delta_best") or 0) > 0}


def split_words(res: dict, noun: str) -> str:
    """What the report's scores are of, e.g. "test split" or "dev means": the split(s) it read (dev where the
    chains had no test split: eval.splits [dev])."""
    splits = res.get("splits") or ["test"]
    return f"test {noun}" if splits == ["test"] else f"dev {noun}" if splits == ["dev"] else \
        f"test {noun} (dev where a chain had none)"


def _caption(res: dict, target: str | None, n_if: int, shown: int, scale: float, dagger: bool) -> str:
    seeds = sorted({r["n_seeds"] for r in res["leaderboard"]})
    seed_text = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}--{seeds[-1]}"
    metric = escape(res.get("metric") or "score")
    times = r" ($\times$100)" if scale == 100 else ""
    of = f" of {escape(target)}" if target else ""
    text = (f"Zero-shot {metric}{times} on the {split_words(res, 'split')}{of}, per language, mean over {seed_text} seed(s); Avg.: the "
            f"mean over languages ($\\pm$ std over seeds), Worst: the worst language's score (per seed, then averaged). Orders list the intermediate "
            f"tasks in training order, each followed by fine-tuning on the target's English data; F: that "
            f"fine-tuning only. ")
    text += (f"The {shown} best of {n_if} IF orders. " if shown < n_if else "")
    text += "Best per column in bold."
    if dagger:
        alpha = res.get("alpha")
        text += (f" $^\\dagger$: the best IF order above F in that language (the difference of means, its "
                 f"p-value from permutations of the orders' labels over their seeds with the best order picked again "
                 f"in each, Holm over languages, $\\alpha = {alpha}$).")
    return text


def _label(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9:-]+", "-", name).strip("-") or "search"


def compare_table(res: dict, *, top: int = TOP) -> str:
    """``itt compare``'s orders as a table: one column per search (its mean over seeds, x 100 where the
    scores lie in [0, 1]), the mean rank over searches and the least gain over F; F first, then the
    ``top`` IF orders by mean rank; the best per column in bold."""
    names = [s["name"] for s in res["searches"]]
    rows_all = res["across"]["orders"]
    ifs = [r for r in rows_all if r["order"] != F]
    rows = [r for r in rows_all if r["order"] == F] + ifs[:top]
    scale = _scale(c["mean"] for r in rows_all for c in r["per_search"].values())
    cols = [[r["per_search"][k]["mean"] for k in names] for r in rows]
    best = [max(c[j] for c in cols) if cols else None for j in range(len(names))]
    gains = [r["least_gain_over_F"] for r in rows if r.get("least_gain_over_F") is not None]
    raw = [s["name"] + (f" ({s['target']})" if s.get("target") and s["target"] != s["name"] else "")
           for s in res["searches"]]
    row_cells = []
    for r, c in zip(rows, cols):
        cells = [(rf"\textbf{{{_num(v, scale)}}}" if round(v * scale, 1) == round(best[j] * scale, 1) else _num(v, scale))
                 for j, v in enumerate(c)]
        g = r.get("least_gain_over_F")
        gain = "--" if g is None else f"{g * scale:+.1f}"
        if g is not None and gains and g == max(gains):
            gain = rf"\textbf{{{gain}}}"
        row_cells.append([*cells, f"{r['mean_rank']:.1f}", gain])
    label = f"score ({res['label']})" if res.get("label") else "score"
    times = r" ($\times$100)" if scale == 100 else ""
    shown = f"the {len(ifs[:top])} best of {len(ifs)} IF orders completed in every search by mean rank" \
        if len(ifs) > top else f"the {len(ifs)} IF orders completed in every search, by mean rank"
    caption = (f"Zero-shot {escape(label)}{times} of each order in each search (mean over seeds; test split): "
               f"F, then {shown}. Mean rank: over searches (1 = best). Least gain over F: the smallest gain over "
               f"F in any search (the robust choice is the largest). Best per column in bold.")
    header = [*raw, "Mean rank", "Least gain over F"]
    return _stacked(rows, row_cells, [escape(h) for h in header], [_column_pt(h) for h in header], caption,
                    "compare-" + _label("-".join(names)))
