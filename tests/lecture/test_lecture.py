"""The lecture's experiments (suite.lecture): study files, the 2-D optimiser
paths, per-layer gradient norms and variances at initialisation, the opt-in
layer_norms of the training loop, and a quick run_lecture that writes a
report covering all twelve sections of the lecture."""

import dataclasses
import json
import re

import numpy as np
import pytest

from optbench.kernels.rules import LECTURE
from optbench.suite.lecture import experiments, measures, running, sections, stored
from optbench.suite.lecture import report as lecture_report
from optbench.suite.nn.inits import INITS, init_layers
from optbench.suite.nn.mlp import MLP
from optbench.suite.studies.spec import builtin_studies, cell_key, load_study
from optbench.suite.training.config import RunConfig
from optbench.suite.training.loop import run, without_timing

LECTURE_FILES = sorted(n for n in builtin_studies() if n.startswith("lecture-"))


# --- the study files ---------------------------------------------------------------- #


def test_every_lecture_study_is_run_by_run_lecture():
    assert set(LECTURE_FILES) == set(stored.STUDIES)


@pytest.mark.parametrize("name", LECTURE_FILES)
def test_lecture_study_loads_and_expands(name):
    study = load_study(name, backend="numpy")
    assert study.name == name and study.description
    assert len(study.cells) >= 5
    assert len({c.key for c in study.cells}) == len(study.cells)
    quick = running.quick_study(study)
    assert 0 < len(quick.cells) <= len(study.cells)
    assert all(c.config.workload.epochs == 1 and max(c.config.workload.hidden) <= 16 for c in quick.cells)
    assert all(c.key == cell_key(c.config) for c in quick.cells)


def test_the_studies_vary_what_their_sections_test():
    axes = {name: {f: {c.config.settings()[f] for c in load_study(name).cells}
                   for f in ("batch_size", "order", "standardize", "activation", "init", "dropout_mode",
                             "l2", "optimizer")} for name in LECTURE_FILES}
    assert axes["lecture-batch"]["batch_size"] == {16, 256, "full"}
    assert axes["lecture-shuffle"]["order"] == {"shuffle", "fixed", "sorted"}
    assert axes["lecture-standardize"]["standardize"] == {True, False}
    assert axes["lecture-activations"]["activation"] == {"sigmoid", "tanh", "relu", "prelu"}
    assert all(c.config.layer_norms for c in load_study("lecture-activations").cells)
    assert axes["lecture-init"]["init"] == set(INITS)
    assert axes["lecture-dropout"]["dropout_mode"] == {"classic", "inverted"}
    assert len(axes["lecture-l2"]["l2"]) >= 2 and 0.0 in axes["lecture-l2"]["l2"]
    assert axes["lecture-optimizers"]["optimizer"] == set(LECTURE)


# --- section 12: optimisers on 2-D test functions ------------------------------------ #

#: An lr per optimiser at which it must get the badly scaled quadratic (f = 36
#: at the start) below F_BOUND in 200 steps; AdaDelta's effective step starts
#: at about eps and grows, so it needs a large eta here.
QUADRATIC_LR = {"sgd": 0.03, "momentum": 0.1, "nesterov": 0.1, "rmsprop": 0.03, "adadelta": 10.0, "adam": 0.3}
F_BOUND = 1e-2


@pytest.mark.parametrize("name", LECTURE)
def test_each_optimiser_converges_on_the_quadratic_and_records_its_path(name):
    fn = experiments.TEST_FUNCTIONS["quadratic"]
    path = experiments.optimizer_path(name, "quadratic", QUADRATIC_LR[name], steps=200)
    assert path.shape == (201, 2) and np.all(np.isfinite(path))
    assert np.allclose(path[0], fn.start)
    assert fn.f(path[-1]) < F_BOUND < fn.f(path[0])
    assert np.abs(path[-1]).max() < 0.1  # near the minimum at the origin


def test_nesterov_path_is_the_true_weights_not_the_look_ahead_point():
    # w = u + lr gamma v: on the way down v != 0, so the recorded point is not the buffer.
    path = experiments.optimizer_path("nesterov", "quadratic", 0.1, steps=5)
    from optbench.kernels import Optimizer

    u = np.array(experiments.TEST_FUNCTIONS["quadratic"].start, dtype=np.float32)
    opt = Optimizer("nesterov", u, lr=0.1)
    for _ in range(5):
        opt.step(experiments.TEST_FUNCTIONS["quadratic"].grad(u.astype(np.float64)).astype(np.float32))
    assert np.allclose(path[-1], opt.weights(), atol=1e-6)
    assert not np.allclose(path[-1], u, atol=1e-3)


def test_a_diverging_path_is_cut_and_loses_the_tuning():
    path = experiments.optimizer_path("sgd", "quadratic", lr=1.0, steps=200)  # stable only below 2/25
    assert len(path) < 201
    assert experiments.path_score("quadratic", path, 200) == (True, float("inf"))
    lr, best = experiments.tune_path("sgd", "quadratic", lrs=(1.0, 0.03), steps=200)
    assert lr == 0.03 and len(best) == 201


