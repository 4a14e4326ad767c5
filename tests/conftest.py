"""Shared fixtures: the backends a test body runs on (CuPy only with a GPU,
Numba only where it is installed)."""

import pytest

from kernels import BackendUnavailable, get_backend


def _backend_or_skip(name):
    try:
        return get_backend(name)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(params=["numpy", "numba", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend(request):
    """Each available backend in turn: numpy always, numba where it is
    installed, cupy on a GPU machine. The numba backend holds NumPy arrays;
    tests pass ``backend=backend`` to the Optimizer so it updates them with
    the Numba kernels."""
    return _backend_or_skip(request.param)


@pytest.fixture(scope="session")
def cp():
    """The cupy module, on a machine where it sees a CUDA device (else skip)."""
    return _backend_or_skip("cupy").xp
