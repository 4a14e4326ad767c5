"""Data sets, splits, standardisation, mini-batch order (suite/data/)."""

import random

import numpy as np
import pytest

from optbench.suite.data import batches, datasets, splits

SYNTHETIC = ("spirals", "blobs", "regression")


# --- load: shapes, dtypes, metadata ---------------------------------------- #


@pytest.mark.parametrize("name", ("digits",) + SYNTHETIC)
def test_load_gives_typed_splits(name):
    d = datasets.load(name, seed=0)
    assert d.name == name
    n_total = 0
    for X, y in d.splits().values():
        assert X.dtype == np.float32 and X.ndim == 2 and X.shape[1] == d.n_features
        assert len(y) == len(X)
        n_total += len(X)
        if d.task == "classification":
            assert y.dtype == np.int64 and y.ndim == 1
        else:
            assert y.dtype == np.float32 and y.shape[1] == d.n_outputs
    # Default fractions: 60 / 20 / 20 of the whole set.
    assert abs(d.n_train - 0.6 * n_total) <= 1
    assert abs(len(d.X_test) - 0.2 * n_total) <= 1


def test_digits_metadata():
    d = datasets.load("digits")
    assert (d.task, d.n_features, d.n_classes, d.n_outputs) == ("classification", 64, 10, 10)
    assert d.n_train + len(d.X_val) + len(d.X_test) == 1797


def test_regression_targets_are_continuous():
    d = datasets.load("regression", n_outputs=2)
    assert d.task == "regression" and d.n_classes is None and d.n_outputs == 2
    assert d.y_train.shape == (d.n_train, 2)
    assert len(np.unique(d.y_train)) > 0.9 * d.y_train.size


def test_synthetic_options_reach_the_generator():
    d = datasets.load("spirals", n_samples=400, n_classes=4)
    assert d.n_classes == 4 and d.n_features == 2
    assert d.n_train + len(d.X_val) + len(d.X_test) == 400
    b = datasets.load("blobs", n_features=5, n_classes=2)
    assert (b.n_features, b.n_classes) == (5, 2)


def test_classification_splits_hold_every_class_in_proportion():
    d = datasets.load("spirals", n_classes=3, n_samples=900)
    for _, y in d.splits().values():
        counts = np.bincount(y, minlength=3)
        assert counts.min() >= counts.max() - 1


