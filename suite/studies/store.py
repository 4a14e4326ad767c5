"""The results store: one Parquet file per cell, one long-format table per study.

Layout of ``results/<study>/``::

    cells/<cell key>.parquet   the rows of one completed cell (written atomically)
    metadata.json              package versions, device, threads, git commit,
                               data hashes, the study file's text and its cells' keys
    report.md, figures/        written by ``optbench report`` from the above

Every cell file has the same columns, in the same order, with the same types
(:data:`SCHEMA`, from :mod:`optbench.suite.schema`), so any tool reads a
whole study as one table::

    pd.read_parquet("results/default/cells")         # pandas (pyarrow)
    pl.read_parquet("results/default/cells/*.parquet")  # Polars
    duckdb.sql("SELECT * FROM 'results/default/cells/*.parquet'")

A cell's file appears only once the cell has finished (temporary file, then
rename), so an interrupted run loses at most the cell in flight. The file's
own metadata proves it whole and names what it holds: ``optbench.rows`` (the
row count) and ``optbench.sha256``, the hash of the cell's key (its file
name) and of every value (:func:`checksum`). A file that cannot be read, or
whose metadata is missing or does not match its rows or its name (cut short,
edited, or copied over another cell's name), is *damaged*: ``optbench
report`` names it and leaves it out, and the next ``optbench run`` retrains
it, saying so.

Folders written by optbench before 0.2 hold ``cells/*.csv`` (CSV with a
checksum footer): every reader refuses them in one line that says how to
convert them, ``optbench convert DIR`` (:mod:`.convert`), which checks each
file's footer, writes its Parquet file and removes the CSV.

Two runs on one folder share the work: each claims a cell before training it
with a lock on the folder's ``.claims`` file (one byte per cell key; the
kernel drops a dead process's locks), skips the cells another run holds and
rechecks for a finished file after claiming.

Columns of the table (one row per run and evaluation point; types in
:data:`optbench.suite.schema.COLUMNS`):

- study, cell: the study's name and the cell's stable hash (of its settings,
  and in a protocol of its phase too); a protocol's tags workload, phase
  ("tune" or "confirm") and trial (null elsewhere);
- the settings, one column per field of :data:`optbench.suite.schema.FIELDS`:
  dataset, hidden (widths joined by "-"), activation, init, init_from, loss,
  optimizer, lr (the learning rate used: the rule's default when the study
  gives none), hyper (JSON of the other hyper-parameters), batch_size (text:
  a number, or "full"), epochs, l2, wd, schedule (the lr schedule's label,
  e.g. "warmup_cosine(warmup=100)"; null for a constant lr), decay ("weights";
  null where decay is on all parameters), dropout (text: one p, or one per
  layer joined by "-"), dropout_mode, standardize, order, seed, backend (the
  one that ran, never "auto"), tol, patience, checkpoint, layer_norms,
  init_from_sha256;
- device (GPU or CPU name), dtype ("float32"), data_hash (the data set's
  content hash), n_train;
- epoch, step, examples_seen, wall_time (training seconds so far, evaluation
  excluded; for a cell trained in a population, the population's training
  time divided by its members: the time per member), examples_per_sec
  (this epoch's, from that time), train_loss (the criterion Q over the training
  set), train_acc, val_loss, val_acc, test_loss, test_acc, grad_norm,
  layer_grad_norms (||dQ/dW_l|| per layer, where layer_norms asked for it),
  diverged, stop_reason (on the last row of a run; "" before).
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..reporting import provenance
from ..reporting.files import atomic_write, atomic_write_text, writable_folder
from ..reporting.kinds import KIND_FILE, read_format, read_kind
from ..schema import COLUMNS, FIELDS

try:  # POSIX byte-range locks; without them two runs are not kept apart
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None

CELLS = "cells"
SUFFIX = ".parquet"
LEGACY_SUFFIX = ".csv"
METADATA = "metadata.json"
#: A protocol's record beside its cells (written by optbench.suite.protocol.runner).
PROTOCOL_FILE = "protocol.json"
#: The config columns, one per field of the run's schema (the report reads
#: results through it and never imports training).
CONFIG_COLUMNS = tuple(f.name for f in FIELDS)
_TYPES = {"string": pa.string(), "double": pa.float64(), "int64": pa.int64(), "bool": pa.bool_(),
          "list<double>": pa.list_(pa.float64())}
#: The Arrow schema every cell file has.
SCHEMA = pa.schema([(name, _TYPES[kind]) for name, kind in COLUMNS.items()])
#: Columns held as text because a value may be a number or a word ("full",
#: "0.5-0.2"); read back as numbers where every value in the table is one.
MIXED = ("batch_size", "dropout")
ROWS_KEY, SHA_KEY = b"optbench.rows", b"optbench.sha256"
#: Columns added after the Parquet cell files (format 3), each a field left
#: out of the cell key at its default: a file written before one lacks it and
#: is read with the column null (not recorded: the field's default).
LATE = ("state",)


class ResultsError(ValueError):
    """A results directory is missing, empty or holds a corrupt file."""


def _column(name: str, values: list) -> pa.Array:
    try:
        return _typed(name, values)
    except (TypeError, ValueError, pa.ArrowInvalid) as exc:
        raise ValueError(f"result column {name!r} ({COLUMNS[name]}) cannot hold a value of this cell: {exc}") from None


def _typed(name: str, values: list) -> pa.Array:
    kind = COLUMNS[name]
    if kind == "string":
        values = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]
    elif kind == "double":
        values = [None if v is None else float(v) for v in values]
    elif kind == "int64":
        values = [None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v) for v in values]
    elif kind == "bool":
        values = [None if v is None or (isinstance(v, float) and np.isnan(v)) else bool(v) for v in values]
    return pa.array(values, type=_TYPES[kind])


def table_of(rows: list[dict]) -> pa.Table:
    """A cell's rows as a table of :data:`SCHEMA` (absent columns null). A
    key that is not a column is a ValueError: the schema lists them all."""
    unknown = sorted({k for r in rows for k in r} - set(COLUMNS))
    if unknown:
        raise ValueError(f"result columns {unknown} are not in the results schema (optbench.suite.schema.COLUMNS)")
    return pa.table([_column(name, [r.get(name) for r in rows]) for name in COLUMNS], schema=SCHEMA)


def checksum(key: str, table: pa.Table) -> str:
    """sha256 of a cell's key and of every value of its table, column by
    column (name, validity, values as float64 / int64 / bool bytes, text as
    UTF-8), so the hash does not depend on how Parquet laid the file out."""
    h = hashlib.sha256(key.encode())
    for name, column in zip(table.column_names, table.columns):
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        h.update(f"\x00{name}\x00{len(array)}\x00".encode())
        h.update(np.packbits(array.is_valid().to_numpy(zero_copy_only=False)).tobytes())
        if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
            h.update(json.dumps(array.to_pylist()).encode())
        elif pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            h.update("\x00".join(v or "" for v in array.to_pylist()).encode())
        elif pa.types.is_boolean(array.type):
            h.update(array.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8).tobytes())
        elif pa.types.is_integer(array.type):
            h.update(array.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64).tobytes())
        elif pa.types.is_floating(array.type):
            h.update(array.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64).tobytes())
        elif not pa.types.is_null(array.type):
            raise ValueError(f"column {name!r} has type {array.type}, which the checksum does not cover")
    return h.hexdigest()


def _parquet_bytes(key: str, table: pa.Table) -> bytes:
    meta = {ROWS_KEY: str(table.num_rows).encode(), SHA_KEY: checksum(key, table).encode()}
    sink = io.BytesIO()
    # A cell is small (tens to hundreds of rows of 50 columns), so the file's
    # fixed costs dominate: no column statistics, no dictionary pages and no
    # copy of the Arrow schema (:data:`SCHEMA` restores the types on
    # reading). Measured on a default-protocol cell of 121 rows: 19.6 KB with
    # pyarrow's defaults and zstd, 13.3 KB so; the rest is the metrics'
    # float64 values, which do not compress.
    with pq.ParquetWriter(sink, table.schema, compression="zstd", write_statistics=False, use_dictionary=False,
                          store_schema=False) as writer:
        writer.add_key_value_metadata({k.decode(): v.decode() for k, v in meta.items()})
        writer.write_table(table)
    return sink.getvalue()


def write_cell(out: Path, key: str, rows: list[dict]) -> Path:
    """Write one finished cell's rows, with the metadata that proves the file whole."""
    data = _parquet_bytes(key, table_of(rows))
    return atomic_write(Path(out) / CELLS / f"{key}{SUFFIX}", lambda f: f.write(data), binary=True)


