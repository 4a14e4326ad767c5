"""Populations: P members' updates in one launch per rule, each member bit
for bit its own single run (a population of one).

Driven by ``optbench.kernels.rules.RULES`` over the ``backend`` fixture
(numpy, numba, cupy -- on a GPU or on the CPU stand-in): every member's row
after several steps equals, bit for bit, a single-run
``optbench.kernels.Optimizer`` on that row with the member's
hyper-parameters and gradients on the same backend. The CUDA kernels also
run from their exact source on the host harness
(:mod:`optbench.kernels.testing.cuda_host`) over several grids, against the
same kernel run for each member alone (bit for bit), the NumPy kernel and the
float64 reference.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from rule_sets import ELEMENTWISE  # tests/ is on sys.path

from optbench.kernels import (RULES, BackendUnavailable, Optimizer, PopulationOptimizer, RuleError, UnknownRuleError,
                              get_backend, reference)
from optbench.kernels.codegen import cuda_kernel
from optbench.kernels.codegen.cuda_kernel import cuda_source, kernel_names, population_geometry
from optbench.kernels.codegen.numba_kernel import NumbaKernel
from optbench.kernels.codegen.numpy_kernel import NumpyKernel
from optbench.kernels.population import scalar_table
from optbench.kernels.rule import call_scalars, takes_run
from optbench.kernels.testing import cuda_host

STEPS = 4


def member_hypers(rule, members: int) -> list[dict]:
    """Distinct hyper-parameters per member: every one of the rule's moved
    off its default (member 0 keeps the defaults), L2 and decay zero for some
    members and not for others (so their scalars fold differently)."""
    out = [{}]
    for m in range(1, members):
        h = {}
        for key, default in rule.hyper.items():
            if key == "lr":
                h[key] = default * (1 + 0.37 * m)
            elif key in ("gamma", "alpha"):
                h[key] = 0.5 + 0.45 * m / members
            elif key == "eps":
                h[key] = default * (1 + m)
            elif key == "l2":
                h[key] = 0.01 * (m % 2)
            elif key == "wd":
                h[key] = 0.02 * (m % 3 == 1)
        out.append(h)
    return out


def moved(rule, key: str, value: float, rng) -> float:
    """A random value of hyper-parameter ``key`` in its range: anywhere in a
    bounded one (a rate), else 0.5-2 times the default."""
    iv = rule.interval(key)
    if np.isfinite(iv.lo) and np.isfinite(iv.hi):
        return rng.uniform(iv.lo + 0.05 * (iv.hi - iv.lo), iv.hi - 0.001 * (iv.hi - iv.lo))
    return value * rng.uniform(0.5, 2)


def bits(a) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


def assert_bitwise(what: str, got, want) -> None:
    got, want = bits(got), bits(want)
    if not np.array_equal(got, want):
        i = int(np.argmax(got != want))
        raise AssertionError(f"{what}: {int((got != want).sum())} of {want.size} elements differ; first [{i}]: "
                             f"{got.view(np.float32)[i]!r} vs {want.view(np.float32)[i]!r}")


def flag(backend, on: int):
    return backend.asarray(np.array([on]), dtype=np.int32)


def check_against_single_runs(backend, rules, hypers, n, active_steps, seed=0):
    """Run a population and one single-run Optimizer per member through the
    same gradients (``active_steps``: per step None or the (P,) flags) and
    compare every buffer, and the weights, bit for bit after each step."""
    rng = np.random.default_rng(seed)
    members = len(rules)
    w0 = rng.standard_normal((members, n)).astype(np.float32)
    pop = PopulationOptimizer(backend.asarray(w0), rules, hypers, backend=backend)
    singles = [Optimizer(r, backend.asarray(w0[m].copy()), backend=backend, **hypers[m]) for m, r in enumerate(rules)]
    pop.begin_epoch(2)  # steps 1-2 from the uploaded table, the later ones prepared on the fly
    for t, active in enumerate(active_steps, start=1):
        g = rng.standard_normal((members, n)).astype(np.float32)
        before = backend.to_numpy(pop.params)
        pop.step(backend.asarray(g), active=None if active is None else backend.asarray(active, dtype=np.int32))
        for m, opt in enumerate(singles):
            on = 1 if active is None else int(active[m])
            opt.step(backend.asarray(g[m].copy()), check_finite=False, active=flag(backend, on))
        params, weights = backend.to_numpy(pop.params), backend.to_numpy(pop.weights())
        for m, opt in enumerate(singles):
            case = f"member {m} ({opt.rule.name}, {hypers[m]}) step {t}"
            assert_bitwise(f"{case}: w", params[m], backend.to_numpy(opt.params))
            member = pop.member(m)
            for s in opt.rule.state:
                assert_bitwise(f"{case}: {s}", backend.to_numpy(member.state[s]), backend.to_numpy(opt.state[s]))
            assert_bitwise(f"{case}: weights()", weights[m], backend.to_numpy(opt.weights()))
            if active is not None and not active[m]:
                assert_bitwise(f"{case}: inactive, untouched", params[m], before[m])
    assert pop.t == len(active_steps)
    return pop, singles


@pytest.mark.parametrize("name", RULES)
def test_scalar_table_is_each_members_step_scalars(name):
    """The table is each member's Python-float scalars (the rule's own
    ``scalars``, as a run alone computes them), rounded once to float32 --
    computed once per distinct member and the same for its twins."""
    rule = RULES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    distinct = [rule.resolve({k: moved(rule, k, v, rng) for k, v in rule.hyper.items() if v}) for _ in range(40)]
    hypers = distinct + distinct[::-1]  # every member twice
    calls = []
    original = rule.scalars

    def counted(hp, t, run=None):  # (schedule-free's scalars take the run)
        calls.append(t)
        return call_scalars(original, hp, t, run)

    object.__setattr__(rule, "scalars", counted)
    try:
        for t in (1, 2, 7, 1000):
            calls.clear()
            table = scalar_table(rule, hypers, t, 1)[0]
            assert len(calls) == len(distinct)
            for m, hp in enumerate(hypers):
                want = call_scalars(original, hp, t)
                for j, s in enumerate(rule.scalar_names):
                    assert table[m, j].view(np.uint32) == np.float32(want[s]).view(np.uint32), (s, t, m)
    finally:
        object.__setattr__(rule, "scalars", original)


@pytest.mark.parametrize("n", [1024, 1031])
@pytest.mark.parametrize("name", RULES)
def test_every_member_is_bit_for_bit_its_single_run(backend, name, n):
    rule = RULES[name]
    members = 5
    check_against_single_runs(backend, [name] * members, member_hypers(rule, members), n, [None] * STEPS)


@pytest.mark.parametrize("name", RULES)
def test_inactive_members_are_untouched_and_resume(backend, name):
    """Flags per step: scattered, a contiguous range, none, scattered, all. A member
    left out is untouched bit for bit and takes up exactly where a single
    run frozen by its flag would (t counts every step, as there)."""
    rule = RULES[name]
    steps = [np.array(a) for a in ([1, 0, 1, 1, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 1],
                                   [1, 1, 1, 1, 1])]
    check_against_single_runs(backend, [name] * 5, member_hypers(rule, 5), 1027, steps, seed=1)


@pytest.mark.parametrize("active", [[1, 0, 1, 0, 1], [0, 1, 1, 0, 0]], ids=["scattered", "range"])
@pytest.mark.parametrize("name", RULES)
def test_an_inactive_member_costs_no_work_on_numpy(name, active):
    """Inactive rows hold w = -Inf and g = +Inf, so coupled L2's first line
    g + l2 w is Inf - Inf in every rule: under np.errstate(invalid="raise")
    any work on them would raise. They are neither read nor written."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((5, 300)).astype(np.float32)
    g = rng.standard_normal((5, 300)).astype(np.float32)
    off = np.array(active) == 0
    w[off], g[off] = -np.inf, np.inf
    pop = PopulationOptimizer(w, [name] * 5, [{"wd": 0.01, "l2": 0.01}] * 5)
    before = w.copy()
    with np.errstate(invalid="raise"):
        pop.step(g, active=np.array(active, np.int32))
        assert_bitwise("inactive rows", w[off], before[off])
        assert np.isfinite(w[~off]).all() and not np.array_equal(w[~off], before[~off])
        with pytest.raises(FloatingPointError):  # the control: the same rows, active, do raise
            pop.step(g, active=np.ones(5, np.int32))


