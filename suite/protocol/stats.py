"""The protocol's statistics: pure functions over arrays and tables of results.

Nothing here trains, reads files or draws figures; every random draw comes
from ``numpy.random.default_rng(seed)``, so each result is a function of its
arguments alone (same inputs and seed, same numbers, bit for bit).

Conventions shared by every function:

- **A run is the unit of replication.** Bootstrap intervals resample runs
  (seeds), never evaluation points within a run.
- **A diverged run is a result, not missing data.** It enters as +inf loss
  (or +inf time-to-target) and is never dropped: dropping it would make an
  unstable optimiser look better than it is. Statistics that an inf makes
  infinite (the mean) say so by being inf; the median and the rank-based
  statistics stay finite while fewer than half the runs diverge.
- **NaN is an error.** A NaN is neither a loss nor a divergence; every
  function refuses it with a ValueError that names the argument.
- **Orientation.** ``lower_is_better=True`` (the default) is for losses,
  error rates and times; ``False`` for accuracies. "Better" always follows it.
- **Percentile intervals are order statistics.** For B bootstrap statistics
  sorted s_(1) <= ... <= s_(B) and level 1 - alpha, the interval is
  [s_(ceil(B alpha/2)), s_(ceil(B (1 - alpha/2)))] (the inverted empirical
  CDF, no interpolation: interpolating between a finite value and inf, or
  between two infs, is undefined).

Contents:

- :func:`bootstrap_ci`: percentile bootstrap interval of a statistic of runs;
- :func:`prob_better`: bootstrap probability that A's mean beats B's;
- :func:`prob_run_beats`: exact probability that a random run of A beats a
  random run of B (the common-language effect size);
- :func:`first_reach`, :func:`reach_summary`: time-to-target with censoring;
- :func:`performance_ratios`, :func:`performance_profile`,
  :func:`tau_grid`, :func:`profile_score`: Dolan-More performance profiles
  and AlgoPerf's score;
- :func:`expected_best_of_k`, :func:`quantile_best_of_k`,
  :func:`budget_curve`: what a tuning budget of k trials buys.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

# Elements per resampled block: bounds memory (16 MB of float64) however
# large n x n_boot is, without changing the numbers (the blocks are drawn
# from one generator in order).
_BLOCK = 2_000_000


# --------------------------------------------------------------------------
# validation helpers


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


# --------------------------------------------------------------------------
# the bootstrap


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
    """stat of n_boot resamples of x (with replacement, size len(x))."""
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
    x = _as_runs(values, "values")
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


# --------------------------------------------------------------------------
# time to target, with censoring


def _as_bool(col: pd.Series, name: str) -> pd.Series:
    if col.dtype == bool:
        return col
    mapped = col.map({True: True, False: False, "True": True, "False": False,
                      "true": True, "false": False})
    if mapped.isna().any():
        bad = col[mapped.isna()].iloc[0]
        raise ValueError(f"column {name!r}: {bad!r} is not a boolean")
    return mapped.astype(bool)


def first_reach(df: pd.DataFrame, metric: str, target: float, lower_is_better: bool = True,
                time_col: str = "step", *, keep: Sequence[str] = ()) -> pd.DataFrame:
    """When each run first reaches ``target``: one row per run, never dropping one.

    df: the long table, one row per run x evaluation point, with columns
        ``cell`` (the run), ``time_col`` (``step``, ``epoch``, ``wall_time``,
        ...) and ``metric``; ``diverged`` is used where present.
    target: the run reaches it at an evaluation point where
        metric <= target (``lower_is_better``, a loss) or >= target (an
        accuracy). A point flagged ``diverged`` never counts (its metric is
        NaN or garbage), nor does a NaN metric.
    keep: columns constant within a run (optimizer, lr, seed, ...) to copy
        into the result; a column that varies within a run is a ValueError.

    Returns a frame in the order runs first appear, with columns ``cell``;
    ``time``: the smallest ``time_col`` value at which the run reaches the
    target (the first hit; a later divergence does not undo it), +inf when
    it never does; ``reached`` (bool); ``observed_until``: the run's largest
    ``time_col`` value (how long it was watched); then ``keep``.

    Censoring: a run that never reaches the target within its budget (it
    ran out of epochs, stopped as stable, or diverged) is right-censored --
    its time is only known to exceed ``observed_until``. It is kept with
    time = +inf ("not within the budget"), so that fractions count it and
    medians rank it last; dropping it would report the time of the lucky
    runs only.
    """
    cols = ["cell", time_col, metric]
    missing = [c for c in [*cols, *keep] if c not in df.columns]
    if missing:
        raise ValueError(f"first_reach: the table has no column(s) {missing} "
                         f"(it has {list(df.columns)})")
    target = float(target)
    if math.isnan(target):
        raise ValueError("first_reach: target is NaN")
    t = pd.to_numeric(df[time_col], errors="raise").to_numpy(dtype=np.float64)
    if np.isnan(t).any():
        raise ValueError(f"first_reach: column {time_col!r} has NaN times")
    v = pd.to_numeric(df[metric], errors="raise").to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        hit = (v <= target) if lower_is_better else (v >= target)   # NaN compares False
    if "diverged" in df.columns:
        hit &= ~_as_bool(df["diverged"], "diverged").to_numpy()
    cell = df["cell"].to_numpy()
    if pd.isna(cell).any():
        raise ValueError("first_reach: column 'cell' has missing run ids")
    first = pd.Series(np.where(hit, t, np.inf)).groupby(cell, sort=False).min()
    out = pd.DataFrame({"cell": first.index, "time": first.to_numpy(dtype=np.float64)})
    out["reached"] = np.isfinite(out["time"].to_numpy())
    out["observed_until"] = pd.Series(t).groupby(cell, sort=False).max().reindex(first.index).to_numpy()
    for c in keep:
        g = df[c].reset_index(drop=True).groupby(cell, sort=False)
        varies = g.nunique(dropna=False)
        if (varies > 1).any():
            raise ValueError(f"first_reach: column {c!r} varies within run {varies[varies > 1].index[0]!r}")
        out[c] = g.first().reindex(first.index).to_numpy()
    return out


def reach_summary(times, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """How many runs reached the target, and how fast: a dict.

    times: the frame from :func:`first_reach` (its ``time`` column) or one
        time per run, +inf for a run that never reached the target.

    Keys: ``runs`` (all runs), ``reached`` (finite times), ``fraction``
    (reached / runs), ``median`` (the median time over ALL runs, never-reached
    ones as +inf), ``median_lo``, ``median_hi`` (its percentile bootstrap
    interval, :func:`bootstrap_ci` with np.median, same n_boot, level, seed).
    With no runs, ``fraction`` and the median are NaN; with one, the interval
    is (nan, nan) as in :func:`bootstrap_ci`.

    Why the median: under censoring the mean is not estimable -- one run
    that never reaches the target makes it +inf, and leaving such runs out
    (the mean over the reached ones) answers a different, flattering
    question ("how fast are the runs that happen to succeed"). The median
    needs only the ranks: a never-reached run is slower than every reached
    one, which is all the median uses, so it is exact while MORE than half
    the runs reached the target. When fewer than half did it is +inf
    ("the typical run does not reach it within the budget"); with exactly
    half (even n) the middle pair straddles a censored run and it is +inf
    too. Its interval's upper end is +inf whenever enough resamples have a
    censored median; the report prints it as such.
    """
    if isinstance(times, pd.DataFrame):
        if "time" not in times.columns:
            raise ValueError("reach_summary: the frame has no 'time' column (pass first_reach's result)")
        times = times["time"]
    t = _as_runs(times, "times", allow_empty=True)
    runs = int(t.size)
    reached = int(np.isfinite(t).sum())
    if runs == 0:
        return {"runs": 0, "reached": 0, "fraction": math.nan,
                "median": math.nan, "median_lo": math.nan, "median_hi": math.nan}
    med, lo, hi = bootstrap_ci(t, stat=np.median, n_boot=n_boot, level=level, seed=seed)
    return {"runs": runs, "reached": reached, "fraction": reached / runs,
            "median": med, "median_lo": lo, "median_hi": hi}


# --------------------------------------------------------------------------
# performance profiles


def _times_frame(times: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(times, pd.DataFrame):
        raise ValueError("times: expected a DataFrame indexed by workload, one column per optimiser")
    if times.shape[0] == 0 or times.shape[1] == 0:
        raise ValueError(f"times: empty frame (shape {times.shape})")
    try:
        t = times.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"times: not numbers ({exc})") from None
    a = t.to_numpy()
    if np.isnan(a).any():
        w, o = np.argwhere(np.isnan(a))[0]
        raise ValueError(f"times: NaN for workload {t.index[w]!r}, optimiser {t.columns[o]!r} "
                         "(+inf means never reached)")
    if (a <= 0).any():
        w, o = np.argwhere(a <= 0)[0]
        raise ValueError(f"times: {a[w, o]!r} for workload {t.index[w]!r}, optimiser {t.columns[o]!r}; "
                         "times must be > 0 (a ratio to a zero time is undefined: a target met at "
                         "initialisation is too easy to rank optimisers)")
    return t


def performance_ratios(times: pd.DataFrame) -> pd.DataFrame:
    """r[w, s] = t[w, s] / min_s' t[w, s']: each time over the workload's best.

    1 for the fastest optimiser on a workload, +inf for one that never
    reached the target (t = +inf), and +inf for every optimiser on a workload
    none of them solved (inf / inf is taken as +inf: unsolved, not NaN).
    Times must be > 0 and not NaN (ValueError naming the entry).
    """
    t = _times_frame(times)
    best = t.min(axis=1)
    r = t.div(best, axis=0)
    r.loc[~np.isfinite(best.to_numpy())] = np.inf
    return r


def performance_profile(times: pd.DataFrame, taus) -> pd.DataFrame:
    """Dolan and More's (2002) performance profile, as AlgoPerf scores it.

    times: indexed by workload, one column per optimiser; each entry a
        time-to-target (steps, seconds, ...; > 0), +inf for never reached.
    taus: the ratios at which to evaluate rho (finite numbers; the profile is
        0 below 1 by construction).

    With r[w, s] = t[w, s] / min_s' t[w, s'] (:func:`performance_ratios`),

        rho_s(tau) = |{w : r[w, s] <= tau}| / W,

    the fraction of ALL W workloads on which optimiser s is within a factor
    tau of the best. rho_s(1) is the fraction it wins (ties count for each),
    rho_s(tau) as tau grows is the fraction it solves at all.

    A workload that no optimiser solves is COUNTED, as unsolved for every
    optimiser (its ratios are +inf), not dropped: the denominator stays the
    suite's W workloads, as in AlgoPerf's scoring, so no rho reaches 1 and
    the profile shows that the suite holds a workload nobody solves;
    dropping it would silently change what "fraction of workloads" means
    from one comparison to the next. The workloads concerned are listed in
    ``result.attrs["unsolved"]``; ``result.attrs["n_workloads"]`` is W.

    Returns a frame indexed by tau (named "tau", in the order given), one
    column per optimiser.
    """
    r = performance_ratios(times)
    tau = np.asarray(list(taus) if not isinstance(taus, np.ndarray) else taus, dtype=np.float64).ravel()
    if tau.size == 0 or not np.isfinite(tau).all():
        raise ValueError("taus: need at least one tau, all finite (rho(inf) would count unsolved workloads)")
    rv = r.to_numpy()
    rho = (rv[None, :, :] <= tau[:, None, None]).sum(axis=1) / rv.shape[0]
    out = pd.DataFrame(rho, index=pd.Index(tau, name="tau"), columns=r.columns)
    out.attrs["unsolved"] = [w for w, ok in zip(r.index, np.isfinite(rv).any(axis=1)) if not ok]
    out.attrs["n_workloads"] = int(rv.shape[0])
    return out


def tau_grid(tau_max: float = 4.0, num: int = 1000) -> np.ndarray:
    """``num`` log-spaced taus from exactly 1 to exactly ``tau_max`` (> 1), the
    grid :func:`profile_score` integrates over. Log spacing puts more points
    near 1, where the ratios of competitive optimisers fall."""
    if not (tau_max > 1 and math.isfinite(tau_max)):
        raise ValueError(f"tau_max must be finite and > 1, got {tau_max!r}")
    if num < 2:
        raise ValueError(f"num must be >= 2, got {num!r}")
    g = np.geomspace(1.0, tau_max, num)
    g[0], g[-1] = 1.0, tau_max
    return g


def profile_score(profile: pd.DataFrame, tau_max: float = 4.0) -> pd.Series:
    """AlgoPerf's score: the normalised area under each optimiser's profile,

        B_s = 1/(tau_max - 1) * integral_1^tau_max rho_s(tau) dtau,

    in [0, 1]: 1 for an optimiser that is fastest on every workload, 0 for
    one that is never within tau_max of the best. AlgoPerf uses tau_max = 4.

    The integral is the trapezoid rule over the profile's own taus in
    [1, tau_max] (in tau, whatever their spacing; :func:`tau_grid` gives a
    log-spaced one). The grid must contain 1 and tau_max themselves (the
    area is never extrapolated; a ValueError otherwise). rho is a step
    function, so the trapezoid errs only on the intervals holding a jump,
    by at most half the interval's width times the jump: the total error is
    at most max_i (tau_{i+1} - tau_i) / (2 (tau_max - 1)) -- under 0.001 on
    tau_grid(4.0, 1000). The exact value, from the ratios, is
    (1/W) sum_w max(0, tau_max - r_w) / (tau_max - 1).

    Returns a Series indexed by optimiser, named "score".
    """
    if not (tau_max > 1 and math.isfinite(tau_max)):
        raise ValueError(f"tau_max must be finite and > 1, got {tau_max!r}")
    taus = profile.index.to_numpy(dtype=np.float64)
    order = np.argsort(taus, kind="stable")
    taus, rho = taus[order], profile.to_numpy(dtype=np.float64)[order]
    tol = 1e-9 * tau_max
    for need in (1.0, tau_max):
        if not np.any(np.abs(taus - need) <= tol):
            raise ValueError(f"profile_score: the profile's taus do not contain {need!r} "
                             f"(they span {taus.min()!r}..{taus.max()!r}); evaluate it on "
                             f"tau_grid({tau_max!r})")
    inside = (taus >= 1.0 - tol) & (taus <= tau_max + tol)
    x, y = taus[inside], rho[inside]
    area = (np.diff(x)[:, None] * (y[1:] + y[:-1]) / 2).sum(axis=0)
    return pd.Series(area / (tau_max - 1.0), index=profile.columns, name="score")


# --------------------------------------------------------------------------
# tuning budgets


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
