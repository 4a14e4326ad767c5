"""The batch-size fit (stats.scaling): the best lr located on a grid, the
exponent of best lr ∝ batch^k with its interval, and the rule it admits."""

import math

import numpy as np
import pytest

from optbench.suite.protocol.stats import best_log_lr, scaling_exponent, scaling_verdict


def bowl(log_lrs, centre, seeds=1, noise=0.0, rng=None):
    """A metric with its minimum at log10 lr = centre: (lrs, seeds)."""
    x = np.asarray(log_lrs, dtype=float)[:, None]
    base = 1.0 + 0.3 * (x - centre) ** 2
    return base + (noise * rng.standard_normal((len(x), seeds)) if noise else np.zeros((len(x), seeds)))


def test_the_best_lr_is_the_vertex_of_the_parabola_through_the_best_point():
    x = np.log10([0.01, 0.03, 0.1, 0.3, 1.0])
    centre = math.log10(0.05)
    assert best_log_lr(x, bowl(x, centre)[:, 0]) == pytest.approx(centre, abs=0.02)
    # exact on a parabola in the grid's own coordinates
    xs = np.array([-2.0, -1.5, -1.0, -0.5, 0.0])
    assert best_log_lr(xs, 1 + (xs + 1.2) ** 2) == pytest.approx(-1.2)


def test_at_an_edge_or_beside_a_divergence_the_best_lr_is_the_grid_point():
    x = np.array([-3.0, -2.5, -2.0])
    assert best_log_lr(x, [1.0, 2.0, 3.0]) == -3.0
    assert best_log_lr(x, [3.0, 2.0, 1.0]) == -2.0
    assert best_log_lr(x, [2.0, 1.0, np.inf]) == -2.5
    assert math.isnan(best_log_lr(x, [np.inf] * 3))
    # a flat bottom stays between the neighbours
    assert -3.0 <= best_log_lr(x, [1.0, 1.0, 1.0]) <= -2.0


@pytest.mark.parametrize("k", [1.0, 0.5, 0.0])
def test_the_exponent_of_a_power_law_is_recovered_with_an_interval_that_holds_it(k):
    rng = np.random.default_rng(1)
    batches = [16, 32, 64, 128, 256, 512, 1024]
    grids = []
    for b in batches:
        centre = math.log10(0.01) + k * math.log10(b / 16)
        lrs = 10 ** (np.arange(round(centre * 2) - 4, round(centre * 2) + 5) / 2)
        grids.append((lrs, bowl(np.log10(lrs), centre, seeds=4, noise=0.01, rng=rng)))
    fit = scaling_exponent(batches, grids, n_boot=300)
    assert fit["k"] == pytest.approx(k, abs=0.08)
    assert fit["lo"] <= k <= fit["hi"] and fit["hi"] - fit["lo"] < 0.3
    assert fit["residual"] < 0.25 and len(fit["best_lr"]) == len(batches)
    expected = {1.0: "linear", 0.5: "square root", 0.0: "neither"}[k]
    assert scaling_verdict(fit["lo"], fit["hi"]) == expected


def test_noise_widens_the_interval_and_one_seed_gives_none():
    rng = np.random.default_rng(2)
    batches = [16, 64, 256]
    lrs = 10 ** (np.arange(-8, 1) / 2)
    quiet = [(lrs, bowl(np.log10(lrs), -2 + 0.5 * i, seeds=4, noise=0.002, rng=rng)) for i in range(3)]
    loud = [(lrs, bowl(np.log10(lrs), -2 + 0.5 * i, seeds=4, noise=0.3, rng=rng)) for i in range(3)]
    a, b = scaling_exponent(batches, quiet, n_boot=300), scaling_exponent(batches, loud, n_boot=300)
    assert b["hi"] - b["lo"] > a["hi"] - a["lo"]
    one = scaling_exponent(batches, [(x, s[:, :1]) for x, s in quiet])
    assert math.isfinite(one["k"]) and math.isnan(one["lo"]) and math.isnan(one["hi"])
    assert scaling_verdict(one["lo"], one["hi"]) == "no interval"


def test_the_verdict_names_what_the_interval_admits():
    assert scaling_verdict(0.8, 1.2) == "linear"
    assert scaling_verdict(0.3, 0.6) == "square root"
    assert scaling_verdict(0.4, 1.1).startswith("both")
    assert scaling_verdict(1.2, 1.5) == "neither"


def test_bad_grids_are_refused():
    lrs = [0.01, 0.1, 1.0]
    with pytest.raises(ValueError, match="at least two batch sizes"):
        scaling_exponent([16, 16], [(lrs, np.ones((3, 2)))] * 2)
    with pytest.raises(ValueError, match="same tuning seeds"):
        scaling_exponent([16, 32], [(lrs, np.ones((3, 2))), (lrs, np.ones((3, 3)))])
