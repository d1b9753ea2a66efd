"""Multiple choice (CommonsenseQA, HellaSwag, Cosmos QA): each (question, option) pair encoded, one score
per option from its pooled representation, softmax over the options."""

from __future__ import annotations

import datasets
import numpy as np
import torch

from itt.kinds._base import EvalFeatures, KindHandler
from itt.models import ChoiceModel, head_dropout


def featurize_choices(ds, tokenizer, max_length: int):
    questions, choices = ds["question"][:], ds["choices"][:]
    k = len(choices[0]) if choices else 0
    flat_q = [q for q, cs in zip(questions, choices) for _ in cs]
    flat_c = [c for cs in choices for c in cs]
    enc = tokenizer(flat_q, flat_c, truncation=True, max_length=max_length)
    keep = [c for c in tokenizer.model_input_names if c in enc]
    cols = {c: [enc[c][i * k:(i + 1) * k] for i in range(len(questions))] for c in keep}
    cols["labels"] = ds["label"][:]
    return datasets.Dataset.from_dict(cols)


class ChoiceHandler(KindHandler):
    def featurize(self, ds, task, tokenizer, hp, *, train: bool):
        feats = featurize_choices(ds, tokenizer, hp.max_length)
        return feats if train else EvalFeatures(feats)

    def model(self, encoder, task, *, hidden: int, pooling: str, seed: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return ChoiceModel(encoder, pooling, head_dropout(encoder))  # the encoder's, as the other heads

    def evaluate(self, ctx, model, ds, feats, lang):
        from itt.train import predict_raw

        out = predict_raw(ctx.accelerator, model, feats.inputs, ctx.tokenizer, batch_size=ctx.cfg.eval.batch_size)
        pred = [int(np.argmax(o)) for o in out]
        gold = ds["label"][:]
        acc = float(np.mean([p == g for p, g in zip(pred, gold)])) if gold else 0.0
        rows = [{"id": i, "gold": g, "pred": p} for i, g, p in zip(ds["id"], gold, pred)]
        return {"accuracy": acc}, rows
