"""One chain: intermediate tasks in order → target fine-tune → zero-shot evaluation per language.

``run_chain(cfg, out_dir=..., report=...)`` is the whole job. It knows nothing of any search: it
calls ``report(metrics, step)`` after each stage (step = stage index, 1-based) and once at the end;
the search layer adapts that callback to Ray Tune. Everything that can be wrong with the inputs is
checked in :func:`prepare` before any training starts.

>>> from itt.config import load_config                                   # doctest: +SKIP
>>> results = run_chain(load_config("configs/quickstart.yaml"), out_dir="runs/q")  # doctest: +SKIP
>>> results["aggregate"]["test"]["summary"]["accuracy"]["mean"]["mean"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from itt import metrics as M
from itt import toy
from itt.config import ChainConfig
from itt.data import load_split
from itt.errors import UserError
from itt.kinds import EvalContext, handler
from itt.models import (build_encoder, check_model, hidden_size, load_tokenizer, pooling_for, save_checkpoint, train_tokenizer,
                        use_gradient_checkpointing)
from itt.noise import perturb_dataset
from itt.tasks import Kind, Task, normalization_problem, resolve_task
from itt.train import deterministic, hardware_record, make_accelerator, train_stage

Report = Callable[[dict, int], None]
# ``progress(event)``: where the chain is, as often as every optimizer step; ``event`` holds ``phase``
# (stage | probe | target | eval), ``stage`` and ``stages`` (i of k, the target fine-tune being k),
# ``task``, ``seed``, ``seed_index`` and ``seeds``, and while training ``step``, ``total`` and ``loss``
# (a 0-d tensor: reading it waits for the device). Unlike ``report`` it decides nothing: a search
# throttles it and shows it (search/progress.py).
Progress = Callable[[dict], None]


def _noop_report(metrics: dict, step: int) -> None:
    pass


def _with_seed(progress: Progress | None, seed: int, index: int, n: int) -> Progress | None:
    if progress is None:
        return None
    return lambda ev: progress({**ev, "seed": seed, "seed_index": index, "seeds": n})


def _phase(progress: Progress | None, **fields) -> Progress | None:
    """``progress`` with the current phase's fields added to each event (None stays None)."""
    if progress is None:
        return None
    progress(fields)  # the phase starts (an eval, or a cached stage, sends nothing else)
    return lambda ev: progress({**fields, **ev})


@dataclass
class Prepared:
    """Everything a chain needs that does not depend on the seed: tasks, data, tokenizer."""

    cfg: ChainConfig
    order: list[Task]
    target: Task
    languages: list[str]
    train: dict[str, object]  # task name -> tokenized train split
    eval: dict[tuple[str, str], object] = field(default_factory=dict)  # (split, lang) -> raw dataset
    eval_tok: dict[tuple[str, str], object] = field(default_factory=dict)
    noisy: dict[str, tuple] = field(default_factory=dict)  # lang -> (noisy dev dataset, tokenized)
    tokenizer: object = None
    probe: dict[str, tuple] = field(default_factory=dict)  # lang -> (dev dataset, tokenized)
    probe_also: dict[str, dict] = field(default_factory=dict)  # probe.also: task -> {lang: (dev dataset, tokenized)}
    also: dict[str, tuple] = field(default_factory=dict)  # eval.also: task name -> (task, {(split, lang): dataset})
    also_train: dict[str, object] = field(default_factory=dict)  # eval.also tasks that are fine-tuned: tokenized train
    also_tok: dict[tuple[str, str, str], object] = field(default_factory=dict)  # (task, split, lang) -> eval features
    fingerprints: dict[str, str] = field(default_factory=dict)  # stage-cache key parts, computed once (itt/cache.py)


