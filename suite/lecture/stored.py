"""Where a lecture run keeps its results, and :class:`Stored`, which reads them.

``out/<study>/`` holds each lecture study's results (as written by the
normal runner), ``out/custom/*.csv`` the experiments that are not studies,
``out/obd/`` Optimal Brain Damage's sections, ``out/timing.json`` the run's
timings, ``out/report.md`` and ``out/figures/*.png`` the report.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

DEFAULT_OUT = Path("results") / "lecture"
CUSTOM = "custom"
FIGURES = "figures"
REPORT = "report.md"
TIMING = "timing.json"

#: The lecture's studies, in the order of the sections that use them.
STUDIES = ("lecture-sgd", "lecture-batch", "lecture-batch-full", "lecture-shuffle",
           "lecture-standardize", "lecture-l2", "lecture-activations", "lecture-init",
           "lecture-dropout", "lecture-optimizers")


def truthy(series: pd.Series) -> pd.Series:
    """Booleans however the CSV round trip left them (bool, "True", 1.0)."""
    return series.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))


class Stored:
    """The stored results of a lecture run, each read once."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.figures = self.out / FIGURES
        self._cache: dict = {}

    def study(self, name: str, where: Path | None = None) -> pd.DataFrame | None:
        """A study's long table (None if it has no results), tidied: batch_size
        as a string, diverged as bool, inf for a diverged run's losses."""
        from ..studies.store import ResultsError, load_results

        folder = Path(where) if where is not None else self.out / name
        if folder not in self._cache:
            try:
                df = load_results(folder)
            except ResultsError:
                self._cache[folder] = None
            else:
                df["batch_size"] = df["batch_size"].astype(str)
                df["diverged"] = truthy(df["diverged"])
                self._cache[folder] = df
        return self._cache[folder]

    def custom(self, name: str) -> pd.DataFrame | None:
        path = self.out / CUSTOM / f"{name}.csv"
        return pd.read_csv(path) if path.is_file() else None

    def figure(self, name: str) -> Path:
        self.figures.mkdir(parents=True, exist_ok=True)
        return self.figures / name


def optimizer_results(out: Path) -> Path | None:
    """Where section 12's mnist1d results are: the lecture's own study, if it ran."""
    from ..studies.store import completed_cells

    candidate = out / "lecture-optimizers"
    return candidate if completed_cells(candidate) else None
