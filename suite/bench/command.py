"""``optbench bench``: update-rule, dropout and training throughput, against a copy and PyTorch.

Optimiser updates are memory-bound, so the figure that travels between
machines is the effective bandwidth of a step -- the rule's bytes per
parameter (``rule.bytes_per_param``, fp32: SGD 12, Momentum/NAG 20, RMSProp
20, AdaDelta 28, Adam 28; dropout 8 per element, forward and backward) times
the parameter count over the median step time -- as a fraction of a copy's
bandwidth measured in the same run at the same size (np.copyto on the CPU, a
device-to-device cudaMemcpy on the GPU, 8 bytes per element: read + write).

Sections (one long-format table, ``throughput.csv``, one row per (section,
impl, rule, size[, model, batch])):

* ``copy``: the copy at every size (the ceiling);
* ``rule``: every update rule at every size, for each of our kernel backends
  measured (CPU: numpy, and numba when installed; GPU: cupy), and PyTorch's
  optimiser for the same rule on the same device (``torch.optim`` with
  ``foreach=True`` and, where the optimiser has it, ``fused=True``), one
  parameter tensor of that size; ``ratio_torch`` is the best PyTorch
  variant's median time over this row's (> 1: faster than PyTorch);
* ``dropout``: dropout forward and backward (ours: the Philox kernels, p=0.5;
  PyTorch: ``native_dropout`` and its backward, which also write and read a
  byte mask -- counted at the same 8 bytes per element);
* ``model``: the parameter tensors of an MLP (the default study's mnist1d
  40-128-128-10, a wide 784-1024-1024-1024-10 and a deep 64-256x24-10 with 50
  tensors), updated by our one launch over the flat buffer against PyTorch's
  optimiser over the same shapes as separate parameters;
* ``training``: examples per second of forward + backward + Adam steps
  against batch size, for the default study's MLP on mnist1d and the
  64-128-128-10 MLP on digits, ours and PyTorch's (default Adam, and fused).

Where each part lives: :mod:`.timing` (timers, the round-robin samples, the
machine and its timing policy), :mod:`.cases` (the copy, rule, dropout and
model-shaped cases, PyTorch's optimisers, the table's rows), :mod:`.training`
(training throughput), :mod:`.report` (the report, from the stored table);
this module runs the sections a command asks for (:class:`BenchOptions`),
prints them, and saves the table.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..reporting import provenance
from ..reporting.files import atomic_write_csv, atomic_write_text, writable_folder
from ..reporting.kinds import write_kind
from .cases import COLUMNS, model_rows, size_rows
from .population import population_rows
from .report import write_throughput_report
from .scoring import CSV_NAME, META_NAME, state_speedups
from .timing import L2_MULTIPLE, ROTATION_CAP, TORCH_THP_ENV, Env, make_env
from .training import training_rows

SIZES = {
    ("cpu", False): [1 << e for e in range(10, 25, 2)],
    ("cpu", True): [1 << 10, 1 << 16, 1 << 20, 1 << 24],
    ("gpu", False): [1 << e for e in range(10, 27, 2)],
    ("gpu", True): [1 << 10, 1 << 16, 1 << 20, 1 << 24, 1 << 26],
}


@dataclass(frozen=True)
class BenchOptions:
    """What ``optbench bench`` measures and where it keeps it (the command's flags).

    backend: our kernels ("auto", "numpy", "numba", "cupy"); quick: fewer sizes
    and repeats; out: where to keep the table (None: results/throughput/<device>
    for a full run, nowhere for a quick or partial one); sizes / models /
    training: only those sections; batch_sizes: the training section's;
    repeats: timed samples per case; torch: time PyTorch where installed;
    naive: also time the one-expression-per-line NumPy Adam; note: a remark
    kept in meta.json and the report; rules: only these rules in the rule
    and model-shaped sections (None: every registered rule); states: the
    state precisions each rule is timed at in the rule section.
    """

    backend: str = "auto"
    quick: bool = False
    out: str | None = None
    sizes: tuple[int, ...] | None = None
    models: bool = False
    training: bool = False
    population: bool = False
    members: tuple[int, ...] | None = None
    batch_sizes: tuple[int, ...] | None = None
    repeats: int | None = None
    torch: bool = True
    naive: bool = False
    note: str = ""
    rules: tuple[str, ...] | None = None
    states: tuple[str, ...] = ("fp32",)


def sanitize(name: str) -> str:
    """A device name as one path component: 'AMD EPYC x2' -> 'AMD-EPYC-x2'."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", name).strip("-.") or "device"


