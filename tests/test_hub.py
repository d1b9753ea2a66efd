"""Loading from the 🤗 Hub without a network (itt/hub.py): a cached model loads at once, a missing one or a
Hub dataset fails at once in one line. Each case runs in a fresh process whose Hub is a closed local port
(``HF_ENDPOINT``) and whose 🤗 cache is a temporary folder, so nothing here touches the network.
A local folder that cannot serve (no tokenizer files, a model that takes no text) is one error line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # (closed when the block ends: a connection there is refused)


@pytest.fixture
def offline_env(tmp_path):
    """A 🤗 cache holding one tokenizer snapshot (itt-test/tiny, as `hf download` leaves it) and no network."""
    from itt.models import train_tokenizer

    repo = tmp_path / "hub" / "models--itt-test--tiny"
    snap = repo / "snapshots" / COMMIT
    tok = train_tokenizer(["a small corpus of words", "more words here"], vocab_size=60, arch="bert")
    tok.save_pretrained(snap)
    (snap / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": len(tok)}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
           and not k.lower().endswith("_proxy")}
    return {**env, "ITT_TEST_VOCAB": str(len(tok)), "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_HUB_CACHE": str(tmp_path / "hub"),
            "HF_DATASETS_CACHE": str(tmp_path / "datasets"), "HF_HOME": str(tmp_path / "home")}


def _python(code: str, env: dict) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    return out, time.perf_counter() - t0


def test_a_cached_model_loads_at_once_without_the_hub(offline_env):
    out, secs = _python("from itt.models import load_tokenizer; print(len(load_tokenizer('itt-test/tiny')))", offline_env)
    assert out.returncode == 0 and out.stdout.strip() == offline_env["ITT_TEST_VOCAB"], out.stderr
    assert "Retrying" not in out.stderr and secs < 30, (secs, out.stderr)  # (🤗's backoff alone: 5 tries, 23 s)


@pytest.mark.parametrize("code, needle", [
    ("from itt.models import load_tokenizer; load_tokenizer('itt-test/absent')",
     "tokenizer 'itt-test/absent': cannot load (the 🤗 Hub (http://127.0.0.1:"),
    ("from itt.data import _load_hub; from itt.config import DataSpec; _load_hub(DataSpec(hub='itt-test/absent'), 'en')",
     "could not load Hub dataset 'itt-test/absent' (config None, split 'train'): the 🤗 Hub (http://127.0.0.1:"),
])
def test_what_is_not_cached_fails_at_once_in_one_line(offline_env, code, needle):
    code = f"from itt.errors import UserError\ntry:\n    {code}\nexcept UserError as e:\n    print(e)"
    out, secs = _python(code, offline_env)
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0 and len(lines) == 1 and lines[0].startswith(needle), (out.stdout, out.stderr)
    assert "cannot be reached from here" in lines[0] and "is not in the 🤗 cache" in lines[0]
    assert "Retrying" not in out.stderr and not out.stderr.strip() and secs < 30, (secs, out.stderr)


def test_a_missing_folder_is_said_to_be_one_not_looked_for_on_the_hub(tmp_path):
    """A path (absolute, ./, ~, or deeper than org/name) that is not there: a typo, not a Hub ID."""
    from itt.errors import UserError
    from itt.models import load_tokenizer

    for name in (str(tmp_path / "no-model"), "./no/such", "a/b/c"):
        with pytest.raises(UserError, match=r"cannot load \(no such folder: "):
            load_tokenizer(name)


def test_the_answer_is_kept_ten_minutes_then_asked_again(monkeypatch):
    """One connection attempt per 10 minutes in a process: a reused trial process sees the network come back."""
    from itt import hub

    tries, now = [], [1000.0]
    def refuse(*a, **kw):
        tries.append(a[0])
        raise ConnectionRefusedError

    for k in hub.PROXIES:
        monkeypatch.delenv(k, raising=False)
        monkeypatch.delenv(k.lower(), raising=False)
    monkeypatch.setattr(hub, "_last", None)
    monkeypatch.setattr(hub.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(hub.socket, "create_connection", refuse)
    assert hub.reachable() is False and hub.reachable() is False and len(tries) == 1
    now[0] += hub.RECHECK_S + 1
    monkeypatch.setattr(hub.socket, "create_connection", lambda *a, **kw: socket.socket())
    assert hub.reachable() is True and len(tries) == 1
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    monkeypatch.setattr(hub, "_last", (now[0], False))
    assert hub.reachable() is True  # (behind a proxy: never tried)


def _run_refused(write_config, tmp_path, capsys, model_dir) -> list[str]:
    """`itt run` of a tiny chain on ``model_dir``: its error lines (it must exit 2 before any output)."""
    from search.cli import main
    from tests.conftest import TINY

    path = write_config(base={**TINY, "model": {"name": str(model_dir)}}, name="named.yaml")
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_a_model_folder_without_tokenizer_files_is_an_error_not_an_empty_vocabulary(write_config, tmp_path, capsys):
    """transformers 5 builds a BertTokenizer from config.json alone: 5 special tokens, every word [UNK], and the
    chain trained and scored on [CLS] [UNK] ... [SEP] (chance accuracy, exit 0)."""
    from transformers import BertConfig, BertModel

    from itt.errors import UserError
    from itt.models import load_tokenizer, train_tokenizer

    BertModel(BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(tmp_path / "bert")  # weights and config, no tokenizer
    with pytest.raises(UserError, match=r"tokenizer '.*bert': cannot load \(no vocabulary there, only its 5 special"):
        load_tokenizer(str(tmp_path / "bert"))
    assert _run_refused(write_config, tmp_path, capsys, tmp_path / "bert") == [
        f"error: tokenizer '{tmp_path / 'bert'}': cannot load (no vocabulary there, only its 5 special tokens: "
        "its tokenizer files are missing)"]
    # with its tokenizer files beside it, the same folder loads: the vocabulary is the one saved
    tok = train_tokenizer(["a small corpus of words"], arch="bert", vocab_size=40)
    tok.save_pretrained(tmp_path / "bert")
    assert load_tokenizer(str(tmp_path / "bert")).get_vocab() == tok.get_vocab()


def test_a_model_that_takes_no_text_is_refused_in_one_line(write_config, tmp_path, capsys):
    """A vision model (ViT) as model.name: an AttributeError traceback at the first training step before."""
    from transformers import ViTConfig, ViTModel

    from itt.config import ModelConfig
    from itt.errors import UserError
    from itt.models import check_model, train_tokenizer

    ViTModel(ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                       image_size=8, patch_size=4)).save_pretrained(tmp_path / "vit")
    train_tokenizer(["a small corpus of words"], arch="bert", vocab_size=40).save_pretrained(tmp_path / "vit")
    with pytest.raises(UserError, match=r"'.*vit' \(vit, ViTModel\) does not take text"):
        check_model(ModelConfig(name=str(tmp_path / "vit")))
    assert _run_refused(write_config, tmp_path, capsys, tmp_path / "vit") == [
        f"error: model.name: '{tmp_path / 'vit'}' (vit, ViTModel) does not take text (no input_ids); itt trains "
        "text encoders (XLM-R, mBERT, BERT, RoBERTa, XLNet, ...): give one"]


def test_a_model_with_its_own_code_names_the_setting_that_allows_it(write_config, tmp_path, capsys):
    """A model whose config is the repository's own Python (auto_map): transformers' refusal named neither
    model.trust_remote_code nor what to do ("... contains custom code which must be executed ... You can
    inspect the repository content at ..."); the chain's line now does, and the code never runs."""
    from itt.models import train_tokenizer

    folder = tmp_path / "own"
    folder.mkdir()
    (folder / "configuration_own.py").write_text("raise SystemExit('the repository code ran')\n")
    (folder / "config.json").write_text('{"model_type": "own_enc", "auto_map": {"AutoConfig": "configuration_own.OwnConfig"}}')
    train_tokenizer(["a small corpus of words"], arch="bert", vocab_size=40).save_pretrained(folder)
    assert _run_refused(write_config, tmp_path, capsys, folder) == [
        f"error: model '{folder}': cannot load its config (its repository's own Python code must run to load it: "
        "set model.trust_remote_code: true if you trust that code (read it first))"]
