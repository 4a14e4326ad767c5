"""Sections 6, 7, 10 and 11: more weights than examples, L2, dropout, Optimal Brain Damage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ...reporting.markdown import fmt, pct
from ...reporting.markdown import frame_table as md_table
from .. import figures
from ..measures import gap_table, network_size
from ..stored import Stored
from ..verdict import AGREES, CONTRADICTS, INFO, MIXED, STATUSES
from .common import Item, Section, missing


# --- Sections 6 and 7 -------------------------------------------------------------- #


def section_more_weights(st: Stored) -> Section:
    sec = Section(6, "More weights than examples",
                  "ResNet-50 has over 23 million weights; ImageNet about 14 million images in about 20,000 "
                  "classes (the slide says 23 million pictures). Networks have more weights than training "
                  "examples: this motivates regularisation.", sources=["lecture-l2 (lambda = 0)"])
    df = st.study("lecture-l2")
    if df is None:
        sec.items.append(missing("lecture-l2"))
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
        sec.items.append(missing("lecture-l2"))
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


# --- Section 10 ----------------------------------------------------------------- #


def section_dropout(st: Stored) -> Section:
    sec = Section(10, "Dropout",
                  "Training: x := xi sigma(...), P(xi = 0) = p; inference: x := (1 - p) sigma(...) (classic). "
                  "Inverted dropout, more common: training x := xi / (1 - p) sigma(...), inference unchanged. "
                  "It regularises (robust to losing pN neurons) and reduces co-adaptation. With L2: "
                  "w := w (1 - eta lambda) - eta xi / (1 - p) L'.", sources=["lecture-dropout", "lecture-l2 (p = 0)"])
    drop, base = st.study("lecture-dropout"), st.study("lecture-l2")
    if drop is None:
        sec.items.append(missing("lecture-dropout"))
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
                  "was sparse from the start.", sources=["obd/ (suite.lecture.obd.experiments.run_obd_experiments)"])
    path = st.out / "obd" / "sections.json"
    if not path.is_file():
        error = st.out / "obd" / "error.txt"
        why = error.read_text().strip().splitlines()[-1] if error.is_file() and error.read_text().strip() else \
            "OBD was not run"
        sec.items.append(Item(
            claim="(all of section 11)",
            verdict=f"HOOK, NOT RUN: {why}. Fix suite/lecture/obd/ and rerun run_lecture: "
                    "the trained studies are skipped, only OBD and the report run.", status=INFO))
        return sec
    for s in json.loads(path.read_text()):
        verdict = str(s.get("verdict", ""))
        status = s.get("status")  # decided from the numbers when the experiments ran
        if status not in STATUSES:
            status, verdict = INFO, verdict + f" (no valid status stored: {status!r}; rerun OBD)"
        figure = s.get("figure")
        if figure:
            fig = Path(figure)
            figure = str(fig.relative_to(st.out)) if fig.is_absolute() and st.out in fig.parents else f"obd/{fig}"
        sec.items.append(Item(claim=str(s.get("claim") or s.get("title", "")), verdict=verdict, status=status,
                              figure=figure, table=s.get("table"),
                              note=s.get("title") if s.get("claim") else None))
    return sec
