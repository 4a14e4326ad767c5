"""The protocol's report: the ranking with confidence intervals, the
performance profile and the warnings first -- what a reader needs in 30
seconds -- then the detail per workload, the tuning and the method.

``write_protocol_report(out)`` reads only the results folder (cells,
metadata.json, protocol.json), so ``optbench report`` regenerates it without
training.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..reporting.files import atomic_write_text
from ..reporting.markdown import fmt, md_table, pct
from ..studies import scoring as study_scoring
from ..studies import store
from ..studies.figures import palette_for
from . import figures, scoring, search, stats
from .runner import read_protocol
from ..workloads import METRICS, TARGET_FACTOR

REPORT = "report.md"
FIGURES = "figures"
TAU_MAX = 4.0


def _ci(mean, lo, hi, digits=3) -> str:
    if np.isnan(mean):
        return "n/a"
    if not np.isfinite(mean):
        return "inf (a run diverged)"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{fmt(mean, digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"
    return f"{fmt(mean, digits)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def _setting(settings: dict) -> str:
    """The chosen lr ('0.003'), or a random trial's settings ('lr 0.003, gamma 0.9')."""
    return f"{settings['lr']:g}" if list(settings) == ["lr"] else search.describe(settings)


def _steps(x) -> str:
    return "inf" if not np.isfinite(x) else f"{x:.0f}"


def _reach(t) -> str:
    """'k/n; median steps [lo, hi]', or 'k/n; never (median)' when most runs miss."""
    head = f"{int(t['reached'])}/{int(t['runs'])}"
    if not np.isfinite(t["median"]):
        return f"{head}; most runs never do"
    return f"{head}; {_steps(t['median'])} [{_steps(t['median_lo'])}, {_steps(t['median_hi'])}]"


