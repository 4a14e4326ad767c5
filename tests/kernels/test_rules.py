"""The update rules on every backend against the float64 reference.

One table of optimisers drives the generic tests: adding a rule to
``kernels.rules`` adds one row here (``test_table_covers_registry`` fails
until it does).
"""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass, field

import numpy as np
import pytest

from optbench.kernels import RULES, Optimizer, RuleError, UnknownRuleError, get_rule, reference
from optbench.kernels.rules import BUILTIN
from optbench.kernels.codegen.numpy_kernel import CHUNK, NumpyKernel
from optbench.kernels.validate import rel_err, tolerance_per_step, validation_layout
from optbench.kernels.views import views_of
from rule_sets import ELEMENTWISE  # tests/ is on sys.path


@dataclass(frozen=True)
class Row:
    name: str
    #: Non-default hyper-parameters, so a rule that ignores one is caught.
    hyper: dict = field(default_factory=dict)


TABLE = [
    Row("sgd", {"lr": 0.05}),
    Row("momentum", {"lr": 0.05, "gamma": 0.8}),
    Row("nesterov", {"lr": 0.05, "gamma": 0.8}),
    Row("rmsprop", {"lr": 0.01, "gamma": 0.95, "eps": 1e-6}),
    Row("adadelta", {"lr": 0.5, "gamma": 0.9, "alpha": 0.8, "eps": 1e-4}),
    Row("adam", {"lr": 0.01, "gamma": 0.8, "alpha": 0.99, "eps": 1e-6}),
    Row("adagrad", {"lr": 0.05, "eps": 1e-6}),
    Row("adamax", {"lr": 0.01, "gamma": 0.8, "alpha": 0.99, "eps": 1e-6}),
    Row("nadam", {"lr": 0.01, "gamma": 0.8, "alpha": 0.99, "eps": 1e-6, "psi": 0.01}),
    Row("amsgrad", {"lr": 0.01, "gamma": 0.8, "alpha": 0.99, "eps": 1e-6}),
    Row("lion", {"lr": 0.01, "gamma": 0.8, "alpha": 0.95}),
    Row("adabelief", {"lr": 0.01, "gamma": 0.8, "alpha": 0.99, "eps": 1e-6}),
    Row("lamb", {"lr": 0.01, "gamma": 0.8, "alpha": 0.99, "eps": 1e-5}),
    Row("lars", {"lr": 0.5, "gamma": 0.8, "eta": 0.01, "beta": 0.001}),
    Row("adafactor", {"lr": 0.01, "gamma": 0.8, "alpha": 0.99, "decay_rate": -0.7, "eps2": 1e-2, "clip": 0.5}),
    Row("muon", {"lr": 0.05, "gamma": 0.9, "adam_lr": 1e-3, "beta1": 0.8, "beta2": 0.99, "eps": 1e-8}),
    Row("prodigy", {"lr": 0.5, "gamma": 0.8, "alpha": 0.99, "beta3": 0.9, "d0": 1e-5, "growth": 1.5}),
    Row("schedule_free_adamw", {"lr": 0.01, "gamma": 0.8, "alpha": 0.99, "warmup": 3.0, "r": 0.5, "power": 1.5}),
    Row("ademamix", {"lr": 0.01, "gamma": 0.8, "alpha": 0.99, "beta3": 0.999, "mix": 3.0, "T": 10.0}),
    Row("adopt", {"lr": 0.01, "gamma": 0.8, "alpha": 0.99, "eps": 1e-5}),
    Row("cautious_adamw", {"lr": 0.01, "gamma": 0.8, "alpha": 0.99, "eps": 1e-6}),
]
#: The rows whose text compiles to one kernel (the tests of that kernel's
#: threads, folding and allocations; the staged rules' passes: test_staged.py).
ELEMENT_ROWS = pytest.mark.parametrize("row", [r for r in TABLE if r.name in ELEMENTWISE],
                                       ids=[r.name for r in TABLE if r.name in ELEMENTWISE])
ROWS = pytest.mark.parametrize("row", TABLE, ids=[r.name for r in TABLE])
L2_FORMS = {"none": {}, "coupled": {"l2": 0.1}, "decoupled": {"wd": 0.1}, "both": {"l2": 0.05, "wd": 0.05}}


