"""Rules beyond the element (kernels.stages, kernels.staged, kernels.views):
per-tensor reductions, carried values, row/column state and matrix steps.

Every staged rule of the registry runs on every backend (numpy, numba, the
CuPy stand-in running the passes' CUDA source on the host) over an MLP's
flat layout with padding between its tensors, as a population whose members
have different hyper-parameters: each member is bit for bit its own single
run, the backends agree (numba bit for bit with NumPy, the CUDA source
within float32 rounding), and the padding stays 0. The planner's passes,
kinds and line-naming errors are checked on small rules of their own.
"""

from __future__ import annotations

import numpy as np
import pytest
from rule_sets import ELEMENTWISE, STAGED  # tests/ is on sys.path

from optbench.kernels import RULES, FlatLayout, Optimizer, PopulationOptimizer, RuleError, get_backend, reference
from optbench.kernels.rule import Rule
from optbench.kernels.staged import run_text64
from optbench.kernels.stages import plan_of
from optbench.kernels.views import views_of

#: An MLP's tensors: 16-byte alignment leaves padding after b2 and b3.
LAYOUT = FlatLayout([("W1", (12, 8)), ("b1", (8,)), ("W2", (8, 6)), ("b2", (6,)), ("W3", (6, 3)), ("b3", (3,))])
MEMBERS, STEPS = 3, 5


def bits(a) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


def real_elements() -> np.ndarray:
    inside = np.zeros(LAYOUT.size, bool)
    for slot in LAYOUT:
        inside[slot.offset : slot.offset + slot.size] = True
    return inside


def member_hypers(name: str) -> list[dict]:
    lr = RULES[name].hyper["lr"]
    return [{"lr": lr * (1 + 0.5 * m), "wd": 0.01 * m} for m in range(MEMBERS)]


def run_population(name: str, backend, seed: int = 0):
    """STEPS steps of a MEMBERS-member population on ``backend``; (params, state) as NumPy."""
    rng = np.random.default_rng(seed)
    inside = real_elements()
    w0 = (rng.standard_normal((MEMBERS, LAYOUT.size)) * inside).astype(np.float32)
    grads = (rng.standard_normal((STEPS, MEMBERS, LAYOUT.size)) * inside).astype(np.float32)
    pop = PopulationOptimizer(backend.asarray(w0.copy()), [name] * MEMBERS, member_hypers(name), backend=backend,
                              layout=LAYOUT)
    singles = [Optimizer(name, backend.asarray(w0[m].copy()), backend=backend, layout=LAYOUT, **member_hypers(name)[m])
               for m in range(MEMBERS)]
    for g in grads:
        pop.step(backend.asarray(g.copy()))
        for m, opt in enumerate(singles):
            opt.step(backend.asarray(g[m].copy()))
    return pop, singles


@pytest.mark.parametrize("name", STAGED)
def test_each_member_is_its_single_run_and_the_padding_stays_zero(name, backend):
    pop, singles = run_population(name, backend)
    params = backend.to_numpy(pop.params)
    assert np.all(params[:, ~real_elements()] == 0.0), "padding written"
    assert np.isfinite(params).all()
    for m, opt in enumerate(singles):
        assert np.array_equal(bits(params[m]), bits(backend.to_numpy(opt.params))), (name, m)
        member = pop.member(m)
        for s, value in opt.state.items():  # element state, carried values, row/column state
            assert np.array_equal(backend.to_numpy(member.state[s]), backend.to_numpy(value)), (name, m, s)


@pytest.mark.parametrize("name", STAGED)
def test_the_backends_agree(name, backend):
    """numba: the same float32 operations as NumPy, bit for bit; the CUDA
    source on the host: within float32 rounding (its compiler may fuse a
    multiply-add)."""
    want = run_population(name, get_backend("numpy"))[0].params
    got = backend.to_numpy(run_population(name, backend)[0].params)
    if backend.name == "cupy":
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6 * np.abs(want).max())
    else:
        assert np.array_equal(bits(got), bits(want)), backend.name


