"""Optimizer.state_dict / load_state_dict: everything needed to go on later."""

import numpy as np
import pytest

from kernels import RULES, Optimizer


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
