"""Rosenblatt's perceptron (suite/perceptron.py)."""

import numpy as np
import pytest

from optbench.suite.data import datasets as data
from optbench.suite.lecture.perceptron import signed_labels, train_perceptron


def test_first_updates_follow_the_rule_by_hand():
    # Object 1 (x=(1,0), y=+1): w=0 gives score 0 -> mistake, w=(1,0), b=1.
    # Object 2 (x=(0,2), y=-1): score 0*1+2*0+1 = 1 > 0 -> mistake,
    #   w=(1,0)-(0,2)=(1,-2), b=0.
    # Epoch 2: scores 1*(1)+0 = 1 (ok), -1*(-4+0) = 4 (ok) -> converged.
    X = np.array([[1.0, 0.0], [0.0, 2.0]])
    y = np.array([1, -1])
    r = train_perceptron(X, y, eta=1.0)
    np.testing.assert_array_equal(r.w, [1.0, -2.0])
    assert r.b == 0.0
    assert r.mistakes_per_epoch == [2, 0] and r.converged and r.epochs == 2


def test_eta_scales_the_steps():
    X = np.array([[1.0, 0.0], [0.0, 2.0]])
    r = train_perceptron(X, np.array([1, -1]), eta=0.5)
    np.testing.assert_array_equal(r.w, [0.5, -1.0])
    assert r.b == 0.0


@pytest.mark.parametrize("seed", [None, 0, 1])
def test_converges_on_linearly_separable_blobs(seed):
    X, y01 = data.make_blobs(n_samples=300, n_classes=2, n_features=2, separable=True, spread=1.5)
    y = signed_labels(y01)
    r = train_perceptron(X, y, max_epochs=1000, seed=seed)
    assert r.converged and r.mistakes_per_epoch[-1] == 0
    assert r.epochs < 1000
    assert np.array_equal(r.predict(X), y)


def test_stops_at_max_epochs_on_xor():
    X = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    y = np.array([-1, -1, 1, 1])
    r = train_perceptron(X, y, max_epochs=25)
    assert not r.converged
    assert r.epochs == 25 and len(r.mistakes_per_epoch) == 25
    assert all(m > 0 for m in r.mistakes_per_epoch)


def test_stops_at_max_epochs_on_overlapping_blobs():
    X, y01 = data.make_blobs(n_samples=200, n_classes=2, spread=3.0)
    r = train_perceptron(X, signed_labels(y01), max_epochs=15, seed=0)
    assert not r.converged and r.epochs == 15


def test_signed_labels():
    assert signed_labels(np.array([0, 1, 1, 0])).tolist() == [-1, 1, 1, -1]
    assert signed_labels(np.array([3, 5]), positive=5).tolist() == [-1, 1]


def test_errors():
    X = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"-1 or \+1.*\[0\]"):
        train_perceptron(X, np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="max_epochs.*0"):
        train_perceptron(X, np.array([1, -1, 1]), max_epochs=0)
    with pytest.raises(ValueError, match="max_epochs"):
        train_perceptron(X, np.array([1, -1, 1]), max_epochs=-3)
    with pytest.raises(ValueError, match="eta"):
        train_perceptron(X, np.array([1, -1, 1]), eta=0.0)
    with pytest.raises(ValueError, match="shape"):
        train_perceptron(X, np.array([1, -1]))
