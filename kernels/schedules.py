"""Learning-rate schedules: the step's lr is lr x factor(t), computed on the host.

Notation: t = 1, 2, ... is the optimiser's step counter (the step being
taken: ``Optimizer.t`` after it is counted), T the run's total number of
steps (epochs x steps per epoch, given when the schedule is bound to a run:
:meth:`Schedule.bind`), W the warm-up length in steps and m = ``min_factor``.

=============  ===========================================  =========================================
kind           parameters                                   factor(t)
=============  ===========================================  =========================================
constant       (none)                                       1
step           ``gamma`` in (0, 1], ``step_size`` >= 1      gamma ** floor((t - 1) / step_size)
exponential    ``gamma`` in (0, 1]                          gamma ** (t - 1)
cosine         ``min_factor`` in [0, 1] (default 0)         m + (1 - m) (1 + cos(pi (t - 1) / (T - 1))) / 2
warmup_cosine  ``warmup`` = W >= 1, ``min_factor`` (0)      t / W                                 for t <= W
                                                            m + (1 - m) (1 + cos(pi (t - W) / (T - W))) / 2
                                                                                                  for t > W
inverse_sqrt   ``warmup`` = W >= 1                          t / W for t <= W;  sqrt(W / t) for t > W
=============  ===========================================  =========================================

At the boundaries:

* every kind without a warm-up starts at the full lr, factor(1) = 1: ``step``
  and ``exponential`` count the t - 1 steps already taken, as PyTorch's
  StepLR / ExponentialLR do when ``scheduler.step()`` follows each
  ``optimizer.step()``; so ``step`` first decays at t = step_size + 1;
* ``cosine`` ends at exactly m at the last step t = T (PyTorch's
  CosineAnnealingLR with T_max = T - 1, stepped after each optimiser step);
  a run of one step keeps factor 1;
* the warm-ups rise linearly from 1/W at t = 1 (about 0, never 0: a step
  with lr 0 would be wasted) to exactly 1 at t = W, the end of the warm-up;
  ``warmup_cosine`` then falls to exactly m at t = T (W < T is required),
  ``inverse_sqrt`` decays as sqrt(W / t) with no end;
* past the bound total (t > T) the cosine kinds hold m.

``warmup`` and ``step_size`` are integers (steps); ``gamma`` and
``min_factor`` numbers. Each factor is computed in double precision from
Python floats (``math.cos``, ``math.sqrt``, ``**``) by :meth:`Schedule.factor`,
the one function both a single run (:class:`kernels.Optimizer`) and a
population (:class:`kernels.PopulationOptimizer`, member by member) call,
so both see the same bits.

How it is applied (:func:`scheduled`): the step's hyper-parameters are the
resolved ones with ``lr`` replaced by lr x factor(t), and the rule's per-step
scalars are computed from those on the host as usual -- nothing changes on
the device, and the kernels are the same. Everything a rule derives from lr
follows the schedule: Adam's lr / (1 - gamma^t), and the decoupled decay
1 - lr x wd (as PyTorch's AdamW under a scheduler, which decays by the
scheduled lr). Coupled L2 does not involve lr. A rule with a look-ahead
point (Nesterov: u = w - lr gamma v) uses the step's scheduled lr for both
terms of its update, and its weights are recovered with the lr of the last
step taken.

>>> s = Schedule.from_dict({"kind": "warmup_cosine", "warmup": 100}).bind(1000)
>>> s.label, s.factor(1), s.factor(100), s.factor(1000)
('warmup_cosine(warmup=100)', 0.01, 1.0, 0.0)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Mapping


class ScheduleError(ValueError):
    """A schedule's description is invalid; the message names the key."""


