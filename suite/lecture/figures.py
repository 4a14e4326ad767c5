"""The report's figures, one function per figure: each draws from the
tables it is given, writes the PNG to ``path`` and returns its file name.

Plain matplotlib on seaborn's whitegrid theme (applied per figure, never
globally); constrained layout lays a figure out
while it is drawn (one pass -- drawing the figures is most of a report's
time).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..reporting.figures import new_figure, plain_ticks, save_figure, themed
from ..reporting.markdown import fmt, pct
from .experiments import TEST_FUNCTIONS, least_squares_loss, least_squares_problem, perceptron_data
from .measures import finals

# --- drawing ------------------------------------------------------------------------- #


#: The report's look: seaborn's whitegrid theme, applied to each figure only
#: (reporting.figures.themed), never to the process.
_THEME = themed(style="whitegrid", context="notebook", font_scale=0.95)


def _subplots(nrows: int = 1, ncols: int = 1, figsize=(6.4, 4.8), squeeze: bool = True, **kw):
    """(Figure, axes) as pyplot's subplots gives them, on a Figure object."""
    return new_figure(nrows, ncols, figsize, squeeze=squeeze, **kw)


def _save(fig, path: Path) -> str:
    """Write a figure (laid out by constrained layout while it is drawn: one
    pass -- drawing the figures is most of a report's time)."""
    save_figure(fig, path)
    return path.name


def _lines(ax, data: pd.DataFrame, x: str, y: str, hue: str, order=None, band: bool = False,
           marker=None, linestyle="-", legend: bool = True, palette: dict | None = None):
    """One line per value of ``hue``: the mean of ``y`` over the rows that share
    ``x`` (the seeds), with a +-1 sd band if ``band``. Plain matplotlib on
    seaborn's theme and palette (seaborn's lineplot with bands was the
    report's slowest part)."""
    import seaborn as sns

    d = data.assign(_y=pd.to_numeric(data[y], errors="coerce").replace([np.inf, -np.inf], np.nan))
    keys = list(order) if order is not None else list(dict.fromkeys(d[hue]))
    palette = palette or dict(zip(keys, sns.color_palette(n_colors=max(len(keys), 1))))
    for key in keys:
        sub = d[d[hue] == key]
        if sub.empty:
            continue
        g = sub.groupby(x)["_y"].agg(["mean", "std"]).sort_index()
        ax.plot(g.index, g["mean"], marker=marker, ls=linestyle, color=palette[key], label=f"{key}", ms=4)
        if band and g["std"].notna().any():
            sd = g["std"].fillna(0.0)
            low = (g["mean"] - sd).where(g["mean"] - sd > 0, g["mean"] / 3)  # stays positive on a log axis
            ax.fill_between(g.index, low, g["mean"] + sd, color=palette[key], alpha=0.18, lw=0)
    ax.set(xlabel=x, ylabel=y)
    if legend:
        ax.legend(fontsize="small", title=hue, title_fontsize="small")


def _log_y(ax) -> None:
    """A log y axis; over less than two decades, ticks at 1, 2, 5 x 10^k with
    plain labels (matplotlib would print "2 x 10^0" on every minor tick)."""
    from matplotlib.ticker import LogLocator

    ax.set_yscale("log")
    low, high = ax.get_ylim()
    if low > 0 and high / low < 100:
        plain_ticks(ax.yaxis, locator=LogLocator(subs=(1.0, 2.0, 5.0)))


def _curves(ax, df, x, y, hue, order=None, log=True, title=None):
    """Mean +- sd over seeds of ``y`` against ``x``, one line per ``hue``."""
    _lines(ax, df, x, y, hue, order, band=True)
    if log and (pd.to_numeric(df[y], errors="coerce") > 0).any():
        _log_y(ax)
    if title:
        ax.set_title(title)


# --- section 1 ----------------------------------------------------------------------- #


