"""Checkpoints: the weights, and the optimiser's state to go on training."""

import numpy as np
import pytest

from optbench.kernels import Optimizer
from optbench.suite.nn.checkpoint import load_checkpoint, save_checkpoint
from optbench.suite.nn.mlp import MLP


def _model(seed=0):
    m = MLP([5, 8, 3]).member()
    rng = np.random.default_rng(seed)
    for slot in m.layout:  # the tensors only: padding stays 0, as in training
        m.params[slot.name][...] = rng.standard_normal(slot.shape).astype(np.float32) * 0.3
    return m


def _train(model, opt, steps, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((steps, 16, 5)).astype(np.float32)
    y = rng.integers(0, 3, (steps, 16))
    for i in range(steps):
        model.loss_and_grad(X[i], y[i])
        opt.step(model.grads)


@pytest.mark.parametrize("rule", ["adam", "nesterov"])
def test_resuming_from_a_checkpoint_equals_not_stopping(tmp_path, rule):
    """Save after 4 steps with the optimiser, load into a fresh model and
    optimiser, take 4 more: the same weights as 8 steps in one go. Nesterov's
    file holds the true weights w, and loading maps them back to its
    look-ahead point."""
    straight = _model()
    opt = Optimizer(rule, straight.params, lr=0.05)
    _train(straight, opt, 4)
    path = save_checkpoint(straight, tmp_path / "c.npz", {"rule": rule}, optimizer=opt)
    _train(straight, opt, 4, seed=2)

    resumed = _model(seed=9)
    opt2 = Optimizer(rule, resumed.params, lr=0.05)
    assert load_checkpoint(resumed, path, optimizer=opt2) == {"rule": rule}
    assert opt2.t == 4
    _train(resumed, opt2, 4, seed=2)
    np.testing.assert_allclose(resumed.params.data, straight.params.data, rtol=0, atol=1e-6)


def test_checkpoint_tensors_are_the_true_weights(tmp_path):
    model = _model()
    opt = Optimizer("nesterov", model.params, lr=0.1, gamma=0.9)
    _train(model, opt, 3)
    path = save_checkpoint(model, tmp_path / "c.npz", optimizer=opt)
    fresh = _model(seed=5)
    load_checkpoint(fresh, path)  # weights only: the evaluated weights w, not u
    np.testing.assert_array_equal(fresh.params.data, opt.weights())
    assert not np.array_equal(fresh.params.data, model.params.data)


def test_asking_for_optimiser_state_that_was_not_saved_is_an_error(tmp_path):
    model = _model()
    path = save_checkpoint(model, tmp_path / "c.npz")
    with pytest.raises(ValueError, match="no optimiser state"):
        load_checkpoint(_model(), path, optimizer=Optimizer("adam", _model().params))
