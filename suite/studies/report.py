"""A study's report, regenerated from its stored results alone (no training).

``write_report(results_dir)`` reads ``results_dir/cells/*.parquet`` and
``metadata.json`` (see :mod:`.store`) and writes
``results_dir/report.md`` and its figures in ``results_dir/figures/``.

Three layers, each testable on its own: :mod:`.scoring` (pure functions over
the stored long table), :mod:`.figures` (drawing) and this module (the
Markdown and ``write_report``). Besides the scored columns, the header uses
``study``, ``backend``, ``device``, ``dataset``, ``loss``, the other config
columns (to say which other axes vary and are pooled), and metadata.json's
``study``, ``description``, ``written``, ``backend``, ``device`` and
``cells`` (the study's cell keys, to say how many are complete).

Pooling: everything not faceted on is pooled. The best lr is chosen per
optimiser x batch size over all its runs (seeds, inits, anything else the
study varies); bands are +-1 sd over those runs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..reporting.files import atomic_write_text
from ..reporting.markdown import md_table
from . import store
from .figures import (CLIP_FACTOR, LOG_DECADES, palette_for, plot_convergence, plot_heatmap,
                      plot_lr_sensitivity)
from .scoring import (at_best_lr, batch_order, best_lrs, choose_targets, divergence_table,
                      final_performance, final_runs, group_keys, has_accuracy, load, lr_table, name_variants,
                      optimizer_order, other_axes, reach_summary, time_to_target, variant_columns, varied)

REPORT = "report.md"
FIGURES = "figures"
#: Every figure write_report may write (stale ones from an earlier report are removed).
FIGURE_NAMES = ("convergence_epoch.png", "convergence_time.png", "lr_sensitivity.png",
                "heatmap_batch_size.png", "heatmap_init.png")


def _num(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, (float, np.floating)) and math.isinf(x):
        return "inf (diverged)" if x > 0 else "-inf"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return f"{x:.{digits}g}"


def _pm(mean, sd) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if not math.isfinite(mean) or sd is None or math.isnan(sd):
        return _num(mean)
    return f"{_num(mean)} ± {_num(sd, 2)}"


AXIS_NAMES = {"optimizer": "optimiser", "batch_size": "batch size", "init": "init", "lr": "lr"}


def _figure_md(name: str, alt: str, caption: str) -> str:
    return f"![{alt}]({FIGURES}/{name})\n\n*{caption}*\n"


def _study_cells(meta: dict) -> set[str] | None:
    """The study's cell keys as the runner recorded them (None: not recorded)."""
    cells = meta.get("cells")
    return set(map(str, cells)) if isinstance(cells, list) else None


def _pooled(df: pd.DataFrame, *faceted: str) -> str:
    """What a mean runs over, in words: "seeds, inits and activation"."""
    words = ["seeds"] if varied(df, "seed") else []
    words += [f"{AXIS_NAMES[a]}s" for a in ("batch_size", "init") if a not in faceted and varied(df, a)]
    words += other_axes(df)
    if not words:
        return "runs"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _names(optimizers: list[str]) -> str:
    """The optimisers in a sentence; named variants ("adam, cosine") each in backticks."""
    if any(", " in str(o) for o in optimizers):
        return ", ".join(f"`{o}`" for o in optimizers)
    return ", ".join(optimizers)


