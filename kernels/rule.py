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
* ``update``: the per-element update, straight-line ``name = expression``
  lines (below);
* ``lookahead``: for a rule whose parameter buffer holds a point other than
  the weights (Nesterov keeps u = w - eta gamma v), the offset as an
  expression: w = params + lookahead;
* ``reference`` (optional): the rule's step in float64, ``(w, g, state, hp,
  t) -> (w, state)`` on float64 arrays (``state`` a dict by state name, ``hp``
  the resolved hyper-parameters, ``t`` the 1-based step), written
  independently of ``update`` so that validation compares two formulations; a
  plug-in rule may give one. It is the rule's own maths, as written here: the
  L2 transforms the registry applies are not in it (whoever uses it applies
  them). Nothing in this module calls it.

What a rule says about itself, beyond its maths, lives on it too, once:

* ``formula``: the update in the lecture's symbols (the README's rule table
  and ``optbench rules NAME``);
* ``lecture`` (its place among the lecture's rules) and ``year`` (of its
  paper): the order in which tables list the rules;
* ``lr_centre``: the learning rate a small MLP usually wants, the centre of
  a protocol's tuning grid (default: the default lr), and ``scales``: how a
  random search draws each hyper-parameter (:meth:`Rule.scale`);
* ``peer``: its exact equivalent in a library users trust
  (:class:`~optbench.kernels.peer.Peer`), and ``peer_note``: that
  equivalent in words, or why there is none.

The update language. Each line is ``name = expression``; lines run in order,
once per element, in float32. A name is

* a **buffer**: ``w`` (parameters, read and written), ``g`` (the gradient,
  read-only: assigning to ``g`` rebinds a local copy), the ``inputs`` (read
  only) and the ``state`` (read, and written back after the last line);
* a **scalar**: a key of ``scalars(hp, t)``, the same for every element of a
  step; never assigned;
* a **local**: any other name, assigned before it is read; it lives for one
  element only (a name read before it is assigned is an error: if it is
  meant to carry over between steps it must be declared a state).

