"""Activation functions and their derivatives on any array module (lecture section 8).

Each function takes the pre-activation z (the lecture's y in sigma(y): the
weighted sum sum_j w_jh x_j of a neuron) and the array module ``xp`` (numpy
or cupy; inferred from z when omitted). The dtype of z is kept: float32 in,
float32 out.

    sigmoid(z) = 1 / (1 + e^-z)          sigmoid'(z) = sigmoid(z) (1 - sigmoid(z))
    tanh(z)                              tanh'(z)    = 1 - tanh(z)^2
    relu(z)    = max(0, z)               relu'(z)    = [z > 0]
    prelu(z)   = max(0, z) + alpha min(0, z)
                                         dprelu/dz     = 1 if z > 0 else alpha
                                         dprelu/dalpha = min(0, z)

sigmoid and tanh flatten out for large |z| (horizontal asymptotes: the
derivative goes to 0 and the gradient vanishes -- the lecture's "network
paralysis"); relu and prelu do not for z > 0.

At the kink z = 0 the derivative is taken from the left: relu'(0) = 0,
prelu'(0) = alpha (what PyTorch does; relu is prelu with alpha = 0).

PReLU's alpha (the lecture's alpha, learned with the weights): one scalar per
layer by default (pass a Python float, a 0-d array or a shape-(1,) array); a
per-neuron alpha of shape (n_neurons,) also works. ``backward`` returns the
gradient for alpha summed to alpha's shape, ready to be written into the
parameter's slot in the flat gradient buffer.

``ACTIVATIONS`` maps each name to an :class:`Activation` with ``forward``,
``derivative`` and ``backward``; ``get_activation(name)`` gives a clear error
for an unknown name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from optbench.kernels.backend import array_module

PRELU_DEFAULT_ALPHA = 0.25  # He et al. 2015's initial alpha (PyTorch's default too)


def _xp(z, xp):
    return array_module(z) if xp is None else xp


def _alpha_like(alpha, z, xp):
    # An alpha held as a float64 scalar must not promote float32 activations.
    return xp.asarray(alpha, dtype=z.dtype)


# --- sigmoid --------------------------------------------------------------- #


def sigmoid(z, xp=None):
    """sigma(z) = 1 / (1 + e^-z), computed without overflow.

    e^-z overflows for z < -710 in float64 (-88 in float32); with
    e = e^-|z| <= 1 the two branches 1/(1+e) (z >= 0) and e/(1+e) (z < 0) are
    the same function and never overflow.
    """
    xp = _xp(z, xp)
    z = xp.asarray(z)
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_derivative(z, xp=None, a=None):
    """sigma'(z) = sigma(z) (1 - sigma(z)); ``a`` = sigmoid(z) if already known."""
    a = sigmoid(z, xp) if a is None else a
    return a * (1 - a)


# --- tanh ------------------------------------------------------------------ #


def tanh(z, xp=None):
    """tanh(z) = (e^z - e^-z) / (e^z + e^-z) = 2 sigma(2z) - 1."""
    xp = _xp(z, xp)
    return xp.tanh(xp.asarray(z))


def tanh_derivative(z, xp=None, a=None):
    """tanh'(z) = 1 - tanh(z)^2; ``a`` = tanh(z) if already known."""
    a = tanh(z, xp) if a is None else a
    return 1 - a * a


# --- relu ------------------------------------------------------------------ #


def relu(z, xp=None):
    """ReLU(z) = max(0, z)."""
    xp = _xp(z, xp)
    z = xp.asarray(z)
    return xp.maximum(z, 0)


def relu_derivative(z, xp=None, a=None):
    """ReLU'(z) = 1 for z > 0, else 0 (0 at the kink)."""
    xp = _xp(z, xp)
    z = xp.asarray(z)
    return (z > 0).astype(z.dtype)


# --- prelu ----------------------------------------------------------------- #


def prelu(z, alpha=PRELU_DEFAULT_ALPHA, xp=None):
    """PReLU(z) = max(0, z) + alpha * min(0, z), alpha learned (section 8)."""
    xp = _xp(z, xp)
    z = xp.asarray(z)
    return xp.maximum(z, 0) + _alpha_like(alpha, z, xp) * xp.minimum(z, 0)


def prelu_derivative(z, alpha=PRELU_DEFAULT_ALPHA, xp=None, a=None):
    """dPReLU/dz = 1 for z > 0, else alpha (alpha at the kink)."""
    xp = _xp(z, xp)
    z = xp.asarray(z)
    one = xp.ones((), dtype=z.dtype)
    return xp.where(z > 0, one, _alpha_like(alpha, z, xp))


def prelu_alpha_derivative(z, xp=None):
    """dPReLU/dalpha = min(0, z), element-wise (before summing over uses of alpha)."""
    xp = _xp(z, xp)
    return xp.minimum(xp.asarray(z), 0)


