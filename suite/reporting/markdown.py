"""Markdown for the reports: one table writer and the number formats they share."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np


def md_table(header: Sequence, rows: Sequence[Sequence]) -> str:
    """A GitHub Markdown table: ``header`` then one line per row (cells as str)."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def frame_table(df, number: Callable[[float], str] | None = None) -> str:
    """A DataFrame as a Markdown table; float cells go through ``number``
    (default :func:`fmt`), everything else through ``str``."""
    number = fmt if number is None else number
    rows = [[number(v) if isinstance(v, (float, np.floating)) else v for v in row]
            for row in df.itertuples(index=False)]
    return md_table(list(df.columns), rows)


def fmt(x, digits: int = 3, nan: str = "n/a") -> str:
    """A number in ``digits`` significant digits; ``nan`` for NaN or None,
    "inf" / "-inf"; anything that is not a number as ``str``."""
    if x is None:
        return nan
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(x):
        return nan
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def pct(x, nan: str = "n/a") -> str:
    """A share as a percentage with one decimal: 0.957 -> "95.7%"."""
    return nan if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"
