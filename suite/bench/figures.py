"""The throughput report's figures, drawn from a scored table (:mod:`.scoring`).

- ``bandwidth.png``: effective GB/s against parameter count (log-log), one
  line per rule (and dropout forward/backward), one panel per implementation,
  with the copy's bandwidth drawn as the ceiling;
- ``ratio_torch.png``: our time over PyTorch's best (foreach or fused) per
  rule against size, per backend of ours, with 1.0 marked;
- ``models.png``: time per update of an MLP's parameter tensors (our one
  launch over the flat buffer against PyTorch's optimiser over the tensors);
- ``training.png``: training examples per second against batch size.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..reporting.figures import new_figure, plain_ticks, save_figure
from .scoring import IMPL_ORDER, RULE_ORDER, is_torch, order, size_label


def _figure(ncols: int, width: float = 4.2, height: float = 3.4, nrows: int = 1, **kw):
    return new_figure(nrows, ncols, (width * ncols + 0.8, height * nrows + 0.9), **kw)


def _save(fig, path: Path) -> None:
    save_figure(fig, path)


def _palette(names):
    import seaborn as sns

    return dict(zip(names, sns.color_palette("tab10", max(len(names), 1))))


def _log2_x(ax) -> None:
    """A log2 size axis labelled 2^k."""
    from matplotlib.ticker import LogLocator

    ax.set_xscale("log", base=2)
    plain_ticks(ax.xaxis, lambda x: size_label(x) if x >= 1 else "", LogLocator(base=4))


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _markers(names) -> dict:
    return {n: _MARKERS[i % len(_MARKERS)] for i, n in enumerate(names)}


def _legend(fig, names, pal, marks, extra=()) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=pal[n], marker=marks[n], label=n) for n in names]
    handles += list(extra)
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)


def plot_bandwidth(df: pd.DataFrame, path: Path, title: str) -> bool:
    import seaborn as sns
    from matplotlib.lines import Line2D

    d = df[df.section.isin(["rule", "dropout"]) & df.gbps.notna() & (df.impl != "numpy-naive")]
    copy = df[(df.section == "copy")].sort_values("size")
    if d.empty:
        return False
    impls = order(d.impl, IMPL_ORDER)
    names = order(d.rule, RULE_ORDER + ("dropout-forward", "dropout-backward"))
    pal, marks = _palette(names), _markers(names)
    fig, axes = _figure(len(impls), sharey=True)
    for ax, impl in zip(axes[0], impls):
        sub = d[d.impl == impl]
        sns.lineplot(data=sub, x="size", y="gbps", hue="rule", palette=pal, style="rule", markers=marks,
                     dashes=False, hue_order=[n for n in names if n in set(sub.rule)], ax=ax, legend=False)
        if len(copy):
            ax.plot(copy["size"], copy["gbps"], color="black", ls="--", lw=1.5)
        ax.set(yscale="log", title=impl if impl != "torch" else "torch (dropout)",
               xlabel="parameters (elements)", ylabel="effective GB/s")
        _log2_x(ax)
    _legend(fig, names, pal, marks, [Line2D([], [], color="black", ls="--", label="copy (ceiling)")])
    fig.suptitle(title)
    _save(fig, path)
    return True


def plot_ratio(df: pd.DataFrame, path: Path, title: str) -> bool:
    import seaborn as sns

    d = df[df.section.isin(["rule", "dropout"]) & ~df.impl.map(is_torch) & df.ratio_torch.notna()
           & (df.impl != "numpy-naive")]
    if d.empty:
        return False
    impls = order(d.impl, IMPL_ORDER)
    names = order(d.rule, RULE_ORDER + ("dropout-forward", "dropout-backward"))
    pal, marks = _palette(names), _markers(names)
    fig, axes = _figure(len(impls), sharey=True)
    for ax, impl in zip(axes[0], impls):
        sub = d[d.impl == impl]
        sns.lineplot(data=sub, x="size", y="ratio_torch", hue="rule", palette=pal, style="rule",
                     markers=marks, dashes=False, hue_order=[n for n in names if n in set(sub.rule)],
                     ax=ax, legend=False)
        ax.axhline(1.0, color="black", lw=1, ls="--")
        ax.set(yscale="log", title=f"{impl}: PyTorch's best time / ours",
               xlabel="parameters (elements)", ylabel="ratio (> 1: ours faster)")
        _log2_x(ax)
    _legend(fig, names, pal, marks)
    fig.suptitle(title)
    _save(fig, path)
    return True


def plot_models(df: pd.DataFrame, path: Path, title: str) -> bool:
    import seaborn as sns

    d = df[(df.section == "model") & (df.rule != "copy")].copy()
    if d.empty:
        return False
    d["us"] = d.seconds * 1e6
    models = order(d.model, ("mnist1d", "wide", "deep"))
    impls = order(d.impl, IMPL_ORDER)
    fig, axes = _figure(len(models), width=4.6)
    for ax, model in zip(axes[0], models):
        sub = d[d.model == model]
        sns.barplot(data=sub, x="rule", y="us", hue="impl", order=order(sub.rule, RULE_ORDER),
                    hue_order=[i for i in impls if i in set(sub.impl)], palette=_palette(impls), ax=ax,
                    legend=ax is axes[0][-1])
        n, t = int(sub["size"].iloc[0]), int(sub["n_tensors"].iloc[0])
        ax.set(yscale="log", title=f"{model}: {n:,} params, {t} tensors", xlabel="",
               ylabel="microseconds per update")
        ax.tick_params(axis="x", rotation=30)
        if ax.get_legend():
            sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), fontsize=8, title=None)
    fig.suptitle(title)
    _save(fig, path)
    return True


def plot_training(df: pd.DataFrame, path: Path, title: str) -> bool:
    import seaborn as sns

    d = df[(df.section == "training") & df.examples_per_sec.notna()]
    if d.empty:
        return False
    sets = order(d.model, ("mnist1d", "digits"))
    impls = order(d.impl, IMPL_ORDER)
    pal, marks = _palette(impls), _markers(impls)
    fig, axes = _figure(len(sets), sharey=True)
    for ax, name in zip(axes[0], sets):
        sub = d[d.model == name]
        sns.lineplot(data=sub, x="batch", y="examples_per_sec", hue="impl", style="impl", markers=marks,
                     dashes=False, hue_order=[i for i in impls if i in set(sub.impl)], palette=pal,
                     ax=ax, legend=False)
        ax.set(yscale="log", title=f"{name} ({sub.note.iloc[0].split(',')[0]})",
               xlabel="batch size", ylabel="training examples / s")
        ax.set_xscale("log", base=2)
    _legend(fig, impls, pal, marks)
    fig.suptitle(title)
    _save(fig, path)
    return True


def plot_population(df: pd.DataFrame, path: Path, title: str) -> bool:
    """Microseconds per member-step against the number of members (log-log)."""
    d = df[df.section == "population"]
    if d.empty:
        return False
    impls = order(d.impl, ())
    pal, marks = _palette(impls), _markers(impls)
    fig, axes = _figure(1, width=5.2)
    ax = axes[0][0]
    for impl in impls:
        g = d[d.impl == impl].sort_values("size")
        ax.plot(g["size"], g.seconds * 1e6, marker=marks[impl], color=pal[impl], label=impl)
    ax.set(xscale="log", yscale="log", xlabel="members P", ylabel="microseconds per member-step", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)
    return True