@_THEME
def perceptron_figure(curves: pd.DataFrame, summary: pd.DataFrame, path: Path) -> str:
    """Mistakes per epoch, and both data sets with the final hyperplane."""
    fig, axes = _subplots(1, 3, figsize=(14, 4))
    _lines(axes[0], curves, "epoch", "mistakes", "data", marker="o")
    axes[0].set_title("mistakes per epoch")
    # The number of objects the stored experiment used (400 or the quick 100).
    n_samples = int(summary["n_samples"].iloc[0]) if "n_samples" in summary else 400
    for ax, (name, separable) in zip(axes[1:], (("separable", True), ("overlapping", False))):
        X, y = perceptron_data(separable, n_samples)  # the same points, redrawn
        row = summary.set_index("data").loc[name]
        ax.scatter(X[:, 0], X[:, 1], c=np.where(y > 0, "tab:orange", "tab:blue"), s=8, alpha=0.7)
        xs = np.linspace(X[:, 0].min(), X[:, 0].max(), 10)
        if abs(row["w2"]) > 1e-12:
            ax.plot(xs, -(row["w1"] * xs + row["b"]) / row["w2"], "k-", lw=2, label="final w")
        ax.set_ylim(X[:, 1].min() - 1, X[:, 1].max() + 1)
        ax.set_title(f"{name}: {int(row['epochs'])} epochs, train acc {pct(row['train_acc'])}")
        ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path)


# --- section 2 ----------------------------------------------------------------------- #


@_THEME
def sgd_figure(df: pd.DataFrame, path: Path) -> str:
    """Q over the training set per epoch for each start, and where the stopping rule fired."""
    fig, ax = _subplots(figsize=(7.5, 4))
    data = df.assign(seed=df["seed"].astype(str))
    _lines(ax, data, "epoch", "train_loss", "seed", marker=".", legend=False)
    stops = finals(df)
    ax.scatter(stops["epoch"], stops["train_loss"], marker="x", color="k", zorder=5, label="stopping rule fired")
    _log_y(ax)
    ax.set_ylabel("Q over the training set")
    ax.set_title("per-object SGD (batch size 1), digits, five random starts")
    ax.legend(fontsize="small", title="seed")
    return _save(fig, path)


# --- section 3 ----------------------------------------------------------------------- #


@_THEME
def batch_figure(best: pd.DataFrame, order: list[str], timed: pd.DataFrame, hue: list[str], path: Path) -> str:
    """Q per epoch (best lr per batch size, ``order``) and per second of
    training (``timed``: those runs and the long full-batch descent, each
    seed a line, coloured in the order ``hue``)."""
    import seaborn as sns

    fig, axes = _subplots(1, 2, figsize=(13, 4.2))
    _curves(axes[0], best, "epoch", "train_loss", "batch_size", order,
            title="Q over the training set per epoch (best lr per batch size)")
    for key, runs in timed.groupby("batch_size"):
        for i, (_, run) in enumerate(runs.groupby("cell")):
            run = run[run["epoch"] > 0].sort_values("epoch")  # epoch 0 sits at 0 s
            axes[1].plot(run["wall_time"], run["train_loss"], color=sns.color_palette()[hue.index(key)],
                         alpha=0.8, label=key if i == 0 else None)
    axes[1].set_xscale("log")
    _log_y(axes[1])
    axes[1].set(xlabel="training seconds (evaluation excluded)", ylabel="train_loss",
                title="... per second of training (each seed a line)")
    axes[1].legend(fontsize="small", title="batch_size", title_fontsize="small")
    return _save(fig, path)