def test_trajectory_table_has_every_optimiser_on_both_functions():
    table = experiments.trajectory_table(lrs=(0.01, 0.1), steps={"quadratic": 10, "rosenbrock": 10})
    assert set(table["optimizer"]) == set(LECTURE)
    assert set(table["function"]) == {"quadratic", "rosenbrock"}
    assert table.groupby(["function", "optimizer"])["step"].max().max() == 10


# --- sections 8 and 9: per-layer gradients and variances at initialisation ---------- #


def _deep_net(activation, init, depth=8, width=32, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [20, *[width] * depth, 5]
    model = MLP(sizes, activation, "cross_entropy").member()
    model.set_layers(init_layers(init, sizes, rng))
    X = rng.normal(size=(256, 20)).astype(np.float32)
    y = rng.integers(0, 5, 256)
    return model, X, y


def test_sigmoid_gradients_vanish_in_the_first_layers_of_a_deep_net():
    stats = experiments.layer_statistics(*_deep_net("sigmoid", "xavier"))
    assert list(stats["layer"]) == list(range(1, 10))
    norms = stats["grad_norm"].to_numpy()
    assert norms[0] < 1e-3 * norms[-1]  # the lecture's "network paralysis"
    assert np.all(np.diff(norms[:-1]) > 0)  # shrinking layer by layer on the way back


def test_relu_with_he_keeps_gradients_and_outputs_on_one_scale():
    stats = experiments.layer_statistics(*_deep_net("relu", "he"))
    norms = stats["grad_norm"].to_numpy()
    assert 0.1 < norms[0] / norms[-1] < 10
    out = stats["out_var"].to_numpy()[:-1]  # hidden layers
    assert 0.2 < out[-1] / out[0] < 5


def test_rule_one_shrinks_the_output_variance_he_keeps_it():
    stats = experiments.init_statistics(hidden=(32,) * 5, activations=("relu",), inits=("uniform", "he"),
                                    seeds=(0,), n_objects=300)
    ratios = measures.variance_ratios(stats).set_index("init")["out_ratio"]
    assert ratios["uniform"] < 0.05  # Var w = 1/(3h): about 1/6 per ReLU layer
    assert 0.3 < ratios["he"] < 3


def test_gradient_check_passes_and_would_catch_a_wrong_backward(monkeypatch):
    assert experiments.gradient_check("tanh") < 1e-6
    original = MLP.backward

    def wrong(self, cache, grad_z):
        original(self, cache, grad_z)
        self.grad_tensor("W1")[...] *= 1.5

    monkeypatch.setattr(MLP, "backward", wrong)
    assert experiments.gradient_check("tanh") > 1e-2


# --- the opt-in per-layer gradient norms of the training loop ------------------------- #


def test_layer_norms_add_columns_and_change_nothing_else():
    base = RunConfig.of(dataset="digits", hidden=(12, 12), epochs=2, batch_size=128, optimizer="sgd",
                     lr=0.1, dropout=0.2)
    on = dataclasses.replace(base, layer_norms=True)
    a, b = without_timing(run(base)), without_timing(run(on))
    for ra, rb in zip(a, b):
        extra = set(rb) - set(ra)
        assert extra == {"grad_norm_W1", "grad_norm_W2", "grad_norm_W3"}
        assert repr({k: rb[k] for k in ra}) == repr(ra)  # bit-identical training
        assert all(rb[k] > 0 for k in extra)
    # Off, the field is left out of the config's dict: cell keys made before it existed hold.
    assert "layer_norms" not in base.as_dict() and on.as_dict()["layer_norms"] is True
    assert cell_key(base) != cell_key(on)


def test_layer_norms_show_sigmoid_paralysis_in_a_run():
    cfg = RunConfig.of(dataset="digits", hidden=(16,) * 6, activation="sigmoid", init="xavier", epochs=1,
                    batch_size=256, optimizer="sgd", lr=0.1, layer_norms=True)
    first = run(cfg)[0]
    assert first["grad_norm_W1"] < 0.01 * first["grad_norm_W7"]


# --- smaller pieces -------------------------------------------------------------------- #


def test_perceptron_converges_on_separable_data_only():
    curves, summary = experiments.perceptron_experiment(max_epochs=30)
    s = summary.set_index("data")
    assert s.loc["separable", "converged"] and s.loc["separable", "total_mistakes"] <= s.loc["separable", "bound"]
    assert not s.loc["overlapping", "converged"] and s.loc["overlapping", "epochs"] == 30
    assert (curves[curves["data"] == "separable"]["mistakes"].iloc[-1]) == 0


def test_minibatch_paths_small_batches_are_noisier():
    paths = experiments.minibatch_paths(batch_sizes=(4, None), epochs=4)
    last = paths[paths["epoch"] == 4]
    small = last[last["batch"] == "4"]
    assert paths.groupby("batch")["step"].max().to_dict() == {"4": 4 * 64, "full": 4}
    assert small["w1"].std() > 0.01  # the small batch jitters around the minimum


def test_curve_noise_and_best_lr_pick_the_right_runs():
    import pandas as pd

    rows = []
    for cell, lr, q in (("a", 0.1, [3, 2, 1, 1.5, 0.5, 1.0]), ("b", 0.3, [3, 2, 1, 0.9, 0.8, 0.7]),
                        ("c", 1.0, [3, np.inf])):
        for e, v in enumerate(q):
            rows.append({"cell": cell, "lr": lr, "epoch": e, "train_loss": v, "g": "x",
                         "diverged": cell == "c" and e == 1})
    df = pd.DataFrame(rows)
    assert set(measures.best_lr(df, ["g"])["cell"]) == {"b"}  # lowest final Q; c diverged
    noise, rises = measures.curve_noise(df[df["cell"] == "a"])
    assert noise == pytest.approx(0.75) and rises == 0.5  # second half: changes -1, +0.5
    assert measures.curve_noise(df[df["cell"] == "b"])[1] == 0.0
    assert measures.reach_epochs(df[df["cell"] != "c"], 0.9).to_dict() == {"a": 4, "b": 3}


# --- the whole thing, quick -------------------------------------------------------------- #


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """run_lecture(quick=True) once, with a stand-in for OBD's experiments (their own
    tests cover it) that honours the contract: sections with a figure name
    relative to the OBD folder."""
    import optbench.suite.lecture.obd.experiments as obd_experiments

    out = tmp_path_factory.mktemp("lecture")

    def fake_obd(out_dir, quick=False):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "obd_fake.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        return [{"title": "OBD stand-in", "figure": "obd_fake.png", "table": None,
                 "verdict": "a stand-in verdict", "status": "agrees", "claim": "a stand-in claim"}]

    mp = pytest.MonkeyPatch()
    mp.setattr(obd_experiments, "run_obd_experiments", fake_obd)
    try:
        report = running.run_lecture(out, quick=True)
    finally:
        mp.undo()
    return out, report


