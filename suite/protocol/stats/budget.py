"""What a tuning budget of k trials buys: the expected (or a quantile of the) best of k draws."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from .common import _as_runs, _check_boot, _oriented
from .bootstrap import _boot_stats, _order_interval


def _check_ks(ks) -> np.ndarray:
    k = np.atleast_1d(np.asarray(ks))
    ok = k.size > 0 and k.ndim == 1 and (
        k.dtype.kind in "iu"
        or (k.dtype.kind == "f" and bool(np.all(np.isfinite(k))) and bool(np.all(k == np.round(k)))))
    if not ok or (k < 1).any():
        raise ValueError(f"k must be integers >= 1, got {ks!r}")
    return k.astype(np.int64)


def _grid_scores(scores, name: str, lower_is_better: bool) -> np.ndarray:
    """Oriented (smaller is better) scores; the diverged side's infinity
    (+inf for a loss, -inf for an accuracy) allowed, the other refused."""
    x = _oriented(_as_runs(scores, name), lower_is_better)
    if np.isneginf(x).any():
        raise ValueError(f"{name}: {'-inf' if lower_is_better else '+inf'} is not a score "
                         f"when {'lower' if lower_is_better else 'higher'} is better "
                         f"(a diverged point is {'+inf' if lower_is_better else '-inf'})")
    return x


def _expected_min_sorted(v: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """E[min of k draws] for rows v (B, n) sorted ascending, finite or +inf:
    (B, len(ks)). Tail-sum form (summation by parts of the order-statistic
    formula): E = v_(1) + sum_{i<n} (v_(i+1) - v_(i)) ((n - i)/n)^k. Every
    term is >= 0 and shrinks with k, so the result is monotone in k in
    floating point too, and equals v_(1) exactly once the powers underflow."""
    n = v.shape[1]
    surv = (np.arange(n - 1, 0, -1, dtype=np.float64) / n)[None, :] ** ks[:, None]  # (K, n-1)
    out = np.empty((v.shape[0], ks.size))
    inf_rows = np.isinf(v[:, -1])  # every weight is > 0: one +inf point makes E infinite
    fin = ~inf_rows
    if fin.any():
        d = np.diff(v[fin], axis=1)  # (F, n-1)
        # an explicit product and sum, not a matrix product: one summation
        # order for every k keeps the floating-point result monotone in k
        out[fin] = v[fin, :1] + (d[:, None, :] * surv[None, :, :]).sum(axis=2)
    out[inf_rows] = np.inf
    return out


def _quantile_min_sorted(v: np.ndarray, ks: np.ndarray, q: float) -> np.ndarray:
    """q-quantile of the min of k draws for rows v (B, n) sorted ascending:
    v_(j) for the smallest j with P(min <= v_(j)) = 1 - ((n - j)/n)^k >= q."""
    n = v.shape[1]
    cdf = 1.0 - (np.arange(n - 1, -1, -1, dtype=np.float64) / n)[None, :] ** ks[:, None]  # (K, n)
    j = np.argmax(cdf >= q - 1e-12, axis=1)  # cdf reaches 1 at j = n, so argmax finds one
    return v[:, j]


def expected_best_of_k(scores, k: int, lower_is_better: bool = True) -> float:
    """The exact expected best score after k trials drawn uniformly WITH
    replacement from the n grid points.

    With the scores sorted best to worst, v_(1), ..., v_(n), the best of k
    draws is v_(i) or worse with probability ((n - i + 1)/n)^k, so

        E = sum_i v_(i) [(n - i + 1)^k - (n - i)^k] / n^k
          = v_(1) + sum_{i<n} (v_(i+1) - v_(i)) ((n - i)/n)^k,

    the second form (summation by parts) being the one computed: no n^k
    overflow, monotone non-increasing in k (for a loss) in floating point,
    and exactly v_(1), the best point, once ((n-1)/n)^k underflows. k = 1
    gives the mean of the scores. Ties need no care (the formula is over
    positions).

    Infinities: a diverged point (+inf loss; -inf when higher is better) has
    a positive weight for every k -- all k draws land on diverged points
    with probability (d/n)^k > 0 -- so the exact expectation is infinite
    whenever the grid holds one. That is the truth about the mean, not a
    bug; :func:`quantile_best_of_k` (e.g. the median best of k) stays finite
    while (d/n)^k < 1 - q. The other infinity and NaN are ValueErrors.
    """
    v = np.sort(_grid_scores(scores, "scores", lower_is_better))[None, :]
    e = float(_expected_min_sorted(v, _check_ks(k))[0, 0])
    return e if lower_is_better else -e


def quantile_best_of_k(scores, k: int, q: float = 0.5, lower_is_better: bool = True) -> float:
    """The q-quantile of the best score after k trials drawn uniformly with
    replacement from the n grid points (q = 0.5: the median best of k).

    P(best of k is v_(j) or better) = 1 - ((n - j)/n)^k for the scores
    sorted best to worst; the q-quantile is v_(j) for the smallest j where
    that reaches q (the inverted CDF). Finite unless (d/n)^k >= 1 - q for d
    diverged points, so it gives a usable budget curve where
    :func:`expected_best_of_k` is infinite.
    """
    if not (0.0 < q <= 1.0):
        raise ValueError(f"q must lie in (0, 1], got {q!r}")
    v = np.sort(_grid_scores(scores, "scores", lower_is_better))[None, :]
    e = float(_quantile_min_sorted(v, _check_ks(k), q)[0, 0])
    return e if lower_is_better else -e


def budget_curve(runs: pd.DataFrame, ks: Iterable[int], n_boot: int = 2000, seed: int = 0, *,
                 lower_is_better: bool = True, level: float = 0.95, quantile: float | None = None,
                 point_col: str = "hp_point", seed_col: str = "seed",
                 score_col: str = "score") -> pd.DataFrame:
    """What a tuning budget of k trials buys, with its uncertainty, from the
    runs already made.

    runs: one row per (grid point, seed) run: columns ``hp_point`` (any
        hashable label of the hyper-parameter point), ``seed`` and ``score``
        (a final loss, +inf for a diverged run); a (point, seed) pair
        appearing twice is a ValueError.
    ks: the budgets (integers >= 1).

    Point estimate: each grid point's score is the mean over its seeds,
    m_p; the curve is ``expected_best_of_k(m, k)`` for each k (or, with
    ``quantile=q``, ``quantile_best_of_k(m, k, q)``). k = 1 is the mean over
    the grid (a random trial), large k the best grid point's mean.

    Interval: percentile bootstrap (as in :func:`bootstrap_ci`) over
    resamples that redraw, within each grid point independently, its seeds
    with replacement (same count), recompute every m_p and then the curve.
    No new runs are needed; the interval reflects seed noise in the grid
    points' means, not the choice of grid. (Seeds shared across grid points
    are treated as independent.)

    Returns a frame indexed by k (named "k", in the order given), columns
    ``best`` (the estimate), ``lo``, ``hi``. Every bootstrap curve is
    monotone in k, so ``best``, ``lo`` and ``hi`` are each monotone too
    (non-increasing for a loss). With any grid point whose mean is infinite
    (a diverged seed), the expectation is infinite at every k (see
    :func:`expected_best_of_k`): use ``quantile=0.5`` for a finite curve.
    """
    missing = [c for c in (point_col, seed_col, score_col) if c not in runs.columns]
    if missing:
        raise ValueError(f"budget_curve: runs has no column(s) {missing} (it has {list(runs.columns)})")
    k = _check_ks(ks if np.isscalar(ks) or isinstance(ks, np.ndarray) else list(ks))
    _check_boot(n_boot, level)
    if quantile is not None and not (0.0 < quantile <= 1.0):
        raise ValueError(f"quantile must lie in (0, 1], got {quantile!r}")
    dup = runs.duplicated([point_col, seed_col])
    if dup.any():
        row = runs.loc[dup].iloc[0]
        raise ValueError(f"budget_curve: grid point {row[point_col]!r}, seed {row[seed_col]!r} "
                         "appears more than once (one row per run: pass final scores, not the long table)")
    score = _grid_scores(runs[score_col].to_numpy(), score_col, lower_is_better)
    groups = [score[idx] for idx in runs.groupby(point_col, sort=False).indices.values()]

    def curve(means: np.ndarray) -> np.ndarray:  # (B, n) grid means -> (B, K), oriented
        v = np.sort(means, axis=1)
        return _expected_min_sorted(v, k) if quantile is None else _quantile_min_sorted(v, k, quantile)

    best = curve(np.array([[g.mean() for g in groups]]))[0]
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, len(groups)))
    for p, g in enumerate(groups):  # each point's seeds resampled on their own
        boot[:, p] = _boot_stats(g, np.mean, n_boot, rng)
    lo, hi = _order_interval(curve(boot), level, axis=0)
    sign = 1.0 if lower_is_better else -1.0
    if not lower_is_better:
        lo, hi = hi, lo
    return pd.DataFrame({"best": sign * best, "lo": sign * lo, "hi": sign * hi},
                        index=pd.Index(k, name="k"))
