"""Every update rule on a backend, checked against the float64 reference.

For each rule x L2 form (coupled ``l2``, decoupled ``wd``) x size, the rule
runs several consecutive steps on fresh random gradients from zero state, and
the float64 reference runs the same steps from the same float32 inputs. The
error of a buffer is

    max_i |x_i - r_i| / (|r_i| + rms(r))

-- relative to each element's reference value, with the buffer's RMS as a
floor so that elements that pass near zero don't turn rounding into huge
relative errors (llm.c's tol + |ref| * eps idea). A float32 step is a handful
of rounded operations, so the error grows by a few ulp (6e-8) per step on most
elements; a few are ill-conditioned (coupled L2 where g + lambda w nearly
cancels; AdaDelta's delta where |g| is near eps, whose square is Delta) and
reach ~40 ulp of the buffer's RMS after one step. The tolerance is 64 ulp per
step; a changed constant or a wrong index gives errors of order 1e-3 and more.

A rule whose update is discontinuous (``sign``, ``where``, ``min``, ``max``:
Lion, Signum, AMSGrad's running max) takes the other branch wherever its
argument lies within float32 rounding of the threshold: Lion moves such an
element by +eta instead of -eta. Those are rounding, not errors: for such a
rule up to one element in FLIP_EVERY per buffer may exceed the tolerance
(a handful at 2^20 elements, none at the small sizes), and the check reports
how many did (``flips``) and the largest error of the rest. A wrong formula
moves nearly every element, far beyond that allowance.

Each check's random data is seeded by the rule's name, the size and the L2
form, so a check sees the same numbers whatever other rules are registered.

With a low-precision state (``validate --state bf16`` or ``bf16-sr``,
:mod:`.precision`) the reference rounds its state the same way after every
step -- float64 to float32 to bfloat16, to nearest or with the same Philox
bits -- so the two stay together; an element whose float32 and float64
values fall on either side of a bfloat16 rounding boundary takes the
neighbouring bfloat16, so a state buffer is held to :data:`STATE_TOLERANCE`
(two bfloat16 steps) and the weights to the usual tolerance.

``validate --state int8`` holds the state to the reference's float32 state
quantised by the NumPy quantiser (:func:`~optbench.kernels.precision.int8_roundtrip`):
within the usual tolerance of the block's absolute maximum, but for an
element whose float32 and float64 values fall on either side of a boundary
between two codes, which lands one code away (at most
:data:`INT8_CODE_STEP` of the block's maximum).
"""

from __future__ import annotations

import inspect
import math
import re
import zlib
from dataclasses import dataclass

import numpy as np

from . import dropout, reference
from .backend import Backend
from .precision import BLOCK, STATE_PRECISIONS, bf16_rne, bf16_to_f32, round_state, seed_keys
from .flat import FlatLayout
from .optimizer import Optimizer
from .rules import BUILTIN, PLAIN, RULES
from .staged import run_text64
from .stages import plan_of
from .views import views_of

SIZES = (0, 1, 3, 4, 5, 1023, 1024, 1025, (1 << 20) + 3)
DROPOUT_MODES = dropout.MODES
STEPS = 5
ULP32 = float(np.finfo(np.float32).eps)
TOLERANCE_PER_STEP = 64 * ULP32
#: L2 forms checked for every rule: coupled (added to the gradient) and
#: decoupled (w := w (1 - eta lambda) - ...).
L2_FORMS = {"coupled": {"l2": 0.05}, "decoupled": {"wd": 0.05}}
#: A discontinuous rule may flip one element in this many per buffer.
FLIP_EVERY = 100_000
_DISCONTINUOUS = re.compile(r"\b(sign|where|min|max)\s*\(")
#: A bfloat16 state buffer's tolerance (relative, as every error here): two
#: bfloat16 steps (2^-8 each), for an element that rounded the other way...
STATE_TOLERANCE = 2.0 ** -7
#: ... which at most one element in this many per buffer and step may do, and
#: at least 4 (measured: at most 1.1e-4 of them for every built-in rule at
#: 2^18 elements; a wrong rounding moves about half of them, or all).
STATE_FLIP_EVERY = 1000
#: The seed of a check's stochastic rounding.
STATE_SEED = 12345
#: The widest gap between two neighbouring codes of the 8-bit maps, as a
#: fraction of a block's absolute maximum (the signed map's top decade: 0.9 /
#: 64 = 0.014): an 8-bit element that took a neighbouring code is at most
#: this far from the reference's.
INT8_CODE_STEP = 1 / 64


#: What a rule is checked against (:func:`reference_for`).
REFERENCES = {
    "independent": "the float64 reference (kernels/reference.py)",
    "plug-in": "the plug-in's own float64 reference",
    "own text": "a float64 evaluation of its own update text: this checks the backends "
                "and their precision, not the maths",
}