def test_mixed_rules_are_bit_for_bit_their_single_runs(backend):
    rules = ["sgd"] * 3 + ["adam"] * 4 + ["nesterov"] * 2
    hypers = [member_hypers(RULES[r], 9)[m] for m, r in enumerate(rules)]
    active = [None, np.array([1, 1, 0, 1, 0, 1, 1, 0, 1]), None]
    pop, _ = check_against_single_runs(backend, rules, hypers, 517, active, seed=3)
    assert [(g.rule.name, g.lo, g.hi) for g in pop.groups] == [("sgd", 0, 3), ("adam", 3, 7), ("nesterov", 7, 9)]


@pytest.mark.parametrize("members", [3, 9, 50])
def test_one_launch_per_rule_and_no_transfer_in_a_prepared_step(standin, members):
    """On the stand-in (every launch, sync and host-to-device copy counted):
    a prepared step is one launch per rule group -- not per member -- with no
    host read and no copy; a step past the prepared ones adds one copy (all
    groups' scalars together)."""
    cp = standin
    third = members // 3
    rules = ["sgd"] * third + ["adam"] * (members - 2 * third) + ["nesterov"] * third
    hypers = [member_hypers(RULES[r], members)[m] for m, r in enumerate(rules)]
    rng = np.random.default_rng(4)
    pop = PopulationOptimizer(cp.asarray(rng.standard_normal((members, 64)).astype(np.float32)), rules, hypers)
    g = cp.asarray(rng.standard_normal((members, 64)).astype(np.float32))
    active = cp.ones(members, dtype=np.int32)
    pop.step(g)  # compiles the kernels
    pop.begin_epoch(2)
    for flags in (None, active):
        standin.reset_counts()
        pop.step(g, active=flags)
        assert standin.counts() == {"launches": 3, "syncs": 0, "h2d": 0, "allocs": 0, "graph_nodes": 0}
    standin.reset_counts()
    pop.step(g)  # past the prepared table
    assert standin.counts() == {"launches": 3 + 1, "syncs": 0, "h2d": 1, "allocs": 1, "graph_nodes": 0}


