"""The numbers the report quotes, measured on the stored tables: a run's
final row, the best lr of a group, epochs to reach a target, the noise of a
curve, the train-validation gap, per-layer gradient norms, variance ratios
through the layers, and steps to convergence on a 2-D path."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import datasets
from ..nn.mlp import dense_parameters

# --- a study's runs ----------------------------------------------------------------- #


def finals(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (cell): its last evaluation."""
    return df.sort_values(["cell", "epoch"]).groupby("cell", sort=False).tail(1).reset_index(drop=True)


def scored_finals(df: pd.DataFrame, metric: str = "train_loss") -> pd.DataFrame:
    """finals(df) with a column ``score``: the final ``metric``, +inf for a
    diverged run or a non-finite value."""
    fin = finals(df)
    values = pd.to_numeric(fin[metric], errors="coerce").astype(float)
    fin["score"] = values.where(~fin["diverged"] & np.isfinite(values), np.inf)
    return fin


def best_lr(df: pd.DataFrame, by: list[str], metric: str = "train_loss") -> pd.DataFrame:
    """All rows of the runs at each group's best lr: the lr whose mean final
    ``metric`` over the group's seeds is lowest (a diverged run counts +inf,
    so an lr with a diverged seed loses to one without)."""
    fin = scored_finals(df, metric)
    means = fin.groupby(by + ["lr"], as_index=False)["score"].mean()
    best = means.loc[means.groupby(by)["score"].idxmin(), by + ["lr"]]
    return df.merge(best, on=by + ["lr"])


def mean_final(df: pd.DataFrame, metric: str) -> float:
    """The mean over runs of the final ``metric`` (+inf if a run diverged)."""
    s = scored_finals(df, metric)["score"]
    return float(s.mean()) if len(s) else float("nan")


def reach_epochs(df: pd.DataFrame, target: float, metric: str = "train_loss") -> pd.Series:
    """Per run (cell): the first epoch whose ``metric`` is <= target; NaN if never."""
    hit = df[pd.to_numeric(df[metric], errors="coerce") <= target]
    first = hit.groupby("cell")["epoch"].min()
    return first.reindex(df["cell"].unique())


def median_reach(df: pd.DataFrame, target: float, metric: str = "train_loss") -> str:
    """"7" (median over runs), "7 (1/2 never)" or "never"."""
    r = reach_epochs(df, target, metric)
    if r.isna().all():
        return f"never (in {int(df['epoch'].max())})"
    text = f"{np.nanmedian(r):g}"
    if r.isna().any():
        text += f" ({int(r.isna().sum())}/{len(r)} never)"
    return text


def value_at_time(run: pd.DataFrame, seconds: float, metric: str = "train_loss") -> float:
    """``metric`` at the last evaluation within ``seconds`` of training."""
    done = run[run["wall_time"] <= seconds + 1e-12]
    return float(done.sort_values("epoch")[metric].iloc[-1]) if len(done) else float("nan")


