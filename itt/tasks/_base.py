"""A task is one small declarative object: kind, text fields, labels, metric, languages, data sources."""

from __future__ import annotations

from dataclasses import dataclass, field

from itt.config import DataSpec, SplitSource


class Kind:
    """Task kinds (named constants, not bare strings scattered around)."""

    SINGLE = "single_classification"
    PAIR = "pair_classification"
    REGRESSION = "pair_regression"
    TOKEN = "token_classification"  # one tag per word (NER, POS); fields: (tokens,)
    QA = "extractive_qa"  # a span of the context; fields: (question, context)
    CHOICE = "multiple_choice"  # one of several answers; fields: (question, choices)
    RETRIEVAL = "retrieval"  # parallel sentences found by embedding similarity, no training; fields: (source, target)

    ALL = (SINGLE, PAIR, REGRESSION, TOKEN, QA, CHOICE, RETRIEVAL)
    CLASSIFICATION = (SINGLE, PAIR, REGRESSION)  # one label per example, pooled representation
    N_FIELDS = {SINGLE: 1, PAIR: 2, REGRESSION: 2, TOKEN: 1, QA: 2, CHOICE: 2, RETRIEVAL: 2}
    # the metrics a kind can be judged by; a task's own tuple (Task.metrics) depends on its labels/metric
    METRICS = {SINGLE: ("accuracy", "macro_f1"), PAIR: ("accuracy", "macro_f1"), REGRESSION: ("pearson", "spearman"),
               TOKEN: ("f1", "accuracy"), QA: ("f1", "exact_match"), CHOICE: ("accuracy",),
               RETRIEVAL: ("accuracy", "f1")}
    LABELLED = (SINGLE, PAIR, TOKEN)  # kinds with a label set
    # the field names a kind's loaders and heads use (a config-defined task of these kinds may omit `fields`)
    DEFAULT_FIELDS = {TOKEN: ("tokens",), QA: ("question", "context"), CHOICE: ("question", "choices"),
                      RETRIEVAL: ("source", "target")}


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
    def is_iob(self) -> bool:
        """Tags in the IOB scheme (NER): entity-level scores apply."""
        return bool(self.labels) and all(t == "O" or t[:2] in ("B-", "I-") for t in self.labels)

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric reported per language, the primary one first."""
        if self.kind == Kind.TOKEN:
            # NER: seqeval entity F1 (conlleval rules). POS: token accuracy, plus the seqeval F1 that
            # XTREME's evaluate.py reports for UD-POS (computed on the raw tags).
            return ("f1", "precision", "recall") if self.is_iob else ("accuracy", "f1")
        if self.kind == Kind.QA:
            return ("f1", "exact_match")
        if self.kind == Kind.RETRIEVAL:
            return ("accuracy",) if self.metric == "accuracy" else ("f1", "precision", "recall")
        return Kind.METRICS[self.kind]

    @property
    def trains(self) -> bool:
        """Retrieval tasks are evaluated on the encoder as it is, without a fine-tune."""
        return self.kind != Kind.RETRIEVAL

    @property
    def xtreme_metric(self) -> str:
        """The per-language figure XTREME's evaluate.py averages for this task ("em_f1" = (EM + F1) / 2)."""
        if "xtreme_metric" in self.metadata:
            return self.metadata["xtreme_metric"]
        if self.kind == Kind.QA:
            return "em_f1"
        if self.kind == Kind.TOKEN:
            return "f1"
        return self.metric

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
        if self.kind in Kind.DEFAULT_FIELDS and tuple(self.fields) != Kind.DEFAULT_FIELDS[self.kind]:
            out.append(f"kind '{self.kind}' uses the fields {list(Kind.DEFAULT_FIELDS[self.kind])} "
                       f"(got {list(self.fields)}; map source columns to them with 'columns')")
        elif len(self.fields) != Kind.N_FIELDS[self.kind]:
            out.append(f"kind '{self.kind}' needs {Kind.N_FIELDS[self.kind]} text field(s), got {list(self.fields)}")
        if self.kind not in Kind.LABELLED and self.labels:
            out.append(f"a {self.kind} task has no label set")
        if self.kind in Kind.LABELLED and (not self.labels or len(self.labels) < 2):
            example = "[O, B-PER, I-PER]" if self.kind == Kind.TOKEN else "[negative, positive]"
            got = f"got {list(self.labels)}" if self.labels else "none given"
            out.append(f"a {self.kind} task needs 'labels', its label set of two or more (e.g. labels: "
                       f"{example}; {got})")
        if self.metric not in Kind.METRICS[self.kind] or self.metric not in self.metrics:
            ok = self.metrics if self.kind != Kind.RETRIEVAL else Kind.METRICS[self.kind]
            out.append(f"metric '{self.metric}' does not fit kind '{self.kind}' (use one of {', '.join(ok)})")
        norm = self.metadata.get("qa_normalization")
        if norm is not None and norm not in ("squad", "mlqa"):
            out.append(f"options.qa_normalization: '{norm}' (use squad or mlqa)")
        if not self.languages:
            out.append("no languages")
        return out
