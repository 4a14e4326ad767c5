"""An update rule, written once, from which both backends are generated.

A rule is data:

* ``hyper``: its hyper-parameters with defaults (every rule also takes ``l2``,
  the coupled L2 coefficient, and ``wd``, the decoupled weight decay);
* ``state``: the names of its state buffers (each the size of the parameters,
  zero at the start);
* ``scalars(hp, t)``: the per-step scalars, computed on the host in double
  precision once per step (bias corrections, 1 - gamma, eta * gamma, ...) and
  passed to the kernel -- never recomputed per element;
* ``update``: the per-element update as straight-line assignments over the
  buffers ``w`` (parameters, read and written), ``g`` (gradient, read-only;
  assigning to ``g`` rebinds a local copy), the state buffers, the scalars and
  locals. Expressions use ``+ - * /``, unary minus, numbers and ``sqrt``.

The update text is the single source: :mod:`kernels.numpy_path` compiles it to
in-place ufunc calls over cache-sized chunks, :mod:`kernels.cuda_path` to a
``__host__ __device__`` C function called from a CUDA kernel. Because both come
from one definition, the two backends cannot drift apart; the float64
reference in :mod:`kernels.reference` is written separately, from the lecture.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Callable, Mapping

#: Hyper-parameters that every rule takes, with the lecture's symbol.
COMMON_HYPER = {"l2": 0.0, "wd": 0.0}
FUNCTIONS = ("sqrt",)


class RuleError(ValueError):
    """A rule definition or a rule's arguments are invalid."""


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
    #: Optional map from (params, state, hyper) to the weights a user would
    #: evaluate (Nesterov stores the look-ahead point; others: the params).
    weights: Callable | None = None
    #: Read-only buffers besides g (``mask`` in a masked variant).
    inputs: tuple[str, ...] = ()
    statements: tuple[Statement, ...] = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "statements", tuple(parse_update(self)))

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
        return {**self.hyper, **COMMON_HYPER}

    def resolve(self, given: Mapping[str, float] | None = None) -> dict[str, float]:
        """Defaults overridden by ``given``; an unknown name is a RuleError."""
        hp = self.defaults()
        for key, value in (given or {}).items():
            if key not in hp:
                raise RuleError(
                    f"rule {self.name!r} has no hyper-parameter {key!r}; "
                    f"allowed: {', '.join(hp)}"
                )
            try:
                hp[key] = float(value)
            except (TypeError, ValueError):
                raise RuleError(
                    f"hyper-parameter {key!r} of rule {self.name!r} must be a number, got {value!r}"
                ) from None
        return hp

    def step_scalars(self, hp: Mapping[str, float], t: int) -> dict[str, float]:
        """The per-step scalars for step ``t`` (1-based), in double precision."""
        if t < 1:
            raise RuleError(f"step counter t starts at 1, got {t}")
        return {k: float(v) for k, v in self.scalars(hp, t).items()}


def parse_update(rule: Rule) -> list[Statement]:
    """Parse and check a rule's update text; names must all be known."""
    try:
        module = ast.parse(_dedent(rule.update))
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
        _check_expr(rule.name, node.value, known)
        known.add(target)
        statements.append(Statement(target, node.value))
    if not any(s.target == "w" for s in statements):
        raise RuleError(f"rule {rule.name!r}: the update never assigns w")
    return statements


def _check_expr(rule: str, node: ast.expr, known: set[str]) -> None:
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


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip() + "\n"


def masked(rule: Rule) -> Rule:
    """The rule with a 0/1 ``mask`` buffer applied inside the update.

    w, state := mask * rule(w, state), in the same single pass: a pruned
    weight (mask 0) and its state stay exactly 0 through every later step,
    whatever its gradient does (so Nesterov's w = u + eta gamma v is 0 too),
    and the update is still one launch over the flat buffer (Optimal Brain
    Damage's pruned connections, lecture section 11).
    """
    from dataclasses import replace

    tail = "".join(f"\n{b} = {b} * mask" for b in ("w",) + rule.state)
    return replace(rule, name=f"{rule.name}_masked", title=f"{rule.title} (masked)",
                   inputs=rule.inputs + ("mask",), update=_dedent(rule.update) + tail + "\n",
                   bytes_per_param=rule.bytes_per_param + 4)


def decay(hp: Mapping[str, float]) -> float:
    """The decoupled weight-decay factor 1 - eta * lambda_wd."""
    return 1.0 - hp["lr"] * hp["wd"]