def test_pass_counts():
    """One pass per chain of reductions an update waits for: LAMB's and
    LARS's norms, Muon's orthogonalisation and Prodigy's d need one, Cautious
    Adam's mean of its mask one, Adafactor's row/column means and then the
    norm of its direction two."""
    assert {name: len(plan_of(rule).passes) for name, rule in STAGED.items()} == {
        "lamb": 2, "lars": 2, "muon": 2, "prodigy": 2, "cautious_adamw": 2, "adafactor": 3}
    assert all(plan_of(rule).simple for rule in ELEMENTWISE.values())


def make(update: str, **fields) -> Rule:
    return Rule(name="probe", title="probe", hyper={"lr": 0.1}, symbols={}, state=fields.pop("state", ()),
                scalars=lambda hp, t: {"lr": hp["lr"]}, update=update, bytes_per_param=12, **fields)


@pytest.mark.parametrize("update, fields, message", [
    ("r = g * g\nw = w - lr * g", {"rowstate": ("r",)},
     "update line 1 'r = g \\* g': row state 'r' takes one value per row, got a per-element value"),
    ("c = g\nw = w - lr * g", {"colstate": ("c",)},
     "update line 1 'c = g': column state 'c' takes one value per column, got a per-element value"),
    ("d = d + g\nw = w - lr * d * g", {"carry": {"d": 1.0}},
     "update line 1 'd = d \\+ g': carried 'd' must be one value per run or per view, got a per-element value"),
])
def test_a_value_of_the_wrong_kind_is_refused_naming_its_line(update, fields, message):
    with pytest.raises(RuleError, match=f"rule 'probe': {message}"):
        plan_of(make(update, **fields))


@pytest.mark.parametrize("update, width", [("d = max(d, norm(g))", "view"), ("d = max(d, norm_all(g))", "run")])
def test_a_carried_value_is_per_view_or_per_run_as_what_it_is_assigned(update, width):
    rule = make(update + "\nw = w - lr * g / (d + 1)", carry={"d": 0.0})
    pop = PopulationOptimizer(np.ones((2, LAYOUT.size), np.float32), [rule] * 2, [{}, {}], layout=LAYOUT)
    g = np.random.default_rng(0).standard_normal((2, LAYOUT.size)).astype(np.float32) * real_elements()
    pop.step(g)
    d = pop.member(1).state["d"]
    views = views_of(LAYOUT, LAYOUT.size, "all", np)
    want = views.reduce("norm", g)[1] if width == "view" else np.sqrt((g[1].astype(np.float64) ** 2).sum())
    assert d.shape == ((views.V,) if width == "view" else (1,))
    np.testing.assert_allclose(d, want, rtol=1e-12)


@pytest.mark.parametrize("name", ["lamb", "adafactor", "muon", "prodigy"])
def test_the_text_run_in_float64_is_the_reference(name):
    """run_text64 (what validates a plug-in without a reference of its own)
    evaluates the rule's text line by line in float64: for the built-ins it
    must agree with the independent references to float64 rounding (Muon's
    Newton-Schulz runs in float32 in both)."""
    rule = RULES[name]
    rng = np.random.default_rng(3)
    views = views_of(LAYOUT, LAYOUT.size, rule.matrices, np)
    inside = real_elements()
    hp = rule.resolve({"wd": 0.01})
    w = rng.standard_normal(LAYOUT.size) * inside
    ref_w, ref_state = w.copy(), rule.start_state(w)
    text_w, text_state, carried = w.copy(), rule.start_state(w), {}
    for t in range(1, 4):
        g = rng.standard_normal(LAYOUT.size) * inside
        ref_w, ref_state = reference.step(name, ref_w, g, ref_state, hp, t, views)
        text_w, text_state, carried = run_text64(rule, views, text_w, g, text_state, carried, rule.step_scalars(hp, t))
    tol = 1e-5 if name == "muon" else 1e-10
    np.testing.assert_allclose(text_w[inside], ref_w[inside], rtol=tol, atol=tol)
