"""The generated offline benchmark (see :mod:`itt.toy`) registered as ordinary tasks."""

from __future__ import annotations

from itt import toy
from itt.config import DataSpec
from itt.tasks import register
from itt.tasks._base import Kind, Task

_T = DataSpec(toy=True)

register(Task(
    name="toy_xnli", kind=Kind.PAIR, fields=("premise", "hypothesis"), labels=("same", "near", "far"),
    metric="accuracy", languages=toy.LANGS, train=_T, dev=_T, test=_T,
    description="Toy target: topic relation of two sentences; languages with falling overlap with English.",
))
register(Task(name="toy_topic", kind=Kind.SINGLE, fields=("sentence",),
              labels=tuple(f"topic{i}" for i in range(toy.N_TOPICS)), metric="accuracy", train=_T, dev=_T,
              description="Toy intermediate: topic of a sentence (related to the target, easy)."))
register(Task(name="toy_align", kind=Kind.PAIR, fields=("sentence1", "sentence2"), labels=("other", "translation"),
              metric="accuracy", train=_T, dev=_T,
              description="Toy intermediate: English sentence vs toy-language translation (cross-lingual signal)."))
register(Task(name="toy_length", kind=Kind.SINGLE, fields=("sentence",), labels=("short", "long"),
              metric="accuracy", train=_T, dev=_T,
              description="Toy intermediate: more than seven words? (unrelated, easy)."))
register(Task(name="toy_parity", kind=Kind.SINGLE, fields=("sentence",), labels=("odd", "even"),
              metric="accuracy", train=_T, dev=_T,
              description="Toy intermediate: even number of function words? (unrelated, hard)."))
register(Task(name="toy_sim", kind=Kind.REGRESSION, fields=("sentence1", "sentence2"), labels=None,
              metric="pearson", train=_T, dev=_T,
              description="Toy intermediate: topic similarity 0-2 (related, regression)."))
