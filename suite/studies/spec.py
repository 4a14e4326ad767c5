"""Studies: a study file expanded into cells, one frozen RunConfig each.

A study file (read and checked by :mod:`.loader`, which it shares with the
protocols) has

    [study]          name (defaults to the file's stem) and description
    [fixed]          settings shared by every cell
    [grid]           settings with a list of values each: the cells are
                     their Cartesian product
    [lr]             optional: a list of learning rates per optimiser, so each
                     optimiser is tuned on its own grid (crossed with the rest)
    [hyper.NAME]     optional: hyper-parameters of optimiser NAME alone

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
    [hyper.adam]
    gamma = 0.95

A learning-rate schedule (``kernels.schedules``) is a table, in [fixed]
(``schedule = {kind = "warmup_cosine", warmup = 100}``) or as a [grid] axis
(``schedule = [{kind = "constant"}, {kind = "cosine"}]``); ``decay =
"weights"`` keeps L2 and weight decay off the biases and PReLU alphas.

Every cell has a stable hash (sha256 of its settings as canonical JSON; for a
cell that starts from a checkpoint, the checkpoint's content hash is part of
it), so a rerun recognises the cells it has already completed.

Checking, all before anything trains: the loader refuses a file that does
not parse, an unknown table or key, an unknown optimiser; :func:`expand`
refuses a value of the wrong kind (a TOML boolean where a boolean belongs),
an unknown name, a value out of range (each rule declares its
hyper-parameters' ranges), two cells writing one checkpoint
(``checkpoint = "ckpt/{optimizer}-{seed}.npz"`` gives each cell its own), or
no cells; :func:`check_study` then checks every cell against its data set.
Each problem is a :class:`StudyError` naming the file, the cell or key, and
what is allowed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from optbench.kernels.plugins import fingerprint

from ..data import datasets
from ..schema import BY_NAME, FIELDS
from ..training.config import ConfigError, RunConfig, check, file_sha256
from .loader import NAME, StudyError, StudyFile, builtin_studies, parse, read, resolve  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class Cell:
    config: RunConfig
    key: str  # stable hash of the config
    #: Extra columns for its rows, e.g. (("workload", "digits-mlp"), ("phase", "tune")) in a
    #: protocol; the phase is part of the key (:func:`cell_key`'s role), the rest not.
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        return self.config.label


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    path: Path
    cells: tuple[Cell, ...]
    text: str  # the file as read, stored beside the results
    #: Plug-in rule files (resolved) its cells need; loaded wherever a cell trains.
    rule_files: tuple[Path, ...] = ()


def cell_key(config: RunConfig, role: str | None = None) -> str:
    """The config as canonical JSON, hashed; a plug-in rule's content hash is
    part of it (kernels.plugins.fingerprint), so an edited rule trains anew.

    ``role``: what the run is for where that changes what its result means
    (a protocol's phase, "tune" or "confirm"): the same run tuned on in one
    version of a protocol and reported in another is two cells, so one
    version's confirmation runs are never another's tuning runs
    (:func:`role_key`)."""
    data = config.as_dict()
    rule_hash = fingerprint(config.optimizer.name)
    if rule_hash is not None:
        data["rule_sha256"] = rule_hash
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return role_key(hashlib.sha256(blob.encode()).hexdigest()[:16], role)


def role_key(key: str, role: str | None) -> str:
    """The key of a run with settings key ``key`` in ``role`` (None: ``key``)."""
    return key if role is None else hashlib.sha256(f"{key}/{role}".encode()).hexdigest()[:16]


def make_cell(doc: StudyFile, settings: dict, workload=None, tags=()) -> Cell:
    """One cell of ``doc``: its settings (checkpoint templates filled in, a
    checkpoint to start from hashed); an invalid setting is a StudyError
    naming the file and the cell."""
    values = dict(settings)
    template = values.get("checkpoint")
    if isinstance(template, str) and "{" in template:
        try:  # a per-cell path: any setting, e.g. "ckpt/{optimizer}-{lr}-{seed}.npz"
            values["checkpoint"] = template.format(**{**{f.name: f.default for f in FIELDS}, **values})
        except (KeyError, IndexError, ValueError) as exc:
            raise doc.error(f"checkpoint template {template!r} is invalid ({exc}); "
                            f"use settings' names, e.g. \"ckpt/{{optimizer}}-{{seed}}.npz\"") from None
    if values.get("init") == "checkpoint" and isinstance(values.get("init_from"), str):
        source = Path(values["init_from"])
        if not source.is_file():
            raise doc.error(f"{_label(values)}: init_from: checkpoint {source} does not exist")
        values["init_from_sha256"] = file_sha256(source)
    try:
        config = RunConfig.of(workload, **values)
    except ConfigError as exc:
        raise doc.error(f"{_label(values)}: {exc}") from None
    return Cell(config, cell_key(config, dict(tags).get("phase")), tuple(tags))


#: The most runs one study or protocol may expand to, checked on the count
#: before any cell is built: a grid of a million points would take the
#: memory and days of training by mistake. The built-in studies ask < 1,000.
MAX_CELLS = 100_000


def check_count(doc: StudyFile, count: int, what: str) -> None:
    """A StudyError giving the limit and the ask where ``count`` runs (of
    ``what``: how the count was made) exceed :data:`MAX_CELLS`."""
    if count > MAX_CELLS:
        raise doc.error(f"{what} make {count:,} runs; the limit is {MAX_CELLS:,} per study (nothing was built)")


def check_cells(doc: StudyFile, cells) -> None:
    """What a whole set of cells must satisfy (a study's or a protocol's):
    at least one, and no two writing the same checkpoint."""
    if not cells:
        raise doc.error("the study expands to zero cells (an empty list in [grid]?)")
    writers: dict[str, int] = {}
    for cell in cells:
        if cell.config.checkpoint:
            writers[cell.config.checkpoint] = writers.get(cell.config.checkpoint, 0) + 1
    for target, count in writers.items():
        if count > 1:
            raise doc.error(f"checkpoint {target!r} would be written by {count} cells, each overwriting the "
                            "last; give a per-cell template, e.g. checkpoint = \"ckpt/{optimizer}-{lr}-{seed}.npz\"")


def load_study(name_or_path: str, backend: str | None = None) -> Study:
    """Read, check and expand a study; ``backend`` overrides the file's."""
    return expand(read(name_or_path, backend))


def parse_study(text: str, path: Path, backend: str | None = None) -> Study:
    """Check and expand a study's TOML ``text``; ``path`` names it in errors
    and gives its default name (the file's stem)."""
    return expand(parse(text, path, backend))


def expand(doc: StudyFile) -> Study:
    """A study file's cells: [fixed] x the [grid] product x each optimiser's
    [lr] list, with its [hyper.NAME] on top."""
    if doc.is_protocol:
        raise doc.error("a protocol (it has a [protocol] table), not a plain study: `optbench run` runs it; "
                        "in Python, optbench.suite.protocol.spec.load_protocol reads it")
    cells, seen = [], set()
    axes = list(doc.grid)
    count = 1
    for a in axes:
        count *= len(doc.grid[a])
    check_count(doc, count * max([len(v) for v in doc.lr.values()] or [1]), "[grid] and [lr]")
    for combo in itertools.product(*(doc.grid[a] for a in axes)):
        base = {**doc.fixed, **dict(zip(axes, combo))}
        opt = base.get("optimizer", BY_NAME["optimizer"].default)
        base = doc.optimizer_settings(opt, base)
        for lr in (doc.lr.get(opt) or [base.get("lr")]) if doc.lr else [base.get("lr")]:
            cell = make_cell(doc, {**base, "lr": lr})
            if cell.key not in seen:
                seen.add(cell.key)
                cells.append(cell)
    check_cells(doc, cells)
    return Study(doc.name, doc.description, doc.path, tuple(cells), doc.text, doc.rule_files)


def check_study(study: Study) -> dict[str, tuple[int, int, int]]:
    """Check every cell against its data set before anything trains: the batch
    fits the training set, the loss fits the targets, a checkpoint to start
    from exists and fits the network. Each data set is loaded once. The first
    problem is a StudyError naming the file and the cell (and how many more
    cells have one). Returns each data set's (n_features, n_outputs, n_train)."""
    loaded, problems = {}, []
    for cell in study.cells:
        name = cell.config.workload.dataset
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


def _label(values: dict) -> str:
    keys = ("optimizer", "lr", "batch_size", "init", "seed")
    given = " ".join(f"{k}={values[k]}" for k in keys if values.get(k) is not None)
    return f"cell {given}" if given else "every cell"
