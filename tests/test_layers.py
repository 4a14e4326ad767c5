"""The architecture, checked by reading the imports (not by convention).

- ``optbench.kernels`` imports nothing from ``optbench.suite`` (device code
  knows no models, data sets or reports);
- nothing in the product imports ``tests`` (the CuPy stand-in and the host
  harness ship in ``optbench.kernels.testing``);
- no module imports another inside a function to break an import circle:
  every import made inside a function could be made at the top of its
  module without closing a cycle of module-level imports (imports inside
  functions remain for what is optional or heavy: torch, numba, a report's
  dependencies);
- the reports (a study's, the throughput report, the lecture's) read stored
  results only, so importing them loads nothing from ``optbench.suite.training``;
- the shared helpers in ``optbench.suite.reporting`` import nothing else of ours.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The installed name of each top-level folder (pyproject's package-dir).
PACKAGES = {"kernels": "optbench.kernels", "suite": "optbench.suite"}
SOURCES = sorted(p for folder in PACKAGES for p in (ROOT / folder).rglob("*.py"))


def module_name(path: Path) -> str:
    """The installed module name of a source file."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts[0] = PACKAGES[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports(path: Path) -> list[tuple[str, bool]]:
    """(absolute module name, inside a function?) for every import in ``path``;
    ``from X import name`` counts as importing X.name where that is a module
    of ours, else X."""
    tree = ast.parse(path.read_text())
    own = module_name(path)
    package = own if _is_package(path) else own.rpartition(".")[0]
    known = {module_name(p) for p in SOURCES}
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, nested) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module
                for a in child.names:
                    sub = f"{mod}.{a.name}"
                    out.append((sub if sub in known else mod, nested))
            visit(child, nested)

    visit(tree, False)
    return out


GRAPH = {module_name(p): imports(p) for p in SOURCES}


def _parents(name: str) -> list[str]:
    """A module and the packages that importing it runs first (their __init__)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts) + 1)]


def _top_level_edges() -> dict[str, set[str]]:
    edges = {}
    for mod, found in GRAPH.items():
        targets = set()
        for target, nested in found:
            if not nested:
                targets.update(t for t in _parents(target) if t in GRAPH and t != mod)
        edges[mod] = targets
    return edges


def _reaches(edges, start: str, goal: str) -> list[str] | None:
    """A path of module-level imports from start to goal, or None."""
    seen, stack = {start}, [(start, [start])]
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, ()):
            if nxt == goal:
                return path + [goal]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


@pytest.mark.parametrize("path", [p for p in SOURCES if p.parts[len(ROOT.parts)] == "kernels"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_kernels_import_nothing_from_suite(path):
    bad = sorted(m for m, _ in imports(path) if m.startswith(("optbench.suite", "suite")))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_in_the_product_imports_the_tests(path):
    bad = sorted(m for m, _ in imports(path) if m.split(".")[0] in ("tests", "conftest", "cupy_standin",
                                                                     "cuda_host"))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
    assert "sys.path" not in path.read_text(), f"{path.relative_to(ROOT)} edits sys.path"


def circles_broken_inside_functions() -> list[str]:
    """Each import made inside a function whose module-level form would close
    an import cycle, with the cycle."""
    edges = _top_level_edges()
    found = []
    for mod, targets in GRAPH.items():
        for target, nested in targets:
            if not nested:
                continue
            for t in _parents(target):
                if t in GRAPH and t != mod and t not in mod.split(".") and (path := _reaches(edges, t, mod)):
                    found.append(f"{mod} imports {t} inside a function; at the top it would close "
                                 f"{' -> '.join([mod] + path)}")
    return found


def test_no_module_imports_inside_a_function_to_break_a_circle():
    assert circles_broken_inside_functions() == []


def test_the_circle_check_would_catch_one(monkeypatch):
    """Give a module a function-level import of a module that imports it at
    the top: the check names the circle (so the test above can fail)."""
    rule = "optbench.kernels.rule"
    expr = "optbench.kernels.codegen.expr"
    assert any(t == rule for t, nested in GRAPH[expr] if not nested)
    monkeypatch.setitem(GRAPH, rule, GRAPH[rule] + [(expr, True)])
    assert any(line.startswith(f"{rule} imports {expr}") for line in circles_broken_inside_functions())


@pytest.mark.parametrize("path", sorted((ROOT / "suite" / "reporting").rglob("*.py")), ids=lambda p: p.name)
def test_reporting_helpers_import_no_other_part_of_the_project(path):
    bad = sorted(m for m, _ in imports(path)
                 if m.startswith("optbench.") and not m.startswith("optbench.suite.reporting"))
    assert not bad, f"{path.name} imports {bad}"


REPORTS = ["optbench.suite.studies.report", "optbench.suite.bench.report", "optbench.suite.lecture.report"]
TRAINING = ("optbench.suite.training", "optbench.suite.studies.runner")


def _loaded_by(module: str) -> list[str]:
    code = (f"import sys, {module}\n"
            f"print('\\n'.join(m for m in sys.modules if m.startswith({TRAINING!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.parametrize("module", REPORTS)
def test_reports_load_nothing_from_training(module):
    """Import the report in a fresh interpreter and list what got loaded."""
    assert _loaded_by(module) == [], f"{module} loads training"


def test_the_check_would_catch_a_report_that_imports_training():
    """The same probe flags a module that does import training (so the test can fail)."""
    assert any(m.startswith("optbench.suite.training") for m in _loaded_by("optbench.suite.studies.runner"))
