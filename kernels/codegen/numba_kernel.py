"""The Numba path: a rule's update text compiled to one parallel loop over the elements.

The NumPy path (:mod:`kernels.codegen.numpy_kernel`) runs a rule as a dozen ufunc calls
per cache-sized chunk: each buffer crosses the memory bus about once, but
every operation is a separate pass over the chunk in L2, and the Python loop
over chunks and operations costs ~1 us per call. Here the same update text --
``rule.statements``, the single source the NumPy and CUDA paths are generated
from -- becomes the Python source of one function

.. code-block:: python

    def adam_numba_parallel(a_w, a_g, a_mu, a_v, gamma, one_minus_gamma, ...):
        for _i in prange(a_w.shape[0]):
            w = a_w[_i]; g = a_g[_i]; mu = a_mu[_i]; v = a_v[_i]
            g = g + l2 * w
            mu = gamma * mu + one_minus_gamma * g
            ...
            a_w[_i] = w; a_mu[_i] = mu; a_v[_i] = v

compiled by ``numba.njit(parallel=True, fastmath=False)`` with an explicit
float32 signature: LLVM vectorises the loop body (AVX2/AVX-512 where the CPU
has them) and Numba splits the range between its threads, so every buffer is
read and written exactly once per step, in one pass, like the CUDA kernel.

Arithmetic is float32 throughout (the arrays are float32 and the step's
scalars are passed as float32, as the CUDA kernel receives them), without
fast-math: no reassociation and no fused multiply-adds, so every operation is
one IEEE float32 operation in the order the rule writes it -- the same
operations the NumPy path performs, and the tests check the two agree bit for
bit. ``error_model="numpy"``: a division by zero gives Inf/NaN as in NumPy
(the Python error model would put a branch in the loop and stop it being
vectorised).

Below :data:`PARALLEL_MIN` elements a serial build of the same loop runs
(waking the thread pool costs more than the work). Both builds are compiled
lazily, on first use, from a module written to the cache folder
(``kernels.cache``) with Numba's disk cache on, so only the first process on
a machine pays the compilation; and cached per rule in memory (masked variants from
:func:`kernels.transforms.masked` are rules of their own, with a read-only ``mask``
argument). Importing this module never imports Numba; constructing a kernel
where Numba is missing is fine, calling it raises ImportError. Dropout on the
numba backend uses the NumPy path (its Philox rounds are already vectorised
over uint64 words per chunk).

The population form (:func:`population_source`) is one more function per
rule over P members' (P, n) buffers: ``for _m in prange(P)``, skipping a
member whose ``active`` flag is 0, reads the member's scalars from row m of
a (P, k) float32 table into locals and runs the same loop body over its row
-- the same float32 operations in the same order, so each member's row is bit
for bit what the single-run loop (and the NumPy path) makes of it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import threading
from pathlib import Path
from typing import Mapping

import numpy as np

from ..cache import cache_dir
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


def function_name(rule: Rule, parallel: bool, population: bool = False) -> str:
    return f"{rule.name}_numba{'_pop' if population else ''}_{'parallel' if parallel else 'serial'}"


def _check_names(rule: Rule) -> None:
    # The loops' own names, and the population form's a_active and a_scalars.
    reserved = {"_i", "_m", "_range", "_f32", *NUMBA.functions.values()}
    clash = reserved & (set(rule.buffers) | set(rule.scalar_names)) | {"active", "scalars"} & set(rule.buffers)
    if clash:
        raise ValueError(f"rule {rule.name!r} uses names reserved by the numba path: {clash}")


def _body(rule: Rule, index: str, indent: str) -> list[str]:
    """Load every buffer's element ``index``, the rule's statements, store the written ones."""
    body = [f"{b} = {_PREFIX}{b}[{index}]" for b in rule.buffers]
    body += [f"{st.target} = {NUMBA(st.expr)}" for st in rule.statements]
    body += [f"{_PREFIX}{b}[{index}] = {b}" for b in rule.written]
    return [indent + line for line in body]


def numba_source(rule: Rule, parallel: bool = True) -> str:
    """The Python source of the loop for ``rule`` (compiled by :func:`compile_rule`).

    Arguments in kernel order: the buffers ``a_<name>`` (``rule.buffers``:
    w, g, other inputs, state), then the scalars (``rule.scalar_names``).
    ``_range`` is ``numba.prange`` in the parallel build, ``range`` otherwise.
    """
    _check_names(rule)
    args = [_PREFIX + b for b in rule.buffers] + list(rule.scalar_names)
    return (
        f"# optbench: rule '{rule.name}', generated by kernels/codegen/numba_kernel.py\n"
        f"def {function_name(rule, parallel)}({', '.join(args)}):\n"
        f"    for _i in _range({_PREFIX}w.shape[0]):\n" + "\n".join(_body(rule, "_i", " " * 8)) + "\n"
    )


def population_source(rule: Rule, parallel: bool = True) -> str:
    """The Python source of the population loop for ``rule``.

    Arguments: the buffers ``a_<name>`` as (P, n) arrays, ``a_active`` (P,)
    int32 and ``a_scalars`` the (P, k) float32 table (row m: member m's
    scalars in ``rule.scalar_names`` order). ``_range`` (over the members)
    is ``numba.prange`` in the parallel build, ``range`` otherwise.
    """
    _check_names(rule)
    args = [_PREFIX + b for b in rule.buffers] + [f"{_PREFIX}active", f"{_PREFIX}scalars"]
    load = [f"            {s} = {_PREFIX}scalars[_m, {j}]" for j, s in enumerate(rule.scalar_names)]
    return (
        f"# optbench: rule '{rule.name}', population form, generated by kernels/codegen/numba_kernel.py\n"
        f"def {function_name(rule, parallel, population=True)}({', '.join(args)}):\n"
        f"    for _m in _range({_PREFIX}w.shape[0]):\n"
        f"        if {_PREFIX}active[_m]:\n" + "\n".join(load) + "\n"
        f"            for _i in range({_PREFIX}w.shape[1]):\n"
        + "\n".join(_body(rule, "_m, _i", " " * 16)) + "\n"
    )


def signature(rule: Rule, population: bool = False):
    """The compiled signature (compiled eagerly, once): void(float32[::1] per
    buffer, float32 per scalar); for the population form void(float32[:, ::1]
    per buffer, int32[::1] active, float32[:, ::1] scalars)."""
    import numba

    if population:
        rows = numba.float32[:, ::1]
        return numba.void(*([rows] * len(rule.buffers)), numba.int32[::1], rows)
    array = numba.float32[::1]
    return numba.void(*([array] * len(rule.buffers)), *([numba.float32] * len(rule.scalar_names)))


#: Bumped when the generated module's preamble changes (a new cache file).
_PREAMBLE_VERSION = 2

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
    functions and the helpers; ``jit=False`` leaves the helpers plain Python
    (to run a loop's source without Numba, as the tests do)."""
    ns: dict = {"np": np}
    exec(_BINDINGS + HELPERS, ns)
    if jit:
        import numba

        ns["_range"] = numba.prange if parallel else range
        for name in ("_sign", "_min", "_max"):
            ns[name] = numba.njit(inline="always")(ns[name])
    else:
        ns["_range"] = range
    return ns


