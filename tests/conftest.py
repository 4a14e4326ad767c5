"""Shared fixtures: the backends a test body runs on.

``cupy`` is the real CuPy where it sees a device (the lent GPU machine, via
scripts/gpu-check.sh) and otherwise the strict CPU stand-in that ships with
the package (``optbench.kernels.testing.cupy_standin``; CI), installed for
that one test: the same test
bodies exercise the Python that drives the GPU kernels, the exact CUDA
source run on the host, every launch and sync counted. ``numba`` runs where
Numba is installed. ``OPTBENCH_CUPY_STANDIN=1`` installs the stand-in for the
whole session instead (then ``auto`` picks it, as on a GPU machine).
"""

import os
import sys

import pytest

from optbench.kernels import BackendUnavailable, get_backend
from optbench.kernels.testing import cuda_host, cupy_standin


def _real_cupy_runs() -> bool:
    try:
        get_backend("cupy")
    except BackendUnavailable:
        return False
    return not getattr(sys.modules.get("cupy"), "__name__", "").startswith(cupy_standin.__name__)


REAL_CUPY = _real_cupy_runs()
if os.environ.get("OPTBENCH_CUPY_STANDIN") == "1" and not REAL_CUPY:
    cupy_standin.install()


def _backend_or_skip(name):
    try:
        return get_backend(name)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def plugin_registry(monkeypatch):
    """The rule registry as it was before the test: plug-ins the test loads
    (kernels.plugins) are forgotten afterwards."""
    import optbench.kernels.plugins as plugins
    import optbench.kernels.rules as registry

    saved = {name: dict(getattr(registry, name)) for name in ("RULES", "SOURCES", "PLAIN")}
    monkeypatch.setattr(plugins, "_LOADED", {})
    monkeypatch.setattr(plugins, "_FINGERPRINTS", {})
    monkeypatch.setattr(registry, "_ENTRY_POINTS_LOADED", False)
    yield registry
    for name, table in saved.items():
        live = getattr(registry, name)
        live.clear()
        live.update(table)


@pytest.fixture(scope="session")
def host_compiler(tmp_path_factory):
    """The host build of CUDA sources (optbench.kernels.testing.cuda_host), shared by every
    test that runs a kernel on the CPU; skipped where no C++ compiler is."""
    if cuda_host.find_compiler() is None:
        pytest.skip("no C++ compiler (g++/c++) found: the CUDA kernels are not run on the host")
    return cuda_host.HostCompiler(tmp_path_factory.mktemp("cuda_host"))


@pytest.fixture
def standin(monkeypatch):
    """The CuPy stand-in as ``cupy`` for this test (counters reset); skipped
    where a real CuPy sees a device (the stand-in must never shadow it)."""
    if REAL_CUPY:
        pytest.skip("a real CuPy sees a device here: the stand-in is not installed")
    for name, module in (("cupy", cupy_standin), ("cupy.cuda", cupy_standin.cuda),
                         ("cupy.cuda.runtime", cupy_standin.cuda.runtime), ("cupy.linalg", cupy_standin.linalg),
                         ("cupy.random", cupy_standin.random)):
        monkeypatch.setitem(sys.modules, name, module)
    cupy_standin.reset_counts()
    return cupy_standin


@pytest.fixture(params=["numpy", "numba", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend(request):
    """Each backend in turn: numpy always, numba where it is installed, cupy
    on a GPU or else on the stand-in. Tests pass ``backend=backend`` to the
    Optimizer so the numba backend updates NumPy arrays with its kernels."""
    if request.param == "cupy" and not REAL_CUPY:
        request.getfixturevalue("standin")
    return _backend_or_skip(request.param)


@pytest.fixture
def cp(request):
    """The cupy module: the real one on a GPU machine, else the stand-in."""
    if not REAL_CUPY:
        request.getfixturevalue("standin")
    return _backend_or_skip("cupy").xp
