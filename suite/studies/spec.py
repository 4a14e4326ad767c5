"""Studies: a TOML file that expands into cells, one frozen RunConfig each.

A study file has four tables (and optionally, first, ``rules = ["my.py"]``:
plug-in rule files, relative to the study file, see kernels.plugins):

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

A learning-rate schedule (``kernels.schedules``) is a table, in [fixed]
(``schedule = {kind = "warmup_cosine", warmup = 100}``) or as a [grid] axis
(``schedule = [{kind = "constant"}, {kind = "cosine"}]``); ``decay =
"weights"`` keeps L2 and weight decay off the biases and PReLU alphas.

Every cell has a stable hash (sha256 of its config as canonical JSON; for a
cell that starts from a checkpoint, the checkpoint's content hash is part of
it), so a rerun recognises the cells it has already completed.

Checking, all before anything trains: :func:`load_study` refuses a file that
does not parse, an unknown table or key, a value of the wrong kind (a TOML
boolean where a boolean belongs), an unknown name, a value out of range (each
rule declares its hyper-parameters' ranges), a name that is not a name, two
cells writing one checkpoint (``checkpoint = "ckpt/{optimizer}-{seed}.npz"``
gives each cell its own), or no cells; :func:`check_study` then checks every
cell against its data set. Each problem is a :class:`StudyError` naming the
file, the cell or key, and what is allowed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from kernels import RULES
from kernels.plugins import PluginError, fingerprint, load_file

from ..training.config import ConfigError, RunConfig, file_sha256

TABLES = ("study", "fixed", "grid", "lr")
#: What a study's name may be: it names its results folder, so no path in it.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

class StudyError(ValueError):
    """A study file is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class Cell:
    config: RunConfig
    key: str  # stable hash of the config
    #: Extra columns for its rows, e.g. (("workload", "digits-mlp"), ("phase", "tune")) in a
    #: protocol; not part of the key.
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        c = self.config
        extra = (f" schedule={c.schedule.label}" if c.schedule is not None else "") + (
            f" decay={c.decay}" if c.decay != "all" else "")
        return (f"{c.optimizer} lr={'default' if c.lr is None else c.lr} bs={c.batch_size} init={c.init} "
                f"seed={c.seed}{extra}")


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    path: Path
    cells: tuple[Cell, ...]
    text: str  # the file as read, stored beside the results
    #: Plug-in rule files (resolved) its cells need; loaded wherever a cell trains.
    rule_files: tuple[Path, ...] = ()


def cell_key(config: RunConfig) -> str:
    """The config as canonical JSON, hashed; a plug-in rule's content hash is
    part of it (kernels.plugins.fingerprint), so an edited rule trains anew."""
    data = config.as_dict()
    rule_hash = fingerprint(config.optimizer)
    if rule_hash is not None:
        data["rule_sha256"] = rule_hash
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
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
    if "protocol" in doc:
        raise StudyError(f"{path}: a protocol (it has a [protocol] table), not a plain study: `optbench run` "
                         "runs it; in Python, suite.protocol.spec.load_protocol reads it")
    rule_files = _load_rules(path, doc.pop("rules", []))
    for table in doc:
        if table not in TABLES:
            raise StudyError(f"{path}: unknown table [{table}]; allowed: {', '.join(TABLES)}")
    meta = doc.get("study", {})
    for key in meta:
        if key not in ("name", "description"):
            raise StudyError(f"{path}: [study] has unknown key {key!r}; allowed: name, description")
    name = meta.get("name", path.stem)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise StudyError(f"{path}: [study] name = {name!r} is not a name: letters, digits, '.', '_' and '-', "
                         "starting with a letter or digit (it names the results folder)")
    if not isinstance(meta.get("description", ""), str):
        raise StudyError(f"{path}: [study] description must be a string")
    for table in ("fixed", "grid", "lr"):
        if not isinstance(doc.get(table, {}), dict):
            raise StudyError(f"{path}: [{table}] must be a table")
    fixed = dict(doc.get("fixed", {}))
    grid = dict(doc.get("grid", {}))
    lrs = dict(doc.get("lr", {}))
    if backend is not None:
        fixed["backend"] = backend
        grid.pop("backend", None)
    names = tuple(n for n in RunConfig.field_names() if n != "init_from_sha256")
    for table, entries in (("fixed", fixed), ("grid", grid)):
        for key in entries:
            if key not in names:
                raise StudyError(f"{path}: [{table}] has unknown key {key!r}; allowed: {', '.join(names)}")
    for key, values in grid.items():
        if not isinstance(values, list):
            raise StudyError(f"{path}: [grid] {key} must be a list of values, got {values!r}")
        if key in fixed:
            raise StudyError(f"{path}: {key!r} is both in [fixed] and in [grid]")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise StudyError(f"{path}: [grid] {key} lists a value twice: {values!r}")
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
    writers: dict[str, int] = {}
    for cell in cells:
        if cell.config.checkpoint:
            writers[cell.config.checkpoint] = writers.get(cell.config.checkpoint, 0) + 1
    for target, count in writers.items():
        if count > 1:
            raise StudyError(
                f"{path}: checkpoint {target!r} would be written by {count} cells, each overwriting the "
                "last; give a per-cell template, e.g. checkpoint = \"ckpt/{optimizer}-{lr}-{seed}.npz\"")
    return Study(name, meta.get("description", ""), path, tuple(cells), text, rule_files)


