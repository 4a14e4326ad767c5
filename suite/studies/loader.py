"""The one loader of study and protocol files.

A study file and a protocol file share one schema and one reader: the
tables below, the flat settings of :data:`optbench.suite.schema.FIELDS`,
plug-in rules, and the checks that need no data set. :func:`read` returns a
:class:`StudyFile`; :func:`optbench.suite.studies.spec.expand` turns a study
into cells, :func:`optbench.suite.protocol.spec.expand` a protocol into its
workloads, optimisers and seeds. Every problem is a :class:`StudyError`
naming the file and the key, before anything trains.

Tables::

    rules = ["my_rule.py"]   plug-in rule files, relative to this file (first, before any table)
    [study]                  name (default: the file's stem) and description
    [fixed]                  settings shared by every run
    [grid]                   settings with a list of values each: a study's runs are
                             their Cartesian product (not in a protocol)
    [lr]                     per optimiser, the learning rates it is trained with:
                             a study crosses them with the grid; a protocol starts
                             its bracketing grid there (at least two)
    [hyper.NAME]             per optimiser NAME, any of its hyper-parameters
                             (gamma = 0.95, l2 = 1e-4, ...; not lr: that is [lr])
    [protocol]               makes the file a protocol (suite.protocol.spec)
    [space]                  a protocol's random-search ranges

``[fixed] hyper = {gamma = 0.95}`` applies to every optimiser of the file
(each must have the keys); ``[hyper.NAME]`` to NAME alone, on top of it.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from optbench.kernels import RULES, RuleError, get_rule
from optbench.kernels.plugins import PluginError, load_file

from ..schema import SETTABLE

TABLES = ("study", "fixed", "grid", "lr", "hyper", "protocol", "space")
#: What a study's name may be: it names its results folder, so no path in it.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: The settings a protocol sets per cell itself.
PROTOCOL_OWN = ("optimizer", "lr", "seed", "backend")


class StudyError(ValueError):
    """A study file is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class StudyFile:
    """A study or protocol file, read and checked (nothing expanded yet)."""

    path: Path
    text: str
    name: str
    description: str
    rule_files: tuple[Path, ...] = ()
    fixed: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    lr: dict = field(default_factory=dict)       # optimiser -> learning rates
    hyper: dict = field(default_factory=dict)    # optimiser -> {hyper-parameter: value}
    protocol: dict | None = None                 # the [protocol] table, for a protocol
    space: dict = field(default_factory=dict)

    @property
    def is_protocol(self) -> bool:
        return self.protocol is not None

    def error(self, message: str) -> StudyError:
        return StudyError(f"{self.path}: {message}")

    def optimizer_settings(self, optimizer: str, base: dict) -> dict:
        """``base`` (flat settings) with [hyper.optimizer] on top: l2 and wd
        as settings of their own, the rest into ``hyper``."""
        own = self.hyper.get(optimizer, {})
        if not own:
            return base
        out = dict(base)
        out["hyper"] = {**base.get("hyper", {}), **{k: v for k, v in own.items() if k not in ("l2", "wd")}}
        out.update({k: v for k, v in own.items() if k in ("l2", "wd")})
        return out


def builtin_studies() -> dict[str, Path]:
    folder = resources.files("optbench.suite") / "studies" / "builtin"
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


