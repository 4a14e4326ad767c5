"""The results store: one long-format table per study, written cell by cell.

Layout of ``results/<study>/``::

    cells/<cell key>.csv    the rows of one completed cell (written atomically)
    metadata.json           package versions, device, threads, git commit,
                            data hashes, the study file's text and its cells' keys
    report.md, figures/     written by ``optbench report`` from the above

A cell's file appears only once the cell has finished (temporary file, then
rename), so an interrupted run loses at most the cell in flight, and a rerun
skips every cell whose file exists.

Columns of the table (one row per run and evaluation point):

- study, cell: the study's name and the cell's stable hash;
- the config, one column per RunConfig field: dataset, hidden (widths joined
  by "-"), activation, init, init_from, loss, optimizer, lr (the learning rate
  actually used: the rule's default when the study gives none), hyper (JSON
  of the other hyper-parameters), batch_size (an int, or "full"), epochs, l2,
  wd, dropout, dropout_mode, standardize, order, seed, backend (the one that
  ran, never "auto"), tol, patience, checkpoint;
- device (GPU or CPU name), dtype ("float32"), data_hash (the data set's
  content hash), n_train;
- epoch, step, examples_seen, wall_time (training seconds so far, evaluation
  excluded), examples_per_sec, train_loss (the criterion Q over the training
  set), train_acc, val_loss, val_acc, test_loss, test_acc, grad_norm,
  diverged, stop_reason (on the last row of a run; "" before).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..reporting import provenance
from ..reporting.files import atomic_write, atomic_write_csv

CELLS = "cells"
METADATA = "metadata.json"
#: The config columns, one per RunConfig field (suite.training.config; a test
#: checks the two agree). The report reads results through this schema and
#: never imports training.
CONFIG_COLUMNS = ("dataset", "hidden", "activation", "init", "init_from", "loss", "optimizer", "lr",
                  "hyper", "batch_size", "epochs", "l2", "wd", "dropout", "dropout_mode", "standardize",
                  "order", "seed", "backend", "tol", "patience", "checkpoint", "layer_norms")
TEXT_COLUMNS = {c: str for c in ("study", "cell", "hidden", "hyper", "stop_reason", "init_from",
                                 "checkpoint", "data_hash", "device", "backend")}


class ResultsError(ValueError):
    """A results directory is missing, empty or holds a corrupt file."""


def completed_cells(out: Path) -> set[str]:
    folder = Path(out) / CELLS
    return {p.stem for p in folder.glob("*.csv")} if folder.is_dir() else set()


def write_cell(out: Path, key: str, rows: list[dict]) -> Path:
    path = Path(out) / CELLS / f"{key}.csv"
    return atomic_write_csv(path, pd.DataFrame(rows))


def write_metadata(out: Path, info: dict) -> None:
    atomic_write(Path(out) / METADATA, lambda f: json.dump(info, f, indent=2, default=str))


def read_metadata(out: Path) -> dict:
    path = Path(out) / METADATA
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path} is corrupt: {exc}") from None


def load_results(out: Path) -> pd.DataFrame:
    """The whole long-format table of a results directory."""
    out = Path(out)
    if not out.is_dir():
        raise ResultsError(f"results directory {out} does not exist (run `optbench run` first)")
    files = sorted((out / CELLS).glob("*.csv"))
    if not files:
        raise ResultsError(f"results directory {out} holds no results ({out / CELLS}/*.csv is empty)")
    frames = []
    for path in files:
        try:
            # Text columns stay text: a hex key like "7e1398..." would parse as a float.
            df = pd.read_csv(path, keep_default_na=False, na_values=["", "nan", "NaN"],
                             dtype=TEXT_COLUMNS)
        except Exception as exc:
            raise ResultsError(f"{path} is corrupt: {exc}") from None
        missing = {"cell", "epoch", "optimizer", "train_loss", "val_loss"} - set(df.columns)
        if df.empty or missing:
            raise ResultsError(f"{path} is corrupt: {'no rows' if df.empty else f'missing columns {sorted(missing)}'}")
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df["stop_reason"] = df["stop_reason"].fillna("") if "stop_reason" in df else ""
    return df


def run_metadata(study, backend, data_hashes: dict) -> dict:
    """What ran, where: stored beside the results."""
    return {
        "study": study.name,
        "description": study.description,
        "study_file": study.text,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backend": backend.name,
        "device": backend.device,
        **provenance.machine(),
        "packages": provenance.versions(["optbench", "numpy", "cupy-cuda12x", "cupy-cuda13x", "pandas",
                                         "seaborn", "scikit-learn", "mnist1d", "dask", "distributed"]),
        "git_commit": provenance.git_commit() or "unknown",
        "data_hashes": data_hashes,
        "cells": sorted(c.key for c in study.cells),
    }
