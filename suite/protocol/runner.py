"""Running a protocol: tune (bracketing each grid), select, confirm on fresh seeds.

1. **Tune.** Every workload x optimiser x lr of its grid x tuning seed is a
   cell (tagged ``phase = "tune"``); the cells of a round run as one study
   (:func:`suite.studies.runner.run_study`: populations, resumable, Dask).
2. **Bracket.** Per workload and optimiser, the best lr by the mean of the
   workload's final metric over the tuning seeds; one on its grid's edge
   gets one more grid step in that direction (:func:`.tuning.next_lr`) and
   a new round trains those cells, for at most ``bracket_rounds`` rounds.
   With ``search = "random"`` there are no rounds: each workload x
   optimiser runs its quasi-random trials (:mod:`.search`), and a chosen
   value in the outer tenth of its range is recorded as an edge.
3. **Select, then confirm.** The chosen lr (or trial) of each workload x
   optimiser is rerun on the confirmation seeds (``phase = "confirm"``); the report's
   numbers are those runs', never the runs the choice was made on.
4. **Defaults** (``defaults = true``): each optimiser at its rule's default
   lr, untuned, on the confirmation seeds (``phase = "default"``), so the
   report can say what tuning bought.
5. **State precisions** (``states = [...]``): the chosen settings again on
   the confirmation seeds with the optimiser's state at each precision
   (``phase = "precision"``), paired with the float32 confirmation by seed.

Every decision is a function of the folder's complete cells of this
protocol (a cell's key holds its phase, so another version's cells are never
this one's), so a rerun (after an interruption, or to regenerate) takes the
same path and skips what is done. A decision waits for the cells another
run on the folder is training (:func:`_run`), so two runs at once decide
alike and write the same ``protocol.json``.
``protocol.json`` beside the cells records the grids, the choices and what
is still on an edge.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from optbench.kernels import get_rule

from ..reporting.files import atomic_write_text
from ..studies import scoring as study_scoring
from ..studies import store
from . import scoring
from ..studies.runner import run_study
from ..studies.spec import Study
from . import search
from .spec import Protocol
from .tuning import next_lr

PROTOCOL_FILE = store.PROTOCOL_FILE


@dataclass
class ProtocolSummary:
    out: Path
    cells: int
    ran: int
    rounds: int
    edges: list


#: Seconds between looks at cells another run on the folder is training.
POLL_SECONDS = 1.0


def _run(protocol: Protocol, cells, out: Path, phase: str, **kw) -> int:
    """Train ``cells`` (those not yet complete) and return how many this run
    trained -- once every one of them is complete. Cells another run on the
    folder holds are waited for, never decided without: its finished files
    are read; a cell it gave up (it was stopped) is trained here."""
    study = Study(protocol.name, f"{protocol.description} ({phase})", protocol.path, tuple(cells),
                  protocol.text, protocol.rule_files)
    ran = 0
    while True:
        summary = run_study(study, out, protocol.backend, kind="protocol", **kw)
        ran += summary.ran
        if not summary.busy:
            return ran
        if not kw.get("quiet"):
            print(f"optbench run: waiting for {summary.busy} cells another run on {out} is training",
                  file=sys.stderr)
        kw["quiet"] = True  # one message, not one per look
        time.sleep(POLL_SECONDS)


def _tuning_final(protocol: Protocol, out: Path, keys: set) -> pd.DataFrame:
    """One row per finished tuning run among ``keys``: its final metric."""
    df = study_scoring.tidy(store.load_results(out))
    df = scoring.scored(df[df["cell"].isin(keys)], {w.name: w.metric for w in protocol.workloads})
    return scoring.last_scores(df)


def choices(protocol: Protocol, out: Path, grids: dict) -> tuple[dict, dict, set]:
    """(best, extend, limited): per (workload, optimiser) the best row of
    :func:`suite.studies.scoring.best_lrs` (each workload's metric, mean over
    the tuning seeds); the lr to add where the grid does not bracket it yet;
    and where it does not but the next lr lies outside the rule's lr range
    (never trained: that grid stays on its edge, and the report says why)."""
    keys = {protocol.cell(protocol.workload(w), o, {"lr": lr}, s, "tune").key for (w, o), lrs in grids.items()
            for lr in lrs for s in protocol.tuning_seeds}
    final = _tuning_final(protocol, out, keys)
    best_rows = study_scoring.best_lrs(final, ["workload", "optimizer"], "final_score")
    best, extend, limited = {}, {}, set()
    for (w, o), lrs in grids.items():
        row = best_rows[(best_rows["workload"] == w) & (best_rows["optimizer"] == o)].iloc[0]
        best[(w, o)] = row
        lr = next_lr(lrs, float(row["lr"]), bool(row["all_diverged"]), protocol.per_decade)
        if lr is not None and lr not in get_rule(o).interval("lr"):
            limited.add((w, o))
        elif lr is not None:
            extend[(w, o)] = lr
    return best, extend, limited


def _grid_tuning(protocol: Protocol, out: Path, say, **run_kw):
    """Tuning rounds on the lr grids, each extended while its best lr is on an
    edge: (tuning cells, ran, rounds, grids, chosen settings, edges)."""
    # (workload name, optimiser) -> the lrs tried so far
    grids = {(w.name, o): protocol.initial_grid(w, o) for w in protocol.workloads for o in protocol.optimizers}
    ran, rounds = 0, 0
    while True:
        cells = [protocol.cell(protocol.workload(w), o, {"lr": lr}, s, "tune") for (w, o), lrs in grids.items()
                 for lr in lrs for s in protocol.tuning_seeds]
        say(f"optbench run: protocol {protocol.name!r}, tuning round {rounds}: {len(cells)} cells")
        ran += _run(protocol, cells, out, "tuning", **run_kw)
        best, extend, limited = choices(protocol, out, grids)
        if not extend or rounds == protocol.rounds:
            break
        rounds += 1
        for key, lr in extend.items():
            grids[key] = sorted(grids[key] + [lr])
        say("optbench run: extending " + ", ".join(f"{w}/{o} to lr {lr:g}" for (w, o), lr in extend.items()))
    chosen = {key: {"lr": float(row["lr"])} for key, row in best.items()}
    edges = [{"workload": w, "optimizer": o, "lr": chosen[(w, o)]["lr"], "dimension": "lr",
              "value": chosen[(w, o)]["lr"],
              "side": "highest" if chosen[(w, o)]["lr"] == max(grids[(w, o)]) else "lowest",
              "all_diverged": bool(best[(w, o)]["all_diverged"]),
              **({"range": str(get_rule(o).interval("lr"))} if (w, o) in limited else {})}
             for (w, o) in grids if (w, o) in extend or (w, o) in limited]
    return cells, ran, rounds, grids, chosen, edges, {}


def _random_tuning(protocol: Protocol, out: Path, say, **run_kw):
    """Quasi-random trials (:mod:`.search`), one round: the same tuple as
    :func:`_grid_tuning`, plus each optimiser's trials."""
    trials = {(w.name, o): protocol.trial_settings(w, o) for w in protocol.workloads for o in protocol.optimizers}
    cells = [protocol.cell(protocol.workload(w), o, t, s, "tune", trial=i) for (w, o), ts in trials.items()
             for i, t in enumerate(ts) for s in protocol.tuning_seeds]
    say(f"optbench run: protocol {protocol.name!r}, {protocol.trials} quasi-random trials per optimiser: "
        f"{len(cells)} cells")
    ran = _run(protocol, cells, out, "tuning", **run_kw)
    final = _tuning_final(protocol, out, {c.key for c in cells})
    final["trial"] = final["trial"].astype(int)
    table = study_scoring.lr_table(final, ["workload", "optimizer", "trial"], "final_score")
    best = study_scoring.lowest_mean(table, ["workload", "optimizer"], "final_score", last="trial") \
        .set_index(["workload", "optimizer"])
    chosen, edges = {}, []
    for (w, o), ts in trials.items():
        row = best.loc[(w, o)]
        chosen[(w, o)] = ts[int(row["trial"])]
        all_diverged = bool(row["diverged"] == row["runs"])
        for name, side in search.edges(chosen[(w, o)], protocol.dimensions(protocol.workload(w), o)):
            edges.append({"workload": w, "optimizer": o, "lr": chosen[(w, o)]["lr"], "dimension": name,
                          "value": chosen[(w, o)][name], "side": side, "all_diverged": all_diverged})
    grids = {key: sorted(t["lr"] for t in ts) for key, ts in trials.items()}
    return cells, ran, 0, grids, chosen, edges, trials


