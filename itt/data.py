"""Loading task data through 🤗 datasets: Hub IDs and local files take one code path.

Every split comes back as a ``datasets.Dataset`` with the task's text fields, ``label`` (an int
index into the task's labels, or a float for regression) and a string ``id``, validated: a missing
file or column, a label outside the label set or an empty split is a :class:`DataError` naming
the task, split, language and file (and row, for labels).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import re
from pathlib import Path

import datasets

from itt import hub, toy
from itt.config import DataSpec
from itt.errors import DataError
from itt.tasks import Task

datasets.disable_progress_bars()
datasets.logging.set_verbosity_error()

# "utf-8-sig": a UTF-8 file saved with a byte-order mark (Notepad, Excel) reads as without one, as 🤗 datasets
# reads tsv/csv/json; with "utf-8" the mark stays on the first line (a CoNLL-U comment, a gold id, a token)
UTF8 = "utf-8-sig"

_EXT = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".txt": "text"}


def _files(spec: DataSpec, lang: str, root: str | None) -> list[str]:
    items = [spec.files] if isinstance(spec.files, str) else list(spec.files or [])
    out = []
    for item in items:
        p = Path(item.replace("{lang}", lang)).expanduser()
        base = Path(root) if root and not p.is_absolute() else None
        # a file that is there is read as named ("data [v2]/x.tsv"); only the item's own * ? [ are a pattern,
        # not those of data_root (the config's folder)
        full = base / p if base else p
        if full.is_file():
            matches = [str(full)]
        elif any(c in str(p) for c in "*?["):
            matches = sorted(glob.glob(str(Path(glob.escape(str(base))) / p if base else p)))
        else:
            matches = []
        p = full
        if not matches:
            raise DataError(f"{p}: a folder, not a data file" if p.is_dir() else f"file not found: {p}")
        out.extend(matches)
    return out


def _format(spec: DataSpec, files: list[str]) -> str:
    if spec.format != "auto":
        return spec.format
    fmt = _EXT.get(Path(files[0]).suffix.lower())
    fmt = {".conllu": "conllu", ".conll": "conll"}.get(Path(files[0]).suffix.lower(), fmt)
    if fmt is None or fmt == "text":
        raise DataError(f"{files[0]}: cannot tell the format from the file name; set 'format' (tsv, csv, jsonl, json, parquet, text, conll, conllu, squad, parallel, bucc)")
    return fmt


@contextlib.contextmanager
def _datasets_quiet():
    before = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(before)


def _reason(e: BaseException) -> str:
    """What went wrong reading a file: 🤗 datasets wraps the parser's error ("An error occurred while
    generating the dataset"); the cause says which row or byte."""
    while type(e).__name__ == "DatasetGenerationError" and (e.__cause__ or e.__context__) is not None:
        e = e.__cause__ or e.__context__
    text = str(e).strip()
    msg = text.splitlines()[-1] if text else type(e).__name__
    return msg + (" (save the file as UTF-8)" if isinstance(e, UnicodeDecodeError) else "")


def _load_local(spec: DataSpec, files: list[str], lang: str) -> datasets.Dataset:
    fmt = _format(spec, files)
    named = [glob.escape(f) for f in files]  # 🤗 datasets reads data_files as patterns: these are the files themselves
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
        for f in files:
            _check_first_row(f, fmt, spec)
        ds = datasets.load_dataset("csv", data_files=named, split="train", **kw)
    elif fmt in ("conll", "conllu"):
        ds = datasets.Dataset.from_list([r for f in files for r in read_conll(f, fmt, spec.conll_columns,
                                                                          multiword=spec.conllu_multiword, lang=lang)])
    elif fmt == "squad":
        ds = datasets.Dataset.from_list([r for f in files for r in read_squad(f)])
    elif fmt == "parallel":
        ds = datasets.Dataset.from_list(read_parallel(*files))
    elif fmt == "bucc":
        ds = datasets.Dataset.from_list(read_bucc(*files))
    elif fmt in ("jsonl", "json"):
        ds = datasets.load_dataset("json", data_files=named, split="train")
    elif fmt == "parquet":
        ds = datasets.load_dataset("parquet", data_files=named, split="train")
    else:  # text: one example per line, fields from a regex with named groups
        pattern = re.compile(spec.line_pattern)
        rows = []
        for path in files:  # (one at a time: a bad line is named in its own file, numbered from its start)
            ds = datasets.load_dataset("text", data_files=[glob.escape(path)], split="train", encoding=UTF8)
            for i, line in enumerate(ds["text"]):
                if not line.strip():
                    continue
                m = pattern.match(line)
                if m is None:
                    raise DataError(f"{path}: line {i + 1} does not match line_pattern {spec.line_pattern!r}")
                rows.append(m.groupdict())
        ds = datasets.Dataset.from_list(rows)
    return ds


