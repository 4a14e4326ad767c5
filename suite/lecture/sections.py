"""The report's sections, one builder per section of the lecture (1-12), in
its order: each reads the stored results (:class:`~suite.lecture.stored.Stored`),
draws its figures (:mod:`suite.lecture.figures`) and returns a
:class:`Section` of :class:`Item` s -- claim, figure, table, and a one-line
verdict with the measured number.

Where the numbers come from: section 8's per-layer gradient norms during
training are the training loop's opt-in ``layer_norms`` columns
(``grad_norm_W1`` ...; set in ``lecture-activations.toml``); section 12's
mnist1d runs are ``lecture-optimizers``, or ``results/default`` beside the
lecture's results when that study is complete (see ``optimizer_results``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import data as datasets
from ..inits import INITS
from . import figures
from .experiments import OPTIMIZERS, PATH_LRS
from .formatting import fmt, md_table, pct
from .measures import (best_lr, finals, gap_table, layer_norm_columns, layer_norms_long, mean_final, median_reach,
                       network_size, noise_table, reach_epochs, scored_finals, steps_to, value_at_time,
                       variance_ratios)
from .stored import Stored, optimizer_results, truthy

AGREES, CONTRADICTS, MIXED, NOT_REPRODUCED, INFO = (
    "agrees", "CONTRADICTS", "mixed", "not reproduced", "no claim tested")


@dataclass
class Item:
    """One claim of the lecture and what our data say about it."""

    claim: str
    verdict: str                 # one line, with the measured number
    status: str = INFO           # AGREES, CONTRADICTS, MIXED, NOT_REPRODUCED or INFO
    figure: str | None = None    # a file name under figures/ (or a path relative to out)
    table: str | None = None     # Markdown
    note: str | None = None


@dataclass
class Section:
    number: int
    title: str
    lecture: str                 # what the lecture says, in a line or two
    items: list[Item] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def _missing(what: str) -> Item:
    return Item(claim="(no data)", verdict=f"no results for {what}: run `run_lecture` first", status=INFO)


# --- Section 1 ------------------------------------------------------------------ #


def section_perceptron(st: Stored) -> Section:
    sec = Section(1, "Training one neuron: Rosenblatt's perceptron rule",
                  "On a misclassified object, w := w + eta y x. The rule converges in finitely many "
                  "mistakes on linearly separable data.", sources=["custom/perceptron*.csv"])
    curves, summary = st.custom("perceptron"), st.custom("perceptron_summary")
    if curves is None or summary is None:
        sec.items.append(_missing("the perceptron"))
        return sec
    figure = figures.perceptron_figure(curves, summary, st.figure("s01_perceptron.png"))
    sep = summary.set_index("data").loc["separable"]
    ovl = summary.set_index("data").loc["overlapping"]
    table = md_table(summary[["data", "epochs", "converged", "total_mistakes", "last_epoch_mistakes",
                              "train_acc", "bound"]].rename(columns={"bound": "Novikoff bound (R/gamma)^2"}))
    ok = bool(sep["converged"]) and sep["total_mistakes"] <= sep["bound"]
    sec.items.append(Item(
        claim="On linearly separable data the rule stops after finitely many mistakes "
              "(Novikoff: at most (R/gamma)^2).",
        verdict=f"separable blobs: converged after {int(sep['epochs'])} epochs and "
                f"{int(sep['total_mistakes'])} mistakes in all, within the bound {fmt(sep['bound'])}.",
        status=AGREES if ok else CONTRADICTS, figure=figure, table=table))
    sec.items.append(Item(
        claim="(Converse) on data no line separates, the rule never stops on its own.",
        verdict=f"overlapping blobs: still {int(ovl['last_epoch_mistakes'])} mistakes in epoch "
                f"{int(ovl['epochs'])} (no epoch without one); the last weights classify "
                f"{pct(ovl['train_acc'])} of the objects correctly.",
        status=AGREES if not bool(ovl["converged"]) else CONTRADICTS))
    return sec


# --- Section 2 ------------------------------------------------------------------ #


def section_sgd(st: Stored) -> Section:
    sec = Section(2, "Stochastic gradient descent (SGD) for a network",
                  "Random initial weights; repeat: compute Q over the training set, then for each object "
                  "w := w - eta dQ_i/dw; until Q or the weights stabilise. Back-propagation gives every "
                  "dQ/dw in one backward pass. Weaknesses: slow convergence, local minima, dependence on "
                  "the order of objects (section 4), overfitting (sections 6-7, 10).",
                  sources=["lecture-sgd", "custom/gradient_check.csv"])
    df = st.study("lecture-sgd")
    checks = st.custom("gradient_check")
    if checks is not None:
        worst = float(checks["max_rel_error"].max())
        sec.items.append(Item(
            claim="Back-propagation computes all dQ/dw (in one backward pass).",
            verdict=f"our hand-written backward pass matches central finite differences to a relative "
                    f"error of at most {worst:.1e} (float64, 4 activations, 40 random weights each).",
            status=AGREES if worst < 1e-6 else CONTRADICTS,
            table=md_table(checks.assign(max_rel_error=checks["max_rel_error"].map(lambda v: f"{v:.1e}")))))
    if df is None:
        sec.items.append(_missing("lecture-sgd"))
        return sec
    figure = figures.sgd_figure(df, st.figure("s02_sgd.png"))
    fin = finals(df)
    first = df[df["epoch"] == 0].set_index("cell")["train_loss"]
    rows = pd.DataFrame({"seed": fin["seed"], "epochs run": fin["epoch"], "stop": fin["stop_reason"],
                         "Q at start": first.reindex(fin["cell"]).to_numpy(),
                         "Q at stop": fin["train_loss"], "val acc": fin["val_acc"]})
    cfg = fin.iloc[0]
    q0, q1 = float(np.median(rows["Q at start"])), float(np.median(rows["Q at stop"]))
    sec.items.append(Item(
        claim="Per-object SGD lowers the criterion Q over the training set.",
        verdict=f"batch size 1, lr {fmt(cfg['lr'])}: Q fell from {fmt(q0)} to {fmt(q1)} "
                f"(median of {len(fin)} starts), validation accuracy {pct(fin['val_acc'].median())}.",
        status=AGREES if q1 < q0 else CONTRADICTS, figure=figure, table=md_table(rows)))
    fired = fin["stop_reason"].isin(["criterion_stable", "weights_stable"])
    reasons = ", ".join(f"{k} x{v}" for k, v in fin["stop_reason"].value_counts().items())
    sec.items.append(Item(
        claim="Stop when the criterion or the weights stabilise.",
        verdict=f"with relative change <= {fmt(cfg['tol'])} for {int(cfg['patience'])} passes in a row, the rule "
                f"stopped {int(fired.sum())}/{len(fin)} runs after a median of {fmt(fin['epoch'].median())} of "
                f"{int(cfg['epochs'])} passes ({reasons}).",
        status=AGREES if fired.all() else MIXED))
    spread = float(fin["train_loss"].std() / fin["train_loss"].mean()) if len(fin) > 1 else float("nan")
    sec.items.append(Item(
        claim="SGD can get stuck in a local minimum.",
        verdict=f"the {len(fin)} starts (each also a different split) ended within a coefficient of variation "
                f"of {pct(spread)} of each other (Q {fmt(fin['train_loss'].min())} to "
                f"{fmt(fin['train_loss'].max())}): no start stuck in a visibly worse minimum on this problem.",
        status=NOT_REPRODUCED if spread < 0.25 else AGREES))
    return sec


# --- Section 3 ------------------------------------------------------------------ #


BATCH_ORDER = ("16", "256", "full")


def section_batches(st: Stored) -> Section:
    sec = Section(3, "Mini-batches",
                  "Shuffle, split into batches of batch_size, one step per batch. The slides contrast "
                  "full-batch gradient descent with SGD on a small and on a large batch (pictures of the "
                  "trajectories: the smaller the batch, the noisier the path).",
                  sources=["custom/minibatch_paths.csv", "lecture-batch", "lecture-batch-full"])
    paths = st.custom("minibatch_paths")
    if paths is not None:
        sec.items.append(_paths_item(st, paths))
    df, full = st.study("lecture-batch"), st.study("lecture-batch-full")
    if df is None:
        sec.items.append(_missing("lecture-batch"))
        return sec
    best = best_lr(df, ["batch_size"])
    order = [b for b in BATCH_ORDER if b in set(best["batch_size"])] or sorted(best["batch_size"].unique())
    long_gd = best_lr(full, ["batch_size"]).assign(batch_size="full, 10x epochs") if full is not None else None
    timed = pd.concat([best, long_gd]) if long_gd is not None else best
    hue = order + (["full, 10x epochs"] if long_gd is not None else [])
    figure = figures.batch_figure(best, order, timed, hue, st.figure("s03_batch.png"))

    fin = finals(best)
    per = fin.groupby("batch_size").agg(lr=("lr", "first"), steps=("step", "median"),
                                        Q=("train_loss", "mean"), val_acc=("val_acc", "mean"),
                                        seconds=("wall_time", "median")).reindex(order)
    common = float(per.loc[order[0], "lr"])  # the small batch's best lr
    noise = noise_table(df[df["lr"] == common], "batch_size").set_index("batch_size").reindex(order)
    table = pd.DataFrame({"batch": order, "best lr": per["lr"].to_numpy(),
                          "steps": per["steps"].to_numpy(), "final Q": per["Q"].to_numpy(),
                          "val acc": per["val_acc"].to_numpy(), "train seconds": per["seconds"].to_numpy(),
                          f"noise at lr {fmt(common)}": noise["noise"].to_numpy(),
                          "epochs Q rose": noise["rises"].map(pct).to_numpy()})
    qs = per["Q"].to_numpy()
    epochs = int(df["epoch"].max())
    sec.items.append(Item(
        claim="Smaller batches make faster progress per pass over the data (more steps per epoch).",
        verdict=f"after {epochs} epochs at each one's best lr, Q = " +
                ", ".join(f"{fmt(q)} (batch {b})" for b, q in zip(order, qs)) + ".",
        status=AGREES if np.all(np.diff(qs) > 0) else MIXED, figure=figure, table=md_table(table),
        note="noise = std of the epoch-to-epoch changes of Q over the second half of the epochs, "
             "at the small batch's best lr for every batch size; 'epochs Q rose' = share of those "
             "epochs in which Q went up."))
    ns = noise["noise"].to_numpy()
    sec.items.append(Item(
        claim="The smaller the batch, the noisier the descent.",
        verdict=f"at the same lr {fmt(common)}, the std of Q's epoch-to-epoch changes was " +
                ", ".join(f"{fmt(n)} (batch {b})" for b, n in zip(order, ns)) +
                "; Q went up in " + ", ".join(f"{pct(r)}" for r in noise["rises"]) + " of the late epochs.",
        status=AGREES if np.all(np.diff(ns) < 0) else MIXED))
    if long_gd is not None:
        # The time budget: the shorter of the small batch's and long descent's runs.
        small = best[best["batch_size"] == order[0]]
        budget = float(min(small.groupby("cell")["wall_time"].max().median(),
                           long_gd.groupby("cell")["wall_time"].max().median()))
        at = {key: float(np.nanmean([value_at_time(r, budget) for _, r in runs.groupby("cell")]))
              for key, runs in timed.groupby("batch_size")}
        at = {k: at[k] for k in hue if k in at}
        winner = min(at, key=lambda k: np.inf if np.isnan(at[k]) else at[k])
        sec.items.append(Item(
            claim="(Implied) SGD beats full-batch descent for the same computing time.",
            verdict=f"within the same {fmt(budget)} s of training, Q = " +
                    ", ".join(f"{fmt(v)} (batch {k})" for k, v in at.items()) +
                    f"; lowest: batch {winner}.",
            status=AGREES if not winner.startswith("full") else CONTRADICTS,
            note="full-batch descent runs its best lr of lecture-batch-full (300 epochs) here; a run that "
                 "finished its epochs sooner is quoted at its final value (it had no more to give within the "
                 "budget). Wall times come from a shared 2-core CPU and are noisy; the per-epoch comparison "
                 "above is exact."))
    return sec


def _paths_item(st: Stored, paths: pd.DataFrame) -> Item:
    """The slides' three trajectory pictures, on a 2-weight least-squares problem."""
    figure = figures.paths_figure(paths, st.figure("s03_paths.png"))
    rows = []
    for label in dict.fromkeys(paths["batch"]):
        p = paths[paths["batch"] == label]
        last = p[p["epoch"] == p["epoch"].max()]
        spread = float(np.sqrt(last["w1"].var(ddof=0) + last["w2"].var(ddof=0))) if len(last) > 1 else 0.0
        rows.append({"batch": label, "steps": int(p["step"].max()), "final Q": float(p["loss"].iloc[-1]),
                     "scatter of the last epoch's iterates": spread})
    table = pd.DataFrame(rows)
    epochs = int(paths["epoch"].max())
    spreads = table["scatter of the last epoch's iterates"].to_numpy()
    small = table.iloc[0]
    return Item(
        claim="The slides' pictures: gradient descent follows a smooth path, SGD a noisy one, noisier "
              "for a small batch than for a large one.",
        verdict=f"least squares in two weights, {epochs} epochs at the same lr: the last epoch's iterates "
                f"scatter by {fmt(spreads[0])} (batch {small['batch']}) vs " +
                ", ".join(f"{fmt(s)} (batch {b})" for b, s in zip(table['batch'][1:], spreads[1:])) +
                f"; final Q {fmt(small['final Q'])} vs " +
                ", ".join(fmt(q) for q in table['final Q'][1:]) + ".",
        status=AGREES if np.all(np.diff(spreads) <= 0) else MIXED, figure=figure, table=md_table(table))