@_THEME
def paths_figure(paths: pd.DataFrame, path: Path) -> str:
    """The slides' three trajectory pictures: each batch's path over the
    contours of the 2-weight least-squares problem."""
    X, y = least_squares_problem()
    labels = list(dict.fromkeys(paths["batch"]))
    fig, axes = _subplots(1, len(labels), figsize=(4.6 * len(labels), 4.2), sharey=True)
    w1 = np.linspace(-2.0, 2.5, 120)
    w2 = np.linspace(-1.5, 3.0, 120)
    G1, G2 = np.meshgrid(w1, w2)
    Q = least_squares_loss(X, y, np.column_stack([G1.ravel(), G2.ravel()])).reshape(G1.shape)
    for ax, label in zip(np.atleast_1d(axes), labels):
        p = paths[paths["batch"] == label]
        ax.contour(G1, G2, Q, levels=np.geomspace(Q.min() * 1.01, Q.max(), 14), cmap="viridis", linewidths=0.8)
        ax.plot(p["w1"], p["w2"], ".-", color="tab:red", lw=0.8, ms=2.5)
        ax.plot(p["w1"].iloc[0], p["w2"].iloc[0], "ko")
        name = "full batch (gradient descent)" if label == "full" else f"batch {label}"
        ax.set_title(f"{name}: {int(p['step'].max())} steps\nfinal Q {fmt(p['loss'].iloc[-1])}")
        ax.set_xlabel("w1")
    np.atleast_1d(axes)[0].set_ylabel("w2")
    return _save(fig, path)


# --- section 4 ----------------------------------------------------------------------- #


@_THEME
def order_figure(df: pd.DataFrame, order: list[str], path: Path) -> str:
    """Q and validation accuracy per epoch, one line per order of the objects."""
    fig, axes = _subplots(1, 2, figsize=(13, 4.2))
    _curves(axes[0], df, "epoch", "train_loss", "order", order, title="Q over the training set (mean +- sd over seeds)")
    _curves(axes[1], df, "epoch", "val_acc", "order", order, log=False, title="validation accuracy")
    return _save(fig, path)


# --- section 5 ----------------------------------------------------------------------- #


@_THEME
def standardize_figure(best: pd.DataFrame, opts: list[str], sens: pd.DataFrame, path: Path) -> str:
    """Q per epoch, raw against standardised inputs, for each optimiser
    (``best``: best lr each), and the final Q against the lr (``sens``)."""
    fig, axes = _subplots(1, len(opts) + 1, figsize=(5.2 * (len(opts) + 1), 4.2))
    for ax, opt in zip(axes, opts):
        _curves(ax, best[best["optimizer"] == opt], "epoch", "train_loss", "inputs", ["raw", "standardised"],
                title=f"{opt}, best lr each: Q (squared error)")
    _lines(axes[-1], sens, "lr", "score", "curve", marker="o")
    axes[-1].set(xscale="log", yscale="log", ylabel="final Q (gaps: diverged)", title="final Q against the lr")
    axes[-1].legend(fontsize="small")
    return _save(fig, path)


# --- sections 6 and 7 ------------------------------------------------------------------ #


@_THEME
def overfitting_figure(base: pd.DataFrame, path: Path) -> str:
    """Training against validation loss and accuracy, without regularisation."""
    fig, axes = _subplots(1, 2, figsize=(13, 4.2))
    long = base.melt(id_vars=["epoch", "cell"], value_vars=["train_loss", "val_loss"], var_name="split", value_name="Q")
    _curves(axes[0], long, "epoch", "Q", "split", title="loss without regularisation")
    long = base.melt(id_vars=["epoch", "cell"], value_vars=["train_acc", "val_acc"], var_name="split", value_name="accuracy")
    _curves(axes[1], long, "epoch", "accuracy", "split", log=False, title="accuracy without regularisation")
    axes[1].set_ylim(0.0, 1.02)
    return _save(fig, path)


@_THEME
def l2_figure(df: pd.DataFrame, lambdas: list[float], path: Path) -> str:
    """Validation loss and training Q per epoch, one line per L2 lambda."""
    fig, axes = _subplots(1, 2, figsize=(13, 4.2))
    data = df.assign(lam=df["l2"].map(fmt))
    _curves(axes[0], data, "epoch", "val_loss", "lam", [fmt(l) for l in lambdas], title="validation loss, by L2 lambda")
    _curves(axes[1], data, "epoch", "train_loss", "lam", [fmt(l) for l in lambdas], title="training Q, by L2 lambda")
    return _save(fig, path)


# --- section 8 ----------------------------------------------------------------------- #


