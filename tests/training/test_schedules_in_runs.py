"""Schedules and the decay mask in runs, populations and studies.

A run with a schedule is, record for record, a run whose lr is changed by
hand before each step; its schedule is bound to epochs x steps per epoch; a
population member with a schedule or ``decay = "weights"`` is its single
run; ``decay = "weights"`` hands the optimiser the mask of the network's
weight matrices. RunConfig keys: the defaults (constant lr, decay on all)
hash as before, so every committed cell of results/optimisers-grid is still
recognised as complete. Studies: a schedule in [fixed] and as a [grid]
axis; bad schedules refused before anything trains.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("sklearn")  # the lent GPU machine runs only the gpu-marked tests

import optbench.suite.training.loop as loop
from optbench.kernels import FlatBuffer, PopulationOptimizer
from optbench.kernels.schedules import Schedule
from optbench.suite.data.datasets import load
from optbench.suite.nn.activations import get_activation
from optbench.suite.nn.mlp import mlp_layout
from optbench.suite.studies import store
from optbench.suite.studies.spec import StudyError, cell_key, check_study, load_study, parse_study
from optbench.suite.training.config import ConfigError, RunConfig, check, run_schedule, steps_per_epoch
from records import assert_records_close  # noqa: E402 (tests/ is on sys.path)
from optbench.suite.training.loop import run, without_timing
from optbench.suite.training.loop import run_population

ROOT = Path(__file__).resolve().parents[2]
SMALL = dict(dataset="digits", hidden=(16,), epochs=3, batch_size=128)
N_TRAIN = load("digits").n_train
STEPS = 3 * steps_per_epoch(128, N_TRAIN)


def test_defaults_keep_the_cell_keys():
    """A constant schedule (however written) and decay on all are left out of
    as_dict, so a config hashes as it did before these settings existed."""
    base = RunConfig.of(**SMALL)
    for same in (RunConfig.of(**SMALL, schedule=None), RunConfig.of(**SMALL, schedule={"kind": "constant"}),
                 RunConfig.of(**SMALL, schedule="constant"), RunConfig.of(**SMALL, decay="all")):
        assert same.as_dict() == base.as_dict() and cell_key(same) == cell_key(base)
    assert "schedule" not in base.as_dict() and "decay" not in base.as_dict()
    cosine = RunConfig.of(**SMALL, schedule={"kind": "cosine", "min_factor": 0.0})
    assert cosine.as_dict()["schedule"] == {"kind": "cosine"} and cell_key(cosine) != cell_key(base)
    assert cell_key(cosine) == cell_key(RunConfig.of(**SMALL, schedule={"kind": "cosine"}))
    assert cell_key(RunConfig.of(**SMALL, decay="weights")) != cell_key(base)
    json.dumps(cosine.as_dict())  # a checkpoint stores it as JSON
    assert isinstance(cosine.optimizer.schedule, Schedule) and cosine.optimizer.schedule.total is None


def test_every_committed_grid_cell_is_still_complete():
    """The committed results/optimisers-grid cells are keyed by cell_key: the
    study loaded now must find every one of its cells complete (nothing to rerun)."""
    results = ROOT / "results" / "optimisers-grid"
    meta = json.loads((results / store.METADATA).read_text())
    study = load_study("optimisers-grid", backend=meta["backend"])
    keys = {c.key for c in study.cells}
    assert keys == set(meta["cells"])
    assert keys <= store.completed_cells(results), sorted(keys - store.completed_cells(results))[:5]


def test_a_scheduled_run_is_a_run_whose_lr_is_changed_by_hand(monkeypatch):
    """Records bit for bit (timing aside): the schedule, bound to epochs x
    steps per epoch, against a constant-lr Optimizer whose lr is set to
    lr x factor(t) before each step."""
    schedule = {"kind": "warmup_cosine", "warmup": 5, "min_factor": 0.1}
    config = RunConfig.of(**SMALL, optimizer="adam", lr=0.01, wd=0.1, schedule=schedule)
    constant_config = dataclasses.replace(config, optimizer=dataclasses.replace(config.optimizer, schedule=None))
    auto = without_timing(run(config))
    constant = without_timing(run(constant_config))
    assert auto[-1]["train_loss"] != constant[-1]["train_loss"]
    bound = Schedule.from_dict(schedule, STEPS)
    seen = []

    class ByHand(PopulationOptimizer):
        def __init__(self, *args, schedules=None, **kw):
            assert schedules == [None]  # a constant lr, changed by hand below
            super().__init__(*args, **kw)
            self.base = self.hypers[0]["lr"]

        def step(self, grads, **kw):
            lr = self.base * bound.factor(self.t + 1)
            self.set_hypers(0, {**self.hypers[0], "lr": lr})
            seen.append(lr)
            super().step(grads, **kw)

    monkeypatch.setattr(loop, "PopulationOptimizer", ByHand)
    hand = without_timing(run(constant_config))
    assert len(seen) == STEPS and seen[0] == 0.01 / 5 and seen[-1] == pytest.approx(0.001)
    assert_records_close(auto, hand, rtol=0)  # bit for bit (NaN equal to NaN)
    assert auto[-1]["lr_used"] == 0.01


def test_run_schedule_binds_to_the_runs_total_steps(monkeypatch):
    ds = load("digits")
    config = RunConfig.of(**SMALL, schedule={"kind": "cosine"})
    assert run_schedule(config, 128, ds.n_train) == Schedule.from_dict("cosine", STEPS)
    handed = []

    class Spy(PopulationOptimizer):
        def __init__(self, *args, schedules=None, **kw):
            handed.extend(schedules)
            super().__init__(*args, schedules=schedules, **kw)

    monkeypatch.setattr(loop, "PopulationOptimizer", Spy)
    run(config)
    assert handed == [Schedule.from_dict("cosine", STEPS)]  # bound to epochs x steps per epoch
    assert run_schedule(RunConfig.of(**SMALL), 128, ds.n_train) is None
    too_long = RunConfig.of(**SMALL, schedule={"kind": "warmup_cosine", "warmup": STEPS})
    with pytest.raises(ConfigError, match=f"warmup = {STEPS} must be less than the run's {STEPS} steps"):
        check(too_long, ds)
    check(RunConfig.of(**SMALL, schedule={"kind": "warmup_cosine", "warmup": STEPS - 1}), ds)


def test_decay_weights_hands_over_the_mask_of_the_weight_matrices(monkeypatch):
    got = {}

    class Spy(PopulationOptimizer):
        def __init__(self, params, *args, decay_masks=None, **kw):
            got["masks"] = decay_masks
            super().__init__(params, *args, decay_masks=decay_masks, **kw)

    monkeypatch.setattr(loop, "PopulationOptimizer", Spy)
    config = RunConfig.of(**{**SMALL, "epochs": 1, "hidden": (8, 6)}, activation="prelu", wd=0.1, decay="weights")
    run(config)
    layout = mlp_layout([64, 8, 6, 10], get_activation("prelu"))
    mask = FlatBuffer(layout, got["masks"][0])
    names = [s.name for s in mask.layout]
    assert {"W1", "b1", "alpha1", "W3", "b3"} <= set(names)
    for name in names:
        assert (mask[name] == (1.0 if name.startswith("W") else 0.0)).all(), name
    run(RunConfig.of(**{**SMALL, "epochs": 1}, wd=0.1))
    assert got["masks"] is None  # decay on all: no mask, the unmasked kernel


def test_decay_weights_changes_only_what_decays():
    """With l2 = wd = 0 the setting changes nothing; with decay it does."""
    base = dict(SMALL, optimizer="adam", lr=3e-3, activation="prelu")
    plain = run(RunConfig.of(**base))
    assert_records_close(run(RunConfig.of(**base, decay="weights")), plain, rtol=0)
    every = run(RunConfig.of(**base, wd=0.5))[-1]["train_loss"]
    weights = run(RunConfig.of(**base, wd=0.5, decay="weights"))[-1]["train_loss"]
    assert len({every, weights, plain[-1]["train_loss"]}) == 3



MEMBERS = [
    dict(optimizer="sgd", lr=0.1, seed=0, schedule={"kind": "step", "gamma": 0.5, "step_size": 10}),
    dict(optimizer="nesterov", lr=0.05, seed=1, wd=1e-2, schedule={"kind": "cosine"}, decay="weights"),
    dict(optimizer="nesterov", lr=0.05, seed=1, wd=1e-2),
    dict(optimizer="adam", lr=3e-3, seed=2, wd=0.1, schedule={"kind": "warmup_cosine", "warmup": 4}),
    dict(optimizer="adam", lr=3e-3, seed=0, l2=1e-3, decay="weights",
         schedule={"kind": "inverse_sqrt", "warmup": 3}),
    dict(optimizer="adam", lr=1e-3, seed=0),
]


def test_population_members_with_schedules_and_decay_masks_are_their_single_runs(backend):
    """Members of one population that differ in schedule and decay (neither
    is shared): each member's records are its single run's, as for any
    member (float32 rounding of the batched products apart)."""
    configs = [RunConfig.of(**{**SMALL, "hidden": (12,)}, activation="prelu", backend=backend.name, **m)
               for m in MEMBERS]
    for config, records in zip(configs, run_population(configs)):
        assert_records_close(run(config), records)


def test_a_population_of_scheduled_members_is_bit_for_bit_where_the_products_are():
    """The optimiser's part is exact: with the full batch (one product per
    step, summed alike), a member with a schedule and a decay mask ends with
    its single run's losses bit for bit (the gradient norm, a diagnostic, is
    summed another way)."""
    configs = [RunConfig.of(**{**SMALL, "batch_size": "full", "epochs": 4}, optimizer="adam", lr=1e-2, wd=0.1,
                         seed=s, schedule=sched, decay=d, backend="numpy")
               for s, sched, d in ((0, {"kind": "cosine"}, "weights"), (1, {"kind": "exponential", "gamma": 0.7}, "all"))]
    pop = run_population(configs)
    for config, records in zip(configs, pop):
        single = run(config)
        for a, b in zip(single, records):
            for k in ("train_loss", "val_loss", "test_loss", "train_acc", "val_acc"):
                assert a[k] == b[k], (k, a["epoch"])


STUDY = """
[study]
name = "sched"
[fixed]
dataset = "digits"
hidden = [8]
epochs = 2
batch_size = 256
{fixed}
[grid]
optimizer = ["sgd", "adam"]
{grid}
"""


def _parse(tmp_path, fixed="", grid=""):
    text = STUDY.format(fixed=fixed, grid=grid)
    return parse_study(text, tmp_path / "sched.toml", backend="numpy")


def test_a_study_sets_a_schedule_in_fixed_or_varies_it_in_grid(tmp_path):
    fixed = _parse(tmp_path, fixed='schedule = {kind = "warmup_cosine", warmup = 3}')
    assert [c.config.optimizer.schedule.label for c in fixed.cells] == ["warmup_cosine(warmup=3)"] * 2
    assert "schedule=warmup_cosine(warmup=3)" in fixed.cells[0].label
    grid = _parse(tmp_path, grid='schedule = [{kind = "constant"}, {kind = "cosine", min_factor = 0.1}, '
                                 '{kind = "step", gamma = 0.5, step_size = 2}]\ndecay = ["all", "weights"]')
    assert len(grid.cells) == 2 * 3 * 2
    specs = [c.config.optimizer for c in grid.cells]
    labels = {(o.name, None if o.schedule is None else o.schedule.label, o.decay) for o in specs}
    assert ("adam", "cosine(min_factor=0.1)", "weights") in labels and ("sgd", None, "all") in labels
    plain = _parse(tmp_path)
    constant = {c.key for c in grid.cells if c.config.optimizer.schedule is None and c.config.optimizer.decay == "all"}
    assert constant == {c.key for c in plain.cells}  # the constant cells are the study's old cells


@pytest.mark.parametrize("fixed, fragment", [
    ('schedule = {kind = "cosin"}', "schedule kind 'cosin' is not allowed"),
    ('schedule = {kind = "step", gamma = 0.5}', "schedule 'step' needs 'step_size'"),
    ('schedule = {kind = "exponential", gamma = 2.0}', "gamma must be a number in (0, 1]"),
    ('schedule = {kind = "cosine", warmup = 2}', "schedule 'cosine' has no parameter 'warmup'"),
    ('schedule = "sometimes"', "schedule kind 'sometimes' is not allowed"),
    ('decay = "biases"', "decay = 'biases' is not allowed; allowed: all, weights"),
])
def test_bad_schedules_are_refused_when_the_study_loads(tmp_path, fixed, fragment):
    with pytest.raises(StudyError) as info:
        _parse(tmp_path, fixed=fixed)
    assert fragment in str(info.value) and "sched.toml" in str(info.value)


def test_a_warmup_longer_than_the_run_is_refused_before_training(tmp_path):
    """Total steps depend on the data set (5 per epoch here): found by
    check_study, which runs before any cell trains."""
    study = _parse(tmp_path, grid='schedule = [{kind = "warmup_cosine", warmup = 3}, '
                                  '{kind = "warmup_cosine", warmup = 10}]')
    with pytest.raises(StudyError, match=r"warmup = 10 must be less than the run's 10 steps.*nothing was trained"):
        check_study(study)
