"""Comparing training records in tests, and reading a committed protocol
run's (tests/ is on sys.path: ``from records import ...``)."""

import json

import numpy as np
import pytest

from optbench.suite.protocol import scoring
from optbench.suite.protocol.runner import PROTOCOL_FILE
from optbench.suite.studies import scoring as study_scoring
from optbench.suite.studies import store
from optbench.suite.training.loop import without_timing


def committed_protocol(out):
    """(protocol.json, the rows of the protocol's own cells with each
    workload's ``score``) of a protocol's results folder, as its report reads them."""
    record = json.loads((out / PROTOCOL_FILE).read_text())
    df = study_scoring.tidy(store.load_results(out))
    return record, scoring.scored(df[df["cell"].isin(record["cells"])],
                                  {w: d["metric"] for w, d in record["workloads"].items()})


def assert_chosen_inside_grids(record):
    """No chosen lr on an edge of its final grid: each is strictly inside it."""
    assert record["edges"] == []
    for g in record["grids"]:
        assert min(g["lrs"]) < g["chosen"] < max(g["lrs"]), g


def assert_records_close(a, b, rtol=1e-4):
    """Records equal but for their timing columns, floats within ``rtol``
    (rtol=0: bit for bit, NaN equal to NaN)."""
    a, b = without_timing(a), without_timing(b)
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            va, vb = ra[k], rb[k]
            if isinstance(va, float) and not (np.isnan(va) and np.isnan(vb)):
                assert vb == pytest.approx(va, rel=rtol, abs=1e-6 if rtol else 0), (k, ra["epoch"])
            elif not (isinstance(va, float) and np.isnan(va)):
                assert va == vb, k
