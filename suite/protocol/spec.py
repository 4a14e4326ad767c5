"""A protocol file: a study of workloads x optimisers, tuned then confirmed.

A study file with a ``[protocol]`` table is a protocol::

    [study]
    name = "default"
    description = "..."

    [protocol]
    workloads = ["mnist1d-mlp", "digits-mlp", ...]   # suite.protocol.workloads
    optimizers = ["sgd", "adam", ...]                # any registered rule (plug-ins too: rules = [...])
    tuning_seeds = [0, 1]
    confirm_seeds = [100, 101, 102, 103, 104]        # fresh: disjoint from the tuning seeds
    decades = 2                                      # each initial lr grid spans this many decades
    per_decade = 2                                   # points per decade
    bracket_rounds = 3                               # at most this many grid extensions

    [lr]                                             # optional: a starting grid per optimiser
    sgd = [0.01, 0.03, 0.1, 0.3, 1.0]

    [fixed]                                          # optional: RunConfig fields for every cell

or, instead of the lr grid, quasi-random search over several
hyper-parameters (:mod:`.search`)::

    [protocol]
    search = "random"
    trials = 16                                      # per workload and optimiser
    [space]
    gamma = [0.5, 0.999]                             # to the optimisers that have it
    wd = [1e-5, 1e-2]
    schedule = ["constant", "cosine"]

Every workload's configuration (:mod:`.workloads`), with [fixed] on top, is
crossed with the optimisers, their lr grids (:mod:`.tuning`) and the tuning
seeds; the runner (:mod:`.runner`) brackets the grids, picks each
optimiser's lr on the tuning seeds' validation loss and confirms it on the
confirmation seeds. Everything is checked before anything trains.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from kernels import RULES

from ..studies.spec import NAME, Cell, StudyError, _load_rules, cell_key, resolve
from ..training.config import ConfigError, RunConfig
from . import search, tuning
from .workloads import WORKLOADS, Workload

TABLES = ("study", "protocol", "lr", "fixed", "space")
KEYS = {"workloads": list, "optimizers": list, "tuning_seeds": list, "confirm_seeds": list,
        "decades": (int, float), "per_decade": int, "bracket_rounds": int, "search": str, "trials": int}
SEARCHES = ("grid", "random")


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    path: Path
    workloads: tuple[Workload, ...]
    optimizers: tuple[str, ...]
    tuning_seeds: tuple[int, ...]
    confirm_seeds: tuple[int, ...]
    decades: float
    per_decade: int
    rounds: int
    grids: dict  # optimizer -> explicit starting grid (others: the default log grid)
    fixed: dict
    text: str
    backend: str
    rule_files: tuple[Path, ...] = ()
    search: str = "grid"  # or "random": quasi-random trials (.search)
    trials: int = 0  # per workload and optimiser, for search = "random"
    space: dict = field(default_factory=dict)  # the [space] table

    def workload(self, name: str) -> Workload:
        return next(w for w in self.workloads if w.name == name)

    def initial_grid(self, workload: Workload, optimizer: str) -> list[float]:
        if optimizer in self.grids:
            return sorted(self.grids[optimizer])
        return tuning.log_grid(tuning.centre(optimizer, workload.lr_scale(optimizer)), self.decades,
                               self.per_decade)

    def dimensions(self, workload: Workload, optimizer: str) -> dict:
        """What a random search varies for ``optimizer``: its lr between its
        grid's ends, and the [space] keys it has."""
        grid = self.initial_grid(workload, optimizer)
        return search.dimensions(self.space, (min(grid), max(grid)), set(RULES[optimizer].hyper))

    def trial_settings(self, workload: Workload, optimizer: str) -> list[dict]:
        """The random search's trials of ``optimizer`` on ``workload`` (the same on every call)."""
        return search.trials(self.dimensions(workload, optimizer), self.trials, workload.name, optimizer)

    def cell(self, workload: Workload, optimizer: str, settings: dict, seed: int, phase: str,
             trial: int | None = None) -> Cell:
        """One run: the workload, [fixed], and ``settings`` (``{"lr": ...}``,
        or a random trial's lr, hyper-parameters, wd, schedule)."""
        fields, hyper = search.split(settings)
        config = RunConfig(**{**workload.config, **self.fixed, **fields, "optimizer": optimizer, "seed": seed,
                              "backend": self.backend, "hyper": {**self.fixed.get("hyper", {}), **hyper}})
        tags = (("workload", workload.name), ("phase", phase)) + (() if trial is None else (("trial", str(trial)),))
        return Cell(config, cell_key(config), tags)


def is_protocol(name_or_path: str) -> bool:
    """Whether a study name or file is a protocol (has a [protocol] table)."""
    try:
        path = resolve(name_or_path)
        return "protocol" in tomllib.loads(path.read_text())
    except (StudyError, OSError, tomllib.TOMLDecodeError):
        return False


