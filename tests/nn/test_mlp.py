"""The MLP's hand-written back-propagation against central finite differences,
on one network (a model of one member, through its single-network view), and
a model of several members computing each member's numbers as that member
alone does."""

import numpy as np
import pytest

from optbench.suite.nn.activations import ACTIVATIONS
from optbench.suite.nn.losses import LOSSES
from optbench.suite.nn.mlp import MLP


def numeric_grad(model, X, y, masks, h=1e-6):
    """dQ/dparams by central differences, one parameter at a time (float64)."""
    w = model.params.data
    out = np.zeros_like(w)
    for i in range(w.size):
        keep = w[i]
        w[i] = keep + h
        up, _ = model.value_and_grad(model.forward(X, train=True, masks=masks)[0], y)
        w[i] = keep - h
        down, _ = model.value_and_grad(model.forward(X, train=True, masks=masks)[0], y)
        w[i] = keep
        out[i] = (up - down) / (2 * h)
    return out


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_backprop_matches_finite_differences(activation, loss, dropout):
    rng = np.random.default_rng(0)
    sizes = [5, 6, 4, 3]
    model = MLP(sizes, activation, loss, dropout=dropout, dtype=np.float64).member()
    model.params.data[...] = 0  # padding stays 0
    for s in model.layout:
        model.params[s.name][...] = rng.standard_normal(s.shape) * 0.7
    if model.activation.has_alpha:
        for l in (1, 2):
            model.params[f"alpha{l}"][...] = 0.3
    X = rng.standard_normal((7, 5))
    y = rng.integers(0, 3, 7) if loss == "cross_entropy" else rng.standard_normal((7, 3))
    masks = [(rng.random((7, m)) >= dropout).astype(np.float64) for m in sizes[1:-1]]
    model.loss_and_grad(X, y, masks=masks)
    expected = numeric_grad(model, X, y, masks)
    np.testing.assert_allclose(model.grads.data, expected, rtol=1e-6, atol=1e-8)
    assert np.abs(expected).max() > 1e-3  # the check is not vacuous


def test_inverted_and_classic_dropout_at_inference():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4, 3)).astype(np.float32)
    outs = {}
    for mode in ("inverted", "classic"):
        m = MLP([3, 5, 2], "tanh", dropout=0.4, dropout_mode=mode).member()
        m.params.data[...] = np.linspace(-1, 1, m.params.data.size, dtype=np.float32)
        outs[mode] = m.forward(X)[0]
    # classic scales the hidden layer by (1 - p) at inference; inverted does not
    m = MLP([3, 5, 2], "tanh").member()
    m.params.data[...] = np.linspace(-1, 1, m.params.data.size, dtype=np.float32)
    a = np.tanh(X @ m.params["W1"] + m.params["b1"])
    np.testing.assert_allclose(outs["inverted"], a @ m.params["W2"] + m.params["b2"], rtol=1e-6)
    np.testing.assert_allclose(outs["classic"], 0.6 * a @ m.params["W2"] + m.params["b2"], rtol=1e-6)


def test_training_dropout_regenerates_its_mask_in_backward():
    """With the Philox kernels, a unit dropped in forward gets no gradient."""
    rng = np.random.default_rng(2)
    m = MLP([4, 64, 3], "relu", dropout=0.5, seeds=[3]).member()
    for s in m.layout:
        m.params[s.name][...] = rng.standard_normal(s.shape).astype(np.float32)
    X = rng.standard_normal((1, 4)).astype(np.float32)
    z, cache = m.forward(X, train=True)
    hidden = cache.inputs[1][0]          # after dropout
    active = cache.acts[0][0] != 0       # relu output before dropout
    dropped = active & (hidden == 0)
    kept = active & (hidden != 0)
    assert dropped.any() and kept.any()
    np.testing.assert_allclose(hidden[kept], 2.0 * cache.acts[0][0][kept], rtol=1e-6)
    m.backward(cache, np.ones_like(z))
    assert np.all(m.grads["W2"][dropped] == 0) and np.all(m.grads["W2"][kept] != 0)


@pytest.mark.parametrize("kwargs, message", [
    ({"activation": "swish"}, "unknown activation 'swish'.*relu"),
    ({"loss": "hinge"}, "unknown loss 'hinge'.*cross_entropy"),
    ({"dropout": 1.0}, r"dropout p must lie in \[0, 1\)"),
    ({"dropout": [0.1, 0.2]}, "2 rates but the network has 1 hidden"),
    ({"dropout_mode": "spatial"}, "unknown dropout mode 'spatial'"),
])
def test_bad_model_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP([3, 4, 2], **kwargs)


def test_set_layers_checks_shapes():
    m = MLP([3, 4, 2]).member()
    with pytest.raises(ValueError, match=r"W1 has shape \(4, 3\), the network needs \(3, 4\)"):
        m.set_layers([(np.zeros((4, 3)), np.zeros(4)), (np.zeros((4, 2)), np.zeros(2))])


@pytest.mark.parametrize("activation", ["relu", "prelu"])
def test_each_member_of_a_model_is_the_member_alone(activation):
    """Members with their own weights, data and dropout streams: the model's
    outputs, losses and gradients are, bit for bit, each member's alone."""
    rng = np.random.default_rng(4)
    sizes, P = [5, 9, 7, 3], 4
    together = MLP(sizes, activation, dropout=0.3, members=P, seeds=[10, 11, 12, 13])
    together.params[...] = rng.standard_normal(together.params.shape).astype(np.float32) * 0.5
    X = rng.standard_normal((P, 6, 5)).astype(np.float32)
    y = rng.integers(0, 3, (P, 6))
    losses = together.loss_and_grad(X, y)
    for m in range(P):
        alone = MLP(sizes, activation, dropout=0.3, seeds=[10 + m])
        alone.params[...] = together.params[m]
        loss = alone.loss_and_grad(X[m:m + 1], y[m:m + 1])
        np.testing.assert_array_equal(loss[0], losses[m])
        np.testing.assert_array_equal(alone.grads[0], together.grads[m])
    with pytest.raises(ValueError, match="model of one member"):
        together.member(1).forward(X[1])
