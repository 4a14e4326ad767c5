"""A rule as a PyTorch optimiser: the same update text, run with torch ops.

:func:`torch_optimizer` turns a :class:`~kernels.rule.Rule` (or a registered
rule's name) into a ``torch.optim.Optimizer`` subclass, so a rule written once
for optbench trains a user's PyTorch model::

    import torch
    from optbench.kernels.export import torch_optimizer

    model = torch.nn.Linear(10, 1)
    Adam = torch_optimizer("adam")                    # a torch.optim.Optimizer subclass
    opt = Adam(model.parameters(), lr=1e-3, wd=0.01)  # the rule's names: AdamW here
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()

Semantics. The constructor takes the parameters (an iterable of tensors or of
param-group dicts, as every torch optimiser) and the rule's hyper-parameters
by the rule's names (``rule.hyper``: ``lr``, ``gamma``, ``alpha``, ``eps``, ...
and the registry's ``l2``, coupled L2 added to the gradient, and ``wd``,
decoupled decay w := w (1 - eta wd)), with the rule's defaults; a param group
may override any of them. Every value is checked by ``rule.resolve`` (a
:class:`~kernels.rule.RuleError` naming the rule, the hyper-parameter and its
allowed interval), at construction and again at each step, so a scheduler that
changes ``group["lr"]`` works and one that drives it out of range is caught.

Each parameter tensor p with a gradient gets, on its first step, the rule's
state buffers (``rule.state``, zeros like p or as the rule's ``init`` says, under those names in
``optimizer.state[p]``) and a step counter ``state[p]["step"]`` = t (a Python
int, 1 at the first update, counted per tensor as torch's optimisers do).
A step, under ``torch.no_grad()``:

1. computes the rule's per-step scalars on the host in double,
   ``rule.step_scalars(hp, t)`` (bias corrections, 1 - gamma, ...);
2. interprets the rule's parsed statements (``rule.statements``) in order with
   torch ops on whole tensors: ``w`` is p, ``g`` its gradient (read-only:
   assigning ``g`` rebinds a local, ``p.grad`` is never written), the state
   names the state buffers, other names the scalars or locals. An assignment
   to ``w`` or to a state is written in place (``copy_``) into p or the
   buffer; later lines read the new value.

Arithmetic is in the parameter's dtype (float32 for a float32 model): tensors
combine with the scalars as Python floats, which torch rounds to the tensor's
dtype, and an operation between two scalars is computed on 0-d tensors of that
dtype, as the NumPy kernel computes it in float32. The operations are those of
the rule language (:mod:`kernels.rule`): ``+ - * /``, unary minus, numbers,
``sqrt`` (torch.sqrt), ``abs`` (torch.abs), ``sign`` (torch.sign, NaN for
NaN as NumPy's), ``min`` / ``max`` (torch.minimum / torch.maximum: a NaN on
either side propagates, as np.minimum / np.maximum; only which zero of -0 and
+0 wins a tie may differ) and ``where(a OP b, x, y)`` with one comparison
(``< <= > >= == !=``; torch.where). Anything else is a RuleError when the
class is made, naming the rule and the expression.

Precision. The same operations in the same order as the NumPy kernel: each
result is the correctly rounded float32 value of the same float32 operands
(+, -, *, /, abs, sign, min, max, where), so the export follows
``kernels.Optimizer(rule, ..., backend="numpy")`` bit for bit -- except
``sqrt``: torch's CPU float32 sqrt (MKL's vector math, 1 ulp) is not
correctly rounded (about 1 element in 6 is 1 ulp off on an AVX-512 build), so
a rule with a root agrees to a few ulp per step instead
(``tests/kernels/test_torch_export.py`` measures both). The NumPy kernel
folds scalars that are 0 or 1 out of its program (g + 0 * w is g); the export
computes them, which differs only where a value is Inf or NaN.

Weight decay per group. The registry's ``l2`` and ``wd`` apply to every
parameter of a group; to exempt biases (what ``kernels.Optimizer``'s
``decay_mask`` does), put them in a param group with ``l2=0, wd=0``.

Not supported: a rule with extra read-only buffers (``rule.inputs``, such as
the ``mask`` of :func:`kernels.transforms.masked`; prune with the model's own
means instead), and sparse gradients.

Look-ahead rules. A rule with ``rule.lookahead`` (Nesterov) is exported as
it is: the parameters hold its stored point, u = w - eta gamma v for Nesterov,
so the model's forward pass and gradients are at the look-ahead point, as the
rule intends. :meth:`weights` returns the weights w = u + lookahead to
evaluate (or to copy into the model at the end of training).

torch is imported when :func:`torch_optimizer` is first called, never when
this module is imported (torch is an optional extra of optbench).
"""

