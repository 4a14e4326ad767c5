"""The Numba path: a rule's update text compiled to one parallel loop over the elements.

The NumPy path (:mod:`kernels.numpy_path`) runs a rule as a dozen ufunc calls
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
lazily, on first use, and cached per rule (masked variants from
:func:`kernels.rule.masked` are rules of their own, with a read-only ``mask``
argument). Importing this module never imports Numba; constructing a kernel
where Numba is missing is fine, calling it raises ImportError. Dropout on the
numba backend uses the NumPy path (its Philox rounds are already vectorised
over uint64 words per chunk).
"""

from __future__ import annotations

import ast
import threading
from typing import Mapping

import numpy as np

from .rule import Rule

#: Elements from which the parallel build runs (below: the serial build).
#: Adam on a 2-core EPYC (shared, loaded): 2^14 5 us serial vs 8 us parallel
#: (waking the pool), 2^16 30 vs 21, 2^17 41 vs 28, 2^20 436 vs 336. From
#: 2^17 the gain is clear; the tests' sizes also stay on the serial build,
#: which compiles in a third of the time.
PARALLEL_MIN = 1 << 17

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_PREFIX = "a_"  # array arguments: a_w, a_g, ...; values in the loop: w, g, ...


def _py_expr(node) -> str:
    if isinstance(node, ast.Constant):
        return f"_f32({float(node.value)!r})"  # a float32 constant, not float64
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.UnaryOp):
        return f"(-{_py_expr(node.operand)})"
    if isinstance(node, ast.Call):
        return f"_sqrt({_py_expr(node.args[0])})"
    return f"({_py_expr(node.left)} {_OPS[type(node.op)]} {_py_expr(node.right)})"


def function_name(rule: Rule, parallel: bool) -> str:
    return f"{rule.name}_numba_{'parallel' if parallel else 'serial'}"


def numba_source(rule: Rule, parallel: bool = True) -> str:
    """The Python source of the loop for ``rule`` (compiled by :func:`compile_rule`).

    Arguments in kernel order: the buffers ``a_<name>`` (``rule.buffers``:
    w, g, other inputs, state), then the scalars (``rule.scalar_names``).
    ``_range`` is ``numba.prange`` in the parallel build, ``range`` otherwise.
    """
    bufs = rule.buffers
    clash = {"_i", "_range", "_sqrt", "_f32"} & (set(bufs) | set(rule.scalar_names))
    if clash:
        raise ValueError(f"rule {rule.name!r} uses names reserved by the numba path: {clash}")
    args = [_PREFIX + b for b in bufs] + list(rule.scalar_names)
    body = [f"        {b} = {_PREFIX}{b}[_i]" for b in bufs]
    body += [f"        {st.target} = {_py_expr(st.expr)}" for st in rule.statements]
    body += [f"        {_PREFIX}{b}[_i] = {b}" for b in rule.written]
    return (
        f"# optbench: rule '{rule.name}', generated from kernels/rules by kernels/numba_path.py\n"
        f"def {function_name(rule, parallel)}({', '.join(args)}):\n"
        f"    for _i in _range({_PREFIX}w.shape[0]):\n" + "\n".join(body) + "\n"
    )


def signature(rule: Rule):
    """void(float32[::1] per buffer, float32 per scalar): compiled eagerly, once."""
    import numba

    array = numba.float32[::1]
    return numba.void(*([array] * len(rule.buffers)), *([numba.float32] * len(rule.scalar_names)))


def compile_rule(rule: Rule, parallel: bool = True):
    """The compiled Numba function of ``rule`` (ImportError without Numba)."""
    import numba

    namespace = {"_range": numba.prange if parallel else range, "_sqrt": np.sqrt, "_f32": np.float32}
    name = function_name(rule, parallel)
    code = compile(numba_source(rule, parallel), f"<optbench numba: {name}>", "exec")
    exec(code, namespace)
    return numba.njit(signature(rule), parallel=parallel, fastmath=False, cache=False,
                      error_model="numpy", nogil=True)(namespace[name])


class NumbaKernel:
    """Runs a rule's generated Numba loop in place on NumPy buffers."""

    def __init__(self, rule: Rule, parallel_min: int = PARALLEL_MIN):
        self.rule = rule
        self.parallel_min = int(parallel_min)
        self._functions: dict[bool, object] = {}
        self._lock = threading.Lock()

    def function(self, parallel: bool):
        fn = self._functions.get(parallel)
        if fn is None:
            with self._lock:  # one compilation per build, even from several threads
                fn = self._functions.get(parallel)
                if fn is None:
                    fn = self._functions[parallel] = compile_rule(self.rule, parallel)
        return fn

    def __call__(self, buffers: Mapping[str, np.ndarray], scalars: Mapping[str, float]) -> None:
        arrays = [buffers[b] for b in self.rule.buffers]
        n = arrays[0].shape[0]
        if n == 0:
            return
        fn = self.function(n >= self.parallel_min)
        fn(*arrays, *(np.float32(scalars[s]) for s in self.rule.scalar_names))
