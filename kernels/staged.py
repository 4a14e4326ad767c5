"""Running a rule's stages (:mod:`optbench.kernels.stages`) for the members of one rule.

:class:`StagedStep` holds what a staged rule keeps beyond its state buffers
-- its carried scalars and row/column state (float64, on the parameters'
device), and the scratch buffers its passes write and read -- and runs one
step: for each pass p, the uniform values ready at p (reductions, row/column
means and matrix steps of the previous pass's scratch, then the float64
arithmetic on them), then the pass itself (one generated launch, like any
rule's update); after the last pass the carried values and row/column state
take their new values where the member stepped. Nothing is read back to the
host.
"""

from __future__ import annotations

import numpy as np

from .codegen.expr import evaluate
from .launch import aligned_zeros, kernel_for
from .rule import GLOBAL_REDUCTIONS, MATRIX_STEPS, REDUCTIONS, ROW_COL
from .stages import COL, ELEMENT, MEMBER, ROW, SCALAR, VIEW, Plan, names_in, plan_of
from .views import Views

_SHAPE_KIND = {SCALAR: "member", MEMBER: "member", VIEW: "view", ROW: "row", COL: "col"}


class StagedStep:
    """One rule's stages over its members' rows [lo, hi) of a population.

    plan: the rule's :class:`~optbench.kernels.stages.Plan`; views: the
    buffer's :class:`~optbench.kernels.views.Views`; hypers: each member's
    resolved hyper-parameters (a carried value may start at one of them);
    backend: whose kernels run the passes.
    """

    def __init__(self, plan: Plan, views: Views, hypers, backend: str, xp, rule_for_kernel=None):
        self.plan, self.views, self.xp = plan, views, xp
        self.rule = plan.rule
        self.P, self.n = len(hypers), views.n
        self.backend = backend
        self.kernels = [kernel_for(rule_for_kernel(p) if rule_for_kernel else p, backend) if p.written else None
                        for p in plan.passes]
        values = plan.values
        #: The names each expression reads (walked once, not every step).
        self._names = {vid: names_in(v.expr) for vid, v in values.items() if v.op == "expr"}
        self.carried = {}
        for name, init in self.rule.carry.items():
            vid = f"_c_{name}"
            width = views.V if values[vid].kind == VIEW else 1
            start = np.array([[float(hp[init]) if isinstance(init, str) else float(init)] for hp in hypers])
            self.carried[name] = xp.asarray(np.repeat(start, width, axis=1))
        self.rowstate = {r: xp.zeros((self.P, views.R)) for r in self.rule.rowstate}
        self.colstate = {c: xp.zeros((self.P, views.C)) for c in self.rule.colstate}
        scratch = {}
        for p in plan.passes:
            for name in (*p.arguments.values(), *p.expanded.values()):
                scratch.setdefault(name, None)
        self.scratch = {name: self._zeros() for name in scratch}
        for c in ("size", "rows", "cols", "matrix"):  # the view constants an element pass reads, once
            if f"_x__k_{c}" in self.scratch:
                views.expand(views.constants[c], "view", self.scratch[f"_x__k_{c}"])

    def _zeros(self):
        if self.xp is np:
            return aligned_zeros(self.P * self.n).reshape(self.P, self.n)
        return self.xp.zeros((self.P, self.n), dtype=np.float32)

    def kinds_state(self) -> dict:
        """The carried values and row/column state, by name (views into this step's arrays)."""
        return {**self.carried, **self.rowstate, **self.colstate}

    def step(self, buffers: dict, table, table64, active) -> None:
        """One step: ``buffers`` the rule's (P, n) buffers by name (w, g,
        inputs, state); ``table`` the step's (P, k) float32 scalars and
        ``table64`` the same in float64; ``active`` (P,) int32."""
        plan, xp = self.plan, self.xp
        env: dict = {}
        names = self.rule.scalar_names
        for j, s in enumerate(names):
            env[s] = table64[:, j : j + 1]
        for c in ("size", "rows", "cols", "matrix"):
            env[f"_k_{c}"] = self.views.constants[c]
        for name, value in self.carried.items():
            env[f"_c_{name}"] = value
        for name, value in self.rowstate.items():
            env[f"_r_{name}"] = value
        for name, value in self.colstate.items():
            env[f"_q_{name}"] = value
        arrays = {**buffers, **self.scratch}
        for p, pass_ in enumerate(plan.passes):
            for vid in plan.uniform[p]:
                self._compute(vid, env, arrays)
            if self.kernels[p] is None:
                continue
            if pass_.member_values:
                with np.errstate(over="ignore"):  # beyond float32 is inf, as the pass would compute it
                    extra = xp.concatenate([env[v] for v in pass_.member_values], axis=1).astype(np.float32)
                scalars = xp.ascontiguousarray(xp.concatenate([table, extra], axis=1))
            else:
                scalars = table
            self.kernels[p].population({b: arrays[b] for b in pass_.buffers}, scalars, active)
        for vid in plan.uniform[len(plan.passes)]:
            self._compute(vid, env, arrays)
        stepped = (active != 0)[:, None]
        for name, vid in plan.finals.items():
            new = env.get(vid)
            if new is None:  # never assigned a new value
                continue
            store = (self.carried if name in self.carried else self.rowstate if name in self.rowstate
                     else self.colstate)
            old = store[name]
            new = xp.broadcast_to(self._lift(new, plan.values[vid].kind, self._kind_of_store(name)), old.shape)
            old[...] = xp.where(stepped, new, old)

    def _kind_of_store(self, name: str) -> int:
        if name in self.rowstate:
            return ROW
        if name in self.colstate:
            return COL
        return self.plan.values[f"_c_{name}"].kind

    def _lift(self, value, kind: int, to: int):
        """A value of ``kind`` in the shape of kind ``to`` (per-view values to rows or columns)."""
        if kind == VIEW and to in (ROW, COL):
            return self.views.lift(value, "view", "row" if to == ROW else "col")
        return value

    def _arg(self, vid: str, env: dict, arrays: dict):
        """A barrier's argument: a buffer, a materialised scratch buffer, or a uniform value."""
        v = self.plan.values[vid]
        if v.op == "buffer":
            return arrays[vid]
        if f"_a_{vid}" in arrays:
            return arrays[f"_a_{vid}"]
        return env[vid]

    def _compute(self, vid: str, env: dict, arrays: dict) -> None:
        plan, views, xp = self.plan, self.views, self.xp
        v = plan.values[vid]
        if v.op == "expr":
            lifted = {}
            for name in self._names[vid]:
                u = plan.values[name]
                value = env[name] if name in env else self._scalar_expr(name, env)
                lifted[name] = self._lift(value, u.kind, v.kind)
            with np.errstate(all="ignore"):
                value = evaluate(v.expr, lifted)
            env[vid] = value if hasattr(value, "shape") else xp.full((self.P, 1), value)
        elif v.op in MATRIX_STEPS:
            views.orthogonalize(self._arg(v.args[0], env, arrays), arrays[f"_x_{vid}"])
            return
        elif v.op in ROW_COL:
            env[vid] = views.row_col_mean(self._arg(v.args[0], env, arrays), "row" if v.op == "rowmean" else "col")
        else:
            env[vid] = self._reduce(v, env, arrays)
        target = f"_x_{vid}"
        if target in arrays and v.kind != ELEMENT:
            views.expand(xp.broadcast_to(env[vid], (self.P, _width(views, v.kind))), _SHAPE_KIND[v.kind],
                         arrays[target])

    def _scalar_expr(self, vid: str, env: dict):
        """A scalar-kind value a uniform one reads: evaluated in float64 from the step's scalars."""
        v = self.plan.values[vid]
        env[vid] = evaluate(v.expr, {n: env[n] if n in env else self._scalar_expr(n, env)
                                     for n in self._names[vid]})
        return env[vid]

    def _reduce(self, v, env: dict, arrays: dict):
        views, xp = self.views, self.xp
        kind = v.op[:-4] if v.op in GLOBAL_REDUCTIONS else v.op
        args = [self._arg(a, env, arrays) for a in v.args]
        arg_kinds = [self.plan.values[a].kind for a in v.args]
        if any(k == ELEMENT for k in arg_kinds) or any(a.shape[-1] == self.n for a in args if hasattr(a, "shape")):
            per_view = views.reduce(kind, args[0], args[1] if len(args) > 1 else None)
        elif any(k in (ROW, COL) for k in arg_kinds):
            axis = "row" if ROW in arg_kinds else "col"
            lifted = [self._lift(a, k, ROW if axis == "row" else COL) for a, k in zip(args, arg_kinds)]
            per_view = views.reduce_slots(kind, lifted[0], axis, lifted[1] if len(lifted) > 1 else None)
        else:  # per-run or per-view values: each stands for every element of its view
            size = views.constants["size"]
            a = xp.broadcast_to(args[0], (self.P, views.V))
            if kind == "sum":
                per_view = a * size
            elif kind == "mean" or kind == "amax":
                per_view = a + 0.0
            elif kind == "norm":
                per_view = xp.abs(a) * xp.sqrt(size)
            else:  # dot
                per_view = a * xp.broadcast_to(args[1], (self.P, views.V)) * size
        if v.op in GLOBAL_REDUCTIONS:
            return views.over_all(kind, per_view)
        assert v.op in REDUCTIONS
        return per_view