# --- Section 4 ------------------------------------------------------------------ #


def section_shuffling(st: Stored) -> Section:
    sec = Section(4, "Shuffling",
                  "Shuffle the data set every epoch (SGD's weakness: it depends on the order of the objects).",
                  sources=["lecture-shuffle"])
    df = st.study("lecture-shuffle")
    if df is None:
        sec.items.append(_missing("lecture-shuffle"))
        return sec
    order = [o for o in datasets.ORDERS if o in set(df["order"])]
    figure = figures.order_figure(df, order, st.figure("s04_order.png"))
    fin = finals(df)
    agg = fin.groupby("order").agg(Q=("train_loss", "mean"), Q_sd=("train_loss", "std"),
                                   val_acc=("val_acc", "mean")).reindex(order)
    noise = noise_table(df, "order").set_index("order").reindex(order)
    table = pd.DataFrame({"order": order, "final Q": agg["Q"].to_numpy(), "sd over seeds": agg["Q_sd"].to_numpy(),
                          "val acc": agg["val_acc"].to_numpy(), "noise": noise["noise"].to_numpy()})
    q = agg["Q"]
    cfg = fin.iloc[0]
    setting = f"SGD, batch {cfg['batch_size']}, lr {fmt(cfg['lr'])}, {int(cfg['epoch'])} epochs"
    if {"shuffle", "sorted"} <= set(order):
        worse = q["sorted"] / q["shuffle"]
        sec.items.append(Item(
            claim="The order of the objects matters: a bad order (here: sorted by class) hurts SGD.",
            verdict=f"{setting}: sorted by class ended at Q = {fmt(q['sorted'])} ({fmt(worse)}x the shuffled "
                    f"{fmt(q['shuffle'])}), validation accuracy {pct(agg.loc['sorted', 'val_acc'])} vs "
                    f"{pct(agg.loc['shuffle', 'val_acc'])}.",
            status=AGREES if worse > 1.2 else NOT_REPRODUCED, figure=figure, table=md_table(table)))
    if {"shuffle", "fixed"} <= set(order):
        gap = q["fixed"] - q["shuffle"]
        sd = float(np.nanmax([agg.loc["fixed", "Q_sd"], agg.loc["shuffle", "Q_sd"], 0.0]))
        sec.items.append(Item(
            claim="Reshuffle every epoch (rather than keep one order).",
            verdict=f"one fixed random order ended at Q = {fmt(q['fixed'])} vs {fmt(q['shuffle'])} reshuffled "
                    f"(difference {fmt(gap)}, sd over seeds {fmt(sd)}): "
                    + ("reshuffling helped." if gap > 2 * sd else
                       "no measurable benefit from reshuffling once the order is random; what matters is "
                       "that the order is not structured."),
            status=AGREES if gap > 2 * sd else NOT_REPRODUCED))
    return sec


