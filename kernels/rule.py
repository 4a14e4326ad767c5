"""An update rule, written once, from which every backend is generated.

A rule is data:

* ``hyper``: its hyper-parameters with defaults, and ``ranges``: the values
  each may take, in interval notation (``"(0, inf)"``, ``"[0, 1)"``); every
  value must also be finite. A value outside is a :class:`RuleError` naming
  the rule, the hyper-parameter and the interval, before anything runs;
* ``state``: the names of its state buffers (each the size of the parameters,
  zero at the start);
* ``scalars(hp, t)``: the per-step scalars, computed on the host in double
  precision once per step (bias corrections, 1 - gamma, eta * gamma, ...) and
  passed to the kernel -- never recomputed per element;
* ``update``: the per-element update as straight-line assignments over the
  buffers ``w`` (parameters, read and written), ``g`` (gradient, read-only;
  assigning to ``g`` rebinds a local copy), the state buffers, the scalars and
  locals. Expressions use ``+ - * /``, unary minus, numbers and ``sqrt``;
* ``lookahead``: for a rule whose parameter buffer holds a point other than
  the weights (Nesterov keeps u = w - eta gamma v), the offset as an
  expression: w = params + lookahead.

A rule module holds only its own update. L2 (coupled, added to the gradient)
and decoupled weight decay are transforms of a rule (:mod:`kernels.transforms`,
beside ``masked``), applied to every rule by the registry.

The update text is the single source: :mod:`kernels.codegen` compiles it to
in-place NumPy ufunc calls over cache-sized chunks, a CUDA
``__host__ __device__`` function called from two kernels, and a Numba loop.
Because all come from one definition, the backends cannot drift apart; the
float64 reference in :mod:`kernels.reference` is written separately, from
the lecture.
"""

from __future__ import annotations

import ast
import math
import re
import textwrap
from dataclasses import dataclass, field
from typing import Callable, Mapping

#: Functions an update may call, each with one argument.
FUNCTIONS = ("sqrt",)


class RuleError(ValueError):
    """A rule definition or a rule's arguments are invalid."""


@dataclass(frozen=True)
class Interval:
    """Allowed values of a hyper-parameter: finite, between ``lo`` and ``hi``,
    each end open or closed. Written and parsed in interval notation."""

    lo: float
    hi: float
    lo_open: bool
    hi_open: bool

    _SYNTAX = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])\s*$")

    @classmethod
    def parse(cls, text: str) -> "Interval":
        m = cls._SYNTAX.match(text)
        if not m:
            raise RuleError(f"range {text!r} is not an interval such as '(0, inf)' or '[0, 1)'")
        lo, hi = float(m.group(2)), float(m.group(3))
        if not lo <= hi:
            raise RuleError(f"range {text!r} is empty")
        return cls(lo, hi, m.group(1) == "(", m.group(4) == ")")

    def __contains__(self, v: float) -> bool:
        if not math.isfinite(v):
            return False
        above = v > self.lo if self.lo_open else v >= self.lo
        below = v < self.hi if self.hi_open else v <= self.hi
        return above and below

    def __str__(self) -> str:
        def end(x):
            return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:g}"

        return f"{'(' if self.lo_open else '['}{end(self.lo)}, {end(self.hi)}{')' if self.hi_open else ']'}"


#: The range of a hyper-parameter whose rule gives none: any finite value.
ANY = "(-inf, inf)"


@dataclass(frozen=True)
class Statement:
    target: str
    expr: ast.expr

    def __str__(self) -> str:
        return f"{self.target} = {ast.unparse(self.expr)}"


