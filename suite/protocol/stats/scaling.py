"""How the best learning rate moves with the batch size: best lr ∝ B^k.

The lecture's mini-batches trade the gradient's noise against the steps a
budget of epochs allows. Two rules are in use: linear scaling (k = 1; Goyal
et al. 2017, for SGD) and square-root scaling (k = 0.5; Hoffer et al. 2017,
Malladi et al. 2022 for Adam). Which holds is an empirical question per
optimiser and workload, answered here from a protocol's tuning runs.

For each batch size B_i the best lr is located on its bracketed grid
(:func:`best_log_lr`), and k is the least-squares slope of log10(lr*_i)
on log10(B_i). Its interval is a percentile bootstrap over the tuning
seeds: one resample draws the seeds with replacement, the same draw for
every batch size (a seed fixes the same split and initialisation at each),
and refits.
"""

from __future__ import annotations

import math

import numpy as np

from .bootstrap import _order_interval
from .common import _check_boot


def best_log_lr(log_lrs, means) -> float:
    """log10 of the best lr on a grid: the point with the lowest mean
    metric, refined to the vertex of the parabola through it and its two
    neighbours (in log10 lr; kept between those neighbours). At the grid's
    edge, or beside a diverged (+inf) neighbour, the grid point itself. NaN
    when no mean is finite."""
    x, y = np.asarray(log_lrs, dtype=np.float64), np.asarray(means, dtype=np.float64)
    if not np.isfinite(y).any():
        return math.nan
    b = int(np.argmin(y))
    if b == 0 or b == len(y) - 1 or not np.isfinite(y[b - 1:b + 2]).all():
        return float(x[b])
    (x0, x1, x2), (y0, y1, y2) = x[b - 1:b + 2], y[b - 1:b + 2]
    # The vertex of the parabola through three points (y1 lowest, so it opens upwards).
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    if den == 0:
        return float(x1)
    vertex = x1 - 0.5 * ((x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)) / den
    return float(min(max(vertex, x0), x2))


def _slope(log_b: np.ndarray, log_lr: np.ndarray) -> float:
    ok = np.isfinite(log_lr)
    if ok.sum() < 2:
        return math.nan
    xb, yb = log_b[ok], log_lr[ok]
    xc = xb - xb.mean()
    return float((xc * (yb - yb.mean())).sum() / (xc * xc).sum())


def scaling_exponent(batch_sizes, grids, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """The exponent k of best lr ∝ batch^k with its bootstrap interval.

    batch_sizes: B_i (> 0, at least two distinct); grids: for each B_i a
    pair (lrs ascending, scores (lrs, seeds)), final metrics, lower better,
    +inf diverged; column j is the same seed at every batch size. Returns
    ``{"k", "lo", "hi", "best_lr": [lr*_i], "residual": the largest
    |log10 lr*_i - fit| in decades}``; no interval with one seed."""
    _check_boot(n_boot, level)
    log_b = np.log10(np.asarray(batch_sizes, dtype=np.float64))
    if log_b.size != len(grids) or np.unique(log_b).size < 2:
        raise ValueError(f"need one grid per batch size and at least two batch sizes, got {list(batch_sizes)} "
                         f"and {len(grids)} grids")
    seeds = {np.asarray(s).shape[1] for _, s in grids}
    if len(seeds) != 1:
        raise ValueError(f"every batch size needs the same tuning seeds (columns), got {sorted(seeds)}")
    n = seeds.pop()
    logs = [np.log10(np.asarray(lrs, dtype=np.float64)) for lrs, _ in grids]
    scores = [np.asarray(s, dtype=np.float64) for _, s in grids]
    best = np.array([best_log_lr(x, s.mean(axis=1)) for x, s in zip(logs, scores)])
    k = _slope(log_b, best)
    ok = np.isfinite(best)
    residual = math.nan
    if ok.sum() >= 2:
        fit = best[ok].mean() + k * (log_b[ok] - log_b[ok].mean())
        residual = float(np.abs(best[ok] - fit).max())
    out = {"k": k, "lo": math.nan, "hi": math.nan, "best_lr": (10.0 ** best).tolist(), "residual": residual}
    if n < 2 or math.isnan(k):
        return out
    rng = np.random.default_rng(seed)
    ks = np.empty(n_boot)
    with np.errstate(invalid="ignore"):
        for r in range(n_boot):
            pick = rng.integers(0, n, size=n)
            ks[r] = _slope(log_b, np.array([best_log_lr(x, s[:, pick].mean(axis=1)) for x, s in zip(logs, scores)]))
    ks = ks[np.isfinite(ks)]
    if ks.size:
        lo, hi = _order_interval(ks, level)
        out["lo"], out["hi"] = float(lo), float(hi)
    return out


#: The scaling rules a fitted exponent is held against.
RULES = {"linear": 1.0, "square root": 0.5}


def verdict(lo: float, hi: float) -> str:
    """Which rules the interval [lo, hi] of k admits: "linear", "square
    root", "both (the interval is too wide to tell)", "neither (k = ...)" or
    "no interval"."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "no interval"
    held = [name for name, k in RULES.items() if lo <= k <= hi]
    if len(held) == 1:
        return held[0]
    if held:
        return "both (the interval is too wide to tell)"
    return "neither"
