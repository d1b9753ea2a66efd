"""What a search will cost, before it runs (``itt space``).

Units: a **stage-training** is one intermediate stage trained on one seed, with its probe (the short
target fine-tune ASHA reads); with the stage cache each distinct prefix of the orders a search runs is
trained once per seed, whichever trials share it. A **fine-tune** is one order's target fine-tune and
evaluation on one seed. Every figure is per seed; a search runs each of its ``seeds``.

* ``work``: those counts for a set of orders, with and without the stage cache.
* ``exhaustive_work``: every order of the space once (a closed form where the space has no
  constraints, so spaces too large to list are counted too).
* ``make`` / ``count_lines`` / ``hour_lines`` / ``memory_lines``: the plan of one config, in words (``itt space``);
  ``as_json``: its figures (``itt space --json``).
* ``budget``: this search's ``num_samples`` trials: its seed points first, and the stage-trainings its
  other orders need if they were drawn at random (Monte Carlo over seeded draws of distinct orders).
  A cost-aware searcher (order_bo) continues trained prefixes where it can, and ASHA's stops skip the
  rest of an order, so a real search needs at most about that.
* ``Timing`` / ``timing_from``: hours, from an earlier search on the same hardware and settings, or one
  chain of ``itt run`` (a pilot): each task's median seconds per stage (each prefix and seed once: a stage a chain took from the
  cache carries the seconds of its training), the target fine-tune's, and per chain and per
  stage-training what else a trial spends (loading, probes, evaluation: non-negative least squares over
  the pilot's trials' wall times). ``Timing.check`` replays the pilot's own trials through the fit.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

import numpy as np

from itt.errors import UserError
from search.space import OrderSpace

DRAWS = 200  # Monte Carlo draws of the orders a search does not fix in advance
CUDA_CONTEXT_MIB = 512  # a process's CUDA context, outside the allocator's figures (about; it varies by GPU and driver)
LIST_UP_TO = 200_000  # spaces up to this size are listed to draw from; larger ones by rejection
COVERS = {"trial": "trial time, start-up included; the searcher's own on top",  # what a pilot's seconds cover
          "chain": "chain time: a trial's start-up and the searcher on top"}
# the chain settings whose difference from the pilot's makes its seconds another search's
COMPARED = ("model", "target", "tasks", "train", "stages", "finetune", "hardware", "toy", "probe", "eval")


class NoSeconds(UserError):
    """A pilot that measured no seconds (a simulated search): a curriculum's --from may still use it."""


@dataclass
class Work:
    """Per seed: orders (= fine-tunes), stage-trainings with the stage cache, and without it."""

    orders: int
    stages: int
    uncached: int


def prefixes(orders) -> set[tuple]:
    return {tuple(o[:i]) for o in orders for i in range(1, len(o) + 1)}


def work(orders) -> Work:
    orders = [list(o) for o in orders]
    return Work(len(orders), len(prefixes(orders)), sum(map(len, orders)))


def exhaustive_work(space: OrderSpace) -> Work:
    if space.constrained:
        return work(space.orders())
    n, top = len(space.candidates), max(space.lengths)
    # every permutation of j <= the longest length is a prefix of some order (it extends to that length)
    return Work(space.count(), sum(math.perm(n, j) for j in range(1, top + 1)),
                sum(k * math.perm(n, k) for k in space.lengths))


def exhaustive_prefix_tasks(space: OrderSpace) -> dict[str, int]:
    """How many distinct prefixes of the space end with each task (each is one stage-training of it)."""
    if space.constrained:
        out = dict.fromkeys(space.candidates, 0)
        for p in prefixes(space.orders()):
            out[p[-1]] += 1
        return out
    n, top = len(space.candidates), max(space.lengths)
    each = sum(math.perm(n - 1, j - 1) for j in range(1, top + 1))  # the task last, any j-1 others before it
    return dict.fromkeys(space.candidates, each)


