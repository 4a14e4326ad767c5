"""The protocol's workloads: named test problems, each a model on a data set
with a training budget, a metric and a target (as DeepOBS's test problems and
AlgoPerf's workloads).

A :class:`Workload` fixes everything about a run except the optimiser: the
data set, the network (``hidden``, ``activation``, ``init``), the loss,
standardisation and the budget (``epochs`` x ``batch_size``), as RunConfig
fields in ``config``. The protocol adds the optimiser, its lr, the seed and
the backend (``RunConfig(**workload.config, optimizer=..., lr=..., seed=...)``,
or :meth:`Workload.run_config`). A data set's generator options are not
RunConfig fields, so every workload uses its data set's defaults; each
record's ``data_hash`` pins the data a run saw.

The metric (:data:`METRICS`, lower is better) is the final validation
error (1 - accuracy) of a classifier and the final validation loss of a
regression or the quadratic. ``target`` is a value of it to reach, for time
to target; the rule (:data:`TARGET_RULE`): ``TARGET_FACTOR`` (1.05) x the
best optimiser's mean final metric over the confirmation seeds, at the lr
tuning chose for it, in the committed reference run (``results/default``;
its report shows what the rule gives on any other run beside the target).
``target_note`` says where each number came from.

Learning rates: :meth:`Workload.lr_scale` is the factor by which the
workload wants an optimiser's usual lr (``suite.protocol.tuning.LR_CENTRES``)
scaled, so its tuning grid is centred near the optimum (1 for an optimiser
the workload does not list: its ``default_lr_scale``). Measured per workload
(see each one's ``budget_note``); e.g. the noisy quadratic's largest
curvature, about 60, makes SGD unstable above 2/60 ~ 0.033, so its SGD grid
is centred on 0.01, a tenth of the usual 0.1.

Workloads (:data:`WORKLOADS`, in a fixed order; the names are stable):

| workload | data | model | batch | epochs | steps | metric |
|---|---|---|---|---|---|---|
| ``mnist1d-mlp`` | mnist1d | 128-128 ReLU, He | 32 | 40 | 3760 | val_error |
| ``digits-mlp`` | digits | 64-64 ReLU, He | 32 | 45 | 1530 | val_error |
| ``deep-narrow`` | digits | 5 x 16 sigmoid, Xavier | 32 | 120 | 4080 | val_error |
| ``noisy-quadratic`` | quadratic (raw) | linear | 128 | 150 | 3600 | val_loss |
| ``regression-mlp`` | regression | 64-64 tanh, Xavier | 32 | 300 | 5700 | val_loss |

- ``deep-narrow`` is the vanishing-gradient setting: at init ||dQ/dW1|| is
  ~0.004 of ||dQ/dW6||; plain SGD and Momentum sit on the chance plateau
  for ~50 epochs, Adam and RMSProp train at once. Five layers, not eight:
  with eight even Adam needs over 150 epochs (measured), too long for the
  protocol's budget.
- ``noisy-quadratic`` is the ``quadratic`` data set (d = 100, 90 curvatures
  in U(0, 1) and 10 in U(30, 60), noise 1) under a linear model: a quadratic
  with a known spectrum and a known minimum, 1/2 (DeepOBS quadratic_deep).

Each workload's ``budget_note`` gives the measurements behind its budget
(the budget lets the best optimiser level off: the report's plateau
column checks it on every run), ``target_note`` the run behind its target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping

from ..data.datasets import REGRESSION
from ..training.config import ConfigError, RunConfig, steps_per_epoch

#: The metrics a workload may be scored on (lower is better), with their labels.
#: ``val_error`` is 1 - validation accuracy (AlgoPerf's classification
#: targets are error rates): what a classifier is for, and what tuning on the
#: cross-entropy would not maximise (on mnist1d the loss-optimal lr stops at
#: ~51% accuracy, the error-optimal one reaches ~60%; measured).
METRICS = {"val_loss": "validation loss", "val_error": "validation error"}
#: A target is this factor times the best optimiser's mean final validation loss.
TARGET_FACTOR = 1.05
TARGET_RULE = (f"target = {TARGET_FACTOR} x the best optimiser's mean final metric over the confirmation "
               "seeds, each optimiser at the lr tuning chose for it, in the committed reference run")
#: Settings that belong to the optimiser or to one run, not to the workload:
#: a workload's config may not set them (the protocol does, per cell).
RUN_FIELDS = ("optimizer", "lr", "hyper", "l2", "wd", "schedule", "decay", "seed", "backend", "checkpoint",
              "init_from", "init_from_sha256", "layer_norms", "tol", "patience")


@dataclass(frozen=True)
class Workload:
    """One test problem: a model, a data set, a budget, a metric and a target.

    config: RunConfig fields without the optimiser's and the run's
    (:data:`RUN_FIELDS`); held read-only, ``hidden`` as a tuple.
    target: the validation loss to reach (None: not set yet).
    lr_scales: optimiser -> factor on its usual lr (see :meth:`lr_scale`).
    budget_note: how the budget was chosen (the measurements).
    """

    name: str
    description: str
    config: Mapping[str, Any]
    metric: str = "val_loss"
    target: float | None = None
    target_note: str = ""
    lr_scales: Mapping[str, float] = field(default_factory=dict)
    default_lr_scale: float = 1.0
    budget_note: str = ""

    def __post_init__(self):
        config = dict(self.config)
        if "hidden" in config:
            config["hidden"] = tuple(config["hidden"])
        bad = sorted(set(config) & set(RUN_FIELDS))
        if bad:
            raise ValueError(f"workload {self.name!r}: {', '.join(bad)} belong to a run, not to a workload")
        unknown = sorted(set(config) - set(RunConfig.field_names()))
        if unknown:
            raise ValueError(f"workload {self.name!r}: {', '.join(unknown)} are not RunConfig fields")
        if self.metric not in METRICS:
            raise ValueError(f"workload {self.name!r}: metric {self.metric!r}; allowed: {', '.join(METRICS)}")
        if self.metric == "val_error" and config.get("dataset", RunConfig.dataset) in REGRESSION:
            raise ValueError(f"workload {self.name!r}: metric val_error needs class labels; "
                             f"{config.get('dataset')!r} is a regression data set (use val_loss)")
        if self.target is not None and not (math.isfinite(self.target) and self.target > 0):
            raise ValueError(f"workload {self.name!r}: target must be a finite number > 0 or None, got {self.target!r}")
        scales = dict(self.lr_scales)
        for opt, s in (*scales.items(), ("(default)", self.default_lr_scale)):
            if not (isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0):
                raise ValueError(f"workload {self.name!r}: lr scale of {opt} must be a number > 0, got {s!r}")
        try:
            RunConfig(**config)  # every field checked, as a cell would be
        except ConfigError as exc:
            raise ValueError(f"workload {self.name!r}: {exc}") from None
        object.__setattr__(self, "config", MappingProxyType(config))
        object.__setattr__(self, "lr_scales", MappingProxyType(scales))

    def __reduce__(self):
        # The read-only views do not pickle; a copy rebuilt from plain dicts does
        # (for Dask workers and multiprocessing).
        return (Workload, (self.name, self.description, dict(self.config), self.metric, self.target,
                           self.target_note, dict(self.lr_scales), self.default_lr_scale, self.budget_note))

    # --- what the protocol asks -------------------------------------------------
    def lr_scale(self, optimizer: str) -> float:
        """The factor on ``optimizer``'s usual lr (``tuning.LR_CENTRES``, or a
        plug-in's default) at which this workload's grid is centred."""
        return float(self.lr_scales.get(optimizer, self.default_lr_scale))

    def run_config(self, **settings) -> RunConfig:
        """The RunConfig of one run: this workload's config plus ``settings``
        (optimizer, lr, seed, backend, ...; a workload field given here
        overrides it, e.g. ``epochs=1`` for a smoke test)."""
        return RunConfig(**{**self.config, **settings})

    def describe(self) -> dict:
        """A JSON-ready summary (what protocol.json records)."""
        config = dict(self.config)
        config["hidden"] = list(config.get("hidden", RunConfig.hidden))
        return {"name": self.name, "description": self.description, "config": config, "metric": self.metric,
                "target": self.target, "target_note": self.target_note, "lr_scales": dict(self.lr_scales),
                "default_lr_scale": self.default_lr_scale, "budget_note": self.budget_note}

    def with_target(self, target: float | None, note: str) -> "Workload":
        """A copy with ``target`` (and how it was set)."""
        return replace(self, target=target, target_note=note)

    # --- conveniences -----------------------------------------------------------
    @property
    def dataset(self) -> str:
        return self.config.get("dataset", RunConfig.dataset)

    @property
    def epochs(self) -> int:
        return int(self.config.get("epochs", RunConfig.epochs))

    @property
    def batch_size(self) -> int | str:
        return self.config.get("batch_size", RunConfig.batch_size)

    def load_data(self, seed: int = 0):
        """The data set as a run with ``seed`` sees it (split, standardised or not)."""
        from ..data import datasets

        return datasets.load(self.dataset, seed=seed, standardize=self.config.get("standardize", RunConfig.standardize))

    def steps(self, n_train: int | None = None) -> int:
        """Optimiser steps in one run: epochs x steps per epoch (loads the data
        set for its training-split size unless ``n_train`` is given)."""
        n = self.load_data().n_train if n_train is None else int(n_train)
        batch = n if self.batch_size == "full" else int(self.batch_size)
        return self.epochs * steps_per_epoch(batch, n)


def _registry(*workloads: Workload) -> Mapping[str, Workload]:
    return MappingProxyType({w.name: w for w in workloads})


#: Where the targets below come from: the committed reference run.
REFERENCE = ("results/default, the default protocol's committed run (2026-12-02, numba backend, 2-core "
             "reference CPU; tuning seeds 0-2, confirmation seeds 100-109)")

WORKLOADS: Mapping[str, Workload] = _registry(
    Workload(
        name="mnist1d-mlp",
        description="mnist1d (40 inputs, 10 classes), MLP 128-128 ReLU, He init: the lecture's problem",
        config={"dataset": "mnist1d", "hidden": (128, 128), "activation": "relu", "init": "he",
                "loss": "cross_entropy", "standardize": True, "batch_size": 32, "epochs": 40},
        metric="val_error",
        target=0.356,
        target_note=f"1.05 x 0.339, adadelta's mean final validation error at lr 3; {REFERENCE}",
        lr_scales={"rmsprop": 3.0},
        budget_note="Validation error of the lrs tuned for 25 epochs, trained for 80 (seeds 100-102, "
                    "5-epoch means): adadelta 3: 0.350 at epoch 20, 0.336 at 25, 0.336-0.338 from 30 to 80; "
                    "sgd 0.3: 0.368-0.370 from 25 to 80; adam 3e-3: 0.394-0.396 from 20 to 80; rmsprop 1e-2: "
                    "0.398 at 25, 0.383 at 80. 40 epochs leave the best optimisers on their plateau for the "
                    "last quarter of the budget. (The validation loss overfits from epoch 6-30, so a "
                    "loss-tuned lr stops at ~51% accuracy; the error-tuned ones reach 60-66%.)",
    ),
    Workload(
        name="digits-mlp",
        description="digits (8x8 images, 10 classes), MLP 64-64 ReLU, He init",
        config={"dataset": "digits", "hidden": (64, 64), "activation": "relu", "init": "he",
                "loss": "cross_entropy", "standardize": True, "batch_size": 32, "epochs": 45},
        metric="val_error",
        target=0.0295,
        target_note=f"1.05 x 0.0281, rmsprop's mean final validation error at lr 3e-3; {REFERENCE}",
        lr_scales={"rmsprop": 3.0},
        budget_note="Validation error of the lrs tuned for 30 epochs, trained for 90 (seeds 100-102, "
                    "5-epoch means): every optimiser within 0.002 of its 90-epoch value from epoch 30 "
                    "(rmsprop 3e-3: 0.031 at 25, 0.029-0.030 from 30 on); 45 epochs.",
    ),
    Workload(
        name="deep-narrow",
        description="vanishing gradients: digits through 5 hidden layers of 16 sigmoid units, Xavier init "
                    "(||dQ/dW1|| ~ 0.004 ||dQ/dW6|| at init); plain SGD sits on a plateau for ~50 epochs, "
                    "per-parameter step sizes train at once",
        config={"dataset": "digits", "hidden": (16,) * 5, "activation": "sigmoid", "init": "xavier",
                "loss": "cross_entropy", "standardize": True, "batch_size": 32, "epochs": 120},
        metric="val_error",
        target=0.0875,
        target_note=f"1.05 x 0.0833, adam's mean final validation error at lr 0.03; {REFERENCE}",
        lr_scales={"sgd": 10.0, "momentum": 30.0, "nesterov": 30.0, "rmsprop": 30.0, "adadelta": 3.0, "adam": 3.0},
        budget_note="Depth measured (digits, 16 sigmoid units per layer, Xavier): 8 layers need > 150 epochs "
                    "even with adam (0.78 val loss at 100), 6 leave sgd / momentum at chance (2.303) at every "
                    "lr tried (0.003-10, 60-100 epochs), 4 let sgd (lr 1) reach adam's validation loss (~0.37) "
                    "within 40 epochs. At 5, trained for 200 epochs (seeds 100-102, 5-epoch means of the "
                    "validation error): adam 3e-2 0.096 at 40, 0.080 at 80, 0.074-0.079 from 100 on; "
                    "rmsprop 3e-2 0.093 from 80; nesterov 3 on the chance plateau (0.90) until epoch 20, "
                    "0.18 at 80, 0.09 from 120. 120 epochs let the adaptive methods level off and show how "
                    "far the others get.",
    ),
    Workload(
        name="noisy-quadratic",
        description="a noisy quadratic with a known spectrum (DeepOBS quadratic_deep): a linear model on the "
                    "quadratic data set, Hessian eigenvalues 90 x U(0, 1) + 10 x U(30, 60), minimum 0.5",
        config={"dataset": "quadratic", "hidden": (), "init": "he", "loss": "squared", "standardize": False,
                "batch_size": 128, "epochs": 150},
        target=0.541,
        target_note=f"1.05 x 0.515, nesterov's mean final validation loss at lr 0.01. For scale: the expected "
                    f"loss's minimum is 0.5; on the same validation splits w* scores 0.491 and the training "
                    f"split's least-squares fit 0.503; {REFERENCE}",
        lr_scales={"sgd": 0.1, "momentum": 0.1, "nesterov": 0.1, "rmsprop": 3.0, "adadelta": 0.3, "adam": 10.0},
        budget_note="3000 training points (DeepOBS: 1000), batch 128 as DeepOBS. Over 300 epochs (2 seeds, "
                    "10-epoch means) every tuned optimiser is within 3% of its 300-epoch validation loss by "
                    "epoch 150 (sgd 0.01: 0.554 vs 0.552, momentum 0.01: 0.537 vs 0.531, rmsprop 3e-3: 0.564 "
                    "vs 0.555, adam 1e-2: 0.566 vs 0.573; at epoch 100 rmsprop and adam were still 10-20% "
                    "above), so 150 epochs (3600 steps). SGD is unstable above 2 / 59.4 = 0.034: its grid is "
                    "centred on 0.01.",
    ),
    Workload(
        name="regression-mlp",
        description="regression (4 inputs on very different scales, smooth non-linear target, noise 0.1), "
                    "MLP 64-64 tanh, Xavier init, squared loss",
        config={"dataset": "regression", "hidden": (64, 64), "activation": "tanh", "init": "xavier",
                "loss": "squared", "standardize": True, "batch_size": 32, "epochs": 300},
        target=0.00692,
        target_note=f"1.05 x 0.00659, nesterov's mean final validation loss at lr 1; the noise floor is 0.005; "
                    f"{REFERENCE}",
        lr_scales={"momentum": 3.0, "nesterov": 3.0, "rmsprop": 0.3, "adadelta": 0.3, "adam": 0.3},
        budget_note="Validation loss of the lrs tuned for 150 epochs, trained for 400 (seeds 100-102, 9-epoch "
                    "means): nesterov 1: 0.00666 at 100, 0.0065-0.0067 from 150 on; momentum 0.3: 0.0071 at "
                    "150, 0.0069 at 200-250, 0.0067 at 350; adam 3e-3: 0.0072 at 150, 0.0069 at 250, rising "
                    "after. At 150 epochs the ten confirmation runs of the best optimiser still fell 3.5% over "
                    "the last quarter of the budget; at 300, 0.0%. The epoch-to-epoch noise on 200 "
                    "validation points is ~5-10%.",
    ),
)


def get_workload(name: str) -> Workload:
    """The workload called ``name``; ValueError listing the names if none is."""
    try:
        return WORKLOADS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown workload {name!r}; allowed: {', '.join(WORKLOADS)}") from None
