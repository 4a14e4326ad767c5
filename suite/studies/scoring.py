"""Scoring a study: pure functions over the results store's long table.

In the AlgoPerf manner the scoring is kept apart from the plotting
(:mod:`.figures`) and the Markdown (:mod:`.report`), so each can be tested on
a hand-made frame:

- :func:`load` / :func:`tidy`: the stored table with typed columns;
- :func:`name_variants`: where a study sets a learning-rate schedule or
  decays only the weights, the optimiser column names the variant
  ("adam, warmup_cosine(warmup=100)"), so everything below compares
  variants as it compares optimisers;
- :func:`final_runs`: one row per run, its last evaluation, with
  ``final_val_loss`` (+inf for a diverged run, or a NaN/Inf final loss);
- :func:`lr_table` / :func:`best_lrs`: per optimiser (and batch size, where
  the study varies it) the lr whose mean-over-runs final validation loss is
  lowest; a diverged run counts as +inf, so an lr with any diverged run loses
  to any lr without one. Ties (e.g. every lr has a diverged run) go to fewer
  diverged runs, then the lower mean loss of the runs that finished;
- :func:`at_best_lr`: the rows (long or final) at those lrs;
- :func:`final_performance`: mean and sd of the final val_loss, val_acc,
  test_acc per optimiser x batch size x init at the best lr;
- :func:`choose_targets`, :func:`time_to_target`, :func:`reach_summary`:
  steps and seconds to reach a target validation loss; runs that never reach
  it are misses ("2/3 reached"), never dropped;
- :func:`divergence_table`: diverged runs per optimiser and lr.

Columns relied on (one row per run and evaluation point; :mod:`.store`
documents them all):

- ``cell``: the run's id (one cell is one run: seeds are a grid axis);
- ``optimizer``, ``lr`` (the learning rate used), ``seed``;
- ``batch_size`` (an int or "full"; read back as int or str, so the report
  works on a string label of it), ``init``: the axes the report facets by,
  each only where the study varies it (a missing column counts as not varied);
- ``epoch`` (0 = the initial weights), ``step`` (optimiser steps so far),
  ``wall_time`` (training seconds so far, evaluation excluded);
- ``train_loss`` (the criterion Q over the training set), ``val_loss``,
  ``val_acc``, ``test_acc`` (accuracies are NaN for a regression set);
- ``diverged`` (bool, true on the last row of a diverged run).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import store

NUMERIC = ("lr", "seed", "epoch", "step", "wall_time", "train_loss", "val_loss", "val_acc",
           "test_acc")


def load(results_dir: Path) -> tuple[pd.DataFrame, dict]:
    """The tidied long table and the metadata; ResultsError naming the bad file."""
    results_dir = Path(results_dir)
    df = store.load_results(results_dir)  # missing / empty dir, legacy or damaged files
    meta = store.read_metadata(results_dir)  # corrupt metadata.json
    if not isinstance(meta, dict):  # valid JSON, but not the object run_metadata writes
        raise store.ResultsError(f"{results_dir / store.METADATA} is corrupt: not a JSON object")
    return tidy(df), meta


def _batch_label(value) -> str:
    # A column mixing ints and "full" comes back as objects; files of only
    # ints may come back as floats where another column had gaps.
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def batch_order(labels) -> list[str]:
    """Batch-size labels smallest first, "full" (or any non-number) last."""
    labels = sorted(set(labels), key=str)
    nums = sorted((s for s in labels if s.isdigit()), key=int)
    return nums + [s for s in labels if not s.isdigit()]


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """The table with typed columns: batch_size a string label, diverged a bool."""
    df = df.copy()
    for col in NUMERIC:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    if "batch_size" in df:
        df["batch_size"] = df["batch_size"].map(_batch_label)
    if "init" in df:
        df["init"] = df["init"].astype(str)
    if "diverged" in df and df["diverged"].dtype != bool:
        df["diverged"] = df["diverged"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
    return df



#: Config columns that make a run a variant of its optimiser, and the value a
#: cell without the column has (its file predates the setting, or the setting
#: was left at its default, which is not stored).
VARIANTS = {"schedule": "constant", "decay": "all", "state": "fp32"}


def _variant_values(df: pd.DataFrame, column: str) -> pd.Series:
    default = VARIANTS[column]
    values = df[column].astype(object).where(df[column].notna(), default).astype(str)
    return values.where(values != "", default)


def variant_columns(df: pd.DataFrame) -> list[str]:
    """The :data:`VARIANTS` columns some run of the study sets."""
    return [c for c, default in VARIANTS.items() if c in df and (_variant_values(df, c) != default).any()]


def name_variants(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with each run's variant in its optimiser name where the study
    sets a variant column (:data:`VARIANTS`) anywhere: "adam,
    warmup_cosine(warmup=100)", "adam, constant" for a run of the same study
    without a schedule, "adam, decay=weights". Unchanged (the same object)
    for a study that sets none, so its report is what it always was."""
    columns = variant_columns(df)
    if not columns:
        return df
    df = df.copy()
    for column in columns:
        values = _variant_values(df, column)
        df["optimizer"] = df["optimizer"].astype(str) + ", " + (values if column == "schedule"
                                                                 else f"{column}=" + values)
    return df


