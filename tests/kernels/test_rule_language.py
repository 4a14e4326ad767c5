"""The rule language's functions -- abs, sign, min, max, where(x OP y, a, b) --
on every generator, and its error messages.

Small rules written here (one per function, one combining them, one with
every comparison) run on NumPy, Numba and CUDA (the exact source on the host
harness, and through the CuPy stand-in) and must agree bit for bit, as must
their population forms with their single runs. Special values (NaN of either
sign and with a payload, +-0, +-Inf, denormals, ties) are checked against
the semantics written out by hand with NumPy: max(a, b) = (a > b || a != a) ?
a : b, min likewise with <, sign(+-0) = +0.0 and sign(NaN) the NaN itself,
abs clears the sign bit, a comparison with NaN is false.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import shutil
import subprocess
import tracemalloc
import zlib

import numpy as np
import pytest

from optbench.kernels.testing import cuda_host
from optbench.kernels import BackendUnavailable, Optimizer, PopulationOptimizer, get_backend
from optbench.kernels.codegen.cuda_kernel import cuda_source, kernel_names, population_geometry
from optbench.kernels.codegen.expr import CUDA, NUMBA, evaluate, run_update
from optbench.kernels.codegen.numba_kernel import NumbaKernel, namespace, population_source
from optbench.kernels.codegen.numpy_kernel import NumpyKernel, _where, _where_into_b
from optbench.kernels.population import scalar_table
from optbench.kernels.rule import ELEMENTWISE, FUNCTIONS, REDUCTIONS, Rule, RuleError
from optbench.kernels.transforms import coupled_l2, decoupled_decay

HYPER = {"lr": 0.1, "beta": 0.9}



def one_run(kernel, bufs, scalars, active=None) -> None:
    """``kernel``'s update of one run (a population of one member) in place:
    ``bufs`` 1-D by name, ``scalars`` the step's dict."""
    table = np.array([[scalars[s] for s in kernel.rule.scalar_names]], dtype=np.float32)
    rows = {k: v.reshape(1, -1) for k, v in bufs.items()}
    kernel.population(rows, table, np.ones(1, np.int32) if active is None else active)


def _scalars(hp, t):
    return {"lr": hp["lr"], "beta": hp["beta"], "one_minus_beta": 1.0 - hp["beta"]}


def make(name: str, update: str, state=(), **kw) -> Rule:
    """A test rule with hyper-parameters lr and beta (scalars lr, beta, one_minus_beta)."""
    kw = {"hyper": HYPER, "ranges": {"lr": "(0, inf)", "beta": "[0, 1)"}, "scalars": _scalars, **kw}
    return Rule(name=name, title=name, symbols={}, state=tuple(state), update=update,
                bytes_per_param=12 + 8 * len(state), **kw)


#: Rules as a user would write them: each function in an update, and all together.
RULES = {r.name: r for r in [
    make("lang_abs", "w = w - lr * abs(g)"),
    make("lang_sign", """
        m = beta * m + one_minus_beta * g
        w = w - lr * sign(m)
    """, state=("m",)),  # Signum
    make("lang_min", "w = w - lr * min(g, w)"),
    make("lang_max", """
        v = beta * v + one_minus_beta * (g * g)
        vmax = max(vmax, v)
        w = w - lr * g / (sqrt(vmax) + 0.001)
    """, state=("v", "vmax")),  # AMSGrad's running maximum
    make("lang_combo", """
        m = max(m, abs(g))
        w = w - lr * where(g > 0, sign(m) * m, min(g, m))
    """, state=("m",)),
    # Every comparison, a where nested in a branch, constant branches, and a
    # where whose then-value is its own destination (m = where(c, m, ...)).
    make("lang_where", """
        a = where(g < w, g, w)
        b = where(g <= 0, a, -a)
        c = where(w >= 0.5, b, where(g == 0, 1, 0.5))
        m = where(m != g, m, c)
        w = w - lr * where(a > b, c, min(a, max(b, m)))
    """, state=("m",)),
    # A where in a comparison of where, Adamax's u = max(beta u, |g|).
    make("lang_nested", """
        u = max(beta * u, abs(g))
        s = where(where(g > u, g, u) >= beta, sign(g), -abs(w))
        w = w - lr * s * u
    """, state=("u",)),
]}

#: Rules that are one function of w and g, for the special values (no scalars).
COMPARE_OPS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def op_rule(name, update) -> Rule:
    return Rule(name=f"op_{name}", title=name, hyper={}, symbols={}, state=(), scalars=lambda hp, t: {},
                update=update, bytes_per_param=12)


