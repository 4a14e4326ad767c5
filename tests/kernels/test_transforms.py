"""Rule transforms: L2, decoupled decay and masking applied to a rule's maths.

The rule modules hold only their own update; the registry applies
``coupled_l2(decoupled_decay(rule))``. What the other tests check against the
reference (every rule x every L2 form), these check structurally: the rule
modules mention neither form, the transforms add exactly their statements,
and a zero coefficient costs nothing on NumPy.
"""

import ast

import numpy as np
import pytest

from optbench.kernels import RULES, Optimizer, RuleError
from optbench.kernels.codegen.numpy_kernel import NumpyKernel
from optbench.kernels.rules import adadelta, adam, momentum, nesterov, rmsprop, sgd
from optbench.kernels.transforms import coupled_l2, decoupled_decay, masked

BARE = {m.RULE.name: m.RULE for m in (sgd, momentum, nesterov, rmsprop, adadelta, adam)}


@pytest.mark.parametrize("name", BARE)
def test_rule_modules_hold_only_their_maths(name):
    bare = BARE[name]
    assert not {"l2", "wd"} & set(bare.hyper)
    names = {n.id for s in bare.statements for n in ast.walk(s.expr) if isinstance(n, ast.Name)}
    assert not {"l2", "decay", "lr_wd"} & names
    assert not {"l2", "decay"} & set(bare.scalar_names)


@pytest.mark.parametrize("name", BARE)
def test_registry_rules_are_the_transformed_maths(name):
    rule, bare = RULES[name], BARE[name]
    assert rule is coupled_l2(decoupled_decay(bare))  # cached: one object, one compiled kernel
    assert rule.defaults() == {**bare.hyper, "wd": 0.0, "l2": 0.0}
    text = [str(s) for s in rule.statements]
    assert text[0] == "g = g + l2 * w"
    assert text[1].startswith("w = decay * w")
    assert text[2:] == [str(s) for s in bare.statements]


@pytest.mark.parametrize("name", BARE)
def test_zero_coefficients_fold_to_the_bare_program(name):
    """With l2 = wd = 0 the NumPy program of the transformed rule is the bare
    rule's, op for op: the transforms cost nothing when unused."""
    rule, bare = RULES[name], BARE[name]
    scalars = rule.step_scalars(rule.resolve({}), 3)
    bare_scalars = bare.step_scalars(bare.resolve({}), 3)
    ops = NumpyKernel(rule).program(scalars).ops
    bare_ops = NumpyKernel(bare).program(bare_scalars).ops
    assert [(u.__name__, len(a)) for u, a, _ in ops] == [(u.__name__, len(a)) for u, a, _ in bare_ops]
    assert len(NumpyKernel(rule).program({**scalars, "l2": 0.1}).ops) > len(ops)


def test_decay_of_a_look_ahead_rule_shrinks_the_true_weights():
    """Nesterov stores u = w - eta gamma v; decoupled decay must shrink w, so
    with a zero gradient: w' = (1 - eta wd) w - eta gamma v' ... checked
    against shrinking w and mapping back."""
    rng = np.random.default_rng(0)
    u0, v0 = rng.standard_normal((2, 64)).astype(np.float32)
    lr, gamma, wd = 0.1, 0.9, 0.5
    opt = Optimizer("nesterov", u0.copy(), lr=lr, gamma=gamma, wd=wd)
    opt.state["v"][:] = v0
    opt.step(np.zeros(64, np.float32))
    w0 = u0.astype(np.float64) + lr * gamma * v0
    v1 = gamma * v0.astype(np.float64)
    w1 = (1 - lr * wd) * w0 - lr * v1
    np.testing.assert_allclose(opt.weights(), w1, rtol=1e-5, atol=1e-6)


def test_transforms_refuse_a_clash_and_a_rule_without_lr():
    with pytest.raises(RuleError, match="already has"):
        coupled_l2(RULES["sgd"])
    from dataclasses import replace

    no_lr = replace(BARE["sgd"], name="nolr", hyper={"eta": 0.1}, ranges={}, scalars=lambda hp, t: {"lr": hp["eta"]},
                    lr_centre=None, peer=None)
    with pytest.raises(RuleError, match="learning rate"):
        decoupled_decay(no_lr)


def test_masked_is_cached_and_appends_the_mask():
    m = masked(RULES["adam"])
    assert m is masked(RULES["adam"]) and m.name == "adam_masked" and m.inputs == ("mask",)
    assert [str(s) for s in m.statements][-3:] == ["w = w * mask", "mu = mu * mask", "v = v * mask"]