def uniform_orders(space: OrderSpace, m: int, rng: random.Random, exclude=()) -> list[list[str]]:
    """``m`` distinct orders drawn uniformly from the space (without ``exclude``): a draw from the list
    where the space is small enough, else by rejection (``OrderSpace.draw``)."""
    skip = {tuple(o) for o in exclude}
    if space.count() <= LIST_UP_TO:
        pool = [o for o in space.orders() if tuple(o) not in skip]
        return [list(o) for o in rng.sample(pool, min(m, len(pool)))]
    out = []
    for _ in range(m):
        o = space.draw(rng, skip.__contains__, 200)
        if o is None:
            break
        skip.add(o)
        out.append(list(o))
    return out


def by_length(space: OrderSpace) -> list[tuple[int, int]]:
    """(length, its number of orders) for each length of the space."""
    if not space.constrained:
        return [(k, math.perm(len(space.candidates), k)) for k in space.lengths]
    return [(k, OrderSpace(space.candidates, [k], space.include, space.before, space.last).count()) for k in space.lengths]


def budget(scfg, trials: int, draws: int = DRAWS, seed: int = 0) -> dict:
    """This search's ``trials`` orders: its seed points that need no measurement (F, singles, listed
    orders; heuristic ones count among the drawn), the rest drawn at random ``draws`` times. The
    stage-trainings of each draw: median and 5th-95th percentile."""
    from search.searchers.seed_points import given_orders

    space = scfg.space()
    fixed = list({tuple(o): o for o in given_orders(scfg)}.values())[:trials]
    rng, taken = random.Random(seed), {tuple(o) for o in fixed}
    if space.count() <= LIST_UP_TO:  # (listed once, not per draw)
        pool = [o for o in space.orders() if tuple(o) not in taken]
        runs = [fixed + rng.sample(pool, min(trials - len(fixed), len(pool))) for _ in range(draws)]
    else:
        runs = [fixed + uniform_orders(space, trials - len(fixed), rng, exclude=fixed) for _ in range(draws)]
    stages = np.array([work(r).stages for r in runs])
    return {"trials": trials, "fixed": len(fixed), "orders": runs,
            "stages": float(np.median(stages)), "stages_lo": float(np.percentile(stages, 5)),
            "stages_hi": float(np.percentile(stages, 95)), "uncached": float(np.median([work(r).uncached for r in runs]))}


@dataclass
class Plan:
    scfg: object  # search.config.SearchConfig
    seeds: int  # seeds per trial
    every: Work  # every order once
    trials: int  # this search's trials
    budget: dict  # its orders' stage-trainings (``budget``), over at most every order once
    fine_tuned: tuple[str, ...] = ()  # the tasks each chain fine-tunes: the target and the eval.also tasks that train
    probes_all: bool = False  # each stage's probe fine-tunes every one of them (probe.also), not the target alone


def make(scfg, chain) -> Plan:
    from search.runner import DEFAULT_TRIALS

    every = exhaustive_work(scfg.space())
    trials = every.orders if scfg.searcher == "exhaustive" else scfg.num_samples or DEFAULT_TRIALS
    if not scfg.hparams:
        trials = min(trials, every.orders)  # (a search ends once every order has run)
    return Plan(scfg, len(scfg.seeds or chain.seeds), every, trials, budget(scfg, min(trials, every.orders)),
                fine_tuned=fine_tuned(chain), probes_all=scfg.metric == "xtreme" and bool(chain.probe.also))


def fine_tuned(chain, where: str = "config") -> tuple[str, ...]:
    """The tasks one chain fine-tunes: its target (unless a retrieval task) and each ``eval.also`` task
    that trains (each on its own copy of the encoder after the intermediate stages)."""
    from itt.tasks import resolve_task

    tasks = [resolve_task(chain.target.task, chain.tasks, f"{where}: target.task")]
    tasks += [resolve_task(t, chain.tasks, f"{where}: eval.also") for t in chain.eval.also]
    return tuple(t.name for t in tasks if t.trains)


