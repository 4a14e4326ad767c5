"""Data sets, splits, standardisation and mini-batch order (lecture sections 3-5).

``load(name, seed)`` returns a :class:`Dataset`: train / validation / test
arrays (X float32, y int64 class labels or float32 regression targets), with
the split fixed by ``seed`` and the inputs optionally z-scored with statistics
from the training split only (section 5: standardising reshapes the loss
surface; taking the statistics from the whole set would leak the test set).

Data sets (``DATASETS``):

- ``digits``: scikit-learn's bundled 8x8 digits (1797 objects, 64 inputs, 10
  classes); ships with scikit-learn, nothing is downloaded.
- ``mnist1d``: generated offline by ``mnist1d.data.make_dataset`` with the
  package's default arguments (5000 objects: 4000 train + 1000 test, 40
  inputs, 10 classes), cached as .npz under ``$OPTBENCH_CACHE`` or
  ``~/.cache/optbench``. The package's own 1000-object test split is kept as
  the test split (comparable with published numbers); validation is carved out
  of its 4000 training objects per seed.
- ``spirals``: K interleaved 2-D spirals (a non-linear boundary).
- ``blobs``: Gaussian blobs; ``separable=True`` makes them linearly separable
  (for the perceptron, section 1).
- ``regression``: continuous targets from a smooth non-linear function, with
  inputs on very different scales (so standardisation visibly changes the
  condition number); for the squared-error loss of section 7.

Synthetic sets draw their points from ``data_seed`` (default 0), not from
``seed``: changing ``seed`` re-splits the same objects, as it does for digits
and mnist1d, so replicates differ only in split, init and batch order.

``batches(n_train, batch_size, epoch, seed, order, y)`` yields the index arrays
of one epoch (section 3: shuffle, split into batches, one step per batch;
section 4: shuffle every epoch), and ``condition_number`` measures what
standardising does to the inputs' covariance.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

DATASETS = ("digits", "mnist1d", "spirals", "blobs", "regression")
ORDERS = ("shuffle", "fixed", "sorted")
CACHE_ENV = "OPTBENCH_CACHE"

DEFAULT_VAL_FRACTION = 0.2
DEFAULT_TEST_FRACTION = 0.2

# Separate random streams derived from the one user seed, so that the split and
# the batch order never reuse the same random numbers.
_SPLIT_STREAM = 1
_BATCH_STREAM = 2


def _unknown(kind: str, value, allowed) -> ValueError:
    return ValueError(f"unknown {kind} {value!r}; allowed: {', '.join(map(str, allowed))}")


# --------------------------------------------------------------------------- #
# The Dataset record
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, eq=False)
class Dataset:
    """One data set, split and (optionally) standardised.

    X_*: float32 (n, n_features). y_*: int64 (n,) class labels for
    classification; float32 (n, n_outputs) targets for regression.
    n_classes is None for regression; n_outputs is the width of the output
    layer (= n_classes for classification).
    feature_mean / feature_std: the training-split statistics that were
    applied (None when standardize=False); constant features have std 1.
    content_hash: sha256 (16 hex digits) of the six arrays as delivered, for
    provenance in result rows.
    """

    name: str
    task: str  # "classification" or "regression"
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_features: int
    n_outputs: int
    n_classes: int | None
    seed: int
    standardized: bool
    feature_mean: np.ndarray | None
    feature_std: np.ndarray | None
    content_hash: str

    @property
    def n_train(self) -> int:
        return int(self.X_train.shape[0])

    def splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {
            "train": (self.X_train, self.y_train),
            "val": (self.X_val, self.y_val),
            "test": (self.X_test, self.y_test),
        }


def content_hash(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over names, dtypes, shapes and bytes of ``arrays`` (16 hex digits)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- #
# Sources: each returns raw (X, y) or, for mnist1d, a fixed test split too
# --------------------------------------------------------------------------- #


def make_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: 1797 x 64 pixel intensities 0..16, 10 classes."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


def cache_dir() -> Path:
    """``$OPTBENCH_CACHE`` if set, else ``~/.cache/optbench``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "optbench"


