"""Optimal Brain Damage's report sections: a table, a figure and a typed verdict each.

``obd_sections`` turns the experiments' tables (:mod:`.experiments`) into the
sections the lecture report shows (stored as ``obd/sections.json``): title,
figure (a PNG name beside it), table (Markdown), verdict (one line with the
measured numbers), status (:mod:`suite.lecture.verdict`, decided from the
numbers, never from the verdict's words) and the lecture's claim.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...reporting.markdown import frame_table
from ..verdict import AGREES, CONTRADICTS, INFO, MIXED
from .figures import (SCHEDULES, plot_criteria, plot_input_salience, plot_predicted_vs_measured,
                      plot_procedure, plot_schedules, plot_top_k)
from .pruning import CRITERIA, DEFAULT_MIN_INCREASE, DEFAULT_THRESHOLD


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A Markdown table; floats in ``floatfmt`` (+ 0.0: no "-0")."""
    return frame_table(df, number=lambda v: format(float(v) + 0.0, floatfmt))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _mean_sd(values) -> str:
    v = np.asarray(values, dtype=float)
    return _pct(v.mean()) if v.size < 2 else f"{_pct(v.mean())} ± {100 * v.std(ddof=1):.1f}"


def _seeds(df: pd.DataFrame) -> str:
    n = df.seed.nunique()
    return f"{n} seed{'s' if n > 1 else ''}"


def _section(title, figure, table, verdict, status, claim) -> dict:
    return {"title": title, "figure": figure, "table": table, "verdict": verdict, "status": status,
            "claim": claim}


def procedure_section(history, trained, finals, out_dir) -> dict:
    fig = plot_procedure(history, trained, out_dir / "obd_procedure.png").name
    table = markdown_table(pd.DataFrame([{
        "seed": f["seed"], "rounds": f["rounds"], "stopped by": f["stop"],
        "weights removed": _pct(f["fraction"]),
        "val acc trained → pruned": f"{_pct(f['val_acc_trained'])} → {_pct(f['val_acc'])}",
        "test acc trained → pruned": f"{_pct(f['test_acc_trained'])} → {_pct(f['test_acc'])}",
    } for f in finals]))
    fr = np.array([f["fraction"] for f in finals])
    restored = sum(f["stop"] == "restore" for f in finals)
    dv = np.mean([f["val_acc"] - f["val_acc_trained"] for f in finals])
    dt = np.mean([f["test_acc"] - f["test_acc_trained"] for f in finals])
    rule = f"loss up by more than {DEFAULT_THRESHOLD:.0%} and {DEFAULT_MIN_INCREASE} nats"
    verdict = (f"The stop rule ({rule}) undid a round and stopped in {restored} of {len(finals)} "
               f"seeds, leaving {_pct(fr.min())}–{_pct(fr.max())} of the weights removed (mean "
               f"{_pct(fr.mean())}) with validation accuracy {dv * 100:+.1f} and test accuracy "
               f"{dt * 100:+.1f} points vs the trained network"
               + ("; the rule is conservative: it fired on small loss changes while accuracy "
                  "was intact." if restored and abs(dv) < 0.01 else "."))
    # The procedure works as described when the stop rule fires and the pruned
    # network keeps the trained one's accuracy (within a point).
    status = AGREES if restored == len(finals) and abs(dv) < 0.01 else MIXED
    return _section("OBD: prune, retrain, restore and stop (the lecture's procedure)", fig, table,
                    verdict, status, "Train to a minimum, remove the N least salient connections, retrain; "
                    "if the training or validation loss gets significantly worse, restore the "
                    "last removed connections and stop.")


