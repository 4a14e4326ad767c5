"""The runner: atomic per-cell results, resuming after an interruption, and
the same rows whether cells run in-process or on a Dask cluster."""

import pandas as pd
import pytest

# The lent GPU machine lacks these and runs only the gpu-marked tests.
pytest.importorskip("tqdm")

from optbench.suite.studies import runner
from optbench.suite.studies.store import ResultsError, completed_cells, load_results, read_metadata
from optbench.suite.studies.spec import load_study
from optbench.suite.training.loop import TIMING_COLUMNS

STUDY = """
[fixed]
dataset = "digits"
hidden = [16]
epochs = 2
[grid]
optimizer = ["sgd", "adam"]
seed = [0, 1, 2]
"""


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(STUDY)
    return load_study(str(path), backend="numpy")


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    """The rows without the columns that depend on the machine's speed."""
    return (df.drop(columns=list(TIMING_COLUMNS))
              .sort_values(["cell", "epoch"]).reset_index(drop=True))


def test_results_rows_metadata(study, tmp_path):
    out = tmp_path / "out"
    summary = runner.run_study(study, out, "numpy", quiet=True)
    assert (summary.ran, summary.skipped) == (6, 0)
    df = load_results(out)
    assert len(df) == 6 * 3  # epochs 0, 1, 2 per cell
    for col in ("study", "cell", "optimizer", "lr", "batch_size", "init", "seed", "backend",
                "device", "data_hash", "train_loss", "val_loss", "val_acc", "wall_time", "diverged"):
        assert col in df.columns, col
    assert set(df.backend) == {"numpy"} and df.lr.notna().all()
    meta = read_metadata(out)
    assert meta["backend"] == "numpy" and "numpy" in meta["packages"] and meta["study_file"] == STUDY


def test_interrupted_run_resumes_with_the_same_rows(study, tmp_path, monkeypatch):
    """Cell by cell: Ctrl-C during the 4th cell keeps the first three."""
    whole = tmp_path / "whole"
    runner.run_study(study, whole, "numpy", quiet=True, population=False)

    real = runner.cell_rows
    calls = {"n": 0}

    def dies_on_the_fourth(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # as if Ctrl-C arrived during the 4th cell
        return real(*args, **kwargs)

    part = tmp_path / "part"
    monkeypatch.setattr(runner, "cell_rows", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(study, part, "numpy", quiet=True, population=False)
    assert len(completed_cells(part)) == 3
    assert not list((part / "cells").glob("*.tmp"))  # no half-written file
    monkeypatch.setattr(runner, "cell_rows", real)

    summary = runner.run_study(study, part, "numpy", quiet=True, population=False)
    assert (summary.skipped, summary.ran) == (3, 3)
    resumed, full = load_results(part), load_results(whole)
    assert not resumed.duplicated(["cell", "epoch"]).any()
    pd.testing.assert_frame_equal(comparable(resumed), comparable(full))


def test_an_interrupted_population_is_trained_again(study, tmp_path, monkeypatch):
    """Populations of two: Ctrl-C during the second keeps the first's two
    cells and none of the second's; the rerun trains the rest, and the rows
    equal an uninterrupted run's."""
    whole = tmp_path / "whole"
    runner.run_study(study, whole, "numpy", quiet=True, population_size=2)
    real = runner.population_rows
    calls = {"n": 0}

    def dies_in_the_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    part = tmp_path / "part"
    monkeypatch.setattr(runner, "population_rows", dies_in_the_second)
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(study, part, "numpy", quiet=True, population_size=2)
    assert len(completed_cells(part)) == 2
    monkeypatch.setattr(runner, "population_rows", real)
    summary = runner.run_study(study, part, "numpy", quiet=True, population_size=2)
    assert (summary.skipped, summary.ran) == (2, 4)
    pd.testing.assert_frame_equal(comparable(load_results(part)), comparable(load_results(whole)))


@pytest.mark.parametrize("population", [False, True])
def test_dask_cluster_gives_the_same_rows_as_in_process(study, tmp_path, population):
    """Dask runs cells, or populations (the unit of work then)."""
    pytest.importorskip("dask.distributed")
    local, dask = tmp_path / "local", tmp_path / "dask"
    runner.run_study(study, local, "numpy", quiet=True, population=population, population_size=3)
    summary = runner.run_study(study, dask, "numpy", workers=2, quiet=True, population=population,
                               population_size=3)
    assert summary.ran == 6
    pd.testing.assert_frame_equal(comparable(load_results(dask)), comparable(load_results(local)))


def test_missing_empty_and_corrupt_results(tmp_path):
    with pytest.raises(ResultsError, match="does not exist"):
        load_results(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="holds no results"):
        load_results(tmp_path / "empty")
    cells = tmp_path / "bad" / "cells"
    cells.mkdir(parents=True)
    (cells / "abc.parquet").write_text("this,is\nnot,results\n")
    with pytest.raises(ResultsError, match="holds no whole cell files \\(1 damaged"):
        load_results(tmp_path / "bad")
    from optbench.suite.studies.store import damaged_cells, write_cell

    with pytest.raises(ValueError, match=r"result columns \['is', 'this'\] are not in the results schema"):
        write_cell(tmp_path / "bad", "def", [{"this": 1, "is": 2}])
    (cells / "old.csv").write_text("epoch\n0\n# optbench cell: rows=1 sha256=" + "0" * 64 + "\n")
    with pytest.raises(ResultsError, match=r"CSV format of optbench before 0.2.*`optbench convert "):
        load_results(tmp_path / "bad")
    assert list(damaged_cells(tmp_path / "bad")) == ["cells/abc.parquet"]


def test_keys_and_text_columns_stay_text(tmp_path):
    """A hex key such as 7e13... must not be read back as a float (7e13... = inf)."""
    from optbench.suite.studies.store import write_cell

    write_cell(tmp_path, "7e13986661061582", [
        {"cell": "7e13986661061582", "epoch": 0, "optimizer": "sgd", "train_loss": 1.0,
         "val_loss": 1.0, "stop_reason": ""},
        {"cell": "7e13986661061582", "epoch": 1, "optimizer": "sgd", "train_loss": 0.5,
         "val_loss": 0.6, "stop_reason": "epochs"}])
    df = load_results(tmp_path)
    assert list(df.cell) == ["7e13986661061582"] * 2
    assert list(df.stop_reason) == ["", "epochs"]


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_a_results_folder_is_readable_as_the_umask_allows(study, tmp_path, mask):
    """Every file a run and its report write (cells, metadata, report, figures)
    has the mode a plain open() gives: 0644 under the usual umask 022, 0640
    under 027 -- not mkstemp's 0600, which would hide shared results."""
    import os
    import stat

    from optbench.suite.studies.report import write_report

    old = os.umask(mask)
    try:
        out = tmp_path / "out"
        runner.run_study(study, out, "numpy", quiet=True)
        write_report(out)
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.parent.name for p in files} >= {"cells", "figures", "out"}
    assert {p.name for p in files} >= {"metadata.json", "report.md"}
    modes = {p.relative_to(out).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~mask)}, modes
