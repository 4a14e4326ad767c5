"""The results store: one long-format table per study, written cell by cell.

Layout of ``results/<study>/``::

    cells/<cell key>.csv    the rows of one completed cell (written atomically)
    metadata.json           package versions, device, threads, git commit,
                            data hashes, the study file's text and its cells' keys
    report.md, figures/     written by ``optbench report`` from the above

A cell's file appears only once the cell has finished (temporary file, then
rename), so an interrupted run loses at most the cell in flight. Its last
line proves it whole: ``# optbench cell: rows=N sha256=H``, the hash of
everything above it. A file without that footer, or whose hash does not
match (cut short, edited, or written by an older optbench), is *damaged*:
``optbench report`` names it and leaves it out, and the next ``optbench run``
retrains it, saying so.

Two runs on one folder share the work: each claims a cell before training it
with a lock on the folder's ``.claims`` file (one byte per cell key; the
kernel drops a dead process's locks), skips the cells another run holds and
rechecks for a finished file after claiming.

Columns of the table (one row per run and evaluation point):

- study, cell: the study's name and the cell's stable hash;
- the config, one column per RunConfig field: dataset, hidden (widths joined
  by "-"), activation, init, init_from, loss, optimizer, lr (the learning rate
  actually used: the rule's default when the study gives none), hyper (JSON
  of the other hyper-parameters), batch_size (an int, or "full"), epochs, l2,
  wd, schedule (the lr schedule's label, e.g. "warmup_cosine(warmup=100)";
  only in the files of cells that have one), decay ("weights"; only where
  decay is not on all parameters), dropout, dropout_mode, standardize, order,
  seed, backend (the one that ran, never "auto"), tol, patience, checkpoint;
- device (GPU or CPU name), dtype ("float32"), data_hash (the data set's
  content hash), n_train;
- epoch, step, examples_seen, wall_time (training seconds so far, evaluation
  excluded; for a cell trained in a population, the population's training
  time divided by its members: the time per member), examples_per_sec
  (this epoch's, from that time), train_loss (the criterion Q over the training
  set), train_acc, val_loss, val_acc, test_loss, test_acc, grad_norm,
  diverged, stop_reason (on the last row of a run; "" before).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..reporting import provenance
from ..reporting.files import atomic_write, atomic_write_text

try:  # POSIX byte-range locks; without them two runs are not kept apart
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None

CELLS = "cells"
METADATA = "metadata.json"
#: The config columns, one per RunConfig field (suite.training.config; a test
#: checks the two agree). The report reads results through this schema and
#: never imports training.
CONFIG_COLUMNS = ("dataset", "hidden", "activation", "init", "init_from", "loss", "optimizer", "lr",
                  "hyper", "batch_size", "epochs", "l2", "wd", "schedule", "decay", "dropout", "dropout_mode",
                  "standardize", "order", "seed", "backend", "tol", "patience", "checkpoint", "layer_norms",
                  "init_from_sha256")
TEXT_COLUMNS = {c: str for c in ("study", "cell", "hidden", "hyper", "stop_reason", "init_from",
                                 "checkpoint", "data_hash", "device", "backend", "schedule", "decay")}


class ResultsError(ValueError):
    """A results directory is missing, empty or holds a corrupt file."""


FOOTER = re.compile(r"^# optbench cell: rows=(\d+) sha256=([0-9a-f]{64})\n?$")


def _footer(body: str) -> str:
    rows = body.count("\n") - 1  # lines after the header (no field of ours holds a newline)
    return f"# optbench cell: rows={rows} sha256={hashlib.sha256(body.encode()).hexdigest()}\n"


def write_cell(out: Path, key: str, rows: list[dict]) -> Path:
    """Write one finished cell's rows, with the footer that proves the file whole."""
    body = pd.DataFrame(rows).to_csv(index=False, lineterminator="\n")
    return atomic_write_text(Path(out) / CELLS / f"{key}.csv", body + _footer(body))


def read_cell(path: Path) -> tuple[str | None, str]:
    """(the CSV text above the footer, or None if the file is damaged; why not)."""
    try:
        text = Path(path).read_bytes().decode()
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"unreadable ({exc})"
    body, _, last = text.rstrip("\n").rpartition("\n")
    m = FOOTER.match(last)
    if not m:
        return None, "no completion footer (cut short, or written by an older optbench)"
    body += "\n"
    if hashlib.sha256(body.encode()).hexdigest() != m.group(2):
        return None, "its checksum does not match its rows (cut short or edited)"
    return body, ""