def sum_to_shape(g, shape):
    """Sum ``g`` over the axes along which a parameter of ``shape`` was
    broadcast (the reverse of broadcasting): () sums everything, (n,) with g
    of shape (batch, n) sums the batch axis."""
    shape = tuple(shape)
    lead = g.ndim - len(shape)
    if lead > 0:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


# --- into buffers made once: a training step that allocates nothing ------- #
# Each writes the same numbers as the functions above (the same operations in
# the same order, so bit for bit) into ``out``, given ``tmp``, a float buffer
# of z's shape, and ``mask``, a bool one. A step that allocates nothing can be
# captured as a CUDA graph (CUDA refuses an allocation inside a capture), and
# on the CPU it spares the allocator. PReLU has none: its alpha gradient is a
# reduction of its own, so a PReLU network's step allocates as before.


def relu_into(xp, z, out, tmp, mask):
    xp.maximum(z, 0, out=out)


def relu_backward_into(xp, grad_a, z, a, out, tmp, mask):
    xp.greater(z, 0, out=tmp)  # [z > 0] as 1.0 / 0.0, as relu_derivative's astype gives it
    xp.multiply(grad_a, tmp, out=out)


def tanh_into(xp, z, out, tmp, mask):
    xp.tanh(z, out=out)


def tanh_backward_into(xp, grad_a, z, a, out, tmp, mask):
    xp.multiply(a, a, out=tmp)
    xp.subtract(1, tmp, out=tmp)
    xp.multiply(grad_a, tmp, out=out)


def sigmoid_into(xp, z, out, tmp, mask):
    """Both of sigmoid's branches, then the one z's sign picks."""
    xp.abs(z, out=tmp)
    xp.negative(tmp, out=tmp)
    xp.exp(tmp, out=tmp)          # e = e^-|z|
    xp.add(1, tmp, out=out)       # 1 + e
    xp.divide(tmp, out, out=tmp)  # e / (1 + e): z < 0
    xp.divide(1, out, out=out)    # 1 / (1 + e): z >= 0
    xp.less(z, 0, out=mask)
    xp.copyto(out, tmp, where=mask)


def sigmoid_backward_into(xp, grad_a, z, a, out, tmp, mask):
    xp.subtract(1, a, out=tmp)
    xp.multiply(a, tmp, out=tmp)
    xp.multiply(grad_a, tmp, out=out)


# --- the table ------------------------------------------------------------- #


@dataclass(frozen=True)
class Activation:
    """One activation: its name, forward, element-wise derivative, and whether
    it has the learned parameter alpha (only prelu)."""

    name: str
    _forward: Callable
    _derivative: Callable
    has_alpha: bool = False
    #: (forward_into, backward_into): the same into buffers made once; None for PReLU.
    into: tuple | None = None

    def forward(self, z, alpha=None, xp=None):
        """a = sigma(z). ``alpha`` is used by prelu only (default 0.25)."""
        if self.has_alpha:
            return self._forward(z, PRELU_DEFAULT_ALPHA if alpha is None else alpha, xp)
        return self._forward(z, xp)

    def derivative(self, z, alpha=None, xp=None, a=None):
        """da/dz element-wise; ``a`` (the forward output) saves recomputing it."""
        if self.has_alpha:
            return self._derivative(z, PRELU_DEFAULT_ALPHA if alpha is None else alpha, xp)
        return self._derivative(z, xp, a)

    def backward(self, grad_a, z, alpha=None, xp=None, a=None):
        """Chain rule through a = sigma(z), given dQ/da = ``grad_a``.

        Returns (dQ/dz, dQ/dalpha): dQ/dz = grad_a * sigma'(z) element-wise;
        dQ/dalpha = sum over every element alpha was used for of
        grad_a * min(0, z), shaped like alpha -- None for activations
        without alpha.
        """
        grad_z = grad_a * self.derivative(z, alpha, xp, a)
        if not self.has_alpha:
            return grad_z, None
        xp = _xp(z, xp)
        alpha = PRELU_DEFAULT_ALPHA if alpha is None else alpha
        g = grad_a * prelu_alpha_derivative(z, xp)
        return grad_z, sum_to_shape(g, xp.asarray(alpha).shape)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation("sigmoid", sigmoid, sigmoid_derivative, into=(sigmoid_into, sigmoid_backward_into)),
    "tanh": Activation("tanh", tanh, tanh_derivative, into=(tanh_into, tanh_backward_into)),
    "relu": Activation("relu", relu, relu_derivative, into=(relu_into, relu_backward_into)),
    "prelu": Activation("prelu", prelu, prelu_derivative, has_alpha=True),
}


def get_activation(name: str) -> Activation:
    """The activation called ``name``; ValueError listing the allowed names."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}"
        ) from None
