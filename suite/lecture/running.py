"""Running the lecture: every lecture study through the normal runner, the
experiments that are not training runs, and Optimal Brain Damage, then the
report (``run_lecture``)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import pandas as pd

from ..data import datasets
from ..reporting.files import atomic_write_csv, atomic_write_text
from ..reporting.kinds import write_kind
from .experiments import (condition_table, gradient_check, init_statistics, minibatch_paths, perceptron_experiment,
                          trajectory_table)
from .report import write_lecture_report
from .stored import CUSTOM, DEFAULT_OUT, STUDIES


def quick_study(study):
    """A tiny version of a study for smoke tests: the first seed, the first lr
    of each group of cells, one epoch, hidden layers at most 16 wide."""
    from ..studies.spec import Cell, cell_key

    first_seed = min(c.config.seed for c in study.cells)
    cells, groups = [], set()
    for cell in study.cells:
        c = cell.config
        if c.seed != first_seed:
            continue
        small = dataclasses.replace(c, workload=dataclasses.replace(
            c.workload, epochs=1, hidden=tuple(min(h, 16) for h in c.workload.hidden)))
        group = cell_key(dataclasses.replace(small, optimizer=dataclasses.replace(
            small.optimizer, given={k: v for k, v in small.optimizer.given.items() if k != "lr"})))
        if group not in groups:
            groups.add(group)
            cells.append(Cell(small, cell_key(small)))
    return dataclasses.replace(study, cells=tuple(cells))


def run_custom(out: Path, quick: bool = False) -> dict[str, float]:
    """The experiments that are not studies, into ``out/custom/*.csv``;
    returns the seconds each took."""
    folder = out / CUSTOM
    seconds = {}

    def timed(name, fn):
        t = time.perf_counter()
        fn()
        seconds[name] = time.perf_counter() - t

    def perceptron():
        curves, summary = perceptron_experiment(max_epochs=30 if quick else 100)
        atomic_write_csv(folder / "perceptron.csv", curves)
        atomic_write_csv(folder / "perceptron_summary.csv", summary)

    def gradients():
        rows = [{"activation": a, "max_rel_error": gradient_check(a)} for a in ("sigmoid", "tanh", "relu", "prelu")]
        atomic_write_csv(folder / "gradient_check.csv", pd.DataFrame(rows))

    def paths():
        atomic_write_csv(folder / "minibatch_paths.csv", minibatch_paths(epochs=2 if quick else 8))

    def conditions():
        names = ("regression", "spirals") if quick else datasets.DATASETS
        atomic_write_csv(folder / "condition_numbers.csv", condition_table(names))

    def variances():
        small = dict(hidden=(16,) * 3, seeds=(0,), n_objects=200)
        atomic_write_csv(folder / "init_statistics.csv", init_statistics(**(small if quick else {})))
        deep = small if quick else dict(hidden=(32,) * 8)
        atomic_write_csv(folder / "activation_statistics.csv", init_statistics(activations=("sigmoid", "tanh", "relu", "prelu"), inits=("xavier",),
                                   **deep))

    def trajectories():
        kwargs = dict(lrs=(0.01, 0.1, 1.0), steps={"quadratic": 30, "rosenbrock": 30}) if quick else {}
        atomic_write_csv(folder / "trajectories.csv", trajectory_table(**kwargs))

    for name, fn in (("perceptron", perceptron), ("gradient check", gradients),
                     ("mini-batch paths", paths), ("condition numbers", conditions),
                     ("variances at init", variances), ("2-D trajectories", trajectories)):
        timed(name, fn)
    return seconds


def run_obd(out: Path, quick: bool = False) -> bool:
    """Section 11: Optimal Brain Damage's experiments (suite.obd_experiments).
    Stores the sections they return in ``out/obd/sections.json``; False when
    they fail (``out/obd/error.txt`` says why, the report marks the section
    as not run, and the rest of the lecture's results are kept)."""
    import traceback

    from .obd import experiments as obd_experiments

    folder = out / "obd"
    try:
        sections = obd_experiments.run_obd_experiments(folder, quick=quick)
    except Exception:  # keep the hours of other results; report the failure
        reason = "run_obd_experiments failed:\n" + traceback.format_exc()
    else:
        atomic_write_text(folder / "sections.json", json.dumps(sections, indent=2, default=str))
        (folder / "error.txt").unlink(missing_ok=True)
        return True
    atomic_write_text(folder / "error.txt", reason)
    (folder / "sections.json").unlink(missing_ok=True)  # the report must not show an older run's
    return False


def run_lecture(out: Path = DEFAULT_OUT, quick: bool = False, backend: str = "numpy",
                blas_threads: int | None = 1) -> Path:
    """Run every lecture study (skipping completed cells), the custom
    experiments and OBD, then write ``out/report.md``; returns its path.

    quick=True: every study shrunk by :func:`quick_study` and every custom
    experiment cut down -- a smoke test of seconds, not evidence.
    blas_threads: the BLAS thread pool's size while this runs (None: leave
    it). One by default: the lecture's matrices are small, and on a shared
    2-core CPU OpenBLAS's spinning worker threads made the same runs 3 to 20
    times slower than one thread (measured while writing this).
    """
    from threadpoolctl import threadpool_limits

    out = Path(out)
    blas = (contextlib.nullcontext() if blas_threads is None
            else threadpool_limits(limits=blas_threads, user_api="blas"))
    with blas:
        from ..studies import store
        from ..studies.runner import run_study
        from ..studies.spec import check_study, load_study

        store.preflight(out)
        write_kind(out, "lecture")
        start = time.perf_counter()
        seconds, cells = {}, {"ran": 0, "skipped": 0}
        studies = []
        for name in STUDIES:
            study = load_study(name, backend=backend)
            studies.append(quick_study(study) if quick else study)
        for study in studies:  # every study checked before the first trains
            check_study(study)
        for study in studies:
            name = study.name
            t = time.perf_counter()
            summary = run_study(study, out / name, backend, quiet=True)
            seconds[f"study {name}"] = time.perf_counter() - t
            cells["ran"] += summary.ran
            cells["skipped"] += summary.skipped
        seconds.update({f"custom {k}": v for k, v in run_custom(out, quick).items()})
        t = time.perf_counter()
        obd_ran = run_obd(out, quick)
        seconds["obd"] = time.perf_counter() - t
        timing = {"quick": quick, "backend": backend, "cells": cells, "obd_ran": obd_ran,
                  "run_seconds": time.perf_counter() - start, "parts": seconds}
        return write_lecture_report(out, timing=timing, start=start)
