"""The CuPy stand-in itself: as strict as CuPy, and counting right.

If the stand-in let a host conversion through or missed a synchronisation,
the GPU-path tests that run on it would pass on the CPU and fail (or crawl)
on a GPU; so its own behaviour is pinned here.
"""

import numpy as np
import pytest


def test_implicit_conversions_to_numpy_raise(standin):
    cp = standin
    x = cp.arange(6, dtype=np.float32)
    for convert in (np.asarray, np.array, lambda a: np.concatenate([a, a]),
                    lambda a: a + np.ones(6, np.float32), lambda a: np.ones(6, np.float32) * a,
                    lambda a: np.add(a, 1.0), lambda a: cp.maximum(a, np.zeros(6, np.float32)),
                    lambda a: a.__setitem__(slice(None), np.ones(6, np.float32))):
        with pytest.raises(TypeError):
            convert(x)
    assert not isinstance(x, np.ndarray) and type(x).__module__ == "cupy"


def test_explicit_transfers_work_and_reads_are_counted_as_syncs(standin):
    cp = standin
    x = cp.asarray(np.arange(4, dtype=np.float32))
    assert standin.counts() == {"launches": 1, "syncs": 0, "h2d": 1, "allocs": 1, "graph_nodes": 0}
    assert x.get().tolist() == [0, 1, 2, 3] and cp.asnumpy(x).tolist() == [0, 1, 2, 3]
    s = x.sum()  # a reduction stays on the device: a 0-d array, no sync
    assert isinstance(s, cp.ndarray) and s.shape == ()
    before = standin.counts()["syncs"]
    assert float(s) == 6.0 and int(s) == 6 and bool(s) and s.item() == 6.0 and x.tolist()[1] == 1.0
    assert standin.counts()["syncs"] == before + 5
    cp.cuda.Device().synchronize()
    assert standin.counts()["syncs"] == before + 6


def test_every_device_operation_is_one_launch(standin):
    cp = standin
    x = cp.ones((4, 3), dtype=np.float32)       # 1 (a fill)
    w = cp.zeros((3, 2), dtype=np.float32)      # 2
    standin.reset_counts()
    z = x @ w                                    # matmul
    z += 1                                       # in-place ufunc
    e = cp.exp(z)                                # ufunc
    m = e.max(axis=1, keepdims=True)             # reduction
    g = e[cp.arange(2), cp.asarray(np.array([0, 1]))]  # arange, h2d copy, gather
    v = e[1:, :]                                 # a view: no launch
    # every result but the in-place one and the view is a new buffer
    assert standin.counts() == {"launches": 7, "syncs": 0, "h2d": 1, "allocs": 6, "graph_nodes": 0}
    assert m.shape == (4, 1) and g.shape == (2,) and v.shape == (3, 2)


def test_allocations_are_256_byte_aligned(standin):
    cp = standin
    for make in (lambda: cp.empty(7, np.float32), lambda: cp.zeros((3, 5), np.float32),
                 lambda: cp.asarray(np.arange(10, dtype=np.float32)[1:]), lambda: cp.ones(3) * 2):
        assert make().data.ptr % 256 == 0
    x = cp.zeros(16, np.float32)
    assert x[1:].data.ptr % 256 == 4  # a view starts where it starts, as on a GPU


def test_device_model_events_and_runtime(standin):
    cp = standin
    assert cp.cuda.Device().attributes["MultiProcessorCount"] == 132
    assert cp.cuda.runtime.getDeviceCount() == 1
    assert b"H100" in cp.cuda.runtime.getDeviceProperties(0)["name"]
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    stop.record()
    stop.synchronize()
    # The value is a host clock here, meaningless as a GPU time: only its type is pinned.
    assert isinstance(cp.cuda.get_elapsed_time(start, stop), float)
    with pytest.raises(RuntimeError, match="not recorded"):
        cp.cuda.get_elapsed_time(cp.cuda.Event(), stop)


SOURCE = r"""
extern "C" __global__ void axpy(const float* __restrict__ x, float* __restrict__ y,
                                const long long n, const float a)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = a * x[i] + y[i];
}
"""