# --- the command -----------------------------------------------------------------------------

def _fmt(x, spec: str, width: int) -> str:
    return f"{x:{width}{spec}}" if isinstance(x, (int, float)) and np.isfinite(x) else f"{'-':>{width}}"


def _print_rule_rows(rows: list[dict]) -> None:
    """One line per (rule, size, our backend) with PyTorch's GB/s alongside
    (foreach and fused; for dropout: native_dropout); the last column is
    the fraction of the copy."""
    by = {}
    for r in rows:
        by.setdefault((r["rule"], r["size"]), {})[r["impl"]] = r
    for (rule, size), impls in by.items():
        nan = {"gbps": float("nan")}
        first = impls.get("torch-foreach", impls.get("torch", nan))["gbps"]
        fused = impls.get("torch-fused", nan)["gbps"]
        for impl, r in impls.items():
            if impl.startswith("torch"):
                continue
            print(f"{rule:<20} {size:>10} {impl:<12} {r['seconds'] * 1e6:>11.1f} {r['gbps']:>8.1f}"
                  f"{_fmt(first, '.1f', 9)}{_fmt(fused, '.1f', 9)} {_fmt(r['ratio_torch'], '.2f', 8)} "
                  f"{r['copy_gbps']:>9.1f} {r['copy_fraction']:>7.2f}", flush=True)


RULE_HEADER = (f"{'rule':<20} {'size':>10} {'impl':<12} {'us/step':>11} {'GB/s':>8}{'torch-fe':>9}"
               f"{'torch-fu':>9} {'vs torch':>8} {'copy GB/s':>9} {'x copy':>7}")


def run(args: BenchOptions, log=print, out_dir: Callable[[dict], Path | None] = lambda meta: None
        ) -> tuple[list[dict], dict]:
    """Run the sections ``args`` asks for; returns (rows, metadata). Where
    ``out_dir(meta)`` names a directory, the table is saved there after every
    group of rows too, so an interrupted run keeps what it measured."""
    t_start = time.perf_counter()
    load_before = _loadavg()
    env = make_env(args.backend, args.quick, args.repeats, use_torch=args.torch)
    sections = wanted_sections(args)
    sizes = args.sizes or SIZES[(env.kind, args.quick)]
    out = out_dir(metadata(env, args, sections, sizes, 0.0, load_before))

    def checkpoint() -> None:
        if out is not None:
            save(rows, metadata(env, args, sections, sizes, time.perf_counter() - t_start, load_before)
                 | {"complete": False}, out)
    names = [b.name for b in env.backends]
    log(f"optbench bench: {', '.join(names)} on {env.device}; "
        f"PyTorch {env.torch.__version__ + ' (' + env.torch_device + ')' if env.torch else 'not installed'}; "
        f"median of {env.repeats} interleaved samples; sections: {', '.join(sections)}")
    rows: list[dict] = []
    if "rules" in sections:
        log(RULE_HEADER)
        log("-" * len(RULE_HEADER))
        for n in sizes:
            sr = size_rows(env, n, args.rules, naive=args.naive, log=log, states=args.states)
            _print_rule_rows([r for r in sr if r["section"] != "copy"])
            rows += sr
            checkpoint()
        speedups = state_speedups(pd.DataFrame(rows, columns=COLUMNS))
        if len(speedups):
            log("\nstate precision: the float32-state step's time over this one's (bytes: what memory alone gives)")
            for _, r in speedups.iterrows():
                log(f"{r.rule:<20} {r['size']:>10} {r.kernel:<6} {r.state:<8} {r.speedup:>6.2f}x "
                    f"(bytes {r.byte_ratio:.2f}x)")
        for r in rows:
            if r["rule"] == "adam (naive numpy)":
                ratio = r["seconds"] / next(x["seconds"] for x in rows if x["rule"] == "adam"
                                           and x["impl"] == "numpy" and x["size"] == r["size"])
                log(f"adam at {r['size']}: {ratio:.1f}x faster than the naive NumPy Adam")
    if "models" in sections:
        log("\nmodel-shaped: one launch over the flat buffer vs PyTorch over separate tensors")
        log(f"{'model':<8} {'params':>8} {'tensors':>7} {'rule':<9} {'impl':<14} {'us/step':>10} "
            f"{'GB/s':>7} {'vs torch':>8}")
        for r in model_rows(env, rules=args.rules, log=log):
            if r["section"] == "model" and r["rule"] != "copy":
                log(f"{r['model']:<8} {r['size']:>8} {r['n_tensors']:>7} {r['rule']:<9} {r['impl']:<14} "
                    f"{r['seconds'] * 1e6:>10.1f} {r['gbps']:>7.1f} {_fmt(r['ratio_torch'], '.2f', 8)}")
            rows.append(r)
        checkpoint()
    if "training" in sections:
        log("\ntraining throughput (Adam, float32, ReLU, softmax cross-entropy)")
        log(f"{'data':<8} {'batch':>6} {'impl':<12} {'examples/s':>11} {'vs torch':>8}")
        for r in training_rows(env, args.batch_sizes, log=log):
            log(f"{r['model']:<8} {r['batch']:>6} {r['impl']:<12} {r['examples_per_sec']:>11.0f} "
                f"{_fmt(r['ratio_torch'], '.2f', 8)}")
            rows.append(r)
    if "population" in sections:
        log("\npopulations: microseconds per member-step against P (MLP 40-128-128-10, batch 32, Adam)")
        rows += population_rows(env, args.members, log=log)
        checkpoint()
    meta = metadata(env, args, sections, sizes, time.perf_counter() - t_start, load_before)
    meta["complete"] = True
    return rows, meta


