"""Dolan-More performance profiles over workloads, and AlgoPerf's score: the area under the profile."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


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
