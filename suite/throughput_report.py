"""The throughput report, regenerated from a stored ``optbench bench`` table alone.

``write_throughput_report(dir)`` reads ``dir/throughput.csv`` (the long
table of :mod:`suite.bench`: one row per section, impl, rule, size, and model
or batch) and ``dir/meta.json``, and writes ``dir/report.md`` and its figures
in ``dir/figures/``:

- ``bandwidth.png``: effective GB/s against parameter count (log-log), one
  line per rule (and dropout forward/backward), one panel per implementation,
  with the copy's bandwidth drawn as the ceiling;
- ``ratio_torch.png``: our time over PyTorch's best (foreach or fused) per
  rule against size, per backend of ours, with 1.0 marked;
- ``models.png``: time per update of an MLP's parameter tensors (our one
  launch over the flat buffer against PyTorch's optimiser over the tensors);
- ``training.png``: training examples per second against batch size.

The scoring is plain functions over the table (``best_vs_torch``,
``acceptance``), kept apart from the plotting and the Markdown, so each can
be tested on a hand-made frame. Nothing here runs a benchmark.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

CSV_NAME = "throughput.csv"
META_NAME = "meta.json"
TORCH_PREFIX = "torch"
RULE_ORDER = ("sgd", "momentum", "nesterov", "rmsprop", "adadelta", "adam")
IMPL_ORDER = ("numpy", "numba", "cupy", "torch", "torch-foreach", "torch-fused", "numpy-naive")
#: Acceptance targets of the throughput issue.
CPU_TARGET_SIZE = 1 << 24
GPU_TARGET_SIZE = 1 << 26
CPU_MIN_RATIO = 1.0
GPU_MIN_COPY_FRACTION = 0.85
GPU_MIN_FUSED_RATIO = 1.0
QUICK_LIMIT_S = {"cpu": 180.0, "gpu": 300.0}


class ThroughputReportError(ValueError):
    """The directory holds no usable throughput table."""


# --- loading and scoring ---------------------------------------------------------------------

def load(directory: Path) -> tuple[pd.DataFrame, dict]:
    directory = Path(directory)
    path = directory / CSV_NAME
    if not path.is_file():
        raise ThroughputReportError(f"{directory}: no {CSV_NAME} (run optbench bench --out {directory})")
    df = pd.read_csv(path)
    missing = {"section", "impl", "rule", "size", "seconds"} - set(df.columns)
    if missing:
        raise ThroughputReportError(f"{path}: missing columns {sorted(missing)}")
    meta_path = directory / META_NAME
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    for col in ("model", "note", "impl", "rule"):
        if col in df:
            df[col] = df[col].astype("object").where(df[col].notna(), "").astype(str)
    for col in ("gbps", "copy_fraction", "examples_per_sec", "batch", "n_tensors", "bytes_per_param"):
        if col not in df:
            df[col] = np.nan
    return add_torch_ratios(df), meta


def add_torch_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """ratio_torch = the best PyTorch time / this row's time, within each group
    of rows that time the same thing (section, rule, size, model, batch);
    recomputed from the stored seconds so a hand-edited table stays coherent."""
    df = df.copy()
    keys = ["section", "rule", "size", "model", "batch"]
    g = df.assign(batch=df["batch"].fillna(-1))
    torch_best = (g[g.impl.map(is_torch)].groupby(keys, dropna=False).seconds.min()
                  .rename("torch_best"))
    merged = g[keys].merge(torch_best, left_on=keys, right_index=True, how="left")
    df["ratio_torch"] = (merged["torch_best"].to_numpy() / df["seconds"].to_numpy())
    return df


def is_torch(impl) -> bool:
    return str(impl).startswith(TORCH_PREFIX)


def order(values, preferred) -> list:
    present = list(dict.fromkeys(values))
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


def best_vs_torch(df: pd.DataFrame, section: str = "rule") -> pd.DataFrame:
    """Per (rule, size[, model]): our best impl and time, PyTorch's best impl and
    time, and ratio = PyTorch's best time / our best time (> 1: we are faster)."""
    d = df[(df.section == section) & (df.rule != "copy") & (df.impl != "numpy-naive")]
    keys = ["rule", "size"] + (["model"] if section == "model" else [])
    out = []
    for key, g in d.groupby(keys, sort=False):
        ours, theirs = g[~g.impl.map(is_torch)], g[g.impl.map(is_torch)]
        if ours.empty:
            continue
        o = ours.loc[ours.seconds.idxmin()]
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row.update(ours_impl=o.impl, ours_seconds=o.seconds, ours_gbps=o.get("gbps", np.nan),
                   copy_fraction=o.get("copy_fraction", np.nan))
        if not theirs.empty:
            t = theirs.loc[theirs.seconds.idxmin()]
            row.update(torch_impl=t.impl, torch_seconds=t.seconds, ratio=t.seconds / o.seconds)
        else:
            row.update(torch_impl="", torch_seconds=np.nan, ratio=np.nan)
        out.append(row)
    return pd.DataFrame(out)


