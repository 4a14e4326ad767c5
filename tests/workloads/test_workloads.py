"""The named workloads (optbench/suite/workloads, one module each): each is a
valid problem that trains, its names are stable, and deep-narrow really has
vanishing gradients."""

import dataclasses
import json
import math
import pickle

import pytest

from optbench.suite.data import datasets
from optbench.suite.protocol import tuning
from optbench.suite.training.config import ConfigError, RunConfig, check
from optbench.suite.training.loop import run
from optbench.suite.workloads import TARGET_FACTOR, WORKLOADS, Workload, get_workload

NAMES = ("mnist1d-mlp", "digits-mlp", "deep-narrow", "noisy-quadratic", "regression-mlp")


def test_the_registry_names_are_stable():
    assert tuple(WORKLOADS) == NAMES
    assert all(WORKLOADS[n].name == n for n in NAMES)
    assert get_workload("digits-mlp") is WORKLOADS["digits-mlp"]
    with pytest.raises(ValueError, match="allowed: mnist1d-mlp, digits-mlp"):
        get_workload("cifar")
    with pytest.raises(TypeError):
        WORKLOADS["mine"] = WORKLOADS["digits-mlp"]  # read-only


@pytest.mark.parametrize("name", NAMES)
def test_each_is_a_valid_run_and_its_data_loads(name):
    w = WORKLOADS[name]
    assert isinstance(w.hidden, tuple)
    config = RunConfig.of(w, optimizer="adam", lr=0.001, seed=0)  # as the protocol builds cells
    assert config.workload is w and config.batch_size == w.batch_size and config.init == w.init
    assert config == RunConfig.of(name, optimizer="adam", lr=0.001, seed=0)
    ds = w.load_data(seed=1)
    assert ds.name == w.dataset and ds.seed == 1 and ds.standardized == w.standardize
    batch, loss = check(config, ds)
    assert batch == w.batch_size and loss == w.loss
    assert w.steps(ds.n_train) == w.epochs * math.ceil(ds.n_train / w.batch_size)
    # A classifier is scored on its error, a regression (or the quadratic) on its loss.
    assert w.metric == ("val_loss" if ds.task == "regression" else "val_error")
    assert w.target is None or (w.target > 0 and w.target_note)
    assert json.loads(json.dumps(w.describe()))["config"]["hidden"] == list(w.hidden)
    assert pickle.loads(pickle.dumps(w)) == w
    model = w.build_model(ds, members=3)
    assert model.P == 3 and model.sizes == w.sizes(ds) and model.loss.name == w.loss_for(ds)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_each_trains_an_epoch_at_its_grid_centre_without_diverging(name, optimizer):
    w = WORKLOADS[name]
    lr = tuning.centre(optimizer, w.lr_scale(optimizer))
    records = run(RunConfig.of(w, optimizer=optimizer, lr=lr, seed=0, epochs=1))
    assert len(records) == 2 and not records[-1]["diverged"]
    assert records[-1]["lr_used"] == pytest.approx(lr)
    assert all(math.isfinite(records[-1][k]) for k in ("train_loss", "val_loss", "test_loss"))
    assert records[-1]["train_loss"] <= 1.01 * records[0]["train_loss"]


def test_deep_narrow_has_vanishing_gradients_at_init():
    w = WORKLOADS["deep-narrow"]
    depth = len(w.hidden) + 1
    first = run(RunConfig.of(w, optimizer="sgd", lr=0.1, epochs=1, layer_norms=True))[0]
    norms = [first[f"grad_norm_W{l}"] for l in range(1, depth + 1)]
    assert norms[0] < 1e-2 * norms[-1]
    assert all(a < b for a, b in zip(norms, norms[1:]))  # shrinking layer by layer towards the input
    # The same depth with ReLU and He init does not vanish: the test can tell.
    relu = run(RunConfig.of(w, optimizer="sgd", lr=0.1, epochs=1, layer_norms=True, activation="relu", init="he"))[0]
    assert relu["grad_norm_W1"] > 0.1 * relu[f"grad_norm_W{depth}"]


def test_the_quadratic_sgd_grid_is_centred_below_the_stability_limit():
    w = WORKLOADS["noisy-quadratic"]
    lam_max = datasets.quadratic_problem().eigenvalues.max()
    centre = tuning.centre("sgd", w.lr_scale("sgd"))
    assert centre < 2 / lam_max < tuning.log_grid(centre)[-1]  # the grid reaches past the stability limit
    assert w.hidden == () and w.standardize is False
    with pytest.raises(ConfigError, match="standardize"):
        RunConfig.of(w, optimizer="sgd", standardize=True)


def test_lr_scale_defaults_to_one_for_an_optimiser_a_workload_does_not_list():
    w = WORKLOADS["mnist1d-mlp"]
    assert w.lr_scale("lion") == w.default_lr_scale == 1.0
    assert w.lr_scale("rmsprop") == w.lr_scales["rmsprop"] != 1.0


def test_a_workload_refuses_bad_values_naming_them():
    base = dict(name="x", description="", dataset="digits", hidden=[8])
    assert Workload(**base).hidden == (8,)
    for change, message in ((dict(activation="swish"), "activation"), (dict(dataset="cifar"), "dataset"),
                            (dict(metric="val_acc"), "metric"), (dict(target=-1.0), "target"),
                            (dict(lr_scales={"sgd": 0}), "lr scale"), (dict(epochs=0), "epochs"),
                            (dict(hidden=[0]), "hidden"), (dict(standardize="no"), "standardize"),
                            (dict(dataset="regression", loss="squared", metric="val_error"), "needs class labels"),
                            (dict(dataset="quadratic"), "standardize")):
        with pytest.raises(ConfigError, match=message):
            Workload(**{**base, **change})
    w = Workload(**base)
    with pytest.raises(TypeError):
        w.lr_scales["sgd"] = 5  # read-only
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.epochs = 5
    filled = w.with_target(0.5, "measured")
    assert (filled.target, filled.target_note, w.target) == (0.5, "measured", None)
    assert TARGET_FACTOR == 1.05