def wanted_sections(args: BenchOptions) -> list[str]:
    """--sizes: the per-size rules; --models, --training: those; none: everything."""
    picked = [s for s, on in (("rules", args.sizes is not None), ("models", args.models),
                              ("training", args.training), ("population", args.population)) if on]
    return picked or ["rules", "models", "training", "population"]


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def metadata(env: Env, args: BenchOptions, sections, sizes, wall_s: float, load_before) -> dict:
    torch = env.torch
    threads = {"cpu_count": os.cpu_count()}
    if torch is not None:
        threads["torch"] = torch.get_num_threads()
    if any(b.name == "numba" for b in env.backends):
        import numba

        threads["numba"] = numba.config.NUMBA_NUM_THREADS
        try:
            threads["numba_layer"] = numba.threading_layer()
        except Exception:
            pass
    return {
        "device": env.device, "device_dir": sanitize(env.device), "gpu": env.gpu,
        "backends": [b.name for b in env.backends], "requested_backend": args.backend,
        "quick": bool(args.quick), "sections": sections, "sizes": list(map(int, sizes)),
        "repeats": env.repeats, "min_sample_s": env.min_sample_s,
        "l2_bytes": env.l2_bytes or None, "rotation_cap": ROTATION_CAP, "l2_multiple": L2_MULTIPLE,
        "torch": torch.__version__ if torch is not None else None,
        "torch_device": env.torch_device if torch is not None else None,
        "torch_thp_alloc": os.environ.get(TORCH_THP_ENV) if torch is not None else None,
        "versions": {m: provenance.version(m) for m in ("numpy", "numba", "cupy", "torch", "pandas")},
        "python": provenance.machine()["python"], "platform": provenance.machine()["platform"],
        "threads": threads, "git_commit": provenance.git_commit(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": round(wall_s, 1),
        "loadavg_before": load_before, "loadavg_after": _loadavg(),
        "note": args.note or "", "command": shlex.join(["optbench", *sys.argv[1:]]),
        "states": list(args.states),
    }


def save(rows: list[dict], meta: dict, out: Path) -> Path:
    """Write throughput.csv and meta.json atomically into ``out``; returns out."""
    df = pd.DataFrame(rows, columns=COLUMNS)
    atomic_write_csv(out / CSV_NAME, df)
    atomic_write_text(out / META_NAME, json.dumps(meta, indent=2) + "\n")
    write_kind(out, "throughput")
    return out


def default_out(args: BenchOptions, meta: dict) -> Path | None:
    """Where a run is kept: --out, or for a complete full run results/throughput/<device>."""
    if args.out:
        return Path(args.out)
    full = not args.quick and args.sizes is None and not args.models and not args.training \
        and not args.population
    return Path("results") / "throughput" / meta["device_dir"] if full else None


def main(args: BenchOptions, log=print) -> int:
    if args.out:  # a folder that cannot take the table is refused now, not after the benchmark
        problem = writable_folder(args.out, 16 << 20, "bench output folder")
        if problem:
            raise ValueError(problem)
    rows, meta = run(args, log, out_dir=partial(default_out, args))
    out = default_out(args, meta)
    if out is None:
        log(f"\n(not saved: pass --out DIR to keep a quick or partial run; done in {meta['wall_seconds']} s)")
        return 0
    save(rows, meta, out)
    report = write_throughput_report(out)
    log(f"\n{len(rows)} rows in {out / CSV_NAME}; report: {report}; done in {meta['wall_seconds']} s")
    return 0
