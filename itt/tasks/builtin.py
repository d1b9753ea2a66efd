"""Built-in tasks with their public 🤗 Hub sources (parquet dataset IDs; no loading scripts).

Targets: XNLI (15 languages), PAWS-X (7). Intermediate (English): MNLI, ANLI, SNLI, QQP, PAWS,
SST-2, STS-B. A config can re-point any of them to local files (``tasks.<name>.train: {files: ...}``).
"""

from __future__ import annotations

from itt.config import DataSpec
from itt.tasks import register
from itt.tasks._base import Kind, Task

NLI_LABELS = ("entailment", "neutral", "contradiction")

XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
PAWSX_LANGS = ("de", "en", "es", "fr", "ja", "ko", "zh")


def _hub(path: str, split: str, config: str | None = None, **kw) -> DataSpec:
    return DataSpec(hub=path, config=config, split=split, **kw)


# English first: languages[0] is the language the target is fine-tuned in.
register(Task(
    name="xnli", kind=Kind.PAIR, fields=("premise", "hypothesis"), labels=NLI_LABELS, metric="accuracy",
    languages=("en",) + tuple(sorted(set(XNLI_LANGS) - {"en"})),
    train=_hub("facebook/xnli", "train", "en"),
    dev=_hub("facebook/xnli", "validation", "{lang}"),
    test=_hub("facebook/xnli", "test", "{lang}"),
    description="XNLI (Conneau et al., 2018): MNLI-style NLI in 15 languages; English train = MNLI.",
))
register(Task(
    name="pawsx", kind=Kind.PAIR, fields=("sentence1", "sentence2"), labels=("not_paraphrase", "paraphrase"),
    metric="accuracy", languages=("en",) + tuple(sorted(set(PAWSX_LANGS) - {"en"})),
    # (the Hub's PAWS-X and PAWS mark a missing or unreadable label -1, as SNLI does: such rows are dropped)
    train=_hub("google-research-datasets/paws-x", "train", "en", drop_labels=[-1]),
    dev=_hub("google-research-datasets/paws-x", "validation", "{lang}", drop_labels=[-1]),
    test=_hub("google-research-datasets/paws-x", "test", "{lang}", drop_labels=[-1]),
    description="PAWS-X (Yang et al., 2019): adversarial paraphrase identification in 7 languages; rows "
                "without a label (-1), if any, are dropped.",
))
register(Task(
    name="mnli", kind=Kind.PAIR, fields=("premise", "hypothesis"), labels=NLI_LABELS, metric="accuracy",
    train=_hub("nyu-mll/glue", "train", "mnli"), dev=_hub("nyu-mll/glue", "validation_matched", "mnli"),
    description="MultiNLI (Williams et al., 2018), GLUE version.",
))
register(Task(
    name="anli", kind=Kind.PAIR, fields=("premise", "hypothesis"), labels=NLI_LABELS, metric="accuracy",
    train=_hub("facebook/anli", "train_r1+train_r2+train_r3", "plain_text"),
    dev=_hub("facebook/anli", "dev_r1+dev_r2+dev_r3", "plain_text"),
    description="Adversarial NLI (Nie et al., 2020), rounds 1-3 together.",
))
register(Task(
    name="snli", kind=Kind.PAIR, fields=("premise", "hypothesis"), labels=NLI_LABELS, metric="accuracy",
    train=_hub("stanfordnlp/snli", "train", "plain_text", drop_labels=[-1]),
    dev=_hub("stanfordnlp/snli", "validation", "plain_text", drop_labels=[-1]),
    description="SNLI (Bowman et al., 2015); pairs without a gold label (-1) are dropped.",
))
register(Task(
    name="qqp", kind=Kind.PAIR, fields=("question1", "question2"), labels=("not_duplicate", "duplicate"),
    metric="accuracy", train=_hub("nyu-mll/glue", "train", "qqp"), dev=_hub("nyu-mll/glue", "validation", "qqp"),
    description="Quora Question Pairs, GLUE version.",
))
register(Task(
    name="paws", kind=Kind.PAIR, fields=("sentence1", "sentence2"), labels=("not_paraphrase", "paraphrase"),
    metric="accuracy", train=_hub("google-research-datasets/paws", "train", "labeled_final", drop_labels=[-1]),
    dev=_hub("google-research-datasets/paws", "validation", "labeled_final", drop_labels=[-1]),
    description="PAWS (Zhang et al., 2019), English Wikipedia, labeled_final; rows without a label (-1) are dropped.",
))
register(Task(
    name="sst2", kind=Kind.SINGLE, fields=("sentence",), labels=("negative", "positive"), metric="accuracy",
    train=_hub("nyu-mll/glue", "train", "sst2"), dev=_hub("nyu-mll/glue", "validation", "sst2"),
    description="SST-2 sentiment (Socher et al., 2013), GLUE version.",
))
register(Task(
    name="stsb", kind=Kind.REGRESSION, fields=("sentence1", "sentence2"), labels=None, metric="pearson",
    train=_hub("nyu-mll/glue", "train", "stsb"), dev=_hub("nyu-mll/glue", "validation", "stsb"),
    description="STS-B semantic similarity (0-5), GLUE version.",
))
