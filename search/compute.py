"""What a search cost: the figures a paper's compute statement asks for (the ACL Responsible NLP
checklist's "total computational budget, e.g. GPU hours, and computing infrastructure").

Sources, all written by the search itself: each trial's record in ``tracking/trials`` (when the
driver saw it start and end; Ray's per-trial ``result.json`` for searches made before those times were
recorded), ``results.csv`` (status,
stages, the stage cache's counts, the node) and each chain's ``results.json`` (``hardware``: device
and its name). Device-hours are run time x the devices a trial holds (``search.resources``): GPUs
where the search used them, else CPU cores.
"""

from __future__ import annotations

import json
import math

from search.stats import Status
from search.tracking import finite as _num

TRIAL_DIR_PREFIX = "chain_trial_"  # Ray Tune's folder of one trial: chain_trial_<id>_<n>_<params>_<time>


def trial_times(st) -> dict[str, dict]:
    """trial id -> {seconds, start, end}: from the search's own trial records (``tracking/trials``:
    started and ended, as the driver saw them, plus the runs before a resume), else from Ray's ``result.json`` of the trial's folder
    (the last line's ``time_total_s`` and timestamp; real searches of earlier versions)."""
    out = {}
    for name in st.listdir("tracking", "trials"):
        rec = st.read_json("tracking", "trials", name, default={})
        start, end = _num(rec.get("started")), _num(rec.get("ended"))
        if rec.get("trial_id") and start is not None and end is not None:  # (+ its runs before a resume)
            out[rec["trial_id"]] = {"seconds": end - start + (_num(rec.get("earlier_seconds")) or 0.0),
                                    "start": _num(rec.get("first_started")) or start, "end": end}
    for name in st.listdir():
        rest = name[len(TRIAL_DIR_PREFIX):]
        if name.startswith(TRIAL_DIR_PREFIX) and not any(rest.startswith(t + "_") for t in out):
            _from_ray(st, name, out)
    return out


def _from_ray(st, name: str, out: dict) -> None:
    lines = [ln for ln in (st.read_text(name, "result.json") or "").splitlines() if ln.strip()]
    last = None
    for line in reversed(lines):  # the last whole line (a driver killed mid-write cuts the last one short)
        try:
            last = json.loads(line)
            break
        except json.JSONDecodeError:
            continue
    if not isinstance(last, dict):
        return
    seconds, end = _num(last.get("time_total_s")), _num(last.get("timestamp"))
    if seconds is not None and end is not None:
        tid = last.get("trial_id") or name[len(TRIAL_DIR_PREFIX):].split("_")[0]
        out.setdefault(tid, {"seconds": seconds, "start": end - seconds, "end": end})


def devices_per_trial(config: dict | None) -> tuple[float, str]:
    """(devices one trial holds, their kind): GPUs when the search gave workers GPUs, else CPU cores."""
    from search.config import Resources

    res = {**Resources().model_dump(), **(((config or {}).get("search") or {}).get("resources") or {})}  # its defaults
    if res["gpus_per_worker"]:
        return res["workers_per_trial"] * res["gpus_per_worker"], "GPU"
    return res["workers_per_trial"] * res["cpus_per_worker"] + res["trial_cpus"], "CPU core"


def summarize(rows: list[dict], times: dict[str, dict], config: dict | None, hardware: list[dict],
              seeds: int, every=None, per_chain: int = 1, searcher: dict | None = None) -> dict:
    """Every figure of the report's compute section (pure). ``every``: the work of every order of the
    search's space once (search/plan.py ``Work``, per seed), for the share of it the search spent;
    ``per_chain``: the fine-tunes a chain runs (its target's, and one per eval.also task that trains);
    ``searcher``: summary.json's ``searcher_time`` (the searcher's own seconds on the driver)."""
    per, kind = devices_per_trial(config)
    timed = [times[r["trial_id"]] for r in rows if r["trial_id"] in times]
    seconds = sum(t["seconds"] for t in timed)
    span = (max(t["end"] for t in timed) - min(t["start"] for t in timed)) if timed else None
    stopped = [r for r in rows if r.get("status") == Status.STOPPED]
    count = {k: sum(int(_num(r.get(k)) or 0) for r in rows) for k in ("stages_trained", "stages_from_cache")}
    # fine-tunes trained: completed trials that ran their chains (a replay reports an earlier result)
    finetunes = sum(r.get("status") == Status.COMPLETED and r.get("replayed") != "true" for r in rows) * seeds * per_chain
    names = sorted({f"{h.get('device_name') or h.get('device')} ({h.get('device')})" for h in hardware if h})
    return {
        "trials": len(rows), "timed_trials": len(timed), "seeds_per_trial": seeds, "chains": len(rows) * seeds,
        "trial_seconds": seconds, "span_seconds": span,
        "concurrency": seconds / span if span else None,
        "devices_per_trial": per, "device_kind": kind, "device_hours": seconds * per / 3600.0,
        "nodes": sorted({r["node_ip"] for r in rows if r.get("node_ip")}),
        "hardware": names,
        "stages_trained": count["stages_trained"], "stages_from_cache": count["stages_from_cache"],
        "cache_seconds_saved": sum(_num(r.get("cache_seconds_saved")) or 0.0 for r in rows),
        "stopped": len(stopped),
        # ASHA's saving: the intermediate stages a stopped trial did not train, and its target fine-tune
        "stages_skipped": sum(max(0, int(_num(r.get("order_length")) or 0) - int(_num(r.get("stages_completed")) or 0))
                              for r in stopped) * seeds,
        "finetunes_skipped": len(stopped) * seeds * per_chain,
        "finetunes": finetunes,
        **(_share(count["stages_trained"] + finetunes, seeds, every, per_chain) if every is not None else {}),
        **({"searcher_seconds": searcher["seconds"],
            "searcher_proposals": searcher["proposals"], "search_seconds": searcher["search_seconds"]}
           if searcher and searcher.get("proposals") else {}),
    }


