"""The optbench command line: validate's table and exit status."""

import numpy as np

from optbench.kernels import reference
from optbench.suite.cli import main, parse_sizes


def test_validate_passes_on_numpy(capsys):
    assert main(["validate", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed on numpy" in out
    for name in ("sgd", "momentum", "nesterov", "rmsprop", "adadelta", "adam"):
        assert f"\n{name} " in out
    assert "1048579" in out and "FAIL" not in out


def test_validate_fails_when_a_rule_is_wrong(capsys, monkeypatch):
    true_adam = reference.STEPS["adam"]

    def off_by_a_bit(w, g, state, hp, t):  # as if the kernel's gamma were 0.91
        return true_adam(w, g, state, {**hp, "gamma": 0.91}, t)

    monkeypatch.setitem(reference.STEPS, "adam", off_by_a_bit)
    assert main(["validate", "--backend", "numpy"]) == 1
    out = capsys.readouterr().out
    assert "adam" in out and "FAIL" in out and "checks FAILED" in out


def test_cupy_where_it_cannot_run_exits_2(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)
    assert main(["validate", "--backend", "cupy"]) == 2
    assert "needs CuPy" in capsys.readouterr().err


def test_parse_sizes():
    assert parse_sizes("1024,2^20,2**3") == [1024, 1 << 20, 8]
    import argparse

    import pytest

    with pytest.raises(argparse.ArgumentTypeError, match="bad size 'lots'"):
        parse_sizes("lots")


def test_bench_prints_fractions_of_a_copy(capsys):
    assert main(["bench", "--backend", "numpy", "--sizes", "4096", "--repeats", "3", "--naive"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()
            if line.split()[:1] and line.split()[0] in
            ("sgd", "momentum", "nesterov", "rmsprop", "adadelta", "adam") and " at " not in line]
    assert len(rows) == 7  # six rules + the naive Adam
    assert all(np.isfinite(float(r[-1])) and float(r[-1]) > 0 for r in rows)
    assert "faster than the naive NumPy Adam" in out