# --- Section 5 ------------------------------------------------------------------ #


def section_standardize(st: Stored) -> Section:
    sec = Section(5, "Standardising the inputs",
                  "Standardise each input (z-score, training-set statistics): it reshapes the loss surface "
                  "(rounder level sets, faster descent).",
                  sources=["custom/condition_numbers.csv", "lecture-standardize"])
    cond = st.custom("condition_numbers")
    if cond is not None:
        finite = cond[np.isfinite(cond["cond_raw"]) & np.isfinite(cond["cond_standardized"])]
        shown = ", ".join(f"{r.dataset} {fmt(r.cond_raw)} -> {fmt(r.cond_standardized)}" for r in finite.itertuples())
        singular = ", ".join(cond.loc[~np.isfinite(cond["cond_raw"]), "dataset"]) or "none"
        ok = bool((finite["cond_standardized"] <= finite["cond_raw"] * 1.0001).all())
        sec.items.append(Item(
            claim="Standardisation rounds the level sets (of a linear model's squared loss: the condition "
                  "number of the inputs' covariance).",
            verdict=f"cond(raw) -> cond(standardised): {shown}; singular either way: {singular}.",
            status=AGREES if ok else CONTRADICTS, table=md_table(cond),
            note="cond = lambda_max / lambda_min of the training inputs' covariance (suite.data.condition_number); "
                 "'affine' also counts the bias, so it shows what centring does. Data sets whose inputs are "
                 "already on one scale (spirals, blobs) gain little."))
    df = st.study("lecture-standardize")
    if df is None:
        sec.items.append(_missing("lecture-standardize"))
        return sec
    df = df.assign(inputs=np.where(truthy(df["standardize"]), "standardised", "raw"))
    best = best_lr(df, ["optimizer", "inputs"])
    opts = [o for o in OPTIMIZERS if o in set(df["optimizer"])]
    sens = scored_finals(df, "train_loss").groupby(["optimizer", "inputs", "lr"], as_index=False)["score"].mean()
    sens["score"] = sens["score"].replace(np.inf, np.nan)
    sens["curve"] = sens["optimizer"] + ", " + sens["inputs"]
    figure = figures.standardize_figure(best, opts, sens, st.figure("s05_standardize.png"))
    rows, items = [], []
    for opt in opts:
        sub = best[best["optimizer"] == opt]
        finals_by = {k: mean_final(g, "train_loss") for k, g in sub.groupby("inputs")}
        if len(finals_by) < 2:
            continue
        target = max(finals_by.values()) * 1.05  # the worse of the two, so both reach it
        reach = {k: median_reach(g, target) for k, g in sub.groupby("inputs")}
        lrs = {k: g["lr"].iloc[0] for k, g in sub.groupby("inputs")}
        for k in ("raw", "standardised"):
            rows.append({"optimizer": opt, "inputs": k, "best lr": lrs[k], "final Q": finals_by[k],
                         f"epochs to Q <= target": reach[k], "target": target})
        r_raw = reach_epochs(sub[sub["inputs"] == "raw"], target).median()
        r_std = reach_epochs(sub[sub["inputs"] == "standardised"], target).median()
        faster = r_std < r_raw and finals_by["standardised"] < finals_by["raw"]
        items.append(Item(
            claim=f"Standardised inputs make descent faster ({opt}).",
            verdict=f"{opt}: standardising cut the epochs to reach Q <= {fmt(target)} (raw inputs' best final Q) "
                    f"from {reach['raw']} to {reach['standardised']}, and the final Q from "
                    f"{fmt(finals_by['raw'])} to {fmt(finals_by['standardised'])}; the raw inputs needed lr "
                    f"{fmt(lrs['raw'])} (vs {fmt(lrs['standardised'])}).",
            status=AGREES if faster else MIXED))
    if items:
        items[0].figure, items[0].table = figure, md_table(pd.DataFrame(rows))
    sec.items += items
    return sec


