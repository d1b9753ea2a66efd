"""What each order costs to train, and the cheapest order that could be best (a section of ``itt report``).

A chain's training time is the sum of the seconds of every stage it trains from scratch: its intermediate
tasks, the target fine-tune, and each ``eval.also`` fine-tune, as the trials measured them (results.json:
each stage's ``seconds``; a stage taken from the stage cache carries the seconds it took when it was
trained). Probes and evaluation are left out: they are the search's, not the order's. Mean over the
counted trial's seeds.

The question it answers: the best order is rarely the only one that could be best (the report's 95%
credible set, search/ranking.py). A researcher who retrains the pick for another model or target pays its
training time each time, so the cheapest order of that set is worth knowing, and so is the front of
orders that no other order beats on both mean score and training time.
"""

from __future__ import annotations

import pandas as pd

from search.space import order_key, order_tasks

F = order_key([])


def chain_work(sr: dict) -> dict[str, float | None]:
    """One seed's training ``seconds`` and ``tokens`` (its results.json ``seeds[s]``): each None when a stage
    lacks it (tokens: stages trained before they were counted, or taken from such a cache entry)."""
    from itt.chain import chain_tokens

    stages, also = sr.get("stages", []), sr.get("also") or {}
    secs = [s.get("seconds") for s in stages] + [a["fine_tune"].get("seconds") for a in also.values() if "fine_tune" in a]
    ok = secs and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in secs)
    return {"seconds": float(sum(secs)) if ok else None, "tokens": chain_tokens(stages, also)}


def analyse(board: list[dict], work: pd.DataFrame | None, best_order: dict) -> dict:
    """Each leaderboard order's mean training seconds and tokens (``work``: order, seed, seconds, tokens), the
    cost-effectiveness front, and the cheapest order of the credible set of possible best orders against the
    most likely best (``best_order``: ranking.py's result; without it the top mean stands alone). Costs
    compare by tokens where every chain counted them (the same on any hardware and under any load), else
    by seconds."""
    if work is None or work.empty:
        return {"available": False, "reason": "the trials recorded no training seconds (a simulated search)"}
    by = "tokens" if work["tokens"].notna().all() else "seconds"
    g = work.groupby("order")
    mean_s, mean_t, n = g["seconds"].mean(), g["tokens"].mean(), g.size()
    rows = [{"order": r["order"], "mean": r["mean"], "seconds": float(mean_s[r["order"]]),
             "tokens": float(mean_t[r["order"]]) if by == "tokens" else None, "n_seeds": int(n[r["order"]])}
            for r in board if r["order"] in mean_s.index and r.get("mean") is not None]
    if not rows:
        return {"available": False, "reason": "no completed order recorded its training seconds"}
    cost = {r["order"]: r[by] for r in rows}
    ranked = best_order.get("rows") or []
    ifs = [r["order"] for r in rows if r["order"] != F]  # (board order: the top IF mean first)
    best = ranked[0]["order"] if ranked and ranked[0]["order"] in cost else (ifs or [rows[0]["order"]])[0]
    # the credible set of possible best IF orders; none where the ranking model was not fitted (one seed per
    # order, say): then no order is called one that could be best
    could = ([o for o in best_order["set"] if o in cost] or [best]) if best_order.get("set") else []
    cheapest = min(could, key=lambda o: (cost[o], o)) if could else best
    front = _front(rows, by)
    for r in rows:
        r.update(front=r["order"] in front, could_be_best=r["order"] in could,
                 share_of_best=r[by] / cost[best] if cost[best] else None)
    rows.sort(key=lambda r: (r[by], r["order"]))
    return {"available": True, "by": by, "rows": rows, "front": [r["order"] for r in rows if r["front"]],
            "best": best, "could_be_best": could, "cheapest": cheapest,
            "best_cost": {k: next(r[k] for r in rows if r["order"] == best) for k in ("seconds", "tokens")},
            "cheapest_cost": {k: next(r[k] for r in rows if r["order"] == cheapest) for k in ("seconds", "tokens")},
            "cheapest_share": cost[cheapest] / cost[best] if cost[best] and could else None}


def _front(rows: list[dict], by: str) -> set[str]:
    """Orders no other order beats on both: a higher (or equal) mean for less (or equal) cost, one strictly."""
    out = set()
    for r in rows:
        if not any(o["mean"] >= r["mean"] and o[by] <= r[by] and (o["mean"] > r["mean"] or o[by] < r[by])
                   for o in rows):
            out.add(r["order"])
    return out


