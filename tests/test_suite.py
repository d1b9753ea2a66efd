"""The suite's own layout: every test module that starts Ray is in conftest's RAY_MODULES, so the parallel
run (two pytest-xdist workers) keeps Ray tests to one worker, one at a time."""

from __future__ import annotations

import re

from tests.conftest import RAY_MODULES, ROOT

# What starts Ray in a test: a search or resume (in process or as `itt`), Ray itself, Ray Train, `ray start` nodes,
# and the bench scripts that run searches.
STARTS_RAY = re.compile(r"run_search|resume_search|ray_local|ray\.init|ray_nodes|Tuner|TorchTrainer|"
                        r"main\(\[\"(search|resume|confirm)\"|_itt\(\"(search|resume)|itt search|ray start|"
                        r"gpu_all|search_efficiency")


def test_every_module_that_starts_ray_runs_in_the_ray_group():
    modules = [p for p in sorted(ROOT.glob("tests/test_*.py")) if p.stem != "test_suite"]  # (its pattern is here)
    assert len(modules) > 30
    starts = {p.stem for p in modules if STARTS_RAY.search(p.read_text())}
    assert starts - RAY_MODULES == set(), "add these to tests/conftest.py's RAY_MODULES"
    assert "test_search" in starts and "test_chain" not in starts  # the pattern finds what it should
