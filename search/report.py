"""``itt report EXPERIMENT_DIR``: does the order of intermediate tasks matter, for one finished search?

Reads ``results.csv`` and each completed trial's ``trials/<id>/results.json`` (per seed, per
language) through :class:`~search.storage.Storage` (a folder or an object store), runs the
statistics of :mod:`search.stats`, draws the plots (matplotlib, Agg) and writes ``report.html``
(self-contained: plots embedded as base64 PNG), ``report.md``, ``report.json`` (every statistic) and
the PNGs into ``<experiment>/report/`` (or ``--out``); then logs them to the search's MLflow parent
run (artifacts under ``report/``, headline figures as metrics). Every input check happens before
anything is written.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from itt.errors import UserError
from search import compute, latex, ranking, training_cost
from search import stats as S
from search.config import hparams_text
from search.confirm import CONFIRM_FILE
from search.confirm import analyse as confirmation
from search.confirm import headline as confirmation_headline
from search.results import config_of
from search.searchers import stopping
from search.space import order_tasks
from search.stats import F, show
from search.storage import writable_folder
from search.transfer import agreement, agreement_text, prior_of_measurements
from search.tracking import finite as _num

XTREME, XTREME_SCORE = "xtreme", "XTREME score"  # search.metric in task mode; the scores' name there
XTREME_PROBES = "XTREME average of every task's probe"  # task mode's probes with probe.also
_UNIT_WORDS = [(re.compile(r"\bLanguages\b"), "Tasks"), (re.compile(r"\bLanguage\b"), "Task"),
               (re.compile(r"\blanguages\b"), "tasks"), (re.compile(r"\blanguage\b"), "task"),
               (re.compile(r"\blangs\b"), "tasks")]


def per_unit(text: str, unit: str | None) -> str:
    """A report text written for columns that are languages, for columns that are tasks (task mode: a
    search on the XTREME average, whose per-column statistics read the same over tasks)."""
    if unit != "task" or not text:
        return text
    for pattern, word in _UNIT_WORDS:
        text = pattern.sub(word, text)
    return text


def per_unit_sections(secs: list[tuple], unit: str | None, own: dict[str, str] | None = None) -> list[tuple]:
    """Rendered sections (title, text, table rows, plot) in ``per_unit``'s words; ``own``: table cells
    that have their own wording there (e.g. a column that stays the target's)."""
    if unit != "task":
        return secs
    own = own or {}
    cell = lambda c: own.get(c) or per_unit(c, unit)  # noqa: E731
    return [(per_unit(t, unit), per_unit(x, unit), [[cell(c) for c in row] for row in rows], plot)
            for t, x, rows, plot in secs]


PLOTS = ("leaderboard", "heatmap", "if_vs_f", "position", "probe_curves", "robustness", "by_language")


# ------------------------------------------------------------------ reading an experiment
@dataclass
class Experiment:
    st: object  # Storage
    rows: list[dict]
    meta: dict
    metric: str
    languages: list[str]
    scores: pd.DataFrame  # order, seed, language, score (completed trials, one trial per order)
    extra: pd.DataFrame  # order, seed, figure, value
    stages: pd.DataFrame  # order, seed, stage, task, probe
    trials: pd.DataFrame  # every trial: trial_id, order, status, stages_completed, score
    notes: list[str] = field(default_factory=list)
    config: dict | None = None
    hardware: list[dict] = field(default_factory=list)  # each counted trial's results.json "hardware"
    counted: dict[str, str] = field(default_factory=dict)  # order -> the trial id whose scores count
    # orders of a real (not simulated) search whose counted trial has no results.json: only its results.csv
    # means count (one observation); e.g. a trial that wrote its outputs on another node's own disk
    means_only: list[str] = field(default_factory=list)
    # models (order, seed) without a score in some language: left out of the statistics (stats.complete_models)
    incomplete: list[dict] = field(default_factory=list)
    # what the score columns are: the target's languages, or (a search on search.metric: xtreme) the tasks
    # whose XTREME average it optimised, each task's XTREME score (the mean over its languages)
    unit: str = "language"
    probe_metric: str | None = None  # the probes' metric where it is not the scores' (the target's, in task mode)
    probe_key: str | None = None  # a probe's metric as trials report it, where not probe_<metric>_mean (task mode)
    # task mode: every task's per-language XTREME figure (order, seed, task, language, metric, score)
    by_language: pd.DataFrame | None = None
    finetunes_per_chain: int = 1  # the target's, and one per eval.also task that trains
    seconds: pd.DataFrame | None = None  # order, seed, seconds, tokens: a chain's training (training_cost.py)
    splits: list[str] = field(default_factory=lambda: ["test"])  # the split(s) the scores come from

    @cached_property
    def summary(self) -> dict:
        """The search's summary.json (the searcher's pick, its own time), read once when first asked for."""
        return self.st.read_json("summary.json", default={})


def load_experiment(exp_dir: str) -> Experiment:
    """An experiment directory -> tidy tables; a UserError (nothing written) when it is none."""
    from search.tracking import TRIAL_COLUMNS, read_rows, storage_of

    st = storage_of(exp_dir, "experiment")
    if not st.exists():
        raise UserError(f"{exp_dir}: no such experiment directory")
    if not st.exists("results.csv"):
        raise UserError(f"{exp_dir}: no results.csv here (not an `itt search` experiment directory)")
    rows = read_rows(st, TRIAL_COLUMNS)
    done = [r for r in rows if r.get("status") == S.Status.COMPLETED]
    if not done:
        counts = ", ".join(f"{sum(r.get('status') == s for r in rows)} {s}" for s in ("running", "stopped", "errored"))
        raise UserError(f"{exp_dir}: no completed trial in results.csv ({len(rows)} trials: {counts})")
    meta = st.read_json("tracking", "search.json", default={})
    config = st.read_yaml("tracking", "config.yaml")
    notes: list[str] = []
    metric, languages = None, list(meta.get("languages") or [])
    per_task = ((config or {}).get("search") or {}).get("metric") == XTREME  # the columns are tasks, not languages
    first = lambda t: (t != meta.get("target"), t)  # noqa: E731 (task mode: the target's column first)
    if per_task:
        languages = sorted((c[len("xtreme_"):] for c in rows[0] if c.startswith("xtreme_") and c != "xtreme_average"),
                           key=first)
    t = _Tables()
    counted: dict[str, str] = {}
    means_only: list[str] = []
    # one trial per order: the best-scoring completed trial with per-seed results (replays and other
    # hyperparameters of the same order are listed in the notes, not counted twice)
    by_order: dict[str, list[dict]] = {}
    for r in done:
        by_order.setdefault(r.get("order") or "", []).append(r)
    for order, rs in by_order.items():
        rs = sorted(rs, key=lambda r: -(_num(r.get("score")) or -math.inf))
        chosen, res = _with_results(st, rs)
        if len(rs) > 1:
            notes.append(f"order {show(order)}: {len(rs)} completed trials (replays or other hyperparameters); "
                         f"trial {(chosen or rs[0])['trial_id']} is the one counted")
        if res is None:  # no per-seed results: the row's means count as one observation
            r = rs[0]
            if not t.add_means(order, r, languages, per_task):
                notes.append(f"order {show(order)}: trial {r['trial_id']} has neither results.json nor per-language "
                             "scores; left out")
                continue
            notes.append(f"order {show(order)}: trial {r['trial_id']} has no results.json; its results.csv means "
                         "count as a single seed")
            if not ((config or {}).get("search") or {}).get("simulate"):  # (a table's trials may write none)
                means_only.append(order)
            counted[order] = r["trial_id"]
            continue
        metric = metric or res.get("metric")
        counted[order] = chosen["trial_id"]
        t.add_results(order, res, res.get("metric", metric), per_task)
        languages = languages or list(res.get("languages") or [])
    if per_task:
        languages = sorted(set(languages) | {lang for _, _, lang, _ in t.scores}, key=first)
    scores = pd.DataFrame(t.scores, columns=["order", "seed", "language", "score"])
    if scores["score"].notna().sum() == 0:
        raise UserError(f"{exp_dir}: the completed trials hold no per-language scores")
    scores, incomplete = S.complete_models(scores)
    if scores.empty:
        raise UserError(f"{exp_dir}: no trained model has a score in every language")
    if incomplete:
        notes.append(f"{len(incomplete)} model(s) (order x seed) lack a score in some language and are left out of "
                     "every statistic (a mean over fewer languages would compare them on other languages): "
                     + "; ".join(f"{show(m['order'])} seed {m['seed']}: no {', '.join(m['missing'])}"
                                 for m in incomplete[:10]) + ("; ..." if len(incomplete) > 10 else ""))
    trials = pd.DataFrame([{"trial_id": r["trial_id"], "order": r.get("order") or "", "status": r.get("status"),
                            "stages_completed": int(_num(r.get("stages_completed")) or 0), "score": _num(r.get("score"))}
                           for r in rows])
    return Experiment(st=st, rows=rows, meta=meta, metric=XTREME_SCORE if per_task else metric or "score",
                      languages=languages, scores=scores,
                      extra=pd.DataFrame(t.extra, columns=["order", "seed", "figure", "value"]),
                      stages=pd.DataFrame(t.stages, columns=["order", "seed", "stage", "task", "probe"]),
                      trials=trials, notes=notes, config=config, hardware=t.hardware, counted=counted,
                      means_only=means_only,
                      incomplete=incomplete,
                      unit="task" if per_task else "language",
                      by_language=pd.DataFrame(t.by_language, columns=["order", "seed", "task", "language", "metric", "score"])
                      if per_task else None, finetunes_per_chain=1 if t.per_chain is None else t.per_chain,
                      seconds=pd.DataFrame(t.seconds, columns=["order", "seed", "seconds", "tokens"]),
                      splits=sorted(t.splits, key=("test", "dev").index) or ["test"],
                      probe_metric=(XTREME_PROBES if t.xtreme_probes else f"{meta.get('target') or 'target'} {metric}")
                      if per_task and metric else None,
                      probe_key=("probe_xtreme_average" if t.xtreme_probes else f"probe_{metric}_mean")
                      if per_task and metric else None)


def _with_results(st, rs: list[dict]) -> tuple[dict | None, dict | None]:
    """The first of an order's trials (best score first) whose results.json exists, and that record."""
    for r in rs:
        res = st.read_json("trials", r["trial_id"], "results.json")
        if res is not None:
            return r, res
    return None, None


@dataclass
class _Tables:
    """The rows of load_experiment's tables, gathered trial by trial (one counted trial per order)."""

    scores: list = field(default_factory=list)  # (order, seed, language - or task, with search.metric xtreme - score)
    extra: list = field(default_factory=list)  # (order, seed, figure, value): the score on noisy input
    stages: list = field(default_factory=list)  # (order, seed, stage, task, probe score)
    by_language: list = field(default_factory=list)  # (order, seed, task, language, metric, score): xtreme only
    seconds: list = field(default_factory=list)  # (order, seed, seconds, tokens) of each chain's training
    xtreme_probes: bool = False  # task mode: the probes are XTREME averages over the tasks (probe.also)
    hardware: list = field(default_factory=list)  # each counted trial's results.json "hardware"
    per_chain: int | None = None  # the most fine-tunes a chain ran
    splits: set = field(default_factory=set)  # the split each seed's scores were read from (test, else dev)

    def add_means(self, order: str, r: dict, columns: list[str], per_task: bool) -> bool:
        """A trial without results.json: its results.csv means (``columns``: languages, or tasks) as seed -1;
        False when it has none of them."""
        col = (lambda c: f"xtreme_{c}") if per_task else (lambda c: c)  # noqa: E731 (results.csv's column)
        have = [c for c in columns if _num(r.get(col(c))) is not None]
        self.scores += [(order, -1, c, _num(r[col(c)])) for c in have]
        if have and _num(r.get("perturbation_score")) is not None:
            self.extra.append((order, -1, "perturbation", _num(r["perturbation_score"])))
        return bool(have)

    def add_results(self, order: str, res: dict, m: str, per_task: bool) -> None:
        """A trial's results.json: each seed's scores (test where there is a test split, else dev), its score
        on noisy input, probes, training seconds and tokens, and fine-tunes per chain."""
        self.hardware.append(res.get("hardware") or {})
        for seed, sr in res.get("seeds", {}).items():
            seed, split = int(seed), "test" if "test" in sr else "dev"
            self.splits.add(split)
            self.per_chain = max(self.per_chain or 0, _finetunes(res, sr))
            work = training_cost.chain_work(sr)
            if work["seconds"] is not None:
                self.seconds.append((order, seed, work["seconds"], work["tokens"]))
            if per_task:  # each task's XTREME score: its metric's mean over its languages ((EM + F1) / 2 for QA)
                self.scores += [(order, seed, task, _num(v))
                                for task, v in sr.get(split, {}).get("xtreme", {}).get("tasks", {}).items()]
                self.by_language += _task_languages(order, seed, split, sr, res.get("target"))
            else:
                self.scores += [(order, seed, lang, _num(v.get(m)))
                                for lang, v in sr.get(split, {}).get("per_language", {}).items()]
            if "perturbation" in sr:
                self.extra.append((order, seed, "perturbation", _num(sr["perturbation"].get("score"))))
            for i, stage in enumerate([s for s in sr.get("stages", []) if "probe" in s], 1):
                probe = stage["probe"]  # task mode: the probe's XTREME average where every task was probed (probe.also)
                xtreme = per_task and "xtreme_average" in probe
                self.xtreme_probes |= xtreme
                self.stages.append((order, seed, i, stage.get("task"),
                                    _num(probe["xtreme_average"] if xtreme else probe.get(f"{m}_mean"))))


def _finetunes(res: dict, sr: dict) -> int:
    """The fine-tunes one seed's chain ran: its target's (none for a retrieval target such as Tatoeba, whose
    bare encoder is evaluated: its stages list holds the intermediate stages only) and one per eval.also
    task that trains. A results.json without stages (a simulated trial's) counts the target's."""
    target = 1 if "stages" not in sr else int(len(sr["stages"]) > len(res.get("order") or []))
    return target + sum("fine_tune" in a for a in (sr.get("also") or {}).values())


def _task_languages(order: str, seed: int, split: str, sr: dict, target: str | None) -> list[tuple]:
    """One seed's per-language XTREME figures of the target and each eval.also task (task mode's
    ``scores_by_language.csv``): (order, seed, task, language, metric, score)."""
    blocks = [(target, sr.get(split, {}).get("xtreme", {}))]
    blocks += [(t, a.get(split, {}).get("xtreme", {})) for t, a in (sr.get("also") or {}).items()]
    return [(order, seed, task, lang, x.get("metric"), _num(v))
            for task, x in blocks for lang, v in (x.get("per_language") or {}).items()]


def stopped_probes(exp: Experiment, trial_id: str) -> list[dict]:
    """A stopped trial's probe score per stage (mean over seeds), from the search's tracking/ log."""
    rec = exp.st.read_json("tracking", "trials", f"{trial_id}.json") or {}
    key = exp.probe_key or f"probe_{exp.metric}_mean"
    return [{"stage": int(r["step"]), "probe": r["metrics"][key]} for r in rec.get("reports", [])
            if key in r.get("metrics", {}) and not r["metrics"].get("final")]


def search_space(exp: Experiment):
    """The search's order space (search/space.py), from the config it kept; None where that is missing or
    does not validate (one from another version of itt): what needs it is left out."""
    from search.config import SearchConfig

    try:
        return SearchConfig.model_validate((exp.config or {})["search"]).space()
    except Exception:
        return None


def space_orders(exp: Experiment) -> list[str] | None:
    """Every IF order of the search's space ('a>b'); None without a space or where it is too large to list."""
    from itt.errors import ConfigError
    from search.ranking import UNFINISHED_MAX

    space = search_space(exp)
    try:
        if space is None or space.count() > UNFINISHED_MAX:
            return None
    except ConfigError:  # (a constrained space too large to list, so to count)
        return None
    return [">".join(o) for o in space.orders() if o]


def space_work(exp: Experiment):
    """What every order of the search's space once takes (search/plan.py ``Work``, per seed); None without
    a space, or where a constrained one is too large to list."""
    from itt.errors import ConfigError
    from search.plan import exhaustive_work

    space = search_space(exp)
    try:
        return exhaustive_work(space) if space is not None else None
    except ConfigError:  # (too large to list)
        return None


# ------------------------------------------------------------------ heuristic orders vs the searched best
def compare_heuristics(exp: Experiment, board: list[dict], log=print) -> list[dict]:
    """Each heuristic's order(s), with their scores where the search ran them."""
    from search.config import SearchConfig
    from search.heuristics import KINDS, heuristic

    if not exp.config or "search" not in exp.config:
        return [{"kind": k, "error": "the experiment keeps no config (tracking/config.yaml)",
                 "command": f"itt space CONFIG --heuristic {k}"} for k in KINDS]
    from itt.config import ChainConfig

    raw = dict(exp.config)
    try:
        scfg = SearchConfig.model_validate(raw.pop("search"))
        chain = ChainConfig.model_validate(raw)
    except Exception as e:  # a config written by another version of itt
        msg = f"tracking/config.yaml does not validate ({str(e).splitlines()[0][:200]})"
        return [{"kind": k, "error": msg, "command": f"itt space CONFIG --heuristic {k}"} for k in KINDS]
    byo = {r["order"]: r for r in board}
    best = next((r for r in board if r["order"] != F), board[0])
    measurements = _prior_measurements(exp)
    out = []
    for kind in KINDS:
        singles = all(byo.get(t) for t in scfg.candidates)
        try:
            if kind == "curriculum" and not singles:
                raise UserError("the search holds no completed single-task order for every candidate; with them "
                                "(`seed_points: {singles: true}`) the difficulty is read from the search")
            if kind == "transferability" and not measurements:
                raise UserError("this search measured no transferability prior (search.prior: transferability "
                                "does, into prior.json); measuring it here would load the encoder")
            h = heuristic(kind, scfg, chain, from_exp=exp.st.display if kind == "curriculum" else None,
                          measurements=measurements if kind == "transferability" else None, log=lambda *a: None)
        except Exception as e:  # data not reachable here, a config from another version, ...
            out.append({"kind": kind, "error": str(e).splitlines()[0][:300],
                        "command": _space_cmd(kind, exp, singles, bool(measurements))})
            continue
        rows = []
        for o in h["orders"]:
            key = ">".join(o)
            r = byo.get(key)
            rows.append({"order": key, "evaluated": r is not None, "mean": r and r["mean"], "ci_low": r and r["ci_low"],
                         "ci_high": r and r["ci_high"], "rank": r and r["rank"],
                         "delta_vs_best": (r["mean"] - best["mean"]) if r else None})
        out.append({"kind": kind, "source": h["source"], "values": h["values"], "orders": rows,
                    "best": best["order"], "best_mean": best["mean"],
                    "command": None if all(x["evaluated"] for x in rows) else _space_cmd(kind, exp, singles,
                                                                                          bool(measurements))})
        if kind == "transferability":  # how well the prior ranked what the search measured (test means)
            out[-1]["agreement"] = agreement(prior_of_measurements(measurements),
                                             {r["order"]: r["mean"] for r in board if r["order"] != F})
    return out


def _prior_measurements(exp: Experiment) -> dict | None:
    """The transferability measurements the search took before its first trial (prior.json), if any."""
    from search.transfer import PRIOR_FILE

    try:
        m = json.loads(exp.st.read_text(PRIOR_FILE) or "null")
    except ValueError:  # a half-written or foreign file: as if absent
        return None
    return m.get("measurements") if isinstance(m, dict) else None


def _space_cmd(kind: str, exp: Experiment, singles: bool, measured: bool) -> str:
    """The command that computes heuristic ``kind`` for this search (``measured``: it has prior.json)."""
    frm = f" --from {exp.st.display}" if kind == "curriculum" and singles else ""
    # the search's own resolved config, kept in the experiment (a local one can be passed as it is)
    cfg = exp.st.path("tracking", "config.yaml") if not exp.st.remote and exp.config else "CONFIG"
    if kind == "transferability" and not measured:
        return (f"itt rank {cfg} --from {exp.st.display}   # the prior, and how well it ranks this search's "
                "orders; then search with --set search.prior=transferability")
    return (f"itt space {cfg} --heuristic {kind}{frm}   # then search with "
            f"--set search.seed_points.heuristics=[{kind}]")


# ------------------------------------------------------------------ a multi-objective search's front
def pareto_analysis(exp: Experiment, board: list[dict]) -> dict | None:
    """The Pareto front a multi-objective search marked in results.csv (``pareto``; chosen on dev, on the
    objectives it optimised), each order on it with its dev objectives and its test mean and worst
    language with their t intervals over seeds; whether it is also non-dominated on test (mean,
    worst); and F. None for a single-objective search."""
    from search.pareto import OBJECTIVES, PARETO_COLUMN, front, on_front

    if not exp.rows or PARETO_COLUMN not in exp.rows[0]:
        return None
    objectives = [c[len("objective_"):] for c in exp.rows[0] if c.startswith("objective_")]
    fig = S.seed_figures(exp.scores, exp.extra)
    byo = {r["order"]: r for r in board}
    on, seen = [], set()
    for r in sorted((r for r in exp.rows if on_front(r)), key=lambda r: -(_num(r.get("score")) or 0)):
        order = r.get("order") or ""
        if order in seen:
            continue
        seen.add(order)
        worst = fig.loc[fig["order"] == order, "worst"].to_numpy(float)
        lo, hi = S.t_interval(worst)
        b = byo.get(order, {})
        on.append({"order": order, "trial_id": r["trial_id"],
                   "dev": {n: _num(r.get(f"objective_{n}")) for n in objectives},
                   "test_mean": b.get("mean"), "test_mean_ci": [b.get("ci_low"), b.get("ci_high")],
                   "test_worst": float(worst.mean()) if len(worst) else None, "test_worst_ci": [lo, hi],
                   "n_seeds": b.get("n_seeds")})
    pts = [r for r in board if r.get("worst") is not None]
    test_front = [pts[i]["order"] for i in front([(r["mean"], r["worst"]) for r in pts], ["maximize", "maximize"])]
    for r in on:
        r["on_test_front"] = r["order"] in test_front
    f = byo.get(F)
    return {"objectives": [{"name": n, "direction": OBJECTIVES.get(n, ("maximize",))[0]} for n in objectives],
            "front": on, "test_front": test_front,
            "F": {"mean": f["mean"], "worst": f["worst"]} if f else None}


# ------------------------------------------------------------------ plots
def _fig_png(fig, unit: str | None = None) -> bytes:
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    if unit == "task":  # the labels were written for language columns
        for t in fig.findobj(Text):
            t.set_text(per_unit(t.get_text(), unit))

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def plots(res: dict, metric: str) -> dict[str, bytes]:
    """The report's PNGs by name (the sections name the one they show); a plot without data is left out."""
    import matplotlib

    matplotlib.use("Agg")
    drawers = {"leaderboard": _leaderboard_png, "heatmap": _heatmap_png, "if_vs_f": _if_vs_f_png,
               "position": _position_png, "probe_curves": _probe_curves_png, "robustness": _robustness_png}
    out = {name: png for name, draw in drawers.items() if (png := draw(res, metric)) is not None}
    if res.get("pareto"):
        out["pareto"] = _pareto_png(res, metric)
    if "per_language" in res["by_language"]:
        out["by_language"] = _languages_png(res, metric)
    if (res.get("training_cost") or {}).get("available"):
        out["training_cost"] = _fig_png(training_cost.plot(res["training_cost"], metric, show), res.get("unit"))
    return out


LEADERBOARD_TOP = 25  # orders the leaderboard plot shows (and F wherever it ranks)


def leaderboard_rows(board: list[dict], top: int = LEADERBOARD_TOP) -> list[dict]:
    """The leaderboard plot's rows: the best ``top`` orders, and F below them wherever it ranks."""
    return board[:top] + [r for r in board[top:] if r["order"] == F]


def _leaderboard_png(res: dict, metric: str) -> bytes:
    """Each order's mean with its t interval over seeds (the best 25, and F, in orange, wherever it ranks)."""
    import matplotlib.pyplot as plt
    import numpy as np

    board = leaderboard_rows(res["leaderboard"])
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(board) + 1.2))
    y = np.arange(len(board))[::-1]
    means = [r["mean"] for r in board]
    err = [[r["mean"] - (r["ci_low"] if r["ci_low"] is not None else r["mean"]) for r in board],
           [(r["ci_high"] if r["ci_high"] is not None else r["mean"]) - r["mean"] for r in board]]
    colors = ["#d95f02" if r["order"] == F else "#1b9e77" for r in board]
    ax.barh(y, means, xerr=err, color=colors, alpha=0.85, capsize=3)
    rank = lambda r: "" if r["rank"] <= LEADERBOARD_TOP else f"#{r['rank']} "  # noqa: E731 (F below them: its rank)
    ax.set_yticks(y, [f"{rank(r)}{show(r['order'])} (n={r['n_seeds']})" for r in board], fontsize=8)
    lo = min(r["ci_low"] if r["ci_low"] is not None else r["mean"] for r in board)
    ax.set_xlim(max(0.0, lo - 0.05), None)
    ax.set_xlabel(f"test {metric}, mean over languages ({int(res['confidence'] * 100)}% t interval over seeds)")
    ax.set_title("Orders ranked (F in orange)")
    return _fig_png(fig, res.get("unit"))


