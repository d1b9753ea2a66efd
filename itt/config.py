"""Typed chain configuration, validated at the door.

A config is YAML (read with ``yaml.safe_load``'s loader) grouped by concern: what is trained (``model``,
``order``, ``target``, ``tasks``), how (``train``, ``stages``, ``finetune``), how it is judged
(``eval``) and on what hardware (``hardware``). Unknown keys, a key given twice in one mapping and wrong
types are errors that name the key and the file. ``--set key=value`` overrides are applied to the raw mapping before validation, so
they are checked exactly like the file.
"""

from __future__ import annotations

import copy
import types
import typing
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from itt.errors import ConfigError, not_utf8


def distinct_names(v: list[str] | None, what: str) -> list[str] | None:
    """A list of languages (or tasks) a config gives: null means "all", so an empty list is refused rather
    than read as all, and a name given twice would count twice in a mean."""
    if v is None:
        return v
    if not v:
        raise ValueError(f"give at least one {what} (or leave the key out)")
    _once_each(v, what)
    return v


def _once_each(v: list, what: str) -> None:
    """A ValueError naming the first (in sorted order) of ``v``'s values given twice, if any."""
    twice = sorted({x for x in v if v.count(x) > 1})
    if twice:
        raise ValueError(f"{what} '{twice[0]}' is given twice")


def _languages(cls, v):
    return distinct_names(v, "language")


def _numeric_only(annotation) -> bool:
    """Whether a field's type takes an int or a float but no bool (``int | None``, ``int | tuple[int, int]``)."""
    args, todo = set(), [annotation]
    while todo:
        a = todo.pop()
        origin = typing.get_origin(a)
        if origin is typing.Annotated:
            todo.append(typing.get_args(a)[0])
        elif origin in (typing.Union, types.UnionType):
            todo.extend(typing.get_args(a))
        else:
            args.add(a)
    return bool(args & {int, float}) and bool not in args and Any not in args


def no_bool_for_a_number(cls, v, info):
    """YAML reads yes/no/on/off/true/false as booleans, and pydantic takes a boolean for a number (true = 1):
    ``train.batch_size: on`` trained with batch size 1, ``search.num_samples: yes`` ran one trial."""
    if isinstance(v, bool):
        field = cls.model_fields.get(info.field_name)
        if field is not None and _numeric_only(field.annotation):
            raise ValueError(f"give a number, not {v!r} (YAML reads yes/no/on/off/true/false as true or false)")
    return v


class _Strict(BaseModel):
    # inf and nan are no setting's value (train.lr: .inf trained to NaN; epochs: .inf overflowed at the stage)
    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)

    _no_bool = field_validator("*", mode="before")(classmethod(no_bool_for_a_number))


def _split_commas(v: Any) -> Any:
    """Accept ``a,b,c`` on the command line where a list is expected (``--set order=mnli,sst2``), and one
    number for a list of numbers (``--set seeds=0``)."""
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    if isinstance(v, int) and not isinstance(v, bool):
        return [v]
    return v


