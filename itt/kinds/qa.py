"""Extractive QA (SQuAD, XQuAD, MLQA, TyDiQA-GoldP): start/end scores over context windows.

A context longer than the window is cut into overlapping windows ``doc_stride`` tokens apart (the
question repeated in each), as in the SQuAD/XTREME scripts. Training labels each window with the
answer's tokens, or with the [CLS] position when the window does not hold the whole answer.
Decoding takes, over all windows of a question, the best start+end score among the ``n_best``
starts and ends, for spans inside the context of at most ``max_answer_length`` tokens.
"""

from __future__ import annotations

import datasets
import numpy as np
import torch

from itt import metrics as M
from itt.errors import ConfigError, UserError
from itt.kinds._base import EvalFeatures, KindHandler
from itt.models import SpanModel

MAX_QUERY = 64  # question tokens kept (XTREME's max_query_length), at most a quarter of the window


def strides(max_length: int, doc_stride: int | None) -> tuple[int, int]:
    """(question token cap, stride) for a window size; the stride must leave room for the context."""
    q_cap = max(1, min(MAX_QUERY, max_length // 4))
    stride = doc_stride if doc_stride is not None else max_length // 3
    room = max_length - q_cap - 3
    if stride >= room:
        raise ConfigError(f"doc_stride {stride} leaves no new context per window: with max_length {max_length} "
                          f"it must be below {room}")
    return q_cap, stride


def featurize_qa(ds, tokenizer, max_length: int, doc_stride: int | None, *, train: bool):
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("extractive QA needs a fast tokenizer (character offsets)")
    q_cap, stride = strides(max_length, doc_stride)
    questions, contexts = ds["question"][:], ds["context"][:]
    # cut questions to q_cap tokens (at a character offset, so the text stays the question's own)
    qenc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    questions = [q if len(o) <= q_cap else q[:o[q_cap - 1][1]] for q, o in zip(questions, qenc["offset_mapping"])]
    right = tokenizer.padding_side == "right"  # XLNet: context first, padding on the left
    enc = tokenizer(questions if right else contexts, contexts if right else questions,
                    truncation="only_second" if right else "only_first", max_length=max_length, stride=stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    sample = enc["overflow_to_sample_mapping"]
    ctx_seq = 1 if right else 0
    cls_id = tokenizer.cls_token_id
    starts, offsets_out = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        seq = enc.sequence_ids(i)
        ids = enc["input_ids"][i]
        cls = ids.index(cls_id) if cls_id in ids else 0
        ctx_tokens = [j for j, s in enumerate(seq) if s == ctx_seq]
        offsets_out.append([o if seq[j] == ctx_seq else None for j, o in enumerate(offsets)])
        starts.append((cls, ctx_tokens[0] if ctx_tokens else None, ctx_tokens[-1] if ctx_tokens else None))
    keep = [c for c in tokenizer.model_input_names if c in enc]
    cols = {c: enc[c] for c in keep}
    if train:
        a_start, a_text = ds["answer_start"][:], ds["answer_text"][:]
        labels = []
        for i, offsets in enumerate(offsets_out):
            cls, first, last = starts[i]
            ex = sample[i]
            s_char = int(a_start[ex][0])
            e_char = s_char + len(a_text[ex][0])
            if first is None or not (offsets[first][0] <= s_char and offsets[last][1] >= e_char):
                labels.append([cls, cls])
                continue
            ts = first
            while ts <= last and offsets[ts][0] <= s_char:
                ts += 1
            te = last
            while te >= first and offsets[te][1] >= e_char:
                te -= 1
            labels.append([ts - 1, te + 1])
        cols["labels"] = labels
        return datasets.Dataset.from_dict(cols)
    return EvalFeatures(datasets.Dataset.from_dict(cols), {"example": list(sample), "offsets": offsets_out})


def decode(start: np.ndarray, end: np.ndarray, offsets: list, context: str, *, n_best: int, max_answer_length: int):
    """Best (score, text) of one window: the highest start+end logit sum over valid spans."""
    best = None
    for s in np.argsort(-start, kind="stable")[:n_best]:
        for e in np.argsort(-end, kind="stable")[:n_best]:
            if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                continue
            if e < s or e - s + 1 > max_answer_length:
                continue
            score = float(start[s] + end[e])
            if best is None or score > best[0]:
                best = (score, context[offsets[s][0]:offsets[e][1]])
    return best


class QAHandler(KindHandler):
    def featurize(self, ds, task, tokenizer, hp, *, train: bool):
        return featurize_qa(ds, tokenizer, hp.max_length, hp.doc_stride, train=train)

    def model(self, encoder, task, *, hidden: int, pooling: str, seed: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return SpanModel(encoder)

    def evaluate(self, ctx, model, ds, feats, lang):
        from itt.train import predict_raw

        opt = ctx.cfg.eval.qa
        out = predict_raw(ctx.accelerator, model, feats.inputs, ctx.tokenizer, batch_size=ctx.cfg.eval.batch_size)
        contexts = ds["context"][:]
        best: dict[int, tuple] = {}
        for logits, ex, offsets in zip(out, feats.meta["example"], feats.meta["offsets"]):
            b = decode(logits[:, 0], logits[:, 1], offsets, contexts[ex], n_best=opt.n_best,
                       max_answer_length=opt.max_answer_length)
            if b is not None and (ex not in best or b[0] > best[ex][0]):
                best[ex] = b
        preds = [best[i][1] if i in best else "" for i in range(len(ds))]
        golds = [list(g) for g in ds["answer_text"]]
        mode = ctx.task.metadata.get("qa_normalization", "squad")
        try:
            scores = M.qa(golds, preds, lang, mode)
        except ValueError as e:
            raise UserError(f"task '{ctx.task.name}': {e}") from None
        rows = [{"id": i, "gold": g, "pred": p} for i, g, p in zip(ds["id"], golds, preds)]
        return scores, rows