def test_quick_run_writes_a_report_covering_sections_1_to_12(quick_run):
    out, report = quick_run
    text = report.read_text()
    numbers = [int(n) for n in re.findall(r"^## (\d+)\. ", text, flags=re.M)]
    assert numbers == list(range(1, 13))  # every DIGEST section, in the lecture's order
    for n in range(1, 13):
        body = text.split(f"## {n}. ")[1].split("\n## ")[0]
        assert "**Claim.**" in body and "**Verdict (" in body
    assert "QUICK" in text and "## Summary" in text
    assert "a stand-in claim" in text  # section 11 came from the OBD sections


def test_quick_run_figure_links_exist(quick_run):
    out, report = quick_run
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())
    assert len(links) >= 12
    for link in links:
        assert (out / link).is_file(), link
    assert "obd/obd_fake.png" in links


def test_quick_run_stores_its_results_and_timing(quick_run):
    out, _ = quick_run
    for name in stored.STUDIES:
        assert list((out / name / "cells").glob("*.parquet")), name
    for name in ("perceptron", "gradient_check", "minibatch_paths", "condition_numbers",
                 "init_statistics", "activation_statistics", "trajectories"):
        assert (out / "custom" / f"{name}.csv").is_file(), name
    timing = json.loads((out / "timing.json").read_text())
    assert timing["quick"] and "total_seconds" in timing
    assert timing["cells"]["ran"] > 0


def test_report_regenerates_from_stored_results_alone(quick_run, monkeypatch):
    out, report = quick_run
    before = report.read_text()
    for png in (out / "figures").glob("*.png"):
        png.unlink()
    import optbench.suite.studies.runner
    import optbench.suite.training.loop

    def no_training(*args, **kwargs):
        pytest.fail("write_lecture_report trained")

    monkeypatch.setattr(optbench.suite.studies.runner, "run_study", no_training)  # nothing may train
    monkeypatch.setattr(optbench.suite.training.loop, "run", no_training)
    monkeypatch.setattr(running, "run_custom", no_training)
    again = lecture_report.write_lecture_report(out)
    assert again.read_text() == before
    assert len(list((out / "figures").glob("s*.png"))) >= 12


def test_a_failing_obd_leaves_a_marked_hook(tmp_path, monkeypatch):
    import optbench.suite.lecture.obd.experiments as obd_experiments

    def broken(out_dir, quick=False):
        raise RuntimeError("not finished yet")

    monkeypatch.setattr(obd_experiments, "run_obd_experiments", broken)
    assert running.run_obd(tmp_path, quick=True) is False
    assert "not finished yet" in (tmp_path / "obd" / "error.txt").read_text()
    section = sections.section_obd(stored.Stored(tmp_path))
    assert section.number == 11 and "HOOK, NOT RUN" in section.items[0].verdict
    assert "not finished yet" in section.items[0].verdict


def test_steps_to_counts_only_a_path_that_stays_converged():
    assert measures.steps_to(np.array([5.0, 0.5, 0.1, 0.05]), 0.2) == 2
    assert np.isnan(measures.steps_to(np.array([5.0, 0.01, 3.0]), 0.2))  # dipped and bounced back
    assert measures.steps_to(np.array([0.1, 0.1]), 0.2) == 0
