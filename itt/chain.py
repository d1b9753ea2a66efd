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
from itt.models import TaskModel, build_encoder, check_model, hidden_size, load_tokenizer, pooling_for, save_checkpoint, train_tokenizer
from itt.noise import perturb_dataset
from itt.tasks import Task, resolve_task
from itt.train import make_accelerator, new_head, predict, tokenize, train_stage

Report = Callable[[dict, int], None]


def _noop_report(metrics: dict, step: int) -> None:
    pass


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
    noisy_tok: dict[str, object] = field(default_factory=dict)  # lang -> tokenized noisy dev
    noisy: dict[str, object] = field(default_factory=dict)
    tokenizer: object = None


def prepare(cfg: ChainConfig, log=print) -> Prepared:
    """Load and validate every split and build the tokenizer; raises UserError before any training."""
    specs = cfg.tasks
    order = [resolve_task(n, specs) for n in cfg.order]
    target = resolve_task(cfg.target.task, specs)
    languages = list(cfg.target.languages or target.languages)
    kw = dict(data_root=cfg.data_root, toy_options=cfg.toy, seed=cfg.data_seed)
    raw_train = {t.name: load_split(t, "train", t.languages[0], max_examples=cfg.stage_hparams(t.name).max_examples, **kw)
                 for t in order}
    raw_train[target.name] = load_split(target, "train", target.languages[0],
                                        max_examples=cfg.stage_hparams(None).max_examples, **kw)
    ev = {(s, lang): load_split(target, s, lang, max_examples=cfg.eval.max_examples, **kw)
          for s in cfg.eval.splits for lang in languages}
    pert = cfg.eval.perturbation
    if pert.enabled and "dev" not in cfg.eval.splits:
        raise UserError("eval.perturbation needs 'dev' in eval.splits")

    # tokenizer: pretrained, or fitted on the fly. The toy benchmark fits it to its lexicon (its
    # stand-in for a multilingual pretraining corpus), so the vocabulary never depends on which
    # splits or caps a config picks; other data fits it to all loaded text (train and eval: the
    # only text there is in the target languages, much as mBERT's vocabulary saw every language).
    m = cfg.model
    if m.train_tokenizer is not None:
        tasks = [*order, target]
        if all(t.source("train", t.languages[0]).toy for t in tasks):
            texts = toy.corpus(cfg.toy)
        else:
            texts = []
            for ds, task in [(raw_train[t.name], t) for t in tasks] + [(d, target) for d in ev.values()]:
                for f in task.fields:
                    texts.extend(ds[f])
        tokenizer = train_tokenizer(texts, arch=m.tiny.arch, vocab_size=m.train_tokenizer.vocab_size)
    else:
        tokenizer = load_tokenizer(m.tokenizer or m.name, revision=m.revision, trust_remote_code=m.trust_remote_code)
    if m.name is not None:
        check_model(m)  # a wrong model name fails here, not after the first seed's output exists

    p = Prepared(cfg, order, target, languages, train={}, eval=ev, tokenizer=tokenizer)
    for t in [*order, target]:
        hp = cfg.stage_hparams(t.name if t is not target else None)
        p.train[t.name] = tokenize(raw_train[t.name], t, tokenizer, hp.max_length)
    max_len = cfg.stage_hparams(None).max_length
    for key, ds in ev.items():
        p.eval_tok[key] = tokenize(ds, target, tokenizer, max_len)
    if pert.enabled:
        for lang in languages:
            p.noisy[lang] = perturb_dataset(ev[("dev", lang)], target.fields, char_rate=pert.char_rate,
                                            word_rate=pert.word_rate, seed=pert.seed)
            p.noisy_tok[lang] = tokenize(p.noisy[lang], target, tokenizer, max_len)
    return p


def _write_predictions(path: Path, ds, pred: np.ndarray, task: Task) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i, (ex_id, gold) in enumerate(zip(ds["id"], ds["label"])):
            p = pred[i]
            if task.is_regression:
                row = {"id": ex_id, "gold": float(gold), "pred": float(p)}
            else:
                row = {"id": ex_id, "gold": task.labels[int(gold)], "pred": task.labels[int(p)]}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _evaluate(p: Prepared, accelerator, model, out: Path | None, tag: str = "") -> dict:
    """Per-language metrics and their robustness summary for every eval split."""
    cfg, task = p.cfg, p.target
    res: dict = {}
    for split in cfg.eval.splits:
        per_lang = {}
        for lang in p.languages:
            ds, tok = p.eval[(split, lang)], p.eval_tok[(split, lang)]
            pred = predict(accelerator, model, tok, p.tokenizer, batch_size=cfg.eval.batch_size)
            per_lang[lang] = M.task_metrics(task, ds["label"], pred)
            if out is not None and accelerator.is_main_process:
                _write_predictions(out / "predictions" / f"{split}{tag}.{lang}.jsonl", ds, pred, task)
        res[split] = {"per_language": per_lang,
                      "summary": {m: M.summary({lang: per_lang[lang][m] for lang in per_lang}) for m in task.metrics}}
    return res


