"""A study's report, regenerated from its stored results alone (no training).

``write_report(results_dir)`` reads ``results_dir/cells/*.csv`` and
``metadata.json`` (see :mod:`suite.results`) and writes
``results_dir/report.md`` and its figures in ``results_dir/figures/``.

In the AlgoPerf manner, the scoring is a set of pure functions over one
documented DataFrame (the results store's long-format table), kept apart from
the plotting and the Markdown, so each can be tested on a hand-made frame:

- :func:`final_runs`: one row per run, its last evaluation, with
  ``final_val_loss`` (+inf for a diverged run, or a NaN/Inf final loss);
- :func:`lr_table` / :func:`best_lrs`: per optimiser (and batch size, where
  the study varies it) the lr whose mean-over-runs final validation loss is
  lowest; a diverged run counts as +inf, so an lr with any diverged run loses
  to any lr without one. Ties (e.g. every lr has a diverged run) go to fewer
  diverged runs, then the lower mean loss of the runs that finished;
- :func:`at_best_lr`: the rows (long or final) at those lrs;
- :func:`final_performance`: mean and sd of the final val_loss, val_acc,
  test_acc per optimiser x batch size x init at the best lr;
- :func:`choose_targets`, :func:`time_to_target`, :func:`reach_summary`:
  steps and seconds to reach a target validation loss; runs that never reach
  it are misses ("2/3 reached"), never dropped;
- :func:`divergence_table`: diverged runs per optimiser and lr.

Columns relied on (one row per run and evaluation point; :mod:`suite.results`
documents them all):

- ``cell``: the run's id (one cell is one run: seeds are a grid axis);
- ``optimizer``, ``lr`` (the learning rate used), ``seed``;
- ``batch_size`` (an int or "full"; read back as int or str, so the report
  works on a string label of it), ``init``: the axes the report facets by,
  each only where the study varies it (a missing column counts as not varied);
- ``epoch`` (0 = the initial weights), ``step`` (optimiser steps so far),
  ``wall_time`` (training seconds so far, evaluation excluded);
- ``train_loss`` (the criterion Q over the training set), ``val_loss``,
  ``val_acc``, ``test_acc`` (accuracies are NaN for a regression set);
- ``diverged`` (bool, true on the last row of a diverged run);
- for the header only: ``study``, ``backend``, ``device``, ``dataset``,
  ``loss``, and the other RunConfig fields (to say which other axes vary and
  are pooled), plus metadata.json's ``study``, ``description``, ``written``,
  ``backend``, ``device``, ``study_file``.

Figures (``figures/``, each linked from report.md with a one-line caption):
convergence_epoch.png and convergence_time.png (train_loss, val_loss, val_acc
against epoch / training seconds, one line per optimiser at its best lr,
columns by batch size), heatmap_batch_size.png and heatmap_init.png
(optimiser x axis of the final val_acc, or val_loss for a regression set;
only for an axis the study varies), lr_sensitivity.png (final val_loss
against lr). Loss panels are cut at CLIP_FACTOR x the initial loss and get a
log scale when they span more than LOG_DECADES decades.

Pooling: everything not faceted on is pooled. The best lr is chosen per
optimiser x batch size over all its runs (seeds, inits, anything else the
study varies); bands are +-1 sd over those runs.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from . import results as store

REPORT = "report.md"
FIGURES = "figures"
#: Columns write_report needs; a results file lacking one is reported as corrupt.
REQUIRED = ("study", "cell", "optimizer", "lr", "seed", "batch_size", "init", "epoch", "step",
            "wall_time", "train_loss", "val_loss", "val_acc", "test_acc", "diverged",
            "backend", "device")
NUMERIC = ("lr", "seed", "epoch", "step", "wall_time", "train_loss", "val_loss", "val_acc",
           "test_acc")
#: A loss panel gets a log y-scale when its values span more than this many decades.
LOG_DECADES = 1.5
#: Loss panels are cut at this multiple of the initial loss, so one exploding
#: run does not flatten every other curve.
CLIP_FACTOR = 10.0
#: Every figure write_report may write (stale ones from an earlier report are removed).
FIGURE_NAMES = ("convergence_epoch.png", "convergence_time.png", "lr_sensitivity.png",
                "heatmap_batch_size.png", "heatmap_init.png")


# --------------------------------------------------------------------------- #
# Loading and tidying
# --------------------------------------------------------------------------- #


def load(results_dir: Path) -> tuple[pd.DataFrame, dict]:
    """The tidied long table and the metadata; ResultsError naming the bad file."""
    results_dir = Path(results_dir)
    df = store.load_results(results_dir)  # missing / empty dir, unreadable CSV
    meta = store.read_metadata(results_dir)  # corrupt metadata.json
    if not isinstance(meta, dict):  # valid JSON, but not the object run_metadata writes
        raise store.ResultsError(f"{results_dir / store.METADATA} is corrupt: not a JSON object")
    _check_columns(df, results_dir)
    return tidy(df), meta


def _cell_file(results_dir: Path, cell) -> Path:
    return results_dir / store.CELLS / f"{cell}.csv"


def _check_columns(df: pd.DataFrame, results_dir: Path) -> None:
    """Columns the report needs, and numbers where numbers belong."""
    for path in sorted((results_dir / store.CELLS).glob("*.csv")):
        # load_results read every file already; a header-only re-read names the culprit.
        missing = set(REQUIRED) - set(pd.read_csv(path, nrows=0).columns)
        if missing:
            raise store.ResultsError(f"{path} is corrupt: missing columns {sorted(missing)}")
    for col in NUMERIC:
        as_num = pd.to_numeric(df[col], errors="coerce")
        bad = as_num.isna() & df[col].notna()
        if bad.any():
            row = df[bad].iloc[0]
            raise store.ResultsError(
                f"{_cell_file(results_dir, row['cell'])} is corrupt: {col} = {row[col]!r} is not a number")


def _batch_label(value) -> str:
    # A column mixing ints and "full" comes back as objects; files of only
    # ints may come back as floats where another column had gaps.
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def batch_order(labels) -> list[str]:
    """Batch-size labels smallest first, "full" (or any non-number) last."""
    labels = sorted(set(labels), key=str)
    nums = sorted((s for s in labels if s.isdigit()), key=int)
    return nums + [s for s in labels if not s.isdigit()]


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """The table with typed columns: batch_size a string label, diverged a bool."""
    df = df.copy()
    for col in NUMERIC:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    if "batch_size" in df:
        df["batch_size"] = df["batch_size"].map(_batch_label)
    if "init" in df:
        df["init"] = df["init"].astype(str)
    if "diverged" in df and df["diverged"].dtype != bool:
        df["diverged"] = df["diverged"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
    return df


# --------------------------------------------------------------------------- #
# Scoring: pure functions over the DataFrame
# --------------------------------------------------------------------------- #


def varied(df: pd.DataFrame, column: str) -> bool:
    """Whether the study varies ``column`` (a missing column does not vary)."""
    return column in df and df[column].nunique(dropna=False) > 1


def group_keys(df: pd.DataFrame) -> list[str]:
    """What the best lr is chosen per: the optimiser, and the batch size if it varies."""
    return ["optimizer"] + (["batch_size"] if varied(df, "batch_size") else [])


def final_runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (its last evaluation), plus ``final_val_loss``.

    ``final_val_loss`` is +inf for a diverged run and for a final loss that is
    NaN or infinite, so averaging it makes any lr with a failure lose; such
    a run's ``diverged`` is set too, so every count below agrees.
    """
    last = df.sort_values(["cell", "epoch"]).groupby("cell", sort=False).tail(1).copy()
    loss = last["val_loss"].astype(float)
    failed = last["diverged"].astype(bool) | ~np.isfinite(loss)
    last["final_val_loss"] = np.where(failed, np.inf, loss)
    last["diverged"] = failed  # a run whose final loss is NaN/Inf failed too
    return last.reset_index(drop=True)


