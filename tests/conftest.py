from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One torch (OpenMP) thread in this process and in every process it starts (Ray's included, which
# inherit the environment): the tests' models are tiny, and on 2 shared cores two threads per process
# wait on each other - a cache test's two-stage chain took 24-29 s with 2 threads beside one busy core,
# 0.6 s with one. Settable from outside (OMP_NUM_THREADS=2 python -m pytest ...).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
if "torch" in sys.modules:  # (already imported by a plugin: the environment came too late for it)
    sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
# Every process a test starts (`python -m search.cli` in a temporary folder, Ray's workers, `ray start`
# nodes) imports this checkout's code, not whatever `pip install -e` last pointed at: an editable
# install of another checkout made the tests that run in tmp_path fail with "No module named 'search'"
# (or, worse, would have tested the other checkout's code).
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p)

# A chain small enough for a test: tiny model, few toy examples.
TINY = {
    "name": "tiny",
    "model": {"tiny": {"arch": "bert", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
              "train_tokenizer": {"vocab_size": 400}},
    "order": ["toy_topic", "toy_length"],
    "target": {"task": "toy_xnli"},
    "train": {"lr": 1e-3, "batch_size": 16, "max_steps": 4, "max_length": 24},
    "eval": {"batch_size": 64},
    "toy": {"n_train": 64, "n_eval": 24},
    "save_checkpoint": False,
}


# The suite runs on two pytest-xdist workers (pyproject's addopts: `-n 2 --dist loadgroup`; `-n 0` runs
# it in one process). A test that starts a private Ray in its own process (the `ray_local` fixture:
# ``address="local"``, which joins no other cluster) runs with the rest of its module, beside the other
# worker's tests. The tests that need the machine's one Ray lane - `ray start` nodes, a search or resume
# driver in its own process or started without `ray_local` (Ray joins a `ray start` cluster running on
# the machine), Ray Train on its own Ray - are marked `ray` and run in one worker, one at a time.
# tests/test_suite.py finds unmarked ones in the source, and `_no_ray_unmarked` below fails a test that
# starts Ray in its own process with neither the mark nor `ray_local`. Every other test runs with the rest
# of its module in one worker, so module fixtures are built once.
def _starts_ray(item) -> bool:
    return _serial(item) or "ray_local" in item.fixturenames


def _serial(item) -> bool:
    return item.get_closest_marker("ray") is not None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(pytest.mark.xdist_group("ray" if _serial(item) else item.path.stem))


@pytest.fixture(autouse=True)
def _no_ray_unmarked(request):
    """A test not marked `ray` that starts Ray in this process fails: it would run beside the Ray tests."""
    if _starts_ray(request.node):
        yield
        return
    before = "ray" in sys.modules and sys.modules["ray"].is_initialized()
    yield
    if not before and "ray" in sys.modules and sys.modules["ray"].is_initialized():
        pytest.fail("this test starts Ray: mark it `@pytest.mark.ray` (tests/conftest.py)")


@pytest.fixture(autouse=True, scope="session")
def _mlflow_store(tmp_path_factory):
    """Searches in tests track to a throwaway MLflow store, never to ./mlflow.db of the checkout."""
    if "MLFLOW_TRACKING_URI" in os.environ:
        yield
        return
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="module")
def ray_local():
    """An embedded Ray for one test module (2 CPUs), unless this process runs one already. ``address="local"``:
    always a private instance - a cluster address file that outlived its cluster (a killed test run leaves
    /tmp/ray/ray_current_cluster behind) made ``ray.init(num_cpus=2)`` try to join it and fail."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture
def table_may_lack_orders(monkeypatch):
    """For tests that make a simulated trial error by leaving its order out of the table: the config check
    that refuses such a table (search.config._table_problem) is off in this, the driver's, process; the
    trials read the table themselves and error on the missing order."""
    monkeypatch.setattr("search.config.TABLE_SPACE_CHECKED", -1)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real data not found at {SHARED} (CI has it beside the project)")
    return SHARED


@pytest.fixture
def write_config(tmp_path):
    """Write a config mapping to a YAML file (deep-merged over TINY unless base=None)."""

    def _write(overrides: dict | None = None, base: dict | None = TINY, name: str = "cfg.yaml") -> Path:
        cfg = _merge(base or {}, overrides or {})
        path = tmp_path / name
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
        return path

    return _write


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def signal_after_trials(monkeypatch, n: int, sig: int) -> None:
    """Send ``sig`` to this process (the search's driver) once its ``n``-th trial has ended: a Ctrl-C
    (SIGINT) or a job scheduler's SIGTERM at a known point of an in-process search."""
    import itertools

    from search.results import ResultsWriter

    ended, count = ResultsWriter.on_trial_complete, itertools.count(1)

    def then_signal(self, iteration, trials, trial, **info):
        ended(self, iteration, trials, trial, **info)
        if next(count) == n:
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(ResultsWriter, "on_trial_complete", then_signal)