@_THEME
def gradient_norms_figure(df: pd.DataFrame, at_init: pd.DataFrame, during: pd.DataFrame,
                          stats: pd.DataFrame | None, acts: list[str], n_layers: int, path: Path) -> str:
    """||dQ/dW_l|| per layer at initialisation and during SGD training, and
    (``stats``) the variance of each layer's output at init, per activation."""
    fig, axes = _subplots(1, 3 if stats is not None else 2, figsize=(16, 4.2))
    for ax, data, title in ((axes[0], at_init, "||dQ/dW_l|| at initialisation"),
                            (axes[1], during, "||dQ/dW_l|| during SGD training (mean over steps)")):
        _lines(ax, data, "layer", "norm", "activation", acts, marker="o")
        ax.set(yscale="log", title=title, xticks=range(1, n_layers + 1))
    if stats is not None:
        _lines(axes[2], stats, "layer", "out_var", "activation", acts, marker="o")
        axes[2].set(yscale="log", title="variance of each layer's output at init", xticks=range(1, n_layers + 1))
    widths = str(df["hidden"].iloc[0]).split("-")
    fig.suptitle(f"{len(widths)} hidden layers of {widths[0]}, init {df['init'].iloc[0]}, {df['dataset'].iloc[0]} "
                 f"(layer {n_layers} is the output layer)")
    return _save(fig, path)


@_THEME
def activation_convergence_figure(best: pd.DataFrame, acts: list[str], path: Path) -> str:
    """Q per epoch with SGD and with Adam (best lr each), one line per activation."""
    fig, axes = _subplots(1, 2, figsize=(13, 4.2))
    for ax, opt in zip(axes, ("sgd", "adam")):
        sub = best[best["optimizer"] == opt]
        if len(sub):
            _curves(ax, sub, "epoch", "train_loss", "activation", acts, title=f"{opt}, best lr each: Q over the training set")
    return _save(fig, path)


# --- section 9 ----------------------------------------------------------------------- #


@_THEME
def variances_figure(stats: pd.DataFrame, acts: list[str], inits: list[str], rules: dict[str, str],
                     path: Path) -> str:
    """Var(output of layer l) and Var(dQ/dW_l) at initialisation, one panel
    per activation, one line per init (its rule from ``rules`` in the legend)."""
    fig, axes = _subplots(2, len(acts), figsize=(6.5 * len(acts), 8), squeeze=False)
    for j, act in enumerate(acts):
        sub = stats[stats["activation"] == act]
        for i, (col, what) in enumerate((("out_var", "Var(output of layer l)"),
                                          ("grad_var", "Var(dQ/dW_l)"))):
            ax = axes[i, j]
            _lines(ax, sub, "layer", col, "init", inits, marker="o", legend=False)
            ax.set(yscale="log", title=f"{act}: {what} at initialisation", ylabel=col,
                   xticks=sorted(sub["layer"].unique()))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, [f"{l} ({rules.get(l, l)})" for l in labels], loc="outside upper center",
               ncol=min(len(labels), 3), fontsize="small")
    return _save(fig, path)


@_THEME
def init_convergence_figure(best: pd.DataFrame, acts: list[str], inits: list[str], path: Path) -> str:
    """Q per epoch with SGD (best lr each), one panel per activation, one line per init."""
    fig, axes = _subplots(1, len(acts), figsize=(6.5 * len(acts), 4.2), squeeze=False)
    for ax, act in zip(axes[0], acts):
        _curves(ax, best[best["activation"] == act], "epoch", "train_loss", "init", inits,
                title=f"{act}: Q over the training set (SGD, best lr each)")
    return _save(fig, path)


# --- section 10 ---------------------------------------------------------------------- #