def duration(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def amount(tokens: float | None) -> str:
    if tokens is None:
        return "–"
    return next((f"{tokens / d:.3g}{u}" for d, u in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")) if tokens >= d),
                f"{tokens:.0f}")


def _cost(c: dict, verb: bool = False) -> str:
    """A chain's cost as the headline says it: tokens (and the seconds measured here), or seconds alone."""
    if c["tokens"] is None:
        return ("in " if verb else "") + duration(c["seconds"])
    return ("on " if verb else "") + f"{amount(c['tokens'])} tokens ({duration(c['seconds'])} here)"


def headline(tc: dict, show) -> str:
    """One sentence: the most likely best order's training cost, and the cheapest order that could be best."""
    best = f"{show(tc['best'])} trains {_cost(tc['best_cost'], verb=True)} per chain"
    if not tc["could_be_best"]:  # no credible set (the ranking was not fitted): the top mean alone
        return (f"Training cost: {best} (the top IF mean; which orders could be best is not estimated here, "
                f"so there is no cheaper alternative to name).")
    if tc["cheapest"] == tc["best"]:
        return f"Training cost: {best}, the least of the {len(tc['could_be_best'])} order(s) that could be best."
    return (f"Training cost: {best}; of the {len(tc['could_be_best'])} orders that could be best, "
            f"{show(tc['cheapest'])} is the cheapest, {_cost(tc['cheapest_cost'])}: {tc['cheapest_share']:.0%} of it.")


def section(tc: dict, show, fmt, where: str | None = None) -> tuple[str, str, list[list[str]], str | None]:
    title = "What each order costs to train"
    if not tc.get("available"):
        return title, f"Not available: {tc['reason']}.", [], None
    by = ("tokens trained (input tokens, padding included, every stage and fine-tune: the same on any hardware; "
          "a transformer's training FLOPs are about 6 × parameters × tokens)" if tc["by"] == "tokens" else
          "training seconds (these trials did not count tokens: stages trained before tokens were counted)")
    text = (f"{headline(tc, show)} A chain costs what training its order from scratch costs: each intermediate "
            f"stage, the target fine-tune and any eval.also fine-tune (a stage the stage cache supplied counts what "
            f"it took when it was trained), mean over seeds; probes and evaluation are left out. Orders compare by "
            f"{by}. The seconds were measured during the search, where trials share the machine, and are as noisy as "
            f"its load. The cost-effectiveness front holds the orders no other order beats on both mean score and "
            f"cost: " + ", ".join(show(o) for o in tc["front"]) + ".")
    if where and tc["cheapest"] != tc["best"]:
        text += (f" Whether the cheaper order holds up on fresh seeds: `itt confirm {where} --top set` trains every "
                 f"order that could be best again.")
    head = ["order", "length", "mean", "tokens", "seconds", "× best's", "could be best", "front"]
    rows = [head] + [[show(r["order"]), str(len(order_tasks(r["order"]))), fmt(r["mean"]), amount(r["tokens"]),
                      f"{r['seconds']:.1f}", f"{r['share_of_best']:.2f}" if r["share_of_best"] is not None else "–",
                      "yes" if r["could_be_best"] else "", "yes" if r["front"] else ""] for r in tc["rows"]]
    return title, text, rows, "training_cost"


def plot(tc: dict, metric: str, show):
    """Mean score against training cost, every order; the front joined, the possible best orders marked."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    rows = tc["rows"]
    could = [r for r in rows if r["could_be_best"]]
    rest = [r for r in rows if not r["could_be_best"] and r["order"] != F]
    by = tc["by"]
    ax.scatter([r[by] for r in rest], [r["mean"] for r in rest], color="#bbbbbb", s=22, label="other orders")
    ax.scatter([r[by] for r in could], [r["mean"] for r in could], color="#1b9e77", s=40,
               label="could be best (95% credible set)")
    front = [r for r in rows if r["front"]]  # (rows are sorted by cost)
    ax.plot([r[by] for r in front], [r["mean"] for r in front], "-", color="#1b9e77", lw=1.2,
            label="cost-effectiveness front")
    xs = [r[by] for r in rows]
    mid = (min(xs) + max(xs)) / 2 if xs else 0
    for r in front + [r for r in could if not r["front"]]:  # (names of the dearer half to the left: long orders
        left = r[by] > mid  # ran past the right edge of the axes)
        ax.annotate(show(r["order"]), (r[by], r["mean"]), xytext=(-4 if left else 4, 4), textcoords="offset points",
                    fontsize=7, ha="right" if left else "left")
    f = next((r for r in rows if r["order"] == F), None)
    if f:
        ax.scatter([f[by]], [f["mean"]], marker="*", s=200, color="#d95f02", zorder=5, label="F (fine-tune only)")
    ax.set_xlabel("tokens trained per chain (stages + fine-tunes, mean over seeds)" if by == "tokens"
                  else "training seconds per chain (stages + fine-tunes, mean over seeds)")
    ax.set_ylabel(f"test {metric}, mean over languages")
    if by == "tokens":
        from matplotlib.ticker import EngFormatter

        ax.xaxis.set_major_formatter(EngFormatter())
    ax.margins(x=0.2)  # (room for the names of the orders at the right)
    ax.set_title("What each order costs to train")
    ax.legend(fontsize=8, loc="best")
    return fig
