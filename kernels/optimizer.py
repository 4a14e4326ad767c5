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
computes the step's scalars on the host in double (with the step's lr under
a learning-rate ``schedule``: :mod:`kernels.schedules`), and runs the rule's
kernel for the backend that owns the buffers: the generated CUDA kernel for
CuPy arrays, the chunked in-place NumPy program otherwise -- or, with
``backend="numba"``, the generated Numba loop over the same NumPy arrays.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import array_kind, array_module
from .codegen.cuda_kernel import CupyKernel
from .codegen.numba_kernel import NumbaKernel
from .codegen.numpy_kernel import NumpyKernel
from .flat import FlatBuffer
from .rule import Rule
from .rules import get_rule
from .schedules import Schedule, as_schedule, check_bound, scheduled
from .transforms import decay_masked, masked

_KERNELS: dict[tuple[str, str], object] = {}
_KERNEL_CLASSES = {"numpy": NumpyKernel, "numba": NumbaKernel, "cupy": CupyKernel}
#: The kernel backends that can update each kind of array; the first is the
#: one used when no ``backend`` is given.
ARRAY_KERNELS = {"numpy": ("numpy", "numba"), "cupy": ("cupy",)}


def kernel_for(rule: Rule, backend: str):
    """The cached kernel of ``rule`` for backend "numpy", "numba" or "cupy"."""
    if backend not in _KERNEL_CLASSES:
        raise ValueError(f"no kernels for backend {backend!r}; allowed: {', '.join(_KERNEL_CLASSES)}")
    key = (rule, backend)  # rules hash by identity; transforms are cached objects
    if key not in _KERNELS:
        _KERNELS[key] = _KERNEL_CLASSES[backend](rule)
    return _KERNELS[key]


def check_buffer(name: str, a, n: int | None = None, backend: str | None = None) -> None:
    """A clear error unless ``a`` is a 1-D contiguous float32 array of n elements."""
    kind = array_kind(a)
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


def check_flag(flag, arrays: str) -> None:
    """An ``active`` flag: int32, at least one element, on the parameters' device."""
    if array_kind(flag) != arrays:
        raise TypeError(f"the active flag is a {array_kind(flag)} array but the parameters are {arrays}")
    if flag.dtype != np.int32 or flag.size < 1:
        raise TypeError(f"the active flag must be an int32 array, got {flag.dtype} of shape {flag.shape}")


#: Cache-line alignment for the CPU state buffers: an unaligned buffer makes
#: every 64-byte vector load straddle two lines (NumPy's large arrays start 16
#: bytes into a page). Measured on a 2-core EPYC, one thread at 2^24: SGD
#: 37.1 GB/s aligned vs 34.6 at a 16-byte offset, Adam 24.4 vs 22.3.
CPU_ALIGN_BYTES = 64


def aligned_zeros(n: int, align: int = CPU_ALIGN_BYTES) -> np.ndarray:
    """n zero float32 in a NumPy array whose data starts on an ``align``-byte boundary."""
    extra = align // 4
    raw = np.zeros(n + extra, dtype=np.float32)
    start = (-raw.ctypes.data % align) // 4
    return raw[start : start + n]


def _kernel_backend(arrays: str, backend) -> str:
    """The kernel backend for arrays of kind ``arrays``; a clear error if it can't run them."""
    if backend is None:
        backend = ARRAY_KERNELS[arrays][0]
    name = getattr(backend, "name", backend)  # a kernels.Backend or its name
    if name not in _KERNEL_CLASSES:
        raise ValueError(f"unknown backend {name!r}; allowed: {', '.join(_KERNEL_CLASSES)}")
    if name not in ARRAY_KERNELS[arrays]:
        raise TypeError(f"backend {name!r} cannot update {arrays} arrays; "
                        f"use {' or '.join(map(repr, ARRAY_KERNELS[arrays]))}")
    if name == "numba":
        from .backend import numba_backend

        numba_backend()  # BackendUnavailable, naming what is missing, if Numba isn't there
    return name


class NonFiniteGradient(FloatingPointError, ValueError):
    """A gradient handed to ``Optimizer.step`` holds NaN or Inf."""


