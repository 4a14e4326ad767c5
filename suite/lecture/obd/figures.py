"""Optimal Brain Damage's figures (lecture section 11), one function per figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...reporting.figures import new_figure, plain_ticks, save_figure

SCHEDULES = ("gradual", "one-shot", "sparse from start", "dense")
CRITERION_LABELS = {"obd": "OBD (w²h/2)", "magnitude": "magnitude |w|", "random": "random",
                    "single": "single weights"}



def _figure(ncols: int = 1, width: float = 5.0, height: float = 3.8):
    fig, axes = new_figure(1, ncols, (width * ncols, height))
    return fig, axes[0]


def _save(fig, path: Path) -> Path:
    return save_figure(fig, path)


def _percent_axis(ax) -> None:
    plain_ticks(ax.xaxis, lambda v: f"{v:.0%}", minor_labels=True)


def plot_procedure(history: pd.DataFrame, trained: pd.DataFrame, path: Path) -> Path:
    """Validation accuracy and losses after each round's retraining, one line
    per seed; a red x marks the round that was undone (restored)."""
    fig, (acc_ax, loss_ax) = _figure(2)
    for seed, h in history.groupby("seed"):
        t0 = trained[trained.seed == seed].iloc[0]
        x = np.r_[0.0, h.fraction]
        line, = acc_ax.plot(x, np.r_[t0.val_acc, h.val_acc_after], marker="o", ms=3,
                            label=f"seed {seed}")
        loss_ax.plot(x, np.r_[t0.val_loss, h.val_loss_after], marker="o", ms=3, color=line.get_color())
        loss_ax.plot(x, np.r_[t0.train_loss, h.train_loss_after], marker=".", ls=":",
                     color=line.get_color())
        undone = h[h.restored]
        acc_ax.plot(undone.fraction, undone.val_acc_after, "x", color="red", ms=9, mew=2)
        loss_ax.plot(undone.fraction, undone.val_loss_after, "x", color="red", ms=9, mew=2)
    acc_ax.set(xlabel="weights removed", ylabel="validation accuracy after retraining",
               title="OBD procedure (x: round undone, then stop)")
    loss_ax.set(xlabel="weights removed", ylabel="loss after retraining",
                title="validation (solid) and training (dotted) loss")
    for ax in (acc_ax, loss_ax):
        _percent_axis(ax)
    acc_ax.legend(fontsize=8)
    return _save(fig, path)


def plot_criteria(df: pd.DataFrame, unpruned_acc: float, path: Path) -> Path:
    """Validation accuracy against the fraction removed, per criterion; left
    right after pruning, right after retraining (mean +- sd over seeds)."""
    import seaborn as sns

    fig, axes = _figure(2, height=4.0)
    d = df.assign(criterion=df.criterion.map(CRITERION_LABELS))
    for ax, stage in zip(axes, ("pruned", "retrained")):
        sns.lineplot(data=d[d.stage == stage], x="fraction", y="val_acc", hue="criterion",
                     marker="o", errorbar="sd", ax=ax, legend=stage == "pruned")
        ax.axhline(unpruned_acc, color="grey", ls="--", lw=1, label="unpruned")
        ax.set(xlabel="weights removed (one shot)", ylabel="validation accuracy", ylim=(0, 1.02),
               title="before retraining" if stage == "pruned" else "after retraining")
        _percent_axis(ax)
    axes[0].legend(fontsize=8, loc="lower left")
    return _save(fig, path)


def plot_predicted_vs_measured(df: pd.DataFrame, path: Path) -> Path:
    """Measured against predicted training-loss increase, log-log, y = x dashed;
    left OBD's prediction sum S, right with the first-order term -g.w added."""
    import seaborn as sns

    fig, axes = _figure(2, width=5.2, height=4.6)
    for ax, with_g in zip(axes, (False, True)):
        x = df.predicted + (df.first_order if with_g else 0.0)
        keep = (x > 0) & (df.measured > 0)
        d = df[keep].assign(x=x[keep], criterion=df.criterion[keep].map(CRITERION_LABELS))
        sns.scatterplot(data=d, x="x", y="measured", hue="criterion", size="n_removed",
                        sizes=(15, 120), alpha=0.75, ax=ax, legend=not with_g)
        lo, hi = min(d.x.min(), d.measured.min()), max(d.x.max(), d.measured.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set(xscale="log", yscale="log", ylabel="measured increase of the training loss",
               xlabel="Σ S − g·w (with the first-order term)" if with_g
               else "OBD's prediction Σ S = Σ w²h/2",
               title=f"{'with' if with_g else 'without'} −g·w "
                     f"({int((~keep).sum())} points ≤ 0 not shown)")
    axes[0].legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def plot_schedules(df: pd.DataFrame, path: Path) -> Path:
    """Validation accuracy against sparsity: gradual, one-shot, sparse from start."""
    import seaborn as sns

    fig, (ax,) = _figure(1, width=6.0, height=4.2)
    sparse = df[df.schedule != "dense"]
    sns.lineplot(data=sparse, x="sparsity", y="val_acc", hue="schedule", marker="o", errorbar="sd",
                 ax=ax, hue_order=[s for s in SCHEDULES if s != "dense"])
    ax.axhline(df[df.schedule == "dense"].val_acc.mean(), color="grey", ls="--", lw=1,
               label="dense (same budget)")
    ax.set(xlabel="weights removed", ylabel="validation accuracy", ylim=(0, 1.02),
           title="Same training budget, same final sparsity")
    _percent_axis(ax)
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)


def plot_input_salience(grid: np.ndarray, path: Path) -> Path:
    """The 8 x 8 map of input saliences S_j (shares of the total)."""
    import seaborn as sns

    fig, (ax,) = _figure(1, width=5.2, height=4.4)
    sns.heatmap(grid / grid.sum(), annot=True, fmt=".1%", annot_kws={"size": 6}, cmap="viridis",
                square=True, cbar_kws={"label": "share of total input salience"}, ax=ax)
    ax.set(title="OBD input salience S_j = Σ_h S_jh (mean over seeds)", xlabel="pixel column",
           ylabel="pixel row")
    return _save(fig, path)


def plot_top_k(df: pd.DataFrame, path: Path) -> Path:
    """Validation accuracy against k, on the k most salient vs k random inputs."""
    import seaborn as sns

    fig, (ax,) = _figure(1, width=5.5, height=4.0)
    sns.lineplot(data=df, x="k", y="val_acc", hue="selection", marker="o", errorbar="sd", ax=ax)
    ax.set(xscale="log", xlabel="inputs kept (k of 64)", ylabel="validation accuracy",
           title="Training on k inputs only")
    plain_ticks(ax.xaxis, locator=sorted(df.k.unique()))
    return _save(fig, path)