def criteria_section(df, unpruned_acc, out_dir, plan) -> dict:
    fig = plot_criteria(df, unpruned_acc, out_dir / "obd_criteria.png").name
    mean = df.groupby(["fraction", "stage", "criterion"]).val_acc.mean().unstack(["stage", "criterion"])
    cols = [(st, c) for st in ("pruned", "retrained") for c in CRITERIA if (st, c) in mean.columns]
    table = pd.DataFrame({"removed": [_pct(f) for f in mean.index]})
    for st, c in cols:
        table[f"{c}, {'before' if st == 'pruned' else 'after'} retraining"] = [_pct(v) for v in mean[(st, c)]]
    f = min(mean.index, key=lambda x: abs(x - plan.key_fraction))
    at = mean.loc[f]
    best = {st: max(CRITERIA, key=lambda c: at[(st, c)]) for st in ("pruned", "retrained")}
    verdict = (f"At {_pct(f)} of the weights removed (mean of {_seeds(df)}; unpruned "
               f"{_pct(unpruned_acc)}): before retraining OBD {_pct(at[('pruned', 'obd')])}, magnitude "
               f"{_pct(at[('pruned', 'magnitude')])}, random {_pct(at[('pruned', 'random')])}; after "
               f"retraining OBD {_pct(at[('retrained', 'obd')])}, magnitude "
               f"{_pct(at[('retrained', 'magnitude')])}, random {_pct(at[('retrained', 'random')])}. "
               + ("OBD is best on both stages, as claimed." if best["pruned"] == best["retrained"] == "obd"
                  else f"Contradicts the claim here: the best is {best['pruned']} before and "
                       f"{best['retrained']} after retraining."))
    status = AGREES if best["pruned"] == best["retrained"] == "obd" else CONTRADICTS
    return _section("Pruning criteria: OBD salience vs magnitude vs random", fig,
                    markdown_table(table), verdict, status,
                    "Salience S = w²·h/2 is the loss increase a removal causes, so removing the "
                    "least salient connections does the least damage (LeCun et al. 1990: better "
                    "than removing the smallest weights).")


def predicted_vs_measured_section(df, out_dir) -> dict:
    fig = plot_predicted_vs_measured(df, out_dir / "obd_predicted_vs_measured.png").name
    obd_rows = df[df.criterion == "obd"].groupby("n_removed")[["predicted", "measured", "first_order"]].mean()
    table = obd_rows.reset_index().rename(columns={
        "n_removed": "OBD: least salient removed", "predicted": "predicted ΔQ (Σ S)",
        "measured": "measured ΔQ", "first_order": "first-order term −g·w"})
    single = df[df.criterion == "single"]
    ratio, rho = _ratio_and_rank(single.predicted, single.measured)
    ratio_g, rho_g = _ratio_and_rank(single.predicted + single.first_order, single.measured)
    big = df[(df.criterion == "obd")].groupby("n_removed")[["predicted", "measured", "first_order"]].mean()
    big = big[big.measured > 0]
    n_big = int(big.index.max())
    at = big.loc[n_big]
    under = ratio > 1.5 or at.measured > 2 * at.predicted
    verdict = (f"Single weights: measured/predicted median {ratio:.2f} (Spearman {rho:.2f}); adding "
               f"the first-order term −g·w that OBD drops gives {ratio_g:.2f} (Spearman {rho_g:.2f}): "
               f"the trained network is not at a minimum (cross-entropy keeps falling as the weights "
               f"of a network that fits its training set grow). Removing the {n_big} least salient "
               f"weights at once: predicted {at.predicted:.3g}, measured {at.measured:.3g}, "
               f"{at.measured / at.predicted:.0f}× the prediction and "
               f"{at.measured / (at.predicted + at.first_order):.0f}× with −g·w: over many weights the "
               f"off-diagonal and higher-order terms OBD drops add up. "
               + ("As a size estimate our data contradicts the lecture's premise; as a ranking it works "
                  "(previous section)." if under else "The prediction sizes the increase well."))
    return _section("Predicted vs measured loss increase", fig, markdown_table(table, ".3g"), verdict,
                    CONTRADICTS if under else AGREES,
                    "Near a minimum Q(w + δ) − Q(w) ≈ ½ δᵀQ''δ with Q'' taken diagonal, so "
                    "removing weights raises Q by the sum of their saliences.")


def _ratio_and_rank(predicted, measured) -> tuple[float, float]:
    """Median measured / predicted over positive predictions, and Spearman's rho."""
    ok = predicted > 0
    ratio = float(np.median(measured[ok] / predicted[ok])) if ok.any() else float("nan")
    rho = float(pd.concat([predicted, measured], axis=1).corr(method="spearman").iloc[0, 1])
    return ratio, rho


