"""Bad input: one clear line naming the problem and where, exit 2, no traceback, nothing written."""

from __future__ import annotations

import pytest

from search.cli import main


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def expect_error(args, capsys, *needles):
    code, out, err = run_cli(args, capsys)
    assert code == 2, (out, err)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "overrides, needles",
    [
        ({"order": ["toy_topic", "no_such_task"]}, ["unknown task 'no_such_task'", "order"]),
        ({"target": {"task": "xnlii"}}, ["unknown task 'xnlii'", "target.task"]),
        ({"model": {"tiny": {"arch": "gpt9"}}}, ["model.tiny.arch"]),
        ({"target": {"languages": ["en", "klingon"]}}, ["unknown language 'klingon'", "toy_xnli"]),
        ({"train": {"lrr": 0.1}}, ["unknown key 'train.lrr'"]),
        ({"train": {"lr": "fast"}}, ["'train.lr'", "fast"]),
        ({"train": {"batch_size": -1}}, ["'train.batch_size'"]),
        ({"tasks": {"my": {"kind": "tagging", "fields": ["a"], "train": {"files": "x.tsv"}}}}, ["tasks.my.kind"]),
        ({"tasks": {"my": {"kind": "pair_classification", "fields": ["a"], "labels": ["x", "y"],
                           "train": {"files": "x.tsv"}}}, "order": ["my"]}, ["needs 2 text field"]),
        ({"tasks": {"my": {"kind": "single_classification", "fields": ["s"], "labels": ["a", "b", "a"],
                           "train": {"files": "x.tsv"}}}, "order": ["my"]}, ["'tasks.my.labels'", "label 'a' is given twice"]),
        ({"tasks": {"my": {"kind": "single_classification", "fields": ["s"], "labels": ["a", "b"],
                           "train": {"files": []}}}, "order": ["my"]}, ["'tasks.my.train'", "'files' is empty"]),
        ({"tasks": {"my": {"kind": "single_classification", "fields": ["s"], "labels": ["a", "b"],
                           "train": {"files": "x.txt", "format": "text", "line_pattern": "(?P<label"}}}, "order": ["my"]},
         ["'tasks.my.train'", "line_pattern: not a valid regex"]),
        ({"tasks": {"my": {"kind": "single_classification", "fields": ["s"], "labels": ["a", "b"],
                           "train": {"files": "x.txt", "format": "text", "line_pattern": "^(.*)$"}}}, "order": ["my"]},
         ["line_pattern: the regex has no named group"]),
        # a mapping of languages is validated as one: its mistake named there (it was "unknown key 'tasks.my.train.en'")
        ({"tasks": {"my": {"kind": "single_classification", "fields": ["s"], "labels": ["a", "b"],
                           "train": {"en": {"files": "x.tsv", "formt": "tsv"}}}}, "order": ["my"]},
         ["unknown key 'tasks.my.train.en.formt'"]),
        ({"tasks": {"my": {"kind": "single_classification", "fields": ["s"], "labels": ["a", "b"],
                           "train": {"en": {"files": []}}}}, "order": ["my"]}, ["'tasks.my.train.en'", "'files' is empty"]),
        ({"train": {"lr": float("inf")}}, ["'train.lr'", "finite number"]),
        ({"train": {"epochs": float("inf")}}, ["'train.epochs'", "finite number"]),
        ({"toy": {"n_trian": 64}}, ["'toy'", "unknown option 'n_trian' (known: seed, n_train, n_eval)"]),
        ({"toy": {"n_train": 0}}, ["'toy'", "n_train: give a whole number, 1 or more (got 0)"]),
        ({"data_seed": -1}, ["'data_seed'", "greater than or equal to 0"]),
        ({"seeds": []}, ["seeds"]),
        ({"seeds": [0, -1]}, ["'seeds'", "seed -1 is out of range", "0 to 999999"]),
        ({"seeds": [1_000_000]}, ["seed 1000000 is out of range"]),
        ({"order": ["toy_topic", "toy_topic"]}, ["twice"]),
        ({"target": {"languages": []}}, ["'target.languages'", "give at least one language"]),
        ({"target": {"languages": ["xa", "en", "xa"]}}, ["'target.languages'", "language 'xa' is given twice"]),
        ({"probe": {"languages": ["xb", "xb"]}}, ["'probe.languages'", "'xb' is given twice"]),
        ({"eval": {"also": {"toy_xnli": []}}}, ["'eval.also'", "toy_xnli: give at least one language"]),
    ],
)
def test_bad_config(overrides, needles, write_config, capsys, tmp_path):
    path = write_config(overrides)
    expect_error(["run", str(path), "--out", str(tmp_path / "out")], capsys, str(path) if "unknown key" in needles[0] else "", *needles)
    assert not (tmp_path / "out").exists()


