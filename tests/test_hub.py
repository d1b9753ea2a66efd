"""Loading from the 🤗 Hub without a network (itt/hub.py): a cached model loads at once, a missing one or a
Hub dataset fails at once in one line. Each case runs in a fresh process whose Hub is a closed local port
(``HF_ENDPOINT``) and whose 🤗 cache is a temporary folder, so nothing here touches the network."""

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
