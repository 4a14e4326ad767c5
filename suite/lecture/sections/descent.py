"""Sections 1-5: the perceptron, SGD, mini-batches, shuffling, standardisation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...data.batches import ORDERS
from ...reporting.markdown import fmt, pct
from ...reporting.markdown import frame_table as md_table
from .. import figures
from ..experiments import OPTIMIZERS
from ..measures import (best_lr, finals, mean_final, median_reach, noise_table, reach_epochs, scored_finals,
                        value_at_time)
from ..stored import Stored, truthy
from ..verdict import AGREES, CONTRADICTS, MIXED, NOT_REPRODUCED
from .common import Item, Section, missing


# --- Section 1 ------------------------------------------------------------------ #


def section_perceptron(st: Stored) -> Section:
    sec = Section(1, "Training one neuron: Rosenblatt's perceptron rule",
                  "On a misclassified object, w := w + eta y x. The rule converges in finitely many "
                  "mistakes on linearly separable data.", sources=["custom/perceptron*.csv"])
    curves, summary = st.custom("perceptron"), st.custom("perceptron_summary")
    if curves is None or summary is None:
        sec.items.append(missing("the perceptron"))
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
        sec.items.append(missing("lecture-sgd"))
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
        sec.items.append(missing("lecture-batch"))
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
        sec.items.append(missing("lecture-shuffle"))
        return sec
    order = [o for o in ORDERS if o in set(df["order"])]
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
        sec.items.append(missing("lecture-standardize"))
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
                         "epochs to Q <= target": reach[k], "target": target})
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
