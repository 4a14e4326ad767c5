"""An optimiser spec: a rule with every hyper-parameter resolved and checked, once.

:meth:`OptimizerSpec.resolve` takes a rule's name and the hyper-parameters a
study gives it -- the learning rate, coupled L2 (``l2``) and decoupled decay
(``wd``) among them, by the rule's own names -- and resolves them against
the rule's defaults and declared ranges (:meth:`optbench.kernels.Rule.resolve`).
That is the one place they are checked: the training loop hands
``spec.hyper`` to the optimiser as it is, and the results record
``spec.lr``.

``given`` keeps what the study wrote (the cell key is a hash of it, so a
run that leaves the lr at its default keeps the key it had before the
default was written out); ``hyper`` is every hyper-parameter of the rule.

``schedule``: the learning-rate schedule (:mod:`optbench.kernels.schedules`),
unbound (a run binds it to its total steps); None for a constant lr.
``decay``: where ``l2`` and ``wd`` apply: "all" parameters, or only the
"weights" (W1, W2, ...; not the biases and PReLU alphas).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

from optbench.kernels import Rule, RuleError, get_rule
from optbench.kernels.schedules import Schedule, ScheduleError, as_schedule

from ..schema import ConfigError

#: Where L2 and decoupled decay apply: every parameter, or the weight matrices only.
DECAY = ("all", "weights")
#: Hyper-parameters a study gives as settings of their own (the rest go in ``hyper``).
OWN_FIELDS = ("lr", "l2", "wd")


@dataclass(frozen=True)
class OptimizerSpec:
    """A rule and all of its hyper-parameters, resolved and checked."""

    name: str
    given: Mapping[str, float] = field(default_factory=dict)
    schedule: Schedule | None = None
    decay: str = "all"
    #: Every hyper-parameter of the rule (lr, l2 and wd included): its defaults under ``given``.
    hyper: Mapping[str, float] = field(init=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.given, Mapping) or not all(isinstance(k, str) for k in self.given):
            raise ConfigError(f"hyper must be a table of hyper-parameters, got {self.given!r}")
        try:
            rule = get_rule(self.name)
            hyper = rule.resolve(self.given)
            schedule = as_schedule(self.schedule)
        except (RuleError, ScheduleError) as exc:
            raise ConfigError(str(exc)) from None
        if self.decay not in DECAY:
            raise ConfigError(f"decay = {self.decay!r} is not allowed; allowed: {', '.join(DECAY)}")
        if schedule is not None and "lr" not in rule.hyper:
            raise ConfigError(f"rule {self.name!r} has no learning rate 'lr' for a schedule to scale")
        object.__setattr__(self, "given", MappingProxyType(dict(self.given)))
        object.__setattr__(self, "schedule", None if schedule is None else replace(schedule, total=None))
        object.__setattr__(self, "hyper", MappingProxyType(hyper))

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.given.items())), self.schedule, self.decay))

    def __reduce__(self):
        # The read-only tables do not pickle; and a Dask worker unpickles a
        # spec before it has loaded the plug-in rule files the spec names, so
        # the copy is rebuilt as it was checked, not checked again.
        return (_restore, (self.name, dict(self.given), self.schedule, self.decay, dict(self.hyper)))

    @classmethod
    def resolve(cls, name: str, lr=None, hyper: Mapping | None = None, l2=None, wd=None, schedule=None,
                decay: str = "all") -> "OptimizerSpec":
        """The spec from a study's settings: ``lr`` (None: the rule's default),
        the other hyper-parameters in ``hyper``, coupled ``l2`` and decoupled
        ``wd`` (None: not given, 0). Refuses lr, l2 or wd inside ``hyper``."""
        hyper = {} if hyper is None else hyper
        if not isinstance(hyper, Mapping):
            raise ConfigError(f"hyper must be a table of hyper-parameters, got {hyper!r}")
        inside = sorted(set(hyper) & set(OWN_FIELDS))
        if inside:
            raise ConfigError(f"give lr, l2 and wd as their own settings, not inside hyper (found {', '.join(inside)})")
        given = dict(hyper)
        for key, value in (("lr", lr), ("l2", l2), ("wd", wd)):
            if value is not None:  # kept as written: the cell key hashes it so
                given[key] = value
        return cls(name, given, schedule, decay)

    @property
    def rule(self) -> Rule:
        return get_rule(self.name)

    @property
    def lr(self) -> float:
        """The learning rate (the rule's default where none was given)."""
        return self.hyper["lr"]

    def settings(self) -> dict:
        """The spec as a study file's settings (the results' columns): optimizer,
        lr (as given; None for the default), hyper (the others given), l2, wd,
        schedule, decay."""
        return {"optimizer": self.name, "lr": self.given.get("lr"),
                "hyper": {k: v for k, v in self.given.items() if k not in OWN_FIELDS},
                "l2": self.given.get("l2", 0.0), "wd": self.given.get("wd", 0.0),
                "schedule": self.schedule, "decay": self.decay}

    @property
    def label(self) -> str:
        """'adam lr=0.001' or 'adam lr=default', with any other given values."""
        lr = self.given.get("lr")
        extra = "".join(f" {k}={json.dumps(v)}" for k, v in self.settings()["hyper"].items())
        return f"{self.name} lr={'default' if lr is None else lr}{extra}"


def _restore(name, given, schedule, decay, hyper) -> OptimizerSpec:
    spec = object.__new__(OptimizerSpec)
    for key, value in (("name", name), ("given", MappingProxyType(given)), ("schedule", schedule),
                       ("decay", decay), ("hyper", MappingProxyType(hyper))):
        object.__setattr__(spec, key, value)
    return spec