def _seconds(df, **where) -> float:
    d = df
    for k, v in where.items():
        d = d[d[k] == v]
    return float(d.seconds.min()) if len(d) else float("nan")


def acceptance(df: pd.DataFrame, meta: dict) -> list[dict]:
    """The issue's acceptance criteria that this table can decide: one dict each
    with criterion, measured, target and ok (None where it can't be decided)."""
    gpu = bool(meta.get("gpu")) or "cupy" in set(df.impl)
    out = []
    rules = df[df.section == "rule"]
    if not gpu:
        size = CPU_TARGET_SIZE if (rules["size"] == CPU_TARGET_SIZE).any() else \
            (int(rules["size"].max()) if len(rules) else CPU_TARGET_SIZE)
        best = best_vs_torch(df)
        for name in order(best.rule if len(best) else [], RULE_ORDER):
            if name not in RULE_ORDER:
                continue
            r = best[(best.rule == name) & (best["size"] == size)]
            if r.empty:
                continue
            r = r.iloc[0]
            ok = None if not np.isfinite(r.ratio) else bool(r.ratio >= CPU_MIN_RATIO)
            out.append({"criterion": f"CPU {name} at {size_label(size)}: best of ours ({r.ours_impl}) "
                                     f"vs PyTorch's best ({r.torch_impl or 'absent'})",
                        "measured": f"{r.ratio:.2f}x" if np.isfinite(r.ratio) else "-",
                        "target": f">= {CPU_MIN_RATIO:.1f}x", "ok": ok})
    else:
        size = GPU_TARGET_SIZE
        adam = rules[(rules.rule == "adam") & (rules["size"] == size)]
        ours = adam[~adam.impl.map(is_torch)]
        if len(ours):
            o = ours.loc[ours.seconds.idxmin()]
            frac = float(o.copy_fraction)
            out.append({"criterion": f"GPU adam at {size_label(size)}: fraction of the device-to-device copy",
                        "measured": f"{frac:.2f}", "target": f">= {GPU_MIN_COPY_FRACTION}",
                        "ok": bool(frac >= GPU_MIN_COPY_FRACTION)})
            fused = _seconds(adam, impl="torch-fused")
            ratio = fused / o.seconds
            out.append({"criterion": f"GPU adam at {size_label(size)}: vs PyTorch's fused Adam",
                        "measured": f"{ratio:.2f}x" if np.isfinite(ratio) else "-",
                        "target": f">= {GPU_MIN_FUSED_RATIO:.1f}x",
                        "ok": bool(ratio >= GPU_MIN_FUSED_RATIO) if np.isfinite(ratio) else None})
        models = df[(df.section == "model") & (df.rule == "adam")]
        for model in order(models.model, ()):
            m = models[models.model == model]
            ours = m[~m.impl.map(is_torch)]
            fused = _seconds(m, impl="torch-fused")
            if len(ours):
                ratio = fused / ours.seconds.min()
                out.append({"criterion": f"GPU model-shaped adam ({model}, {int(m['n_tensors'].iloc[0])} "
                                         "tensors): vs PyTorch's fused Adam",
                            "measured": f"{ratio:.2f}x" if np.isfinite(ratio) else "-",
                            "target": "> 1.0x", "ok": bool(ratio > 1.0) if np.isfinite(ratio) else None})
    if meta.get("quick") and meta.get("wall_seconds") is not None:
        limit = QUICK_LIMIT_S["gpu" if gpu else "cpu"]
        out.append({"criterion": "quick benchmark wall time", "measured": f"{meta['wall_seconds']:.0f} s",
                    "target": f"< {limit:.0f} s", "ok": bool(meta["wall_seconds"] < limit)})
    return out