# --- Sections 6 and 7 -------------------------------------------------------------- #


def section_more_weights(st: Stored) -> Section:
    sec = Section(6, "More weights than examples",
                  "ResNet-50 has over 23 million weights; ImageNet about 14 million images in about 20,000 "
                  "classes (the slide says 23 million pictures). Networks have more weights than training "
                  "examples: this motivates regularisation.", sources=["lecture-l2 (lambda = 0)"])
    df = st.study("lecture-l2")
    if df is None:
        sec.items.append(_missing("lecture-l2"))
        return sec
    base = df[pd.to_numeric(df["l2"]) == 0]
    if base.empty:
        base = df
    weights, sizes = network_size(base.iloc[0])
    n_train = int(base["n_train"].iloc[0])
    figure = figures.overfitting_figure(base, st.figure("s06_overfitting.png"))
    g = gap_table(base, ["l2"]).iloc[0]
    sec.items.append(Item(
        claim="A network can have far more weights than there are training examples.",
        verdict=f"our {'-'.join(map(str, sizes))} MLP has {weights:,} weights for {n_train:,} training objects "
                f"({weights / n_train:.0f} per object; ResNet-50 on ImageNet: about 1.6 per image).",
        status=INFO))
    rose = g["val_Q"] > 1.05 * g["min_val_Q"]
    sec.items.append(Item(
        claim="... and then overfits: it fits the training set much better than new data.",
        verdict=f"without regularisation (SGD, {int(base['epoch'].max())} epochs): train accuracy "
                f"{pct(g['train_acc'])} vs validation {pct(g['val_acc'])} (gap {100 * g['acc_gap']:.1f} points); "
                f"train Q {fmt(g['train_Q'])} vs validation {fmt(g['val_Q'])}; the validation loss bottomed at "
                f"{fmt(g['min_val_Q'])} (epoch {fmt(g['min_epoch'])}) and " +
                (f"rose {pct(g['val_Q'] / g['min_val_Q'] - 1)} from there." if rose else "did not rise much after."),
        status=AGREES if g["acc_gap"] > 0.01 and rose else MIXED, figure=figure))
    return sec


def section_l2(st: Stored) -> Section:
    sec = Section(7, "L2 regularisation",
                  "Q~(w) = Q(w) + lambda sum w^2 keeps the weights bounded (and so curbs overfitting); "
                  "Q is the squared error 1/2 sum_i sum_q (y~_q(x_i) - y_q_i)^2.",
                  sources=["lecture-l2", "lecture-standardize (squared error)"])
    df = st.study("lecture-l2")
    if df is None:
        sec.items.append(_missing("lecture-l2"))
        return sec
    df = df.assign(l2=pd.to_numeric(df["l2"]))
    lambdas = sorted(df["l2"].unique())
    figure = figures.l2_figure(df, lambdas, st.figure("s07_l2.png"))
    table = gap_table(df, ["l2"])
    t = table.set_index("l2")
    lo, hi = lambdas[0], lambdas[-1]
    best = t["val_Q"].idxmin()
    better = t.loc[hi, "acc_gap"] < t.loc[lo, "acc_gap"] and t.loc[hi, "val_Q"] < t.loc[lo, "val_Q"]
    sec.items.append(Item(
        claim="L2 regularisation curbs overfitting.",
        verdict=f"lambda {fmt(hi)} vs {fmt(lo)}: train-validation accuracy gap {100 * t.loc[hi, 'acc_gap']:.1f} vs "
                f"{100 * t.loc[lo, 'acc_gap']:.1f} points, final validation loss {fmt(t.loc[hi, 'val_Q'])} vs "
                f"{fmt(t.loc[lo, 'val_Q'])}, validation accuracy {pct(t.loc[hi, 'val_acc'])} vs "
                f"{pct(t.loc[lo, 'val_acc'])}; the lowest validation loss came with lambda {fmt(best)}.",
        status=AGREES if better else MIXED, figure=figure, table=md_table(table),
        note="our l2 adds lambda * w to the gradient, i.e. the penalty lambda/2 |w|^2 of section 10's "
             "update w := w (1 - eta lambda) - eta L'; the slide's lambda sum w^2 is our l2 = 2 lambda. With "
             "SGD this coupled form and decoupled weight decay (wd) are the same update. The weights' norm "
             "itself is not recorded, so 'keeps the weights bounded' is not measured directly."))
    return sec