def test_more_members_than_grid_rows_is_still_one_launch(standin, monkeypatch):
    """With the grid's y limit lowered to 2, five members are one launch: the
    kernel's blocks take members 0, 2, 4 and 1, 3 in turn."""
    monkeypatch.setattr(cuda_kernel, "MAX_GRID_Y", 2)
    cp = standin
    rng = np.random.default_rng(5)
    w0 = rng.standard_normal((5, 1029)).astype(np.float32)
    hypers = member_hypers(RULES["adam"], 5)
    pop = PopulationOptimizer(cp.asarray(w0), ["adam"] * 5, hypers)
    singles = [Optimizer("adam", cp.asarray(w0[m].copy()), **hypers[m]) for m in range(5)]
    active = cp.asarray(np.array([1, 1, 0, 1, 1], np.int32))
    for t in range(3):
        g = rng.standard_normal((5, 1029)).astype(np.float32)
        g_device = cp.asarray(g)
        pop.begin_epoch(1)
        standin.reset_counts()
        pop.step(g_device, active=active)
        if t:  # the first step also builds the kernels
            assert standin.counts()["launches"] == 1
        for m, opt in enumerate(singles):
            opt.step(cp.asarray(g[m].copy()), check_finite=False, active=cp.asarray(np.array([m != 2], np.int32)))
    for m, opt in enumerate(singles):
        assert_bitwise(f"member {m}", pop.params[m].get(), opt.params.get())
    assert_bitwise("member 2 never ran", pop.params[2].get(), w0[2])