def run_both(backend, row, n, steps, extra=None, seed=0):
    """Run ``steps`` steps on the backend and on the reference; yield errors per step."""
    rng = np.random.default_rng(seed)
    rule = get_rule(row.name)
    w0 = rng.standard_normal(n).astype(np.float32)
    layout = validation_layout(n)  # weight matrices and biases from 1000 elements on
    opt = Optimizer(rule, backend.asarray(w0.copy()), **row.hyper, **(extra or {}), backend=backend, layout=layout)
    views = views_of(layout, n, rule.matrices, np)
    ref_w = w0.astype(np.float64)
    ref_state = rule.start_state(ref_w)
    for t in range(1, steps + 1):
        g = rng.standard_normal(n).astype(np.float32)
        opt.step(backend.asarray(g))
        ref_w, ref_state = reference.step(rule.name, ref_w, g, ref_state, opt.hyper, t, views)
        errs = {"w": rel_err(backend.to_numpy(opt.params), ref_w)}
        errs.update({s: rel_err(backend.to_numpy(opt.state[s]), ref_state[s]) for s in rule.state})
        yield t, errs


def test_table_covers_registry():
    assert sorted(r.name for r in TABLE) == sorted(BUILTIN)
    assert set(BUILTIN) <= set(RULES)


@ROWS
@pytest.mark.parametrize("form", L2_FORMS)
@pytest.mark.parametrize("n", [0, 5, 1025, 65539])
def test_matches_reference_over_many_steps(backend, row, form, n):
    for t, errs in run_both(backend, row, n, steps=20, extra=L2_FORMS[form]):
        for buf, err in errs.items():
            assert err <= tolerance_per_step(get_rule(row.name)) * t, f"step {t}, buffer {buf}: rel err {err:.2e}"


@ELEMENT_ROWS
def test_threaded_numpy_path_matches_one_thread(row, monkeypatch):
    """The threaded split must compute exactly what one thread does (the
    byte threshold lowered, so a small buffer is split too)."""
    monkeypatch.setattr("optbench.kernels.codegen.numpy_kernel.THREAD_MIN_BYTES", 0)
    rule = get_rule(row.name)
    n = CHUNK * 2 + 7
    rng = np.random.default_rng(1)
    w0, g = rng.standard_normal((2, n)).astype(np.float32)
    results = []
    for threads in (1, 2):
        w = w0.copy()
        opt = Optimizer(rule, w, **row.hyper, wd=0.01)
        opt.kernel = NumpyKernel(rule, threads=threads)
        for _ in range(3):
            opt.step(g)
        results.append((w, opt.state))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for s in rule.state:
        np.testing.assert_array_equal(results[0][1][s], results[1][1][s])


@ELEMENT_ROWS
def test_folding_zero_l2_is_exact(row):
    """Zero L2 (folded out of the NumPy program) equals the full program with
    l2 = 0 and decay = 1 kept in: x + 0 * w and 1 * w are exact."""
    rule = get_rule(row.name)
    rng = np.random.default_rng(2)
    w0 = rng.standard_normal(1031).astype(np.float32)
    out = []
    for fold in (True, False):
        w = w0.copy()
        opt = Optimizer(rule, w, **row.hyper, l2=0.0, wd=0.0)
        opt.kernel = NumpyKernel(rule, fold=fold)
        for g in np.random.default_rng(3).standard_normal((4, w.size)).astype(np.float32):
            opt.step(g)
        out.append(w)
    assert len(NumpyKernel(rule).program({"l2": 0.0, "decay": 1.0}).ops) < len(
        NumpyKernel(rule, fold=False).program({"l2": 0.0, "decay": 1.0}).ops
    )
    np.testing.assert_array_equal(out[0], out[1])


@ROWS
def test_alternating_programs_share_a_kernel(row):
    """Two optimisers of one rule, one with L2 and one without, share a cached
    kernel whose programs differ; interleaved steps must not mix them up."""
    rule = get_rule(row.name)
    a = run_both(_numpy(), row, 37, steps=6, extra={"l2": 0.1}, seed=4)
    b = run_both(_numpy(), row, 37, steps=6, extra={"wd": 0.1}, seed=5)
    for (t, ea), (_, eb) in zip(a, b):
        assert max(ea.values()) <= tolerance_per_step(rule) * t, rule.name
        assert max(eb.values()) <= tolerance_per_step(rule) * t, rule.name


def _numpy():
    from optbench.kernels import get_backend

    return get_backend("numpy")


