"""Splits, standardisation and conditioning (lecture section 5).

``split_indices`` fixes a train / validation / test split per seed (stratified
by class); ``fit_standardization`` / ``apply_standardization`` z-score every
split with statistics from the training split only (taking them from the whole
set would leak the test set); ``condition_number`` measures what standardising
does to the inputs' covariance -- the shape of the loss surface.
"""

from __future__ import annotations

import numpy as np

DEFAULT_VAL_FRACTION = 0.2
DEFAULT_TEST_FRACTION = 0.2

# Separate random streams derived from the one user seed, so that the split and
# the batch order (suite.data.batches) never reuse the same random numbers.
SPLIT_STREAM = 1


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
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_STREAM]))
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

