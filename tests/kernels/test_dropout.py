"""Dropout: mask addressing, keep rates, exact edge cases, forward/backward, and the
CUDA kernels (compiled by nvcc, run on the CPU through g++, and on a GPU when there is one)."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest

from optbench.kernels import dropout
from optbench.kernels.dropout import dropout_backward, dropout_forward, keep_mask
from optbench.kernels.philox import philox4x32_10

SEED = 0x0123_4567_89AB_CDEF  # both key words non-zero
TWO64 = 1 << 64


def bits(a: np.ndarray) -> np.ndarray:
    """float32 values as their bit patterns: equality here is bit-for-bit."""
    return np.ascontiguousarray(a).view(np.uint32)


def activations(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def expected_draws(n: int, seed: int, offset: int) -> np.ndarray:
    """The documented addressing, spelled out: element h is stream position
    e = offset + h, word e & 3 of Philox((q mod 2^32, q >> 32, 0, 0), (seed
    low, seed high)) with q = e >> 2."""
    e = [offset + h for h in range(n)]
    ctr = np.array([[(x >> 2) & 0xFFFFFFFF, x >> 34, 0, 0] for x in e], dtype=np.uint32)
    key = np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32)
    words = philox4x32_10(ctr, key)
    return words[np.arange(n), [x & 3 for x in e]]


# ---------------------------------------------------------------- addressing and thresholds

def test_threshold_is_exact():
    assert dropout.threshold(0.0) == 0
    assert dropout.threshold(1.0) == 1 << 32
    assert dropout.threshold(0.5) == 1 << 31
    assert dropout.threshold(0.25) == 1 << 30
    for p in (1e-9, 0.1, 1 / 3, 0.9, 1 - 1e-12):
        t = dropout.threshold(p)
        assert abs(t / 2**32 - p) <= 2**-33  # P(drop) = t / 2^32, within 2^-33 of p


def boundary_cases(n: int, offset: int):
    """(p, keep) pairs that put the threshold exactly at, and one above, the
    draws of a few elements: draw == threshold keeps, draw < threshold drops."""
    d = dropout.draws(n, SEED, offset)
    picks = [h for h in range(n) if 0 < d[h] < 0xFFFFFFFF][:3]
    for h in picks:
        yield h, int(d[h]) / 2**32, True  # threshold(p) == draw exactly
        yield h, (int(d[h]) + 1) / 2**32, False


def test_keep_iff_draw_at_least_threshold():
    for h, p, kept in boundary_cases(64, 5):
        assert keep_mask(64, p, SEED, 5)[h] == kept
        x = np.ones(64, np.float32)
        assert (dropout_forward(x, np.empty_like(x), p, SEED, 5, "classic")[h] == 1.0) == kept


@pytest.mark.parametrize("offset", [0, 1, 2, 3, 4, 5, 1 << 32, (1 << 34) - 3, TWO64 - 37])
def test_draws_follow_the_documented_addressing(offset):
    n = 37
    assert np.array_equal(dropout.draws(n, SEED, offset), expected_draws(n, SEED, offset))


def test_key_uses_both_seed_words():
    a = dropout.draws(64, 5)
    assert not np.array_equal(a, dropout.draws(64, 5 + (1 << 32)))  # high word
    assert not np.array_equal(a, dropout.draws(64, 6))  # low word


@pytest.mark.parametrize("p", [0.01, 0.1, 0.5, 0.9, 0.99])
def test_keep_rate_within_binomial_bounds(p):
    n = 1 << 20
    keep = keep_mask(n, p, SEED, offset=123)
    q = dropout.threshold(p) / 2**32  # the exact drop probability
    # the whole mask, and each of the four Philox output words separately
    for lane, m in [("all", keep)] + [(f"word {j}", keep[(4 - 123 % 4 + j) % 4 :: 4]) for j in range(4)]:
        drops = m.size - int(np.count_nonzero(m))
        sigma = math.sqrt(m.size * q * (1 - q))
        assert abs(drops - m.size * q) <= 5 * sigma + 1, (lane, drops, m.size * q, sigma)


def test_masks_of_different_seeds_and_disjoint_offsets_are_independent():
    n, p = 1 << 18, 0.5
    a = keep_mask(n, p, SEED, 0)
    for other in (keep_mask(n, p, SEED + 1, 0), keep_mask(n, p, SEED, dropout.advance(0, n))):
        agree = int(np.count_nonzero(a == other))
        assert abs(agree - n / 2) <= 5 * math.sqrt(n / 4)  # as for independent fair coins


def test_advance_rounds_up_to_whole_blocks():
    assert [dropout.advance(8, n) for n in (0, 1, 3, 4, 5)] == [8, 12, 12, 12, 16]


# ---------------------------------------------------------------- independence of the split

@pytest.mark.parametrize("chunk,threads", [(1000, 1), (4097, 1), (1 << 16, 1), (1 << 16, 2), (12345, 3)])
def test_mask_and_output_independent_of_chunking_and_threads(chunk, threads):
    n, p, offset = 3 * dropout.CHUNK + 4103, 0.3, 6  # large enough for the threaded path
    one_shot = keep_mask(n, p, SEED, offset, chunk=n, threads=1)
    assert np.array_equal(keep_mask(n, p, SEED, offset, chunk=chunk, threads=threads), one_shot)
    x = activations(n)
    ref = dropout_forward(x, np.empty_like(x), p, SEED, offset, chunk=n, threads=1)
    got = dropout_forward(x, np.empty_like(x), p, SEED, offset, chunk=chunk, threads=threads)
    assert np.array_equal(bits(got), bits(ref))


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 999, 4096])
def test_mask_independent_of_offset_splitting(k):
    n, p = 10_000, 0.4
    whole = keep_mask(n, p, SEED, 0)
    assert np.array_equal(whole[k:], keep_mask(n - k, p, SEED, offset=k))
    x = activations(n)
    ref = dropout_forward(x, np.empty_like(x), p, SEED, 0)
    parts = np.empty_like(x)
    dropout_forward(x[:k], parts[:k], p, SEED, 0)
    dropout_forward(x[k:], parts[k:], p, SEED, k)
    assert np.array_equal(bits(parts), bits(ref))


# ---------------------------------------------------------------- exact edge cases

@pytest.mark.parametrize("mode", dropout.MODES)
def test_p_zero_keeps_everything_exactly(mode):
    x = activations(1001)
    assert keep_mask(1001, 0.0, SEED).all()
    assert np.array_equal(bits(dropout_forward(x, np.empty_like(x), 0.0, SEED, 3, mode)), bits(x))
    assert np.array_equal(bits(dropout_backward(x, np.empty_like(x), 0.0, SEED, 3, mode)), bits(x))


@pytest.mark.parametrize("mode", dropout.MODES)
def test_p_one_drops_everything_exactly(mode):
    x = activations(1001)
    assert not keep_mask(1001, 1.0, SEED).any()
    assert dropout.training_scale(1.0, mode) == 0.0  # no Inf scale
    for fn in (dropout_forward, dropout_backward):
        out = fn(x, np.full_like(x, 7.0), 1.0, SEED, 3, mode)
        assert np.all(out == 0.0)


def test_tiny_p_rounds_to_an_exact_threshold():
    # p below 2^-33 rounds to threshold 0: nothing dropped, scale rounds to 1.
    assert keep_mask(4096, 1e-11, SEED).all()
    # p above 1 - 2^-33 rounds to 2^32: everything dropped.
    assert not keep_mask(4096, 1 - 1e-11, SEED).any()


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # Inf * 0
def test_dropped_nan_stays_nan_and_finite_values_give_zero():
    x = np.array([np.nan, np.inf, -1.0, 2.0] * 256, dtype=np.float32)
    out = dropout_forward(x, np.empty_like(x), 0.5, SEED)
    keep = keep_mask(x.size, 0.5, SEED)
    assert np.isnan(out[0::4]).all()  # NaN * anything
    assert np.all(np.isnan(out[1::4]) == ~keep[1::4])  # Inf * 0 is NaN, Inf * 2 is Inf
    assert np.all((out[2::4] == 0) == ~keep[2::4])


# ---------------------------------------------------------------- forward, backward, inference

@pytest.mark.parametrize("mode,p", [("inverted", 0.2), ("inverted", 0.7), ("classic", 0.2), ("classic", 0.7)])
def test_forward_backward_consistency(mode, p):
    n, offset = 5003, 11
    x = activations(n)
    scale = np.float32(1 / (1 - p)) if mode == "inverted" else np.float32(1)
    keep = keep_mask(n, p, SEED, offset)
    back_ones = dropout_backward(np.ones(n, np.float32), np.empty(n, np.float32), p, SEED, offset, mode)
    assert np.array_equal(bits(back_ones), bits(np.where(keep, scale, np.float32(0)).astype(np.float32)))
    fwd = dropout_forward(x, np.empty_like(x), p, SEED, offset, mode)
    assert np.array_equal(bits(fwd), bits(x * back_ones))
    assert np.array_equal(bits(fwd[keep]), bits(x[keep] * scale))
    # backward of g is g * xi * scale: the forward applied to g
    g = activations(n, seed=1)
    assert np.array_equal(bits(dropout_backward(g, np.empty_like(g), p, SEED, offset, mode)),
                          bits(dropout_forward(g, np.empty_like(g), p, SEED, offset, mode)))


def test_inverted_dropout_preserves_the_mean():
    n, p = 1 << 20, 0.6
    x = np.ones(n, np.float32)
    out = dropout_forward(x, np.empty_like(x), p, SEED)
    q = dropout.threshold(p) / 2**32
    sigma = math.sqrt(q * (1 - q) / n) / (1 - p)  # std of the mean of xi / (1 - p)
    assert abs(out.mean(dtype=np.float64) - 1.0) <= 5 * sigma


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_inference_modes(p):
    x = activations(777)
    inv = dropout_forward(x, np.empty_like(x), p, SEED, mode="inverted", training=False)
    assert np.array_equal(bits(inv), bits(x))  # no knowledge of p needed
    cla = dropout_forward(x, np.empty_like(x), p, SEED, mode="classic", training=False)
    assert np.array_equal(bits(cla), bits(x * np.float32(1 - p)))
    g = activations(777, seed=2)
    assert np.array_equal(bits(dropout_backward(g, np.empty_like(g), p, SEED, mode="classic",
                                                training=False)), bits(g * np.float32(1 - p)))


def test_any_shape_and_in_place():
    x = activations(6 * 7 * 5).reshape(6, 7, 5)
    ref = dropout_forward(x, np.empty_like(x), 0.5, SEED, 4)
    flat = dropout_forward(x.ravel(), np.empty(x.size, np.float32), 0.5, SEED, 4)
    assert ref.shape == (6, 7, 5)
    assert np.array_equal(bits(ref.ravel()), bits(flat))
    y = x.copy()
    assert dropout_forward(y, y, 0.5, SEED, 4) is y
    assert np.array_equal(bits(y), bits(ref))


def test_empty_arrays():
    x = np.empty(0, np.float32)
    assert dropout_forward(x, np.empty_like(x), 0.5, SEED).size == 0
    assert keep_mask(0, 0.5, SEED).size == 0


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), float("inf")])
def test_p_outside_unit_interval_is_an_error(p):
    x = activations(8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dropout_forward(x, np.empty_like(x), p, SEED)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        keep_mask(8, p, SEED)


def test_bad_arguments_are_clear_errors():
    x = activations(8)
    with pytest.raises(TypeError, match="real number"):
        dropout_forward(x, np.empty_like(x), "0.5", SEED)
    with pytest.raises(TypeError, match="float32"):
        dropout_forward(x.astype(np.float64), np.empty(8), 0.5, SEED)
    with pytest.raises(TypeError, match="float32"):
        dropout_forward(x, np.empty(8, np.float16), 0.5, SEED)
    with pytest.raises(ValueError, match="shape"):
        dropout_forward(x, np.empty(9, np.float32), 0.5, SEED)
    with pytest.raises(ValueError, match="inverted, classic"):
        dropout_forward(x, np.empty_like(x), 0.5, SEED, mode="gaussian")
    with pytest.raises(ValueError, match="contiguous"):
        dropout_forward(activations(16)[::2], np.empty(8, np.float32), 0.5, SEED)
    with pytest.raises(ValueError, match="overlaps"):
        buf = activations(9)
        dropout_forward(buf[:8], buf[1:], 0.5, SEED)
    with pytest.raises(TypeError, match="numpy or cupy"):
        dropout_forward(list(x), np.empty_like(x), 0.5, SEED)
    with pytest.raises(TypeError, match="training"):
        dropout_backward(x, np.empty_like(x), 0.5, SEED, 0, "inverted", "yes")
    for seed in (-1, TWO64):
        with pytest.raises(ValueError, match="seed"):
            dropout_forward(x, np.empty_like(x), 0.5, seed)
    with pytest.raises(TypeError, match="seed"):
        dropout_forward(x, np.empty_like(x), 0.5, 1.5)
    with pytest.raises(ValueError, match="offset"):
        dropout_forward(x, np.empty_like(x), 0.5, SEED, -4)
    with pytest.raises(ValueError, match="2\\^64"):
        dropout_forward(x, np.empty_like(x), 0.5, SEED, TWO64 - 4)
    with pytest.raises(ValueError, match="backend"):
        dropout.draws(8, SEED, backend="jax")


# ---------------------------------------------------------------- the CUDA source

def test_cuda_source_is_one_self_contained_module():
    src = dropout.cuda_source()
    assert "#include" not in src
    for name in dropout.KERNELS:
        assert f'extern "C" __global__ void {name}(' in src
    assert "optbench_philox4x32_10(" in src


def test_launch_geometry():
    assert dropout.launch_geometry(1, 0, 132) == (1, 256)
    assert dropout.launch_geometry(4 * 256 * 3, 0, 132) == (3, 256)
    assert dropout.launch_geometry(4 * 256 * 3, 1, 132) == (4, 256)  # one block more when misaligned
    assert dropout.launch_geometry(1 << 30, 0, 132) == (132 * 8, 256)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cuda_source_compiles_with_nvcc(arch, tmp_path):
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not found: cannot compile the CUDA source")
    src = tmp_path / "dropout.cu"
    src.write_text(dropout.cuda_source())
    res = subprocess.run(["nvcc", "-cubin", f"-arch={arch}", "-Xptxas", "-v", str(src),
                          "-o", str(tmp_path / "dropout.cubin")], capture_output=True, text=True)
    print(f"nvcc -cubin -arch={arch} -Xptxas -v (ptxas report):\n{res.stdout}{res.stderr}")
    assert res.returncode == 0, res.stderr
    for name in dropout.KERNELS:
        assert f"Compiling entry function '{name}'" in res.stderr
    # the block's draws stay in registers: no local-memory array, no spills
    assert res.stderr.count("0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads") == len(dropout.KERNELS)


# The kernels share nothing between threads, so running every (block, thread)
# one after another on the CPU computes what the GPU computes: cuda_host.py
# builds the exact source string with g++ behind its shim and launches it.

TRAIN_SPEC = [("ptr", "x"), ("ptr", "y"), ("i64", "n"), ("u64", "offset"), ("u32", "key0"),
              ("u32", "key1"), ("u64", "threshold"), ("f32", "scale")]
DRAWS_SPEC = [("u32*", "out"), ("i64", "n"), ("u64", "offset"), ("u32", "key0"), ("u32", "key1")]
#: A tiny GPU (the block cap binds), a small one, an H100; then grids that
#: leave most of the work to the grid-stride loops.
SM_COUNTS = (1, 4, 132)
TINY_GRIDS = ((1, 1), (3, 7))
BACK = 8  # guard elements after the n the kernel is given


@pytest.fixture(scope="module")
def host_kernels(host_compiler):
    return host_compiler.module(dropout.cuda_source(), {dropout.VEC4_KERNEL: TRAIN_SPEC,
                                               dropout.SCALAR_KERNEL: TRAIN_SPEC,
                                               dropout.DRAWS_KERNEL: DRAWS_SPEC})


def geometries(n: int, offset: int) -> list[tuple[int, int]]:
    return sorted({dropout.launch_geometry(n, offset, sm) for sm in SM_COUNTS} | set(TINY_GRIDS))


def padded(values: np.ndarray, misalign: int = 0, fill: float = -777.0):
    """(buffer, view): ``values`` copied ``misalign`` floats past a 16-byte
    boundary inside a buffer of ``fill`` guards (BACK of them after the end)."""
    raw = np.empty(values.size + 4 + BACK + 4, np.float32)
    start = (-raw.ctypes.data % 16) // 4 + misalign
    raw[:] = fill
    view = raw[start : start + values.size]
    view[:] = values
    return raw, view


def host_train(module, x, p, mode, offset, grid, force_scalar=False, in_place=False):
    """Run the training kernel CuPy would choose for (x, out, offset) on the
    CPU; returns out, after checking the kernel wrote nothing outside it."""
    # out's guards differ from x's, so a stray out[n] = x[n] * scale shows
    raw, y = (None, x) if in_place else padded(np.zeros(x.size, np.float32),
                                               (x.ctypes.data % 16) // 4, fill=12345.0)
    vec = dropout.use_vec4(x.ctypes.data, y.ctypes.data, offset) and not force_scalar
    kernel = module.get_function(dropout.VEC4_KERNEL if vec else dropout.SCALAR_KERNEL)
    guard = None if raw is None else raw.copy()
    kernel((grid[0],), (grid[1],), (x, y) + dropout.scalar_args(x.size, offset, p, SEED, mode))
    if raw is not None:  # only [0, n) of the output may change
        lo = (y.ctypes.data - raw.ctypes.data) // 4
        outside = np.ones(raw.size, bool)
        outside[lo : lo + x.size] = False
        assert np.array_equal(bits(raw[outside]), bits(guard[outside]))
    return y, vec


CASES = [(n, offset) for n in (1, 3, 4, 5, 8, 1027, 5000) for offset in (0, 1, 2, 3, 4)] + [
    (0, 0), (0, 3), (4099, (1 << 34) + 2), (4096, TWO64 - 4096), (4093, TWO64 - 4093)]


@pytest.mark.parametrize("n,offset", CASES)
def test_host_run_of_cuda_kernels_matches_numpy(host_kernels, n, offset):
    p, mode = 0.35, "inverted"
    _, x = padded(activations(n, seed=n))
    ref = dropout_forward(x, np.empty_like(x), p, SEED, offset, mode)
    for grid in geometries(n, offset):
        y, vec = host_train(host_kernels, x, p, mode, offset, grid)
        assert vec == (offset % 4 == 0) or n == 0  # an empty view points anywhere
        assert np.array_equal(bits(y), bits(ref)), (grid, vec)
        # the scalar kernel on a misaligned view (what a mid-buffer slice gets)
        _, xm = padded(x, misalign=1)
        y, vec = host_train(host_kernels, xm, p, mode, offset, grid)
        assert (not vec or n == 0) and np.array_equal(bits(y), bits(ref)), grid
        # the raw draws
        raw = np.zeros(n + BACK, np.uint32)
        host_kernels.get_function(dropout.DRAWS_KERNEL)(
            (grid[0],), (grid[1],), (raw, np.int64(n), np.uint64(offset),
                                     np.uint32(SEED & 0xFFFFFFFF), np.uint32(SEED >> 32)))
        assert np.array_equal(raw[:n], dropout.draws(n, SEED, offset)) and not raw[n:].any()


@pytest.mark.parametrize("p", [0.0, 0.001, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("mode", dropout.MODES)
def test_host_kernels_at_any_p_and_mode(host_kernels, p, mode):
    # Python short-cuts p = 0 and p = 1 before launching; the kernels must
    # still be right when given threshold 0 or 2^32.
    _, x = padded(activations(2051))
    ref = dropout_forward(x, np.empty_like(x), p, SEED, 8, mode)
    for force_scalar in (False, True):
        y, _ = host_train(host_kernels, x, p, mode, 8, (4, 64), force_scalar=force_scalar)
        assert np.array_equal(bits(y), bits(ref))


def test_host_kernels_keep_iff_draw_at_least_threshold(host_kernels):
    _, x = padded(np.ones(64, np.float32))
    for h, p, kept in boundary_cases(64, 8):
        for force_scalar in (False, True):
            y, _ = host_train(host_kernels, x, p, "classic", 8, (1, 4), force_scalar=force_scalar)
            assert (y[h] == 1.0) == kept


@pytest.mark.parametrize("offset", [0, 3])
def test_host_kernels_in_place(host_kernels, offset):
    _, x = padded(activations(1030))
    ref = dropout_forward(x, np.empty_like(x), 0.5, SEED, offset)
    host_train(host_kernels, x, 0.5, "inverted", offset, (2, 32), in_place=True)
    assert np.array_equal(bits(x), bits(ref))


# ---------------------------------------------------------------- on a GPU

@pytest.mark.gpu
@pytest.mark.parametrize("n,offset", [(1, 0), (5, 3), (1 << 20, 0), ((1 << 20) + 3, 0),
                                      ((1 << 20) + 1, 6), (4096, TWO64 - 4096)])
def test_gpu_draws_and_masks_match_numpy(cp, n, offset):
    assert np.array_equal(cp.asnumpy(dropout.draws(n, SEED, offset, backend="cupy")),
                          dropout.draws(n, SEED, offset))
    for p in (0.0, 0.1, 0.5, 1.0):
        assert np.array_equal(cp.asnumpy(keep_mask(n, p, SEED, offset, backend="cupy")),
                              keep_mask(n, p, SEED, offset))


@pytest.mark.gpu
@pytest.mark.parametrize("mode", dropout.MODES)
@pytest.mark.parametrize("n,offset,misalign", [((1 << 20) + 3, 0, 0), ((1 << 20) + 3, 0, 1),
                                               (100_003, 5, 0), (7, 2, 3)])
def test_gpu_forward_backward_match_numpy(cp, mode, n, offset, misalign):
    x = activations(n + misalign)
    dx = cp.asarray(x)[misalign:]  # a misaligned view takes the scalar kernel
    x = x[misalign:]
    for p in (0.0, 0.25, 0.9, 1.0):
        for training in (True, False):
            ref = dropout_forward(x, np.empty_like(x), p, SEED, offset, mode, training)
            got = dropout_forward(dx, cp.empty_like(dx), p, SEED, offset, mode, training)
            assert np.array_equal(bits(cp.asnumpy(got)), bits(ref)), (p, training)
            ref = dropout_backward(x, np.empty_like(x), p, SEED, offset, mode, training)
            got = dropout_backward(dx, cp.empty_like(dx), p, SEED, offset, mode, training)
            assert np.array_equal(bits(cp.asnumpy(got)), bits(ref)), (p, training)


@pytest.mark.gpu
def test_gpu_in_place_and_mixed_backends(cp):
    x = activations(4099)
    ref = dropout_forward(x, np.empty_like(x), 0.5, SEED, 4)
    dx = cp.asarray(x)
    assert dropout_forward(dx, dx, 0.5, SEED, 4) is dx
    assert np.array_equal(bits(cp.asnumpy(dx)), bits(ref))
    with pytest.raises(TypeError, match="numpy array"):
        dropout_forward(dx, np.empty_like(x), 0.5, SEED)
