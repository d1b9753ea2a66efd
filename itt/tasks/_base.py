"""A task is one small declarative object: kind, text fields, labels, metric, languages, data sources."""

from __future__ import annotations

from dataclasses import dataclass, field

from itt.config import DataSpec, SplitSource


class Kind:
    """Task kinds (named constants, not bare strings scattered around)."""

    SINGLE = "single_classification"
    PAIR = "pair_classification"
    REGRESSION = "pair_regression"

    ALL = (SINGLE, PAIR, REGRESSION)
    N_FIELDS = {SINGLE: 1, PAIR: 2, REGRESSION: 2}
    METRICS = {SINGLE: ("accuracy", "macro_f1"), PAIR: ("accuracy", "macro_f1"), REGRESSION: ("pearson", "spearman")}


SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Task:
    """One registered task. ``languages[0]`` is the training language (English for every XTREME task).

    >>> Task("sst2", Kind.SINGLE, ("sentence",), ("negative", "positive"), "accuracy", ("en",),
    ...      train=DataSpec(hub="nyu-mll/glue", config="sst2", split="train"))  # doctest: +ELLIPSIS
    Task(name='sst2', ...)
    """

    name: str
    kind: str
    fields: tuple[str, ...]
    labels: tuple[str, ...] | None  # None for regression
    metric: str  # the primary metric; the kind's other metrics are reported too
    languages: tuple[str, ...] = ("en",)
    train: SplitSource | None = None
    dev: SplitSource | None = None
    test: SplitSource | None = None
    description: str = ""
    metadata: dict = field(default_factory=dict, compare=False)

    @property
    def is_regression(self) -> bool:
        return self.kind == Kind.REGRESSION

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def metrics(self) -> tuple[str, ...]:
        return Kind.METRICS[self.kind]

    def source(self, split: str, lang: str) -> DataSpec | None:
        """The data spec of one split in one language (per-language mappings or a ``{lang}`` template)."""
        src = getattr(self, split)
        if isinstance(src, dict):
            return src.get(lang)
        return src

    def problems(self) -> list[str]:
        """Inconsistencies of the definition itself (checked for built-in and config-defined tasks)."""
        out = []
        if self.kind not in Kind.ALL:
            out.append(f"unknown kind '{self.kind}' (known: {', '.join(Kind.ALL)})")
            return out
        if len(self.fields) != Kind.N_FIELDS[self.kind]:
            out.append(f"kind '{self.kind}' needs {Kind.N_FIELDS[self.kind]} text field(s), got {list(self.fields)}")
        if self.is_regression and self.labels:
            out.append("a regression task has no label set")
        if not self.is_regression and (not self.labels or len(self.labels) < 2):
            out.append("a classification task needs at least two labels")
        if self.metric not in self.metrics:
            out.append(f"metric '{self.metric}' does not fit kind '{self.kind}' (use one of {', '.join(self.metrics)})")
        if not self.languages:
            out.append("no languages")
        return out