An expression combines names and numbers with ``+ - * /``, unary minus,
parentheses and the calls in :data:`FUNCTIONS` -- ``sqrt(x)``, ``abs(x)``,
``sign(x)``, ``min(a, b)``, ``max(a, b)`` and ``where(cond, a, b)``, whose
``cond`` is one comparison ``x OP y`` (``< <= > >= == !=``; no chains, no
and/or). Comparisons appear nowhere else. Semantics, the same on every
backend bit for bit (NumPy's ufuncs): ``max(a, b)`` = ``(a > b || a != a) ? a
: b`` and ``min(a, b)`` = ``(a < b || a != a) ? a : b`` (a NaN on either side
propagates; of equal values, such as -0 and +0, b is returned);
``sign(x)`` is 1, -1, +0.0 for either zero and NaN for NaN; ``abs`` clears
the sign bit (``fabs``); a comparison with a NaN is false, so ``where`` then
picks ``b``.

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
import inspect
import math
import re
import textwrap
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Mapping

from .peer import Peer

#: Element-wise functions an update may call, with the number of arguments each takes.
ELEMENTWISE = {"sqrt": 1, "abs": 1, "sign": 1, "min": 2, "max": 2, "where": 3}
#: Reductions over each view (a weight matrix, a bias; the whole buffer
#: without a layout): a value per view. The ``_all`` forms reduce over every
#: view of the run: one value per run.
REDUCTIONS = {"sum": 1, "mean": 1, "norm": 1, "dot": 2, "amax": 1}
GLOBAL_REDUCTIONS = {f"{name}_all": arity for name, arity in REDUCTIONS.items()}
#: Statistics of a view as a matrix (rows x cols; a vector is one row): a value per row or per column.
ROW_COL = {"rowmean": 1, "colmean": 1}
#: Steps on a view as a matrix: Newton-Schulz orthogonalisation (Muon).
MATRIX_STEPS = {"orth": 1}
#: Every function an update may call, with the number of arguments each takes.
FUNCTIONS = {**ELEMENTWISE, **REDUCTIONS, **GLOBAL_REDUCTIONS, **ROW_COL, **MATRIX_STEPS}
#: Names every update may read: its view's size, rows and cols (a vector is
#: 1 x size), and ``matrix``: 1 where the rule treats the view as a matrix
#: (``Rule.matrices``), else 0.
VIEW_CONSTANTS = ("size", "rows", "cols", "matrix")
#: Which views a rule treats as matrices: every 2-D view, or the 2-D views
#: but the first and last (Muon's recipe: AdamW for the input and output layers).
MATRICES = ("all", "hidden")
#: The comparisons where's condition may use.
COMPARISONS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div)
#: How a random search may draw a hyper-parameter (Rule.scale).
SCALES = ("log", "log1m", "linear")
#: Buffers every rule has (the weights and the gradient) and the read-only
#: inputs the transforms add (:mod:`.transforms`: ``mask`` for pruning,
#: ``decay_mask`` for per-tensor decay): no state, input or carried value of
#: a rule may take these names, or it would shadow them.
RESERVED_BUFFERS = ("w", "g", "mask", "decay_mask")
#: Scalars the registry's L2 and decay transforms add to every rule's own
#: (``{**own, **added}``): a rule's scalar of one of these names would be
#: overwritten by the transform's value, silently changing its maths.
RESERVED_SCALARS = ("l2", "decay", "lr_wd")
#: Where each plug-in rule came from (a file or an entry point), for errors
#: that happen after loading (a ``scalars`` that raises in a run).
SOURCES: dict[str, str] = {}


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
    #: Where it stands in the rule's update text (1-based), for error messages.
    lineno: int = field(default=0, compare=False)

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
    #: The rule's float64 step (w, g, state, hp, t) -> (w, state), if its author
    #: gives one (see the module docstring); None: there is none.
    reference: Callable | None = None
    #: The update in the lecture's symbols, for people (L' is the gradient).
    formula: str = ""
    #: Its place among the lecture's rules (1-6; None: beyond the lecture) and its paper's year.
    lecture: int | None = None
    year: int | None = None
    #: The centre of a protocol's lr grid (None: the default lr) and the search scales.
    lr_centre: float | None = None
    scales: Mapping[str, str] = field(default_factory=dict)
    #: The exact equivalent in a peer library (None: none), and that, or why not, in words.
    peer: Peer | None = None
    peer_note: str = ""
    #: Scalars carried from step to step on the device (one per run, or one
    #: per view when a per-view value is assigned to one), by name, with the
    #: value before the first step: a number or the name of a hyper-parameter.
    carry: Mapping[str, float | str] = field(default_factory=dict)
    #: Factored state: one value per row (``rowstate``) or per column
    #: (``colstate``) of every view, kept between steps (Adafactor); zero at the start.
    rowstate: tuple[str, ...] = ()
    colstate: tuple[str, ...] = ()
    #: Each state buffer's value before the first step where it is not 0:
    #: a number, or "w" for a copy of the parameters.
    init: Mapping[str, float | str] = field(default_factory=dict)
    #: Which views ``matrix`` and ``orth`` treat as matrices (:data:`MATRICES`).
    matrices: str = "all"
    #: False: the registry adds no decoupled decay (the rule decays the
    #: weights itself, as Prodigy does with its own step size, or not at all).
    decoupled: bool = True
    #: validate's tolerance per step where the default (64 ulp) is too tight
    #: for the rule's maths, and why (printed by validate).
    tolerance: float | None = None
    tolerance_note: str = ""
    statements: tuple[Statement, ...] = field(init=False, repr=False)
    _scalar_names: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self):
        unknown = set(self.ranges) - set(self.hyper)
        if unknown:
            raise RuleError(f"rule {self.name!r}: ranges for unknown hyper-parameter(s) {sorted(unknown)}")
        for key, default in self.hyper.items():
            if default not in self.interval(key):
                raise RuleError(f"rule {self.name!r}: default {key} = {default!r} lies outside {self.interval(key)}")
        bad = {k: v for k, v in self.scales.items() if k not in self.hyper or v not in SCALES}
        if bad:
            raise RuleError(f"rule {self.name!r}: scales {bad} must map hyper-parameters to one of "
                            f"{', '.join(SCALES)}")
        if self.lr_centre is not None and ("lr" not in self.hyper or self.lr_centre not in self.interval("lr")):
            raise RuleError(f"rule {self.name!r}: lr_centre {self.lr_centre!r} is not a learning rate it allows")
        if self.matrices not in MATRICES:
            raise RuleError(f"rule {self.name!r}: matrices must be one of {', '.join(MATRICES)}, "
                            f"got {self.matrices!r}")
        for key, value in self.init.items():
            if key not in self.state:
                raise RuleError(f"rule {self.name!r}: init for {key!r}, which is not a state buffer")
            if value != "w" and (isinstance(value, (bool, str)) or not math.isfinite(float(value))):
                raise RuleError(f"rule {self.name!r}: state {key!r} starts at a number or \"w\", got {value!r}")
        for key, value in self.carry.items():
            if isinstance(value, str) and value not in self.hyper:
                raise RuleError(f"rule {self.name!r}: carried {key!r} starts at {value!r}, "
                                "which is not a hyper-parameter")
        if self.tolerance is not None and not (self.tolerance > 0 and self.tolerance_note):
            raise RuleError(f"rule {self.name!r}: a tolerance must be positive and say why (tolerance_note)")
        own = self._own_names
        shadow = sorted({n for n in own if n in ("w", "g")} | {n for n in own if own.count(n) > 1})
        if shadow:
            raise RuleError(f"rule {self.name!r}: {shadow[0]!r} is declared twice among the weights w, the gradient "
                            "g, inputs, state, carried, row and column values; give it a name of its own")
        object.__setattr__(self, "_scalar_names", tuple(self.step_scalars(self.defaults(), 1)))
        object.__setattr__(self, "statements", tuple(parse_update(self)))

    def interval(self, key: str) -> Interval:
        return Interval.parse(self.ranges.get(key, ANY))

    def scale(self, key: str) -> str:
        """How a random search draws hyper-parameter ``key``: ``scales[key]``,
        else "log" for lr, eps, l2 and wd (log-uniform), "log1m" for a rate
        in [0, 1) (log-uniform in 1 - x: 0.9, 0.99 and 0.999 equally
        likely), "linear" otherwise."""
        if key in self.scales:
            return self.scales[key]
        if key in ("lr", "eps", "l2", "wd"):
            return "log"
        interval = self.interval(key)
        if interval.lo == 0 and interval.hi == 1 and interval.hi_open and not interval.lo_open:
            return "log1m"
        return "linear"

    @property
    def tuning_centre(self) -> float:
        """The centre of a protocol's lr grid: ``lr_centre``, else the default lr."""
        return self.lr_centre if self.lr_centre is not None else self.hyper["lr"]

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
        """The names of the per-step scalars, in the order kernels take them
        (asked of ``scalars`` once, when the rule is made)."""
        return self._scalar_names

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

    def start_state(self, w) -> dict:
        """Each state buffer at step 0, shaped and typed as ``w`` (NumPy or
        CuPy): zero, or what ``init`` says (a number, or a copy of w)."""
        state = {}
        for s in self.state:
            state[s] = w.copy()
            if self.init.get(s) != "w":
                state[s][...] = self.init.get(s, 0.0)
        return state

    def step_scalars(self, hp: Mapping[str, float], t: int, run: "RunInfo | None" = None) -> dict[str, float]:
        """The per-step scalars for step ``t`` (1-based), in double precision.
        ``hp`` holds step t's hyper-parameters (the lr already times the
        schedule's factor); ``run`` the base lr and the schedule, for a
        ``scalars`` that takes a third argument."""
        if t < 1:
            raise RuleError(f"step counter t starts at 1, got {t}")
        try:
            values = {k: float(v) for k, v in call_scalars(self.scalars, hp, t, run).items()}
        except Exception as exc:  # the rule's own code: a division by zero, a missing key, ...
            where = f" (from {SOURCES[self.name]})" if self.name in SOURCES else ""
            raise RuleError(f"rule {self.name!r}{where}: its scalars raised {type(exc).__name__} at step t = {t} "
                            f"with {_hp_text(hp)}: {exc}") from None
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            where = f" (from {SOURCES[self.name]})" if self.name in SOURCES else ""
            raise RuleError(f"rule {self.name!r}{where}: its scalars gave {bad[0]} = {values[bad[0]]} at step t = {t} "
                            f"with {_hp_text(hp)}; a scalar must be finite")
        return values

    @property
    def _own_names(self) -> tuple[str, ...]:
        """Every name the rule declares besides w and g: inputs, state,
        carried values, row and column state."""
        return self.inputs + self.state + tuple(self.carry) + self.rowstate + self.colstate

    def check_own_names(self) -> None:
        """A RuleError if the rule, as its author wrote it (before the
        registry's transforms), uses a name the transforms add
        (:data:`RESERVED_BUFFERS`, :data:`RESERVED_SCALARS`)."""
        for name in self._own_names:
            if name in RESERVED_BUFFERS:
                raise RuleError(f"rule {self.name!r}: {name!r} is a name optbench gives a buffer of its own "
                                f"({', '.join(RESERVED_BUFFERS)}); call your state something else")
        for name in self.scalar_names:
            if name in RESERVED_SCALARS and name not in self.hyper:
                raise RuleError(f"rule {self.name!r}: scalar {name!r} is a name the L2 and weight-decay transforms "
                                f"add to every rule ({', '.join(RESERVED_SCALARS)}); call it something else")


