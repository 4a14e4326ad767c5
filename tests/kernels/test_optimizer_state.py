"""Optimizer.state_dict / load_state_dict: everything needed to go on later."""

import numpy as np
import pytest

from optbench.kernels import RULES, Optimizer


def _steps(opt, grads):
    for g in grads:
        opt.step(g)


@pytest.mark.parametrize("name", RULES)
def test_resuming_from_a_state_dict_equals_not_stopping(name, backend):
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal(257).astype(np.float32)
    grads = [backend.asarray(g) for g in rng.standard_normal((6, 257)).astype(np.float32)]
    hyper = {"lr": 0.01, "wd": 0.01}
    straight = Optimizer(name, backend.asarray(w0.copy()), backend=backend, **hyper)
    _steps(straight, grads)

    first = Optimizer(name, backend.asarray(w0.copy()), backend=backend, **hyper)
    _steps(first, grads[:3])
    params_then = backend.to_numpy(first.params).copy()
    sd = first.state_dict()
    sd_host = {**sd, "state": {k: backend.to_numpy(v) for k, v in sd["state"].items()}}  # as if read from disk
    _steps(first, grads[3:4])  # the copies in sd must not follow later steps
    resumed = Optimizer(name, backend.asarray(params_then), backend=backend)  # default hyper, t = 0
    resumed.load_state_dict(sd_host)
    assert resumed.t == 3 and resumed.hyper == first.hyper
    _steps(resumed, grads[3:])
    backend.synchronize()
    np.testing.assert_array_equal(backend.to_numpy(resumed.params), backend.to_numpy(straight.params))
    for k in straight.state:
        np.testing.assert_array_equal(backend.to_numpy(resumed.state[k]), backend.to_numpy(straight.state[k]))


def test_load_state_dict_refuses_another_rule_or_shape():
    adam = Optimizer("adam", np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="rule 'adam' cannot be loaded"):
        Optimizer("rmsprop", np.zeros(8, np.float32)).load_state_dict(adam.state_dict())
    sd = adam.state_dict()
    sd["state"]["mu"] = np.zeros(9, np.float32)
    with pytest.raises(ValueError, match="shape"):
        Optimizer("adam", np.zeros(8, np.float32)).load_state_dict(sd)
    del sd["state"]["v"]
    with pytest.raises(ValueError, match="lacks"):
        Optimizer("adam", np.zeros(8, np.float32)).load_state_dict(sd)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_gradient_is_refused_and_changes_nothing(bad, backend):
    from optbench.kernels import NonFiniteGradient

    w0 = np.linspace(-1, 1, 1031).astype(np.float32)
    opt = Optimizer("adam", backend.asarray(w0.copy()), backend=backend, lr=0.1)
    g = np.ones(1031, np.float32)
    g[700] = bad
    with pytest.raises(NonFiniteGradient, match="1 non-finite value.*element 700; no update was made"):
        opt.step(backend.asarray(g))
    assert opt.t == 0
    np.testing.assert_array_equal(backend.to_numpy(opt.params), w0)
    assert not backend.to_numpy(opt.state["v"]).any()
    with np.errstate(invalid="ignore"):
        opt.step(backend.asarray(g), check_finite=False)  # the explicit switch: NaN goes through
    assert opt.t == 1 and not np.isfinite(backend.to_numpy(opt.params)[700])


def test_a_huge_but_finite_gradient_is_not_refused():
    """g . g overflows float32 here, but every element is finite: the exact
    test clears it."""
    g = np.full(16, 1e20, np.float32)
    opt = Optimizer("sgd", np.zeros(16, np.float32), lr=1e-20)
    opt.step(g)
    np.testing.assert_allclose(opt.params, -1.0, rtol=1e-6)


@pytest.mark.parametrize("hyper, message", [
    ({"lr": -1.0}, r"'lr' of rule 'adam' must be finite and in \(0, inf\), got -1.0"),
    ({"lr": float("nan")}, "must be finite"),
    ({"gamma": 1.5}, r"'gamma' of rule 'adam' must be finite and in \[0, 1\)"),
    ({"eps": -1e-8}, "'eps'"),
    ({"l2": -0.1}, r"'l2' of rule 'adam' must be finite and in \[0, inf\)"),
    ({"lr": "0.1"}, "must be a number"),
])
def test_the_python_api_checks_hyper_parameters(hyper, message):
    from optbench.kernels import RuleError

    with pytest.raises(RuleError, match=message):
        Optimizer("adam", np.zeros(4, np.float32), **hyper)