def read(name_or_path: str, backend: str | None = None) -> StudyFile:
    """Read and check a study or protocol file; ``backend`` overrides the file's."""
    path = resolve(name_or_path)
    return parse(path.read_text(), path, backend)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse(text: str, path: Path, backend: str | None = None) -> StudyFile:
    """Check a study or protocol file's TOML ``text`` (``path`` names it in
    errors and gives its default name)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{path}: not valid TOML: {exc}") from None
    rule_files = _load_rules(path, doc.pop("rules", []))
    is_protocol = "protocol" in doc
    allowed = tuple(t for t in TABLES if is_protocol or t not in ("protocol", "space"))
    if is_protocol:
        allowed = tuple(t for t in allowed if t != "grid")
    for table in doc:
        if table not in allowed:
            hint = " (a protocol has no [grid]: its runs are workloads x optimisers x seeds)" if table == "grid" \
                else " ([space] belongs to a protocol)" if table == "space" else ""
            raise StudyError(f"{path}: unknown table [{table}]{hint}; allowed: {', '.join(allowed)}")
        if not isinstance(doc[table], dict):
            raise StudyError(f"{path}: [{table}] must be a table")
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
    fixed, grid = dict(doc.get("fixed", {})), dict(doc.get("grid", {}))
    if backend is not None:
        fixed["backend"] = backend
        grid.pop("backend", None)
    for table, entries in (("fixed", fixed), ("grid", grid)):
        for key in entries:
            if key not in SETTABLE:
                raise StudyError(f"{path}: [{table}] has unknown key {key!r}; allowed: {', '.join(SETTABLE)}")
    if is_protocol:
        own = sorted(set(fixed) & set(PROTOCOL_OWN) - ({"backend"} if backend is not None else set()))
        if own:
            raise StudyError(f"{path}: [fixed] {own[0]!r} cannot be set in a protocol (it sets "
                             f"{', '.join(PROTOCOL_OWN)} per run; an lr grid goes in [lr])")
    for key, values in grid.items():
        if not isinstance(values, list):
            raise StudyError(f"{path}: [grid] {key} must be a list of values, got {values!r}")
        if key in fixed:
            raise StudyError(f"{path}: {key!r} is both in [fixed] and in [grid]")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise StudyError(f"{path}: [grid] {key} lists a value twice: {values!r}")
    lrs = dict(doc.get("lr", {}))
    if lrs and ("lr" in grid or "lr" in fixed):
        raise StudyError(f"{path}: give lr either in [lr] per optimiser or in [fixed]/[grid], not both")
    for opt, values in lrs.items():
        rule = _rule(path, "[lr]", opt)
        if not isinstance(values, list) or not values or not all(_is_number(v) for v in values):
            raise StudyError(f"{path}: [lr] {opt} must be a non-empty list of numbers, got {values!r}")
        if len(set(values)) != len(values):
            raise StudyError(f"{path}: [lr] {opt} lists a learning rate twice: {values!r}")
        bad = [v for v in values if v not in rule.interval("lr")]
        if bad:
            raise StudyError(f"{path}: [lr] {opt}: {bad[0]!r} lies outside {opt}'s lr range {rule.interval('lr')}")
    hyper = {}
    for opt, table in dict(doc.get("hyper", {})).items():
        rule = _rule(path, "[hyper]", opt)
        if not isinstance(table, dict):
            raise StudyError(f"{path}: [hyper.{opt}] must be a table of {opt}'s hyper-parameters, got {table!r}")
        if "lr" in table:
            raise StudyError(f"{path}: [hyper.{opt}] lr: an optimiser's learning rates go in [lr] ({opt} = [...])")
        try:
            rule.resolve(table)
        except RuleError as exc:
            raise StudyError(f"{path}: [hyper.{opt}]: {exc}") from None
        hyper[opt] = dict(table)
    return StudyFile(path, text, name, meta.get("description", ""), rule_files, fixed, grid, lrs, hyper,
                     dict(doc["protocol"]) if is_protocol else None, dict(doc.get("space", {})))


def _rule(path: Path, table: str, name):
    try:
        return get_rule(name)
    except RuleError:
        raise StudyError(f"{path}: {table} names unknown optimiser {name!r}; allowed: {', '.join(RULES)}") from None


def _load_rules(path: Path, files) -> tuple[Path, ...]:
    """Load a file's plug-in rule files (relative to the file) before its
    optimiser names are checked."""
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise StudyError(f"{path}: rules must be a list of rule files, e.g. rules = [\"signum.py\"], got {files!r}")
    resolved = tuple((path.parent / f).resolve() for f in files)
    for file in resolved:
        try:
            load_file(file)
        except PluginError as exc:
            raise StudyError(f"{path}: rules: {exc}") from None
    return resolved
