"""The protocol's statistics (suite/protocol/stats.py) against hand-computed
answers, brute force and known distributions. Every random draw is seeded."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from optbench.suite.protocol.stats import (bootstrap_ci, budget_curve, expected_best_of_k, first_reach,
                                  performance_profile, performance_ratios, prob_better,
                                  prob_run_beats, profile_score, quantile_best_of_k,
                                  reach_summary, tau_grid)
from optbench.suite.protocol import stats  # noqa: E402 (the robustness functions, by their module's names)

INF = math.inf


# --------------------------------------------------------------------------
# bootstrap_ci


def test_ci_of_a_large_normal_sample_matches_the_normal_theory_width():
    mu, sigma, n = 1.5, 2.0, 10_000
    x = np.random.default_rng(1).normal(mu, sigma, n)
    point, lo, hi = bootstrap_ci(x, n_boot=5000, seed=2)
    assert point == pytest.approx(x.mean(), rel=1e-12)
    assert lo < mu < hi
    assert lo < point < hi
    assert (hi - lo) == pytest.approx(2 * 1.96 * sigma / math.sqrt(n), rel=0.05)


def test_coverage_over_repeated_samples_from_a_skewed_distribution():
    # 1000 samples of n = 30 from Exp(1) (true mean 1): the percentile
    # interval covers about 92% of the time (a known slight under-coverage
    # for skewed data at small n); with 1000 samples the estimate's standard
    # error is under 0.01.
    rng = np.random.default_rng(7)
    covered = [lo <= 1.0 <= hi for lo, hi in
               (bootstrap_ci(rng.exponential(1.0, 30), seed=i)[1:] for i in range(1000))]
    assert 0.90 <= np.mean(covered) <= 0.98


def test_coverage_is_lower_at_a_lower_level():
    rng = np.random.default_rng(8)
    samples = [rng.normal(0.0, 1.0, 40) for _ in range(400)]
    cov = {lvl: np.mean([lo <= 0.0 <= hi for lo, hi in
                         (bootstrap_ci(s, level=lvl, seed=i)[1:] for i, s in enumerate(samples))])
           for lvl in (0.5, 0.95)}
    assert 0.40 <= cov[0.5] <= 0.60 and 0.90 <= cov[0.95] <= 0.99


def test_deterministic_for_a_seed_and_different_across_seeds():
    x = np.random.default_rng(3).normal(size=25)
    assert bootstrap_ci(x, seed=11) == bootstrap_ci(x, seed=11)
    assert bootstrap_ci(list(x), seed=11) == bootstrap_ci(pd.Series(x), seed=11)
    assert bootstrap_ci(x, seed=11)[1:] != bootstrap_ci(x, seed=12)[1:]


def test_a_stat_without_axis_gives_the_same_interval_as_the_vectorised_one():
    x = np.random.default_rng(4).normal(size=17)
    assert bootstrap_ci(x, stat=lambda v: float(np.mean(v)), seed=5) == pytest.approx(
        bootstrap_ci(x, stat=np.mean, seed=5), rel=1e-12)
    p, lo, hi = bootstrap_ci(x, stat=np.median, n_boot=999, level=0.9, seed=5)
    assert p == np.median(x) and lo <= p <= hi


def test_interval_ends_are_order_statistics_of_the_resampled_stats():
    x = np.arange(10.0)
    _, lo, hi = bootstrap_ci(x, n_boot=2000, seed=0)
    rng = np.random.default_rng(0)
    s = np.sort(x[rng.integers(0, 10, size=(2000, 10))].mean(axis=1))
    assert (lo, hi) == (s[49], s[1949])  # the 50th and 1950th of 2000


def test_inf_values_are_kept_and_make_the_mean_infinite():
    point, lo, hi = bootstrap_ci([1.0, 2.0, INF], seed=0)
    # (2/3)^3 = 30% of resamples miss the diverged run: a finite lower end
    assert point == INF and hi == INF and math.isfinite(lo) and 1.0 <= lo <= 2.0
    # the median ignores one diverged run of 21 at the centre, not in the tail
    point, lo, hi = bootstrap_ci(list(range(20)) + [INF], stat=np.median, seed=0)
    assert point == 10 and math.isfinite(hi)
    # one of five: the median of a resample is inf with P(>= 3 of 5 draws) = 5.8% > 2.5%
    point, lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0, INF], stat=np.median, seed=0)
    assert point == 3.0 and hi == INF and math.isfinite(lo)
    assert bootstrap_ci([INF, INF, INF], seed=0) == (INF, INF, INF)


def test_nan_is_an_error_that_names_it():
    with pytest.raises(ValueError, match="NaN at position.*\\[1\\]"):
        bootstrap_ci([1.0, math.nan, 2.0])
    with pytest.raises(ValueError, match="NaN"):  # std of values holding inf is undefined
        bootstrap_ci([1.0, 2.0, INF], stat=np.std)


def test_one_run_gives_no_interval_and_bad_arguments_are_refused():
    assert bootstrap_ci([4.5]) == (4.5, pytest.approx(math.nan, nan_ok=True),
                                   pytest.approx(math.nan, nan_ok=True))
    p, lo, hi = bootstrap_ci([3.0, 3.0, 3.0])
    assert p == lo == hi == 3.0  # equal runs: every resample agrees
    for bad in ([], [[1.0, 2.0]]):
        with pytest.raises(ValueError):
            bootstrap_ci(bad)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci([1.0, 2.0], n_boot=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], level=1.0)


# --------------------------------------------------------------------------
# prob_better, prob_run_beats


def test_prob_better_is_one_half_for_the_same_runs():
    x = np.random.default_rng(5).normal(size=30)
    assert prob_better(x, x, seed=1) == pytest.approx(0.5, abs=0.05)
    assert prob_better(x, x, lower_is_better=False, seed=1) == pytest.approx(0.5, abs=0.05)
    assert prob_better([2.0, 2.0], [2.0, 2.0]) == 0.5  # every resample ties


def test_prob_better_near_one_for_clearly_separated_runs():
    rng = np.random.default_rng(6)
    a, b = rng.normal(0.0, 1.0, 20), rng.normal(3.0, 1.0, 20)
    assert prob_better(a, b) > 0.99
    assert prob_better(b, a) < 0.01
    assert prob_better(a, b, lower_is_better=False) < 0.01  # accuracies: b is better
    assert prob_better(a, b, seed=3) == prob_better(a, b, seed=3)


def test_prob_better_with_diverged_runs():
    finite = [1.0, 2.0, 3.0]
    assert prob_better([INF] * 3, finite) == 0.0
    assert prob_better(finite, [INF] * 3) == 1.0
    assert prob_better([INF] * 3, [INF] * 2) == 0.5
    # A: best runs but one of ten diverged; its resampled mean is finite
    # (and then better) only when the resample misses it: 0.9^10 = 35%
    p = prob_better([0.1] * 9 + [INF], [5.0] * 10, n_boot=4000)
    assert p == pytest.approx(0.9 ** 10, abs=0.03)
    # the median is robust to it
    assert prob_better([0.1] * 9 + [INF], [5.0] * 10, stat=np.median) > 0.99
    with pytest.raises(ValueError, match="b contains NaN"):
        prob_better([1.0], [math.nan])


def test_prob_run_beats_by_hand():
    # pairs (a, b): (1,2) win, (1,4) win, (2,2) tie, (2,4) win, (3,2) loss, (3,4) win
    assert prob_run_beats([1, 2, 3], [2, 4]) == 4.5 / 6
    assert prob_run_beats([1, 2, 3], [2, 4], lower_is_better=False) == 1.5 / 6
    assert prob_run_beats([5.0], [5.0]) == 0.5
    assert prob_run_beats([1.0, INF], [INF]) == 0.75  # a win and a tie
    assert prob_run_beats([INF], [1e300]) == 0.0


def test_prob_run_beats_against_brute_force_and_mann_whitney():
    rng = np.random.default_rng(9)
    for _ in range(20):
        a = rng.integers(0, 6, rng.integers(1, 9)).astype(float)
        b = rng.integers(0, 6, rng.integers(1, 9)).astype(float)
        a[rng.random(a.size) < 0.1] = INF
        brute = np.mean([(x < y) + 0.5 * (x == y) for x in a for y in b])
        assert prob_run_beats(a, b) == pytest.approx(brute, abs=1e-15)
        assert prob_run_beats(a, b) + prob_run_beats(b, a) == pytest.approx(1.0, abs=1e-15)
    stats = pytest.importorskip("scipy.stats")
    a, b = rng.normal(size=13), rng.normal(0.5, 1.0, 11)
    u = stats.mannwhitneyu(a, b, alternative="two-sided").statistic  # pairs with a > b
    assert prob_run_beats(a, b, lower_is_better=False) == pytest.approx(u / (13 * 11), rel=1e-12)


# --------------------------------------------------------------------------
# time to target


def _long_table():
    rows = []

    def run(cell, losses, diverged=None, seed=0):
        for i, loss in enumerate(losses):
            rows.append({"cell": cell, "epoch": i, "step": 10 * i, "wall_time": 0.5 * i,
                         "val_loss": loss, "val_acc": 1.0 - loss / 4,
                         "diverged": bool(diverged and diverged[i]), "seed": seed})

    run("fast", [3.0, 2.0, 1.0, 0.5], seed=1)                    # reaches 1.0 at step 20
    run("slow", [3.0, 2.5, 2.0, 1.5], seed=2)                    # never: censored
    run("blowup", [3.0, 2.0, math.nan], [0, 0, 1], seed=3)       # diverged before reaching
    run("flagged", [3.0, 0.8, 0.7], [0, 0, 1], seed=4)           # reached at 10, diverged later
    run("liar", [3.0, 2.0, 0.1], [0, 0, 1], seed=5)              # a finite loss on a diverged row
    return pd.DataFrame(rows)


def test_first_reach_counts_censored_runs_with_inf():
    df = _long_table()
    out = first_reach(df, "val_loss", 1.0, keep=["seed"])
    assert list(out["cell"]) == ["fast", "slow", "blowup", "flagged", "liar"]
    assert list(out["time"]) == [20.0, INF, INF, 10.0, INF]
    assert list(out["reached"]) == [True, False, False, True, False]
    assert list(out["observed_until"]) == [30.0, 30.0, 20.0, 20.0, 20.0]
    assert list(out["seed"]) == [1, 2, 3, 4, 5]
    # row order does not matter; other clocks and accuracies
    shuffled = df.sample(frac=1.0, random_state=0)
    by_wall = first_reach(shuffled, "val_loss", 1.0, time_col="wall_time").set_index("cell")
    assert by_wall.loc["fast", "time"] == 1.0 and by_wall.loc["slow", "time"] == INF
    acc = first_reach(df, "val_acc", 0.75, lower_is_better=False).set_index("cell")["time"]
    assert acc.to_dict() == {"fast": 20.0, "slow": INF, "blowup": INF, "flagged": 10.0, "liar": INF}


def test_first_reach_refuses_bad_tables():
    df = _long_table()
    with pytest.raises(ValueError, match="no column.*'val_los'"):
        first_reach(df, "val_los", 1.0)
    with pytest.raises(ValueError, match="'val_loss' varies within run"):
        first_reach(df, "val_loss", 1.0, keep=["val_loss"])
    bad = df.assign(diverged=df["diverged"].map({True: "yes", False: "no"}))
    with pytest.raises(ValueError, match="diverged"):
        first_reach(bad, "val_loss", 1.0)
    # diverged read back from a CSV as text is understood
    text = df.assign(diverged=df["diverged"].map({True: "True", False: "False"}))
    assert list(first_reach(text, "val_loss", 1.0)["time"]) == [20.0, INF, INF, 10.0, INF]


def test_reach_summary_fraction_and_median_under_censoring():
    s = reach_summary([10.0, 20.0, INF, 30.0, INF])
    assert (s["runs"], s["reached"], s["fraction"], s["median"]) == (5, 3, 0.6, 30.0)
    # the median of a resample is censored with P(>= 3 of 5 inf) = 32%
    assert s["median_hi"] == INF and math.isfinite(s["median_lo"]) and s["median_lo"] >= 10.0
    assert reach_summary([10.0, INF, 30.0, INF, INF])["median"] == INF     # fewer than half
    assert reach_summary([10.0, 20.0, INF, INF])["median"] == INF          # exactly half
    assert reach_summary([10.0, 20.0, 40.0, INF])["median"] == 30.0        # more than half
    s = reach_summary(first_reach(_long_table(), "val_loss", 1.0))
    assert (s["runs"], s["reached"], s["fraction"], s["median"]) == (5, 2, 0.4, INF)
    s = reach_summary(np.arange(1.0, 102.0), seed=1)
    assert s["median"] == 51.0 and s["median_lo"] < 51.0 < s["median_hi"] < INF
    empty = reach_summary([])
    assert empty["runs"] == 0 and math.isnan(empty["fraction"]) and math.isnan(empty["median"])
    one = reach_summary([INF])
    assert one["fraction"] == 0.0 and one["median"] == INF and math.isnan(one["median_lo"])
    with pytest.raises(ValueError, match="times contains NaN"):
        reach_summary([1.0, math.nan])


# --------------------------------------------------------------------------
# performance profiles


def _times():
    return pd.DataFrame({"sgd": [10.0, INF, INF], "adam": [20.0, 30.0, INF], "lion": [40.0, 15.0, INF]},
                        index=pd.Index(["mlp", "cnn", "hard"], name="workload"))


def test_performance_profile_by_hand():
    # ratios: mlp 1, 2, 4; cnn inf, 2, 1; hard: nobody reaches it -> inf for all
    r = performance_ratios(_times())
    assert r.loc["mlp"].tolist() == [1.0, 2.0, 4.0]
    assert r.loc["cnn"].tolist() == [INF, 2.0, 1.0]
    assert r.loc["hard"].tolist() == [INF, INF, INF]
    prof = performance_profile(_times(), [1.0, 1.5, 2.0, 3.0, 4.0, 10.0])
    assert prof.index.name == "tau" and list(prof.columns) == ["sgd", "adam", "lion"]
    third = 1 / 3
    assert prof["sgd"].tolist() == pytest.approx([third] * 6)
    assert prof["adam"].tolist() == pytest.approx([0, 0, 2 * third, 2 * third, 2 * third, 2 * third])
    assert prof["lion"].tolist() == pytest.approx([third] * 4 + [2 * third] * 2)
    # the unsolved workload stays in the denominator: nobody reaches 1
    assert prof.attrs == {"unsolved": ["hard"], "n_workloads": 3}
    assert (prof.to_numpy() < 1).all()


def test_profile_score_is_the_normalised_area():
    prof = performance_profile(_times(), tau_grid(4.0, 2000))
    score = profile_score(prof, 4.0)
    # exact: (1/W) sum_w (4 - r_w)^+ / 3 -> sgd 3/9, adam (2 + 2)/9, lion (0 + 3)/9
    assert score.to_dict() == pytest.approx({"sgd": 3 / 9, "adam": 4 / 9, "lion": 3 / 9}, abs=1e-3)
    assert score.name == "score"
    # a profile that is 1 everywhere scores 1; on an unsorted grid too
    ones = pd.DataFrame({"x": [1.0, 1.0, 1.0]}, index=[4.0, 1.0, 2.5])
    assert profile_score(ones, 4.0)["x"] == pytest.approx(1.0)
    # a grid beyond tau_max: only [1, tau_max] counts
    wide = performance_profile(_times(), np.concatenate([tau_grid(1.9, 500), [3.0, 50.0]]))
    assert profile_score(wide, 1.9).tolist() == pytest.approx([1 / 3, 0.0, 1 / 3], abs=1e-12)
    with pytest.raises(ValueError, match="do not contain 4.0"):
        profile_score(performance_profile(_times(), [1.0, 2.0, 3.0]), 4.0)


def test_profile_score_within_its_documented_error_bound():
    rng = np.random.default_rng(12)
    t = rng.lognormal(3.0, 0.5, size=(25, 4))
    t[rng.random(t.shape) < 0.15] = INF
    times = pd.DataFrame(t, columns=list("abcd"))
    r = performance_ratios(times).to_numpy()
    exact = np.clip(4.0 - r, 0.0, None).mean(axis=0) / 3.0
    for num in (30, 300, 3000):
        grid = tau_grid(4.0, num)
        bound = np.diff(grid).max() / (2 * 3.0)
        got = profile_score(performance_profile(times, grid), 4.0).to_numpy()
        assert np.all(np.abs(got - exact) <= bound + 1e-12)
        assert 0.0 <= got.min() and got.max() <= 1.0


def test_performance_profile_refuses_bad_times():
    with pytest.raises(ValueError, match="NaN for workload 'cnn', optimiser 'adam'"):
        performance_profile(_times().assign(adam=[20.0, math.nan, INF]), [1.0])
    with pytest.raises(ValueError, match="times must be > 0"):
        performance_profile(_times().assign(sgd=[0.0, INF, INF]), [1.0])
    with pytest.raises(ValueError, match="finite"):
        performance_profile(_times(), [1.0, INF])
    with pytest.raises(ValueError, match="tau_max"):
        tau_grid(1.0)
    g = tau_grid(4.0, 7)
    assert g[0] == 1.0 and g[-1] == 4.0 and np.all(np.diff(np.log(g)) == pytest.approx(math.log(4) / 6))


# --------------------------------------------------------------------------
# tuning budgets


def _brute_best(scores, k, lower_is_better=True):
    pick = min if lower_is_better else max
    return [pick(scores[i] for i in draw) for draw in itertools.product(range(len(scores)), repeat=k)]


@pytest.mark.parametrize("scores", [[3.0, 1.0, 2.0, 1.0], [0.5, 7.0, 2.25], [4.0], [2.0, 2.0]])
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_expected_best_of_k_against_enumeration(scores, k):
    for lower in (True, False):
        brute = np.mean(_brute_best(scores, k, lower))
        assert expected_best_of_k(scores, k, lower_is_better=lower) == pytest.approx(brute, rel=1e-12)
        # the q-quantile of the best: the smallest (in goodness) value whose
        # probability of doing at least as well reaches q
        bests = sorted(_brute_best(scores, k, lower), reverse=not lower)
        for q in (0.25, 0.5, 0.9):
            j = math.ceil(q * len(bests) - 1e-9) - 1
            assert quantile_best_of_k(scores, k, q, lower_is_better=lower) == bests[j]


def test_expected_best_of_k_limits_and_infinities():
    scores = [5.0, 1.0, 3.0, 2.0]
    assert expected_best_of_k(scores, 1) == pytest.approx(np.mean(scores))
    assert expected_best_of_k(scores, 10_000) == 1.0
    assert expected_best_of_k(scores, 10_000, lower_is_better=False) == 5.0
    # a diverged point: the expectation is infinite at every k ...
    assert expected_best_of_k([1.0, 2.0, INF], 1) == INF
    assert expected_best_of_k([1.0, 2.0, INF], 50) == INF
    assert expected_best_of_k([0.9, 0.1, -INF], 3, lower_is_better=False) == -INF
    # ... its median is not
    assert quantile_best_of_k([1.0, 2.0, INF], 3, 0.5) == 1.0
    assert quantile_best_of_k([1.0, INF, INF], 1, 0.5) == INF
    with pytest.raises(ValueError, match="-inf is not a score"):
        expected_best_of_k([1.0, -INF], 2)
    with pytest.raises(ValueError, match="k must be"):
        expected_best_of_k([1.0], 0)
    with pytest.raises(ValueError, match="NaN"):
        expected_best_of_k([1.0, math.nan], 2)


def _grid_runs(diverged_point=False):
    rng = np.random.default_rng(10)
    lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
    rows = [{"hp_point": f"lr={lr:g}", "seed": s, "score": (math.log10(lr) + 2.5) ** 2 + rng.normal(0, 0.2)}
            for lr in lrs for s in range(5)]
    if diverged_point:
        rows.append({"hp_point": "lr=1", "seed": 0, "score": INF})
    return pd.DataFrame(rows)


def test_budget_curve_is_monotone_and_reaches_the_best_grid_mean():
    runs = _grid_runs()
    ks = [1, 2, 3, 4, 6, 8, 16, 32, 1000]
    curve = budget_curve(runs, ks, n_boot=500, seed=1)
    assert curve.index.name == "k" and list(curve.index) == ks
    for col in ("best", "lo", "hi"):
        assert np.all(np.diff(curve[col].to_numpy()) <= 0), col
    means = runs.groupby("hp_point")["score"].mean()
    assert curve.loc[1, "best"] == pytest.approx(means.mean(), rel=1e-12)
    assert curve.loc[1000, "best"] == pytest.approx(means.min(), rel=1e-12)
    assert (curve["lo"] <= curve["best"]).all() and (curve["best"] <= curve["hi"]).all()
    assert curve.loc[1, "hi"] - curve.loc[1, "lo"] > 0
    assert curve.equals(budget_curve(runs, ks, n_boot=500, seed=1))
    # accuracies: the same curve mirrored
    acc = budget_curve(runs.assign(score=-runs["score"]), ks, n_boot=500, seed=1, lower_is_better=False)
    assert np.allclose(acc["best"], -curve["best"]) and np.allclose(acc["lo"], -curve["hi"])
    assert np.all(np.diff(acc["best"].to_numpy()) >= 0)


def test_budget_curve_with_a_diverged_point_and_bad_input():
    runs = _grid_runs(diverged_point=True)
    assert (budget_curve(runs, [1, 4], n_boot=200)["best"] == INF).all()
    med = budget_curve(runs, [1, 4, 100], n_boot=200, quantile=0.5)
    assert np.isfinite(med["best"]).all() and med.loc[100, "best"] == pytest.approx(
        runs[np.isfinite(runs["score"])].groupby("hp_point")["score"].mean().min())
    with pytest.raises(ValueError, match="appears more than once"):
        budget_curve(pd.concat([runs, runs.iloc[:1]]), [1])
    with pytest.raises(ValueError, match="no column"):
        budget_curve(runs.rename(columns={"score": "loss"}), [1])
    renamed = runs.rename(columns={"score": "loss", "hp_point": "lr"})
    assert budget_curve(renamed, 2, n_boot=50, point_col="lr", score_col="loss").equals(
        budget_curve(runs, 2, n_boot=50))


# --- how far the conclusions hold (stats.robustness) ----------------------------------------------

def test_the_exact_score_is_the_profiles_area():
    rng = np.random.default_rng(3)
    t = rng.uniform(100, 1000, size=(6, 4))
    t[rng.random((6, 4)) < 0.3] = np.inf
    t[5] = np.inf  # a workload nobody solves
    times = pd.DataFrame(t, index=[f"w{i}" for i in range(6)], columns=list("abcd"))
    area = stats.profile_score(stats.performance_profile(times, stats.tau_grid(4.0)), 4.0)
    assert np.allclose(stats.scores_from_times(t, 4.0), area.to_numpy(), atol=1e-3)


def test_the_score_interval_says_how_sure_the_lead_is():
    rng = np.random.default_rng(0)
    fast = {(f"w{i}", "fast"): rng.normal(100, 5, 10) for i in range(4)}
    slow = {(f"w{i}", "slow"): rng.normal(300, 5, 10) for i in range(4)}
    twin = {(f"w{i}", "twin"): v.copy() for (w, o), v in fast.items() for i in [int(w[1:])]}
    clear = stats.score_interval({**fast, **slow}, [f"w{i}" for i in range(4)], ["slow", "fast"])
    assert clear["top"] == "fast" and clear["second"] == "slow" and clear["p_top"] == 1.0
    point, lo, hi = clear["score"]["fast"]
    assert point == 1.0 and lo <= point <= hi
    tied = stats.score_interval({**fast, **twin}, [f"w{i}" for i in range(4)], ["fast", "twin"])
    assert abs(tied["p_top"] - 0.5) < 0.1  # the same runs: neither leads
    never = {("w0", "a"): np.full(4, np.inf), ("w0", "b"): np.array([10.0, 12.0, np.inf, 11.0])}
    s = stats.score_interval(never, ["w0"], ["a", "b"])
    assert s["score"]["a"][0] == 0.0 and s["score"]["b"][0] == 1.0


def test_the_width_of_the_good_lrs():
    lrs = np.array([1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    wide = np.array([[2.0], [1.04], [1.0], [1.03], [5.0]])
    assert stats.good_lr_width(lrs, wide) == pytest.approx(1.0)  # 3e-3 .. 3e-2
    alone = np.array([[2.0], [1.2], [1.0], [1.1], [np.inf]])
    assert stats.good_lr_width(lrs, alone) == 0.0
    gap = np.array([[1.01], [1.5], [1.0], [1.2], [1.0]])  # good lrs that are not consecutive do not count
    assert stats.good_lr_width(lrs, gap) == 0.0
    seeds = np.hstack([wide, wide * 1.01, alone])
    width, lo, hi = stats.tunability(lrs, seeds)
    assert lo <= width <= hi and lo == 0.0
    assert np.isnan(stats.tunability(lrs, wide)[1])  # one seed: no interval


def test_kendalls_tau_matches_scipys_tau_b():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = rng.integers(0, 4, 7).astype(float), rng.integers(0, 4, 7).astype(float)
        if len(set(a)) > 1 and len(set(b)) > 1:
            assert stats.kendall_tau(a, b) == pytest.approx(scipy_stats.kendalltau(a, b).statistic)
    assert stats.kendall_tau([1, 2, np.inf, np.inf], [1, 2, 3, 3]) == pytest.approx(1.0)
    assert stats.kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert np.isnan(stats.kendall_tau([1, 1, 1], [1, 2, 3]))


def test_the_ranking_agreement_of_a_settled_and_of_a_reversed_race():
    rng = np.random.default_rng(2)
    runs = [rng.normal(m, 0.01, 5) for m in (1.0, 2.0, 3.0)]
    assert stats.ranking_agreement(runs, runs) == (1.0, 1.0, 1.0)
    tau, lo, hi = stats.ranking_agreement(runs, runs[::-1])
    assert tau == -1.0 and hi == -1.0


def test_the_difference_of_means_and_its_interval():
    a, b = np.array([3.0, 3.2, 2.8, 3.1]), np.array([1.0, 1.1, 0.9, 1.0])
    gain, lo, hi = stats.mean_difference(a, b)
    assert gain == pytest.approx(a.mean() - b.mean()) and lo <= gain <= hi and lo > 1.5
    assert stats.mean_difference(np.array([1.0, np.inf]), b)[0] == np.inf
    assert np.isnan(stats.mean_difference(np.array([np.inf]), np.array([np.inf]))[0])
