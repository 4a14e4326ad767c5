"""The study report's figures, drawn from scored frames (:mod:`.scoring`).

Figures (``figures/``, each linked from report.md with a one-line caption):
convergence_epoch.png and convergence_time.png (train_loss, val_loss, val_acc
against epoch / training seconds, one line per optimiser at its best lr,
columns by batch size), heatmap_batch_size.png and heatmap_init.png
(optimiser x axis of the final val_acc, or val_loss for a regression set;
only for an axis the study varies), lr_sensitivity.png (final val_loss
against lr). Loss panels are cut at CLIP_FACTOR x the initial loss and get a
log scale when they span more than LOG_DECADES decades.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..reporting.figures import new_figure, save_figure
from .scoring import has_accuracy

LOG_DECADES = 1.5
#: Loss panels are cut at this multiple of the initial loss, so one exploding
#: run does not flatten every other curve.
CLIP_FACTOR = 10.0
#: Every figure write_report may write (stale ones from an earlier report are removed).


def needs_log_scale(values) -> bool:
    """Whether positive finite values span more than LOG_DECADES decades."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return v.size > 1 and math.log10(v.max() / v.min()) > LOG_DECADES



def palette_for(optimizers) -> dict:
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
    # Room below for the legend; a single column gets extra width for its entries.
    return new_figure(nrows, ncols, (width * max(ncols, 1.5) + 0.6, height * nrows + 1.2), **kw)


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
    save_figure(fig, path, tight=True)  # long legend labels stay inside


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


