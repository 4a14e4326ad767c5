"""Scoring a protocol: pure functions from the stored rows and ``protocol.json``
to the report's tables (the statistics themselves are in :mod:`.stats`).

Rows are the results store's long table (one per run and evaluation point,
:mod:`suite.studies.store`), with the protocol's tags ``workload`` and
``phase`` ("tune" or "confirm"), and a ``score`` column that
:func:`scored` adds: each workload's metric (the validation loss, or the
validation error 1 - accuracy), lower is better. Every number in the
report's tables comes from the confirmation runs -- fresh seeds, run at the
lr chosen on the tuning seeds -- never from the runs the choice was made on.

- :func:`scored`, :func:`last_scores`: the metric per row, and per run its final
  value ``final_score`` (+inf for a diverged run);
- :func:`confirmed`: the confirmation runs' final rows;
- :func:`ranking`: per workload and optimiser, the mean final metric with
  its 95% bootstrap interval, and the rank;
- :func:`interval`: the same for any other column (test accuracy, test loss);
- :func:`reach`: time (steps) to the workload's target, censored runs
  counted;
- :func:`profile_times`: the median steps to target per workload x
  optimiser, the input of the performance profile;
- :func:`pairwise`: per workload, P(A's mean beats B's), or P(a run of A
  beats a run of B);
- :func:`tuned`, :func:`tuning_table`, :func:`budget`: what the tuning runs
  showed;
- :func:`plateau`: whether the budget let the best optimiser level off;
- :func:`rule_targets`: the targets the documented rule gives on these runs;
- :func:`score_table`, :func:`tunability_table`, :func:`rankings_over_run`,
  :func:`defaults_against_tuned`: how far the conclusions hold (the score's
  interval, the width of the good lrs, the ranking part-way through the
  budget, what tuning bought over the defaults).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..studies import scoring as study_scoring
from . import stats

#: Bootstrap resamples for every interval and probability in the report.
N_BOOT = 2000
LEVEL = 0.95
#: The plateau check: the rank-1 optimiser's mean metric over the last tenth
#: of the epochs against the tenth centred at 75% of the budget (windows of
#: at least 3 epochs: one epoch's value is noisy); a relative fall larger
#: than this says the budget may be too short to compare at.
PLATEAU_TOLERANCE = 0.02


def phase(df: pd.DataFrame, name: str) -> pd.DataFrame:
    return df[df["phase"] == name]


def scored(df: pd.DataFrame, metrics: dict) -> pd.DataFrame:
    """``df`` with ``score``: each row's value of its workload's metric
    (``metrics``: workload -> "val_loss" or "val_error")."""
    score = df["val_loss"].astype(float).copy()
    for w, metric in metrics.items():
        if metric == "val_error":
            rows = df["workload"] == w
            score[rows] = 1.0 - df.loc[rows, "val_acc"].astype(float)
    return df.assign(score=score)


def last_scores(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run of a :func:`scored` table: its last evaluation, and
    ``final_score`` (+inf for a diverged run, so a failure loses any mean)."""
    last = study_scoring.final_runs(df)
    failed = last["diverged"] | ~np.isfinite(last["score"].astype(float))
    return last.assign(final_score=np.where(failed, np.inf, last["score"].astype(float)), diverged=failed)


def confirmed(df: pd.DataFrame) -> pd.DataFrame:
    """One row per confirmation run (:func:`last_scores`)."""
    return last_scores(phase(df, "confirm"))


def ranking(final: pd.DataFrame, optimizers, workloads) -> pd.DataFrame:
    """Per workload x optimiser: runs, diverged, the mean final metric
    (inf if a run diverged) and its bootstrap interval, the median, and
    the rank within the workload (1 = lowest mean; ties share a rank)."""
    rows = []
    for w in workloads:
        for o in optimizers:
            loss = final[(final["workload"] == w) & (final["optimizer"] == o)]["final_score"].to_numpy(float)
            if loss.size == 0:
                continue
            mean, lo, hi = stats.bootstrap_ci(loss, n_boot=N_BOOT, level=LEVEL)
            rows.append({"workload": w, "optimizer": o, "runs": loss.size,
                         "diverged": int(np.isinf(loss).sum()), "mean": mean, "lo": lo, "hi": hi,
                         "median": float(np.median(loss))})
    out = pd.DataFrame(rows)
    if len(out):
        # Rank by the mean; an infinite mean (a diverged run) ranks by its median after the finite ones.
        key = out["mean"].where(np.isfinite(out["mean"]), 1e300 + out["median"].fillna(0))
        out["rank"] = out.assign(_key=key).groupby("workload")["_key"].rank(method="min").astype(int)
    return out