def write_protocol_report(out: Path) -> Path:
    out = Path(out)
    record = read_protocol(out)
    df = study_scoring.tidy(store.load_results(out))
    # Cells of an earlier version of the protocol (another budget or grid) may
    # share the folder: only the ones this run consists of are scored.
    mine = df["cell"].isin(record["cells"])
    ignored = df.loc[~mine, "cell"].nunique()
    df = df[mine]
    left_out = _left_out(out, record["cells"], set(df["cell"]))
    meta = store.read_metadata(out)
    workloads = list(record["workloads"])
    present = set(df["optimizer"])
    optimizers = [o for o in record["optimizers"] if o in present]
    palette = palette_for(optimizers)
    fig_dir = out / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)
    targets = {w: record["workloads"][w].get("target") for w in workloads}
    metrics = {w: record["workloads"][w].get("metric", "val_loss") for w in workloads}
    labels = {w: METRICS[m] for w, m in metrics.items()}
    chosen = {(g["workload"], g["optimizer"]): g["chosen"] for g in record["grids"]}

    df = scoring.scored(df, metrics)
    final = scoring.confirmed(df)
    rank = scoring.ranking(final, optimizers, workloads)
    reached = scoring.reach(df, targets, optimizers, workloads)
    times = scoring.profile_times(reached) if len(reached) else pd.DataFrame()
    conf = scoring.phase(df, "confirm")
    plateau = scoring.plateau(conf, rank, workloads)
    lines = [f"# Benchmark: protocol `{record['name']}`", "", record.get("description", ""), ""]
    lines += _summary(record, df, meta, out)
    if ignored:
        lines[-1:-1] = [f"- {ignored} other cells in the folder (an earlier version of this protocol) are kept "
                        "but not scored"]
    profile = scores = None
    if len(times):
        profile = stats.performance_profile(times[[o for o in optimizers if o in times.columns]],
                                            stats.tau_grid(TAU_MAX))
        scores = scoring.score_table(df, targets, optimizers, workloads, TAU_MAX)
    lines += _ranking_section(rank, scores, optimizers, workloads, labels)
    if profile is not None:
        figures.plot_profile(profile, pd.Series({o: v[0] for o, v in scores["score"].items()}, name="score"),
                             palette, fig_dir / "profile.png")
        unsolved = profile.attrs.get("unsolved", [])
        lines += ["## Performance profile", "",
                  "![performance profile](figures/profile.png)", "",
                  f"*For each optimiser, the fraction of the {len(times)} workloads on which its median "
                  f"confirmation run reaches the workload's target within tau times the steps "
                  f"of the fastest optimiser on that workload (Dolan and More 2002; AlgoPerf's scoring). Score: "
                  f"the area under the curve from tau = 1 to {TAU_MAX:g}, normalised (1 = fastest everywhere)."
                  + (f" Solved by no optimiser, so counted against all: {', '.join(unsolved)}." if unsolved else "")
                  + "*", ""]
    lines += _warnings(record, final, reached, plateau, left_out)
    tuned = scoring.tuned(df)
    if record.get("search") != "random":
        lines += _tunability_section(scoring.tunability_table(tuned, optimizers, workloads), optimizers, workloads)
    if record.get("defaults"):
        lines += _defaults_section(scoring.defaults_against_tuned(df, optimizers, workloads), workloads)
    if record.get("states"):
        lines += _states_section(*scoring.state_changes(df, optimizers, workloads), workloads)
    lines += _over_run_section(scoring.rankings_over_run(df, optimizers, workloads))
    if record.get("variants"):
        scaling = scoring.batch_scaling(tuned, record["variants"], optimizers, record["edges"])
        if len(scaling):
            figures.plot_batch_scaling(scaling, palette, fig_dir / "batch_scaling.png")
        lines += _batch_section(scaling, record)
    lines += _workloads_section(record, workloads, plateau, scoring.rule_targets(rank, TARGET_FACTOR))
    settings = {(g["workload"], g["optimizer"]): g.get("settings", {"lr": g["chosen"]}) for g in record["grids"]}
    table = scoring.tuning_table(tuned)
    lines += _detail(table, final, rank, reached, optimizers, workloads, chosen, settings, metrics)
    figures.plot_convergence(conf, workloads, palette, targets, labels, fig_dir / "convergence.png")
    figures.plot_tuning(table, chosen, workloads, palette, labels, fig_dir / "tuning.png",
                        lines=record.get("search") != "random")
    curves = {(w, o): scoring.budget(tuned, w, o) for w in workloads for o in optimizers
              if len(table[(table["workload"] == w) & (table["optimizer"] == o)])}
    figures.plot_budget(curves, workloads, palette, labels, fig_dir / "budget.png")
    lines += ["## Convergence on the confirmation seeds", "", "![convergence](figures/convergence.png)", "",
              "*Each workload's metric against epoch at each optimiser's chosen lr: line = mean over the "
              "confirmation runs, band = their range; dashed: the workload's target.*", "",
              "## Tuning", "", "![tuning curves](figures/tuning.png)", "",
              "*Mean final metric over the tuning seeds against the learning rate; the chosen lr is "
              "ringed; x: an lr at which a tuning run diverged (drawn at the top).*", "",
              "![tuning budget](figures/budget.png)", "",
              "*What a smaller tuning budget buys: the median best final metric after k learning rates "
              "drawn at random from the grid (with replacement), computed from the stored tuning runs alone; "
              "band: bootstrap interval over the tuning seeds. The median, because a grid that brackets the "
              "optimum holds an lr that diverges, which makes the mean infinite.*", ""]
    lines += _method(record)
    report = out / REPORT
    atomic_write_text(report, "\n".join(lines))
    return report


def _summary(record, df, meta, out) -> list[str]:
    conf = df[df["phase"] == "confirm"]
    tune = df[df["phase"] == "tune"]
    default = df[df["phase"] == "default"]
    return [
        f"- {len(record['workloads'])} workloads x {len(record['optimizers'])} optimisers; "
        f"{tune['cell'].nunique()} tuning runs (seeds {', '.join(map(str, record['tuning_seeds']))}) and "
        f"{conf['cell'].nunique()} confirmation runs (fresh seeds "
        f"{', '.join(map(str, record['confirm_seeds']))})"
        + (f"; {default['cell'].nunique()} runs at the default lrs (the same fresh seeds)" if len(default) else ""),
        f"- each optimiser's {_how(record)}",
        f"- every number below is from the confirmation runs, with a {scoring.LEVEL:.0%} percentile "
        f"bootstrap interval over runs ({scoring.N_BOOT} resamples) in brackets",
        f"- backend {meta.get('backend', '?')} {_devices(df, meta)}; written {meta.get('written', '?')}; "
        f"regenerated from `{out}` by `optbench report` (no training)", ""]


