"""The suite's own layout: every test that starts Ray is marked `ray` or takes the private `ray_local`, and
every test that needs the machine's one Ray lane (`ray start` nodes, a search driver in its own process) is
marked `ray`, so the parallel run (two pytest-xdist workers, tests/conftest.py) runs those one at a time."""

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
# What needs the serial Ray lane even beside a private `ray_local`: `ray start` nodes (a search started
# without an address joins them), a search driver in its own process (it joins such a cluster too) and
# the GPU recipe's search part.
SERIAL = re.compile(r"ray_nodes|LocalRayCluster|TwoHostRayCluster|\"ray\", \"start\"|"
                    r"\"search\.cli\", (\*|\"(search|resume|confirm)\")|\"itt\", \"(search|resume|confirm)\"|"
                    r"gpu_all\.sh\", \"--smoke\", \"--parts")


def unmarked_ray_tests(src: str) -> list[str]:
    """Test functions that carry no `ray` mark (their own or the module's `pytestmark`) although their code,
    or a module function or fixture they reach by name, matches SERIAL, or matches STARTS_RAY while the
    test does not take `ray_local` (a Ray that joins no cluster: such a test runs beside the serial lane)."""
    tree = ast.parse(src)
    funcs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    lines = src.splitlines()
    code = {name: "\n".join(lines[n.lineno - 1:n.end_lineno]) for name, n in funcs.items()}
    called = {name: {x.id for x in ast.walk(n) if isinstance(x, ast.Name) and x.id in funcs}
              | {a.arg for a in n.args.args if a.arg in funcs} for name, n in funcs.items()}  # (fixtures it takes)
    module_marked = any(isinstance(n, ast.Assign) and "pytestmark" in ast.unparse(n.targets[0])
                        and "mark.ray" in ast.unparse(n.value) for n in tree.body)

    def reaches(pattern: re.Pattern, name: str) -> bool:
        seen, todo = set(), [name]
        while todo:
            f = todo.pop()
            if f not in seen:
                seen.add(f)
                todo += called[f]
        return any(pattern.search(code[f]) for f in seen)

    bad = []
    for name, node in funcs.items():
        if not name.startswith("test_") or module_marked:
            continue
        marked = any("mark.ray" in ast.unparse(d) for d in node.decorator_list)
        private = "ray_local" in {a.arg for a in node.args.args}
        if not marked and (reaches(SERIAL, name) or not private and reaches(STARTS_RAY, name)):
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


def test_a_private_ray_does_not_excuse_a_driver_process_or_ray_start_nodes():
    """`ray_local` lets a test run beside the serial lane; a search driver in its own process, or `ray start`
    nodes, still need the mark (such a driver joins a cluster another test starts on the machine)."""
    src = ("import pytest\n"
           "def _itt(*args):\n    return [sys.executable, \"-m\", \"search.cli\", *args]\n"
           "def test_a(ray_local):\n    run_search(1)\n"
           "def test_b(ray_local, tmp_path):\n    subprocess.run(_itt(\"resume\", tmp_path))\n"
           "def test_c(ray_local):\n    with LocalRayCluster() as c:\n        run_search(c)\n"
           "@pytest.mark.ray\ndef test_d(ray_local):\n    subprocess.run(_itt(\"search\"))\n")
    assert unmarked_ray_tests(src) == ["test_b", "test_c"]
