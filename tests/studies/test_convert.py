"""``optbench convert``: folders of CSV cells (optbench before 0.2) become
Parquet cells with the same values; a damaged CSV is moved aside, never
read; converting twice converts nothing."""

import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest

from optbench.suite.cli import main
from optbench.suite.reporting.kinds import read_kind
from optbench.suite.studies.convert import convert_tree
from optbench.suite.studies.store import CELLS, ResultsError, load_results, read_cell

ROOT = Path(__file__).resolve().parents[2] / "results"


def legacy_text(table) -> str:
    """A cell as optbench 0.1 wrote it: the rows as CSV (one grad_norm_W<l>
    column per layer where the run recorded them; a column no row has, such
    as a setting added after the cell was written, absent), then a footer
    with the row count and the body's sha256."""
    df = table.to_pandas()
    df = df[[c for c in df.columns if df[c].notna().any() or c == "layer_grad_norms"]]
    norms = df.pop("layer_grad_norms")
    if norms.notna().any():
        for l in range(len(norms.iloc[0])):
            df[f"grad_norm_W{l + 1}"] = [float(v[l]) for v in norms]
    body = df.to_csv(index=False, lineterminator="\n")
    return body + f"# optbench cell: rows={len(df)} sha256={hashlib.sha256(body.encode()).hexdigest()}\n"


@pytest.fixture
def legacy(tmp_path):
    """A study folder of the old layout made from committed cells (one with
    per-layer gradient norms), and one cut-short cell; the originals by key."""
    folder = tmp_path / "study"
    (folder / CELLS).mkdir(parents=True)
    originals = {}
    for source in (ROOT / "lecture" / "lecture-activations", ROOT / "default"):
        for path in sorted((source / CELLS).glob("*.parquet"))[:2]:
            table, why = read_cell(path)
            assert table is not None, why
            originals[path.stem] = table
            (folder / CELLS / f"{path.stem}.csv").write_text(legacy_text(table))
    whole = (folder / CELLS / f"{next(iter(originals))}.csv").read_text()
    (folder / CELLS / "0123456789abcdef.csv").write_text(whole[: len(whole) // 2])
    shutil.copy(ROOT / "default" / "metadata.json", folder / "metadata.json")
    return folder, originals


def test_each_whole_cell_converts_to_the_same_values(legacy):
    folder, originals = legacy
    with pytest.raises(ResultsError, match="optbench convert"):
        load_results(folder)
    [(where, kind, converted, damaged)] = convert_tree(folder.parent)
    assert (where, kind, converted) == (folder, "study", len(originals))
    assert list(damaged) == [str(folder / "damaged" / "0123456789abcdef.csv")]
    assert read_kind(folder) == "study"
    for key, table in originals.items():
        got, why = read_cell(folder / CELLS / f"{key}.parquet")
        assert got is not None, why
        assert got.schema.equals(table.schema), key
        pd.testing.assert_frame_equal(got.to_pandas(), table.to_pandas(), check_exact=True, obj=key)
    assert not list((folder / CELLS).glob("*.csv"))
    # the whole folder in one line, the damaged file out of the way
    assert len(pd.read_parquet(folder / CELLS)) == sum(t.num_rows for t in originals.values())
    assert convert_tree(folder.parent) == []  # nothing left to do


def test_the_command_names_what_it_did(legacy, capsys):
    folder, originals = legacy
    assert main(["convert", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"{len(originals)} cells converted" in out and "1 damaged" in out
    assert main(["convert", str(folder)]) == 0
    assert "nothing to convert" in capsys.readouterr().out