#: How the report names each phase of a protocol's cells.
PHASES = {"tune": "tuning", "confirm": "confirmation", "default": "default-lr", "precision": "state-precision"}


def _devices(df, meta) -> str:
    """The machine the runs trained on, from the rows themselves: a folder
    resumed or extended elsewhere (a defaults phase added later) names
    each machine and the phases it ran, not only the last run's machine."""
    if "device" not in df or df.empty or df["device"].nunique() <= 1:
        return f"on {meta.get('device', '?')}"
    phases: dict[str, list] = {}
    for p in [p for p in PHASES if p in set(df["phase"])] + sorted(set(df["phase"]) - set(PHASES)):
        for d in sorted(map(str, df.loc[df["phase"] == p, "device"].dropna().unique())):
            phases.setdefault(d, []).append(PHASES.get(p, p))
    return "(" + "; ".join(f"{' and '.join(ps)} runs on {d}" for d, ps in phases.items()) + ")"


def _ranking_section(rank, score, optimizers, workloads, labels) -> list[str]:
    """score: each optimiser's profile score (None: no targets, no profile)."""
    lines = ["## Ranking", "",
             "Each workload's final metric (mean over the confirmation runs [95% interval]; lower is better) "
             "and the optimiser's rank on that workload; the last columns: its mean rank over the workloads "
             "and its performance-profile score (below). Rows in order of mean rank.", ""]
    if rank.empty:
        return lines + ["No confirmation runs yet.", ""]
    mean_rank = rank.groupby("optimizer")["rank"].mean()
    rows = []
    for o in sorted(optimizers, key=lambda o: (mean_rank.get(o, math.inf), o)):
        cells = []
        for w in workloads:
            r = rank[(rank["workload"] == w) & (rank["optimizer"] == o)]
            cells.append("-" if r.empty else f"{_ci(*r[['mean', 'lo', 'hi']].iloc[0])} #{r['rank'].iloc[0]}")
        rows.append([f"**{o}**", *cells, fmt(mean_rank.get(o), 2),
                     _ci(*score["score"][o], digits=2) if score is not None and o in score["score"] else "-"])
    head = [f"{w} ({labels[w].replace('validation', 'val')})" for w in workloads]
    lines += [md_table(["optimiser", *head, "mean rank", "profile score [95%]"], rows), ""]
    if score is not None and "second" in score:
        lines += [f"The top profile score ({score['top']}) beats the second ({score['second']}) in "
                  f"{score['p_top']:.0%} of bootstrap resamples of the confirmation runs (the score's interval "
                  "resamples each workload's runs, so it says how much the one number rests on a few seeds).", ""]
    return lines


def _tunability_section(table, optimizers, workloads) -> list[str]:
    lines = ["## Tunability", "",
             f"How much the exact lr matters: the width, in decades, of the consecutive grid lrs whose mean "
             f"tuning metric lies within {scoring.GOOD_LR:.0%} of the best lr's (0: the best lr alone; the grid's "
             "step bounds the resolution), with a bootstrap interval over the tuning seeds -- with two or three "
             "seeds a coarse one. A wide range forgives a rough lr; a narrow one makes the comparison hinge on "
             "the grid. What a smaller tuning budget buys, per optimiser, is the tuning-budget figure below.", ""]
    if table.empty:
        return lines + ["No lr grid with two or more lrs on every tuning seed.", ""]
    rows = []
    for o in optimizers:
        cells = []
        for w in workloads:
            r = table[(table["workload"] == w) & (table["optimizer"] == o)]
            cells.append("-" if r.empty else _ci(*r[["width", "lo", "hi"]].iloc[0], digits=2))
        rows.append([f"**{o}**", *cells])
    return lines + [md_table(["optimiser", *[f"{w} (decades)" for w in workloads]], rows), ""]