@dataclass(frozen=True)
class Check:
    rule: str
    l2_form: str
    size: int
    steps: int
    max_rel_err: float
    tolerance: float
    backend: str
    #: A key of REFERENCES ("" for dropout).
    reference: str = ""
    #: Elements of a discontinuous rule beyond the tolerance (rounding took
    #: the other branch), left out of max_rel_err; at most size // FLIP_EVERY.
    flips: int = 0

    @property
    def ok(self) -> bool:
        return bool(self.max_rel_err <= self.tolerance)


def reference_for(name: str):
    """(kind, step) for rule ``name``: step(w, g, state, hp, t, views) ->
    (w, state) in float64, and which REFERENCES it is. A built-in has its
    independent reference; a plug-in the ``reference`` its Rule gives
    (wrapped in the L2 forms the registry added; given ``views`` too where
    it takes a sixth argument) or, without one, its own text in float64
    (:func:`optbench.kernels.staged.run_text64` for a rule that works per
    view). Carried values and row/column state live in ``state`` under
    names of the reference's own."""
    if name in BUILTIN:
        return "independent", lambda w, g, state, hp, t, views=None: reference.step(name, w, g, state, hp, t,
                                                                                     views)
    rule, plain = RULES[name], PLAIN.get(name)
    if plain is not None and plain.reference is not None and plain.lookahead is None:
        with_views = _takes_views(plain.reference)

        def step(w, g, state, hp, t, views=None):
            # The registry's transforms: L' + l2 w with the undecayed w, then w (1 - eta wd).
            decayed = w * (1.0 - hp["lr"] * hp["wd"]) if plain.decoupled else w
            args = (decayed, g + hp["l2"] * w, state, hp, t) + ((views,) if with_views else ())
            w_new, state_new = plain.reference(*args)
            return np.asarray(w_new, dtype=np.float64), {k: np.asarray(v, dtype=np.float64)
                                                         for k, v in state_new.items()}
        return "plug-in", step
    if not plan_of(rule).simple:
        def staged_text(w, g, state, hp, t, views=None):
            elements = {k: v for k, v in state.items() if k in rule.state}
            carried = {k: v for k, v in state.items() if k not in rule.state}
            w, elements, carried = run_text64(rule, views, w, g, elements, carried, rule.step_scalars(hp, t))
            return w, {**elements, **carried}
        return "own text", staged_text
    from .codegen.expr import run_update

    def own_text(w, g, state, hp, t, views=None):
        out = run_update(rule, {"w": w, "g": g, **state, **rule.step_scalars(hp, t)})
        return out["w"], {s: out[s] for s in rule.state}
    return "own text", own_text


def _takes_views(fn) -> bool:
    try:
        return len(inspect.signature(fn).parameters) >= 6
    except (TypeError, ValueError):
        return False


def validation_layout(size: int) -> FlatLayout:
    """The tensors a check of ``size`` parameters runs on: below 1000, one
    vector; else three weight matrices with their biases (the first and last
    layers, a hidden one: what Muon treats differently) and a vector holding
    the rest -- every view but the last a multiple of 4 elements, so the
    layout has no padding and exactly ``size`` elements."""
    if size < 1000:
        return FlatLayout([("v", (size,))])
    k = max(1, int(math.sqrt(size / 1400)))
    a, b, c, d = 8 * k, 16 * k, 24 * k, 12 * k
    tensors = [("W1", (a, b)), ("b1", (b,)), ("W2", (b, c)), ("b2", (c,)), ("W3", (c, d)), ("b3", (d,))]
    used = sum(math.prod(shape) for _, shape in tensors)
    return FlatLayout(tensors + [("rest", (size - used,))])


def rel_errs(x, r) -> np.ndarray:
    """Per element |x - r| / (|r| + rms(r))."""
    x = np.asarray(x, dtype=np.float64)
    if r.size == 0:
        return np.zeros(0)
    floor = np.sqrt(np.mean(r * r))
    return np.abs(x - r) / (np.abs(r) + floor + 1e-300)


def rel_err(x, r) -> float:
    """max |x - r| / (|r| + rms(r)); 0 for empty buffers."""
    e = rel_errs(x, r)
    return float(e.max()) if e.size else 0.0


def tolerance_per_step(rule) -> float:
    """validate's tolerance per step for ``rule``: its own where it declares
    one (``Rule.tolerance``, with its reason), else 64 ulp."""
    return rule.tolerance if rule.tolerance is not None else TOLERANCE_PER_STEP


def l2_forms(rule) -> list[str]:
    """The L2 forms a rule has: coupled always, decoupled where it takes ``wd``."""
    return [form for form, hp in L2_FORMS.items() if set(hp) <= set(rule.hyper)]


