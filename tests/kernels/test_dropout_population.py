"""Population dropout: P members in one (P, ...) array, each member bit for bit
its own single run (its seed, the shared p, mode and offset) -- on NumPy, on
CuPy (the stand-in here, a GPU elsewhere), and in the CUDA population kernels
run on the CPU; one launch and no host read per call whatever P."""

from __future__ import annotations

import re

import numpy as np
import pytest

from optbench.kernels import dropout
from optbench.kernels.backend import array_kind
from optbench.kernels.dropout import (dropout_backward, dropout_backward_population, dropout_forward,
                             dropout_forward_population, member_keys)

SEED = 0x0123_4567_89AB_CDEF
TWO64 = 1 << 64
P_VALUES = (1, 3, 17)
#: Member shapes: one element (x of shape (P,)), tails 1 and 3 after whole
#: float4 groups, a multiple of 4 (the vec4 kernel), several axes, and empty.
MEMBER_SHAPES = ((), (5,), (8,), (3, 7), (1031,), (0,))
#: Block-aligned, mid-block, and one near the end of the stream (block-aligned).
OFFSETS = (0, 1, 6, TWO64 - 2048)
PS = (0.0, 0.3, 0.5, 1.0)


def bits(a: np.ndarray) -> np.ndarray:
    """float32 values as their bit patterns: equality here is bit-for-bit."""
    return np.ascontiguousarray(a).view(np.uint32)


def seeds_for(members: int) -> list[int]:
    """Distinct seeds with both key words exercised (0, all ones, only the high
    word), plus a repeat of the first (members may share a seed)."""
    edge = [SEED, 0, TWO64 - 1, 1 << 32, 0xFFFFFFFF, SEED]
    return (edge + [(SEED * (3 + 2 * m)) % TWO64 for m in range(members)])[:members]