def _check_first_row(path: str, fmt: str, spec: DataSpec) -> None:
    """pandas (under 🤗 datasets' csv reader) takes a first row with more fields than the header as the sign of
    an index column: every row's fields then moved one column left, silently (the label read from a text
    column). Such a first row is one error line instead; a later row is the parser's own error."""
    dialect = dict(delimiter="\t" if fmt == "tsv" else ",", quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL)
    try:
        with open(path, encoding=UTF8, newline="") as f:
            reader = csv.reader(f, **dialect)
            records = (r for r in reader if r)  # (blank lines: skipped, as pandas does)
            header = next(records, []) if spec.header else []
            names = list(spec.column_names or header)
            first, line = next(records, []), reader.line_num
    except (UnicodeDecodeError, csv.Error):  # (the load says what is wrong with the file)
        return
    if names and len(first) > len(names):
        raise DataError(f"{path}: line {line} has {len(first)} fields, the header {len(names)} ({', '.join(names)}): "
                        f"a stray {'tab' if fmt == 'tsv' else 'comma'}?")


# --------------------------------------------------------------------------- structured formats
def read_conll(path: str, fmt: str, columns: tuple[int, int] | None = None, *, multiword: str = "xtreme",
               lang: str | None = None) -> list[dict]:
    """Sentences of a CoNLL-style file: ``{"id", "tokens", "tags", "lines"}`` (1-based line of each token).

    ``conll``: one token per line, columns split on tabs (or, without tabs, on whitespace), a blank line
    between sentences; default token column 0, tag column -1. ``conllu``: CoNLL-U, 10 tab-separated
    columns, default FORM and UPOS; comments and empty nodes (``5.1``) are skipped, and a multiword token
    (``3-4 du``) is read as XTREME reads UD-POS (``multiword="xtreme"``, see ``_xtreme_tokens``) or as its
    syntactic words, each with its own tag (``"words"``: ``de`` ADP, ``le`` DET). A line with too few columns
    is a DataError naming the file and line.
    """
    tok_col, tag_col = columns or ((1, 3) if fmt == "conllu" else (0, -1))
    need = max(tok_col, tag_col) + 1 if min(tok_col, tag_col) >= 0 else max(abs(tok_col), abs(tag_col), 2)
    out, words, ranges = [], [], []  # words: (token, tag, line, id, head); ranges: (first, last, form, line)
    name = Path(path).name

    def flush() -> None:
        sent = _xtreme_tokens(words, ranges, lang) if fmt == "conllu" and multiword == "xtreme" else words
        if sent:
            out.append({"id": f"{name}:{words[0][2]}", "tokens": [w[0] for w in sent], "tags": [w[1] for w in sent],
                        "lines": [w[2] for w in sent]})
        words.clear(), ranges.clear()

    with open(path, encoding=UTF8) as f:
        for n, raw in enumerate(f, start=1):
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip():
                flush()
                continue
            if fmt == "conllu" and line.startswith("#"):
                continue
            cols = line.split("\t") if "\t" in line else line.split()
            if fmt == "conllu":
                if len(cols) != 10:
                    raise DataError(f"{path}: line {n}: expected 10 tab-separated CoNLL-U columns, got {len(cols)}: {line[:80]!r}")
                if "." in cols[0]:
                    continue  # empty node: not a word of the text
                if "-" in cols[0]:
                    first, _, last = cols[0].partition("-")
                    if first.isdigit() and last.isdigit():
                        ranges.append((int(first), int(last), cols[1], n))
                    continue
            if len(cols) < need:
                raise DataError(f"{path}: line {n}: expected at least {need} columns (token and tag), got "
                                f"{len(cols)}: {line[:80]!r}")
            if tok_col % len(cols) == tag_col % len(cols):  # (columns [1, -1] on a line of two: the token as its tag)
                raise DataError(f"{path}: line {n}: the token and tag columns ({tok_col}, {tag_col}) are the same column "
                                f"of its {len(cols)}: {line[:80]!r}")
            token, tag = cols[tok_col], cols[tag_col]
            if not token or not tag:
                raise DataError(f"{path}: line {n}: empty token or tag: {line[:80]!r}")
            if fmt == "conllu":  # (the word's heads: its basic one, then those of its enhanced dependencies)
                deps = [d.split(":", 1)[0] for d in cols[8].split("|")] if cols[8] != "_" else []
                words.append((token, tag, n, cols[0], (cols[6], *(d for d in deps if d.isdigit()))))
            else:
                words.append((token, tag, n, None, None))
    flush()
    return out


