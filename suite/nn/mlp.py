"""A multi-layer perceptron on a flat parameter buffer, with back-propagation by hand.

Layer l maps a^(l-1) to z^(l) = a^(l-1) W_l + b_l; hidden layers apply the
activation sigma (and dropout in training), the output layer is linear (the
loss applies softmax or squared error). All weights, biases and PReLU alphas
live in one flat buffer (``kernels.FlatLayout``: ``W1, b1, alpha1, W2, ...``)
and the gradients in a second with the same layout, so an optimiser updates
the whole network with one kernel launch. The same code runs on NumPy and
CuPy through the array module ``xp``.

Back-propagation (lecture section 2), with delta^(l) = dQ/dz^(l):

    dQ/dW_l = a^(l-1)^T delta^(l)           dQ/db_l = sum over objects of delta^(l)
    dQ/da^(l-1) = delta^(l) W_l^T           delta^(l-1) = dQ/da^(l-1) * sigma'(z^(l-1))

with dropout's factor xi / (1 - p) (inverted) or xi (classic) on dQ/da where
the forward pass applied it.

Dropout masks come from ``kernels.dropout`` (Philox keyed by the run's seed,
addressed by a running offset, so the backward pass regenerates them). For
the float64 gradient check a test passes fixed ``masks`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kernels import FlatLayout
from kernels import dropout as dropout_kernels
from kernels.backend import to_host

from .activations import PRELU_DEFAULT_ALPHA, get_activation
from .losses import get_loss

DROPOUT_MODES = dropout_kernels.MODES

#: Objects per batch at inference, per device. On the CPU a batch's
#: activations (1024 x 128 floats: 0.5 MB) stay in a core's L2 cache:
#: measured on the 2-core EPYC for the default MLP on mnist1d's 3000 training
#: objects, 1.4 ms in batches of 1024 against 3.5 ms in one batch of 3000.
#: A GPU wants batches large enough to fill it. Single runs and populations
#: use the same batches, so their per-batch sums agree.
EVAL_BATCH = {"cpu": 1 << 10, "gpu": 1 << 16}


def eval_batch(xp) -> int:
    """The inference batch for array module ``xp`` (see EVAL_BATCH)."""
    return EVAL_BATCH["cpu" if xp is np else "gpu"]


@dataclass
class Cache:
    """What backward needs from forward: inputs, pre-activations, dropout draws."""

    inputs: list = field(default_factory=list)   # a^(l-1) as seen by layer l (after dropout)
    preacts: list = field(default_factory=list)  # z^(l)
    acts: list = field(default_factory=list)     # sigma(z^(l)) before dropout
    offsets: list = field(default_factory=list)  # dropout offset per hidden layer (None: off)
    masks: list | None = None


def mlp_layout(sizes, activation) -> FlatLayout:
    """The flat buffer of a network: W1, b1 (alpha1 for PReLU), W2, ..."""
    tensors = []
    n_layers = len(sizes) - 1
    for l, (h, m) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        tensors += [(f"W{l}", (h, m)), (f"b{l}", (m,))]
        if activation.has_alpha and l < n_layers:
            tensors.append((f"alpha{l}", (1,)))
    return FlatLayout(tensors)


class MLP:
    """sizes = [n_in, h_1, ..., h_k, n_out]; dropout = p per hidden layer."""

    def __init__(self, sizes, activation="relu", loss="cross_entropy", dropout=0.0,
                 dropout_mode="inverted", xp=np, dtype=np.float32, dropout_seed=0):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ValueError(f"layer sizes must be >= 2 positive widths [n_in, ..., n_out], got {sizes}")
        self.sizes = sizes
        self.n_layers = len(sizes) - 1
        self.activation = get_activation(activation)
        self.loss = get_loss(loss)
        hidden = self.n_layers - 1
        ps = list(dropout) if isinstance(dropout, (list, tuple)) else [float(dropout)] * hidden
        if len(ps) != hidden:
            raise ValueError(f"dropout lists {len(ps)} rates but the network has {hidden} hidden layers")
        for p in ps:
            if not 0.0 <= float(p) < 1.0:
                raise ValueError(f"dropout p must lie in [0, 1), got {p}")
        if dropout_mode not in DROPOUT_MODES:
            raise ValueError(f"unknown dropout mode {dropout_mode!r}; allowed: {', '.join(DROPOUT_MODES)}")
        self.dropout = [float(p) for p in ps]
        self.dropout_mode = dropout_mode
        self.dropout_seed = int(dropout_seed)
        self.dropout_offset = 0  # advances with every training forward pass
        self.xp = xp
        self.layout = mlp_layout(sizes, self.activation)
        self.params = self.layout.allocate(xp, dtype)
        self.grads = self.params.like()
        if self.activation.has_alpha:
            for l in range(1, self.n_layers):
                self.params[f"alpha{l}"][...] = PRELU_DEFAULT_ALPHA

    # --- parameters -----------------------------------------------------------
    def set_layers(self, layers) -> None:
        """Copy [(W (h, m), b (m,)), ...] from the host into the flat buffer."""
        if len(layers) != self.n_layers:
            raise ValueError(f"got {len(layers)} layers for a network of {self.n_layers}")
        for l, (W, b) in enumerate(layers, start=1):
            for name, value in ((f"W{l}", W), (f"b{l}", b)):
                view = self.params[name]
                if tuple(np.shape(value)) != view.shape:
                    raise ValueError(f"{name} has shape {np.shape(value)}, the network needs {view.shape}")
                view[...] = self.xp.asarray(value, dtype=view.dtype)

    def _alpha(self, l):
        return self.params[f"alpha{l}"] if self.activation.has_alpha else None

    # --- forward / backward ------------------------------------------------------
    def forward(self, X, train: bool = False, masks=None):
        """Output z^(L) and the cache for backward.

        train: apply dropout (a fresh mask per call unless ``masks`` is given:
        a list of 0/1 arrays per hidden layer, for gradient checks).
        """
        xp = self.xp
        cache = Cache(masks=masks)
        a = X
        for l in range(1, self.n_layers + 1):
            cache.inputs.append(a)
            z = a @ self.params[f"W{l}"]
            z += self.params[f"b{l}"]
            cache.preacts.append(z)
            if l == self.n_layers:
                return z, cache
            act = self.activation.forward(z, alpha=self._alpha(l), xp=xp)
            cache.acts.append(act)
            a = self._dropout_forward(act, l, train, cache)
        raise AssertionError("unreachable")

    def _dropout_forward(self, act, l, train, cache):
        p = self.dropout[l - 1]
        if not train:
            cache.offsets.append(None)
            if self.dropout_mode == "classic" and p > 0:
                return act * (1.0 - p)  # the lecture's inference rule
            return act
        if cache.masks is not None:
            cache.offsets.append(None)
            return act * (cache.masks[l - 1] * dropout_kernels.training_scale(p, self.dropout_mode))
        if p == 0:
            cache.offsets.append(None)
            return act
        out = self.xp.empty_like(act)
        offset = self.dropout_offset
        dropout_kernels.dropout_forward(act, out, p, self.dropout_seed, offset, self.dropout_mode)
        self.dropout_offset = dropout_kernels.advance(offset, act.size)
        cache.offsets.append(offset)
        return out

    def _dropout_backward(self, grad, l, cache):
        p = self.dropout[l - 1]
        if cache.masks is not None and p > 0:
            return grad * (cache.masks[l - 1] * dropout_kernels.training_scale(p, self.dropout_mode))
        offset = cache.offsets[l - 1]
        if offset is None:
            return grad
        dropout_kernels.dropout_backward(grad, grad, p, self.dropout_seed, offset, self.dropout_mode)
        return grad

    def backward(self, cache, grad_z) -> None:
        """Fill ``self.grads`` with dQ/dparams given dQ/dz^(L) = ``grad_z``."""
        xp = self.xp
        delta = grad_z
        for l in range(self.n_layers, 0, -1):
            a_prev = cache.inputs[l - 1]
            xp.matmul(a_prev.T, delta, out=self.grads[f"W{l}"])
            delta.sum(axis=0, out=self.grads[f"b{l}"])
            if l == 1:
                break
            grad_a = delta @ self.params[f"W{l}"].T
            grad_a = self._dropout_backward(grad_a, l - 1, cache)
            delta, grad_alpha = self.activation.backward(
                grad_a, cache.preacts[l - 2], alpha=self._alpha(l - 1), xp=xp, a=cache.acts[l - 2])
            if grad_alpha is not None:
                self.grads[f"alpha{l - 1}"][...] = grad_alpha

    def loss_and_grad(self, X, y, masks=None):
        """Training loss on (X, y) as a 0-d array on the model's device, with
        gradients left in ``self.grads``."""
        z, cache = self.forward(X, train=True, masks=masks)
        loss, grad_z = self.loss.value_and_grad(self.xp, z, y)
        self.backward(cache, grad_z)
        return loss

    def evaluate(self, X, y, batch: int | None = None):
        """(mean loss, accuracy) at inference, in batches (default
        :func:`eval_batch`); accuracy is None for continuous targets. The sums
        stay on the device (float64) and are read back once, at the end."""
        xp, n = self.xp, X.shape[0]
        batch = batch or eval_batch(xp)
        labels = y.ndim == 1 and y.dtype.kind in "iu"
        total = correct = 0.0
        for start in range(0, n, batch):
            z, _ = self.forward(X[start:start + batch])
            yb = y[start:start + batch]
            loss, _ = self.loss.value_and_grad(xp, z, yb)
            total = total + loss.astype(np.float64) * z.shape[0]
            if labels:
                correct = correct + (z.argmax(axis=1) == yb).sum()
        total, correct = to_host(total, correct)
        return total / n, (correct / n if labels else None)