def _mnist1d_key() -> str:
    """Cache key: the generator's default arguments and the package version,
    so a new mnist1d release that generates differently gets a new file."""
    from importlib.metadata import version

    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)  # where the package would download from; not content
    blob = json.dumps({"args": args, "mnist1d": version("mnist1d")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def mnist1d_cache_path() -> Path:
    return cache_dir() / f"mnist1d-{_mnist1d_key()}.npz"


def _generate_mnist1d() -> dict[str, np.ndarray]:
    """Run mnist1d's make_dataset with its default arguments (about 1 s).

    make_dataset re-seeds the global ``random`` and ``np.random`` generators
    (its reproducibility trick); their states are restored afterwards so that
    loading data never changes anyone else's random stream.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "x": np.asarray(d["x"], dtype=np.float64),
        "y": np.asarray(d["y"], dtype=np.int64),
        "x_test": np.asarray(d["x_test"], dtype=np.float64),
        "y_test": np.asarray(d["y_test"], dtype=np.int64),
    }


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz next to ``path`` and rename it into place: a reader sees
    either no file or a complete one, even if two processes generate at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_mnist1d() -> dict[str, np.ndarray]:
    """mnist1d's default data set (x 4000x40, x_test 1000x40, 10 classes),
    from the local cache, generating and caching it on first use."""
    path = mnist1d_cache_path()
    if path.exists():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in ("x", "y", "x_test", "y_test")}
        except (OSError, KeyError, ValueError):
            pass  # unreadable cache file: regenerate and overwrite it
    arrays = _generate_mnist1d()
    _atomic_savez(path, arrays)
    return arrays


def make_spirals(
    n_samples: int = 1500, n_classes: int = 3, noise: float = 0.2, turns: float = 1.5,
    data_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """K interleaved 2-D spirals (Archimedean arms rotated by 2*pi/K).

    A point of class k: radius t ~ uniform(0.05, 1), angle
    2*pi*(turns*t + k/K) + Gaussian noise of std ``noise`` radians. Classes
    are balanced (object i has class i mod K).
    """
    _positive_int("n_samples", n_samples)
    if n_classes < 2:
        raise ValueError(f"spirals need n_classes >= 2, got {n_classes}")
    rng = np.random.default_rng(data_seed)
    y = np.arange(n_samples) % n_classes
    t = rng.uniform(0.05, 1.0, n_samples)
    angle = 2 * np.pi * (turns * t + y / n_classes) + rng.normal(0.0, noise, n_samples)
    X = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    return X, y.astype(np.int64)


def make_blobs(
    n_samples: int = 1000, n_classes: int = 3, n_features: int = 2, spread: float = 1.0,
    separable: bool = False, data_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs of std ``spread`` around K centres on a circle of radius 3.

    separable=True keeps only points within radius ``0.45 * d_min`` of their
    centre (d_min = smallest distance between two centres; rejection sampling).
    Each ball then lies inside its centre's Voronoi cell, so the nearest-centre
    rule -- a linear machine, argmax_k (c_k . x - |c_k|^2 / 2) -- classifies
    every point: the classes are linearly separable (for K = 2, by one
    hyperplane, which is what the perceptron needs).
    """
    _positive_int("n_samples", n_samples)
    _positive_int("n_features", n_features)
    if n_classes < 2:
        raise ValueError(f"blobs need n_classes >= 2, got {n_classes}")
    rng = np.random.default_rng(data_seed)
    # Centres on a circle in the first two coordinates (one axis if 1-D).
    phi = 2 * np.pi * np.arange(n_classes) / n_classes
    centres = np.zeros((n_classes, n_features))
    centres[:, 0] = 3.0 * np.cos(phi)
    if n_features > 1:
        centres[:, 1] = 3.0 * np.sin(phi)
    elif n_classes > 2:
        centres[:, 0] = 3.0 * np.arange(n_classes)
    y = np.arange(n_samples) % n_classes
    offsets = rng.normal(0.0, spread, (n_samples, n_features))
    if separable:
        d_min = min(
            np.linalg.norm(centres[i] - centres[j])
            for i in range(n_classes) for j in range(i + 1, n_classes)
        )
        radius = 0.45 * d_min
        outside = np.linalg.norm(offsets, axis=1) > radius
        while outside.any():  # redraw the points that fell outside the ball
            offsets[outside] = rng.normal(0.0, spread, (int(outside.sum()), n_features))
            outside = np.linalg.norm(offsets, axis=1) > radius
    return centres[y] + offsets, y.astype(np.int64)


def make_regression(
    n_samples: int = 1000, n_features: int = 4, n_outputs: int = 1, noise: float = 0.1,
    scale_range: float = 100.0, data_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Continuous targets y = f(z) + noise from latent z ~ N(0, I).

    f_q(z) = sin(z . a_q) + 0.5 * tanh(z . b_q) * (z . c_q) with random unit
    directions a_q, b_q, c_q: smooth, non-linear, with values of order 1.
    The inputs the model sees are x_j = mu_j + s_j * z_j with scales s_j
    spread log-uniformly over ``scale_range`` and offsets mu_j of order s_j:
    raw inputs have a covariance condition number of about scale_range^2,
    standardised ones of about 1 (what section 5 is about).
    """
    _positive_int("n_samples", n_samples)
    _positive_int("n_features", n_features)
    _positive_int("n_outputs", n_outputs)
    rng = np.random.default_rng(data_seed)
    z = rng.normal(size=(n_samples, n_features))

    def directions():
        d = rng.normal(size=(n_features, n_outputs))
        return d / np.linalg.norm(d, axis=0)

    a, b, c = directions(), directions(), directions()
    y = np.sin(z @ a) + 0.5 * np.tanh(z @ b) * (z @ c)
    y += rng.normal(0.0, noise, y.shape)
    scales = np.logspace(0.0, np.log10(scale_range), n_features) if n_features > 1 else np.ones(1)
    X = rng.uniform(-2.0, 2.0, n_features) * scales + z * scales
    return X, y


def _positive_int(what: str, value) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


_SYNTHETIC: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "spirals": make_spirals,
    "blobs": make_blobs,
    "regression": make_regression,
}


# --------------------------------------------------------------------------- #
# Splits and standardisation
# --------------------------------------------------------------------------- #


def split_indices(
    y: np.ndarray, seed: int, val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION, stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint train / val / test index arrays covering range(len(y)).

    Fractions are of the whole set. stratify=True splits each class
    separately (class proportions stay the same in every split; y must be
    labels). Each split's indices come back in a random order fixed by seed,
    so order="fixed" is a constant *random* order, and order="sorted" is the
    only class-sorted one.
    """
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0):
        raise ValueError(
            f"val_fraction and test_fraction must lie in [0, 1), got {val_fraction}, {test_fraction}"
        )
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1 to leave a training split, "
            f"got {val_fraction} + {test_fraction}"
        )
    n = len(y)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_STREAM]))
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(n)]
    sizes = np.array([len(g) for g in groups])
    # Whole-set counts are round(n * fraction); _share spreads them over the
    # classes so that the split sizes don't drift with per-class rounding.
    n_test = _share(sizes, int(round(n * test_fraction)))
    n_val = _share(sizes - n_test, int(round(n * val_fraction)), weights=sizes)
    train, val, test = [], [], []
    for group, k_test, k_val in zip(groups, n_test, n_val):
        group = rng.permutation(group)
        test.append(group[:k_test])
        val.append(group[k_test : k_test + k_val])
        train.append(group[k_test + k_val :])
    out = tuple(rng.permutation(np.concatenate(parts)).astype(np.int64) for parts in (train, val, test))
    if len(out[0]) == 0:
        raise ValueError(f"the split leaves no training objects (n={n})")
    return out