def _share(done: int, seeds: int, every, per_chain: int = 1) -> dict:
    """The search's stage-trainings and fine-tunes (``done``, over seeds) against every order once with the
    stage cache (the compute axis of bench/search_efficiency.py)."""
    finals = every.orders * per_chain
    return {"exhaustive_orders": every.orders, "exhaustive_stages": every.stages * seeds,
            "exhaustive_finetunes": finals * seeds,
            "share_of_exhaustive": done / ((every.stages + finals) * seeds) if every.stages + finals else None}


def text(c: dict) -> str:
    """The compute statement, in words."""
    from search.plan import hours

    def dur(s):
        return "–" if s is None else hours(s)

    where = f"{len(c['nodes'])} node(s)" + (f", {'; '.join(c['hardware'])}" if c["hardware"] else "")
    out = (f"{c['trials']} trials, {c['chains']} chains ({c['seeds_per_trial']} seed(s) per trial) on {where}. "
           f"Run time {dur(c['trial_seconds'])} summed over {c['timed_trials']} timed trial(s): "
           f"{c['device_hours']:.3g} {c['device_kind']}-hours at {c['devices_per_trial']:g} {c['device_kind']}(s) per trial")
    if c["span_seconds"]:
        out += (f"; {dur(c['span_seconds'])} from the first trial's start to the last one's end "
                f"({c['concurrency']:.1f} trials at a time on average)")
    out += (f". Intermediate stages (over seeds): {c['stages_trained']} trained, {c['stages_from_cache']} from the "
            f"stage cache (saving about {dur(c['cache_seconds_saved'])}).")
    if c["stopped"]:
        out += (f" ASHA stopped {c['stopped']} trial(s) early, skipping {c['stages_skipped']} intermediate stage(s) "
                f"and {c['finetunes_skipped']} target fine-tune(s) over seeds.")
    if c.get("share_of_exhaustive") is not None:
        out += (f" Every order of the space once ({c['exhaustive_orders']:,} orders) would take "
                f"{c['exhaustive_stages']:,} stage-trainings and {c['exhaustive_finetunes']:,} fine-tunes over seeds "
                f"with the stage cache; the search spent {c['share_of_exhaustive']:.0%} of that "
                f"({c['stages_trained']} and {c['finetunes']}).")
    if c.get("searcher_seconds") is not None:
        out += (f" The searcher's own time on the driver (its {c['searcher_proposals']} proposals and taking in results): "
                f"{dur(c['searcher_seconds'])}" + (f", {c['searcher_seconds'] / c['search_seconds']:.1%} of the search's "
                                                  f"{dur(c['search_seconds'])}." if c["search_seconds"] else "."))
    return out


def metrics(c: dict) -> dict[str, float]:
    m = {"report_compute_trial_hours": c["trial_seconds"] / 3600.0, "report_compute_device_hours": c["device_hours"],
         "report_compute_stages_trained": float(c["stages_trained"]),
         "report_compute_stages_from_cache": float(c["stages_from_cache"])}
    if c["span_seconds"]:
        m["report_compute_span_hours"] = c["span_seconds"] / 3600.0
    if c.get("searcher_seconds") is not None:
        m["report_compute_searcher_seconds"] = c["searcher_seconds"]
    if c.get("share_of_exhaustive") is not None:
        m["report_compute_share_of_exhaustive"] = c["share_of_exhaustive"]
    return {k: v for k, v in m.items() if math.isfinite(v)}