OPS = {
    "abs": op_rule("abs", "w = abs(g)"),
    "sign": op_rule("sign", "w = sign(g)"),
    "min": op_rule("min", "w = min(w, g)"),
    "max": op_rule("max", "w = max(w, g)"),
    **{f"where_{k}": op_rule(f"where_{k}", f"w = where(w {op} g, g, -w)") for k, op in COMPARE_OPS.items()},
}


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def spec(name: str, w: np.ndarray, g: np.ndarray) -> np.ndarray:
    """What each op rule must compute, written out from the semantics."""
    with np.errstate(invalid="ignore"):
        if name == "abs":
            return (g.view(np.uint32) & np.uint32(0x7FFFFFFF)).view(np.float32)
        if name == "sign":
            return np.where(g > 0, _f32(1), np.where(g < 0, _f32(-1), np.where(g != g, g, _f32(0))))
        if name == "min":
            return np.where((w < g) | (w != w), w, g)
        if name == "max":
            return np.where((w > g) | (w != w), w, g)
        cond = {"lt": w < g, "le": w <= g, "gt": w > g, "ge": w >= g, "eq": w == g, "ne": w != g}[name[6:]]
        return np.where(cond, g, -w)


#: Every pair of these is an element: NaNs of both signs and with a payload,
#: both zeros, both infinities, denormals, ties, the largest float.
SPECIAL = _f32([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 1.0, -1.0, 2.0, -2.0, 1e-45, -1e-45, 3.4e38])
SPECIAL = np.concatenate([SPECIAL, np.array([0x7FC00123, 0xFFA00001], np.uint32).view(np.float32)])


def special_pairs():
    w, g = np.meshgrid(SPECIAL, SPECIAL)
    # 3 more elements so the vec4 kernels have a tail
    return np.concatenate([w.ravel(), SPECIAL[:3]]), np.concatenate([g.ravel(), SPECIAL[-3:]])