def prepare(cfg: ChainConfig, log=print) -> Prepared:
    """Load and validate every split and build the tokenizer; raises UserError before any training."""
    specs = cfg.tasks
    order = [resolve_task(n, specs) for n in cfg.order]
    target = resolve_task(cfg.target.task, specs)
    languages = list(cfg.target.languages or target.languages)
    said: set[str] = set()  # (the probe reloads a dev split eval also loads: each warning once)
    warn = lambda line: None if line in said else (said.add(line), log(line))  # noqa: E731
    kw = dict(data_root=cfg.data_root, toy_options=cfg.toy, seed=cfg.data_seed, warn=warn)
    raw_train = {t.name: load_split(t, "train", t.languages[0], max_examples=cfg.stage_hparams(t.name).max_examples, **kw)
                 for t in order}
    if target.trains:
        raw_train[target.name] = load_split(target, "train", target.languages[0],
                                            max_examples=cfg.stage_hparams(None).max_examples, **kw)
    ev = {(s, lang): load_split(target, s, lang, max_examples=cfg.eval.max_examples, **kw)
          for s in cfg.eval.splits for lang in languages}
    also, also_train = _load_also(cfg, target, kw)
    pert = cfg.eval.perturbation
    if pert.enabled and "dev" not in cfg.eval.splits:
        raise UserError("eval.perturbation needs 'dev' in eval.splits")
    if pert.enabled and target.kind not in Kind.CLASSIFICATION:
        raise UserError(f"eval.perturbation: noisy text is defined for classification targets only, not "
                        f"'{target.kind}' (noise would move answer spans and word/tag alignments)")

    m = cfg.model
    tokenizer = _tokenizer(cfg, [t for t in (*order, target) if t.name in raw_train], raw_train, ev, target, also,
                           also_train)
    config = None
    if m.name is not None:
        # a wrong model name (or one without the asked-for checkpointing, or shorter inputs than the config's
        # max_length) fails here, before any output exists
        config = check_model(m, cfg.hardware.gradient_checkpointing, longest=_longest_input(cfg, order, target, also),
                             tokenizer=tokenizer)
    if cfg.eval.retrieval.layer is not None and _evaluates_retrieval(target, also):
        from itt.kinds.retrieval import layer_index, n_layers

        # (checked after the chain's training, it failed each chain -- each trial of a search -- at its end)
        layer_index(m.tiny.num_layers if config is None else n_layers(config), cfg.eval.retrieval.layer)

    p = Prepared(cfg, order, target, languages, train={}, eval=ev, tokenizer=tokenizer, also=also)
    hp_t = cfg.stage_hparams(None)
    th = handler(target.kind)
    for lang in cfg.probe.languages or []:  # (checked with the probe off too: a search turns it on)
        if lang not in target.languages:
            raise UserError(f"probe.languages: unknown language '{lang}' for task '{target.name}'")
    if cfg.probe.enabled:  # (in the target's languages that have a dev split: XTREME's UD-POS lacks 4)
        langs = [lang for lang in cfg.probe.languages or languages if target.source("dev", lang)]
        if not langs:
            raise UserError(f"probe: target task '{target.name}' has no dev split in "
                            f"{', '.join(cfg.probe.languages or languages)} to probe on (probe.languages)")
        p.probe = _probe_sets(cfg, target, langs, hp_t, tokenizer, kw)
        if cfg.probe.also:
            p.probe_also = _probe_also_sets(cfg, also, tokenizer, kw)
    for t in [*order, target]:
        if t.name in raw_train:  # each kind its own features (windows, first subwords, options)
            hp = cfg.stage_hparams(t.name if t is not target else None)
            p.train[t.name] = handler(t.kind).featurize(raw_train[t.name], t, tokenizer, hp, train=True)
    for key, ds in ev.items():
        p.eval_tok[key] = th.featurize(ds, target, tokenizer, hp_t, train=False)
    for name, raw in also_train.items():  # eval.also tasks that are fine-tuned: featurized as the target is
        t, sets = also[name]
        h, hp = handler(t.kind), cfg.also_hparams(name)
        p.also_train[name] = h.featurize(raw, t, tokenizer, hp, train=True)
        p.also_tok.update({(name, *key): h.featurize(ds, t, tokenizer, hp, train=False) for key, ds in sets.items()})
    if pert.enabled:
        for lang in languages:
            ds = perturb_dataset(ev[("dev", lang)], target.fields, char_rate=pert.char_rate,
                                 word_rate=pert.word_rate, seed=pert.seed)
            p.noisy[lang] = (ds, th.featurize(ds, target, tokenizer, hp_t, train=False))
    return p


def _probe_also_sets(cfg: ChainConfig, also: dict, tokenizer, kw: dict) -> dict[str, dict]:
    """``probe.also``: each eval.also task's dev split in its eval languages, capped as the target's probe
    sets are; a task without a dev split in any of them is an error (the probe's average would drop it)."""
    out = {}
    for name, (t, _sets) in also.items():
        langs = [lang for lang in (cfg.eval.also[name] or t.languages) if t.source("dev", lang)]
        if not langs:
            raise UserError(f"probe.also: eval.also task '{name}' has no dev split to probe on")
        out[name] = _probe_sets(cfg, t, langs, cfg.also_hparams(name), tokenizer, kw)
    return out


def _probe_sets(cfg: ChainConfig, task: Task, langs, hp, tokenizer, kw: dict) -> dict[str, tuple]:
    """A task's probe sets: its dev split in each of ``langs`` (capped at probe.max_eval_examples), featurized."""
    h, out = handler(task.kind), {}
    for lang in langs:
        ds = load_split(task, "dev", lang, max_examples=cfg.probe.max_eval_examples, **kw)
        out[lang] = (ds, h.featurize(ds, task, tokenizer, hp, train=False))
    return out


