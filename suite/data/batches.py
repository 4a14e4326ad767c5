"""Mini-batches and their order (lecture sections 3 and 4).

``batches(n_train, batch_size, epoch, seed, order, y)`` yields the index arrays
of one epoch (section 3: shuffle, split into batches, one step per batch;
section 4: shuffle every epoch); ``epoch_order`` is the order itself.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

ORDERS = ("shuffle", "fixed", "sorted")
#: The batch order's random stream (the split uses suite.data.splits.SPLIT_STREAM).
BATCH_STREAM = 2


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
        raise ValueError(f"unknown batch order {order!r}; allowed: {', '.join(ORDERS)}")
    if int(n_train) != n_train or n_train < 1:
        raise ValueError(f"n_train must be a positive integer, got {n_train!r}")
    if int(epoch) != epoch or epoch < 0:
        raise ValueError(f"epoch must be a non-negative integer (0 = first epoch), got {epoch!r}")
    if order == "shuffle":
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), BATCH_STREAM, int(epoch)]))
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

