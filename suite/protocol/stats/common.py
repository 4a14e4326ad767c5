"""Shared checks of the statistics: runs as arrays, bootstrap sizes, orientation."""

from __future__ import annotations


import numpy as np


# Elements per resampled block: bounds memory (16 MB of float64) however
# large n x n_boot is, without changing the numbers (the blocks are drawn
# from one generator in order).
_BLOCK = 2_000_000


def _as_runs(values, name: str, allow_empty: bool = False) -> np.ndarray:
    """``values`` as a 1-D float64 array; NaN and (unless allowed) empty refused."""
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not numbers ({exc})") from None
    if x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of run values, got shape {x.shape}")
    if x.size == 0 and not allow_empty:
        raise ValueError(f"{name}: no values (at least one run is needed)")
    bad = np.flatnonzero(np.isnan(x))
    if bad.size:
        raise ValueError(f"{name} contains NaN at position(s) {bad[:5].tolist()}"
                         f"{' ...' if bad.size > 5 else ''}: a NaN is neither a loss nor a divergence "
                         "(record a diverged run as +inf)")
    return x


def _check_boot(n_boot, level=None) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    if level is not None and not (0.0 < level < 1.0):
        raise ValueError(f"level must lie in (0, 1), got {level!r}")


def _oriented(x: np.ndarray, lower_is_better: bool) -> np.ndarray:
    """Values with "better" meaning "smaller": negated when higher is better."""
    return x if lower_is_better else -x