def _defaults_section(table, workloads) -> list[str]:
    lines = ["## Defaults against tuned", "",
             "What tuning bought (AlgoPerf's two rulesets; Schmidt et al. 2021): each optimiser at its rule's "
             "default lr, untuned, on the confirmation seeds, beside the tuned lr on the same seeds. Cell: the "
             "default's mean final metric -> the tuned one's; the gain (default - tuned, positive: tuning "
             "helped) with its 95% interval.", ""]
    if table.empty:
        return lines + ["No default runs yet.", ""]
    rows = []
    for o, g in table.groupby("optimizer", sort=False):
        cells = []
        for w in workloads:
            r = g[g["workload"] == w]
            if r.empty:
                cells.append("-")
                continue
            r = r.iloc[0]
            same = " (tuning chose the default)" if r["tuned_lr"] == r["default_lr"] else ""
            cells.append(f"{fmt(r['default'], 3)} -> {fmt(r['tuned'], 3)}; {_ci(r['gain'], r['lo'], r['hi'])}{same}")
        rows.append([f"**{o}** (lr {g['default_lr'].iloc[0]:g})", *cells])
    return lines + [md_table(["optimiser (default lr)", *workloads], rows), ""]


def _states_section(table, orders, workloads) -> list[str]:
    lines = ["## State precision", "",
             "What keeping each optimiser's state in low precision costs (issue 23; kernels/precision.py): the "
             "chosen settings again on the confirmation seeds with the state in bfloat16 -- rounded to nearest "
             "(bf16) or stochastically (bf16-sr) at every step -- or in 8-bit block-wise codes (int8), paired "
             "with the float32 confirmation seed by seed. Cell: the mean change in the final metric (low "
             "precision - float32; positive: worse) with its 95% interval over the seeds.", ""]
    if table.empty:
        return lines + ["No runs at another state precision yet.", ""]
    for state, g in table.groupby("state", sort=True):
        rows = []
        for o, r in g.groupby("optimizer", sort=False):
            cells = []
            for w in workloads:
                x = r[r["workload"] == w]
                cells.append("-" if x.empty else _ci(*x[["change", "lo", "hi"]].iloc[0]))
            rows.append([f"**{o}**", *cells])
        lines += [f"**{state}**", "", md_table(["optimiser", *workloads], rows), ""]
        o = orders[orders["state"] == state]
        if len(o):
            same = [r["workload"] for _, r in o.iterrows() if r["fp32_top"] == r["low_top"]]
            lines += ["Ranking: " + "; ".join(
                f"`{r['workload']}` tau {fmt(r['tau'], 2)}" + ("" if r["fp32_top"] == r["low_top"] else
                                                            f" (top three {' > '.join(r['fp32_top'])} -> "
                                                            f"{' > '.join(r['low_top'])})")
                for _, r in o.iterrows()) + f". The top three are unchanged on {len(same)} of {len(o)} workloads.", ""]
    return lines


def _over_run_section(table) -> list[str]:
    lines = ["## Rankings over the run", "",
             "Whether the final ranking was already there part-way through the budget: the top three "
             "optimisers by mean metric over the confirmation runs at 25% and 50% of the epochs and at the end, "
             "and Kendall's tau between each early order and the final one (1: the same order; intervals "
             "resample the runs, the same runs at both times).", ""]
    if table.empty:
        return lines + ["No confirmation runs yet.", ""]
    rows = []
    for w, g in table.groupby("workload", sort=False):
        by = {float(r["fraction"]): r for _, r in g.iterrows()}
        top = {f: " > ".join(by[f]["order"][:3]) for f in by}
        taus = [_ci(by[f]["tau"], by[f]["lo"], by[f]["hi"], digits=2) for f in scoring.RANK_POINTS]
        rows.append([f"`{w}`", *[f"{top[f]} (epoch {int(by[f]['epoch'])})" for f in (*scoring.RANK_POINTS, 1.0)],
                     *taus])
    head = ["workload", *[f"top 3 at {f:.0%}" for f in scoring.RANK_POINTS], "top 3 at the end",
            *[f"tau {f:.0%} -> end" for f in scoring.RANK_POINTS]]
    return lines + [md_table(head, rows), ""]


