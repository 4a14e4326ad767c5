"""Studies: a TOML file that expands into cells, one frozen RunConfig each.

A study file has four tables:

    [study]          name (defaults to the file's stem) and description
    [fixed]          RunConfig fields shared by every cell
    [grid]           RunConfig fields with a list of values each: the cells
                     are their Cartesian product
    [lr]             optional: a list of learning rates per optimiser, so each
                     optimiser is tuned on its own grid (crossed with the rest)

for example::

    [fixed]
    dataset = "mnist1d"
    hidden = [128, 128]
    epochs = 15
    [grid]
    optimizer = ["sgd", "adam"]
    batch_size = [32, "full"]
    seed = [0, 1, 2]
    [lr]
    sgd = [0.03, 0.1]
    adam = [0.001, 0.003]

Every cell has a stable hash (sha256 of its config as canonical JSON), so a
rerun recognises the cells it has already completed. A file that does not
parse, names an unknown key, gives a value of the wrong kind or an unknown
name, or expands to no cells is a :class:`StudyError` naming the file, the key
and what is allowed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from kernels import RULES

from ..data.batches import ORDERS
from ..data.datasets import DATASETS
from ..nn.activations import ACTIVATIONS
from ..nn.inits import INITS
from ..nn.losses import LOSSES
from ..nn.mlp import DROPOUT_MODES
from ..training.config import RunConfig

TABLES = ("study", "fixed", "grid", "lr")
#: Names a config field may take, checked before anything runs.
CHOICES = {
    "dataset": DATASETS,
    "activation": tuple(ACTIVATIONS),
    "init": (*INITS, "checkpoint"),
    "loss": ("auto", *LOSSES),
    "optimizer": tuple(RULES),
    "dropout_mode": DROPOUT_MODES,
    "order": ORDERS,
    "backend": ("numpy", "numba", "cupy", "auto"),
}


class StudyError(ValueError):
    """A study file is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class Cell:
    config: RunConfig
    key: str  # stable hash of the config

    @property
    def label(self) -> str:
        c = self.config
        return f"{c.optimizer} lr={c.lr} bs={c.batch_size} init={c.init} seed={c.seed}"


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    path: Path
    cells: tuple[Cell, ...]
    text: str  # the file as read, stored beside the results


def cell_key(config: RunConfig) -> str:
    blob = json.dumps(config.as_dict(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def builtin_studies() -> dict[str, Path]:
    folder = resources.files("suite") / "studies" / "builtin"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def resolve(name_or_path: str) -> Path:
    """A built-in study's name, or a path to a study file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise StudyError(f"study file {path} does not exist")
        return path
    builtin = builtin_studies()
    if name_or_path not in builtin:
        raise StudyError(
            f"unknown study {name_or_path!r}; built-in studies: {', '.join(sorted(builtin))} "
            "(or give a path to a .toml file)")
    return builtin[name_or_path]


def load_study(name_or_path: str, backend: str | None = None) -> Study:
    """Read, check and expand a study; ``backend`` overrides the file's."""
    path = resolve(name_or_path)
    return parse_study(path.read_text(), path, backend)


def parse_study(text: str, path: Path, backend: str | None = None) -> Study:
    """Check and expand a study's TOML ``text``; ``path`` names it in errors
    and gives its default name (the file's stem)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{path}: not valid TOML: {exc}") from None
    for table in doc:
        if table not in TABLES:
            raise StudyError(f"{path}: unknown table [{table}]; allowed: {', '.join(TABLES)}")
    meta = doc.get("study", {})
    for key in meta:
        if key not in ("name", "description"):
            raise StudyError(f"{path}: [study] has unknown key {key!r}; allowed: name, description")
    fixed = dict(doc.get("fixed", {}))
    grid = dict(doc.get("grid", {}))
    lrs = dict(doc.get("lr", {}))
    if backend is not None:
        fixed["backend"] = backend
        grid.pop("backend", None)
    names = RunConfig.field_names()
    for table, entries in (("fixed", fixed), ("grid", grid)):
        for key in entries:
            if key not in names:
                raise StudyError(f"{path}: [{table}] has unknown key {key!r}; allowed: {', '.join(names)}")
    for key, values in grid.items():
        if not isinstance(values, list):
            raise StudyError(f"{path}: [grid] {key} must be a list of values, got {values!r}")
        if key in fixed:
            raise StudyError(f"{path}: {key!r} is both in [fixed] and in [grid]")
    for opt, values in lrs.items():
        if opt not in RULES:
            raise StudyError(f"{path}: [lr] names unknown optimiser {opt!r}; allowed: {', '.join(RULES)}")
        if not isinstance(values, list) or not values or not all(_is_number(v) for v in values):
            raise StudyError(f"{path}: [lr] {opt} must be a non-empty list of numbers, got {values!r}")
    if lrs and ("lr" in grid or "lr" in fixed):
        raise StudyError(f"{path}: give lr either in [lr] per optimiser or in [fixed]/[grid], not both")

    cells, seen = [], set()
    axes = list(grid)
    for combo in itertools.product(*(grid[a] for a in axes)):
        base = {**fixed, **dict(zip(axes, combo))}
        opt = base.get("optimizer", RunConfig.optimizer)
        for lr in (lrs.get(opt) or [base.get("lr")]) if lrs else [base.get("lr")]:
            config = _config(path, {**base, "lr": lr})
            cell = Cell(config, cell_key(config))
            if cell.key not in seen:
                seen.add(cell.key)
                cells.append(cell)
    if not cells:
        raise StudyError(f"{path}: the study expands to zero cells (an empty list in [grid]?)")
    return Study(meta.get("name", path.stem), meta.get("description", ""), path, tuple(cells), text)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _config(path: Path, values: dict) -> RunConfig:
    for key, allowed in CHOICES.items():
        if key in values and values[key] not in allowed:
            raise StudyError(f"{path}: {key} = {values[key]!r} is not allowed; allowed: {', '.join(allowed)}")
    kinds = {f.name: f for f in fields(RunConfig)}
    out = {}
    for key, value in values.items():
        if key == "hidden":
            if not isinstance(value, list) or not all(isinstance(h, int) and h > 0 for h in value):
                raise StudyError(f"{path}: hidden must be a list of positive integers, got {value!r}")
            value = tuple(value)
        elif key == "dropout" and isinstance(value, list):
            value = tuple(float(p) for p in value)
        elif key == "batch_size" and not (value == "full" or (isinstance(value, int) and value > 0)):
            raise StudyError(f"{path}: batch_size must be a positive integer or \"full\", got {value!r}")
        elif key in ("lr", "l2", "wd", "tol", "dropout") and value is not None and not _is_number(value):
            raise StudyError(f"{path}: {key} must be a number, got {value!r}")
        elif key in ("epochs", "seed", "patience") and not (isinstance(value, int) and value >= 0):
            raise StudyError(f"{path}: {key} must be a non-negative integer, got {value!r}")
        elif key == "hyper" and not isinstance(value, dict):
            raise StudyError(f"{path}: hyper must be a table of hyper-parameters, got {value!r}")
        out[key] = value
    assert set(out) <= set(kinds)
    config = RunConfig(**out)
    try:  # unknown hyper-parameter names fail now, not in the middle of a sweep
        RULES[config.optimizer].resolve({**config.hyper, **({"lr": config.lr} if config.lr else {})})
    except ValueError as exc:
        raise StudyError(f"{path}: {exc}") from None
    return config
