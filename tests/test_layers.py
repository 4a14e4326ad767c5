"""The architecture, checked by reading the imports (not by convention).

- ``kernels`` imports nothing from ``suite`` (device code knows no models,
  data sets or reports);
- the reports (a study's, the throughput report, the lecture's) read stored
  results only, so importing them loads nothing from ``suite.training``;
- the shared helpers in ``suite.reporting`` import nothing else of ours.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of every module ``path`` imports (relative ones resolved)."""
    tree = ast.parse(path.read_text())
    parts = package.split(".")
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + 1]
                out.add(".".join(base + ([node.module] if node.module else [])))
            else:
                out.add(node.module)
    return out


def _package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    names = list(rel.parts)
    if names[-1] == "__init__":
        names = names[:-1]
        return ".".join(names) + ".__init__"
    return ".".join(names[:-1])


@pytest.mark.parametrize("path", sorted((ROOT / "kernels").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_kernels_import_nothing_from_suite(path):
    pkg = _package_of(path)
    pkg = pkg[: -len(".__init__")] if pkg.endswith(".__init__") else pkg
    bad = sorted(m for m in _imported_modules(path, pkg) if m == "suite" or m.startswith("suite."))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", sorted((ROOT / "suite" / "reporting").rglob("*.py")), ids=lambda p: p.name)
def test_reporting_helpers_import_no_other_part_of_the_project(path):
    mods = _imported_modules(path, "suite.reporting")
    bad = sorted(m for m in mods if (m.startswith("suite.") and not m.startswith("suite.reporting"))
                 or m == "kernels" or m.startswith("kernels."))
    assert not bad, f"{path.name} imports {bad}"


REPORTS = ["suite.studies.report", "suite.bench.report", "suite.lecture.report"]


@pytest.mark.parametrize("module", REPORTS)
def test_reports_load_nothing_from_training(module):
    """Import the report in a fresh interpreter and list what got loaded."""
    code = (f"import sys, {module}\n"
            "print('\\n'.join(m for m in sys.modules if m.startswith(('suite.training', 'suite.studies.runner'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{module} loads {out.stdout.split()}"


def test_the_check_would_catch_a_report_that_imports_training():
    """The same probe flags a module that does import training (so the test can fail)."""
    code = ("import sys, suite.studies.runner\n"
            "print('\\n'.join(m for m in sys.modules if m.startswith('suite.training')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "suite.training.loop" in out.stdout.split()


def test_store_schema_is_the_run_config():
    """The report reads the config columns from the store's schema; it must
    list exactly RunConfig's fields."""
    from suite.studies.store import CONFIG_COLUMNS
    from suite.training.config import RunConfig

    assert tuple(CONFIG_COLUMNS) == RunConfig.field_names()
