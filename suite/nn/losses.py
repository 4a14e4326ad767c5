"""Losses on the network's output layer, and their gradients, per member.

A model holds P members (a single run is P = 1): outputs ``z`` are (P, B, k),
targets ``y`` (P, B) class labels or (P, B[, k]) continuous values. Each
member's loss is averaged over its B objects, so a learning rate means the
same thing at every batch size (the lecture sums over objects; its Q is ours
times N).

* ``squared``: the lecture's Q = 1/2 sum_q (y~_q - y_q)^2 per object, with a
  linear output y~ = z (for regression, or one-hot targets);
* ``cross_entropy``: softmax cross-entropy, -log softmax(z)_y per object.

``value_and_grad(xp, z, y)`` returns ((P,) mean losses, dQ/dz);
``value_and_grad(xp, z, y, grad=False)`` returns (losses, None), for
evaluation, which needs no gradient (four launches fewer on a GPU). The losses
are arrays on z's device, not Python floats: reading them back would make a
GPU wait at every step (``kernels.backend.to_host`` reads them when needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


def squared(xp, z, y, grad: bool = True):
    """Per member: mean over its objects of 1/2 sum_q (z_q - y_q)^2; dQ/dz = (z - y) / B."""
    if y.ndim == 2 and y.dtype.kind in "iu":  # labels: one-hot rows
        t = (y[..., None] == xp.arange(z.shape[-1])).astype(z.dtype)
    else:
        t = y.reshape(z.shape).astype(z.dtype, copy=False)
    diff = z - t
    n = z.shape[-2]
    return 0.5 * (diff * diff).reshape(z.shape[0], -1).sum(axis=1) / n, (diff / n if grad else None)


def cross_entropy(xp, z, y, grad: bool = True):
    """Per member: mean over its objects of -log softmax(z)_y; dQ/dz =
    (softmax(z) - onehot(y)) / B. Log-sum-exp with the row maximum
    subtracted, so large logits don't overflow."""
    P, n, k = z.shape
    shifted = z - z.max(axis=-1, keepdims=True)
    e = xp.exp(shifted)
    s = e.sum(axis=-1, keepdims=True)
    rows, labels = _rows(xp, P * n), y.reshape(-1)  # each object's row of the (P B, k) view, and its label
    picked = shifted.reshape(P * n, k)[rows, labels].reshape(P, n)
    loss = (xp.log(s[..., 0]) - picked).sum(axis=-1) / n
    if not grad:
        return loss, None
    dz = e / s
    dz.reshape(P * n, k)[rows, labels] -= 1
    dz /= n
    return loss, dz


def squared_into(xp, z, y, work) -> None:
    """:func:`squared` into ``work``'s buffers (``loss`` (P,), ``dz``, ``tmp``
    like z; ``onehot`` (1, 1, k) ints 0..k-1 for labels): the same operations
    in the same order, so the same bits, and nothing allocated."""
    n = z.shape[-2]
    if y.ndim == 2 and y.dtype.kind in "iu":
        xp.equal(y[..., None], work.classes, out=work.tmp)
        xp.subtract(z, work.tmp, out=work.dz)
    else:
        xp.subtract(z, y.reshape(z.shape), out=work.dz)
    xp.multiply(work.dz, work.dz, out=work.tmp)
    work.tmp.reshape(z.shape[0], -1).sum(axis=1, out=work.loss)
    xp.multiply(work.loss, 0.5, out=work.loss)
    xp.divide(work.loss, n, out=work.loss)
    xp.divide(work.dz, n, out=work.dz)


def cross_entropy_into(xp, z, y, work) -> None:
    """:func:`cross_entropy` into ``work``'s buffers (``loss`` (P,), ``dz`` and
    ``tmp`` like z, ``top`` and ``s`` (P, B, 1), ``picked`` and ``lse`` (P, B),
    ``at`` (P B,) ints, ``row_at`` (P B,) the row starts 0, k, 2k, ...): the
    same operations in the same order, so the same bits. The label's entry
    of each row is read and written through flat positions (take, put), which
    allocate nothing, where fancy indexing makes its result."""
    P, n, k = z.shape
    shifted, e = work.tmp, work.dz
    z.max(axis=-1, keepdims=True, out=work.top)
    xp.subtract(z, work.top, out=shifted)
    xp.exp(shifted, out=e)
    e.sum(axis=-1, keepdims=True, out=work.s)
    xp.add(work.row_at, y.reshape(-1), out=work.at)  # each object's label, as a flat position
    fast = {"mode": "clip"} if xp.__name__ == "numpy" else {}  # positions in range: NumPy need not buffer
    xp.take(shifted.reshape(-1), work.at, out=work.picked.reshape(-1), **fast)
    xp.log(work.s[..., 0], out=work.lse)
    xp.subtract(work.lse, work.picked, out=work.lse)
    work.lse.sum(axis=-1, out=work.loss)
    xp.divide(work.loss, n, out=work.loss)
    xp.divide(e, work.s, out=work.dz)  # e is dz's buffer: softmax in place
    xp.take(work.dz.reshape(-1), work.at, out=work.picked.reshape(-1), **fast)
    xp.subtract(work.picked, 1, out=work.picked)
    xp.put(work.dz.reshape(-1), work.at, work.picked.reshape(-1))
    xp.divide(work.dz, n, out=work.dz)


_ROWS: dict = {}


def _rows(xp, n: int):
    """arange(n) on ``xp``'s device, made once per size (a step's index)."""
    key = (xp.__name__, n)
    if key not in _ROWS:
        _ROWS[key] = xp.arange(n)
    return _ROWS[key]


@dataclass(frozen=True)
class Loss:
    name: str
    value_and_grad: Callable
    #: The task the loss is for: cross-entropy needs integer class labels.
    needs_labels: bool
    #: value_and_grad into buffers made once (``(xp, z, y, work)``).
    into: Callable | None = None


LOSSES = {
    "squared": Loss("squared", squared, needs_labels=False, into=squared_into),
    "cross_entropy": Loss("cross_entropy", cross_entropy, needs_labels=True, into=cross_entropy_into),
}


def get_loss(name: str) -> Loss:
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}") from None
