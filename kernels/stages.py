"""A rule beyond the element, compiled into stages: element-wise passes
between reductions, statistics and matrix steps.

An update line may read a reduction over its view (``norm(w)``), a value
computed from reductions (LAMB's trust ratio), a scalar carried from the
last step (Prodigy's d), a row or column statistic (Adafactor) or a matrix
step (Muon's ``orth``). Each value of the text gets a *kind* -- where it
lives and how many of it there are per member:

==========  ===========================================  ==================
kind        what                                         stored as
==========  ===========================================  ==================
scalar      a host scalar of the step (``scalars``)      (P, k) table
member      one per run: ``*_all`` reductions, carries   (P, 1) float64
view        one per view: reductions, view constants     (P, V) float64
row / col   one per row / column of each view            (P, R) / (P, C)
element     one per element: buffers, their arithmetic   (P, n) float32
==========  ===========================================  ==================

and a *ready* index: the element-wise pass from which on it is known. A
reduction, a row/column mean or ``orth`` of an element value needs a pass
over the elements first, so its value is ready one pass later than its
argument. The rule's text becomes:

    uniform 0, pass 0, uniform 1, pass 1, ..., pass F, uniform F+1

* pass p (generated for NumPy, Numba and CUDA like any update: the same
  code generators, given the pass as a rule) computes the arguments of the
  reductions and matrix steps that need it into scratch buffers, and the last
  pass F writes w and the state. Element values are recomputed in each pass
  that needs them from the step's starting buffers (nothing is written before
  pass F), so a pass reads what the rule reads plus the scratch buffers;
* between passes, the views compute the reductions, statistics and matrix
  steps (:mod:`optbench.kernels.views`), then the "uniform" values -- every
  member/view/row/col value ready at the next pass -- are evaluated in
  float64 on (P, V)-shaped arrays; a per-view value an element pass reads is
  expanded to a scratch buffer, a per-member value joins the pass's scalars;
* after pass F the carried scalars and the row/column state take their new
  values (for the members that stepped).

A rule whose text needs none of this compiles to one pass: the rule itself,
the single launch it always was.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass, field
from functools import lru_cache

from .rule import (GLOBAL_REDUCTIONS, MATRIX_STEPS, REDUCTIONS, ROW_COL, VIEW_CONSTANTS, Rule, RuleError,
                   Statement)

SCALAR, MEMBER, VIEW, ROW, COL, ELEMENT = range(6)
KIND_NAMES = {SCALAR: "scalar", MEMBER: "per-run", VIEW: "per-view", ROW: "per-row", COL: "per-column",
              ELEMENT: "per-element"}
BARRIERS = {**REDUCTIONS, **GLOBAL_REDUCTIONS, **ROW_COL, **MATRIX_STEPS}


def join(a: int, b: int) -> int:
    """The kind of a value computed from kinds a and b (a row value with a
    column value is one per element)."""
    if {a, b} == {ROW, COL}:
        return ELEMENT
    return max(a, b)


@dataclass
class Value:
    """One assignment (or one input, or one barrier call) of the rule, in SSA form."""

    id: str
    kind: int
    ready: int
    op: str  # "buffer", "scalar", "const", "carry", "rowstate", "colstate", "expr", or a barrier's name
    expr: ast.expr | None = None  # "expr": over value ids
    args: tuple[str, ...] = ()  # a barrier's argument ids
    source: str = ""  # what the user wrote, for messages
    lineno: int = 0


@dataclass(eq=False)
class ElementPass:
    """One element-wise pass, in the shape the code generators take a rule:
    ``name``, ``buffers`` (read ones, then written ones), ``written``,
    ``scalar_names`` (the rule's scalars, then per-member values),
    ``statements`` and ``bytes_per_param``."""

    name: str
    buffers: tuple[str, ...]
    written: tuple[str, ...]
    scalar_names: tuple[str, ...]
    statements: tuple[Statement, ...]
    bytes_per_param: int
    #: Scratch buffers it writes: the argument of a barrier, by value id.
    arguments: dict[str, str] = field(default_factory=dict)
    #: Scratch buffers it reads: an expanded per-view/row/col value or a matrix step's result, by value id.
    expanded: dict[str, str] = field(default_factory=dict)
    #: Per-member values it reads as scalars, by value id (in scalar_names order after the rule's).
    member_values: tuple[str, ...] = ()


@dataclass
class Plan:
    """The stages of a rule: ``passes[p]`` with ``uniform[p]`` (the values
    computed before it) and ``uniform[F + 1]`` after the last; ``values`` by
    id; ``finals``: the final value id of each carried scalar and row/col
    state; ``simple``: one pass that is the rule itself."""

    rule: Rule
    values: dict[str, Value]
    passes: list
    uniform: list[list[str]]
    finals: dict[str, str]
    simple: bool
    #: The value id each name holds after the last line (w and the state's final values among them).
    current: dict[str, str] = field(default_factory=dict)

    @property
    def barriers(self) -> list[Value]:
        return [v for v in self.values.values() if v.op in BARRIERS]


def element_programs(rule: Rule) -> list:
    """What the code generators compile for ``rule``: the rule itself, or its passes."""
    plan = plan_of(rule)
    return [rule] if plan.simple else list(plan.passes)


@lru_cache(maxsize=None)
def plan_of(rule: Rule) -> Plan:
    """The stages of ``rule`` (cached per rule object)."""
    return _Planner(rule).plan()


class _Planner:
    def __init__(self, rule: Rule):
        self.rule = rule
        self.values: dict[str, Value] = {}
        self.current: dict[str, str] = {}
        self.order: list[str] = []

    def error(self, lineno: int, message: str) -> RuleError:
        lines = self.rule.update.strip("\n").splitlines()
        import textwrap

        lines = textwrap.dedent("\n".join(lines)).splitlines()
        line = " ".join(lines[lineno - 1].split()) if 0 < lineno <= len(lines) else ""
        return RuleError(f"rule {self.rule.name!r}: update line {lineno} {line!r}: {message}")

    def add(self, value: Value) -> str:
        self.values[value.id] = value
        self.order.append(value.id)
        return value.id

    def plan(self) -> Plan:
        rule = self.rule
        carry_kind = {c: MEMBER for c in rule.carry}
        for _ in range(3):  # a carried value assigned per-view values is per view: settle its kind
            self._build(carry_kind)
            raised = False
            for c in rule.carry:
                kind = self.values[self.current[c]].kind
                if kind > VIEW:
                    v = self.values[self.current[c]]
                    raise self.error(v.lineno, f"carried {c!r} must be one value per run or per view, "
                                               f"got a {KIND_NAMES[kind]} value")
                if kind > carry_kind[c]:
                    carry_kind[c], raised = kind, True
            if not raised:
                break
        simple = (not rule.carry and not rule.rowstate and not rule.colstate
                  and all(v.kind in (SCALAR, ELEMENT) for v in self.values.values() if v.op == "expr")
                  and not any(v.op in BARRIERS for v in self.values.values()))
        if simple:
            return Plan(rule, self.values, [rule], [[], []], {}, True, dict(self.current))
        return self._stages()

    # --- SSA and kinds ----------------------------------------------------------------
    def _build(self, carry_kind: dict[str, int]) -> None:
        rule = self.rule
        self.values, self.current, self.order = {}, {}, []
        for b in rule.buffers:
            self.current[b] = self.add(Value(b, ELEMENT, 0, "buffer", source=b))
        for s in rule.scalar_names:
            self.current[s] = self.add(Value(s, SCALAR, 0, "scalar", source=s))
        for c in VIEW_CONSTANTS:
            self.current[c] = self.add(Value(f"_k_{c}", VIEW, 0, "const", source=c))
        for c in rule.carry:
            self.current[c] = self.add(Value(f"_c_{c}", carry_kind[c], 0, "carry", source=c))
        for r in rule.rowstate:
            self.current[r] = self.add(Value(f"_r_{r}", ROW, 0, "rowstate", source=r))
        for c in rule.colstate:
            self.current[c] = self.add(Value(f"_q_{c}", COL, 0, "colstate", source=c))
        for st in rule.statements:
            self.lineno = st.lineno
            expr = self._rewrite(st.expr)
            if isinstance(expr, ast.Name) and st.target not in rule.buffers:
                src = self.values[expr.id]
                vid = self.add(Value(self._id(st.target), src.kind, src.ready, "expr", expr, source=st.target,
                                     lineno=st.lineno))
            else:
                kind, ready = self._kind(expr)
                if kind == ELEMENT:
                    expr = self._hoist(expr)
                vid = self.add(Value(self._id(st.target), kind, ready, "expr", expr, source=st.target,
                                     lineno=st.lineno))
            self._check_target(st, self.values[vid])
            self.current[st.target] = vid

    def _id(self, name: str) -> str:
        return f"_s{len(self.order)}_{name}"

    def _check_target(self, st: Statement, value: Value) -> None:
        rule = self.rule
        if st.target in rule.rowstate and value.kind not in (SCALAR, MEMBER, VIEW, ROW):
            raise self.error(st.lineno, f"row state {st.target!r} takes one value per row, "
                                        f"got a {KIND_NAMES[value.kind]} value")
        if st.target in rule.colstate and value.kind not in (SCALAR, MEMBER, VIEW, COL):
            raise self.error(st.lineno, f"column state {st.target!r} takes one value per column, "
                                        f"got a {KIND_NAMES[value.kind]} value")

    def _kind(self, expr: ast.expr) -> tuple[int, int]:
        kind, ready = SCALAR, 0
        for name in names_in(expr):
            v = self.values[name]
            kind, ready = join(kind, v.kind), max(ready, v.ready)
        return kind, ready

    def _hoist(self, node: ast.expr) -> ast.expr:
        """An element expression with each largest per-run/view/row/column
        part made a value of its own, computed once per view (not per
        element) and expanded once (a comparison stays where it is: where's
        condition is one)."""
        if isinstance(node, (ast.Name, ast.Constant)):
            return node
        if not isinstance(node, ast.Compare):
            kind, ready = self._kind(node)
            if kind in (MEMBER, VIEW, ROW, COL):
                return ast.Name(self.add(Value(self._id("part"), kind, ready, "expr", node,
                                               source=ast.unparse(node), lineno=self.lineno)), ast.Load())
        if isinstance(node, ast.Call):
            return ast.Call(node.func, [self._hoist(a) for a in node.args], [])
        if isinstance(node, ast.BinOp):
            return ast.BinOp(self._hoist(node.left), node.op, self._hoist(node.right))
        if isinstance(node, ast.UnaryOp):
            return ast.UnaryOp(node.op, self._hoist(node.operand))
        if isinstance(node, ast.Compare):
            return ast.Compare(self._hoist(node.left), node.ops, [self._hoist(c) for c in node.comparators])
        return node

    def _rewrite(self, node: ast.expr) -> ast.expr:
        """``node`` over value ids, every barrier call hoisted into a value of its own."""
        if isinstance(node, ast.Name):
            return ast.Name(self.current[node.id], ast.Load())
        if isinstance(node, ast.Call) and node.func.id in BARRIERS:
            args = []
            for a in node.args:
                a = self._rewrite(a)
                if not isinstance(a, ast.Name):
                    kind, ready = self._kind(a)
                    a = ast.Name(self.add(Value(self._id("arg"), kind, ready, "expr", a, source=ast.unparse(a),
                                                lineno=self.lineno)), ast.Load())
                args.append(a.id)
            return ast.Name(self._barrier(node.func.id, tuple(args)), ast.Load())
        if isinstance(node, ast.Call):
            return ast.Call(node.func, [self._rewrite(a) for a in node.args], [])
        if isinstance(node, ast.BinOp):
            return ast.BinOp(self._rewrite(node.left), node.op, self._rewrite(node.right))
        if isinstance(node, ast.UnaryOp):
            return ast.UnaryOp(node.op, self._rewrite(node.operand))
        if isinstance(node, ast.Compare):
            return ast.Compare(self._rewrite(node.left), node.ops, [self._rewrite(c) for c in node.comparators])
        return node

    def _barrier(self, op: str, args: tuple[str, ...]) -> str:
        kinds = [self.values[a].kind for a in args]
        element_arg = any(k in (ELEMENT,) for k in kinds) or (op in ROW_COL or op in MATRIX_STEPS) \
            or (op in ("dot", "dot_all") and set(kinds) >= {ROW, COL})
        ready = max(self.values[a].ready for a in args) + (1 if element_arg else 0)
        if op in MATRIX_STEPS:
            kind = ELEMENT
        elif op == "rowmean":
            kind = ROW
        elif op == "colmean":
            kind = COL
        elif op in GLOBAL_REDUCTIONS:
            kind = MEMBER
        else:
            kind = VIEW
        return self.add(Value(self._id(op), kind, ready, op, args=args, source=op, lineno=self.lineno))

    # --- stages -----------------------------------------------------------------------
    def needs_pass(self, v: Value) -> bool:
        """Whether barrier ``v`` reduces, averages or transforms elements (its arguments are materialised)."""
        if v.op in ROW_COL or v.op in MATRIX_STEPS:
            return True
        kinds = {self.values[a].kind for a in v.args}
        return ELEMENT in kinds or kinds >= {ROW, COL}

    def _stages(self) -> Plan:
        rule, values = self.rule, self.values
        finals_elem = {b: self.current[b] for b in rule.written if self.current[b] != b}  # what changes
        F = max([values[i].ready for i in finals_elem.values()]
                + [values[b.args[0]].ready for b in values.values() if b.op in BARRIERS and self.needs_pass(b)]
                + [0])
        finals = {name: self.current[name] for name in (*rule.carry, *rule.rowstate, *rule.colstate)}
        # Uniform values by the stage that computes them (element values live in passes).
        uniform: list[list[str]] = [[] for _ in range(F + 2)]
        for vid in self.order:
            v = values[vid]
            if v.op in ("buffer", "scalar", "const", "carry", "rowstate", "colstate"):
                continue
            if v.kind == ELEMENT and v.op == "expr":
                continue
            if v.kind == SCALAR and v.op == "expr":
                continue  # computed wherever it is read
            if v.ready > F + 1:
                raise self.error(v.lineno, "needs the elements after the last update pass, twice over")
            uniform[v.ready].append(vid)
        passes = [self._pass(p, F, finals_elem) for p in range(F + 1)]
        for name, vid in finals.items():
            if values[vid].ready > F + 1:
                raise self.error(values[vid].lineno, f"{name!r} needs another pass over the elements "
                                                     "after the update")
        return Plan(rule, values, passes, uniform, finals, False, dict(self.current))

    def _pass(self, p: int, F: int, finals_elem: dict[str, str]) -> ElementPass:
        rule, values = self.rule, self.values
        outputs: dict[str, str] = {}  # buffer name -> value id it holds after the pass
        arguments: dict[str, str] = {}
        for b in values.values():
            if b.op in BARRIERS and self.needs_pass(b) and b.ready == p + 1:
                for a in b.args:
                    if values[a].op != "buffer":  # a buffer at the step's start is reduced where it is
                        arguments.setdefault(a, f"_a_{a}")
        for a, buf in arguments.items():
            outputs[buf] = a
        if p == F:
            outputs.update(finals_elem)
        included: list[str] = []
        reads: dict[str, None] = {}
        expanded: dict[str, str] = {}
        members: dict[str, None] = {}
        seen: set[str] = set()

        def visit(vid: str) -> None:
            if vid in seen:
                return
            seen.add(vid)
            v = values[vid]
            if v.op == "buffer":
                reads[vid] = None
            elif v.op == "scalar":
                pass
            elif v.op == "expr" and v.kind in (SCALAR, ELEMENT):
                for name in names_in(v.expr):
                    visit(name)
                included.append(vid)
            elif v.kind == MEMBER:
                members[vid] = None
            else:  # per-view/row/col values and matrix steps' results: scratch buffers
                if v.ready > p:
                    raise self.error(v.lineno, "is read before the pass that computes it (an internal error)")
                expanded[vid] = f"_x_{vid}"

        for vid in outputs.values():
            visit(vid)
        order = {vid: i for i, vid in enumerate(self.order)}
        statements = [Statement(vid, values[vid].expr, values[vid].lineno)
                      for vid in sorted(included, key=order.__getitem__)]
        # Reads of a value that is expanded or a member scalar: by the scratch name / the id itself.
        renames = {vid: buf for vid, buf in expanded.items()}
        statements = [Statement(st.target, _renamed(st.expr, renames), st.lineno) for st in statements]
        for buf, vid in outputs.items():
            if buf != vid:
                src = renames.get(vid, vid)
                statements.append(Statement(buf, ast.Name(src, ast.Load())))
        read_buffers = [b for b in rule.buffers if b in reads] + list(expanded.values())
        written = [b for b in outputs]
        buffers = tuple(dict.fromkeys(read_buffers + written))
        member_ids = tuple(members)
        bpp = 4 * (len(buffers) + len(written))
        return ElementPass(f"{rule.name}_pass{p}", buffers, tuple(written),
                           tuple(rule.scalar_names) + member_ids, tuple(statements), bpp,
                           arguments={a: buf for a, buf in arguments.items()}, expanded=expanded,
                           member_values=member_ids)


def names_in(expr: ast.expr) -> list[str]:
    """The names an expression reads (not the functions it calls)."""
    calls = {id(n.func) for n in ast.walk(expr) if isinstance(n, ast.Call)}
    return [n.id for n in ast.walk(expr) if isinstance(n, ast.Name) and id(n) not in calls]


def _renamed(node: ast.expr, renames: dict[str, str]) -> ast.expr:
    if not renames:
        return node
    calls = {id(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}

    class R(ast.NodeTransformer):
        def visit_Call(self, n):
            return ast.Call(n.func, [self.visit(a) for a in n.args], [])

        def visit_Name(self, n):
            return ast.Name(renames.get(n.id, n.id), ast.Load()) if id(n) not in calls else n

    return R().visit(copy.deepcopy(node))
