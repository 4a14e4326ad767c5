"""``optbench validate``'s verdicts: what counts as a rounding flip of a
discontinuous rule, what does not, and data that does not depend on which
other rules are registered."""

import numpy as np
import pytest

from optbench.kernels import RULES, precision, validate
from optbench.kernels.backend import get_backend
from optbench.kernels.validate import FLIP_EVERY, TOLERANCE_PER_STEP, check_rule, discontinuous

SIZE = FLIP_EVERY * 3 + 7  # room for three flips


def test_which_rules_branch():
    assert discontinuous("lion") and discontinuous("amsgrad") and discontinuous("adamax")
    assert not discontinuous("adam") and not discontinuous("sgd")


def perturbed(monkeypatch, elements):
    """The reference, with ``elements`` of w moved by 1 (an element that
    rounding sent down the other branch, or a wrong formula where many are)."""
    real = validate.reference_for

    def reference_for(name):
        kind, step = real(name)

        def wrong(w, g, state, hp, t, views):
            w, state = step(w, g, state, hp, t, views)
            w = w.copy()
            if w.size:
                w[elements(w.size)] += 1.0
            return w, state
        return kind, wrong
    monkeypatch.setattr(validate, "reference_for", reference_for)


def test_a_few_flips_of_a_discontinuous_rule_pass_and_are_counted(monkeypatch):
    perturbed(monkeypatch, lambda n: [5, n // 2, n - 1])
    check = check_rule("lion", "decoupled", SIZE, get_backend("numpy"))
    assert check.ok and check.flips == 3 and check.max_rel_err <= check.tolerance
    small = check_rule("lion", "decoupled", FLIP_EVERY - 1, get_backend("numpy"))
    assert not small.ok and small.flips == 0  # none allowed below FLIP_EVERY elements


def test_a_flip_fails_a_continuous_rule(monkeypatch):
    perturbed(monkeypatch, lambda n: [5])
    check = check_rule("adam", "decoupled", SIZE, get_backend("numpy"))
    assert not check.ok and check.flips == 0 and check.max_rel_err > 0.1


@pytest.mark.parametrize("every", [2, FLIP_EVERY // 10])
def test_a_wrong_formula_is_not_a_flip(monkeypatch, every):
    perturbed(monkeypatch, lambda n: np.arange(0, n, every))
    check = check_rule("lion", "decoupled", SIZE, get_backend("numpy"))
    assert not check.ok and check.flips == 0


def test_the_data_does_not_depend_on_the_other_rules(monkeypatch):
    before = check_rule("lion", "coupled", 4099, get_backend("numpy"))
    # one more rule registered ahead of lion (a new built-in sorts in anywhere)
    monkeypatch.setattr(validate, "RULES", {"another": validate.RULES["sgd"], **validate.RULES})
    after = check_rule("lion", "coupled", 4099, get_backend("numpy"))
    assert after.max_rel_err == before.max_rel_err
    assert 0 < before.max_rel_err <= TOLERANCE_PER_STEP * before.steps


# --- a low-precision state (issue 23) -------------------------------------------


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("state", ["bf16", "bf16-sr", "int8"])
def test_every_rule_passes_with_its_state_in_low_precision(name, state):
    backend = get_backend("numpy")
    for form in validate.l2_forms(RULES[name]):
        check = check_rule(name, form, 4099, backend, state=state)
        assert check.ok and check.flips <= 4099 // validate.STATE_FLIP_EVERY + 4, check


@pytest.mark.parametrize("name", ["adam", "lion", "amsgrad", "lamb"])
@pytest.mark.parametrize("state", ["bf16", "bf16-sr", "int8"])
def test_the_cuda_source_passes_with_its_state_in_low_precision(cp, name, state):
    """validate's checks on the CUDA kernels (the host harness where there is
    no GPU): the vec4 kernels at 4096 elements, the scalar ones at 4099; a
    staged rule (LAMB) with its state rounded after each step."""
    backend = get_backend("cupy")
    for size in (4096, 4099):
        check = check_rule(name, "decoupled", size, backend, state=state)
        assert check.ok and check.flips <= size // validate.STATE_FLIP_EVERY + 4, check


@pytest.mark.parametrize("kernel, reference", [("bf16", "bf16-sr"), ("fp32", "bf16"), ("bf16-sr", "bf16"),
                                               ("fp32", "int8"), ("bf16", "int8")])
def test_a_state_rounded_otherwise_than_the_reference_fails(monkeypatch, kernel, reference):
    """Not rounded at all, or to nearest where the reference rounds
    stochastically (and back), or in bfloat16 where it quantises to 8 bits:
    far more than the allowed elements differ."""
    class Rounding(validate.Optimizer):
        def __init__(self, *args, state_precision="fp32", **kw):
            super().__init__(*args, state_precision=kernel, **kw)

    monkeypatch.setattr(validate, "Optimizer", Rounding)
    check = check_rule("adam", "coupled", 4099, get_backend("numpy"), state=reference)
    assert not check.ok and check.flips > 100


def test_an_8_bit_state_quantised_with_one_map_for_every_block_fails(monkeypatch):
    """A kernel quantising Adam's v (never negative) with the signed map,
    where the reference takes the unsigned one (twice the resolution): many
    of its elements land a code away."""
    class Quantising(validate.Optimizer):
        def step(self, *args, **kw):
            super().step(*args, **kw)
            v = self.population.groups[0].stored["v"][0]
            v[...] = precision.dequantize_blockwise(*precision.quantize_blockwise(v, True), True)

    monkeypatch.setattr(validate, "Optimizer", Quantising)
    check = check_rule("adam", "coupled", 4099, get_backend("numpy"), state="int8")
    assert not check.ok and check.flips > 100