def read_cell(path: Path) -> tuple[pa.Table | None, str]:
    """(the cell's table, or None if the file is damaged; why not)."""
    path = Path(path)
    try:
        file = pq.ParquetFile(path)
        meta = file.metadata.metadata or {}
        table = file.read()
    except Exception as exc:  # pyarrow raises several kinds for a cut-short or foreign file
        return None, f"unreadable ({' '.join(str(exc).split())[:120]})"
    if ROWS_KEY not in meta or SHA_KEY not in meta:
        return None, "no row count and checksum in its metadata (not written by optbench)"
    if int(meta[ROWS_KEY]) != table.num_rows:
        return None, f"{table.num_rows} rows where its metadata says {int(meta[ROWS_KEY])} (cut short or edited)"
    late = [name for name in SCHEMA.names if name not in table.column_names]
    own = pa.schema([f for f in SCHEMA if f.name in table.column_names])
    if table.column_names != own.names or not set(late) <= set(LATE):
        return None, "its columns are not the results schema's (edited, or another program's file)"
    try:
        table = table.replace_schema_metadata(None).cast(own)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None, "its column types are not the results schema's (edited, or another program's file)"
    if checksum(path.name[: -len(SUFFIX)], table) != meta[SHA_KEY].decode():
        return None, ("its checksum does not match its rows and its name (edited, or copied over another "
                      "cell's name)")
    for name in late:  # written before the column existed: not recorded, so the field's default
        field = SCHEMA.field(name)
        table = table.add_column(SCHEMA.get_field_index(name), field, pa.nulls(table.num_rows, field.type))
    return table, ""


