"""The throughput report, regenerated from a stored ``optbench bench`` table alone.

``write_throughput_report(dir)`` reads ``dir/throughput.csv`` and
``dir/meta.json`` (:func:`.scoring.load`), and writes ``dir/report.md`` and its
figures in ``dir/figures/`` (:mod:`.figures`). Nothing here runs a benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..reporting.files import atomic_write_text
from ..reporting.markdown import md_table
from .figures import plot_bandwidth, plot_models, plot_population, plot_ratio, plot_training
from .scoring import (CPU_TARGET_SIZE, CSV_NAME, IMPL_ORDER, RULE_ORDER, acceptance, best_vs_torch,
                      float32_state, is_torch, load, order, size_label, state_speedups, update_share)


def _f(x, spec=".1f", suffix="") -> str:
    try:
        return f"{x:{spec}}{suffix}" if np.isfinite(x) else "-"
    except (TypeError, ValueError):
        return "-"


def rules_table(df: pd.DataFrame, size: int, section: str = "rule") -> tuple[list[str], list[list]]:
    """GB/s of every impl for each rule at ``size``, our best's fraction of the
    copy, and PyTorch's best time over our best."""
    d = df[(df.section == section) & (df["size"] == size) & (df.rule != "copy") & float32_state(df)]
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


def state_section(df: pd.DataFrame) -> list[str]:
    """The rules with their state kept in 16 bits against float32, where the
    run timed them (``optbench bench --state``)."""
    sp = state_speedups(df)
    if sp.empty:
        return []
    rows = [[r.rule, size_label(r["size"]), r.kernel, r.state, _f(r.bytes_per_param, ".0f"), _f(r.byte_ratio, ".2f", "x"),
             _f(r.speedup, ".2f", "x"), _f(r.fp32_copy_fraction, ".2f"), _f(r.copy_fraction, ".2f")]
            for _, r in sp.sort_values(["size", "kernel", "state"], kind="stable").iterrows()]
    return ["## State precision", "",
            "Each rule with its state kept in bfloat16 (16 bits, loaded and stored by the rule's own kernel) "
            "against the float32 state, timed in one group: the speed-up is the float32 step's time over "
            "this one's, the byte ratio what a step bound by memory alone would gain. A rule that updates "
            "in stages keeps float32 words (byte ratio 1).", "",
            md_table(["rule", "size", "kernel", "state", "bytes/param", "byte ratio", "speed-up",
                      "fp32 x copy", "x copy"], rows), ""]


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
        "population": plot_population(df, figs / "population.png", f"Populations on {device}"),
    }
    return atomic_write_text(directory / "report.md", _markdown(df, meta, device, made))


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
        out += state_section(df)

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
        share = update_share(df)
        if len(share):
            out += ["The optimiser update's share of a training step, default study's MLP (mnist1d): "
                    "one Adam update of its 23,050 parameters (the model-shaped section) over one "
                    "step's time at that batch size (this section), same implementation:", "",
                    md_table(["impl", "batch", "update us", "step us", "update share"],
                             [[r.impl, int(r.batch), _f(r.update_us, ".1f"), _f(r.step_us, ".1f"),
                               _f(100 * r.share, ".1f", "%")] for r in share.itertuples()]), ""]

    pop = df[df.section == "population"]
    if len(pop):
        out += ["## Populations", "",
                "Microseconds per member-step (one member's share of a training step: loss, gradients, "
                "step account, Adam update) for P members trained as one model, against P; a single run's "
                "step for comparison (P runs one after another cost P of these), and JAX's vmap over a "
                "jit-compiled step where JAX is installed. MLP 40-128-128-10 on data of mnist1d's shape, "
                "batch 32:", ""]
        impls = order(pop.impl, ())
        rows_ = []
        for P in sorted(set(pop["size"])):
            g = pop[pop["size"] == P]
            us = {i: float(g[g.impl == i].seconds.min()) * 1e6 for i in impls if (g.impl == i).any()}
            ours = [i for i in us if i.endswith("-population")]
            single = [i for i in us if i.endswith("-single")]
            ratio = lambda a, b: _f(us[b] / us[a], ".2f", "x") if a in us and b in us else "-"  # noqa: E731
            rows_.append([int(P)] + [_f(us.get(i), ".1f") if i in us else "" for i in impls]
                         + [ratio(ours[0], single[0]) if ours and single else "-",
                            ratio(ours[0], "jax-vmap") if ours else "-"])
        out += [md_table(["members P"] + [f"{i} us" for i in impls]
                         + ["population vs single run", "population vs JAX"], rows_), ""]
        if made.get("population"):
            out += ["![per member-step cost against P](figures/population.png)", ""]

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
    "- The fraction of the copy divides by the fastest stream of the same size measured in the same "
    "run, at 8 bytes per element: on the CPU the fastest of np.copyto (one thread), a parallel copy "
    "and a parallel in-place scale x := a x (all cores; the access pattern of an in-place update -- a "
    "copy into a second buffer also reads each destination line before writing it, so it understates "
    "the memory's bandwidth by a third); a device-to-device cudaMemcpyAsync on the GPU.",
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

