"""Heuristic orders to set against the searched best: a curriculum (easy to hard) and similarity to the
target (least to most similar, so the most similar task comes last, next to the target fine-tune).

* **difficulty** of a task: the final training loss of its single-task stage relative to the loss
  at chance, ln(number of labels) for classification, ln(number of options) for the built-in multiple
  choice tasks (higher = harder; raw loss for other kinds).
  From a finished search when one is given (its single-task orders, mean over seeds; where a
  simulated search has no loss, 1 - the single-task order's final score), else from a short
  single-task training run of each task from the config's initial encoder (``steps`` steps, first
  seed; nothing is cached).
* **similarity** of a task to the target: vocabulary overlap, measured as the cosine similarity of
  subword-frequency vectors (the chain's tokenizer, special tokens left out) between the task's
  training text and the target's evaluation text in each target language, averaged over languages.

* **transferability**: the prior of ``search/transfer.py`` (LogME, transfer to the target and
  similarity on the initial encoder, per task, and links between consecutive tasks); its value of a
  task is the per-task part of the prior, its orders the prior's best order of each length.

A heuristic ranks every candidate; the order of length k takes the k easiest tasks (curriculum) or
the k most similar (similarity), arranged by the heuristic (transferability: the prior's best order
of length k, which weighs the links too). ``itt space CONFIG --heuristic KIND``
prints them; ``search.seed_points.heuristics`` makes a search start from them.
"""

from __future__ import annotations

import numpy as np

from itt.errors import UserError

KINDS = ("curriculum", "similarity", "transferability")
TRAIN_STEPS = 30


def orders_from_ranking(kind: str, values: dict[str, float], lengths: list[int], space=None) -> list[list[str]]:
    """One order per nonzero length: curriculum = the k lowest difficulties, ascending; similarity =
    the k highest similarities, ascending (most similar last). Orders outside ``space`` are dropped."""
    asc = sorted(values, key=lambda t: (values[t], t))
    out = []
    for k in lengths:
        if k <= 0 or k > len(asc):
            continue
        o = asc[:k] if kind == "curriculum" else asc[-k:]
        if space is None or space.is_valid(o):
            out.append(o)
    return out


# ------------------------------------------------------------------ difficulty
def chance_loss(chain, name: str) -> float:
    """The loss of a uniform guess: ln(number of labels) of a classification task, ln(number of options) of
    a multiple-choice one (a built-in's ``metadata["choices"]``); 1 otherwise (raw loss)."""
    import math

    from itt.tasks import resolve_task

    from itt.tasks import Kind

    task = resolve_task(name, chain.tasks)
    n = (task.metadata.get("choices") if getattr(task, "kind", None) == Kind.CHOICE else getattr(task, "num_labels", 0)) or 0
    return math.log(n) if n >= 2 else 1.0


def difficulty_from_experiment(exp_dir: str, candidates: list[str], chain=None) -> tuple[dict[str, float], str]:
    """Each candidate's difficulty from the single-task orders of a finished search."""
    from search.tracking import TRIAL_COLUMNS, read_rows, storage_of

    st = storage_of(exp_dir)
    if not st.exists("results.csv"):
        raise UserError(f"--from {exp_dir}: no results.csv here (not an `itt search` experiment directory)")
    out, how = {}, set()
    for r in read_rows(st, TRIAL_COLUMNS):
        t = r.get("order") or ""
        if r.get("status") != "completed" or ">" in t or t not in candidates or t in out:
            continue
        res = st.read_json("trials", r["trial_id"], "results.json")
        losses = [s["stages"][0].get("train_loss") for s in (res or {}).get("seeds", {}).values() if s.get("stages")]
        losses = [x for x in losses if x is not None]
        if losses:
            out[t], _ = float(np.mean(losses)) / (chance_loss(chain, t) if chain is not None else 1.0), how.add(
                "single-task stage train loss / chance loss")
        elif r.get("score") not in ("", None):
            out[t], _ = 1.0 - float(r["score"]), how.add("1 - single-task final score")
    missing = [t for t in candidates if t not in out]
    if missing:
        raise UserError(f"--from {exp_dir}: no completed single-task order for {', '.join(missing)} (run the search "
                        "with `seed_points: {singles: true}`, or leave --from out to train each task briefly)")
    return out, f"{' / '.join(sorted(how))} of the single-task orders in {st.display}"


def chain_for_candidates(chain, candidates: list[str]):
    """The chain with every candidate in its order, its first seed, no probe and no noisy eval: what
    ``prepare`` needs to load every candidate's data and build the tokenizer. (model_copy, not a
    dump and re-validation: that would turn a partial override of a built-in task into a full one.)"""
    ev = chain.eval.model_copy(update={"perturbation": chain.eval.perturbation.model_copy(update={"enabled": False})})
    return chain.model_copy(update={"order": list(candidates), "seeds": [chain.seeds[0]],
                                    "probe": chain.probe.model_copy(update={"enabled": False}), "eval": ev})