def varied(df: pd.DataFrame, column: str) -> bool:
    """Whether the study varies ``column`` (a missing column does not vary)."""
    return column in df and df[column].nunique(dropna=False) > 1


def group_keys(df: pd.DataFrame) -> list[str]:
    """What the best lr is chosen per: the optimiser, and the batch size if it varies."""
    return ["optimizer"] + (["batch_size"] if varied(df, "batch_size") else [])


def final_runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (its last evaluation), plus ``final_val_loss``.

    ``final_val_loss`` is +inf for a diverged run and for a final loss that is
    NaN or infinite, so averaging it makes any lr with a failure lose; such
    a run's ``diverged`` is set too, so every count below agrees.
    """
    last = df.sort_values(["cell", "epoch"]).groupby("cell", sort=False).tail(1).copy()
    loss = last["val_loss"].astype(float)
    failed = last["diverged"].astype(bool) | ~np.isfinite(loss)
    last["final_val_loss"] = np.where(failed, np.inf, loss)
    last["diverged"] = failed  # a run whose final loss is NaN/Inf failed too
    return last.reset_index(drop=True)


def lr_table(final: pd.DataFrame, by: list[str] | None = None, score: str = "final_val_loss") -> pd.DataFrame:
    """Per ``by`` + lr: runs, diverged runs, the mean score (inf if any run
    diverged) and the mean over the runs that finished (the tie-breaker).

    ``score``: the per-run column to average (lower is better, +inf for a
    failed run); the means are named ``mean_<score>`` and
    ``finished_mean_<score>`` without its ``final_`` prefix (so
    ``mean_val_loss`` by default; a protocol scores ``final_score``).
    """
    by = group_keys(final) if by is None else list(by)
    name = score.removeprefix("final_")
    finite = final[score].where(np.isfinite(final[score]))
    out = (final.assign(_finite=finite)
           .groupby(by + ["lr"], sort=True)
           .agg(**{"runs": ("cell", "size"), "diverged": ("diverged", "sum"),
                   f"mean_{name}": (score, "mean"), f"finished_mean_{name}": ("_finite", "mean")})
           .reset_index())
    out["diverged"] = out["diverged"].astype(int)
    return out


def lowest_mean(table: pd.DataFrame, by: list[str], score: str = "final_val_loss", last: str = "lr") -> pd.DataFrame:
    """Per ``by`` group, the row of an :func:`lr_table` (grouped by ``by`` and
    ``last``) with the lowest mean score; ties at +inf go to fewer diverged
    runs, then to the lower mean of the runs that finished, then to the
    smaller ``last``."""
    name = score.removeprefix("final_")
    finished = table[f"finished_mean_{name}"].fillna(np.inf)
    ranked = table.assign(_finished=finished).sort_values(by + [f"mean_{name}", "diverged", "_finished", last])
    return ranked.groupby(by, sort=False).head(1).drop(columns="_finished")


def best_lrs(final: pd.DataFrame, by: list[str] | None = None, score: str = "final_val_loss") -> pd.DataFrame:
    """One row per ``by`` group: the lr with the lowest mean ``score`` (the
    final val loss unless told; see :func:`lr_table`).

    Diverged runs count as +inf; among lrs tied at +inf, fewer diverged runs
    win, then the lower mean score of the runs that finished.
    """
    by = group_keys(final) if by is None else list(by)
    table = lr_table(final, by, score)
    best = lowest_mean(table, by, score)
    best["all_diverged"] = best["diverged"] == best["runs"]
    # On the edge of the grid: the optimum may lie beyond it, unmeasured.
    edges = table.groupby(by, sort=False)["lr"].agg(["min", "max", "size"]).reset_index()
    best = best.merge(edges, on=by, how="left")
    best["edge"] = np.where(best["size"] < 2, "", np.where(best["lr"] == best["max"], "highest",
                                                          np.where(best["lr"] == best["min"], "lowest", "")))
    best = best.drop(columns=["min", "max", "size"])
    return best.sort_values(by).reset_index(drop=True)


def at_best_lr(df: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``df`` (long or final) whose lr is their group's best lr."""
    keys = [k for k in best.columns if k in ("optimizer", "batch_size")] + ["lr"]
    return df.merge(best[keys], on=keys, how="inner")