@_THEME
def dropout_figure(table: pd.DataFrame, path: Path) -> str:
    """The train-validation gap, validation accuracy and validation loss
    against dropout p, one colour per L2 lambda, one line style per mode."""
    import seaborn as sns

    from matplotlib.lines import Line2D

    fig, axes = _subplots(1, 3, figsize=(17, 4.6))
    modes = [m for m in ("none", "classic", "inverted") if m in set(table["dropout_mode"])]
    plot = table.assign(lam=table["l2"].map(fmt), gap=100 * table["acc_gap"], val=100 * table["val_acc"])
    lam_order = [fmt(v) for v in sorted(table["l2"].unique())]
    palette = dict(zip(lam_order, sns.color_palette(n_colors=len(lam_order))))
    styles = {"none": ("s", "-"), "classic": ("o", "--"), "inverted": ("^", "-")}
    for ax, col, title in ((axes[0], "gap", "train - validation accuracy (points)"),
                           (axes[1], "val", "validation accuracy (%)"), (axes[2], "val_Q", "final validation loss")):
        for m in modes:
            marker, ls = styles[m]
            _lines(ax, plot[plot["dropout_mode"] == m], "p", col, "lam", lam_order, marker=marker,
                   linestyle=ls, legend=False, palette=palette)
        ax.set(title=title, xlabel="dropout p (p = 0: no dropout)", ylabel="", xticks=sorted(plot["p"].unique()))
    handles = [Line2D([], [], color=palette[l], lw=2, label=f"L2 lambda {l}") for l in lam_order]
    handles += [Line2D([], [], color="0.3", marker=styles[m][0], ls=styles[m][1], label=m) for m in modes]
    fig.legend(handles=handles, loc="outside right upper", fontsize="small")
    return _save(fig, path)


# --- section 12 ---------------------------------------------------------------------- #


@_THEME
def mnist1d_figure(best: pd.DataFrame, opts: list[str], path: Path) -> str:
    """Q over the training set and validation loss per epoch, one line per optimiser."""
    fig, axes = _subplots(1, 2, figsize=(13, 4.2))
    _curves(axes[0], best, "epoch", "train_loss", "optimizer", opts, title="Q over the training set (best lr each)")
    _curves(axes[1], best, "epoch", "val_loss", "optimizer", opts, title="validation loss")
    return _save(fig, path)


@_THEME
def trajectories_figure(traj: pd.DataFrame, functions: list[str], opts: list[str], path: Path) -> str:
    """The lecture's closing figure: every optimiser's path over the contours
    of each test function, and f along the path."""
    import seaborn as sns

    palette = dict(zip(opts, sns.color_palette("tab10", len(opts))))
    fig, axes = _subplots(2, len(functions), figsize=(7.5 * len(functions), 10.5), squeeze=False,
                             gridspec_kw={"height_ratios": [1.5, 1]})
    for j, name in enumerate(functions):
        fn = TEST_FUNCTIONS[name]
        ax = axes[0, j]
        x0, x1, y0, y1 = fn.box
        gx, gy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
        fz = fn.f(np.array([gx, gy]))
        ax.contour(gx, gy, fz, levels=np.geomspace(max(fz.min(), 1e-2), fz.max(), 16), colors="0.55",
                   linewidths=0.7, alpha=0.8)
        sub = traj[traj["function"] == name]
        f0 = float(fn.f(np.array(fn.start)))
        for opt in opts:
            p = sub[sub["optimizer"] == opt].sort_values("step")
            f = p["f"].to_numpy()
            label = f"{opt} (lr {fmt(p['lr'].iloc[0])}): f = {fmt(f[-1], 2)}"
            ax.plot(p["x"], p["y"], "-", color=palette[opt], lw=1.6, alpha=0.9, label=label)
            axes[1, j].plot(p["step"], np.maximum(f, 1e-16), color=palette[opt], lw=1.4, label=opt)
        ax.plot(*fn.start, "ko", ms=6)
        ax.plot(*fn.minimum, "k*", ms=14)
        ax.set(xlim=(x0, x1), ylim=(y0, y1), title=f"{fn.title}\n(start: dot, minimum: star)")
        ax.legend(fontsize="small", loc="lower right" if name == "quadratic" else "lower left")
        axes[1, j].set(yscale="log", xlabel="step", ylabel="f(w)", title=f"{name}: f along the path (f(start) = {fmt(f0)})")
        axes[1, j].legend(fontsize="small", ncol=2)
    return _save(fig, path)