def curve_noise(run: pd.DataFrame, metric: str = "train_loss") -> tuple[float, float]:
    """(std of the epoch-to-epoch changes of ``metric``, share of epochs in
    which it rose), over the second half of one run's epochs -- where the
    trend has flattened and what is left is the wobble of the steps."""
    q = pd.to_numeric(run.sort_values("epoch")[metric], errors="coerce").to_numpy(float)
    d = np.diff(q)[len(q) // 2:]
    if len(d) == 0 or not np.all(np.isfinite(d)):
        return float("nan"), float("nan")
    return float(d.std()), float((d > 0).mean())


def noise_table(df: pd.DataFrame, by: str) -> pd.DataFrame:
    """curve_noise per run, averaged per value of ``by``."""
    rows = [{by: key, "noise": n, "rises": r}
            for (key, _), run in df.groupby([by, "cell"]) for n, r in [curve_noise(run)]]
    return pd.DataFrame(rows).groupby(by, as_index=False)[["noise", "rises"]].mean()


def gap_table(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group: final train/val accuracy and loss, their gaps, the lowest
    validation loss on the way and the epoch it came (means over seeds)."""
    fin = finals(df)
    low = df.loc[df.groupby("cell")["val_loss"].idxmin(), ["cell", "val_loss", "epoch"]]
    fin = fin.merge(low.rename(columns={"val_loss": "min_val_loss", "epoch": "min_epoch"}), on="cell")
    fin["acc_gap"] = fin["train_acc"] - fin["val_acc"]
    fin["loss_gap"] = fin["val_loss"] - fin["train_loss"]
    return fin.groupby(by, as_index=False).agg(
        train_acc=("train_acc", "mean"), val_acc=("val_acc", "mean"), acc_gap=("acc_gap", "mean"),
        train_Q=("train_loss", "mean"), val_Q=("val_loss", "mean"), loss_gap=("loss_gap", "mean"),
        min_val_Q=("min_val_loss", "mean"), min_epoch=("min_epoch", "median"), runs=("cell", "count"))


def network_size(run: pd.Series) -> tuple[int, list[int]]:
    """(weights, layer widths) of a run's network, from its config columns."""
    ds = datasets.load(str(run["dataset"]), seed=0)  # the widths only; no training
    hidden = [int(h) for h in str(run["hidden"]).split("-") if h]
    sizes = [ds.n_features, *hidden, ds.n_outputs]
    return dense_parameters(sizes), sizes


# --- per layer ------------------------------------------------------------------------ #


def layer_norms_long(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run, epoch and layer: the layer's gradient norm (column
    ``norm``), from the opt-in ``layer_grad_norms`` lists."""
    runs = df[df["layer_grad_norms"].notna()] if "layer_grad_norms" in df else df.iloc[:0]
    rows = [{"cell": r.cell, "epoch": r.epoch, "activation": r.activation, "optimizer": r.optimizer, "lr": r.lr,
             "seed": r.seed, "layer": layer, "norm": float(norm)}
            for r in runs.itertuples() for layer, norm in enumerate(r.layer_grad_norms, start=1)]
    long = pd.DataFrame(rows, columns=["cell", "epoch", "activation", "optimizer", "lr", "seed", "layer", "norm"])
    return long.dropna(subset=["norm"])


def variance_ratios(stats: pd.DataFrame) -> pd.DataFrame:
    """Per activation x init: how the two criteria drift through the hidden layers.

    out_ratio = Var(output of the last hidden layer) / Var(output of the
    first) (rule 1 wants 1); grad_ratio = Var(dQ/dW_1) / Var(dQ/dW_last
    hidden) (rule 2 wants 1). The output layer is left out of both: its
    shape (64 -> 10 classes) and its linear output make it a different kind
    of layer. Far below 1: the signal (or gradient) shrinks on its way in.
    """
    rows = []
    for (act, init), g in stats.groupby(["activation", "init"], sort=False):
        g = g.sort_values("layer")
        hidden = g.iloc[:-1] if len(g) > 1 else g
        rows.append({"activation": act, "init": init,
                     "out_ratio": float(hidden["out_var"].iloc[-1] / hidden["out_var"].iloc[0]),
                     "grad_ratio": float(hidden["grad_var"].iloc[0] / hidden["grad_var"].iloc[-1])})
    return pd.DataFrame(rows)


# --- a 2-D path ------------------------------------------------------------------------ #


def steps_to(fvals: np.ndarray, threshold: float) -> float:
    """The first step from which f stays <= threshold to the end (a path
    that dips below and bounces back has not converged); NaN if none."""
    above = np.flatnonzero(~(np.asarray(fvals) <= threshold))
    if len(above) == 0:
        return 0.0
    return float(above[-1] + 1) if above[-1] + 1 < len(fvals) else float("nan")
