"""Loading task data through 🤗 datasets: Hub IDs and local files take one code path.

Every split comes back as a ``datasets.Dataset`` with the task's text fields, ``label`` (an int
index into the task's labels, or a float for regression) and a string ``id``, validated: a missing
file or column, a label outside the label set or an empty split is a :class:`DataError` naming
the task, split, language and file (and row, for labels).
"""

from __future__ import annotations

import csv
import glob
import re
from pathlib import Path

import datasets

from itt import toy
from itt.config import DataSpec
from itt.errors import DataError
from itt.tasks import Task

datasets.disable_progress_bars()
datasets.logging.set_verbosity_error()

_EXT = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".txt": "text"}


def _files(spec: DataSpec, lang: str, root: str | None) -> list[str]:
    items = [spec.files] if isinstance(spec.files, str) else list(spec.files or [])
    out = []
    for item in items:
        p = Path(item.replace("{lang}", lang)).expanduser()
        if not p.is_absolute() and root:
            p = Path(root) / p
        matches = sorted(glob.glob(str(p))) if any(c in str(p) for c in "*?[") else ([str(p)] if p.is_file() else [])
        if not matches:
            raise DataError(f"file not found: {p}")
        out.extend(matches)
    return out


def _format(spec: DataSpec, files: list[str]) -> str:
    if spec.format != "auto":
        return spec.format
    fmt = _EXT.get(Path(files[0]).suffix.lower())
    if fmt is None or fmt == "text":
        raise DataError(f"{files[0]}: cannot tell the format from the file name; set 'format' (tsv, csv, jsonl, json, parquet, text)")
    return fmt


def _load_local(spec: DataSpec, files: list[str]) -> datasets.Dataset:
    fmt = _format(spec, files)
    if fmt in ("tsv", "csv"):
        kw = dict(
            sep="\t" if fmt == "tsv" else ",",
            # TSV text holds bare quotes (XNLI); CSV uses them for quoting (ANLI has multi-line fields).
            quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL,
            keep_default_na=False,  # "NA" and "null" are words, not missing values
            na_filter=False,
        )
        if spec.column_names:
            kw.update(header=0 if spec.header else None, column_names=spec.column_names)
        elif not spec.header:
            raise DataError(f"{files[0]}: 'header: false' needs 'column_names'")
        ds = datasets.load_dataset("csv", data_files=files, split="train", **kw)
    elif fmt in ("jsonl", "json"):
        ds = datasets.load_dataset("json", data_files=files, split="train")
    elif fmt == "parquet":
        ds = datasets.load_dataset("parquet", data_files=files, split="train")
    else:  # text: one example per line, fields from a regex with named groups
        ds = datasets.load_dataset("text", data_files=files, split="train")
        pattern = re.compile(spec.line_pattern)
        rows = []
        for i, line in enumerate(ds["text"]):
            if not line.strip():
                continue
            m = pattern.match(line)
            if m is None:
                raise DataError(f"{files[0]}: line {i + 1} does not match line_pattern {spec.line_pattern!r}")
            rows.append(m.groupdict())
        ds = datasets.Dataset.from_list(rows)
    return ds


def _load_hub(spec: DataSpec, lang: str) -> datasets.Dataset:
    config = spec.config.replace("{lang}", lang) if spec.config else None
    split = spec.split.replace("{lang}", lang)
    try:
        return datasets.load_dataset(spec.hub, config, split=split, revision=spec.revision)
    except Exception as e:  # offline, unknown ID, gated dataset: one line, not a traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"could not load Hub dataset '{spec.hub}' (config {config!r}, split {split!r}): {first[:300]}") from None


def _label_index(task: Task, value, where: str, row: int, spec: DataSpec):
    """Map one raw label to an int index (classification) or float (regression)."""
    if str(value) in spec.label_map:
        value = spec.label_map[str(value)]
    if task.is_regression:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise DataError(f"{where}: row {row}: label {value!r} is not a number") from None
    if isinstance(value, str):
        if value in task.labels:
            return task.labels.index(value)
        if value.strip().lstrip("-").isdigit():
            value = int(value)
        else:
            raise DataError(f"{where}: row {row}: label {value!r} is not in the label set {list(task.labels)}")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(task.labels):
        raise DataError(f"{where}: row {row}: label {value!r} is not in the label set {list(task.labels)} "
                        f"(integer labels index it: 0..{len(task.labels) - 1})")
    return value


def load_split(task: Task, split: str, lang: str, *, data_root: str | None = None, toy_options: dict | None = None,
               max_examples: int | None = None, seed: int = 0) -> datasets.Dataset:
    """One split of one task in one language, validated, with columns ``id``, fields..., ``label``.

    ``max_examples`` keeps the first N after a shuffle seeded by ``seed`` (the same cap and seed
    always give the same examples).
    """
    spec = task.source(split, lang)
    head = f"task '{task.name}', split '{split}', language '{lang}'"
    if spec is None:
        raise DataError(f"{head}: no data source")
    if spec.toy:
        where = f"{head} (toy)"
        try:
            ds = datasets.Dataset.from_list(toy.generate(task.name, split, lang, toy_options))
        except KeyError as e:
            raise DataError(f"{where}: the toy benchmark has no {e}") from None
    elif spec.hub is not None:
        where = f"{head} (Hub {spec.hub})"
        ds = _load_hub(spec, lang)
    else:
        try:
            files = _files(spec, lang, data_root)
        except DataError as e:
            raise DataError(f"{head}: {e}") from None
        where = files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} more)"
        try:
            ds = _load_local(spec, files)
        except DataError:
            raise
        except Exception as e:
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise DataError(f"{where}: cannot read as {_format(spec, files)}: {msg[:300]}") from None

    # column mapping: task field -> source column (identity by default); label column likewise
    wanted = {f: spec.columns.get(f, f) for f in (*task.fields, "label")}
    for field, col in wanted.items():
        if col not in ds.column_names:
            raise DataError(f"{where}: missing column '{col}' for field '{field}' of {head} "
                            f"(columns: {', '.join(ds.column_names)}; map one with 'columns: {{{field}: ...}}')")
    id_col = spec.columns.get("id", "id")
    ids = [str(x) for x in ds[id_col]] if id_col in ds.column_names else [f"{lang}-{i}" for i in range(len(ds))]

    drop = {str(x) for x in spec.drop_labels}
    rows = {"id": [], **{f: [] for f in task.fields}, "label": []}
    # plain lists: a datasets Column reads Arrow once per cell
    texts = {f: list(ds[wanted[f]]) for f in task.fields}
    for i, raw in enumerate(list(ds[wanted["label"]])):
        if str(raw) in drop:
            continue
        rows["label"].append(_label_index(task, raw, where, i + 1, spec))
        rows["id"].append(ids[i])
        for f in task.fields:
            t = texts[f][i]
            rows[f].append("" if t is None else str(t))
    if not rows["label"]:
        raise DataError(f"{where}: {head} is empty")
    features = datasets.Features({
        "id": datasets.Value("string"), **{f: datasets.Value("string") for f in task.fields},
        "label": datasets.Value("float32") if task.is_regression else datasets.ClassLabel(names=list(task.labels)),
    })
    out = datasets.Dataset.from_dict(rows, features=features)
    if max_examples is not None and max_examples < len(out):
        out = out.shuffle(seed=seed).select(range(max_examples))
    return out
