"""The rule language's expressions, printed for each target, and evaluated.

An update line's right-hand side is a Python ``ast`` expression over names,
numbers, ``+ - * /``, unary minus and the calls in ``kernels.rule.FUNCTIONS``
(``where``'s first argument one comparison). :class:`Printer` turns one into
source text for a target language; the CUDA and Numba generators differ only
in how they spell a number, a function and ``where``. :func:`evaluate`
computes one on arrays (NumPy or CuPy) or Python floats for the host-side
uses: a rule's look-ahead weights, and :func:`run_update`, a rule's whole
update in float64 (the reference of a plug-in rule that gives none).

The functions mean what NumPy's ufuncs do, on every target:
max(a, b) = np.maximum = ``(a > b || a != a) ? a : b`` (NaN from either side
propagates; of equal values, -0 and +0 included, b); min likewise with <;
sign = np.sign (+0.0 for either zero, the NaN itself for NaN); abs = fabs;
a comparison with NaN is false, so where(cond, a, b) then gives b.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from ..backend import array_module
from ..rule import COMPARISONS, Rule

OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


@dataclass(frozen=True)
class Printer:
    """number(value) -> a literal; functions: rule-language name -> target
    name (every function but where); where(cond, a, b) -> the conditional."""

    number: Callable[[float], str]
    functions: Mapping[str, str]
    where: Callable[[str, str, str], str]

    def __call__(self, node: ast.expr) -> str:
        if isinstance(node, ast.Constant):
            return self.number(float(node.value))
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.UnaryOp):
            return f"(-{self(node.operand)})"
        if isinstance(node, ast.Compare):  # one comparison: the checker allows no chains
            return f"({self(node.left)} {COMPARISONS[type(node.ops[0])]} {self(node.comparators[0])})"
        if isinstance(node, ast.Call):
            args = [self(a) for a in node.args]
            if node.func.id == "where":
                return self.where(*args)
            return f"{self.functions[node.func.id]}(" + ", ".join(args) + ")"
        return f"({self(node.left)} {OPERATORS[type(node.op)]} {self(node.right)})"


def functions_used(statements) -> set[str]:
    """The names of the functions the statements call."""
    return {sub.func.id for st in statements for sub in ast.walk(st.expr) if isinstance(sub, ast.Call)}


#: CUDA C: float literals, the single-precision math functions and the
#: helpers cuda_kernel.HELPERS defines (fminf/fmaxf would return the number
#: of a NaN and a number, not the NaN).
CUDA = Printer(number=lambda v: f"{v!r}f",
               functions={"sqrt": "sqrtf", "abs": "fabsf", "sign": "optbench_sign",
                          "min": "optbench_min", "max": "optbench_max"},
               where=lambda c, a, b: f"({c} ? {a} : {b})")
#: Numba: float32 constants (not float64) and the functions the generated
#: module's preamble binds under these names (numba_kernel.PREAMBLE).
NUMBA = Printer(number=lambda v: f"_f32({v!r})",
                functions={"sqrt": "_sqrt", "abs": "_abs", "sign": "_sign", "min": "_min", "max": "_max"},
                where=lambda c, a, b: f"({a} if {c} else {b})")


def _xp(*values):
    """The array module of the values: cupy if any is a CuPy array, else numpy."""
    for v in values:
        if array_module(v) is not np:
            return array_module(v)
    return np


#: Comparison -> NumPy/CuPy ufunc name (both modules have the same names).
_COMPARE = {ast.Lt: "less", ast.LtE: "less_equal", ast.Gt: "greater", ast.GtE: "greater_equal",
            ast.Eq: "equal", ast.NotEq: "not_equal"}
_CALLS = {"sqrt": "sqrt", "abs": "abs", "sign": "sign", "min": "minimum", "max": "maximum", "where": "where"}


def evaluate(node: ast.expr, env: Mapping):
    """The value of ``node`` with names from ``env`` (arrays or numbers)."""
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        return -evaluate(node.operand, env)
    if isinstance(node, ast.Compare):
        a, b = evaluate(node.left, env), evaluate(node.comparators[0], env)
        return getattr(_xp(a, b), _COMPARE[type(node.ops[0])])(a, b)
    if isinstance(node, ast.Call):
        args = [evaluate(a, env) for a in node.args]
        return getattr(_xp(*args), _CALLS[node.func.id])(*args)
    a, b = evaluate(node.left, env), evaluate(node.right, env)
    return {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
            ast.Div: lambda: a / b}[type(node.op)]()


def run_update(rule: Rule, env: Mapping) -> dict:
    """The rule's update text run in float64: its statements in order, each
    on whole arrays. ``env``: every buffer of ``rule.buffers`` (arrays,
    converted to float64; not modified) and every scalar (numbers) by name.
    Returns {buffer: final value} for ``rule.written``.

    A reference for a rule that has no independent one: it checks the
    float32 kernels' precision and the backends, not the rule's maths."""
    missing = [n for n in (*rule.buffers, *rule.scalar_names) if n not in env]
    if missing:
        raise KeyError(f"rule {rule.name!r}: run_update needs {', '.join(missing)}")
    values = {}
    for name, v in env.items():
        if name in rule.buffers:
            values[name] = _xp(v).asarray(v, dtype=np.float64)
        else:
            values[name] = float(v) if np.ndim(v) == 0 else _xp(v).asarray(v, dtype=np.float64)
    with np.errstate(all="ignore"):  # Inf and NaN propagate as in the kernels
        for st in rule.statements:
            values[st.target] = evaluate(st.expr, values)
    return {b: values[b] for b in rule.written}