def test_a_boolean_is_no_number(write_config, capsys, tmp_path):
    """YAML reads on/yes/true as a boolean and pydantic took it for 1: `batch_size: on` trained with batch size
    1, `num_samples: yes` ran one trial, `length: true` searched orders of one task. A number is asked for."""
    path = write_config({"train": {"batch_size": "on"}})
    path.write_text(path.read_text().replace("batch_size: 'on'", "batch_size: on"))
    expect_error(["run", str(path), "--out", str(tmp_path / "out")], capsys, "'train.batch_size': give a number, not True")
    assert not (tmp_path / "out").exists()
    search = {"candidates": ["toy_topic", "toy_align"], "length": [1, 2]}
    for key, value in (("num_samples", True), ("length", True), ("probe_steps", False)):
        path = write_config({"search": {**search, key: value}}, name=f"{key}.yaml")
        expect_error(["space", str(path)], capsys, f"'search.{key}': give a number, not {value}")
    path = write_config({"search": {**search, "report": True, "cache": {"enabled": False}}}, name="flags.yaml")
    assert main(["space", str(path)]) == 0  # (a boolean setting still takes one)
    capsys.readouterr()


def test_missing_config_and_bad_yaml(tmp_path, capsys):
    expect_error(["run", str(tmp_path / "nope.yaml")], capsys, "config file not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("order: [a, b\ntarget: x\n")
    expect_error(["run", str(bad)], capsys, "bad.yaml", "not valid YAML")


@pytest.mark.ray  # (`itt search` stops at the error, before Ray: tests/test_suite.py counts it)
def test_a_config_that_is_not_utf8_or_cannot_be_read_is_one_line(tmp_path, capsys, monkeypatch):
    """A config saved in Latin-1 (or one this user may not read) is one error line, not a traceback."""
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\norder: []\n".encode("latin-1"))
    for cmd in (["run", str(bad), "--out", str(tmp_path / "out")], ["space", str(bad)], ["search", str(bad)]):
        expect_error(cmd, capsys, "latin1.yaml", "not UTF-8")
    assert not (tmp_path / "out").exists()
    from pathlib import Path

    def denied(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    expect_error(["space", str(bad)], capsys, "latin1.yaml", "cannot read it (Permission denied)")


def test_a_key_given_twice_is_refused_and_merge_keys_still_work(write_config, capsys, tmp_path):
    """PyYAML keeps the last of two equal keys silently: a second `seeds:` (or a task block pasted twice)
    would change the run unseen. A YAML merge key (`<<: *base`) may still be overridden."""
    from itt.config import parse_yaml

    path = write_config({"seeds": [0]})
    text = path.read_text()
    twice = tmp_path / "twice.yaml"
    twice.write_text(text + "seeds: [7]\n")
    first = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("seeds:"))
    last = len(text.splitlines()) + 1
    expect_error(["run", str(twice), "--out", str(tmp_path / "out")], capsys,
                 f"twice.yaml line {last}: not valid YAML (key 'seeds' given twice in one mapping, first on line {first})")
    assert not (tmp_path / "out").exists()
    nested = parse_yaml("a: {x: 1}\nb:\n  x: 2\n  y: 3\n", "t")  # the same key in different mappings: fine
    assert nested == {"a": {"x": 1}, "b": {"x": 2, "y": 3}}
    merged = parse_yaml("base: &b {lr: 1, epochs: 2}\nstage:\n  <<: *b\n  lr: 3\n", "t")
    assert merged["stage"] == {"lr": 3, "epochs": 2}


def test_bad_set_override(write_config, capsys):
    path = write_config()
    expect_error(["run", str(path), "--set", "train.lr"], capsys, "expected key=value")
    expect_error(["run", str(path), "--set", "train.bogus=1"], capsys, "unknown key 'train.bogus'")
    # a key the file does not hold is the override's, not the file's (it said "x.yaml: unknown key 'trian'")
    line = expect_error(["run", str(path), "--set", "train.lr=1e-4", "--set", "trian.lr=1"], capsys, "unknown key 'trian'")
    assert line.startswith(f"error: {path} --set 'trian.lr=1': "), line
    line = expect_error(["run", str(path), "--set", "train.lr=abc"], capsys, "'train.lr'", "(got 'abc')")
    assert f"{path} --set 'train.lr=abc': " in line


@pytest.mark.ray  # (`itt search`: the errors come before Ray, but test_suite counts the command)
def test_no_tracking_and_a_set_of_the_tracking_block(write_config, capsys, tmp_path):
    """`itt search --no-tracking` adds its own override: a --set that breaks the search block was blamed on it
    ("--set 'search.tracking.enabled=false': cannot set ..."), and one that turns tracking on went unnoticed."""
    path = write_config({"search": {"candidates": ["mnli"], "length": 1}})
    for given in ("search.tracking.enabled=true", "search.tracking=x"):
        expect_error(["search", str(path), "--no-tracking", "--storage", str(tmp_path / "runs"), "--set", given],
                     capsys, f"--no-tracking and --set '{given}': give one of them")
    line = expect_error(["search", str(path), "--no-tracking", "--storage", str(tmp_path / "runs"), "--set", "search="],
                        capsys, "no 'search:' block")
    assert "tracking.enabled" not in line
    assert not (tmp_path / "runs").exists()


def test_set_reaches_keys_that_are_dotted_config_keys():
    """search.hparams (and confirm.vary, seed_points.hparams.<order>) are keyed by dotted config keys, so
    `--set search.hparams.train.lr=...` adds the key 'train.lr' (it was split into train: {lr: ...}: an
    "unknown key" error, with no way to search a hyperparameter from the command line)."""
    from itt.config import apply_overrides

    raw = apply_overrides({"search": {"hparams": {"finetune.lr": {"choice": [1]}}}}, [
        "search.hparams.train.lr={float: [1.0e-5, 5.0e-5], log: true}",
        "search.hparams.stages.*.epochs={choice: [1, 2]}",
        "search.confirm.vary.finetune.lr=[1.0e-5, 3.0e-5]",
        "search.seed_points.hparams.mnli>anli.stages.mnli.lr=2.0e-5",
        "train.lr=0.1",
    ])
    assert raw == {"search": {"hparams": {"finetune.lr": {"choice": [1]},
                                          "train.lr": {"float": [1.0e-5, 5.0e-5], "log": True},
                                          "stages.*.epochs": {"choice": [1, 2]}},
                              "confirm": {"vary": {"finetune.lr": [1.0e-5, 3.0e-5]}},
                              "seed_points": {"hparams": {"mnli>anli": {"stages.mnli.lr": 2.0e-5}}}},
                   "train": {"lr": 0.1}}


def _readme_yaml_block(after: str) -> str:
    """The first ```yaml block of README.md after the line ``after``."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    return text[text.index(after):].split("```yaml\n", 1)[1].split("```", 1)[0]


def test_readme_config_at_a_glance_and_search_block_state_the_defaults(tmp_path):
    """README's *Config at a glance* gives `train:` as its defaults (it said epochs: 2; the default is 1), and
    the search block says what `num_samples` is when a config leaves it out (20, search/runner.py)."""
    from itt.config import TrainDefaults, load_config
    from search.runner import DEFAULT_TRIALS

    glance = tmp_path / "glance.yaml"
    glance.write_text(_readme_yaml_block("## Config at a glance"))
    assert load_config(glance).train == TrainDefaults()
    line = next(ln for ln in _readme_yaml_block("## Searching orders").splitlines() if "num_samples:" in ln)
    assert f"default {DEFAULT_TRIALS};" in line


def test_out_that_cannot_be_written(write_config, capsys, tmp_path):
    """--out on a file, or under one: one error line before the chain trains (its outputs come minutes later)."""
    path, afile = write_config(), tmp_path / "afile"
    afile.write_text("keep")
    expect_error(["run", str(path), "--out", str(afile)], capsys, f"--out {afile}: {afile} is a file, not a folder")
    expect_error(["run", str(path), "--out", str(afile / "sub")], capsys, f"--out {afile / 'sub'}: cannot write to")
    assert afile.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == sorted(["afile", path.name])


@pytest.mark.ray  # (stops at the error, before Ray: tests/test_suite.py counts it)
def test_a_search_yaml_that_is_not_yaml_is_one_line(tmp_path, capsys):
    """itt resume and itt confirm read the search.yaml the search wrote; bytes YAML refuses (here a NUL:
    a ReaderError, whose message spans two lines) are one line naming the file."""
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "search.yaml").write_bytes(b'name: x\nsearch: {\x00')
    for cmd in (["resume", str(exp)], ["confirm", str(exp), "--dry-run"]):
        expect_error(cmd, capsys, f"{exp}/search.yaml", "not valid YAML (unacceptable character #x0000")


@pytest.mark.ray  # (resume and confirm stop at the error, before Ray: tests/test_suite.py counts it)
def test_experiment_files_that_are_not_utf8_are_one_line(tmp_path, capsys):
    """search.yaml or results.csv saved in another encoding (or damaged): one line naming the file, not a
    UnicodeDecodeError traceback, from every command that reads an experiment directory."""
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "search.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    for cmd in (["resume", str(exp)], ["confirm", str(exp), "--dry-run"]):
        expect_error(cmd, capsys, f"{exp}/search.yaml: not UTF-8 text")
    (exp / "results.csv").write_bytes("trial_id,status,order\nab,completed,caf\xe9\n".encode("latin-1"))
    for cmd in (["report", str(exp), "--no-mlflow"], ["power", str(exp)],
                ["mlflow-sync", str(exp), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]):
        expect_error(cmd, capsys, f"{exp}/results.csv: not UTF-8 text")
    assert sorted(p.name for p in exp.iterdir()) == ["results.csv", "search.yaml"]


@pytest.mark.ray  # (stops at the error, before Ray: tests/test_suite.py counts it)
def test_a_name_that_is_a_path_is_refused(write_config, capsys, tmp_path):
    """A run's or a search's name becomes a folder (runs/<name>, <storage>/<name>) and an MLflow experiment:
    '../x' or 'a/b' would put the outputs elsewhere, so it is one error line, before anything is written."""
    path = write_config()
    expect_error(["run", str(path), "--set", "name=../x"], capsys, "'name'", "'../x' is a path, not a name")
    for cmd in (["search", str(path)], ["confirm", str(tmp_path / "exp"), "--dry-run"]):
        for name in ("a/b", "..", " "):
            expect_error([*cmd, "--name", name], capsys, f"--name {name}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def _nli_task(tmp_path, rows, header="premise\thypothesis\tlabel"):
    f = tmp_path / "nli.tsv"
    f.write_text(header + "\n" + "\n".join(rows) + ("\n" if rows else ""))
    return {"tasks": {"my_nli": {"kind": "pair_classification", "fields": ["premise", "hypothesis"],
                                 "labels": ["entailment", "neutral", "contradiction"], "train": {"files": str(f)}}},
            "order": ["my_nli"]}, f


@pytest.mark.ray  # (each stops at the error, before Ray: tests/test_suite.py counts it)
def test_no_tracking_with_a_tracking_uri_is_refused(write_config, capsys, tmp_path):
    """--no-tracking beside --tracking-uri (or --tracking-uri on resuming a search without tracking): the store
    was silently ignored, the user found no runs in it. One line, before anything starts."""
    import yaml

    from tests.conftest import TINY
    from tests.ray_nodes import free_port

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    path = write_config({"search": {"candidates": ["toy_topic", "toy_align"], "length": 1}})
    expect_error(["search", str(path), "--no-tracking", "--tracking-uri", uri, "--storage", str(tmp_path / "runs"),
                  "--address", f"127.0.0.1:{free_port()}"], capsys, "--no-tracking and --tracking-uri")
    expect_error(["confirm", str(tmp_path / "nope"), "--no-tracking", "--tracking-uri", uri, "--dry-run"], capsys,
                 "--no-tracking and --tracking-uri")
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "search.yaml").write_text(yaml.safe_dump({**TINY, "search": {"candidates": ["toy_topic", "toy_align"],
                                                                        "length": 1, "tracking": {"enabled": False}}}))
    expect_error(["resume", str(exp), "--tracking-uri", uri], capsys, "this search runs without MLflow tracking",
                 f"itt mlflow-sync {exp} --tracking-uri {uri}")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "m.db").exists()


def test_missing_file(write_config, capsys, tmp_path):
    path = write_config({"tasks": {"my_nli": {"kind": "pair_classification", "fields": ["premise", "hypothesis"],
                                              "labels": ["e", "n"], "train": {"files": "does/not/exist.tsv"}}},
                         "order": ["my_nli"]})
    expect_error(["run", str(path), "--out", str(tmp_path / "o")], capsys, "file not found", "exist.tsv", "my_nli")
    assert not (tmp_path / "o").exists()


def test_a_folder_given_as_the_config_or_a_data_file_is_said_to_be_one(write_config, capsys, tmp_path):
    """A folder where a file is expected was "file not found", though it is there."""
    (tmp_path / "cfg.yaml.d").mkdir()
    expect_error(["run", str(tmp_path / "cfg.yaml.d")], capsys, f"error: {tmp_path / 'cfg.yaml.d'}: a folder, not a config file")
    (tmp_path / "nli.tsv").mkdir()
    path = write_config({"tasks": {"my_nli": {"kind": "pair_classification", "fields": ["premise", "hypothesis"],
                                              "labels": ["e", "n"], "train": {"files": str(tmp_path / "nli.tsv")}}},
                         "order": ["my_nli"]})
    expect_error(["run", str(path), "--out", str(tmp_path / "o")], capsys, "my_nli",
                 f"{tmp_path / 'nli.tsv'}: a folder, not a data file")
    assert not (tmp_path / "o").exists()


def test_missing_column(write_config, capsys, tmp_path):
    cfg, f = _nli_task(tmp_path, ["a\tb\tneutral"], header="premise\thypo\tlabel")
    expect_error(["run", str(write_config(cfg)), "--out", str(tmp_path / "o")], capsys,
                 "missing column 'hypothesis'", str(f))
    assert not (tmp_path / "o").exists()


def test_label_outside_label_set(write_config, capsys, tmp_path):
    cfg, f = _nli_task(tmp_path, ["a\tb\tneutral", "c\td\tmaybe"])
    line = expect_error(["run", str(write_config(cfg)), "--out", str(tmp_path / "o")], capsys, "'maybe'", str(f), "row 2")
    assert "label set" in line
    cfg, f = _nli_task(tmp_path, ["a\tb\t0", "c\td\t7"])
    expect_error(["run", str(write_config(cfg))], capsys, "7", "row 2", "label set")


def test_probe_languages_are_checked_with_the_probe_off(write_config, capsys, tmp_path):
    expect_error(["run", str(write_config({"probe": {"enabled": False, "languages": ["zz"]}})), "--out", str(tmp_path / "o")],
                 capsys, "probe.languages: unknown language 'zz'")
    assert not (tmp_path / "o").exists()


def test_a_short_row_says_it_has_no_label(write_config, capsys, tmp_path):
    cfg, f = _nli_task(tmp_path, ["a\tb\tneutral", "c\tneutral"])
    expect_error(["run", str(write_config(cfg)), "--out", str(tmp_path / "o")], capsys, str(f), "row 2: no label",
                 "fewer fields than the header")


@pytest.mark.parametrize("name, content, needle", [
    ("bad.jsonl", '{"premise": "a", "hypothesis": "b", "label": "neutral"}\n{"premise": "c", \n',
     "cannot read as jsonl: JSON parse error"),
    ("latin1.tsv", "premise\thypothesis\tlabel\nça\tb\tneutral\n".encode("latin-1"),
     "cannot read as tsv: 'utf-8' codec can't decode byte 0xe7"),
    ("quote.csv", 'premise,hypothesis,label\n"a,b,neutral\nc,d,neutral\n', "cannot read as csv: Error tokenizing data"),
    ("empty.tsv", "", "the file is empty"),
])
def test_a_file_that_cannot_be_parsed_says_why_once(name, content, needle, write_config, capfd, tmp_path):
    """🤗 datasets wraps the parser's error ("An error occurred while generating the dataset") and logs the
    cause itself: the one error line carries the cause, and nothing else is printed (capfd: the logger's
    handler writes to the process's stderr)."""
    f = tmp_path / name
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    cfg = {"tasks": {"my_nli": {"kind": "pair_classification", "fields": ["premise", "hypothesis"],
                                "labels": ["entailment", "neutral", "contradiction"], "train": {"files": str(f)}}},
           "order": ["my_nli"]}
    assert main(["run", str(write_config(cfg)), "--out", str(tmp_path / "o")]) == 2
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {f}: {needle}"), err
    assert not (tmp_path / "o").exists()


def test_itt_run_into_a_search_experiment_folder_is_one_error_line(write_config, tmp_path, capsys):
    """`itt run --out runs/quickstart` (a search's experiment) trained a chain among the search's trials without a
    word (only a results.json there was refused), --overwrite or not."""
    from search.cli import main
    from tests.conftest import TINY

    exp = tmp_path / "runs" / "quickstart"
    exp.mkdir(parents=True)
    (exp / "search.yaml").write_text("search: {}\n")
    (exp / "results.csv").write_text("trial_id,status,order\n")
    before = sorted(p.name for p in exp.iterdir())
    for extra in ([], ["--overwrite"]):
        assert main(["run", str(write_config(base=TINY)), "--out", str(exp), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: --out {exp}: a search's experiment folder (`itt search` wrote search.yaml and results.csv "
                       "there; a chain's files would sit among its trials'): give another --out"], err
    assert sorted(p.name for p in exp.iterdir()) == before


def test_empty_split(write_config, capsys, tmp_path):
    cfg, f = _nli_task(tmp_path, [])
    expect_error(["run", str(write_config(cfg)), "--out", str(tmp_path / "o")], capsys, str(f), "empty")


def test_unknown_model(write_config, capsys, tmp_path):
    path = write_config({"model": {"name": str(tmp_path / "no-model"), "tiny": None, "train_tokenizer": None}})
    expect_error(["run", str(path), "--out", str(tmp_path / "o")], capsys, "no-model")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("key", ["name", "tokenizer"])
def test_an_empty_model_name_or_tokenizer_is_one_error_line(write_config, capsys, tmp_path, key):
    """`model.name: ""` was resolved to the config's own folder: "tokenizer '<that folder>': cannot load
    (Couldn't instantiate the backend tokenizer from one of: )", a folder the config never named."""
    model = {"name": "", "tiny": None, "train_tokenizer": None} if key == "name" else {"tokenizer": "", "train_tokenizer": None}
    path = write_config({"model": model})
    line = expect_error(["run", str(path), "--out", str(tmp_path / "o")], capsys, f"model.{key}", "empty string")
    assert str(path.parent) + "'" not in line


def test_model_needs_one_source(write_config, capsys):
    path = write_config({"model": {"name": "bert-base-cased"}})
    expect_error(["run", str(path)], capsys, "exactly one of 'name'", "model")


def test_a_pretrained_model_with_train_tokenizer_is_one_error_line(write_config, capsys, tmp_path):
    """`--set model.name=... model.tiny=null` on a tiny config kept its train_tokenizer: an AttributeError
    traceback in prepare (the fitted tokenizer takes tiny.arch)."""
    path = write_config({"model": {"name": "bert-base-cased", "tiny": None}})
    expect_error(["run", str(path), "--out", str(tmp_path / "o")], capsys, "'train_tokenizer' fits a tokenizer", "model")
    assert not (tmp_path / "o").exists()


def test_set_order_override_and_comma_lists(write_config):
    from itt.config import load_config

    path = write_config()
    cfg = load_config(path, ["order=toy_align,toy_parity", "seeds=1,2,3", "train.lr=3e-5"])
    assert cfg.order == ["toy_align", "toy_parity"] and cfg.seeds == [1, 2, 3] and cfg.train.lr == 3e-5
    assert load_config(path, ["order="]).order == []  # the F baseline
    assert load_config(path, ["seeds=4"]).seeds == [4]  # one seed, as a number


def test_stage_hparams_merge(write_config):
    from itt.config import load_config

    cfg = load_config(write_config({"stages": {"toy_topic": {"lr": 5e-4, "max_examples": 10}}, "finetune": {"epochs": 3}}))
    assert cfg.stage_hparams("toy_topic").lr == 5e-4 and cfg.stage_hparams("toy_topic").max_examples == 10
    assert cfg.stage_hparams("toy_length").lr == 1e-3 and cfg.stage_hparams("toy_length").max_examples is None
    assert cfg.stage_hparams(None).epochs == 3 and cfg.stage_hparams(None).lr == 1e-3


def test_real_use_configs_validate():
    """The Hub configs cannot run offline, but they must be valid and name real tasks and languages."""
    from itt.config import load_config
    from tests.conftest import ROOT

    x = load_config(ROOT / "configs" / "xnli_xlmr_base.yaml")
    assert x.model.name == "xlm-roberta-base" and x.target.task == "xnli" and not x.model.trust_remote_code
    from itt.tasks import resolve_task

    assert len(resolve_task("xnli").languages) == 15
    p = load_config(ROOT / "configs" / "pawsx_xlmr_base.yaml")
    assert p.target.task == "pawsx" and len(resolve_task("pawsx").languages) == 7
    for cfg in (x, p):
        assert 2e-5 <= cfg.train.lr <= 3e-5 and cfg.train.max_length == 128


def test_every_single_metric_has_words_for_the_end_of_a_search():
    """`itt search` ends with the best orders and what their score is: every metric a search optimises alone
    has its words there (a KeyError would end a finished search with a traceback)."""
    from types import SimpleNamespace

    from search.pareto import SINGLE
    from search.runner import score_words

    for m in SINGLE:
        words = score_words(SimpleNamespace(metric=m, robust_weight=0.5))
        assert words.startswith(f"search.metric {m}, the ") and "dev" in words, words
    assert "0.5 x std" in score_words(SimpleNamespace(metric="robust", robust_weight=0.5))
    assert score_words(SimpleNamespace(metric="worst", robust_weight=0.5)) == (
        "search.metric worst, the dev score of the worst target language")


@pytest.mark.parametrize("argv, says", [
    (["nosuch"], "error: itt: argument command: invalid choice: 'nosuch'"),
    (["search"], "error: itt search: the following arguments are required: config"),
    (["space", "c.yaml", "--samples", "x"], "error: itt space: argument --samples: invalid int value: 'x'"),
])
def test_a_command_line_mistake_is_one_error_line(argv, says, capsys):
    """argparse printed its usage block before the error: several lines, where every other bad input is one."""
    from search.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith(says) and not cap.out, cap
    assert err[0].endswith("--help says more)"), err


def test_search_include_takes_comma_separated_text():
    """--set search.include=mnli,sst2 (as candidates and order take it) was 'Input should be a valid list'."""
    from search.config import SearchConfig

    assert SearchConfig(candidates="mnli,sst2,qqp", length=2, include="mnli,sst2").include == ["mnli", "sst2"]