def _batch_section(table, record) -> list[str]:
    lines = ["## Learning rate against batch size", "",
             "How the best lr moves with the batch size at a fixed budget of epochs (each workload crossed with "
             f"batch sizes {', '.join(map(str, record['batch_sizes']))}; every other section treats each "
             "workload@batch as a workload of its own). The best lr at each batch size: the tuning seeds' best "
             "grid lr, refined to the vertex of a parabola through it and its neighbours (in log lr). k: the "
             "least-squares slope of log best lr on log batch size, best lr ∝ batch^k, with a bootstrap "
             "interval over the tuning seeds (the same seeds drawn at every batch size); 'holds': which of "
             "linear scaling (k = 1) and square-root scaling (k = 0.5) the interval admits. Misfit: the "
             "largest distance, in decades, of a batch size's best lr from the fitted line -- beyond the grid's "
             f"step (1/{record['per_decade']} decade) a power law does not describe it.", ""]
    if table.empty:
        return lines + ["Fewer than two batch sizes with a tuned grid per optimiser.", ""]
    few = int(table["seeds"].min())
    if few < 10:
        lines[-1:-1] = [f"With {few} tuning seeds the interval is coarse: a bootstrap over so few runs understates "
                        "the spread, so read it as a lower bound on the uncertainty."]
    lines += ["![best lr against batch size](figures/batch_scaling.png)", ""]
    rows = []
    for _, r in table.iterrows():
        lrs = " / ".join(fmt(v, 2) for v in r["best_lr"])
        edge = f"; grid edge at {', '.join(map(str, r['on_edge']))}" if r["on_edge"] else ""
        rows.append([f"`{r['workload']}`", f"**{r['optimizer']}**", lrs, _ci(r["k"], r["lo"], r["hi"], digits=2),
                     r["rule"], fmt(r["residual"], 2) + edge, int(r["seeds"])])
    sizes = " / ".join(map(str, record["batch_sizes"]))
    return lines + [md_table(["workload", "optimiser", f"best lr at batch {sizes}", "k [95%]", "holds",
                              "misfit (decades)", "seeds"], rows), ""]


def _how(record) -> str:
    """How the settings were chosen, after "each optimiser's"."""
    chosen_on = ("chosen on the tuning seeds' mean final metric (validation error for a classifier, "
                 "validation loss otherwise)")
    if record.get("search") == "random":
        dims = sorted({k for g in record["grids"] for k in g["settings"]})
        return (f"settings {chosen_on}, among {record['trials']} quasi-random (scrambled Halton) trials over "
                f"{', '.join(dims)}; the lr between the ends of a {record['decades']:g}-decade grid")
    return (f"lr {chosen_on}, over a log grid of {record['per_decade']} points a decade spanning "
            f"{record['decades']:g} decades, extended where the best lr sat on an edge "
            f"({record['rounds_used']} of at most {record['bracket_rounds']} rounds used)")


def _left_out(out: Path, keys, present: set) -> list[str]:
    """One line per cell of the protocol that the report could not score: its
    file damaged (and why) or missing. Only those cells' files are read again."""
    lines = []
    for key in sorted(set(keys) - present):
        path = out / store.CELLS / f"{key}{store.SUFFIX}"
        if path.is_file():
            lines.append(f"`{path.relative_to(out)}` is damaged ({store.read_cell(path)[1]})")
        else:
            lines.append(f"`{path.relative_to(out)}` is missing")
    return lines