def test_separable_blobs_lie_inside_their_voronoi_cells():
    X, y = datasets.make_blobs(n_samples=600, n_classes=4, separable=True, spread=2.0)
    centres = np.stack([X[y == k].mean(axis=0) for k in range(4)])
    # With the radius cut at 0.45 of the centre spacing, the nearest true
    # centre is the class; the empirical centres are close enough to agree.
    nearest = np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(nearest, y)
    Xo, yo = datasets.make_blobs(n_samples=600, n_classes=4, separable=False, spread=2.0)
    nearest = np.argmin(((Xo[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert not np.array_equal(nearest, yo)  # without the cut, the blobs overlap


# --- splits and seeds ------------------------------------------------------ #


def test_split_indices_are_disjoint_cover_and_stratified():
    y = np.repeat(np.arange(5), [50, 60, 70, 80, 40])
    tr, va, te = splits.split_indices(y, seed=3)
    all_idx = np.concatenate([tr, va, te])
    assert np.array_equal(np.sort(all_idx), np.arange(len(y)))
    assert len(te) == round(0.2 * len(y)) and len(va) == round(0.2 * len(y))
    for part in (va, te):
        expected = 0.2 * np.bincount(y)
        assert np.all(np.abs(np.bincount(y[part], minlength=5) - expected) <= 1)


def test_split_is_fixed_per_seed_and_changes_with_it():
    y = np.arange(300) % 3
    a, b, c = splits.split_indices(y, 7), splits.split_indices(y, 7), splits.split_indices(y, 8)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_train_split_is_not_stored_sorted_by_class():
    # spirals are generated class by class cyclically and digits almost so:
    # the stored training order must be random, so "fixed" is not "sorted".
    d = datasets.load("digits", seed=0)
    assert np.mean(np.diff(d.y_train) == 0) < 0.3


def test_content_hash_tracks_seed_and_content():
    a, b, c = datasets.load("blobs", seed=1), datasets.load("blobs", seed=1), datasets.load("blobs", seed=2)
    assert a.content_hash == b.content_hash != c.content_hash
    assert datasets.load("blobs", seed=1, standardize=False).content_hash != a.content_hash
    assert datasets.load("blobs", seed=1, data_seed=5).content_hash != a.content_hash


def test_bad_split_fractions_are_rejected():
    with pytest.raises(ValueError, match="< 1"):
        datasets.load("blobs", val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        splits.split_indices(np.arange(10), 0, val_fraction=-0.1)


# --- standardisation ------------------------------------------------------- #


def test_standardize_uses_training_statistics_only():
    raw = datasets.load("digits", seed=0, standardize=False)
    z = datasets.load("digits", seed=0, standardize=True)
    mean = raw.X_train.astype(np.float64).mean(axis=0)
    std = raw.X_train.astype(np.float64).std(axis=0)
    varying = std > 0
    zt = z.X_train.astype(np.float64)
    np.testing.assert_allclose(zt[:, varying].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(zt[:, varying].std(axis=0), 1.0, atol=1e-4)
    # Validation and test are mapped with the *training* mean and std.
    expected_val = (raw.X_val[:, varying] - mean[varying]) / std[varying]
    np.testing.assert_allclose(z.X_val[:, varying], expected_val, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z.feature_mean, mean, rtol=1e-6, atol=1e-6)


def test_constant_features_become_zero_not_nan():
    raw = datasets.load("digits", standardize=False)
    constant = raw.X_train.std(axis=0) == 0
    assert constant.any()  # digits has always-blank pixels: the case under test
    z = datasets.load("digits")
    assert np.isfinite(z.X_train).all() and np.isfinite(z.X_test).all()
    assert np.all(z.X_train[:, constant] == 0)
    assert np.all(z.feature_std[constant] == 1)


def test_standardize_off_returns_raw_values():
    d = datasets.load("digits", standardize=False)
    assert d.feature_mean is None and d.feature_std is None
    assert d.X_train.max() == 16.0  # digits' raw pixel range is 0..16


# --- condition number ------------------------------------------------------ #


def test_condition_number_of_scaled_independent_features():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200_000, 2)) * [1.0, 10.0]
    assert splits.condition_number(X) == pytest.approx(100.0, rel=0.02)


def test_condition_number_with_bias_sees_the_mean():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10_000, 2)) + 20.0
    assert splits.condition_number(X) < 1.1
    assert splits.condition_number(X, with_bias=True) > 100


def test_standardisation_rounds_the_regression_inputs():
    raw = datasets.load("regression", standardize=False)
    z = datasets.load("regression")
    assert splits.condition_number(raw.X_train) > 1000
    assert splits.condition_number(z.X_train) < 2.0
    assert splits.condition_number(z.X_train, with_bias=True) < 2.0


def test_condition_number_ignores_constant_features_and_flags_collinear_ones():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 1))
    assert np.isfinite(splits.condition_number(np.hstack([x, np.ones((1000, 1))])))
    assert splits.condition_number(np.hstack([x, 2 * x])) == float("inf")


# --- mini-batches ---------------------------------------------------------- #


def _epoch(n, bs, **kw):
    return list(batches.batches(n, bs, **kw))


@pytest.mark.parametrize("order", batches.ORDERS)
@pytest.mark.parametrize("batch_size", [1, 7, 32, 100])
def test_an_epoch_visits_every_object_once(order, batch_size):
    y = np.arange(100) % 4
    parts = _epoch(100, batch_size, epoch=2, seed=1, order=order, y=y)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(100))
    assert all(p.dtype == np.int64 for p in parts)
    assert [len(p) for p in parts[:-1]] == [batch_size] * (len(parts) - 1)
    assert len(parts) == -(-100 // batch_size)


def test_last_partial_batch_is_kept():
    parts = _epoch(10, 4, order="fixed")
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_full_batch_is_one_step():
    parts = _epoch(50, 50, order="shuffle")
    assert len(parts) == 1 and len(parts[0]) == 50


def test_shuffle_is_fresh_each_epoch_and_deterministic():
    e0 = np.concatenate(_epoch(200, 16, epoch=0, seed=3))
    e1 = np.concatenate(_epoch(200, 16, epoch=1, seed=3))
    again = np.concatenate(_epoch(200, 16, epoch=1, seed=3))
    other_seed = np.concatenate(_epoch(200, 16, epoch=1, seed=4))
    assert not np.array_equal(e0, e1)
    assert np.array_equal(e1, again)
    assert not np.array_equal(e1, other_seed)
    assert not np.array_equal(e0, np.arange(200))


def test_fixed_order_is_the_same_every_epoch():
    assert np.array_equal(
        np.concatenate(_epoch(30, 4, epoch=0, order="fixed")),
        np.concatenate(_epoch(30, 4, epoch=5, order="fixed")),
    )


def test_sorted_order_groups_classes():
    y = np.random.default_rng(0).integers(0, 5, 300)
    idx = np.concatenate(_epoch(300, 32, order="sorted", y=y))
    assert np.all(np.diff(y[idx]) >= 0)
    # Every early batch is a single class: the pathology the lecture warns of.
    assert len(np.unique(y[_epoch(300, 32, order="sorted", y=y)[0]])) == 1


def test_sorted_order_for_regression_targets():
    y = np.random.default_rng(0).normal(size=(50, 1)).astype(np.float32)
    idx = batches.epoch_order(50, order="sorted", y=y)
    assert np.all(np.diff(y[idx, 0]) >= 0)


# --- errors ---------------------------------------------------------------- #


def test_unknown_dataset_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match=r"'mnist'.*digits.*mnist1d.*spirals.*blobs.*regression"):
        datasets.load("mnist")


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match=r"'radius'.*n_samples"):
        datasets.load("spirals", radius=3)
    with pytest.raises(ValueError, match="takes no options"):
        datasets.load("digits", n_samples=10)


