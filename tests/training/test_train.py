"""The training loop: every optimiser x init x activation trains; records,
stopping rules, divergence, determinism, checkpoints and bad configs."""

import dataclasses
import math

import pytest

# The lent GPU machine lacks these and runs only the gpu-marked tests.
pytest.importorskip("sklearn")

from optbench.kernels import RULES
from optbench.suite.nn.activations import ACTIVATIONS
from optbench.suite.nn.inits import INITS
from optbench.suite.data.datasets import load
from optbench.suite.training.config import RunConfig
from optbench.suite.training.loop import run, without_timing

N_TRAIN = load("digits").n_train

SMALL = dict(dataset="digits", hidden=(24,), epochs=2, batch_size=128)


@pytest.mark.parametrize("optimizer", RULES)
@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_optimiser_init_and_activation_trains(optimizer, init, activation):
    # each rule at its own tuning centre, the lr a small MLP usually wants
    records = run(RunConfig.of(**SMALL, optimizer=optimizer, init=init, activation=activation,
                               lr=RULES[optimizer].tuning_centre))
    assert [r["epoch"] for r in records] == [0, 1, 2]
    last = records[-1]
    assert not last["diverged"] and last["stop_reason"] == "epochs"
    assert last["train_loss"] < records[0]["train_loss"]
    for key in ("train_loss", "val_loss", "test_loss", "train_acc", "val_acc", "grad_norm"):
        assert math.isfinite(last[key]), key
    assert last["examples_seen"] == 2 * N_TRAIN


def test_records_are_bit_identical_for_the_same_seed():
    cfg = RunConfig.of(**SMALL, optimizer="adam", dropout=0.2, order="shuffle", seed=5)
    a, b = without_timing(run(cfg)), without_timing(run(cfg))
    assert repr(a) == repr(b)  # repr: every float to the last bit, and NaN == NaN
    c = without_timing(run(dataclasses.replace(cfg, seed=6)))
    assert repr(a) != repr(c)


def test_full_batch_and_sorted_order_and_regression():
    full = run(RunConfig.of(**{**SMALL, "batch_size": "full"}, lr=0.01))
    assert full[-1]["step"] == 2  # one step per epoch: batch gradient descent
    srt = run(RunConfig.of(**SMALL, order="sorted", lr=0.003))
    assert not srt[-1]["diverged"]
    reg = run(RunConfig.of(dataset="regression", hidden=(16,), epochs=3, lr=0.01))
    assert reg[-1]["train_acc"] is None and reg[-1]["train_loss"] < reg[0]["train_loss"]


def test_divergence_is_recorded_not_raised():
    records = run(RunConfig.of(**{**SMALL, "epochs": 5}, optimizer="sgd", lr=1e8))
    assert records[-1]["diverged"] and records[-1]["stop_reason"] == "diverged"
    assert len(records) < 7


def test_stops_when_the_criterion_stabilises():
    records = run(RunConfig.of(**{**SMALL, "epochs": 30}, optimizer="sgd", lr=1e-4, tol=0.05, patience=2))
    assert records[-1]["stop_reason"] in ("criterion_stable", "weights_stable")
    assert len(records) < 31


def test_checkpoint_round_trip_and_wrong_shape(tmp_path):
    path = tmp_path / "net.npz"
    first = run(RunConfig.of(**SMALL, checkpoint=str(path)))
    again = run(RunConfig.of(**{**SMALL, "epochs": 1}, init="checkpoint", init_from=str(path)))
    assert again[0]["train_loss"] == pytest.approx(first[-1]["train_loss"], rel=1e-6)
    with pytest.raises(ValueError, match=r"has layer sizes \[64, 24, 10\], this network \[64, 32, 10\]"):
        run(RunConfig.of(**{**SMALL, "hidden": (32,)}, init="checkpoint", init_from=str(path)))
    with pytest.raises(ValueError, match="does not exist"):
        run(RunConfig.of(**SMALL, init="checkpoint", init_from=str(tmp_path / "missing.npz")))


