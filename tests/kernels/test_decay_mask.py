"""The decay mask (kernels.transforms.decay_masked): L2 and decoupled decay
only where a ``decay_mask`` buffer is 1 -- the weight matrices of an MLP's
flat layout, not its biases and PReLU alphas -- in the same single launch.

On every backend (numpy, numba, the CuPy stand-in): the masked views evolve
bit for bit as with l2 = wd = 0 and the others bit for bit as with the
decay; a population's members with decay masks are their single runs; the
transform composes with OBD's ``masked``; a step is still one launch.
"""

from __future__ import annotations

import ast

import numpy as np
import pytest
from rule_sets import WHOLE_RUN  # tests/ is on sys.path

from optbench.kernels import RULES, FlatLayout, Optimizer, PopulationOptimizer, RuleError
from optbench.kernels.launch import kernel_for
from optbench.kernels.rules import sgd
from optbench.kernels.schedules import Schedule
from optbench.kernels.transforms import decay_mask, decay_masked, masked

#: An MLP's flat layout with PReLU (suite.nn.mlp.mlp_layout's names).
LAYOUT = FlatLayout([("W1", (7, 5)), ("b1", (5,)), ("alpha1", (1,)), ("W2", (5, 3)), ("b2", (3,)),
                     ("alpha2", (1,)), ("W3", (3, 2)), ("b3", (2,))])


def weights_only():
    return decay_mask(LAYOUT, lambda name: name.startswith("W"))


def bits(a) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


def test_the_mask_of_a_layout():
    mask = weights_only()
    assert mask.data.dtype == np.float32 and mask.data.shape == (LAYOUT.size,)
    for slot in LAYOUT:
        assert (mask[slot.name] == (1.0 if slot.name.startswith("W") else 0.0)).all(), slot.name
    assert mask.data.sum() == sum(s.size for s in LAYOUT if s.name.startswith("W"))  # padding is 0
    by_name = decay_mask(LAYOUT, ["W1", "b2"])
    assert by_name["W1"].all() and by_name["b2"].all() and not by_name["W2"].any()
    with pytest.raises(KeyError, match="no tensor 'W9'"):
        decay_mask(LAYOUT, ["W9"])


@pytest.mark.parametrize("name", RULES)
def test_the_transform_rewrites_only_the_decay_lines(name):
    rule = RULES[name]
    dm = decay_masked(rule)
    assert dm is decay_masked(rule) and decay_masked(dm) is dm  # cached, idempotent
    assert dm.inputs == rule.inputs + ("decay_mask",) and dm.bytes_per_param == rule.bytes_per_param + 4
    assert dm.hyper == rule.hyper and dm.scalar_names == rule.scalar_names and dm.state == rule.state
    text = [str(s) for s in dm.statements]
    assert text[0] == "g = g + l2 * (decay_mask * w)"
    if not rule.decoupled:  # it decays itself: wd is masked where the text reads it, and only there
        own = [str(s) for s in rule.statements][1:]
        assert "wd" in " ".join(own)
        assert text[1:] == [ast.unparse(ast.parse(line.replace("wd", "(decay_mask * wd)"))) for line in own]
        return
    assert text[1].startswith("w = (decay_mask * decay + (1 - decay_mask)) * w")
    if rule.lookahead is not None:
        assert text[1].endswith(f"lr_wd * (decay_mask * ({ast.unparse(ast.parse(rule.lookahead))}))")
    assert text[2:] == [str(s) for s in rule.statements][2:]


def test_a_rule_without_decay_cannot_be_decay_masked():
    with pytest.raises(RuleError, match="no L2 or decoupled decay to mask"):
        decay_masked(sgd.RULE)


def _run(name, backend, w0, grads, hyper, **kw):
    # per-tensor views (LAMB's norms): the masked tensors' norms are the decayed run's
    opt = Optimizer(name, backend.asarray(w0.copy()), backend=backend, layout=LAYOUT, **hyper, **kw)
    for g in grads:
        opt.step(backend.asarray(g), check_finite=False)
    return opt


DECAYS = [{"l2": 0.05}, {"wd": 0.4}, {"l2": 0.05, "wd": 0.4}]


