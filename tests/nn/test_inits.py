"""Initialisation schemes (suite/inits.py): statistics, orthogonality, pre-training."""

import numpy as np
import pytest

from optbench.suite.data import datasets as data
from optbench.suite.nn import inits
from optbench.suite.nn.activations import get_activation
from optbench.suite.nn.inits import INITS, init_layer, init_layers, pretrain_layers

FAN_IN, FAN_OUT = 300, 400  # 120,000 weights: sampling error of the variance ~0.4 %


def rng(seed=0):
    return np.random.default_rng(seed)


def sample_variance_tolerance(w, fourth_moment_over_var2):
    """5 standard errors of the sample variance of len(w) i.i.d. zero-mean
    draws: Var(w^2) = (E w^4 / var^2 - 1) var^2."""
    return 5 * np.sqrt((fourth_moment_over_var2 - 1) / w.size)


@pytest.mark.parametrize("scheme", [s for s in INITS if INITS[s] is not None])
def test_shapes_dtypes_and_zero_bias(scheme):
    W, b = init_layer(scheme, 5, 3, rng())
    assert W.shape == (5, 3) and W.dtype == np.float32
    assert b.shape == (3,) and b.dtype == np.float32 and not b.any()


@pytest.mark.parametrize("scheme", [s for s in INITS if INITS[s] is not None])
def test_same_rng_seed_same_weights(scheme):
    a, _ = init_layer(scheme, 20, 10, rng(4))
    b, _ = init_layer(scheme, 20, 10, rng(4))
    c, _ = init_layer(scheme, 20, 10, rng(5))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_uniform_bound_and_variance():
    W, _ = init_layer("uniform", FAN_IN, FAN_OUT, rng())
    bound = 1 / np.sqrt(FAN_IN)
    assert np.abs(W).max() <= bound
    assert np.abs(W).max() > 0.999 * bound
    var = 1 / (3 * FAN_IN)  # U(-a, a): a^2 / 3
    # Uniform: E w^4 / var^2 = 9/5.
    assert W.astype(np.float64).var() == pytest.approx(var, rel=sample_variance_tolerance(W, 9 / 5))
    assert abs(W.mean()) < 5 * np.sqrt(var / W.size)


def test_xavier_uses_the_canonical_bound_not_the_slide_misprint():
    W, _ = init_layer("xavier", FAN_IN, FAN_OUT, rng())
    bound = np.sqrt(6) / np.sqrt(FAN_IN + FAN_OUT)
    assert inits.xavier_bound(FAN_IN, FAN_OUT) == pytest.approx(bound)
    assert np.abs(W).max() <= bound  # the misprint 6/sqrt(h+m) is sqrt(6) times wider
    assert np.abs(W).max() > 0.999 * bound
    var = 2 / (FAN_IN + FAN_OUT)
    assert W.astype(np.float64).var() == pytest.approx(var, rel=sample_variance_tolerance(W, 9 / 5))


def test_he_is_normal_with_variance_two_over_fan_in():
    W = init_layer("he", FAN_IN, FAN_OUT, rng())[0].astype(np.float64)
    var = 2 / FAN_IN
    # Normal: E w^4 / var^2 = 3.
    assert W.var() == pytest.approx(var, rel=sample_variance_tolerance(W, 3))
    # Normal, not uniform: the excess kurtosis is 0 (uniform's is -1.2).
    kurtosis = np.mean(W**4) / W.var() ** 2
    assert kurtosis == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize("shape", [(50, 50), (80, 30), (30, 80), (1, 7), (7, 1)])
def test_orthogonal_columns_or_rows(shape):
    W, _ = init_layer("orthogonal", *shape, rng())
    W = W.astype(np.float64)
    h, m = shape
    gram = W.T @ W if h >= m else W @ W.T
    np.testing.assert_allclose(gram, np.eye(min(h, m)), atol=1e-5)


def test_orthogonal_sign_fix_gives_unbiased_diagonal():
    # Without the sign fix, numpy's QR makes R's diagonal negative and Q's
    # diagonal entries skew one way; with it they average to ~0.
    diag = np.concatenate(
        [np.diag(init_layer("orthogonal", 4, 4, rng(s))[0]) for s in range(500)]
    )
    assert abs(diag.mean()) < 0.05


def test_orthogonal_gain():
    W = inits.orthogonal_init(10, 10, rng(), gain=2.0)
    np.testing.assert_allclose(W.T @ W, 4 * np.eye(10), atol=1e-10)


# --- pretrain -------------------------------------------------------------- #


@pytest.fixture(scope="module")
def digits():
    d = data.load("digits", seed=0)
    return d.X_train.astype(np.float64), d.y_train


def one_vs_rest(y, n):
    classes = np.unique(y)
    return np.stack([np.where(y == classes[j % len(classes)], 1.0, -1.0) for j in range(n)], axis=1)


def readout_error(H, y):
    """Mean squared error of the least-squares read-out of +-1 class
    indicators from features H (with a bias): how linearly useful H is."""
    A = np.hstack([H, np.ones((len(H), 1))])
    T = one_vs_rest(y, len(np.unique(y)))
    coef, *_ = np.linalg.lstsq(A, T, rcond=None)
    return float(np.mean((A @ coef - T) ** 2))