@dataclass(frozen=True)
class RunInfo:
    """What a rule's ``scalars(hp, t, run)`` may know beyond step t's
    hyper-parameters: the base learning rate ``lr`` and the schedule's
    ``factor(s)`` at any step s (1.0 for every s without a schedule), so a
    rule can weigh past steps by their lr (schedule-free's averaging weights)
    or bound its steps by the base lr (AdaBound)."""

    lr: float
    factor: Callable[[int], float] = lambda s: 1.0

    def lr_at(self, s: int) -> float:
        """The scheduled learning rate of step s."""
        return self.lr * self.factor(s)


@lru_cache(maxsize=None)
def takes_run(fn: Callable) -> bool:
    """Whether a ``scalars`` function takes the third argument ``run``."""
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(params) >= 3


def call_scalars(fn: Callable, hp: Mapping[str, float], t: int, run: RunInfo | None = None) -> dict:
    """``fn(hp, t)``, or ``fn(hp, t, run)`` for a function that takes it
    (``run`` defaults to the hyper-parameters' lr, unscheduled)."""
    if not takes_run(fn):
        return fn(hp, t)
    return fn(hp, t, run if run is not None else RunInfo(float(hp.get("lr", math.nan))))


def _hp_text(hp: Mapping[str, float]) -> str:
    return ", ".join(f"{k} = {v:g}" if isinstance(v, (int, float)) else f"{k} = {v!r}" for k, v in hp.items())