# --- Section 8 ------------------------------------------------------------------ #

ACTIVATION_ORDER = ("sigmoid", "tanh", "relu", "prelu")


def section_activations(st: Stored) -> Section:
    sec = Section(8, "Activation functions",
                  "sigmoid and tanh have horizontal asymptotes: their gradients can vanish (\"network "
                  "paralysis\"). ReLU = max(0, y) and PReLU = max(0, y) + alpha min(0, y) (alpha learned) "
                  "do not flatten for y > 0.", sources=["lecture-activations", "custom/activation_statistics.csv"])
    df = st.study("lecture-activations")
    if df is None or not layer_norm_columns(df):
        sec.items.append(_missing("lecture-activations (with layer_norms)"))
        return sec
    acts = [a for a in ACTIVATION_ORDER if a in set(df["activation"])]
    long = layer_norms_long(df)
    n_layers = int(long["layer"].max())
    at_init = long[long["epoch"] == 0].groupby(["activation", "layer"], as_index=False)["norm"].mean()
    best = best_lr(df, ["activation", "optimizer"])
    sgd = best[best["optimizer"] == "sgd"]
    during = layer_norms_long(sgd)
    during = during[during["epoch"] > 0].groupby(["activation", "layer"], as_index=False)["norm"].mean()
    stats = st.custom("activation_statistics")
    figure_norms = figures.gradient_norms_figure(df, at_init, during, stats, acts, n_layers,
                                                 st.figure("s08_gradient_norms.png"))
    figure_conv = figures.activation_convergence_figure(best, acts, st.figure("s08_convergence.png"))

    def ratio(data, act):  # ||dQ/dW_1|| / ||dQ/dW_L||
        norms = data[data["activation"] == act].groupby("layer")["norm"].mean()
        return float(norms.get(1, np.nan) / norms.get(n_layers, np.nan))

    fin = finals(best)
    start = df[df["epoch"] == 0].groupby("activation")["train_loss"].mean()
    rows = []
    for a in acts:
        runs = {opt: fin[(fin["activation"] == a) & (fin["optimizer"] == opt)] for opt in ("sgd", "adam")}
        q = {opt: r["train_loss"].mean() for opt, r in runs.items()}
        acc = {opt: r["val_acc"].mean() for opt, r in runs.items()}
        rows.append({"activation": a, "|g1|/|gL| at init": ratio(at_init, a),
                     "|g1|/|gL| in SGD training": ratio(during, a) if len(during) else float("nan"),
                     "Q at init": start.get(a, float("nan")), "final Q sgd": q["sgd"], "final Q adam": q["adam"],
                     "val acc sgd": acc["sgd"], "val acc adam": acc["adam"]})
    table = pd.DataFrame(rows).set_index("activation")
    r = table["|g1|/|gL| at init"]
    saturating = [a for a in ("sigmoid", "tanh") if a in r.index]
    vanish = {a: r[a] < 0.1 * r.get("relu", 1.0) for a in saturating}
    sec.items.append(Item(
        claim="sigmoid and tanh make the gradients vanish in the first layers of a deep network.",
        verdict="||dQ/dW_1|| / ||dQ/dW_L|| at initialisation: " +
                ", ".join(f"{fmt(r[a])} ({a})" for a in acts) + "; vanishing (below a tenth of ReLU's): " +
                (", ".join(a for a, v in vanish.items() if v) or "none") + "; not vanishing: " +
                (", ".join(a for a, v in vanish.items() if not v) or "none") + ".",
        status=AGREES if all(vanish.values()) else (MIXED if any(vanish.values()) else CONTRADICTS),
        figure=figure_norms, table=md_table(table.reset_index()),
        note="the same Xavier initialisation for all four, so only the activation differs. " +
             ("; ".join(f"{a}: {'vanishes' if v else 'does not vanish'} here" for a, v in vanish.items()))))
    if "sgd" in set(df["optimizer"]) and "relu" in table.index:
        drop = {a: (table.loc[a, "Q at init"] - table.loc[a, "final Q sgd"]) / table.loc[a, "Q at init"] for a in acts}
        paralysed = [a for a in saturating if drop[a] < 0.25 * drop["relu"]]
        sec.items.append(Item(
            claim="... so SGD barely trains them (network paralysis), while ReLU and PReLU train.",
            verdict="with SGD (best lr each) Q fell by " + ", ".join(f"{pct(drop[a])} ({a})" for a in acts) +
                    f" in {int(df['epoch'].max())} epochs" +
                    (f"; paralysed: {', '.join(paralysed)}" if paralysed else "; none stayed paralysed") +
                    (f"; trained like ReLU: {', '.join(a for a in saturating if a not in paralysed)}."
                     if any(a not in paralysed for a in saturating) else "."),
            status=AGREES if paralysed == saturating else (MIXED if paralysed else CONTRADICTS),
            figure=figure_conv))
        if "adam" in set(df["optimizer"]):
            sec.items.append(Item(
                claim="(Beyond the lecture) an optimiser that rescales each weight's step (section 12) "
                      "sidesteps small gradients.",
                verdict="with Adam, final Q " + ", ".join(f"{fmt(table.loc[a, 'final Q adam'])} ({a})" for a in acts) +
                        " vs SGD " + ", ".join(f"{fmt(table.loc[a, 'final Q sgd'])}" for a in acts) + ".",
                status=INFO))
    return sec


# --- Section 9 ------------------------------------------------------------------ #

INIT_ORDER = tuple(INITS)  # uniform, xavier, he, orthogonal, pretrain
INIT_RULES = {"uniform": "rule 1: U(+-1/sqrt(h))", "xavier": "rule 2: Glorot U(+-sqrt(6)/sqrt(h+m))",
              "he": "He N(0, 2/h)", "orthogonal": "rule 5: orthogonal", "pretrain": "rule 3: layer-wise linear"}