def _width(views: Views, kind: int) -> int:
    return {SCALAR: 1, MEMBER: 1, VIEW: views.V, ROW: views.R, COL: views.C}[kind]


def run_text64(rule, views: Views, w, g, state: dict, carried: dict, scalars: dict) -> tuple:
    """A rule's update text run once in float64 on one run's whole arrays,
    line by line as written (no passes, nothing recomputed): the float64
    evaluation of its own text that validates a plug-in without a reference.
    ``state``: element states; ``carried``: carried values and row/column
    state by name (missing ones start as the rule says); ``scalars``: the
    step's scalars. Returns (w, state, carried) as float64 arrays."""
    plan = plan_of(rule)
    values = plan.values
    kind_name = {SCALAR: "member", MEMBER: "member", VIEW: "view", ROW: "row", COL: "col"}
    row = lambda a: np.asarray(a, dtype=np.float64).reshape(1, -1)  # noqa: E731
    env: dict = {b: row(v) for b, v in {"w": w, "g": g, **state}.items()}
    env.update({k: np.full((1, 1), float(v)) for k, v in scalars.items()})
    for c in ("size", "rows", "cols", "matrix"):
        env[f"_k_{c}"] = np.asarray(views.constants[c], dtype=np.float64)
    for name, start in rule.carry.items():
        value = carried.get(name, scalars.get(start, start) if isinstance(start, str) else start)
        env[f"_c_{name}"] = np.asarray(value, dtype=np.float64).reshape(1, -1)
    for name in rule.rowstate:
        env[f"_r_{name}"] = row(carried.get(name, np.zeros(views.R)))
    for name in rule.colstate:
        env[f"_q_{name}"] = row(carried.get(name, np.zeros(views.C)))

    def as_element(vid):
        u, value = values[vid], env[vid]
        if u.kind == ELEMENT:
            return value
        if u.kind in (SCALAR, MEMBER):
            return np.broadcast_to(value, (1, views.n))
        full = np.broadcast_to(value, (1, _width(views, u.kind)))
        return full[:, views.element_index({VIEW: "view", ROW: "row", COL: "col"}[u.kind])]

    with np.errstate(all="ignore"):
        for vid, v in values.items():
            if v.op == "expr":
                lifted = {}
                for name in names_in(v.expr):
                    u = values[name]
                    if v.kind == ELEMENT:
                        lifted[name] = as_element(name)
                    elif u.kind == VIEW and v.kind in (ROW, COL):
                        lifted[name] = views.lift(env[name], "view", kind_name[v.kind])
                    else:
                        lifted[name] = env[name]
                value = evaluate(v.expr, lifted)
                env[vid] = value if hasattr(value, "shape") else np.full((1, 1), value)
            elif v.op in MATRIX_STEPS:
                out = np.empty((1, views.n))
                views.orthogonalize(as_element(v.args[0]), out)
                env[vid] = out
            elif v.op in ROW_COL:
                env[vid] = views.row_col_mean(as_element(v.args[0]), "row" if v.op == "rowmean" else "col")
            elif v.op in GLOBAL_REDUCTIONS or v.op in REDUCTIONS:
                kind = v.op[:-4] if v.op in GLOBAL_REDUCTIONS else v.op
                per_view = views.reduce(kind, *[as_element(a) for a in v.args])
                env[vid] = views.over_all(kind, per_view) if v.op in GLOBAL_REDUCTIONS else per_view
    final = {name: env[plan.current[name]] for name in (*rule.written, *rule.carry, *rule.rowstate, *rule.colstate)}
    new_state = {s: np.array(as_element(plan.current[s])[0]) for s in rule.state}
    return (np.array(as_element(plan.current["w"])[0]), new_state,
            {k: final[k] for k in (*rule.carry, *rule.rowstate, *rule.colstate)})