def _source(rule: Rule, parallel: bool, population: bool) -> str:
    return (population_source if population else numba_source)(rule, parallel)


def module_source(rule: Rule, parallel: bool, population: bool = False) -> str:
    """A whole Python module defining the rule's loop (or population loop):
    what is written to the cache folder and imported, so Numba can cache its
    machine code."""
    return (f"# generated by optbench (kernels/codegen/numba_kernel.py, preamble v{_PREAMBLE_VERSION}); "
            "safe to delete\n"
            "import numba\nimport numpy as np\n\n"
            f"_range = {'numba.prange' if parallel else 'range'}\n{_BINDINGS}\n" + HELPERS + "\n\n"
            "_sign, _min, _max = (numba.njit(inline='always')(f) for f in (_sign, _min, _max))\n\n\n"
            + _source(rule, parallel, population))


def _source_file(rule: Rule, parallel: bool, population: bool) -> Path:
    """The generated module on disk, named by a hash of its text (so a changed
    rule is a new file and never meets a stale cache)."""
    text = module_source(rule, parallel, population)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = cache_dir() / "numba" / f"{function_name(rule, parallel, population)}_{digest}.py"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)  # atomic: two processes may write it at once
    return path


def compile_rule(rule: Rule, parallel: bool = True, cache: bool = True, population: bool = False):
    """The compiled Numba function of ``rule`` (ImportError without Numba);
    ``population``: its population form.

    cache: compile from a module file in the cache folder with Numba's disk
    cache on, so a second process loads the machine code instead of
    compiling again (about a second per rule and build). Where the cache
    folder cannot be written, the function is compiled in memory.
    """
    import numba

    name = function_name(rule, parallel, population)
    if cache:
        try:
            path = _source_file(rule, parallel, population)
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
        exec(compile(_source(rule, parallel, population), f"<optbench numba: {name}>", "exec"), ns)
        fn = ns[name]
    return numba.njit(signature(rule, population), parallel=parallel, fastmath=False, cache=cache,
                      error_model="numpy", nogil=True)(fn)


class NumbaKernel:
    """Runs a rule's generated Numba loops in place on NumPy buffers."""

    def __init__(self, rule: Rule, parallel_min: int = PARALLEL_MIN):
        self.rule = rule
        self.parallel_min = int(parallel_min)
        self._functions: dict[tuple[bool, bool], object] = {}
        self._lock = threading.Lock()

    def function(self, parallel: bool, population: bool = False):
        key = (parallel, population)
        fn = self._functions.get(key)
        if fn is None:
            with self._lock:  # one compilation per build, even from several threads
                fn = self._functions.get(key)
                if fn is None:
                    fn = self._functions[key] = compile_rule(self.rule, parallel, population=population)
        return fn

    def __call__(self, buffers: Mapping[str, np.ndarray], scalars: Mapping[str, float], active=None) -> None:
        if active is not None and not active[0]:
            return  # a frozen run: no update
        arrays = [buffers[b] for b in self.rule.buffers]
        n = arrays[0].shape[0]
        if n == 0:
            return
        fn = self.function(n >= self.parallel_min)
        # Python floats: the compiled signature rounds each to float32 on entry,
        # as np.float32() would, at a fifth of the cost (which is most of a
        # small model's update: 2 of ~3 us at 1024 parameters).
        fn(*arrays, *[scalars[s] for s in self.rule.scalar_names])

    def population(self, buffers: Mapping[str, np.ndarray], scalars: np.ndarray, active: np.ndarray) -> None:
        """Every active member's update, in place: ``buffers`` (P, n) float32
        C-contiguous arrays, ``scalars`` the (P, k) float32 table, ``active``
        (P,) int32 (0 skips a member). Parallel over the members from
        POPULATION_PARALLEL_MIN elements in all."""
        arrays = [buffers[b] for b in self.rule.buffers]
        members, n = arrays[0].shape
        if members == 0 or n == 0:
            return
        parallel = members * n >= max(self.parallel_min, POPULATION_PARALLEL_MIN)
        self.function(parallel, population=True)(*arrays, active, scalars)
