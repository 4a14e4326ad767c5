"""A state precision per run (issue 23): after every step each state buffer
holds what a bfloat16 state would hold -- the rule's float32 step, then its
state rounded (to nearest even, or stochastically with each member's own
bits) -- for every built-in rule, alone or in a population, on NumPy, Numba
and the CUDA source alike."""

import numpy as np
import pytest

from rule_sets import ELEMENTWISE  # tests/ is on sys.path

from optbench.kernels import RULES, Optimizer, PopulationOptimizer
from optbench.kernels.population import state_bytes_per_param
from optbench.kernels.precision import BLOCK, PACKED, bf16_rne, bf16_to_f32, round_state, seed_keys

N = 257


def representable(x) -> bool:
    return np.array_equal(bf16_to_f32(bf16_rne(x)), x)


@pytest.mark.parametrize("precision", ["bf16", "bf16-sr"])
def test_round_state_gives_the_same_bits_on_numpy_numba_and_the_cuda_source(standin, precision):
    cp = standin
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 1000)) * 10.0 ** rng.uniform(-8, 3, (3, 1000))).astype(np.float32)
    keys = seed_keys([5, 2**40 + 1, 7])
    want = x.copy()
    round_state(want, precision, keys, 12, 1, "numpy")
    assert representable(want) and not np.array_equal(want, x)
    numba = x.copy()
    round_state(numba, precision, keys, 12, 1, "numba")
    assert np.array_equal(numba, want)
    dev = cp.asarray(x)
    round_state(dev, precision, cp.asarray(keys), 12, 1, "cupy")
    assert np.array_equal(dev.get(), want)


def rounded_alike(rule, precision: str, backend: str, n: int = N, xp=np, steps: int = 3, members: int = 2):
    """A population whose state is kept at ``precision`` against a float32
    one whose state is rounded by hand after every step, from the same
    start and gradients: (low, ref) after ``steps`` steps."""
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((members, n)).astype(np.float32)
    grads = [xp.asarray(rng.standard_normal((members, n)).astype(np.float32)) for _ in range(steps)]
    seeds = [3, 2**40 + 4, 5][:members]
    low = PopulationOptimizer(xp.array(w0), [rule] * members, [{}] * members, backend=backend,
                              state_precision=precision, seeds=seeds)
    ref = PopulationOptimizer(xp.array(w0), [rule] * members, [{}] * members, backend=backend)
    keys = xp.asarray(seed_keys(seeds))
    for j, s in enumerate(rule.state):  # a state that starts from w is rounded as it starts
        round_state(ref.groups[0].state[s], precision, keys, 0, j, backend)
    for t, g in enumerate(grads, start=1):
        low.step(g)
        ref.step(g)
        for j, s in enumerate(rule.state):
            round_state(ref.groups[0].state[s], precision, keys, t, j, backend)
    return low, ref


def assert_rounded_alike(rule, low, ref, to_numpy=np.asarray):
    assert np.array_equal(to_numpy(low.params), to_numpy(ref.params))
    for s in rule.state:
        got = to_numpy(low.groups[0].state[s])
        assert np.array_equal(got, to_numpy(ref.groups[0].state[s])), s
        assert low.state_precision == "int8" or representable(got)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("precision", ["bf16", "bf16-sr", "int8"])
def test_every_rule_takes_its_float32_step_then_rounds_its_state(name, precision, backend):
    """The generated kernels load a bf16 state and store it rounded in the
    rule's one pass: bit for bit the float32 step, then the rounding (an
    8-bit state, and a rule that updates in stages, are rounded after it)."""
    if backend == "numba":
        pytest.importorskip("numba")
    rule = RULES[name]
    low, ref = rounded_alike(rule, precision, backend, n=N if precision != "int8" else 2 * BLOCK + 7)
    assert_rounded_alike(rule, low, ref)
    group = low.groups[0]
    assert group.packed == (name in ELEMENTWISE and precision in PACKED)
    for s in rule.state:
        assert group.stored[s].dtype == (np.uint16 if group.packed else np.float32)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("precision", ["bf16", "bf16-sr"])
def test_the_cuda_source_keeps_a_bf16_state_as_the_cpu_kernels_do(standin, name, precision):
    """The generated CUDA kernels on the host harness: the vec4 kernel (8-byte
    loads and stores of the bits, one Philox call per four elements) at a row
    length that is a multiple of 4, the scalar one at one that is not."""
    cp = standin
    rule = RULES[name]
    for n in (256, 257):
        low, ref = rounded_alike(rule, precision, "cupy", n=n, xp=cp, steps=2)
        assert_rounded_alike(rule, low, ref, lambda a: a.get())
        assert low.groups[0].stored[rule.state[0]].dtype == np.uint16 if rule.state else True


@pytest.mark.parametrize("name", ["adam", "lion", "lamb"])
def test_the_cuda_source_quantises_an_8_bit_state_as_the_cpu_does(standin, name):
    rule = RULES[name]
    low, ref = rounded_alike(rule, "int8", "cupy", n=BLOCK + 5, xp=standin, steps=2)
    assert_rounded_alike(rule, low, ref, lambda a: a.get())


