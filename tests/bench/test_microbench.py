"""pytest-benchmark microbenchmarks: one optimiser step of every rule and one
dropout pass, on every backend this machine has (numpy; numba where it is
installed; cupy on a GPU).

    python -m pytest tests/bench --benchmark-enable --benchmark-only
    OPTBENCH_BENCH_SIZES=2^20,2^24 python -m pytest tests/bench --benchmark-enable --benchmark-only

(``--benchmark-enable`` overrides the ``--benchmark-disable`` in pyproject's
addopts; pytest-benchmark refuses ``--benchmark-only`` while disabled.) In
the default test run these run once each, untimed, at 4096 elements.

Timing is pytest-benchmark's: wall-clock rounds, with a device synchronise
after each call on the GPU. ``extra_info`` holds the bytes a call moves, so
GB/s = bytes / mean. The throughput report (``optbench bench``) is the
measurement of record; these are for quick before/after comparisons
(``--benchmark-save`` / ``--benchmark-compare``).
"""

import numpy as np
import pytest

from optbench.kernels import RULES, Optimizer, dropout


@pytest.fixture
def kernel_backend(backend):
    """tests/conftest.py's backends (cupy: a GPU, else the stand-in, whose
    timings mean nothing)."""
    return backend


def _call(backend, fn):
    if not backend.is_gpu:
        return fn

    def synced():
        fn()
        backend.synchronize()

    return synced


@pytest.mark.parametrize("rule", list(RULES))
def test_rule_step(benchmark, kernel_backend, rule, size):
    b = kernel_backend
    rng = np.random.default_rng(0)
    w = b.asarray(rng.standard_normal(size, dtype=np.float32))
    g = b.asarray(rng.standard_normal(size, dtype=np.float32))
    opt = Optimizer(rule, w, backend=b.name)
    opt.step(g)  # compiles (numba, cupy) and touches the state
    benchmark.group = f"{rule} n={size}"
    benchmark.extra_info.update(backend=b.name, elements=size,
                                bytes=RULES[rule].bytes_per_param * size)
    before = b.to_numpy(w).copy()
    benchmark(_call(b, lambda: opt.step(g, check_finite=False)))  # the kernel, not the check
    after = b.to_numpy(w)
    assert np.isfinite(after).all() and not np.array_equal(after, before)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_dropout(benchmark, kernel_backend, direction, size):
    b = kernel_backend
    if b.name == "numba":
        pytest.skip("dropout on the numba backend is the NumPy path (timed under numpy)")
    x = b.asarray(np.random.default_rng(1).standard_normal(size, dtype=np.float32))
    out = b.xp.empty_like(x)
    fn = dropout.dropout_forward if direction == "forward" else dropout.dropout_backward
    fn(x, out, 0.5, 1234)
    benchmark.group = f"dropout-{direction} n={size}"
    benchmark.extra_info.update(backend=b.name, elements=size, bytes=8 * size)
    benchmark(_call(b, lambda: fn(x, out, 0.5, 1234)))
    kept = b.to_numpy(out) != 0
    assert 0.4 < kept.mean() < 0.6