def _warnings(record, final, reached, plateau, left_out=()) -> list[str]:
    items = []
    if left_out:
        items.append(f"**{len(left_out)} of the protocol's {len(record['cells'])} cells are left out** of every "
                     "number below (the next `optbench run` trains them again): " + "; ".join(left_out) + ".")
    for e in record["edges"]:
        where = (f"lies in the {e['side'].replace('est', '')} tenth of its range" if record.get("search") == "random"
                 else f"is the {e['side']} of its grid, and the next grid step lies outside {e['optimizer']}'s lr "
                 f"range {e['range']}" if "range" in e
                 else f"is still the {e['side']} of its grid after {record['bracket_rounds']} extensions")
        items.append(f"**{e['optimizer']}** on **{e['workload']}**: the chosen {e.get('dimension', 'lr')} "
                     f"{e.get('value', e['lr']):g} {where}"
                     + (" (every tuning run diverged)" if e.get("all_diverged") else "")
                     + ": it may be under-tuned there.")
    div = final.groupby(["workload", "optimizer"])["diverged"].agg(["sum", "size"]).reset_index()
    for _, r in div[div["sum"] > 0].iterrows():
        items.append(f"**{r['optimizer']}** on **{r['workload']}**: {int(r['sum'])}/{int(r['size'])} "
                     "confirmation runs diverged at the chosen lr.")
    for w, (o, fall) in plateau.items():
        if fall > scoring.PLATEAU_TOLERANCE:
            items.append(f"**{w}**: the best optimiser ({o}) was still improving at the end of the budget "
                         f"({fall:.1%} over the last quarter of the epochs): a longer budget may change the ranking.")
    if len(reached):
        missed = reached[reached["fraction"] <= 0.5]
        if len(missed):
            def who(g):
                return ", ".join(f"{o} ({int(k)}/{int(n)})" for o, k, n in zip(g["optimizer"], g["reached"], g["runs"]))

            items.append("Half or fewer of the confirmation runs reach the target, so the profile counts the "
                         "workload as unsolved for: "
                         + "; ".join(f"{w}: {who(g)}" for w, g in missed.groupby("workload", sort=False)) + ".")
    lines = ["## Warnings", ""]
    if not record["edges"]:
        lines.append("- Every optimiser's chosen lr lies inside its grid (a worse lr on both sides)."
                     if record.get("search") != "random" else
                     "- No chosen setting lies in the outer tenth of its search range.")
    return lines + ([f"- {i}" for i in items] or ["- No diverged confirmation run; every best optimiser had "
                                                  "levelled off; most runs reached every target."]) + [""]


def _workloads_section(record, workloads, plateau, rule) -> list[str]:
    rows, notes, checks = [], [], []
    for w in workloads:
        d = record["workloads"][w]
        c = d["config"]
        model = "linear" if not c.get("hidden") else "-".join(map(str, c["hidden"])) + f" {c.get('activation', '')}"
        flat = "-" if w not in plateau else f"{plateau[w][0]}: {-plateau[w][1]:+.1%}"
        rows.append([f"`{w}`", d.get("description", ""), c.get("dataset"), model, c.get("batch_size"),
                     c.get("epochs"), METRICS[d.get("metric", "val_loss")], fmt(d.get("target")), flat])
        note = d.get("target_note") or "no target set"
        if w in rule:
            t, o, m = rule[w]
            agree = "the same" if d.get("target") is not None and math.isclose(t, d["target"], rel_tol=1e-6) else \
                "different: targets are set on the reference machine, so another machine or version may differ"
            note += f". On these runs the rule gives {fmt(t)} ({TARGET_FACTOR} x {o}'s {fmt(m, 4)}): {agree}."
        notes.append(f"- `{w}`: {note}")
        if d.get("reference_note"):
            checks.append(f"- `{w}`: {d['reference_note']}")
    return (["## Workloads", "", md_table(["workload", "what it tests", "data", "model", "batch", "epochs",
                                           "metric", "target", "plateau"], rows), "",
             "*plateau: the change in the best optimiser's mean metric from 75% of the budget to its end "
             f"(means over a tenth of the epochs); beyond -{scoring.PLATEAU_TOLERANCE:.0%} it was still improving "
             "and is flagged above.*",
             ""]
            + [f"How each target was set ({TARGET_FACTOR} x the best optimiser's mean final metric over the "
               "confirmation seeds of the committed reference run, `results/default`):", "", *notes, ""]
            + (["Reference points checked against a peer library:", "", *checks, ""] if checks else []))