def cell_files(out: Path) -> dict[str, Path]:
    folder = Path(out) / CELLS
    return {p.name[: -len(SUFFIX)]: p for p in sorted(folder.glob(f"*{SUFFIX}"))} if folder.is_dir() else {}


def legacy_files(out: Path) -> list[Path]:
    """Cell files in the CSV format of optbench before 0.2."""
    folder = Path(out) / CELLS
    return sorted(folder.glob(f"*{LEGACY_SUFFIX}")) if folder.is_dir() else []


def refuse_legacy(out: Path) -> None:
    """A ResultsError, saying how to convert them, where ``out`` holds CSV
    cells, or a protocol's cells keyed without their phase (format 2)."""
    old = legacy_files(out)
    if old:
        raise ResultsError(f"{out} holds {len(old)} cell file(s) in the CSV format of optbench before 0.2 "
                           f"({old[0].name}, ...); convert them with `optbench convert {out}`")
    if (Path(out) / KIND_FILE).is_file() and (read_format(out) or 0) < 3 and read_kind(out) == "protocol":
        raise ResultsError(f"{out} holds a protocol's results of optbench 0.2, whose cells are keyed without "
                           f"their phase; re-key them with `optbench convert {out}`")


def completed_cells(out: Path) -> set[str]:
    """The keys of the cells whose files are whole."""
    return {k for k, p in cell_files(out).items() if read_cell(p)[0] is not None}


def is_complete(out: Path, key: str) -> bool:
    """Whether cell ``key``'s file is whole (reads that file alone)."""
    path = Path(out) / CELLS / f"{key}{SUFFIX}"
    return path.is_file() and read_cell(path)[0] is not None


def damaged_cells(out: Path) -> dict[str, str]:
    """{path relative to ``out``: why} for every cell file that is not whole."""
    out = Path(out)
    damaged = {}
    for key, path in cell_files(out).items():
        table, why = read_cell(path)
        if table is None:
            damaged[str(path.relative_to(out))] = why
    return damaged


def preflight(out: Path, n_cells: int = 0) -> None:
    """Refuse, before any training, a results folder that cannot take the
    results (:func:`optbench.suite.reporting.files.writable_folder`; about
    16 KB a cell, 16 MB at least)."""
    problem = writable_folder(out, max(16 << 20, n_cells * (16 << 10)))
    if problem:
        raise ResultsError(problem)
    (Path(out) / CELLS).mkdir(exist_ok=True)


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


def load_results(out: Path) -> pd.DataFrame:
    """The long-format table of every whole cell file in a results directory
    (damaged ones are left out: :func:`damaged_cells` lists them); every
    column the schema's, with its type. A whole file without rows is a
    ResultsError naming it; so is a folder of CSV cells (:func:`refuse_legacy`).

    The :data:`MIXED` text columns come back as numbers where every value is
    one (a study of batch sizes 32 and 256 has an integer batch_size column,
    one with "full" too a text column)."""
    out = Path(out)
    if not out.is_dir():
        raise ResultsError(f"results directory {out} does not exist (run `optbench run` first)")
    refuse_legacy(out)
    files = cell_files(out)
    if not files:
        raise ResultsError(f"results directory {out} holds no results ({out / CELLS}/*{SUFFIX} is empty)")
    tables = []
    for path in files.values():
        table, _ = read_cell(path)
        if table is None:
            continue
        if table.num_rows == 0:
            raise ResultsError(f"{path} is corrupt: no rows")
        tables.append(table)
    if not tables:
        raise ResultsError(f"results directory {out} holds no whole cell files "
                           f"({len(files)} damaged; `optbench run` retrains them)")
    df = pa.concat_tables(tables).to_pandas()
    for col in MIXED:
        values = pd.to_numeric(df[col], errors="coerce")
        if values.notna().all():
            df[col] = values.astype(int) if col == "batch_size" else values.astype(float)
    df["stop_reason"] = df["stop_reason"].fillna("")
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