def size_label(n) -> str:
    n = int(n)
    e = round(math.log2(n)) if n > 0 else 0
    return f"2^{e}" if n > 0 and 1 << e == n else str(n)


# --- figures --------------------------------------------------------------------------------

def _figure(ncols: int, width: float = 4.2, height: float = 3.4, nrows: int = 1, **kw):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols + 0.8, height * nrows + 0.9), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def _publish(tmp: str, path: Path) -> None:
    """Rename a finished temporary file into place with the usual permissions
    (mkstemp creates it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        _publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _palette(names):
    import seaborn as sns

    return dict(zip(names, sns.color_palette("tab10", max(len(names), 1))))


def _log2_x(ax) -> None:
    """A log2 size axis labelled 2^k."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(LogLocator(base=4))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: size_label(x) if x >= 1 else ""))
    ax.xaxis.set_minor_formatter(NullFormatter())


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


# --- Markdown --------------------------------------------------------------------------------

def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _f(x, spec=".1f", suffix="") -> str:
    try:
        return f"{x:{spec}}{suffix}" if np.isfinite(x) else "-"
    except (TypeError, ValueError):
        return "-"


def rules_table(df: pd.DataFrame, size: int, section: str = "rule") -> tuple[list[str], list[list]]:
    """GB/s of every impl for each rule at ``size``, our best's fraction of the
    copy, and PyTorch's best time over our best."""
    d = df[(df.section == section) & (df["size"] == size) & (df.rule != "copy")]
    impls = order(d.impl, IMPL_ORDER)
    best = best_vs_torch(df, section)
    best = best[best["size"] == size]
    header = ["rule", "bytes/param"] + [f"{i} GB/s" for i in impls] + ["best of ours", "x copy",
                                                                         "vs PyTorch's best"]
    rows = []
    for name in order(d.rule, RULE_ORDER + ("dropout-forward", "dropout-backward")):
        g = d[d.rule == name]
        b = best[best.rule == name]
        cells = [name, _f(g.bytes_per_param.iloc[0], ".0f")]
        cells += [_f(g[g.impl == i].gbps.max()) if (g.impl == i).any() else "" for i in impls]
        if len(b):
            b = b.iloc[0]
            cells += [b.ours_impl, _f(b.copy_fraction, ".2f"), _f(b.ratio, ".2f", "x")]
        else:
            cells += ["", "", ""]
        rows.append(cells)
    return header, rows


def write_throughput_report(directory) -> Path:
    """Regenerate ``directory/report.md`` and ``directory/figures/*.png`` from the stored table."""
    directory = Path(directory)
    df, meta = load(directory)
    device = meta.get("device") or (df.device.iloc[0] if "device" in df and len(df) else "unknown device")
    figs = directory / "figures"
    made = {
        "bandwidth": plot_bandwidth(df, figs / "bandwidth.png", f"Update-rule bandwidth on {device}"),
        "ratio": plot_ratio(df, figs / "ratio_torch.png", f"Against PyTorch on {device}"),
        "models": plot_models(df, figs / "models.png", f"Model-shaped updates on {device}"),
        "training": plot_training(df, figs / "training.png", f"Training throughput on {device}"),
    }
    text = _markdown(df, meta, device, made)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".md")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    _publish(tmp, directory / "report.md")
    return directory / "report.md"