def final_performance(final_best: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean and sd over runs of the final val_loss, val_acc, test_acc per ``by``.

    val_loss uses ``final_val_loss`` (inf if any run diverged). Accuracies
    average the runs that did not diverge: a diverged net outputs NaN, and
    the argmax of NaN is not a prediction.
    """
    ok = ~final_best["diverged"]
    frame = final_best.assign(
        val_acc=final_best["val_acc"].where(ok), test_acc=final_best["test_acc"].where(ok))
    g = frame.groupby(by, sort=True)
    out = g.agg(runs=("cell", "size"), diverged=("diverged", "sum"),
                val_loss_mean=("final_val_loss", "mean"), val_loss_sd=("final_val_loss", "std"),
                val_acc_mean=("val_acc", "mean"), val_acc_sd=("val_acc", "std"),
                test_acc_mean=("test_acc", "mean"), test_acc_sd=("test_acc", "std"))
    out["diverged"] = out["diverged"].astype(int)
    return out.reset_index()


def choose_targets(final_best: pd.DataFrame, initial_val_loss: float | None = None,
                   by: list[str] | None = None) -> pd.DataFrame:
    """The target validation loss per batch size (or one for the study).

    Target = the worst (largest) mean final val loss among the optimisers at
    their best lr: a level every optimiser reaches on average with its own
    tuning, so "reached" compares speed, not just who gets there. Optimisers
    whose mean is infinite (a diverged run) or no lower than
    ``initial_val_loss`` (no progress) are left out; NaN when none is left.
    """
    by = [k for k in (group_keys(final_best) if by is None else by) if k != "optimizer"]
    means = final_best.groupby(["optimizer"] + by)["final_val_loss"].mean().reset_index()
    usable = np.isfinite(means["final_val_loss"])
    if initial_val_loss is not None and math.isfinite(initial_val_loss):
        usable &= means["final_val_loss"] < initial_val_loss
    means["final_val_loss"] = means["final_val_loss"].where(usable)
    if not by:
        value = means["final_val_loss"].max()  # NaN when nothing is usable
        return pd.DataFrame({"target": [value]})
    return means.groupby(by)["final_val_loss"].max().rename("target").reset_index()


def time_to_target(df: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per run: whether its val_loss ever got to ``target`` or below, and the
    step, training seconds and epoch of the first evaluation that did.

    A run that never gets there (or diverges first) is a miss: reached False,
    step/seconds/epoch NaN. Resolution: the evaluation points (epochs).
    """
    keep = [c for c in ("optimizer", "batch_size", "init", "lr", "seed") if c in df]
    rows = []
    for cell, run in df.sort_values(["cell", "epoch"]).groupby("cell", sort=False):
        hit = run[run["val_loss"].astype(float) <= target]  # NaN and inf never hit
        first = hit.iloc[0] if len(hit) else None
        row = {"cell": cell, **{c: run[c].iloc[0] for c in keep}, "reached": first is not None}
        for name, col in (("steps", "step"), ("seconds", "wall_time"), ("epoch", "epoch")):
            row[name] = float(first[col]) if first is not None and col in run else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=["cell", *keep, "reached", "steps", "seconds", "epoch"])


def reach_summary(per_run: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per ``by``: runs, how many reached the target ("k/n reached"), and the
    median steps and seconds of those that did (NaN if none did)."""
    g = per_run.groupby(by, sort=True)
    out = g.agg(runs=("cell", "size"), reached=("reached", "sum"),
                median_steps=("steps", "median"), median_seconds=("seconds", "median"))
    out["reached"] = out["reached"].astype(int)
    out["reached_label"] = [f"{r}/{n} reached" for r, n in zip(out["reached"], out["runs"])]
    return out.reset_index()


def divergence_table(final: pd.DataFrame) -> pd.DataFrame:
    """Per optimiser x lr (x batch size where it varies): runs, diverged runs,
    and the median epoch at which the diverged ones stopped (NaN if none)."""
    by = ["optimizer", "lr"] + (["batch_size"] if varied(final, "batch_size") else [])
    frame = final.assign(diverged_epoch=final["epoch"].where(final["diverged"]))
    out = (frame.groupby(by, sort=True)
           .agg(runs=("cell", "size"), diverged=("diverged", "sum"),
                median_diverged_epoch=("diverged_epoch", "median"))
           .reset_index())
    out["diverged"] = out["diverged"].astype(int)
    return out


def has_accuracy(df: pd.DataFrame) -> bool:
    """False for a regression set: its accuracy columns are all NaN."""
    return "val_acc" in df and bool(np.isfinite(df["val_acc"].astype(float)).any())



def optimizer_order(names) -> list[str]:
    """The optimisers in the kernels' order (sgd ... adam), unknown ones after;
    variants ("adam, cosine": :func:`name_variants`) after their rule's plain
    name, in alphabetical order."""
    from optbench.kernels import RULES

    rules = list(RULES)

    def key(name):
        rule, _, variant = str(name).partition(", ")
        known = rule in RULES
        return (not known, rules.index(rule) if known else 0, rule, variant != "", variant)

    return sorted(set(names), key=key)



def other_axes(df: pd.DataFrame) -> list[str]:
    """Config fields the study varies besides optimiser, lr, batch size, init
    and seed (and the variant columns, which :func:`name_variants` folds into
    the optimiser): the report pools over them (and says so)."""
    return [f for f in store.CONFIG_COLUMNS
            if f not in ("optimizer", "lr", "batch_size", "init", "seed", *VARIANTS) and varied(df, f)]

