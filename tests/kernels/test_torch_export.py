"""kernels.export.torch_optimizer: a rule as a torch optimiser, against our NumPy kernel.

Every registered rule (the registry is iterated, so a rule added later is
covered) runs as the exported torch optimiser and as ``kernels.Optimizer(...,
backend="numpy")`` on the same float32 parameters and gradients. Both compute
the same rule text, the same float32 operations in the same order, so they
agree bit for bit -- with one exception that the tests pin down: torch's CPU
float32 ``sqrt`` (MKL's vector math) is not correctly rounded (1 ulp off on
about 1 element in 6), while NumPy's is. With the export's sqrt replaced by a
correctly rounded one the two are identical for every rule; with torch's own
they agree to the validation tolerance (kernels.validate: 64 ulp per step).

torch is an optional extra: every test that needs it skips without it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import replace
from math import prod

import numpy as np
import pytest

from optbench.kernels import RULES, Optimizer, RuleError, UnknownRuleError, get_rule
from optbench.kernels.export import FUNCTIONS, evaluate, torch_optimizer
from optbench.kernels.rule import Rule, Statement
from optbench.kernels.transforms import masked
from optbench.kernels.validate import TOLERANCE_PER_STEP, rel_err
from rule_sets import ELEMENTWISE, STAGED  # tests/ is on sys.path

#: Parameter tensors of several shapes, laid end to end in our flat buffer.
SHAPES = [(7, 11), (13,), (3, 1, 2), (1,)]
N = sum(prod(s) for s in SHAPES)
STEPS = 10
L2_FORMS = {"none": {}, "l2": {"l2": 0.1}, "wd": {"wd": 0.1}, "both": {"l2": 0.05, "wd": 0.05}}
#: The element-wise rules (the others are refused: test_a_rule_that_works_per_tensor_is_refused_in_one_line).
ALL_RULES = pytest.mark.parametrize("name", list(ELEMENTWISE))


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _correctly_rounded_sqrt(torch, x):
    """IEEE sqrt in x's dtype: the float64 root of a float32 is rounded once."""
    return torch.sqrt(x.double()).to(x.dtype)


def _uses(rule: Rule, function: str) -> bool:
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == function
               for s in rule.statements for n in ast.walk(s.expr))


def _pieces(torch, flat: np.ndarray) -> list:
    out, o = [], 0
    for s in SHAPES:
        out.append(torch.from_numpy(flat[o : o + prod(s)].reshape(s).copy()))
        o += prod(s)
    return out


def _flat(tensors) -> np.ndarray:
    return np.concatenate([t.detach().numpy().ravel() for t in tensors])


def run_both(torch, name: str, hyper: dict, steps: int = STEPS, seed: int = 0):
    """Yield (t, ours, torch params flat, torch state flat by name) after each step."""
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal(N).astype(np.float32)
    ours = Optimizer(name, w0.copy(), backend="numpy", **hyper)
    params = [torch.nn.Parameter(p) for p in _pieces(torch, w0)]
    opt = torch_optimizer(name)(params, **hyper)
    for t in range(1, steps + 1):
        g = rng.standard_normal(N).astype(np.float32)
        ours.step(g)
        for p, gp in zip(params, _pieces(torch, g)):
            p.grad = gp
        opt.step()
        state = {s: _flat(opt.state[p][s] for p in params) for s in ours.rule.state}
        yield t, ours, _flat(params), state, opt


def _errors(ours, w, state) -> dict:
    errs = {"w": rel_err(w, ours.params.astype(np.float64))}
    errs.update({s: rel_err(state[s], ours.state[s].astype(np.float64)) for s in ours.rule.state})
    return errs


# --- every rule against the NumPy kernel ------------------------------------------

@ALL_RULES
@pytest.mark.parametrize("form", L2_FORMS)
def test_export_matches_numpy_kernel(torch, name, form):
    """Within the validation tolerance at every step, parameters and state."""
    for t, ours, w, state, opt in run_both(torch, name, L2_FORMS[form]):
        assert all(opt.state[p]["step"] == t for g in opt.param_groups for p in g["params"])
        for buf, err in _errors(ours, w, state).items():
            assert err <= TOLERANCE_PER_STEP * t, f"{name} step {t}, buffer {buf}: rel err {err:.2e}"