def load_protocol(name_or_path: str, backend: str = "numpy") -> Protocol:
    path = resolve(name_or_path)
    return parse_protocol(path.read_text(), path, backend)


def parse_protocol(text: str, path: Path, backend: str = "numpy") -> Protocol:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{path}: not valid TOML: {exc}") from None
    rule_files = _load_rules(path, doc.pop("rules", []))
    for table in doc:
        if table not in TABLES:
            raise StudyError(f"{path}: unknown table [{table}] in a protocol; allowed: {', '.join(TABLES)}")
    meta, spec = doc.get("study", {}), doc.get("protocol", {})
    name = meta.get("name", path.stem)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise StudyError(f"{path}: [study] name = {name!r} is not a name (it names the results folder)")
    for key, value in spec.items():
        if key not in KEYS:
            raise StudyError(f"{path}: [protocol] has unknown key {key!r}; allowed: {', '.join(KEYS)}")
        if isinstance(value, bool) or not isinstance(value, KEYS[key]):
            raise StudyError(f"{path}: [protocol] {key} has the wrong type: {value!r}")
    for key in ("workloads", "optimizers", "tuning_seeds", "confirm_seeds"):
        if not spec.get(key):
            raise StudyError(f"{path}: [protocol] needs a non-empty list {key}")
    for w in spec["workloads"]:
        if w not in WORKLOADS:
            raise StudyError(f"{path}: unknown workload {w!r}; allowed: {', '.join(WORKLOADS)}")
    for o in spec["optimizers"]:
        if o not in RULES:
            raise StudyError(f"{path}: unknown optimiser {o!r}; allowed: {', '.join(RULES)}")
    seeds = {}
    for key in ("tuning_seeds", "confirm_seeds"):
        values = spec[key]
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in values) \
                or len(set(values)) != len(values):
            raise StudyError(f"{path}: [protocol] {key} must be distinct integers >= 0, got {values!r}")
        seeds[key] = tuple(values)
    shared = sorted(set(seeds["tuning_seeds"]) & set(seeds["confirm_seeds"]))
    if shared:
        raise StudyError(f"{path}: confirm_seeds must be fresh: {shared} are also tuning seeds (choosing and "
                         "reporting on the same runs is selection bias)")
    decades, per_decade = spec.get("decades", tuning.DECADES), spec.get("per_decade", tuning.PER_DECADE)
    rounds = spec.get("bracket_rounds", tuning.ROUNDS)
    if not decades >= 2:
        raise StudyError(f"{path}: [protocol] decades must be at least 2 (a grid that brackets), got {decades}")
    if per_decade < 1 or rounds < 0:
        raise StudyError(f"{path}: [protocol] per_decade >= 1 and bracket_rounds >= 0, got {per_decade}, {rounds}")
    grids = dict(doc.get("lr", {}))
    for o, values in grids.items():
        if o not in spec["optimizers"]:
            raise StudyError(f"{path}: [lr] {o} is not one of the protocol's optimizers")
        if not isinstance(values, list) or len(values) < 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
            raise StudyError(f"{path}: [lr] {o} must list at least two learning rates > 0, got {values!r}")
    fixed = dict(doc.get("fixed", {}))
    for key in fixed:
        if key in ("optimizer", "lr", "seed", "backend") or key not in RunConfig.field_names():
            raise StudyError(f"{path}: [fixed] {key!r} cannot be set in a protocol")
    how, k, space = spec.get("search", "grid"), spec.get("trials", 0), dict(doc.get("space", {}))
    if how not in SEARCHES:
        raise StudyError(f"{path}: [protocol] search = {how!r}; allowed: {', '.join(SEARCHES)}")
    if how == "random" and k < 2:
        raise StudyError(f"{path}: a random search needs trials >= 2 per optimiser, got {k}")
    if how == "grid" and (space or "trials" in spec):
        raise StudyError(f"{path}: [space] and trials belong to search = \"random\"; a grid search tunes the lr")
    problem = search.check_space(space, {h for o in spec["optimizers"] for h in RULES[o].hyper})
    if problem:
        raise StudyError(f"{path}: [space] {problem}")
    protocol = Protocol(name, meta.get("description", ""), path, tuple(WORKLOADS[w] for w in spec["workloads"]),
                        tuple(spec["optimizers"]), seeds["tuning_seeds"], seeds["confirm_seeds"], float(decades),
                        per_decade, rounds, grids, fixed, text, backend, rule_files, how, k, space)
    for w in protocol.workloads:  # every starting cell is a valid config
        for o in protocol.optimizers:
            first = [{"lr": protocol.initial_grid(w, o)[0]}] if how == "grid" else protocol.trial_settings(w, o)
            try:
                for settings in first:
                    protocol.cell(w, o, settings, protocol.tuning_seeds[0], "tune")
            except (ConfigError, ValueError) as exc:
                raise StudyError(f"{path}: workload {w.name}, optimiser {o}: {exc}") from None
    return protocol