def activations(shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """numpy, or cupy (the real one on a GPU machine, else the stand-in)."""
    return np if request.param == "numpy" else request.getfixturevalue("cp")


def to_host(a) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else a.get()


def single_runs(fn, xp, x, p, seeds, offset, mode, training) -> np.ndarray:
    """Each member through the single-run function (a fresh array each), stacked."""
    rows = [to_host(fn(x[m, ...], xp.empty(x.shape[1:], dtype=np.float32), p, seed, offset, mode, training))
            for m, seed in enumerate(seeds)]
    return np.stack(rows) if rows else np.empty(x.shape, np.float32)


# ---------------------------------------------------------------- keys

def test_member_keys_are_the_seed_words(xp):
    seeds = seeds_for(17)
    keys = member_keys(seeds, xp)
    assert keys.dtype == np.uint32 and keys.shape == (17, 2)
    assert array_kind(keys) == ("numpy" if xp is np else "cupy")
    assert to_host(keys).tolist() == [list(dropout.seed_key(s)) for s in seeds]
    assert member_keys([], xp).shape == (0, 2)
    assert to_host(member_keys(np.array([5, 1 << 40], np.uint64), xp)).tolist() == [[5, 0], [0, 256]]


# ---------------------------------------------------------------- each member is its single run

@pytest.mark.parametrize("mode", dropout.MODES)
@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("shape", MEMBER_SHAPES)
@pytest.mark.parametrize("members", P_VALUES)
def test_members_equal_their_single_runs(xp, members, shape, offset, mode):
    seeds = seeds_for(members)
    keys = member_keys(seeds, xp)
    x_host = activations((members, *shape), seed=members)
    g_host = activations((members, *shape), seed=members + 100)
    x, g = xp.asarray(x_host), xp.asarray(g_host)
    for p in PS:
        for training in (True, False):
            case = (p, training)
            got = dropout_forward_population(x, xp.empty_like(x), p, keys, offset, mode, training)
            assert got.shape == x.shape
            want = single_runs(dropout_forward, xp, x, p, seeds, offset, mode, training)
            assert np.array_equal(bits(to_host(got)), bits(want)), case
            got = dropout_backward_population(g, xp.empty_like(g), p, keys, offset, mode, training)
            want = single_runs(dropout_backward, xp, g, p, seeds, offset, mode, training)
            assert np.array_equal(bits(to_host(got)), bits(want)), case


@pytest.mark.parametrize("members", P_VALUES)
def test_in_place(xp, members):
    seeds, offset = seeds_for(members), 6
    keys = member_keys(seeds, xp)
    x = xp.asarray(activations((members, 4, 33), seed=1))
    want = single_runs(dropout_forward, xp, x, 0.5, seeds, offset, "inverted", True)
    assert dropout_forward_population(x, x, 0.5, keys, offset) is x
    assert np.array_equal(bits(to_host(x)), bits(want))
    g = xp.asarray(activations((members, 4, 33), seed=2))
    want = single_runs(dropout_backward, xp, g, 0.3, seeds, offset, "classic", True)
    assert dropout_backward_population(g, g, 0.3, keys, offset, "classic") is g
    assert np.array_equal(bits(to_host(g)), bits(want))


def test_members_of_a_population_draw_independent_masks():
    # Sanity beside the bit-identity: distinct seeds give distinct masks, and
    # a shared seed the same mask.
    seeds = [7, 8, 7]
    out = dropout_forward_population(np.ones((3, 4096), np.float32), np.empty((3, 4096), np.float32),
                                     0.5, member_keys(seeds))
    assert np.array_equal(out[0], out[2]) and not np.array_equal(out[0], out[1])


@pytest.mark.parametrize("members,n,chunks", [
    (17, 1, (1, 2, 5, 64)),          # many members per tile; tiles of one member's block
    (17, 5, (1, 5, 7, 64, 1000)),    # tiles that split members mid-block
    (17, 1031, (64, 1000, 4097)),    # a member across several tiles, and tiles of several members
    (40, dropout.CHUNK // 3, (dropout.CHUNK,)),   # uneven member groups
    (3, 2 * dropout.CHUNK + 5, (dropout.CHUNK,)),  # members longer than a chunk
])
def test_numpy_tiling_never_changes_the_result(members, n, chunks):
    seeds = seeds_for(members)
    keys = member_keys(seeds)
    x = activations((members, n), seed=n)
    for offset in (0, 3):
        want = single_runs(dropout_forward, np, x, 0.4, seeds, offset, "inverted", True)
        for chunk in chunks:
            got = dropout_forward_population(x, np.empty_like(x), 0.4, keys, offset, chunk=chunk)
            assert np.array_equal(bits(got), bits(want)), (offset, chunk)


# ---------------------------------------------------------------- the launch budget

@pytest.mark.parametrize("cap", (dropout.MAX_GRID_Y, 2))
@pytest.mark.parametrize("members", P_VALUES)
def test_one_launch_and_no_host_read_whatever_p(standin, monkeypatch, members, cap):
    monkeypatch.setattr(dropout.device, "MAX_GRID_Y", cap)  # read where the grid is sized
    seeds = seeds_for(members)
    keys = member_keys(seeds, standin)
    x_host = activations((members, 1027), seed=3)
    x = standin.asarray(x_host)
    out = standin.empty_like(x)
    offset = 4
    assert dropout.population_geometry(members, 1027, offset, 132)[0][1] == min(members, cap)
    for fn in (dropout_forward_population, dropout_backward_population):
        for p, training in ((0.3, True), (0.0, True), (1.0, True), (0.3, False)):
            standin.reset_counts()
            fn(x, out, p, keys, offset, "classic", training)
            assert standin.counts() == {"launches": 1, "syncs": 0, "h2d": 0, "allocs": 0, "graph_nodes": 0}, \
                (fn.__name__, p, training)
    dropout_forward_population(x, out, 0.3, keys, offset)  # the y-loop when P > cap
    want = single_runs(dropout_forward, np, x_host, 0.3, seeds, offset, "inverted", True)
    assert np.array_equal(bits(out.get()), bits(want))


def test_population_geometry():
    # One y row per member up to the cap; x shrinks so the grid stays about
    # BLOCKS_PER_SM blocks per SM; never fewer than one block.
    assert dropout.population_geometry(1, 1 << 30, 0, 132) == ((132 * 8, 1), 256)
    assert dropout.population_geometry(17, 1 << 30, 0, 132) == ((63, 17), 256)
    assert dropout.population_geometry(3, 4 * 256 * 2, 0, 132) == ((2, 3), 256)
    assert dropout.population_geometry(100_000, 8, 0, 132) == ((1, dropout.MAX_GRID_Y), 256)
    assert dropout.population_geometry(0, 0, 0, 132) == ((1, 1), 256)


# ---------------------------------------------------------------- the CUDA kernels on the host

POP_SPEC = [("f32*", "x"), ("f32*", "y"), ("u32*", "keys"), ("i64", "members"), ("i64", "n"),
            ("i64", "ld"), ("u64", "offset"), ("u64", "threshold"), ("f32", "scale")]
FRONT = {"vec4": 4, "scalar": 1}  # floats before member 0: aligned, or not
GAP = {"vec4": 4, "scalar": 3}    # guard floats between member rows (ld = n rounded up + GAP)
BACK = 8


@pytest.fixture(scope="module")
def host_kernels(host_compiler):
    return host_compiler.module(dropout.cuda_source(), {dropout.POP_VEC4_KERNEL: POP_SPEC,
                                               dropout.POP_SCALAR_KERNEL: POP_SPEC})


def host_grids(members: int, n: int, offset: int) -> list[tuple[int, int]]:
    """The CuPy path's grids for a tiny GPU, a small one and an H100, the same
    with y capped below P, and tiny grids that leave most of the work to the
    grid-stride loops in x and y."""
    grids = {(1, 1), (3, 2), (2, 5)}
    for cap in (dropout.MAX_GRID_Y, 2):
        for sm in (1, 4, 132):
            grid = dropout.population_geometry(members, n, offset, sm)[0]
            grids.add((grid[0], min(grid[1], cap)))
    return sorted(grids)


def host_population(module, kind, x_rows, keys, p, mode, offset, grid):
    """Run a population kernel on members laid out ld apart (guards between and
    around them); returns the members' outputs after checking that nothing but
    their elements changed and x was not written."""
    members, n = x_rows.shape
    ld = -(-n // 4) * 4 + GAP[kind]
    front = FRONT[kind]
    raw = np.empty(16 + front + members * ld + BACK, np.float32)
    start = (-raw.ctypes.data % 16) // 4 + front
    x_buf, y_buf = np.full_like(raw, -777.0), np.full_like(raw, 12345.0)
    rows = (start + np.arange(members)[:, None] * ld + np.arange(n)).reshape(-1)
    x_buf[rows] = x_rows.reshape(-1)
    x_before, y_before = x_buf.copy(), y_buf.copy()
    assert dropout.use_vec4(x_buf[start:].ctypes.data, y_buf[start:].ctypes.data, offset, ld) == \
        (kind == "vec4" and offset % 4 == 0)
    name = dropout.POP_VEC4_KERNEL if kind == "vec4" else dropout.POP_SCALAR_KERNEL
    module.get_function(name)(grid, (32,), (x_buf[start:], y_buf[start:], keys)
                              + dropout.population_args(members, n, ld, offset, p, mode))
    assert np.array_equal(bits(x_buf), bits(x_before))
    outside = np.ones(raw.size, bool)
    outside[rows] = False
    assert np.array_equal(bits(y_buf[outside]), bits(y_before[outside])), "written outside a member's n"
    return y_buf[rows].reshape(members, n)


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("n", (0, 1, 3, 4, 5, 8, 1027))
@pytest.mark.parametrize("members", P_VALUES)
def test_host_population_kernels_match_single_runs(host_kernels, members, n, offset):
    seeds = seeds_for(members)
    keys = member_keys(seeds)
    x = activations((members, n), seed=n)
    want = single_runs(dropout_forward, np, x, 0.35, seeds, offset, "inverted", True)
    for kind in ("vec4", "scalar"):
        if kind == "vec4" and offset % 4:
            continue  # the float4 kernel's precondition (use_vec4)
        for grid in host_grids(members, n, offset):
            got = host_population(host_kernels, kind, x, keys, 0.35, "inverted", offset, grid)
            assert np.array_equal(bits(got), bits(want)), (kind, grid)


@pytest.mark.parametrize("p", (0.0, 0.001, 0.5, 0.999, 1.0))
@pytest.mark.parametrize("mode", dropout.MODES)
def test_host_population_kernels_at_any_p_and_mode(host_kernels, p, mode):
    # Python short-cuts p = 0 and p = 1 before launching; the kernels must
    # still be right when given threshold 0 or 2^32.
    seeds = seeds_for(3)
    x = activations((3, 2051), seed=5)
    want = single_runs(dropout_forward, np, x, p, seeds, 8, mode, True)
    for kind in ("vec4", "scalar"):
        got = host_population(host_kernels, kind, x, member_keys(seeds), p, mode, 8, (4, 2))
        assert np.array_equal(bits(got), bits(want)), kind


def body(kernel: str) -> str:
    """A kernel's body in the CUDA source."""
    return re.search(r"void %s\((.*?)\n}" % kernel, dropout.cuda_source(), re.S).group(1)


@pytest.mark.parametrize("single,population,loop", [
    (dropout.VEC4_KERNEL, dropout.POP_VEC4_KERNEL, "optbench_dropout_vec4_loop"),
    (dropout.SCALAR_KERNEL, dropout.POP_SCALAR_KERNEL, "optbench_dropout_scalar_loop")])
def test_population_kernels_run_the_single_run_loops(single, population, loop):
    # The masks are the same code: the single-run kernel and, per member, the
    # population kernel call one loop function, and nothing else.
    for kernel in (single, population):
        calls = re.findall(r"\b(optbench_\w+)\(", body(kernel))
        assert calls == [loop], (kernel, calls)


# ---------------------------------------------------------------- errors

def test_bad_arguments_are_clear_errors():
    keys = member_keys(seeds_for(3))
    x = activations((3, 8))
    y = np.empty_like(x)
    with pytest.raises(ValueError, match="shape"):
        dropout_forward_population(x, np.empty((3, 9), np.float32), 0.5, keys)
    with pytest.raises(ValueError, match=r"3 members.*\(3, 2\)"):
        dropout_forward_population(x, y, 0.5, member_keys(seeds_for(2)))
    with pytest.raises(ValueError, match=r"4 members"):
        dropout_forward_population(activations((4, 2)), np.empty((4, 2), np.float32), 0.5, keys)
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        dropout_forward_population(x, y, 0.5, np.zeros((3, 3), np.uint32))
    with pytest.raises(TypeError, match="uint32"):
        dropout_forward_population(x, y, 0.5, keys.astype(np.int64))
    with pytest.raises(TypeError, match="member_keys"):
        dropout_forward_population(x, y, 0.5, keys.tolist())
    with pytest.raises(ValueError, match="keys.*C-contiguous"):
        dropout_forward_population(x, y, 0.5, np.asfortranarray(keys))
    with pytest.raises(ValueError, match="member axis"):
        dropout_forward_population(x[0, 0, ...], y[0, 0, ...], 0.5, keys)
    with pytest.raises(TypeError, match="float32"):
        dropout_forward_population(x.astype(np.float64), y, 0.5, keys)
    with pytest.raises(ValueError, match="contiguous"):
        dropout_forward_population(activations((3, 16))[:, ::2], y, 0.5, keys)
    with pytest.raises(ValueError, match="overlaps"):
        buf = activations(25)
        dropout_forward_population(buf[:24].reshape(3, 8), buf[1:].reshape(3, 8), 0.5, keys)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dropout_forward_population(x, y, 1.5, keys)
    with pytest.raises(ValueError, match="inverted, classic"):
        dropout_backward_population(x, y, 0.5, keys, mode="gaussian")
    with pytest.raises(TypeError, match="training"):
        dropout_backward_population(x, y, 0.5, keys, 0, "inverted", "yes")
    with pytest.raises(ValueError, match="offset"):
        dropout_forward_population(x, y, 0.5, keys, -4)
    with pytest.raises(ValueError, match=r"2\^64"):
        dropout_forward_population(x, y, 0.5, keys, TWO64 - 4)  # 8 positions per member
    with pytest.raises(ValueError, match="chunk"):
        dropout_forward_population(x, y, 0.5, keys, chunk=0)
    with pytest.raises(TypeError, match="sequence"):
        member_keys(5)
    for seed in (-1, TWO64):
        with pytest.raises(ValueError, match="seed"):
            member_keys([1, seed])
    with pytest.raises(TypeError, match="seed"):
        member_keys([1.5])


@pytest.mark.gpu
def test_mixed_backends_are_clear_errors(cp):
    x = cp.asarray(activations((3, 8)))
    with pytest.raises(TypeError, match="'keys' is a numpy array"):
        dropout_forward_population(x, cp.empty_like(x), 0.5, member_keys(seeds_for(3)))
    with pytest.raises(TypeError, match="numpy array"):
        dropout_forward_population(x, np.empty((3, 8), np.float32), 0.5, member_keys(seeds_for(3), cp))
    with pytest.raises(TypeError, match="'keys' is a cupy array"):
        dropout_forward_population(activations((3, 8)), np.empty((3, 8), np.float32), 0.5,
                                   member_keys(seeds_for(3), cp))
