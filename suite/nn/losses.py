"""Losses on the network's output layer, and their gradients.

Both are averaged over the objects of a batch, so a learning rate means the
same thing at every batch size (the lecture sums over objects; its Q is ours
times N).

* ``squared``: the lecture's Q = 1/2 sum_q (y~_q - y_q)^2 per object, with a
  linear output y~ = z (for regression, or one-hot targets);
* ``cross_entropy``: softmax cross-entropy, -log softmax(z)_y per object.

``value_and_grad(z, y)`` returns (mean loss, dQ/dz). The loss is a 0-d array
on z's device, not a Python float: reading it back would make a GPU wait at
every step (``kernels.backend.to_host`` reads it when it is needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


def _one_hot(xp, y, k, dtype):
    t = xp.zeros((y.shape[0], k), dtype=dtype)
    t[xp.arange(y.shape[0]), y] = 1
    return t


def _targets(xp, z, y):
    """Integer class labels become one-hot rows; continuous targets stay."""
    if y.ndim == 1 and y.dtype.kind in "iu":
        return _one_hot(xp, y, z.shape[1], z.dtype)
    return y.reshape(z.shape).astype(z.dtype, copy=False)


def squared(xp, z, y):
    """Q = mean over objects of 1/2 sum_q (z_q - y_q)^2; dQ/dz = (z - y) / N."""
    diff = z - _targets(xp, z, y)
    n = z.shape[0]
    return 0.5 * (diff * diff).sum() / n, diff / n


def cross_entropy(xp, z, y):
    """Q = mean over objects of -log softmax(z)_y; dQ/dz = (softmax(z) - onehot(y)) / N.

    Log-sum-exp with the row maximum subtracted, so large logits don't overflow.
    """
    n = z.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)
    e = xp.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    rows = xp.arange(n)
    loss = (xp.log(s[:, 0]) - shifted[rows, y]).sum() / n
    grad = e / s
    grad[rows, y] -= 1
    grad /= n
    return loss, grad


@dataclass(frozen=True)
class Loss:
    name: str
    value_and_grad: Callable
    #: The task the loss is for: cross-entropy needs integer class labels.
    needs_labels: bool


LOSSES = {
    "squared": Loss("squared", squared, needs_labels=False),
    "cross_entropy": Loss("cross_entropy", cross_entropy, needs_labels=True),
}


def get_loss(name: str) -> Loss:
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}") from None

