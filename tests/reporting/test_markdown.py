"""The one Markdown table writer and the shared number formats."""

import math

import numpy as np
import pandas as pd

from optbench.suite.reporting.markdown import fmt, frame_table, md_table, pct


def test_md_table_lines():
    assert md_table(["a", "b"], [[1, "x"], [2.5, None]]).split("\n") == [
        "| a | b |", "|---|---|", "| 1 | x |", "| 2.5 | None |"]


def test_frame_table_formats_floats_only():
    df = pd.DataFrame({"name": ["sgd"], "n": [4000], "loss": [0.123456], "bad": [math.nan]})
    assert frame_table(df).split("\n")[2] == "| sgd | 4000 | 0.123 | n/a |"
    assert frame_table(df, number=lambda v: f"{v:.1f}").split("\n")[2] == "| sgd | 4000 | 0.1 | nan |"


def test_number_formats():
    assert fmt(None) == "n/a" and fmt(float("nan")) == "n/a" and fmt(np.inf) == "inf" and fmt(-np.inf) == "-inf"
    assert fmt(1234.5678) == "1.23e+03" and fmt(0.000123456, 2) == "0.00012" and fmt("x") == "x"
    assert pct(0.957) == "95.7%" and pct(np.nan) == "n/a"