def discontinuous(name: str) -> bool:
    """Whether rule ``name``'s update takes a branch (sign, where, min, max)."""
    return bool(_DISCONTINUOUS.search(RULES[name].update))


def _worst(errs: np.ndarray, tolerance: float, allowed: int) -> tuple[float, int]:
    """(largest error once up to ``allowed`` elements beyond the tolerance
    are set aside, how many were)."""
    if errs.size == 0:
        return 0.0, 0
    beyond = int(np.count_nonzero(errs > tolerance))
    if beyond == 0 or beyond > allowed:
        return float(errs.max()), 0
    return float(errs[errs <= tolerance].max(initial=0.0)), beyond


def check_rule(name: str, l2_form: str, size: int, backend: Backend,
               steps: int = STEPS, seed: int = 0, hyper: dict | None = None, state: str = "fp32") -> Check:
    """Run ``steps`` steps of rule ``name`` and compare with its reference
    (:func:`reference_for`); ``state``: the state precision both keep."""
    if state not in STATE_PRECISIONS:
        raise ValueError(f"unknown state precision {state!r}; allowed: {', '.join(STATE_PRECISIONS)}")
    rule = RULES[name]
    kind, ref_step = reference_for(name)
    rng = np.random.default_rng([seed, size, zlib.crc32(name.encode()), list(L2_FORMS).index(l2_form)])
    w0 = rng.standard_normal(size).astype(np.float32)
    params = backend.asarray(w0.copy())  # numpy would alias w0
    layout = validation_layout(size)
    opt = Optimizer(rule, params, backend=backend.name, layout=layout, state_precision=state, seed=STATE_SEED,
                    **{**L2_FORMS[l2_form], **(hyper or {})})
    views = views_of(layout, size, rule.matrices, np)
    ref_w = w0.astype(np.float64)
    ref_state = _rounded(rule, rule.start_state(ref_w), state, 0)
    allowed = size // FLIP_EVERY if discontinuous(name) else 0
    if state != "fp32":
        return _check_per_step(name, l2_form, size, backend, steps, rng, opt, views, ref_step, ref_state, state,
                               allowed, kind)
    for t in range(1, steps + 1):
        g = rng.standard_normal(size).astype(np.float32)
        opt.step(backend.asarray(g))
        ref_w, ref_state = ref_step(ref_w, g.astype(np.float64), ref_state, opt.hyper, t, views)
    backend.synchronize()
    tolerance = tolerance_per_step(rule) * steps
    err, flips = 0.0, 0
    for got, want in ((opt.params, ref_w), *((opt.state[s], ref_state[s]) for s in rule.state)):
        worst, beyond = _worst(rel_errs(backend.to_numpy(got), want), tolerance, allowed)
        err, flips = max(err, worst), max(flips, beyond)
    return Check(name, l2_form, size, steps, err, tolerance, backend.name, kind, flips)


