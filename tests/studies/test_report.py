"""The report: regenerated from stored results, its scoring functions, its errors."""

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# The lent GPU machine lacks these and runs only the gpu-marked tests.
pytest.importorskip("tqdm")
pytest.importorskip("sklearn")

from optbench.suite.studies import figures, report, scoring
from optbench.suite.studies.store import ResultsError
from optbench.suite.studies.runner import run_study
from optbench.suite.studies.spec import load_study

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke study's results, run once for the module."""
    out = tmp_path_factory.mktemp("smoke")
    run_study(load_study("smoke"), out, "numpy", quiet=True)
    return out


@pytest.fixture(scope="module")
def smoke_report(smoke):
    """The smoke study's report, written while training would fail: stored results alone."""
    import optbench.suite.studies.runner
    import optbench.suite.training.loop

    def no_training(*a, **k):
        raise AssertionError("the report must not train")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(optbench.suite.training.loop, "run", no_training)
        mp.setattr(optbench.suite.studies.runner, "run", no_training)
        return report.write_report(smoke)


def _study(tmp_path, name, body):
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[study]\nname = "{name}"\n{body}')
    out = tmp_path / name
    run_study(load_study(str(path)), out, "numpy", quiet=True)
    return out


def _figures(md_path: Path) -> list[Path]:
    """Every image the Markdown links to; each must be a non-empty PNG."""
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", md_path.read_text())
    paths = [md_path.parent / link for link in links]
    for path in paths:
        assert path.is_file(), f"{path} is referenced but missing"
        data = path.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    return paths


# --------------------------------------------------------------------------- #
# The report from the smoke study
# --------------------------------------------------------------------------- #


def test_report_and_every_figure_it_references_exist(smoke, smoke_report):
    assert smoke_report == smoke / "report.md"
    names = {p.name for p in _figures(smoke_report)}
    # smoke varies the batch size but not the init.
    assert names == {"convergence_epoch.png", "convergence_time.png", "lr_sensitivity.png",
                     "heatmap_batch_size.png"}
    text = smoke_report.read_text()
    assert "does not vary the init" in text
    for section in ("## Best learning rate", "## Final performance", "## Time to a target",
                    "## Heatmaps", "## Learning-rate sensitivity", "## Diverged runs"):
        assert section in text
    # Each figure has a caption line right after it.
    for match in re.finditer(r"!\[[^\]]*\]\([^)]+\)\n\n(.*)\n", text):
        assert match.group(1).startswith("*") and len(match.group(1)) > 40


def test_header_names_study_backend_device_and_counts(smoke, smoke_report):
    meta = json.loads((smoke / "metadata.json").read_text())
    head = smoke_report.read_text().split("## ")[0]
    assert "`smoke`" in head
    assert "backend(s): numpy" in head
    assert f"device(s): {meta['device']}" in head
    assert meta["written"] in head
    assert "8 cells" in head and "all complete" in head


def test_smoke_tables_hold_each_optimiser_and_batch_size(smoke_report):
    text = smoke_report.read_text()
    perf = text.split("## Final performance")[1].split("## ")[0]
    for opt, bs in (("sgd", "64"), ("sgd", "full"), ("adam", "64"), ("adam", "full")):
        assert re.search(rf"\| {opt} \| {bs} \| 2 \| 0 \| \d", perf), (opt, bs)
    target = text.split("## Time to a target")[1].split("## ")[0]
    assert len(re.findall(r"\d/2 reached", target)) == 4


# --------------------------------------------------------------------------- #
# Scoring functions on hand-made frames
# --------------------------------------------------------------------------- #


def _runs(spec):
    """A long table from {(optimizer, lr, seed): [val losses per epoch]}; a NaN
    last value marks the run diverged."""
    rows = []
    for i, ((opt, lr, seed), losses) in enumerate(spec.items()):
        for epoch, loss in enumerate(losses):
            last = epoch == len(losses) - 1
            rows.append({"cell": f"c{i}", "optimizer": opt, "lr": lr, "seed": seed,
                         "batch_size": "64", "epoch": epoch, "step": 10 * epoch,
                         "wall_time": 0.5 * epoch, "val_loss": loss,
                         "diverged": bool(last and not math.isfinite(loss))})
    return pd.DataFrame(rows)