def confirmation(p: Plan) -> dict | None:
    """``search.confirm`` (``itt confirm`` after the search): its orders (None for "set": known after the
    search), whether F comes too, its fresh seeds and its settings (the base and each ``vary`` value)."""
    c = p.scfg.confirm
    if c is None:
        return None
    top = c.top if isinstance(c.top, int) else None
    return {"orders": top, "baseline": p.scfg.space().is_valid([]), "seeds": len(c.seeds or []) or max(5, p.seeds),
            "settings": 1 + sum(len(v) for v in c.vary.values()), "longest": max(p.scfg.lengths)}


def count_lines(p: Plan) -> list[str]:
    """The plan in stage-trainings and fine-tunes, as ``itt space`` prints it."""
    b, every, trials = p.budget, p.every, p.trials
    out = [f"compute, per seed ({p.seeds} seed(s) per trial: x{p.seeds}), in stage-trainings (an intermediate stage on "
           f"one seed, with its probe; the stage cache trains each prefix once) and target fine-tunes:",
           f"  every order once: {every.stages:,} stage-trainings ({every.uncached:,} without the stage cache), "
           f"{every.orders:,} fine-tunes"]
    head = f"  this search, {trials:,} trials ({b['fixed']} seed point(s) first"
    if p.scfg.hparams:  # (a prefix is shared only between trials of the same stage hyperparameters)
        out.append(f"{head}, searched hyperparameters): up to {b['uncached'] * trials / b['trials']:,.0f} "
                   f"stage-trainings (the stage cache shares a prefix between trials with the same stage "
                   f"hyperparameters only), {trials:,} fine-tunes")
    else:
        share = trials / every.orders
        spread = f"{b['stages_lo']:,.0f}-{b['stages_hi']:,.0f}" if b["stages_hi"] > b["stages_lo"] else f"{b['stages']:,.0f}"
        out.append(f"{head}; {f'{share:.0%}' if share >= 0.01 else f'{share:.2%}'} of the orders): {spread} "
                   f"stage-trainings if its other orders were drawn at random ({b['uncached']:,.0f} without the stage "
                   f"cache), {trials:,} fine-tunes; order_bo continues trained prefixes where it can and ASHA's stops "
                   f"skip the rest of an order, so a search needs at most about that")
    if len(p.fine_tuned) > 1:
        out.append(f"  a fine-tune here is {len(p.fine_tuned)} of them, one per target ({', '.join(p.fine_tuned)}: the "
                   f"target and eval.also), each on its own copy of the encoder the order's stages produced")
        if p.probes_all:
            out.append(f"  a stage-training's probe fine-tunes each of them for {p.scfg.probe_steps} steps (probe.also: "
                       "the probe is their XTREME average), not the target alone")
    from search.searchers import stopping

    if p.scfg.stop is not None:
        out.append(f"  search.stop ({stopping.describe(stopping.given(p.scfg.stop))}) may end it earlier, once {p.scfg.stop.min_trials} or more trials have finished")
    if p.scfg.budget is not None:
        limits = [f"{v:g} {k.replace('_', '-')}" for k, v in stopping.budget_limits(p.scfg.budget).items()]
        out.append(f"  search.budget ({' or '.join(limits)}) ends it once spent: no new trial starts, running ones finish")
    if p.scfg.reproducible:
        size = p.scfg.resources.max_concurrent or "as many as the cluster fits"
        out.append(f"  search.reproducible: trials in batches ({size} at a time), each batch proposed once the one "
                   "before has ended (slots idle while a batch's longest trial finishes)")
    c = confirmation(p)
    if c is not None:
        what = f"its {c['orders']} best orders" if c["orders"] else "the orders that could be best (known after it)"
        times = f" x {c['settings']} settings (search.confirm.vary)" if c["settings"] > 1 else ""
        if c["orders"]:
            stages, tunes = c["orders"] * c["longest"], c["orders"] + c["baseline"]
            cost = f"at most {stages * c['seeds'] * c['settings']:,} stage-trainings and {tunes * c['seeds'] * c['settings']:,} fine-tunes in all"
        else:
            cost = f"at most {c['longest']} stage-trainings and 1 fine-tune per order and seed"
        out.append(f"  then itt confirm (search.confirm): {what}{' and F' if c['baseline'] else ''} on "
                   f"{c['seeds']} fresh seeds{times}: {cost} (fresh seeds share no prefix with the search)")
    return out