def cell_files(out: Path) -> dict[str, Path]:
    folder = Path(out) / CELLS
    return {p.stem: p for p in sorted(folder.glob("*.csv"))} if folder.is_dir() else {}


def completed_cells(out: Path) -> set[str]:
    """The keys of the cells whose files are whole."""
    return {k for k, p in cell_files(out).items() if read_cell(p)[0] is not None}


def damaged_cells(out: Path) -> dict[str, str]:
    """{path relative to ``out``: why} for every cell file that is not whole."""
    out = Path(out)
    damaged = {}
    for key, path in cell_files(out).items():
        body, why = read_cell(path)
        if body is None:
            damaged[str(path.relative_to(out))] = why
    return damaged


def preflight(out: Path, n_cells: int = 0) -> None:
    """Refuse, before any training, a results folder that cannot take the
    results: a file where the folder should be, a folder that cannot be
    created or written, or a disk without room (about 16 KB a cell, 16 MB at
    least)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ResultsError(f"results folder {out} is a file, not a folder")
    try:
        (out / CELLS).mkdir(parents=True, exist_ok=True)
        probe = atomic_write_text(out / ".optbench-write-test", "")
        probe.unlink()
    except OSError as exc:
        raise ResultsError(f"cannot write to results folder {out}: {exc.strerror or exc}") from None
    need = max(16 << 20, n_cells * (16 << 10))
    free = shutil.disk_usage(out).free
    if free < need:
        raise ResultsError(f"only {free / 2**20:.1f} MB free under {out}; the study needs about "
                           f"{need / 2**20:.0f} MB")


class Claims:
    """Which run trains which cell: a lock per cell on one byte of ``out/.claims``.

    ``claim(key)`` is False when another process holds that cell. Locks go
    with the process (exit, kill -9), so a crash leaves nothing to clean up.
    Within one process every claim succeeds (POSIX locks are per process).
    """

    def __init__(self, out: Path):
        self._file = open(Path(out) / ".claims", "a+b") if fcntl is not None else None
        self.held: set[str] = set()

    @staticmethod
    def _offset(key: str) -> int:
        return int(key[:15], 16)  # 60 bits: a valid file offset

    def claim(self, key: str) -> bool:
        if self._file is None:
            return True
        try:
            fcntl.lockf(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self._offset(key))
        except OSError:
            return False
        self.held.add(key)
        return True

    def release(self, key: str) -> None:
        if self._file is not None and key in self.held:
            fcntl.lockf(self._file, fcntl.LOCK_UN, 1, self._offset(key))
            self.held.discard(key)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # drops every lock this process holds on it
            self._file = None
        self.held.clear()

    def __enter__(self) -> "Claims":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


def load_results(out: Path, required=("cell", "epoch", "optimizer", "train_loss", "val_loss")) -> pd.DataFrame:
    """The long-format table of every whole cell file in a results directory
    (damaged ones are left out: :func:`damaged_cells` lists them). A whole
    file that lacks a ``required`` column is a ResultsError naming it."""
    out = Path(out)
    if not out.is_dir():
        raise ResultsError(f"results directory {out} does not exist (run `optbench run` first)")
    files = cell_files(out)
    if not files:
        raise ResultsError(f"results directory {out} holds no results ({out / CELLS}/*.csv is empty)")
    frames = []
    for path in files.values():
        body, _ = read_cell(path)
        if body is None:
            continue
        try:
            # Text columns stay text: a hex key like "7e1398..." would parse as a float.
            df = pd.read_csv(io.StringIO(body), keep_default_na=False, na_values=["", "nan", "NaN"],
                             dtype=TEXT_COLUMNS)
        except Exception as exc:
            raise ResultsError(f"{path} is corrupt: {' '.join(str(exc).split())}") from None
        missing = set(required) - set(df.columns)
        if df.empty or missing:
            raise ResultsError(f"{path} is corrupt: {'no rows' if df.empty else f'missing columns {sorted(missing)}'}")
        frames.append(df)
    if not frames:
        raise ResultsError(f"results directory {out} holds no whole cell files "
                           f"({len(files)} damaged; `optbench run` retrains them)")
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
