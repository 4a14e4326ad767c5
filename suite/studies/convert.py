"""``optbench convert``: results folders written by optbench before 0.2, brought up to date.

Before 0.2 a cell was a CSV file with a checksum footer, and a folder said
nothing about what it held (``optbench report`` guessed from the files it
found). :func:`convert_tree` walks a tree of results folders and, for each:

- names its kind once, from the files of the old layout (a ``protocol.json``:
  a protocol; a ``timing.json``: the lecture; a ``throughput.csv``: a bench
  run; ``cells/``: a study) and declares it (:mod:`optbench.suite.reporting.kinds`);
- converts each whole CSV cell (its footer's row count and checksum match)
  to its Parquet file (:func:`optbench.suite.studies.store.write_cell`) and
  removes the CSV; moves a damaged one to ``damaged/<key>.csv`` beside
  ``cells/`` (kept for a person to look at, out of the way of any reader
  of ``cells/``; ``optbench run`` retrains the cell).

Converting a folder twice converts nothing the second time.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..reporting.files import atomic_write_text
from ..reporting.kinds import KIND_FILE, read_format, read_kind, write_kind
from ..schema import BY_NAME, COLUMNS, TAG_COLUMNS
from .spec import role_key
from .store import CELLS, LEGACY_SUFFIX, METADATA, PROTOCOL_FILE, cell_files, legacy_files, read_cell, write_cell

#: What an empty CSV field of a text column held: None for a tag or a
#: setting whose default is None (no checkpoint, no schedule), else the
#: empty string (a linear model's hidden = "", a run that did not stop early).
_EMPTY = {name: (None if name in TAG_COLUMNS or (name in BY_NAME and BY_NAME[name].default is None) else "")
          for name, kind in COLUMNS.items() if kind == "string"}

#: Where a damaged CSV cell is kept, beside ``cells/``.
DAMAGED = "damaged"

#: The old layout's marker files, in the order they decide a folder's kind.
LEGACY_MARKERS = (("protocol.json", "protocol"), ("timing.json", "lecture"), ("throughput.csv", "throughput"),
                  (CELLS, "study"))


def legacy_kind(folder: Path) -> str | None:
    """What a folder of the old layout holds, from its files; None if it is not one."""
    for name, kind in LEGACY_MARKERS:
        if (folder / name).exists():
            return kind
    return None


def convert_tree(root: Path) -> list[tuple[Path, str, int, dict[str, str]]]:
    """Convert every results folder under ``root`` (itself included); per
    folder (path, kind, cells converted, {damaged file: why})."""
    done = []
    for folder in sorted({root, *(p.parent for name, _ in LEGACY_MARKERS for p in root.rglob(name))}):
        if (folder / KIND_FILE).is_file() and not legacy_files(folder):
            if read_kind(folder) == "protocol" and (read_format(folder) or 0) < 3:
                done.append((folder, "protocol", rekey(folder), {}))
                write_kind(folder, "protocol")
            continue
        kind = legacy_kind(folder)
        if kind is None:
            continue
        n, damaged = convert(folder) if kind in ("study", "protocol") else (0, {})
        if kind == "protocol":
            rekey(folder)
        write_kind(folder, kind)
        done.append((folder, kind, n, damaged))
    return done


def rekey(out: Path) -> int:
    """Key a protocol folder's cells by their phase too (format 2 -> 3:
    :func:`optbench.suite.studies.spec.role_key`): each whole cell file is
    written under its new key, with its ``cell`` column to match, and the
    old file removed; ``protocol.json`` and ``metadata.json`` list the new
    keys. A damaged file is left as it is (no longer any cell's: kept, not
    scored). Returns the cells re-keyed."""
    renamed = {}
    for key, path in cell_files(out).items():
        table, _ = read_cell(path)
        if table is None:
            continue
        phases = set(table.column("phase").to_pylist())
        if len(phases) != 1 or None in phases:
            continue  # not a protocol's cell
        new = role_key(key, phases.pop())
        rows = table.to_pylist()
        for row in rows:
            row["cell"] = new
        write_cell(out, new, rows)
        path.unlink()
        renamed[key] = new
    for name in (PROTOCOL_FILE, METADATA):
        path = out / name
        if path.is_file():
            record = json.loads(path.read_text())
            if isinstance(record.get("cells"), list):
                record["cells"] = sorted(renamed.get(k, k) for k in record["cells"])
                atomic_write_text(path, json.dumps(record, indent=1 if name == PROTOCOL_FILE else 2)
                                  + ("\n" if name == PROTOCOL_FILE else ""))
    return len(renamed)


def convert(out: Path) -> tuple[int, dict[str, str]]:
    """Convert a folder's CSV cells (optbench before 0.2) to Parquet: each
    whole one (its footer's row count and checksum match) is written as
    ``<key>.parquet`` and its CSV removed; a damaged one is moved to
    ``damaged/<key>.csv`` (kept, never read again: ``optbench run`` retrains
    the cell). Returns (cells converted, {damaged file, as moved: why})."""
    converted, damaged = 0, {}
    for path in legacy_files(out):
        body, why = _legacy_body(path)
        if body is None:
            kept = out / DAMAGED / path.name
            kept.parent.mkdir(exist_ok=True)
            path.rename(kept)
            damaged[str(kept)] = why
            continue
        df = pd.read_csv(io.StringIO(body), keep_default_na=False, na_values=["", "nan", "NaN"],
                         dtype={c: str for c, kind in COLUMNS.items() if kind == "string"})
        layers = sorted((c for c in df.columns if c.startswith("grad_norm_W") and c[11:].isdigit()),
                        key=lambda c: int(c[11:]))
        rows = []
        for record in df.to_dict("records"):
            row = {k: (_EMPTY.get(k) if isinstance(v, float) and np.isnan(v) and COLUMNS.get(k) != "double" else v)
                   for k, v in record.items() if k not in layers}
            if layers:
                row["layer_grad_norms"] = [float(record[c]) for c in layers]
            rows.append(row)
        write_cell(out, path.name[: -len(LEGACY_SUFFIX)], rows)
        path.unlink()
        converted += 1
    return converted, damaged


_LEGACY_FOOTER = re.compile(r"^# optbench cell: rows=(\d+) sha256=([0-9a-f]{64})\n?$")


def _legacy_body(path: Path) -> tuple[str | None, str]:
    """(the CSV text above an old cell file's footer, or None if the file is damaged; why not)."""
    try:
        text = Path(path).read_bytes().decode()
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"unreadable ({exc})"
    body, _, last = text.rstrip("\n").rpartition("\n")
    m = _LEGACY_FOOTER.match(last)
    if not m:
        return None, "no completion footer (cut short)"
    body += "\n"
    if hashlib.sha256(body.encode()).hexdigest() != m.group(2) or body.count("\n") - 1 != int(m.group(1)):
        return None, "its checksum does not match its rows (cut short or edited)"
    return body, ""