def difficulty_by_training(chain, candidates: list[str], *, steps: int = TRAIN_STEPS, log=print) -> tuple[dict[str, float], str]:
    """A short single-task run of each candidate (tiny: ``steps`` steps): its final training loss."""
    from accelerate.utils import set_seed

    from itt.chain import prepare
    from itt.kinds import handler
    from itt.models import build_encoder, hidden_size, pooling_for
    from itt.train import make_accelerator, train_stage

    cfg = chain_for_candidates(chain, candidates)
    p = prepare(cfg, log=lambda *a: None)
    acc = make_accelerator(cfg.hardware)
    seed, out = cfg.seeds[0], {}
    for i, task in enumerate(p.order, 1):
        hp = cfg.stage_hparams(task.name).model_copy(update={"max_steps": steps})
        set_seed(seed)
        enc = build_encoder(cfg.model, p.tokenizer, max_length=hp.max_length, sdpa=cfg.hardware.sdpa)
        model = handler(task.kind).model(enc, task, hidden=hidden_size(enc), pooling=pooling_for(cfg.model, enc), seed=seed)
        st = train_stage(acc, model, p.train[task.name], p.tokenizer, task, hp, seed=seed, hw=cfg.hardware)
        out[task.name] = float(st.train_loss) / chance_loss(cfg, task.name)
        log(f"  {task.name}: train loss {st.train_loss:.4f} after {steps} steps, {out[task.name]:.3f} of chance")
    return out, f"final train loss / chance loss of a {steps}-step single-task run (seed {seed})"


# ------------------------------------------------------------------ similarity
def _counts(texts, tokenizer, skip: set[int]) -> np.ndarray:
    v = np.zeros(len(tokenizer), float)
    for i in range(0, len(texts), 512):
        for ids in tokenizer(texts[i:i + 512], add_special_tokens=False)["input_ids"]:
            np.add.at(v, [t for t in ids if t not in skip], 1.0)
    return v


def _texts(task, ds) -> list[str]:
    """A task's text: every field's, but of a retrieval task (Tatoeba, BUCC: source in the language, target in
    English) only the source side, the language's own text (the English side made every language alike)."""
    from itt.tasks import Kind

    out = []
    for f in task.fields[:1] if task.kind == Kind.RETRIEVAL else task.fields:
        out.extend(" ".join(x) if isinstance(x, list) else str(x) for x in ds[f])
    return out


def similarity(chain, candidates: list[str], log=print) -> tuple[dict[str, float], str]:
    """Cosine similarity of subword-frequency vectors: each task's training text vs the target's
    evaluation text per language, averaged over the target languages."""
    from itt.chain import prepare
    from itt.data import load_split

    cfg = chain_for_candidates(chain, candidates)
    p = prepare(cfg, log=lambda *a: None)
    tok = p.tokenizer
    skip = set(getattr(tok, "all_special_ids", []) or [])
    kw = dict(data_root=cfg.data_root, toy_options=cfg.toy, seed=cfg.data_seed)
    split = cfg.eval.splits[0]
    target = {lang: _counts(_texts(p.target, p.eval[(split, lang)]), tok, skip) for lang in p.languages}
    out = {}
    for task in p.order:
        ds = load_split(task, "train", task.languages[0], max_examples=cfg.stage_hparams(task.name).max_examples, **kw)
        v = _counts(_texts(task, ds), tok, skip)
        cos = [float(v @ c / (np.linalg.norm(v) * np.linalg.norm(c))) if v.any() and c.any() else 0.0 for c in target.values()]
        out[task.name] = float(np.mean(cos))
        log(f"  {task.name}: similarity {out[task.name]:.4f}")
    return out, (f"cosine similarity of subword frequencies, task training text vs target {split} text, mean over "
                 f"{', '.join(p.languages)}")


def heuristic(kind: str, scfg, chain, *, from_exp: str | None = None, measurements: dict | None = None,
              log=print) -> dict:
    """{kind, values (per task), source (how they were measured), orders (one per length)}.
    ``measurements``: transferability's, where they were taken already (a search's prior.json)."""
    if kind not in KINDS:
        raise UserError(f"--heuristic {kind}: unknown (choose {', '.join(KINDS)})")
    cands = list(scfg.candidates)
    if kind == "transferability":
        from search.transfer import best_orders, prior_of_measurements, transferability

        m = measurements or transferability(scfg, chain, log=log)
        return {"kind": kind, "values": {t: v["score"] for t, v in m["tasks"].items()},
                "source": ("transferability prior on the initial encoder (LogME, transfer to the target and "
                           "similarity, z units; higher transfers better)"),
                "orders": best_orders(prior_of_measurements(m), scfg.space(), 0, per_length=True)}
    if kind == "curriculum":
        values, src = difficulty_from_experiment(from_exp, cands, chain) if from_exp else difficulty_by_training(chain, cands, log=log)
    else:
        values, src = similarity(chain, cands, log=log)
    return {"kind": kind, "values": values, "source": src,
            "orders": orders_from_ranking(kind, values, scfg.lengths, scfg.space())}