def _header(df: pd.DataFrame, meta: dict, results_dir: Path) -> list[str]:

    study = meta.get("study") or ", ".join(sorted(df["study"].astype(str).unique()))
    date = meta.get("written")
    if not date:  # no metadata.json: the newest result file's time
        newest = max(p.stat().st_mtime for p in store.cell_files(results_dir).values())
        date = pd.Timestamp(newest, unit="s", tz="UTC").isoformat(timespec="seconds") + " (file time)"
    cells = set(df["cell"].astype(str))
    count = f"{len(cells)} cells (one run each: seeds are cells too), {len(df)} evaluation rows"
    expected = _study_cells(meta)
    if expected is not None:
        missing, extra = len(expected - cells), len(cells - expected)
        count += f"; the study file defines {len(expected)} cells" + (
            f", {missing} of them not (yet) run" if missing else ", all complete")
        if extra:
            count += f"; {extra} cells here are not in the study file (an earlier version?) and are included"
    pooled = other_axes(df)
    lines = [
        f"# Report: study `{study}`",
        "",
        *([meta["description"], ""] if meta.get("description") else []),
        f"- backend(s): {', '.join(sorted(df['backend'].astype(str).unique()))}",
        f"- device(s): {', '.join(sorted(df['device'].astype(str).unique()))}",
        f"- results written: {date}",
        f"- {count}",
        f"- data set(s): {', '.join(sorted(df['dataset'].astype(str).unique())) if 'dataset' in df else '?'}; "
        f"epochs: {int(df['epoch'].max())}",
        f"- optimisers: {_names(optimizer_order(df['optimizer']))}; "
        f"seeds: {df['seed'].nunique()}; batch sizes: {', '.join(batch_order(df['batch_size']))}; "
        f"inits: {', '.join(sorted(df['init'].unique()))}",
    ]
    if pooled:
        lines.append(f"- also varied, and pooled over in everything below: {', '.join(pooled)}")
    named = variant_columns(df)
    if named:
        what = {"schedule": "learning-rate schedule (\"constant\" where a run has none; "
                            "the formulas are in kernels/schedules.py)",
                "decay": "decay setting (decay=weights: L2 and weight decay on the weight matrices only, "
                         "not on biases and PReLU alphas)",
                "state": "state precision (state=bf16: its optimiser state kept in bfloat16, rounded to "
                         "nearest at every step; bf16-sr: stochastically; int8: in 8-bit block-wise codes; "
                         "kernels/precision.py)"}
        lines.append(f"- each optimiser is named with its {' and its '.join(what[c] for c in named)}; "
                     "the best lr is chosen per named variant")
    damaged = store.damaged_cells(results_dir)
    if damaged:
        lines.append(f"- **{len(damaged)} damaged cell file(s) left out** (the next `optbench run` retrains them): "
                     + "; ".join(f"`{path}` ({why})" for path, why in sorted(damaged.items())))
    lines.append(f"- regenerated from `{results_dir}` by `optbench report` (no training)")
    return lines + [""]


def _lr_label(best: pd.DataFrame) -> dict:
    """Legend labels: "adam, lr 0.01", or the lr per batch size where they differ."""
    labels = {}
    for opt, rows in best.groupby("optimizer"):
        if rows["lr"].nunique() == 1:
            labels[opt] = f"{opt}, lr {rows['lr'].iloc[0]:g}"
        else:
            labels[opt] = f"{opt}, lr " + ", ".join(f"{lr:g} ({bs})" for bs, lr in
                                                    zip(rows["batch_size"], rows["lr"]))
        if rows["all_diverged"].all():
            labels[opt] += " (every run diverged)"
    return labels


def _best_lr_section(best, table, keys, df) -> list[str]:
    edges = int(((best["edge"] != "") & ~best["all_diverged"]).sum())
    rows = []
    for _, b in best.iterrows():
        grid = table[np.logical_and.reduce([table[k] == b[k] for k in keys])]
        tried = ", ".join(f"{lr:g}: {_num(m)}" for lr, m in zip(grid["lr"], grid["mean_val_loss"]))
        notes = ["every run at every lr diverged" if b["all_diverged"] else (
            f"{b['diverged']}/{b['runs']} diverged" if b["diverged"] else "")]
        if b["edge"] and not b["all_diverged"]:
            notes.append(f"**on the grid's edge** ({b['edge']} lr tried): the optimum may lie beyond it")
        note = "; ".join(n for n in notes if n)
        rows.append([*(b[k] for k in keys), f"**{b['lr']:g}**", _num(b["mean_val_loss"]),
                     b["runs"], tried, note])
    header = [AXIS_NAMES[k] for k in keys] + ["best lr", "mean final val loss", "runs",
                                              "every lr tried: mean final val loss", "note"]
    return ["## Best learning rate per optimiser", "",
            "For each optimiser" + (" and batch size" if "batch_size" in keys else "") +
            f", the lr whose mean (over {_pooled(df, *keys)}) of the FINAL validation loss is lowest. A diverged run counts as +inf, so an lr with any "
            "diverged run loses to every lr without one. Everything below uses these lrs, chosen on the same runs "
            "it reports (a protocol -- `optbench run default` -- confirms on fresh seeds instead).", "",
            md_table(header, rows), ""] + (
        [f"**Warning:** {edges} of {len(best)} best lrs lie on the edge of their grid, so those optimisers may be "
         "under-tuned and the comparison below may favour the others; widen their grids.", ""] if edges else [])


