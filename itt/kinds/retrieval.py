"""Sentence retrieval without fine-tuning (Tatoeba, BUCC 2018), on the encoder as the chain left it.

Sentences are embedded by pooling (mean over real tokens by default) the hidden states of one layer
(``eval.retrieval.layer``; default n_layers // 2 + 2 = hidden_states[8], the output of transformer layer 8 of
a 12-layer encoder: XTREME's evaluate_retrieval.py takes all_layer_outputs[-num_layers:][7], i.e. it drops
the embeddings before indexing with --specific_layer 7).
Tatoeba: every English sentence's nearest source sentence by cosine (accuracy). BUCC: ratio-margin
mining, then the threshold of the official procedure: chosen on the dev gold pairs to maximise F1,
and applied to test (a test split evaluated without a dev split in the same run optimises its own).
"""

from __future__ import annotations

import numpy as np
import torch

from itt import metrics as M
from itt.errors import ConfigError
from itt.kinds._base import EvalFeatures, KindHandler


class Embedder(torch.nn.Module):
    """The encoder's pooled hidden states of one layer; no parameters of its own."""

    def __init__(self, encoder, layer: int, pooling: str):
        super().__init__()
        self.encoder, self.layer, self.pooling = encoder, layer, pooling

    def forward(self, input_ids, attention_mask, token_type_ids=None, **_):
        from itt.models import pool

        kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **kw)
        return pool(out.hidden_states[self.layer], attention_mask, self.pooling)


class EncoderOnly(torch.nn.Module):
    """A retrieval target's "model": the bare encoder, no head."""

    head = None

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder


def n_layers(config) -> int:
    """An encoder config's number of layers (BERT/RoBERTa/XLM-R, XLNet, DistilBERT name it differently)."""
    return int(getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or config.n_layers)


def resolve_layer(encoder, layer: int | None) -> int:
    return layer_index(n_layers(encoder.config), layer)


def layer_index(n: int, layer: int | None) -> int:
    """``eval.retrieval.layer`` as an index into the hidden states of an ``n``-layer encoder (0 = the
    embeddings; negative counts from the last); a ConfigError when it is out of range."""
    idx = min(n // 2 + 2, n) if layer is None else layer
    if idx < 0:
        idx += n + 1
    if not 0 <= idx <= n:
        raise ConfigError(f"eval.retrieval.layer: {layer} is out of range for a {n}-layer encoder (0..{n}, or negative)")
    return min(idx, n)


def retrieval_pooling(ctx, encoder) -> str:
    """eval.retrieval.pooling; auto: the task's (``metadata["retrieval_pooling"]``; BUCC's "summary": the token
    that has seen the whole input, as model.pooling: auto picks it), else the mean."""
    from itt.models import summary_token

    how = ctx.cfg.eval.retrieval.pooling
    if how == "auto":
        how = ctx.task.metadata.get("retrieval_pooling", "mean")
    return summary_token(encoder.config) if how == "summary" else how


def _embed(ctx, encoder, texts: list[str]) -> np.ndarray:
    import datasets

    from itt.train import predict_raw

    if not texts:
        return np.zeros((0, 1))
    opt = ctx.cfg.eval.retrieval
    enc = ctx.tokenizer(texts, truncation=True, max_length=opt.max_length)
    keep = [c for c in ctx.tokenizer.model_input_names if c in enc]
    ds = datasets.Dataset.from_dict({c: enc[c] for c in keep})
    model = Embedder(encoder, resolve_layer(encoder, opt.layer), retrieval_pooling(ctx, encoder))
    return np.stack(predict_raw(ctx.accelerator, model, ds, ctx.tokenizer, batch_size=ctx.cfg.eval.batch_size))


def _bucc_ids(ids: list[str]) -> tuple[list[str], list[str]]:
    """Each row's source and target sentence id: BUCC files' rows are ``source_id\ttarget_id`` (one side empty
    for a sentence in no gold pair: itt.data.read_bucc); other rows pair their own id (or index) with itself."""
    if ids and all(str(i).count("\t") == 1 for i in ids):
        pairs = [str(i).split("\t") for i in ids]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    own = [str(i) for i in ids] if len(set(ids)) == len(ids) else [str(n) for n in range(len(ids))]
    return own, own


class RetrievalHandler(KindHandler):
    trains = False

    def featurize(self, ds, task, tokenizer, hp, *, train: bool):
        return EvalFeatures(None)  # embedded at evaluation time: the encoder is what changes

    def model(self, encoder, task, *, hidden: int, pooling: str, seed: int):
        return EncoderOnly(encoder)  # no head: the encoder itself is evaluated

    def evaluate(self, ctx, model, ds, feats, lang):
        encoder = model.encoder
        src_rows = [i for i, s in enumerate(ds["source"]) if s]
        tgt_rows = [i for i, t in enumerate(ds["target"]) if t]
        sources, targets = ds["source"][:], ds["target"][:]
        x = _embed(ctx, encoder, [sources[i] for i in src_rows])
        y = _embed(ctx, encoder, [targets[i] for i in tgt_rows])
        ids = ds["id"][:]
        if ctx.task.metric == "accuracy":  # Tatoeba: every row a translation pair
            if len(src_rows) != len(ds) or len(tgt_rows) != len(ds):
                raise ConfigError(f"task '{ctx.task.name}' ({lang}): Tatoeba-style retrieval needs a source and a "
                                  "target sentence in every row")
            scores, pred = M.tatoeba(x, y)
            # each English sentence (row i) and the id of the source sentence it retrieved
            return scores, [{"id": ids[i], "gold": ids[i], "pred": ids[int(p)]} for i, p in enumerate(pred)]
        # BUCC: mine over all sentences (pairs and distractors); gold = the (source id, target id) pairs of the rows
        # holding both sides. Each sentence is mined once however many gold pairs hold it (a source with two
        # targets is two rows), each distinct text once, and a candidate with a text that two ids share is dropped
        # (M.distinct, as XTREME's read_sent2id)
        sid, tid = _bucc_ids(ids)
        ps, _ = M.distinct([sid[i] for i in src_rows])  # (positions in src_rows / x of each source id's first row)
        pt, _ = M.distinct([tid[j] for j in tgt_rows])
        ux, rep_s = M.distinct([sources[src_rows[p]] for p in ps])
        uy, rep_t = M.distinct([targets[tgt_rows[p]] for p in pt])
        xs, ys = [src_rows[ps[u]] for u in ux], [tgt_rows[pt[u]] for u in uy]
        cand_idx = M.bucc_mine(x[[ps[u] for u in ux]], y[[pt[u] for u in uy]], k=ctx.cfg.eval.retrieval.bucc_neighbors)
        cand = {(sid[xs[i]], tid[ys[j]]): s for (i, j), s in cand_idx.items()
                if sources[xs[i]] not in rep_s and targets[ys[j]] not in rep_t}
        gold = {(sid[i], tid[i]) for i in range(len(ds)) if sources[i] and targets[i]}
        key = ("bucc_threshold", ctx.task.name, lang)
        if ctx.split == "test" and key in ctx.state:
            threshold, from_dev = ctx.state[key], 1.0
        else:
            threshold, from_dev = M.bucc_optimize(cand, gold), 0.0
            if ctx.split == "dev":
                ctx.state[key] = threshold
        scores = M.bucc_f1(cand, gold, threshold)
        scores.update(threshold=float(threshold), threshold_from_dev=from_dev)
        rows = [{"id": i, "pred": j, "score": float(s), "kept": bool(s >= threshold), "gold": (i, j) in gold}
                for (i, j), s in sorted(cand.items())]
        return scores, rows
