"""Activations and their derivatives (suite/activations.py)."""

import warnings

import numpy as np
import pytest

from optbench.suite.nn import activations as act
from optbench.suite.nn.activations import ACTIVATIONS, get_activation

# Points away from relu/prelu's kink at 0, where the central difference with
# step H would straddle it.
H = 1e-6
Z = np.concatenate([np.linspace(-6, -0.01, 40), np.linspace(0.01, 6, 40)])


def central_difference(f, z, h=H):
    return (f(z + h) - f(z - h)) / (2 * h)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_derivative_matches_central_difference(name):
    a = get_activation(name)
    alpha = 0.3
    numeric = central_difference(lambda z: a.forward(z, alpha=alpha), Z)
    np.testing.assert_allclose(a.derivative(Z, alpha=alpha), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_backward_is_the_chain_rule(name):
    a = get_activation(name)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 3))
    g = rng.normal(size=(5, 3))
    grad_z, grad_alpha = a.backward(g, z, alpha=0.2)
    np.testing.assert_allclose(grad_z, g * a.derivative(z, alpha=0.2))
    assert (grad_alpha is None) == (not a.has_alpha)


def test_prelu_alpha_gradient_matches_central_difference():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(8, 4))
    g = rng.normal(size=(8, 4))
    alpha = 0.2

    def loss(al):  # Q = sum(g * prelu(z; alpha)), so dQ/dz = g
        return np.sum(g * act.prelu(z, al))

    _, grad_alpha = ACTIVATIONS["prelu"].backward(g, z, alpha=alpha)
    numeric = central_difference(loss, alpha)
    assert np.ndim(grad_alpha) == 0
    assert float(grad_alpha) == pytest.approx(numeric, rel=1e-6)


def test_prelu_per_neuron_alpha_gradient_has_alpha_shape():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(16, 3))
    g = rng.normal(size=(16, 3))
    alpha = np.array([0.1, 0.2, 0.3])
    _, grad_alpha = ACTIVATIONS["prelu"].backward(g, z, alpha=alpha)
    assert grad_alpha.shape == (3,)
    for k in range(3):
        e = np.zeros(3)
        e[k] = H
        numeric = (np.sum(g * act.prelu(z, alpha + e)) - np.sum(g * act.prelu(z, alpha - e))) / (2 * H)
        assert grad_alpha[k] == pytest.approx(numeric, rel=1e-6)
    # A shape-(1,) alpha (one scalar per layer in a flat buffer) keeps its shape.
    _, g1 = ACTIVATIONS["prelu"].backward(g, z, alpha=np.array([0.25]))
    assert g1.shape == (1,)


def test_forward_values():
    z = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(act.sigmoid(z), 1 / (1 + np.exp(-z)))
    np.testing.assert_allclose(act.tanh(z), np.tanh(z))
    np.testing.assert_array_equal(act.relu(z), [0.0, 0.0, 3.0])
    np.testing.assert_allclose(act.prelu(z, 0.1), [-0.2, 0.0, 3.0])


def test_relu_is_prelu_with_zero_alpha_and_kink_convention():
    z = np.linspace(-3, 3, 13)  # includes 0
    np.testing.assert_array_equal(act.relu(z), act.prelu(z, 0.0))
    np.testing.assert_array_equal(act.relu_derivative(z), act.prelu_derivative(z, 0.0))
    assert act.relu_derivative(np.array([0.0]))[0] == 0.0
    assert act.prelu_derivative(np.array([0.0]), 0.3)[0] == pytest.approx(0.3)


def test_sigmoid_is_stable_at_extremes():
    z = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow in exp would raise here
        s = act.sigmoid(z)
        s32 = act.sigmoid(z.astype(np.float32))
        d = act.sigmoid_derivative(z)
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(s32))
    assert s[0] == 0.0 and s[-1] == 1.0 and s[2] == 0.5
    assert s[1] == pytest.approx(np.exp(-50.0), rel=1e-12)  # no cancellation for z << 0
    assert d[0] == 0.0 and d[-1] == 0.0


def test_saturating_activations_have_vanishing_derivatives():
    # The lecture's "network paralysis": sigmoid' and tanh' -> 0 for large |z|.
    for name in ("sigmoid", "tanh"):
        assert get_activation(name).derivative(np.array([20.0]))[0] < 1e-8
    assert get_activation("relu").derivative(np.array([20.0]))[0] == 1.0


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_float32_in_float32_out(name):
    a = get_activation(name)
    z = np.linspace(-3, 3, 7, dtype=np.float32)
    assert a.forward(z, alpha=np.float64(0.25)).dtype == np.float32
    assert a.derivative(z, alpha=np.float64(0.25)).dtype == np.float32
    gz, _ = a.backward(np.ones_like(z), z, alpha=np.float64(0.25))
    assert gz.dtype == np.float32


def test_derivative_reuses_a_given_forward_output():
    z = np.linspace(-2, 2, 9)
    for name in ("sigmoid", "tanh"):
        a = get_activation(name)
        np.testing.assert_allclose(a.derivative(z, a=a.forward(z)), a.derivative(z))


def test_explicit_xp_is_used():
    class Spy:
        """numpy, counting the calls that go through it."""

        calls = 0

        def __getattr__(self, attr):
            Spy.calls += 1
            return getattr(np, attr)

    z = np.array([-1.0, 1.0])
    for a in ACTIVATIONS.values():
        before = Spy.calls
        a.forward(z, alpha=0.1, xp=Spy())
        assert Spy.calls > before, a.name


def test_unknown_activation_lists_the_choices():
    with pytest.raises(ValueError, match=r"'gelu'.*sigmoid.*tanh.*relu.*prelu"):
        get_activation("gelu")