def hour_figures(p: Plan, timing: "Timing") -> dict:
    """The plan's seconds at a pilot's: every order once, this search (median over its draws), and the
    confirmation's upper bound (None where its orders are known only after the search)."""
    from search.compute import devices_per_trial

    per, kind = devices_per_trial({"search": {"resources": p.scfg.resources.model_dump()}})
    full = timing.seconds(exhaustive_prefix_tasks(p.scfg.space()), p.every.orders) * p.seeds
    count = task_counts if p.scfg.hparams else stage_tasks  # (searched hyperparameters: no shared prefixes)
    mine = float(np.median([timing.seconds(count(o), len(o)) for o in p.budget["orders"]]))
    mine *= p.seeds * p.trials / p.budget["trials"]
    c, most = confirmation(p), None
    if c is not None and c["orders"]:  # (its orders at the longest length, each stage a median one)
        one = (c["orders"] * c["longest"] * (timing.median_stage + timing.per_stage)
               + (c["orders"] + c["baseline"]) * (timing.finetune + timing.per_chain))
        most = one * c["seeds"] * c["settings"]
    est, measured = timing.check()
    t = timing.searcher  # (the searcher's own time: this search's trials at the pilot's mean per proposal)
    own = p.trials * t["mean_seconds"] if t else None
    return {"devices_per_trial": per, "device_kind": kind, "clock": timing.clock, "every_seconds": full,
            "search_seconds": mine, "confirm_seconds": most, "fit_seconds": est, "measured_seconds": measured,
            "searcher_seconds": own}


def hour_lines(p: Plan, timing: "Timing", h: dict, chain) -> list[str]:
    """The plan in hours at a pilot's seconds (``h``: ``hour_figures``), as ``itt space --from`` prints it."""
    per, kind = h["devices_per_trial"], h["device_kind"]
    shown = ", ".join(f"{t} {hours(s)}" for t, s in sorted(timing.stage.items()))
    out = [f"hours, at the seconds measured by {timing.source}: a stage {shown}; the target fine-tune "
           f"{hours(timing.finetune)}; besides training {hours(timing.per_chain)} per chain and "
           f"{hours(timing.per_stage)} per stage-training (the pilot's own {'trials' if len(timing.runs) > 1 else 'run'}: "
           f"{hours(h['fit_seconds'])} by this fit, {hours(h['measured_seconds'])} measured)"]
    if len(timing.runs) == 1:
        out.append("  one run: what it spent besides training does not split into per chain and per stage-training, "
                   "so these hours are rougher; a pilot search of a few trials tells the two apart")
    out += _caveats(p, timing, chain)
    full, mine, most = h["every_seconds"], h["search_seconds"], h["confirm_seconds"]
    out += [f"  every order once: about {hours(full)} of trial time = {full * per / 3600:,.3g} {kind}-hours "
            f"({per:g} {kind}(s) per trial)",
            f"  this search: about {hours(mine)} = {mine * per / 3600:,.3g} {kind}-hours, if its other orders "
            f"were drawn at random ({COVERS[timing.clock]})"]
    if h["searcher_seconds"] is not None:
        out.append(searcher_line(p, timing.searcher, h["searcher_seconds"]))
    b = p.scfg.budget
    if b is not None and b.device_hours and mine > 0:
        need, trials = mine * per / 3600, p.budget["trials"]
        fit = min(trials, int(trials * b.device_hours / need))
        out.append(f"  search.budget {b.device_hours:g} {kind}-hours: {b.device_hours / need:.0%} of that, so about "
                   f"{fit} of its {trials} trials{' (all)' if fit == trials else ''}")
    if most is not None:
        out.append(f"  then itt confirm: at most about {hours(most)} = {most * per / 3600:,.3g} {kind}-hours")
    return out