@dataclass(frozen=True, eq=False)  # identity hash: rules are singletons
class Rule:
    name: str
    title: str
    hyper: Mapping[str, float]
    symbols: Mapping[str, str]
    state: tuple[str, ...]
    scalars: Callable[[Mapping[str, float], int], dict[str, float]]
    update: str
    bytes_per_param: int
    #: w = params + lookahead (an expression over the state and scalars), for a
    #: rule that stores another point than the weights; None: params are w.
    lookahead: str | None = None
    #: Read-only buffers besides g (``mask`` in a masked variant).
    inputs: tuple[str, ...] = ()
    #: Allowed values per hyper-parameter, in interval notation (default: any finite value).
    ranges: Mapping[str, str] = field(default_factory=dict)
    statements: tuple[Statement, ...] = field(init=False, repr=False)

    def __post_init__(self):
        unknown = set(self.ranges) - set(self.hyper)
        if unknown:
            raise RuleError(f"rule {self.name!r}: ranges for unknown hyper-parameter(s) {sorted(unknown)}")
        for key, default in self.hyper.items():
            if default not in self.interval(key):
                raise RuleError(f"rule {self.name!r}: default {key} = {default!r} lies outside {self.interval(key)}")
        object.__setattr__(self, "statements", tuple(parse_update(self)))

    def interval(self, key: str) -> Interval:
        return Interval.parse(self.ranges.get(key, ANY))

    @property
    def buffers(self) -> tuple[str, ...]:
        """Buffer arguments in kernel order: w, g, other inputs, then the state."""
        return ("w", "g") + self.inputs + self.state

    @property
    def written(self) -> tuple[str, ...]:
        """Buffers the update writes back (parameters and state)."""
        return ("w",) + self.state

    @property
    def scalar_names(self) -> tuple[str, ...]:
        return tuple(self.scalars(self.defaults(), 1))

    def defaults(self) -> dict[str, float]:
        return dict(self.hyper)

    def resolve(self, given: Mapping[str, float] | None = None) -> dict[str, float]:
        """Defaults overridden by ``given``; an unknown name is a RuleError."""
        hp = self.defaults()
        for key, value in (given or {}).items():
            if key not in hp:
                raise RuleError(
                    f"rule {self.name!r} has no hyper-parameter {key!r}; "
                    f"allowed: {', '.join(hp)}"
                )
            if isinstance(value, (bool, str)):  # float(True) and float("1e-3") are not numbers given
                raise RuleError(f"hyper-parameter {key!r} of rule {self.name!r} must be a number, got {value!r}")
            try:
                hp[key] = float(value)
            except (TypeError, ValueError):
                raise RuleError(
                    f"hyper-parameter {key!r} of rule {self.name!r} must be a number, got {value!r}"
                ) from None
            if hp[key] not in self.interval(key):
                raise RuleError(f"hyper-parameter {key!r} of rule {self.name!r} must be finite and in "
                                f"{self.interval(key)}, got {value!r}")
        return hp

    def step_scalars(self, hp: Mapping[str, float], t: int) -> dict[str, float]:
        """The per-step scalars for step ``t`` (1-based), in double precision."""
        if t < 1:
            raise RuleError(f"step counter t starts at 1, got {t}")
        return {k: float(v) for k, v in self.scalars(hp, t).items()}

    def weights(self, params, state: Mapping, hp: Mapping[str, float]):
        """The weights a user evaluates: ``params`` itself, or params +
        lookahead for a rule that stores a look-ahead point (a new array)."""
        if self.lookahead is None:
            return params
        from .codegen.expr import evaluate

        env = {**self.step_scalars(hp, 1), **state}
        return params + evaluate(parse_expression(self, self.lookahead, set(env)), env)


def dedent(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def parse_update(rule: Rule) -> list[Statement]:
    """Parse and check a rule's update text; names must all be known."""
    try:
        module = ast.parse(dedent(rule.update))
    except SyntaxError as exc:
        raise RuleError(f"rule {rule.name!r}: update does not parse: {exc}") from None
    scalars = set(rule.scalars(rule.defaults(), 1))
    known = set(rule.buffers) | scalars
    clash = scalars & set(rule.buffers)
    if clash:
        raise RuleError(f"rule {rule.name!r}: names used as both scalar and buffer: {clash}")
    statements = []
    for node in module.body:
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            raise RuleError(f"rule {rule.name!r}: only 'name = expression' lines, got {ast.unparse(node)!r}")
        target = node.targets[0].id
        if target in scalars:
            raise RuleError(f"rule {rule.name!r}: cannot assign to scalar {target!r}")
        check_expr(rule.name, node.value, known)
        known.add(target)
        statements.append(Statement(target, node.value))
    if not any(s.target == "w" for s in statements):
        raise RuleError(f"rule {rule.name!r}: the update never assigns w")
    if rule.lookahead is not None:
        parse_expression(rule, rule.lookahead, scalars | set(rule.state))
    return statements


def parse_expression(rule: Rule, text: str, known: set[str]) -> ast.expr:
    """One expression of the update language over the names ``known``."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise RuleError(f"rule {rule.name!r}: expression {text!r} does not parse: {exc}") from None
    check_expr(rule.name, node, known)
    return node


def check_expr(rule: str, node: ast.expr, known: set[str]) -> None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and not isinstance(getattr(sub, "ctx", None), ast.Store):
            if sub.id not in known and sub.id not in FUNCTIONS:
                raise RuleError(f"rule {rule!r}: unknown name {sub.id!r} in update")
        elif isinstance(sub, ast.Call):
            if not (isinstance(sub.func, ast.Name) and sub.func.id in FUNCTIONS and len(sub.args) == 1):
                raise RuleError(f"rule {rule!r}: only {FUNCTIONS} calls with one argument are allowed")
        elif isinstance(sub, ast.BinOp) and not isinstance(sub.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            raise RuleError(f"rule {rule!r}: operator {type(sub.op).__name__} not allowed")
        elif isinstance(sub, ast.UnaryOp) and not isinstance(sub.op, ast.USub):
            raise RuleError(f"rule {rule!r}: unary {type(sub.op).__name__} not allowed")
        elif isinstance(sub, ast.Constant) and not isinstance(sub.value, (int, float)):
            raise RuleError(f"rule {rule!r}: constant {sub.value!r} not allowed")
        elif not isinstance(
            sub,
            (ast.Name, ast.Call, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Load,
             ast.Add, ast.Sub, ast.Mult, ast.Div, ast.USub),
        ):
            raise RuleError(f"rule {rule!r}: {type(sub).__name__} not allowed in an update")