def section_init(st: Stored) -> Section:
    sec = Section(9, "Initial weights",
                  "1. equal output variances across layers: w ~ U(-1/sqrt(h), 1/sqrt(h)); 2. equal gradient "
                  "variances: U(+-sqrt(6)/sqrt(h+m)) (the slide's 6/sqrt(h+m) is a misprint); 3. layer-wise "
                  "training of neurons as linear models; 4. a pre-trained model's weights; 5. a random "
                  "orthogonal basis.", sources=["custom/init_statistics.csv", "lecture-init"])
    stats = st.custom("init_statistics")
    if stats is not None:
        acts = [a for a in ACTIVATION_ORDER if a in set(stats["activation"])]
        inits = [i for i in INIT_ORDER if i in set(stats["init"])]
        figure = figures.variances_figure(stats, acts, inits, INIT_RULES, st.figure("s09_variances.png"))
        ratios = variance_ratios(stats)
        table = ratios.assign(rule=ratios["init"].map(INIT_RULES))[["activation", "init", "rule", "out_ratio", "grad_ratio"]]
        r = ratios.set_index(["activation", "init"])
        n_layers = int(stats["layer"].max())
        within = lambda v: 0.5 <= v <= 2.0
        if "uniform" in inits:
            vals = {a: r.loc[(a, "uniform"), "out_ratio"] for a in acts}
            sec.items.append(Item(
                claim="Rule 1, w ~ U(-1/sqrt(h), 1/sqrt(h)), keeps the output variance equal across layers.",
                verdict=f"Var(last hidden output) / Var(first) with rule 1 over {n_layers - 1} hidden layers: " +
                        ", ".join(f"{fmt(v)} ({a})" for a, v in vals.items()) + "." +
                        ("" if all(within(v) for v in vals.values()) else
                         " Var w = 1/(3h) stops the variance growing with the fan-in h, but each layer still "
                         "scales it by about 1/3 (tanh near 0) or 1/6 (ReLU): the variances are not equal."),
                status=AGREES if all(within(v) for v in vals.values()) else CONTRADICTS,
                figure=figure, table=md_table(table),
                note="out_ratio: Var(output of the last hidden layer) / Var(output of the first); grad_ratio: "
                     "Var(dQ/dW_1) / Var(dQ/dW of the last hidden layer) (the output layer, 64 -> 10 and linear, "
                     "is left out). 1 = the criterion holds; we accept 0.5 to 2. "
                     "Averaged over draws of the weights (3 in the full run) on mnist1d objects."))
        if "xavier" in inits:
            vals = {a: r.loc[(a, "xavier"), "grad_ratio"] for a in acts}
            others = {a: {i: r.loc[(a, i), "grad_ratio"] for i in inits if i != "xavier"} for a in acts}
            sec.items.append(Item(
                claim="Rule 2 (Glorot/Xavier) keeps the gradient variance equal across layers.",
                verdict="Var(dQ/dW_1) / Var(dQ/dW_last hidden) with Xavier: " +
                        ", ".join(f"{fmt(v)} ({a})" for a, v in vals.items()) + "; with the others: " +
                        "; ".join(f"{a}: " + ", ".join(f"{i} {fmt(v)}" for i, v in o.items()) for a, o in others.items()) + ".",
                status=AGREES if all(within(v) for v in vals.values()) else
                (MIXED if any(within(v) for v in vals.values()) else CONTRADICTS),
                note="Glorot's derivation assumes a linear regime around 0 (tanh, not ReLU)."))
        if "he" in inits and "relu" in acts:
            sec.items.append(Item(
                claim="(Beyond the lecture) He's N(0, 2/h) is rule 1 corrected for ReLU, which zeroes half its inputs.",
                verdict=f"with ReLU, output variance ratio {fmt(r.loc[('relu', 'he'), 'out_ratio'])} (He) vs "
                        f"{fmt(r.loc[('relu', 'uniform'), 'out_ratio']) if 'uniform' in inits else 'n/a'} (rule 1).",
                status=INFO))
    df = st.study("lecture-init")
    if df is None:
        sec.items.append(_missing("lecture-init"))
        return sec
    acts = [a for a in ACTIVATION_ORDER if a in set(df["activation"])]
    inits = [i for i in INIT_ORDER if i in set(df["init"])]
    best = best_lr(df, ["activation", "init"])
    figure = figures.init_convergence_figure(best, acts, inits, st.figure("s09_convergence.png"))
    fin = finals(best)
    table = fin.groupby(["activation", "init"], as_index=False).agg(
        lr=("lr", "first"), final_Q=("train_loss", "mean"), val_acc=("val_acc", "mean"))
    verdicts = []
    for act in acts:
        t = table[table["activation"] == act].set_index("init")["final_Q"]
        verdicts.append(f"{act}: best {t.idxmin()} (Q {fmt(t.min())}), worst {t.idxmax()} (Q {fmt(t.max())})")
    sec.items.append(Item(
        claim="The initialisation affects how well the network trains.",
        verdict=f"final Q after {int(df['epoch'].max())} epochs of SGD: " + "; ".join(verdicts) + ".",
        status=INFO, figure=figure, table=md_table(table)))
    return sec


# --- Section 10 ----------------------------------------------------------------- #