# ud-conversion-tools' POS ranks (XTREME's third_party/ud-conversion-tools/conllu_to_conll.py): which word of a
# multiword token gives the fused form its tag when several are equally high in the tree
_POS_RANK = {"default": "VERB NOUN PROPN PRON ADJ NUM ADV INTJ AUX ADP DET PART CCONJ SCONJ X PUNCT".split(),
             "es": "VERB AUX PRON ADP DET".split(),
             "fr": "VERB AUX PRON NOUN ADJ ADV ADP DET PART SCONJ CONJ".split(),
             "it": "VERB AUX ADV PRON ADP DET INTJ".split()}


def _xtreme_tokens(words: list[tuple], ranges: list[tuple], lang: str | None) -> list[tuple]:
    """One sentence's words as XTREME's UD-POS has them (its scripts/download_data.sh runs ud-conversion-tools'
    ``conllu_to_conll.py --replace_subtokens_with_fused_forms``, then utils_preprocess.py's udpos_preprocess).

    A multiword token's words give way to its surface form (French ``du`` for ``de le``), tagged as the
    span's head: its one word with the fewest ancestors in the dependency graph (basic and enhanced
    dependencies, as ud-conversion-tools reads them), or, among several with the fewest, the first of the
    best POS rank of the language (``_POS_RANK``; a tag the list lacks ranks last, where the original stops
    with an error). Then, as udpos_preprocess does, zero-width non-joiners and spaces inside a token
    are removed, and a sentence whose forms are all "_" but at most one (a treebank distributed without its
    text) is dropped.
    """
    heads = {w[3]: w[4] for w in words}
    rank = _POS_RANK.get(lang or "", _POS_RANK["default"])

    def depth(i: str) -> int:  # (networkx's len(ancestors(graph, i)): every node with a path to i, the root too)
        seen, todo = set(), list(heads.get(i, ()))
        while todo:
            h = todo.pop()
            if h not in seen:
                seen.add(h)
                todo.extend(heads.get(h, ()))
        return len(seen - {i})

    drop, fused = set(), {}
    for first, last, form, line in ranges:
        span = [w for w in words if w[3].isdigit() and first <= int(w[3]) <= last]
        if not span:
            continue
        d = [depth(w[3]) for w in span]
        highest = [w for w, k in zip(span, d) if k == min(d)]
        head = min(highest, key=lambda w: rank.index(w[1]) if w[1] in rank else len(rank))  # (first of the best)
        fused[head[3]] = (form, head[1], line, head[3], head[4])
        drop.update(w[3] for w in span if w is not head)
    sent = [fused.get(w[3], w) for w in words if w[3] not in drop]
    sent = [("".join(w[0].replace("\u200c", "").split(" ")) or w[0],) + tuple(w[1:]) for w in sent]
    blank = sum(w[0] == "_" for w in sent)
    return sent if blank == 0 or blank < len(sent) - 1 else []


def read_squad(path: str) -> list[dict]:
    """SQuAD v1.1 JSON (``data[].paragraphs[].qas[]``) as flat rows ``{"id", "title", "context",
    "question", "answers": {"text", "answer_start"}}``, the layout of the 🤗 Hub QA datasets."""
    import json

    try:
        with open(path, encoding=UTF8) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    articles = data.get("data") if isinstance(data, dict) else data
    if not isinstance(articles, list):
        raise DataError(f"{path}: not SQuAD format (expected a top-level 'data' list of articles)")
    rows = []
    for a, art in enumerate(articles):
        try:
            rows += _squad_article(art, path, a)
        except (AttributeError, TypeError, ValueError) as e:  # (an article, paragraph or answer of another shape)
            raise DataError(f"{path}: data[{a}]: not SQuAD format: articles hold 'paragraphs' of 'context' and 'qas', "
                            f"answers of 'text' and 'answer_start' ({type(e).__name__}: {str(e)[:120]})") from None
    return rows


