"""A protocol file: a study of workloads x optimisers, tuned then confirmed.

A study file with a ``[protocol]`` table is a protocol (read and checked by
:mod:`optbench.suite.studies.loader`, the one loader both share)::

    [study]
    name = "default"
    description = "..."

    [protocol]
    workloads = ["mnist1d-mlp", "digits-mlp", ...]   # optbench.suite.workloads
    optimizers = ["sgd", "adam", ...]                # any registered rule (plug-ins too: rules = [...])
    tuning_seeds = [0, 1]
    confirm_seeds = [100, 101, 102, 103, 104]        # fresh: disjoint from the tuning seeds
    decades = 2                                      # each initial lr grid spans this many decades
    per_decade = 2                                   # points per decade
    bracket_rounds = 3                               # at most this many grid extensions
    defaults = true                                  # optional: also each optimiser at its default lr,
                                                     # untuned, on the confirmation seeds
    batch_sizes = [16, 64, 256, "full"]              # optional: each workload at each batch size, as
                                                     # its own workload NAME@b16 ... NAME@full (the
                                                     # report fits best lr ~ batch^k)
    states = ["bf16", "bf16-sr"]                     # optional: the confirmation seeds again with each
                                                     # optimiser's state at these precisions (the report
                                                     # gives the paired change against float32)

    [lr]                                             # optional: a starting grid per optimiser
    sgd = [0.01, 0.03, 0.1, 0.3, 1.0]

    [hyper.adam]                                     # optional: hyper-parameters per optimiser
    gamma = 0.95

    [fixed]                                          # optional: settings for every cell

or, instead of the lr grid, quasi-random search over several
hyper-parameters (:mod:`.search`)::

    [protocol]
    search = "random"
    trials = 16                                      # per workload and optimiser
    [space]
    gamma = [0.5, 0.999]                             # to the optimisers that have it
    wd = [1e-5, 1e-2]
    schedule = ["constant", "cosine"]

Every workload (:mod:`optbench.suite.workloads`), with [fixed] on top, is
crossed with the optimisers, their lr grids (:mod:`.tuning`) and the tuning
seeds; the runner (:mod:`.runner`) brackets the grids, picks each
optimiser's lr on the tuning seeds' metric and confirms it on the
confirmation seeds. Everything is checked before anything trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from optbench.kernels import RuleError, get_rule
from optbench.kernels.precision import STATE_PRECISIONS

from ..studies.loader import StudyError, StudyFile, parse, read
from ..studies.spec import Cell, Study, check_cells, check_count, check_study, make_cell
from ..training.config import ConfigError
from ..workloads import WORKLOADS, Workload
from . import search, tuning

#: Bounds on what a protocol may ask for (each: the least and the most),
#: checked before any grid is built: a mistyped per_decade = 1000000 must
#: be refused, not hang the parser. Grid points are rounded to one
#: significant digit (:mod:`.tuning`), so past 5 a decade they repeat (6 a
#: decade gives 1, 1.5 -> 1 ...); more than 12 decades spans every lr a
#: float32 run could use.
LIMITS = {"decades": (2, 12), "per_decade": (1, 5), "bracket_rounds": (0, 50), "trials": (2, 10_000)}
KEYS = {"workloads": list, "optimizers": list, "tuning_seeds": list, "confirm_seeds": list,
        "decades": (int, float), "per_decade": int, "bracket_rounds": int, "search": str, "trials": int,
        "defaults": bool, "batch_sizes": list, "states": list}
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
    doc: StudyFile = field(compare=False, repr=False)  # the file as read (its [hyper.NAME] tables)
    rule_files: tuple[Path, ...] = ()
    search: str = "grid"  # or "random": quasi-random trials (.search)
    trials: int = 0  # per workload and optimiser, for search = "random"
    space: dict = field(default_factory=dict)  # the [space] table
    #: Also run every optimiser at its default lr, untuned, on the confirmation seeds (phase "default").
    defaults: bool = False
    #: The batch sizes each workload of the file was crossed with (``workloads``
    #: then holds its variants, :meth:`Workload.at_batch`); () for none.
    batch_sizes: tuple = ()
    #: variant name -> (the file's workload, batch size), for the report's fit.
    variants: dict = field(default_factory=dict)
    #: State precisions besides float32 at which the chosen settings are
    #: confirmed again, on the same seeds (phase "precision").
    states: tuple = ()

    def workload(self, name: str) -> Workload:
        return next(w for w in self.workloads if w.name == name)

    def initial_grid(self, workload: Workload, optimizer: str) -> list[float]:
        if optimizer in self.grids:
            return sorted(self.grids[optimizer])
        # The default grid keeps to the rule's lr range (an explicit [lr] was checked against it).
        allowed = get_rule(optimizer).interval("lr")
        return [lr for lr in tuning.log_grid(tuning.centre(optimizer, workload.lr_scale(optimizer)), self.decades,
                                             self.per_decade) if lr in allowed]

    def dimensions(self, workload: Workload, optimizer: str) -> dict:
        """What a random search varies for ``optimizer``: its lr between its
        grid's ends, and the [space] keys it has."""
        grid = self.initial_grid(workload, optimizer)
        return search.dimensions(self.space, (min(grid), max(grid)), get_rule(optimizer))

    def trial_settings(self, workload: Workload, optimizer: str) -> list[dict]:
        """The random search's trials of ``optimizer`` on ``workload`` (the same on every call)."""
        return search.trials(self.dimensions(workload, optimizer), self.trials, workload.name, optimizer)

    def cell(self, workload: Workload, optimizer: str, settings: dict, seed: int, phase: str,
             trial: int | None = None) -> Cell:
        """One run: the workload, [fixed], the optimiser's [hyper.NAME], and
        ``settings`` (``{"lr": ...}``, or a random trial's lr, hyper-parameters,
        wd, schedule)."""
        fields, hyper = search.split(settings)
        base = self.doc.optimizer_settings(optimizer, dict(self.fixed))
        values = {**base, **fields, "optimizer": optimizer, "seed": seed, "backend": self.backend,
                  "hyper": {**base.get("hyper", {}), **hyper}}
        tags = (("workload", workload.name), ("phase", phase)) + (() if trial is None else (("trial", str(trial)),))
        return make_cell(self.doc, values, workload, tags)