def searcher_line(p: Plan, t: dict, own: float) -> str:
    """The searcher's own time on top of the trials', at the pilot search's mean per proposal (``t``:
    its summary.json ``searcher_time`` and searcher)."""
    mine = p.scfg.searcher if p.scfg.searcher != "auto" else "order_bo"
    out = (f"  the searcher's own time on the driver, on top: about {hours(own)} ({p.trials} proposals at the pilot's "
           f"{t['mean_seconds']:.2g} s each on average, longest {t['longest_proposal_seconds']:.2g} s; a slot waits while it proposes)")
    if t["searcher"] != mine:
        out += f"; the pilot's searcher was {t['searcher']}, this search's is {mine}: another searcher's time"
    elif mine == "order_bo" and p.trials > t["proposals"]:
        out += (f"; order_bo's proposals take longer as the trials it has seen grow, and the pilot ran {t['proposals']}: "
                f"expect more")
    return out


def memory_lines(p: Plan, timing: "Timing") -> list[str]:
    """How many of the pilot's trials one GPU holds, and whether this search's ``gpus_per_worker`` gives a
    trial its peak (a trial keeps to its share of the GPU's memory: itt.train.cap_gpu_memory; a stage
    beyond it runs in micro-batches, slower)."""
    g = timing.gpu
    if g is None:
        return []
    out = [f"GPU memory, as the pilot's stages held it: at most {gib(g.peak_mib)} (a {g.task} stage; the "
           f"allocator's, a CUDA context of about {gib(CUDA_CONTEXT_MIB)} on top)"]
    n = g.fits()
    if n:
        out.append(f"  its {g.device_name} ({gib(g.total_mib)}) holds {n} such trial(s): search.resources.gpus_per_worker "
                   f"{1 / n:.3g} or more gives each one that much")
    share = p.scfg.resources.gpus_per_worker
    if n and 0 < share < 1 and share * g.total_mib < g.peak_mib + CUDA_CONTEXT_MIB:
        out.append(f"  this search's gpus_per_worker {share:g} gives a trial {gib(share * g.total_mib)} of such a GPU: "
                   f"its largest stages will run out and go on in micro-batches (slower); {1 / n:.3g} avoids that")
    return out


def gib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB"


def _caveats(p: Plan, timing: "Timing", chain) -> list[str]:
    """Where the pilot's seconds are not this search's: tasks it did not train, another device, other settings."""
    out = []
    unmeasured = timing.unmeasured(p.scfg.candidates)
    if unmeasured:
        out.append(f"  not measured there: {', '.join(unmeasured)} (taken as the median stage)")
    on_gpu = p.scfg.resources.gpus_per_worker > 0
    if timing.devices and (on_gpu == (timing.devices <= {"cpu"})):  # a CPU pilot for a GPU search, or the reverse
        out.append(f"  the pilot ran on {', '.join(sorted(timing.devices))}; this search's trials hold "
                   f"{'GPUs' if on_gpu else 'CPUs only'}: its seconds are another device's")
    differ = differences(timing.config, chain)
    if differ:
        out.append(f"  its trials ran other settings ({', '.join(differ[:6])}{', ...' if len(differ) > 6 else ''}): "
                   f"their seconds are another search's")
    return out


