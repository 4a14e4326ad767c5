"""Atomic writes: a reader sees the old file or the whole new one, never half.

Every file a command writes under ``results/`` (cell tables, metadata, reports,
figures, checkpoints, the data cache) goes through :func:`atomic_write`:

1. write to a temporary file in the target's folder (same file system, so the
   rename is atomic);
2. flush and ``fsync`` it, so a crash after the rename cannot leave an empty
   file behind a valid name;
3. give it the mode a plain ``open()`` would have given (0666 less the
   umask: 0644 under the usual 022). ``mkstemp`` creates files 0600, which
   would hide results from everyone else sharing a results folder;
4. ``os.replace`` it over the target.

On any error (a full disk, Ctrl-C) the temporary file is removed and the
target is untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, IO


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows
    (``/proc/self/status``); elsewhere by setting and restoring it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, write: Callable[[IO], object], binary: bool = False) -> Path:
    """Create or replace ``path`` with what ``write(file)`` writes; returns the path.

    binary: open the temporary file in "wb" (figures, .npz) instead of text
    mode (text is written with newline="" so CSV writers control line ends).
    Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="")) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    """:func:`atomic_write` of a string."""
    return atomic_write(path, lambda f: f.write(text))


def atomic_write_csv(path, df, **to_csv) -> Path:
    """:func:`atomic_write` of a DataFrame as CSV (``index=False`` unless given)."""
    to_csv.setdefault("index", False)
    return atomic_write(path, lambda f: df.to_csv(f, **to_csv))


def writable_folder(out, need: int, what: str = "results folder") -> str | None:
    """Why ``out`` cannot take ``need`` bytes of results, or None if it can:
    a file where the folder should be, a folder that cannot be created or
    written, or a disk without the room. Asked before any work starts, so a
    command does not fail at its end, after the work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        return f"{what} {out} is a file, not a folder"
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A probe of this process's own: two runs starting on one folder at
        # once must not remove each other's (one run failed so: "No such file").
        atomic_write_text(out / f".optbench-write-test.{os.getpid()}", "").unlink(missing_ok=True)
    except OSError as exc:
        return f"cannot write to {what} {out}: {exc.strerror or exc}"
    free = shutil.disk_usage(out).free
    if free < need:
        return f"only {free / 2**20:.1f} MB free under {out}; this needs about {need / 2**20:.0f} MB"
    return None
