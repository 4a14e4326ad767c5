"""The generated CUDA kernels, run on the CPU from their exact source (issue 7).

``optbench.kernels.codegen.cuda_kernel.cuda_source(rule)`` is built with the
host C++ compiler (:mod:`optbench.kernels.testing.cuda_host`) and every
kernel is launched for one run (a population of one member; populations:
``test_population_kernels.py``), thread by thread, over the geometries the
CuPy path uses and over tiny grids that make every thread loop many times
and leave a tail. After each of several steps the parameters
and every state buffer must match the float64 reference and the NumPy path,
and nothing outside [0, n) may change. So the GPU code is checked on every CI
run, with no GPU.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from rule_sets import ELEMENTWISE  # tests/ is on sys.path

from optbench.kernels import RULES, Optimizer, reference
from optbench.kernels.codegen.cuda_kernel import cuda_source, kernel_names, population_geometry
from optbench.kernels.codegen.numpy_kernel import NumpyKernel
from optbench.kernels.population import scalar_table
from optbench.kernels.testing.cuda_host import BACK, FRONT, aligned_random, rule_spec
from optbench.kernels.transforms import masked

#: Every tail length 0-3, both sides of the 1024 boundary, and sizes large
#: enough that the CuPy geometries' grid-stride loops go round more than once.
SIZES = (0, 1, 2, 3, 4, 5, 7, 13, 1023, 1024, 1025, 4099, 10007)
#: The L2 forms: none, coupled (added to the gradient), decoupled (decay).
FORMS = {"none": {}, "l2": {"l2": 0.1}, "wd": {"wd": 0.1}}
STEPS = 4
#: A tiny GPU (so the block cap binds), a small one, an H100.
SM_COUNTS = (1, 4, 132)
#: (blocks, threads) that leave most of the work to the grid-stride loop.
TINY_GRIDS = ((1, 1), (1, 32), (3, 7))
RTOL = 4e-6
#: The active flag a training loop passes: 1 updates, 0 leaves every buffer alone.
ON, OFF = np.ones(1, np.int32), np.zeros(1, np.int32)


@pytest.fixture
def host(host_compiler):
    return host_compiler


def geometries(n: int, vec: bool) -> list[tuple[int, int]]:
    """(blocks, threads) of one member's launch: the CuPy path's, and tiny ones."""
    return sorted({(population_geometry(1, n, vec, sm)[0][0], population_geometry(1, n, vec, sm)[1])
                   for sm in SM_COUNTS} | set(TINY_GRIDS))


def launch(kernel, grid, views, flag, scalars, n):
    """One run's update: the kernel over one member (row stride n rounded to 4)."""
    table = np.array([[scalars[s] for s in kernel.rule.scalar_names]], dtype=np.float32)
    kernel((grid[0], 1), (grid[1],), (*views, flag, table, 1, n, -(-n // 4) * 4))


def rule_kernel(host, rule, kind):
    kernel = host.module(cuda_source(rule), dict.fromkeys(kernel_names(rule), rule_spec(rule))).get_function(
        kernel_names(rule)[0 if kind == "vec4" else 1])
    kernel.rule = rule
    return kernel


def assert_close(what: str, got: np.ndarray, want: np.ndarray) -> None:
    """|got - want| <= RTOL (|want| + rms(want)) elementwise (NaN fails)."""
    if want.size == 0:
        return
    want = want.astype(np.float64)
    tol = RTOL * (np.abs(want) + np.sqrt(np.mean(want**2)))
    bad = ~(np.abs(got.astype(np.float64) - want) <= tol)
    if bad.any():
        i = int(np.argmax(bad))
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {want.size} elements off; first [{i}]: "
            f"got {float(got[i])!r}, want {float(want[i])!r} (tol {float(tol[i]):.3g})"
        )


def expected_steps(rule, hp, w0, grads):
    """Per step, the float64 reference's and the NumPy path's buffers."""
    w, state = w0.astype(np.float64), rule.start_state(w0.astype(np.float64))
    opt = Optimizer(rule, w0.copy(), **hp)
    steps = []
    for t, g in enumerate(grads, start=1):
        # the reference's state may hold more than the rule's (its carried scalars)
        w, state = reference.step(rule.name, w, g, state, opt.hyper, t)
        ref = {"w": w, **state}
        opt.step(g.copy())
        steps.append((ref, {"w": opt.params.copy(), **{s: v.copy() for s, v in opt.state.items()}}))
    return steps


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", ("vec4", "scalar"))
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_kernel_matches_reference_and_numpy(host, name, kind, form, n):
    rule = RULES[name]
    kernel = rule_kernel(host, rule, kind)
    hp = rule.resolve({"lr": max(rule.hyper["lr"], 0.1), **FORMS[form]})  # steps big enough to see
    rng = np.random.default_rng(zlib.crc32(f"{name}/{form}/{n}".encode()))
    w0 = rng.standard_normal(n).astype(np.float32)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(STEPS)]
    expected = expected_steps(rule, hp, w0, grads)
    lo, hi = FRONT[kind], FRONT[kind] + n

    for grid in geometries(n, kind == "vec4"):
        # Whole allocations, random guard elements around [lo, hi).
        full = {b: aligned_random(rng, hi + BACK) for b in rule.buffers}
        full["w"][lo:hi] = w0
        for s, start in rule.start_state(w0).items():
            full[s][lo:hi] = start
        # The kernel gets pointers to element lo (n says where to stop); not
        # [lo:hi], since NumPy points an empty slice at the buffer's start.
        views = [full[b][lo:] for b in rule.buffers]
        for t, (g, (want_ref, want_np)) in enumerate(zip(grads, expected), start=1):
            full["g"][lo:hi] = g
            before = {b: a.copy() for b, a in full.items()}
            launch(kernel, grid, views, ON, rule.step_scalars(hp, t), n)

            case = f"{name} {kind} n={n} {form} (blocks, threads)={grid} step {t}"
            for b, a in full.items():
                # Bit-identical outside [lo, hi), and g untouched everywhere.
                outside = np.r_[0:lo, hi : a.size] if b != "g" else np.arange(a.size)
                changed = a[outside].view(np.uint32) != before[b][outside].view(np.uint32)
                assert not changed.any(), (
                    f"{case}: {b}[{int(outside[np.argmax(changed)]) - lo}] written outside the kernel's n"
                )
            for b in rule.written:
                assert_close(f"{case}: {b} vs float64 reference", full[b][lo:hi], want_ref[b])
                assert_close(f"{case}: {b} vs NumPy path", full[b][lo:hi], want_np[b])


# The harness itself: the shim's intrinsics and the argument kinds a dropout
# kernel needs (uint32/uint8 buffers, uint32 and uint64 scalars).
PROBE = r"""
extern "C" __global__ void probe(
    unsigned int* __restrict__ hi, const unsigned int* __restrict__ a, float* __restrict__ f,
    unsigned char* __restrict__ bytes, const long long n, const unsigned int b,
    const unsigned long long pattern)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += stride) {
        hi[k] = __umulhi(a[k], b);
        f[k] = __uint_as_float(__float_as_uint(f[k]) ^ 0x80000000u);  // -f via the sign bit
        bytes[k] = (unsigned char)(pattern >> (8 * (k & 7)));
    }
}
"""
PROBE_SPEC = [("u32*", "hi"), ("u32*", "a"), ("f32*", "f"), ("u8*", "bytes"),
              ("i64", "n"), ("u32", "b"), ("u64", "pattern")]


def test_shim_intrinsics_and_argument_kinds(host):
    probe = host.module(PROBE, {"probe": PROBE_SPEC}).get_function("probe")
    rng = np.random.default_rng(7)
    n, b, pattern = 1001, 0xDEADBEEF, 0x0123456789ABCDEF
    a = rng.integers(0, 2**32, n, dtype=np.uint32)
    f = rng.standard_normal(n).astype(np.float32)
    hi, out, bytes_ = np.zeros(n, np.uint32), f.copy(), np.zeros(n, np.uint8)
    probe((3,), (7,), (hi, a, out, bytes_, n, b, pattern))
    np.testing.assert_array_equal(hi, ((a.astype(np.uint64) * b) >> 32).astype(np.uint32))
    np.testing.assert_array_equal(out, -f)
    np.testing.assert_array_equal(bytes_, np.frombuffer(pattern.to_bytes(8, "little"), np.uint8)[np.arange(n) % 8])
    with pytest.raises(TypeError, match="must be uint32"):
        probe(1, 1, (hi.astype(np.int64), a, out, bytes_, n, b, pattern))
    with pytest.raises(ValueError, match="not a valid u32"):
        probe(1, 1, (hi, a, out, bytes_, n, -1, pattern))


def test_spec_that_does_not_match_the_kernel_is_a_build_error(host):
    wrong = [("f32", n) if n == "n" else (k, n) for k, n in PROBE_SPEC]  # n as a float
    with pytest.raises(RuntimeError, match="cannot convert"):
        host.module(PROBE, {"probe": wrong})


@pytest.mark.parametrize("n", (0, 1, 5, 1023, 1025))
@pytest.mark.parametrize("kind", ("vec4", "scalar"))
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_masked_kernel_matches_numpy(host, name, kind, n):
    """The masked variant (Optimal Brain Damage's pruning): same source
    generator plus a mask input; pruned weights stay exactly 0."""
    rule = masked(RULES[name])
    kernel = rule_kernel(host, rule, kind)
    hp = rule.resolve({"lr": max(rule.hyper["lr"], 0.1), "wd": 0.1})
    rng = np.random.default_rng(zlib.crc32(f"masked/{name}/{n}".encode()))
    w0 = rng.standard_normal(n).astype(np.float32)
    mask = (rng.random(n) > 0.4).astype(np.float32)
    opt = Optimizer(RULES[name], w0.copy(), mask=mask, **hp)
    lo = FRONT[kind]
    full = {b: aligned_random(rng, lo + n + BACK) for b in rule.buffers}
    full["w"][lo:lo + n] = w0 * mask
    full["mask"][lo:lo + n] = mask
    for s, start in rule.start_state(w0 * mask).items():
        full[s][lo:lo + n] = start
    views = [full[b][lo:] for b in rule.buffers]
    for t in range(1, STEPS + 1):
        g = rng.standard_normal(n).astype(np.float32)
        full["g"][lo:lo + n] = g
        opt.step(g)
        launch(kernel, geometries(n, kind == "vec4")[-1], views, ON, rule.step_scalars(opt.hyper, t), n)
        got = full["w"][lo:lo + n]
        assert np.all(got[mask == 0] == 0.0)
        assert_close(f"{rule.name} {kind} n={n} step {t}", got, opt.params.astype(np.float64))


@pytest.mark.parametrize("kind", ("vec4", "scalar"))
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_a_cleared_active_flag_leaves_every_buffer_alone(host, name, kind):
    """A run frozen on the device (its flag 0) gets no update, bit for bit."""
    rule = RULES[name]
    kernel = rule_kernel(host, rule, kind)
    rng = np.random.default_rng(3)
    n, lo = 1029, FRONT[kind]
    full = {b: aligned_random(rng, lo + n + BACK) for b in rule.buffers}
    before = {b: a.copy() for b, a in full.items()}
    scalars = rule.step_scalars(rule.resolve({"wd": 0.1}), 1)
    args = [full[b][lo:] for b in rule.buffers]
    grid = geometries(n, kind == "vec4")[-1]
    launch(kernel, grid, args, OFF, scalars, n)
    for b in rule.buffers:
        np.testing.assert_array_equal(full[b].view(np.uint32), before[b].view(np.uint32))
    launch(kernel, grid, args, ON, scalars, n)
    assert not np.array_equal(full["w"], before["w"])


@pytest.mark.parametrize("precision", ["bf16", "bf16-sr"])
def test_the_bf16_kernels_take_the_parameters_rule_spec_writes_out(host_compiler, precision):
    """Adam with its state in bfloat16, built against the written-out spec
    (a state buffer's bits, and stochastic rounding's keys and step; the
    build fails if the kernel's signature differs): the vec4 and the scalar
    kernel each give the NumPy kernel's weights and state bits."""
    rule = RULES["adam"]
    names = kernel_names(rule, precision)
    module = host_compiler.module(cuda_source(rule, precision), dict.fromkeys(names, rule_spec(rule, precision)))
    rng = np.random.default_rng(3)
    n = 12
    scalars = scalar_table(rule, [rule.resolve({})], 3, 1)[0]
    keys, active = np.array([[7, 1]], np.uint32), np.ones(1, np.int32)
    start = {"w": rng.standard_normal((1, n)).astype(np.float32), "g": rng.standard_normal((1, n)).astype(np.float32),
             "mu": rng.integers(0, 1 << 15, (1, n)).astype(np.uint16) & 0x3FFF,
             "v": rng.integers(0, 1 << 14, (1, n)).astype(np.uint16)}
    want = {k: v.copy() for k, v in start.items()}
    NumpyKernel(rule, precision=precision).population(want, scalars, active, keys, 3)
    for name in names:  # n % 4 == 0: the vec4 and the scalar kernel each take the whole row
        got = {k: v.copy() for k, v in start.items()}
        extra = (keys, np.uint32(3)) if precision == "bf16-sr" else ()
        module.get_function(name)((1, 1), (4,), (got["w"], got["g"], got["mu"], got["v"], active, scalars,
                                                 np.int64(1), np.int64(n), np.int64(n), *extra))
        for k in ("w", "mu", "v"):
            assert np.array_equal(got[k], want[k]), (name, k)