def section_dropout(st: Stored) -> Section:
    sec = Section(10, "Dropout",
                  "Training: x := xi sigma(...), P(xi = 0) = p; inference: x := (1 - p) sigma(...) (classic). "
                  "Inverted dropout, more common: training x := xi / (1 - p) sigma(...), inference unchanged. "
                  "It regularises (robust to losing pN neurons) and reduces co-adaptation. With L2: "
                  "w := w (1 - eta lambda) - eta xi / (1 - p) L'.", sources=["lecture-dropout", "lecture-l2 (p = 0)"])
    drop, base = st.study("lecture-dropout"), st.study("lecture-l2")
    if drop is None:
        sec.items.append(_missing("lecture-dropout"))
        return sec
    frames = [drop.assign(p=pd.to_numeric(drop["dropout"]))]
    if base is not None:
        frames.append(base.assign(p=0.0, dropout_mode="none"))
    df = pd.concat(frames, ignore_index=True)
    df["l2"] = pd.to_numeric(df["l2"])
    table = gap_table(df, ["dropout_mode", "p", "l2"])
    figure = figures.dropout_figure(table, st.figure("s10_dropout.png"))
    t = table.set_index(["dropout_mode", "p", "l2"])
    items = []
    ps = sorted(p for p in table["p"].unique() if p > 0)
    if ("none", 0.0, 0.0) in t.index and ps:
        none = t.loc[("none", 0.0, 0.0)]
        cells = {(m, p): t.loc[(m, p, 0.0)] for p in ps for m in ("classic", "inverted") if (m, p, 0.0) in t.index}
        smaller = all(c["acc_gap"] < none["acc_gap"] for c in cells.values())
        best_key = max(cells, key=lambda k: cells[k]["val_acc"])
        items.append(Item(
            claim="Dropout regularises: it shrinks the gap between training and new data.",
            verdict="no L2, train-validation accuracy gap " +
                    ", ".join(f"{100 * c['acc_gap']:.1f} ({m} p {fmt(p)})" for (m, p), c in cells.items()) +
                    f" vs {100 * none['acc_gap']:.1f} points without dropout; validation accuracy at best "
                    f"{pct(cells[best_key]['val_acc'])} ({best_key[0]} p {fmt(best_key[1])}) vs {pct(none['val_acc'])}, "
                    "while the strongest dropout " +
                    ("also lowered it" if min(c["val_acc"] for c in cells.values()) < none["val_acc"] else "kept it") +
                    f" in {int(df['epoch'].max())} epochs.",
            status=AGREES if smaller else CONTRADICTS, figure=figure, table=md_table(table)))
    pairs = [(p, l) for p in ps for l in sorted(table["l2"].unique())
             if ("classic", p, l) in t.index and ("inverted", p, l) in t.index]
    if pairs:
        diffs = [100 * (t.loc[("inverted", p, l), "val_acc"] - t.loc[("classic", p, l), "val_acc"]) for p, l in pairs]
        sec_note = ("with SGD, classic dropout's gradient is (1 - p) times the inverted one's "
                    "(same masks, no 1/(1 - p) in training), i.e. a smaller effective step.")
        items.append(Item(
            claim="Inverted dropout is the same regulariser as classic dropout, rescaled so that inference "
                  "needs no change and no knowledge of p.",
            verdict=f"validation accuracy, inverted minus classic, over {len(pairs)} (p, lambda) pairs: mean "
                    f"{np.mean(diffs):+.1f} points (from {min(diffs):+.1f} to {max(diffs):+.1f}).",
            status=AGREES if abs(np.mean(diffs)) <= 1.0 else MIXED, note=sec_note))
    if len(table):
        top = table.sort_values("val_Q").iloc[0]
        items.append(Item(
            claim="Dropout and L2 combine in one step (w := w (1 - eta lambda) - eta xi/(1 - p) L').",
            verdict=f"lowest validation loss: {top['dropout_mode']} p = {fmt(top['p'])}, lambda = {fmt(top['l2'])} "
                    f"(val loss {fmt(top['val_Q'])}, val acc {pct(top['val_acc'])}, gap "
                    f"{100 * top['acc_gap']:.1f} points).", status=INFO))
    sec.items += items
    return sec


# --- Section 11 ----------------------------------------------------------------- #


def section_obd(st: Stored) -> Section:
    sec = Section(11, "Optimal Brain Damage (pruning connections)",
                  "Near a minimum, with a diagonal Hessian, the salience of w_jh is S = w_jh^2 d2Q/dw_jh^2; "
                  "remove the least salient weights, retrain, stop (restoring the last ones) when the loss gets "
                  "significantly worse. Input j's salience is sum_h S_jh. Gradual pruning beats a network that "
                  "was sparse from the start.", sources=["obd/ (suite.obd_experiments.run_obd_experiments)"])
    path = st.out / "obd" / "sections.json"
    if not path.is_file():
        error = st.out / "obd" / "error.txt"
        why = error.read_text().strip().splitlines()[-1] if error.is_file() and error.read_text().strip() else \
            "suite.obd was not run"
        sec.items.append(Item(
            claim="(all of section 11)",
            verdict=f"HOOK, NOT RUN: {why}. Fix suite/obd_experiments.py and rerun run_lecture: "
                    "the trained studies are skipped, only OBD and the report run.", status=INFO))
        return sec
    for s in json.loads(path.read_text()):
        verdict = str(s.get("verdict", ""))
        low = verdict.lower()
        status = (CONTRADICTS if "contradict" in low else
                  NOT_REPRODUCED if "not reproduced" in low else
                  AGREES if any(w in low for w in ("agrees", "confirm", "as the lecture", "as claimed",
                                                    "supports the lecture")) else "see verdict")
        figure = s.get("figure")
        if figure:
            fig = Path(figure)
            figure = str(fig.relative_to(st.out)) if fig.is_absolute() and st.out in fig.parents else f"obd/{fig}"
        sec.items.append(Item(claim=str(s.get("claim") or s.get("title", "")), verdict=verdict, status=status,
                              figure=figure, table=s.get("table"),
                              note=s.get("title") if s.get("claim") else None))
    return sec


# --- Section 12 ----------------------------------------------------------------- #


#: "Converged" on a 2-D test function: f within this of the minimum value 0.
F_TOL = 1e-6