# --------------------------------------------------------------------------- data sources
class DataSpec(_Strict):
    """Where one split of one task (in one language) comes from.

    Exactly one of ``hub`` (a 🤗 Hub dataset ID, parquet), ``files`` (local tsv/csv/jsonl/json/
    parquet/text files) or ``toy`` (the generated offline benchmark). ``{lang}`` in ``config``,
    ``split`` or ``files`` is replaced by the language code.
    """

    hub: str | None = None
    config: str | None = None  # Hub config name, e.g. "{lang}" for facebook/xnli
    split: str = "train"  # Hub split name (datasets slicing/concatenation syntax allowed)
    revision: str | None = None
    files: str | list[str] | None = None
    # conll: one token per line, blank line between sentences; conllu: CoNLL-U (comments and empty nodes
    # skipped, multiword tokens as conllu_multiword says); squad: SQuAD v1.1 JSON; parallel: two line-parallel text
    # files (source, target); bucc: BUCC 2018 files `source (id\tsentence)`, `target`, `gold (id\tid)`.
    format: Literal["auto", "tsv", "csv", "jsonl", "json", "parquet", "text", "conll", "conllu", "squad", "parallel",
                    "bucc"] = "auto"
    header: bool = True  # tsv/csv: first line names the columns
    column_names: list[str] | None = None  # tsv/csv without header
    line_pattern: str | None = None  # text format: regex with named groups, one line = one example
    conll_columns: tuple[int, int] | None = None  # conll/conllu: (token, tag) column; default (0, -1) / (1, 3) = UPOS
    # conllu: a multiword token (French "du" = "de le") as XTREME's UD-POS has it ("xtreme": the surface form,
    # tagged as its head word, the Hub's google/xtreme udpos too) or as its syntactic words, each tagged ("words")
    conllu_multiword: Literal["xtreme", "words"] = "xtreme"
    # task field -> source column; a list joins several text columns with a space (a context and a
    # question), or collects them as the answer options of a multiple-choice task
    columns: dict[str, str | list[str]] = Field(default_factory=dict)
    extract: dict[str, str] = Field(default_factory=dict)  # column -> regex whose named groups become columns
    id_prefix: str | None = None  # keep rows whose id starts with this (TyDiQA mixes languages in one split)
    label_map: dict[str, str | int | float] = Field(default_factory=dict)  # source value -> label
    drop_labels: list[str | int] = Field(default_factory=list)  # e.g. SNLI's -1 (no gold label)
    toy: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        n = sum([self.hub is not None, self.files is not None, self.toy])
        if n != 1:
            raise ValueError("give exactly one of 'hub', 'files' or 'toy'")
        if self.format == "text" and not self.line_pattern:
            raise ValueError("format 'text' needs a 'line_pattern' regex with named groups")
        if self.files is not None and not self.files:
            raise ValueError("'files' is empty: give a file (or a list of them)")
        n_files = 1 if isinstance(self.files, str) else len(self.files or [])
        need = {"parallel": 2, "bucc": 3}.get(self.format)
        if need and self.files is not None and n_files != need:
            raise ValueError(f"format '{self.format}' needs {need} files in order (got {n_files})")
        if self.line_pattern is not None:
            try:
                if not re.compile(self.line_pattern).groupindex:
                    raise ValueError("line_pattern: the regex has no named group (one per column, e.g. (?P<label>...))")
            except re.error as e:
                raise ValueError(f"line_pattern: not a valid regex ({e})") from None
        for col, pattern in self.extract.items():
            try:
                if not re.compile(pattern).groupindex:
                    raise ValueError(f"extract.{col}: the regex has no named group")
            except re.error as e:
                raise ValueError(f"extract.{col}: not a valid regex ({e})") from None
        return self


def _split_source_kind(v: Any) -> str:
    """A mapping none of whose keys is a DataSpec setting is one spec per language; anything else is one
    template. (Chosen before validation, so that a mistake is reported against the form it was meant as,
    not as "unknown key 'en'" from the other.)"""
    if isinstance(v, dict) and v and not set(v) & set(DataSpec.model_fields):
        return "dict[str,DataSpec]"
    return "DataSpec"


# one template, or one spec per language (the tags are the names format_validation_error leaves out)
SplitSource = Annotated[Union[Annotated[DataSpec, Tag("DataSpec")],  # noqa: UP007 (Tag needs the Union form)
                              Annotated[dict[str, DataSpec], Tag("dict[str,DataSpec]")]],
                        Discriminator(_split_source_kind)]


