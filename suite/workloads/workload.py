"""A workload: the problem a run trains on, apart from the optimiser (as
AlgoPerf's ``Workload``).

A :class:`Workload` owns

- its **data set** (``dataset``, with ``standardize``: z-scores from the
  training split) and :meth:`load_data`;
- its **model**: layer widths ``hidden`` and ``activation``
  (:meth:`build_model`, the model factory; :meth:`sizes`);
- its **loss** (``loss``; "auto": cross-entropy for class labels, squared
  error for continuous targets: :meth:`loss_for`);
- its **budget**: ``epochs`` of ``batch_size`` objects per step
  (:meth:`steps`), and the ``init`` it is trained from; a run may pick
  another batch size or initialisation (the lecture's knobs), and keeps the
  workload's epochs;
- its **metric** (lower is better: the final validation loss, or the
  validation error of a classifier) and **target** (a value of the metric to
  reach, for time to target), with notes on how both were chosen;
- ``lr_scales``: the factor by which this workload wants an optimiser's
  usual learning rate (the rule's ``lr_centre``) scaled, so a
  protocol's grid for it is centred near its optimum (measured; see each
  workload's ``budget_note``);
- ``reference_note``: where an optimiser's place on it looked suspect, what
  a check against a peer library on the same net, split and budget found.

The named workloads (:data:`optbench.suite.workloads.WORKLOADS`) are one
module each in this package. A study's cells have anonymous workloads: the
data set, network and budget its file sets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

from ..data.datasets import DATASETS, RAW_ONLY, REGRESSION
from ..nn.activations import ACTIVATIONS
from ..nn.inits import INITS
from ..nn.losses import LOSSES, get_loss
from ..schema import ConfigError

#: The metrics a workload may be scored on (lower is better), with their labels.
#: ``val_error`` is 1 - validation accuracy (AlgoPerf's classification
#: targets are error rates): what a classifier is for, and what tuning on the
#: cross-entropy would not maximise (on mnist1d the loss-optimal lr stops at
#: ~51% accuracy, the error-optimal one reaches ~60%; measured).
METRICS = {"val_loss": "validation loss", "val_error": "validation error"}
#: A target is this factor times the best optimiser's mean final metric.
TARGET_FACTOR = 1.05
TARGET_RULE = (f"target = {TARGET_FACTOR} x the best optimiser's mean final metric over the confirmation "
               "seeds, each optimiser at the lr tuning chose for it, in the committed reference run")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _one_of(name: str, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{name} = {value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")


@dataclass(frozen=True)
class Workload:
    """One problem: a data set, a model, a loss, a budget, a metric and a target."""

    name: str = ""                    # "" for a study's anonymous workload
    description: str = ""
    dataset: str = "digits"
    hidden: tuple[int, ...] = (128, 128)
    activation: str = "relu"
    loss: str = "auto"
    standardize: bool = True
    epochs: int = 20
    batch_size: int | str = 64        # a run's default: objects per step, or "full"
    init: str = "he"                  # a run's default initialisation
    metric: str = "val_loss"
    target: float | None = None
    target_note: str = ""
    lr_scales: Mapping[str, float] = field(default_factory=dict)
    default_lr_scale: float = 1.0
    budget_note: str = ""
    #: What a check of the optimisers' places on this workload against a peer
    #: library found (the report prints it beside the targets).
    reference_note: str = ""

    def __post_init__(self):
        if not isinstance(self.hidden, (tuple, list)) or not all(_is_int(h) and h >= 1 for h in self.hidden):
            raise ConfigError(f"hidden must be a list of positive integers (layer widths), got {self.hidden!r}")
        object.__setattr__(self, "hidden", tuple(self.hidden))
        _one_of("dataset", self.dataset, DATASETS)
        _one_of("activation", self.activation, tuple(ACTIVATIONS))
        _one_of("loss", self.loss, ("auto", *LOSSES))
        _one_of("init", self.init, (*INITS, "checkpoint"))
        if not isinstance(self.standardize, bool):
            raise ConfigError(f"standardize must be true or false (a boolean, not a string), got "
                                f"{self.standardize!r}")
        if self.standardize and self.dataset in RAW_ONLY:
            raise ConfigError(f"standardize = true is refused for dataset {self.dataset!r}: z-scoring its "
                                "inputs would change the Hessian whose known spectrum is the point of the data "
                                "set; set standardize = false")
        if not (_is_int(self.epochs) and self.epochs >= 1):
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not (self.batch_size == "full" or (_is_int(self.batch_size) and self.batch_size >= 1)):
            raise ConfigError(f"batch_size must be a positive integer or \"full\", got {self.batch_size!r}")
        where = f"workload {self.name!r}: " if self.name else ""
        if self.metric not in METRICS:
            raise ConfigError(f"{where}metric {self.metric!r}; allowed: {', '.join(METRICS)}")
        if self.metric == "val_error" and self.dataset in REGRESSION:
            raise ConfigError(f"{where}metric val_error needs class labels; {self.dataset!r} is a regression "
                                "data set (use val_loss)")
        if self.target is not None and not (isinstance(self.target, (int, float)) and math.isfinite(self.target)
                                            and self.target > 0):
            raise ConfigError(f"{where}target must be a finite number > 0 or None, got {self.target!r}")
        scales = dict(self.lr_scales)
        for opt, s in (*scales.items(), ("(default)", self.default_lr_scale)):
            if not (isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0):
                raise ConfigError(f"{where}lr scale of {opt} must be a number > 0, got {s!r}")
        object.__setattr__(self, "lr_scales", MappingProxyType(scales))

    def __reduce__(self):
        # The read-only scales do not pickle; a copy rebuilt from a plain dict
        # does (for Dask workers and multiprocessing).
        state = {f: getattr(self, f) for f in self.__dataclass_fields__}
        state["lr_scales"] = dict(self.lr_scales)
        return (_rebuild, (state,))

    # --- the data and the model -------------------------------------------------
    def load_data(self, seed: int = 0):
        """The data set as a run with ``seed`` sees it (split, standardised or not)."""
        from ..data import datasets

        return datasets.load(self.dataset, seed=seed, standardize=self.standardize)

    def sizes(self, ds) -> list[int]:
        """Layer widths [n_in, *hidden, n_out] on data set ``ds``."""
        return [ds.n_features, *self.hidden, ds.n_outputs]

    def loss_for(self, ds) -> str:
        """The loss's name on ``ds`` ("auto" resolved); a ConfigError where
        the loss needs class labels and ``ds`` has continuous targets."""
        loss = self.loss
        if loss == "auto":
            loss = "cross_entropy" if ds.task == "classification" else "squared"
        if get_loss(loss).needs_labels and ds.task != "classification":
            raise ConfigError(f"loss {loss!r} needs class labels but {self.dataset!r} is a regression set")
        return loss

    def build_model(self, ds, members: int = 1, xp=None, seeds=None, dropout=0.0, dropout_mode="inverted"):
        """The model factory: ``members`` networks of this workload's shape on
        ``ds`` (:class:`optbench.suite.nn.mlp.MLP`), dropout streams keyed by ``seeds``."""
        import numpy as np

        from ..nn.mlp import MLP

        return MLP(self.sizes(ds), self.activation, self.loss_for(ds), dropout, dropout_mode,
                   xp=np if xp is None else xp, members=members, seeds=seeds)

    # --- what the protocol asks -------------------------------------------------
    def lr_scale(self, optimizer: str) -> float:
        """The factor on ``optimizer``'s usual lr at which this workload's grid is centred."""
        return float(self.lr_scales.get(optimizer, self.default_lr_scale))

    def steps(self, n_train: int | None = None, batch_size: int | str | None = None) -> int:
        """Optimiser steps in one run: epochs x steps per epoch (loads the data
        set for its training-split size unless ``n_train`` is given)."""
        n = self.load_data().n_train if n_train is None else int(n_train)
        size = self.batch_size if batch_size is None else batch_size
        batch = n if size == "full" else int(size)
        return self.epochs * -(-n // batch)

    def settings(self) -> dict:
        """The workload's fields a run's settings hold (the results' columns)."""
        return {"dataset": self.dataset, "hidden": self.hidden, "activation": self.activation, "loss": self.loss,
                "standardize": self.standardize, "epochs": self.epochs}

    def describe(self) -> dict:
        """A JSON-ready summary (what protocol.json records)."""
        config = {**self.settings(), "hidden": list(self.hidden), "batch_size": self.batch_size, "init": self.init}
        return {"name": self.name, "description": self.description, "config": config, "metric": self.metric,
                "target": self.target, "target_note": self.target_note, "lr_scales": dict(self.lr_scales),
                "default_lr_scale": self.default_lr_scale, "budget_note": self.budget_note,
                "reference_note": self.reference_note}

    def at_batch(self, batch_size: int | str) -> "Workload":
        """This workload at another batch size, the rest unchanged (the same
        epochs, so the same examples seen): named ``NAME@bSIZE`` (``NAME@full``),
        its lr grids centred sqrt(batch_size / this batch size) times higher --
        between the linear and the square-root rules, so bracketing reaches
        either in a round or two, and favours neither."""
        n = self.load_data().n_train if "full" in (batch_size, self.batch_size) else None
        new, old = (n if b == "full" else int(b) for b in (batch_size, self.batch_size))
        ratio = math.sqrt(new / old)
        label = "full" if batch_size == "full" else f"b{batch_size}"
        return replace(self, name=f"{self.name}@{label}", batch_size=batch_size,
                       description=f"{self.description}; batch {batch_size}",
                       lr_scales={o: s * ratio for o, s in self.lr_scales.items()},
                       default_lr_scale=self.default_lr_scale * ratio)

    def with_target(self, target: float | None, note: str) -> "Workload":
        """A copy with ``target`` (and how it was set)."""
        return replace(self, target=target, target_note=note)


def _rebuild(state: dict) -> Workload:
    return Workload(**state)