def load_protocol(name_or_path: str, backend: str = "numpy") -> Protocol:
    return expand(read(name_or_path, backend))


def parse_protocol(text: str, path: Path, backend: str = "numpy") -> Protocol:
    return expand(parse(text, path, backend))


def expand(doc: StudyFile) -> Protocol:
    """A protocol file's workloads, optimisers, seeds and grids, every
    starting cell checked."""
    path, spec = doc.path, doc.protocol
    if spec is None:
        raise doc.error("a plain study (no [protocol] table): optbench.suite.studies.spec.load_study reads it")
    for key, value in spec.items():
        if key not in KEYS:
            raise StudyError(f"{path}: [protocol] has unknown key {key!r}; allowed: {', '.join(KEYS)}")
        if (isinstance(value, bool) and KEYS[key] is not bool) or not isinstance(value, KEYS[key]):
            raise StudyError(f"{path}: [protocol] {key} has the wrong type: {value!r}")
    for key in ("workloads", "optimizers", "tuning_seeds", "confirm_seeds"):
        if not spec.get(key):
            raise StudyError(f"{path}: [protocol] needs a non-empty list {key}")
    for key in ("workloads", "optimizers"):
        if not all(isinstance(v, str) for v in spec[key]) or len(set(spec[key])) != len(spec[key]):
            raise StudyError(f"{path}: [protocol] {key} must be distinct names, got {spec[key]!r}")
    for w in spec["workloads"]:
        if w not in WORKLOADS:
            raise StudyError(f"{path}: unknown workload {w!r}; allowed: {', '.join(WORKLOADS)}")
    for o in spec["optimizers"]:
        try:
            get_rule(o)  # installed entry points load on the first unknown name
        except RuleError as exc:
            raise StudyError(f"{path}: [protocol] optimizers: {exc}") from None
    for table in ("lr", "hyper"):
        for o in getattr(doc, table):
            if o not in spec["optimizers"]:
                raise StudyError(f"{path}: [{table}] {o} is not one of the protocol's optimizers")
    seeds = {}
    for key in ("tuning_seeds", "confirm_seeds"):
        values = spec[key]
        if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in values) \
                or len(set(values)) != len(values):
            raise StudyError(f"{path}: [protocol] {key} must be distinct integers from 0 to 2^63 - 1, "
                             f"got {values!r}")
        seeds[key] = tuple(values)
    shared = sorted(set(seeds["tuning_seeds"]) & set(seeds["confirm_seeds"]))
    if shared:
        raise StudyError(f"{path}: confirm_seeds must be fresh: {shared} are also tuning seeds (choosing and "
                         "reporting on the same runs is selection bias)")
    decades, per_decade = spec.get("decades", tuning.DECADES), spec.get("per_decade", tuning.PER_DECADE)
    rounds = spec.get("bracket_rounds", tuning.ROUNDS)
    if not decades >= 2:
        raise StudyError(f"{path}: [protocol] decades must be at least 2 (a grid that brackets), got {decades}")
    for key, (lo, hi) in LIMITS.items():
        if key in spec and not lo <= spec[key] <= hi:
            raise StudyError(f"{path}: [protocol] {key} = {spec[key]!r}; allowed: {lo} to {hi}")
    for o, values in doc.lr.items():
        if len(values) < 2 or not all(v > 0 for v in values):
            raise StudyError(f"{path}: [lr] {o} must list at least two learning rates > 0, got {values!r}")
    how, k, space = spec.get("search", "grid"), spec.get("trials", 0), doc.space
    if how not in SEARCHES:
        raise StudyError(f"{path}: [protocol] search = {how!r}; allowed: {', '.join(SEARCHES)}")
    if how == "random" and k < 2:
        raise StudyError(f"{path}: a random search needs trials >= 2 per optimiser, got {k}")
    if how == "grid" and (space or "trials" in spec):
        raise StudyError(f"{path}: [space] and trials belong to search = \"random\"; a grid search tunes the lr")
    problem = search.check_space(space, [get_rule(o) for o in spec["optimizers"]])
    if problem:
        raise StudyError(f"{path}: [space] {problem}")
    batch_sizes = tuple(spec.get("batch_sizes", ()))
    if "batch_sizes" in spec:
        ok = all(b == "full" or (isinstance(b, int) and not isinstance(b, bool) and b >= 1) for b in batch_sizes)
        if not batch_sizes or not ok or len(set(batch_sizes)) != len(batch_sizes):
            raise StudyError(f"{path}: [protocol] batch_sizes must be distinct positive integers or \"full\", "
                             f"got {spec['batch_sizes']!r}")
        if "batch_size" in doc.fixed:
            raise StudyError(f"{path}: [fixed] batch_size and [protocol] batch_sizes both set the batch size; "
                             "keep one")
    states = tuple(spec.get("states", ()))
    if "states" in spec:
        others = [p for p in STATE_PRECISIONS if p != "fp32"]
        if not states or not all(isinstance(p, str) and p in others for p in states) or \
                len(set(states)) != len(states):
            raise StudyError(f"{path}: [protocol] states must be distinct precisions of {', '.join(others)} "
                             f"(float32 is the confirmation itself), got {spec['states']!r}")
        if "state" in doc.fixed:
            raise StudyError(f"{path}: [fixed] state and [protocol] states both set the state precision; keep one")
    points = max([len(v) for v in doc.lr.values()] + [round(decades * per_decade) + 1]) if how == "grid" else k
    check_count(doc, len(spec["workloads"]) * max(1, len(batch_sizes)) * len(spec["optimizers"]) * points *
                (len(spec["tuning_seeds"]) + len(spec["confirm_seeds"]) * (1 + len(states))),
                "workloads x optimizers x " + ("lr grid points" if how == "grid" else "trials") + " x seeds")
    backend = doc.fixed.get("backend", "numpy")
    fixed = {k: v for k, v in doc.fixed.items() if k != "backend"}
    workloads = tuple(WORKLOADS[w] for w in spec["workloads"])
    variants = {}
    if batch_sizes:
        crossed = [(w.name, b, w.at_batch(b)) for w in workloads for b in batch_sizes]
        variants = {v.name: (w, b) for w, b, v in crossed}
        workloads = tuple(v for _, _, v in crossed)
    protocol = Protocol(doc.name, doc.description, path, workloads,
                        tuple(spec["optimizers"]), seeds["tuning_seeds"], seeds["confirm_seeds"], float(decades),
                        per_decade, rounds, dict(doc.lr), fixed, doc.text, backend, doc, doc.rule_files, how, k,
                        dict(space), spec.get("defaults", False), batch_sizes, variants, states)
    if fixed.get("checkpoint") is not None:  # as a study: no two runs may write one checkpoint file
        first = {(w.name, o): protocol.initial_grid(w, o) if how == "grid" else [t["lr"] for t in protocol.trial_settings(w, o)]
                 for w in protocol.workloads for o in protocol.optimizers}
        try:
            check_cells(doc, [protocol.cell(w, o, {"lr": lr}, s, phase) for w in protocol.workloads
                              for o in protocol.optimizers for lr in first[(w.name, o)]
                              for phase, seeds in (("tune", protocol.tuning_seeds), ("confirm", protocol.confirm_seeds))
                              for s in seeds])
        except (ConfigError, ValueError) as exc:
            raise StudyError(str(exc)) from None
    starting = []
    for w in protocol.workloads:  # every starting cell is a valid config
        for o in protocol.optimizers:
            grid = protocol.initial_grid(w, o)
            if len(grid) < 2:
                raise StudyError(f"{path}: workload {w.name}, optimiser {o}: its default lr grid keeps "
                                 f"{len(grid)} point(s) inside {o}'s lr range {get_rule(o).interval('lr')}; "
                                 f"give [lr] {o} = [...]")
            first = [{"lr": grid[0]}] if how == "grid" else protocol.trial_settings(w, o)
            try:
                starting += [protocol.cell(w, o, settings, protocol.tuning_seeds[0], "tune") for settings in first]
            except (ConfigError, ValueError) as exc:
                message = str(exc).removeprefix(f"{path}: ")
                raise StudyError(f"{path}: workload {w.name}, optimiser {o}: {message}") from None
    # ... and fits its data (a batch larger than the training set is refused here, not in a later round)
    check_study(Study(protocol.name, protocol.description, path, tuple(starting), doc.text, doc.rule_files))
    return protocol
