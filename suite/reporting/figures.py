"""Figures for the reports: matplotlib objects, a local theme, tick labels, atomic saving.

Reports build figures with :func:`new_figure` (a ``matplotlib.figure.Figure``:
no pyplot state machine, no GUI backend, nothing to close) and write them with
:func:`save_figure`. A seaborn look is applied with :func:`themed` -- a context
manager (or decorator) over ``matplotlib.rc_context`` -- so it holds only while
that figure is drawn and saved; ``seaborn.set_theme`` would change the global
rcParams and leak into every figure drawn later in the same process.
:func:`plain_ticks` is every report's one way to label an axis's ticks.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .files import atomic_write

DPI = 110


def new_figure(nrows: int = 1, ncols: int = 1, figsize=(6.4, 4.8), **subplots):
    """(Figure, axes) with constrained layout; ``axes`` is always 2-D
    (``squeeze=False``) unless ``subplots`` says otherwise."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    subplots.setdefault("squeeze", False)
    return fig, fig.subplots(nrows, ncols, **subplots)


@contextlib.contextmanager
def themed(style: str = "whitegrid", context: str = "notebook", font_scale: float = 1.0,
           palette: str = "deep", rc: dict | None = None):
    """seaborn's ``style``, ``context`` and ``palette`` as rcParams for the
    figures made and saved inside the block (or the decorated function)."""
    import matplotlib
    import seaborn as sns
    from cycler import cycler

    params = {**sns.axes_style(style), **sns.plotting_context(context, font_scale),
              "axes.prop_cycle": cycler(color=sns.color_palette(palette)), **(rc or {})}
    with matplotlib.rc_context(params):
        yield


def _number(v) -> str:
    return f"{v:g}"


def plain_ticks(axis, label=_number, locator=None, minor_labels: bool = False) -> None:
    """Label ``axis``'s major ticks with ``label(value)`` (default: the number
    as ``%g``, where matplotlib would print "2 x 10^0" on a log axis), at the
    ticks ``locator`` places (a matplotlib locator, or a list of values);
    minor ticks unlabelled (and, for a list, none at all)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    if isinstance(locator, (list, tuple)):
        axis.set_major_locator(FixedLocator(list(locator)))
        axis.set_minor_locator(NullLocator())
    elif locator is not None:
        axis.set_major_locator(locator)
    axis.set_major_formatter(FuncFormatter(lambda v, _: label(v)))
    if not minor_labels:
        axis.set_minor_formatter(NullFormatter())


def save_figure(fig, path, dpi: int = DPI, tight: bool = False) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (file mode from the umask).

    tight: crop to the drawn artists (bbox_inches="tight"), for figures whose
    legend sits outside the axes.
    """
    extra = {"bbox_inches": "tight"} if tight else {}
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, **extra), binary=True)