@pytest.mark.parametrize("mode", inits.PRETRAIN_MODES)
def test_pretrain_shapes_and_neurons_differ(digits, mode):
    X, y = digits
    layers = pretrain_layers(X, y, [64, 24, 12, 10], "tanh", rng(), mode=mode)
    assert [W.shape for W, _ in layers] == [(64, 24), (24, 12), (12, 10)]
    assert all(W.dtype == np.float32 and b.dtype == np.float32 for W, b in layers)
    for W, _ in layers[:-1]:
        Wn = W / np.linalg.norm(W, axis=0)
        cos = Wn.T @ Wn
        np.fill_diagonal(cos, 0)
        # Neurons j and j+10 share a target; their own subsample / inputs
        # make them differ.
        assert np.abs(cos).max() < 0.99


def test_pretrain_inputs_mode_uses_a_subset_of_inputs(digits):
    X, y = digits
    (W, _), _ = pretrain_layers(X, y, [64, 20, 10], "tanh", rng(), mode="inputs", input_fraction=0.25)
    nonzero = (W != 0).sum(axis=0)
    assert np.all(nonzero <= 16)
    supports = {tuple(np.flatnonzero(W[:, j])) for j in range(20)}
    assert len(supports) == 20  # every neuron got its own subset


def test_pretrain_neurons_fit_their_targets_better_than_random(digits):
    X, y = digits
    (Wp, bp), _ = pretrain_layers(X, y, [64, 30, 10], "tanh", rng())
    Wr, br = init_layer("xavier", 64, 30, rng())
    T = one_vs_rest(y, 30)
    # Sign agreement of each neuron's pre-activation with its own target.
    acc_pre = np.mean(np.sign(X @ Wp + bp) == T)
    acc_rand = np.mean(np.sign(X @ Wr + br) == T)
    assert acc_pre > 0.9 and acc_pre > acc_rand + 0.3


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_pretrain_reduces_linear_fit_error_vs_random(digits, activation):
    X, y = digits
    a = get_activation(activation)
    (Wp, bp), _ = pretrain_layers(X, y, [64, 20, 10], activation, rng())
    Wr, br = init_layer("xavier", 64, 20, rng())
    pre = readout_error(a.forward(X @ Wp + bp), y)
    rand = readout_error(a.forward(X @ Wr + br), y)
    assert pre < 0.7 * rand


def test_pretrain_rescales_preactivations_so_they_do_not_saturate(digits):
    X, y = digits
    (W, b), _ = pretrain_layers(X, y, [64, 16, 10], "tanh", rng(), preact_std=1.0)
    z = X @ W.astype(np.float64) + b
    np.testing.assert_allclose(np.sqrt(np.mean(z**2, axis=0)), 1.0, rtol=1e-4)
    assert np.mean(np.abs(np.tanh(z)) > 0.99) < 0.01


def test_pretrain_output_layer_is_a_readout(digits):
    X, y = digits
    layers = pretrain_layers(X, y, [64, 32, 10], "tanh", rng())
    H = np.tanh(X @ layers[0][0] + layers[0][1])
    logits = H @ layers[1][0] + layers[1][1]
    assert np.mean(np.argmax(logits, axis=1) == y) > 0.8


def test_pretrain_regression_targets():
    d = data.load("regression")
    X, y = d.X_train.astype(np.float64), d.y_train
    layers = pretrain_layers(X, y, [d.n_features, 8, 1], "tanh", rng())
    H = np.tanh(X @ layers[0][0] + layers[0][1])
    pred = H @ layers[1][0] + layers[1][1]
    assert np.mean((pred - y) ** 2) < np.var(y)


def test_init_layers_dispatches(digits):
    X, y = digits
    assert len(init_layers("he", [64, 8, 10], rng())) == 2
    assert len(init_layers("pretrain", [64, 8, 10], rng(), X=X, y=y, activation="relu", mode="inputs")) == 2


# --- errors ---------------------------------------------------------------- #


def test_unknown_init_lists_the_choices():
    with pytest.raises(ValueError, match=r"'glorot'.*uniform.*xavier.*he.*orthogonal.*pretrain"):
        init_layer("glorot", 3, 3, rng())
    with pytest.raises(ValueError, match="'glorot'"):
        init_layers("glorot", [3, 3], rng())


def test_pretrain_through_init_layer_points_to_pretrain_layers():
    with pytest.raises(ValueError, match="pretrain_layers"):
        init_layer("pretrain", 3, 3, rng())
    with pytest.raises(ValueError, match="pass X and y"):
        init_layers("pretrain", [3, 3], rng())


def test_pretrain_argument_errors(digits):
    X, y = digits
    with pytest.raises(ValueError, match=r"'features'.*objects.*inputs"):
        pretrain_layers(X, y, [64, 10], "tanh", rng(), mode="features")
    with pytest.raises(ValueError, match="sizes"):
        pretrain_layers(X, y, [63, 10], "tanh", rng())
    with pytest.raises(ValueError, match="'swish'"):
        pretrain_layers(X, y, [64, 10], "swish", rng())


@pytest.mark.parametrize("fan_in, fan_out", [(0, 3), (3, 0), (-1, 2)])
def test_bad_fan_sizes(fan_in, fan_out):
    with pytest.raises(ValueError, match="positive integer"):
        init_layer("uniform", fan_in, fan_out, rng())