@ELEMENT_ROWS
def test_numpy_step_allocates_nothing_per_step(row):
    n = 1 << 20  # one temporary of this size would be 4 MB
    rng = np.random.default_rng(6)
    w, g = rng.standard_normal((2, n)).astype(np.float32)
    opt = Optimizer(row.name, w, **row.hyper, l2=0.01)
    opt.step(g)  # compiles the program and allocates the chunk temporaries
    tracemalloc.start()
    for _ in range(3):
        opt.step(g)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 256 * 1024, f"{row.name} step allocated {peak} bytes"


# --- identities that must hold -------------------------------------------------

@pytest.mark.parametrize("extra", [{}, {"l2": 0.1}, {"wd": 0.1}])
def test_momentum_with_gamma_zero_is_sgd(backend, extra):
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal(1029).astype(np.float32)
    ws = [backend.asarray(w0.copy()), backend.asarray(w0.copy())]
    opts = [Optimizer("sgd", ws[0], lr=0.1, **extra, backend=backend),
            Optimizer("momentum", ws[1], lr=0.1, gamma=0.0, **extra, backend=backend)]
    for g in rng.standard_normal((5, w0.size)).astype(np.float32):
        for opt in opts:
            opt.step(backend.asarray(g))
    np.testing.assert_array_equal(backend.to_numpy(ws[0]), backend.to_numpy(ws[1]))


def test_adam_first_step_closed_form(backend):
    """From zero state, t = 1: mu_hat = g, v_hat = g^2, so w1 = w0 - lr g/(|g| + eps)."""
    rng = np.random.default_rng(8)
    w0 = rng.standard_normal(1001).astype(np.float32)
    g = (rng.standard_normal(1001) * np.logspace(-4, 2, 1001)).astype(np.float32)
    w = backend.asarray(w0.copy())  # numpy's asarray would alias w0
    Optimizer("adam", w, lr=0.1, eps=1e-8, backend=backend).step(backend.asarray(g))
    g64 = g.astype(np.float64)
    expected = w0 - 0.1 * g64 / (np.abs(g64) + 1e-8)
    np.testing.assert_allclose(backend.to_numpy(w), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("extra", [{}, {"l2": 0.2}, {"wd": 0.2}, {"l2": 0.1, "wd": 0.1}])
def test_nesterov_lookahead_form_equals_literal_form(backend, extra):
    """On Q(w) = 1/2 w^T A w + b^T w, the literal NAG (gradient evaluated at
    w - eta gamma v, in float64) and the look-ahead reformulation that the
    kernel runs (gradient at the stored parameters) give the same weights."""
    rng = np.random.default_rng(9)
    n, lr, gamma = 64, 0.05, 0.9
    a = np.logspace(-1, 1, n)  # a badly scaled diagonal quadratic
    b = rng.standard_normal(n)
    l2, wd = extra.get("l2", 0.0), extra.get("wd", 0.0)
    grad = lambda x: a * x + b + l2 * x  # noqa: E731 -- gradient of Q~ (coupled L2)

    w, v = rng.standard_normal(n), np.zeros(n)
    u = backend.asarray(w.astype(np.float32))
    opt = Optimizer("nesterov", u, lr=lr, gamma=gamma, **extra, backend=backend)
    for step in range(1, 101):
        v = gamma * v + (1 - gamma) * grad(w - lr * gamma * v)
        w = w * (1 - lr * wd) - lr * v
        g = a * backend.to_numpy(u) + b  # the kernel adds l2 * u itself
        opt.step(backend.asarray(g.astype(np.float32)))
        got = backend.to_numpy(opt.weights()).astype(np.float64)
        np.testing.assert_allclose(got, w, rtol=2e-5, atol=2e-5, err_msg=f"step {step}")
    assert np.linalg.norm(w) < 0.5 * np.linalg.norm(b / (a + l2)) + 10  # it did descend


# --- bad input -----------------------------------------------------------------

def test_unknown_rule_names_the_allowed_ones():
    with pytest.raises(UnknownRuleError, match="unknown optimiser 'adamw'.*sgd.*adam"):
        Optimizer("adamw", np.zeros(4, np.float32))


def test_unknown_hyper_parameter():
    with pytest.raises(RuleError, match="no hyper-parameter 'beta1'.*gamma"):
        Optimizer("adam", np.zeros(4, np.float32), beta1=0.9)


def test_non_numeric_hyper_parameter():
    with pytest.raises(RuleError, match="'lr'.*must be a number"):
        Optimizer("sgd", np.zeros(4, np.float32), lr="fast")


def test_mismatched_buffer_sizes():
    opt = Optimizer("adam", np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="'g' has 7 elements but the parameters have 8"):
        opt.step(np.zeros(7, np.float32))


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32])
def test_non_float32_buffers(dtype):
    with pytest.raises(TypeError, match="'w' must be float32"):
        Optimizer("sgd", np.zeros(4, dtype))
    opt = Optimizer("sgd", np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="'g' must be float32"):
        opt.step(np.zeros(4, dtype))