def _squad_article(art: dict, path: str, a: int) -> list[dict]:
    rows = []
    for p, para in enumerate(art.get("paragraphs", [])):
        if "context" not in para or "qas" not in para:
            raise DataError(f"{path}: data[{a}].paragraphs[{p}]: missing 'context' or 'qas'")
        for q in para["qas"]:
            if "id" not in q or "question" not in q:
                raise DataError(f"{path}: data[{a}].paragraphs[{p}]: a question without 'id' or 'question'")
            ans = q.get("answers", [])
            rows.append({"id": str(q["id"]), "title": art.get("title", ""), "context": para["context"],
                         "question": q["question"],
                         "answers": {"text": [x.get("text", "") for x in ans],
                                     "answer_start": [int(x.get("answer_start", -1)) for x in ans]}})
    return rows


def _text_lines(path: str) -> list[str]:
    with open(path, encoding=UTF8) as f:
        return [ln.rstrip("\n").rstrip("\r") for ln in f]


def read_parallel(src: str, tgt: str) -> list[dict]:
    """Two line-parallel files (Tatoeba): row i pairs line i of each."""
    a, b = _text_lines(src), _text_lines(tgt)
    if a and not a[-1]:
        a = a[:-1]
    if b and not b[-1]:
        b = b[:-1]
    if len(a) != len(b):
        raise DataError(f"{src}: {len(a)} lines, but {tgt} has {len(b)}: parallel files must have as many lines")
    return [{"id": str(i), "source": x, "target": y} for i, (x, y) in enumerate(zip(a, b))]