def schedules_section(df, out_dir) -> dict:
    fig = plot_schedules(df, out_dir / "obd_schedules.png").name
    sparse = df[df.schedule != "dense"]
    table = sparse.groupby(["sparsity", "schedule"]).val_acc.apply(_mean_sd).unstack("schedule")
    table = table[[s for s in SCHEDULES if s in table.columns]].reset_index()
    table["sparsity"] = [_pct(s) for s in table.sparsity]
    mean = sparse.groupby(["sparsity", "schedule"]).val_acc.mean().unstack("schedule")
    wins = int((mean["gradual"] > mean["sparse from start"]).sum())
    beats_oneshot = int((mean["gradual"] > mean["one-shot"]).sum())
    s = mean.index.max() if len(mean) == 1 else sorted(mean.index)[-2]
    dense = df[df.schedule == "dense"].val_acc.mean()
    verdict = (f"Gradual OBD beat sparse-from-start at {wins} of {len(mean)} sparsities and one-shot "
               f"at {beats_oneshot} of {len(mean)}; at {_pct(s)} removed: gradual "
               f"{_pct(mean.loc[s, 'gradual'])}, one-shot {_pct(mean.loc[s, 'one-shot'])}, sparse "
               f"from start {_pct(mean.loc[s, 'sparse from start'])} (dense {_pct(dense)}, "
               f"{_seeds(df)}). "
               + ("Supports the lecture." if wins == len(mean) else
                  "Mostly supports the lecture." if wins > len(mean) / 2 else
                  "Contradicts the lecture."))
    status = AGREES if wins == len(mean) else MIXED if wins > len(mean) / 2 else CONTRADICTS
    return _section("Gradual pruning vs one-shot vs sparse from the start", fig,
                    markdown_table(table), verdict, status,
                    "Gradual pruning usually beats training a network that was sparse from the start.")


def heatmap_section(grid, out_dir) -> dict:
    fig = plot_input_salience(grid, out_dir / "obd_input_salience.png").name
    share = np.sort(grid.ravel())[::-1] / grid.sum()
    zero = int((grid.ravel() <= 1e-12 * grid.max()).sum())
    border = np.ones_like(grid, dtype=bool)
    border[1:-1, 1:-1] = False
    table = markdown_table(pd.DataFrame({
        "most salient inputs": ["8", "16", "32"],
        "share of total input salience": [_pct(share[:k].sum()) for k in (8, 16, 32)]}))
    verdict = (f"The 16 most salient of 64 pixels carry {_pct(share[:16].sum())} of the input "
               f"salience, the 28 border pixels {_pct(grid[border].sum() / grid.sum())}; {zero} pixels "
               f"have zero salience (constant in the training set, so a_j = 0 and h = 0).")
    return _section("Input salience (OBD feature selection)", fig, table, verdict, INFO,
                    "Feature selection with OBD: the salience of input j is S_j = Σ_h S_jh.")


def top_k_section(df, out_dir) -> dict:
    fig = plot_top_k(df, out_dir / "obd_top_k.png").name
    table = df.groupby(["k", "selection"]).val_acc.apply(_mean_sd).unstack("selection").reset_index()
    mean = df.groupby(["k", "selection"]).val_acc.mean().unstack("selection")
    parts = [f"k={k}: {_pct(r['OBD top-k'])} vs {_pct(r['random k'])}" for k, r in mean.iterrows()]
    smaller = mean[mean.index < mean.index.max()]
    wins = int((smaller["OBD top-k"] > smaller["random k"]).sum())
    verdict = ("Validation accuracy, OBD's top-k inputs vs k random inputs: " + "; ".join(parts)
               + f". OBD's choice wins at {wins} of {len(smaller)} k < {mean.index.max()}"
               + (" (as claimed)." if wins == len(smaller) else " (contradicts the claim at the others)."))
    status = AGREES if wins == len(smaller) else CONTRADICTS if wins == 0 else MIXED
    return _section("Training on the top-k inputs by salience", fig, markdown_table(table), verdict, status,
                    "Inputs with low total salience S_j can be dropped: OBD selects features.")

