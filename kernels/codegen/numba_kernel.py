"""The Numba path: a rule's update text compiled to one parallel loop over the elements.

The NumPy path (:mod:`optbench.kernels.codegen.numpy_kernel`) runs a rule as
a dozen ufunc calls per cache-sized chunk: each buffer crosses the memory bus
about once, but every operation is a separate pass over the chunk in L2, and
the Python loop over chunks and operations costs ~1 us per call. Here the same
update text -- ``rule.statements``, the single source the NumPy and CUDA paths
are generated from -- becomes the Python source of one function over P
members' (P, n) buffers (a single run is P = 1)

.. code-block:: python

    def adam_numba_parallel(a_w, a_g, a_mu, a_v, a_active, a_scalars):
        for _k in prange(P * blocks):              # (member, block) pairs
            _m = _k // blocks
            if a_active[_m]:
                gamma = a_scalars[_m, 0]; ...       # the member's scalars
                for _i in range(block start, block end):
                    w = a_w[_m, _i]; g = a_g[_m, _i]; mu = a_mu[_m, _i]; v = a_v[_m, _i]
                    mu = gamma * mu + one_minus_gamma * g
                    ...
                    a_w[_m, _i] = w; a_mu[_m, _i] = mu; a_v[_m, _i] = v

compiled by ``numba.njit(parallel=True, fastmath=False)`` with an explicit
float32 signature: LLVM vectorises the inner loop (AVX2/AVX-512 where the CPU
has them) and Numba splits the (member, block) pairs between its threads, so
every buffer is read and written exactly once per step, in one pass, like the
CUDA kernel, and one large buffer is split between the cores as many members
are. A member whose ``active`` flag is 0 is skipped.

Arithmetic is float32 throughout (the arrays are float32 and the step's
scalars are float32, as the CUDA kernel receives them), without fast-math: no
reassociation and no fused multiply-adds, so every operation is one IEEE
float32 operation in the order the rule writes it -- the same operations the
NumPy path performs, and the tests check the two agree bit for bit.
``error_model="numpy"``: a division by zero gives Inf/NaN as in NumPy (the
Python error model would put a branch in the loop and stop it being
vectorised).

Below :data:`PARALLEL_MIN` elements a serial build of the same loop runs
(waking the thread pool costs more than the work). Both builds are compiled
lazily, on first use, from a module written to the cache folder
(``kernels.cache``) with Numba's disk cache on, so only the first process on
a machine pays the compilation; and cached per rule in memory (masked variants
from :func:`optbench.kernels.transforms.masked` are rules of their own, with a
read-only ``mask`` argument). Importing this module never imports Numba;
constructing a kernel where Numba is missing is fine, calling it raises
ImportError. A state kept in bfloat16 is a uint16 array: its loads and stores go
through two LLVM intrinsics (``precision.numba_intrinsics``) in the same
vectorised loop, and stochastic rounding walks the block in groups of four
elements, one Philox call per state buffer and group. Dropout on the numba backend uses the NumPy path (its Philox
rounds are already vectorised over uint64 words per chunk).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import threading
from pathlib import Path
from typing import Mapping

import numpy as np

from ..cache import cache_dir
from ..precision import NUMBA_SOURCE, PACKED, numba_intrinsics, numba_namespace
from ..rule import Rule
from .expr import NUMBA

#: Elements from which the parallel build runs (below: the serial build).
#: Adam on a 2-core EPYC (shared, loaded): 2^14 5 us serial vs 8 us parallel
#: (waking the pool), 2^16 30 vs 21, 2^17 41 vs 28, 2^20 436 vs 336. From
#: 2^17 the gain is clear; the tests' sizes also stay on the serial build,
#: which compiles in a third of the time.
PARALLEL_MIN = 1 << 17
#: Elements (members x n) from which a population update runs in parallel.
#: Higher than a single buffer's: in a population's training step the update
#: comes right after the batched products, whose BLAS threads still spin on
#: the cores, and Numba's own threads then fight them. Measured on the 2-core
#: EPYC, one step of 108 MLPs of 23,050 parameters (Adam): 183 us per member
#: with the parallel update, 80 with the serial one; the update alone, outside
#: a step, favours the parallel build (0.8 ms), so large populations keep it.
POPULATION_PARALLEL_MIN = 1 << 22

_PREFIX = "a_"  # array arguments: a_w, a_g, ...; values in the loop: w, g, ...
_ROW = "r_"  # a block of a member's row of each: r_w, r_g, ...
#: Elements per block of the loop: the unit the threads share (a block of
#: every buffer, 64 K floats = 256 KB each, stays in a core's L2 while its
#: elements are updated).
BLOCK = 1 << 16


def function_name(rule: Rule, parallel: bool, precision: str = "fp32") -> str:
    state = "" if precision == "fp32" else precision.replace("-", "") + "_"
    return f"{rule.name}_{state}numba_{'parallel' if parallel else 'serial'}"


def _check_names(rule: Rule) -> None:
    # The loops' own names, the arrays' (a_w, r_w, ..., a_active, a_scalars, a_keys, a_step).
    reserved = {"_i", "_m", "_k", "_n", "_q", "_lo", "_hi", "_blocks", "_range", "_f32", *NUMBA.functions.values(),
                *(p + b for p in (_PREFIX, _ROW) for b in (*rule.buffers, "active", "scalars", "keys", "step"))}
    used = set(rule.buffers) | set(rule.scalar_names) | {st.target for st in rule.statements}
    clash = reserved & used
    if clash:
        raise ValueError(f"rule {rule.name!r} uses names reserved by the numba path: {clash}")


def _body(rule: Rule, index: str, indent: str, prefix: str = _PREFIX, precision: str = "fp32") -> list[str]:
    """Load every buffer's element ``index``, the rule's statements, store the
    written ones. A bf16 state (``precision``, :mod:`..precision`) is loaded
    from its 16 bits (exactly) and stored rounded -- to nearest, or with the
    Philox bits of (the member's seed, the step, the buffer's index in
    ``rule.state``, the element's index in its row): what the float32 step
    followed by :func:`~optbench.kernels.precision.round_state` gives."""
    packed = set(rule.state) if precision in PACKED else set()

    def store(b: str) -> str:
        if b not in packed:
            return b
        if precision == "bf16":
            return f"_bf16_rne({b})"
        return f"_bf16_sr({b}, _word(_r_{b}, _U({index} - _q)))"  # the words of the group of four

    body = [f"{b} = _bf16_load({prefix}{b}[{index}])" if b in packed else f"{b} = {prefix}{b}[{index}]"
            for b in rule.buffers]
    body += [f"{st.target} = {NUMBA(st.expr)}" for st in rule.statements]
    body += [f"{prefix}{b}[{index}] = {store(b)}" for b in rule.written]
    return [indent + line for line in body]


def population_source(rule: Rule, parallel: bool = True, precision: str = "fp32") -> str:
    """The Python source of the loop for ``rule`` (compiled by :func:`compile_rule`).

    Arguments: the buffers ``a_<name>`` as (P, n) arrays (``rule.buffers``:
    w, g, other inputs, state), ``a_active`` (P,) int32 and ``a_scalars`` the
    (P, k) float32 table (row m: member m's scalars in ``rule.scalar_names``
    order). The loop runs over (member, block of :data:`BLOCK` elements)
    pairs, so one member's row (a single run) is split between the threads
    as P members are; ``_range`` is ``numba.prange`` in the parallel build,
    ``range`` otherwise. The inner loop over a block is what LLVM vectorises.

    A bf16 state (``precision`` "bf16" or "bf16-sr") is a (P, n) uint16
    array of bits; stochastic rounding adds ``a_keys`` (P, 2) uint32, each
    member's seed as two words, and ``a_step`` (uint64), the step's number.
    """
    _check_names(rule)
    first = rule.buffers[0]  # the shape every buffer has (w, for a rule's own update)
    args = [_PREFIX + b for b in rule.buffers] + [f"{_PREFIX}active", f"{_PREFIX}scalars"]
    load = [f"            {s} = {_PREFIX}scalars[_m, {j}]" for j, s in enumerate(rule.scalar_names)]
    if precision == "bf16-sr":
        args += [f"{_PREFIX}keys", f"{_PREFIX}step"]
        load.append(f"            _seed = _U({_PREFIX}keys[_m, 0]) | (_U({_PREFIX}keys[_m, 1]) << _S32)")
    # The block of each buffer as a 1-D view, looped over its own length: a
    # loop over range(lo, hi) of 2-D indices is not vectorised (measured:
    # Adam at 23,050 elements 55 us against 10 us).
    views = [f"            {_ROW}{b} = {_PREFIX}{b}[_m, _lo:_hi]" for b in rule.buffers]
    if precision == "bf16-sr":
        # Stochastic rounding: groups of four elements (a block starts at a
        # multiple of 4), one Philox call per state buffer and group, whose
        # four words are the four elements' bits.
        words = [f"                _r_{b} = _philox4(_seed, a_step, _U({j}), _U((_lo + _q) >> 2))"
                 for j, b in enumerate(rule.state)]
        loop = (f"            for _q in range(0, {_ROW}{first}.shape[0], 4):\n" + "\n".join(words) + "\n"
                f"                for _i in range(_q, min(_q + 4, {_ROW}{first}.shape[0])):\n"
                + "\n".join(_body(rule, "_i", " " * 20, _ROW, precision)) + "\n")
    else:
        loop = (f"            for _i in range({_ROW}{first}.shape[0]):\n"
                + "\n".join(_body(rule, "_i", " " * 16, _ROW, precision)) + "\n")
    return (
        f"# optbench: rule '{rule.name}', state {precision}, generated by kernels/codegen/numba_kernel.py\n"
        f"def {function_name(rule, parallel, precision)}({', '.join(args)}):\n"
        f"    _n = {_PREFIX}{first}.shape[1]\n"
        f"    _blocks = (_n + {BLOCK} - 1) // {BLOCK}\n"
        f"    for _k in _range({_PREFIX}{first}.shape[0] * _blocks):\n"
        f"        _m = _k // _blocks\n"
        f"        if {_PREFIX}active[_m]:\n" + "\n".join(load) + "\n"
        f"            _lo = (_k - _m * _blocks) * {BLOCK}\n"
        f"            _hi = min(_lo + {BLOCK}, _n)\n" + "\n".join(views) + "\n" + loop
    )


def signature(rule: Rule, precision: str = "fp32"):
    """The compiled signature (compiled eagerly, once): void(float32[:, ::1]
    per buffer -- uint16[:, ::1] for a bf16 state --, int32[::1] active,
    float32[:, ::1] scalars[, uint32[:, ::1] keys, uint64 step])."""
    import numba

    rows = numba.float32[:, ::1]
    packed = set(rule.state) if precision in PACKED else set()
    buffers = [numba.uint16[:, ::1] if b in packed else rows for b in rule.buffers]
    extra = [numba.uint32[:, ::1], numba.uint64] if precision == "bf16-sr" else []
    return numba.void(*buffers, numba.int32[::1], rows, *extra)


#: Bumped when the generated module's preamble changes (a new cache file).
_PREAMBLE_VERSION = 5

#: The rule language's functions for the loops (the names expr.NUMBA prints),
#: as plain Python over float32 scalars: NumPy's semantics (np.sign,
#: np.minimum, np.maximum), branch for branch what the CUDA helpers do. The
#: generated module compiles each with ``numba.njit(inline="always")``; the
#: conditional expressions become selects that LLVM still vectorises.
HELPERS = '''
def _sign(x):
    # np.sign: 1, -1, +0.0 for either zero, the NaN itself for NaN
    return _f32(1.0) if x > _f32(0.0) else (_f32(-1.0) if x < _f32(0.0) else (x if x != x else _f32(0.0)))


def _min(a, b):
    # np.minimum: a NaN on either side propagates; of equal values (-0, +0) b
    return a if (a < b or a != a) else b


def _max(a, b):
    return a if (a > b or a != a) else b
'''
#: Module-level names the generated loops use besides the helpers (_range is
#: added per build): numpy's float32 sqrt and fabs, and float32 constants.
_BINDINGS = "_sqrt = np.sqrt\n_abs = np.abs\n_f32 = np.float32\n"


def namespace(parallel: bool = False, jit: bool = True) -> dict:
    """The globals a generated loop runs in: ``_range``, ``_f32``, the math
    functions, the helpers and the bfloat16 loads and stores; ``jit=False``
    leaves the helpers plain Python (to run a loop's source without Numba,
    as the tests do)."""
    ns: dict = numba_namespace(jit)
    exec(_BINDINGS + HELPERS, ns)
    if jit:
        import numba

        ns["_range"] = numba.prange if parallel else range
        for name in ("_sign", "_min", "_max"):
            ns[name] = numba.njit(inline="always")(ns[name])
    else:
        ns["_range"] = range
    return ns


def module_source(rule: Rule, parallel: bool, precision: str = "fp32") -> str:
    """A whole Python module defining the rule's loop: what is written to the
    cache folder and imported, so Numba can cache its machine code."""
    # The intrinsics are compiled from precision.py, outside this text: their
    # source's hash names the module too, so a change to them is a new cache.
    bf16 = (f"# bf16 intrinsics {hashlib.sha256(inspect.getsource(numba_intrinsics).encode()).hexdigest()[:16]}\n"
            "from optbench.kernels.precision import numba_intrinsics\n\n"
            "_intrinsics = numba_intrinsics()\nglobals().update(_intrinsics)\n_inline = numba.njit(inline='always')\n"
            + NUMBA_SOURCE + "\nglobals().update(_intrinsics)  # the loop's load and store: the 32-bit forms\n\n\n"
            ) if precision in PACKED else ""
    return (f"# generated by optbench (kernels/codegen/numba_kernel.py, preamble v{_PREAMBLE_VERSION}); "
            "safe to delete\n"
            "import numba\nimport numpy as np\n\n" + bf16 +
            f"_range = {'numba.prange' if parallel else 'range'}\n{_BINDINGS}\n" + HELPERS + "\n\n"
            "_sign, _min, _max = (numba.njit(inline='always')(f) for f in (_sign, _min, _max))\n\n\n"
            + population_source(rule, parallel, precision))


def _source_file(rule: Rule, parallel: bool, precision: str = "fp32") -> Path:
    """The generated module on disk, named by a hash of its text (so a changed
    rule is a new file and never meets a stale cache)."""
    text = module_source(rule, parallel, precision)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = cache_dir() / "numba" / f"{function_name(rule, parallel, precision)}_{digest}.py"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)  # atomic: two processes may write it at once
    return path


def compile_rule(rule: Rule, parallel: bool = True, cache: bool = True, precision: str = "fp32"):
    """The compiled Numba function of ``rule`` (ImportError without Numba).

    cache: compile from a module file in the cache folder with Numba's disk
    cache on, so a second process loads the machine code instead of
    compiling again (about a second per rule and build). Where the cache
    folder cannot be written, the function is compiled in memory.
    """
    import numba

    name = function_name(rule, parallel, precision)
    if cache:
        try:
            path = _source_file(rule, parallel, precision)
        except OSError:
            cache = False
    if cache:
        module_name = f"optbench_numba_{path.stem}"
        module = sys.modules.get(module_name)
        if module is None:  # registered, so Numba's cache can find its globals again
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[module_name] = module
        fn = getattr(module, name)
    else:
        ns = namespace(parallel)
        exec(compile(population_source(rule, parallel, precision), f"<optbench numba: {name}>", "exec"), ns)
        fn = ns[name]
    return numba.njit(signature(rule, precision), parallel=parallel, fastmath=False, cache=cache,
                      error_model="numpy", nogil=True)(fn)


class NumbaKernel:
    """Runs a rule's generated Numba loops in place on NumPy buffers."""

    def __init__(self, rule: Rule, parallel_min: int = PARALLEL_MIN, precision: str = "fp32"):
        self.rule = rule
        self.precision = precision
        self.parallel_min = int(parallel_min)
        self._functions: dict[bool, object] = {}
        self._lock = threading.Lock()

    def function(self, parallel: bool):
        fn = self._functions.get(parallel)
        if fn is None:
            with self._lock:  # one compilation per build, even from several threads
                fn = self._functions.get(parallel)
                if fn is None:
                    fn = self._functions[parallel] = compile_rule(self.rule, parallel, precision=self.precision)
        return fn

    def population(self, buffers: Mapping[str, np.ndarray], scalars: np.ndarray, active: np.ndarray,
                   keys=None, step: int = 0) -> None:
        """Every active member's update, in place: ``buffers`` (P, n) float32
        C-contiguous arrays (a bf16 state's uint16), ``scalars`` the (P, k)
        float32 table, ``active`` (P,) int32 (0 skips a member); for
        stochastic rounding ``keys`` (P, 2) uint32 and the ``step``'s number.
        In parallel from PARALLEL_MIN elements for one member (a single run's
        buffer), from POPULATION_PARALLEL_MIN for several."""
        arrays = [buffers[b] for b in self.rule.buffers]
        members, n = arrays[0].shape
        if members == 0 or n == 0:
            return
        floor = self.parallel_min if members == 1 else max(self.parallel_min, POPULATION_PARALLEL_MIN)
        extra = (keys, np.uint64(step)) if self.precision == "bf16-sr" else ()
        self.function(members * n >= floor)(*arrays, active, scalars, *extra)
