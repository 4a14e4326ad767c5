"""Sections 8 and 9: activation functions and initial weights."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...nn.inits import INITS
from ...reporting.markdown import fmt, pct
from ...reporting.markdown import frame_table as md_table
from .. import figures
from ..measures import best_lr, finals, layer_norms_long, variance_ratios
from ..stored import Stored
from ..verdict import AGREES, CONTRADICTS, INFO, MIXED
from .common import Item, Section, missing


# --- Section 8 ------------------------------------------------------------------ #

ACTIVATION_ORDER = ("sigmoid", "tanh", "relu", "prelu")


def section_activations(st: Stored) -> Section:
    sec = Section(8, "Activation functions",
                  "sigmoid and tanh have horizontal asymptotes: their gradients can vanish (\"network "
                  "paralysis\"). ReLU = max(0, y) and PReLU = max(0, y) + alpha min(0, y) (alpha learned) "
                  "do not flatten for y > 0.", sources=["lecture-activations", "custom/activation_statistics.csv"])
    df = st.study("lecture-activations")
    if df is None or layer_norms_long(df).empty:
        sec.items.append(missing("lecture-activations (with layer_norms)"))
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
        sec.items.append(missing("lecture-init"))
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