def _detail(table, final, rank, reached, optimizers, workloads, chosen, settings, metrics) -> list[str]:
    """table: :func:`.scoring.tuning_table`."""
    lines = ["## Per workload", ""]
    for w in workloads:
        # A classifier's held-out number is its test accuracy; a regressor's, its test loss.
        extra = ("val_loss", "test_acc") if metrics[w] == "val_error" else ("test_loss",)
        held = {col: scoring.interval(final, col, optimizers, [w]) for col in extra}
        lines += [f"### {w}", ""]
        rows = []
        for o in optimizers:
            r = rank[(rank["workload"] == w) & (rank["optimizer"] == o)]
            if r.empty:
                continue
            r = r.iloc[0]
            grid = table[(table["workload"] == w) & (table["optimizer"] == o)]
            tried = ", ".join(("**" if lr == chosen.get((w, o)) else "") + f"{lr:g}: {fmt(m)}"
                              + ("**" if lr == chosen.get((w, o)) else "")
                              for lr, m in zip(grid["lr"], grid["mean_score"]))
            a = {col: held[col][held[col]["optimizer"] == o] for col in held}
            t = reached[(reached["workload"] == w) & (reached["optimizer"] == o)] if len(reached) else reached
            rows.append([o, _setting(settings[(w, o)]), _ci(r["mean"], r["lo"], r["hi"]),
                         *["-" if a[col].empty else _ci(*a[col][["mean", "lo", "hi"]].iloc[0]) for col in held],
                         f"{int(r['diverged'])}/{int(r['runs'])}",
                         "-" if t.empty else _reach(t.iloc[0]),
                         tried])
        label = METRICS[metrics[w]].replace("validation", "val")
        lines += [md_table(["optimiser", "chosen", f"final {label}",
                            *[c.replace("_", " ") for c in extra], "diverged",
                            "runs that reached the target; median steps [95%]",
                            f"tuning: mean final {label} per lr"], rows), ""]
        pw = scoring.pairwise(final, w, optimizers)
        if len(pw) > 1:
            run = scoring.pairwise(final, w, optimizers, per_run=True)
            prows = [[f"**{a}**", *[("-" if a == b else f"{pct(pw.loc[a, b])} / {pct(run.loc[a, b])}")
                                    for b in pw.columns]] for a in pw.index]
            lines += [f"Row against column: P(the row's mean final {label} is lower), bootstrapped over the "
                      "confirmation runs / P(a random run of the row's is lower than one of the column's):",
                      "", md_table(["", *pw.columns], prows), ""]
    return lines


def _method(record) -> list[str]:
    return ["## Method", "",
            "- **Metrics.** A classification workload is scored on its final validation error (1 - accuracy, "
            "as AlgoPerf's targets are error rates), a regression or the quadratic on its final validation "
            "loss; lower is better, and a diverged run scores +inf.",
            ("- **Tuning.** Quasi-random search (`suite/protocol/search.py`): each optimiser's trials are "
             "points of a scrambled Halton sequence over its search box (log scale for lr, eps and wd, "
             "log(1 - x) for decay rates); the trial with the lowest mean final metric over the tuning seeds "
             "is chosen, and a chosen value in the outer tenth of its range is flagged."
             if record.get("search") == "random" else
             "- **Tuning.** Each optimiser starts on a log-spaced lr grid around its usual lr (times the "
             "workload's scale); a grid whose best lr (lowest mean final metric over the tuning seeds) is its "
             "largest or smallest gets one more point beyond it, and the new "
             f"cells are trained, for at most {record['bracket_rounds']} rounds (`suite/protocol/tuning.py`)."),
            "- **Select, then confirm.** The chosen setting is rerun on seeds never used for the choice; only those "
            "runs are reported, so the choice's luck on the tuning seeds does not flatter the winner.",
            "- **Statistics** (`suite/protocol/stats.py`): percentile bootstrap over runs; P(A beats B) is the "
            "share of bootstrap resamples in which A's mean is lower (how sure the ranking is), beside the "
            "share of run pairs in which A's run is lower (how often A wins); time to target is the first "
            "step at which the metric is at or below the target, +inf for a run that never gets there "
            "(counted, not dropped: the median is inf when half or fewer of the runs reach it).",
            "- **Profile.** Dolan-More performance profile over the workloads of the median steps to target; "
            "a workload no optimiser solves counts against every optimiser.", ""]
