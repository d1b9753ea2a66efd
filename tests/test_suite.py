"""The suite's own layout: every test that starts Ray is marked `ray`, so the parallel run (two pytest-xdist
workers, tests/conftest.py) runs Ray tests in one worker, one at a time."""

from __future__ import annotations

import ast
import re

from tests.conftest import ROOT

# What starts Ray in a test: a search, resume or confirmation (in process or as `itt`; one that stops at a
# config error before Ray starts counts too), Ray itself, Ray Train, `ray start` nodes (tests/ray_nodes.py),
# and the GPU recipe's search part.
STARTS_RAY = re.compile(r"run_search|resume_search|ray\.init|ray_nodes|LocalRayCluster|Tuner|TorchTrainer|"
                        r"[(\[]\"(search|resume|confirm)\",|\"search\.cli\", \"(search|resume|confirm)\"|"
                        r"gpu_all\.sh\", \"--smoke\", \"--parts")


def unmarked_ray_tests(src: str) -> list[str]:
    """Test functions whose code, or a module function or fixture they reach by name, matches STARTS_RAY,
    and that carry no `ray` mark (their own or the module's `pytestmark`) and do not use `ray_local`."""
    tree = ast.parse(src)
    funcs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    module_marked = any(isinstance(n, ast.Assign) and "pytestmark" in ast.unparse(n.targets[0])
                        and "mark.ray" in ast.unparse(n.value) for n in tree.body)

    def starts(name: str, seen: set) -> bool:
        node = funcs[name]
        if STARTS_RAY.search(ast.get_source_segment(src, node)):
            return True
        reached = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in funcs}
        reached |= {a.arg for a in node.args.args if a.arg in funcs}  # module fixtures it takes
        return any(starts(r, seen | {name}) for r in reached - seen - {name})

    bad = []
    for name, node in funcs.items():
        if not name.startswith("test_") or module_marked:
            continue
        marked = any("mark.ray" in ast.unparse(d) for d in node.decorator_list)
        if not marked and "ray_local" not in {a.arg for a in node.args.args} and starts(name, set()):
            bad.append(name)
    return bad


def test_every_test_that_starts_ray_is_marked():
    modules = sorted(ROOT.glob("tests/test_*.py"))
    assert len(modules) > 30
    bad = {p.stem: b for p in modules if p.stem != "test_suite" and (b := unmarked_ray_tests(p.read_text()))}
    assert bad == {}, "mark these `@pytest.mark.ray` (tests/conftest.py)"


def test_the_check_finds_an_unmarked_test_through_a_helper():
    src = ("import pytest\n"
           "def _go(cfg):\n    return run_search(cfg)\n"
           "def test_a(tmp_path):\n    _go(tmp_path)\n"
           "@pytest.mark.ray\ndef test_b(tmp_path):\n    _go(tmp_path)\n"
           "def test_c(ray_local):\n    _go(1)\n"
           "def test_d():\n    assert 1\n")
    assert unmarked_ray_tests(src) == ["test_a"]
    assert unmarked_ray_tests("import pytest\npytestmark = pytest.mark.ray\n" + src.split("\n", 1)[1]) == []