def _markdown(df: pd.DataFrame, meta: dict, device: str, made: dict) -> str:
    out = [f"# Throughput on {device}", ""]
    threads = meta.get("threads", {})
    facts = [
        ("written", meta.get("written")), ("our backends", ", ".join(meta.get("backends", []) or
                                                                     sorted(set(df.backend)))),
        ("PyTorch", f"{meta['torch']} ({meta.get('torch_device')})" if meta.get("torch") else "not installed"),
        ("run", ("quick" if meta.get("quick") else "full") + f", {meta.get('repeats', '?')} samples per case, "
                f"{meta.get('wall_seconds', '?')} s"),
        ("threads", ", ".join(f"{k} {v}" for k, v in threads.items())),
        ("load average before / after", f"{meta.get('loadavg_before')} / {meta.get('loadavg_after')}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items() if v)),
        ("git commit", meta.get("git_commit")), ("command", meta.get("command")),
    ]
    out += [f"- {k}: {v}" for k, v in facts if v not in (None, "")]
    if meta.get("complete") is False:
        out += ["", "**Incomplete run:** it stopped before every section was measured."]
    if meta.get("note"):
        out += ["", f"**Machine:** {meta['note']}"]
    out += ["", "Regenerate with `optbench report <this directory>`; the raw table is "
                f"[{CSV_NAME}]({CSV_NAME}) (long format, one row per section, impl, rule, size).", ""]

    acc = acceptance(df, meta)
    if acc:
        out += ["## Acceptance", "", md_table(
            ["criterion", "measured", "target", "verdict"],
            [[a["criterion"], a["measured"], a["target"],
              {True: "pass", False: "**miss**", None: "n/a"}[a["ok"]]] for a in acc]), ""]

    rules = df[df.section == "rule"]
    if len(rules):
        sizes = sorted(set(rules["size"]))
        top = CPU_TARGET_SIZE if CPU_TARGET_SIZE in sizes and not meta.get("gpu") else sizes[-1]
        out += [f"## Update rules at {size_label(top)} parameters", ""]
        h, r = rules_table(df, top)
        out += [md_table(h, r), ""]
        dh, dr = rules_table(df, top, "dropout")
        if dr:
            out += [f"Dropout at {size_label(top)} elements (8 bytes counted per element; PyTorch's "
                    "native_dropout also writes, and its backward reads, a byte mask):", "",
                    md_table(dh, dr), ""]
        copy = df[df.section == "copy"].sort_values("size")
        if len(copy):
            out += ["Copy bandwidth (the ceiling; " + copy.note.iloc[0] + "): " + ", ".join(
                f"{size_label(s)} {g:.1f} GB/s" for s, g in zip(copy["size"], copy.gbps)) + ".", ""]
        best = best_vs_torch(df)
        if len(best):
            piv = best.pivot_table(index="rule", columns="size", values="ratio")
            cols = list(piv.columns)
            rows_ = [[name] + [_f(piv.loc[name, c], ".2f") for c in cols]
                     for name in order(piv.index, RULE_ORDER)]
            out += ["Best of ours against PyTorch's best (time ratio, > 1: ours faster), every size:", "",
                    md_table(["rule"] + [size_label(c) for c in cols], rows_), ""]
            frac = best.pivot_table(index="rule", columns="size", values="copy_fraction")
            rows_ = [[name] + [_f(frac.loc[name, c], ".2f") for c in cols]
                     for name in order(frac.index, RULE_ORDER)]
            out += ["Best of ours as a fraction of the copy's bandwidth at the same size:", "",
                    md_table(["rule"] + [size_label(c) for c in cols], rows_), ""]
        if made.get("bandwidth"):
            out += ["![bandwidth against size](figures/bandwidth.png)", ""]
        if made.get("ratio"):
            out += ["![ratio to PyTorch](figures/ratio_torch.png)", ""]
        naive = rules[rules.impl == "numpy-naive"]
        for _, r in naive.iterrows():
            out += [f"Naive NumPy Adam at {size_label(r['size'])}: {r.gbps:.1f} GB/s ({r.note}).", ""]

    models = df[(df.section == "model") & (df.rule != "copy")]
    if len(models):
        out += ["## Model-shaped updates", "",
                "The parameter tensors of an MLP, updated by our one launch over the flat buffer "
                "against PyTorch's optimiser over the same tensors as separate parameters "
                "(microseconds per update):", ""]
        impls = order(models.impl, IMPL_ORDER)
        rows_ = []
        best = best_vs_torch(df, "model")
        for model in order(models.model, ("mnist1d", "wide", "deep")):
            m = models[models.model == model]
            for name in order(m.rule, RULE_ORDER):
                g = m[m.rule == name]
                b = best[(best.model == model) & (best.rule == name)]
                rows_.append([model, f"{int(g['size'].iloc[0]):,}", int(g.n_tensors.iloc[0]), name]
                             + [_f(g[g.impl == i].seconds.min() * 1e6, ".1f") if (g.impl == i).any() else ""
                                for i in impls]
                             + [_f(b.ratio.iloc[0], ".2f", "x") if len(b) else "-"])
        out += [md_table(["model", "params", "tensors", "rule"] + [f"{i} us" for i in impls]
                         + ["vs PyTorch's best"], rows_), ""]
        if made.get("models"):
            out += ["![model-shaped updates](figures/models.png)", ""]

    train = df[df.section == "training"]
    if len(train):
        out += ["## Training throughput", "",
                "Examples per second of forward + backward + Adam steps (float32, ReLU, softmax "
                "cross-entropy); PyTorch: the same network with `torch.optim.Adam` (default, and fused):", ""]
        impls = order(train.impl, IMPL_ORDER)
        rows_ = []
        for name in order(train.model, ("mnist1d", "digits")):
            t = train[train.model == name]
            for batch in sorted(set(t.batch)):
                g = t[t.batch == batch]
                ours = g[~g.impl.map(is_torch)]
                theirs = g[g.impl.map(is_torch)]
                ratio = (ours.examples_per_sec.max() / theirs.examples_per_sec.max()
                         if len(ours) and len(theirs) else float("nan"))
                rows_.append([f"{name} ({g.note.iloc[0].split(',')[0].replace('MLP ', '')})", int(batch)]
                             + [_f(g[g.impl == i].examples_per_sec.max(), ",.0f") if (g.impl == i).any()
                                else "" for i in impls] + [_f(ratio, ".2f", "x")])
        out += [md_table(["data (MLP)", "batch"] + [f"{i} ex/s" for i in impls]
                         + ["best of ours vs PyTorch's best"], rows_), ""]
        if made.get("training"):
            out += ["![training throughput](figures/training.png)", ""]

    out += ["## Method", "", *METHOD, ""]
    notes = df[df.impl.map(is_torch) & (df.section == "rule")][["rule", "note"]].drop_duplicates()
    if len(notes):
        out += ["PyTorch's optimiser for each rule (hyper-parameters follow ours where the forms "
                "coincide; the memory traffic is what the comparison needs):", ""]
        out += [f"- {r.rule}: `{r.note}`" for r in notes.itertuples()]
        out += [""]
    return "\n".join(out)


METHOD = [
    "- Effective bandwidth = bytes per parameter x parameters / median time. Bytes per parameter "
    "(fp32, each buffer read or written once): SGD 12, Momentum 20, Nesterov 20, RMSProp 20, "
    "AdaDelta 28, Adam 28 (`rule.bytes_per_param`); dropout 8 per element forward and backward; "
    "the copy 8 per element. PyTorch's rows are counted with the same bytes, whatever it moves.",
    "- The fraction of the copy divides by a copy of the same size measured in the same run: "
    "np.copyto on the CPU (one thread, so multi-threaded kernels can exceed 1), a device-to-device "
    "cudaMemcpyAsync on the GPU.",
    "- Each case is warmed up (first calls: compilation, state allocation) and not timed then; the "
    "implementations of one group (one rule at one size) are timed round-robin, sample by sample, "
    "so a busy neighbour slows them alike; a sample times enough back-to-back calls to last 2 ms "
    "(CPU) or 0.2 ms (GPU); the table holds the median sample.",
    "- CPU: perf_counter, with a 1 ms pause before each sample (lets the other implementation's "
    "OpenMP threads stop spinning). Buffers are not rotated: small sizes stay in the caches, as "
    "they do in a training loop.",
    "- GPU: CUDA events; every case rotates among copies of its buffers so that at least 2x the "
    "L2 cache is touched between two uses of one copy, i.e. each call reads cold memory; copies are "
    "capped at 1024, so at the smallest sizes (the `cold` column is False) the buffers stay in L2 -- "
    "those sizes are launch-bound anyway.",
    "- Model-shaped: ours is one launch over the model's flat buffer (views per tensor, 16-byte "
    "aligned, bytes counted over the real parameters); PyTorch's optimiser sees the same tensors as "
    "separate parameters (foreach: multi-tensor ops; fused: one fused kernel per group).",
    "- Training: steps cycle over 16 pre-drawn batches; a sample is enough steps to last "
    "0.15 s (0.05 s quick); medians of interleaved samples; PyTorch's default Adam on the CPU is "
    "its single-tensor loop.",
]
