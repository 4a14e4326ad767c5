"""A state precision per run (issue 23): after every step each state buffer
holds what a bfloat16 state would hold -- the rule's float32 step, then its
state rounded (to nearest even, or stochastically with each member's own
bits) -- for every built-in rule, alone or in a population, on NumPy, Numba
and the CUDA source alike."""

import numpy as np
import pytest

from optbench.kernels import RULES, Optimizer, PopulationOptimizer
from optbench.kernels.precision import bf16_rne, bf16_to_f32, round_state, seed_keys

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


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("precision", ["bf16", "bf16-sr"])
def test_every_rule_takes_its_float32_step_then_rounds_its_state(name, precision):
    rule = RULES[name]
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((2, N)).astype(np.float32)
    grads = [rng.standard_normal((2, N)).astype(np.float32) for _ in range(3)]
    low = PopulationOptimizer(w0.copy(), [rule] * 2, [{}] * 2, backend="numpy", state_precision=precision,
                              seeds=[3, 4])
    ref = PopulationOptimizer(w0.copy(), [rule] * 2, [{}] * 2, backend="numpy")
    keys = seed_keys([3, 4])
    for j, s in enumerate(rule.state):  # a state that starts from w is rounded as it starts
        round_state(ref.groups[0].state[s], precision, keys, 0, j)
    for t, g in enumerate(grads, start=1):
        low.step(g)
        ref.step(g)
        for j, s in enumerate(rule.state):
            round_state(ref.groups[0].state[s], precision, keys, t, j)
    assert np.array_equal(low.params, ref.params)
    for s in rule.state:
        assert np.array_equal(low.groups[0].state[s], ref.groups[0].state[s]) and representable(low.groups[0].state[s])


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
        opt.groups[0].state["G"][...] = 0.5
        for _ in range(600):
            opt.step(np.full((1, 4096), np.sqrt(1e-3), np.float32))
        sums[precision] = float(opt.groups[0].state["G"].mean())
    assert sums["bf16"] == 0.5 and sums["fp32"] == pytest.approx(1.1, rel=1e-3)
    assert sums["bf16-sr"] == pytest.approx(sums["fp32"], rel=0.01)


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown state precision 'fp16'"):
        PopulationOptimizer(np.zeros((1, 4), np.float32), ["adam"], [{}], state_precision="fp16")