class TaskSpec(_Strict):
    """A task defined (or a built-in task re-pointed) in a config; no code needed."""

    kind: Literal["single_classification", "pair_classification", "pair_regression", "token_classification",
                  "extractive_qa", "multiple_choice", "retrieval"] | None = None
    fields: list[str] | None = None
    labels: list[str] | None = None
    metric: str | None = None
    languages: list[str] | None = None
    train: SplitSource | None = None
    dev: SplitSource | None = None
    test: SplitSource | None = None
    description: str | None = None
    options: dict[str, Any] | None = None  # kind-specific: qa_normalization (squad|mlqa), xtreme_metric

    _langs = field_validator("languages")(_languages)

    @field_validator("labels")
    @classmethod
    def _distinct_labels(cls, v):
        _once_each(v or [], "label")
        return v


# --------------------------------------------------------------------------- model
class TinyModel(_Strict):
    """A random-init architecture for offline use; sizes are deliberately small."""

    arch: Literal["bert", "roberta", "xlm-roberta", "xlnet", "distilbert"] = "bert"
    hidden_size: int = Field(64, gt=0)
    num_layers: int = Field(2, gt=0)
    num_heads: int = Field(2, gt=0)
    intermediate_size: int = Field(128, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModel:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")
        return self


class TokenizerTrain(_Strict):
    vocab_size: int = Field(2000, ge=100)  # small: the toy languages have a few hundred words each


class ModelConfig(_Strict):
    name: str | None = None  # 🤗 Hub ID or local path (xlm-roberta-base, bert-base-multilingual-cased, ...)
    revision: str | None = None
    tiny: TinyModel | None = None  # random-init model built from config instead of `name`
    tokenizer: str | None = None  # Hub ID or local path; default: `name`
    train_tokenizer: TokenizerTrain | None = None  # train a WordPiece tokenizer on the chain's data
    trust_remote_code: bool = False  # never on unless a config asks for it
    pooling: Literal["auto", "first", "last", "mean"] = "auto"  # auto: last token for XLNet and decoders, else first

    @field_validator("name", "tokenizer")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():  # ("" was read as the config's own folder)
            raise ValueError("give a 🤗 Hub ID or a local folder, not an empty string")
        return v

    @model_validator(mode="after")
    def _one_model(self) -> ModelConfig:
        if (self.name is None) == (self.tiny is None):
            raise ValueError("give exactly one of 'name' (Hub ID or path) or 'tiny' (architecture block)")
        if self.tokenizer is None and self.train_tokenizer is None and self.name is None:
            raise ValueError("a 'tiny' model needs 'tokenizer' (Hub ID or path) or 'train_tokenizer'")
        if self.tokenizer is not None and self.train_tokenizer is not None:
            raise ValueError("give 'tokenizer' or 'train_tokenizer', not both")
        if self.name is not None and self.train_tokenizer is not None:  # (it failed in prepare: no tiny.arch)
            raise ValueError("'train_tokenizer' fits a tokenizer for a 'tiny' model; a pretrained 'name' has its own "
                             "(remove 'train_tokenizer', or give 'tokenizer')")
        return self


# --------------------------------------------------------------------------- training
class StageHParams(_Strict):
    """Per-stage training settings; ``train`` sets defaults, ``stages.<task>`` / ``finetune`` override."""

    lr: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)
    max_steps: int | None = Field(None, gt=0)  # wins over epochs when set
    max_examples: int | None = Field(None, gt=0)  # cap on training examples (first N after a seeded shuffle)
    grad_accum: int | None = Field(None, gt=0)
    warmup_ratio: float | None = Field(None, ge=0, le=1)
    weight_decay: float | None = Field(None, ge=0)
    max_length: int | None = Field(None, gt=4)
    max_grad_norm: float | None = Field(None, gt=0)
    doc_stride: int | None = Field(None, gt=0)  # QA: context tokens between window starts (XTREME's; default max_length // 3)