def _heatmap_png(res: dict, metric: str) -> bytes:
    """Orders x languages, each cell its mean over seeds."""
    import matplotlib.pyplot as plt
    import numpy as np

    hm = res["heatmap"]
    vals = np.array([[np.nan if v is None else v for v in row] for row in hm["values"]], float)
    fig, ax = plt.subplots(figsize=(1.1 * len(hm["languages"]) + 3, 0.3 * len(hm["orders"]) + 1.5))
    im = ax.imshow(vals, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(hm["languages"])), hm["languages"])
    ax.set_yticks(range(len(hm["orders"])), [show(o) for o in hm["orders"]], fontsize=8)
    ax.set_xlabel("language")
    lo_v, hi_v = np.nanmin(vals), np.nanmax(vals)
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            if np.isfinite(vals[i, j]):  # dark text on the bright end of viridis
                bright = hi_v > lo_v and (vals[i, j] - lo_v) / (hi_v - lo_v) > 0.6
                ax.text(j, i, f"{vals[i, j]:.3f}", ha="center", va="center", fontsize=6, color="k" if bright else "w")
    fig.colorbar(im, ax=ax, label=f"test {metric}")
    ax.set_title("Orders x languages (mean over seeds)")
    return _fig_png(fig, res.get("unit"))


def _if_vs_f_png(res: dict, metric: str) -> bytes | None:
    """F, the best IF order and the mean IF order per language (None where IF vs F is not available)."""
    import matplotlib.pyplot as plt
    import numpy as np

    iv = res["if_vs_f"]
    if not iv.get("available"):
        return None
    langs = [r["language"] for r in iv["per_language"]]
    x = np.arange(len(langs))
    fig, ax = plt.subplots(figsize=(1.2 * len(langs) + 3, 3.5))
    for k, (col, lab, c) in enumerate((("F", "F", "#d95f02"), ("best_IF", f"best IF ({show(iv['best_order'])})", "#1b9e77"),
                                       ("mean_IF", f"mean of {iv['n_if_orders']} IF orders", "#7570b3"))):
        ax.bar(x + (k - 1) * 0.27, [np.nan if r[col] is None else r[col] for r in iv["per_language"]], width=0.27,
               label=lab, color=c)  # (a language the best order was not scored in: no bar)
    ax.set_xticks(x, langs)
    ax.set_xlabel("language")
    lo = min(min(v for v in (r["F"], r["mean_IF"], r["best_IF"], 1.0) if v is not None) for r in iv["per_language"])
    ax.set_ylim(max(0.0, lo - 0.05), None)
    ax.set_ylabel(f"test {metric}")
    ax.legend(fontsize=8)
    ax.set_title("IF vs F per language")
    return _fig_png(fig, res.get("unit"))