def test_unknown_order_lists_the_choices():
    with pytest.raises(ValueError, match=r"'random'.*shuffle.*fixed.*sorted"):
        list(batches.batches(10, 2, order="random"))


@pytest.mark.parametrize("bad", [0, -1, 11, 2.5])
def test_batch_size_out_of_range(bad):
    with pytest.raises(ValueError, match=rf"batch_size {bad!r}.*1 \.\. 10"):
        list(batches.batches(10, bad))


def test_negative_epoch_and_missing_labels():
    with pytest.raises(ValueError, match="epoch"):
        list(batches.batches(10, 2, epoch=-1))
    with pytest.raises(ValueError, match="needs the training labels"):
        list(batches.batches(10, 2, order="sorted"))


# --- mnist1d: generated offline, cached atomically ------------------------- #


@pytest.fixture(scope="module")
def mnist1d_cache(tmp_path_factory):
    """Generate mnist1d once (about 1 s) into a private cache directory."""
    cache = tmp_path_factory.mktemp("optbench-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv(datasets.CACHE_ENV, str(cache))
    np.random.seed(123)
    random.seed(123)
    before = (np.random.random(), random.random())
    np.random.seed(123)
    random.seed(123)
    d = datasets.load("mnist1d", seed=0)
    after = (np.random.random(), random.random())
    yield cache, d, before, after
    mp.undo()


def test_mnist1d_sizes(mnist1d_cache):
    _, d, _, _ = mnist1d_cache
    assert (d.n_features, d.n_classes) == (40, 10)
    # The package's 4000 / 1000 split; validation is 20 % of 5000 from the 4000.
    assert (d.n_train, len(d.X_val), len(d.X_test)) == (3000, 1000, 1000)


def test_mnist1d_is_cached_atomically_and_reused(mnist1d_cache, monkeypatch):
    cache, d, _, _ = mnist1d_cache
    monkeypatch.setenv(datasets.CACHE_ENV, str(cache))
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 1 and files[0].startswith("mnist1d-") and files[0].endswith(".npz")

    import mnist1d.data

    def no_generation(*a, **k):
        raise AssertionError("mnist1d was regenerated although it is cached")

    monkeypatch.setattr(mnist1d.data, "make_dataset", no_generation)
    again = datasets.load("mnist1d", seed=0)
    assert again.content_hash == d.content_hash
    assert datasets.load("mnist1d", seed=1).content_hash != d.content_hash
    # The test split is the package's, whatever the seed.
    assert np.array_equal(datasets.load("mnist1d", seed=1).y_test, d.y_test)


def test_mnist1d_generation_leaves_global_rng_alone(mnist1d_cache):
    _, _, before, after = mnist1d_cache
    assert before == after


def test_mnist1d_rejects_test_fraction(mnist1d_cache, monkeypatch):
    cache, _, _, _ = mnist1d_cache
    monkeypatch.setenv(datasets.CACHE_ENV, str(cache))
    with pytest.raises(ValueError, match="own test split"):
        datasets.load("mnist1d", test_fraction=0.3)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path))
    assert datasets.cache_dir() == tmp_path
    monkeypatch.delenv(datasets.CACHE_ENV)
    assert datasets.cache_dir().parts[-2:] == (".cache", "optbench")
