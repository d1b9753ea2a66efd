"""``itt confirm EXPERIMENT_DIR``: the search's best orders again, on fresh seeds.

A search picks its best order on the same seeds it reports, so the winner's score is biased upward
(the winner's curse) and the report's p-values for it are optimistic. The remedy researchers use is a
confirmation run: the top orders and F, fixed before it starts, trained again on seeds the search
never used. This module turns a finished search into that run: a new experiment
``<name>-confirm`` beside it (the same search machinery: Ray, the stage cache, MLflow, ``itt resume``)
whose only trials are those orders, with one hyperparameter setting for all (the best trial's), and
writes ``confirm.json`` (what was picked, and each order's score over the search's seeds) that
``itt report`` reads to add its *Confirmation on fresh seeds* section: every order's search score
against its fresh-seed score, the pre-registered comparisons of the search's pick (against F and the
runners-up; Welch, Holm) and whether the search's ranking replicates (Spearman).

``--vary KEY=V1,V2``: is the best order robust to a hyperparameter? The same picks and F on the same
fresh seeds again at each other value of KEY (one experiment ``<name>-confirm-KEY=V`` per value, one
key varied at a time from the confirmation's own setting, the stage cache shared where the value
leaves a prefix's training unchanged), then ``itt compare`` over the confirmation and its variants:
whether the orders rank alike at every value (Kendall's W), the order that gains most over F at
every value, and the one most likely the best at every value - a sensitivity analysis as a reviewer
asks for it ("does the winner depend on the learning rate?").
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import yaml

from itt.errors import UserError
from search import stats as S
from search.config import hparams_text
from search.pareto import SINGLE, lower_is_better, on_front
from search.stats import F, show
from search.storage import echo
from search.tracking import finite as _num
from search.tracking import row_hparams

CONFIRM_FILE = "confirm.json"
SUFFIX = "-confirm"


def _completed(rows: list[dict], lower: bool = False) -> list[dict]:
    """The completed trials with a score, best score first (``lower``: the score is lower-is-better)."""
    return sorted((r for r in rows if r.get("status") == S.Status.COMPLETED and _num(r.get("score")) is not None),
                  key=lambda r: _num(r["score"]) if lower else -_num(r["score"]))


def picks(rows: list[dict], recommended: dict | None, top: int, *, front: bool = False,
          lower: bool = False) -> list[dict]:
    """The ``top`` IF orders to confirm, best first: the searcher's recommendation (its model's best,
    where it has one), then the completed trials by score; each with its trial's hyperparameters.
    ``front`` (a multi-objective search): the trials on its Pareto front first, by the first objective
    (``lower``: a lower-is-better one, such as std)."""
    done = sorted(_completed(rows, lower), key=lambda r: front and not on_front(r))  # (stable: by score within)
    out: list[dict] = []

    def add(order: str, hp: dict, why: str) -> None:
        if order and order not in [p["order"] for p in out] and len(out) < top:
            out.append({"order": order, "hparams": hp, "why": why})

    if recommended and recommended.get("order"):
        add(recommended["order"], dict(recommended.get("hparams") or {}), "the searcher's recommendation")
    for r in done:
        add(r.get("order") or "", {k: _value(v) for k, v in row_hparams(r).items()},
            f"trial {r['trial_id']}, {'on the Pareto front, ' if front and on_front(r) else ''}score "
            f"{_num(r['score']):.4f}")
    return out


# a multi-objective search's objectives as per-seed test figures (search.stats.seed_figures' columns)
FIGURE_OF = {"mean": "mean", "worst": "worst", "std": "lang_std", "transfer_gap": "transfer_gap"}


def objective_values(fig, objectives: list[str], robust_weight: float = 1.0):
    """``fig`` (per-seed figures) with one column per objective: ``robust`` is mean - weight * std."""
    fig = fig.copy()
    for n in objectives:
        fig[f"objective_{n}"] = (fig["mean"] - robust_weight * fig["lang_std"]) if n == "robust" else fig[FIGURE_OF[n]]
    return fig


def _value(v):
    """A results.csv cell back to the number (or text) it was (YAML would keep 3e-05 a string)."""
    if not isinstance(v, str):
        return v
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


HPARAMS = ("own", "first")  # each pick as its trial ran it; or the first pick's for every order


def confirm_config(config: dict, orders: list[dict], seeds: list[int], baseline: bool, *, hparams: str = "own",
                   f_hparams: dict | None = None) -> tuple[dict, list[str]]:
    """The search's own config (its ``tracking/config.yaml``) turned into the confirmation's: only the
    picked orders (and F) as seed points, as many trials as orders, no scheduler and no prior, fresh
    seeds. ``hparams``: ``own`` (each pick with its trial's hyperparameters, per-stage ones too, and F
    with ``f_hparams``, its search trial's: the configurations the search found, again) or ``first``
    (the first pick's set in the chain config for every order: only the order differs). Returns the
    config and notes on what could not be carried over."""
    cfg = json.loads(json.dumps(config))  # a deep copy
    s = cfg["search"]
    notes: list[str] = []
    point_hparams: dict = {}
    if hparams == "first" or not s.get("hparams"):
        notes += _fix_first(cfg, orders[0]["hparams"] if orders else {})
        s["hparams"] = {}
    else:  # the search's hyperparameter space stays, so every trial records its values; the points fix them
        point_hparams = {p["order"] or "F": dict(p["hparams"]) for p in orders if p["hparams"]}
        if baseline and f_hparams:
            point_hparams["F"] = dict(f_hparams)
    if isinstance(s.get("tracking"), dict):  # its own MLflow experiment, named as the run (<name>-confirm)
        s["tracking"]["experiment"] = None
    s.update(confirm=None, searcher="random", num_samples=len(orders) + int(baseline), seeds=seeds, prior="none",
             prior_from=None, report=False, scheduler={"type": "none"},
             reproducible=False,  # (every trial is a seed point, fixed before it starts: no batches to wait for)
             seed_points={"baseline": baseline, "singles": False, "orders": [p["order"] for p in orders],
                          "heuristics": [], "hparams": point_hparams})
    return cfg, notes


def _fix_first(cfg: dict, hp: dict) -> list[str]:
    """The first pick's hyperparameters set in the chain config (``hparams: first``)."""
    from itt.config import set_dotted

    notes = []
    for key, v in hp.items():
        if "*" in key:  # one value per stage of the order it was searched with: no single setting
            notes.append(f"per-stage hyperparameter {key} keeps the config's default")
        else:
            set_dotted(cfg, key, v, "search.hparams")
    return notes


def search_means(exp, objectives: list[str] | None = None,
                 robust_weight: float = 1.0) -> tuple[dict[str, dict], list[int]]:
    """Each completed order's test mean over languages, per search seed (what the report counts), of an
    ``Experiment`` (search.report.load_experiment), and the seeds they come from; with ``objectives``
    (a multi-objective search) also each objective's test value, averaged over seeds."""
    fig = objective_values(S.seed_figures(exp.scores.dropna(subset=["score"])), objectives or [], robust_weight)
    out = {o: {"mean": float(g["mean"].mean()), "per_seed": [float(x) for x in g["mean"]], "n_seeds": int(len(g)),
               **({"objectives": {n: float(g[f"objective_{n}"].mean()) for n in objectives}} if objectives else {})}
           for o, g in fig.groupby("order", sort=False)}
    return out, sorted({int(s) for s in fig["seed"] if int(s) >= 0})


def baseline_hparams(rows: list[dict], chosen: list[dict], scfg) -> tuple[dict, str | None]:
    """F's hyperparameters for ``hparams: own``: those of the search's best completed F trial; where the
    search ran none, the first pick's that apply to F (not per-stage), with a note saying so."""
    if not scfg.hparams:
        return {}, None
    f = [r for r in _completed(rows, lower_is_better(scfg.objectives)) if r.get("order") == F]
    if f:
        return {k: _value(v) for k, v in row_hparams(f[0]).items()}, None
    hp = {k: v for k, v in chosen[0]["hparams"].items() if not k.startswith("stages.")}
    return hp, ("the search ran no F, so F takes the first pick's hyperparameters"
                + (f" ({hparams_text(hp)})" if hp else ""))


def added(orders: list[str] | None, scfg, chosen: list[dict]) -> list[dict]:
    """``--add``: orders of the search's space confirmed beside its picks (e.g. one the search did not
    finish that the report says could beat the pick), with the first pick's hyperparameters that apply to
    them (no trial of the search found theirs; a per-stage value of a task the order lacks does not)."""
    from search.config import hparam_names

    space, out = scfg.space(), []
    for text in orders or []:
        order = [t.strip() for t in text.split(">") if t.strip()]
        if not order or not space.is_valid(order):
            raise UserError(f"--add {text}: not an IF order of the search's space (tasks from "
                            f"{', '.join(scfg.candidates)}, joined by '>', lengths {scfg.lengths})")
        key = ">".join(order)
        if key not in [p["order"] for p in chosen + out]:
            names = {n for k in scfg.hparams for n in hparam_names(k, order)}
            out.append({"order": key, "hparams": {k: v for k, v in chosen[0]["hparams"].items() if k in names},
                        "why": "added (--add)"})
    return out


SET = "set"  # --top set: the orders that could be best (the report's 95% credible set)
SET_CAP = 10  # ... at most this many of them


def set_picks(rows: list[dict], ranked: dict) -> list[dict]:
    """``--top set``: the orders in the report's credible set of possible best orders (search/ranking.py),
    by P(best), each with its best completed trial's hyperparameters; at most ``SET_CAP``."""
    by_order = {}
    for r in _completed(rows):
        by_order.setdefault(r.get("order") or "", r)
    p_best = {x["order"]: x["p_best"] for x in ranked["rows"]}
    return [{"order": o, "hparams": {k: _value(v) for k, v in row_hparams(by_order[o]).items()},
             "why": f"P(best) {p_best[o]:.2f}, in the {ranked['level']:.0%} set of possible best orders"}
            for o in ranked["set"][:SET_CAP] if o in by_order]


def _chosen(exp, st, scfg, top) -> tuple[list[dict], list[str]]:
    """The picks: the ``top`` best (int), or the credible set (``set``); notes on what was left out."""
    if top != SET:
        return picks(exp.rows, st.read_json("summary.json", default={}).get("recommended"), top,
                     front=scfg.multi_objective, lower=lower_is_better(scfg.objectives)), []
    from search import ranking

    if scfg.multi_objective:
        raise UserError("--top set ranks orders by the mean; a multi-objective search confirms its Pareto front: "
                        "give --top N")
    ranked = ranking.analyse(S.seed_figures(exp.scores.dropna(subset=["score"])))
    if "rows" not in ranked:
        raise UserError(f"--top set: no set of possible best orders: {ranked['underpowered']}; give --top N")
    more = len(ranked["set"]) - SET_CAP
    return set_picks(exp.rows, ranked), ([f"the set holds {len(ranked['set'])} orders: the {SET_CAP} most likely "
                                          f"are confirmed ({more} left out)"] if more > 0 else [])


def parse_vary(texts: list[str] | None) -> list[tuple[str, list]]:
    """``--vary KEY=V1,V2`` (repeatable) -> [(key, [values])]; numbers in any notation as numbers (``_value``)."""
    out: list[tuple[str, list]] = []
    for text in texts or []:
        key, eq, vals = text.partition("=")
        key = key.strip()
        if not eq or not key or not vals.strip():
            raise UserError(f"--vary {text}: give KEY=V1,V2 (e.g. finetune.lr=1e-5,5e-5)")
        values = [_value(v.strip()) for v in vals.split(",") if v.strip()]
        if len({repr(v) for v in values}) != len(values):
            raise UserError(f"--vary {text}: a value is listed twice")
        if key in [k for k, _ in out]:
            raise UserError(f"--vary {key}: given twice (list its values once: {key}=V1,V2)")
        out.append((key, values))
    return out


def variant_name(base: str, key: str, value) -> str:
    """``<name>-confirm-KEY=V``: a folder beside the confirmation, so a value with a path separator (a Hub ID
    such as FacebookAI/xlm-roberta-large, a local model path) has it as ``_``, not a folder inside another."""
    return f"{base}-{key}={str(value).replace('/', '_').replace(chr(92), '_')}"


def vary_config(cfg: dict, key: str, value, *, cache_dir: str | None, label: str | None = None) -> dict:
    """The confirmation's config with ``key`` set to ``value`` for every order: in the chain config, and
    out of the searched hyperparameters and the seed points' given values where the search searched it.
    ``cache_dir``: the confirmation's own stage cache, shared (prefixes the value does not touch are
    trained once for all values). A key the chain config does not have is a UserError naming ``label``
    (default ``--vary KEY``)."""
    from itt.config import ChainConfig, set_dotted, validate

    label = label or f"--vary {key}"
    if key.split(".")[0] in ("search", "seeds", "order", "name"):
        raise UserError(f"{label}: the confirmation sets it; vary a training or model setting (e.g. finetune.lr)")
    out = json.loads(json.dumps(cfg))
    s = out["search"]
    per_stage = [k for k in s.get("hparams") or {} if "*" in k]  # stages.*.X: one value per stage of each order
    if key.startswith("stages.") and any(key.split(".")[-1] == k.split(".")[-1] for k in per_stage):
        raise UserError(f"{label}: the search searched it per stage (stages.*); vary a key of the chain "
                        "config that holds for every order (e.g. finetune.lr)")
    (s.get("hparams") or {}).pop(key, None)
    for hp in (s.get("seed_points") or {}).get("hparams", {}).values():
        hp.pop(key, None)
    set_dotted(out, key, value, label)
    validate({k: v for k, v in out.items() if k != "search"}, f"{label}={value}", ChainConfig)
    if cache_dir and s.get("cache", {}).get("dir") is None:
        s.setdefault("cache", {})["dir"] = cache_dir
    return out


def plan(exp_dir: str, *, top: int | str, seeds: list[int] | None, name: str | None, storage: str | None,
         hparams: str = "own", vary: list[tuple[str, list]] | None = None, add: list[str] | None = None) -> dict:
    """Every check before anything runs (UserErrors: nothing written): the search, its picks, fresh
    seeds, the confirmation's config and where it goes."""
    from itt.config import parse_yaml, validate
    from search.config import SearchConfig
    from search.report import load_experiment
    from search.runner import SEARCH_FILE
    from search.storage import Storage
    from search.tracking import storage_of

    if top != SET and (not isinstance(top, int) or top < 1):
        raise UserError(f"--top {top}: give 1 or more, or 'set' (the orders that could be best)")
    if hparams not in HPARAMS:
        raise UserError(f"--hparams {hparams}: give one of {', '.join(HPARAMS)}")
    st = storage_of(exp_dir, "experiment")
    if not st.exists():
        raise UserError(f"{exp_dir}: no such experiment directory")
    text = st.read_text(SEARCH_FILE)
    if not text:
        raise UserError(f"{exp_dir}: no {SEARCH_FILE} (not an `itt search` experiment directory)")
    config = parse_yaml(text, f"{exp_dir}/{SEARCH_FILE}")
    scfg = validate(config.get("search") or {}, f"{exp_dir}/{SEARCH_FILE}", SearchConfig, prefix="search.")
    exp = load_experiment(exp_dir)  # (a UserError when it holds no completed trial)
    objectives = scfg.objectives if scfg.multi_objective else None
    means, used = search_means(exp, objectives, scfg.robust_weight)
    chosen, set_notes = _chosen(exp, st, scfg, top)
    if not chosen:
        raise UserError(f"{exp_dir}: no completed IF order to confirm")
    chosen += added(add, scfg, chosen)
    seeds = seeds or [max(used + [-1]) + 1 + i for i in range(max(5, len(used)))]
    again = sorted(set(seeds) & set(used))
    if again:
        raise UserError(f"--seeds: {', '.join(map(str, again))} already used by the search (its seeds: "
                        f"{', '.join(map(str, used))}); a confirmation needs fresh seeds")
    new_st = Storage(storage or st.root, name or f"{st.name}{SUFFIX}")
    if new_st.exists():
        raise UserError(f"experiment '{new_st.name}' exists already in {new_st.root} (continue it with `itt resume "
                        f"{new_st.display}`, or pick another --name)")
    baseline = scfg.space().is_valid([])  # F, the reference, wherever the search's space holds it
    f_hp, f_note = baseline_hparams(exp.rows, chosen, scfg) if baseline and hparams == "own" else ({}, None)
    cfg, notes = confirm_config(config, chosen, seeds, baseline, hparams=hparams, f_hparams=f_hp)
    notes += ([f_note] if f_note else []) + set_notes
    if scfg.multi_objective:  # nothing is searched: one objective names the trials' score
        score = next((n for n in scfg.objectives if n in SINGLE), "mean")  # (std or transfer_gap is no score alone)
        cfg["search"]["metric"] = score
        which = "the search's first objective" if score == scfg.objectives[0] else "a score one can optimise alone"
        notes.append(f"the trials' score is {which} ({score}); the picks are its Pareto front first, and the report "
                     f"compares them on every objective (test)")
    kept = [p["order"] for p in chosen] + [F]
    record = {"source": st.display, "search_seeds": used, "seeds": seeds, "baseline": baseline, "picks": chosen,
              "hparams": hparams if scfg.hparams else None, "hparams_of": cfg["search"]["seed_points"]["hparams"],
              "objectives": objectives, "robust_weight": scfg.robust_weight, "notes": notes,
              "search_means": {o: means[o] for o in kept if o in means}}
    record["vary"] = [[k, list(v)] for k, v in vary or []]  # (itt resume of the confirmation finishes them)
    variants = _variants(cfg, record, new_st, vary or [])
    return {"config": cfg, "record": record, "st": new_st, "tracking_uri": exp.meta.get("tracking_uri"),
            "variants": variants}


def _variants(cfg: dict, record: dict, base_st, vary: list[tuple[str, list]], existing_ok: bool = False) -> list[dict]:
    """One confirmation per other value of each varied key: {config, record (with its ``variant``), st};
    UserErrors (nothing written) for a key the chain config lacks or an experiment that exists (unless
    ``existing_ok``: ``continue_variants`` resumes those)."""
    from search.storage import Storage

    if vary and record["objectives"]:
        raise UserError("--vary: a multi-objective search's confirmation compares on every objective already; "
                        "vary its hyperparameters with one objective")
    cache = None if base_st.remote else base_st.path("stage_cache")  # (an object store's URI may carry options)
    out = []
    for key, values in vary:
        for v in values:
            st = Storage(base_st.root, variant_name(base_st.name, key, v))
            if st.exists() and not existing_ok:
                raise UserError(f"experiment '{st.name}' exists already in {st.root} (continue it with `itt resume "
                                f"{st.display}`, or pick another --name)")
            c = vary_config(cfg, key, v, cache_dir=cache)
            out.append({"config": c, "st": st, "record": {**record, "variant": {key: v},
                                                          "hparams_of": c["search"]["seed_points"]["hparams"]}})
    return out


def _hp_text(hp: dict) -> str:
    return hparams_text(hp) or "the middle of each searched range"


def run_confirm(exp_dir: str, *, top: int | str = 3, seeds: list[int] | None = None, name: str | None = None,
                storage: str | None = None, address: str | None = None, tracking_uri: str | None = None,
                no_tracking: bool = False, progress: str = "auto", dry_run: bool = False, hparams: str = "own",
                vary: list[tuple[str, list]] | None = None, add: list[str] | None = None, log=echo):
    """``itt confirm``: plan (every check), run the confirmation as a search, keep confirm.json in it,
    then report on it; with ``vary`` (``parse_vary``), the same for each other value, then ``itt compare``
    over them all. Returns the new experiment directory (None for ``dry_run``: the plan and the
    config it would run are printed, nothing else happens)."""
    p = plan(exp_dir, top=top, seeds=seeds, name=name, storage=storage, hparams=hparams, vary=vary, add=add)
    rec, new_st = p["record"], p["st"]
    tracking_uri = tracking_uri or p["tracking_uri"]  # beside the search in MLflow too
    _say_plan(p, log)
    if dry_run:
        n = len(rec["picks"]) + int(rec["baseline"])
        runs = 1 + len(p["variants"])
        log(f"dry run: {n} trial(s) x {len(rec['seeds'])} seed(s) = {n * len(rec['seeds'])} chains would run in "
            f"{new_st.display}" + (f" and as many in each of {len(p['variants'])} variant(s) "
                                   f"({runs * n * len(rec['seeds'])} in all)" if p["variants"] else "")
            + ", with this config:")
        log(yaml.safe_dump(p["config"], sort_keys=False, allow_unicode=True).rstrip())
        return None
    run = dict(address=address, tracking_uri=tracking_uri, no_tracking=no_tracking, progress=progress, log=log)
    new = _run_one(p["config"], rec, new_st, **run)
    if p["variants"]:
        _run_variants(new_st, p["variants"], **run)
    return new


def _say_plan(p: dict, log) -> None:
    """What will run: the picks and seeds, their hyperparameters, notes, and the values to vary."""
    rec, variants = p["record"], p["variants"]
    log(f"confirming {len(rec['picks'])} order(s) of {rec['source']}{' and F' if rec['baseline'] else ''} on fresh "
        f"seeds {', '.join(map(str, rec['seeds']))} (the search used {', '.join(map(str, rec['search_seeds']))}): "
        + "; ".join(f"{show(x['order'])} ({x['why']})" for x in rec["picks"]))
    if rec.get("hparams") == "own":
        f = [("F", p["config"]["search"]["seed_points"]["hparams"].get("F", {}))] if rec["baseline"] else []
        log("each order runs with its trial's hyperparameters (--hparams first: the first pick's for all): "
            + "; ".join(f"{o}: {_hp_text(hp)}" for o, hp in [(show(x["order"]), x["hparams"]) for x in rec["picks"]] + f))
    elif rec["picks"][0]["hparams"]:
        log("every order runs with the first pick's hyperparameters: " + _hp_text(rec["picks"][0]["hparams"]))
    for n in rec["notes"]:
        log(f"note: {n}")
    for key in dict.fromkeys(k for v in variants for k in v["record"]["variant"]):
        log(f"then at each other value of {key} (this confirmation: {_setting(p['config'], key)}; the same orders and "
            "seeds): " + ", ".join(v["st"].name for v in variants if key in v["record"]["variant"]))
    if variants:
        log(f"(each value is an experiment of its own; interrupted, `itt resume {p['st'].display}` finishes the "
            "confirmation, every value and their comparison)")


def _setting(cfg: dict, key: str) -> str:
    """What the confirmation itself runs ``key`` at: the config's value, or each order's searched one."""
    if key in (cfg["search"].get("hparams") or {}):
        return "each order's own, as searched"
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return f"{key} unset, its default"
        node = node[part]
    return f"{key}={node}"


def _run_one(config: dict, rec: dict, st, *, address, tracking_uri, no_tracking, progress, log):
    """One confirmation as a search, its confirm.json, then its report."""
    from search.runner import run_search

    try:
        with tempfile.TemporaryDirectory(prefix="itt-confirm-") as tmp:
            path = Path(tmp) / "confirm.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
            overrides = ["search.tracking.enabled=false"] if no_tracking else []
            new = run_search(str(path), name=st.name, storage=st.root, address=address, overrides=overrides,
                             tracking_uri=tracking_uri, log=log, progress=progress)
    finally:  # also when interrupted: `itt resume` finishes it, and `itt report` then finds what it confirms
        if st.exists():
            st.write_text(json.dumps(rec, indent=1), CONFIRM_FILE)
    _report(str(new), tracking_uri=tracking_uri, no_tracking=no_tracking, log=log)
    return new


def _report(exp: str, *, tracking_uri, no_tracking, log) -> None:
    from search.report import make_report

    log("did the search's best hold up? (itt report)")
    try:
        make_report(exp, tracking_uri=tracking_uri, mlflow=not no_tracking, heuristics=False, log=log)
    except UserError as e:
        log(f"report: not written ({e}); once fixed: itt report {exp}")


def continue_variants(st, *, address=None, tracking_uri=None, progress="auto", log=echo) -> None:
    """After ``itt resume`` of a confirmation: its report (a confirmation's search writes none itself);
    for one run with ``--vary``, every value's experiment resumed (a finished one only reports again) or,
    where it never started, run, then the comparison, as the first run would have ended. Nothing for an
    experiment that is no confirmation."""
    from search.runner import SEARCH_FILE

    rec = st.read_json(CONFIRM_FILE, default={})
    if not rec:
        return
    config = st.read_yaml(SEARCH_FILE)
    no_tracking = not (config["search"].get("tracking") or {}).get("enabled", True)
    _report(st.display, tracking_uri=tracking_uri, no_tracking=no_tracking, log=log)
    if not rec.get("vary") or rec.get("variant"):
        return
    variants = _variants(config, rec, st, [(k, v) for k, v in rec["vary"]], existing_ok=True)
    _run_variants(st, variants, address=address, tracking_uri=tracking_uri, no_tracking=no_tracking,
                  progress=progress, log=log)


def _run_variants(base_st, variants: list[dict], *, address, tracking_uri, no_tracking, progress, log) -> None:
    """Each value's confirmation - resumed where its experiment exists (its resume reports it; one that
    cannot resume is one line), else run - then their comparison."""
    from search.runner import resume_search

    for v in variants:
        (key, value), = v["record"]["variant"].items()
        log(f"the same orders and seeds at {key}={value} ({v['st'].name})")
        if not v["st"].exists():
            _run_one(v["config"], v["record"], v["st"], address=address, tracking_uri=tracking_uri,
                     no_tracking=no_tracking, progress=progress, log=log)
            continue
        try:
            resume_search(v["st"].display, address=address, tracking_uri=tracking_uri, log=log, progress=progress)
        except UserError as e:
            log(f"{v['st'].name}: not finished ({e})")
    _compare_variants(base_st, variants, tracking_uri=tracking_uri, no_tracking=no_tracking, log=log)


def _compare_variants(base_st, variants: list[dict], *, tracking_uri, no_tracking, log) -> None:
    """``itt compare`` over the confirmation and its variants: do the same orders win at every value?
    Then, per varied key, the order x value interaction (``value_interaction``), kept beside it."""
    from search.compare import make_compare

    dirs, out = _vary_dirs(base_st, variants), _vary_out(base_st)
    keys = list(dict.fromkeys(k for v in variants for k in v["record"]["variant"]))
    log(f"is the best order robust to {', '.join(keys)}? (itt compare of the confirmation and its variants)")
    try:
        make_compare(dirs, out=out, tracking_uri=tracking_uri, mlflow=not no_tracking, log=log)
        found = {}
        for key in keys:
            found[key] = value_interaction(_vary_dirs(base_st, [v for v in variants if key in v["record"]["variant"]]))
            log(interaction_text(found[key], key))
        Path(out, "interaction.json").write_text(json.dumps(found, indent=1))
    except UserError as e:
        log(f"compare: not written ({e}); once fixed: itt compare {' '.join(dirs)} --out {out}")


def _vary_dirs(base_st, variants: list[dict]) -> list[str]:
    return [base_st.display] + [v["st"].display for v in variants]


def _vary_out(base_st) -> str:
    """Where the comparison of the values goes: inside the confirmation (a local folder), else here."""
    return base_st.path("vary") if not base_st.remote else f"{base_st.name}-vary"


def value_interaction(dirs: list[str]) -> dict:
    """Do the order effects depend on the varied value? ``dirs``: the confirmation, then its variants of
    one key. Each (IF order, seed) is a unit measured at every value - the same seed, and where the value
    leaves a prefix alone the same intermediate encoder - so this is a split-plot design like the
    report's order x language test (``stats.order_language_interaction``, Greenhouse–Geisser corrected):
    orders between units, values within, the order x value interaction against value x seed-within-order.
    Figure: the per-seed test mean over languages."""
    from search.report import load_experiment

    tables = []
    for d in dirs:
        fig = S.seed_figures(load_experiment(d).scores.dropna(subset=["score"]))
        tables.append(fig[fig["order"] != F].set_index(["order", "seed"])["mean"])
    units = sorted(set.intersection(*(set(t.index) for t in tables)))
    orders = sorted({o for o, _ in units})
    out = {"values": len(dirs), "orders": len(orders), "units": len(units)}
    if len(orders) < 2 or len(units) <= len(orders):
        return {**out, "underpowered": f"{len(orders)} IF order(s) and {len(units)} (order, seed) unit(s) at every "
                                       "value (need 2 orders, one of them with 2+ seeds)"}
    y = np.column_stack([t.loc[units].to_numpy(float) for t in tables])
    res = {**out, **S.order_language_interaction(y, [o for o, _ in units])}
    res.pop("languages", None)
    if "underpowered" in res:  # (its wording is the language test's)
        res["underpowered"] = "every (order, seed) moves by the same amount between values: no error term"
    return res


def interaction_text(r: dict, key: str) -> str:
    if "underpowered" in r:
        return f"Order x {key}: not tested ({r['underpowered']})."
    verdict = ("the order effects depend on" if r["p"] < S.ALPHA else "no evidence that the order effects depend on")
    return (f"Order x {key}: {verdict} {key} (split-plot ANOVA, {r['orders']} IF orders x seeds as units, "
            f"{r['values']} values within; F({r['df1']}, {r['df2']}) = {r['F']:.2f}, Greenhouse–Geisser "
            f"epsilon = {r['epsilon']:.2f}, p = {r['p']:.3g}, partial eta² = {r['partial_eta2']:.2f}).")


# ------------------------------------------------------------------ the report's section (pure)
def analyse(confirm: dict, fig, alpha: float = S.ALPHA) -> dict:
    """``confirm``: confirm.json; ``fig``: the confirmation's per-seed figures (stats.seed_figures).
    Every picked order's search mean against its fresh-seed mean; the pick (first) against F and each
    runner-up, Welch on per-seed means, Holm over these pre-registered comparisons; Spearman of the
    search's means against the fresh ones."""

    fresh = {o: g["mean"].to_numpy(float) for o, g in fig.groupby("order", sort=False)}
    orders = [p["order"] for p in confirm["picks"]] + ([F] if confirm.get("baseline") else [])
    rows = []
    for o in orders:
        if o not in fresh:
            rows.append({"order": o, "missing": True})
            continue
        lo, hi = S.t_interval(fresh[o])
        was = (confirm.get("search_means") or {}).get(o, {}).get("mean")
        rows.append({"order": o, "n_seeds": int(len(fresh[o])), "mean": float(fresh[o].mean()), "ci_low": lo,
                     "ci_high": hi, "search_mean": was, "shift": None if was is None else float(fresh[o].mean()) - was,
                     "hparams": (confirm.get("hparams_of") or {}).get(o or "F")})
    pick = orders[0]
    tests = []
    if pick in fresh:
        for o in [x for x in orders[1:] if x in fresh]:
            a, b = fresh[pick], fresh[o]
            if min(len(a), len(b)) >= 2:
                tests.append({"a": pick, "b": o, "difference": float(a.mean() - b.mean()), "p": S.welch(a, b)})
    for t, pa in zip(tests, S.holm([t["p"] for t in tests])):
        t["p_holm"], t["significant"] = pa, bool(pa < alpha)
    if confirm.get("objectives"):
        _objectives(confirm, fig, rows)
    return {"source": confirm["source"], "seeds": confirm["seeds"], "search_seeds": confirm["search_seeds"],
            "pick": pick, "orders": rows, "tests": tests, "replication": _replication(rows), "alpha": alpha,
            "objectives": confirm.get("objectives"), "notes": confirm.get("notes", []), "hparams": confirm.get("hparams"),
            "variant": confirm.get("variant"),
            "first_hparams": (confirm["picks"][0]["hparams"] if confirm.get("hparams") == "first" else {})}


def _replication(rows: list[dict]) -> dict:
    """Spearman's rho between the search's and the fresh means of the IF orders that have both (F, below
    every pick in most searches, would rank last on both sides and make any ranking look replicated);
    where either side scores every order alike there is no ranking to compare (scipy's rho would be nan)."""
    from scipy import stats

    both = [r for r in rows if not r.get("missing") and r["search_mean"] is not None and r["order"] != F]
    if len(both) < 3:
        return {"underpowered": f"{len(both)} IF order(s) with both scores (need 3)"}
    for side, key in (("the search", "search_mean"), ("the fresh seeds", "mean")):
        if len({r[key] for r in both}) == 1:
            return {"underpowered": f"{side} scored all {len(both)} orders alike ({both[0][key]:.4f}): no ranking to compare"}
    rho = stats.spearmanr([r["search_mean"] for r in both], [r["mean"] for r in both]).statistic
    return {"rho": float(rho), "n": len(both)}


def _objectives(confirm: dict, fig, rows: list[dict]) -> None:
    """A multi-objective search's picks on every objective: fresh-seed test values, the search's, and
    which orders (picks and F) are on the Pareto front again on the fresh seeds."""
    from search.pareto import directions, front

    names = confirm["objectives"]
    fo = objective_values(fig, names, confirm.get("robust_weight", 1.0))
    fresh = {o: {n: float(g[f"objective_{n}"].mean()) for n in names} for o, g in fo.groupby("order", sort=False)}
    done = [r for r in rows if not r.get("missing")]
    on = front([[fresh[r["order"]][n] for n in names] for r in done], directions(names))
    for i, r in enumerate(done):
        r["objectives"] = fresh[r["order"]]
        r["search_objectives"] = (confirm.get("search_means") or {}).get(r["order"], {}).get("objectives")
        r["on_fresh_front"] = i in on


def headline(c: dict) -> str:
    """One line: the pick's fresh-seed score against its search score, and against F."""
    r = next((x for x in c["orders"] if x["order"] == c["pick"] and not x.get("missing")), None)
    if r is None:
        return f"Confirmation: the search's pick {show(c['pick'])} has no completed fresh-seed trial."
    was = f" (search {r['search_mean']:.4f}, {r['shift']:+.4f})" if r["search_mean"] is not None else ""
    at = f" at {hparams_text(c['variant'], ' at ')}" if c.get("variant") else ""
    text = f"Confirmed on {r['n_seeds']} fresh seed(s){at}: {show(c['pick'])} {r['mean']:.4f}{was}"
    if c.get("objectives"):
        ifs = [x for x in c["orders"] if x["order"] != F and "on_fresh_front" in x]
        text += (f"; {sum(x['on_fresh_front'] for x in ifs)} of {len(ifs)} picked order(s) on the Pareto front "
                 f"({', '.join(c['objectives'])}, test) again")
    vs_f = next((t for t in c["tests"] if t["b"] == F), None)
    if vs_f:
        text += (f"; against F {vs_f['difference']:+.4f}, p = {vs_f['p_holm']:.3g}"
                 f"{' (significant)' if vs_f['significant'] else ' (not significant)'}, Welch, Holm over "
                 f"{len(c['tests'])} pre-registered comparison(s)")
    return text + "."
