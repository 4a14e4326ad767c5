"""How the report writes numbers and tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def fmt(x, digits: int = 3) -> str:
    """A number for the report: 3 significant digits, "n/a" for NaN/None, "inf"."""
    if x is None:
        return "n/a"
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def pct(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def md_table(df: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (numbers through ``fmt``)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        cells = [fmt(v) if isinstance(v, (float, np.floating)) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