from __future__ import annotations

import ast
import operator
from functools import cache

from .rule import Rule, RuleError
from .rules import get_rule
from .stages import plan_of

#: The comparisons where's condition may use, as Python's operators (torch overloads them).
COMPARISONS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
               ast.Eq: operator.eq, ast.NotEq: operator.ne}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _sqrt(torch, x):
    return torch.sqrt(x)


def _abs(torch, x):
    return torch.abs(x)


def _sign(torch, x):
    # torch.sign(NaN) is 0; the rule language's sign (NumPy's) gives NaN.
    return torch.where(torch.isnan(x), x, torch.sign(x))


def _min(torch, a, b):
    return torch.minimum(a, b)


def _max(torch, a, b):
    return torch.maximum(a, b)


#: Rule-language function -> (number of arguments, implementation on tensors).
#: ``where`` is handled by the interpreter (its first argument is a comparison).
FUNCTIONS = {"sqrt": (1, _sqrt), "abs": (1, _abs), "sign": (1, _sign), "min": (2, _min), "max": (2, _max)}
SUPPORTED = tuple(FUNCTIONS) + ("where",)


def torch_optimizer(rule: Rule | str) -> type:
    """A ``torch.optim.Optimizer`` subclass that runs ``rule`` (a Rule or a
    registered rule's name, e.g. "adam") with torch ops; see the module
    docstring. The same class is returned for the same rule.

    Raises UnknownRuleError for an unknown name, RuleError for a rule the
    export cannot run (extra input buffers, an unsupported expression), and
    ImportError if torch is not installed."""
    if isinstance(rule, str):
        rule = get_rule(rule)
    elif not isinstance(rule, Rule):
        raise TypeError(f"torch_optimizer takes a kernels.Rule or a rule's name, got {type(rule).__name__}")
    return _optimizer_class(rule)


def check_exportable(rule: Rule) -> None:
    """A RuleError unless every statement (and the look-ahead) of ``rule`` can
    be run by :func:`evaluate`."""
    if rule.inputs:
        raise RuleError(
            f"rule {rule.name!r} reads input buffer(s) {', '.join(rule.inputs)} besides the gradient; "
            "torch_optimizer exports rules over w, g and the state only")
    if "step" in rule.state:
        raise RuleError(f"rule {rule.name!r}: a state buffer named 'step' clashes with the torch step counter")
    if rule.carry or rule.rowstate or rule.colstate or rule.matrices != "all" or not plan_of(rule).simple:
        raise RuleError(f"rule {rule.name!r} works per tensor (reductions, carried values, row/column state "
                        "or matrix steps); torch_optimizer exports element-wise rules only")
    for stmt in rule.statements:
        _check(rule, stmt.expr, f"update line {str(stmt)!r}")
    if rule.lookahead is not None:
        _check(rule, _lookahead(rule), f"lookahead {rule.lookahead!r}")


def _lookahead(rule: Rule) -> ast.expr:
    return ast.parse(rule.lookahead.strip(), mode="eval").body


