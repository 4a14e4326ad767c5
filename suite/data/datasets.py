"""The data sets, loaded split and standardised (lecture sections 3-5).

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
- ``quadratic``: a noisy quadratic with a known spectrum (an analogue of
  DeepOBS's ``quadratic_deep``): inputs x ~ N(0, H), H = Q diag(lambda) Q^T
  with a random orthogonal Q, targets y = x . w* + noise * N(0, 1). Fitted by
  a linear model (``hidden=()``) with the squared loss on *raw* inputs, the
  expected loss is 1/2 (w - w*)^T H (w - w*) + 1/2 b^2 + noise^2 / 2: its
  Hessian has exactly the spectrum lambda (and 1 for the bias b), its minimum
  noise^2 / 2 is known. Standardising would destroy the spectrum, so a run
  (``RunConfig``) refuses ``standardize=True`` for it; ``load`` still
  z-scores on request (e.g. for a condition-number table). See
  :func:`make_quadratic` and :func:`quadratic_problem`.

Synthetic sets draw their points from ``data_seed`` (default 0), not from
``seed``: changing ``seed`` re-splits the same objects, as it does for digits
and mnist1d, so replicates differ only in split, init and batch order.

Splits and standardisation are in :mod:`suite.data.splits`, mini-batch order
in :mod:`suite.data.batches`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from optbench.kernels.cache import CACHE_ENV, cache_dir  # noqa: F401 (CACHE_ENV: re-exported for users)

from ..reporting.files import atomic_write
from .splits import DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION, apply_standardization, fit_standardization, split_indices

DATASETS = ("digits", "mnist1d", "spirals", "blobs", "regression", "quadratic")
#: Data sets with continuous targets (the rest have class labels).
REGRESSION = ("regression", "quadratic")
#: Data sets whose inputs must reach a run raw: z-scoring would change what
#: the data set is for (the quadratic's Hessian spectrum).
RAW_ONLY = ("quadratic",)


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


def make_mnist1d() -> dict[str, np.ndarray]:
    """mnist1d's default data set (x 4000x40, x_test 1000x40, 10 classes),
    from the local cache, generating and caching it on first use.

    A damaged cache file (truncated, not a zip, wrong arrays) is regenerated
    and replaced atomically; a cache folder that cannot be written only costs
    the regeneration next time.
    """
    path = mnist1d_cache_path()
    if path.exists():
        try:
            with np.load(path) as f:
                arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
            if (arrays["x"].ndim == 2 and arrays["x"].shape[0] == arrays["y"].shape[0]
                    and arrays["x_test"].shape[0] == arrays["y_test"].shape[0] > 0):
                return arrays
        except Exception:  # BadZipFile, EOFError, OSError, KeyError, ValueError ...
            pass  # unreadable: regenerate and overwrite it
    arrays = _generate_mnist1d()
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays), binary=True)
    except OSError:
        pass  # e.g. a read-only home: the data are right, just not cached
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


@dataclass(frozen=True, eq=False)
class QuadraticProblem:
    """The quadratic behind the ``quadratic`` data set (float64).

    eigenvalues: lambda (n_features,), in the order drawn (the n_features -
    n_high small ones first); basis: the orthogonal Q (columns are H's eigenvectors);
    w_star: the optimal weights; noise: sigma, the targets' noise std.
    """

    eigenvalues: np.ndarray
    basis: np.ndarray
    w_star: np.ndarray
    noise: float

    @property
    def hessian(self) -> np.ndarray:
        """H = Q diag(lambda) Q^T: the inputs' covariance, the loss's Hessian in w."""
        return (self.basis * self.eigenvalues) @ self.basis.T

    @property
    def optimum(self) -> float:
        """The minimum of the expected loss, noise^2 / 2 (at w = w*, b = 0)."""
        return 0.5 * self.noise ** 2

    def expected_loss(self, w, b=0.0) -> float:
        """1/2 (w - w*)^T H (w - w*) + 1/2 b^2 + noise^2 / 2: the squared loss
        of the linear model x . w + b, averaged over the distribution."""
        d = np.asarray(w, dtype=np.float64).reshape(-1) - self.w_star
        return float(0.5 * d @ self.hessian @ d + 0.5 * float(np.asarray(b).reshape(-1)[0]) ** 2 + self.optimum)


def _range_of(what: str, value) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a pair (low, high), got {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0.0 <= lo <= hi):
        raise ValueError(f"{what} must be a pair 0 <= low <= high, got {value!r}")
    return lo, hi


def quadratic_problem(
    n_features: int = 100, n_high: int = 10, low: tuple = (0.0, 1.0), high: tuple = (30.0, 60.0),
    noise: float = 1.0, data_seed: int = 0,
) -> QuadraticProblem:
    """The spectrum, basis and optimum of ``make_quadratic``'s problem.

    lambda: n_features - n_high eigenvalues ~ U(low), n_high ~ U(high)
    (DeepOBS quadratic_deep: 100 = 90 in U(0, 1) + 10 in U(30, 60)); Q: Haar
    orthogonal (QR of a Gaussian matrix, signs of R's diagonal moved into
    Q); w* ~ N(0, I). Drawn from its own stream of ``data_seed``, so the
    problem does not depend on ``n_samples``.
    """
    _positive_int("n_features", n_features)
    if int(n_high) != n_high or not 0 <= n_high <= n_features:
        raise ValueError(f"n_high must be an integer in [0, n_features], got {n_high!r}")
    lo, hi = _range_of("low", low), _range_of("high", high)
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    rng = np.random.default_rng(np.random.SeedSequence([int(data_seed), 0]))
    eig = np.concatenate([rng.uniform(*lo, int(n_features) - int(n_high)), rng.uniform(*hi, int(n_high))])
    q, r = np.linalg.qr(rng.normal(size=(int(n_features), int(n_features))))
    signs = np.sign(np.diag(r))
    signs[signs == 0] = 1.0
    w_star = rng.normal(size=int(n_features))
    return QuadraticProblem(eigenvalues=eig, basis=q * signs, w_star=w_star, noise=float(noise))


def make_quadratic(
    n_samples: int = 5000, n_features: int = 100, n_high: int = 10, low: tuple = (0.0, 1.0),
    high: tuple = (30.0, 60.0), noise: float = 1.0, data_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy quadratic with a known spectrum: x ~ N(0, H), y = x . w* + noise * e.

    H = Q diag(lambda) Q^T and w* are :func:`quadratic_problem`'s (same
    arguments); x = (e' * sqrt(lambda)) Q^T with e, e' ~ N(0, 1), drawn from
    a second stream of ``data_seed``. Returns X (n_samples, n_features) and y
    (n_samples, 1). With the squared loss 1/2 (x . w + b - y)^2 the expected
    loss is 1/2 (w - w*)^T H (w - w*) + 1/2 b^2 + noise^2 / 2 (x has mean 0,
    so the bias decouples with curvature 1); a finite training split's
    Hessian is its sample covariance, which approaches H as n grows.
    d = 100 as in DeepOBS (a linear model of 101 parameters costs little);
    5000 points leave 3000 for training, whose least-squares fit is worse
    than w* by about noise^2 / 2 * d / (n_train - d) ~ 0.017 in expectation.
    """
    _positive_int("n_samples", n_samples)
    problem = quadratic_problem(n_features, n_high, low, high, noise, data_seed)
    rng = np.random.default_rng(np.random.SeedSequence([int(data_seed), 1]))
    X = (rng.normal(size=(int(n_samples), int(n_features))) * np.sqrt(problem.eigenvalues)) @ problem.basis.T
    y = X @ problem.w_star + problem.noise * rng.normal(size=int(n_samples))
    return X, y[:, None]


def _positive_int(what: str, value) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


_SYNTHETIC: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "spirals": make_spirals,
    "blobs": make_blobs,
    "regression": make_regression,
    "quadratic": make_quadratic,
}


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
    sets (see make_spirals, make_blobs, make_regression, make_quadratic;
    e.g. n_samples, n_classes, noise, separable, data_seed).
    The quadratic is meant to be used raw (standardize=False): z-scoring it
    here is allowed but changes its Hessian, and a run refuses it.
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

    task = "regression" if name in REGRESSION else "classification"
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

