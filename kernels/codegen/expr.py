"""The rule language's expressions, printed for each target.

An update line's right-hand side is a Python ``ast`` expression over names,
numbers, ``+ - * /``, unary minus and the calls in ``kernels.rule.FUNCTIONS``.
:class:`Printer` turns one into source text for a target language; the CUDA
and Numba generators differ only in how they spell a number and a function.
:func:`evaluate` computes one on arrays (NumPy or CuPy) for the host-side
uses: a rule's look-ahead weights.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Callable, Mapping

from ..backend import array_module

OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


@dataclass(frozen=True)
class Printer:
    """number(value) -> a literal; functions: rule-language name -> target name."""

    number: Callable[[float], str]
    functions: Mapping[str, str]

    def __call__(self, node: ast.expr) -> str:
        if isinstance(node, ast.Constant):
            return self.number(float(node.value))
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.UnaryOp):
            return f"(-{self(node.operand)})"
        if isinstance(node, ast.Call):
            return f"{self.functions[node.func.id]}(" + ", ".join(self(a) for a in node.args) + ")"
        return f"({self(node.left)} {OPERATORS[type(node.op)]} {self(node.right)})"


#: CUDA C: float literals and the single-precision math functions.
CUDA = Printer(number=lambda v: f"{v!r}f", functions={"sqrt": "sqrtf"})
#: Numba: float32 constants (not float64) and NumPy's functions, bound in the
#: generated module's namespace under these names.
NUMBA = Printer(number=lambda v: f"_f32({v!r})", functions={"sqrt": "_sqrt"})


def evaluate(node: ast.expr, env: Mapping):
    """The value of ``node`` with names from ``env`` (arrays or numbers)."""
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        return -evaluate(node.operand, env)
    if isinstance(node, ast.Call):
        arg = evaluate(node.args[0], env)
        return array_module(arg).sqrt(arg)
    a, b = evaluate(node.left, env), evaluate(node.right, env)
    return {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
            ast.Div: lambda: a / b}[type(node.op)]()
