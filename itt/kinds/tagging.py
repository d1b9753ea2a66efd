"""Token classification (PAN-X NER, UD-POS): one tag per word, predicted on its first subword.

A sentence longer than the window is split at word boundaries into consecutive windows (never
truncated): every word is labelled and predicted exactly once. A single word with more subwords
than a window keeps its first ones (the tag sits on the first). A word the tokenizer turns into no
subword at all (a lone control character) is replaced by the unknown token, as XTREME does.
"""

from __future__ import annotations

import datasets
import numpy as np
import torch

from itt import metrics as M
from itt.errors import UserError
from itt.kinds._base import EvalFeatures, KindHandler
from itt.models import TokenModel, head_dropout


def windows(counts: list[int], capacity: int) -> list[tuple[int, int]]:
    """Consecutive word ranges ``[a, b)`` whose subword counts fit ``capacity`` (a word longer than a
    window gets a window of its own)."""
    out, a, used = [], 0, 0
    for i, c in enumerate(counts):
        if i > a and used + c > capacity:
            out.append((a, i))
            a, used = i, 0
        used += c
    if counts:
        out.append((a, len(counts)))
    return out


def word_start_marked(tokenizer):
    """The tokenizer for words given one by one. Byte-level BPE (RoBERTa, GPT-2) marks a word's start by the
    space before it ("Ġworld"): without one, each word was split as inside a word ('w', 'orld'), pieces the
    model never saw in running text. A copy with ``add_prefix_space`` (🤗's rule for pre-split words)."""
    import copy

    from tokenizers import pre_tokenizers

    pre = tokenizer.backend_tokenizer.pre_tokenizer
    if not isinstance(pre, pre_tokenizers.ByteLevel) or pre.add_prefix_space:
        return tokenizer
    tok = copy.deepcopy(tokenizer)
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, trim_offsets=pre.trim_offsets,
                                                                   use_regex=pre.use_regex)
    return tok


def featurize_words(tokens: list[list[str]], labels: list[list[int]] | None, tokenizer, max_length: int):
    """Windows of words → model inputs with first-subword labels; also (example, first word) per window."""
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("token classification needs a fast tokenizer (word alignment)")
    tokenizer = word_start_marked(tokenizer)
    capacity = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    enc = tokenizer(tokens, is_split_into_words=True, add_special_tokens=False)
    fixed = []
    for i, words in enumerate(tokens):
        counts = np.bincount([w for w in enc.word_ids(i) if w is not None], minlength=len(words))
        if (counts == 0).any():  # zero-subword words would have no position to carry their tag
            words = [w if c else tokenizer.unk_token for w, c in zip(words, counts)]
            counts = np.bincount([w for w in tokenizer(words, is_split_into_words=True, add_special_tokens=False).word_ids()
                                  if w is not None], minlength=len(words))
        fixed.append((words, counts.tolist()))
    win_words, win_meta, win_labels = [], [], []
    for i, (words, counts) in enumerate(fixed):
        for a, b in windows(counts, capacity):
            win_words.append(words[a:b])
            win_meta.append((i, a))
            win_labels.append(labels[i][a:b] if labels is not None else [0] * (b - a))
    enc = tokenizer(win_words, is_split_into_words=True, truncation=True, max_length=max_length)
    all_labels = []
    for k in range(len(win_words)):
        seen, lab = set(), []
        for w in enc.word_ids(k):
            if w is None or w in seen:
                lab.append(-100)
            else:
                seen.add(w)
                lab.append(int(win_labels[k][w]))
        if len(seen) != len(win_words[k]):  # cannot happen unless the tokenizer drops words
            raise UserError(f"tokenizer lost {len(win_words[k]) - len(seen)} word(s) of sentence {win_meta[k][0]}")
        all_labels.append(lab)
    keep = [c for c in tokenizer.model_input_names if c in enc]
    ds = datasets.Dataset.from_dict({**{c: enc[c] for c in keep}, "labels": all_labels})
    return ds, win_meta


class TaggingHandler(KindHandler):
    def featurize(self, ds, task, tokenizer, hp, *, train: bool):
        feats, meta = featurize_words(ds["tokens"][:], ds["label"][:], tokenizer, hp.max_length)
        return feats if train else EvalFeatures(feats, {"windows": meta})

    def model(self, encoder, task, *, hidden: int, pooling: str, seed: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return TokenModel(encoder, task.num_labels, head_dropout(encoder))  # the encoder's, as 🤗's own head

    def evaluate(self, ctx, model, ds, feats, lang):
        from itt.train import predict_raw

        task = ctx.task
        out = predict_raw(ctx.accelerator, model, feats.inputs, ctx.tokenizer, batch_size=ctx.cfg.eval.batch_size)
        gold_ids = ds["label"][:]
        pred_ids = [[None] * len(g) for g in gold_ids]
        for logits, labels, (ex, first) in zip(out, feats.inputs["labels"], feats.meta["windows"]):
            pos = [j for j, lab in enumerate(labels) if lab != -100]
            for n, j in enumerate(pos):
                pred_ids[ex][first + n] = int(logits[j].argmax())
        names = task.labels
        gold = [[names[t] for t in g] for g in gold_ids]
        pred = [[names[t] for t in p] for p in pred_ids]
        rows = [{"id": i, "tokens": toks, "gold": g, "pred": p} for i, toks, g, p in zip(ds["id"], ds["tokens"], gold, pred)]
        return M.tagging(gold, pred, task.is_iob), rows
