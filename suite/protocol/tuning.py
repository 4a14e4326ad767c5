"""Tuning that brackets the optimum: log-spaced learning-rate grids and the
rule that extends a grid whose best value sits on its edge.

A grid is ``per_decade`` points per decade spanning ``decades`` decades
(at least 2 by default) around a centre: the rule's usual learning rate
(``Rule.lr_centre``, what a small MLP usually wants; a rule without one is
centred on its default lr) times the workload's scale. Point j is 10^(j / per_decade)
rounded to one significant digit -- the 1-3-10 series for two points a
decade, 1-2-5 for three -- so every lr is a short, exactly reproducible
number, and grids of different rules line up on the same values.

Bracketing (:func:`next_lr`): after a round of tuning runs, each
optimiser's best lr is the one with the lowest mean final metric (the
workload's validation loss or error) over the tuning seeds (a diverged run
counts as +inf, :func:`suite.studies.scoring.best_lrs`). If it is the largest lr tried, one
more grid step above is added; if the smallest, one below; if every lr
diverged, one below the smallest. The runner trains the new cells and asks
again, for at most ``rounds`` rounds; an optimiser still on an edge after
that is flagged in the report. A best lr with a worse (or diverged) lr on
both sides is bracketed: the optimum lies within one grid step of it.
"""

from __future__ import annotations

import math

from optbench.kernels import get_rule

DECADES = 2
PER_DECADE = 2
ROUNDS = 3


def round_lr(x: float) -> float:
    """x to one significant digit (0.0316... -> 0.03)."""
    return float(f"{x:.1g}")


def centre(optimizer: str, scale: float = 1.0) -> float:
    """The centre of ``optimizer``'s grid: its rule's tuning centre times ``scale``."""
    return get_rule(optimizer).tuning_centre * scale


def _index(lr: float, per_decade: int) -> int:
    """The grid position j of ``lr`` (the nearest 10^(j / per_decade))."""
    return round(math.log10(lr) * per_decade)


def _at(j: int, per_decade: int) -> float:
    return round_lr(10 ** (j / per_decade))


def log_grid(mid: float, decades: float = DECADES, per_decade: int = PER_DECADE) -> list[float]:
    """``per_decade`` points per decade over ``decades`` decades centred on the
    grid point nearest ``mid`` (both ends included: decades x per_decade + 1 points)."""
    if decades <= 0 or per_decade < 1 or not mid > 0:
        raise ValueError(f"a grid needs decades > 0, per_decade >= 1 and a centre > 0, "
                         f"got {decades}, {per_decade}, {mid}")
    c, half = _index(mid, per_decade), round(decades * per_decade / 2)
    return [_at(j, per_decade) for j in range(c - half, c + half + 1)]


def next_lr(lrs, best: float, all_diverged: bool, per_decade: int = PER_DECADE) -> float | None:
    """The lr to add so the grid brackets the best one, or None when it does
    (see the module docstring)."""
    lo, hi = _index(min(lrs), per_decade), _index(max(lrs), per_decade)
    j = _index(best, per_decade)
    if all_diverged or (j == lo and lo != hi):
        return _at(lo - 1, per_decade)
    if j == hi:
        return _at(hi + 1, per_decade)
    return None