def _position_png(res: dict, metric: str) -> bytes | None:
    """The score when task T stands at position p, with its interval over orders (None: no cells)."""
    import matplotlib.pyplot as plt

    cells = res["position"]["cells"]
    if not cells:
        return None
    tasks = sorted({c["task"] for c in cells})
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for k, t in enumerate(tasks):
        cs = [c for c in cells if c["task"] == t]
        xs = [c["position"] + (k - len(tasks) / 2) * 0.06 for c in cs]
        ys = [c["mean"] for c in cs]
        e = [[c["mean"] - (c["ci_low"] if c["ci_low"] is not None else c["mean"]) for c in cs],
             [(c["ci_high"] if c["ci_high"] is not None else c["mean"]) - c["mean"] for c in cs]]
        ax.errorbar(xs, ys, yerr=e, marker="o", capsize=3, label=t)
    ms = [c["mean"] for c in cells]  # wide intervals (2 orders) are cut at the window, not the means
    ax.set_ylim(min(ms) - 0.1, max(ms) + 0.1)
    ax.set_xticks(sorted({c["position"] for c in cells}))
    ax.set_xlabel("position in the order")
    ax.set_ylabel(f"test {metric} (orders' means)")
    ax.legend(fontsize=8)
    ax.set_title("Score when task T stands at position p (95% t interval over orders)")
    return _fig_png(fig, res.get("unit"))


def _probe_curves_png(res: dict, metric: str) -> bytes | None:
    """The probe after each stage for the top orders, stopped trials dashed (None: no probes)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    stopped = [t for t in res["trials"]["stopped"] if t.get("probe")]
    if not (res["probe_curves"] or stopped):
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for c in res["probe_curves"]:
        xs = [p["stage"] for p in c["points"]]
        ax.plot(xs, [p["probe"] for p in c["points"]], marker="o", label=show(c["order"]))
    for i, t in enumerate(stopped):
        ax.plot([p["stage"] for p in t["probe"]], [p["probe"] for p in t["probe"]], ls="--", marker="x", color="grey",
                alpha=0.7, label="stopped by ASHA" if i == 0 else None)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("after intermediate stage")
    ax.set_ylabel(f"probe dev {res.get('probe_metric') or metric} (mean over seeds)")
    ax.legend(fontsize=7)
    ax.set_title("Probe curves per stage, top orders")
    return _fig_png(fig, res.get("unit"))


def _robustness_png(res: dict, metric: str) -> bytes:
    """Each order's mean against its worst language."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    rb = res["leaderboard"]
    ax.scatter([r["mean"] for r in rb], [r["worst"] for r in rb], c=["#d95f02" if r["order"] == F else "#1b9e77" for r in rb])
    # the 3 best orders and F named in a column at the top left, a line to each point: mean and worst rise
    # together, so that corner is empty, and labels next to their points overlapped or ran off the edge
    named = rb[:3] + [r for r in rb[3:] if r["order"] == F]
    named.sort(key=lambda r: -r["worst"])  # (top to bottom as their points: the lines to them do not cross)
    for k, r in enumerate(named):
        ax.annotate(show(r["order"]), (r["mean"], r["worst"]), xytext=(0.03, 0.94 - 0.07 * k), textcoords="axes fraction",
                    ha="left", va="center", fontsize=7, arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "grey"})
    ax.set_xlabel(f"mean {metric} over languages")
    ax.set_ylabel(f"worst-language {metric}")
    ax.set_title("Robustness: mean vs worst language (F in orange)")
    return _fig_png(fig, res.get("unit"))


