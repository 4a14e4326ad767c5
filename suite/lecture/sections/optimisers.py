"""Section 12: the modifications of SGD, on mnist1d and on 2-D test functions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...reporting.markdown import fmt
from ...reporting.markdown import frame_table as md_table
from .. import figures
from ..experiments import OPTIMIZERS, PATH_LRS
from ..measures import best_lr, finals, median_reach, steps_to
from ..stored import Stored, optimizer_results
from ..verdict import AGREES, CONTRADICTS, MIXED
from .common import Item, Section, missing


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
        sec.items.append(missing("lecture-optimizers"))
        return sec
    best = best_lr(df, ["optimizer"])  # by the final criterion Q, as in every other section
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