def as_json(p: Plan, space: OrderSpace, timing: "Timing | None" = None, h: dict | None = None) -> dict:
    """The plan's figures for scripts (``itt space --json``): counts per seed, and with a pilot its seconds
    (``h``: ``hour_figures``)."""
    b = {k: v for k, v in p.budget.items() if k != "orders"}
    out = {"orders": space.count(), "by_length": {str(k): c for k, c in by_length(space)}, "seeds": p.seeds,
           "every_order_once": vars(p.every), "search": {**b, "trials": p.trials, "searched_hparams": bool(p.scfg.hparams)},
           "confirm": confirmation(p), "hours": None}
    if timing is not None:
        out["hours"] = {**h, "source": timing.source, "stage_seconds": timing.stage, "finetune_seconds": timing.finetune,
                        "per_chain_seconds": timing.per_chain, "per_stage_seconds": timing.per_stage,
                        "unmeasured": timing.unmeasured(p.scfg.candidates)}
        g = timing.gpu
        out["gpu_memory"] = None if g is None else {"peak_mib": g.peak_mib, "task": g.task, "total_mib": g.total_mib,
                                                     "device_name": g.device_name, "trials_per_gpu": g.fits()}
    return out


# ------------------------------------------------------------------ hours, from a pilot
@dataclass
class Timing:
    stage: dict[str, float]  # task -> median seconds of one trained stage (its training only)
    finetune: float  # median seconds of the target fine-tune
    per_chain: float  # everything else a chain (one seed of an order) spends once: loading, evaluation
    per_stage: float  # ... and per stage-training: its probe, the cache's save
    runs: list[dict]  # the pilot's trials: {"trained": [tasks over seeds], "chains", "finetunes", "seconds"}
    source: str
    config: dict | None = None
    devices: frozenset = frozenset()  # the kinds of device its chains ran on ("cpu", "cuda", ...)
    gpu: "GpuMemory | None" = None  # on CUDA: the most memory a stage held, and the GPU's
    searcher: dict | None = None  # a pilot search's own time (summary.json's searcher_time) and its searcher's name

    def unmeasured(self, tasks) -> list[str]:
        """Of ``tasks``, those the pilot trained no stage of (their seconds are the median stage's)."""
        return [t for t in tasks if t not in self.stage]

    @property
    def median_stage(self) -> float:
        """The median task's stage seconds (what a task the pilot did not train is taken to cost)."""
        return float(np.median(list(self.stage.values()))) if self.stage else 0.0

    def stage_seconds(self, task: str) -> float:
        return self.stage[task] if task in self.stage else self.median_stage

    def seconds(self, stage_tasks: dict[str, int], finetunes: int) -> float:
        """Seconds of ``stage_tasks`` (task -> stage-trainings of it) and ``finetunes`` chains."""
        stages = sum(c * (self.stage_seconds(t) + self.per_stage) for t, c in stage_tasks.items())
        return stages + finetunes * (self.finetune + self.per_chain)

    @property
    def clock(self) -> str:
        """What the seconds cover: a trial's start to end (a search pilot) or its chains only."""
        return "trial" if self.runs and all(r.get("trial_clock") for r in self.runs) else "chain"

    def check(self) -> tuple[float, float]:
        """(the fit's seconds for the pilot's own trials, their measured seconds)."""
        est = sum(sum(self.stage_seconds(t) + self.per_stage for t in r["trained"]) + r["chains"] * self.per_chain
                  + r["finetunes"] * self.finetune for r in self.runs)
        return est, sum(r["seconds"] for r in self.runs)