def section_optimizers(st: Stored) -> Section:
    sec = Section(12, "Modifications of SGD",
                  "SGD; momentum (an exponential moving average of the gradient); NAG (gradient at the "
                  "look-ahead point); RMSProp (steps scaled by a moving RMS of the gradient); AdaDelta "
                  "(eta = 1 works); Adam = momentum + RMSProp with bias correction. The closing figure compares "
                  "their trajectories.", sources=["custom/trajectories.csv", "lecture-optimizers or default"])
    traj = st.custom("trajectories")
    if traj is not None:
        sec.items += _trajectory_items(st, traj)
    where = optimizer_results(st.out)
    df = st.study("section 12", where) if where is not None else None
    if df is None:
        sec.items.append(_missing("lecture-optimizers (or results/default)"))
        return sec
    by = ["optimizer"] + (["batch_size"] if df["batch_size"].nunique() > 1 else [])
    best = best_lr(df, by)  # by the final criterion Q, as in every other section
    if "batch_size" in by:  # the default study: compare at its small batch size
        small = sorted(best["batch_size"].unique(), key=lambda b: (b == "full", int(b) if b.isdigit() else 0))[0]
        best = best[best["batch_size"] == small]
    opts = [o for o in OPTIMIZERS if o in set(best["optimizer"])]
    figure = figures.mnist1d_figure(best, opts, st.figure("s12_mnist1d.png"))
    fin = finals(best)
    table = fin.groupby("optimizer").agg(lr=("lr", "first"), final_Q=("train_loss", "mean"),
                                         val_loss=("val_loss", "mean"), val_acc=("val_acc", "mean"),
                                         runs=("cell", "count")).reindex(opts).reset_index()
    baseline = "sgd" if "sgd" in opts else opts[0]
    target = float(table.loc[table["optimizer"] == baseline, "final_Q"].iloc[0])
    reach = {o: median_reach(best[best["optimizer"] == o], target) for o in opts}
    table["epochs to SGD's final Q"] = [reach[o] for o in opts]
    beat = table[(table["optimizer"] != baseline) & (table["final_Q"] < target)]
    sec.items.append(Item(
        claim="The modifications train a network faster than plain SGD.",
        verdict=f"{df['dataset'].iloc[0]}, {int(best['epoch'].max())} epochs, batch {best['batch_size'].iloc[0]}, "
                f"best lr each (source: {where.name}): SGD ended at Q = {fmt(target)}; lower: " +
                (", ".join(f"{r.optimizer} {fmt(r.final_Q)} (at SGD's final Q after {reach[r.optimizer]} epochs)"
                           for r in beat.itertuples()) or "none") +
                "; not lower: " + (", ".join(f"{r.optimizer} {fmt(r.final_Q)}" for r in table.itertuples()
                                             if r.optimizer != baseline and r.optimizer not in set(beat["optimizer"]))
                                   or "none") + ".",
        status=AGREES if len(beat) == len(opts) - 1 else (MIXED if len(beat) else CONTRADICTS),
        figure=figure, table=md_table(table),
        note="validation loss is in the table: on this data set it is limited by overfitting more than by "
             "the optimiser."))
    if "adadelta" in opts:
        ada = finals(df[df["optimizer"] == "adadelta"])
        at1 = ada[np.isclose(ada["lr"], 1.0)]
        if len(at1):
            ok = bool((~at1["diverged"]).all())
            q1 = float(at1["train_loss"].mean())
            sec.items.append(Item(
                claim="AdaDelta: eta = 1 works (no learning rate to tune).",
                verdict=f"AdaDelta at lr 1: {'no run diverged' if ok else 'diverged'}; final Q {fmt(q1)} vs SGD "
                        f"at its best lr {fmt(target)}; AdaDelta's own best lr was "
                        f"{fmt(table.set_index('optimizer').loc['adadelta', 'lr'])}.",
                status=AGREES if ok and q1 <= 1.1 * target else MIXED))
    return sec


def _trajectory_items(st: Stored, traj: pd.DataFrame) -> list[Item]:
    """The lecture's closing figure: every optimiser's path over the contours."""
    functions = list(dict.fromkeys(traj["function"]))
    opts = [o for o in OPTIMIZERS if o in set(traj["optimizer"])]
    figure = figures.trajectories_figure(traj, functions, opts, st.figure("s12_trajectories.png"))
    rows = []
    for name in functions:
        sub = traj[traj["function"] == name]
        for opt in opts:
            p = sub[sub["optimizer"] == opt].sort_values("step")
            f = p["f"].to_numpy()
            rows.append({"function": name, "optimizer": opt, "lr": p["lr"].iloc[0], "steps": int(p["step"].max()),
                         "final f": f[-1], f"steps to f <= {F_TOL:g}": steps_to(f, F_TOL)})
    table = pd.DataFrame(rows)
    items = []
    t = table.set_index(["function", "optimizer"])
    col = f"steps to f <= {F_TOL:g}"
    if "quadratic" in functions:
        q = t.loc["quadratic"]
        faster = [o for o in ("momentum", "nesterov") if o in q.index and
                  (np.nan_to_num(q.loc[o, col], nan=np.inf) < np.nan_to_num(q.loc["sgd", col], nan=np.inf))]
        items.append(Item(
            claim="Momentum and NAG speed up SGD along a badly scaled valley.",
            verdict=f"badly scaled quadratic, each optimiser at its best lr: steps to f <= {F_TOL:g}: " +
                    ", ".join(f"{o} {fmt(q.loc[o, col])}" for o in opts) + " (n/a: not within "
                    f"{int(q['steps'].max())} steps).",
            status=AGREES if len(faster) == 2 else (MIXED if faster else CONTRADICTS),
            figure=figure, table=md_table(table),
            note="every optimiser runs the training kernel (kernels.Optimizer) on a 2-element float32 vector, "
                 "tuned on the lr grid " + ", ".join(fmt(v) for v in PATH_LRS) +
                 " (best = the lowest mean of log10 f along the path among the lrs whose f never rises above "
                 "its start: fast and steady); Nesterov's path is its true weights w (the buffer holds the look-ahead point). "
                 "Momentum here is the lecture's moving average, v := gamma v + (1 - gamma) g, so its step is "
                 "eta v, not the heavy ball's eta/(1 - gamma)."))
    if "rosenbrock" in functions:
        r = t.loc["rosenbrock"]["final f"]
        adaptive = [o for o in ("rmsprop", "adadelta", "adam") if o in r.index]
        better = [o for o in r.index if o != "sgd" and r[o] < r["sgd"]]
        items.append(Item(
            claim="The modifications reach the minimum of a hard (curved, badly scaled) function faster than SGD.",
            verdict=f"Rosenbrock after {int(t.loc['rosenbrock']['steps'].max())} steps: final f " +
                    ", ".join(f"{o} {fmt(r[o])}" for o in r.index) +
                    f"; better than SGD: {', '.join(better) or 'none'}"
                    + (f"; adaptive ones behind SGD: {', '.join(o for o in adaptive if o not in better)}"
                       if any(o not in better for o in adaptive) else "") + ".",
            status=AGREES if len(better) == len(r) - 1 else MIXED))
    return items


SECTIONS = (section_perceptron, section_sgd, section_batches, section_shuffling, section_standardize,
            section_more_weights, section_l2, section_activations, section_init, section_dropout,
            section_obd, section_optimizers)