def _languages_png(res: dict, metric: str, top: int = 20) -> bytes:
    """The top IF orders x languages: each cell the order's rank in that language (among every
    completed IF order) and its gap to that language's best; language difficulty drops out, so a
    ranking that changes between languages shows as a column that differs."""
    import matplotlib.pyplot as plt
    import numpy as np
    from scipy import stats

    ifs = [r for r in res["leaderboard"] if r["order"] != F]
    langs = res["languages"]
    allv = np.array([[r["per_language"].get(lg, np.nan) for lg in langs] for r in ifs], float)
    gap = allv - np.nanmax(allv, axis=0)
    rank = stats.rankdata(-np.nan_to_num(allv, nan=-np.inf), axis=0, method="min")  # ties share the better rank
    n = min(top, len(ifs))
    fig, ax = plt.subplots(figsize=(1.0 * len(langs) + 3, 0.3 * n + 1.6))
    im = ax.imshow(gap[:n], aspect="auto", cmap="magma", vmax=0.0)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(n), [show(r["order"]) for r in ifs[:n]], fontsize=8)
    dark = 0.5 * np.nanmin(gap[:n])  # the lower half of the colour scale, which is the shown rows' range
    for i in range(n):
        for j in range(len(langs)):
            if np.isfinite(gap[i, j]):
                ax.text(j, i, str(rank[i, j]), ha="center", va="center", fontsize=7,
                        color="k" if gap[i, j] > dark else "w")
    fig.colorbar(im, ax=ax, label=f"test {metric} minus the language's best IF order")
    ax.set_title(f"Rank of each order in each language (top {n} of {len(ifs)} IF orders)")
    return _fig_png(fig, res.get("unit"))


def _pareto_png(res: dict, metric: str) -> bytes:
    """Test mean against test worst language for every order; the search's Pareto front highlighted
    (intervals over seeds, joined in order of the mean), F marked."""
    import matplotlib.pyplot as plt

    pa, board = res["pareto"], res["leaderboard"]
    fig, ax = plt.subplots(figsize=(7, 5))
    front = {r["order"] for r in pa["front"]}
    rest = [r for r in board if r["order"] not in front and r["order"] != F and r.get("worst") is not None]
    ax.scatter([r["mean"] for r in rest], [r["worst"] for r in rest], color="#bbbbbb", s=22, label="other orders")
    pts = sorted((r for r in pa["front"] if r["test_mean"] is not None and r["test_worst"] is not None),
                 key=lambda r: r["test_mean"])
    if pts:
        xs, ys = [r["test_mean"] for r in pts], [r["test_worst"] for r in pts]
        ci = lambda r, k, v: [[v - (r[k][0] if r[k][0] is not None else v)], [(r[k][1] if r[k][1] is not None else v) - v]]  # noqa: E731
        for r, x, y in zip(pts, xs, ys):
            ax.errorbar([x], [y], xerr=ci(r, "test_mean_ci", x), yerr=ci(r, "test_worst_ci", y), color="#1b9e77",
                        alpha=0.5, capsize=2, lw=1)
            ax.annotate(show(r["order"]), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7)
        ax.plot(xs, ys, "-o", color="#1b9e77", ms=7, lw=1.5, label="Pareto front (chosen on dev)")
    if pa.get("F"):
        ax.scatter([pa["F"]["mean"]], [pa["F"]["worst"]], marker="*", s=220, color="#d95f02", zorder=5,
                   label="F (fine-tune only)")
        ax.annotate("F", (pa["F"]["mean"], pa["F"]["worst"]), xytext=(6, -10), textcoords="offset points",
                    fontsize=9, color="#d95f02")
    ax.set_xlabel(f"test {metric}, mean over languages")
    ax.set_ylabel(f"test {metric}, worst language")
    names = ", ".join(o["name"] for o in pa["objectives"])
    ax.set_title(f"Accuracy and robustness: the Pareto front ({names})")
    ax.legend(fontsize=8, loc="best")
    return _fig_png(fig, res.get("unit"))


# ------------------------------------------------------------------ rendering
def _x(v, nd: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}g}" if abs(v) < 1e-3 and v != 0 else f"{v:.{nd}f}"
    return str(v)


def _p(r: dict, key: str = "p_holm") -> str:
    if "underpowered" in r:
        return f"underpowered: {r['underpowered']}"
    return f"{r[key]:.3g}" + (" *" if r.get("significant") else "")


def sections(res: dict, exp_name: str, metric: str) -> list[tuple[str, str, list[list[str]], str | None]]:
    """(title, text, table rows (first = header), plot name) — one list both renderers use."""
    hm = res["heatmap"]
    out = [_answer_section(res, exp_name, metric), _leaderboard_section(res),
           best_order_section(res["best_order"], where=res.get("experiment")), _if_vs_f_section(res, exp_name)]
    if res.get("pareto"):
        out.append(pareto_section(res))
    out += [language_section(res["by_language"]),
            ("Orders × languages", f"{hm['shown']} of {hm['total']} orders (the best, and F).", [], "heatmap"),
            _order_effect_section(res), composition_section(res), _position_section(res), _precedence_section(res)]
    if res.get("heuristics"):
        out.append(_heuristics_section(res["heuristics"], latex.split_words(res, "means")))
    out.append(_stopped_section(res["trials"]))
    if res.get("training_cost"):
        out.append(training_cost.section(res["training_cost"], show, _x, where=None if res.get("confirmation")
                                         else res.get("experiment")))
    if res.get("compute"):
        out.append(("Compute", compute.text(res["compute"]) + " For a paper's compute statement; `report.json` holds "
                    "every figure.", [], None))
    if res.get("notes"):
        out.append(("Notes", "\n\n".join(res["notes"]), [], None))
    return out


def _answer_section(res: dict, exp_name: str, metric: str) -> tuple:
    """The answer ("Does order matter?"): a paragraph per finding (the console's lines), not one block to take apart."""
    h, tr = res["headline"], res["trials"]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(tr["counts"].items()))
    plan = ("" if h.get("order_matters") else f" How many seeds a search needs to find an order effect: `itt power "
            f"{res.get('experiment', exp_name)}` (from this search's seed noise; it needs 2+ seeds on 2+ IF orders).")
    more = [composition_line(res["variance_parts"])] if "share" in res["variance_parts"] else []
    if "per_language" in res["by_language"]:
        more.append(language_headline(res["by_language"]))
    more.append(ranking.text(res["best_order"], show))
    return ("Does order matter?", "\n\n".join([*answer_notes(res), h["text"], *more, f"Trials: {counts}. Metric: test {metric} "
            f"(zero-shot), per seed; α = {res['alpha']}; tests need {res['min_seeds']}+ seeds per order.{plan}"]),
            [], None)


def _leaderboard_section(res: dict) -> tuple:
    head = ["rank", "order", "seeds", "mean ± std", f"{int(res['confidence'] * 100)}% CI", "P(best)", "shrunk",
            *res["languages"], "worst", "std (langs)", "transfer gap", "perturbation"]
    rows = [head] + [[str(r["rank"]), show(r["order"]), str(r["n_seeds"]), f"{_x(r['mean'])} ± {_x(r['std'])}",
                      f"[{_x(r['ci_low'])}, {_x(r['ci_high'])}]", ranking.prob_text(r.get("p_best")),
                      _x(r.get("shrunk")),
                      *[_x(r["per_language"].get(lg)) for lg in res["languages"]],
                      _x(r["worst"]), _x(r["lang_std"]), _x(r["transfer_gap"]), _x(r["perturbation"])]
                     for r in res["leaderboard"]]
    return ("Leaderboard of orders", "Completed trials only (ASHA-stopped trials are listed below and kept out of "
            "every final-score statistic). Robustness figures are means over seeds. P(best) and shrunk: the "
            "next section.", rows, "leaderboard")


def _if_vs_f_section(res: dict, exp_name: str) -> tuple:
    iv = res["if_vs_f"]
    if not iv.get("available"):
        return ("IF vs F", f"Not available: {iv['reason']}.", [], None)
    rows = [["language", "F", "best IF", "mean IF", "Δ best", "Δ mean", "p (Welch, the pick not accounted for)",
             "p (best vs F, pick accounted for, Holm)"]]
    for r in iv["per_language"]:
        rows.append([r["language"], _x(r["F"]), _x(r["best_IF"]), _x(r["mean_IF"]), _x(r["delta_best"]),
                     _x(r["delta_mean"]), _x(r.get("p_best_vs_F")),
                     _x(r.get("p_best_vs_F_holm")) + (" *" if r.get("significant") else "")])
    t = iv["test"]
    return ("IF vs F (the comparison of arXiv 2210.01091)",
            f"F against the best IF order ({show(iv['best_order'])}) and the mean over {iv['n_if_orders']} IF "
            f"orders, per language. " + (f"Test: {t['method']}{if_vs_f_floor(t, res['alpha'])}." if "method" in t
                                         else f"No test: underpowered: {t['underpowered']}.")
            + ("" if res.get("confirmation") else f" Figures free of that selection: `itt confirm "
               f"{res.get('experiment', exp_name)}` trains the best orders and F again on fresh seeds."),
            rows, "if_vs_f")


def if_vs_f_floor(t: dict, alpha: float) -> str:
    """Beside the IF vs F verdict: where no data could be significant (F and one IF order on few seeds, Holm over
    many languages), say so; "significant in 0 of N languages" alone reads as evidence that IF does not help."""
    return S.floor_text(t, alpha, f"after Holm over {t.get('languages')} languages")


def _order_effect_section(res: dict) -> tuple:
    oe = res["order_effect"]
    rows = [["figure", "orders (3+ seeds)", "H", "p", "p (Holm, secondary)", "epsilon²", "share of variance between orders"]]
    for t in oe["tests"]:
        if "underpowered" in t:
            rows.append([t["label"], str(t["orders_with_enough_seeds"]), "–", "–", f"underpowered: {t['underpowered']}",
                         "–", "–"])
        else:
            rows.append([t["label"] + (" (primary)" if t["figure"] == "mean" else ""), str(t["n_orders"]), f"{t['H']:.2f}",
                         f"{t['p']:.3g}", _p(t) if t["figure"] != "mean" else "– (primary: p at α)", f"{t['epsilon2']:.3f}",
                         f"{t['variance_share']:.1%}"])
    arr = oe.get("arrangement", {})
    arr_text = (f"underpowered: {arr['underpowered']}" if "underpowered" in arr else
                f"H = {arr['H']:.2f} summed over {arr['task_sets']} task set(s) ({arr['orders']} orders), df = {arr['df']}, "
                f"p = {arr['p']:.3g}" + (" *" if arr.get("significant") else "") + _floor(arr, res["alpha"])) if arr else "–"
    floors = "".join(_floor(t, res["alpha"], t["label"]) for t in oe["tests"][:1] if "p" in t)
    return ("Order effect beyond seed noise", f"{oe['method']}.{floors} * = significant at α after correction. F is left "
            f"out (that is IF vs F). Arrangement alone (the same tasks in another order; Kruskal–Wallis within "
            f"each task set, H summed over sets, labels permuted within sets): {arr_text}.", rows, "robustness")


def _position_section(res: dict) -> tuple:
    pos = res["position"]
    rows = [["task", "position", "orders", "mean", "95% CI"]] + [
        [c["task"], str(c["position"]), str(c["n_orders"]), _x(c["mean"]), f"[{_x(c['ci_low'])}, {_x(c['ci_high'])}]"]
        for c in pos["cells"]]
    tests = "; ".join(f"{t['task']}: {_p(t)}" for t in pos["tests"])
    return ("Position effects", f"Does it matter where a task stands? {pos['method']}: {tests}. {_dependence(pos)}", rows,
            "position")


