"""Comparing training records in tests (tests/ is on sys.path: ``from records import ...``)."""

import numpy as np
import pytest

from optbench.suite.training.loop import without_timing


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
