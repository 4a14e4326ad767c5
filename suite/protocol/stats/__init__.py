"""The protocol's statistics: pure functions over arrays and tables of results.

Nothing here trains, reads files or draws figures; every random draw comes
from ``numpy.random.default_rng(seed)``, so each result is a function of its
arguments alone (same inputs and seed, same numbers, bit for bit).

Conventions shared by every function:

- **A run is the unit of replication.** Bootstrap intervals resample runs
  (seeds), never evaluation points within a run.
- **A diverged run is a result, not missing data.** It enters as +inf loss
  (or +inf time-to-target) and is never dropped: dropping it would make an
  unstable optimiser look better than it is. Statistics that an inf makes
  infinite (the mean) say so by being inf; the median and the rank-based
  statistics stay finite while fewer than half the runs diverge.
- **NaN is an error.** A NaN is neither a loss nor a divergence; every
  function refuses it with a ValueError that names the argument.
- **Orientation.** ``lower_is_better=True`` (the default) is for losses,
  error rates and times; ``False`` for accuracies. "Better" always follows it.
- **Percentile intervals are order statistics.** For B bootstrap statistics
  sorted s_(1) <= ... <= s_(B) and level 1 - alpha, the interval is
  [s_(ceil(B alpha/2)), s_(ceil(B (1 - alpha/2)))] (the inverted empirical
  CDF, no interpolation: interpolating between a finite value and inf, or
  between two infs, is undefined).

Contents:

- :func:`bootstrap_ci`: percentile bootstrap interval of a statistic of runs;
- :func:`prob_better`: bootstrap probability that A's mean beats B's;
- :func:`prob_run_beats`: exact probability that a random run of A beats a
  random run of B (the common-language effect size);
- :func:`first_reach`, :func:`reach_summary`: time-to-target with censoring;
- :func:`performance_ratios`, :func:`performance_profile`,
  :func:`tau_grid`, :func:`profile_score`: Dolan-More performance profiles
  and AlgoPerf's score;
- :func:`expected_best_of_k`, :func:`quantile_best_of_k`,
  :func:`budget_curve`: what a tuning budget of k trials buys;
- :func:`score_interval`, :func:`tunability`, :func:`ranking_agreement`
  (with :func:`scores_from_times`, :func:`good_lr_width`,
  :func:`kendall_tau`), :func:`mean_difference`: how far a comparison's
  conclusions hold -- the profile score's interval, the width of the good
  lrs, whether the ranking part-way through the budget is the final one,
  and what tuning bought over the defaults;
- :func:`scaling_exponent` (with :func:`best_log_lr`, :func:`scaling_verdict`):
  the exponent k of best lr ∝ batch^k, with its interval, and which of the
  linear and square-root rules it admits.
"""

from .bootstrap import bootstrap_ci, prob_better, prob_run_beats
from .budget import budget_curve, expected_best_of_k, quantile_best_of_k
from .profiles import performance_profile, performance_ratios, profile_score, tau_grid
from .robustness import (good_lr_width, kendall_tau, mean_difference, ranking_agreement, score_interval,
                         scores_from_times, tunability)
from .scaling import best_log_lr, scaling_exponent
from .scaling import verdict as scaling_verdict
from .target import first_reach, reach_summary

__all__ = ["best_log_lr", "bootstrap_ci", "budget_curve", "expected_best_of_k", "first_reach", "good_lr_width",
           "kendall_tau", "mean_difference", "performance_profile", "performance_ratios", "prob_better",
           "prob_run_beats", "profile_score", "quantile_best_of_k", "ranking_agreement", "reach_summary",
           "scaling_exponent", "scaling_verdict", "score_interval", "scores_from_times", "tau_grid", "tunability"]