def _load_rules(path: Path, files) -> tuple[Path, ...]:
    """Load a study's plug-in rule files (relative to the study file) before
    its optimiser names are checked."""
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise StudyError(f"{path}: rules must be a list of rule files, e.g. rules = [\"signum.py\"], got {files!r}")
    resolved = tuple((path.parent / f).resolve() for f in files)
    for file in resolved:
        try:
            load_file(file)
        except PluginError as exc:
            raise StudyError(f"{path}: rules: {exc}") from None
    return resolved


def check_study(study: Study) -> dict[str, tuple[int, int, int]]:
    """Check every cell against its data set before anything trains: the batch
    fits the training set, the loss fits the targets, a checkpoint to start
    from exists and fits the network. Each data set is loaded once. The first
    problem is a StudyError naming the file and the cell (and how many more
    cells have one). Returns each data set's (n_features, n_outputs, n_train)."""
    from ..data import datasets
    from ..training.config import check

    loaded, problems = {}, []
    for cell in study.cells:
        name = cell.config.dataset
        if name not in loaded:
            loaded[name] = datasets.load(name, seed=0, standardize=False)  # sizes and task only
        try:
            check(cell.config, loaded[name])
        except ConfigError as exc:
            problems.append(f"cell {cell.label}: {exc}")
    if problems:
        more = f" (and {len(problems) - 1} more cells with a problem)" if len(problems) > 1 else ""
        raise StudyError(f"{study.path}: {problems[0]}{more}; nothing was trained")
    return {name: (ds.n_features, ds.n_outputs, ds.n_train) for name, ds in loaded.items()}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _label(values: dict) -> str:
    keys = ("optimizer", "lr", "batch_size", "init", "seed")
    given = " ".join(f"{k}={values[k]}" for k in keys if values.get(k) is not None)
    return f"cell {given}" if given else "every cell"


def _config(path: Path, values: dict) -> RunConfig:
    """One cell's RunConfig; an invalid setting is a StudyError naming the file and the cell."""
    values = dict(values)
    if isinstance(values.get("hidden"), list):
        values["hidden"] = tuple(values["hidden"])
    if isinstance(values.get("dropout"), list):
        values["dropout"] = tuple(values["dropout"])
    template = values.get("checkpoint")
    if isinstance(template, str) and "{" in template:
        try:  # a per-cell path: any RunConfig field, e.g. "ckpt/{optimizer}-{lr}-{seed}.npz"
            values["checkpoint"] = template.format(**{**{f.name: f.default for f in fields(RunConfig)}, **values})
        except (KeyError, IndexError, ValueError) as exc:
            raise StudyError(f"{path}: checkpoint template {template!r} is invalid ({exc}); "
                             f"use RunConfig fields, e.g. \"ckpt/{{optimizer}}-{{seed}}.npz\"") from None
    if values.get("init") == "checkpoint" and isinstance(values.get("init_from"), str):
        source = Path(values["init_from"])
        if not source.is_file():
            raise StudyError(f"{path}: {_label(values)}: init_from: checkpoint {source} does not exist")
        values["init_from_sha256"] = file_sha256(source)
    try:
        return RunConfig(**values)
    except ConfigError as exc:
        raise StudyError(f"{path}: {_label(values)}: {exc}") from None
