"""The protocol report's figures: the performance profile, convergence on the
confirmation seeds, the tuning curves and the tuning-budget curves. Each
takes the tables of :mod:`.scoring` and a path, and draws with a local theme
(:mod:`suite.reporting.figures`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..reporting.figures import new_figure, plain_ticks, save_figure, themed


def _grid(n: int, cols: int = 3):
    return math.ceil(n / cols), min(n, cols)


def _legend(fig, axes, palette) -> None:
    handles = [axes.flat[0].plot([], [], color=c, label=o)[0] for o, c in palette.items()]
    fig.legend(handles=handles, loc="outside right center", frameon=False)


@themed()
def plot_profile(profile: pd.DataFrame, scores: pd.Series, palette: dict, path) -> None:
    """rho(tau) per optimiser: the fraction of workloads it solves within tau
    times the fastest optimiser's steps to target."""
    fig, ax = new_figure(figsize=(7.5, 4.2))
    ax = ax[0, 0]
    for o in profile.columns:
        ax.step(profile.index, profile[o], where="post", color=palette.get(o), lw=2,
                label=f"{o} (score {scores[o]:.2f})")
    ax.set_xscale("log")
    plain_ticks(ax.xaxis, locator=[t for t in (1, 1.5, 2, 3, 4, 6, 8, 16) if t <= profile.index.max()])
    ax.set_xlabel("tau: steps to target / the fastest optimiser's (log scale)")
    ax.set_ylabel("fraction of workloads")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="lower right", fontsize="small")
    save_figure(fig, path)


def _log_if_wide(ax, values) -> None:
    """A log y axis where the finite values span more than a factor of 10
    (else the good end of a curve is a flat line at the bottom)."""
    finite = values[np.isfinite(values)]
    if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 10:
        ax.set_yscale("log")


def _panels(workloads, palette: dict, path, draw) -> None:
    """One panel per workload, ``draw(ax, workload)`` filling each; one legend."""
    rows, cols = _grid(len(workloads))
    fig, axes = new_figure(rows, cols, figsize=(4.2 * cols + 1.8, 3.2 * rows))
    for ax, w in zip(axes.flat, workloads):
        draw(ax, w)
        ax.set_title(w, fontsize="medium")
    for ax in list(axes.flat)[len(workloads):]:
        ax.set_visible(False)
    _legend(fig, axes, palette)
    save_figure(fig, path)


@themed()
def plot_convergence(conf: pd.DataFrame, workloads, palette: dict, targets: dict, labels: dict, path) -> None:
    """Each workload's metric (``score``; ``labels``: workload -> its name)
    against epoch on the confirmation seeds: the mean over runs (line) and
    the range (band); the target dashed."""
    def draw(ax, w):
        sub = conf[conf["workload"] == w]
        for o, runs in sub.groupby("optimizer"):
            g = runs.groupby("epoch")["score"]
            ax.plot(g.mean().index, g.mean(), color=palette.get(o), lw=1.8)
            ax.fill_between(g.min().index, g.min(), g.max(), color=palette.get(o), alpha=0.15, lw=0)
        if targets.get(w) is not None:
            ax.axhline(targets[w], color="black", ls="--", lw=1)
        _log_if_wide(ax, sub["score"])
        ax.set_xlabel("epoch")
        ax.set_ylabel(labels[w])

    _panels(workloads, palette, path, draw)


@themed()
def plot_tuning(table: pd.DataFrame, chosen: dict, workloads, palette: dict, labels: dict, path,
                lines: bool = True) -> None:
    """Mean final metric (``mean_score``) on the tuning seeds against lr, per
    workload; the chosen lr ringed; a diverged lr drawn at the top as x.
    ``lines=False`` (a random search: its trials differ in more than the lr)
    draws the points alone."""
    def draw(ax, w):
        sub = table[table["workload"] == w]
        finite = sub["mean_score"][np.isfinite(sub["mean_score"])]
        top = finite.max() * 1.1 if len(finite) else 1.0
        for o, g in sub.groupby("optimizer"):
            y = g["mean_score"].where(np.isfinite(g["mean_score"]), top)
            ax.plot(g["lr"], y, color=palette.get(o), marker="o", ms=3, lw=1.4 if lines else 0)
            bad = ~np.isfinite(g["mean_score"])
            ax.scatter(g["lr"][bad], [top] * int(bad.sum()), marker="x", color=palette.get(o))
            pick = g[g["lr"] == chosen.get((w, o))]
            ax.scatter(pick["lr"], pick["mean_score"], s=80, facecolors="none", edgecolors=palette.get(o), lw=1.5)
        _log_if_wide(ax, sub["mean_score"])
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"final {labels[w]} (tuning mean)")

    _panels(workloads, palette, path, draw)


@themed()
def plot_budget(curves: dict, workloads, palette: dict, labels: dict, path) -> None:
    """The median best final metric after k random lrs of the grid, per
    workload; band: bootstrap interval over the tuning seeds."""
    def draw(ax, w):
        for (cw, o), c in curves.items():
            if cw != w:
                continue
            ax.plot(c.index, c["best"], color=palette.get(o), marker="o", ms=3, lw=1.4)
            lo, hi = c["lo"].where(np.isfinite(c["lo"])), c["hi"].where(np.isfinite(c["hi"]))
            ax.fill_between(c.index, lo, hi, color=palette.get(o), alpha=0.12, lw=0)
        ax.set_xlabel("k: lrs tried at random")
        ax.set_ylabel(f"median best {labels[w]}")

    _panels(workloads, palette, path, draw)


@themed()
def plot_batch_scaling(table: pd.DataFrame, palette: dict, path) -> None:
    """The best lr against the batch size (log-log), per workload of the
    file and optimiser (:func:`.scoring.batch_scaling`): points joined by a
    line, the fitted power law dotted, k in the legend; grey dashes: the
    slopes of linear (k = 1) and square-root (k = 0.5) scaling."""
    workloads = list(dict.fromkeys(table["workload"]))

    def draw(ax, w):
        for _, r in table[table["workload"] == w].iterrows():
            b, lr = np.asarray(r["batch"], float), np.asarray(r["best_lr"], float)
            colour = palette.get(r["optimizer"])
            ax.plot(b, lr, color=colour, marker="o", ms=3, lw=1.2)
            ok = np.isfinite(lr)
            if ok.sum() >= 2 and np.isfinite(r["k"]):
                lb = np.log10(b[ok])
                ax.plot(b[ok], 10 ** (np.log10(lr[ok]).mean() + r["k"] * (lb - lb.mean())), color=colour, ls=":",
                        lw=1)
        sub = table[table["workload"] == w]
        if len(sub):
            b = np.asarray(sub["batch"].iloc[0], float)
            anchor = np.nanmin([np.nanmin(np.asarray(v, float)) for v in sub["best_lr"]])
            for k in (1.0, 0.5):
                ax.plot(b, anchor * (b / b[0]) ** k, color="grey", ls="--", lw=0.8)
                ax.annotate(f"k = {k:g}", (b[-1], anchor * (b[-1] / b[0]) ** k), fontsize="x-small", color="grey")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("best lr (tuning seeds)")

    _panels(workloads, palette, path, draw)