def interval(final: pd.DataFrame, column: str, optimizers, workloads) -> pd.DataFrame:
    """Mean and bootstrap interval of a column (test accuracy, test loss, ...)
    over the runs that did not diverge (a diverged net predicts nothing), per
    workload x optimiser; no row where the column has no finite value (an
    accuracy on a regression workload)."""
    rows = []
    for w in workloads:
        for o in optimizers:
            runs = final[(final["workload"] == w) & (final["optimizer"] == o) & ~final["diverged"]]
            acc = runs[column].to_numpy(float)
            acc = acc[np.isfinite(acc)]
            if acc.size:
                mean, lo, hi = stats.bootstrap_ci(acc, n_boot=N_BOOT, level=LEVEL)
                rows.append({"workload": w, "optimizer": o, "mean": mean, "lo": lo, "hi": hi})
    return pd.DataFrame(rows, columns=["workload", "optimizer", "mean", "lo", "hi"])


def reach(df: pd.DataFrame, targets: dict, optimizers, workloads) -> pd.DataFrame:
    """Per workload x optimiser, over its confirmation runs: how many reached
    the workload's target (a value of its metric), the median steps to it (inf when
    fewer than half did: the runs that never reach it are counted, not
    dropped) and its bootstrap interval."""
    rows = []
    conf = phase(df, "confirm")
    for w in workloads:
        target = targets.get(w)
        if target is None:
            continue
        for o in optimizers:
            runs = conf[(conf["workload"] == w) & (conf["optimizer"] == o)]
            if runs.empty:
                continue
            times = stats.first_reach(runs, "score", target, time_col="step")
            s = stats.reach_summary(times, n_boot=N_BOOT, level=LEVEL)
            rows.append({"workload": w, "optimizer": o, "target": target, **s})
    return pd.DataFrame(rows)


def profile_times(reached: pd.DataFrame) -> pd.DataFrame:
    """Workload x optimiser median steps to target (inf: not reached by most
    runs), the input of :func:`.stats.performance_profile`."""
    return reached.pivot(index="workload", columns="optimizer", values="median")


def pairwise(final: pd.DataFrame, workload: str, optimizers, per_run: bool = False) -> pd.DataFrame:
    """P(row's mean final metric beats column's), bootstrapped over the
    confirmation runs of one workload; with ``per_run``, the exact
    probability that a random run of the row's beats one of the column's
    (ties count half: :func:`.stats.prob_run_beats`) -- how often, not how
    surely."""
    runs = {o: final[(final["workload"] == workload) & (final["optimizer"] == o)]["final_score"].to_numpy(float)
            for o in optimizers}
    names = [o for o in optimizers if runs[o].size]

    def p(a, b):
        if per_run:
            return stats.prob_run_beats(runs[a], runs[b])
        return stats.prob_better(runs[a], runs[b], n_boot=N_BOOT)

    return pd.DataFrame([[np.nan if a == b else p(a, b) for b in names] for a in names], index=names, columns=names)


def tuned(df: pd.DataFrame) -> pd.DataFrame:
    """One row per tuning run (:func:`last_scores`): what :func:`tuning_table`
    and :func:`budget` read."""
    return last_scores(phase(df, "tune"))


def tuning_table(tuned: pd.DataFrame) -> pd.DataFrame:
    """The tuning runs (:func:`tuned`) per workload x optimiser x lr: runs,
    diverged, mean final metric ``mean_score`` (:func:`suite.studies.scoring.lr_table`)."""
    return study_scoring.lr_table(tuned, ["workload", "optimizer"], "final_score")


def budget(tuned: pd.DataFrame, workload: str, optimizer: str, seed: int = 0) -> pd.DataFrame:
    """The median best final metric after k lrs (or trials) drawn at random
    from the tuning grid (k = 1 .. grid size), with a bootstrap interval over the
    tuning seeds: what a smaller tuning budget would have bought, from the
    stored runs alone. The median, not the mean: a grid that brackets the
    optimum usually holds an lr that diverges (+inf), which makes the mean
    best-of-k infinite for every k. ``tuned``: :func:`tuned`."""
    runs = tuned[(tuned["workload"] == workload) & (tuned["optimizer"] == optimizer)]
    # A grid point is an lr; a random search's point is its trial (which may share an lr).
    point = "trial" if "trial" in runs and runs["trial"].notna().all() else "lr"
    frame = pd.DataFrame({"hp_point": runs[point].to_numpy(), "seed": runs["seed"].to_numpy(),
                          "score": runs["final_score"].to_numpy(float)})
    ks = range(1, frame["hp_point"].nunique() + 1)
    return stats.budget_curve(frame, ks, n_boot=N_BOOT, seed=seed, quantile=0.5)