def test_non_contiguous_buffer():
    with pytest.raises(ValueError, match="1-D and contiguous"):
        Optimizer("sgd", np.zeros(8, np.float32)[::2])


def test_step_counter_starts_at_one():
    with pytest.raises(RuleError, match="starts at 1"):
        get_rule("adam").step_scalars(get_rule("adam").defaults(), 0)


@pytest.mark.parametrize("update, message", [
    ("w = w - lr * q", "unknown name 'q'"),
    ("w = w ** 2", "operator Pow"),
    ("w = exp(w)", "calls"),
    ("v = g", "never assigns w"),
    ("lr = g", "cannot assign to scalar"),
])
def test_rule_definitions_are_checked(update, message):
    from optbench.kernels.rule import Rule

    with pytest.raises(RuleError, match=message):
        Rule(name="bad", title="bad", hyper={"lr": 0.1}, symbols={}, state=("v",),
             scalars=lambda hp, t: {"lr": hp["lr"]}, update=update, bytes_per_param=0)


@ROWS
def test_unaligned_view_takes_the_scalar_path(backend, row):
    """A view starting one float into a buffer is not 16-byte aligned: the
    CUDA path must fall back to its scalar kernel and still be right."""
    rng = np.random.default_rng(10)
    base0 = rng.standard_normal(1030).astype(np.float32)
    base = backend.asarray(base0.copy())
    w = base[1:1026]
    g = rng.standard_normal(w.size).astype(np.float32)
    opt = Optimizer(row.name, w, **row.hyper, backend=backend)
    opt.step(backend.asarray(g))
    ref_w, _ = reference.step(row.name, base0[1:1026], g, opt.rule.start_state(base0[1:1026].astype(np.float64)),
                              opt.hyper, 1)
    assert rel_err(backend.to_numpy(w), ref_w) <= tolerance_per_step(opt.rule)
    after = backend.to_numpy(base)
    assert after[0] == base0[0] and np.array_equal(after[1026:], base0[1026:])


@ROWS
def test_masked_update_keeps_pruned_weights_at_zero(backend, row):
    """The mask applies inside the one launch: pruned weights (and their
    state) stay exactly 0; the others move exactly as without a mask."""
    rng = np.random.default_rng(11)
    n = 2053
    w0 = rng.standard_normal(n).astype(np.float32)
    mask = (rng.random(n) > 0.3).astype(np.float32)
    masked_w, plain_w = backend.asarray(w0.copy()), backend.asarray(w0 * mask)
    masked_opt = Optimizer(row.name, masked_w, mask=backend.asarray(mask), **row.hyper, wd=0.01, backend=backend)
    plain_opt = Optimizer(row.name, plain_w, **row.hyper, wd=0.01, backend=backend)
    assert masked_opt.rule.name == row.name and masked_opt.kernel.rule.name == f"{row.name}_masked"
    for _ in range(6):
        g = rng.standard_normal(n).astype(np.float32) + 1.0  # nonzero everywhere
        masked_opt.step(backend.asarray(g))
        plain_opt.step(backend.asarray(g))
    got, want = backend.to_numpy(masked_w), backend.to_numpy(plain_w)
    assert np.all(got[mask == 0] == 0.0)
    assert np.all(backend.to_numpy(masked_opt.weights())[mask == 0] == 0.0)
    if row.name in ELEMENTWISE:  # (a rule's norms over the buffer see the plain run's unpruned elements)
        np.testing.assert_allclose(got[mask == 1], want[mask == 1], rtol=1e-6, atol=1e-7)
    masked_opt.set_mask(None)
    masked_opt.step(backend.asarray(np.ones(n, np.float32)))
    assert np.all(backend.to_numpy(masked_w)[mask == 0] != 0.0)  # unmasked again: they move