@ALL_RULES
@pytest.mark.parametrize("form", L2_FORMS)
def test_export_is_bit_for_bit_with_a_correctly_rounded_sqrt(torch, name, form, monkeypatch):
    """The same float32 operations in the same order: identical bits. torch's
    own CPU sqrt is the only difference (a rule without sqrt needs no patch)."""
    monkeypatch.setitem(FUNCTIONS, "sqrt", (1, _correctly_rounded_sqrt))
    for t, ours, w, state, _ in run_both(torch, name, L2_FORMS[form]):
        np.testing.assert_array_equal(w, ours.params, err_msg=f"{name} step {t}: w")
        for s in ours.rule.state:
            np.testing.assert_array_equal(state[s], ours.state[s], err_msg=f"{name} step {t}: {s}")


@pytest.mark.parametrize("name", [n for n, r in ELEMENTWISE.items() if not _uses(r, "sqrt")])
def test_rules_without_sqrt_are_bit_for_bit_as_exported(torch, name):
    for t, ours, w, state, _ in run_both(torch, name, {"l2": 0.05, "wd": 0.05}):
        np.testing.assert_array_equal(w, ours.params, err_msg=f"{name} step {t}: w")
        for s in ours.rule.state:
            np.testing.assert_array_equal(state[s], ours.state[s], err_msg=f"{name} step {t}: {s}")


def test_torch_cpu_sqrt_is_what_differs(torch):
    """The finding behind the tests above, kept honest: if torch's float32
    sqrt ever becomes correctly rounded, the sqrt patch can go."""
    x = np.abs(np.random.default_rng(1).standard_normal(4096)).astype(np.float32)
    assert np.array_equal(_correctly_rounded_sqrt(torch, torch.from_numpy(x)).numpy(), np.sqrt(x))
    got = torch.sqrt(torch.from_numpy(x)).numpy()
    ulps = np.abs(got.view(np.int32).astype(np.int64) - np.sqrt(x).view(np.int32))
    assert ulps.max() <= 1  # at worst 1 ulp, whatever the build


# --- a torch model ------------------------------------------------------------