def _load_also(cfg: ChainConfig, target: Task, kw: dict) -> tuple[dict, dict]:
    """eval.also's tasks, checked and loaded: name -> (task, {(split, language): dataset}) for every split
    of eval.splits it has in its languages, and name -> its English train data for those it fine-tunes
    (as the target is, with the ``finetune`` hyperparameters)."""
    also, also_train = {}, {}
    for name, langs in cfg.eval.also.items():
        t = resolve_task(name, cfg.tasks, "eval.also")
        if t.name == target.name:
            raise UserError(f"eval.also: '{name}' is the target itself (eval.also names the tasks beside it)")
        bad = [lang for lang in (langs or []) if lang not in t.languages]
        if bad:
            raise UserError(f"eval.also.{name}: unknown language '{bad[0]}' (known: {', '.join(t.languages)})")
        problem = normalization_problem(t, langs or t.languages)
        if problem:
            raise UserError(f"eval.also.{name}: {problem}")
        splits = [sp for sp in cfg.eval.splits if any(t.source(sp, lang) for lang in (langs or t.languages))]
        if not splits:
            raise UserError(f"eval.also.{name}: the task has none of the splits {cfg.eval.splits}")
        also[t.name] = (t, {(sp, lang): load_split(t, sp, lang, max_examples=cfg.eval.max_examples, **kw)
                            for sp in splits for lang in (langs or t.languages) if t.source(sp, lang)})
        if t.trains:
            also_train[t.name] = load_split(t, "train", t.languages[0],
                                            max_examples=cfg.also_hparams(t.name).max_examples, **kw)
    return also, also_train


def _tokenizer(cfg: ChainConfig, tasks: list[Task], raw_train: dict, ev: dict, target: Task, also: dict,
               also_train: dict):
    """The chain's tokenizer: pretrained, or fitted on the fly. The toy benchmark fits it to its lexicon
    (its stand-in for a multilingual pretraining corpus), so the vocabulary never depends on which
    splits or caps a config picks; other data fits it to all loaded text (``tasks``' train data and
    every evaluation set: the only text there is in the target languages, much as mBERT's vocabulary
    saw every language)."""
    m = cfg.model
    if m.train_tokenizer is None:
        return load_tokenizer(m.tokenizer or m.name, revision=m.revision, trust_remote_code=m.trust_remote_code)
    fine_tuned = [(also_train[n], also[n][0]) for n in also_train]
    if tasks and all(t.source("train", t.languages[0]).toy for t in tasks + [t for _, t in fine_tuned]):
        texts = toy.corpus(cfg.toy)
    else:
        texts = []
        evals = [(d, target) for d in ev.values()] + [(d, t) for t, sets in also.values() for d in sets.values()]
        for ds, task in [(raw_train[t.name], t) for t in tasks] + fine_tuned + evals:
            for f in task.fields:  # (token lists and answer options are text too)
                texts.extend(" ".join(x) if isinstance(x, list) else x for x in ds[f])
    return train_tokenizer(texts, arch=m.tiny.arch, vocab_size=m.train_tokenizer.vocab_size)