def run_seed(p: Prepared, seed: int, *, accelerator=None, report: Report = _noop_report, out: Path | None = None,
             log=print) -> dict:
    """Train and evaluate the chain with one seed; returns its results (also reported at the end)."""
    from accelerate.utils import set_seed

    cfg = p.cfg
    accelerator = accelerator or make_accelerator(cfg.hardware)
    t0 = time.perf_counter()
    # model: the encoder is the only thing that passes from stage to stage
    set_seed(seed)
    max_len = max([cfg.stage_hparams(t.name).max_length for t in p.order] + [cfg.stage_hparams(None).max_length])
    encoder = build_encoder(cfg.model, p.tokenizer, max_length=max_len, sdpa=cfg.hardware.sdpa)
    pooling, hid = pooling_for(cfg.model, encoder), hidden_size(encoder)
    stages = []
    # intermediate stages, in order; each with a fresh head of its own
    for i, task in enumerate(p.order, start=1):
        stage_seed = seed * 1000 + i
        set_seed(stage_seed)
        model = TaskModel(encoder, new_head(hid, task, stage_seed), pooling, task.is_regression)
        log(f"[seed {seed}] stage {i}/{len(p.order) + 1} {task.name}")
        st = train_stage(accelerator, model, p.train[task.name], p.tokenizer, task, cfg.stage_hparams(task.name),
                         seed=stage_seed, hw=cfg.hardware, log=log)
        stages.append(st.as_dict())
        report({"stage": i, "task": task.name, "train_loss": st.train_loss}, i)
    # target fine-tune: a fresh head on the encoder the chain produced
    k = len(p.order) + 1
    stage_seed = seed * 1000 + k
    set_seed(stage_seed)
    model = TaskModel(encoder, new_head(hid, p.target, stage_seed), pooling, p.target.is_regression)
    log(f"[seed {seed}] stage {k}/{k} {p.target.name} (target fine-tune)")
    st = train_stage(accelerator, model, p.train[p.target.name], p.tokenizer, p.target, cfg.stage_hparams(None),
                     seed=stage_seed, hw=cfg.hardware, log=log)
    stages.append(st.as_dict())
    # zero-shot evaluation in every language (and on noisy dev text if asked)
    res = _evaluate(p, accelerator, model, out)
    if cfg.eval.perturbation.enabled:
        pm = p.target.metric
        noisy = {}
        for lang in p.languages:
            pred = predict(accelerator, model, p.noisy_tok[lang], p.tokenizer, batch_size=cfg.eval.batch_size)
            noisy[lang] = M.task_metrics(p.target, p.noisy[lang]["label"], pred)
            if out is not None and accelerator.is_main_process:
                _write_predictions(out / "predictions" / f"dev-noisy.{lang}.jsonl", p.noisy[lang], pred, p.target)
        clean = res["dev"]["summary"][pm]["mean"]
        score = float(np.mean([noisy[lang][pm] for lang in p.languages]))
        res["perturbation"] = {"per_language": noisy, "metric": pm, "score": score, "drop": clean - score}
    res["stages"] = stages
    res["seconds"] = time.perf_counter() - t0
    if out is not None and cfg.save_checkpoint and accelerator.is_main_process:
        save_checkpoint(out / "checkpoint", accelerator.unwrap_model(encoder), p.tokenizer, model.head,
                        meta={"order": cfg.order, "target": p.target.name, "seed": seed, "pooling": pooling})
    report(flat_final(res, p.target.metric), k)
    return res


def flat_final(res: dict, metric: str) -> dict:
    """The final figures as one flat mapping (what a tuner or tracker logs)."""
    out = {}
    for split in ("dev", "test"):
        if split not in res:
            continue
        s = res[split]["summary"][metric]
        out.update({f"{split}_{metric}_{k}": v for k, v in s.items() if isinstance(v, (int, float)) and v is not None})
        out.update({f"{split}_{metric}_{lang}": v[metric] for lang, v in res[split]["per_language"].items()})
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
    if "perturbation" in first:
        agg["perturbation"] = {k: M.mean_std([per_seed[s]["perturbation"][k] for s in seeds]) for k in ("score", "drop")}
    return agg


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False))
    os.replace(tmp, path)


def run_chain(cfg: ChainConfig, *, out_dir: str | Path | None = None, report: Report = _noop_report, log=print,
              prepared: Prepared | None = None) -> dict:
    """Run the chain for every seed of ``cfg``; write ``results.json`` and predictions to ``out_dir``."""
    t0 = time.perf_counter()
    p = prepared or prepare(cfg, log=log)
    if cfg.hardware.num_threads:
        torch.set_num_threads(cfg.hardware.num_threads)
    accelerator = make_accelerator(cfg.hardware)
    out = Path(out_dir) if out_dir is not None else None
    setting = "IF" if cfg.order else "F"
    log(f"chain [{setting}] {' > '.join(cfg.order) or '(no intermediate task)'} -> {p.target.name} "
        f"in {', '.join(p.languages)}; seeds {cfg.seeds}; device {accelerator.device}")
    per_seed = {}
    for seed in cfg.seeds:
        sub = out / f"seed{seed}" if out is not None else None
        per_seed[seed] = run_seed(p, seed, accelerator=accelerator, report=report, out=sub, log=log)
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
        "config": cfg.model_dump(mode="json"),
    }
    if out is not None and accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_json(out / "results.json", results)
    return results