def _dependence(block: dict) -> str:
    """How the position and precedence tests treat orders that share a trained prefix."""
    if block.get("caveat"):
        return f"{block['caveat']}."
    pc = block.get("prefix_covariance")
    if not pc or not pc["correlation"]:
        return ""
    stages = lambda k: "none" if k == 0 else f"{k} stage{'s' * (k > 1)}"  # noqa: E731
    return ("Correlation of two different orders' scores on one seed, by the stages they share from the start "
            "(estimated from the seeds): " + ", ".join(f"{stages(k)} {r:.2f}" for k, r in zip(pc["shared_stages"], pc["correlation"]))
            + ".")


def _precedence_section(res: dict) -> tuple:
    pr = res["precedence"]
    rows = [["A", "B", "orders A first", "orders B first", "mean A first", "mean B first", "diff", "diff (adjusted)",
             "p (Holm)"]] + [
        [r["a"], r["b"], str(r["n_a_first"]), str(r["n_b_first"]), _x(r["mean_a_first"]), _x(r["mean_b_first"]),
         _x(r["diff"]), _x(r.get("diff_adjusted")), _p(r)] for r in pr["pairs"]]
    return ("Precedence effects (A before B vs B before A)", f"Among orders holding both. {pr['method']}. "
            f"diff (adjusted): A first minus B first, the other tasks the orders hold accounted for. {_dependence(pr)}",
            rows, None)


def _heuristics_section(hs: list[dict], means: str = "test means") -> tuple:
    rows = [["heuristic", "order", "evaluated", "mean", "95% CI", "rank", "Δ vs searched best"]]
    text = []
    for h in hs:
        if "error" in h:
            text.append(f"{h['kind']}: not computed ({h['error']}); compute it with `{h['command']}`.")
            continue
        text.append(f"{h['kind']}: {h['source']}; values " + ", ".join(f"{t} {v:.3f}" for t, v in h["values"].items())
                    + "." + (f" Orders not run in this search: add them with `{h['command']}`." if h["command"] else ""))
        if "agreement" in h:
            text.append(agreement_text(h["agreement"], f"this search completed ({means})"))
        for o in h["orders"]:
            rows.append([h["kind"], o["order"], _x(o["evaluated"]), _x(o["mean"]),
                         f"[{_x(o['ci_low'])}, {_x(o['ci_high'])}]" if o["evaluated"] else "not run", _x(o["rank"]),
                         _x(o["delta_vs_best"])])
    best = next((h for h in hs if "best" in h), None)
    return ("Heuristic orders vs the searched best",
            (f"Searched best: {show(best['best'])} ({_x(best['best_mean'])}). " if best else "") + " ".join(text),
            rows if len(rows) > 1 else [], None)


def _stopped_section(tr: dict) -> tuple:
    rows = [["trial", "order", "status", "stages completed", "probe per stage"]] + [
        [t["trial_id"], show(t["order"]), "stopped by ASHA", str(t["stages_completed"]),
         ", ".join(f"{p['probe']:.4f}" for p in t.get("probe") or []) or "–"] for t in tr["stopped"]] + [
        [t["trial_id"], show(t["order"]), "errored", "–", "–"] for t in tr["errored"]]
    text = ("Probe curves (dev probe after each intermediate stage, mean over seeds) of the best orders; "
            "stopped trials dashed. ")
    text += (f"{len(tr['stopped'])} trial(s) stopped by ASHA and {len(tr['errored'])} errored: shown here, never in "
             "the statistics above." if len(rows) > 1 else "No trial was stopped or errored.")
    return ("Probe curves; stopped and errored trials", text, rows if len(rows) > 1 else [], "probe_curves")


def searcher_pick(exp: Experiment) -> dict | None:
    """The searcher's own recommendation (summary.json) where its model gives one with an interval
    (order_bo's GP: it shares evidence between orders with tasks in common); else None."""
    summary = exp.summary
    rec = summary.get("recommended") or {}
    if rec.get("lo") is None or rec.get("order") is None:
        return None
    name = {"auto": "order_bo"}.get(summary.get("searcher"), summary.get("searcher"))
    return {"searcher": name, **{k: rec[k] for k in ("order", "mean", "lo", "hi")},
            **({"unexplored": rec["unexplored"]} if rec.get("unexplored") else {}),
            **({"positions": rec["positions"]} if rec.get("positions") else {}),
            **({"stopped_itself": summary["stopped_itself"]} if summary.get("stopped_itself") else {})}


def _searcher_text(r: dict) -> str:
    sp = r.get("searcher")
    if not sp:
        return ""
    p = next((x["p_best"] for x in r["rows"] if x["order"] == sp["order"]), None)
    same = sp["order"] == r["most_likely"]
    u = sp.get("unexplored")
    left = ("" if not u or not u["orders"] else
            f" The orders the search did not finish ({u['orders']} of {u['of']}) could hold a better one: under that "
            f"model with probability {u['p_better']:.2f} (expected gain {u['expected_gain']:+.4f}; most likely "
            f"{show(u['most_likely'])}, {u['p_most_likely']:.2f}), a figure the P(best) above, which ranks only "
            "the orders run, cannot give.")
    if sp.get("positions"):
        w = sp["positions"]
        left += (f" By their evidence, its GP over each task's depth from the end weighs {w['from_end']:.2f} and the "
                 f"one that also sees each task's position from the start {w['from_start']:.2f} "
                 "(search.order_bo.from_start: which of the two explains the dev scores and probes better).")
    if sp.get("stopped_itself"):
        st = sp["stopped_itself"]
        left += (f" The search stopped itself there (search.{st.get('by', 'stop')}: {stopping.describe(st['rule'])}) "
                 f"after {st['finished']} finished trials.")
    return (f" The searcher's own model ({sp['searcher']}: a GP over order features, on the dev score it optimised) "
            f"recommends {show(sp['order'])} (posterior mean {sp['mean']:.4f}, 95% [{sp['lo']:.4f}, {sp['hi']:.4f}])"
            + (": the same order." if same else f"; here its P(best) is {ranking.prob_text(p)}.") + left)


def best_order_section(r: dict, top: int = 20, where: str | None = None) -> tuple[str, str, list[list[str]], str | None]:
    """Which IF order is best, and how sure: the hierarchical model's posterior (search/ranking.py)."""
    title = "Which order is best, and how sure?"
    if "rows" not in r:
        return (title, ranking.text(r, show), [], None)
    rows = [["order", "seeds", "mean", "shrunk", "posterior sd", "P(best)", "in the credible set"]] + [
        [show(x["order"]), str(x["n_seeds"]), _x(x["observed"]), _x(x["shrunk"]), _x(x["sd"]),
         ranking.prob_text(x["p_best"]),
         "yes" if x["order"] in r["set"] else ""] for x in r["rows"][:top]]
    paras = [ranking.text(r, show), f"{_model_text(r)} `itt confirm` checks the pick on fresh seeds.",
             f"{_searcher_text(r)}{unfinished_text(r, where)}".strip(), f"The {min(top, len(r['rows']))} most likely orders:"]
    text = "\n\n".join(p for p in paras if p)  # (paragraphs: the answer, the model, what was not run)
    return (title, text, rows, None)


def unfinished_text(r: dict, where: str | None = None) -> str:
    """The structured model's answer to: could an order the search did not finish beat the most likely one?
    (and the confirmation that tests the two on fresh seeds: ``where`` the experiment is)"""
    u = r.get("unfinished")
    if u and "underpowered" in u:
        return f" Whether an order the search did not finish beats {show(r['most_likely'])}: not estimated ({u['underpowered']})."
    if not u or not u["orders"]:
        return ""
    return (f" Could an order the search did not finish beat {show(r['most_likely'])}? {u['orders']} of the space's "
            f"{u['of']} IF orders were not finished (never proposed, stopped or errored); under this section's model "
            f"(test scores) the best of them beats it with probability {u['p_better']:.2f} (expected gain {u['expected_gain']:+.4f}); the "
            f"likeliest to, {show(u['most_likely'])}, alone with {u['p_most_likely']:.2f}. It and the orders that could "
            f"be best on fresh seeds: `itt confirm {where or 'EXPERIMENT_DIR'} --top set --add '{u['most_likely']}'`.")


def _model_text(r: dict) -> str:
    """What the ranking model assumes, and how it was checked."""
    common = (f"P(best): the posterior probability that an order's true score is the highest of the {r['orders']} IF "
              f"orders; the credible set holds the fewest orders whose P(best) adds up to {r['level']:.0%} (here "
              f"{r['set_p']:.3f}).")
    if r.get("model") == "structured":
        where = ("where each sits (depth from the end, and position from the start: the orders differ in length)"
                 if "start" in (r.get("shares") or {}) else "where each sits (depth from the end)")
        return ("Model: each order's true score is a common mean plus random effects of which tasks it trains, "
                f"{where} and which precedes which, plus its own; seeds scatter around it with "
                f"noise sigma ({r['sigma']:.4g}). Orders with tasks in common thus share evidence, and an order's "
                "posterior (shrunk) leans on theirs. " + ranking.shares_text(r) + " The variances are integrated "
                "out (search/ranking.py). " + common + " On simulated searches over 5 tasks (bench/ranking_calibration.py) "
                "its most likely order was truly better than the exchangeable model's where orders shared structure "
                "(regret 14-50% lower; about as good with independent true scores), with smaller sets that held the "
                "true best 94-100% of the time.")
    return (f"Model: each order's true score is drawn around a common mean with spread tau, each seed's score around "
            f"its order's with noise sigma (posterior medians {r['tau']:.4g} and {r['sigma']:.4g}); an order's "
            f"posterior shrinks its mean toward the grand mean ({r['mu']:.4f}), more so with fewer seeds (shrunk). "
            + common + " The normal hierarchical model of Gelman et al., Bayesian Data Analysis, 5.4, with a "
            "half-Cauchy prior on tau (search/ranking.py); calibrated within about 0.05 on simulated searches "
            "of 6-30 orders (bench/ranking_calibration.py), less so with a small spread between orders; with 2-3 "
            "orders it understates a clear leader (where it said 0.6-1, 0.77 on average, the order was the best "
            "0.85-0.90 of the time).")


def _floor(t: dict, alpha: float, label: str = "") -> str:
    """The order-effect section's floor clause (stats.floor_text), pointing to `itt power`."""
    return S.floor_text(t, alpha, label, then=": this test cannot detect an effect here; `itt power` plans the seeds")