def _check_finite(g, step: int) -> None:
    """Raise NonFiniteGradient if ``g`` holds NaN or Inf.

    g . g is NaN or Inf whenever an element is (one fast BLAS pass); only then
    is the exact element-wise test run, since a finite gradient with a norm
    above ~1.8e19 also overflows the float32 dot product.
    """
    if g.shape[0] == 0:
        return
    xp = array_module(g)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow here is what is asked
        if math.isfinite(float(xp.dot(g, g))):
            return
    bad = ~xp.isfinite(g)
    count = int(bad.sum())
    if count:
        first = int(xp.argmax(bad))
        raise NonFiniteGradient(
            f"gradient for step {step} holds {count} non-finite value(s) (NaN/Inf), the first at "
            f"element {first}; no update was made (pass check_finite=False to update anyway)")


class Optimizer:
    """Rule ``rule`` over the flat parameter buffer ``params``.

    params: a :class:`FlatBuffer` or a 1-D float32 array (NumPy or CuPy);
    backend: whose kernels run the update: "numpy" or "numba" for NumPy
        arrays, "cupy" for CuPy arrays (a name or a :class:`kernels.Backend`);
        None: the first of :data:`ARRAY_KERNELS` for the arrays' kind;
    mask: optionally a 0/1 buffer like params: pruned parameters held at 0
        (:meth:`set_mask`);
    schedule: a learning-rate schedule (:mod:`kernels.schedules`: a
        :class:`Schedule`, bound to the run's total steps where its kind
        needs them, or a dict such as ``{"kind": "exponential", "gamma":
        0.999}``); None: constant. Step t's scalars are computed from
        lr x factor(t), so the decoupled decay (lr x wd) follows it too;
    decay_mask: optionally a float32 buffer like params, 1.0 where L2 and
        decoupled decay apply and 0.0 where they do not (biases and PReLU
        alphas: :func:`kernels.transforms.decay_mask`); the update stays one
        launch (:func:`kernels.transforms.decay_masked`);
    hyper: the rule's hyper-parameters (see ``kernels.rules``), e.g. lr=0.01.
    state: dict of zero-initialised buffers the size of params.
    t: number of steps taken so far.
    """

    def __init__(self, rule: str | Rule, params, mask=None, backend=None, schedule=None, decay_mask=None,
                 **hyper: float):
        self.rule = rule if isinstance(rule, Rule) else get_rule(rule)
        self.params = params.data if isinstance(params, FlatBuffer) else params
        check_buffer("w", self.params)
        #: "numpy" or "cupy": the kind of array every buffer must be.
        self.arrays = array_kind(self.params)
        #: "numpy", "numba" or "cupy": whose kernels run the update.
        self.backend = _kernel_backend(self.arrays, backend)
        #: The learning-rate schedule (None: constant).
        self.schedule: Schedule | None = as_schedule(schedule)
        check_bound(self.schedule)
        if self.schedule is not None and "lr" not in self.rule.hyper:
            raise ValueError(f"rule {self.rule.name!r} has no learning rate 'lr' for a schedule to scale")
        self.decay_mask = None
        if decay_mask is not None:
            decay_mask = decay_mask.data if isinstance(decay_mask, FlatBuffer) else decay_mask
            check_buffer("decay_mask", decay_mask, self.params.shape[0], self.arrays)
            self.decay_mask = decay_mask
        self.mask = None
        if mask is not None:
            self.set_mask(mask)
        self.hyper = self.rule.resolve(hyper)
        if self.arrays == "numpy":
            self.state = {s: aligned_zeros(self.params.shape[0]) for s in self.rule.state}
        else:
            cp = __import__("cupy")  # CuPy's allocations are 256-byte aligned already
            self.state = {s: cp.zeros_like(self.params) for s in self.rule.state}
        self.t = 0
        if self.mask is None:
            self.kernel = kernel_for(self.kernel_rule(), self.backend)

    def kernel_rule(self) -> Rule:
        """The rule the kernel runs: the optimiser's rule with its decay mask
        and pruning mask applied (each transform is one cached object)."""
        rule = self.rule if self.decay_mask is None else decay_masked(self.rule)
        return rule if self.mask is None else masked(rule)

    def set_mask(self, mask) -> None:
        """Keep parameters where ``mask`` is 1 and hold them at exactly 0
        where it is 0, inside every later update (one launch, masked rule).
        The parameters under a 0 are zeroed now. None removes the mask."""
        if mask is None:
            self.mask = None
            self.kernel = kernel_for(self.kernel_rule(), self.backend)
            return
        mask = mask.data if isinstance(mask, FlatBuffer) else mask
        check_buffer("mask", mask, self.params.shape[0], self.arrays)
        self.mask = mask
        self.kernel = kernel_for(self.kernel_rule(), self.backend)
        self.params *= mask
        for s in getattr(self, "state", {}).values():
            s *= mask

    def buffers(self, grads) -> dict:
        g = grads.data if isinstance(grads, FlatBuffer) else grads
        check_buffer("g", g, self.params.shape[0], self.arrays)
        extra = {} if self.mask is None else {"mask": self.mask}
        if self.decay_mask is not None:
            extra["decay_mask"] = self.decay_mask
        return {"w": self.params, "g": g, **extra, **self.state}

    def step(self, grads, check_finite: bool = True, active=None) -> None:
        """One update of every parameter: w, state := rule(w, g, state).

        check_finite: refuse a gradient holding NaN or Inf with a
        :class:`NonFiniteGradient` (nothing is updated, the step is not
        counted) instead of silently turning the weights to NaN. It costs one
        dot product over the gradient (g . g, a BLAS call: about 3% of an Adam
        step at 23k parameters and 10% at 2^24 on a 2-core CPU) and, on a GPU,
        one host synchronisation; a training loop that tracks the gradient's
        finiteness itself (``suite.training``) passes False.

        active: a one-element int32 array on the parameters' device; where it
        is 0 the kernel makes no update (a run frozen on the device by
        ``kernels.steps.StepAccount``: nothing is read back to decide). The
        step counter ``t`` counts calls either way.
        """
        buffers = self.buffers(grads)
        if check_finite:
            _check_finite(buffers["g"], self.t + 1)
        if active is not None:
            check_flag(active, self.arrays)
        self.t += 1
        self.kernel(buffers, self.rule.step_scalars(self.hyper_at(self.t), self.t), active)

    def hyper_at(self, t: int):
        """The hyper-parameters of step ``t``: ``hyper`` with lr x the
        schedule's factor(t) (``hyper`` itself without a schedule)."""
        return scheduled(self.hyper, self.schedule, t)

    def weights(self):
        """The weights to evaluate (Nesterov keeps the look-ahead point; under
        a schedule it is mapped back with the lr of the last step taken)."""
        return self.rule.weights(self.params, self.state, scheduled(self.hyper, self.schedule, max(self.t, 1)))

    def state_dict(self) -> dict:
        """The optimiser's state, to save or to restore later: the rule's name,
        its hyper-parameters, the step counter ``t`` and a copy of every state
        buffer (same array kind as the parameters); with a schedule, also
        ``schedule`` (its description and total steps, for the record: the
        schedule itself is the constructor's, and ``t`` is where it stands)."""
        sd = {"rule": self.rule.name, "hyper": dict(self.hyper), "t": self.t,
              "state": {k: v.copy() for k, v in self.state.items()}}
        if self.schedule is not None:
            sd["schedule"] = {**self.schedule.as_dict(), "total": self.schedule.total}
        return sd

    def load_state_dict(self, sd: dict) -> None:
        """Restore what :meth:`state_dict` returned (possibly saved to disk and
        read back as NumPy arrays): hyper-parameters, step counter and state
        buffers, copied into this optimiser's own buffers."""
        if sd.get("rule", self.rule.name) != self.rule.name:
            raise ValueError(f"state of rule {sd['rule']!r} cannot be loaded into a {self.rule.name!r} optimiser")
        missing = set(self.state) - set(sd["state"])
        if missing:
            raise ValueError(f"optimiser state lacks buffer(s) {sorted(missing)} of rule {self.rule.name!r}")
        xp = array_module(self.params)
        for k, buf in self.state.items():
            value = sd["state"][k]
            if tuple(value.shape) != buf.shape:
                raise ValueError(f"optimiser state {k!r} has shape {tuple(value.shape)}, the parameters {buf.shape}")
            buf[...] = xp.asarray(value, dtype=buf.dtype)
        self.hyper = self.rule.resolve(sd.get("hyper", self.hyper))
        self.t = int(sd["t"])