def lr_table(final: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Per ``by`` + lr: runs, diverged runs, mean final val loss (inf if any
    diverged) and the mean over the runs that finished (the tie-breaker)."""
    by = group_keys(final) if by is None else list(by)
    finite = final["final_val_loss"].where(np.isfinite(final["final_val_loss"]))
    out = (final.assign(finite_loss=finite)
           .groupby(by + ["lr"], sort=True)
           .agg(runs=("cell", "size"), diverged=("diverged", "sum"),
                mean_val_loss=("final_val_loss", "mean"),
                finished_mean_val_loss=("finite_loss", "mean"))
           .reset_index())
    out["diverged"] = out["diverged"].astype(int)
    return out


def best_lrs(final: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """One row per ``by`` group: the lr with the lowest mean final val loss.

    Diverged runs count as +inf; among lrs tied at +inf, fewer diverged runs
    win, then the lower mean loss of the runs that finished.
    """
    by = group_keys(final) if by is None else list(by)
    table = lr_table(final, by)
    table["_finished"] = table["finished_mean_val_loss"].fillna(np.inf)
    ranked = table.sort_values(by + ["mean_val_loss", "diverged", "_finished", "lr"])
    best = ranked.groupby(by, sort=False).head(1).drop(columns="_finished")
    best["all_diverged"] = best["diverged"] == best["runs"]
    return best.sort_values(by).reset_index(drop=True)


def at_best_lr(df: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``df`` (long or final) whose lr is their group's best lr."""
    keys = [k for k in best.columns if k in ("optimizer", "batch_size")] + ["lr"]
    return df.merge(best[keys], on=keys, how="inner")


def final_performance(final_best: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean and sd over runs of the final val_loss, val_acc, test_acc per ``by``.

    val_loss uses ``final_val_loss`` (inf if any run diverged). Accuracies
    average the runs that did not diverge: a diverged net outputs NaN, and
    the argmax of NaN is not a prediction.
    """
    ok = ~final_best["diverged"]
    frame = final_best.assign(
        val_acc=final_best["val_acc"].where(ok), test_acc=final_best["test_acc"].where(ok))
    g = frame.groupby(by, sort=True)
    out = g.agg(runs=("cell", "size"), diverged=("diverged", "sum"),
                val_loss_mean=("final_val_loss", "mean"), val_loss_sd=("final_val_loss", "std"),
                val_acc_mean=("val_acc", "mean"), val_acc_sd=("val_acc", "std"),
                test_acc_mean=("test_acc", "mean"), test_acc_sd=("test_acc", "std"))
    out["diverged"] = out["diverged"].astype(int)
    return out.reset_index()


def choose_targets(final_best: pd.DataFrame, initial_val_loss: float | None = None,
                   by: list[str] | None = None) -> pd.DataFrame:
    """The target validation loss per batch size (or one for the study).

    Target = the worst (largest) mean final val loss among the optimisers at
    their best lr: a level every optimiser reaches on average with its own
    tuning, so "reached" compares speed, not just who gets there. Optimisers
    whose mean is infinite (a diverged run) or no lower than
    ``initial_val_loss`` (no progress) are left out; NaN when none is left.
    """
    by = [k for k in (group_keys(final_best) if by is None else by) if k != "optimizer"]
    means = final_best.groupby(["optimizer"] + by)["final_val_loss"].mean().reset_index()
    usable = np.isfinite(means["final_val_loss"])
    if initial_val_loss is not None and math.isfinite(initial_val_loss):
        usable &= means["final_val_loss"] < initial_val_loss
    means["final_val_loss"] = means["final_val_loss"].where(usable)
    if not by:
        value = means["final_val_loss"].max()  # NaN when nothing is usable
        return pd.DataFrame({"target": [value]})
    return means.groupby(by)["final_val_loss"].max().rename("target").reset_index()


def time_to_target(df: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per run: whether its val_loss ever got to ``target`` or below, and the
    step, training seconds and epoch of the first evaluation that did.

    A run that never gets there (or diverges first) is a miss: reached False,
    step/seconds/epoch NaN. Resolution: the evaluation points (epochs).
    """
    keep = [c for c in ("optimizer", "batch_size", "init", "lr", "seed") if c in df]
    rows = []
    for cell, run in df.sort_values(["cell", "epoch"]).groupby("cell", sort=False):
        hit = run[run["val_loss"].astype(float) <= target]  # NaN and inf never hit
        first = hit.iloc[0] if len(hit) else None
        row = {"cell": cell, **{c: run[c].iloc[0] for c in keep}, "reached": first is not None}
        for name, col in (("steps", "step"), ("seconds", "wall_time"), ("epoch", "epoch")):
            row[name] = float(first[col]) if first is not None and col in run else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=["cell", *keep, "reached", "steps", "seconds", "epoch"])


def reach_summary(per_run: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per ``by``: runs, how many reached the target ("k/n reached"), and the
    median steps and seconds of those that did (NaN if none did)."""
    g = per_run.groupby(by, sort=True)
    out = g.agg(runs=("cell", "size"), reached=("reached", "sum"),
                median_steps=("steps", "median"), median_seconds=("seconds", "median"))
    out["reached"] = out["reached"].astype(int)
    out["reached_label"] = [f"{r}/{n} reached" for r, n in zip(out["reached"], out["runs"])]
    return out.reset_index()


def divergence_table(final: pd.DataFrame) -> pd.DataFrame:
    """Per optimiser x lr (x batch size where it varies): runs, diverged runs,
    and the median epoch at which the diverged ones stopped (NaN if none)."""
    by = ["optimizer", "lr"] + (["batch_size"] if varied(final, "batch_size") else [])
    frame = final.assign(diverged_epoch=final["epoch"].where(final["diverged"]))
    out = (frame.groupby(by, sort=True)
           .agg(runs=("cell", "size"), diverged=("diverged", "sum"),
                median_diverged_epoch=("diverged_epoch", "median"))
           .reset_index())
    out["diverged"] = out["diverged"].astype(int)
    return out


def has_accuracy(df: pd.DataFrame) -> bool:
    """False for a regression set: its accuracy columns are all NaN."""
    return "val_acc" in df and bool(np.isfinite(df["val_acc"].astype(float)).any())


def needs_log_scale(values) -> bool:
    """Whether positive finite values span more than LOG_DECADES decades."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return v.size > 1 and math.log10(v.max() / v.min()) > LOG_DECADES


# --------------------------------------------------------------------------- #
# Figures (matplotlib's object API: no pyplot state, no GUI backend needed)
# --------------------------------------------------------------------------- #


def optimizer_order(names) -> list[str]:
    """The optimisers in the kernels' order (sgd ... adam), unknown ones after."""
    from kernels import RULES

    present = set(names)
    return [r for r in RULES if r in present] + sorted(present - set(RULES))


def _palette(optimizers) -> dict:
    import seaborn as sns

    return dict(zip(optimizers, sns.color_palette("tab10", max(len(optimizers), 1))))


# Marker and dash per optimiser as well as colour: close curves (momentum and
# Nesterov often are) stay tell-apart where they overlap, and in grey print.
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_DASHES = ("", (4, 1.5), (1, 1), (3, 1, 1, 1), (5, 1, 1, 1, 1, 1), (2, 2), (6, 2), (1, 2))


def _style(i: int) -> tuple[str, object]:
    return _MARKERS[i % len(_MARKERS)], _DASHES[i % len(_DASHES)]


def _line_kw(palette: dict, present) -> dict:
    """seaborn lineplot arguments: colour, marker and dash by optimiser."""
    order = [o for o in palette if o in set(present)]
    styles = {o: _style(i) for i, o in enumerate(palette)}
    return dict(hue="optimizer", palette=palette, hue_order=order, style="optimizer",
                style_order=order, markers={o: styles[o][0] for o in order},
                dashes={o: styles[o][1] for o in order})


def _figure(nrows: int, ncols: int, width: float, height: float, **kw):
    from matplotlib.figure import Figure

    # Room below for the legend; a single column gets extra width for its entries.
    fig = Figure(figsize=(width * max(ncols, 1.5) + 0.6, height * nrows + 1.2), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _legend(fig, palette: dict, labels: dict, title: str, extra=()) -> None:
    """One legend for the whole figure, below the panels (never over data)."""
    from matplotlib.lines import Line2D

    handles = []
    for i, (opt, colour) in enumerate(palette.items()):
        marker, dashes = _style(i)
        handles.append(Line2D([], [], color=colour, marker=marker, label=labels.get(opt, opt),
                              **({"dashes": dashes} if dashes else {})))
    items = [*handles, *extra]
    fig.legend(handles=items, title=title, loc="outside lower center", frameon=False,
               ncols=min(len(items), 3))


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # long legend labels stay inside


METRIC_LABELS = {
    "train_loss": "training criterion Q",
    "val_loss": "validation loss",
    "val_acc": "validation accuracy",
}


def _loss_name(df: pd.DataFrame) -> str:
    loss = str(df["loss"].iloc[0]) if "loss" in df else "auto"
    if loss == "auto":
        loss = "cross_entropy" if has_accuracy(df) else "squared"
    return {"cross_entropy": "cross-entropy", "squared": "squared error"}.get(loss, loss)


def _set_loss_scale(axes, values, initial) -> bool:
    """Clip at CLIP_FACTOR x the initial loss, then log y if it spans > LOG_DECADES."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return False
    top = v.max()
    clipped = math.isfinite(initial) and initial > 0 and top > CLIP_FACTOR * initial
    if clipped:  # the visible range now runs up to the cut: judge the scale on that
        top = CLIP_FACTOR * initial
        v = np.append(v[v <= top], top)
    log = needs_log_scale(v)
    for ax in axes:
        if log:
            ax.set_yscale("log")
        if clipped:
            bottom = v[v > 0].min() / 1.3 if log else min(0.0, v.min())
            ax.set_ylim(bottom, top)
    return clipped


def plot_convergence(long_best: pd.DataFrame, x: str, path: Path, palette: dict,
                     labels: dict, batches: list[str] | None) -> list[str]:
    """Rows: train_loss, val_loss (and val_acc); columns: batch sizes. One line
    per optimiser at its best lr, mean over runs, +-1 sd band. Returns notes
    for the caption (e.g. which panels were clipped)."""
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    metrics = ["train_loss", "val_loss"] + (["val_acc"] if has_accuracy(long_best) else [])
    data = long_best.replace([np.inf, -np.inf], np.nan)
    # A diverged net's outputs are NaN: the accuracy on that row is argmax noise.
    broken = data["diverged"] | ~np.isfinite(data["val_loss"])
    data["val_acc"] = data["val_acc"].where(~broken)
    if x == "wall_time":
        # Runs differ in time per epoch, so a band needs a common x: the mean
        # training time over the group's runs at that epoch.
        data["mean_wall_time"] = data.groupby(["optimizer", "batch_size", "epoch"])["wall_time"].transform("mean")
        xcol, xlabel = "mean_wall_time", "training time (s)"
    else:
        xcol, xlabel = "epoch", "epoch"
    cols = batches or [None]
    fig, axes = _figure(len(metrics), len(cols), 4.2, 2.9, sharex="col", sharey="row")
    one_run = data.groupby(["optimizer", "batch_size"])["cell"].nunique().max() <= 1
    loss = _loss_name(long_best)
    notes = []
    for i, metric in enumerate(metrics):
        for j, bs in enumerate(cols):
            ax = axes[i, j]
            part = data if bs is None else data[data["batch_size"] == bs]
            sns.lineplot(data=part, x=xcol, y=metric, **_line_kw(palette, part["optimizer"]),
                         errorbar=None if one_run else "sd", markersize=4, ax=ax, legend=False)
            ax.set_title(f"{METRIC_LABELS[metric]}" + ("" if bs is None else f", batch size {bs}"),
                         fontsize=10)
            # Per-axes x label on the bottom row: a figure-level one would collide with the legend.
            ax.set_xlabel(xlabel if i == len(metrics) - 1 else "")
            if x == "epoch":
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            unit = "" if metric == "val_acc" else f" ({loss})"
            ax.set_ylabel(METRIC_LABELS[metric] + unit if j == 0 else "")
            ax.grid(alpha=0.3)
        if metric == "val_acc":
            continue
        initial = data.loc[data["epoch"] == 0, metric].max()
        if _set_loss_scale(axes[i], data[metric], initial):
            notes.append(f"{METRIC_LABELS[metric]} cut at {CLIP_FACTOR:g}x its initial value")
    band = "" if one_run else " (band: ±1 sd over runs)"
    _legend(fig, palette, labels, "optimiser at its best lr" + band)
    fig.suptitle(f"Convergence against {'epochs' if x == 'epoch' else 'training time'}", fontsize=12)
    _save(fig, path)
    return notes


def plot_lr_sensitivity(final: pd.DataFrame, path: Path, palette: dict,
                        batches: list[str] | None, initial: float) -> bool:
    """Final val loss against lr (log x), per optimiser; an x at the top edge
    where a run at that lr diverged. Returns whether the y-range was cut at
    CLIP_FACTOR x ``initial`` (the initial validation loss)."""
    import seaborn as sns
    from matplotlib.lines import Line2D

    data = final.assign(final_val_loss=final["final_val_loss"].replace(np.inf, np.nan))
    cols = batches or [None]
    fig, axes = _figure(1, len(cols), 4.4, 3.4, sharey="row", sharex="row")
    one_run = data.groupby(["optimizer", "lr"] + (["batch_size"] if batches else []))["cell"].nunique().max() <= 1
    for j, bs in enumerate(cols):
        ax = axes[0, j]
        part = data if bs is None else data[data["batch_size"] == bs]
        if part["final_val_loss"].notna().any():
            sns.lineplot(data=part, x="lr", y="final_val_loss", **_line_kw(palette, part["optimizer"]),
                         errorbar=None if one_run else "sd", markersize=6, ax=ax, legend=False)
        for opt, lrs in part[part["diverged"]].groupby("optimizer")["lr"]:
            # Axis-fraction y: a diverged lr has no loss to plot, so mark it at the top edge.
            ax.scatter(sorted(set(lrs)), [0.96] * len(set(lrs)), marker="x", s=60, zorder=3,
                       color=palette[opt], transform=ax.get_xaxis_transform(), clip_on=False)
        ax.set_xscale("log")
        ax.set_title("" if bs is None else f"batch size {bs}", fontsize=10)
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel(f"final validation loss ({_loss_name(final)})" if j == 0 else "")
        ax.grid(alpha=0.3, which="both")
    # The diverged markers do not move the data limits, so span every lr tried.
    lrs = data["lr"][data["lr"] > 0]
    if len(lrs):
        axes[0, 0].set_xlim(lrs.min() / 1.6, lrs.max() * 1.6)
    clipped = _set_loss_scale(axes[0], data["final_val_loss"], initial)
    extra = [Line2D([], [], color="grey", marker="x", linestyle="", label="a run diverged")
             ] if data["diverged"].any() else []
    _legend(fig, palette, {}, "optimiser" + ("" if one_run else " (band: ±1 sd over runs)"), extra)
    fig.suptitle("Learning-rate sensitivity: final validation loss", fontsize=12)
    _save(fig, path)
    return clipped


def plot_heatmap(matrix: pd.DataFrame, path: Path, title: str, xlabel: str, cbar: str,
                 higher_is_better: bool) -> None:
    """An optimiser x axis matrix of means; empty cells (every run diverged) say so."""
    import seaborn as sns

    fig, axes = _figure(1, 1, max(2.2, 1.3 * matrix.shape[1]) + 1.5, 0.5 * matrix.shape[0] + 1.2)
    ax = axes[0, 0]
    values = matrix.astype(float)
    sns.heatmap(values, annot=True, fmt=".3g", cmap="viridis" if higher_is_better else "viridis_r",
                cbar_kws={"label": cbar}, linewidths=0.5, ax=ax, mask=values.isna())
    for (r, c), v in np.ndenumerate(values.to_numpy()):
        if not np.isfinite(v):
            ax.text(c + 0.5, r + 0.5, "diverged", ha="center", va="center", fontsize=8, color="0.3")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("optimiser")
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_title(title, fontsize=10)
    _save(fig, path)


# --------------------------------------------------------------------------- #
# Markdown
# --------------------------------------------------------------------------- #


def _num(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, (float, np.floating)) and math.isinf(x):
        return "inf (diverged)" if x > 0 else "-inf"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{x:.{digits}g}"


def _pm(mean, sd) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if not math.isfinite(mean) or sd is None or math.isnan(sd):
        return _num(mean)
    return f"{_num(mean)} ± {_num(sd, 2)}"


def md_table(rows: list[list], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


AXIS_NAMES = {"optimizer": "optimiser", "batch_size": "batch size", "init": "init", "lr": "lr"}


def _figure_md(name: str, alt: str, caption: str) -> str:
    return f"![{alt}]({FIGURES}/{name})\n\n*{caption}*\n"


def _study_cells(meta: dict):
    """The study file's cell keys, re-expanded from metadata (None if it can't be)."""
    from .study import StudyError, load_study

    text = meta.get("study_file")
    if not text:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{meta.get('study', 'study')}.toml"
        path.write_text(text)
        try:
            return {c.key for c in load_study(str(path), backend=meta.get("backend")).cells}
        except (StudyError, ValueError, OSError):  # e.g. a rule since renamed
            return None


def other_axes(df: pd.DataFrame) -> list[str]:
    """Config fields the study varies besides optimiser, lr, batch size, init
    and seed: the report pools over them (and says so)."""
    from .train import RunConfig

    return [f for f in RunConfig.field_names()
            if f not in ("optimizer", "lr", "batch_size", "init", "seed") and varied(df, f)]


def _pooled(df: pd.DataFrame, *faceted: str) -> str:
    """What a mean runs over, in words: "seeds, inits and activation"."""
    words = ["seeds"] if varied(df, "seed") else []
    words += [f"{AXIS_NAMES[a]}s" for a in ("batch_size", "init") if a not in faceted and varied(df, a)]
    words += other_axes(df)
    if not words:
        return "runs"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _header(df: pd.DataFrame, meta: dict, results_dir: Path) -> list[str]:

    study = meta.get("study") or ", ".join(sorted(df["study"].astype(str).unique()))
    date = meta.get("written")
    if not date:  # no metadata.json: the newest result file's time
        newest = max(p.stat().st_mtime for p in (results_dir / store.CELLS).glob("*.csv"))
        date = pd.Timestamp(newest, unit="s", tz="UTC").isoformat(timespec="seconds") + " (file time)"
    cells = set(df["cell"].astype(str))
    count = f"{len(cells)} cells (one run each: seeds are cells too), {len(df)} evaluation rows"
    expected = _study_cells(meta)
    if expected is not None:
        missing, extra = len(expected - cells), len(cells - expected)
        count += f"; the study file defines {len(expected)} cells" + (
            f", {missing} of them not (yet) run" if missing else ", all complete")
        if extra:
            count += f"; {extra} cells here are not in the study file (an earlier version?) and are included"
    pooled = other_axes(df)
    lines = [
        f"# Report: study `{study}`",
        "",
        *([meta["description"], ""] if meta.get("description") else []),
        f"- backend(s): {', '.join(sorted(df['backend'].astype(str).unique()))}",
        f"- device(s): {', '.join(sorted(df['device'].astype(str).unique()))}",
        f"- results written: {date}",
        f"- {count}",
        f"- data set(s): {', '.join(sorted(df['dataset'].astype(str).unique())) if 'dataset' in df else '?'}; "
        f"epochs: {int(df['epoch'].max())}",
        f"- optimisers: {', '.join(optimizer_order(df['optimizer']))}; "
        f"seeds: {df['seed'].nunique()}; batch sizes: {', '.join(batch_order(df['batch_size']))}; "
        f"inits: {', '.join(sorted(df['init'].unique()))}",
    ]
    if pooled:
        lines.append(f"- also varied, and pooled over in everything below: {', '.join(pooled)}")
    lines.append(f"- regenerated from `{results_dir}` by `optbench report` (no training)")
    return lines + [""]


def _lr_label(best: pd.DataFrame) -> dict:
    """Legend labels: "adam, lr 0.01", or the lr per batch size where they differ."""
    labels = {}
    for opt, rows in best.groupby("optimizer"):
        if rows["lr"].nunique() == 1:
            labels[opt] = f"{opt}, lr {rows['lr'].iloc[0]:g}"
        else:
            labels[opt] = f"{opt}, lr " + ", ".join(f"{lr:g} ({bs})" for bs, lr in
                                                    zip(rows["batch_size"], rows["lr"]))
        if rows["all_diverged"].all():
            labels[opt] += " (every run diverged)"
    return labels


def _best_lr_section(best, table, keys, df) -> list[str]:
    rows = []
    for _, b in best.iterrows():
        grid = table[np.logical_and.reduce([table[k] == b[k] for k in keys])]
        tried = ", ".join(f"{lr:g}: {_num(m)}" for lr, m in zip(grid["lr"], grid["mean_val_loss"]))
        note = "every run at every lr diverged" if b["all_diverged"] else (
            f"{b['diverged']}/{b['runs']} diverged" if b["diverged"] else "")
        rows.append([*(b[k] for k in keys), f"**{b['lr']:g}**", _num(b["mean_val_loss"]),
                     b["runs"], tried, note])
    header = [AXIS_NAMES[k] for k in keys] + ["best lr", "mean final val loss", "runs",
                                              "every lr tried: mean final val loss", "note"]
    return ["## Best learning rate per optimiser", "",
            "For each optimiser" + (" and batch size" if "batch_size" in keys else "") +
            f", the lr whose mean (over {_pooled(df, *keys)}) of the FINAL validation loss is lowest. A diverged run counts as +inf, so an lr with any "
            "diverged run loses to every lr without one. Everything below uses these lrs.", "",
            md_table(rows, header), ""]


def _performance_section(final_best, df) -> list[str]:
    by = ["optimizer"] + [a for a in ("batch_size", "init") if varied(df, a)]
    perf = final_performance(final_best, by)
    perf = _sorted(perf, by)
    acc = has_accuracy(df)
    header = [AXIS_NAMES[k] for k in by] + ["runs", "diverged", "val loss"] + (
        ["val acc", "test acc"] if acc else [])
    rows = []
    for _, r in perf.iterrows():
        row = [*(r[k] for k in by), r["runs"], r["diverged"], _pm(r["val_loss_mean"], r["val_loss_sd"])]
        if acc:
            row += [_pm(r["val_acc_mean"], r["val_acc_sd"]), _pm(r["test_acc_mean"], r["test_acc_sd"])]
        rows.append(row)
    text = (f"Mean ± sd over {_pooled(df, *by)} of the final values at each optimiser's best lr"
            + (" (no sd: one run each)" if perf["runs"].max() == 1 else "") + ". A diverged run makes the "
            "mean val loss inf; accuracies average only the runs that did not diverge.")
    if not acc:
        text += " No accuracy: the data set is a regression set."
    return ["## Final performance", "", text, "", md_table(rows, header), ""]


def _sorted(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Rows in the report's order: optimisers as in the kernels, batch sizes ascending."""
    frame = frame.copy()
    order = {"optimizer": optimizer_order(frame["optimizer"])}
    if "batch_size" in frame:
        order["batch_size"] = batch_order(frame["batch_size"])
    for col, values in order.items():
        if col in by:
            frame[col] = pd.Categorical(frame[col], categories=values, ordered=True)
    frame = frame.sort_values(by)
    for col in order:
        if col in by:
            frame[col] = frame[col].astype(str)
    return frame


def _target_section(long_best, final_best, df, keys) -> list[str]:
    initial = df.loc[df["epoch"] == 0, "val_loss"].median()
    targets = choose_targets(final_best, initial, keys)
    bs_keys = [k for k in keys if k != "optimizer"]
    rows, target_notes = [], []
    for _, t in targets.iterrows():
        part = long_best
        for k in bs_keys:
            part = part[part[k] == t[k]]
        where = ", ".join(f"batch size {t[k]}" for k in bs_keys)
        target_notes.append(f"{_num(t['target'])}" + (f" ({where})" if where else ""))
        per_run = time_to_target(part, t["target"]) if math.isfinite(t["target"]) else None
        if per_run is None:
            continue
        summary = _sorted(reach_summary(per_run, keys), keys)
        for _, s in summary.iterrows():
            rows.append([*(s[k] for k in keys), _num(t["target"]), s["reached_label"],
                         _num(s["median_steps"]), _num(s["median_seconds"], 3)])
    text = ("Target validation loss = the worst (largest) mean final validation loss among the "
            "optimisers at their best lr" + (", per batch size" if bs_keys else "") +
            " (optimisers that diverged or ended no lower than the initial loss are left out): "
            "a level each optimiser reaches on average, so this compares how fast. Target: "
            + "; ".join(target_notes) + ". Steps and seconds are medians over the runs that reached "
            "it, at the first evaluation (end of epoch) at or below it; training seconds exclude "
            "evaluation. Runs that never reach it are counted as misses, not dropped.")
    header = [AXIS_NAMES[k] for k in keys] + ["target", "reached", "median steps", "median seconds"]
    body = md_table(rows, header) if rows else "No usable target: every optimiser diverged or made no progress."
    return ["## Time to a target validation loss", "", text, "", body, ""]


def _divergence_section(final) -> list[str]:
    table = divergence_table(final)
    batches = batch_order(table["batch_size"]) if "batch_size" in table else []
    rows = []
    for (opt, lr), part in _sorted(table, ["optimizer", "lr"]).groupby(["optimizer", "lr"], sort=False):
        per_bs = {r["batch_size"]: f"{r['diverged']}/{r['runs']}" for _, r in part.iterrows()} if batches else {}
        epochs = final.loc[(final["optimizer"] == opt) & (final["lr"] == lr) & final["diverged"], "epoch"]
        rows.append([opt, f"{lr:g}", *(per_bs.get(b, "–") for b in batches),
                     f"{part['diverged'].sum()}/{part['runs'].sum()}",
                     _num(epochs.median()) if len(epochs) else "–"])
    header = ["optimiser", "lr", *(f"batch size {b}" for b in batches), "all runs",
              "median epoch of divergence"]
    total = int(final["diverged"].sum())
    return ["## Diverged runs", "",
            f"{total} of {len(final)} runs diverged (a loss or gradient became NaN/Inf, or the final "
            "loss is not finite; the run stopped there). Diverged / runs, for every lr tried, not only "
            "the best.", "", md_table(rows, header), ""]


def _heatmap_sections(final_best, df, fig_dir: Path, written: list[str]) -> list[str]:
    acc = has_accuracy(df)
    metric, label = ("val_acc", "final validation accuracy") if acc else ("final_val_loss", "final validation loss")
    frame = final_best.copy()
    if acc:  # a diverged net's argmax of NaN is not a prediction
        frame[metric] = frame[metric].where(~frame["diverged"])
    else:
        frame[metric] = frame[metric].replace(np.inf, np.nan)
    out = ["## Heatmaps", ""]
    if not acc and (varied(df, "batch_size") or varied(df, "init")):
        out += ["The data set is a regression set (no accuracy), so these show the final validation "
                "loss instead (lower is better).", ""]
    for axis in ("batch_size", "init"):
        name = f"heatmap_{axis}.png"
        if not varied(df, axis):
            value = df[axis].iloc[0]
            out += [f"No optimiser x {AXIS_NAMES[axis]} heatmap: the study does not vary the "
                    f"{AXIS_NAMES[axis]} (always {value}).", ""]
            continue
        matrix = frame.pivot_table(index="optimizer", columns=axis, values=metric, aggfunc="mean",
                                   dropna=False)
        matrix = matrix.reindex(index=optimizer_order(frame["optimizer"]),
                                columns=batch_order(matrix.columns) if axis == "batch_size" else sorted(matrix.columns))
        pooled = _pooled(df, axis)
        plot_heatmap(matrix, fig_dir / name, f"{label.capitalize()}\n(mean over {pooled}, at each optimiser's best lr)",
                     AXIS_NAMES[axis], label, higher_is_better=acc)
        written.append(name)
        out += [_figure_md(name, f"optimiser x {AXIS_NAMES[axis]} heatmap",
                           f"Each cell: mean {label} over {pooled} at the optimiser's best lr "
                           f"({'brighter is better' if acc else 'brighter is lower, i.e. better'}); "
                           "compare along a row to see the effect of the "
                           f"{AXIS_NAMES[axis]}, down a column to compare optimisers. Diverged runs are "
                           "left out of the mean; a cell of only diverged runs says so."), ""]
    return out


def _convergence_section(long_best, best, df, keys, batches, palette, fig_dir, written) -> list[str]:
    one_run = long_best.groupby(keys)["cell"].nunique().max() <= 1
    band = "one run per optimiser, so no band" if one_run else \
        f"line = mean over {_pooled(df, *keys)}, band = ±1 sd"
    rows = "training criterion, validation loss" + (
        ", validation accuracy" if has_accuracy(df) else " (no accuracy: regression set)")
    out = ["## Convergence", ""]
    for x, name, what in (("epoch", "convergence_epoch.png", "epoch"),
                          ("wall_time", "convergence_time.png", "training time (mean over runs per epoch)")):
        notes = plot_convergence(long_best, x, fig_dir / name, palette, _lr_label(best), batches)
        written.append(name)
        caption = (f"Rows: {rows}" + ("; columns: batch size" if batches else "") +
                   f". One line per optimiser at its best lr, against {what}; {band}; lower loss and "
                   f"higher accuracy are better; a loss row gets a log y-scale where it spans over "
                   f"{LOG_DECADES:g} decades" + "".join(f"; {n}" for n in notes) + ".")
        out += [_figure_md(name, f"convergence against {what.split(' (')[0]}", caption), ""]
    return out


def _lr_section(final, df, keys, batches, palette, fig_dir, written) -> list[str]:
    initial = df.loc[df["epoch"] == 0, "val_loss"].max()
    clipped = plot_lr_sensitivity(final, fig_dir / "lr_sensitivity.png", palette, batches, initial)
    written.append("lr_sensitivity.png")
    one_run = final.groupby(keys + ["lr"])["cell"].size().max() == 1  # then there is no band
    caption = ("Final validation loss against the lr (log x), one line per optimiser"
               + ("" if one_run else f", mean and ±1 sd band over {_pooled(df, *keys)} (runs that did not diverge)")
               + "; a flat, low curve means the optimiser is forgiving about its lr; an x at the top "
               "edge marks an lr at which at least one run diverged"
               + (f"; the y-range is cut at {CLIP_FACTOR:g}x the initial validation loss, so a line "
                  "leaving the top ended higher than that" if clipped else "") + ".")
    return ["## Learning-rate sensitivity", "",
            _figure_md("lr_sensitivity.png", "learning-rate sensitivity", caption), ""]


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(results_dir: Path) -> Path:
    """Regenerate ``results_dir/report.md`` and ``results_dir/figures/*.png``
    from the stored results; returns the report's path.

    Raises ResultsError (naming the directory or file) for a missing or empty
    directory or a corrupt file.
    """
    results_dir = Path(results_dir)
    df, meta = load(results_dir)
    fig_dir = results_dir / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)

    final = final_runs(df)
    keys = group_keys(df)
    table = lr_table(final, keys)
    best = _sorted(best_lrs(final, keys), keys)
    long_best = at_best_lr(df, best)
    final_best = at_best_lr(final, best)
    batches = batch_order(df["batch_size"]) if varied(df, "batch_size") else None
    palette = _palette(optimizer_order(df["optimizer"]))

    written: list[str] = []  # figure files drawn this time
    lines = _header(df, meta, results_dir)
    lines += _best_lr_section(best, table, keys, df)
    lines += _convergence_section(long_best, best, df, keys, batches, palette, fig_dir, written)
    lines += _performance_section(final_best, df)
    lines += _target_section(long_best, final_best, df, keys)
    lines += _heatmap_sections(final_best, df, fig_dir, written)
    lines += _lr_section(final, df, keys, batches, palette, fig_dir, written)
    lines += _divergence_section(final)

    for stale in set(FIGURE_NAMES) - set(written):  # a previous report's figure no longer drawn
        (fig_dir / stale).unlink(missing_ok=True)
    report = results_dir / REPORT
    _atomic_text(report, "\n".join(lines))
    return report