def run_protocol(protocol: Protocol, out: Path, quiet: bool = False, **run_kw) -> ProtocolSummary:
    """Tune (bracketing the grids, or quasi-random trials), select and
    confirm (see the module docstring)."""
    out = Path(out)
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))
    tune = _random_tuning if protocol.search == "random" else _grid_tuning
    tune_cells, ran, rounds, grids, chosen, edges, trials = tune(protocol, out, say, quiet=quiet, **run_kw)
    confirm = [protocol.cell(protocol.workload(w), o, chosen[(w, o)], s, "confirm") for (w, o) in grids
               for s in protocol.confirm_seeds]
    say(f"optbench run: confirming the chosen settings on {len(protocol.confirm_seeds)} fresh seeds: "
        f"{len(confirm)} cells")
    ran += _run(protocol, confirm, out, "confirmation", quiet=quiet, **run_kw)
    # What tuning bought: every optimiser at its default lr, untuned, on the same fresh seeds.
    defaults = [protocol.cell(protocol.workload(w), o, {}, s, "default") for (w, o) in grids
                for s in protocol.confirm_seeds] if protocol.defaults else []
    if defaults:
        say(f"optbench run: each optimiser at its default lr on the confirmation seeds: {len(defaults)} cells")
        ran += _run(protocol, defaults, out, "defaults", quiet=quiet, **run_kw)
    # What a low-precision state costs: the chosen settings again, on the same seeds, per precision.
    precision = [protocol.cell(protocol.workload(w), o, {**chosen[(w, o)], "state": p}, s, "precision")
                 for p in protocol.states for (w, o) in grids for s in protocol.confirm_seeds]
    if precision:
        say(f"optbench run: the confirmation again with the state in {', '.join(protocol.states)}: "
            f"{len(precision)} cells")
        ran += _run(protocol, precision, out, "state precisions", quiet=quiet, **run_kw)
    record = {
        "name": protocol.name, "description": protocol.description,
        "workloads": {w.name: _described(w, protocol.fixed) for w in protocol.workloads},
        "optimizers": list(protocol.optimizers),
        "tuning_seeds": list(protocol.tuning_seeds), "confirm_seeds": list(protocol.confirm_seeds),
        "search": protocol.search, "trials": protocol.trials, "space": protocol.space,
        "decades": protocol.decades, "per_decade": protocol.per_decade, "bracket_rounds": protocol.rounds,
        "rounds_used": rounds,
        "grids": [{"workload": w, "optimizer": o, "lrs": lrs, "chosen": chosen[(w, o)]["lr"],
                   "settings": chosen[(w, o)]}
                  for (w, o), lrs in grids.items()],
        "random_trials": [{"workload": w, "optimizer": o, "trial": i, "settings": t}
                          for (w, o), ts in trials.items() for i, t in enumerate(ts)],
        "edges": edges,
        # The cells this protocol consists of: a results folder may also hold
        # cells of an earlier version of it (another budget), which the report
        # must not mix in; they are kept, never deleted.
        "defaults": protocol.defaults,
        # Each workload variant's file workload and batch size (batch_sizes = [...]).
        "batch_sizes": list(protocol.batch_sizes),
        "variants": {v: {"workload": w, "batch_size": b} for v, (w, b) in protocol.variants.items()},
        "states": list(protocol.states),
        "cells": sorted({c.key for c in tune_cells} | {c.key for c in confirm} | {c.key for c in defaults}
                        | {c.key for c in precision}),
    }
    atomic_write_text(out / PROTOCOL_FILE, json.dumps(record, indent=1) + "\n")
    return ProtocolSummary(out, len(record["cells"]), ran, rounds, edges)


def _described(workload, fixed: dict) -> dict:
    """The workload as it ran: its description with the protocol's [fixed] on top."""
    d = workload.describe()
    d["config"] = {**d["config"], **fixed}
    return d


def read_protocol(out: Path) -> dict:
    path = Path(out) / PROTOCOL_FILE
    if not path.is_file():
        raise store.ResultsError(f"{out} holds no {PROTOCOL_FILE}: not a protocol's results")
    return json.loads(path.read_text())