def composition_line(vp: dict) -> str:
    """One line: how much of the spread over IF orders is task choice, arrangement, seeds."""
    if "underpowered" in vp:
        return f"Task choice vs arrangement: not computed: {vp['underpowered']}."
    sh = vp["share"]
    return (f"What the score varies with (share of the sum of squares over {vp['n_orders']} IF orders, per seed): "
            f"task set {sh['sets']:.1%}, arrangement within a set {sh['arrangement']:.1%} "
            f"({vp['sets_with_several_orders']} set(s) with several orders), seeds {sh['seeds']:.1%}"
            + ("; one seed per order, so seed noise is counted in the other two shares." if vp.get("one_seed") else "."))


def composition_section(res: dict) -> tuple[str, str, list[list[str]], str | None]:
    """Task choice, arrangement or length: the nested decomposition and the scores by length."""
    ln = res["lengths"]
    rows = [["length", "orders", "mean of order means", "95% CI", "best order of this length", "its mean"]] + [
        [str(c["length"]), str(c["n_orders"]), _x(c["mean"]), f"[{_x(c['ci_low'])}, {_x(c['ci_high'])}]",
         show(c["best_order"]), _x(c["best"])] for c in ln["cells"]]
    t = ln["test"]
    stat = (f"F({t['df'][0]}, {t['df'][1]:.1f}{'' if t.get('df_by', 'Satterthwaite') == 'Satterthwaite' else ', residual df'})"
            f" = {t['F']:.2f}" if "F" in t else f"H = {t['H']:.2f}" if "H" in t else "")
    test = (f"underpowered: {t['underpowered']}" if "underpowered" in t else
            f"{t['method']}: {t['lengths']} lengths, {stat}, p = {t['p']:.3g}"
            + (" *" if t["significant"] else "") + f"; rho {_x(t['rho'], 2)}")
    text = (f"{composition_line(res['variance_parts'])} The set of tasks fixes the order's length, so its share "
            f"includes any effect of length; the arrangement share is what order alone adds (tested in the "
            f"section above). Nested sum-of-squares decomposition of the per-seed mean over languages (exact with "
            f"unequal seeds; descriptive: seed noise also lifts the between-terms). Length (F, length 0, shown but "
            f"not tested): {test}." + (f" {ln['caveat']}." if ln.get("caveat") else ""))
    return ("Task choice, arrangement or length?", text, rows, None)


def language_headline(la: dict) -> str:
    """One line: does the best order depend on the language (the interaction test), and how far the
    overall best falls below each language's own best."""
    if "underpowered" in la:
        return f"Whether order effects differ between languages is not tested: {la['underpowered']}."
    it = la["interaction"]
    if "p" in it:
        verdict = "Order effects differ between languages" if it["significant"] else \
            "No evidence that order effects differ between languages"
        text = (f"{verdict}: order × language interaction F({it['df1']}, {it['df2']}) = {it['F']:.2f}, "
                f"Greenhouse–Geisser ε = {it['epsilon']:.2f}, p = {it['p']:.3g}, partial η² = {it['partial_eta2']:.2f} "
                f"({it['orders']} IF orders, {it['models']} trained models (orders × seeds), {it['languages']} languages).")
    else:
        text = f"Whether order effects differ between languages is not tested: {it['underpowered']}."
    rows = la["per_language"]
    elsewhere = [r for r in rows if r["best_order"] != la["overall_best"] and r["gap"] is not None]
    text += f" {show(la['overall_best'])} is the best IF order in {la['best_in']} of {len(rows)} languages"
    if elsewhere:
        w = max(elsewhere, key=lambda r: r["gap"])
        sig = [r for r in elsewhere if r.get("gap_significant")]
        tested = "" if "p_gap_holm" not in w else (
            f"; significantly better than {show(la['overall_best'])} in {len(sig)} of them" if sig else
            "; not significantly better (Welch, Holm)" if len(elsewhere) == 1 else
            "; none of them significantly better (Welch, Holm)")
        text += (f"; elsewhere it falls at most {w['gap']:.4f} below the language's best ({w['language']}: "
                 f"{show(w['best_order'])} {w['best']:.4f}){tested}")
    return text + "."


def _gap_p(r: dict) -> str:
    if "p_gap_holm" not in r:
        return "–"
    return f"{r['p_gap_holm']:.3g}" + (" *" if r["gap_significant"] else "")


def language_section(la: dict) -> tuple[str, str, list[list[str]], str | None]:
    """Per language: its best IF order, where the overall best ranks there and what it loses."""
    title = "Does the best order depend on the language?"
    if "underpowered" in la:
        return (title, language_headline(la), [], None)
    rows = [["language", "best IF order there", "its score", "its P(best)", f"{show(la['overall_best'])} (overall best)",
             "its rank", "its P(best)", "below the language's best", "p (Welch, Holm)", "rho with the other languages"]]
    rows += [[r["language"], show(r["best_order"]), _x(r["best"]), ranking.prob_text(r.get("p_best_there")),
              _x(r["overall_best"]), _x(r["overall_best_rank"]), ranking.prob_text(r.get("overall_p_best_there")),
              _x(r["gap"]), _gap_p(r), _x(r["rho_with_others"], 2)] for r in la["per_language"]]
    w = (f" Kendall's W over languages = {la['W']:.2f} (average Spearman between two languages' rankings "
         f"{la['mean_rho']:.2f}; descriptive, since a lucky seed lifts every language of its model)."
         if la.get("W") is not None else "")
    text = (f"{language_headline(la)} Ranks and gaps among the {la['n_orders']} completed IF orders (means over "
            f"seeds); P(best): how sure it is that the order is the best in that language (the hierarchical model of "
            f"*Which order is best, and how sure?* on that language's per-seed scores); p: where another order is best "
            f"in a language, it against the overall best on that language's "
            f"per-seed scores (Welch, Holm over those languages; optimistic, as the language's best was picked on the "
            f"same scores); rho: Spearman between this language's ranking of the orders and the mean of the other "
            f"languages' scores (a low rho marks a language that ranks orders its own way).{w} The test: a split-plot "
            f"ANOVA (orders between seeds, languages within each seed's model), the interaction against the "
            f"language × seed residual, its p-value Greenhouse–Geisser corrected; orders with {la['min_seeds']}+ "
            f"seeds in every language. A significant interaction says the orders' effects differ in size between "
            f"languages (often larger where transfer is easy); whether the ranking itself changes is what the best "
            f"order per language and the gaps show.")
    return (title, text, rows, "by_language")


def pareto_section(res: dict) -> tuple[str, str, list[list[str]], str | None]:
    pa = res["pareto"]
    names = [o["name"] for o in pa["objectives"]]
    arrows = ", ".join(f"{o['name']} {'↑' if o['direction'] == 'maximize' else '↓'}" for o in pa["objectives"])
    ci = f"{int(res['confidence'] * 100)}% CI"
    rows = [["order", *[f"dev {n}" for n in names], "test mean", ci, "test worst", ci, "seeds", "on the test front"]]
    for r in pa["front"]:
        rows.append([show(r["order"]), *[_x(r["dev"].get(n)) for n in names], _x(r["test_mean"]),
                     f"[{_x(r['test_mean_ci'][0])}, {_x(r['test_mean_ci'][1])}]", _x(r["test_worst"]),
                     f"[{_x(r['test_worst_ci'][0])}, {_x(r['test_worst_ci'][1])}]", _x(r["n_seeds"]),
                     _x(r["on_test_front"])])
    n_test = sum(r["on_test_front"] for r in pa["front"])
    f = pa.get("F")
    ftext = (f"F (fine-tune only, the orange star): mean {_x(f['mean'])}, worst {_x(f['worst'])}." if f
             else "F was not run (add `seed_points: {baseline: true}`).")
    text = (f"A multi-objective search ({arrows}, on dev): the {len(pa['front'])} order(s) on its Pareto front, "
            f"those no other completed trial beats on every objective. The plot shows every order at its test mean "
            f"and worst language (the front green, joined, with {ci.split()[0]} t intervals over seeds); {n_test} of "
            f"the {len(pa['front'])} are also non-dominated on test (mean, worst). {ftext}")
    return ("Accuracy and robustness: the Pareto front", text, rows, "pareto")


def render_md(secs, title: str, pngs: dict[str, bytes]) -> str:
    lines = [f"# {title}", ""]
    for name, text, rows, plot in secs:
        lines += [f"## {name}", "", text, ""]
        if plot and plot in pngs:
            lines += [f"![{name}]({plot}.png)", ""]
        if len(rows) > 1:
            lines.append("| " + " | ".join(rows[0]) + " |")
            lines.append("|" + "---|" * len(rows[0]))
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows[1:]]
            lines.append("")
    return "\n".join(lines)