def _write_predictions(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _score(p: Prepared, accelerator, model, sets: dict[str, tuple], out: Path | None, name: str,
           split: str = "dev", state: dict | None = None) -> dict:
    """Target metrics per language on ``{lang: (dataset, features)}``; predictions written to
    ``out/predictions/<name>.<lang>.jsonl`` when ``out`` is given."""
    h = handler(p.target.kind)
    ctx = EvalContext(accelerator, p.tokenizer, p.cfg, p.target, split, state if state is not None else {})
    per_lang = {}
    for lang, (ds, feats) in sets.items():
        per_lang[lang], rows = h.evaluate(ctx, model, ds, feats, lang)
        if out is not None and accelerator.is_main_process:
            _write_predictions(out / "predictions" / f"{name}.{lang}.jsonl", rows)
    return per_lang


def _evaluate(p: Prepared, accelerator, model, out: Path | None) -> dict:
    """Per-language metrics, their robustness summary and the XTREME score for every eval split."""
    task = p.target
    res: dict = {}
    state: dict = {}  # BUCC: the dev threshold carries over to test
    for split in p.cfg.eval.splits:
        sets = {lang: (p.eval[(split, lang)], p.eval_tok[(split, lang)]) for lang in p.languages}
        per_lang = _score(p, accelerator, model, sets, out, split, split, state)
        res[split] = {"per_language": per_lang,
                      "summary": {m: M.summary({lang: per_lang[lang][m] for lang in per_lang}) for m in task.metrics},
                      "xtreme": xtreme_scores(task, per_lang)}
    return res


def _evaluate_also(p: Prepared, accelerator, encoder, pooling: str, hid: int, out: Path | None, *, seed: int,
                   log=print, progress: Progress | None = None) -> dict:
    """``eval.also``: the tasks beside the target, on the encoder the intermediate stages produced (as
    Phang et al. evaluate each intermediate task on every XTREME task). A retrieval task is evaluated on
    the bare encoder; any other task fine-tunes a fresh head on a *copy* of it, on its English train data
    with the target's seed and ``finetune`` hyperparameters (``stages.<task>`` on top), and is evaluated
    zero-shot per split and language: the numbers a chain of the same order with that task as its target
    gives. The encoder itself is left as it was, so the target's numbers do not depend on what else is
    evaluated. (A random-init ``tiny`` encoder sizes its position table to the longest ``max_length`` it
    will see, which changes its initial weights: there both hold where the tasks' lengths agree.)
    Predictions go to ``predictions/<task>.<split>.<lang>.jsonl``."""
    import copy

    from accelerate.utils import set_seed

    res: dict = {}
    k = len(p.order) + 1
    for name, (task, sets) in p.also.items():
        h = handler(task.kind)
        fit = None
        if task.trains:
            fine_seed = seed * 1000 + k  # the target fine-tune's seed: the numbers of a chain with this task as target
            set_seed(fine_seed)
            model = h.model(copy.deepcopy(encoder), task, hidden=hid, pooling=pooling, seed=fine_seed)
            log(f"[seed {seed}] {name} (eval.also: fine-tuned beside the target)")
            _trace("also", prefix=[t.name for t in p.order], task=name, seed=seed)
            fit = train_stage(accelerator, model, p.also_train[name], p.tokenizer, task, p.cfg.also_hparams(name),
                              seed=fine_seed, hw=p.cfg.hardware, log=log,
                              progress=_phase(progress, phase="also", stage=k, stages=k, task=name)).as_dict()
        else:
            model = h.model(encoder, task, hidden=hid, pooling=pooling, seed=0)
        _phase(progress, phase="eval", stage=k, stages=k, task=name)
        state: dict = {}  # BUCC: the dev threshold carries over to test
        for split in p.cfg.eval.splits:
            langs = [lang for (sp, lang) in sets if sp == split]
            if not langs:
                continue
            ctx = EvalContext(accelerator, p.tokenizer, p.cfg, task, split, state)
            per_lang = {}
            for lang in langs:
                ds = sets[(split, lang)]
                key = (name, split, lang)  # (retrieval: embedded at evaluation time, nothing prepared)
                feats = p.also_tok[key] if key in p.also_tok else h.featurize(ds, task, p.tokenizer, None, train=False)
                per_lang[lang], rows = h.evaluate(ctx, model, ds, feats, lang)
                if out is not None and accelerator.is_main_process:
                    _write_predictions(out / "predictions" / f"{name}.{split}.{lang}.jsonl", rows)
            res.setdefault(name, {})[split] = {
                "per_language": per_lang,
                "summary": {m: M.summary({lang: per_lang[lang][m] for lang in per_lang}) for m in task.metrics},
                "xtreme": xtreme_scores(task, per_lang)}
        if fit is not None:
            res.setdefault(name, {})["fine_tune"] = fit
        del model
    return res


def xtreme_scores(task: Task, per_lang: dict[str, dict]) -> dict:
    """XTREME's task score (evaluate.py's ``avg_metric``): the mean over languages of the task's metric,
    (EM + F1) / 2 for QA. ``average`` is the XTREME average over the tasks this result holds."""
    vals = {lang: M.xtreme_value(m, task.xtreme_metric) for lang, m in per_lang.items()}
    score = float(np.mean(list(vals.values()))) if vals else None
    return {"metric": task.xtreme_metric, "per_language": vals, "tasks": {task.name: score}, "average": score}


def run_seed(p: Prepared, seed: int, *, accelerator=None, report: Report = _noop_report, out: Path | None = None,
             log=print, cache=None, progress: Progress | None = None) -> dict:
    """Train and evaluate the chain with one seed; returns its results (also reported at the end)."""
    gen = _seed_steps(p, seed, accelerator=accelerator, out=out, log=log, cache=cache,
                      progress=_with_seed(progress, seed, 0, 1))
    while True:
        try:
            metrics, step = next(gen)
        except StopIteration as stop:
            return stop.value
        report(metrics, step)


def _seed_steps(p: Prepared, seed: int, *, accelerator=None, out: Path | None = None, log=print, cache=None,
                progress: Progress | None = None):
    """The chain of one seed as a generator: yields ``(metrics, step)`` after every stage and at the
    end, and returns the seed's results. Several seeds can so advance in lockstep. With a
    :class:`itt.cache.StageCache`, a prefix trained before (by any chain) is loaded instead of trained,
    and reported with the figures it had then, so a scheduler sees the same numbers."""
    accelerator = accelerator or make_accelerator(p.cfg.hardware)
    t0 = time.perf_counter()
    r = _start_seed(p, seed, accelerator, cache, log, progress)
    stages, trained_secs = [], 0.0  # (the seconds of the stages this chain trained, not those from the cache)
    try:
        for i, task in enumerate(p.order, start=1):  # intermediate stages, in order; each with a fresh head
            stage, metrics, trained = _intermediate_stage(r, i, task)
            stages.append(stage)
            trained_secs += metrics["stage_seconds"] if trained else 0.0
            yield metrics, i
    finally:
        if r.sc is not None:
            r.sc.close()
    res, model, also = _target_stage(r, stages, out)
    res["seconds"] = time.perf_counter() - t0
    if out is not None and p.cfg.save_checkpoint and r.accelerator.is_main_process:
        save_checkpoint(out / "checkpoint", r.accelerator.unwrap_model(r.encoder), p.tokenizer, getattr(model, "head", None),
                        meta={"order": p.cfg.order, "target": p.target.name, "seed": seed, "pooling": r.pooling})
    sc = r.sc
    counts = {"stages_trained": sc.trained if sc else len(p.order), "stages_from_cache": sc.from_cache if sc else 0,
              "cache_seconds_saved": sc.seconds_saved if sc else 0.0, "trained_seconds": trained_secs}
    res["cache"] = counts
    tokens = chain_tokens(stages, also or {})
    yield {**flat_final(res, p.target.metric), **counts, **({"chain_tokens": tokens} if tokens else {}), "final": 1}, r.k
    return res


@dataclass
class _SeedRun:
    """One seed's chain between its steps: the encoder (the only thing that passes from stage to stage),
    how it pools, and the stage cache as this seed uses it (None without a cache, or for F)."""

    p: Prepared
    seed: int
    accelerator: object
    encoder: torch.nn.Module
    pooling: str
    hid: int
    sc: object
    log: Callable
    progress: Progress | None

    @property
    def k(self) -> int:
        """The chain's stages: its intermediate tasks and the target fine-tune."""
        return len(self.p.order) + 1


def _longest_input(cfg, order: list[Task], target: Task, also: dict) -> tuple[int, str]:
    """The longest input (tokens) the chain feeds its encoder, and the setting that asks for it: any stage,
    the target fine-tune, an eval.also fine-tune, or a retrieval evaluation (of the bare encoder)."""
    def key(task: str | None) -> str:  # where that stage's max_length is set (None: the target fine-tune)
        if task in cfg.stages and cfg.stages[task].max_length is not None:
            return f"stages.{task}.max_length"
        fine_tuned = task not in [t.name for t in order]  # (the target, or an eval.also task)
        return "finetune.max_length" if fine_tuned and cfg.finetune.max_length else "train.max_length"

    lens = [(cfg.stage_hparams(t.name).max_length, key(t.name)) for t in order]
    lens.append((cfg.stage_hparams(None).max_length, key(None)))
    lens += [(cfg.also_hparams(name).max_length, key(name)) for name, (t, _) in also.items() if t.trains]
    if _evaluates_retrieval(target, also):
        lens.append((cfg.eval.retrieval.max_length, "eval.retrieval.max_length"))
    return max(lens, key=lambda x: x[0])


def _evaluates_retrieval(target: Task, also: dict) -> bool:
    """Whether the chain evaluates a retrieval task (the target, or one of eval.also's) on its bare encoder."""
    return not target.trains or any(not t.trains for t, _ in also.values())


def _start_seed(p: Prepared, seed: int, accelerator, cache, log, progress) -> _SeedRun:
    """A fresh encoder for ``seed`` (its position table sized for the longest input any stage, fine-tune or
    retrieval evaluation of the chain will feed it), and the stage cache's view of this seed."""
    from accelerate.utils import set_seed

    cfg = p.cfg
    set_seed(seed)
    longest, _ = _longest_input(cfg, p.order, p.target, p.also)
    encoder = build_encoder(cfg.model, p.tokenizer, max_length=longest, sdpa=cfg.hardware.sdpa)
    use_gradient_checkpointing(encoder, cfg.hardware.gradient_checkpointing)
    pooling, hid = pooling_for(cfg.model, encoder), hidden_size(encoder)
    sc = None
    if cache is not None and p.order:
        from itt.cache import SeedCache

        sc = SeedCache(cache, p, seed, encoder, accelerator, pooling, log=log)
    return _SeedRun(p, seed, accelerator, encoder, pooling, hid, sc, log, progress)


def _intermediate_stage(r: _SeedRun, i: int, task: Task) -> tuple[dict, dict, bool]:
    """Stage ``i`` of the chain: trained on ``task`` (a fresh head on the shared encoder), or the encoder
    after this prefix loaded in place from the stage cache, if any chain trained it before; then its
    probe. Returns the stage's record, the metrics it reports, and whether it was trained here."""
    from accelerate.utils import set_seed

    p, sc, seed, k = r.p, r.sc, r.seed, r.k
    stage_seed = seed * 1000 + i
    cached = sc.stage(i, r.encoder) if sc is not None else None
    if cached is None:
        set_seed(stage_seed)
        model = handler(task.kind).model(r.encoder, task, hidden=r.hid, pooling=r.pooling, seed=stage_seed)
        r.log(f"[seed {seed}] stage {i}/{k} {task.name}")
        _trace("stage", prefix=[t.name for t in p.order[:i]], seed=seed)
        st = train_stage(r.accelerator, model, p.train[task.name], p.tokenizer, task, p.cfg.stage_hparams(task.name),
                         seed=stage_seed, hw=p.cfg.hardware, log=r.log,
                         progress=_phase(r.progress, phase="stage", stage=i, stages=k, task=task.name))
        stat, probe = st.as_dict(), None
    else:
        r.log(f"[seed {seed}] stage {i}/{k} {task.name} (from the stage cache)")
        _phase(r.progress, phase="stage", stage=i, stages=k, task=task.name, cached=True)
        stat, probe = dict(cached[0]), cached[1]
    stage = stat
    # running counts (summed over seeds in a report): the last report of a stopped trial has them too
    metrics = {"stage": i, "task": task.name, "train_loss": stat["train_loss"],
               "stages_trained": sc.trained + (cached is None) if sc else i,
               "stages_from_cache": sc.from_cache if sc else 0, "cache_seconds_saved": sc.seconds_saved if sc else 0.0}
    probe_new, probe_secs = False, 0.0
    if p.cfg.probe.enabled:
        if probe is None:
            t1 = time.perf_counter()
            probe = _probe(p, r.accelerator, r.encoder, r.pooling, r.hid, seed=seed * 1000 + 500 + i,
                           progress=_phase(r.progress, phase="probe", stage=i, stages=k, task=p.target.name))
            probe_new, probe_secs = True, time.perf_counter() - t1
        stage = {**stat, "probe": probe}
        metrics.update({f"probe_{name}": v for name, v in probe.items() if not isinstance(v, dict)})
        metrics.update({f"probe_xtreme_{t}": v for t, v in probe.get("xtreme_tasks", {}).items()})  # (probe.also)
    # what this stage costs to train (and probe), measured now or carried by the cache entry: the
    # searcher's cost model (order_bo's ``cost: measured``) learns each task's seconds from it
    metrics["stage_seconds"] = float(stat.get("seconds", 0.0)) + probe_secs if cached is None else sc.last_hit_seconds
    if sc is not None:
        sc.done(i, r.encoder, {name: v for name, v in stat.items() if name != "probe"}, probe, probe_secs, probe_new)
        stage["from_cache"] = cached is not None
    return stage, metrics, cached is None


def _target_stage(r: _SeedRun, stages: list[dict], out: Path | None) -> tuple[dict, torch.nn.Module, dict]:
    """After the intermediate stages: the eval.also tasks on the encoder they produced, the target
    fine-tune (a fresh head; retrieval: none, the encoder itself is evaluated, as Phang et al. do for
    BUCC and Tatoeba; its record appended to ``stages``), and the zero-shot evaluation in every
    language (and on noisy dev text if asked). Returns the results, the target's model and eval.also's."""
    from accelerate.utils import set_seed

    p, cfg, k = r.p, r.p.cfg, r.k
    also = _evaluate_also(p, r.accelerator, r.encoder, r.pooling, r.hid, out, seed=r.seed, log=r.log, progress=r.progress)
    stage_seed = r.seed * 1000 + k
    set_seed(stage_seed)
    model = handler(p.target.kind).model(r.encoder, p.target, hidden=r.hid, pooling=r.pooling, seed=stage_seed)
    if p.target.trains:
        r.log(f"[seed {r.seed}] stage {k}/{k} {p.target.name} (target fine-tune)")
        _trace("target", prefix=[t.name for t in p.order], seed=r.seed)
        st = train_stage(r.accelerator, model, p.train[p.target.name], p.tokenizer, p.target, cfg.stage_hparams(None),
                         seed=stage_seed, hw=cfg.hardware, log=r.log,
                         progress=_phase(r.progress, phase="target", stage=k, stages=k, task=p.target.name))
        stages.append(st.as_dict())
    _phase(r.progress, phase="eval", stage=k, stages=k, task=p.target.name)
    res = _evaluate(p, r.accelerator, model, out)
    if also:
        res["also"] = also
        for split in cfg.eval.splits:  # the XTREME average over every task this chain evaluated
            x = res[split]["xtreme"]
            x["tasks"].update({t: a[split]["xtreme"]["tasks"][t] for t, a in also.items() if split in a})
            vals = [v for v in x["tasks"].values() if v is not None]
            x["average"] = float(np.mean(vals)) if vals else None
    if cfg.eval.perturbation.enabled:
        pm = p.target.metric
        noisy = _score(p, r.accelerator, model, p.noisy, out, "dev-noisy")
        clean = res["dev"]["summary"][pm]["mean"]
        score = float(np.mean([noisy[lang][pm] for lang in p.languages]))
        res["perturbation"] = {"per_language": noisy, "metric": pm, "score": score, "drop": clean - score}
    res["stages"] = stages
    return res, model, also


def chain_tokens(stages: list[dict], also: dict) -> float | None:
    """The input tokens (padding included) of every stage and fine-tune of one chain (``stages``: its stage
    statistics, a stage the cache supplied as it was trained; ``also``: its eval.also results): what training
    the order from scratch costs, on any hardware. None where a stage predates the count (an older cache
    entry). The trial's ``chain_tokens`` and the report's training cost (search/training_cost.py)."""
    toks = [s.get("tokens") for s in stages] + [a["fine_tune"].get("tokens") for a in also.values() if "fine_tune" in a]
    ok = toks and all(isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 for t in toks)
    return float(sum(toks)) if ok else None


def _trace(event: str, **fields) -> None:
    """``ITT_STAGE_LOG=<file>``: one JSON line per stage-training as it starts (an audit trail of what a
    search really trained, across processes and restarts; the fault-tolerance tests count these).
    ``ITT_RUN_ID``, when set (a search sets the trial id), is written as ``run`` on each line."""
    path = os.environ.get("ITT_STAGE_LOG")
    if path:
        run = {"run": os.environ["ITT_RUN_ID"]} if os.environ.get("ITT_RUN_ID") else {}
        with open(path, "a", encoding="utf-8") as f:  # O_APPEND: lines from many processes stay whole
            f.write(json.dumps({"event": event, "pid": os.getpid(), "time": time.time(), **run, **fields}) + "\n")


def _probe(p: Prepared, accelerator, encoder, pooling: str, hid: int, *, seed: int, progress: Progress | None = None) -> dict:
    """The target's probe: its zero-shot dev scores after a short fine-tune (``_probe_task``); with
    ``probe.also`` each eval.also task probed the same way, and the XTREME average over them all."""
    cfg, task = p.cfg, p.target
    scored = _probe_task(p, accelerator, encoder, pooling, hid, task, cfg.stage_hparams(None), p.train.get(task.name),
                         p.probe, seed=seed, progress=progress)
    per = {lang: m[task.metric] for lang, m in scored.items()}
    s = M.summary(per)
    out = {f"{task.metric}_{k}": v for k, v in s.items() if isinstance(v, float)} | {"per_language": per}
    if p.probe_also:
        tasks = {task.name: xtreme_scores(task, scored)["average"]}
        for name, sets in p.probe_also.items():
            t = p.also[name][0]
            tasks[name] = xtreme_scores(t, _probe_task(
                p, accelerator, encoder, pooling, hid, t, cfg.also_hparams(name), p.also_train.get(name), sets,
                seed=seed, progress=_phase(progress, task=name)))["average"]  # (the live view names the task probed)
        out |= {"xtreme_average": sum(tasks.values()) / len(tasks), "xtreme_tasks": tasks}
    return out


def _probe_task(p: Prepared, accelerator, encoder, pooling: str, hid: int, task: Task, hp, train, sets: dict, *,
                seed: int, progress: Progress | None = None) -> dict[str, dict]:
    """One task's probe: ``probe.steps`` of fine-tuning with ``hp`` on ``train``, on a copy of the encoder
    (a retrieval task: the encoder as it is), then its metrics per language on the dev ``sets``."""
    import copy

    from accelerate.utils import set_seed

    h = handler(task.kind)
    set_seed(seed)
    model = h.model(copy.deepcopy(encoder) if task.trains else encoder, task, hidden=hid, pooling=pooling, seed=seed)
    if task.trains:
        short = hp.model_copy(update={"max_steps": p.cfg.probe.steps})
        train_stage(accelerator, model, train, p.tokenizer, task, short, seed=seed, hw=p.cfg.hardware, progress=progress)
    ctx = EvalContext(accelerator, p.tokenizer, p.cfg, task, "dev", {})
    return {lang: h.evaluate(ctx, model, ds, feats, lang)[0] for lang, (ds, feats) in sets.items()}


# counts summed over seeds, not averaged: stage trainings a chain ran / took from the stage cache
# and seconds (a stage of a 3-seed chain is trained three times)
_SUMMED = ("stages_trained", "stages_from_cache", "cache_seconds_saved", "stage_seconds", "trained_seconds")


def _mean_metrics(batch: list[dict]) -> dict:
    """Numeric metrics averaged over seeds (the cache counts summed); other values from the first seed."""
    out = dict(batch[0])
    for k, v in batch[0].items():
        vals = [m.get(k) for m in batch]
        if isinstance(v, (int, float)) and not isinstance(v, bool) and all(isinstance(x, (int, float)) for x in vals):
            out[k] = sum(vals) if k in _SUMMED else v if all(x == v for x in vals) else sum(vals) / len(vals)
    if len(batch) > 1:
        out["n_seeds"] = len(batch)
    return out


def flat_final(res: dict, metric: str) -> dict:
    """The final figures as one flat mapping (what a tuner or tracker logs)."""
    out = {}
    for split in ("dev", "test"):
        if split not in res:
            continue
        s = res[split]["summary"][metric]
        out.update({f"{split}_{metric}_{k}": v for k, v in s.items() if isinstance(v, (int, float)) and v is not None})
        out.update({f"{split}_{metric}_{lang}": v[metric] for lang, v in res[split]["per_language"].items()})
    for split in ("dev", "test"):
        if split in res and "xtreme" in res[split]:
            x = res[split]["xtreme"]
            if x["average"] is not None:
                out[f"{split}_xtreme_average"] = x["average"]
            out.update({f"{split}_xtreme_{t}": v for t, v in x["tasks"].items() if v is not None})
    if "perturbation" in res:
        out["perturbation_score"] = res["perturbation"]["score"]
        out["perturbation_drop"] = res["perturbation"]["drop"]
    return out


def aggregate(per_seed: dict[int, dict], metrics: tuple[str, ...]) -> dict:
    """Mean and std over seeds of every per-language score and every robustness figure."""
    seeds = list(per_seed)
    first = per_seed[seeds[0]]
    agg: dict = {}
    for split in ("dev", "test"):
        if split not in first:
            continue
        langs = list(first[split]["per_language"])
        agg[split] = {
            "per_language": {lang: {m: M.mean_std([per_seed[s][split]["per_language"][lang][m] for s in seeds])
                                    for m in metrics} for lang in langs},
            "summary": {m: {fig: M.mean_std([per_seed[s][split]["summary"][m][fig] for s in seeds])
                            for fig in ("mean", "std", "worst", "transfer_gap")} for m in metrics},
        }
        if "xtreme" in first[split]:
            xt = first[split]["xtreme"]
            agg[split]["xtreme"] = {
                "metric": xt["metric"],
                "tasks": {t: M.mean_std([per_seed[s][split]["xtreme"]["tasks"][t] for s in seeds]) for t in xt["tasks"]},
                "average": M.mean_std([per_seed[s][split]["xtreme"]["average"] for s in seeds]),
            }
    if "perturbation" in first:
        agg["perturbation"] = {k: M.mean_std([per_seed[s]["perturbation"][k] for s in seeds]) for k in ("score", "drop")}
    return agg


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False))
    os.replace(tmp, path)


