"""Scoring a stored ``optbench bench`` table: pure functions over its rows.

The table (``throughput.csv``, one row per section, impl, rule, size, and
model or batch; :mod:`suite.bench.cases` lists the columns) is read by
:func:`load`; :func:`best_vs_torch` and :func:`acceptance` score it. Nothing
here draws or writes (:mod:`.figures`, :mod:`.report`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from optbench.kernels.rules import BUILTIN

CSV_NAME = "throughput.csv"
META_NAME = "meta.json"
TORCH_PREFIX = "torch"
#: The built-in rules in the registry's order (plug-ins follow, by name).
RULE_ORDER = BUILTIN
IMPL_ORDER = ("numpy", "numba", "cupy", "torch", "torch-foreach", "torch-fused", "numpy-naive")
#: Acceptance targets of the throughput issue.
CPU_TARGET_SIZE = 1 << 24
GPU_TARGET_SIZE = 1 << 26
CPU_MIN_RATIO = 1.0
#: Issue 23: a bf16-state Adam step against the float32-state one (byte ratio 28/20 = 1.4).
STATE_MIN_SPEEDUP = 1.3
GPU_MIN_COPY_FRACTION = 0.85
GPU_MIN_FUSED_RATIO = 1.0
QUICK_LIMIT_S = {"cpu": 180.0, "gpu": 300.0}
#: The GPU-path issue's target: the update is at most this share of a step,
#: at the default study's smallest batch size.
MAX_UPDATE_SHARE = 0.10
SHARE_BATCH = 32
#: The population issue's target: below JAX's per member-step cost at this P.
POPULATION_P = 108


class ThroughputReportError(ValueError):
    """The directory holds no usable throughput table."""


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
    # tables from before the state column: every state was float32
    df["state"] = df["state"].where(df["state"].notna(), "fp32").astype(str) if "state" in df else "fp32"
    return add_torch_ratios(df), meta


def float32_state(df: pd.DataFrame) -> pd.Series:
    """Rows whose optimiser state is float32 (a row without a state, from a
    table written before the column or from another section, is)."""
    if "state" not in df:
        return pd.Series(True, index=df.index)
    return df["state"].isna() | (df["state"] == "fp32")


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
    # against PyTorch's float32 state: our float32 state alone
    d = df[(df.section == section) & (df.rule != "copy") & (df.impl != "numpy-naive") & float32_state(df)]
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


def state_speedups(df: pd.DataFrame) -> pd.DataFrame:
    """Per (rule, size, kernel backend, state other than fp32): ``speedup``,
    the float32-state step's time over this state's, both timed in one
    group; ``byte_ratio``, the bytes per parameter each moves (the speed-up
    a purely memory-bound step would get); and this state's fraction of the
    copy."""
    d = df[(df.section == "rule") & (df.rule != "copy") & ~df.impl.map(is_torch) & (df.impl != "numpy-naive")]
    d = d.assign(kernel=d.impl.str.split(" ").str[0])
    out = []
    for (rule, size, kernel), g in d.groupby(["rule", "size", "kernel"], sort=False):
        base = g[float32_state(g)]
        if base.empty:
            continue
        b = base.iloc[0]
        for _, r in g[~float32_state(g)].iterrows():
            out.append({"rule": rule, "size": int(size), "kernel": kernel, "state": r.state,
                        "speedup": b.seconds / r.seconds, "byte_ratio": b.bytes_per_param / r.bytes_per_param,
                        "bytes_per_param": r.bytes_per_param, "copy_fraction": r.copy_fraction,
                        "fp32_copy_fraction": b.copy_fraction})
    return pd.DataFrame(out)


def acceptance(df: pd.DataFrame, meta: dict) -> list[dict]:
    """The issue's acceptance criteria that this table can decide: one dict each
    with criterion, measured, target and ok (None where it can't be decided)."""
    gpu = bool(meta.get("gpu")) or "cupy" in set(df.impl)
    out = []
    speedups = state_speedups(df)
    target = speedups[(speedups.rule == "adam") & (speedups.state == "bf16")
                      & (speedups.kernel == ("cupy" if gpu else "numba"))] if len(speedups) else speedups
    if len(target):
        t = target.loc[target["size"].idxmax()]
        out.append({"criterion": f"{'GPU' if gpu else 'CPU'} adam at {size_label(t['size'])} ({t.kernel}): "
                                 "bf16 state against fp32, timed together",
                    "measured": f"{t.speedup:.2f}x (bytes {t.byte_ratio:.2f}x)",
                    "target": f">= {STATE_MIN_SPEEDUP:.1f}x", "ok": bool(t.speedup >= STATE_MIN_SPEEDUP)})
    rules = df[(df.section == "rule") & float32_state(df)]
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
    share = update_share(df)
    share = share[share.batch == SHARE_BATCH]
    if len(share) and not gpu:
        best = share.loc[share.share.idxmin()]
        out.append({"criterion": f"CPU: the Adam update's share of a training step (mnist1d MLP, batch "
                                 f"{int(best.batch)}, {best.impl})",
                    "measured": f"{100 * best.share:.1f}%", "target": f"<= {100 * MAX_UPDATE_SHARE:.0f}%",
                    "ok": bool(best.share <= MAX_UPDATE_SHARE)})
    pop = df[(df.section == "population") & (df["size"] == POPULATION_P)]
    ours = pop[pop.impl.str.endswith("-population")]
    jax = pop[pop.impl == "jax-vmap"]
    if len(ours) and len(jax):
        ratio = float(jax.seconds.min()) / float(ours.seconds.min())
        out.append({"criterion": f"population of {POPULATION_P}: per member-step, ours ({ours.impl.iloc[0]}) vs "
                                 "JAX vmap+jit", "measured": f"{ratio:.2f}x", "target": "> 1.0x",
                    "ok": bool(ratio > 1.0)})
    if meta.get("quick") and meta.get("wall_seconds") is not None:
        limit = QUICK_LIMIT_S["gpu" if gpu else "cpu"]
        out.append({"criterion": "quick benchmark wall time", "measured": f"{meta['wall_seconds']:.0f} s",
                    "target": f"< {limit:.0f} s", "ok": bool(meta["wall_seconds"] < limit)})
    return out


def size_label(n) -> str:
    n = int(n)
    e = round(math.log2(n)) if n > 0 else 0
    return f"2^{e}" if n > 0 and 1 << e == n else str(n)



def update_share(df: pd.DataFrame, model: str = "mnist1d") -> pd.DataFrame:
    """Per implementation of ours and batch size: one Adam update of the
    model's parameters (section "model") over one training step (section
    "training", the same model), in microseconds, and their ratio."""
    upd = df[(df.section == "model") & (df.model == model) & (df.rule == "adam") & ~df.impl.map(is_torch)]
    train = df[(df.section == "training") & (df.model == model) & ~df.impl.map(is_torch)]
    rows = []
    for r in train.itertuples():
        u = upd[upd.impl == r.impl]
        if len(u) and r.examples_per_sec > 0:
            step_us = r.batch / r.examples_per_sec * 1e6
            update_us = float(u.seconds.min()) * 1e6
            rows.append({"impl": r.impl, "batch": r.batch, "update_us": update_us, "step_us": step_us,
                         "share": update_us / step_us})
    return pd.DataFrame(rows, columns=["impl", "batch", "update_us", "step_us", "share"])