@pytest.mark.parametrize("change, message", [
    ({"optimizer": "lbfgs"}, "unknown optimiser 'lbfgs'.*adam"),
    ({"dataset": "cifar"}, "dataset = 'cifar' is not allowed"),
    ({"init": "zeros"}, "init = 'zeros' is not allowed"),
    ({"activation": "gelu"}, "activation = 'gelu' is not allowed"),
    ({"order": "random"}, "order = 'random' is not allowed"),
    ({"batch_size": 0}, 'batch_size must be a positive integer or "full", got 0'),
    ({"batch_size": 5000}, f"batch_size 5000 is larger than the training set of 'digits' \\({N_TRAIN} objects\\)"),
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"dropout": 1.5}, r"dropout must be a probability in \[0, 1\)"),
    ({"loss": "mae"}, "loss = 'mae' is not allowed"),
    ({"hidden": (0,)}, "hidden must be a list of positive integers"),
    ({"lr": -0.1}, r"'lr' of rule 'adam' must be finite and in \(0, inf\), got -0.1"),
    ({"lr": float("inf")}, "'lr' of rule 'adam' must be finite"),
    ({"hyper": {"gamma": 1.0}}, r"'gamma' of rule 'adam' must be finite and in \[0, 1\), got 1.0"),
    ({"hyper": {"eps": 0.0}}, "'eps' of rule 'adam' must be finite and in \\(0, inf\\)"),
    ({"standardize": "false"}, "standardize must be true or false"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"wd": float("nan")}, "'wd' of rule 'adam' must be finite"),
])
def test_bad_configs_get_clear_errors(change, message):
    """A config checks itself when made (names, types, ranges), or at the
    start of run() where the data set decides (a batch larger than it)."""
    with pytest.raises(ValueError, match=message):
        run(RunConfig.of(**{**SMALL, **change}))


def test_cross_entropy_on_a_regression_set_is_an_error():
    with pytest.raises(ValueError, match="needs class labels"):
        run(RunConfig.of(dataset="regression", hidden=(8,), epochs=1, loss="cross_entropy"))


def test_nesterov_is_evaluated_at_its_true_weights():
    """Its epoch-0 record equals that of any rule with the same init: u = w at v = 0."""
    a = run(RunConfig.of(**SMALL, optimizer="nesterov"))[0]
    b = run(RunConfig.of(**SMALL, optimizer="sgd"))[0]
    assert a["train_loss"] == b["train_loss"]


def test_a_diverged_run_has_no_accuracy():
    last = run(RunConfig.of(**{**SMALL, "epochs": 5}, optimizer="sgd", lr=1e8))[-1]
    assert last["diverged"] and math.isnan(last["val_acc"]) and math.isnan(last["train_acc"])


def test_numba_backend_trains_like_numpy():
    pytest.importorskip("numba")
    a = run(RunConfig.of(**SMALL, optimizer="adam", backend="numpy"))
    b = run(RunConfig.of(**SMALL, optimizer="adam", backend="numba"))
    assert b[-1]["backend"] == "numba"
    assert b[-1]["train_loss"] == pytest.approx(a[-1]["train_loss"], rel=1e-5)


def test_the_schema_is_the_run_config():
    """Each part of a run holds exactly its fields of the one schema, and a
    run's settings by name rebuild the same run (the loader, the cell key,
    the results' columns and the reports all read those names)."""
    from optbench.suite.schema import COLUMNS, FIELDS, part
    from optbench.suite.studies.spec import cell_key

    config = RunConfig.of(dataset="mnist1d", hidden=(32,), optimizer="adam", lr=3e-3, hyper={"alpha": 0.99},
                          batch_size=32, wd=1e-4, dropout=0.1, seed=7, schedule={"kind": "cosine"})
    assert set(config.workload.settings()) == set(part("workload"))
    assert set(config.optimizer.settings()) == set(part("optimizer"))
    run_fields = {f.name for f in dataclasses.fields(RunConfig)} - {"workload", "optimizer"}
    assert run_fields == set(part("run"))
    again = RunConfig.of(**config.settings())
    assert again.settings() == config.settings() and cell_key(again) == cell_key(config)
    assert {f.name for f in FIELDS} <= set(COLUMNS)