@pytest.mark.parametrize("decay", DECAYS, ids=["l2", "wd", "both"])
@pytest.mark.parametrize("name", [name for name in RULES if name not in WHOLE_RUN])
def test_biases_and_alphas_do_not_decay_and_weights_do(name, decay, backend):
    """Over several steps, bit for bit: W* as with the decay, b* and alpha*
    as with l2 = wd = 0 -- parameters, state and weights(). (Not for a rule
    that reduces over the whole run, as Prodigy's d does: there the biases'
    decay moves every tensor's step.)"""
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal(LAYOUT.size).astype(np.float32)
    grads = rng.standard_normal((6, LAYOUT.size)).astype(np.float32)
    hyper = {"lr": RULES[name].hyper["lr"] * 5, **decay}
    mask = weights_only()
    masked_run = _run(name, backend, w0, grads, hyper, decay_mask=backend.asarray(mask.data))
    decayed = _run(name, backend, w0, grads, hyper)
    plain = _run(name, backend, w0, grads, {"lr": hyper["lr"]})
    W = mask.data == 1.0
    # the biases and alphas (not the padding, which a rule that works per
    # tensor fills from its neighbour: the model keeps it 0, test_flat.py)
    B = decay_mask(LAYOUT, lambda name: not name.startswith("W")).data == 1.0
    for what, get in (("w", lambda o: o.params), ("weights()", lambda o: o.weights()),
                      *((s, lambda o, s=s: o.state[s]) for s in masked_run.rule.state)):
        got, want_w, want_b = (backend.to_numpy(get(o)) for o in (masked_run, decayed, plain))
        assert np.array_equal(bits(got[W]), bits(want_w[W])), f"{what}: weights differ from the decayed run"
        assert np.array_equal(got[B], want_b[B]), f"{what}: biases/alphas differ from the undecayed run"
    if "wd" in decay:  # the decay did reach the biases of the unmasked run (coupled L2 may not: Lion's sign)
        assert not np.array_equal(backend.to_numpy(decayed.params)[B], backend.to_numpy(plain.params)[B])


@pytest.mark.parametrize("name", ["sgd", "nesterov", "adam"])
def test_a_mask_of_ones_is_the_unmasked_update_and_a_schedule_composes(name, backend):
    rng = np.random.default_rng(2)
    w0 = rng.standard_normal(LAYOUT.size).astype(np.float32)
    grads = rng.standard_normal((5, LAYOUT.size)).astype(np.float32)
    hyper = {"lr": RULES[name].hyper["lr"] * 5, "l2": 0.05, "wd": 0.4}
    schedule = Schedule.from_dict({"kind": "warmup_cosine", "warmup": 2}, 5)
    ones = _run(name, backend, w0, grads, hyper, schedule=schedule,
                decay_mask=backend.asarray(np.ones(LAYOUT.size, np.float32)))
    unmasked = _run(name, backend, w0, grads, hyper, schedule=schedule)
    assert np.array_equal(bits(backend.to_numpy(ones.params)), bits(backend.to_numpy(unmasked.params)))


@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam"])
def test_it_composes_with_the_pruning_mask(name):
    """masked(decay_masked(rule)) and decay_masked(masked(rule)) are the same
    maths: pruned elements held at 0, the others decayed per the decay mask."""
    rule = RULES[name]
    assert masked(decay_masked(rule)).inputs == ("decay_mask", "mask")
    assert decay_masked(masked(rule)).inputs == ("mask", "decay_mask")
    rng = np.random.default_rng(4)
    w0 = rng.standard_normal(LAYOUT.size).astype(np.float32)
    grads = rng.standard_normal((5, LAYOUT.size)).astype(np.float32)
    prune = (rng.uniform(size=LAYOUT.size) > 0.3).astype(np.float32)
    hyper = {"lr": rule.hyper["lr"] * 5, "l2": 0.05, "wd": 0.4}
    opt = Optimizer(name, w0.copy(), mask=prune, decay_mask=weights_only(), **hyper)
    assert opt.kernel is kernel_for(masked(decay_masked(rule)), "numpy")
    other = Optimizer(name, w0.copy(), **hyper)  # the other order of the transforms, by hand
    other.population.groups[0].kernel = kernel_for(decay_masked(masked(rule)), "numpy")
    other.population.masks, other.population.decay_masks = prune[None], weights_only().data[None]
    other.params *= prune
    for g in grads:
        opt.step(g)
        other.step(g)
    assert np.array_equal(bits(opt.params), bits(other.params))
    assert not opt.params[prune == 0].any()
    opt.set_mask(None)  # the decay mask stays
    assert opt.kernel is kernel_for(decay_masked(rule), "numpy")