def test_members_of_a_rule_must_be_contiguous_rows():
    w = np.zeros((4, 8), np.float32)
    with pytest.raises(ValueError, match=r"rule 'sgd' must occupy one contiguous range of rows.*rows 0-1 and 3.*sort"):
        PopulationOptimizer(w, ["sgd", "sgd", "adam", "sgd"], [{}] * 4)


def test_bad_input_names_the_member_or_the_buffer():
    w = np.zeros((3, 8), np.float32)
    with pytest.raises(RuleError, match=r"member 2: hyper-parameter 'lr' of rule 'adam' must be finite and in"):
        PopulationOptimizer(w, ["adam"] * 3, [{}, {"lr": 0.1}, {"lr": -1.0}])
    with pytest.raises(RuleError, match=r"member 1: rule 'sgd' has no hyper-parameter 'gamma'"):
        PopulationOptimizer(w, ["sgd"] * 3, [{}, {"gamma": 0.9}, {}])
    with pytest.raises(UnknownRuleError, match=r"member 1: unknown optimiser 'adamw'"):
        PopulationOptimizer(w, ["adam", "adamw", "adam"], [{}] * 3)
    with pytest.raises(ValueError, match="3 members .* 2 rules and 3 hyper-parameter sets"):
        PopulationOptimizer(w, ["adam"] * 2, [{}] * 3)
    with pytest.raises(ValueError, match="2-D C-contiguous"):
        PopulationOptimizer(np.zeros(8, np.float32), ["adam"], [{}])
    with pytest.raises(TypeError, match="float32"):
        PopulationOptimizer(w.astype(np.float64), ["adam"] * 3, [{}] * 3)
    pop = PopulationOptimizer(w, ["adam"] * 3, [{}] * 3)
    with pytest.raises(ValueError, match=r"'g' has shape \(3, 7\) but the parameters have \(3, 8\)"):
        pop.step(np.zeros((3, 7), np.float32))
    with pytest.raises(TypeError, match="int32"):
        pop.step(np.zeros((3, 8), np.float32), active=np.ones(3, np.int64))
    with pytest.raises(ValueError, match="one per member"):
        pop.step(np.zeros((3, 8), np.float32), active=np.ones(4, np.int32))
    assert pop.t == 0  # nothing was counted


def test_member_state_dict_resumes_as_a_single_run(backend):
    """member(m) saves like a single-run Optimizer; an Optimizer over a copy
    of the member's row, loaded with member_state_dict(m), goes on bit for
    bit as the member does."""
    rng = np.random.default_rng(6)
    rules = ["adam", "adam", "nesterov"]
    hypers = [{"lr": 0.01}, {"lr": 0.02, "wd": 0.01}, {"lr": 0.05, "gamma": 0.8}]
    pop = PopulationOptimizer(backend.asarray(rng.standard_normal((3, 260)).astype(np.float32)), rules, hypers,
                              backend=backend)
    grads = rng.standard_normal((5, 3, 260)).astype(np.float32)
    for g in grads[:3]:
        pop.step(backend.asarray(g))
    resumed = []
    for m in range(3):
        member, sd = pop.member(m), pop.member_state_dict(m)
        assert set(sd) == {"rule", "hyper", "t", "state"} and sd["t"] == member.t == 3 and sd["rule"] == rules[m]
        assert sd["hyper"] == member.hyper == RULES[rules[m]].resolve(hypers[m])
        assert_bitwise(f"member {m} weights", backend.to_numpy(member.weights()), backend.to_numpy(pop.weights())[m])
        opt = Optimizer(rules[m], backend.asarray(backend.to_numpy(pop.params[m])), backend=backend)
        opt.load_state_dict({**sd, "state": {k: backend.to_numpy(v) for k, v in sd["state"].items()}})
        resumed.append(opt)
    for g in grads[3:]:
        pop.step(backend.asarray(g))
        for m, opt in enumerate(resumed):
            opt.step(backend.asarray(g[m].copy()), check_finite=False)
    for m, opt in enumerate(resumed):
        assert_bitwise(f"member {m} resumed", backend.to_numpy(pop.params[m]), backend.to_numpy(opt.params))
        for k, v in opt.state.items():
            assert_bitwise(f"member {m} resumed, {k}", backend.to_numpy(pop.member(m).state[k]), backend.to_numpy(v))