def dedent(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def parse_update(rule: Rule) -> list[Statement]:
    """Parse and check a rule's update text; names must all be known.

    Every error names the rule and the update line (1-based within the
    dedented text) with the line's own text."""
    text = dedent(rule.update)
    lines = text.splitlines()

    def error(lineno: int, message: str, node: ast.AST | None = None) -> RuleError:
        seg = ast.get_source_segment(text, node) if node is not None else None
        line = " ".join((seg or lines[min(lineno, len(lines)) - 1]).split())
        return RuleError(f"rule {rule.name!r}: update line {lineno} {line!r}: {message}")

    try:
        module = ast.parse(text)
    except SyntaxError as exc:
        raise error(exc.lineno or 1, f"does not parse: {exc.msg}") from None
    scalars = set(rule.scalar_names)
    carried = set(rule.carry) | set(rule.rowstate) | set(rule.colstate)
    groups = {"buffer": set(rule.buffers), "scalar": scalars, "carried value": set(rule.carry),
              "row state": set(rule.rowstate), "column state": set(rule.colstate),
              "view constant": set(VIEW_CONSTANTS)}
    kinds = list(groups.items())
    for i, (a, names_a) in enumerate(kinds):
        for b, names_b in kinds[i + 1:]:
            if names_a & names_b:
                raise RuleError(f"rule {rule.name!r}: names used as both {a} and {b}: {sorted(names_a & names_b)}")
    reserved = sorted(n for names in groups.values() for n in names if n.startswith("_"))
    if reserved:
        raise RuleError(f"rule {rule.name!r}: names starting with _ are reserved for generated code: {reserved}")
    known = set(rule.buffers) | scalars | carried | set(VIEW_CONSTANTS)
    statements = []
    for i, node in enumerate(module.body):
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            raise error(node.lineno, "only 'name = expression' lines are allowed", node)
        target = node.targets[0].id
        if target in scalars:
            raise error(node.lineno, f"cannot assign to scalar {target!r}", node)
        if target in FUNCTIONS:
            raise error(node.lineno, f"cannot assign to {target!r}, the name of a function", node)
        if target in VIEW_CONSTANTS:
            raise error(node.lineno, f"cannot assign to {target!r}, a constant of the view", node)
        if target.startswith("_"):
            raise error(node.lineno, f"names starting with _ are reserved for generated code: {target!r}", node)
        try:
            _check(node.value, known)
        except _Unknown as exc:
            # Assigned on this line or a later one: a value meant to carry over
            # between steps, i.e. a state that was not declared.
            if exc.name in _targets(module.body[i:]):
                raise error(node.lineno, f"reads {exc.name!r} before assigning it: declare it as a state "
                                  f'(state=("{exc.name}",)) or assign it first', node) from None
            raise error(node.lineno, str(exc), node) from None
        except RuleError as exc:
            raise error(node.lineno, str(exc), node) from None
        known.add(target)
        statements.append(Statement(target, node.value, node.lineno))
    if not any(s.target == "w" for s in statements):
        raise RuleError(f"rule {rule.name!r}: the update never assigns w")
    if rule.lookahead is not None:
        parse_expression(rule, rule.lookahead, scalars | set(rule.state) | {"w"})
    return statements


def parse_expression(rule: Rule, text: str, known: set[str]) -> ast.expr:
    """One expression of the update language over the names ``known``."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise RuleError(f"rule {rule.name!r}: expression {text!r} does not parse: {exc.msg}") from None
    try:
        _check(node, known)
    except RuleError as exc:
        raise RuleError(f"rule {rule.name!r}: expression {text.strip()!r}: {exc}") from None
    return node


def _targets(nodes) -> set[str]:
    return {t.id for n in nodes if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}


class _Unknown(RuleError):
    """A name that is neither known nor assigned yet (parse_update says which)."""

    def __init__(self, name: str):
        super().__init__(f"unknown name {name!r}")
        self.name = name


def _check(node: ast.AST, known: set[str]) -> None:
    """The grammar, recursively: comparisons only as where's first argument."""
    if isinstance(node, ast.Name):
        if node.id not in known:
            raise _Unknown(node.id)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise RuleError(f"constant {node.value!r} not allowed (numbers only)")
    elif isinstance(node, ast.BinOp):
        if not isinstance(node.op, _OPERATORS):
            raise RuleError(f"operator {type(node.op).__name__} not allowed (only + - * /)")
        _check(node.left, known)
        _check(node.right, known)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.USub):
            raise RuleError(f"unary {type(node.op).__name__} not allowed (only unary minus)")
        _check(node.operand, known)
    elif isinstance(node, ast.Call):
        _check_call(node, known)
    elif isinstance(node, (ast.Compare, ast.BoolOp)):
        raise RuleError(f"comparison {ast.unparse(node)!r} is allowed only as where's first argument, "
                        "where(a OP b, x, y)")
    elif isinstance(node, ast.IfExp):
        raise RuleError(f"{ast.unparse(node)!r}: write where(cond, a, b) instead of 'a if cond else b'")
    else:
        raise RuleError(f"{type(node).__name__} {ast.unparse(node)!r} not allowed in an update")


