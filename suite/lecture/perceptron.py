"""Rosenblatt's perceptron: training one neuron (lecture section 1).

The neuron predicts sign(<w, x> + b) for labels y in {-1, +1}. On each
misclassified object, y (<w, x> + b) <= 0 (a point on the boundary counts
as a mistake, so the all-zero start moves), the rule is

    w := w + eta * y * x,     b := b + eta * y

(the bias is the weight of a constant input 1). Objects are visited one at a
time, in the given order or reshuffled each epoch. Training stops after the
first epoch without a mistake (converged: the data are separated) or after
``max_epochs``. By Novikoff's theorem the number of mistakes is finite,
at most (R / gamma)^2, when the data are linearly separable with margin gamma
(R = max |(x, 1)|); on non-separable data the rule never stops on its own.

Pure NumPy on the host: the rule is sequential, one object after another,
so there is nothing for a device to do in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class PerceptronResult:
    """w: float64 (n_features,); b: the bias; mistakes_per_epoch: one count per
    epoch run; converged: the last epoch had no mistake."""

    w: np.ndarray
    b: float
    mistakes_per_epoch: list[int]
    converged: bool

    @property
    def epochs(self) -> int:
        return len(self.mistakes_per_epoch)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """sign(<w, x> + b) as int64 in {-1, +1} (0 -> +1)."""
        return np.where(np.asarray(X, dtype=np.float64) @ self.w + self.b >= 0, 1, -1).astype(np.int64)


def signed_labels(y: np.ndarray, positive=1) -> np.ndarray:
    """Map labels to {-1, +1}: ``positive`` -> +1, everything else -> -1."""
    return np.where(np.asarray(y) == positive, 1, -1).astype(np.int64)


def train_perceptron(
    X: np.ndarray,
    y: np.ndarray,
    eta: float = 1.0,
    max_epochs: int = 100,
    seed: int | None = None,
    w0: np.ndarray | None = None,
    b0: float = 0.0,
) -> PerceptronResult:
    """Run the perceptron rule until an epoch has no mistake or max_epochs.

    X: (N, n_features); y: (N,) labels in {-1, +1} (see signed_labels).
    eta: the learning rate (the lecture's eta), > 0.
    seed: None visits the objects in the given order every epoch; an integer
    visits them in a fresh permutation per epoch drawn from (seed, epoch).
    w0, b0: the starting weights (default zeros).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (objects x features), got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},), got {y.shape}")
    bad = np.setdiff1d(np.unique(y), [-1, 1])
    if bad.size:
        raise ValueError(
            f"perceptron labels must be -1 or +1, got {bad.tolist()}; convert with signed_labels(y)"
        )
    if int(max_epochs) != max_epochs or max_epochs < 1:
        raise ValueError(f"max_epochs must be a positive integer, got {max_epochs!r}")
    if not eta > 0:
        raise ValueError(f"eta must be positive, got {eta!r}")

    w = np.zeros(X.shape[1]) if w0 is None else np.array(w0, dtype=np.float64)
    b = float(b0)
    yf = y.astype(np.float64)
    history: list[int] = []
    for epoch in range(int(max_epochs)):
        order = (
            np.arange(len(X)) if seed is None
            else np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(len(X))
        )
        mistakes = 0
        for i in order:
            if yf[i] * (X[i] @ w + b) <= 0:
                w += eta * yf[i] * X[i]
                b += eta * yf[i]
                mistakes += 1
        history.append(mistakes)
        if mistakes == 0:
            break
    return PerceptronResult(w=w, b=b, mistakes_per_epoch=history, converged=history[-1] == 0)
