"""Atomic writes: whole files or none, with the mode a plain open() would give."""

import os
import stat

import numpy as np
import pandas as pd
import pytest

from optbench.suite.reporting.files import atomic_write, atomic_write_csv, atomic_write_text, current_umask


@pytest.fixture
def umask():
    """Set the process umask for one test, restoring it afterwards."""
    old = os.umask(0o022)
    os.umask(old)

    def set_(mask):
        os.umask(mask)
        return mask

    yield set_
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_the_umask_gives(tmp_path, umask, mask, expected):
    umask(mask)
    assert current_umask() == mask
    text = atomic_write_text(tmp_path / "a.md", "hello")
    binary = atomic_write(tmp_path / "b.npz", lambda f: np.savez(f, x=np.arange(3)), binary=True)
    table = atomic_write_csv(tmp_path / "c.csv", pd.DataFrame({"x": [1, 2]}))
    for path in (text, binary, table):
        assert _mode(path) == expected, (path.name, oct(_mode(path)))
    assert text.read_text() == "hello" and pd.read_csv(table).x.tolist() == [1, 2]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "sub" / "r.md", "old")  # creates the folder

    def broken(f):
        f.write("half a new file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["r.md"]


def test_npz_round_trip_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "sub" / "a.npz"
    atomic_write(path, lambda f: np.savez(f, x=np.arange(3)), binary=True)
    assert [p.name for p in path.parent.iterdir()] == ["a.npz"]
    with np.load(path) as f:
        assert f["x"].tolist() == [0, 1, 2]
