"""The lecture's experiments, in its order, and ``results/lecture/report.md``.

``run_lecture(out)`` runs every lecture study (``suite/studies/lecture-*.toml``)
through the normal runner into ``out/<study>/`` (completed cells are skipped,
as by ``optbench run``), the small experiments that are not training runs
(the perceptron, a gradient check, 2-D trajectories, variances at
initialisation, condition numbers) into ``out/custom/*.csv``, Optimal Brain
Damage through :mod:`.obd` into ``out/obd/``, and then writes the report.
``write_lecture_report(out)`` regenerates ``out/report.md`` and
``out/figures/*.png`` from those stored results alone, without training.

The report walks through the lecture (the digest of its slides,
sections 1-12) in its order: for each claim, the figure or table that tests
it and a one-line verdict with the measured number, saying plainly where our
data disagree with the lecture.

The modules (import them directly; this package imports nothing, so the
report's modules load without the training code):

- :mod:`.experiments`: the experiments that are not training runs, pure
  functions of their arguments; :mod:`.perceptron`: Rosenblatt's rule;
- :mod:`.obd`: Optimal Brain Damage (pruning, experiments, figures, sections);
- :mod:`.running`: ``run_lecture`` (``quick=True`` shrinks every study and
  experiment to a smoke test of a few seconds), ``run_custom``, ``run_obd``;
- :mod:`.stored`: where a run keeps its results, and ``Stored``, which reads them;
- :mod:`.measures`: the numbers the report quotes, measured on those tables;
- :mod:`.figures`: the report's figures;
- :mod:`.sections`: one report builder per section of the lecture;
  :mod:`.verdict`: the statuses a claim can get;
- :mod:`.report`: ``write_lecture_report``, which puts the sections together.
"""

