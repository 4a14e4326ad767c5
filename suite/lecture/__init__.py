"""The lecture's experiments, in its order, and ``results/lecture/report.md``.

``run_lecture(out)`` runs every lecture study (``suite/studies/lecture-*.toml``)
through the normal runner into ``out/<study>/`` (completed cells are skipped,
as by ``optbench run``), the small experiments that are not training runs
(the perceptron, a gradient check, 2-D trajectories, variances at
initialisation, condition numbers) into ``out/custom/*.csv``, Optimal Brain
Damage through :mod:`suite.obd` into ``out/obd/``, and then writes the report.
``write_lecture_report(out)`` regenerates ``out/report.md`` and
``out/figures/*.png`` from those stored results alone, without training.

The report walks through the lecture (the digest of its slides,
sections 1-12) in its order: for each claim, the figure or table that tests
it and a one-line verdict with the measured number, saying plainly where our
data disagree with the lecture.

The modules:

- :mod:`.experiments`: the experiments that are not training runs, pure
  functions of their arguments;
- :mod:`.running`: ``run_lecture`` (``quick=True`` shrinks every study and
  experiment to a smoke test of a few seconds), ``run_custom``, ``run_obd``;
- :mod:`.stored`: where a run keeps its results, and ``Stored``, which reads them;
- :mod:`.measures`: the numbers the report quotes, measured on those tables;
- :mod:`.formatting`: how the report writes numbers and tables;
- :mod:`.figures`: the report's figures;
- :mod:`.sections`: one report builder per section of the lecture;
- :mod:`.report`: ``write_lecture_report``, which puts the sections together.
"""

from ..inits import INITS
from .experiments import (TEST_FUNCTIONS, gradient_check, init_statistics, layer_statistics, minibatch_paths,
                          optimizer_path, path_score, perceptron_experiment, trajectory_table, tune_path)
from .measures import best_lr, curve_noise, reach_epochs, steps_to, variance_ratios
from .report import write_lecture_report
from .running import quick_study, run_custom, run_lecture, run_obd
from .sections import section_obd
from .stored import DEFAULT_OUT, STUDIES, TIMING, Stored

__all__ = [
    "DEFAULT_OUT", "INITS", "STUDIES", "TEST_FUNCTIONS", "TIMING", "Stored", "best_lr", "curve_noise",
    "gradient_check", "init_statistics", "layer_statistics", "minibatch_paths", "optimizer_path", "path_score",
    "perceptron_experiment", "quick_study", "reach_epochs", "run_custom", "run_lecture", "run_obd",
    "section_obd", "steps_to", "trajectory_table", "tune_path", "variance_ratios", "write_lecture_report",
]