def bits(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def assert_bitwise(what: str, got, want) -> None:
    got, want = bits(got), bits(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    if not np.array_equal(got, want):
        i = int(np.argmax(got != want))
        raise AssertionError(f"{what}: {int((got != want).sum())} of {want.size} elements differ; first [{i}]: "
                             f"{got[i]:#010x} ({got.view(np.float32)[i]!r}) vs {want[i]:#010x} "
                             f"({want.view(np.float32)[i]!r})")


def start_buffers(rule: Rule, n: int, seed: int, shape=None) -> dict:
    """Random w, g and state (states >= 0: running maxima and averages of squares)."""
    rng = np.random.default_rng(seed)
    shape = shape or (n,)
    out = {b: rng.standard_normal(shape).astype(np.float32) for b in rule.buffers}
    for s in rule.state:
        out[s] = np.abs(out[s])
    # exact zeros and ties, where the functions' conventions show
    out["g"].ravel()[::7] = 0.0
    out["g"].ravel()[3::11] = out["w"].ravel()[3::11]
    return out


def numba_or_skip():
    try:
        return get_backend("numba")
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


# --- the grammar and its errors ------------------------------------------------------------


def bad(update: str, state=("v",), lookahead=None) -> Rule:
    return Rule(name="lion", title="lion", hyper={"lr": 0.1, "beta": 0.9}, symbols={}, state=state,
                scalars=lambda hp, t: {"lr": hp["lr"], "beta": hp["beta"]}, update=update,
                bytes_per_param=0, lookahead=lookahead)


@pytest.mark.parametrize("update, message", [
    # unknown names, with the rule, the 1-based line and the line itself
    ("w = w - lr * g\nc = beta * mom + g",
     "rule 'lion': update line 2 'c = beta * mom + g': unknown name 'mom'"),
    # read before assigned, and assigned later (here or below): an undeclared state
    ("m = beta * m + g\nw = w - lr * m",
     "rule 'lion': update line 1 'm = beta * m + g': reads 'm' before assigning it: "
     "declare it as a state (state=(\"m\",)) or assign it first"),
    ("w = w - lr * d\nd = g",
     "rule 'lion': update line 1 'w = w - lr * d': reads 'd' before assigning it"),
    # wrong arity, for every function
    ("w = sqrt(g, v)", "update line 1 'w = sqrt(g, v)': sqrt() takes 1 argument, got 2"),
    ("w = abs()", "abs() takes 1 argument, got 0"),
    ("w = sign(g, g)", "sign() takes 1 argument, got 2"),
    ("w = min(g)", "min() takes 2 arguments, got 1"),
    ("w = w - lr * max(g, v, w)",
     "update line 1 'w = w - lr \\* max\\(g, v, w\\)': max\\(\\) takes 2 arguments, got 3"),
    ("w = where(g > 0, g)", "where() takes 3 arguments, got 2"),
    # comparisons only as where's first argument
    ("w = w - lr * (g > 0)", "comparison 'g > 0' is allowed only as where's first argument"),
    ("w = max(g > 0, v)", "comparison 'g > 0' is allowed only as where's first argument"),
    ("w = where(g > 0, g < v, v)", "comparison 'g < v' is allowed only as where's first argument"),
    ("w = where(g, g, v)", "where's first argument must be a comparison a OP b .*got 'g'"),
    ("w = where(0 < g < 1, g, v)", "chained comparison '0 < g < 1': where's condition is one comparison"),
    ("w = where(g > 0 and v > 0, g, v)", "where's condition 'g > 0 and v > 0' must be one comparison a OP b"),
    ("w = where(g is v, g, v)", "comparison Is not allowed"),
    ("w = where(g in v, g, v)", "comparison In not allowed"),
    ("w = where(not g > 0, g, v)", "where's first argument must be a comparison"),
    # other shapes the language does not have
    ("w = exp(g)", "unknown function 'exp': only calls of sqrt, abs, sign, min, max, where, sum, mean, norm, "
                   "dot, amax, sum_all, .*, rowmean, colmean, orth are allowed"),
    ("w = max(g, b=v)", "max\\(\\) takes no keyword arguments"),
    ("w = g if g > 0 else v", "write where\\(cond, a, b\\) instead of 'a if cond else b'"),
    ("w = g ** 2", "operator Pow not allowed"),
    ("w = w - True", "constant True not allowed"),
    ("w = w - sign", "unknown name 'sign'"),
    ("max = g\nw = w", "update line 1 'max = g': cannot assign to 'max', the name of a function"),
    ("w = g\nlr = g", "update line 2 'lr = g': cannot assign to scalar 'lr'"),
    ("w = g\nw += g", "update line 2 'w \\+= g': only 'name = expression' lines are allowed"),
    ("w = g\nw = (g +", "update line 2 'w = \\(g \\+': does not parse"),
])
def test_bad_rules_are_refused_with_the_line(update, message):
    with pytest.raises(RuleError, match=message if "\\" in message or ".*" in message else re.escape(message)):
        bad(update)


def test_line_numbers_count_within_the_dedented_update():
    """Leading blank lines and indentation do not count; blank lines inside do."""
    with pytest.raises(RuleError, match=re.escape("update line 3 'w = w - lr * min(g)': min() takes 2")):
        bad("""
            v = beta * v + g

            w = w - lr * min(g)
        """)


def test_a_bad_lookahead_names_its_expression():
    with pytest.raises(RuleError, match=re.escape("rule 'lion': expression 'max(v)': max() takes 2 arguments")):
        bad("w = w - lr * g", lookahead="max(v)")
    rule = bad("v = beta * v + g\nw = w - lr * v", lookahead="where(v > 0, lr * v, -lr * v)")
    opt = Optimizer(rule, np.ones(3, np.float32))
    opt.state["v"][...] = [1.0, -2.0, 0.0]
    np.testing.assert_array_equal(opt.weights(), 1 + np.array([0.1, 0.2, -0.0], np.float32))


def test_functions_and_rule_fields():
    assert ELEMENTWISE == {"sqrt": 1, "abs": 1, "sign": 1, "min": 2, "max": 2, "where": 3}
    assert REDUCTIONS == {"sum": 1, "mean": 1, "norm": 1, "dot": 2, "amax": 1}
    assert FUNCTIONS == {**ELEMENTWISE, **REDUCTIONS, **{f"{k}_all": n for k, n in REDUCTIONS.items()},
                         "rowmean": 1, "colmean": 1, "orth": 1}
    assert RULES["lang_abs"].reference is None

    def step(w, g, state, hp, t):
        return w - hp["lr"] * np.abs(g), state

    a = make("with_ref", "w = w - lr * abs(g)", reference=step)
    b = make("with_ref", "w = w - lr * abs(g)", reference=step)
    assert a.reference is step and a != b and len({a, b}) == 2  # identity-hashed, as every rule
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.reference = None
    # a transform keeps it (the rule's own maths; the transform's is not in it)
    assert coupled_l2(decoupled_decay(a)).reference is step


def test_printers():
    node = ast.parse("where(g >= 0.5, max(abs(g), m), -min(sign(g), sqrt(v)))", mode="eval").body
    assert CUDA(node) == ("((g >= 0.5f) ? optbench_max(fabsf(g), m) : "
                          "(-optbench_min(optbench_sign(g), sqrtf(v))))")
    assert NUMBA(node) == ("(_max(_abs(g), m) if (g >= _f32(0.5)) else "
                           "(-_min(_sign(g), _sqrt(v))))")
    for k, op in COMPARE_OPS.items():
        assert f"(w {op} g)" in CUDA(OPS[f"where_{k}"].statements[0].expr)


def test_cuda_source_defines_only_the_helpers_it_uses():
    assert "optbench_max" not in cuda_source(RULES["lang_abs"]) and "fabsf(g)" in cuda_source(RULES["lang_abs"])
    src = cuda_source(RULES["lang_combo"])
    for helper in ("optbench_sign", "optbench_min", "optbench_max"):
        assert src.count(f"float {helper}(") == 1
        assert src.index(f"float {helper}(") < src.index("lang_combo_element(")


# --- float64 evaluation --------------------------------------------------------------------


def test_evaluate_on_arrays_and_floats():
    rng = np.random.default_rng(1)
    g, m = rng.standard_normal(50), rng.standard_normal(50)
    g[::5], m[3::10] = np.nan, g[3::10]
    env = {"g": g, "m": m, "lr": 0.5}

    def ev(text, env=env):
        return evaluate(ast.parse(text, mode="eval").body, env)

    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(ev("abs(g)"), np.abs(g))
        np.testing.assert_array_equal(ev("sign(g)"), np.sign(g))
        np.testing.assert_array_equal(ev("max(g, m)"), np.where((g > m) | (g != g), g, m))
        np.testing.assert_array_equal(ev("min(m, g)"), np.where((m < g) | (m != m), m, g))
        np.testing.assert_array_equal(ev("max(g, 0)"), np.where((g > 0) | (g != g), g, 0.0))
        for op in COMPARE_OPS.values():
            want = np.where(eval(f"g {op} m"), 0.5 * g, -m)
            np.testing.assert_array_equal(ev(f"where(g {op} m, lr * g, -m)"), want)
    # Python floats
    assert ev("max(lr, 2)", {"lr": 0.5}) == 2.0 and ev("min(lr, 2)", {"lr": 0.5}) == 0.5
    assert ev("sign(lr - 1) * abs(lr - 1)", {"lr": 0.5}) == -0.5
    assert ev("where(lr > 1, 1, 2)", {"lr": 0.5}) == 2.0
    assert np.isnan(ev("max(lr, 1)", {"lr": float("nan")})) and np.isnan(ev("min(1, lr)", {"lr": float("nan")}))
    assert ev("where(lr == lr, 1, 2)", {"lr": float("nan")}) == 2.0  # NaN compares false


def test_evaluate_on_cupy_arrays(cp):
    g = np.array([-2.0, -0.0, 0.0, 3.0, np.nan])
    out = evaluate(ast.parse("where(g > 0, max(g, 1.5), sign(g) * abs(g))", mode="eval").body,
                   {"g": cp.asarray(g)})
    got = out.get()
    with np.errstate(invalid="ignore"):
        want = np.where(g > 0, np.maximum(g, 1.5), np.sign(g) * np.abs(g))
    np.testing.assert_array_equal(got, want)


def test_run_update_in_float64():
    rule = RULES["lang_where"]
    rng = np.random.default_rng(2)
    n = 257
    w, g, m = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    g[::5] = 0.0
    m[::3] = g[::3]
    w[::4] = 0.75
    env = {"w": w, "g": g, "m": m, **rule.step_scalars(rule.defaults(), 1)}
    before = {k: np.copy(v) for k, v in env.items()}
    out = run_update(rule, env)
    assert set(out) == {"w", "m"} and all(v.dtype == np.float64 for v in out.values())
    for k, v in before.items():  # nothing modified in place
        np.testing.assert_array_equal(env[k], v)
    # the same lines by hand, in float64
    w, g, m, lr = w.astype(np.float64), g.astype(np.float64), m.astype(np.float64), 0.1
    a = np.where(g < w, g, w)
    b = np.where(g <= 0, a, -a)
    c = np.where(w >= 0.5, b, np.where(g == 0, 1.0, 0.5))
    m = np.where(m != g, m, c)
    w = w - lr * np.where(a > b, c, np.minimum(a, np.maximum(b, m)))
    np.testing.assert_array_equal(out["w"], w)
    np.testing.assert_array_equal(out["m"], m)
    with pytest.raises(KeyError, match="lang_where.*needs m, lr"):
        run_update(rule, {"w": w, "g": g, "beta": 0.9, "one_minus_beta": 0.1})


def test_run_update_is_close_to_the_float32_kernels():
    """The float64 run of the text and the float32 kernel differ by rounding only."""
    rule = RULES["lang_max"]
    bufs = start_buffers(rule, 1000, 3)
    scalars = rule.step_scalars(rule.defaults(), 1)
    want = run_update(rule, {**bufs, **scalars})
    one_run(NumpyKernel(rule), bufs, scalars)
    for b in rule.written:
        np.testing.assert_allclose(bufs[b], want[b], rtol=1e-6, atol=1e-7)


# --- the backends, bit for bit -------------------------------------------------------------


def run_steps(rule, backend, start, steps=3, seed=0, hyper=None):
    """``steps`` Optimizer steps of ``rule`` on ``backend``; the final written buffers."""
    rng = np.random.default_rng(seed)
    opt = Optimizer(rule, backend.asarray(start["w"].copy()), backend=backend, **(hyper or {}))
    for s in rule.state:
        opt.state[s][...] = backend.asarray(start[s])
    for t in range(steps):
        g = rng.standard_normal(start["w"].size).astype(np.float32)
        g[t::5] = 0.0
        opt.step(backend.asarray(g), check_finite=False)
    return {"w": backend.to_numpy(opt.params), **{s: backend.to_numpy(v) for s, v in opt.state.items()}}


@pytest.mark.parametrize("name", RULES)
def test_every_backend_equals_numpy_bit_for_bit(backend, name):
    rule = RULES[name]
    start = start_buffers(rule, 1027, zlib.crc32(name.encode()))
    want = run_steps(rule, get_backend("numpy"), start, hyper={"lr": 0.3, "beta": 0.7})
    got = run_steps(rule, backend, start, hyper={"lr": 0.3, "beta": 0.7})
    for b in rule.written:
        assert_bitwise(f"{name} {b} on {backend.name}", got[b], want[b])


@pytest.mark.parametrize("name", OPS)
def test_special_values_follow_the_semantics_on_every_backend(backend, name):
    w, g = special_pairs()
    opt = Optimizer(OPS[name], backend.asarray(w.copy()), backend=backend)
    with np.errstate(invalid="ignore"):
        opt.step(backend.asarray(g), check_finite=False)
    assert_bitwise(f"{name} on {backend.name}", backend.to_numpy(opt.params), spec(name, w, g))


def test_generated_numba_source_as_plain_python_equals_numpy():
    """Without Numba: the loop's source and the preamble's helpers as plain Python."""
    for rule in [*RULES.values(), OPS["max"], OPS["sign"], OPS["where_ne"]]:
        ns = namespace(jit=False)
        exec(population_source(rule, parallel=False), ns)
        fn = ns[f"{rule.name}_numba_serial"]
        if rule.hyper:
            start = start_buffers(rule, 67, 4)
        else:
            w, g = special_pairs()
            start = {"w": w, "g": g}
        scalars = rule.step_scalars(rule.defaults(), 1)
        got, want = {k: v.copy() for k, v in start.items()}, {k: v.copy() for k, v in start.items()}
        with np.errstate(invalid="ignore"):
            fn(*(got[b][None] for b in rule.buffers), np.ones(1, np.int32),
               np.array([[scalars[s] for s in rule.scalar_names]], np.float32))
            one_run(NumpyKernel(rule), want, scalars)
        for b in rule.written:
            assert_bitwise(f"{rule.name} {b}", got[b], want[b])


def test_numba_parallel_build_equals_serial():
    numba_or_skip()
    rule = RULES["lang_combo"]
    start = start_buffers(rule, 4099, 5)
    scalars = rule.step_scalars(rule.defaults(), 1)
    results = []
    for parallel_min in (1 << 40, 0):
        bufs = {k: v.copy() for k, v in start.items()}
        one_run(NumbaKernel(rule, parallel_min=parallel_min), bufs, scalars)
        results.append(bufs)
    for b in rule.written:
        assert_bitwise(b, results[1][b], results[0][b])


# --- NumPy: folding, aliasing, temporaries -------------------------------------------------

FOLD = make("lang_fold", """
    s = sign(g) * k + abs(g) * (1 - k)
    m = max(m * k, abs(g) * floor)
    d = where(k > 0.5, min(s, m), max(s, floor - m))
    w = w - lr * where(g * k >= floor, d, sqrt(k + 1) * d)
""", state=("m",), hyper={"lr": 0.1, "k": 0.5, "floor": 0.5},
    ranges={"lr": "(0, inf)", "k": "[0, 1]", "floor": "[0, 1]"},
    scalars=lambda hp, t: {"lr": hp["lr"], "k": hp["k"], "floor": hp["floor"]})


@pytest.mark.parametrize("k", [0.0, 1.0, 0.3])
@pytest.mark.parametrize("floor", [0.0, 1.0, 0.6])
@pytest.mark.parametrize("rule", [FOLD, coupled_l2(decoupled_decay(RULES["lang_combo"]))],
                         ids=["fold", "combo_l2"])
def test_folding_zero_and_one_is_exact_with_the_new_functions(rule, k, floor):
    """Scalars 0 or 1 folded out (a where with a constant condition keeps one
    branch, constant calls computed in float32) give the bits of the unfolded
    program, on single runs and populations."""
    hyper = {"k": k, "floor": floor} if rule is FOLD else {"l2": floor if floor != 0.6 else 0.01,
                                                              "wd": k if k != 0.3 else 0.02}
    hp = rule.resolve(hyper)
    start = start_buffers(rule, 300, 6)
    folded, plain = NumpyKernel(rule, fold=True), NumpyKernel(rule, fold=False)
    a, b = ({key: v.copy() for key, v in start.items()} for _ in range(2))
    for t in (1, 2):
        scalars = rule.step_scalars(hp, t)
        one_run(folded, a, scalars)
        one_run(plain, b, scalars)
    for buf in rule.written:
        assert_bitwise(f"{buf} folded vs not", a[buf], b[buf])
    if rule is FOLD and k in (0.0, 1.0):  # the where on k > 0.5 was decided when compiling
        def wheres(kernel):
            return sum(op[0].__name__ == "_where" for op in kernel.program(scalars).ops)

        assert wheres(folded) < wheres(plain) == 2
    # the population form folds per group; its rows are the single runs'
    pop = {key: np.stack([v, v[::-1]]) for key, v in start.items()}
    table = scalar_table(rule, [hp, hp], 1, 1)[0]
    singles = [{key: v[i].copy() for key, v in pop.items()} for i in range(2)]
    folded.population(pop, table, np.ones(2, np.int32))
    for i, one in enumerate(singles):
        one_run(folded, one, rule.step_scalars(hp, 1))
        for buf in rule.written:
            assert_bitwise(f"population row {i} {buf}", pop[buf][i], one[buf])


@pytest.mark.parametrize("update, select, want", [
    # the destination is a; is b; neither (two temporaries); no selection at all
    ("m = where(g > 0, m, g * beta)", _where, lambda g, m, lr, beta: np.where(g > 0, m, g * beta)),
    ("m = where(g > 0, g * beta, m)", _where_into_b, lambda g, m, lr, beta: np.where(g > 0, g * beta, m)),
    ("m = where(g > 0, g * beta, g * lr)", _where, lambda g, m, lr, beta: np.where(g > 0, g * beta, g * lr)),
    ("m = where(g > 0, m, m)", None, lambda g, m, lr, beta: m),
])
def test_where_with_its_destination_among_its_arguments(update, select, want):
    """A where that writes one of its own arguments in place selects from
    the right bits (a first copy of the other argument would lose them)."""
    rule = make("lang_alias", f"""
        {update}
        w = w - lr * m
    """, state=("m",))
    scalars = rule.step_scalars(rule.defaults(), 1)
    kernel = NumpyKernel(rule, chunk=64)
    ops = [op[0] for op in kernel.program(scalars).ops]
    if select is None:
        assert _where not in ops and _where_into_b not in ops
    else:
        assert select in ops
    start = start_buffers(rule, 1000, 7)
    bufs = {k: v.copy() for k, v in start.items()}
    one_run(kernel, bufs, scalars)
    lr = np.float32(0.1)
    want_m = want(start["g"], start["m"], lr, np.float32(0.9))
    assert_bitwise("m", bufs["m"], want_m)
    assert_bitwise("w", bufs["w"], start["w"] - lr * want_m)


def test_one_bool_temporary_and_nothing_allocated_per_step():
    """Nested wheres need one bool temporary (a view of a float temporary's
    memory), and a step allocates no temporary: the traced peak stays below
    half a chunk (64 KB here) over steps of many chunks -- single run,
    population tiles as views, gathered whole rows and gathered pieces of
    rows. (What is traced: Python objects, and NumPy's own 32 KB iterator
    buffer where a ufunc broadcasts a member's scalar column over a tile of
    several rows.)"""
    rule = RULES["lang_nested"]
    chunk = 1 << 15
    kernel = NumpyKernel(rule, chunk=chunk, threads=1)
    scalars = rule.step_scalars(rule.defaults(), 1)
    assert kernel.program(scalars).n_bools == 1
    table = scalar_table(rule, [rule.defaults()] * 8, 1, 1)[0]
    single = {k: v[None] for k, v in start_buffers(rule, 16 * chunk + 5, 8).items()}
    steps = {"single run": lambda: kernel.population(single, table[:1], np.ones(1, np.int32))}
    for n in (3000, 2 * chunk + 3):  # whole rows per tile, pieces of a row
        for active in (np.ones(8, np.int32), np.array([1, 0, 1, 1, 0, 1, 1, 1], np.int32)):
            pop = start_buffers(rule, 0, 9, shape=(8, n))
            steps[f"population n={n} active={active}"] = (
                lambda pop=pop, active=active: kernel.population(pop, table, active))
    for what, step in steps.items():
        step()  # the temporaries are allocated on first use
        tracemalloc.start()
        try:
            step()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < chunk * 4 // 2, f"{what}: a step allocated {peak} bytes"


# --- populations ---------------------------------------------------------------------------

POP_RULES = ["lang_sign", "lang_max", "lang_combo", "lang_where", "lang_nested"]


def hypers(members: int) -> list[dict]:
    return [{"lr": 0.05 * (1 + 0.3 * m), "beta": 0.5 + 0.45 * m / members} for m in range(members)]


@pytest.mark.parametrize("name", POP_RULES)
def test_population_members_equal_their_single_runs(backend, name):
    rule = RULES[name]
    members, n = 5, 1031
    hps = hypers(members)
    rng = np.random.default_rng(zlib.crc32(f"pop/{name}".encode()))
    w0 = rng.standard_normal((members, n)).astype(np.float32)
    pop = PopulationOptimizer(backend.asarray(w0), [rule] * members, hps, backend=backend)
    singles = [Optimizer(rule, backend.asarray(w0[m].copy()), backend=backend, **hps[m]) for m in range(members)]
    for active in (None, np.array([1, 0, 1, 1, 0]), np.array([0, 1, 1, 1, 0]), None):
        g = rng.standard_normal((members, n)).astype(np.float32)
        g[:, ::9] = 0.0
        pop.step(backend.asarray(g), active=None if active is None else backend.asarray(active, dtype=np.int32))
        for m, opt in enumerate(singles):
            on = np.array([1 if active is None else int(active[m])], np.int32)
            opt.step(backend.asarray(g[m].copy()), check_finite=False, active=backend.asarray(on, dtype=np.int32))
    params = backend.to_numpy(pop.params)
    for m, opt in enumerate(singles):
        assert_bitwise(f"member {m} w", params[m], backend.to_numpy(opt.params))
        for s in rule.state:
            assert_bitwise(f"member {m} {s}", backend.to_numpy(pop.member(m).state[s]),
                           backend.to_numpy(opt.state[s]))


@pytest.mark.parametrize("name", POP_RULES)
def test_numpy_and_numba_population_paths_equal_single_runs(name, monkeypatch):
    """NumPy's population kernel over tiles of rows, pieces of a row, threads,
    views (contiguous active rows) and gathered rows; Numba's population loop:
    every active row bit for bit the single-run NumPy kernel on that row."""
    monkeypatch.setattr("optbench.kernels.codegen.numpy_kernel.THREAD_MIN_BYTES", 0)
    rule = RULES[name]
    members, n = 7, 203
    hps = [rule.resolve(h) for h in hypers(members)]
    start = start_buffers(rule, 0, zlib.crc32(f"tiles/{name}".encode()), shape=(members, n))
    kernels = [NumpyKernel(rule, chunk=chunk, threads=threads)
               for chunk, threads in ((1 << 17, 1), (64, 1), (512, 1), (64, 2), (512, 3))]
    try:
        get_backend("numba")
    except BackendUnavailable:
        pass
    else:
        kernels.append(NumbaKernel(rule, parallel_min=1 << 40))
    single = NumpyKernel(rule, threads=1)
    for active in (np.ones(members, np.int32), np.array([0, 1, 1, 1, 0, 0, 0], np.int32),
                   np.array([1, 0, 1, 0, 0, 1, 1], np.int32)):
        want = {k: v.copy() for k, v in start.items()}
        for t in (1, 2):
            for m in np.flatnonzero(active):
                row = {k: v[m] for k, v in want.items()}  # views: updated in place
                one_run(single, row, rule.step_scalars(hps[m], t))
        for kernel in kernels:
            bufs = {k: v.copy() for k, v in start.items()}
            for t in (1, 2):
                kernel.population(bufs, scalar_table(rule, hps, t, 1)[0], active)
            for b in rule.written:
                what = f"{name} {b} {type(kernel).__name__} chunk={getattr(kernel, 'chunk', '-')} active={active}"
                assert_bitwise(what, bufs[b], want[b])


# --- CUDA: the exact source on the host, and nvcc ------------------------------------------


ON = np.ones(1, np.int32)


@pytest.mark.parametrize("n", [0, 1, 5, 1027])
@pytest.mark.parametrize("kind", ["vec4", "scalar"])
@pytest.mark.parametrize("name", [*RULES, "op_max", "op_sign", "op_where_ne"])
def test_cuda_source_on_the_host_equals_numpy(host_compiler, name, kind, n):
    """Both kernels for one run (one member), over the CuPy geometries and
    tiny grids, with guard elements around the buffers: bit for bit the NumPy path."""
    rule = RULES.get(name) or OPS[name[3:]]
    kernel = host_compiler.module(cuda_source(rule), dict.fromkeys(kernel_names(rule), cuda_host.rule_spec(rule))) \
        .get_function(kernel_names(rule)[0 if kind == "vec4" else 1])
    if rule.hyper:
        start = start_buffers(rule, n, zlib.crc32(f"{name}/{n}".encode()))
    else:
        w, g = special_pairs()
        start = {"w": np.resize(w, n), "g": np.resize(g, n)}
    scalars = rule.step_scalars(rule.resolve({"lr": 0.3}) if rule.hyper else {}, 1)
    want = {k: v.copy() for k, v in start.items()}
    with np.errstate(invalid="ignore"):
        one_run(NumpyKernel(rule), want, scalars)
    lo, rng = cuda_host.FRONT[kind], np.random.default_rng(n)
    table = np.array([[scalars[s] for s in rule.scalar_names]], np.float32)
    grids = {(population_geometry(1, n, kind == "vec4", sm)[0][0], population_geometry(1, n, kind == "vec4", sm)[1])
             for sm in (1, 132)} | {(1, 1), (3, 7)}
    for grid in sorted(grids):
        full = {b: cuda_host.aligned_random(rng, lo + n + cuda_host.BACK) for b in rule.buffers}
        for b in rule.buffers:
            full[b][lo : lo + n] = start[b]
        before = {b: a.copy() for b, a in full.items()}
        kernel((grid[0], 1), (grid[1],), (*(full[b][lo:] for b in rule.buffers), ON, table, 1, n, -(-n // 4) * 4))
        for b, a in full.items():
            assert_bitwise(f"{name} {kind} n={n} {grid}: {b} guards", np.r_[a[:lo], a[lo + n:]],
                           np.r_[before[b][:lo], before[b][lo + n:]])
            assert_bitwise(f"{name} {kind} n={n} {grid}: {b}", a[lo : lo + n], want[b])


@pytest.mark.parametrize("kind", ["vec4", "scalar"])
@pytest.mark.parametrize("name", POP_RULES)
def test_cuda_population_kernels_on_the_host_equal_each_member_alone(host_compiler, name, kind):
    rule = RULES[name]
    members, n = 4, 1027
    names = kernel_names(rule)
    module = host_compiler.module(cuda_source(rule), dict.fromkeys(names, cuda_host.rule_spec(rule)))
    pop_kernel = module.get_function(names[0 if kind == "vec4" else 1])
    single_kernel = module.get_function(names[1])
    hps = [rule.resolve(h) for h in hypers(members)]
    table = scalar_table(rule, hps, 1, 1)[0]
    active = np.array([1, 0, 1, 1], np.int32)
    ld = 1032 if kind == "vec4" else 1030  # rows 16-byte aligned (ld % 4 == 0) or not
    lo = cuda_host.FRONT[kind]
    start = start_buffers(rule, 0, 10, shape=(members, n))
    rng = np.random.default_rng(11)
    (grid, threads) = population_geometry(members, n, kind == "vec4", 4)
    full = {b: cuda_host.aligned_random(rng, lo + members * ld + cuda_host.BACK) for b in rule.buffers}
    rows = [slice(lo + m * ld, lo + m * ld + n) for m in range(members)]
    for b in rule.buffers:
        for m, r in enumerate(rows):
            full[b][r] = start[b][m]
    pop_kernel(grid, threads, (*(full[b][lo:] for b in rule.buffers), active, table, members, n, ld))
    for m, r in enumerate(rows):
        one = {b: start[b][m].copy() for b in rule.buffers}
        if active[m]:
            single_kernel((1, 1), 32, (*(one[b] for b in rule.buffers), ON, np.ascontiguousarray(table[m:m + 1]), 1,
                                       n, n))
        for b in rule.written:
            assert_bitwise(f"{name} {kind} member {m} {b}", full[b][r], one[b])


NVCC = shutil.which("nvcc") or shutil.which("/usr/local/cuda/bin/nvcc")


@pytest.mark.parametrize("name", [*RULES, "op_sign", "op_where_eq"])
def test_test_rules_compile_with_nvcc_without_spills(name, tmp_path):
    if NVCC is None:
        pytest.skip("nvcc not found on PATH: the CUDA sources were not compiled")
    rule = RULES.get(name) or OPS[name[3:]]
    src = tmp_path / f"{name}.cu"
    src.write_text(cuda_source(rule))
    cmd = [NVCC, "-fatbin", "-Xptxas", "-v", "-o", str(tmp_path / f"{name}.fatbin"), str(src)]
    for arch in ("80", "90"):
        cmd += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"nvcc failed on {name}:\n{report}"
    for arch in ("80", "90"):
        assert f"for 'sm_{arch}'" in report, f"no sm_{arch} code built for {name}"
    spills = [int(b) for b in re.findall(r"(\d+) bytes spill stores", report)]
    assert spills and max(spills) == 0, f"{name} spills registers:\n{report}"