def _check_call(node: ast.Call, known: set[str]) -> None:
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name not in FUNCTIONS:
        raise RuleError(f"unknown function {ast.unparse(node.func)!r}: only calls of {', '.join(FUNCTIONS)} "
                        "are allowed")
    if node.keywords:
        raise RuleError(f"{name}() takes no keyword arguments")
    arity = FUNCTIONS[name]
    if len(node.args) != arity:
        raise RuleError(f"{name}() takes {arity} argument{'s' if arity > 1 else ''}, got {len(node.args)}")
    args = list(node.args)
    if name == "where":
        cond = args.pop(0)
        if isinstance(cond, ast.BoolOp):
            raise RuleError(f"where's condition {ast.unparse(cond)!r} must be one comparison a OP b (no and/or)")
        if not isinstance(cond, ast.Compare):
            raise RuleError(f"where's first argument must be a comparison a OP b "
                            f"({' '.join(COMPARISONS.values())}), got {ast.unparse(cond)!r}")
        if len(cond.ops) != 1:
            raise RuleError(f"chained comparison {ast.unparse(cond)!r}: "
                            "where's condition is one comparison a OP b")
        if type(cond.ops[0]) not in COMPARISONS:
            raise RuleError(f"comparison {type(cond.ops[0]).__name__} not allowed "
                            f"(only {' '.join(COMPARISONS.values())})")
        args = [cond.left, cond.comparators[0]] + args
    for a in args:
        _check(a, known)
