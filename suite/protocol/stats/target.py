"""Time to target, with censoring: a run that never reaches the target counts as +inf."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .common import _as_runs
from .bootstrap import bootstrap_ci


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