@ALL_RULES
def test_training_a_torch_model_matches_the_numpy_kernel(torch, name):
    """nn.Linear on fixed data, a few steps of the exported optimiser; our
    kernel, fed the same gradient sequence on the flattened parameters, ends
    at the same parameters (to the tolerance; bit for bit without sqrt)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    x, y = torch.randn(32, 5), torch.randn(32, 3)
    params = list(model.parameters())
    w = _flat(params).astype(np.float32)
    hyper = {"l2": 0.01, "wd": 0.01}
    ours = Optimizer(name, w, backend="numpy", **hyper)
    opt = torch_optimizer(name)(model.parameters(), **hyper)
    exact = not _uses(ours.rule, "sqrt")
    for t in range(1, 7):
        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            return loss

        loss = opt.step(closure)
        assert loss is not None and torch.isfinite(loss)
        ours.step(_flat(p.grad for p in params).astype(np.float32))
        got = _flat(params)
        if exact:
            np.testing.assert_array_equal(got, w, err_msg=f"{name} step {t}")
        else:
            assert rel_err(got, w.astype(np.float64)) <= TOLERANCE_PER_STEP * t, f"{name} step {t}"
    if ours.rule.lookahead is not None:  # the weights to evaluate, not the stored point
        np.testing.assert_allclose(_flat(opt.weights()), ours.weights(), rtol=1e-6, atol=1e-7)


# --- the torch optimiser's own behaviour -------------------------------------------

def test_param_groups_have_their_own_hyper_parameters(torch):
    rng = np.random.default_rng(3)
    a0, b0 = rng.standard_normal((2, 50)).astype(np.float32)
    a, b = torch.nn.Parameter(torch.from_numpy(a0.copy())), torch.nn.Parameter(torch.from_numpy(b0.copy()))
    opt = torch_optimizer("momentum")([{"params": [a]}, {"params": [b], "lr": 0.2, "gamma": 0.5, "wd": 0.1}],
                                      lr=0.05)
    assert opt.param_groups[0]["gamma"] == 0.9 and opt.param_groups[1]["lr"] == 0.2
    ours_a = Optimizer("momentum", a0.copy(), lr=0.05)
    ours_b = Optimizer("momentum", b0.copy(), lr=0.2, gamma=0.5, wd=0.1)
    for _ in range(5):
        ga, gb = rng.standard_normal((2, 50)).astype(np.float32)
        a.grad, b.grad = torch.from_numpy(ga), torch.from_numpy(gb)
        opt.step()
        ours_a.step(ga)
        ours_b.step(gb)
    np.testing.assert_array_equal(a.detach().numpy(), ours_a.params)
    np.testing.assert_array_equal(b.detach().numpy(), ours_b.params)


def test_parameters_without_gradient_are_left_alone(torch):
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = torch_optimizer("adam")([a, b], lr=0.1)
    a.grad = torch.ones(3)
    grad = a.grad.clone()
    opt.step()
    assert torch.equal(b.detach(), torch.ones(3)) and not opt.state[b]
    assert torch.allclose(a.detach(), torch.full((3,), 0.9))  # Adam's first step: -lr sign(g)
    assert torch.equal(a.grad, grad)  # the rule's g = g + l2 w rebinds, never writes p.grad
    assert set(opt.state[a]) == {"step", "mu", "v"}


def test_state_dict_round_trip_continues_exactly(torch):
    rng = np.random.default_rng(4)
    w0 = rng.standard_normal(40).astype(np.float32)
    grads = [torch.from_numpy(g) for g in rng.standard_normal((6, 40)).astype(np.float32)]
    Adam = torch_optimizer("adam")

    def fresh():
        p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
        return p, Adam([p], lr=0.05, wd=0.01)

    p, opt = fresh()
    for g in grads:
        p.grad = g
        opt.step()
    q, first = fresh()
    for g in grads[:3]:
        q.grad = g
        first.step()
    saved = first.state_dict()
    r = torch.nn.Parameter(q.detach().clone())
    second = Adam([r], lr=123.0)  # the saved group's hyper-parameters replace these
    second.load_state_dict(saved)
    assert second.param_groups[0]["lr"] == 0.05
    for g in grads[3:]:
        r.grad = g
        second.step()
    assert torch.equal(r.detach(), p.detach())


def test_a_scheduler_changes_the_learning_rate(torch):
    p = torch.nn.Parameter(torch.zeros(4))
    opt = torch_optimizer("sgd")([p], lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = torch.ones(4)
        opt.step()
        sched.step()
    assert torch.equal(p.detach(), torch.full((4,), -1.75))  # 1 + 0.5 + 0.25
    opt.param_groups[0]["lr"] = -1.0
    p.grad = torch.ones(4)
    with pytest.raises(RuleError, match="'lr'.*sgd.*\\(0, inf\\)"):
        opt.step()


def test_lookahead_rule_keeps_the_lookahead_point_in_the_parameters(torch):
    """Nesterov exported as is: the parameters hold u = w - lr gamma v, as our
    buffer does; weights() gives w = u + lr gamma v."""
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal(30).astype(np.float32)
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = torch_optimizer("nesterov")([p], lr=0.1, gamma=0.9)
    ours = Optimizer("nesterov", w0.copy(), lr=0.1, gamma=0.9)
    assert opt.weights()[0] is p  # no state yet: w = u
    for g in rng.standard_normal((4, 30)).astype(np.float32):
        p.grad = torch.from_numpy(g)
        opt.step()
        ours.step(g)
    np.testing.assert_array_equal(p.detach().numpy(), ours.params)
    np.testing.assert_array_equal(opt.weights()[0].numpy(), ours.weights())
    v = opt.state[p]["v"]
    assert torch.equal(opt.weights()[0], p.detach() + 0.1 * 0.9 * v)


def test_float64_parameters_compute_in_float64(torch):
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = torch_optimizer("adam")([p], lr=0.1)
    p.grad = torch.full((3,), 1e-3, dtype=torch.float64)
    opt.step()
    assert opt.state[p]["mu"].dtype == torch.float64
    expected = -0.1 * 1e-3 / (1e-3 + 1e-8)
    assert abs(p[0].item() - expected) < 1e-15


def test_the_same_class_for_the_same_rule(torch):
    Adam = torch_optimizer("adam")
    assert torch_optimizer(get_rule("adam")) is Adam
    assert issubclass(Adam, torch.optim.Optimizer) and Adam.rule is get_rule("adam")
    assert Adam.__name__ == "Adam" and "lr=0.001" in Adam.__doc__


# --- errors -----------------------------------------------------------------------

def test_unknown_rule_name():
    with pytest.raises(UnknownRuleError, match="unknown optimiser 'adamw_typo'.*sgd"):
        torch_optimizer("adamw_typo")


def test_not_a_rule():
    with pytest.raises(TypeError, match="kernels.Rule or a rule's name"):
        torch_optimizer(3)


def test_rule_with_extra_inputs_is_refused():
    with pytest.raises(RuleError, match="'sgd_masked' reads input buffer\\(s\\) mask"):
        torch_optimizer(masked(get_rule("sgd")))


def test_unknown_and_bad_hyper_parameters(torch):
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(RuleError, match="no hyper-parameter 'beta1'.*gamma"):
        torch_optimizer("adam")([p], beta1=0.9)
    with pytest.raises(RuleError, match="'gamma' of rule 'adam' must be finite and in \\[0, 1\\)"):
        torch_optimizer("adam")([{"params": [p], "gamma": 1.5}])
    with pytest.raises(RuleError, match="'lr'.*must be a number"):
        torch_optimizer("adam")([p], lr="fast")
    with pytest.raises(TypeError, match="real floating-point"):
        torch_optimizer("adam")([torch.zeros(2, dtype=torch.int64)])


def _toy(update_expr: str) -> Rule:
    """A rule whose parsed update is replaced by ``w = <update_expr>``,
    bypassing the rule language's own checks (to test the export's)."""
    rule = Rule(name="toy", title="toy", hyper={"lr": 0.1}, symbols={}, state=(),
                scalars=lambda hp, t: {"lr": hp["lr"]}, update="w = w - lr * g", bytes_per_param=12)
    rule = replace(rule)  # a fresh object: torch_optimizer caches per rule
    object.__setattr__(rule, "statements", (Statement("w", ast.parse(update_expr, mode="eval").body),))
    return rule


@pytest.mark.parametrize("expr, message", [
    ("w ** 2", "operator Pow"),
    ("exp(w)", "function 'exp'"),
    ("max(w, g, lr)", "max takes 2"),
    ("where(w, g, lr)", "where's condition 'w'"),
    ("where(0 < w < 1, g, lr)", "where's condition"),
    ("w - (g > 0)", "comparison 'g > 0' outside where"),
    ("w if g else lr", "IfExp"),
    ("+w", "unary UAdd"),
])
def test_unsupported_expressions_are_refused(expr, message):
    with pytest.raises(RuleError, match=f"rule 'toy'.*{message}.*cannot be exported to torch"):
        torch_optimizer(_toy(expr))


def test_importing_the_export_does_not_import_torch():
    code = ("import sys; sys.modules['torch'] = None; import optbench.kernels as kernels, optbench.kernels.export; "
            "assert sys.modules['torch'] is None")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the interpreter's functions against NumPy's semantics -------------------------

X = np.array([1.5, -2.0, 0.0, -0.0, np.nan, np.inf, -np.inf, 0.25, 3.0, -0.5], np.float32)
Y = np.array([1.5, 3.0, -0.0, 0.0, 1.0, np.nan, -1.0, 0.125, np.nan, -0.75], np.float32)
S = {"lr": 0.1, "gamma": 0.9}
F32 = {k: np.float32(v) for k, v in S.items()}


def _where(cond, a, b):
    return np.where(cond, a, b).astype(np.float32)


with np.errstate(divide="ignore", invalid="ignore"):
    CASES = [
        ("abs(x)", np.abs(X)),
        ("sign(x)", np.sign(X)),
        ("sign(y)", np.sign(Y)),
        ("min(x, y)", np.minimum(X, Y)),
        ("max(x, y)", np.maximum(X, Y)),
        ("min(x, 0.5)", np.minimum(X, np.float32(0.5))),
        ("max(-lr, x)", np.maximum(-F32["lr"], X)),
        ("where(x > y, x, y)", _where(X > Y, X, Y)),
        ("where(x <= 0.25, 1.0, y)", _where(X <= np.float32(0.25), np.float32(1.0), Y)),
        ("where(x >= lr, lr, 0.0)", _where(X >= F32["lr"], F32["lr"], np.float32(0))),
        ("where(x == y, x, -y)", _where(X == Y, X, -Y)),
        ("where(x != x, 0.0, x)", _where(X != X, np.float32(0), X)),
        ("where(x < 0, -x, x * gamma)", _where(X < 0, -X, X * F32["gamma"])),
        ("where(lr < gamma, x, y)", X),
        ("lr / y", F32["lr"] / Y),
        ("sqrt(lr) * x", np.sqrt(F32["lr"]) * X),
        ("(lr * gamma - 1) * x", (F32["lr"] * F32["gamma"] - np.float32(1)) * X),
        ("max(lr, gamma) + min(abs(-lr), sign(gamma)) + x", F32["gamma"] + F32["lr"] + X),
    ]


@pytest.mark.parametrize("expr, expected", CASES, ids=[c[0] for c in CASES])
def test_interpreter_follows_numpy_semantics(torch, expr, expected):
    with np.errstate(invalid="ignore", divide="ignore"):
        env = {"x": torch.from_numpy(X), "y": torch.from_numpy(Y), **S}
        got = evaluate(ast.parse(expr, mode="eval").body, env, env["x"])
    got = np.broadcast_to(got.numpy(), X.shape)
    assert got.dtype == np.float32
    # Of -0 and +0 the two may return either in a tie; compare values (and NaN positions).
    np.testing.assert_array_equal(got, np.asarray(expected, np.float32), err_msg=expr)


def test_scalar_only_expressions_are_float32(torch):
    env = {**S}
    like = torch.zeros(2)
    got = evaluate(ast.parse("lr * gamma", mode="eval").body, env, like)
    assert isinstance(got, float) and got == float(F32["lr"] * F32["gamma"])
    assert evaluate(ast.parse("where(lr > gamma, 1.0, 2.0)", mode="eval").body, env, like) == 2.0


def test_a_rule_with_the_new_functions_matches_the_numpy_kernel(torch):
    """A clipped, sign-based toy rule through every function of the language."""
    try:
        rule = Rule(
            name="toy_clip", title="toy", hyper={"lr": 0.1, "c": 0.5}, symbols={}, state=("m",),
            scalars=lambda hp, t: {"lr": hp["lr"], "c": hp["c"]},
            update="""
                m = max(0.5 * m, abs(g))
                d = where(g > 0, min(g, c), max(g, -c))
                w = w - lr * (d + 0.1 * sign(g) * m) / (sqrt(m) + 1)
            """, bytes_per_param=20)
    except RuleError as exc:  # the language without these functions: nothing to check
        pytest.skip(f"the rule language does not parse it yet: {exc}")
    rng = np.random.default_rng(6)
    w0 = rng.standard_normal(200).astype(np.float32)
    ours = Optimizer(rule, w0.copy(), backend="numpy")
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = torch_optimizer(rule)([p])
    for t in range(1, 6):
        g = rng.standard_normal(200).astype(np.float32)
        ours.step(g)
        p.grad = torch.from_numpy(g)
        opt.step()
        assert rel_err(p.detach().numpy(), ours.params.astype(np.float64)) <= TOLERANCE_PER_STEP * t
        assert rel_err(opt.state[p]["m"].numpy(), ours.state["m"].astype(np.float64)) <= TOLERANCE_PER_STEP * t


def test_a_local_keeps_its_value_when_the_buffer_it_copied_is_written(torch):
    """x = v reads v's value: a later v = ... must not change x (the NumPy
    kernel copies it; the export must not alias the buffer)."""
    rule = Rule(name="toy_alias", title="toy", hyper={"lr": 0.1}, symbols={}, state=("v",),
                scalars=lambda hp, t: {"lr": hp["lr"]},
                update="""
                    x = v
                    v = v + g
                    w = w - lr * (x + v)
                """, bytes_per_param=20)
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal(20).astype(np.float32)
    ours = Optimizer(rule, w0.copy(), backend="numpy")
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = torch_optimizer(rule)([p])
    for g in rng.standard_normal((3, 20)).astype(np.float32):
        ours.step(g)
        p.grad = torch.from_numpy(g)
        opt.step()
    np.testing.assert_array_equal(p.detach().numpy(), ours.params)


@pytest.mark.parametrize("name", STAGED)
def test_a_rule_that_works_per_tensor_is_refused_in_one_line(name):
    with pytest.raises(RuleError, match=f"rule '{name}' works per tensor .*element-wise rules only") as info:
        torch_optimizer(name)
    assert "\n" not in str(info.value)
