"""RunConfig: everything that defines one training run (a study's cell).

A config is frozen and hashable through :meth:`RunConfig.as_dict` (the study's
cell key is the hash of that dict). :func:`check` validates what depends on the
data set (batch size against the training set, loss against the targets).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

from ..nn.inits import check_scheme
from ..nn.losses import get_loss


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
    dropout: float | tuple = 0.0     # p per hidden layer (one value for all)
    dropout_mode: str = "inverted"
    standardize: bool = True
    order: str = "shuffle"
    seed: int = 0
    backend: str = "numpy"
    tol: float = 0.0
    patience: int = 0
    checkpoint: str | None = None    # write the final weights here
    layer_norms: bool = False        # also record ||dQ/dW_l|| per layer (grad_norm_W1, ...)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["dropout"] = list(self.dropout) if isinstance(self.dropout, tuple) else self.dropout
        # An opt-in diagnostic that does not change training: left out when off,
        # so every config that predates it keeps its cell key (and its results).
        if not self.layer_norms:
            del d["layer_norms"]
        return d

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def check(config: RunConfig, ds) -> tuple[int, str]:
    """Validate what the data set does not; return (batch size, loss name)."""
    if int(config.epochs) != config.epochs or config.epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {config.epochs!r}")
    if config.batch_size == "full":
        batch = ds.n_train
    elif isinstance(config.batch_size, (int, np.integer)) and not isinstance(config.batch_size, bool):
        batch = int(config.batch_size)
        if not 1 <= batch <= ds.n_train:
            raise ValueError(
                f"batch size {batch} is outside 1..{ds.n_train} (the training set of "
                f"{config.dataset!r}); use \"full\" for batch gradient descent")
    else:
        raise ValueError(f"batch size must be an integer or \"full\", got {config.batch_size!r}")
    loss = config.loss
    if loss == "auto":
        loss = "cross_entropy" if ds.task == "classification" else "squared"
    if get_loss(loss).needs_labels and ds.task != "classification":
        raise ValueError(f"loss {loss!r} needs class labels but {config.dataset!r} is a regression set")
    if config.init != "checkpoint":
        check_scheme(config.init)
    elif not config.init_from:
        raise ValueError("init 'checkpoint' needs init_from = the checkpoint's path")
    if any(int(h) < 1 for h in config.hidden):
        raise ValueError(f"hidden layer sizes must be positive, got {list(config.hidden)}")
    return batch, loss
