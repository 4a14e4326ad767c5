"""An optimiser: one rule bound to a flat parameter buffer and its state.

>>> import numpy as np
>>> from kernels import FlatLayout, Optimizer
>>> params = FlatLayout([("W", (2, 3)), ("b", (3,))]).allocate()
>>> opt = Optimizer("adam", params, lr=0.1)
>>> grads = params.like(); grads["W"][:] = 1.0
>>> opt.step(grads)            # one launch over the whole buffer
>>> float(params["W"][0, 0])   # Adam's first step is -lr * sign(g)
-0.1

``step`` checks its inputs (same size, float32, contiguous, same device),
computes the step's scalars on the host in double, and runs the rule's
kernel for the backend that owns the buffers: the generated CUDA kernel for
CuPy arrays, the chunked in-place NumPy program otherwise.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .cuda_path import CupyKernel
from .flat import FlatBuffer
from .numpy_path import NumpyKernel
from .rule import Rule, masked
from .rules import get_rule

_KERNELS: dict[tuple[str, str], object] = {}


def kernel_for(rule: Rule, backend: str):
    """The cached kernel of ``rule`` for backend "numpy" or "cupy"."""
    key = (rule.name, backend)  # a masked variant has its own name
    if key not in _KERNELS:
        _KERNELS[key] = CupyKernel(rule) if backend == "cupy" else NumpyKernel(rule)
    return _KERNELS[key]


def _array_backend(a) -> str:
    if isinstance(a, np.ndarray):
        return "numpy"
    if type(a).__module__.startswith("cupy"):
        return "cupy"
    raise TypeError(f"expected a numpy or cupy array, got {type(a).__name__}")


def check_buffer(name: str, a, n: int | None = None, backend: str | None = None) -> None:
    """A clear error unless ``a`` is a 1-D contiguous float32 array of n elements."""
    kind = _array_backend(a)
    if a.dtype != np.float32:
        raise TypeError(f"buffer {name!r} must be float32, got {a.dtype}")
    if a.ndim != 1 or not a.flags.c_contiguous:
        raise ValueError(f"buffer {name!r} must be 1-D and contiguous, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(
            f"buffer {name!r} has {a.shape[0]} elements but the parameters have {n}"
        )
    if backend is not None and kind != backend:
        raise TypeError(f"buffer {name!r} is a {kind} array but the parameters are {backend}")


class Optimizer:
    """Rule ``rule`` over the flat parameter buffer ``params``.

    params: a :class:`FlatBuffer` or a 1-D float32 array (NumPy or CuPy);
    hyper: the rule's hyper-parameters (see ``kernels.rules``), e.g. lr=0.01.
    state: dict of zero-initialised buffers the size of params.
    t: number of steps taken so far.
    """

    def __init__(self, rule: str | Rule, params, mask=None, **hyper: float):
        self.rule = rule if isinstance(rule, Rule) else get_rule(rule)
        self.params = params.data if isinstance(params, FlatBuffer) else params
        check_buffer("w", self.params)
        self.backend = _array_backend(self.params)
        self.mask = None
        if mask is not None:
            self.set_mask(mask)
        self.hyper = self.rule.resolve(hyper)
        xp = np if self.backend == "numpy" else __import__("cupy")
        self.state = {s: xp.zeros_like(self.params) for s in self.rule.state}
        self.t = 0
        if self.mask is None:
            self.kernel = kernel_for(self.rule, self.backend)

    def set_mask(self, mask) -> None:
        """Keep parameters where ``mask`` is 1 and hold them at exactly 0
        where it is 0, inside every later update (one launch, masked rule).
        The parameters under a 0 are zeroed now. None removes the mask."""
        if mask is None:
            self.mask, self.kernel = None, kernel_for(self.rule, self.backend)
            return
        mask = mask.data if isinstance(mask, FlatBuffer) else mask
        check_buffer("mask", mask, self.params.shape[0], self.backend)
        self.mask = mask
        self.kernel = kernel_for(masked(self.rule), self.backend)
        self.params *= mask
        for s in getattr(self, "state", {}).values():
            s *= mask

    def buffers(self, grads) -> dict:
        g = grads.data if isinstance(grads, FlatBuffer) else grads
        check_buffer("g", g, self.params.shape[0], self.backend)
        extra = {} if self.mask is None else {"mask": self.mask}
        return {"w": self.params, "g": g, **extra, **self.state}

    def step(self, grads) -> None:
        """One update of every parameter: w, state := rule(w, g, state)."""
        buffers = self.buffers(grads)
        self.t += 1
        self.kernel(buffers, self.rule.step_scalars(self.hyper, self.t))

    def weights(self):
        """The weights to evaluate (Nesterov keeps the look-ahead point)."""
        if self.rule.weights is None:
            return self.params
        return self.rule.weights(self.params, self.state, self.hyper)

    def scalars(self) -> Mapping[str, float]:
        """The scalars the next step will use."""
        return self.rule.step_scalars(self.hyper, self.t + 1)
