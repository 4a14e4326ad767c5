"""RunConfig: one run -- a workload, an optimiser spec, and how this run trains it.

A run is

- a :class:`~optbench.suite.workloads.Workload`: the data set, network, loss,
  pre-processing and budget (epochs);
- an :class:`~optbench.suite.training.optimizer_spec.OptimizerSpec`: the rule
  with every hyper-parameter, the lr included, resolved and checked once;
- the run's own settings: a batch size and an initialisation (by default the
  workload's), a seed, the lecture's knobs (dropout and its mode, the batch
  order), a stopping rule (``tol``, ``patience``), the backend, a checkpoint
  to start from or to write, and whether to record per-layer gradient norms.

A study file writes a run as flat settings, one name per field of
:data:`optbench.suite.schema.FIELDS`; :meth:`RunConfig.of` builds the run from
them (each goes to the part the schema names), :meth:`RunConfig.settings`
gives them back, and the cell key is the hash of :meth:`RunConfig.as_dict`
(the settings, less the ones added after results were stored while they have
their defaults, so every earlier cell keeps its key).

A config checks itself when it is made (:class:`ConfigError`, naming the
field, the value and what is allowed). :func:`check` adds what depends on the
data set (batch size against the training set, loss against the targets,
layer sizes against a checkpoint, a schedule's warm-up against the run's
steps); a study runs both for every cell before the first one trains.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from optbench.kernels.backend import BACKENDS
from optbench.kernels.dropout import MODES as DROPOUT_MODES
from optbench.kernels.precision import STATE_PRECISIONS
from optbench.kernels.rule import RuleError
from optbench.kernels.schedules import Schedule, ScheduleError
from optbench.kernels.transforms import decay_mask

from ..data.batches import ORDERS
from ..nn.inits import INITS
from ..nn.mlp import dense_parameters
from ..schema import BY_NAME, FIELDS, ConfigError, part
from ..workloads import Workload, get_workload
from .optimizer_spec import OptimizerSpec

__all__ = ["ConfigError", "RunConfig", "check", "decay_mask_for", "file_sha256", "run_schedule", "steps_per_epoch"]


@dataclass(frozen=True)
class RunConfig:
    """One run (a study's cell): a workload, an optimiser spec and the run's settings."""

    workload: Workload
    optimizer: OptimizerSpec
    batch_size: int | str = 64       # an int, or "full" for batch gradient descent
    init: str = "he"                 # a scheme in suite.nn.inits, or "checkpoint"
    init_from: str | None = None     # checkpoint path for init = "checkpoint"
    seed: int = 0
    dropout: float | tuple = 0.0     # p per hidden layer (one value for all)
    dropout_mode: str = "inverted"
    state: str = "fp32"              # how the optimiser's state is stored (optbench.kernels.precision)
    order: str = "shuffle"
    tol: float = 0.0
    patience: int = 0
    backend: str = "numpy"
    checkpoint: str | None = None    # write the final weights (and optimiser state) here
    layer_norms: bool = False        # also record ||dQ/dW_l|| per layer
    #: sha256 of the init_from file's bytes, set when a study is loaded: the
    #: cell's key then follows the checkpoint's content, not its path.
    init_from_sha256: str | None = None

    def __post_init__(self):
        if isinstance(self.dropout, list):
            object.__setattr__(self, "dropout", tuple(self.dropout))
        _validate(self)

    @classmethod
    def of(cls, workload: Workload | str | None = None, **settings) -> "RunConfig":
        """A run from flat settings (the schema's names, as a study file
        writes them). ``workload``: a named workload (or its name) whose
        data, network, budget, batch size and init the settings may override;
        None: an anonymous workload of the settings (schema defaults)."""
        unknown = sorted(set(settings) - set(BY_NAME))
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(BY_NAME)}")
        if isinstance(workload, str):
            try:
                workload = get_workload(workload)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        base = workload if workload is not None else Workload()
        mine = {k: v for k, v in settings.items() if k in part("workload")}
        if "hidden" in mine and isinstance(mine["hidden"], list):
            mine["hidden"] = tuple(mine["hidden"])
        if workload is None or mine:
            base = replace(base, **mine) if workload is not None else Workload(**{**_defaults("workload"), **mine})
        spec = OptimizerSpec.resolve(
            settings.get("optimizer", BY_NAME["optimizer"].default), lr=settings.get("lr"),
            hyper=settings.get("hyper"), l2=settings.get("l2"), wd=settings.get("wd"),
            schedule=settings.get("schedule"), decay=settings.get("decay", "all"))
        run = {k: v for k, v in settings.items() if k in part("run")}
        run.setdefault("batch_size", base.batch_size if workload is not None else BY_NAME["batch_size"].default)
        run.setdefault("init", base.init if workload is not None else BY_NAME["init"].default)
        return cls(base, spec, **run)

    def settings(self) -> dict:
        """Every field of the schema, by name (a study file's flat settings)."""
        out = {**self.workload.settings(), **self.optimizer.settings()}
        out.update({f.name: getattr(self, f.name) for f in FIELDS if f.part == "run"})
        return {f.name: out[f.name] for f in FIELDS}

    def as_dict(self) -> dict:
        """The settings the cell key hashes (JSON-ready): every field, less
        those added after results were stored while they keep their defaults."""
        d = self.settings()
        d["hidden"] = list(self.workload.hidden)
        d["hyper"] = dict(d["hyper"])
        d["dropout"] = list(self.dropout) if isinstance(self.dropout, tuple) else self.dropout
        for f in FIELDS:
            if not f.keyed_when_default and d[f.name] == f.default:
                del d[f.name]
        if "schedule" in d:
            d["schedule"] = self.optimizer.schedule.as_dict()
        return d

    @property
    def label(self) -> str:
        """'adam lr=0.001 bs=32 init=he seed=0', with a schedule or decay where set."""
        spec = self.optimizer
        extra = (f" schedule={spec.schedule.label}" if spec.schedule is not None else "") + (
            f" decay={spec.decay}" if spec.decay != "all" else "")
        lr = spec.given.get("lr")
        return (f"{spec.name} lr={'default' if lr is None else lr} bs={self.batch_size} init={self.init} "
                f"seed={self.seed}{extra}")


def _defaults(name: str) -> dict:
    return {f.name: f.default for f in FIELDS if f.part == name}


def _fail(name: str, must: str, value) -> ConfigError:
    return ConfigError(f"{name} must be {must}, got {value!r}")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _one_of(name: str, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{name} = {value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")


def _validate(c: RunConfig) -> None:
    """The run's own settings (the workload and the spec check themselves)."""
    if not isinstance(c.workload, Workload):
        raise _fail("workload", "a Workload", c.workload)
    if not isinstance(c.optimizer, OptimizerSpec):
        raise _fail("optimizer", "an OptimizerSpec (RunConfig.of takes a rule's name)", c.optimizer)
    _one_of("init", c.init, (*INITS, "checkpoint"))
    _one_of("dropout_mode", c.dropout_mode, DROPOUT_MODES)
    _one_of("state", c.state, STATE_PRECISIONS)
    _one_of("order", c.order, ORDERS)
    _one_of("backend", c.backend, BACKENDS)
    if not (c.batch_size == "full" or (_is_int(c.batch_size) and c.batch_size >= 1)):
        raise _fail("batch_size", 'a positive integer or "full"', c.batch_size)
    for name in ("seed", "patience"):
        if not (_is_int(getattr(c, name)) and 0 <= getattr(c, name) < 2**63):
            raise _fail(name, "a non-negative integer", getattr(c, name))
    if not (_is_real(c.tol) and math.isfinite(c.tol) and c.tol >= 0):
        raise _fail("tol", "a finite number >= 0", c.tol)
    if not isinstance(c.layer_norms, (bool, np.bool_)):
        raise _fail("layer_norms", "true or false (a boolean, not a string)", c.layer_norms)
    hidden = c.workload.hidden
    ps = list(c.dropout) if isinstance(c.dropout, tuple) else [c.dropout]
    if not all(_is_real(p) and 0.0 <= p < 1.0 for p in ps):
        raise _fail("dropout", "a probability in [0, 1) (or one per hidden layer)", c.dropout)
    if isinstance(c.dropout, tuple) and len(c.dropout) != len(hidden):
        raise ConfigError(f"dropout lists {len(c.dropout)} rates but hidden has {len(hidden)} layers")
    if c.init == "checkpoint" and not (isinstance(c.init_from, str) and c.init_from):
        raise ConfigError("init = \"checkpoint\" needs init_from = the checkpoint file's path")
    for name in ("init_from", "checkpoint"):
        if getattr(c, name) is not None and not isinstance(getattr(c, name), str):
            raise _fail(name, "a path (a string)", getattr(c, name))


def steps_per_epoch(batch: int, n_train: int) -> int:
    """Optimiser steps in one epoch: one per mini-batch, the last one short."""
    return -(-n_train // batch)


def run_schedule(config: RunConfig, batch: int, n_train: int) -> Schedule | None:
    """The config's schedule bound to its run: total steps = epochs x steps
    per epoch (a run that stops early stops on the way); None: constant."""
    schedule = config.optimizer.schedule
    if schedule is None:
        return None
    try:
        return schedule.bind(config.workload.epochs * steps_per_epoch(batch, n_train))
    except ScheduleError as exc:
        raise ConfigError(str(exc)) from None


def decays(config: RunConfig, name: str) -> bool:
    """Whether the config's L2 and decoupled decay apply to the flat buffer's
    view ``name`` (W1, b1, alpha1, ...)."""
    return config.optimizer.decay == "all" or name.startswith("W")


def decay_mask_for(config: RunConfig, layout, xp=np):
    """The decay mask of the config's network (a FlatBuffer on ``xp``), or
    None when decay applies everywhere (no mask: the unmasked kernel)."""
    if config.optimizer.decay == "all":
        return None
    return decay_mask(layout, lambda name: decays(config, name), xp)


def file_sha256(path) -> str:
    """sha256 of a file's bytes (a checkpoint's identity)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: The most optimiser steps one run may take (epochs x steps per epoch) and
#: the most parameters its network may have: a file can ask for any number,
#: and a mistyped one (epochs = 1000000000) must be refused, not run for days
#: or fill the memory. Each is hundreds of times what any built-in study asks.
MAX_STEPS = 10**7
MAX_PARAMETERS = 2**28


def check(config: RunConfig, ds) -> tuple[int, str]:
    """What depends on the data set ``ds``; returns (batch size, loss name).

    The batch fits the training set; the loss fits the targets; the run's
    steps and the network's parameters are within :data:`MAX_STEPS` and
    :data:`MAX_PARAMETERS`; the rule's scalars are finite at the first and
    the last step with the run's hyper-parameters; a checkpoint to start
    from exists, is what the study was loaded with, and has this network's
    layer sizes; the schedule fits the run's total steps.
    """
    if config.batch_size == "full":
        batch = ds.n_train
    else:
        batch = int(config.batch_size)
        if batch > ds.n_train:
            raise ConfigError(
                f"batch_size {batch} is larger than the training set of {config.workload.dataset!r} "
                f"({ds.n_train} objects); use \"full\" for batch gradient descent")
    loss = config.workload.loss_for(ds)
    steps = config.workload.epochs * steps_per_epoch(batch, ds.n_train)
    if steps > MAX_STEPS:
        raise ConfigError(f"{config.workload.epochs:,} epochs of {steps_per_epoch(batch, ds.n_train):,} steps are "
                          f"{steps:,} optimiser steps; the limit is {MAX_STEPS:,} per run")
    widths = config.workload.sizes(ds)
    n_params = dense_parameters(widths)
    if n_params > MAX_PARAMETERS:
        raise ConfigError(f"hidden = {list(config.workload.hidden)} gives a network of {n_params:,} parameters; "
                          f"the limit is {MAX_PARAMETERS:,}")
    rule, hp = config.optimizer.rule, dict(config.optimizer.hyper)
    for t in sorted({1, steps}):  # a division by zero in a plug-in's scalars is refused before training
        try:
            rule.step_scalars(hp, t)
        except RuleError as exc:
            raise ConfigError(str(exc)) from None
    if config.init == "checkpoint":
        _check_checkpoint(config, widths)
    run_schedule(config, batch, ds.n_train)  # a warm-up as long as the run is refused here
    return batch, loss


def _check_checkpoint(config: RunConfig, sizes: list[int]) -> None:
    path = Path(config.init_from)
    if not path.is_file():
        raise ConfigError(f"init_from: checkpoint {path} does not exist")
    if config.init_from_sha256 is not None and file_sha256(path) != config.init_from_sha256:
        raise ConfigError(f"init_from: checkpoint {path} changed since the study was loaded; load it again")
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = [int(s) for s in f["__sizes__"]] if "__sizes__" in f.files else None
    except Exception as exc:
        raise ConfigError(f"init_from: checkpoint {path} is not a readable .npz file ({exc})") from None
    if stored is not None and stored != sizes:
        raise ConfigError(f"init_from: checkpoint {path} has layer sizes {stored}, this network {sizes}")
