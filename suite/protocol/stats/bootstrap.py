"""Percentile bootstrap intervals over runs, and the probability that one
optimiser beats another (of the means, and of one run against one run)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .common import _BLOCK, _as_runs, _check_boot, _oriented


def _apply_stat(stat: Callable, sample: np.ndarray, vectorised: list) -> np.ndarray:
    """stat of each row of ``sample`` (m, n). Tries ``stat(sample, axis=1)``
    once (NumPy reductions) and falls back to one call per row for a stat that
    takes no axis; ``vectorised`` remembers which worked."""
    with np.errstate(invalid="ignore"):  # inf - inf inside a stat: caught as NaN below
        if vectorised[0] is not False:
            try:
                out = np.asarray(stat(sample, axis=1), dtype=np.float64)
                if out.shape == (sample.shape[0],):
                    vectorised[0] = True
                    return out
            except TypeError:
                pass
            vectorised[0] = False
        return np.array([float(stat(row)) for row in sample], dtype=np.float64)


def _boot_stats(x: np.ndarray, stat: Callable, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """stat of n_boot resamples of x (with replacement, size len(x)), drawn
    from x sorted: the runs' order (the order their files were read in) is
    not information, and must not move an interval."""
    x = np.sort(x)
    n = x.size
    out = np.empty(n_boot)
    rows = max(1, _BLOCK // n)
    vectorised = [None]
    for start in range(0, n_boot, rows):
        m = min(rows, n_boot - start)
        out[start:start + m] = _apply_stat(stat, x[rng.integers(0, n, size=(m, n))], vectorised)
    return out


def _order_interval(stats: np.ndarray, level: float, axis: int = 0):
    """The percentile interval as order statistics along ``axis`` (see the
    module docstring); the small epsilon keeps B alpha/2 = 50.000000001 at 50."""
    b = stats.shape[axis]
    alpha = 1.0 - level
    k_lo = min(b, max(1, math.ceil(b * alpha / 2 - 1e-9)))
    k_hi = min(b, max(1, math.ceil(b * (1 - alpha / 2) - 1e-9)))
    s = np.sort(stats, axis=axis)
    return np.take(s, k_lo - 1, axis=axis), np.take(s, k_hi - 1, axis=axis)


def bootstrap_ci(values, stat: Callable = np.mean, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """(point, lo, hi): ``stat`` of the runs and its percentile bootstrap interval.

    values: one number per run (a final loss, a time-to-target); +inf for a
        diverged run (or a run that never reached its target) is allowed and
        kept; NaN is a ValueError.
    stat: a statistic of a 1-D array (np.mean, np.median, ...). One that
        accepts ``axis=`` is applied to a block of resamples at once; any other
        callable is called once per resample.

    Method (Efron's percentile bootstrap): draw B = n_boot resamples
    x*_b = (x_{I_b1}, ..., x_{I_bn}) with I_bj uniform on {1..n} independently
    (with replacement, the same size n as the data), compute s_b = stat(x*_b),
    and return point = stat(x) with lo, hi the alpha/2 and 1 - alpha/2
    empirical quantiles of s_1..s_B as order statistics (alpha = 1 - level).
    For the mean of n runs with standard deviation sigma the interval is close
    to mean +- 1.96 sigma / sqrt(n) at level 0.95; for skewed data at small n
    it under-covers a little (about 0.92 for n = 30 exponential runs).

    Infinities: a statistic that an inf dominates is inf, and so is each end
    of the interval whose order statistic falls on an infinite resample:
    the mean of runs one of which diverged is inf, and its interval is
    (finite, inf) as long as enough resamples (probability (1 - d/n)^n for d
    diverged runs of n) miss the diverged runs. The median stays finite
    while fewer than half the runs are inf. A statistic that turns NaN (e.g.
    a standard deviation of values containing inf) is a ValueError.

    One run (n = 1) gives no interval: the result is (stat(x), nan, nan),
    never a zero-width interval that would claim certainty; a report prints
    the ends as "n/a" (``suite.reporting.markdown.fmt`` does). The interval
    of n >= 2 equal values has zero width (every resample is equal).

    Deterministic: the same values, stat, n_boot, level and seed give the
    same three numbers.
    """
    x = np.sort(_as_runs(values, "values"))  # the runs' order must not move the point by a rounding
    _check_boot(n_boot, level)
    with np.errstate(invalid="ignore"):
        point = float(stat(x))
    if math.isnan(point):
        raise ValueError("stat returned NaN on the values (a spread of values containing inf?)")
    if x.size == 1:
        return point, math.nan, math.nan
    s = _boot_stats(x, stat, n_boot, np.random.default_rng(seed))
    if np.isnan(s).any():
        raise ValueError("stat returned NaN on a bootstrap resample (a spread of values containing inf?)")
    lo, hi = _order_interval(s, level)
    return point, float(lo), float(hi)


def prob_better(a, b, lower_is_better: bool = True, n_boot: int = 2000, seed: int = 0, *,
                stat: Callable = np.mean) -> float:
    """Bootstrap probability that A's mean is better than B's.

    A and B are resampled independently (each with replacement, at its own
    size, from one generator: A's resamples first, then B's); the result is

        P = (1/B) sum_b [ 1{stat(A*_b) better than stat(B*_b)} + 1/2 1{equal} ],

    "better" meaning smaller when ``lower_is_better`` (larger otherwise). It
    estimates how often a rerun of both experiments (same numbers of runs)
    would rank A above B: near 1/2 when the two cannot be told apart, near 1
    (or 0) when A is clearly better (worse). It is not a p-value; 1 - P is
    roughly the one-sided bootstrap p-value for "A is not better".

    Infinities (diverged runs) compare as numbers: a resample of A holding a
    diverged run has mean +inf, worse than any finite mean of B; two infinite
    means tie (1/2). With one run each, every resample repeats the data and
    P is 0, 1/2 or 1. ``stat`` (keyword only) replaces the mean, e.g.
    np.median when divergences are common. NaN values are a ValueError.
    """
    x = _as_runs(a, "a")
    y = _as_runs(b, "b")
    _check_boot(n_boot)
    rng = np.random.default_rng(seed)
    sa = _boot_stats(x, stat, n_boot, rng)
    sb = _boot_stats(y, stat, n_boot, rng)
    if np.isnan(sa).any() or np.isnan(sb).any():
        raise ValueError("stat returned NaN on a bootstrap resample")
    if not lower_is_better:
        sa, sb = -sa, -sb
    return float(np.mean((sa < sb) + 0.5 * (sa == sb)))


def prob_run_beats(a, b, lower_is_better: bool = True) -> float:
    """Exact probability that a random run of A beats a random run of B.

        P = (1 / (n m)) sum_i sum_j [ 1{a_i better than b_j} + 1/2 1{a_i = b_j} ]

    over all n x m pairs: the common-language effect size (McGraw and Wong
    1992), i.e. the Mann-Whitney U statistic of A divided by n m (U counts
    the pairs A wins, ties 1/2). 1/2 means neither tends to win a head-to-head
    run. Unlike :func:`prob_better` it is about single runs, not means, so it
    does not tend to 0 or 1 as the number of runs grows: it converges to the
    population P(X better than Y).

    For a loss, +inf (a diverged run) loses to every finite run and ties
    with another +inf. Computed exactly by sorting, O((n + m) log m). NaN is a ValueError.
    """
    x = _oriented(_as_runs(a, "a"), lower_is_better)
    y = np.sort(_oriented(_as_runs(b, "b"), lower_is_better))
    m = y.size
    below = np.searchsorted(y, x, side="left")    # b_j < a_i: B wins
    at_or_below = np.searchsorted(y, x, side="right")
    wins = (m - at_or_below).sum(dtype=np.float64)  # b_j > a_i: A wins
    ties = (at_or_below - below).sum(dtype=np.float64)
    return float((wins + 0.5 * ties) / (x.size * m))
