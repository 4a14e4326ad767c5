"""Learning-rate schedules (kernels/schedules.py): every kind against its
closed form at chosen steps, the boundaries included; bad descriptions
refused naming the key; an Optimizer with a schedule is, bit for bit, one
whose lr is changed by hand before each step (on every backend); a
population's members with their own schedules are bit for bit their single
runs, scalar tables included.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from optbench.kernels import RULES, Optimizer, PopulationOptimizer
from optbench.kernels.population import scalar_table
from optbench.kernels.rule import RunInfo, takes_run
from optbench.kernels.schedules import KINDS, Schedule, ScheduleError, as_schedule, scheduled

LECTURE = ("sgd", "momentum", "nesterov", "rmsprop", "adadelta", "adam")


def bits(a) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


# (description, total steps, {t: factor}) -- the factors written out from the
# module docstring's table, each by hand.
CLOSED_FORMS = [
    ({"kind": "constant"}, None, {1: 1.0, 2: 1.0, 10**6: 1.0}),
    ({"kind": "step", "gamma": 0.5, "step_size": 3}, None,
     {1: 1.0, 3: 1.0, 4: 0.5, 6: 0.5, 7: 0.25, 10: 0.125}),
    ({"kind": "step", "gamma": 0.1, "step_size": 1}, None, {1: 1.0, 2: 0.1, 3: 0.1 ** 2}),
    ({"kind": "exponential", "gamma": 0.9}, None, {1: 1.0, 2: 0.9, 3: 0.9 ** 2, 11: 0.9 ** 10}),
    ({"kind": "cosine"}, 11, {1: 1.0, 6: 0.5, 11: 0.0, 12: 0.0,
                              3: (1 + math.cos(math.pi * 2 / 10)) / 2}),
    ({"kind": "cosine", "min_factor": 0.1}, 5, {1: 1.0, 3: 0.1 + 0.9 * 0.5, 5: 0.1}),
    ({"kind": "cosine"}, 1, {1: 1.0}),  # a run of one step keeps lr
    ({"kind": "warmup_cosine", "warmup": 4}, 14,
     {1: 0.25, 2: 0.5, 4: 1.0, 9: 0.5, 14: 0.0, 20: 0.0, 5: (1 + math.cos(math.pi / 10)) / 2}),
    ({"kind": "warmup_cosine", "warmup": 1, "min_factor": 0.2}, 3, {1: 1.0, 2: 0.2 + 0.8 * 0.5, 3: 0.2}),
    ({"kind": "inverse_sqrt", "warmup": 4}, None, {1: 0.25, 3: 0.75, 4: 1.0, 16: 0.5, 400: 0.1}),
    ({"kind": "inverse_sqrt", "warmup": 1}, None, {1: 1.0, 4: 0.5, 100: 0.1}),
]


@pytest.mark.parametrize("spec, total, expected", CLOSED_FORMS, ids=[f"{c[0]['kind']}-{i}" for i, c in enumerate(CLOSED_FORMS)])
def test_every_kind_is_its_closed_form(spec, total, expected):
    schedule = Schedule.from_dict(spec, total)
    for t, want in expected.items():
        assert schedule.factor(t) == pytest.approx(want, rel=1e-15, abs=1e-15), t


def test_the_boundaries_are_exact():
    """Exactly 1 at the end of a warm-up, exactly min_factor at the last step,
    exactly 1 at the first step of every kind without a warm-up."""
    total = 1000
    for spec in ({"kind": "warmup_cosine", "warmup": 100, "min_factor": 0.05}, {"kind": "inverse_sqrt", "warmup": 100}):
        s = Schedule.from_dict(spec, total)
        assert s.factor(100) == 1.0 and s.factor(1) == 1 / 100
    for spec in ({"kind": "cosine", "min_factor": 0.05}, {"kind": "warmup_cosine", "warmup": 100, "min_factor": 0.05}):
        assert Schedule.from_dict(spec, total).factor(total) == 0.05
    for spec in ({"kind": "step", "gamma": 0.3, "step_size": 7}, {"kind": "exponential", "gamma": 0.3},
                 {"kind": "cosine"}):
        assert Schedule.from_dict(spec, total).factor(1) == 1.0
    # monotone where it should be
    s = Schedule.from_dict({"kind": "warmup_cosine", "warmup": 10}, 50)
    f = [s.factor(t) for t in range(1, 51)]
    assert all(a < b for a, b in zip(f[:10], f[1:10])) and all(a > b for a, b in zip(f[9:], f[10:]))


def test_a_schedule_is_a_frozen_hashable_value():
    a = Schedule.from_dict({"kind": "warmup_cosine", "warmup": 100})
    b = Schedule.from_dict({"warmup": 100, "min_factor": 0, "kind": "warmup_cosine"})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.as_dict() == {"kind": "warmup_cosine", "warmup": 100}  # defaults left out
    assert a.label == "warmup_cosine(warmup=100)"
    assert Schedule.from_dict({"kind": "step", "step_size": 30, "gamma": 0.5}).label == "step(gamma=0.5, step_size=30)"
    assert Schedule.from_dict("cosine").label == "cosine"
    assert a.bind(1000) != a and a.bind(1000).total == 1000 and a.total is None
    with pytest.raises(AttributeError):
        a.kind = "cosine"
    assert as_schedule(None) is None and as_schedule({"kind": "constant"}) is None
    assert Schedule.from_dict(a) is a


BAD = [
    ({"kind": "cosin"}, "schedule kind 'cosin' is not allowed; allowed: constant, step"),
    ({"warmup": 10}, "has no 'kind'"),
    ({"kind": 3}, "schedule kind 3 is not allowed"),
    ({"kind": "warmup_cosine"}, "schedule 'warmup_cosine' needs 'warmup'"),
    ({"kind": "step", "gamma": 0.5}, "schedule 'step' needs 'step_size'"),
    ({"kind": "exponential"}, "schedule 'exponential' needs 'gamma'"),
    ({"kind": "cosine", "warmup": 5}, "schedule 'cosine' has no parameter 'warmup'; allowed: min_factor"),
    ({"kind": "constant", "gamma": 0.5}, "schedule 'constant' has no parameter 'gamma'; allowed: none"),
    ({"kind": "step", "gamma": 1.5, "step_size": 3}, "schedule 'step': gamma must be a number in (0, 1], got 1.5"),
    ({"kind": "exponential", "gamma": 0.0}, "gamma must be a number in (0, 1]"),
    ({"kind": "exponential", "gamma": float("nan")}, "gamma must be a number in (0, 1]"),
    ({"kind": "exponential", "gamma": "0.9"}, "gamma must be a number in (0, 1], got '0.9'"),
    ({"kind": "cosine", "min_factor": -0.1}, "min_factor must be a number in [0, 1]"),
    ({"kind": "warmup_cosine", "warmup": 0}, "warmup must be a positive integer number of steps, got 0"),
    ({"kind": "inverse_sqrt", "warmup": 2.5}, "warmup must be a positive integer number of steps, got 2.5"),
    ({"kind": "inverse_sqrt", "warmup": True}, "warmup must be a positive integer number of steps, got True"),
    ({"kind": "step", "gamma": 0.5, "step_size": -1}, "step_size must be a positive integer"),
    ([1, 2], "a schedule is a table"),
]


@pytest.mark.parametrize("spec, fragment", BAD, ids=[str(b[0]) for b in BAD])
def test_a_bad_schedule_is_a_value_error_naming_the_key(spec, fragment):
    with pytest.raises(ScheduleError) as info:
        Schedule.from_dict(spec)
    assert isinstance(info.value, ValueError) and fragment in str(info.value)


def test_binding_and_stepping_are_checked():
    with pytest.raises(ScheduleError, match="warmup = 100 must be less than the run's 100 steps"):
        Schedule.from_dict({"kind": "warmup_cosine", "warmup": 100}, 100)
    with pytest.raises(ScheduleError, match="needs the run's total steps"):
        Schedule.from_dict("cosine").factor(1)
    with pytest.raises(ScheduleError, match="total steps must be a positive integer"):
        Schedule.from_dict("cosine").bind(0)
    with pytest.raises(ScheduleError, match="starts at 1"):
        Schedule.from_dict({"kind": "exponential", "gamma": 0.5}).factor(0)
    params = np.zeros(8, np.float32)
    with pytest.raises(ScheduleError, match="needs the run's total steps"):
        Optimizer("adam", params, schedule={"kind": "cosine"})
    with pytest.raises(ScheduleError, match="member 1: .*needs the run's total steps"):
        PopulationOptimizer(np.zeros((2, 8), np.float32), ["adam"] * 2, [{}] * 2,
                            schedules=[None, {"kind": "cosine"}])
    with pytest.raises(ValueError, match="2 schedules were given"):
        PopulationOptimizer(np.zeros((3, 8), np.float32), ["adam"] * 3, [{}] * 3, schedules=[None, None])


def test_scheduled_hyper_parameters():
    hp = {"lr": 0.1, "gamma": 0.9}
    assert scheduled(hp, None, 5) is hp
    s = Schedule.from_dict({"kind": "exponential", "gamma": 0.5})
    assert scheduled(hp, s, 3) == {"lr": 0.1 * 0.25, "gamma": 0.9} and hp["lr"] == 0.1


SCHEDULES = [
    Schedule.from_dict({"kind": "warmup_cosine", "warmup": 3, "min_factor": 0.1}, 9),
    Schedule.from_dict({"kind": "exponential", "gamma": 0.83}),
    Schedule.from_dict({"kind": "step", "gamma": 0.37, "step_size": 2}),
    Schedule.from_dict({"kind": "inverse_sqrt", "warmup": 2}),
    Schedule.from_dict({"kind": "cosine", "min_factor": 0.01}, 9),
]


def _hypers(name):
    lr = RULES[name].hyper["lr"]
    return {"lr": lr * 3, "l2": 1e-2, "wd": 0.3}  # decay so that 1 - lr wd follows the schedule


@pytest.mark.parametrize("name", [name for name, rule in RULES.items() if not takes_run(rule.scalars)])
def test_a_scheduled_optimizer_is_one_whose_lr_is_changed_by_hand(name, backend):
    """Each step: the same float32 bits as an Optimizer whose hyper["lr"] is
    set to lr x factor(t) before the step -- parameters, state and weights().
    (Not for a rule whose scalars read the run's lr history, as
    schedule-free's weights do: a schedule is what it sees there.)"""
    rng = np.random.default_rng(7)
    n = 261
    for schedule in SCHEDULES:
        w0 = rng.standard_normal(n).astype(np.float32)
        hp = _hypers(name)
        auto = Optimizer(name, backend.asarray(w0.copy()), backend=backend, schedule=schedule, **hp)
        hand = Optimizer(name, backend.asarray(w0.copy()), backend=backend, **hp)
        for t in range(1, 10):
            g = backend.asarray(rng.standard_normal(n).astype(np.float32))
            auto.step(g, check_finite=False)
            hand.hyper["lr"] = hp["lr"] * schedule.factor(t)
            hand.step(g, check_finite=False)
            assert np.array_equal(bits(backend.to_numpy(auto.params)), bits(backend.to_numpy(hand.params))), (schedule, t)
            for s in auto.state:
                assert np.array_equal(bits(backend.to_numpy(auto.state[s])), bits(backend.to_numpy(hand.state[s])))
            assert np.array_equal(bits(backend.to_numpy(auto.weights())), bits(backend.to_numpy(hand.weights())))
        assert auto.hyper["lr"] == hp["lr"]  # the base lr is kept; the step's lr is computed


def test_a_schedule_changes_the_update():
    g = np.ones(4, np.float32)
    a, b = Optimizer("sgd", np.zeros(4, np.float32), lr=0.1), Optimizer(
        "sgd", np.zeros(4, np.float32), lr=0.1, schedule={"kind": "inverse_sqrt", "warmup": 4})
    a.step(g)
    b.step(g)
    assert a.params[0] == np.float32(-0.1) and b.params[0] == np.float32(-0.1 / 4)


@pytest.mark.parametrize("name", LECTURE)
def test_state_dict_resumes_a_scheduled_run(name):
    """Saved at step 4 and loaded into a new Optimizer with the same
    schedule, the run goes on bit for bit (t carries the schedule's place)."""
    rng = np.random.default_rng(3)
    schedule = SCHEDULES[0]
    w0 = rng.standard_normal(64).astype(np.float32)
    grads = rng.standard_normal((9, 64)).astype(np.float32)
    whole = Optimizer(name, w0.copy(), schedule=schedule, **_hypers(name))
    first = Optimizer(name, w0.copy(), schedule=schedule, **_hypers(name))
    for g in grads[:4]:
        whole.step(g)
        first.step(g)
    sd = first.state_dict()
    assert sd["t"] == 4 and sd["schedule"] == {**schedule.as_dict(), "total": 9}
    second = Optimizer(name, first.params.copy(), schedule=schedule)
    second.load_state_dict(sd)
    for g in grads[4:]:
        whole.step(g)
        second.step(g)
    assert np.array_equal(bits(whole.params), bits(second.params))
    assert np.array_equal(bits(whole.weights()), bits(second.weights()))
    assert "schedule" not in Optimizer(name, w0.copy()).state_dict()  # as before without one


@pytest.mark.parametrize("name", RULES)
def test_scalar_tables_with_schedules_are_each_members_step_scalars(name):
    """Member m's row of the table for step t is, in float32 bits, the single
    run's step_scalars(hyper with lr x factor(t), t)."""
    rule = RULES[name]
    rng = np.random.default_rng(11)
    members = 40
    hypers = [rule.resolve({"lr": rule.hyper["lr"] * rng.uniform(0.5, 2), "wd": rng.uniform(0, 0.5)})
              for _ in range(members)]
    schedules = [SCHEDULES[m % len(SCHEDULES)] if m % 6 else None for m in range(members)]
    table = scalar_table(rule, hypers, 1, 9, schedules)
    for i in range(9):
        t = 1 + i
        for m in range(members):
            optimizer_hp = scheduled(hypers[m], schedules[m], t)
            run = RunInfo(hypers[m]["lr"]) if schedules[m] is None else RunInfo(hypers[m]["lr"], schedules[m].factor)
            want = rule.step_scalars(optimizer_hp, t, run)
            for j, s in enumerate(rule.scalar_names):
                assert table[i, m, j].view(np.uint32) == np.float32(want[s]).view(np.uint32), (s, t, m)
    without = scalar_table(rule, hypers, 1, 3)
    assert np.array_equal(bits(without), bits(scalar_table(rule, hypers, 1, 3, [None] * members)))


@pytest.mark.parametrize("name", RULES)
def test_population_members_with_schedules_are_their_single_runs(name, backend):
    """Members of one rule with different schedules (and one without), over
    steps from the prepared table and past it: every row, state and
    weights() bit for bit a single-run Optimizer with that schedule."""
    rng = np.random.default_rng(5)
    n, steps = 203, 9
    schedules = [None, *SCHEDULES]
    members = len(schedules)
    hypers = [{**_hypers(name), "lr": _hypers(name)["lr"] * (1 + 0.1 * m)} for m in range(members)]
    w0 = rng.standard_normal((members, n)).astype(np.float32)
    pop = PopulationOptimizer(backend.asarray(w0), [name] * members, hypers, backend=backend, schedules=schedules)
    singles = [Optimizer(name, backend.asarray(w0[m].copy()), backend=backend, schedule=schedules[m], **hypers[m])
               for m in range(members)]
    pop.begin_epoch(4)
    for t in range(1, steps + 1):
        if t == 6:
            pop.begin_epoch(2)
        g = rng.standard_normal((members, n)).astype(np.float32)
        pop.step(backend.asarray(g))
        for m, opt in enumerate(singles):
            opt.step(backend.asarray(g[m].copy()), check_finite=False)
        params, weights = backend.to_numpy(pop.params), backend.to_numpy(pop.weights())
        for m, opt in enumerate(singles):
            assert np.array_equal(bits(params[m]), bits(backend.to_numpy(opt.params))), (m, t)
            for s in opt.state:
                assert np.array_equal(bits(backend.to_numpy(pop.member(m).state[s])), bits(backend.to_numpy(opt.state[s])))
            assert np.array_equal(bits(weights[m]), bits(backend.to_numpy(opt.weights()))), (m, t)
    for m, opt in enumerate(singles):
        member_sd, single_sd = pop.member_state_dict(m), opt.state_dict()
        assert member_sd.get("schedule") == single_sd.get("schedule") and member_sd["t"] == single_sd["t"]
        assert pop.member(m).schedule == (None if schedules[m] is None else schedules[m])


def test_every_kind_has_a_closed_form_test():
    assert {c[0]["kind"] for c in CLOSED_FORMS} == set(KINDS)
