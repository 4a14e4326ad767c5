"""The one schema of a run: its settings as a study file writes them, and the
columns of the results table.

A study or protocol file sets a run's settings by these flat names (a TOML
``[fixed]`` or ``[grid]`` key each), the results table has one column per
name, and :class:`~optbench.suite.training.config.RunConfig` keeps each in
the part of the run it belongs to (:attr:`Field.part`):

- ``workload``: the problem -- the data set, the network, its loss, the
  pre-processing and the budget (:class:`~optbench.suite.workloads.Workload`);
- ``optimizer``: the rule and every hyper-parameter of it, the lr included,
  its schedule and where its decay applies
  (:class:`~optbench.suite.training.optimizer_spec.OptimizerSpec`);
- ``run``: one run of that optimiser on that workload -- batch size,
  initialisation, seed, the lecture's knobs (dropout, batch order), the
  stopping rule, the backend and what to record.

This module depends on nothing else of ours, so the reports (which must not
load training code) read the results through it, and the study loader, the
run's checks and the results store all take their names from here.

The cell key is the hash of a run's settings (:func:`key_fields`). A field
added after results were stored (``Field.keyed_when_default`` False) is left
out of it while it has its default, so every earlier cell keeps its key.
"""

from __future__ import annotations

from dataclasses import dataclass


class ConfigError(ValueError):
    """A run's settings are invalid; the message names the field and the value."""


@dataclass(frozen=True)
class Field:
    name: str
    part: str  # "workload", "optimizer" or "run"
    #: The results column's type: "string", "double", "int64" or "bool".
    column: str
    default: object
    #: False: left out of the cell key while at its default (a setting that
    #: came after results existed; the earlier cells keep their keys).
    keyed_when_default: bool = True
    doc: str = ""


FIELDS: tuple[Field, ...] = (
    Field("dataset", "workload", "string", "digits", doc="the data set (suite.data.datasets)"),
    Field("hidden", "workload", "string", (128, 128), doc="hidden layer widths; [] is a linear model"),
    Field("activation", "workload", "string", "relu", doc="sigmoid, tanh, relu or prelu"),
    Field("init", "run", "string", "he", doc="an initialisation scheme, or \"checkpoint\""),
    Field("init_from", "run", "string", None, doc="the checkpoint file to start from (init = \"checkpoint\")"),
    Field("loss", "workload", "string", "auto", doc="cross_entropy, squared, or auto (by the targets)"),
    Field("optimizer", "optimizer", "string", "adam", doc="a registered rule"),
    Field("lr", "optimizer", "double", None, doc="the learning rate (None: the rule's default)"),
    Field("hyper", "optimizer", "string", {}, doc="the rule's other hyper-parameters, e.g. {gamma = 0.95}"),
    Field("batch_size", "run", "string", 64, doc="objects per step, or \"full\""),
    Field("epochs", "workload", "int64", 20, doc="passes over the training set: the budget"),
    Field("l2", "optimizer", "double", 0.0, doc="coupled L2, added to the gradient"),
    Field("wd", "optimizer", "double", 0.0, doc="decoupled weight decay"),
    Field("schedule", "optimizer", "string", None, keyed_when_default=False,
          doc="the lr schedule, e.g. {kind = \"cosine\"} (None: constant)"),
    Field("decay", "optimizer", "string", "all", keyed_when_default=False,
          doc="where l2 and wd apply: \"all\", or \"weights\" (not biases and PReLU alphas)"),
    Field("state", "run", "string", "fp32", keyed_when_default=False,
          doc="how the optimiser's state is stored: fp32, bf16 (to nearest) or bf16-sr (stochastic rounding)"),
    Field("dropout", "run", "string", 0.0, doc="p per hidden layer (one value, or one per layer)"),
    Field("dropout_mode", "run", "string", "inverted", doc="inverted or classic"),
    Field("standardize", "workload", "bool", True, doc="z-score the inputs with the training split's statistics"),
    Field("order", "run", "string", "shuffle", doc="shuffle, fixed or sorted batch order"),
    Field("seed", "run", "int64", 0, doc="init, split, batch order and dropout stream"),
    Field("backend", "run", "string", "numpy", doc="numpy, numba or cupy (what ran)"),
    Field("tol", "run", "double", 0.0, doc="stop when Q or the weights change by at most this ..."),
    Field("patience", "run", "int64", 0, doc="... for this many epochs in a row (0: off)"),
    Field("checkpoint", "run", "string", None, doc="write the final weights and optimiser state here"),
    Field("layer_norms", "run", "bool", False, keyed_when_default=False,
          doc="also record ||dQ/dW_l|| per layer"),
    Field("init_from_sha256", "run", "string", None, keyed_when_default=False,
          doc="the checkpoint's content hash (set by the loader, not by a file)"),
)
BY_NAME = {f.name: f for f in FIELDS}
#: The names a study file may set ([fixed], [grid]): every field but the loader's own.
SETTABLE = tuple(f.name for f in FIELDS if f.name != "init_from_sha256")


def part(name: str) -> tuple[str, ...]:
    """The names of one part ("workload", "optimizer" or "run"), in order."""
    return tuple(f.name for f in FIELDS if f.part == name)


#: A protocol's tags on its cells' rows (not part of the key).
TAG_COLUMNS = ("workload", "phase", "trial")
#: What a run records, per evaluation point (suite.training.loop), and each column's type.
RECORD_COLUMNS = {
    "device": "string", "dtype": "string", "data_hash": "string", "n_train": "int64",
    "epoch": "int64", "step": "int64", "examples_seen": "int64", "wall_time": "double",
    "examples_per_sec": "double", "train_loss": "double", "train_acc": "double", "val_loss": "double",
    "val_acc": "double", "test_loss": "double", "test_acc": "double", "grad_norm": "double",
    "layer_grad_norms": "list<double>", "diverged": "bool", "stop_reason": "string",
}
#: Every column of the results table, in order, with its type.
COLUMNS = {"study": "string", "cell": "string", **dict.fromkeys(TAG_COLUMNS, "string"),
           **{f.name: f.column for f in FIELDS}, **RECORD_COLUMNS}
