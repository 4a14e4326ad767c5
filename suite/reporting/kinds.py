"""What a results folder holds, as the command that wrote it declares it.

Every folder a command writes results to has ``optbench.json`` at its root,
``{"kind": ..., "format": 3}``: "study" (``optbench run`` of a study),
"protocol" (of a protocol), "lecture" (``optbench run lecture``) or
"throughput" (``optbench bench``). ``optbench report DIR`` writes the report
of the kind the folder declares; it never guesses from the files it finds.
Folders written before optbench 0.2 have no such file: ``optbench convert
DIR`` adds it (and converts their cells). Format 3 (optbench 0.3) keys a
protocol's cells by their phase too; ``optbench convert`` re-keys a format-2
protocol folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from .files import atomic_write_text

KIND_FILE = "optbench.json"
KINDS = ("study", "protocol", "lecture", "throughput")
FORMAT = 3


class UnknownResults(ValueError):
    """A folder that does not say what results it holds."""


def write_kind(out, kind: str) -> Path:
    """Declare what ``out`` holds (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"unknown results kind {kind!r}; allowed: {', '.join(KINDS)}")
    return atomic_write_text(Path(out) / KIND_FILE, json.dumps({"kind": kind, "format": FORMAT}) + "\n")


def read_format(out) -> int | None:
    """The format ``out`` declares (None: no readable declaration)."""
    try:
        value = json.loads((Path(out) / KIND_FILE).read_text()).get("format")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def read_kind(out) -> str:
    """The kind ``out`` declares; UnknownResults, saying what to do, where it declares none."""
    path = Path(out) / KIND_FILE
    if not Path(out).is_dir():
        raise UnknownResults(f"results directory {out} does not exist (run `optbench run` first)")
    if not path.is_file():
        raise UnknownResults(f"{out} holds no results of optbench 0.2 or later (no {KIND_FILE}; a folder written "
                             f"by an older optbench: `optbench convert {out}`)")
    try:
        kind = json.loads(path.read_text()).get("kind")
    except (json.JSONDecodeError, AttributeError):
        kind = None
    if kind not in KINDS:
        raise UnknownResults(f"{path} is corrupt: its kind must be one of {', '.join(KINDS)}")
    return kind
