"""How optbench installs: the folders kernels/ and suite/ become
``optbench.kernels`` and ``optbench.suite``, so a package that owns the bare
top-level name ``kernels`` (the compute-kernel loader used beside
transformers) and optbench live side by side; and what ships is enough to
run the product's own commands (the CuPy stand-in is package code)."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_package_list_names_every_package_folder():
    """pyproject lists the packages by hand (setuptools cannot discover them
    under another name): the list must be every folder with an __init__.py."""
    setup = PYPROJECT["tool"]["setuptools"]
    mapping = setup["package-dir"]
    found = set()
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert sorted(setup["packages"]) == sorted(found)
    assert PYPROJECT["project"]["scripts"]["optbench"] == "optbench.suite.cli:main"


def _wheel(source: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(out), str(source)], check=True, capture_output=True, text=True, timeout=300)
    return next(out.glob("*.whl"))


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory):
    """optbench's wheel and a package owning top-level ``kernels``,
    installed into one folder (as into one environment)."""
    pytest.importorskip("setuptools")
    tmp = tmp_path_factory.mktemp("packaging")
    other = tmp / "other"
    (other / "kernels").mkdir(parents=True)
    (other / "kernels" / "__init__.py").write_text('WHOSE = "the other project"\n')
    (other / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "kernels-of-another-project"\nversion = "1.0"\n'
        '[tool.setuptools]\npackages = ["kernels"]\n')
    wheels = [_wheel(other, tmp / "dist-other"), _wheel(ROOT, tmp / "dist")]
    target = tmp / "site"
    for wheel in wheels:  # the other project first, then optbench: nothing of theirs may be overwritten
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                        str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    return target


def _python(target: Path, code: str) -> subprocess.CompletedProcess:
    """``code`` with ``target`` first on the path (ahead of this checkout's
    editable install), from a folder that is not the checkout."""
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          cwd=target.parent)


def test_optbench_installs_beside_a_top_level_kernels_package(side_by_side):
    assert (side_by_side / "kernels" / "__init__.py").read_text() == 'WHOSE = "the other project"\n'
    assert not (side_by_side / "suite").exists()
    out = _python(side_by_side, "import kernels, optbench.kernels, optbench.suite.cli\n"
                                "print(kernels.WHOSE)\n"
                                "print(optbench.kernels.__file__)\n"
                                "print(optbench.kernels.Optimizer.__name__)")
    assert out.returncode == 0, out.stderr
    whose, where, name = out.stdout.split("\n")[:3]
    assert whose == "the other project" and where.startswith(str(side_by_side)) and name == "Optimizer"


def test_the_installed_package_counts_launches_without_a_checkout(side_by_side):
    """`optbench bench --launches` from the wheel: the CuPy stand-in and its
    host harness (C++ shim header included) ship with the package."""
    pytest.importorskip("threadpoolctl")
    from optbench.kernels.testing.cuda_host import find_compiler

    if find_compiler() is None:
        pytest.skip("no C++ compiler (g++/c++) found: the stand-in cannot run kernels")
    assert (side_by_side / "optbench" / "kernels" / "testing" / "cuda_host_shim.h").is_file()
    out = _python(side_by_side, "import sys, optbench.suite.cli as cli\n"
                                "sys.exit(cli.main(['bench', '--launches', '--batch-sizes', '256',"
                                " '--members', '2']))")
    assert out.returncode == 0, out.stderr
    assert "launches/step" in out.stdout and "population of     2" in out.stdout