def _share(capacity: np.ndarray, total: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Split ``total`` into integer parts proportional to ``weights`` (default
    ``capacity``), none above its capacity: floors first, then the remainder
    one by one to the largest fractional parts (Hamilton's method)."""
    weights = capacity if weights is None else weights
    quota = total * weights / weights.sum()
    part = np.minimum(np.floor(quota).astype(np.int64), capacity)
    for i in np.argsort(-(quota - part), kind="stable"):
        if part.sum() >= total:
            break
        if part[i] < capacity[i]:
            part[i] += 1
    return part


def fit_standardization(X_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of the training split (float64).

    A constant feature (std 0, e.g. digits' always-blank corner pixels) gets
    std 1, so it maps to 0 instead of dividing by zero.
    """
    X = np.asarray(X_train, dtype=np.float64)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    # "Constant" up to rounding: relative to the feature's magnitude.
    constant = std <= 1e-12 * np.maximum(1.0, np.abs(mean))
    std[constant] = 1.0
    return mean, std


def apply_standardization(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """z = (x - mean) / std, element-wise per feature (float32 out)."""
    return ((np.asarray(X, dtype=np.float64) - mean) / std).astype(np.float32)


def condition_number(X: np.ndarray, with_bias: bool = False, drop_constant: bool = True) -> float:
    """Condition number lambda_max / lambda_min of the inputs' second moments.

    with_bias=False: the covariance of the features (centred). This is the
    Hessian of the squared-error loss of a linear model in its weights, once
    the bias has absorbed the mean; gradient descent needs about cond steps
    per e-fold, and standardising the features brings it to the condition
    number of their correlation matrix (1 for independent features).
    with_bias=True: (1/N) [X 1]^T [X 1], the Hessian of the same loss for an
    affine model, weights and bias together; it also shows what centring
    does (large feature means make it ill-conditioned even at unit variance).
    drop_constant: ignore features that do not vary (their eigenvalue is 0
    and the number would be infinite whatever the other features do).
    Returns inf when the matrix is singular.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"condition_number needs a 2-D array with >= 2 rows, got shape {X.shape}")
    if drop_constant:
        std = X.std(axis=0)
        X = X[:, std > 1e-12 * np.maximum(1.0, np.abs(X.mean(axis=0)))]
    if with_bias:
        A = np.hstack([X, np.ones((X.shape[0], 1))])
        M = A.T @ A / A.shape[0]
    else:
        Xc = X - X.mean(axis=0)
        M = Xc.T @ Xc / X.shape[0]
    if M.shape[0] == 0:
        raise ValueError("condition_number: every feature is constant")
    eig = np.linalg.eigvalsh(M)
    # Eigenvalues below rounding level (n * eps * lambda_max) are zeros: the
    # features are collinear (e.g. two digits pixels lit only together).
    if eig[0] <= eig[-1] * M.shape[0] * np.finfo(np.float64).eps:
        return float("inf")
    return float(eig[-1] / eig[0])


# --------------------------------------------------------------------------- #
# load()
# --------------------------------------------------------------------------- #


def load(
    name: str, seed: int = 0, standardize: bool = True, val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float | None = None, **options,
) -> Dataset:
    """Load data set ``name`` with the train/val/test split fixed by ``seed``.

    standardize: z-score every split with the training split's mean and std.
    val_fraction, test_fraction: fractions of the whole set (default 0.2 each;
    mnist1d keeps its own 1000-object test split, so test_fraction must not be
    given for it). **options: the generator's arguments for the synthetic
    sets (see make_spirals, make_blobs, make_regression; e.g. n_samples,
    n_classes, noise, separable, data_seed).
    """
    if name not in DATASETS:
        raise _unknown("data set", name, DATASETS)
    if name in _SYNTHETIC:
        maker = _SYNTHETIC[name]
        allowed = list(inspect.signature(maker).parameters)
        for key in options:
            if key not in allowed:
                raise ValueError(
                    f"data set {name!r} has no option {key!r}; allowed: {', '.join(allowed)}"
                )
    elif options:
        raise ValueError(f"data set {name!r} takes no options, got {', '.join(options)}")

    task = "regression" if name == "regression" else "classification"
    if name == "mnist1d":
        if test_fraction is not None:
            raise ValueError(
                "mnist1d keeps the package's own test split (1000 of 5000 objects); "
                "do not pass test_fraction for it"
            )
        raw = make_mnist1d()
        X_all, y_all = raw["x"], raw["y"]
        # Validation is val_fraction of the whole 5000, taken from the 4000.
        n_total = len(raw["y"]) + len(raw["y_test"])
        val_of_train = val_fraction * n_total / len(raw["y"])
        tr, va, _ = split_indices(y_all, seed, val_of_train, 0.0)
        X_test, y_test = raw["x_test"], raw["y_test"]
    else:
        X_all, y_all = make_digits() if name == "digits" else _SYNTHETIC[name](**options)
        tf = DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction
        tr, va, te = split_indices(y_all, seed, val_fraction, tf, stratify=task == "classification")
        X_test, y_test = X_all[te], y_all[te]
    X_train, y_train, X_val, y_val = X_all[tr], y_all[tr], X_all[va], y_all[va]

    mean = std = None
    if standardize:
        mean, std = fit_standardization(X_train)
        X_train, X_val, X_test = (apply_standardization(X, mean, std) for X in (X_train, X_val, X_test))
    y_dtype = np.int64 if task == "classification" else np.float32
    arrays = {
        "X_train": np.ascontiguousarray(X_train, dtype=np.float32),
        "y_train": np.ascontiguousarray(y_train, dtype=y_dtype),
        "X_val": np.ascontiguousarray(X_val, dtype=np.float32),
        "y_val": np.ascontiguousarray(y_val, dtype=y_dtype),
        "X_test": np.ascontiguousarray(X_test, dtype=np.float32),
        "y_test": np.ascontiguousarray(y_test, dtype=y_dtype),
    }
    if task == "classification":
        n_classes = int(max(y.max() for y in (y_all, y_test)) + 1)
        n_outputs = n_classes
    else:
        n_classes, n_outputs = None, int(arrays["y_train"].shape[1])
    return Dataset(
        name=name, task=task, **arrays, n_features=int(arrays["X_train"].shape[1]),
        n_outputs=n_outputs, n_classes=n_classes, seed=int(seed), standardized=bool(standardize),
        feature_mean=None if mean is None else mean.astype(np.float32),
        feature_std=None if std is None else std.astype(np.float32),
        content_hash=content_hash(arrays),
    )


# --------------------------------------------------------------------------- #
# Mini-batches
# --------------------------------------------------------------------------- #


def n_batches(n_train: int, batch_size: int) -> int:
    """Steps per epoch: ceil(n_train / batch_size) (the last partial batch counts)."""
    _check_batch_size(n_train, batch_size)
    return -(-n_train // batch_size)


def _check_batch_size(n_train: int, batch_size: int) -> None:
    if int(n_train) != n_train or n_train < 1:
        raise ValueError(f"n_train must be a positive integer, got {n_train!r}")
    if int(batch_size) != batch_size or not 1 <= batch_size <= n_train:
        raise ValueError(
            f"batch_size {batch_size!r} is out of range; allowed: 1 .. {n_train} "
            f"(1 = per-object SGD, {n_train} = full-batch gradient descent)"
        )


def epoch_order(
    n_train: int, epoch: int = 0, seed: int = 0, order: str = "shuffle", y: np.ndarray | None = None,
) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the training objects (int64).

    shuffle: a fresh permutation each epoch, a function of (seed, epoch) only,
        so a resumed run sees the same batches (sections 3-4).
    fixed:   range(n_train) every epoch (the stored split order, which is
        itself random) -- no reshuffling between epochs.
    sorted:  objects sorted by class (by y; for 2-D regression targets by the
        first column), stable, the same every epoch: the pathological order
        behind section 2's "dependence on the order of objects".
    """
    if order not in ORDERS:
        raise _unknown("batch order", order, ORDERS)
    if int(n_train) != n_train or n_train < 1:
        raise ValueError(f"n_train must be a positive integer, got {n_train!r}")
    if int(epoch) != epoch or epoch < 0:
        raise ValueError(f"epoch must be a non-negative integer (0 = first epoch), got {epoch!r}")
    if order == "shuffle":
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _BATCH_STREAM, int(epoch)]))
        return rng.permutation(n_train).astype(np.int64)
    if order == "fixed":
        return np.arange(n_train, dtype=np.int64)
    if y is None:
        raise ValueError("order 'sorted' needs the training labels y")
    key = np.asarray(y)
    key = key.reshape(len(key), -1)[:, 0] if key.ndim > 1 else key
    if len(key) != n_train:
        raise ValueError(f"y has {len(key)} entries but n_train is {n_train}")
    return np.argsort(key, kind="stable").astype(np.int64)


def batches(
    n_train: int, batch_size: int, epoch: int = 0, seed: int = 0, order: str = "shuffle",
    y: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """Yield the index arrays (NumPy int64) of one epoch's mini-batches.

    batch_size runs from 1 (per-object SGD, section 2) to n_train (full-batch
    gradient descent); the last, partial batch is kept, so every object is
    visited exactly once per epoch. See ``epoch_order`` for ``order``. The
    indices are host arrays: index device data with ``xp.asarray(idx)``.
    """
    _check_batch_size(n_train, batch_size)
    perm = epoch_order(n_train, epoch, seed, order, y)
    for start in range(0, n_train, batch_size):
        yield perm[start : start + batch_size]