def test_best_lr_is_the_lowest_mean_final_val_loss():
    df = _runs({
        # lr 0.1: mean 0.5. lr 0.3: one lucky seed (0.1) but mean 0.7, so it loses.
        ("sgd", 0.1, 0): [2, 0.5], ("sgd", 0.1, 1): [2, 0.5], ("sgd", 0.1, 2): [2, 0.5],
        ("sgd", 0.3, 0): [2, 0.1], ("sgd", 0.3, 1): [2, 1.0], ("sgd", 0.3, 2): [2, 1.0],
        # adam: the best value is at the last evaluation, not the lowest ever seen.
        ("adam", 0.01, 0): [2, 0.05, 0.9], ("adam", 0.001, 0): [2, 0.6, 0.4],
    })
    best = scoring.best_lrs(scoring.final_runs(df)).set_index("optimizer")
    assert best.loc["sgd", "lr"] == 0.1
    assert best.loc["sgd", "mean_val_loss"] == pytest.approx(0.5)
    assert best.loc["adam", "lr"] == 0.001


def test_a_diverged_lr_loses_even_with_lower_losses_elsewhere():
    df = _runs({
        # lr 1.0: two superb seeds, one diverged -> +inf mean -> loses to 0.1.
        ("momentum", 1.0, 0): [2, 0.01], ("momentum", 1.0, 1): [2, 0.01],
        ("momentum", 1.0, 2): [2, 50.0, float("nan")],
        ("momentum", 0.1, 0): [2, 0.8], ("momentum", 0.1, 1): [2, 0.9], ("momentum", 0.1, 2): [2, 1.0],
        # every lr diverged: still a choice, the one with fewer diverged runs.
        ("adam", 1.0, 0): [2, float("nan")], ("adam", 1.0, 1): [2, float("nan")],
        ("adam", 3.0, 0): [2, float("nan")], ("adam", 3.0, 1): [2, 0.3],
    })
    final = scoring.final_runs(df)
    assert np.isinf(final.loc[final["val_loss"].isna(), "final_val_loss"]).all()
    best = scoring.best_lrs(final).set_index("optimizer")
    assert best.loc["momentum", "lr"] == 0.1
    assert best.loc["adam", "lr"] == 3.0 and math.isinf(best.loc["adam", "mean_val_loss"])
    assert not best.loc["adam", "all_diverged"]
    table = scoring.lr_table(final).set_index(["optimizer", "lr"])
    assert table.loc[("momentum", 1.0), "diverged"] == 1
    assert math.isinf(table.loc[("momentum", 1.0), "mean_val_loss"])


def test_time_to_target_counts_misses_and_takes_medians_of_hits():
    df = _runs({
        ("sgd", 0.1, 0): [2.0, 0.9, 0.4],            # reaches 0.5 at epoch 2 (step 20)
        ("sgd", 0.1, 1): [2.0, 0.5, 0.3],            # at epoch 1 (step 10): "<=" counts
        ("sgd", 0.1, 2): [2.0, 1.5, 1.2],            # never
        ("sgd", 0.1, 3): [2.0, 0.8, float("nan")],   # diverges first: a miss
        ("adam", 0.01, 0): [2.0, 1.0, 0.9],          # never
    })
    per_run = scoring.time_to_target(df, 0.5)
    assert len(per_run) == 5  # misses are rows, not dropped
    assert per_run["reached"].sum() == 2
    summary = scoring.reach_summary(per_run, ["optimizer"]).set_index("optimizer")
    assert summary.loc["sgd", "reached_label"] == "2/4 reached"
    assert summary.loc["sgd", "median_steps"] == 15
    assert summary.loc["sgd", "median_seconds"] == pytest.approx(0.75)
    assert summary.loc["adam", "reached_label"] == "0/1 reached"
    assert math.isnan(summary.loc["adam", "median_steps"])


def test_target_is_the_worst_usable_best_lr_mean():
    df = _runs({
        ("sgd", 0.1, 0): [2, 0.6], ("sgd", 0.1, 1): [2, 0.8],      # mean 0.7
        ("adam", 0.01, 0): [2, 0.2],                               # 0.2
        ("momentum", 5.0, 0): [2, 9.0],                            # no progress: left out
        ("rmsprop", 1.0, 0): [2, float("nan")],                    # diverged: left out
    })
    final = scoring.final_runs(df)
    targets = scoring.choose_targets(final, initial_val_loss=2.0, by=["optimizer"])
    assert targets["target"].iloc[0] == pytest.approx(0.7)


def test_needs_log_scale():
    assert figures.needs_log_scale([3.0, 0.05])          # 1.8 decades
    assert not figures.needs_log_scale([3.0, 0.5, np.inf, np.nan, 0.0])


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


def test_missing_directory(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ResultsError, match=re.escape(str(missing))):
        report.write_report(missing)