def plateau(conf, rank, workloads) -> dict:
    """Per workload: (optimiser, relative fall) of the rank-1 optimiser's mean
    metric between two windows (see PLATEAU_TOLERANCE); a fall above the
    tolerance says it was still improving."""
    out = {}
    for w in workloads:
        r = rank[(rank["workload"] == w) & (rank["rank"] == 1)]
        if r.empty:
            continue
        o = r["optimizer"].iloc[0]
        curve = conf[(conf["workload"] == w) & (conf["optimizer"] == o)].groupby("epoch")["score"].mean()
        curve = curve.to_numpy(float)[1:]  # epoch 0 is the untrained net
        if len(curve) < 12 or not np.isfinite(curve).all():
            continue
        width = max(3, len(curve) // 10)
        mid = int(0.75 * len(curve))
        before, end = curve[mid - width // 2:mid - width // 2 + width].mean(), curve[-width:].mean()
        out[w] = (o, float((before - end) / end))
    return out


def rule_targets(rank: pd.DataFrame, factor: float) -> dict:
    """Per workload, what the target rule gives on these runs: ``factor`` x the
    lowest mean final metric of any optimiser (to 3 significant digits), with
    that optimiser and mean -- ``{workload: (target, optimizer, mean)}``;
    workloads whose best mean is not finite are left out."""
    out = {}
    for w, g in rank.groupby("workload", sort=False):
        best = g.sort_values("mean").iloc[0]
        if np.isfinite(best["mean"]):
            out[w] = (float(f"{factor * best['mean']:.3g}"), best["optimizer"], float(best["mean"]))
    return out


#: Tunability: an lr counts as good when its mean tuning metric lies within
#: this fraction of the best lr's (DeepOBS's and Schmidt et al.'s question:
#: how much does the exact lr matter?).
GOOD_LR = 0.05
#: The fractions of the budget at which the ranking is compared with the final one.
RANK_POINTS = (0.25, 0.5)


def reach_times(df: pd.DataFrame, targets: dict, optimizers, workloads) -> dict:
    """(workload, optimizer) -> each confirmation run's steps to the
    workload's target (+inf: never reached), for the score's interval."""
    conf = phase(df, "confirm")
    out = {}
    for w in workloads:
        if targets.get(w) is None:
            continue
        for o in optimizers:
            runs = conf[(conf["workload"] == w) & (conf["optimizer"] == o)]
            if len(runs):
                out[(w, o)] = stats.first_reach(runs, "score", targets[w], time_col="step")["time"].to_numpy(float)
    return out


def score_table(df: pd.DataFrame, targets: dict, optimizers, workloads, tau_max: float) -> dict:
    """The performance-profile score of each optimiser with its bootstrap
    interval over the confirmation runs, and P(the top score beats the
    second) (:func:`.stats.score_interval`) over the workloads with a target."""
    runs = reach_times(df, targets, optimizers, workloads)
    scored_workloads = [w for w in workloads if any((w, o) in runs for o in optimizers)]
    return stats.score_interval(runs, scored_workloads, list(optimizers), tau_max, n_boot=N_BOOT, level=LEVEL)


def _lr_by_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """Tuning runs' final metrics as an (lr, seed) table, ascending lrs,
    keeping only the lrs every seed ran."""
    return runs.pivot_table(index="lr", columns="seed", values="final_score", aggfunc="first").dropna()


def tunability_table(tuned: pd.DataFrame, optimizers, workloads) -> pd.DataFrame:
    """Per workload x optimiser of a grid search: the width in decades of
    the consecutive grid lrs whose mean tuning metric is within GOOD_LR of
    the best one's, with its bootstrap interval over the tuning seeds
    (:func:`.stats.tunability`). Only lrs every tuning seed ran count."""
    rows = []
    for w in workloads:
        for o in optimizers:
            runs = tuned[(tuned["workload"] == w) & (tuned["optimizer"] == o)]
            if runs.empty:
                continue
            grid = _lr_by_seed(runs)
            if len(grid) < 2:
                continue
            width, lo, hi = stats.tunability(grid.index.to_numpy(float), grid.to_numpy(float), GOOD_LR,
                                             n_boot=N_BOOT, level=LEVEL)
            rows.append({"workload": w, "optimizer": o, "width": width, "lo": lo, "hi": hi,
                         "lrs": len(grid), "seeds": grid.shape[1]})
    return pd.DataFrame(rows, columns=["workload", "optimizer", "width", "lo", "hi", "lrs", "seeds"])


def _at_epoch(conf: pd.DataFrame, epoch: int) -> pd.Series:
    """Each run's metric at ``epoch`` (its last evaluation at or before it):
    +inf where the run had diverged by then, or its metric is not finite."""
    rows = conf[conf["epoch"] <= epoch].sort_values("epoch").groupby("cell").tail(1).set_index("cell")
    value = rows["score"].astype(float)
    return value.where(np.isfinite(value) & ~rows["diverged"].astype(bool), np.inf)


def rankings_over_run(df: pd.DataFrame, optimizers, workloads, points=RANK_POINTS) -> pd.DataFrame:
    """Per workload and fraction f of the budget: the optimisers in order of
    their mean metric over the confirmation runs at that epoch, and Kendall's
    tau between that order and the final one, with a bootstrap interval over
    the runs (:func:`.stats.ranking_agreement`)."""
    conf = phase(df, "confirm")
    rows = []
    for w in workloads:
        runs = conf[conf["workload"] == w]
        if runs.empty:
            continue
        last = int(runs["epoch"].max())
        present = [o for o in optimizers if (runs["optimizer"] == o).any()]
        cells = {o: sorted(runs.loc[runs["optimizer"] == o, "cell"].unique()) for o in present}
        final = _at_epoch(runs, last)
        for f in (*points, 1.0):
            epoch = max(1, round(f * last))
            at = _at_epoch(runs, epoch)
            early = [at.reindex(cells[o]).fillna(np.inf).to_numpy(float) for o in present]
            end = [final.reindex(cells[o]).fillna(np.inf).to_numpy(float) for o in present]
            means = pd.Series([e.mean() for e in early], index=present).sort_values(kind="stable")
            tau, lo, hi = (1.0, 1.0, 1.0) if f == 1.0 else stats.ranking_agreement(early, end, n_boot=N_BOOT,
                                                                                  level=LEVEL)
            rows.append({"workload": w, "fraction": f, "epoch": epoch, "order": list(means.index),
                         "tau": tau, "lo": lo, "hi": hi})
    return pd.DataFrame(rows, columns=["workload", "fraction", "epoch", "order", "tau", "lo", "hi"])


def defaults_against_tuned(df: pd.DataFrame, optimizers, workloads) -> pd.DataFrame:
    """Per workload x optimiser with default runs (``phase = "default"``):
    the mean final metric at the rule's default lr and at the tuned one (the
    confirmation runs, the same seeds), and what tuning bought: default -
    tuned, with a bootstrap interval (:func:`.stats.mean_difference`;
    positive: tuning helped)."""
    default, tuned_runs = last_scores(phase(df, "default")), confirmed(df)
    rows = []
    for w in workloads:
        for o in optimizers:
            d = default[(default["workload"] == w) & (default["optimizer"] == o)]
            t = tuned_runs[(tuned_runs["workload"] == w) & (tuned_runs["optimizer"] == o)]
            if d.empty or t.empty:
                continue
            a, b = d["final_score"].to_numpy(float), t["final_score"].to_numpy(float)
            gain, lo, hi = stats.mean_difference(a, b, n_boot=N_BOOT, level=LEVEL)
            rows.append({"workload": w, "optimizer": o, "default_lr": float(d["lr"].iloc[0]),
                         "tuned_lr": float(t["lr"].iloc[0]), "default": a.mean(), "tuned": b.mean(), "gain": gain,
                         "lo": lo, "hi": hi})
    return pd.DataFrame(rows, columns=["workload", "optimizer", "default_lr", "tuned_lr", "default", "tuned", "gain",
                                       "lo", "hi"])


def batch_scaling(tuned: pd.DataFrame, variants: dict, optimizers, edges=()) -> pd.DataFrame:
    """Per workload of the file x optimiser of a protocol with batch_sizes:
    the best lr at each batch size (:func:`.stats.best_log_lr`) and the
    exponent k of best lr ∝ batch^k with its bootstrap interval over the
    tuning seeds (:func:`.stats.scaling_exponent`), and the rule it admits.
    ``variants``: protocol.json's, variant -> {"workload", "batch_size"};
    ``edges``: protocol.json's, whose variants' best lrs are grid bounds,
    not estimates (named in ``on_edge``). "full" is the training set's
    size. Only seeds every batch size ran count; a pair with a batch size
    not tuned on two lrs yet has no row."""
    edged = {(e["workload"], e["optimizer"]) for e in edges}
    bases: dict[str, list] = {}
    for v, d in variants.items():
        bases.setdefault(d["workload"], []).append(v)
    rows = []
    for base, names in bases.items():
        for o in optimizers:
            grids, sizes, on_edge = [], [], []
            for v in names:
                runs = tuned[(tuned["workload"] == v) & (tuned["optimizer"] == o)]
                grid = _lr_by_seed(runs)
                if len(grid) < 2:
                    break
                b = variants[v]["batch_size"]
                sizes.append(float(runs["n_train"].iloc[0]) if b == "full" else float(b))
                grids.append(grid)
                if (v, o) in edged:
                    on_edge.append(b)
            if len(grids) < len(names):  # a batch size without a tuned grid yet: no fit
                continue
            seeds = sorted(set.intersection(*(set(g.columns) for g in grids)))
            if not seeds:
                continue
            fit = stats.scaling_exponent(sizes, [(g.index.to_numpy(float), g[seeds].to_numpy(float))
                                                 for g in grids], n_boot=N_BOOT, level=LEVEL)
            rows.append({"workload": base, "optimizer": o, "batch": sizes, "best_lr": fit["best_lr"],
                         "k": fit["k"], "lo": fit["lo"], "hi": fit["hi"], "residual": fit["residual"],
                         "rule": stats.scaling_verdict(fit["lo"], fit["hi"]), "seeds": len(seeds),
                         "on_edge": on_edge})
    return pd.DataFrame(rows, columns=["workload", "optimizer", "batch", "best_lr", "k", "lo", "hi", "residual",
                                       "rule", "seeds", "on_edge"])


def state_changes(df: pd.DataFrame, optimizers, workloads) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What a low-precision state changes (``phase = "precision"``), paired
    with the float32 confirmation by seed: per state x workload x optimiser,
    the mean over seeds of (final metric at that state - at float32) with a
    bootstrap interval over the seeds (positive: worse); and per state x
    workload, Kendall's tau between the optimisers' order by mean metric at
    float32 and at that state, with the top three of each."""
    low, fp32 = last_scores(phase(df, "precision")), confirmed(df)
    rows, orders = [], []
    for state in sorted(low["state"].dropna().unique()) if len(low) else []:
        at = low[low["state"] == state]
        for w in workloads:
            means = {}
            for o in optimizers:
                a = at[(at["workload"] == w) & (at["optimizer"] == o)].set_index("seed")["final_score"]
                b = fp32[(fp32["workload"] == w) & (fp32["optimizer"] == o)].set_index("seed")["final_score"]
                seeds = sorted(set(a.index) & set(b.index))
                if not seeds:
                    continue
                x, y = a.loc[seeds].to_numpy(float), b.loc[seeds].to_numpy(float)
                with np.errstate(invalid="ignore"):
                    diff = x - y
                if np.isnan(diff).any():  # diverged in both: no change to give
                    change, lo, hi = np.nan, np.nan, np.nan
                else:
                    change, lo, hi = stats.bootstrap_ci(diff, n_boot=N_BOOT, level=LEVEL)
                means[o] = (x.mean(), y.mean())
                rows.append({"state": state, "workload": w, "optimizer": o, "fp32": y.mean(), "low": x.mean(),
                             "change": change, "lo": lo, "hi": hi, "seeds": len(seeds)})
            if len(means) >= 2:
                names = list(means)
                lowm, fp = [means[o][0] for o in names], [means[o][1] for o in names]
                order = lambda v: [names[i] for i in np.argsort(v, kind="stable")][:3]
                orders.append({"state": state, "workload": w, "tau": stats.kendall_tau(fp, lowm),
                               "fp32_top": order(fp), "low_top": order(lowm)})
    return (pd.DataFrame(rows, columns=["state", "workload", "optimizer", "fp32", "low", "change", "lo", "hi",
                                        "seeds"]),
            pd.DataFrame(orders, columns=["state", "workload", "tau", "fp32_top", "low_top"]))
