"""The noisy quadratic with a known spectrum (suite.data.datasets: quadratic),
and the linear model (hidden = ()) that turns it into a quadratic loss."""

from pathlib import Path

import numpy as np
import pytest

from optbench.suite.data import datasets
from optbench.suite.studies.spec import StudyError, parse_study
from optbench.suite.training.config import ConfigError, RunConfig
from optbench.suite.training.loop import run
from optbench.suite.training.loop import run_population


def _spectrum_error(n: int, data_seed: int = 0) -> tuple[float, float]:
    """(max relative error of the 10 large eigenvalues, max absolute error of
    the 90 small ones) of the sample covariance of n draws against lambda."""
    problem = datasets.quadratic_problem(data_seed=data_seed)
    X, _ = datasets.make_quadratic(n_samples=n, data_seed=data_seed)
    sample = np.sort(np.linalg.eigvalsh(X.T @ X / n))
    lam = np.sort(problem.eigenvalues)
    return float(np.max(np.abs(sample[-10:] / lam[-10:] - 1))), float(np.max(np.abs(sample[:90] - lam[:90])))


def test_the_spectrum_is_deepobs_quadratic_deep():
    p = datasets.quadratic_problem()
    assert p.eigenvalues.shape == (100,)
    small, large = np.sort(p.eigenvalues)[:90], np.sort(p.eigenvalues)[90:]
    assert small.min() >= 0 and small.max() <= 1 and large.min() >= 30 and large.max() <= 60
    np.testing.assert_allclose(p.basis.T @ p.basis, np.eye(100), atol=1e-10)  # orthogonal
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(p.hessian)), np.sort(p.eigenvalues), atol=1e-9)
    assert p.optimum == 0.5


def test_the_sample_covariance_approaches_the_spectrum():
    large_2k, small_2k = _spectrum_error(2_000)
    large_20k, small_20k = _spectrum_error(20_000)
    assert large_20k < 0.05 and small_20k < 0.06
    assert large_20k < large_2k and small_20k < small_2k
    assert _spectrum_error(20_000, data_seed=5)[0] < 0.05


def test_expected_loss_is_the_quadratic_with_its_known_minimum():
    p = datasets.quadratic_problem()
    X, y = datasets.make_quadratic(n_samples=100_000, data_seed=0)
    rng = np.random.default_rng(1)
    for w, b in ((p.w_star, 0.0), (p.w_star + 0.1 * rng.normal(size=100), 0.3), (np.zeros(100), -0.5)):
        empirical = 0.5 * np.mean((X @ w + b - y[:, 0]) ** 2)
        assert empirical == pytest.approx(p.expected_loss(w, b), rel=0.02)
    assert p.expected_loss(p.w_star, 0.0) == p.optimum == 0.5
    # Least squares on a large sample recovers w* and reaches the minimum.
    A = np.hstack([X, np.ones((len(X), 1))])
    coef = np.linalg.lstsq(A, y[:, 0], rcond=None)[0]
    np.testing.assert_allclose(coef[:100], p.w_star, atol=0.05)
    assert p.expected_loss(coef[:100], coef[100]) == pytest.approx(0.5, abs=0.005)


def test_quadratic_is_deterministic_by_data_seed_and_loads_raw():
    a, b = datasets.make_quadratic(n_samples=300), datasets.make_quadratic(n_samples=300)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = datasets.make_quadratic(n_samples=300, data_seed=1)
    assert not np.allclose(a[0], c[0])
    # The problem does not depend on how many points are drawn.
    p1, p2 = datasets.quadratic_problem(), datasets.quadratic_problem(data_seed=0)
    np.testing.assert_array_equal(p1.w_star, p2.w_star)
    np.testing.assert_array_equal(datasets.make_quadratic(n_samples=50)[0], a[0][:50])

    d = datasets.load("quadratic", seed=0, standardize=False)
    assert (d.task, d.n_features, d.n_outputs, d.n_classes) == ("regression", 100, 1, None)
    assert (d.n_train, len(d.X_val), len(d.X_test)) == (3000, 1000, 1000)
    assert d.y_train.dtype == np.float32 and d.y_train.shape == (3000, 1)
    assert not d.standardized and d.feature_mean is None
    again = datasets.load("quadratic", seed=0, standardize=False)
    assert again.content_hash == d.content_hash
    assert datasets.load("quadratic", seed=1, standardize=False).content_hash != d.content_hash
    small = datasets.load("quadratic", standardize=False, n_samples=500, n_features=10, n_high=2, noise=0.1)
    assert small.n_features == 10 and small.n_train == 300


@pytest.mark.parametrize("bad", [dict(n_high=101), dict(n_high=-1), dict(low=(1.0, 0.0)), dict(high=(30.0,)),
                                 dict(noise=-1.0), dict(n_features=0)])
def test_bad_quadratic_options_are_named(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        datasets.quadratic_problem(**bad)


def test_a_run_refuses_to_standardise_the_quadratic():
    with pytest.raises(ConfigError, match="standardize = false"):
        RunConfig.of(dataset="quadratic", hidden=())
    RunConfig.of(dataset="quadratic", hidden=(), standardize=False)
    # load() still z-scores on request (a condition-number table may want it).
    assert datasets.load("quadratic", standardize=True).standardized
    with pytest.raises(StudyError, match="standardize = false"):
        parse_study('[fixed]\ndataset = "quadratic"\nhidden = []\n[grid]\nseed = [0]\n', Path("q.toml"))


def test_a_study_of_the_quadratic_with_a_linear_model_parses():
    study = parse_study('[fixed]\ndataset = "quadratic"\nhidden = []\nstandardize = false\nloss = "squared"\n'
                        '[grid]\nseed = [0, 1]\n', Path("q.toml"))
    assert [c.config.workload.hidden for c in study.cells] == [(), ()]


QUAD = dict(dataset="quadratic", hidden=(), standardize=False, loss="squared", batch_size=128, epochs=3)


def test_a_linear_model_trains_on_the_quadratic():
    records = run(RunConfig.of(**QUAD, optimizer="sgd", lr=0.01, layer_norms=True))
    first, last = records[0], records[-1]
    assert not last["diverged"] and last["stop_reason"] == "epochs"
    assert first["val_loss"] > 100 and last["val_loss"] < 0.05 * first["val_loss"]
    assert last["val_acc"] is None
    # One layer: one weight matrix, so one per-layer gradient norm.
    assert "grad_norm_W1" in last and "grad_norm_W2" not in last


def test_sgd_beyond_two_over_the_largest_curvature_diverges():
    lam_max = datasets.quadratic_problem().eigenvalues.max()
    records = run(RunConfig.of(**{**QUAD, "epochs": 5}, optimizer="sgd", lr=3.0 / lam_max))
    assert records[-1]["diverged"] or records[-1]["val_loss"] > records[0]["val_loss"]


def test_a_population_of_linear_models_matches_single_runs():
    configs = [RunConfig.of(**QUAD, optimizer=o, lr=lr, seed=s) for o, lr, s in (("sgd", 0.01, 0), ("adam", 0.03, 1))]
    pop = run_population(configs)
    for config, members in zip(configs, pop):
        single = run(config)
        assert [r["epoch"] for r in members] == [r["epoch"] for r in single]
        np.testing.assert_allclose([r["val_loss"] for r in members], [r["val_loss"] for r in single], rtol=1e-3)
