"""Quasi-random search: k trials per optimiser over several hyper-parameters.

Where the lr grid tunes one number, a protocol with ``search = "random"``
draws ``trials`` settings per workload and optimiser from a box (the
``[space]`` table) with a scrambled Halton sequence: a low-discrepancy
sequence, so k points cover the box more evenly than k independent uniform
draws (what "Descending through a crowded valley" and AlgoPerf's baselines
use for their tuning budgets). Dimension j of point i is the radical inverse
of i in the j-th prime base, shifted by a random offset modulo 1
(Cranley-Patterson rotation) drawn from a seed fixed by the workload and
optimiser names, so a rerun draws the same trials.

The unit interval maps onto each range in the scale a person would tune it
in, as the rule declares it (``Rule.scale``):

- "log" (``lr``, ``eps``, ``wd``, ``l2``): log-uniform between the two ends;
- "log1m" (decay rates in [0, 1), such as ``gamma`` and ``alpha``):
  log-uniform in 1 - x, so 0.9, 0.99 and 0.999 are equally likely decades;
- "linear": uniform;
- ``schedule``: a list of schedules (``"constant"``, ``"cosine"``, ...), one
  chosen per trial.

The lr's range is the two ends of the optimiser's grid (the same two
decades a grid search would start from, or the protocol's ``[lr]`` list); a
hyper-parameter applies to the optimisers that have it (``gamma`` to
Momentum but not to SGD). Each drawn value is rounded to 3 significant
digits (a decay rate's 1 - x), so the settings print and reproduce
exactly.

The chosen trial is the one with the lowest mean final metric over the
tuning seeds. A random search cannot be bracketed, so the report flags any
dimension whose chosen value lies in the outer tenth (in the scale above)
of its range: the optimum may lie outside it.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from optbench.suite.schema import BY_NAME
#: A chosen value this close to an end of its range (in unit coordinates) is flagged.
EDGE = 0.1
_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29)


def radical_inverse(i: int, base: int) -> float:
    """The van der Corput radical inverse of ``i`` in ``base`` (digits mirrored about the point)."""
    out, f = 0.0, 1.0 / base
    while i > 0:
        i, digit = divmod(i, base)
        out += digit * f
        f /= base
    return out


def halton(n: int, dims: int, shift: np.ndarray | None = None) -> np.ndarray:
    """The first ``n`` points (indices 1..n) of the ``dims``-dimensional
    Halton sequence, each coordinate shifted by ``shift`` modulo 1."""
    if dims > len(_PRIMES):
        raise ValueError(f"at most {len(_PRIMES)} dimensions, got {dims}")
    points = np.array([[radical_inverse(i, _PRIMES[j]) for j in range(dims)] for i in range(1, n + 1)])
    points = points.reshape(n, dims)
    return points if shift is None else (points + shift) % 1.0


def _shift(dims: int, *names: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256("/".join(names).encode()).digest()[:8], "little")
    return np.random.default_rng(seed).random(dims)


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def to_value(scale: str, u: float, bounds):
    """The value at unit coordinate ``u`` of a range searched on ``scale``
    ("log", "log1m", "linear", or "choice" for a list of schedules)."""
    if scale == "choice":
        return bounds[min(int(u * len(bounds)), len(bounds) - 1)]
    lo, hi = bounds
    if scale == "log":
        return _round(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))
    if scale == "log1m":  # log-uniform in 1 - x; u = 0 is the low end of x
        a, b = math.log(1 - lo), math.log(1 - hi)
        return 1 - _round(math.exp(a + u * (b - a)))  # 1 - x to 3 digits: 0.99996, never 1.0
    return _round(lo + u * (hi - lo))


def to_unit(scale: str, value, bounds) -> float:
    """The inverse of :func:`to_value` (where in its range a value lies, 0..1)."""
    lo, hi = bounds
    if scale == "log":
        return (math.log(value) - math.log(lo)) / (math.log(hi) - math.log(lo))
    if scale == "log1m":
        return (math.log(1 - value) - math.log(1 - lo)) / (math.log(1 - hi) - math.log(1 - lo))
    return (value - lo) / (hi - lo)


def _scales(name: str, rules) -> set[str]:
    return {r.scale(name) for r in rules if name in r.hyper}


def check_space(space: dict, rules) -> str | None:
    """What is wrong with a ``[space]`` table, or None. ``rules``: the
    protocol's optimisers' rules (each declares how its hyper-parameters
    are searched)."""
    for name, bounds in space.items():
        if name == "lr":
            return "lr's range is its grid's (the [lr] table, or the default two decades), not a [space] key"
        if name == "schedule":
            if not (isinstance(bounds, list) and bounds and all(isinstance(s, (str, dict)) for s in bounds)):
                return f"schedule must list schedules, got {bounds!r}"
            continue
        scales = _scales(name, rules)
        if not scales:
            return f"{name!r} is not a hyper-parameter of any of the protocol's optimisers"
        if len(scales) > 1:
            return (f"{name!r} is searched on different scales by the protocol's optimisers "
                    f"({', '.join(sorted(scales))}): give each its own protocol")
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bounds)):
            return f"{name} must be a range [low, high], got {bounds!r}"
        lo, hi = bounds
        if not lo < hi:
            return f"{name} = [{lo}, {hi}] is empty: low must be below high"
        scale = scales.pop()
        if scale == "log" and lo <= 0:
            return f"{name} is searched on a log scale, so its range must be > 0, got [{lo}, {hi}]"
        if scale == "log1m" and not (0 <= lo and hi < 1):
            return f"{name} is a decay rate: its range must lie in [0, 1), got [{lo}, {hi}]"
    return None


def dimensions(space: dict, lr_bounds, rule) -> dict:
    """The searched dimensions of one optimiser: {name: (scale, bounds)} --
    lr, then the [space] keys its rule has."""
    dims = {"lr": (rule.scale("lr"), tuple(lr_bounds))}
    for name, bounds in space.items():
        if name == "schedule":
            dims[name] = ("choice", bounds)
        elif name in rule.hyper:
            dims[name] = (rule.scale(name), tuple(bounds))
    return dims


def trials(dims: dict, k: int, *names: str) -> list[dict]:
    """``k`` settings {name: value} over ``dims``, deterministic in ``names``."""
    keys = list(dims)
    points = halton(k, len(keys), _shift(len(keys), *names))
    return [{key: to_value(dims[key][0], float(u), dims[key][1]) for key, u in zip(keys, p)} for p in points]


def edges(settings: dict, dims: dict) -> list[tuple[str, str]]:
    """(name, "highest" / "lowest") for each numeric dimension whose value lies
    in the outer EDGE of its range."""
    out = []
    for name, value in settings.items():
        scale, bounds = dims[name]
        if scale == "choice" or bounds[0] == bounds[1]:
            continue
        u = to_unit(scale, value, bounds)
        if u >= 1 - EDGE:
            out.append((name, "highest"))
        elif u <= EDGE:
            out.append((name, "lowest"))
    return out


def split(settings: dict) -> tuple[dict, dict]:
    """(settings of the schema, hyper table) of one trial's settings: lr, wd,
    l2 and schedule are settings of their own, the rest the rule's hyper."""
    return ({k: v for k, v in settings.items() if k in BY_NAME},
            {k: v for k, v in settings.items() if k not in BY_NAME})


def describe(settings: dict) -> str:
    """'lr 0.003, gamma 0.95, schedule cosine'."""
    def show(v):
        return v if isinstance(v, str) else (v.get("kind", str(v)) if isinstance(v, dict) else f"{v:g}")

    return ", ".join(f"{k} {show(v)}" for k, v in settings.items())