def _lockstep(gens: dict, report: Report) -> dict:
    """Advance every seed's chain one stage at a time; each report is the mean over seeds at that stage.
    Returns each seed's results."""
    per_seed: dict = {}
    while gens:
        step, batch = None, []
        for s, gen in list(gens.items()):
            try:
                metrics, step = next(gen)
                batch.append(metrics)
            except StopIteration as stop:
                per_seed[s] = stop.value
                del gens[s]
        if batch:
            report(_mean_metrics(batch), step)
    return per_seed


def run_chain(cfg: ChainConfig, *, out_dir: str | Path | None = None, report: Report = _noop_report, log=print,
              prepared: Prepared | None = None, cache=None, progress: Progress | None = None) -> dict:
    """Run the chain for every seed of ``cfg``; write ``results.json`` and predictions to ``out_dir``.

    ``cache``: an :class:`itt.cache.StageCache` shared with other chains (default: ``cfg.cache_dir``
    when set, else none); each seed has its own entries. ``progress``: see :data:`Progress`."""
    t0 = time.perf_counter()
    p = prepared or prepare(cfg, log=log)
    if cfg.hardware.num_threads:
        torch.set_num_threads(cfg.hardware.num_threads)
    accelerator = make_accelerator(cfg.hardware)
    if cache is None and cfg.cache_dir:
        from itt.cache import StageCache

        cache = StageCache(cfg.cache_dir, log=log)
    out = Path(out_dir) if out_dir is not None else None
    setting = "IF" if cfg.order else "F"
    log(f"chain [{setting}] {' > '.join(cfg.order) or '(no intermediate task)'} -> {p.target.name} "
        f"in {', '.join(p.languages)}; seeds {cfg.seeds}; device {accelerator.device}")
    # Seeds advance in lockstep, one stage at a time, so each report (a scheduler's signal) is the mean
    # over seeds at that stage. The cost: every seed's encoder is held in memory at once.
    gens = {s: _seed_steps(p, s, accelerator=accelerator, out=out / f"seed{s}" if out is not None else None, log=log,
                           cache=cache, progress=_with_seed(progress, s, i, len(cfg.seeds)))
            for i, s in enumerate(cfg.seeds)}
    with deterministic(cfg.hardware.deterministic):
        per_seed = _lockstep(gens, report)
    per_seed = {s: per_seed[s] for s in cfg.seeds}
    results = {
        "name": cfg.name,
        "setting": setting,
        "order": list(cfg.order),
        "target": p.target.name,
        "languages": p.languages,
        "metric": p.target.metric,
        "metrics": list(p.target.metrics),
        "seeds": {str(s): r for s, r in per_seed.items()},
        "aggregate": aggregate(per_seed, p.target.metrics),
        "wall_seconds": time.perf_counter() - t0,
        "hardware": hardware_record(accelerator),
        "config": cfg.model_dump(mode="json"),
    }
    if out is not None and accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_json(out / "results.json", results)
    return results
