"""Single-sentence and pair classification, pair regression: a head on the pooled representation."""

from __future__ import annotations

from itt import metrics as M
from itt.kinds._base import KindHandler
from itt.models import TaskModel, head_dropout
from itt.train import new_head, predict, tokenize


class ClassificationHandler(KindHandler):
    def featurize(self, ds, task, tokenizer, hp, *, train: bool):
        return tokenize(ds, task, tokenizer, hp.max_length)

    def model(self, encoder, task, *, hidden: int, pooling: str, seed: int):
        return TaskModel(encoder, new_head(hidden, task, seed, head_dropout(encoder)), pooling, task.is_regression)

    def evaluate(self, ctx, model, ds, feats, lang):
        task = ctx.task
        pred = predict(ctx.accelerator, model, feats, ctx.tokenizer, batch_size=ctx.cfg.eval.batch_size)
        rows = []
        for i, (ex_id, gold) in enumerate(zip(ds["id"], ds["label"])):
            if task.is_regression:
                rows.append({"id": ex_id, "gold": float(gold), "pred": float(pred[i])})
            else:
                rows.append({"id": ex_id, "gold": task.labels[int(gold)], "pred": task.labels[int(pred[i])]})
        return M.task_metrics(task, ds["label"], pred), rows