@pytest.mark.parametrize("name", ["adam", "nesterov"])
def test_masked_members_are_their_masked_single_runs(backend, name):
    """masks: each member's pruned weights and state stay exactly 0, the rest
    move as a single run with the member's mask (one launch per rule still)."""
    rng = np.random.default_rng(7)
    members, n = 3, 301
    w0 = rng.standard_normal((members, n)).astype(np.float32)
    masks = (rng.random((members, n)) > 0.3).astype(np.float32)
    hypers = member_hypers(RULES[name], members)
    pop = PopulationOptimizer(backend.asarray(w0), [name] * members, hypers, backend=backend,
                              masks=backend.asarray(masks))
    singles = [Optimizer(name, backend.asarray(w0[m].copy()), mask=backend.asarray(masks[m].copy()),
                         backend=backend, **hypers[m]) for m in range(members)]
    for g in rng.standard_normal((3, members, n)).astype(np.float32) + 1.0:
        pop.step(backend.asarray(g))
        for m, opt in enumerate(singles):
            opt.step(backend.asarray(g[m].copy()), check_finite=False)
    params, weights = backend.to_numpy(pop.params), backend.to_numpy(pop.weights())
    assert np.all(params[masks == 0] == 0) and np.all(weights[masks == 0] == 0)
    for m, opt in enumerate(singles):
        assert_bitwise(f"member {m}", params[m], backend.to_numpy(opt.params))
        assert_bitwise(f"member {m} weights()", weights[m], backend.to_numpy(opt.weights()))


