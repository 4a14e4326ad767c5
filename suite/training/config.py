"""RunConfig: everything that defines one training run (a study's cell).

A config checks itself when it is made (:class:`ConfigError`, naming the
field, the value and what is allowed): names, strict types (a boolean is a
bool, not the string "false"), ranges, and the optimiser's hyper-parameters
against the ranges its rule declares. :func:`check` adds what depends on the
data set (batch size against the training set, loss against the targets,
layer sizes against a checkpoint); a study runs both for every cell before
the first one trains.

The cell key is the hash of :meth:`RunConfig.as_dict`. A setting added
after results were stored is left out of it while it has its default
(``layer_norms``, ``schedule``, ``decay``), so every earlier cell keeps its key.

``schedule``: the learning-rate schedule (:mod:`kernels.schedules`), given as
a table such as ``{"kind": "warmup_cosine", "warmup": 100}`` and held as a
:class:`~kernels.schedules.Schedule` (None: constant lr); a run binds it to
its total steps, epochs x steps per epoch (:func:`run_schedule`).
``decay``: where L2 and decoupled decay apply: "all" parameters, or only the
"weights" (the weight matrices W1, W2, ...; not the biases b* and PReLU
alphas: :func:`decay_mask_for`).

``hidden = ()`` is a linear model (one layer, inputs to outputs). The
``quadratic`` data set must be trained on raw inputs: ``standardize = true``
is refused for it (``suite.data.datasets.RAW_ONLY``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from kernels import RuleError, get_rule
from kernels.backend import BACKENDS
from kernels.dropout import MODES as DROPOUT_MODES
from kernels.schedules import Schedule, ScheduleError, as_schedule
from kernels.transforms import decay_mask

from ..data.batches import ORDERS
from ..data.datasets import DATASETS, RAW_ONLY
from ..nn.activations import ACTIVATIONS
from ..nn.inits import INITS
from ..nn.losses import LOSSES, get_loss


class ConfigError(ValueError):
    """A run's settings are invalid; the message names the field and the value."""


