"""How far a comparison's conclusions hold: the profile score with its
interval, how wide an optimiser's good learning rates are (tunability), and
whether the ranking at the end was already the ranking part-way through.

Every interval is a percentile bootstrap over runs (:mod:`.bootstrap`'s
method), from ``numpy.random.default_rng(seed)``, so each result is a
function of its inputs.
"""

from __future__ import annotations

import math

import numpy as np

from .bootstrap import _order_interval
from .common import _check_boot


def scores_from_times(times: np.ndarray, tau_max: float = 4.0) -> np.ndarray:
    """The performance-profile score of each optimiser (the last axis) from
    times to target (..., W, S), +inf for not reached: the exact area of
    :func:`.profiles.profile_score`,

        B_s = (1/W) sum_w max(0, tau_max - r_ws) / (tau_max - 1),

    with r_ws = t_ws / min_s' t_ws' (+inf on a workload nobody solved)."""
    t = np.asarray(times, dtype=np.float64)
    best = t.min(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(np.isfinite(best), t / best, np.inf)
    return np.clip(tau_max - r, 0.0, None).mean(axis=-2) / (tau_max - 1.0)


def score_interval(runs: dict, workloads, optimizers, tau_max: float = 4.0, n_boot: int = 2000,
                   level: float = 0.95, seed: int = 0) -> dict:
    """Each optimiser's profile score with a bootstrap interval, and how sure
    the top one's lead is.

    runs: (workload, optimizer) -> each confirmation run's steps to the
    target (+inf: never reached). A resample draws each (workload,
    optimiser)'s runs with replacement, takes their median time (inf when
    fewer than half reach the target, as :func:`.target.reach_summary`),
    and scores the resampled profile. Returns ``{"score": {o: (point, lo,
    hi)}, "top": o1, "second": o2, "p_top": P(o1's score > o2's), ties
    half}``; with fewer than two optimisers no "second"."""
    _check_boot(n_boot, level)
    rng = np.random.default_rng(seed)
    W, S = len(workloads), len(optimizers)
    point = np.full((W, S), np.inf)
    boot = np.full((n_boot, W, S), np.inf)
    for i, w in enumerate(workloads):
        for j, o in enumerate(optimizers):
            t = np.sort(np.asarray(runs.get((w, o), []), dtype=np.float64))
            if t.size == 0:
                continue
            point[i, j] = np.median(t)
            boot[:, i, j] = np.median(t[rng.integers(0, t.size, size=(n_boot, t.size))], axis=1)
    s0, sb = scores_from_times(point, tau_max), scores_from_times(boot, tau_max)
    lo, hi = _order_interval(sb, level, axis=0)
    out = {"score": {o: (float(s0[j]), float(lo[j]), float(hi[j])) for j, o in enumerate(optimizers)}}
    order = np.argsort(-s0, kind="stable")
    out["top"] = optimizers[order[0]]
    if S >= 2:
        a, b = sb[:, order[0]], sb[:, order[1]]
        out["second"] = optimizers[order[1]]
        out["p_top"] = float(np.mean(a > b) + 0.5 * np.mean(a == b))
    return out


def good_lr_width(lrs, scores: np.ndarray, rel: float = 0.05) -> float:
    """The width, in decades, of the run of consecutive grid lrs around the
    best one whose mean metric lies within ``rel`` (relative) of the best
    mean: log10(highest / lowest) of that run, 0 when the best stands
    alone. ``scores``: (lrs, seeds) final metrics (lower is better, +inf
    diverged); lrs ascending."""
    means = np.mean(scores, axis=1)
    if not np.isfinite(means).any():
        return math.nan
    b = int(np.argmin(means))
    bound = means[b] + rel * abs(means[b])
    lo = hi = b
    while lo > 0 and means[lo - 1] <= bound:
        lo -= 1
    while hi < len(means) - 1 and means[hi + 1] <= bound:
        hi += 1
    return float(math.log10(lrs[hi] / lrs[lo]))


def tunability(lrs, scores, rel: float = 0.05, n_boot: int = 2000, level: float = 0.95,
               seed: int = 0) -> tuple[float, float, float]:
    """(width, lo, hi): :func:`good_lr_width` and its bootstrap interval
    over the tuning seeds (the columns of ``scores``, resampled with
    replacement; with one seed, no interval)."""
    _check_boot(n_boot, level)
    lrs = np.asarray(lrs, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    point = good_lr_width(lrs, scores, rel)
    if scores.shape[1] < 2:
        return point, math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, scores.shape[1], size=(n_boot, scores.shape[1]))
    widths = np.array([good_lr_width(lrs, scores[:, i], rel) for i in idx])
    lo, hi = _order_interval(widths, level)
    return point, float(lo), float(hi)


def kendall_tau(a, b) -> float:
    """Kendall's tau-b between two score vectors over the same optimisers
    (ties allowed; +inf is a value, and equal infinities tie); NaN when
    either vector is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    i, j = np.triu_indices(a.size, k=1)
    with np.errstate(invalid="ignore"):
        da = np.where(a[i] == a[j], 0.0, np.sign(a[i] - a[j]))
        db = np.where(b[i] == b[j], 0.0, np.sign(b[i] - b[j]))
    n0, n1, n2 = i.size, int((da == 0).sum()), int((db == 0).sum())
    if n0 - n1 == 0 or n0 - n2 == 0:
        return math.nan
    return float((da * db).sum() / math.sqrt((n0 - n1) * (n0 - n2)))


def ranking_agreement(early, final, n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float]:
    """Kendall's tau between the optimisers' mean metric part-way and at the
    end of the budget, with a bootstrap interval. ``early``, ``final``: per
    optimiser, its runs' metric at the two times (the same runs, in the same
    order; +inf: diverged by then), so a resample draws each optimiser's
    runs once for both."""
    _check_boot(n_boot, level)
    early = [np.asarray(e, dtype=np.float64) for e in early]
    final = [np.asarray(f, dtype=np.float64) for f in final]
    point = kendall_tau([e.mean() for e in early], [f.mean() for f in final])
    rng = np.random.default_rng(seed)
    taus = np.empty(n_boot)
    for k in range(n_boot):
        picks = [rng.integers(0, e.size, size=e.size) for e in early]
        taus[k] = kendall_tau([e[p].mean() for e, p in zip(early, picks)],
                              [f[p].mean() for f, p in zip(final, picks)])
    taus = taus[np.isfinite(taus)]
    if taus.size == 0:
        return point, math.nan, math.nan
    lo, hi = _order_interval(taus, level)
    return point, float(lo), float(hi)


def mean_difference(a, b, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(mean(a) - mean(b), lo, hi): the difference of two sets of runs'
    means with a bootstrap interval (each set resampled on its own, as
    :func:`.bootstrap.prob_better`); +inf where a resample of ``a`` holds a
    diverged run (+inf), -inf where only ``b``'s does."""
    _check_boot(n_boot, level)
    x, y = np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64))
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore"):
        point = float(x.mean() - y.mean())
        d = x[rng.integers(0, x.size, (n_boot, x.size))].mean(axis=1) - \
            y[rng.integers(0, y.size, (n_boot, y.size))].mean(axis=1)
    if np.isnan(point) or np.isnan(d).any():  # both sides infinite: no difference to give
        return math.nan, math.nan, math.nan
    lo, hi = _order_interval(d, level)
    return point, float(lo), float(hi)
