"""What every task kind brings: its features, its head and model, and its evaluation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from torch import nn


@dataclass
class EvalFeatures:
    """Model inputs of an eval split (``inputs``, one row per window or example) and what decoding
    needs to map outputs back to examples (``meta``)."""

    inputs: object  # datasets.Dataset of model inputs only
    meta: dict = field(default_factory=dict)


@dataclass
class EvalContext:
    """What an evaluation needs besides the model and the data."""

    accelerator: object
    tokenizer: object
    cfg: object  # ChainConfig
    task: object  # Task
    split: str = "dev"
    state: dict = field(default_factory=dict)  # shared across splits of one evaluation (BUCC's dev threshold)


class KindHandler(ABC):
    """One task kind. ``featurize`` turns validated rows into model inputs; ``model`` puts the kind's
    head on the shared encoder (the only thing that passes between stages); ``evaluate`` scores one
    language and returns the prediction rows written next to the results."""

    trains: bool = True

    @abstractmethod
    def featurize(self, ds, task, tokenizer, hp, *, train: bool):
        """A tokenized dataset (train) or :class:`EvalFeatures` (eval)."""

    @abstractmethod
    def model(self, encoder, task, *, hidden: int, pooling: str, seed: int) -> nn.Module:
        """Encoder + a fresh head seeded by ``seed``; ``forward(**batch)`` gives logits, ``loss(logits, labels)``."""

    @abstractmethod
    def evaluate(self, ctx, model, ds, feats, lang: str) -> tuple[dict[str, float], list[dict]]:
        """Metrics of one language and one prediction row per example (``{"id", "gold", "pred"}``)."""