#: Where L2 and decoupled decay apply: every parameter, or the weight matrices only.
DECAY = ("all", "weights")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one run (a study's cell)."""

    dataset: str = "digits"
    hidden: tuple[int, ...] = (128, 128)
    activation: str = "relu"
    init: str = "he"                 # a scheme in suite.inits, or "checkpoint"
    init_from: str | None = None     # checkpoint path for init = "checkpoint"
    loss: str = "auto"               # auto: cross_entropy for classes, squared for regression
    optimizer: str = "adam"
    lr: float | None = None          # None: the rule's default
    hyper: dict = field(default_factory=dict)  # other hyper-parameters (gamma, alpha, eps)
    batch_size: int | str = 64       # an int, or "full" for batch gradient descent
    epochs: int = 20
    l2: float = 0.0                  # coupled L2 (added to the gradient)
    wd: float = 0.0                  # decoupled weight decay
    schedule: Schedule | dict | None = None  # lr schedule, e.g. {"kind": "cosine"}; None: constant
    decay: str = "all"               # where l2 and wd apply: "all", or "weights" (W*, not biases/alphas)
    dropout: float | tuple = 0.0     # p per hidden layer (one value for all)
    dropout_mode: str = "inverted"
    standardize: bool = True
    order: str = "shuffle"
    seed: int = 0
    backend: str = "numpy"
    tol: float = 0.0
    patience: int = 0
    checkpoint: str | None = None    # write the final weights (and optimiser state) here
    layer_norms: bool = False        # also record ||dQ/dW_l|| per layer (grad_norm_W1, ...)
    #: sha256 of the init_from file's bytes, set when a study is loaded: the
    #: cell's key then follows the checkpoint's content, not its path.
    init_from_sha256: str | None = None

    def __post_init__(self):
        try:  # held as a Schedule (unbound: a run binds it), None when constant
            schedule = as_schedule(self.schedule)
        except ScheduleError as exc:
            raise ConfigError(str(exc)) from None
        object.__setattr__(self, "schedule", None if schedule is None else replace(schedule, total=None))
        _validate(self)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["dropout"] = list(self.dropout) if isinstance(self.dropout, tuple) else self.dropout
        # An opt-in diagnostic that does not change training: left out when off,
        # so every config that predates it keeps its cell key (and its results).
        if not self.layer_norms:
            del d["layer_norms"]
        if self.init_from_sha256 is None:
            del d["init_from_sha256"]
        # So are a constant lr and decay everywhere, the settings before these existed.
        if self.schedule is None:
            del d["schedule"]
        else:
            d["schedule"] = self.schedule.as_dict()
        if self.decay == "all":
            del d["decay"]
        return d

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


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
    """Everything about a config that does not need its data set."""
    _one_of("dataset", c.dataset, DATASETS)
    _one_of("activation", c.activation, tuple(ACTIVATIONS))
    _one_of("init", c.init, (*INITS, "checkpoint"))
    _one_of("loss", c.loss, ("auto", *LOSSES))
    _one_of("dropout_mode", c.dropout_mode, DROPOUT_MODES)
    _one_of("order", c.order, ORDERS)
    _one_of("backend", c.backend, BACKENDS)
    _one_of("decay", c.decay, DECAY)
    if not isinstance(c.hidden, (tuple, list)) or not all(_is_int(h) and h >= 1 for h in c.hidden):
        raise _fail("hidden", "a list of positive integers (layer widths)", c.hidden)
    if not (c.batch_size == "full" or (_is_int(c.batch_size) and c.batch_size >= 1)):
        raise _fail("batch_size", 'a positive integer or "full"', c.batch_size)
    for name in ("epochs",):
        if not (_is_int(getattr(c, name)) and getattr(c, name) >= 1):
            raise _fail(name, "a positive integer", getattr(c, name))
    for name in ("seed", "patience"):
        if not (_is_int(getattr(c, name)) and 0 <= getattr(c, name) < 2**63):
            raise _fail(name, "a non-negative integer", getattr(c, name))
    if not (_is_real(c.tol) and math.isfinite(c.tol) and c.tol >= 0):
        raise _fail("tol", "a finite number >= 0", c.tol)
    for name in ("standardize", "layer_norms"):
        if not isinstance(getattr(c, name), (bool, np.bool_)):
            raise _fail(name, "true or false (a boolean, not a string)", getattr(c, name))
    if c.standardize and c.dataset in RAW_ONLY:
        raise ConfigError(f"standardize = true is refused for dataset {c.dataset!r}: z-scoring its inputs would "
                          "change the Hessian whose known spectrum is the point of the data set; "
                          "set standardize = false")
    ps = list(c.dropout) if isinstance(c.dropout, (tuple, list)) else [c.dropout]
    if not all(_is_real(p) and 0.0 <= p < 1.0 for p in ps):
        raise _fail("dropout", "a probability in [0, 1) (or one per hidden layer)", c.dropout)
    if isinstance(c.dropout, (tuple, list)) and len(c.dropout) != len(c.hidden):
        raise ConfigError(f"dropout lists {len(c.dropout)} rates but hidden has {len(c.hidden)} layers")
    if c.init == "checkpoint" and not (isinstance(c.init_from, str) and c.init_from):
        raise ConfigError("init = \"checkpoint\" needs init_from = the checkpoint file's path")
    for name in ("init_from", "checkpoint"):
        if getattr(c, name) is not None and not isinstance(getattr(c, name), str):
            raise _fail(name, "a path (a string)", getattr(c, name))
    if not isinstance(c.hyper, dict) or not all(isinstance(k, str) for k in c.hyper):
        raise _fail("hyper", "a table of hyper-parameters", c.hyper)
    if "lr" in c.hyper or "l2" in c.hyper or "wd" in c.hyper:
        raise ConfigError("give lr, l2 and wd as their own settings, not inside hyper")
    try:
        rule = get_rule(c.optimizer)
        rule.resolve({**c.hyper, "l2": c.l2, "wd": c.wd, **({"lr": c.lr} if c.lr is not None else {})})
    except RuleError as exc:
        raise ConfigError(str(exc)) from None


def steps_per_epoch(batch: int, n_train: int) -> int:
    """Optimiser steps in one epoch: one per mini-batch, the last one short."""
    return -(-n_train // batch)


def run_schedule(config: RunConfig, batch: int, n_train: int) -> Schedule | None:
    """The config's schedule bound to its run: total steps = epochs x steps
    per epoch (a run that stops early stops on the way); None: constant."""
    if config.schedule is None:
        return None
    try:
        return config.schedule.bind(config.epochs * steps_per_epoch(batch, n_train))
    except ScheduleError as exc:
        raise ConfigError(str(exc)) from None


def decays(config: RunConfig, name: str) -> bool:
    """Whether the config's L2 and decoupled decay apply to the flat buffer's
    view ``name`` (W1, b1, alpha1, ...)."""
    return config.decay == "all" or name.startswith("W")


def decay_mask_for(config: RunConfig, layout, xp=np):
    """The decay mask of the config's network (a FlatBuffer on ``xp``), or
    None when decay applies everywhere (no mask: the unmasked kernel)."""
    if config.decay == "all":
        return None
    return decay_mask(layout, lambda name: decays(config, name), xp)


def file_sha256(path) -> str:
    """sha256 of a file's bytes (a checkpoint's identity)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check(config: RunConfig, ds) -> tuple[int, str]:
    """What depends on the data set ``ds``; returns (batch size, loss name).

    The batch fits the training set; the loss fits the targets; a checkpoint
    to start from exists, is what the study was loaded with, and has this
    network's layer sizes; the schedule fits the run's total steps.
    """
    if config.batch_size == "full":
        batch = ds.n_train
    else:
        batch = int(config.batch_size)
        if batch > ds.n_train:
            raise ConfigError(
                f"batch_size {batch} is larger than the training set of {config.dataset!r} "
                f"({ds.n_train} objects); use \"full\" for batch gradient descent")
    loss = config.loss
    if loss == "auto":
        loss = "cross_entropy" if ds.task == "classification" else "squared"
    if get_loss(loss).needs_labels and ds.task != "classification":
        raise ConfigError(f"loss {loss!r} needs class labels but {config.dataset!r} is a regression set")
    if config.init == "checkpoint":
        sizes = [ds.n_features, *config.hidden, ds.n_outputs]
        _check_checkpoint(config, sizes)
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
