"""Backends: numpy always; cupy only where it can run, with a clear error."""

import math
import sys

import numpy as np
import pytest

from optbench.kernels import BackendUnavailable, get_backend


def test_numpy_backend():
    b = get_backend("numpy")
    assert b.name == "numpy" and b.xp is np and not b.is_gpu
    a = b.asarray([1, 2, 3])
    assert a.dtype == np.float32 and isinstance(b.to_numpy(a), np.ndarray)
    with b.timer() as t:
        np.ones(1000).sum()
    assert not math.isnan(t.seconds)  # the timer recorded the block (it starts as NaN)


def test_unknown_backend_lists_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown backend 'tpu'.*auto, numpy, cupy"):
        get_backend("tpu")


def test_cupy_without_cupy_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes "import cupy" fail
    with pytest.raises(BackendUnavailable, match="needs CuPy.*optbench\\[cuda12\\]"):
        get_backend("cupy")
    assert get_backend("auto").name == "numba"  # the fastest CPU path (Numba is a dependency)
    monkeypatch.setitem(sys.modules, "numba", None)
    assert get_backend("auto").name == "numpy"  # and NumPy where Numba is missing


def test_cupy_without_a_device_is_a_clear_error(monkeypatch):
    class Runtime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = type(sys)("cupy")
    fake.cuda = type(sys)("cupy.cuda")
    fake.cuda.runtime = Runtime
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(BackendUnavailable, match="needs a CUDA device.*no CUDA-capable device"):
        get_backend("cupy")
    assert get_backend("auto").name == "numba"


@pytest.mark.gpu
def test_cupy_backend_on_a_gpu(cp):
    b = get_backend("cupy")
    assert b.xp is cp and b.is_gpu and b.device
    with b.timer() as t:
        cp.ones(1 << 20).sum()
    assert not math.isnan(t.seconds)  # the timer recorded the block (it starts as NaN)
