"""Extractive QA (SQuAD, XQuAD, MLQA, TyDiQA-GoldP): start/end scores over context windows.

A context longer than the window is cut into overlapping windows ``doc_stride`` tokens apart (the
question repeated in each), as in the SQuAD/XTREME scripts (the tokenizer's ``stride`` is the overlap:
the window's context room less ``doc_stride``). Training labels each window with the
answer's tokens, or with the [CLS] position when the window does not hold the whole answer.
Decoding takes, over all windows of a question, the best start+end score among the ``n_best``
starts and ends, for spans inside the context of at most ``max_answer_length`` tokens whose start token
has its maximum context in that window (SQuAD/XTREME's ``token_is_max_context``).
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


def strides(max_length: int, doc_stride: int | None, special: int = 3) -> tuple[int, int]:
    """(question token cap, stride) for a window size; the stride (context tokens between window starts)
    must be below a window's context room, or windows would not overlap and an answer across their
    border could not be found. ``special``: the tokenizer's special tokens in a pair (BERT 3, RoBERTa/XLM-R 4)."""
    q_cap = max(1, min(MAX_QUERY, max_length // 4))
    stride = doc_stride if doc_stride is not None else max_length // 3
    room = max_length - q_cap - special
    if stride >= room and doc_stride is None:  # the user set max_length alone: name it, not a stride they never gave
        raise ConfigError(f"max_length {max_length} is too short for QA windows: after the question (up to {q_cap} "
                          f"tokens) and {special} special tokens a window holds {room} context tokens, and the default "
                          f"doc_stride (max_length // 3 = {stride}) leaves the windows no overlap; give a larger max_length"
                          + (f" or a doc_stride below {room}" if room > 1 else ""))
    if stride >= room:
        raise ConfigError(f"doc_stride {stride} (context tokens between window starts) leaves the windows no overlap: "
                          f"with max_length {max_length} a window holds at least {room} context tokens; give less than {room}")
    return q_cap, stride


def _cut(question: str, offsets, q_cap: int, tokenizer) -> str:
    """The question's first ``q_cap`` tokens as text. Cut inside a word, the rest of the word can split into
    more pieces than it had (sentencepiece): fewer tokens are kept until the cut text is ``q_cap`` at most, or
    the window's context room (and so the windows' overlap) would be one short of what the stride check allowed."""
    k = q_cap
    while k > 1:
        cut = question[:offsets[k - 1][1]]
        if len(tokenizer(cut, add_special_tokens=False)["input_ids"]) <= q_cap:
            return cut
        k -= 1
    return question[:offsets[0][1]]


def featurize_qa(ds, tokenizer, max_length: int, doc_stride: int | None, *, train: bool):
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("extractive QA needs a fast tokenizer (character offsets)")
    q_cap, stride = strides(max_length, doc_stride, tokenizer.num_special_tokens_to_add(pair=True))
    questions, contexts = ds["question"][:], ds["context"][:]
    # cut questions to q_cap tokens (at a character offset, so the text stays the question's own)
    qenc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    questions = [q if len(o) <= q_cap else _cut(q, o, q_cap, tokenizer) for q, o in zip(questions, qenc["offset_mapping"])]
    right = tokenizer.padding_side == "right"  # XLNet: context first, padding on the left
    # XTREME/SQuAD: windows start `stride` context tokens apart, so the tokenizer's overlap is the window's
    # context room less the stride; the room depends on the question's length: one call per overlap value
    n_q = [len(o) for o in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    extra = tokenizer.num_special_tokens_to_add(pair=True)
    overlap = [max(0, max_length - n - extra - stride) for n in n_q]
    rows = []  # (example, input fields, offsets, sequence ids) per window, in example order
    for ov in sorted(set(overlap)):
        idx = [i for i, o in enumerate(overlap) if o == ov]
        qs, cs = [questions[i] for i in idx], [contexts[i] for i in idx]
        e = tokenizer(qs if right else cs, cs if right else qs, truncation="only_second" if right else "only_first",
                      max_length=max_length, stride=ov, return_overflowing_tokens=True, return_offsets_mapping=True)
        for w, ex in enumerate(e["overflow_to_sample_mapping"]):
            rows.append((idx[ex], {c: e[c][w] for c in e if c not in ("overflow_to_sample_mapping", "offset_mapping")},
                         e["offset_mapping"][w], e.sequence_ids(w)))
    rows.sort(key=lambda r: r[0])  # (stable: windows of one example keep their order)
    sample = [r[0] for r in rows]
    enc = {c: [r[1][c] for r in rows] for c in rows[0][1]} if rows else {}
    ctx_seq = 1 if right else 0
    cls_id = tokenizer.cls_token_id
    starts, offsets_out = [], []
    for _, fields, offsets, seq in rows:
        ids = fields["input_ids"]
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
    # each window's first context token, counted in its example's context tokens (the j-th window of an
    # example starts j strides in: the tokenizer steps by the window's room less the overlap)
    first = [j * stride for j in _rank_within(sample)]
    return EvalFeatures(datasets.Dataset.from_dict(cols), {"example": list(sample), "offsets": offsets_out,
                                                           "context_start": first})


def _rank_within(examples: list[int]) -> list[int]:
    """Each window's number among its example's windows (0, 1, ...), windows in order."""
    seen: dict[int, int] = {}
    out = []
    for ex in examples:
        out.append(seen.get(ex, 0))
        seen[ex] = out[-1] + 1
    return out


def max_context(examples: list, offsets: list, starts: list[int]) -> list[list[bool]]:
    """Per window, whether each of its context tokens has its maximum context there, as SQuAD/XTREME's
    ``_check_is_max_context``: min(left, right) context + 0.01 x the window's context length, the first
    window on a tie. A token is its example's context token ``starts[w] + k`` (k-th in window w)."""
    best: dict[tuple[int, int], tuple[float, int]] = {}
    for w, (ex, offs, first) in enumerate(zip(examples, offsets, starts)):
        n = sum(o is not None for o in offs)
        for k in range(n):
            score = min(k, n - 1 - k) + 0.01 * n
            if (ex, first + k) not in best or score > best[(ex, first + k)][0]:
                best[(ex, first + k)] = (score, w)
    out = []
    for w, (ex, offs, first) in enumerate(zip(examples, offsets, starts)):
        ks = np.cumsum([o is not None for o in offs]) - 1  # k of each context token
        out.append([o is not None and best[(ex, first + int(k))][1] == w for o, k in zip(offs, ks)])
    return out


def decode(start: np.ndarray, end: np.ndarray, offsets: list, context: str, *, n_best: int, max_answer_length: int,
           is_max_context: list | None = None):
    """Best (score, text) of one window: the highest start+end logit sum over valid spans (a start must be a
    token that has its maximum context in this window, where ``is_max_context`` is given)."""
    best = None
    for s in np.argsort(-start, kind="stable")[:n_best]:
        for e in np.argsort(-end, kind="stable")[:n_best]:
            if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                continue
            if is_max_context is not None and not is_max_context[s]:
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
        mc = max_context(feats.meta["example"], feats.meta["offsets"], feats.meta["context_start"])
        for logits, ex, offsets, m in zip(out, feats.meta["example"], feats.meta["offsets"], mc):
            b = decode(logits[:, 0], logits[:, 1], offsets, contexts[ex], n_best=opt.n_best,
                       max_answer_length=opt.max_answer_length, is_max_context=m)
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