def _check(rule: Rule, node: ast.AST, where: str) -> None:
    def fail(what: str):
        raise RuleError(f"rule {rule.name!r}, {where}: {what} cannot be exported to torch "
                        f"(supported: + - * /, unary minus, numbers, names, {', '.join(SUPPORTED)})")

    def visit(n: ast.AST) -> None:
        if isinstance(n, ast.Name):
            return
        if isinstance(n, ast.Constant):
            if isinstance(n.value, bool) or not isinstance(n.value, (int, float)):
                fail(f"constant {n.value!r}")
        elif isinstance(n, ast.BinOp):
            if type(n.op) not in _BINARY:
                fail(f"operator {type(n.op).__name__} in {ast.unparse(n)!r}")
            visit(n.left)
            visit(n.right)
        elif isinstance(n, ast.UnaryOp):
            if not isinstance(n.op, ast.USub):
                fail(f"unary {type(n.op).__name__} in {ast.unparse(n)!r}")
            visit(n.operand)
        elif isinstance(n, ast.Call):
            name = n.func.id if isinstance(n.func, ast.Name) else None
            arity = 3 if name == "where" else FUNCTIONS[name][0] if name in FUNCTIONS else None
            if arity is None:
                fail(f"function {ast.unparse(n.func)!r}")
            if n.keywords or len(n.args) != arity:
                fail(f"call {ast.unparse(n)!r} ({name} takes {arity} positional argument(s))")
            args = list(n.args)
            if name == "where":
                cond = args.pop(0)
                if not (isinstance(cond, ast.Compare) and len(cond.ops) == 1 and type(cond.ops[0]) in COMPARISONS):
                    fail(f"where's condition {ast.unparse(cond)!r} (one comparison a OP b)")
                args += [cond.left, cond.comparators[0]]
            for a in args:
                visit(a)
        elif isinstance(n, ast.Compare):
            fail(f"comparison {ast.unparse(n)!r} outside where's condition")
        else:
            fail(f"{type(n).__name__} {ast.unparse(n)!r}")

    visit(node)


# --- the interpreter -----------------------------------------------------------

def evaluate(node: ast.expr, env, like):
    """The value of rule-language expression ``node`` with torch ops.

    env: name -> tensor or Python float (a scalar); like: a tensor whose dtype
    and device the arithmetic uses. Returns a tensor, a Python float (an
    expression over scalars and numbers only) or, for a comparison of two
    scalars, a bool. Tensors in ``env`` are never modified."""
    import torch

    return _eval(torch, node, env, like)


def _is_tensor(torch, x) -> bool:
    return isinstance(x, torch.Tensor)


def _host(torch, like, *values):
    """Python numbers as 0-d CPU tensors of like's dtype (torch uses a 0-d CPU
    tensor as a scalar operand on any device)."""
    return [torch.tensor(v, dtype=like.dtype) for v in values]


def _eval(torch, node, env, like):
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        return -_eval(torch, node.operand, env, like)  # exact for a tensor and a float alike
    if isinstance(node, ast.BinOp):
        a, b = _eval(torch, node.left, env, like), _eval(torch, node.right, env, like)
        op = _BINARY[type(node.op)]
        ta, tb = _is_tensor(torch, a), _is_tensor(torch, b)
        if not (ta or tb):  # two scalars: in like's dtype, as the kernels compute them
            return op(*_host(torch, like, a, b)).item()
        if not ta and op is operator.truediv:
            # float / tensor would be reciprocal(tensor) * float in torch: two roundings.
            a = _host(torch, like, a)[0]
        return op(a, b)
    if isinstance(node, ast.Call):
        name = node.func.id
        if name == "where":
            cond = node.args[0]
            c = _compare(torch, cond, env, like)
            a, b = _eval(torch, node.args[1], env, like), _eval(torch, node.args[2], env, like)
            if not _is_tensor(torch, c):
                return a if c else b
            if not (_is_tensor(torch, a) or _is_tensor(torch, b)):  # where(cond, 1.0, 0.0): like's dtype
                a = torch.tensor(a, dtype=like.dtype, device=c.device)
            return torch.where(c, a, b)
        args = [_eval(torch, a, env, like) for a in node.args]
        if not any(_is_tensor(torch, a) for a in args):  # a function of scalars, in like's dtype
            return FUNCTIONS[name][1](torch, *_host(torch, like, *args)).item()
        if len(args) == 2:  # min/max of a tensor and a scalar
            args = [a if _is_tensor(torch, a) else _host(torch, like, a)[0] for a in args]
        return FUNCTIONS[name][1](torch, *args)
    raise RuleError(f"{type(node).__name__} {ast.unparse(node)!r} cannot be evaluated with torch ops")


def _compare(torch, node, env, like):
    if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in COMPARISONS):
        raise RuleError(f"where's condition {ast.unparse(node)!r} must be one comparison a OP b")
    a, b = _eval(torch, node.left, env, like), _eval(torch, node.comparators[0], env, like)
    op = COMPARISONS[type(node.ops[0])]
    if not (_is_tensor(torch, a) or _is_tensor(torch, b)):
        return bool(op(*_host(torch, like, a, b)))
    return op(a, b)