def test_raw_module_runs_the_exact_source_and_checks_arguments(standin):
    cp = standin
    module = cp.RawModule(code=SOURCE)
    x = cp.asarray(np.arange(1000, dtype=np.float32))
    y = cp.ones(1000, np.float32)
    standin.reset_counts()
    module.get_function("axpy")((3,), (64,), (x, y, np.int64(1000), np.float32(2.0)))
    assert standin.counts()["launches"] == 1
    np.testing.assert_array_equal(y.get(), 2 * np.arange(1000, dtype=np.float32) + 1)
    with pytest.raises(TypeError, match="must be a device array"):
        module.get_function("axpy")((1,), (32,), (np.zeros(1000, np.float32), y, np.int64(1000), np.float32(1)))
    with pytest.raises(TypeError, match="takes 4 arguments"):
        module.get_function("axpy")((1,), (32,), (x, y))
    with pytest.raises((TypeError, ValueError)):
        module.get_function("axpy")((1,), (32,), (x, cp.ones(1000, np.float64), np.int64(1000), np.float32(1)))
    with pytest.raises(AttributeError, match="no kernel 'nope'"):
        module.get_function("nope")


def test_the_fixture_installs_it_as_cupy(standin):
    """``import cupy`` in the project's code gets the stand-in (the fixture's
    monkeypatch removes it again after the test)."""
    import sys

    import cupy

    from optbench.kernels import get_backend

    assert cupy is standin and sys.modules["cupy.cuda"] is standin.cuda
    assert get_backend("cupy").xp is standin and "stand-in" in get_backend("cupy").device


def test_a_capture_records_instead_of_running_and_a_launch_replays_on_the_same_buffers(standin):
    cp = standin
    a, b = cp.asarray(np.arange(4, dtype=np.float32)), cp.ones(4, dtype=np.float32)
    out = cp.zeros(4, dtype=np.float32)
    stream = cp.cuda.Stream(non_blocking=True)
    standin.reset_counts()
    stream.begin_capture()
    assert stream.is_capturing()
    cp.add(a, b, out=out)
    out *= 2
    out[1:2] = a[3:4]
    graph = stream.end_capture()
    assert graph.nodes == 3 and standin.counts()["allocs"] == 0
    assert out.get().tolist() == [0, 0, 0, 0]  # recorded, not run
    standin.reset_counts()
    graph.launch()
    assert out.get().tolist() == [2, 3, 6, 8]
    a[...] = cp.full(4, 10, dtype=np.float32)  # new contents, the same buffer
    standin.reset_counts()
    graph.launch()
    assert out.get().tolist() == [22, 10, 22, 22]
    assert standin.counts() == {"launches": 1, "syncs": 1, "h2d": 0, "allocs": 0, "graph_nodes": 3}


@pytest.mark.parametrize("what, op", [
    ("allocation", lambda cp, x, i: x + 1),
    ("allocation", lambda cp, x, i: cp.zeros(3)),
    ("gather", lambda cp, x, i: x[i]),
    ("host read", lambda cp, x, i: float(x[0])),
    ("host-to-device", lambda cp, x, i: cp.asarray(np.ones(3, np.float32))),
    ("synchronize", lambda cp, x, i: cp.cuda.Device().synchronize()),
])
def test_what_cuda_refuses_inside_a_capture_raises_and_invalidates_it(standin, what, op):
    cp = standin
    x, index = cp.ones(4, dtype=np.float32), cp.arange(2)
    stream = cp.cuda.Stream(non_blocking=True)
    stream.begin_capture()
    with pytest.raises(standin.CaptureError, match=what):
        op(cp, x, index)
    with pytest.raises(standin.CaptureError, match="invalidated"):
        stream.end_capture()
    assert (x + 1).get().tolist() == [2, 2, 2, 2]  # and the stand-in works again after it


def test_the_null_stream_cannot_capture(standin):
    with pytest.raises(standin.CaptureError, match="null stream"):
        standin.cuda.Stream.null.begin_capture()


def test_a_captured_raw_kernel_replays_its_launch_with_the_arguments_taken_by_value(standin):
    from optbench.kernels import PopulationOptimizer

    cp = standin
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 50)).astype(np.float32)
    g = cp.asarray(rng.standard_normal((3, 50)).astype(np.float32))
    eager, graphed = (PopulationOptimizer(cp.asarray(w0), ["adam"] * 3, [{"lr": 1e-2}] * 3) for _ in range(2))
    for opt in (eager, graphed):
        opt.step(g)  # builds the kernel
        opt.begin_epoch(4)
    stream = cp.cuda.Stream(non_blocking=True)
    stream.begin_capture()
    for _ in range(2):
        graphed.step(g)
    graph = stream.end_capture()
    graph.launch()
    for _ in range(2):
        eager.step(g)
    assert graph.nodes == 2
    assert np.array_equal(graphed.params.get(), eager.params.get())
