"""The bracketing rule: log grids on the 1-3-10 series, and the lr a grid
needs next when its best value sits on an edge."""

import pytest

from optbench.kernels import RULES, get_rule
from optbench.suite.protocol.tuning import centre, log_grid, next_lr


def test_grids_span_two_decades_on_the_one_three_ten_series():
    assert log_grid(0.1) == [0.01, 0.03, 0.1, 0.3, 1.0]
    assert log_grid(3e-3) == [3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
    assert log_grid(1e-3, decades=2, per_decade=3) == [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2]
    for mid in (1e-4, 0.002, 0.07, 1.0):
        grid = log_grid(mid)
        assert max(grid) / min(grid) == pytest.approx(100, rel=0.1)  # two decades
        assert grid == sorted(grid) and len(set(grid)) == len(grid)


def test_an_edge_best_extends_the_grid_one_step_that_way():
    grid = [0.01, 0.03, 0.1, 0.3, 1.0]
    assert next_lr(grid, 1.0, False) == 3.0
    assert next_lr(grid, 0.01, False) == 0.003
    for inside in (0.03, 0.1, 0.3):
        assert next_lr(grid, inside, False) is None
    assert next_lr(grid, 0.1, True) == 0.003  # every lr diverged: smaller
    assert next_lr([0.1], 0.1, False) == 0.3  # one point is an edge on both sides
    assert next_lr(log_grid(1e-3, 2, 3), 1e-2, False, per_decade=3) == 2e-2


def test_repeated_extension_walks_the_series_and_stops_once_bracketed():
    # A loss with its minimum at lr = 3: the walk from the default grid brackets it.
    def loss(lr):
        return abs(__import__("math").log10(lr / 3.0))
    grid = log_grid(0.1)
    for _ in range(5):
        best = min(grid, key=loss)
        extra = next_lr(grid, best, False)
        if extra is None:
            break
        grid = sorted(grid + [extra])
    assert min(grid, key=loss) == 3.0 and max(grid) == 10.0


def test_a_grid_is_centred_on_the_rules_own_tuning_centre():
    """Each rule carries its tuning centre (Rule.lr_centre, else its default
    lr); a workload scales it."""
    assert centre("adam", 10.0) == pytest.approx(10 * get_rule("adam").lr_centre) == pytest.approx(0.03)
    for name, rule in RULES.items():
        assert centre(name) == (rule.lr_centre if rule.lr_centre is not None else rule.hyper["lr"])
        assert centre(name) in rule.interval("lr")