class TrainDefaults(StageHParams):
    # Defaults follow the XTREME recipe scaled down: AdamW, linear decay with 10% warmup.
    lr: float = Field(2e-5, gt=0)
    batch_size: int = Field(32, gt=0)
    epochs: float = Field(1.0, gt=0)
    grad_accum: int = Field(1, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    max_length: int = Field(128, gt=4)
    max_grad_norm: float = Field(1.0, gt=0)


class Perturbation(_Strict):
    """Seeded character/word noise on the dev text: how much does the score drop?"""

    enabled: bool = False
    char_rate: float = Field(0.05, ge=0, le=1)  # edits per letter: substitute/delete/insert/swap
    word_rate: float = Field(0.1, ge=0, le=1)  # edits per word: drop or swap with the next
    seed: int = 1234


class QAEval(_Strict):
    """Span decoding (as in the SQuAD/XTREME scripts): best start+end logit sum among the n-best starts
    and ends of every window, a span of at most ``max_answer_length`` tokens inside the context."""

    n_best: int = Field(20, gt=0)
    max_answer_length: int = Field(30, gt=0)


class RetrievalEval(_Strict):
    """Sentence embeddings for Tatoeba/BUCC: pooled hidden states of one layer, no fine-tuning.

    ``layer`` indexes the hidden states (0 = embeddings); default n_layers // 2 + 2 = hidden_states[8]
    of a 12-layer encoder and [14] of a 24-layer one: XTREME's run_tatoeba.sh (--specific_layer 7 and 13,
    indexing the transformer layers' outputs without the embeddings)."""

    layer: int | None = None
    # auto: as XTREME's script for the task: BUCC the summary token ([CLS]; run_bucc2018.sh --pool_type cls, the
    # last token for XLNet and decoders, as model.pooling: auto), Tatoeba and others the mean (run_tatoeba.sh)
    pooling: Literal["auto", "mean", "first", "last"] = "auto"
    max_length: int = Field(128, gt=4)
    bucc_neighbors: int = Field(4, gt=0)  # k of the ratio margin (LASER/XTREME mining)


class EvalConfig(_Strict):
    splits: list[Literal["dev", "test"]] = Field(default_factory=lambda: ["dev", "test"])
    batch_size: int = Field(128, gt=0)
    max_examples: int | None = Field(None, gt=0)  # per language and split; None = all
    perturbation: Perturbation = Field(default_factory=Perturbation)
    qa: QAEval = Field(default_factory=QAEval)
    retrieval: RetrievalEval = Field(default_factory=RetrievalEval)
    # tasks evaluated beside the target on the encoder the intermediate stages produced (as Phang et al.
    # evaluate on every XTREME task): retrieval ones (tatoeba, bucc) as it is, the others each after a
    # fine-tune of a copy of it (the `finetune` hyperparameters): task -> languages (null = all of the task's)
    also: dict[str, list[str] | None] = Field(default_factory=dict)

    _csv = field_validator("splits", mode="before")(_split_commas)

    @field_validator("splits")
    @classmethod
    def _dev_first(cls, v):
        # dev before test whatever the order given: BUCC's test F1 takes the threshold chosen on dev, so dev
        # must be scored first (test first optimised the threshold on test's own gold pairs)
        return sorted(v, key=("dev", "test").index)

    @field_validator("also", mode="before")
    @classmethod
    def _also_list(cls, v):
        return {t: None for t in v} if isinstance(v, (list, tuple)) else v

    @field_validator("also")
    @classmethod
    def _also_languages(cls, v):
        for task, langs in v.items():
            try:
                distinct_names(langs, "language")
            except ValueError as e:
                raise ValueError(f"{task}: {e}") from None
        return v


class ProbeConfig(_Strict):
    """After each intermediate stage: a short fixed-budget target fine-tune on a *copy* of the encoder,
    then zero-shot dev evaluation. It gives a scheduler (ASHA) a signal before the chain ends, and is
    science in itself: transfer after each prefix."""

    enabled: bool = False
    steps: int = Field(50, gt=0)  # optimizer steps of the probe fine-tune (target hparams otherwise)
    languages: list[str] | None = None  # default: the target languages
    max_eval_examples: int | None = Field(200, gt=0)  # per language, from the dev split
    # eval.also's tasks too (each fine-tuned for `steps` on its own copy where it trains; its dev split in
    # its eval languages): the probe then gives the XTREME average over the target and them. null: on in
    # a search that optimises that average (search.metric: xtreme), off otherwise
    also: bool | None = None

    _csv = field_validator("languages", mode="before")(_split_commas)
    _langs = field_validator("languages")(_languages)


class HardwareConfig(_Strict):
    """How to run, never what is searched."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16 where the GPU has it
    sdpa: bool = True  # fused attention where the architecture supports it (not XLNet)
    group_by_length: bool | None = None  # default: on GPU only
    fused_optimizer: bool | None = None  # default: on GPU only
    num_workers: int = Field(0, ge=0)  # DataLoader workers
    num_threads: int | None = Field(None, gt=0)  # CPU threads for torch; default: torch's choice
    # a CUDA out-of-memory error in a single-process stage: the step again in micro-batches half as large,
    # the same update (itt.train.MicroBatches); false: the error ends the chain
    split_on_oom: bool = True
    # recompute each layer's activations in the backward pass (🤗's gradient checkpointing): far less
    # activation memory (XLM-R large at 512 tokens) for about a third more compute; the same numbers
    gradient_checkpointing: bool = False
    # CUDA: deterministic kernels where torch has them (torch.use_deterministic_algorithms, warn-only; cuBLAS's
    # fixed workspace; no cuDNN autotuning), to repeat a chain's numbers on a GPU too, a little slower
    # (itt.train.deterministic; bench/gpu_equivalence.py measures whether it does). CPU chains repeat anyway.
    deterministic: bool = False


def distinct_seeds(v: list[int]) -> list[int]:
    """Chain seeds: at least one, none twice (a seed run twice is not a replicate), each in range."""
    if not v:
        raise ValueError("give at least one seed")
    if len(set(v)) != len(v):
        raise ValueError("seeds must be distinct")
    return checked_seeds(v)


MAX_SEED = 999_999  # a stage's seed is seed x 1000 + its index: torch, numpy and 🤗 set_seed take it below 2**32


def checked_seeds(seeds):
    """``seeds`` (chain seeds) when each lies in 0..MAX_SEED; else a ValueError naming one that does not."""
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise ValueError(f"seed {bad[0]} is out of range: give seeds from 0 to {MAX_SEED}")
    return seeds


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a run or an experiment (it becomes a folder under runs/ or --storage, and
    an MLflow experiment), or None: a path would put the outputs somewhere else."""
    if not name.strip():
        return "give a name (it names the output folder)"
    if "/" in name or "\\" in name or name in (".", ".."):
        return f"'{name}' is a path, not a name: the outputs go to a folder of this name (use --storage or --out for where)"
    return None


class TargetConfig(_Strict):
    task: str
    languages: list[str] | None = None  # default: all languages of the task

    _csv = field_validator("languages", mode="before")(_split_commas)
    _langs = field_validator("languages")(_languages)


class ChainConfig(_Strict):
    name: str = "chain"
    model: ModelConfig
    order: list[str] = Field(default_factory=list)  # intermediate tasks in order; [] = the F baseline
    target: TargetConfig
    tasks: dict[str, TaskSpec] = Field(default_factory=dict)
    train: TrainDefaults = Field(default_factory=TrainDefaults)
    stages: dict[str, StageHParams] = Field(default_factory=dict)
    finetune: StageHParams = Field(default_factory=StageHParams)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    hardware: HardwareConfig = Field(default_factory=HardwareConfig)
    seeds: list[int] = Field(default_factory=lambda: [0])  # repeats of the whole chain
    data_seed: int = Field(0, ge=0, lt=2**32)  # which examples a cap keeps; fixed across seeds so seeds vary only training
    data_root: str | None = None  # relative `files` paths resolve against this (default: the config's folder)
    toy: dict[str, Any] = Field(default_factory=dict)  # options of the generated toy benchmark
    save_checkpoint: bool = True  # final encoder + tokenizer as safetensors in the output folder
    cache_dir: str | None = None  # stage cache (itt/cache.py): reuse encoders of prefixes trained before; a path or URI

    _csv = field_validator("order", "seeds", mode="before")(_split_commas)

    @field_validator("name")
    @classmethod
    def _name_is_a_name(cls, v: str) -> str:
        problem = name_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds_nonempty(cls, v: list[int]) -> list[int]:
        return distinct_seeds(v)

    @field_validator("toy")
    @classmethod
    def _toy_options(cls, v: dict) -> dict:
        """The generated benchmark's options (itt/toy.py's DEFAULTS): a typo was ignored, and n_train: 0
        failed later as "missing column 'sentence'"."""
        from itt.toy import DEFAULTS

        for key, value in v.items():
            if key not in DEFAULTS:
                raise ValueError(f"unknown option '{key}' (known: {', '.join(DEFAULTS)})")
            least = 0 if key == "seed" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{key}: give a whole number, {least} or more (got {value!r})")
        return v

    @field_validator("order")
    @classmethod
    def _no_repeats(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"a task appears twice in the order: {v}")
        return v

    @model_validator(mode="after")
    def _checkpointing_supported(self) -> ChainConfig:
        if self.hardware.gradient_checkpointing and self.model.tiny is not None and self.model.tiny.arch == "xlnet":
            raise ValueError("hardware.gradient_checkpointing: transformers' XLNet does not support it; set it to false")
        return self

    def stage_hparams(self, task: str | None) -> TrainDefaults:
        """Resolved hyperparameters of one stage (``None`` = the target fine-tune)."""
        over = self.finetune if task is None else self.stages.get(task, StageHParams())
        merged = self.train.model_dump()
        merged.update({k: v for k, v in over.model_dump().items() if v is not None})
        return TrainDefaults(**merged)

    def also_hparams(self, task: str) -> TrainDefaults:
        """Hyperparameters of an ``eval.also`` task's fine-tune: the target fine-tune's (``finetune``),
        with that task's ``stages.<task>`` on top (XTREME's recipes differ per task: PAWS-X 5 epochs, ...)."""
        merged = self.stage_hparams(None).model_dump()
        if task in self.stages:
            merged.update({k: v for k, v in self.stages[task].model_dump().items() if v is not None})
        return TrainDefaults(**merged)


# --------------------------------------------------------------------------- loading
# mappings whose keys are dotted config keys themselves (``search.hparams: {train.lr: ...}``): after such a
# prefix (and, for seed_points.hparams, an order), the rest of a --set key is one key, not a path
_DOTTED_KEYS = ((("search", "hparams"), 0), (("search", "confirm", "vary"), 0), (("search", "seed_points", "hparams"), 1))


def _key_parts(key: str) -> list[str]:
    """``key`` split at its dots, except inside a key that is itself a dotted config key:
    ``search.hparams.train.lr`` -> ``search``, ``hparams``, ``train.lr``."""
    parts = key.split(".")
    for prefix, plain in _DOTTED_KEYS:
        n = len(prefix) + plain
        if tuple(parts[:len(prefix)]) == prefix and len(parts) > n + 1:
            return parts[:n] + [".".join(parts[n:])]
    return parts


def set_dotted(raw: dict, key: str, value: Any, where: str) -> None:
    parts = _key_parts(key)
    node = raw
    for p in parts[:-1]:
        if not isinstance(node.get(p, {}), dict):
            raise ConfigError(f"{where}: cannot set '{key}': '{p}' is not a mapping")
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """``key=value`` strings (value parsed as YAML) applied to a raw config mapping."""
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, _, text = item.partition("=")
        key = key.strip()
        if not key:
            raise ConfigError(f"--set {item!r}: empty key")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        set_dotted(raw, key, value, f"--set {item!r}")
    return raw


def format_validation_error(err: ValidationError, where: str, prefix: str = "", overrides: list[str] | None = None) -> str:
    """The first problem of a pydantic error as one line that names the key and the file (or the ``--set``
    override that put the key there: ``trian.lr=1`` is not in the file)."""
    e = err.errors()[0]
    loc = prefix + ".".join(str(p) for p in e["loc"]
                            if not str(p).startswith(("function-", "tagged-union", "constrained-", "literal[")))
    # Unions (DataSpec | dict) report every branch; keep the location readable.
    loc = loc.replace(".DataSpec", "").replace(".dict[str,DataSpec]", "")
    kind = e["type"]
    if kind == "extra_forbidden":
        msg = f"unknown key '{loc}'"
    elif kind == "missing":
        msg = f"missing key '{loc}'"
    else:
        text = e["msg"].removeprefix("Value error, ")  # (pydantic's prefix for a validator's own message)
        if loc == prefix:  # (a model validator's own message, about several keys of the block)
            msg = f"{prefix.rstrip('.')}: {text}" if prefix else text
        else:
            msg = f"'{loc}': {text}" if loc else text
        if "input" in e and kind != "value_error" and not isinstance(e["input"], dict):
            msg += f" (got {e['input']!r})"
    given = [o for o in overrides or [] if _same_key(o.partition("=")[0].strip(), loc)]
    return f"{where} --set {given[-1]!r}: {msg}" if given else f"{where}: {msg}"


def _same_key(key: str, loc: str) -> bool:
    """A --set key and an error's location name the same setting, or one holds the other."""
    return bool(key and loc) and (key == loc or loc.startswith(key + ".") or key.startswith(loc + "."))


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: a folder, not a config file (give the YAML file)")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: {not_utf8(e)}: save the config as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror or e})") from None
    return parse_yaml(text, str(path))


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a key given twice in one mapping is an error (YAML says keys
    are unique; PyYAML keeps the last silently, so a second ``seeds:`` or a task block pasted twice would
    change the run unseen). Keys merged in with ``<<:`` may still be overridden."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue  # (an unhashable key: the base class says so)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' given twice in one mapping, first on line {seen[key] + 1}",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, where: str) -> dict:
    """YAML text (a file's, or one read from a store) -> a mapping; a ConfigError naming ``where``."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        why = str(getattr(e, "problem", None) or e).strip().splitlines()[0]  # (a ReaderError has no problem)
        raise ConfigError(f"{where}{line}: not valid YAML ({why})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    return raw


def validate(raw: dict, where: str, model: type[BaseModel] = ChainConfig, prefix: str = "",
             overrides: list[str] | None = None) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, where, prefix, overrides)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ChainConfig:
    """Read, override and validate a chain config. Relative data paths resolve against its folder."""
    raw = apply_overrides(read_yaml(path), overrides)
    raw.pop("search", None)  # the order search's own block (read by search/, not by a chain)
    here = Path(path).resolve().parent
    root = raw.get("data_root")
    # relative paths in a config mean "relative to the config file", whatever the working directory
    raw["data_root"] = str(here if root is None else (here / str(root)).resolve() if not Path(str(root)).is_absolute() else root)
    cd = raw.get("cache_dir")
    if isinstance(cd, str) and "://" not in cd and not Path(cd).is_absolute():
        raw["cache_dir"] = str((here / cd).resolve())
    model = raw.get("model")
    if isinstance(model, dict):
        for key in ("name", "tokenizer"):  # a local model path, like data, is relative to the config
            v = model.get(key)
            if isinstance(v, str) and v.strip() and not Path(v).is_absolute() and (here / v).exists():
                model[key] = str((here / v).resolve())
    cfg = validate(raw, str(path), overrides=overrides)
    from itt.tasks import check_config_tasks  # late: the registry imports this module

    check_config_tasks(cfg, str(path))
    return cfg