@pytest.mark.parametrize("name", RULES)
def test_population_members_with_decay_masks_are_their_single_runs(name, backend):
    """Rows of a (P, n) decay mask: members that decay only their weights, a
    member with a row of ones (= decay everywhere: the unmasked single run),
    with schedules too; one launch per rule, bit for bit."""
    rng = np.random.default_rng(6)
    n = LAYOUT.size
    lr = RULES[name].hyper["lr"] * 5
    hypers = [{"lr": lr, "l2": 0.05, "wd": 0.4}, {"lr": lr * 1.3, "wd": 0.2}, {"lr": lr * 0.7, "l2": 0.1},
              {"lr": lr, "l2": 0.05, "wd": 0.4}]
    W = weights_only().data
    rows = [W, W, W, np.ones(n, np.float32)]
    schedules = [None, Schedule.from_dict({"kind": "exponential", "gamma": 0.8}), None,
                 Schedule.from_dict({"kind": "cosine"}, 5)]
    w0 = rng.standard_normal((4, n)).astype(np.float32)
    pop = PopulationOptimizer(backend.asarray(w0), [name] * 4, hypers, backend=backend, schedules=schedules,
                              decay_masks=backend.asarray(np.stack(rows)))
    assert len(pop.groups) == 1
    singles = [Optimizer(name, backend.asarray(w0[m].copy()), backend=backend, schedule=schedules[m],
                         decay_mask=None if m == 3 else backend.asarray(W.copy()), **hypers[m]) for m in range(4)]
    pop.begin_epoch(5)
    for _ in range(5):
        g = rng.standard_normal((4, n)).astype(np.float32)
        pop.step(backend.asarray(g))
        for m, opt in enumerate(singles):
            opt.step(backend.asarray(g[m].copy()), check_finite=False)
    params, weights = backend.to_numpy(pop.params), backend.to_numpy(pop.weights())
    for m, opt in enumerate(singles):
        assert np.array_equal(bits(params[m]), bits(backend.to_numpy(opt.params))), m
        assert np.array_equal(bits(weights[m]), bits(backend.to_numpy(opt.weights()))), m
        for s in opt.state:
            assert np.array_equal(bits(backend.to_numpy(pop.member(m).state[s])), bits(backend.to_numpy(opt.state[s])))


def test_bad_decay_masks_are_refused():
    params = np.zeros(LAYOUT.size, np.float32)
    with pytest.raises(ValueError, match="buffer 'decay_mask' has 3 elements"):
        Optimizer("adam", params, decay_mask=np.ones(3, np.float32))
    with pytest.raises(TypeError, match="buffer 'decay_mask' must be float32"):
        Optimizer("adam", params, decay_mask=np.ones(LAYOUT.size))
    with pytest.raises(ValueError, match="buffer 'decay_mask' has shape"):
        PopulationOptimizer(np.zeros((2, 8), np.float32), ["adam"] * 2, [{}] * 2,
                            decay_masks=np.ones((1, 8), np.float32))


def test_a_decay_masked_step_is_one_launch(standin):
    """On the CuPy stand-in (which counts every device operation): one
    launch per step with the decay mask, as without it; one per rule for a
    population."""
    cp = standin
    n = LAYOUT.size
    w = cp.asarray(np.random.default_rng(0).standard_normal(n).astype(np.float32))
    g = cp.asarray(np.ones(n, np.float32))
    counts = {}
    for label, kw in (("plain", {}), ("decay mask", {"decay_mask": cp.asarray(weights_only().data)}),
                      ("decay mask and schedule", {"decay_mask": cp.asarray(weights_only().data),
                                                   "schedule": {"kind": "exponential", "gamma": 0.9}})):
        opt = Optimizer("adam", w.copy(), backend="cupy", wd=0.1, **kw)
        opt.step(g, check_finite=False)  # builds the kernel
        cp.reset_counts()
        for _ in range(4):
            opt.step(g, check_finite=False)
        counts[label] = cp.counts()["launches"] / 4
    assert counts == {"plain": 1.0, "decay mask": 1.0, "decay mask and schedule": 1.0}, counts
    P = 5
    pop = PopulationOptimizer(cp.asarray(np.zeros((P, n), np.float32)), ["sgd"] * 2 + ["adam"] * 3, [{"wd": 0.1}] * P,
                              backend="cupy", decay_masks=cp.asarray(np.stack([weights_only().data] * P)),
                              schedules=[{"kind": "exponential", "gamma": 0.9}] * P)
    pop.begin_epoch(4)
    gp = cp.asarray(np.ones((P, n), np.float32))
    pop.step(gp)
    cp.reset_counts()
    for _ in range(3):
        pop.step(gp)
    assert cp.counts()["launches"] / 3 == 2.0 and cp.counts()["h2d"] == 0  # one launch per rule, nothing uploaded