def test_ten_thousand_members_on_numpy():
    """10,000 members of 8 parameters, each with its own lr, every other
    one active (the gather path): a quick step, each member its single run."""
    members, n = 10_000, 8
    rng = np.random.default_rng(8)
    w0 = rng.standard_normal((members, n)).astype(np.float32)
    hypers = [{"lr": lr, "wd": 0.01 * (m % 2)} for m, lr in enumerate(np.logspace(-4, -1, members))]
    pop = PopulationOptimizer(w0.copy(), ["adam"] * members, hypers)
    active = (np.arange(members) % 2 == 0).astype(np.int32)
    grads = rng.standard_normal((3, members, n)).astype(np.float32)
    pop.begin_epoch(3)
    for g in grads:
        pop.step(g, active=active)
    for m in (0, 1, 4999, 5000, 9998, 9999):
        opt = Optimizer("adam", w0[m].copy(), **hypers[m])
        for g in grads:
            opt.step(g[m].copy(), active=active[m : m + 1])
        assert_bitwise(f"member {m}", pop.params[m], opt.params)
        assert_bitwise(f"member {m} v", pop.member(m).state["v"], opt.state["v"])
    assert_bitwise("inactive members", pop.params[1::2], w0[1::2])


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_tilings_threads_and_numba_agree_bit_for_bit(name, monkeypatch):
    """The NumPy population kernel over tiles of several rows, over pieces of
    one row (rows longer than a chunk), split between threads (the byte
    threshold lowered), on views and on gathered rows; and the Numba
    population loop, serial and (for two rules) the prange build: the same
    bits everywhere."""
    monkeypatch.setattr("optbench.kernels.codegen.numpy_kernel.THREAD_MIN_BYTES", 0)
    rule = RULES[name]
    rng = np.random.default_rng(zlib.crc32(f"tiles/{name}".encode()))
    members, n = 7, 203
    hypers = [rule.resolve(h) for h in member_hypers(rule, members)]
    start = {b: rng.standard_normal((members, n)).astype(np.float32) for b in rule.buffers}
    for s in rule.state:
        start[s] = np.abs(start[s])  # running averages of squares are >= 0
    kernels = [NumpyKernel(rule, chunk=chunk, threads=threads)
               for chunk, threads in ((1 << 17, 1), (64, 1), (512, 1), (64, 2), (512, 3))]
    try:
        get_backend("numba")
    except BackendUnavailable:
        pass  # the NumPy tilings alone
    else:
        kernels.append(NumbaKernel(rule, parallel_min=1 << 40))
        if name in ("sgd", "adam"):
            kernels.append(NumbaKernel(rule, parallel_min=0))
    for active in (np.ones(members, np.int32), np.array([0, 1, 1, 0, 1, 0, 1], np.int32)):
        results = []
        for kernel in kernels:
            buffers = {b: a.copy() for b, a in start.items()}
            for t in (1, 2):
                kernel.population(buffers, scalar_table(rule, hypers, t, 1)[0], active)
            results.append(buffers)
        for b in rule.written:
            for kernel, r in zip(kernels[1:], results[1:]):
                assert_bitwise(f"{name} {b}: {type(kernel).__name__}", r[b], results[0][b])


# --- the CUDA population kernels, run from their exact source on the host ------

#: (n, members): every tail length after the float4 groups, one and several members.
HOST_CASES = [(0, 2), (1, 3), (2, 1), (3, 4), (5, 3), (1027, 4)]
#: Elements in front of the first row (cuda_host.FRONT): 4 keeps the vec4
#: kernel's rows 16-byte aligned (with ld % 4 == 0); 1 misaligns them.
FRONT, BACK = cuda_host.FRONT, cuda_host.BACK
RTOL = 4e-6


@pytest.fixture
def host(host_compiler):
    return host_compiler


def host_grids(members: int, n: int, vec: bool) -> list[tuple[tuple[int, int], int]]:
    """The CuPy path's grids for several GPUs, a grid with a block row per
    member, and grids with fewer rows than members (the kernel loops over
    the rest) and tiny blocks (every thread loops)."""
    grids = {population_geometry(members, n, vec, sm) for sm in (1, 4, 132)}
    grids |= {((1, members), 1), ((3, members), 7), ((2, 1), 32), ((1, max(1, members - 1)), 5)}
    return sorted(grids)


def assert_close(what: str, got: np.ndarray, want: np.ndarray) -> None:
    if want.size == 0:
        return
    want = want.astype(np.float64)
    tol = RTOL * (np.abs(want) + np.sqrt(np.mean(want**2)))
    bad = ~(np.abs(got.astype(np.float64) - want) <= tol)
    assert not bad.any(), f"{what}: {int(bad.sum())} of {want.size} elements off"