# Plots and tables keep their size in a box that scrolls sideways: an XTREME target of 40 languages (PAN-X) makes
# figures 3000-4500 px wide, whose text shrunk to the page width was 2 px high, and tables that widened the page.
_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 5px;text-align:right}
th{background:#f0f0f0}td:nth-child(2),td:first-child,th:nth-child(2),th:first-child{text-align:left}td{white-space:nowrap}td:nth-child(2){white-space:normal}img{display:block;margin:.5em 0}
.wide{overflow-x:auto;max-width:100%}
h2{border-bottom:2px solid #1b9e77;padding-bottom:3px}code{background:#f3f3f3;padding:0 3px;font-size:90%}"""


def _code(escaped: str) -> str:
    """`commands` in a section's text as <code>, and *a title* it names as <em> (the markdown shows them as
    such; a significance star, "0.001 *;", stays a star)."""
    escaped = re.sub(r"(?<=[\s(])\*([A-Za-z][^*]*?[^\s*])\*(?=[\s.,;:)]|$)", r"<em>\1</em>", escaped)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def render_html(secs, title: str, pngs: dict[str, bytes]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_CSS}</style></head>"
             f"<body><h1>{e(title)}</h1>"]
    for name, text, rows, plot in secs:
        parts.append(f"<h2>{e(name)}</h2>" + "".join(f"<p>{_code(e(para))}</p>" for para in text.split("\n\n")))
        if plot and plot in pngs:
            b64 = base64.b64encode(pngs[plot]).decode()
            parts.append(f"<div class='wide'><img alt='{e(plot)}' src='data:image/png;base64,{b64}'></div>")
        if len(rows) > 1:
            parts.append("<div class='wide'><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in rows[0]) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows[1:]]
            parts.append("</table></div>")
    parts.append("</body></html>")
    return "".join(parts)


def _next_step(res: dict, where: str) -> None:
    """Where too few seeds left the order test out (a one-seed search), the headline says what tests it."""
    main = res["order_effect"]["tests"][0] if res["order_effect"].get("tests") else {}
    if res["headline"].get("order_matters") is None and 0 < main.get("max_seeds", 0) < res["min_seeds"]:
        res["headline"]["text"] += (f" To test the best orders: `itt confirm {where} --top 5` trains them and F again "
                                    f"on 5 fresh seeds each (its report runs this test on them).")


def _tuning(res: dict, exp: Experiment) -> None:
    """Hyperparameters searched beside the orders: each order counts at its best dev setting
    (``load_experiment``), so one tried at more settings had more chances to score high. report.json keeps
    the settings per order; where they differ, the headline says so and what compares orders at one."""
    settings: dict[str, set] = {}
    for r in exp.rows:
        if r.get("status") == S.Status.COMPLETED:
            settings.setdefault(r.get("order") or "", set()).add(config_of(r)[1])
    if not any(hp for s in settings.values() for hp in s):
        return  # no searched hyperparameters
    n = {o: len(s) for o, s in settings.items()}
    res["tuning"] = {"settings": n}
    if len(set(n.values())) > 1:
        most = max(n, key=n.get)
        res["headline"]["text"] += (
            f" Hyperparameters were searched with the orders, and each order counts at its best dev setting: "
            f"{min(n.values())} to {n[most]} settings per order ({show(most)}: {n[most]}), so an order tried more "
            f"often had more chances; `itt confirm {exp.st.display} --top 5 --hparams first` compares the best "
            f"orders at one setting, on fresh seeds.")


def _json_safe(o):
    if isinstance(o, dict):
        return {str(k): _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if hasattr(o, "item"):  # numpy scalars
        return _json_safe(o.item())
    return o


def search_state(exp: Experiment) -> dict:
    """Is the search this report reads still running? ``running`` (its driver lives: the report covers the
    trials completed so far; ``maybe running`` where the driver is another host's), ``interrupted``
    (trials were running when its driver stopped: ``itt resume`` continues it) or ``ended``."""
    from search import driver

    d = driver.live(exp.st)
    if d is not None and not (d["here"] and int(d["pid"]) == os.getpid()):  # (not the search's own report at its end)
        return {"state": "running" if d["here"] else "maybe running", "host": d.get("host"), "pid": d.get("pid")}
    running = sum(r.get("status") == S.Status.RUNNING for r in exp.rows)
    return {"state": "interrupted", "running": running} if running else {"state": "ended"}


def answer_notes(res: dict) -> list[str]:
    """What the answer says before anything else: a search still running or interrupted, orders that all
    scored the same, models left out, and orders whose trials' results.json the experiment lacks."""
    inc = res.get("incomplete_models") or []
    missing = (f"note: {len(inc)} model(s) (order x seed) lack a score in some language and are left out of every "
               f"statistic (see Notes)." if inc else None)
    lost = res.get("means_only") or []
    lost = (f"note: {len(lost)} order(s) have no results.json in the experiment ({', '.join(lost[:5])}"
            f"{', ...' if len(lost) > 5 else ''}; e.g. trials that wrote their outputs on another node's own disk): "
            f"only their results.csv means count, as one seed each (see Notes)." if lost else None)
    return [x for x in (state_line(res), res.get("alike"), missing, lost) if x]


def state_line(res: dict) -> str | None:
    """The line that says a report reads a search that has not ended (None once it has)."""
    s, counts = res["trials"].get("search") or {}, res["trials"]["counts"]
    done = counts.get(S.Status.COMPLETED, 0)
    if s.get("state") == "running":
        return (f"The search is still running (driver pid {s.get('pid')} on {s.get('host')}): this report reads the "
                f"{done} trial(s) completed so far; run `itt report {res['experiment']}` again when it ends.")
    if s.get("state") == "maybe running":
        return (f"The search may still be running: its driver (pid {s.get('pid')} on {s.get('host')}, not checked from "
                f"here) has not ended it; this report reads the {done} trial(s) completed so far.")
    if s.get("state") == "interrupted":
        return (f"The search was interrupted with {s['running']} trial(s) running: this report reads the {done} "
                f"completed; `itt resume {res['experiment']}` continues it.")
    return None


# ------------------------------------------------------------------ the command
def build(exp: Experiment, *, alpha: float = S.ALPHA, heuristics: bool = True, log=print) -> tuple[dict, dict, str, str]:
    """(report.json content, PNGs, markdown, html) — nothing written."""
    confirm = exp.st.read_text(CONFIRM_FILE)  # an `itt confirm` run: the search's picks on fresh seeds
    res = S.analyse(exp.scores, extra=exp.extra, trials=exp.trials, stages=exp.stages, alpha=alpha,
                    space=None if confirm else space_orders(exp))  # (a confirmation runs a chosen few on purpose)
    res["experiment"] = exp.st.display
    res["trials"]["search"] = search_state(exp)
    _next_step(res, exp.st.display)
    _tuning(res, exp)
    res["metric"] = exp.metric
    res["unit"] = exp.unit
    res["splits"] = exp.splits
    if exp.probe_metric:
        res["probe_metric"] = exp.probe_metric
    res["notes"] = exp.notes
    res["incomplete_models"] = exp.incomplete
    res["means_only"] = [show(o) for o in exp.means_only]
    if heuristics:
        res["heuristics"] = compare_heuristics(exp, res["leaderboard"], log=log)
    for t in res["trials"]["stopped"]:  # where ASHA stopped it: the probe figures it reported (tracking/ log)
        t["probe"] = stopped_probes(exp, t["trial_id"])
    pareto = pareto_analysis(exp, res["leaderboard"])
    if pareto is not None:
        res["pareto"] = pareto
    res["best_order"]["searcher"] = searcher_pick(exp)
    res["training_cost"] = training_cost.analyse(res["leaderboard"], exp.seconds, res["best_order"])
    seeds = len(exp.meta.get("seeds") or (exp.config or {}).get("seeds") or [0])
    res["compute"] = compute.summarize(exp.rows, compute.trial_times(exp.st), exp.config, exp.hardware, seeds,
                                       every=None if confirm else space_work(exp), per_chain=exp.finetunes_per_chain,
                                       searcher=exp.summary.get("searcher_time"))
    if confirm:
        res["confirmation"] = confirmation(json.loads(confirm), S.seed_figures(exp.scores.dropna(subset=["score"])), alpha)
    res = _json_safe(res)
    pngs = plots(res, exp.metric)
    title = f"Does order matter? — {exp.meta.get('name') or exp.st.name}"
    secs = sections(res, exp.st.name, exp.metric)
    if confirm:
        secs.insert(0, confirmation_section(res["confirmation"]))  # what this run is for, first
    if exp.unit == "task":
        target = exp.meta.get("target") or "the target"  # (the perturbation score is the target's)
        secs = per_unit_sections(secs, "task", {"perturbation": f"perturbation ({target})",
                                                "perturbation score (noisy dev)": f"perturbation score ({target}, noisy dev)"})
        title0, text0, rows0, plot0 = secs[0]
        secs[0] = (title0, f"{task_mode_text(exp)}\n\n{text0}", rows0, plot0)
    return res, pngs, render_md(secs, title, pngs), render_html(secs, title, pngs)


def task_mode_text(exp: Experiment) -> str:
    """What the columns are in task mode (a search on ``search.metric: xtreme``)."""
    tasks = exp.languages
    return (f"This search optimised the XTREME average over {len(tasks)} tasks ({', '.join(tasks)}: the target and "
            f"eval.also). Every statistic below reads each task's XTREME score per seed (test; its metric's mean over "
            f"its languages, (EM + F1) / 2 for QA) where a search on one target reads its languages, so the mean over "
            f"tasks is the XTREME average and the worst task the weakest target; each task's per-language scores are "
            f"in scores_by_language.csv.{' The probes are the ' + exp.probe_metric + '.' if exp.probe_metric else ''}")


def confirmation_section(c: dict) -> tuple[str, str, list[list[str]], str | None]:
    """The confirmation run's section: each pick's search score against its fresh-seed score, and the
    pre-registered comparisons of the search's pick."""
    objs = c.get("objectives") or []
    head = ["order", "fresh seeds", "mean", "95% CI", "search mean", "shift", "pick minus it", "p (Holm)"]
    head += [f"{n}: fresh (search)" for n in objs] + (["on the fresh front"] if objs else [])
    own = c.get("hparams") == "own"
    head += ["hyperparameters"] if own else []
    tests = {t["b"]: t for t in c["tests"]}
    rows = [head]
    for r in c["orders"]:
        if r.get("missing"):
            rows.append([show(r["order"]), "0", "not completed"] + [""] * (len(head) - 3))
            continue
        t = tests.get(r["order"])
        was = r.get("search_objectives") or {}
        rows.append([show(r["order"]), str(r["n_seeds"]), _x(r["mean"]),
                     f"[{_x(r['ci_low'])}, {_x(r['ci_high'])}]" if r.get("ci_low") is not None else "–",
                     _x(r["search_mean"]), _x(r["shift"]), _x(t["difference"]) if t else "–",
                     (f"{t['p_holm']:.3g}" + (" *" if t["significant"] else "")) if t else "–"]
                    + [f"{_x(r['objectives'][n])} ({_x(was.get(n))})" for n in objs]
                    + ([_x(r["on_fresh_front"])] if objs else [])
                    + ([hparams_text(r.get("hparams") or {}) or "–"] if own else []))
    rep = c["replication"]
    rep_text = (f"Spearman's rho between the search's and the fresh scores over {rep['n']} orders: {rep['rho']:.2f}."
                if "rho" in rep else f"Replication of the ranking not measured: {rep['underpowered']}.")
    text = (f"{confirmation_headline(c)} The search ({c['source']}, seeds {', '.join(map(str, c['search_seeds']))}) "
            f"picked these orders; this run trained them again on seeds {', '.join(map(str, c['seeds']))}, which "
            f"the search never used, so their scores carry no selection bias. Shift: fresh mean minus search mean "
            f"(negative for a pick the search's seeds flattered: the winner's curse). The pick (first row) against "
            f"each other order: Welch t-test on per-seed means over languages, Holm over these comparisons, fixed "
            f"before the run. {rep_text}{_confirm_hparams(c)}" + (" Notes: " + "; ".join(c["notes"]) + "." if c.get("notes") else ""))
    return ("Confirmation on fresh seeds", text, rows, None)


def _confirm_hparams(c: dict) -> str:
    if c.get("variant"):
        (k, v), = c["variant"].items()
        return (f" Every order ran at {k}={v} (itt confirm --vary), the search at its own setting: the shift mixes "
                f"the winner's curse with the change of {k}; the confirmation at the search's setting and the "
                "comparison over the values are beside this experiment.")
    if c.get("hparams") == "own":
        return " Each order ran with its search trial's hyperparameters (last column): the configurations the search found."
    if c.get("first_hparams"):
        return f" Every order ran with the first pick's hyperparameters ({hparams_text(c['first_hparams'])}), so only the order differs."
    return ""


def trial_metrics(res: dict, counted: dict[str, str]) -> dict[str, dict[str, float]]:
    """Each counted trial's report figures for its MLflow run (sortable on the runs page): its order's
    P(best) and shrunk score."""
    return {counted[r["order"]]: {"report_p_best": r["p_best"], "report_shrunk": r["shrunk"]}
            for r in res["leaderboard"] if r.get("p_best") is not None and r["order"] in counted}


def headline_metrics(res: dict) -> dict[str, float]:
    """The parent run's report figures."""
    h = res["headline"]
    m = {"report_orders": float(h["n_orders"])}
    if h.get("best_mean") is not None:
        m["report_best_mean"] = h["best_mean"]
    for t in res["order_effect"]["tests"]:
        if "p" in t:
            m[f"report_order_effect_{t['figure']}_p"] = t["p_holm"]  # Holm-adjusted for the secondary figures
            m[f"report_order_effect_{t['figure']}_epsilon2"] = t["epsilon2"]
            m[f"report_order_effect_{t['figure']}_variance_share"] = t["variance_share"]
    arr = res["order_effect"].get("arrangement", {})
    if "p" in arr:
        m["report_arrangement_p"] = arr["p"]
    bo = res["best_order"]
    if "rows" in bo:
        m.update(report_best_p_best=bo["rows"][0]["p_best"], report_best_set_size=float(len(bo["set"])),
                 report_best_curse=bo["curse"])
        m.update({f"report_spread_share_{k}": v for k, v in (bo.get("shares") or {}).items()})  # structured model
        if (bo.get("unfinished") or {}).get("orders"):  # (not where underpowered: no "orders" there)
            m.update(report_unfinished_p_better=bo["unfinished"]["p_better"],
                     report_unfinished_expected_gain=bo["unfinished"]["expected_gain"])
    if res.get("pareto"):
        m["report_pareto_size"] = len(res["pareto"]["front"])
    prior = next((h["agreement"] for h in res.get("heuristics") or [] if "spearman" in h.get("agreement", {})), None)
    if prior:
        m.update(report_prior_spearman=prior["spearman"], report_prior_best_rank=float(prior["prior_best_rank"]))
    c = res.get("confirmation")
    if c:
        pick = next((r for r in c["orders"] if r["order"] == c["pick"] and not r.get("missing")), None)
        if pick:
            m["report_confirm_pick_mean"], m["report_confirm_pick_shift"] = pick["mean"], pick["shift"]
        vs_f = next((t for t in c["tests"] if t["b"] == F), None)
        if vs_f:
            m["report_confirm_pick_minus_f"], m["report_confirm_pick_vs_f_p"] = vs_f["difference"], vs_f["p_holm"]
    if res.get("compute"):
        m.update(compute.metrics(res["compute"]))
    tc = res.get("training_cost") or {}
    if tc.get("available"):
        m.update(report_best_training_seconds=tc["best_cost"]["seconds"], report_best_training_tokens=tc["best_cost"]["tokens"],
                 report_cheapest_could_be_best_share=tc["cheapest_share"])
    for k, v in (res["variance_parts"].get("share") or {}).items():
        m[f"report_share_{k}"] = v
    if "rho" in res["lengths"]["test"]:
        m["report_length_rho"], m["report_length_p"] = res["lengths"]["test"]["rho"], res["lengths"]["test"]["p"]
    la = res["by_language"]
    if "per_language" in la:
        m["report_language_best_in"] = la["best_in"] / len(la["per_language"])
        m["report_language_max_gap"] = max((r["gap"] for r in la["per_language"] if r["gap"] is not None), default=None)
        m["report_language_w"] = la.get("W")
        m["report_language_interaction_p"] = la["interaction"].get("p")
        m["report_language_interaction_eta2"] = la["interaction"].get("partial_eta2")
    iv = res["if_vs_f"]
    if iv.get("available"):
        m["report_if_best_minus_f"] = iv["overall"]["best_IF"] - iv["overall"]["F"]
        m["report_if_mean_minus_f"] = iv["overall"]["mean_IF"] - iv["overall"]["F"]
    return {k: float(v) for k, v in m.items() if v is not None and math.isfinite(v)}


def answer(res: dict, where: str) -> list[str]:
    """The report's answer in a few console lines: does order matter (the primary test, or why it was
    not run), IF vs F, the best order with its interval, and where report.html is."""
    board, iv = res["leaderboard"], res["if_vs_f"]
    lines = [res["headline"]["text"]]
    if res.get("confirmation"):
        lines.insert(0, confirmation_headline(res["confirmation"]))
    lines[:0] = answer_notes(res)
    if iv.get("available"):
        o = iv["overall"]
        t = iv.get("test", {})
        if "underpowered" in t:
            tested = f"not tested: underpowered: {t['underpowered']}"
        else:
            sig = [r for r in iv["per_language"] if r.get("significant")]
            below = [r["language"] for r in sig if (r.get("delta_best") or 0) < 0]  # (the test is two-sided)
            above = [r["language"] for r in sig if r["language"] not in below]
            which = (", ".join(above) or "none") if not below else \
                f"above F: {', '.join(above) or 'none'}; below F: {', '.join(below)}"
            tested = (f"best IF vs F significant in {len(sig)} of {len(iv['per_language'])} languages "
                      f"({which}; permutations with the best of {iv['n_if_orders']} picked again in each, Holm)"
                      f"{if_vs_f_floor(t, res['alpha'])}")
        lines.append(f"IF vs F: F {o['F']:.4f}, best IF ({show(iv['best_order'])}) {o['best_IF']:.4f}, "
                     f"mean of {iv['n_if_orders']} IF orders {o['mean_IF']:.4f}; {tested}.")
    else:
        lines.append(f"IF vs F: not compared: {iv['reason']}.")
    if "share" in res["variance_parts"]:
        lines.append(composition_line(res["variance_parts"]))
    if "per_language" in res["by_language"]:
        lines.append(language_headline(res["by_language"]))
    if board:
        b = board[0]
        picked = sum(r["order"] != S.F for r in board)
        why = ("" if picked < 2 or "rows" not in res["best_order"] else
               f" (over its own seeds, not adjusted for being the top of {picked}: the shrunk score below is)"
               if b["order"] != S.F else
               f" (fine-tuning alone scored above all {picked} IF orders; the shrunk score below is the best IF order's)")
        ci = (f", {res['confidence']:.0%} interval [{b['ci_low']:.4f}, {b['ci_high']:.4f}]{why}"
              if b.get("ci_low") is not None else " (one seed: no interval)")
        lines.append(f"Best order: {show(b['order'])}, mean {b['mean']:.4f} over {b['n_seeds']} seed(s){ci}.")
    if "rows" in res["best_order"]:
        lines.append(ranking.text(res["best_order"], show) + unfinished_text(res["best_order"], res.get("experiment")))
    prior = next((h["agreement"] for h in res.get("heuristics") or [] if "agreement" in h), None)
    if prior:  # the search ran with search.prior: transferability
        lines.append(agreement_text(prior, f"this search completed ({latex.split_words(res, 'means')})"))
    pa = res.get("pareto")
    if pa:
        lines.append(f"Pareto front ({', '.join(o['name'] for o in pa['objectives'])}, dev): "
                     + "; ".join(f"{show(r['order'])} (test mean {_x(r['test_mean'])}, worst {_x(r['test_worst'])})"
                                 for r in pa["front"]) + ".")
    tc = res.get("training_cost") or {}
    if tc.get("available"):
        lines.append(training_cost.headline(tc, show))
    c = res.get("compute") or {}
    if c.get("trials"):
        share = (f"; {c['share_of_exhaustive']:.0%} of the stage-trainings and fine-tunes every order once would take"
                 if c.get("share_of_exhaustive") is not None else "")
        lines.append(f"Compute: {c['device_hours']:.3g} {c['device_kind']}-hours over {c['trials']} trials "
                     f"({c['chains']} chains){share}.")
    lines.append(f"Report: {where}/report.html")
    return [per_unit(x, res.get("unit")) for x in lines]


def tidy_scores(exp: Experiment) -> pd.DataFrame:
    """Every score the statistics use, one row per (order, seed, language), for R, pandas or a
    spreadsheet: the order (empty = F), its length, the seed, the language and the test metric."""
    d = exp.scores.dropna(subset=["score"]).copy()
    d.insert(1, "length", d["order"].map(lambda o: len(order_tasks(o))))
    d = d.rename(columns={"score": exp.metric}).sort_values(["order", "seed", "language"], kind="stable")
    return d.rename(columns={"language": "task", XTREME_SCORE: "xtreme_score"}) if exp.unit == "task" else d


def make_report(exp_dir: str, *, out: str | None = None, alpha: float = S.ALPHA, tracking_uri: str | None = None,
                mlflow: bool = True, heuristics: bool = True, tex_top: int = latex.TOP, log=print,
                mlflow_off: str = "--no-mlflow") -> dict:
    """``itt report``: read, analyse, render, then write (local folder or the experiment's store) and
    log to MLflow. Returns report.json's content. ``tex_top``: IF orders in report.tex's table.
    ``mlflow_off``: why MLflow is left out, as the user asked for it (the console's last line)."""
    if not 0 < alpha < 1:
        raise UserError(f"--alpha {alpha}: must lie between 0 and 1")
    if tex_top < 1:
        raise UserError(f"--tex-top {tex_top}: give 1 or more (IF orders in report.tex's table)")
    exp = load_experiment(exp_dir)
    if out:
        writable_folder(out, f"--out {out}")
    res, pngs, md, page = build(exp, alpha=alpha, heuristics=heuristics, log=log)
    tmp = Path(tempfile.mkdtemp(prefix="itt-report-"))
    try:
        (tmp / "report.json").write_text(json.dumps(res, indent=2, ensure_ascii=False))
        tidy_scores(exp).to_csv(tmp / "scores.csv", index=False)
        if exp.by_language is not None:  # task mode: each task's scores per language too
            exp.by_language.sort_values(["order", "seed", "task", "language"], kind="stable").to_csv(
                tmp / "scores_by_language.csv", index=False)
        (tmp / "report.md").write_text(md)
        (tmp / "report.html").write_text(page)
        (tmp / "report.tex").write_text(per_unit(latex.table(res, name=exp.meta.get("name") or exp.st.name,
                                                             target=exp.meta.get("target"), top=tex_top), exp.unit))
        for name, data in pngs.items():
            (tmp / f"{name}.png").write_bytes(data)
        if out:
            dest = Path(out)
            dest.mkdir(parents=True, exist_ok=True)
            for f in tmp.iterdir():
                shutil.copy2(f, dest / f.name)
            where = str(dest)
        else:
            exp.st.upload_dir(tmp, "report")
            where = exp.st.display + "/report"
        extra = ", scores_by_language.csv" if exp.by_language is not None else ""
        log(f"report: {where}/report.html  (report.md, report.json, report.tex, scores.csv{extra}, {len(pngs)} PNGs)")
        for line in answer(res, where)[:-1]:
            log(line)
        if mlflow:
            from search.tracking import log_report

            log(log_report(exp.st, exp.meta, tmp, headline_metrics(res), uri=tracking_uri,
                           per_trial=trial_metrics(res, exp.counted)))
        else:
            log(f"MLflow: not logged ({mlflow_off})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res