@dataclass
class GpuMemory:
    """The pilot's GPU memory: the most its allocator held in one stage it trained (``peak_gpu_mib`` of
    results.json's stages), which stage, and the memory of the GPU it ran on."""

    peak_mib: float
    task: str
    total_mib: float | None
    device_name: str

    def fits(self) -> int | None:
        """Trials of the pilot's size one such GPU holds (each its peak plus a CUDA context)."""
        return int(self.total_mib // (self.peak_mib + CUDA_CONTEXT_MIB)) if self.total_mib else None


def stage_tasks(orders) -> dict[str, int]:
    """task -> the stage-trainings of it that ``orders`` need with the stage cache."""
    out: dict[str, int] = {}
    for p in prefixes(orders):
        out[p[-1]] = out.get(p[-1], 0) + 1
    return out


def task_counts(orders) -> dict[str, int]:
    """task -> its stages in ``orders`` without the stage cache."""
    out: dict[str, int] = {}
    for o in orders:
        for t in o:
            out[t] = out.get(t, 0) + 1
    return out


def timing_from(exp_dir: str) -> Timing:
    """Seconds measured by an earlier search's trials (each trial's time from the search's records, from
    start to end as its driver saw it; ``trials/<id>/results.json``: each seed's stages), or by one chain
    (``itt run``'s folder: its wall time). A trial's seeds advance in lockstep in one process, so its
    time is the sum of their work; replays (an earlier result reported again) trained nothing and are
    left out."""
    from search.tracking import storage_of

    st = storage_of(exp_dir, "--from")
    records, config = _pilot_records(st, exp_dir)
    stage_seconds: dict[tuple, float] = {}  # (prefix, seed) -> its training's seconds (a cached stage carries them too)
    fine, runs, hardware, devices, gpu = [], [], set(), set(), None
    for res in records:
        if res.get("simulated") or res.get("wall_seconds") is None:
            continue
        hw = res.get("hardware") or {}
        hardware.add(f"{hw.get('device_name') or '?'} ({hw.get('device') or '?'})")
        devices.add(hw.get("device") or "?")
        runs.append(_run(res, stage_seconds, fine))
        gpu = _gpu_memory(res, gpu)
    if not runs:
        raise NoSeconds(f"--from {exp_dir}: no trial with measured seconds (trials/<id>/results.json of real, "
                        f"not simulated, trials)")
    per_chain, per_stage = _overheads(runs)
    per_task: dict[str, list[float]] = {}
    for (prefix, _), secs in stage_seconds.items():
        per_task.setdefault(prefix[-1], []).append(secs)
    return Timing(stage={t: float(np.median(v)) for t, v in per_task.items()},
                  finetune=float(np.median(fine)) if fine else 0.0, per_chain=per_chain, per_stage=per_stage,
                  runs=runs, source=f"{st.display}: {len(runs)} {'trials' if len(runs) > 1 else 'run'} on "
                                    f"{'; '.join(sorted(hardware))}", config=config, devices=frozenset(devices), gpu=gpu,
                  searcher=_searcher_time(st, config))


def _searcher_time(st, config: dict | None) -> dict | None:
    """A pilot search's own time on the driver (summary.json's ``searcher_time``) with its searcher's name
    and its mean per proposal; None for an ``itt run`` folder or a search that recorded none (made before
    it did, or ``exhaustive``)."""
    try:
        t = json.loads(st.read_text("summary.json") or "{}").get("searcher_time") if st.exists("results.csv") else None
    except (ValueError, AttributeError):  # (a summary.json cut short: the hours stand without this line)
        t = None
    need = ("proposals", "seconds", "longest_proposal_seconds")
    if not isinstance(t, dict) or not t.get("proposals") or not all(isinstance(t.get(k), (int, float)) for k in need):
        return None
    name = ((config or {}).get("search") or {}).get("searcher") or "auto"
    return {**t, "searcher": "order_bo" if name == "auto" else name, "mean_seconds": t["seconds"] / t["proposals"]}


def _gpu_memory(res: dict, best: "GpuMemory | None") -> "GpuMemory | None":
    """``best`` or this chain record's stage that held more GPU memory (stages it trained; a cached stage
    carries its trainer's figure, not this chain's)."""
    hw = res.get("hardware") or {}
    for sr in res.get("seeds", {}).values():
        for st in sr.get("stages") or []:
            peak = st.get("peak_gpu_mib")
            if peak is not None and not st.get("from_cache") and (best is None or peak > best.peak_mib):
                best = GpuMemory(float(peak), st.get("task") or "?", hw.get("gpu_memory_mib"), hw.get("device_name") or "?")
    return best


def _pilot_records(st, exp_dir: str) -> tuple[list[dict], dict | None]:
    """The pilot's chain records (results.json) and the config its chains ran."""
    from search.tracking import read_rows

    if st.exists("results.csv"):  # a search: each trial's record with its time as the driver saw it
        from search.compute import trial_times

        times = trial_times(st)
        rows = [r for r in read_rows(st) if r.get("trial_id") and r.get("replayed") != "true"]
        records = []
        for r in rows:
            res = st.read_json("trials", r["trial_id"], "results.json")
            if res:
                records.append({**res, "trial_seconds": (times.get(r["trial_id"]) or {}).get("seconds")})
        return records, st.read_yaml("tracking", "config.yaml")
    res = st.read_json("results.json")
    if res is None:
        raise UserError(f"--from {exp_dir}: neither an `itt search` experiment (results.csv) nor an `itt run` "
                        f"folder (results.json)")
    return [res], res.get("config")


def _run(res: dict, stage_seconds: dict, fine: list) -> dict:
    """One trial's chains: the stages it trained (not from the cache), its fine-tunes, its time (the
    trial's as the search's driver saw it, else its chains' wall time) and the seconds its stages and
    fine-tunes account for (the rest is what ``_overheads`` fits)."""
    order, target = list(res.get("order") or []), res.get("target")
    trained, known, finetunes = [], 0.0, 0
    for seed, sr in res.get("seeds", {}).items():
        stages = sr.get("stages") or []
        for i, s in enumerate(stages[:len(order)]):
            if s.get("seconds") is None:
                continue
            stage_seconds.setdefault((tuple(order[:i + 1]), seed), float(s["seconds"]))
            if not s.get("from_cache"):
                trained.append(s["task"])
                known += float(s["seconds"])
        for s in stages[len(order):]:
            if s.get("task") == target and s.get("seconds") is not None:
                fine.append(float(s["seconds"]))
                known += float(s["seconds"])
                finetunes += 1
    trial = res.get("trial_seconds")  # (start-up and retries included; an `itt run` has its chains' only)
    return {"trained": trained, "chains": len(res.get("seeds", {})), "finetunes": finetunes, "known": known,
            "seconds": float(trial if trial is not None else res["wall_seconds"]), "trial_clock": trial is not None}


def _overheads(runs: list[dict]) -> tuple[float, float]:
    """What a trial spends besides training, ``a * chains + b * stage-trainings``: non-negative least
    squares over the pilot's trials (b is 0 where every trial trained as many stages per chain)."""
    from scipy.optimize import nnls

    A = np.array([[r["chains"], len(r["trained"])] for r in runs], dtype=float)
    rest = np.array([r["seconds"] - r["known"] for r in runs])
    (a, b), _ = nnls(A, rest)
    return float(a), float(b)


def _also_settled(config: dict) -> dict:
    probe = config.get("probe") or {}
    return {**config, "probe": {**probe, "also": bool(probe.get("also"))}}


def differences(pilot: dict | None, chain) -> list[str]:
    """Chain settings (dotted keys) where the pilot's config differs from this one's."""
    if not pilot:
        return []
    # probe.also null (a pilot saved before it was settled, an itt run) is the target's probe alone
    mine, pilot = (_also_settled(c) for c in (chain.model_dump(mode="json"), pilot))
    out: list[str] = []

    def walk(a, b, key):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{key}.{k}")
        elif a != b:
            out.append(key)

    for k in COMPARED:
        walk(pilot.get(k), mine.get(k), k)
    return out


def hours(s: float) -> str:
    """A duration as a person reads it: seconds, minutes or hours."""
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:,.1f} h"