@pytest.mark.parametrize("n, members", HOST_CASES)
@pytest.mark.parametrize("kind", ("vec4", "scalar"))
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_population_kernel_on_the_host(host, name, kind, n, members):
    """Rows ld > n elements apart with random guard elements between and
    around them; member 1 left out of step 2. After each step every row is
    bit for bit what the same source's kernel makes of the member alone (a
    launch of one member), and close to the NumPy kernel and the float64
    reference; no guard element changes, nor does g."""
    rule = RULES[name]
    module = host.module(cuda_source(rule), dict.fromkeys(kernel_names(rule), cuda_host.rule_spec(rule)))
    pop_kernel = module.get_function(kernel_names(rule)[0 if kind == "vec4" else 1])
    single_kernel = module.get_function(kernel_names(rule)[1])
    hypers = [rule.resolve({"lr": max(rule.hyper["lr"], 0.1), **h}) for h in member_hypers(rule, members)]
    rng = np.random.default_rng(zlib.crc32(f"{name}/{kind}/{n}/{members}".encode()))
    w0 = rng.standard_normal((members, n)).astype(np.float32)
    grads = rng.standard_normal((3, members, n)).astype(np.float32)
    ld = (-(-n // 4) * 4 + 4) if kind == "vec4" else n + 3
    lo = FRONT[kind]
    rows = [slice(lo + m * ld, lo + m * ld + n) for m in range(members)]
    flags = [np.ones(members, np.int32) for _ in grads]
    if members > 1 and not takes_run(rule.scalars):
        # (a rule whose scalars sum over the run's steps, as schedule-free's
        # weights do, counts step t's sum whether or not the member took
        # every step; the reference counts the steps it was called for)
        flags[1][1] = 0

    for grid, threads in host_grids(members, n, kind == "vec4"):
        full = {b: cuda_host.aligned_random(rng, lo + members * ld + BACK) for b in rule.buffers}
        for m, r in enumerate(rows):
            full["w"][r] = w0[m]
            for s, start in rule.start_state(w0[m]).items():
                full[s][r] = start
        ptrs = [full[b][lo:] for b in rule.buffers]
        numpy_pop = {"w": w0.copy(), **rule.start_state(w0)}
        single = [{"w": w0[m].copy(), **rule.start_state(w0[m])} for m in range(members)]
        ref = [{"w": w0[m].astype(np.float64), **rule.start_state(w0[m].astype(np.float64))} for m in range(members)]
        ref_state = [rule.start_state(w0[m].astype(np.float64)) for m in range(members)]
        for t, (g, active) in enumerate(zip(grads, flags), start=1):
            table = scalar_table(rule, hypers, t, 1)[0]
            for m, r in enumerate(rows):
                full["g"][r] = g[m]
            before = {b: a.copy() for b, a in full.items()}
            pop_kernel(grid, threads, (*ptrs, active, table, members, n, ld))
            NumpyKernel(rule).population({**numpy_pop, "g": g}, table, active)
            case = f"{name} {kind} n={n} P={members} grid={grid}x{threads} step {t}"
            inside = np.zeros(full["w"].size, bool)
            for r in rows:
                inside[r] = True
            for b, a in full.items():
                outside = ~inside if b != "g" else np.ones(a.size, bool)
                assert_bitwise(f"{case}: {b} outside the rows", a[outside], before[b][outside])
            for m, r in enumerate(rows):
                if not active[m]:
                    for b in rule.written:
                        assert_bitwise(f"{case}: member {m} left out, {b}", full[b][r], before[b][r])
                    continue
                one = single[m]
                single_kernel((1, 1), 32, (one["w"], g[m], *(one[s] for s in rule.state), np.ones(1, np.int32),
                                           np.ascontiguousarray(table[m:m + 1]), 1, n, n))
                # the reference's state may hold more than the rule's (its carried scalars)
                w, ref_state[m] = reference.step(name, ref[m]["w"], g[m], ref_state[m], hypers[m], t)
                ref[m] = {"w": w, **ref_state[m]}
                for b in rule.written:
                    assert_bitwise(f"{case}: member {m} {b} vs the member alone", full[b][r], one[b])
                    assert_close(f"{case}: member {m} {b} vs NumPy", full[b][r], numpy_pop[b][m])
                    assert_close(f"{case}: member {m} {b} vs reference", full[b][r], ref[m][b])