@dataclass(frozen=True)
class _Param:
    kind: str                  # "int" (steps) or "real"
    what: str                  # in words, for errors
    default: float | int | None = None  # None: required

    def check(self, schedule: str, key: str, value) -> float | int:
        bad = ScheduleError(f"schedule {schedule!r}: {key} must be {self.what}, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or type(value).__name__ == "bool_":
            raise bad
        if self.kind == "int":
            if not isinstance(value, numbers.Integral) or value < 1:
                raise bad
            return int(value)
        value = float(value)
        lo, hi, lo_open = _REAL_RANGES[key]
        if not (math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= hi):
            raise bad
        return value


#: (lo, hi, lo open) of each real parameter; hi is closed.
_REAL_RANGES = {"gamma": (0.0, 1.0, True), "min_factor": (0.0, 1.0, False)}

_GAMMA = _Param("real", "a number in (0, 1]")
_MIN = _Param("real", "a number in [0, 1]", 0.0)
_WARMUP = _Param("int", "a positive integer number of steps")

#: Each kind's parameters; a parameter whose default is None must be given.
KINDS: dict[str, dict[str, _Param]] = {
    "constant": {},
    "step": {"gamma": _GAMMA, "step_size": _Param("int", "a positive integer number of steps")},
    "exponential": {"gamma": _GAMMA},
    "cosine": {"min_factor": _MIN},
    "warmup_cosine": {"warmup": _WARMUP, "min_factor": _MIN},
    "inverse_sqrt": {"warmup": _WARMUP},
}
#: The kinds whose factor depends on the run's total steps T.
NEEDS_TOTAL = ("cosine", "warmup_cosine")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule: its kind, every parameter (defaults filled
    in, sorted by name) and, once bound to a run, the run's total steps.

    Frozen and hashable; build one with :meth:`from_dict`.
    """

    kind: str = "constant"
    params: tuple[tuple[str, float | int], ...] = ()
    #: The run's total number of steps T (None until :meth:`bind`).
    total: int | None = None

    @classmethod
    def from_dict(cls, spec, total: int | None = None) -> "Schedule":
        """A schedule from ``{"kind": ..., parameter: value, ...}`` (a study's
        TOML table), a kind's name alone (``"cosine"``), a Schedule, or None
        (constant). ``total``: bind it to a run of that many steps.
        An unknown kind, an unknown, missing or bad parameter is a
        :class:`ScheduleError` naming the key and what is allowed."""
        if spec is None:
            spec = {"kind": "constant"}
        if isinstance(spec, Schedule):
            out = spec
        else:
            if isinstance(spec, str):
                spec = {"kind": spec}
            if not isinstance(spec, Mapping):
                raise ScheduleError(f"a schedule is a table such as {{kind = \"cosine\"}}, got {spec!r}")
            if "kind" not in spec:
                raise ScheduleError(f"schedule {dict(spec)!r} has no 'kind'; allowed kinds: {', '.join(KINDS)}")
            kind = spec["kind"]
            if not isinstance(kind, str) or kind not in KINDS:
                raise ScheduleError(f"schedule kind {kind!r} is not allowed; allowed: {', '.join(KINDS)}")
            table = KINDS[kind]
            given = {k: v for k, v in spec.items() if k != "kind"}
            unknown = sorted(set(map(str, given)) - set(table))
            if unknown:
                allowed = ", ".join(table) or "none"
                raise ScheduleError(f"schedule {kind!r} has no parameter {unknown[0]!r}; allowed: {allowed}")
            params = {}
            for key, param in table.items():
                if key in given:
                    params[key] = param.check(kind, key, given[key])
                elif param.default is None:
                    raise ScheduleError(f"schedule {kind!r} needs {key!r} ({param.what})")
                else:
                    params[key] = param.default
            out = cls(kind, tuple(sorted(params.items())))
        return out if total is None else out.bind(total)

    def bind(self, total: int) -> "Schedule":
        """This schedule for a run of ``total`` steps (checked: warmup_cosine
        needs its warm-up to end before the run does)."""
        if isinstance(total, bool) or not isinstance(total, numbers.Integral) or total < 1:
            raise ScheduleError(f"a schedule's total steps must be a positive integer, got {total!r}")
        if self.kind == "warmup_cosine" and self["warmup"] >= total:
            raise ScheduleError(f"schedule 'warmup_cosine': warmup = {self['warmup']} must be less than the "
                                f"run's {total} steps (epochs x steps per epoch)")
        return replace(self, total=int(total))

    def __getitem__(self, key: str):
        for k, v in self.params:
            if k == key:
                return v
        raise KeyError(f"schedule {self.kind!r} has no parameter {key!r}")

    @property
    def is_constant(self) -> bool:
        return self.kind == "constant"

    def as_dict(self) -> dict:
        """The canonical description: the kind and the parameters that differ
        from their defaults (what a run's cell key hashes)."""
        table = KINDS[self.kind]
        return {"kind": self.kind, **{k: v for k, v in self.params if v != table[k].default}}

    @property
    def label(self) -> str:
        """``kind(param=value, ...)`` with the parameters that differ from
        their defaults, e.g. "warmup_cosine(warmup=100)", "cosine"."""
        d = self.as_dict()
        d = {k: d[k] for k in KINDS[self.kind] if k in d}  # in the kind's order
        return self.kind + (f"({', '.join(f'{k}={v!r}' for k, v in d.items())})" if d else "")

    def factor(self, t: int) -> float:
        """lr's factor at step ``t`` (1-based), in double (the module's table)."""
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 1:
            raise ScheduleError(f"step counter t starts at 1, got {t!r}")
        t = int(t)
        kind = self.kind
        if kind == "constant":
            return 1.0
        if kind == "step":
            return self["gamma"] ** ((t - 1) // self["step_size"])
        if kind == "exponential":
            return self["gamma"] ** (t - 1)
        if kind == "inverse_sqrt":
            w = self["warmup"]
            return t / w if t <= w else math.sqrt(w / t)
        total = self.total
        if total is None:
            raise ScheduleError(f"schedule {self.label!r} needs the run's total steps: bind it first "
                                "(Schedule.bind(total_steps))")
        m = self["min_factor"]
        w = self["warmup"] if kind == "warmup_cosine" else 1
        if t <= w:
            return t / w
        if t >= total:
            return m
        return m + (1.0 - m) * (1.0 + math.cos(math.pi * (t - w) / (total - w))) / 2.0


def as_schedule(spec, total: int | None = None) -> Schedule | None:
    """None for a constant schedule (or None), else the :class:`Schedule`
    (bound to ``total`` steps when given)."""
    schedule = Schedule.from_dict(spec, total)
    return None if schedule.is_constant else schedule


def check_bound(schedule: Schedule | None, who: str = "the optimiser") -> None:
    """A clear error for a schedule that needs the run's total steps but has none."""
    if schedule is not None and schedule.kind in NEEDS_TOTAL and schedule.total is None:
        raise ScheduleError(f"schedule {schedule.label!r} of {who} needs the run's total steps: "
                            "give Schedule.bind(total_steps)")


def scheduled(hp: Mapping[str, float], schedule: Schedule | None, t: int) -> Mapping[str, float]:
    """The hyper-parameters of step ``t``: ``hp`` itself without a schedule
    (or a constant one), else a copy with lr x factor(t)."""
    if schedule is None or schedule.is_constant:
        return hp
    return {**hp, "lr": hp["lr"] * schedule.factor(t)}