def read_bucc(src: str, tgt: str, gold: str) -> list[dict]:
    """BUCC 2018 files: ``id\\tsentence`` per language and ``src_id\\ttgt_id`` gold pairs. Every gold
    pair becomes a row with both sentences; every other sentence a row with an empty partner."""

    def sents(path):
        out = {}
        for n, line in enumerate(_text_lines(path), start=1):
            if not line.strip():
                continue
            if "\t" not in line:
                raise DataError(f"{path}: line {n}: expected 'id<TAB>sentence'")
            i, text = line.split("\t", 1)
            if not text.strip():  # (an empty side is how a row says "no partner": a gold pair would vanish from gold)
                raise DataError(f"{path}: line {n}: sentence {i!r} is empty")
            out[i] = text
        return out

    s, t = sents(src), sents(tgt)
    rows, used_s, used_t = [], set(), set()
    for n, line in enumerate(_text_lines(gold), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or parts[0] not in s or parts[1] not in t:
            raise DataError(f"{gold}: line {n}: expected 'source_id<TAB>target_id' of sentences in {Path(src).name} "
                            f"and {Path(tgt).name}: {line[:80]!r}")
        rows.append({"id": f"{parts[0]}\t{parts[1]}", "source": s[parts[0]], "target": t[parts[1]]})
        used_s.add(parts[0])
        used_t.add(parts[1])
    rows += [{"id": f"{i}\t", "source": x, "target": ""} for i, x in s.items() if i not in used_s]
    rows += [{"id": f"\t{i}", "source": "", "target": x} for i, x in t.items() if i not in used_t]
    return rows


def _hub_names(ds, col: str):
    """Names of a ClassLabel column (or a sequence of ClassLabels) of a Hub dataset, else None."""
    feat = ds.features.get(col)
    inner = getattr(feat, "feature", None)
    for f in (feat, inner):
        if isinstance(f, datasets.ClassLabel):
            return f.names
    if isinstance(feat, list) and feat and isinstance(feat[0], datasets.ClassLabel):
        return feat[0].names
    return None


def _column(ds, col: str | list[str], where: str, field: str, head: str):
    """Values of a source column for a task field: a column, a dotted path into a struct column
    (``choices.text``), or a list of columns (kept as a list per row)."""
    if isinstance(col, list):
        cols = [_column(ds, c, where, field, head) for c in col]
        return [list(vals) for vals in zip(*cols)]
    name, _, sub = col.partition(".")
    if name not in ds.column_names:
        raise DataError(f"{where}: missing column '{name}' for field '{field}' of {head} "
                        f"(columns: {', '.join(ds.column_names)}; map one with 'columns: {{{field}: ...}}')")
    vals = ds[name][:]  # (a whole column at once: iterating a datasets Column formats row by row, 10-70x slower)
    for key in sub.split(".") if sub else []:
        try:
            vals = [v[key] for v in vals]
        except (KeyError, TypeError):
            raise DataError(f"{where}: column '{name}' has no '{key}' (field '{field}' of {head})") from None
    return vals


_CHOICE_PREFIX = re.compile(r"^\s*[A-Z][.)]\s+")


def _kind_rows(task: Task, ds, spec: DataSpec, where: str, head: str, lang: str) -> datasets.Dataset:
    """Rows of a token-classification, QA, multiple-choice or retrieval split, validated."""
    from itt.tasks import Kind

    get = lambda f: _column(ds, spec.columns.get(f, f), where, f, head)  # noqa: E731
    id_col = spec.columns.get("id", "id")
    ids = [str(x) for x in ds[id_col][:]] if isinstance(id_col, str) and id_col in ds.column_names else [f"{lang}-{i}" for i in range(len(ds))]
    kind_rows = {Kind.TOKEN: _token_rows, Kind.QA: _qa_rows, Kind.CHOICE: _choice_rows}.get(task.kind, _retrieval_rows)
    rows, features = kind_rows(task, ds, spec, where, head, get, ids)
    if not rows["id"]:
        raise DataError(f"{where}: {head} is empty")
    return datasets.Dataset.from_dict(rows, features=features)


def _what(v) -> str:
    """A cell's type in an error line (JSON's word for None)."""
    return "null" if v is None else type(v).__name__


def _token_rows(task: Task, ds, spec: DataSpec, where: str, head: str, get, ids: list[str]) -> tuple[dict, datasets.Features]:
    """Token classification: each word's tag mapped to the task's label set (Hub ClassLabel ids by name;
    ``label_map``); a tag outside it is an error naming its line (CoNLL files) or row and token."""
    lines = ds["lines"][:] if "lines" in ds.column_names else None
    tokens = get("tokens")
    label_col = spec.columns.get("label", "tags" if "tags" in ds.column_names else "label")
    tags = _column(ds, label_col, where, "label", head)
    names = _hub_names(ds, label_col) if isinstance(label_col, str) else None
    index = {t: i for i, t in enumerate(task.labels)}
    out_tags = []
    for r, (toks, row_tags) in enumerate(zip(tokens, tags)):
        if not isinstance(toks, list) or not isinstance(row_tags, list):
            raise DataError(f"{where}: row {r + 1}: tokens and tags must each be a list (got {_what(toks)} and "
                            f"{_what(row_tags)})")
        if len(toks) != len(row_tags):
            raise DataError(f"{where}: row {r + 1}: {len(toks)} tokens but {len(row_tags)} tags")
        ids_r = []
        for j, tag in enumerate(row_tags):
            if names is not None and isinstance(tag, int):
                tag = names[tag]
            tag = spec.label_map.get(str(tag), tag)
            if isinstance(tag, int) and not isinstance(tag, bool) and 0 <= tag < len(task.labels) and names is None:
                ids_r.append(tag)
                continue
            if str(tag) not in index:
                at = f"line {lines[r][j]}" if lines is not None else f"row {r + 1}, token {j + 1}"
                raise DataError(f"{where}: {at}: tag {tag!r} is not in the label set {list(task.labels)}")
            ids_r.append(index[str(tag)])
        out_tags.append(ids_r)
    keep = [i for i, t in enumerate(tokens) if len(t)]
    rows = {"id": [ids[i] for i in keep], "tokens": [[str(x) for x in tokens[i]] for i in keep],
            "label": [out_tags[i] for i in keep]}
    return rows, datasets.Features({"id": datasets.Value("string"), "tokens": datasets.Sequence(datasets.Value("string")),
                                    "label": datasets.Sequence(datasets.ClassLabel(names=list(task.labels)))})


def _qa_rows(task: Task, ds, spec: DataSpec, where: str, head: str, get, ids: list[str]) -> tuple[dict, datasets.Features]:
    """Extractive QA (SQuAD v1.1): every question has an answer, each answer where its start says."""
    q, ctx = get("question"), get("context")
    answers = _column(ds, spec.columns.get("answers", "answers"), where, "answers", head)
    rows = {"id": [], "question": [], "context": [], "answer_text": [], "answer_start": []}
    for i, (qq, cc, aa) in enumerate(zip(q, ctx, answers)):
        if qq is None or not isinstance(cc, str) or not isinstance(aa, dict) \
                or not all(isinstance(aa.get(k, []), list) for k in ("text", "answer_start")):
            raise DataError(f"{where}: question '{ids[i]}': expected a text question and context and answers as "
                            f"{{text: [...], answer_start: [...]}} (got {_what(qq)}, {_what(cc)} and {_what(aa)})")
        try:
            texts, starts = [str(x) for x in aa.get("text", [])], [int(x) for x in aa.get("answer_start", [])]
        except (TypeError, ValueError):
            raise DataError(f"{where}: question '{ids[i]}': answer_start {aa.get('answer_start')!r} is not a list of "
                            "character offsets") from None
        if len(texts) != len(starts):
            raise DataError(f"{where}: question '{ids[i]}': {len(texts)} answer texts but {len(starts)} answer_start values")
        for k, (t, s0) in enumerate(zip(texts, starts)):
            if s0 < 0 or cc[s0:s0 + len(t)] != t:
                near = _nearest(cc, t, s0, NEAR_CHARS)
                if near is None:
                    raise DataError(f"{where}: question '{ids[i]}': answer {t!r} at {s0} does not match the context "
                                    f"(there: {cc[max(s0, 0):max(s0, 0) + len(t)]!r})")
                starts[k] = near
        if not texts:
            raise DataError(f"{where}: question '{ids[i]}' has no answer (SQuAD v1.1 format: every question has one)")
        rows["id"].append(ids[i])
        rows["question"].append(str(qq).strip())  # XTREME strips questions (leading spaces break windows)
        rows["context"].append(str(cc))
        rows["answer_text"].append(texts)
        rows["answer_start"].append(starts)
    return rows, datasets.Features({"id": datasets.Value("string"), "question": datasets.Value("string"),
                                    "context": datasets.Value("string"),
                                    "answer_text": datasets.Sequence(datasets.Value("string")),
                                    "answer_start": datasets.Sequence(datasets.Value("int32"))})


# google/xtreme's loader (XQuAD, MLQA, TyDiQA) strips each context and answer text of surrounding whitespace
# without moving answer_start (HF fixed it for squad, GH-2585, not there): an answer found this close to its
# start is taken where it is
NEAR_CHARS = 20


def _nearest(context: str, text: str, start: int, within: int) -> int | None:
    """The occurrence of ``text`` in ``context`` nearest to ``start``, if one begins within ``within`` chars."""
    lo = max(0, start - within)
    found = [m.start() for m in re.finditer(re.escape(text), context[lo:start + within + len(text)])] if text else []
    return min((lo + f for f in found), key=lambda x: abs(x - start), default=None)


def _choice_rows(task: Task, ds, spec: DataSpec, where: str, head: str, get, ids: list[str]) -> tuple[dict, datasets.Features]:
    """Multiple choice: the same number of options (2+) for every example, the label an option index."""
    q = get("question")
    q = [" ".join(str(x) for x in v) if isinstance(v, list) else str(v) for v in q]
    choices = []
    for i, c in enumerate(get("choices")):
        if not isinstance(c, (str, list)):
            raise DataError(f"{where}: row {i + 1}: the answer options are {_what(c)}, not a list (or one text)")
        if isinstance(c, str):  # one text block: one option per line, "A. " prefixes dropped
            c = [_CHOICE_PREFIX.sub("", x).strip() for x in c.splitlines() if x.strip()]
        choices.append([str(x) for x in c])
    labels = []
    n = len(choices[0]) if choices else 0
    for i, raw in enumerate(get("label")):
        if len(choices[i]) != n or n < 2:
            raise DataError(f"{where}: row {i + 1}: {len(choices[i])} answer options (this split has {n}; "
                            f"every example needs the same number, at least 2)")
        v = spec.label_map.get(str(raw), raw)
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < n:
            raise DataError(f"{where}: row {i + 1}: label {raw!r} is not an option index 0..{n - 1}"
                            + (" (map letters with label_map)" if isinstance(raw, str) else ""))
        labels.append(v)
    rows = {"id": ids, "question": q, "choices": choices, "label": labels}
    return rows, datasets.Features({"id": datasets.Value("string"), "question": datasets.Value("string"),
                                    "choices": datasets.Sequence(datasets.Value("string")),
                                    "label": datasets.Value("int64")})


def _retrieval_rows(task: Task, ds, spec: DataSpec, where: str, head: str, get, ids: list[str]) -> tuple[dict, datasets.Features]:
    """Retrieval: parallel sentences; an empty side is an unpaired (distractor) sentence."""
    src, tgt = get("source"), get("target")
    # (stripped: google/xtreme's Tatoeba keeps each line's newline)
    rows = {"id": ids, "source": ["" if x is None else str(x).strip() for x in src],
            "target": ["" if x is None else str(x).strip() for x in tgt]}
    if task.metric == "accuracy":  # Tatoeba: every row a translation pair (checked here, not after the training)
        for i, (s, t) in enumerate(zip(rows["source"], rows["target"])):
            if not s or not t:
                raise DataError(f"{where}: row {i + 1} (id {ids[i]}): an empty {'source' if not s else 'target'} "
                                f"sentence; Tatoeba-style retrieval needs a translation pair in every row")
    return rows, datasets.Features({k: datasets.Value("string") for k in rows})


def _load_hub(spec: DataSpec, lang: str) -> datasets.Dataset:
    config = spec.config.replace("{lang}", lang) if spec.config else None
    split = spec.split.replace("{lang}", lang)
    offline = False
    try:
        with hub.offline_unless_reachable() as offline:  # (no network: at once, from the cache or not at all)
            return datasets.load_dataset(spec.hub, config, split=split, revision=spec.revision)
    except Exception as e:  # offline, unknown ID, gated dataset: one line, not a traceback
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        why = (hub.not_cached("it", datasets.config.HF_DATASETS_CACHE, "point the task at local files (README: "
                              "Real models and data)") if offline and isinstance(e, OSError) else first[:300])
        raise DataError(f"could not load Hub dataset '{spec.hub}' (config {config!r}, split {split!r}): {why}") from None


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
        elif not value.strip():
            raise DataError(f"{where}: row {row}: no label (a row with fewer fields than the header?); "
                            f"the label set is {list(task.labels)}")
        else:
            raise DataError(f"{where}: row {row}: label {value!r} is not in the label set {list(task.labels)}")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(task.labels):
        raise DataError(f"{where}: row {row}: label {value!r} is not in the label set {list(task.labels)} "
                        f"(integer labels index it: 0..{len(task.labels) - 1})")
    return value


_CLASSIC = ("single_classification", "pair_classification", "pair_regression")


def _prefilter(ds, spec: DataSpec, where: str, lang: str):
    """``extract`` (regex groups of a column become columns) and ``id_prefix`` (keep matching ids)."""
    for col, pattern in spec.extract.items():
        if col not in ds.column_names:
            raise DataError(f"{where}: extract: no column '{col}' (columns: {', '.join(ds.column_names)})")
        rx = re.compile(pattern)
        new: dict[str, list] = {g: [] for g in rx.groupindex}
        for i, text in enumerate(ds[col]):
            m = rx.search(str(text))
            if m is None:
                raise DataError(f"{where}: row {i + 1}: column '{col}' does not match extract pattern {pattern!r}")
            for g in new:
                new[g].append(m.group(g) or "")
        for g, vals in new.items():
            ds = (ds.remove_columns(g) if g in ds.column_names else ds).add_column(g, vals)
    if spec.id_prefix is not None:
        prefix = spec.id_prefix.replace("{lang}", lang)
        if "id" not in ds.column_names:
            raise DataError(f"{where}: id_prefix needs an 'id' column")
        keep = [i for i, x in enumerate(ds["id"]) if str(x).startswith(prefix)]
        ds = ds.select(keep)
    return ds


def _blank(path: str, fmt: str, probe: int = 1 << 16) -> bool:
    """A file with no row: a Parquet file of none, a text file of whitespace (read no further than ``probe`` bytes)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows == 0
        except Exception:  # not Parquet: the load says so
            return False
    with open(path, "rb") as f:
        head = f.read(probe)
    return len(head) < probe and not head.strip()


def _warn_empty(rows: dict, fields, where: str, warn) -> None:
    """A text field that is empty (a blank TSV/CSV cell, a JSON null) is read as "" and trained on as such:
    said once per split and field, with the first such row, so that a broken column does not go unseen."""
    n = len(rows["id"])
    for f in fields:
        empty = [i for i, t in enumerate(rows[f]) if not t.strip()]
        if empty:
            warn(f"warning: {where}: {len(empty)} of {n} rows have an empty '{f}' (the first: id "
                 f"{rows['id'][empty[0]]}); they are kept, as empty text")


def load_split(task: Task, split: str, lang: str, *, data_root: str | None = None, toy_options: dict | None = None,
               max_examples: int | None = None, seed: int = 0, warn=None) -> datasets.Dataset:
    """One split of one task in one language, validated, with columns ``id``, fields..., ``label``.

    ``max_examples`` keeps the first N after a shuffle seeded by ``seed`` (the same cap and seed
    always give the same examples). ``warn(line)`` hears of rows with an empty text field.
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
        if task.metadata.get("hub_unusable"):
            raise DataError(f"{head}: {task.metadata['hub_unusable']}")
        ds = _load_hub(spec, lang)
    else:
        try:
            files = _files(spec, lang, data_root)
        except DataError as e:
            raise DataError(f"{head}: {e}") from None
        where = files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} more)"
        for f in files:
            if _blank(f, _format(spec, files)):
                raise DataError(f"{f}: the file is empty ({head})")
        try:
            with _datasets_quiet():  # (it logs the reason too: the error line below says it once)
                ds = _load_local(spec, files, lang)
        except DataError:
            raise
        except ValueError as e:  # 🤗 datasets' words for a file with no row (a header alone, `[]`)
            if "corresponds to no data" not in str(e):
                raise DataError(f"{where}: cannot read as {_format(spec, files)}: {_reason(e)[:300]}") from None
            ds = datasets.Dataset.from_list([])
        except Exception as e:
            raise DataError(f"{where}: cannot read as {_format(spec, files)}: {_reason(e)[:300]}") from None
        if not len(ds):  # (a header alone, blank lines, comments: no column either, so say it before the columns)
            raise DataError(f"{where}: no rows: {head} is empty")

    ds = _prefilter(ds, spec, where, lang)
    if task.kind not in _CLASSIC:
        out = _kind_rows(task, ds, spec, where, head, lang)
        if max_examples is not None and max_examples < len(out):
            out = out.shuffle(seed=seed).select(range(max_examples))
        return out
    # column mapping: task field -> source column (identity by default); label column likewise
    wanted = {f: spec.columns.get(f, f) for f in (*task.fields, "label")}
    for field, col in wanted.items():
        if col not in ds.column_names:
            raise DataError(f"{where}: missing column '{col}' for field '{field}' of {head} "
                            f"(columns: {', '.join(ds.column_names)}; map one with 'columns: {{{field}: ...}}')")
    id_col = spec.columns.get("id", "id")
    ids = [str(x) for x in ds[id_col][:]] if id_col in ds.column_names else [f"{lang}-{i}" for i in range(len(ds))]

    drop = {str(x) for x in spec.drop_labels}
    rows = {"id": [], **{f: [] for f in task.fields}, "label": []}
    # plain lists, each read at once (iterating a datasets Column formats it cell by cell, 10-70x slower)
    texts = {f: ds[wanted[f]][:] for f in task.fields}
    # a ClassLabel source whose names are the task's own labels is mapped by name, as token tasks are
    # (its order may differ); other names ("0"/"1", "different"/"same") keep the ints as indices
    names = None if task.is_regression else _hub_names(ds, wanted["label"])
    by_name = names is not None and set(names) <= set(task.labels) and not spec.label_map
    for i, raw in enumerate(ds[wanted["label"]][:]):
        if str(raw) in drop:
            continue
        if by_name and isinstance(raw, int) and 0 <= raw < len(names):
            raw = names[raw]
        rows["label"].append(_label_index(task, raw, where, i + 1, spec))
        rows["id"].append(ids[i])
        for f in task.fields:
            t = texts[f][i]
            rows[f].append("" if t is None else str(t))
    if not rows["label"]:
        raise DataError(f"{where}: {head} is empty")
    if warn is not None:
        _warn_empty(rows, task.fields, where, warn)
    features = datasets.Features({
        "id": datasets.Value("string"), **{f: datasets.Value("string") for f in task.fields},
        "label": datasets.Value("float32") if task.is_regression else datasets.ClassLabel(names=list(task.labels)),
    })
    out = datasets.Dataset.from_dict(rows, features=features)
    if max_examples is not None and max_examples < len(out):
        out = out.shuffle(seed=seed).select(range(max_examples))
    return out