def _performance_section(final_best, df) -> list[str]:
    by = ["optimizer"] + [a for a in ("batch_size", "init") if varied(df, a)]
    perf = final_performance(final_best, by)
    perf = _sorted(perf, by)
    acc = has_accuracy(df)
    header = [AXIS_NAMES[k] for k in by] + ["runs", "diverged", "val loss"] + (
        ["val acc", "test acc"] if acc else [])
    rows = []
    for _, r in perf.iterrows():
        row = [*(r[k] for k in by), r["runs"], r["diverged"], _pm(r["val_loss_mean"], r["val_loss_sd"])]
        if acc:
            row += [_pm(r["val_acc_mean"], r["val_acc_sd"]), _pm(r["test_acc_mean"], r["test_acc_sd"])]
        rows.append(row)
    text = (f"Mean ± sd over {_pooled(df, *by)} of the final values at each optimiser's best lr"
            + (" (no sd: one run each)" if perf["runs"].max() == 1 else "") + ". A diverged run makes the "
            "mean val loss inf; accuracies average only the runs that did not diverge.")
    if not acc:
        text += " No accuracy: the data set is a regression set."
    return ["## Final performance", "", text, "", md_table(header, rows), ""]


def _sorted(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Rows in the report's order: optimisers as in the kernels, batch sizes ascending."""
    frame = frame.copy()
    order = {"optimizer": optimizer_order(frame["optimizer"])}
    if "batch_size" in frame:
        order["batch_size"] = batch_order(frame["batch_size"])
    for col, values in order.items():
        if col in by:
            frame[col] = pd.Categorical(frame[col], categories=values, ordered=True)
    frame = frame.sort_values(by)
    for col in order:
        if col in by:
            frame[col] = frame[col].astype(str)
    return frame


def _target_section(long_best, final_best, df, keys) -> list[str]:
    initial = df.loc[df["epoch"] == 0, "val_loss"].median()
    targets = choose_targets(final_best, initial, keys)
    bs_keys = [k for k in keys if k != "optimizer"]
    rows, target_notes = [], []
    for _, t in targets.iterrows():
        part = long_best
        for k in bs_keys:
            part = part[part[k] == t[k]]
        where = ", ".join(f"batch size {t[k]}" for k in bs_keys)
        target_notes.append(f"{_num(t['target'])}" + (f" ({where})" if where else ""))
        per_run = time_to_target(part, t["target"]) if math.isfinite(t["target"]) else None
        if per_run is None:
            continue
        summary = _sorted(reach_summary(per_run, keys), keys)
        for _, s in summary.iterrows():
            rows.append([*(s[k] for k in keys), _num(t["target"]), s["reached_label"],
                         _num(s["median_steps"]), _num(s["median_seconds"], 3)])
    text = ("Target validation loss = the worst (largest) mean final validation loss among the "
            "optimisers at their best lr" + (", per batch size" if bs_keys else "") +
            " (optimisers that diverged or ended no lower than the initial loss are left out): "
            "a level each optimiser reaches on average, so this compares how fast. Target: "
            + "; ".join(target_notes) + ". Steps and seconds are medians over the runs that reached "
            "it, at the first evaluation (end of epoch) at or below it; training seconds exclude "
            "evaluation. Runs that never reach it are counted as misses, not dropped.")
    header = [AXIS_NAMES[k] for k in keys] + ["target", "reached", "median steps", "median seconds"]
    body = md_table(header, rows) if rows else "No usable target: every optimiser diverged or made no progress."
    return ["## Time to a target validation loss", "", text, "", body, ""]


def _divergence_section(final) -> list[str]:
    table = divergence_table(final)
    batches = batch_order(table["batch_size"]) if "batch_size" in table else []
    rows = []
    for (opt, lr), part in _sorted(table, ["optimizer", "lr"]).groupby(["optimizer", "lr"], sort=False):
        per_bs = {r["batch_size"]: f"{r['diverged']}/{r['runs']}" for _, r in part.iterrows()} if batches else {}
        epochs = final.loc[(final["optimizer"] == opt) & (final["lr"] == lr) & final["diverged"], "epoch"]
        rows.append([opt, f"{lr:g}", *(per_bs.get(b, "–") for b in batches),
                     f"{part['diverged'].sum()}/{part['runs'].sum()}",
                     _num(epochs.median()) if len(epochs) else "–"])
    header = ["optimiser", "lr", *(f"batch size {b}" for b in batches), "all runs",
              "median epoch of divergence"]
    total = int(final["diverged"].sum())
    return ["## Diverged runs", "",
            f"{total} of {len(final)} runs diverged (a loss or gradient became NaN/Inf, or the final "
            "loss is not finite; the run stopped there). Diverged / runs, for every lr tried, not only "
            "the best.", "", md_table(header, rows), ""]


def _heatmap_sections(final_best, df, fig_dir: Path, written: list[str]) -> list[str]:
    acc = has_accuracy(df)
    metric, label = ("val_acc", "final validation accuracy") if acc else ("final_val_loss", "final validation loss")
    frame = final_best.copy()
    if acc:  # a diverged net's argmax of NaN is not a prediction
        frame[metric] = frame[metric].where(~frame["diverged"])
    else:
        frame[metric] = frame[metric].replace(np.inf, np.nan)
    out = ["## Heatmaps", ""]
    if not acc and (varied(df, "batch_size") or varied(df, "init")):
        out += ["The data set is a regression set (no accuracy), so these show the final validation "
                "loss instead (lower is better).", ""]
    for axis in ("batch_size", "init"):
        name = f"heatmap_{axis}.png"
        if not varied(df, axis):
            value = df[axis].iloc[0]
            out += [f"No optimiser x {AXIS_NAMES[axis]} heatmap: the study does not vary the "
                    f"{AXIS_NAMES[axis]} (always {value}).", ""]
            continue
        matrix = frame.pivot_table(index="optimizer", columns=axis, values=metric, aggfunc="mean",
                                   dropna=False)
        matrix = matrix.reindex(index=optimizer_order(frame["optimizer"]),
                                columns=batch_order(matrix.columns) if axis == "batch_size" else sorted(matrix.columns))
        pooled = _pooled(df, axis)
        plot_heatmap(matrix, fig_dir / name, f"{label.capitalize()}\n(mean over {pooled}, at each optimiser's best lr)",
                     AXIS_NAMES[axis], label, higher_is_better=acc)
        written.append(name)
        out += [_figure_md(name, f"optimiser x {AXIS_NAMES[axis]} heatmap",
                           f"Each cell: mean {label} over {pooled} at the optimiser's best lr "
                           f"({'brighter is better' if acc else 'brighter is lower, i.e. better'}); "
                           "compare along a row to see the effect of the "
                           f"{AXIS_NAMES[axis]}, down a column to compare optimisers. Diverged runs are "
                           "left out of the mean; a cell of only diverged runs says so."), ""]
    return out


def _convergence_section(long_best, best, df, keys, batches, palette, fig_dir, written) -> list[str]:
    one_run = long_best.groupby(keys)["cell"].nunique().max() <= 1
    band = "one run per optimiser, so no band" if one_run else \
        f"line = mean over {_pooled(df, *keys)}, band = ±1 sd"
    rows = "training criterion, validation loss" + (
        ", validation accuracy" if has_accuracy(df) else " (no accuracy: regression set)")
    out = ["## Convergence", ""]
    for x, name, what in (("epoch", "convergence_epoch.png", "epoch"),
                          ("wall_time", "convergence_time.png", "training time (mean over runs per epoch)")):
        notes = plot_convergence(long_best, x, fig_dir / name, palette, _lr_label(best), batches)
        written.append(name)
        caption = (f"Rows: {rows}" + ("; columns: batch size" if batches else "") +
                   f". One line per optimiser at its best lr, against {what}; {band}; lower loss and "
                   f"higher accuracy are better; a loss row gets a log y-scale where it spans over "
                   f"{LOG_DECADES:g} decades" + "".join(f"; {n}" for n in notes) + ".")
        out += [_figure_md(name, f"convergence against {what.split(' (')[0]}", caption), ""]
    return out


def _lr_section(final, df, keys, batches, palette, fig_dir, written) -> list[str]:
    initial = df.loc[df["epoch"] == 0, "val_loss"].max()
    clipped = plot_lr_sensitivity(final, fig_dir / "lr_sensitivity.png", palette, batches, initial)
    written.append("lr_sensitivity.png")
    one_run = final.groupby(keys + ["lr"])["cell"].size().max() == 1  # then there is no band
    caption = ("Final validation loss against the lr (log x), one line per optimiser"
               + ("" if one_run else f", mean and ±1 sd band over {_pooled(df, *keys)} (runs that did not diverge)")
               + "; a flat, low curve means the optimiser is forgiving about its lr; an x at the top "
               "edge marks an lr at which at least one run diverged"
               + (f"; the y-range is cut at {CLIP_FACTOR:g}x the initial validation loss, so a line "
                  "leaving the top ended higher than that" if clipped else "") + ".")
    return ["## Learning-rate sensitivity", "",
            _figure_md("lr_sensitivity.png", "learning-rate sensitivity", caption), ""]


def write_report(results_dir: Path) -> Path:
    """Regenerate ``results_dir/report.md`` and ``results_dir/figures/*.png``
    from the stored results; returns the report's path.

    Raises ResultsError (naming the directory or file) for a missing or empty
    directory or a corrupt file.
    """
    results_dir = Path(results_dir)
    df, meta = load(results_dir)
    df = name_variants(df)  # "adam, cosine" where the study sets a schedule; unchanged otherwise
    fig_dir = results_dir / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)

    final = final_runs(df)
    keys = group_keys(df)
    table = lr_table(final, keys)
    best = _sorted(best_lrs(final, keys), keys)
    long_best = at_best_lr(df, best)
    final_best = at_best_lr(final, best)
    batches = batch_order(df["batch_size"]) if varied(df, "batch_size") else None
    palette = palette_for(optimizer_order(df["optimizer"]))

    written: list[str] = []  # figure files drawn this time
    lines = _header(df, meta, results_dir)
    lines += _best_lr_section(best, table, keys, df)
    lines += _convergence_section(long_best, best, df, keys, batches, palette, fig_dir, written)
    lines += _performance_section(final_best, df)
    lines += _target_section(long_best, final_best, df, keys)
    lines += _heatmap_sections(final_best, df, fig_dir, written)
    lines += _lr_section(final, df, keys, batches, palette, fig_dir, written)
    lines += _divergence_section(final)

    for stale in set(FIGURE_NAMES) - set(written):  # a previous report's figure no longer drawn
        (fig_dir / stale).unlink(missing_ok=True)
    report = results_dir / REPORT
    atomic_write_text(report, "\n".join(lines))
    return report