def test_a_bf16_state_moves_fewer_bytes():
    assert state_bytes_per_param(RULES["adam"], "bf16") == 20 and state_bytes_per_param(RULES["adam"], "fp32") == 28
    assert state_bytes_per_param(RULES["sgd"], "bf16-sr") == 12  # no state
    assert state_bytes_per_param(RULES["momentum"], "bf16") == 16
    assert state_bytes_per_param(RULES["lamb"], "bf16") == RULES["lamb"].bytes_per_param  # staged: float32 words


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_bf16_state_saved_and_loaded_goes_on_bit_for_bit(backend):
    pytest.importorskip("numba") if backend == "numba" else None
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal(N).astype(np.float32)
    grads = [rng.standard_normal(N).astype(np.float32) for _ in range(5)]
    straight = Optimizer("adam", w0.copy(), backend=backend, state_precision="bf16-sr", seed=9)
    for g in grads[:3]:
        straight.step(g)
    sd = straight.state_dict()
    assert all(v.dtype == np.float32 and representable(v) for v in sd["state"].values())
    resumed = Optimizer("adam", straight.params.copy(), backend=backend, state_precision="bf16-sr", seed=9)
    resumed.load_state_dict(sd)
    for g in grads[3:]:
        straight.step(g)
        resumed.step(g)
    assert np.array_equal(resumed.params, straight.params)
    for s in ("mu", "v"):
        assert np.array_equal(resumed.state[s], straight.state[s])


def test_a_pruned_bf16_state_is_zero_under_its_mask():
    rng = np.random.default_rng(6)
    w0 = rng.standard_normal((2, N)).astype(np.float32)
    masks = (rng.random((2, N)) > 0.3).astype(np.float32)
    low = PopulationOptimizer(w0.copy(), ["adam"] * 2, [{}] * 2, state_precision="bf16", masks=masks)
    ref = PopulationOptimizer(w0.copy(), ["adam"] * 2, [{}] * 2, masks=masks)
    for _ in range(3):
        g = rng.standard_normal((2, N)).astype(np.float32)
        low.step(g)
        ref.step(g)
        for j, s in enumerate(("mu", "v")):
            round_state(ref.groups[0].state[s], "bf16", seed_keys([0, 1]), 0, j)
    assert np.array_equal(low.params, ref.params)
    for s in ("mu", "v"):
        assert np.array_equal(low.groups[0].state[s], ref.groups[0].state[s])
        assert not low.groups[0].state[s][masks == 0].any() and low.groups[0].state[s][masks == 1].any()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_member_rounds_as_it_would_alone_and_the_backends_agree(backend):
    rng = np.random.default_rng(2)
    w0 = rng.standard_normal((2, N)).astype(np.float32)
    grads = [rng.standard_normal((2, N)).astype(np.float32) for _ in range(4)]
    pop = PopulationOptimizer(w0.copy(), ["adam", "adam"], [{}, {}], backend=backend, state_precision="bf16-sr",
                              seeds=[11, 12])
    alone = [Optimizer("adam", w0[m].copy(), backend="numpy", state_precision="bf16-sr", seed=11 + m)
             for m in range(2)]
    for g in grads:
        pop.step(g)
        for m, opt in enumerate(alone):
            opt.step(g[m].copy())
    for m, opt in enumerate(alone):
        assert np.array_equal(pop.params[m], opt.params)


def test_stochastic_rounding_keeps_small_updates_that_rounding_to_nearest_loses():
    """Adagrad's sum of squared gradients growing by g^2 = 1e-3 a step from
    0.5: to nearest, each step is under half of bf16's last bit there (2^-8)
    and is lost; stochastically, the sum follows its float32 path on average."""
    sums = {}
    for precision in ("fp32", "bf16", "bf16-sr"):
        opt = PopulationOptimizer(np.zeros((1, 4096), np.float32), ["adagrad"], [{}], backend="numpy",
                                  state_precision=precision)
        opt.groups[0].set_state("G", 0.5)
        for _ in range(600):
            opt.step(np.full((1, 4096), np.sqrt(1e-3), np.float32))
        sums[precision] = float(opt.groups[0].state["G"].mean())
    assert sums["bf16"] == 0.5 and sums["fp32"] == pytest.approx(1.1, rel=1e-3)
    assert sums["bf16-sr"] == pytest.approx(sums["fp32"], rel=0.01)


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown state precision 'fp16'"):
        PopulationOptimizer(np.zeros((1, 4), np.float32), ["adam"], [{}], state_precision="fp16")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_member_left_out_keeps_its_bf16_state_and_the_others_round_as_alone(backend):
    """Active flags 1, 0, 1: the NumPy kernel gathers the active rows of a
    bf16 state (and their stochastic bits by member), the Numba loop skips
    the row; the member left out keeps its state and weights."""
    if backend == "numba":
        pytest.importorskip("numba")
    rng = np.random.default_rng(8)
    w0 = rng.standard_normal((3, N)).astype(np.float32)
    grads = [rng.standard_normal((3, N)).astype(np.float32) for _ in range(3)]
    pop = PopulationOptimizer(w0.copy(), ["adam"] * 3, [{}] * 3, backend=backend, state_precision="bf16-sr",
                              seeds=[1, 2, 3])
    alone = [Optimizer("adam", w0[m].copy(), backend="numpy", state_precision="bf16-sr", seed=m + 1)
             for m in (0, 2)]
    pop.step(grads[0])
    for opt, m in zip(alone, (0, 2)):
        opt.step(grads[0][m].copy())
    frozen = {s: pop.member(1).state[s].copy() for s in ("mu", "v")}
    for g in grads[1:]:
        pop.step(g, np.array([1, 0, 1], np.int32))
        for opt, m in zip(alone, (0, 2)):
            opt.step(g[m].copy())
    for opt, m in zip(alone, (0, 2)):
        assert np.array_equal(pop.params[m], opt.params)
        assert all(np.array_equal(pop.member(m).state[s], opt.state[s]) for s in ("mu", "v"))
    assert all(np.array_equal(pop.member(1).state[s], frozen[s]) for s in ("mu", "v"))
