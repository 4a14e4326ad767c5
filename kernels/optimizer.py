"""An optimiser: one rule bound to a flat parameter buffer and its state.

>>> import numpy as np
>>> from optbench.kernels import FlatLayout, Optimizer
>>> params = FlatLayout([("W", (2, 3)), ("b", (3,))]).allocate()
>>> opt = Optimizer("adam", params, lr=0.1)
>>> grads = params.like(); grads["W"][:] = 1.0
>>> opt.step(grads)            # one launch over the whole buffer
>>> float(params["W"][0, 0])   # Adam's first step is -lr * sign(g)
-0.1

A single run is a population of one: an Optimizer is member 0 of a
:class:`~optbench.kernels.population.PopulationOptimizer` over its buffer
viewed as one row, so a run alone and the same run in a population make the
same update by construction. ``step`` checks its inputs (same size, float32,
contiguous, same device), computes the step's scalars on the host in double
(with the step's lr under a learning-rate ``schedule``:
:mod:`optbench.kernels.schedules`), and launches the rule's kernel for the
backend that owns the buffers: the generated CUDA kernel for CuPy arrays,
the chunked in-place NumPy program otherwise -- or, with ``backend="numba"``,
the generated Numba loop over the same NumPy arrays.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import array_kind, array_module
from .flat import FlatBuffer
from .launch import check_flag
from .population import Member, PopulationOptimizer
from .rule import Rule
from .rules import get_rule
from .schedules import as_schedule, scheduled


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


class Optimizer(Member):
    """Rule ``rule`` over the flat parameter buffer ``params``.

    params: a :class:`FlatBuffer` or a 1-D float32 array (NumPy or CuPy);
    backend: whose kernels run the update: "numpy" or "numba" for NumPy
        arrays, "cupy" for CuPy arrays (a name or a :class:`kernels.Backend`);
        None: the first of :data:`optbench.kernels.launch.ARRAY_KERNELS` for
        the arrays' kind;
    mask: optionally a 0/1 buffer like params: pruned parameters held at 0
        (:meth:`set_mask`);
    schedule: a learning-rate schedule (:mod:`optbench.kernels.schedules`: a
        :class:`Schedule`, bound to the run's total steps where its kind
        needs them, or a dict such as ``{"kind": "exponential", "gamma":
        0.999}``); None: constant. Step t's scalars are computed from
        lr x factor(t), so the decoupled decay (lr x wd) follows it too;
    decay_mask: optionally a float32 buffer like params, 1.0 where L2 and
        decoupled decay apply and 0.0 where they do not (biases and PReLU
        alphas: :func:`optbench.kernels.transforms.decay_mask`); the update
        stays one launch (:func:`optbench.kernels.transforms.decay_masked`);
    layout: the :class:`FlatLayout` of the buffer, whose views a rule's
        reductions and matrix steps work on (default: a FlatBuffer's own;
        for a bare array, the whole buffer is one vector);
    hyper: the rule's hyper-parameters (see ``kernels.rules``), e.g. lr=0.01;
        resolved into ``self.hyper``, which may be changed by hand between
        steps (checked against the rule's ranges at the next step).

    state: the rule's state buffers, each the size of params (zero at the
    start, or as the rule's ``init`` says), and for a staged rule its carried
    values (one per view or per run) and row/column state, in float64;
    t: number of steps taken so far; population: the one-member
    :class:`PopulationOptimizer` that does the work.
    """

    def __init__(self, rule: str | Rule, params, mask=None, backend=None, schedule=None, decay_mask=None,
                 layout=None, state_precision: str = "fp32", seed: int = 0, **hyper: float):
        rule = rule if isinstance(rule, Rule) else get_rule(rule)
        data = params.data if isinstance(params, FlatBuffer) else params
        if layout is None and isinstance(params, FlatBuffer):
            layout = params.layout
        check_buffer("w", data)
        arrays = array_kind(data)
        if decay_mask is not None:
            decay_mask = decay_mask.data if isinstance(decay_mask, FlatBuffer) else decay_mask
            check_buffer("decay_mask", decay_mask, data.shape[0], arrays)
            decay_mask = decay_mask.reshape(1, -1)
        population = PopulationOptimizer(data.reshape(1, -1), [rule], [hyper], backend=backend,
                                         schedules=[as_schedule(schedule)], decay_masks=decay_mask, layout=layout,
                                         state_precision=state_precision, seeds=[seed])
        self._bind(population, 0)
        self.params = data
        #: "numpy" or "cupy": the kind of array every buffer must be.
        self.arrays = population.arrays
        #: "numpy", "numba" or "cupy": whose kernels run the update.
        self.backend = population.backend
        self.mask = None
        if mask is not None:
            self.set_mask(mask)

    @property
    def decay_mask(self):
        masks = self.population.decay_masks
        return None if masks is None else masks[0]

    @property
    def kernel(self):
        """The compiled kernel the update runs (the rule with its masks applied);
        settable, e.g. to a NumpyKernel with other chunks or threads."""
        return self.population.groups[0].kernel

    @kernel.setter
    def kernel(self, kernel) -> None:
        self.population.groups[0].kernel = kernel

    def kernel_rule(self) -> Rule:
        """The rule the kernel runs: the optimiser's rule with its decay mask
        and pruning mask applied (each transform is one cached object)."""
        return self.population._kernel_rule(self.rule)

    def set_mask(self, mask) -> None:
        """Keep parameters where ``mask`` is 1 and hold them at exactly 0
        where it is 0, inside every later update (one launch, masked rule).
        The parameters under a 0 are zeroed now. None removes the mask."""
        if mask is not None:
            mask = mask.data if isinstance(mask, FlatBuffer) else mask
            check_buffer("mask", mask, self.params.shape[0], self.arrays)
        self.mask = mask
        self.population.set_masks(None if mask is None else mask.reshape(1, -1))

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
        g = grads.data if isinstance(grads, FlatBuffer) else grads
        check_buffer("g", g, self.params.shape[0], self.arrays)
        if check_finite:
            _check_finite(g, self.t + 1)
        if active is not None:
            check_flag(active, self.arrays)
        if self.hyper != self.population.hypers[0]:  # changed by hand since the last step
            self.population.set_hypers(0, self.hyper)
            self.hyper = dict(self.population.hypers[0])
        self.population.step(g.reshape(1, -1), active)

    def hyper_at(self, t: int):
        """The hyper-parameters of step ``t``: ``hyper`` with lr x the
        schedule's factor(t) (``hyper`` itself without a schedule)."""
        return scheduled(self.hyper, self.schedule, t)

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
        group = self.population.groups[0]
        for k, buf in self.state.items():
            value = sd["state"][k]
            if tuple(value.shape) != buf.shape:
                raise ValueError(f"optimiser state {k!r} has shape {tuple(value.shape)}, the parameters {buf.shape}")
            if k in group.stored:  # an element state: float32, or stored in bf16
                group.set_state(k, xp.asarray(value, dtype=np.float32))
            else:
                buf[...] = xp.asarray(value, dtype=buf.dtype)
        self.population.set_hypers(0, sd.get("hyper", self.hyper))
        self.hyper = dict(self.population.hypers[0])
        self.population.t = int(sd["t"])
        self.population._steps = 0