def test_empty_directory(tmp_path):
    (tmp_path / "cells").mkdir()
    with pytest.raises(ResultsError, match=re.escape(str(tmp_path))):
        report.write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_damaged_cell_files_are_named_and_left_out(smoke, tmp_path):
    """A garbage file, a cut-short one and a whole one copied over another
    cell's name: the report names all three (with why) and is made from the
    whole cells."""
    shutil.copytree(smoke / "cells", tmp_path / "cells")
    (tmp_path / "cells" / "0000bad.parquet").write_text('epoch,"val_loss\n1,2\n')  # garbage
    files = sorted((tmp_path / "cells").glob("*.parquet"))
    cut, renamed = files[1], files[2]
    cut.write_bytes(cut.read_bytes()[:-200])  # cut short: its footer is gone
    renamed.write_bytes(files[3].read_bytes())  # another cell's file under this cell's name
    text = report.write_report(tmp_path).read_text()
    assert "3 damaged cell file(s) left out" in text
    assert "`cells/0000bad.parquet` (unreadable" in text and f"`cells/{cut.name}` (unreadable" in text
    assert f"`cells/{renamed.name}` (its checksum does not match its rows and its name" in text
    whole = len(list((smoke / "cells").glob("*.parquet"))) - 2
    assert f"{whole} cells (one run each" in text


def test_a_value_of_the_wrong_type_is_refused_when_written(smoke, tmp_path):
    """Every column has one type (the schema's): a row with text where a
    number belongs is refused, naming the column, and nothing is written."""
    from optbench.suite.studies.store import read_cell, write_cell

    victim = sorted((smoke / "cells").glob("*.parquet"))[0]
    rows = read_cell(victim)[0].to_pylist()
    rows[1]["val_loss"] = "oops"
    with pytest.raises(ValueError, match="val_loss"):
        write_cell(tmp_path, victim.stem, rows)
    assert not (tmp_path / "cells").exists() or not any((tmp_path / "cells").iterdir())


def test_corrupt_metadata_is_named(smoke, tmp_path):
    shutil.copytree(smoke / "cells", tmp_path / "cells")
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(ResultsError, match=re.escape(str(tmp_path / "metadata.json"))):
        report.write_report(tmp_path)


# --------------------------------------------------------------------------- #
# Studies that vary little, regress, or diverge
# --------------------------------------------------------------------------- #


def test_regression_study_reports_without_accuracy(tmp_path):
    out = _study(tmp_path, "reg", '[fixed]\ndataset = "regression"\nhidden = [8]\nepochs = 2\n'
                                  '[grid]\noptimizer = ["sgd", "adam"]\n')
    path = report.write_report(out)
    text = path.read_text()
    assert "val acc" not in text and "regression set" in text
    assert {p.name for p in _figures(path)} == {"convergence_epoch.png", "convergence_time.png",
                                                "lr_sensitivity.png"}
    assert "does not vary the batch size" in text


def test_every_run_of_an_optimiser_diverged_one_seed(tmp_path):
    out = _study(tmp_path, "boom", '[fixed]\ndataset = "digits"\nhidden = [8]\nepochs = 2\n'
                                   '[grid]\noptimizer = ["sgd", "momentum"]\n'
                                   '[lr]\nsgd = [0.1]\nmomentum = [300.0, 1000.0]\n')
    path = report.write_report(out)
    text = path.read_text()
    assert "every run at every lr diverged" in text
    assert "| momentum | 300 | 1/1 |" in text and "| momentum | 1000 | 1/1 |" in text
    assert re.search(r"\| momentum \| [^|]+ \| 0/1 reached \| – \| – \|", text)
    assert "no band" in text  # one seed
    assert _figures(path)


def test_a_cell_written_before_a_late_column_reads_with_it_null_and_any_other_gap_is_damage(tmp_path):
    """The committed default run's cells predate the ``state`` column (issue
    23): they read whole, with state null (not recorded: fp32); a file that
    lacks any other column of the schema is damaged."""
    import pyarrow.parquet as pq

    from optbench.suite.studies.store import LATE, SCHEMA, read_cell

    ROOT = Path(__file__).resolve().parents[2]
    old = sorted((ROOT / "results" / "default" / "cells").glob("*.parquet"))[0]
    assert "state" in LATE and "state" not in pq.read_schema(old).names
    table, why = read_cell(old)
    assert why == "" and table.schema.names == SCHEMA.names and table.column("state").null_count == table.num_rows
    file = pq.ParquetFile(old)
    cut = file.read().drop_columns(["lr"])
    victim = tmp_path / old.name
    pq.write_table(cut.replace_schema_metadata(file.metadata.metadata), victim)
    table, why = read_cell(victim)
    assert table is None and "columns are not the results schema's" in why