def _check_per_step(name, l2_form, size, backend, steps, rng, opt, views, ref_step, ref_state, state, allowed,
                    kind) -> Check:
    """A low-precision state, step by step: each step the reference starts
    from the kernel's weights and state (its carried values its own), takes
    the step in float64 and rounds its state as the kernel does; the weights
    are held to one step's tolerance, each state buffer to STATE_TOLERANCE
    (an element whose float32 and float64 values straddle a bfloat16
    rounding boundary lands one bfloat16 step away, and step by step that
    stays one step: compounding it over the steps would measure the
    precision's effect on training, which is the accuracy study's question,
    not the kernel's correctness)."""
    rule = RULES[name]
    tolerance = tolerance_per_step(rule)
    err, flips = 0.0, 0
    for t in range(1, steps + 1):
        w = backend.to_numpy(opt.params).astype(np.float64)
        start = {**ref_state, **{s: backend.to_numpy(opt.state[s]).astype(np.float64) for s in rule.state}}
        g = rng.standard_normal(w.size).astype(np.float32)
        opt.step(backend.asarray(g))
        ref_w, ref_state = ref_step(w, g.astype(np.float64), start, opt.hyper, t, views)
        ref_state = _rounded(rule, ref_state, state, t)
        backend.synchronize()
        worst, beyond = _worst(rel_errs(backend.to_numpy(opt.params), ref_w), tolerance, allowed)
        err, flips = max(err, worst), max(flips, beyond)
        for s in rule.state:
            got = backend.to_numpy(opt.state[s])
            if state == "int8":
                err, off = _int8_errors(got, ref_state[s], tolerance, max(4, size // STATE_FLIP_EVERY), err)
                flips = max(flips, off)
                continue
            if not np.array_equal(bf16_to_f32(bf16_rne(got)), got):
                err = max(err, 1.0)  # a value no bfloat16 state can hold: the state was not rounded
            off = int(np.count_nonzero(got != ref_state[s]))
            if off > max(4, size // STATE_FLIP_EVERY):
                err = max(err, 1.0)  # rounded another way (or with other bits) than the reference
            err = max(err, _worst(rel_errs(got, ref_state[s]) * (tolerance / STATE_TOLERANCE), tolerance, 0)[0])
            flips = max(flips, off)
    return Check(name, l2_form, size, steps, err, tolerance, backend.name, kind, flips)


def _int8_errors(got, want, tolerance: float, allowed: int, err: float) -> tuple[float, int]:
    """(err updated, elements beyond ``tolerance``) of an 8-bit state against
    the reference's: errors relative to each block's absolute maximum; more
    than ``allowed`` elements beyond the tolerance, or one beyond
    :data:`INT8_CODE_STEP`, is an error of 1 (quantised otherwise)."""
    want = np.asarray(want, dtype=np.float64).reshape(-1)
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    if want.size == 0:
        return err, 0
    blocks = np.abs(np.pad(want, (0, -want.size % BLOCK))).reshape(-1, BLOCK).max(axis=1)
    scale = np.repeat(np.where(blocks > 0, blocks, 1.0), BLOCK)[: want.size]
    e = np.abs(got - want) / scale
    e = np.where(np.isnan(got) & np.isnan(want), 0.0, np.nan_to_num(e, nan=np.inf))
    off = int(np.count_nonzero(e > tolerance))
    if off > allowed or e.max() > INT8_CODE_STEP:
        err = max(err, 1.0)
    return max(err, float(e[e <= tolerance].max(initial=0.0))), off


def _rounded(rule, state: dict, precision: str, step: int) -> dict:
    """The reference's element state as a ``precision`` state holds it after
    ``step``: float64 to float32 (to nearest), then bfloat16 (the kernel's
    bits) or 8-bit codes."""
    if precision == "fp32":
        return state
    out = dict(state)
    for j, name in enumerate(rule.state):
        x = np.asarray(state[name], dtype=np.float32).reshape(1, -1).copy()
        round_state(x, precision, seed_keys([STATE_SEED]), step, j)
        out[name] = x.reshape(np.shape(state[name])).astype(np.float64)
    return out


DROPOUT_P = (0.1, 0.5)


def check_dropout(mode: str, p: float, size: int, backend: Backend, calls: int = 3) -> Check:
    """Dropout forward and backward over ``calls`` consecutive calls (running
    offsets) against the float64 product x * xi * scale, where xi is the NumPy
    Philox mask. On CuPy this compares the GPU's mask with NumPy's bit for
    bit: a single differing element is an error of 1. The keep rate must lie
    within 5 binomial standard deviations of 1 - p."""
    rng = np.random.default_rng([size, int(p * 100), DROPOUT_MODES.index(mode)])
    seed, offset, err, kept, total = 1234, 0, 0.0, 0, 0
    scale = dropout.training_scale(p, mode)
    for _ in range(calls):
        x = rng.standard_normal(size).astype(np.float32)
        xi = dropout.keep_mask(size, p, seed, offset)  # NumPy: the reference mask
        ref = x.astype(np.float64) * xi * scale
        out = backend.xp.empty(size, dtype=np.float32)
        dropout.dropout_forward(backend.asarray(x), out, p, seed, offset, mode)
        grad = backend.asarray(np.ones(size, np.float32))
        dropout.dropout_backward(grad, grad, p, seed, offset, mode)
        backend.synchronize()
        got, back = backend.to_numpy(out), backend.to_numpy(grad)
        err = max(err, rel_err(got, ref), rel_err(back, xi * scale))
        if size and not np.array_equal(got != 0, xi & (x != 0)):
            err = max(err, 1.0)  # a mask bit differs
        kept, total = kept + int(xi.sum()), total + size
        offset = dropout.advance(offset, size)
    if total >= 1000:
        sd = np.sqrt(total * p * (1 - p))
        if abs(kept - total * (1 - p)) > 5 * sd:
            err = max(err, 1.0)
    return Check(f"dropout-{mode}", f"p={p}", size, calls, err, 2 * ULP32, backend.name)


def validate(backend: Backend, sizes=SIZES, steps: int = STEPS, rules=None, state: str = "fp32"):
    """Yield one :class:`Check` per rule x L2 form x size (each rule's state
    kept at ``state``), then per dropout mode x p x size."""
    for name in rules or RULES:
        for form in l2_forms(RULES[name]):
            for size in sizes:
                yield check_rule(name, form, size, backend, steps, state=state)
    if rules is None:
        for mode in DROPOUT_MODES:
            for p in DROPOUT_P:
                for size in sizes:
                    yield check_dropout(mode, p, size, backend)
