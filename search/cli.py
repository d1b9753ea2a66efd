"""The ``itt`` command line: thin wrappers over the library, one clear error line for user mistakes.

Commands: ``itt run CONFIG`` (one chain), ``itt search CONFIG`` (the order search), ``itt space CONFIG``,
``itt mlflow-sync EXPERIMENT_DIR`` (backfill MLflow), ``itt rank CONFIG`` (the transferability prior), ``itt report EXPERIMENT_DIR`` (does order matter?), ``itt ui`` (the MLflow UI), ``itt tasks``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import errno
import logging
import os
import sys
import warnings
from pathlib import Path


# the libraries' chatter (tokenizers' fork warning, Hub progress bars, transformers' warnings) off: here, and
# in every trial (search/trial.py: one on another node does not inherit the driver's environment)
QUIET_ENV = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}


def _quiet() -> None:
    """Library chatter (HF warnings, progress bars) hides the lines a researcher reads."""
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    warnings.filterwarnings("ignore")
    for name in ("transformers", "huggingface_hub", "datasets", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)


def cmd_run(args) -> int:
    from itt.chain import prepare, run_chain
    from itt.config import load_config
    from search.storage import writable_folder

    cfg = load_config(args.config, args.set)
    prepared = prepare(cfg)  # every input is checked here, before any output folder exists
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.name}-{stamp}"
    if (out / "search.yaml").is_file() and (out / "results.csv").is_file():  # (search/runner.py's files)
        raise _usage(f"--out {out}: a search's experiment folder (`itt search` wrote search.yaml and results.csv "
                     f"there; a chain's files would sit among its trials'): give another --out")
    if (out / "results.json").exists() and not args.overwrite:
        raise _usage(f"--out {out}: holds results.json already (pass --overwrite to replace it)")
    writable_folder(out, f"--out {out}")
    from search.progress import ChainView

    with ChainView(args.progress) as view:
        results = run_chain(cfg, out_dir=out, prepared=prepared, progress=view.progress)
    _print_summary(results)
    print(f"results: {out / 'results.json'}  (predictions and checkpoint under {out}/seed*/)")
    return 0


def _json_path(path: str | None) -> None:
    """``--json PATH``: a file path whose folder can be written (checked before the work)."""
    from search.storage import writable_file

    if path:
        writable_file(path, f"--json {path}")


def _check_name(name: str | None) -> None:
    from itt.config import name_problem

    problem = name_problem(name) if name is not None else None
    if problem:
        raise _usage(f"--name {name}: {problem}")


def _print_summary(results: dict) -> None:
    m = results["metric"]
    for split, agg in results["aggregate"].items():
        if split == "perturbation":
            print(f"perturbation ({m} on noisy dev): {agg['score']['mean']:.4f} (drop {agg['drop']['mean']:+.4f})")
            continue
        per = "  ".join(f"{lang} {v[m]['mean']:.4f}" for lang, v in agg["per_language"].items())
        s = agg["summary"][m]
        gap = s["transfer_gap"]["mean"]
        print(f"{split} {m}: {per}")
        print(f"  mean {s['mean']['mean']:.4f} ± {s['mean']['std']:.4f} (seeds)   std over languages {s['std']['mean']:.4f}"
              f"   worst {s['worst']['mean']:.4f}   transfer gap {'-' if gap is None else f'{gap:.4f}'}")
        x = agg.get("xtreme") or {}
        if len(x.get("tasks") or {}) > 1:  # eval.also: the tasks beside the target, and their XTREME average
            tasks = "  ".join(f"{t} {v['mean']:.4f}" for t, v in x["tasks"].items() if v.get("mean") is not None)
            print(f"  XTREME {split} (each task's metric over its languages): {tasks}   average {x['average']['mean']:.4f} "
                  f"± {x['average']['std']:.4f} (seeds)")


def _tracking_flags(args) -> None:
    """--no-tracking with --tracking-uri: the store was ignored without a word (no MLflow run anywhere)."""
    if args.no_tracking and args.tracking_uri:
        raise _usage(f"--no-tracking and --tracking-uri {args.tracking_uri}: give one of them (no MLflow runs, or "
                     "the store to track to)")
    on = [o for o in getattr(args, "set", None) or [] if o.partition("=")[0].strip() in ("search.tracking", "search.tracking.enabled")]
    if args.no_tracking and on:
        raise _usage(f"--no-tracking and --set {on[-1]!r}: give one of them")


def cmd_search(args) -> int:
    from search.runner import run_search

    _check_name(args.name)
    _tracking_flags(args)
    # (--no-tracking first: a --set that breaks the search block is then named as the user's, not as this one)
    overrides = (["search.tracking.enabled=false"] if args.no_tracking else []) + list(args.set)
    run_search(args.config, name=args.name, storage=args.storage, address=args.address, overrides=overrides,
               tracking_uri=args.tracking_uri, progress=args.progress)
    return 0


def cmd_resume(args) -> int:
    from search.runner import resume_search

    resume_search(args.experiment_dir, address=args.address, retry_errored=args.retry_errored, more=args.more,
                  tracking_uri=args.tracking_uri, progress=args.progress)
    return 0


def cmd_mlflow_sync(args) -> int:
    from search.tracking import sync

    sync(args.experiment_dir, args.tracking_uri)
    return 0


def cmd_ui(args) -> int:
    from search.tracking import connect, redact, resolve_uri, server_url, ui_command

    uri = resolve_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://")):  # (its password masked, as wherever the console shows a store)
        print(f"{redact(uri)} is an MLflow server already: open it in a browser")
        _print_search_links(uri, server_url(redact(uri)))
        return 0
    db = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None
    if db is not None and not Path(db).is_file():
        raise _usage(f"no MLflow store at {db} (run `itt search` here first, or pass --tracking-uri)")
    _check_bind(args.host, args.port)
    # a store the server cannot open (a path without sqlite:///, a file that is no database, an unknown scheme):
    # one line here, not the UI's address and then the server's traceback with exit status 1
    client = connect(uri, hint="pass the store `itt search` tracked to, e.g. --tracking-uri sqlite:///mlflow.db")
    base = server_url(uri, host="127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host, port=args.port)
    print(f"MLflow UI: {base}  (store {redact(uri)}; Ctrl-C stops it)", flush=True)
    _print_search_links(uri, base, client)
    # the server's own background job runner serves GenAI features only: off, it starts in half the time
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    return _serve(ui_command(uri, host=args.host, port=args.port), env)


def _check_bind(host: str, port: int) -> None:
    """The address the server will listen on, bound and released here first: a port out of range, one
    in use or a host this machine does not have is one error line instead of the server's traceback or
    its log lines (with exit status 0) after the UI's address was already printed."""
    import socket

    if not 1 <= port <= 65535:
        raise _usage(f"--port {port}: give a port from 1 to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise _usage(f"--host {host}: not an address of this machine ({e.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds (a port in TIME_WAIT is free)
        try:
            s.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise _usage(f"--port {port}: {host}:{port} is in use (another `itt ui` or server?): "
                             "stop it, or pick another port with --port") from None
            raise _usage(f"--host {host}: cannot listen there ({e.strerror})") from None


def _serve(cmd: list[str], env: dict) -> int:
    """Run the server in its own process group (mlflow server and its uvicorn) and take the whole group
    down when this process is told to stop: Ctrl-C, SIGTERM (``kill``, a job scheduler) or SIGHUP (the
    terminal closed). Otherwise a server outlives ``itt ui`` and holds its port."""
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def stop(*_):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop()
        proc.wait()
        raise


def _print_search_links(uri: str, base: str, client=None) -> None:
    """Each search's trials on the runs page (Model training workspace, sorted by score); ``client``: one
    already connected to ``uri``."""
    from search.tracking import connect, error_line, search_links

    try:
        links = search_links(client or connect(uri, hint="start the server, or pass another --tracking-uri"), base)
    except Exception as e:  # the links are a convenience: the UI starts anyway
        print(f"(searches in the store not listed: {error_line(e)})")
        return
    from search.tracking import COMPARE_EXPERIMENT

    searches = [(n, u) for n, u in links if n != COMPARE_EXPERIMENT]
    if searches:
        print("the trials of each search, best score first:")
    for name, link in searches:
        print(f"  {name}: {link}", flush=True)
    for name, link in links:
        if name == COMPARE_EXPERIMENT:
            print(f"comparisons of searches (itt compare): {link}", flush=True)


def cmd_space(args) -> int:
    import random

    from search import plan
    from search.config import load_search, settle_probe_also
    from search.space import order_key

    if args.samples < 0:
        raise _usage(f"--samples {args.samples}: give 0 or more (orders to print)")
    _json_path(args.json)
    scfg, chain, _ = load_search(args.config, args.set)
    settle_probe_also(scfg, chain)  # (as the search will: the pilot's settings are compared with these)
    timing = _timing(args, scfg) if args.from_exp else None  # (read first: a bad --from prints nothing)
    space = scfg.space()
    if scfg.prior_from:  # (as itt search reads them first: an earlier search it cannot use is an error here too)
        from search.transfer import measured_sources

        measured_sources(scfg.prior_from, space)
    by_length = ", ".join("F" if k == 0 else f"{c:,} of length {k}" for k, c in plan.by_length(space) if c)
    print(f"{space.count():,} orders of {len(scfg.candidates)} candidate tasks ({', '.join(scfg.candidates)}), lengths "
          f"{scfg.lengths}" + (f"; include {scfg.include}" if scfg.include else "")
          + (f"; before {scfg.before}" if scfg.before else "") + (f"; last {scfg.last}" if scfg.last else "")
          + f": {by_length}")
    for o in plan.uniform_orders(space, args.samples, random.Random(args.seed)):
        print("  " + (order_key(o) or "(F: empty order)"))
    p = plan.make(scfg, chain)
    h = plan.hour_figures(p, timing) if timing else None
    print("\n".join(plan.count_lines(p) + (plan.hour_lines(p, timing, h, chain) + plan.memory_lines(p, timing)
                                            if timing else [])))
    if args.json:
        import json

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(plan.as_json(p, space, timing, h), indent=1))
        print(f"json: {args.json}")
    if args.heuristic:
        _print_heuristic(args, scfg, chain)
    return 0


def _timing(args, scfg):
    """``--from``'s seconds; with ``--heuristic curriculum`` the experiment may be there for its difficulty
    alone (a simulated search has no seconds): then the hours are left out, not the command."""
    from search import plan

    try:
        timing = plan.timing_from(args.from_exp)
        if not timing.stage and max(scfg.lengths) > 0:  # (an F pilot: each unmeasured task's "median stage" is 0 s)
            raise plan.NoSeconds(f"--from {args.from_exp}: its chains trained no intermediate stage (F only), so "
                                 f"a stage's seconds are unknown: time a chain with one, e.g. `itt run CONFIG --set "
                                 f"order={scfg.candidates[0]}`, or a pilot search")
        return timing
    except plan.NoSeconds:
        if args.heuristic != "curriculum":
            raise
        return None


def _print_heuristic(args, scfg, chain) -> None:
    from search.heuristics import heuristic

    print(f"heuristic {args.heuristic}:")
    h = heuristic(args.heuristic, scfg, chain, from_exp=args.from_exp, log=print)
    print(f"  measured as: {h['source']}")
    for o in h["orders"]:
        print("  order: " + ">".join(o))
    if not h["orders"]:
        print("  no heuristic order satisfies the search space's constraints")
    else:
        print(f"  start a search from it: --set search.seed_points.heuristics=[{args.heuristic}]")


def cmd_rank(args) -> int:
    import json
    import time

    t0 = time.perf_counter()
    from search.config import load_search
    from search.transfer import agreement_text, rank, to_json

    if args.top < 1:
        raise _usage(f"--top {args.top}: give 1 or more")
    if args.sample < 2:
        raise _usage(f"--sample {args.sample}: give 2 or more")
    _json_path(args.json)
    scfg, chain, _ = load_search(args.config, args.set)
    froms = [d.strip() for a in args.from_exp or [] for d in a.split(",") if d.strip()]
    res = rank(scfg, chain, from_exp=froms, sample=args.sample, top=args.top)
    m = res["measurements"]
    tgt = m["target"]
    print(f"transferability to {tgt['task']} ({', '.join(tgt['languages'])}; {tgt['split']} text), on the config's "
          f"initial encoder, {m['sample']} examples per task, seed {m['seed']}"
          + (f"; target LogME {tgt['logme']:.4f}" if tgt.get("logme") is not None else f"; {tgt.get('note', '')}"))

    def f(v, spec):
        return "-" if v is None else format(v, spec)

    w = max(len(t) for t in m["tasks"])
    print(f"  {'task':<{w}}  {'LogME':>8}  {'transfer':>9}  {'similarity':>10}  {'score':>7}")
    for t, v in sorted(m["tasks"].items(), key=lambda kv: -kv[1]["score"]):
        note = f"  ({v['note']})" if v.get("note") else ""
        print(f"  {t:<{w}}  {f(v['logme'], '8.4f')}  {f(v['transfer'], '+9.4f')}  {f(v['similarity'], '10.4f')}  "
              f"{v['score']:+7.3f}{note}")
    several = "sources" in res
    if several:
        print("calibrated on " + "; ".join(f"{s['measured']} measured order(s) of {s['from']}" for s in res["sources"])
              + ": each standardised over the space, at equal weights (a search reweighs them by how well each "
              "ranks its own scores)")
        print(f"a search with search.prior_from={','.join(res['from'])} and prior: transferability starts from: "
              f"{', '.join(res['first_orders'])} (each earlier search's best, in turn)")
    elif res["from"]:
        c = res["prior"].calib
        print(f"calibrated on {res['measured']} measured order(s) of {res['from']}: score = {c['a']:.4f} + {c['b']:.4f} "
              "x prior + per-task effects; measured orders keep their measured mean")
    for a in res["agreement"]:  # the uncalibrated prior against what each earlier search measured
        print(agreement_text(a, f"that {a['from']} completed (their searched score)"))
    scale = (" (z units over the space)" if several else " (score on the metric's scale)" if res["from"] else
             " (prior score: z units, F = 0)")
    print(f"top {len(res['orders'])} of {res['count']} orders{scale}:")
    for i, o in enumerate(res["orders"], 1):
        print(f"  {i:>3}. {o['order'] or '(F: empty order)'}  {o['score']:+.4f}" + ("  measured" if o["measured"] else ""))
    print(f"cost: {time.perf_counter() - t0:.1f} s wall-clock, of which {m['seconds']:.1f} s measuring on the encoder "
          "(data, tokenizer, forward passes, LogME)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(to_json(res), indent=1))
        print(f"json: {args.json}")
    print("use it in a search: --set search.prior=transferability  (and/or search.seed_points.heuristics=[transferability])")
    return 0


def cmd_report(args) -> int:
    from search.report import make_report

    make_report(args.experiment_dir, out=args.out, alpha=args.alpha, tracking_uri=args.tracking_uri,
                mlflow=not args.no_mlflow, heuristics=not args.no_heuristics, tex_top=args.tex_top)
    return 0


def cmd_confirm(args) -> int:
    from search.confirm import parse_vary, run_confirm

    _check_name(args.name)
    _tracking_flags(args)
    seeds = _seeds(args.seeds) if args.seeds else None
    run_confirm(args.experiment_dir, top=_top(args.top), seeds=seeds, name=args.name, storage=args.storage,
                address=args.address, tracking_uri=args.tracking_uri, no_tracking=args.no_tracking,
                progress=args.progress, dry_run=args.dry_run, hparams=args.hparams, vary=parse_vary(args.vary),
                add=args.add)
    return 0


def _top(text: str) -> int | str:
    """``itt confirm --top``: a count, or ``set``."""
    if text == "set":
        return text
    try:
        return int(text)
    except ValueError:
        raise _usage(f"--top {text}: give a number of orders, or 'set' (the orders that could be best)") from None


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise _usage(f"--seeds {text}: give integers separated by commas (e.g. 10,11,12)") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise _usage(f"--seeds {text}: give distinct integers separated by commas")
    from itt.config import checked_seeds

    try:
        return checked_seeds(seeds)
    except ValueError as e:
        raise _usage(f"--seeds {text}: {e}") from None


def cmd_compare(args) -> int:
    from search.compare import make_compare

    make_compare(args.experiment_dirs, out=args.out, figure=args.figure, alpha=args.alpha,
                 tracking_uri=args.tracking_uri, mlflow=not args.no_mlflow)
    return 0


def cmd_power(args) -> int:
    from search.power import SEEDS, make_power

    make_power(args.experiment_dir, seeds=_seeds(args.seeds) if args.seeds else SEEDS, orders=args.orders,
               figure=args.figure, reps=args.reps, alpha=args.alpha, seed_sd=args.seed_sd, spread=args.spread,
               json_out=args.json)
    return 0


def cmd_tasks(args) -> int:
    from itt.tasks import registered

    rows = [(t.name, t.kind, t.metric, ",".join(t.languages), t.description) for t in registered().values()]
    w = [max(len(r[i]) for r in rows + [("task", "kind", "metric", "languages", "")]) for i in range(4)]
    print(f"{'task':<{w[0]}}  {'kind':<{w[1]}}  {'metric':<{w[2]}}  {'languages':<{w[3]}}")
    for r in rows:
        print(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]:<{w[3]}}  {r[4]}")
    return 0


class _UsageError(Exception):
    pass


def _usage(msg: str) -> _UsageError:
    return _UsageError(msg)


def _at_least_one(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"give a whole number of trials, 1 or more (got {text!r})")
    return n


ADDRESS_HELP = ("Ray cluster: HOST:PORT of the head, auto (on a cluster node), ray://HOST:PORT, or local (a private "
                "Ray); default: $RAY_ADDRESS, else the cluster `ray start` runs on this machine, else a private Ray")


def _progress_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", choices=["auto", "live", "plain", "off"], default="auto",
                   help="what the running trials are doing: live (a table redrawn in place), plain (timestamped "
                        "lines), off; auto: live on a terminal, plain otherwise (default)")


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line, as every other bad input: ``error: itt resume: argument --more:
    ... (itt resume --help says more)``, exit 2 (argparse printed its usage block before the error). Its
    subcommands' parsers are of this class too (add_subparsers takes the parser's own)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} ({self.prog} --help says more)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="itt", description="Intermediate-task order search for zero-shot cross-lingual transfer.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run one chain: intermediate tasks in order, target fine-tune, zero-shot eval")
    r.add_argument("config", help="chain config (YAML)")
    r.add_argument("--out", help="output folder (default: runs/<name>-<time>)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set order=mnli,sst2 --set train.lr=3e-5")
    r.add_argument("--overwrite", action="store_true", help="replace results in an existing --out folder")
    r.add_argument("--progress", choices=["auto", "live", "plain", "off"], default="auto",
                   help="where the chain is within a stage: live (a bar with steps, loss, steps/s and time left), "
                        "plain (a timestamped line every 30 s of a stage), off; auto: live on a terminal, plain "
                        "otherwise (default)")
    r.set_defaults(fn=cmd_run)
    s = sub.add_parser("search", help="search the order space on Ray Tune (Optuna proposes, ASHA stops early)")
    s.add_argument("config", help="config with a `search:` block")
    s.add_argument("--name", help="experiment name (default: the config's name)")
    s.add_argument("--storage", help="folder or shared path holding experiments (default: ./runs)")
    s.add_argument("--address", help=ADDRESS_HELP)
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    s.add_argument("--tracking-uri", help="MLflow store (default: search.tracking.tracking_uri, $MLFLOW_TRACKING_URI, "
                                          "sqlite:///mlflow.db)")
    s.add_argument("--no-tracking", action="store_true", help="no MLflow runs (the experiment keeps tracking/ for "
                                                               "`itt mlflow-sync`)")
    _progress_flag(s)
    s.set_defaults(fn=cmd_search)
    rs = sub.add_parser("resume", help="continue an interrupted search (driver killed, Ctrl-C, reboot): finished "
                                       "trials are kept, unfinished ones continue from their last finished stage")
    rs.add_argument("experiment_dir", help="the search's experiment directory (<storage>/<name>, or its URI)")
    rs.add_argument("--retry-errored", action="store_true", help="run errored trials again too")
    rs.add_argument("--more", type=_at_least_one, default=0, metavar="N",
                    help="N trials more, finished search or not (beyond its num_samples, or beyond the trials it "
                         "ran where it stopped itself): the searcher goes on from everything it has seen")
    rs.add_argument("--address", help=ADDRESS_HELP)
    rs.add_argument("--tracking-uri", help="MLflow store (default: the one the search used)")
    _progress_flag(rs)
    rs.set_defaults(fn=cmd_resume)
    ms = sub.add_parser("mlflow-sync", help="backfill MLflow from an experiment directory (no duplicates)")
    ms.add_argument("experiment_dir", help="the search's experiment directory (<storage>/<name>, or its URI)")
    ms.add_argument("--tracking-uri", help="MLflow store (default: the one the search used, else sqlite:///mlflow.db)")
    ms.set_defaults(fn=cmd_mlflow_sync)
    u = sub.add_parser("ui", help="the MLflow UI on a search store (mlflow server bound to 127.0.0.1)")
    u.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    u.add_argument("--port", type=int, default=5000)
    u.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    u.set_defaults(fn=cmd_ui)
    sp = sub.add_parser("space", help="the orders of a config's search space (how many, a few drawn at random) and what "
                                      "the search will cost (stage-trainings; hours with --from)")
    sp.add_argument("config")
    sp.add_argument("--samples", type=int, default=5, help="orders to print, drawn uniformly (default 5)")
    sp.add_argument("--seed", type=int, default=0, help="seed of that draw (default 0)")
    sp.add_argument("--json", metavar="PATH", help="also write the plan's figures here (counts; seconds with --from)")
    sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sp.add_argument("--heuristic", choices=["curriculum", "similarity", "transferability"],
                    help="also print the heuristic order per length: curriculum (easy to hard), similarity "
                         "(least to most similar to the target) or transferability (the prior's best, as itt rank)")
    sp.add_argument("--from", dest="from_exp", metavar="EXPERIMENT_DIR",
                    help="an earlier search on the same hardware and settings (a pilot): the hours this search takes "
                         "at the seconds its trials measured; with --heuristic curriculum also task difficulty from "
                         "its single-task orders (default: a short single-task training run of each task)")
    sp.set_defaults(fn=cmd_space)
    rk = sub.add_parser("rank", help="a transferability prior: LogME and text-embedding similarity of each candidate "
                                     "task on the config's encoder, and the orders it rates best (seconds, no training)")
    rk.add_argument("config", help="config with a `search:` block")
    rk.add_argument("--from", dest="from_exp", metavar="EXPERIMENT", action="append",
                    help="a finished search: calibrate the prior on its measured scores (measured orders keep theirs); "
                         "several (--from A --from B, or A,B): each calibrated, combined as search.prior_from does")
    rk.add_argument("--top", type=int, default=10, help="how many orders to print (default 10)")
    rk.add_argument("--sample", type=int, default=256, help="examples per task (default 256)")
    rk.add_argument("--json", metavar="PATH", help="also write everything to this JSON file")
    rk.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    rk.set_defaults(fn=cmd_rank)
    rp = sub.add_parser("report", help="does order matter? statistics, plots and heuristics for a finished search "
                                       "(report.html, report.md, report.json, report.tex, PNGs; logged to the search's MLflow run)")
    rp.add_argument("experiment_dir", help="the search's experiment directory (<storage>/<name>, or its URI)")
    rp.add_argument("--out", help="write the report here (default: <experiment_dir>/report/)")
    rp.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    rp.add_argument("--tracking-uri", help="MLflow store (default: the one the search used)")
    rp.add_argument("--no-mlflow", action="store_true", help="do not log the report to MLflow")
    rp.add_argument("--no-heuristics", action="store_true",
                    help="skip the heuristic orders (they load the config's data for the similarity measure)")
    rp.add_argument("--tex-top", type=int, default=10, help="IF orders in report.tex's table, after F (default 10)")
    rp.set_defaults(fn=cmd_report)
    cf = sub.add_parser("confirm", help="the search's best orders (and F) again on fresh seeds, in a new experiment "
                                        "<name>-confirm: their scores without the winner's curse, and a report")
    cf.add_argument("experiment_dir", help="a finished search (<storage>/<name>, or its URI)")
    cf.add_argument("--top", default="3", help="how many of its best orders to confirm (default 3), or 'set': "
                                                    "the orders that could be best (the report's 95%% credible set)")
    cf.add_argument("--seeds", help="fresh seeds, comma-separated (default: as many as the search used, at least 5, "
                                    "numbered after its largest)")
    cf.add_argument("--name", help="experiment name (default: <name>-confirm)")
    cf.add_argument("--storage", help="where the new experiment goes (default: beside the search)")
    cf.add_argument("--address", help=ADDRESS_HELP)
    cf.add_argument("--tracking-uri", help="MLflow store (default: the one the search used)")
    cf.add_argument("--no-tracking", action="store_true", help="no MLflow runs")
    cf.add_argument("--hparams", choices=["own", "first"], default="own",
                    help="a search that tuned hyperparameters: each order with its trial's (own, the default: the "
                         "configurations the search found) or all with the first pick's (first: only the order differs)")
    cf.add_argument("--vary", action="append", metavar="KEY=V1,V2",
                    help="is the best order robust to a hyperparameter? the same orders and fresh seeds again at each "
                         "value (one experiment <name>-confirm-KEY=V each), then itt compare over them; repeatable, "
                         "one key varied at a time (e.g. --vary finetune.lr=1e-5,5e-5)")
    cf.add_argument("--add", action="append", metavar="ORDER",
                    help="also confirm this order of the search's space, e.g. one it did not finish that the report "
                         "says could beat the pick (a>b; repeatable; with the first pick's hyperparameters)")
    cf.add_argument("--dry-run", action="store_true", help="print what would run (orders, seeds, config) and stop")
    _progress_flag(cf)
    cf.set_defaults(fn=cmd_confirm)
    cp = sub.add_parser("compare", help="do orders hold up across searches (targets, encoders)? agreement of their "
                                        "order rankings and the order to use for all of them (compare.html, .md, .json, .tex)")
    cp.add_argument("experiment_dirs", nargs="+", metavar="EXPERIMENT_DIR",
                    help="two or more finished searches (<storage>/<name>, or their URIs)")
    cp.add_argument("--out", default="compare", help="write the comparison here (default: ./compare)")
    cp.add_argument("--figure", default="mean",
                    help="per-seed figure compared: mean over languages (default), worst (the worst language), "
                         "or lang:CODE (one language's score, e.g. lang:sw)")
    cp.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    cp.add_argument("--tracking-uri", help="MLflow store (default: the one the searches used)")
    cp.add_argument("--no-mlflow", action="store_true", help="do not log the comparison to MLflow")
    cp.set_defaults(fn=cmd_compare)
    pw = sub.add_parser("power", help="how many seeds does the next search need? power of the order test, the chance "
                                      "of picking the truly best order and its regret, from a pilot search's noise")
    pw.add_argument("experiment_dir", nargs="?", help="a finished pilot search with 2+ seeds on some IF orders "
                                                       "(or give --seed-sd, --spread and --orders instead)")
    pw.add_argument("--seed-sd", type=float, help="without a pilot: the sd of an order's score over seeds")
    pw.add_argument("--spread", type=float, help="without a pilot: the sd of the orders' true scores")
    pw.add_argument("--seeds", help="seed counts to plan for, comma-separated (default 3,5,8,10)")
    pw.add_argument("--orders", type=int, help="IF orders the planned search completes (default: as many as the pilot)")
    pw.add_argument("--figure", default="mean", choices=["mean", "worst"],
                    help="per-seed figure: mean over languages (default; the report's primary test) or worst language")
    pw.add_argument("--reps", type=int, default=1000, help="simulated searches per seed count (default 1000)")
    pw.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    pw.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    pw.set_defaults(fn=cmd_power)
    t = sub.add_parser("tasks", help="list every registered task with its kind, metric and languages")
    t.set_defaults(fn=cmd_tasks)
    return p


def main(argv: list[str] | None = None) -> int:
    _quiet()
    args = build_parser().parse_args(argv)
    from itt.errors import RunFailed, UserError

    try:
        rc = args.fn(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return rc
    except (UserError, _UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        from search.storage import abandoned_requests

        if abandoned_requests():  # an object store that did not answer: exit now, not after its client's retries
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except RunFailed as e:  # it ran, but no trial finished (not a usage error: exit status 1)
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # a search says how to resume it (search.runner.SearchInterrupted)
        print(str(e) or "interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `itt report ... | head`: the reader left; no traceback (Python's signal docs)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