def run_update(rule: Rule, p, g, state, scalars) -> None:
    """One step of ``rule`` on tensor ``p`` with gradient ``g``, in place on p
    and on the tensors of ``state`` (a mapping by state name); ``scalars``:
    ``rule.step_scalars(hp, t)``. Call it under ``torch.no_grad()``."""
    import torch

    written = {"w": p, **{s: state[s] for s in rule.state}}
    env = {**scalars, "g": g, **written}
    for stmt in rule.statements:
        value = _eval(torch, stmt.expr, env, p)
        target = stmt.target
        if target in written:
            buf = written[target]
            if value is not buf:
                if _is_tensor(torch, value):
                    buf.copy_(value)
                else:
                    buf.fill_(value)
        elif any(value is buf for buf in written.values()):
            env[target] = value.clone()  # a local keeps this value when the buffer is written later
        else:
            env[target] = value


# --- the optimiser class -------------------------------------------------------

@cache
def _optimizer_class(rule: Rule) -> type:
    check_exportable(rule)
    base = _base()
    name = "".join(part.capitalize() for part in rule.name.split("_"))
    doc = (f"{rule.title} (optbench rule {rule.name!r}) as a torch optimiser: "
           f"{name}(params, {', '.join(f'{k}={v!r}' for k, v in rule.hyper.items())}).\n\n"
           "The update, interpreted with torch ops (see kernels.export):\n\n"
           + "\n".join(f"    {s}" for s in rule.statements) + "\n")
    return type(name, (base,), {"rule": rule, "__doc__": doc, "__module__": __name__,
                                "__qualname__": name})


@cache
def _base() -> type:
    import torch

    class RuleOptimizer(torch.optim.Optimizer):
        """A kernels.Rule run with torch ops (kernels.export.torch_optimizer makes the subclasses)."""

        rule: Rule

        def __init__(self, params, **hyper):
            super().__init__(params, self.rule.resolve(hyper))

        def add_param_group(self, param_group: dict) -> None:
            super().add_param_group(param_group)
            group = self.param_groups[-1]
            self._hyper(group)
            for p in group["params"]:
                if not (p.dtype.is_floating_point and not p.is_complex()):
                    raise TypeError(f"rule {self.rule.name!r} updates real floating-point parameters, "
                                    f"got a {p.dtype} tensor")

        def _hyper(self, group: dict) -> dict:
            return self.rule.resolve({k: group[k] for k in self.rule.hyper})

        @torch.no_grad()
        def step(self, closure=None):
            """One update of every parameter that has a gradient; returns
            closure()'s loss if a closure is given (evaluated first, with grad)."""
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            rule = self.rule
            for group in self.param_groups:
                hp = self._hyper(group)
                scalars_at: dict[int, dict] = {}
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    if p.grad.is_sparse:
                        raise RuntimeError(f"rule {rule.name!r} (kernels.export) does not support sparse gradients")
                    state = self.state[p]
                    if not state:
                        state["step"] = 0
                        for s in rule.state:  # zero, or what the rule's init says
                            start = rule.init.get(s, 0.0)
                            state[s] = (p.detach().clone(memory_format=torch.preserve_format) if start == "w"
                                        else torch.full_like(p, start, memory_format=torch.preserve_format))
                    state["step"] += 1
                    t = state["step"]
                    if t not in scalars_at:
                        scalars_at[t] = rule.step_scalars(hp, t)
                    run_update(rule, p, p.grad, state, scalars_at[t])
            return loss

        @torch.no_grad()
        def weights(self) -> list:
            """The weights to evaluate, one tensor per parameter in group order:
            the parameter itself, or for a look-ahead rule (Nesterov) a new
            tensor w = p + lookahead (p holds the look-ahead point)."""
            out = []
            for group in self.param_groups:
                for p in group["params"]:
                    state = self.state.get(p)
                    if self.rule.lookahead is None or not state:
                        out.append(p)  # no state yet: the offset is 0
                        continue
                    env = {**self.rule.step_scalars(self._hyper(group), 1),
                           **{s: state[s] for s in self.rule.state}, "w": p}
                    offset = evaluate(_lookahead(self.rule), env, p)
                    out.append(p + offset)
            return out

    return RuleOptimizer
