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

PyTorch's hyper-parameters follow ours where the rules coincide; where they
differ (below) the memory traffic is the same, which is what a bandwidth
comparison needs:

* momentum -> ``SGD(momentum=gamma, dampening=gamma)``: torch's
  ``buf = momentum * buf + (1 - dampening) * g`` is then our EMA form
  ``v = gamma v + (1 - gamma) g`` (torch's first step sets buf = g);
* nesterov -> ``SGD(momentum=gamma, nesterov=True)``: torch requires
  dampening = 0, i.e. the heavy-ball form ``buf = gamma buf + g``, step
  ``g + gamma buf``; the same three buffers read and two written as ours;
* rmsprop -> ``RMSprop(alpha=gamma)``, adam -> ``Adam(betas=(gamma, alpha))``;
  adadelta -> ``Adadelta(rho=gamma, eps=eps**2)`` (eps inside the roots).

Timing (see DESIGN.md, "Measuring"): each case's first calls are a warm-up
(compilation, state allocation) and are not timed; then the cases of one
group (a rule at one size: ours and PyTorch's) are timed round-robin,
interleaved sample by sample, so that a busy neighbour slows them alike; each
sample times enough back-to-back calls to last ``min_sample_s`` and the
reported time is the median over ``repeats`` samples.

* CPU: ``perf_counter``; a 1 ms pause before each sample lets the other
  implementation's idle OpenMP threads stop spinning. No rotation: a small
  buffer stays in the caches between calls, as it does in a training loop.
* GPU: CUDA events (cupy's for ours, torch's for PyTorch's). Every case
  rotates among ``copies`` independent sets of its buffers, enough that at
  least 2x the L2 cache is touched between two uses of one set, so each
  timed call reads cold memory; the number of copies is capped at
  :data:`ROTATION_CAP`, so the smallest sizes still read from L2 (the
  ``cold`` column says which: those sizes are launch-bound anyway).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from kernels import RULES, FlatLayout, Optimizer, get_backend
from kernels import dropout as dropout_kernels
from kernels.backend import BackendUnavailable
from kernels.optimizer import aligned_zeros

SIZES = {
    ("cpu", False): [1 << e for e in range(10, 25, 2)],
    ("cpu", True): [1 << 10, 1 << 16, 1 << 20, 1 << 24],
    ("gpu", False): [1 << e for e in range(10, 27, 2)],
    ("gpu", True): [1 << 10, 1 << 16, 1 << 20, 1 << 24, 1 << 26],
}
REPEATS = {("cpu", False): 15, ("cpu", True): 5, ("gpu", False): 50, ("gpu", True): 20}
#: Each sample times back-to-back calls lasting at least this long.
MIN_SAMPLE_S = {"cpu": 2e-3, "gpu": 2e-4}
MAX_CALLS = 10_000
CPU_PAUSE_S = 1e-3
BATCH_SIZES = {False: [16, 32, 64, 128, 256, 512, 1024], True: [16, 64, 256, 1024]}
TRAIN_SAMPLE_S = {False: 0.15, True: 0.05}
#: name -> layer widths; the default study's MLP first.
MODELS = {
    "mnist1d": [40, 128, 128, 10],
    "wide": [784, 1024, 1024, 1024, 10],
    "deep": [64] + [256] * 24 + [10],
}
#: Training cases: dataset -> hidden widths (mnist1d is the default study's MLP;
#: digits 64-128-128-10 is the acceptance figure of the training issue).
TRAINING = {"mnist1d": (128, 128), "digits": (128, 128)}
COPY_BYTES = 8      # per element: read + write
DROPOUT_BYTES = 8   # per element: read x (or grad_out), write out (or grad_in)
DROPOUT_P = 0.5
ROTATION_CAP = 1024
DEFAULT_L2_BYTES = 50 << 20  # an H100's, where the device doesn't say
L2_MULTIPLE = 2
CSV_NAME = "throughput.csv"
META_NAME = "meta.json"
TORCH_VARIANTS = ("torch-foreach", "torch-fused")

COLUMNS = [
    "section", "impl", "rule", "size", "model", "n_tensors", "batch", "seconds", "gbps",
    "copy_gbps", "copy_fraction", "ratio_torch", "examples_per_sec", "bytes_per_param",
    "repeats", "copies", "cold", "backend", "device", "note",
]


# --- timing ---------------------------------------------------------------------------

class _WallTimer:
    seconds = float("nan")

    def __init__(self, sync: Callable[[], None] = lambda: None):
        self._sync = sync

    def __enter__(self):
        self._sync()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self._sync()
        self.seconds = time.perf_counter() - self._t0


class _TorchCudaTimer:
    seconds = float("nan")

    def __init__(self, torch):
        self._torch = torch
        self._start = torch.cuda.Event(enable_timing=True)
        self._stop = torch.cuda.Event(enable_timing=True)

    def __enter__(self):
        self._start.record()
        return self

    def __exit__(self, *exc):
        self._stop.record()
        self._stop.synchronize()
        self.seconds = self._start.elapsed_time(self._stop) / 1e3


@dataclass
class Case:
    """One implementation of one benchmark: calls rotating over ``fns``."""

    impl: str
    fns: list
    timer: Callable[[], object]
    sync: Callable[[], None]
    note: str = ""
    copies: int = 1
    cold: bool | None = None
    calls: int = 1
    role: str = ""  # "copy": the reference copy timed within a group
    samples: list = field(default_factory=list)
    _next: int = 0

    def run(self, k: int) -> None:
        fns, i = self.fns, self._next
        for _ in range(k):
            fns[i]()
            i += 1
            if i == len(fns):
                i = 0
        self._next = i

    @property
    def seconds(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")


def measure(cases: list[Case], repeats: int, min_sample_s: float, pause_s: float = 0.0) -> None:
    """Warm up every case (one pass over its rotation), size its samples, then
    take ``repeats`` samples of each, round-robin; medians in ``case.seconds``."""
    for c in cases:
        c.run(max(2, len(c.fns)))
        c.sync()
    for c in cases:
        with c.timer() as t:
            c.run(1)
        c.calls = int(max(1, min(MAX_CALLS, math.ceil(min_sample_s / max(t.seconds, 1e-8)))))
    for r in range(repeats):
        k = r % len(cases)
        for c in cases[k:] + cases[:k]:
            if pause_s:
                time.sleep(pause_s)
            with c.timer() as t:
                c.run(c.calls)
            c.samples.append(t.seconds / c.calls)


def median_seconds(backend, fn, repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn`` on ``backend`` (kept for callers of the old API)."""
    for _ in range(warmup):
        fn()
    backend.synchronize()
    times = []
    for _ in range(repeats):
        with backend.timer() as t:
            fn()
        times.append(t.seconds)
    return statistics.median(times)


# --- the machine ---------------------------------------------------------------------

#: PyTorch's CPU allocator madvises transparent huge pages only when this is
#: set; NumPy madvises them for every large array. Set it (unless the user
#: did) so that both sides' CPU buffers sit on the same kind of pages and
#: neither wins on TLB misses. c10 reads it at its first large allocation.
TORCH_THP_ENV = "THP_MEM_ALLOC_ENABLE"


def import_torch():
    """PyTorch, or None where it is not installed (it is optional)."""
    os.environ.setdefault(TORCH_THP_ENV, "1")
    try:
        import torch
    except Exception:  # ImportError, or a broken install
        return None
    return torch


def sanitize(name: str) -> str:
    """A device name as one path component: 'AMD EPYC x2' -> 'AMD-EPYC-x2'."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", name).strip("-.") or "device"


def kernel_backends(requested: str) -> list:
    """Our kernel backends a run measures, first the one asked for.

    auto: cupy where it can run; else numpy plus numba when installed.
    numba: numba and numpy (the fallback it replaces), side by side.
    numpy / cupy: that one alone.
    """
    if requested == "auto":
        first = get_backend("auto")
        if first.is_gpu:
            return [first]
        out = [first]
        try:
            out.append(get_backend("numba"))
        except BackendUnavailable:
            pass
        return out
    if requested == "numba":
        return [get_backend("numba"), get_backend("numpy")]
    return [get_backend(requested)]


@dataclass
class Env:
    """What every case of a run needs: backends, device, torch, timing policy."""

    backends: list
    quick: bool
    repeats: int
    torch: object = None
    l2_bytes: int = 0

    @property
    def main(self):
        return self.backends[0]

    @property
    def gpu(self) -> bool:
        return self.main.is_gpu

    @property
    def kind(self) -> str:
        return "gpu" if self.gpu else "cpu"

    @property
    def xp(self):
        return self.main.xp

    @property
    def device(self) -> str:
        return self.main.device

    @property
    def torch_device(self) -> str:
        return "cuda" if self.gpu else "cpu"

    @property
    def min_sample_s(self) -> float:
        return MIN_SAMPLE_S[self.kind]

    @property
    def pause_s(self) -> float:
        return 0.0 if self.gpu else CPU_PAUSE_S

    def our_timer(self):
        return self.main.timer() if self.gpu else _WallTimer()

    def torch_timer(self):
        return _TorchCudaTimer(self.torch) if self.gpu else _WallTimer()

    def torch_sync(self) -> None:
        if self.gpu:
            self.torch.cuda.synchronize()

    def copies(self, set_bytes: int) -> tuple[int, bool | None]:
        """(copies to rotate among, whether each call then reads cold memory)."""
        if not self.gpu:
            return 1, None
        need = L2_MULTIPLE * self.l2_bytes
        if set_bytes >= need:
            return 1, True
        c = min(ROTATION_CAP, math.ceil(need / max(set_bytes, 1)) + 1)
        return c, (c - 1) * set_bytes >= need

    def free(self) -> None:
        if self.gpu:
            self.xp.get_default_memory_pool().free_all_blocks()
            if self.torch is not None:
                self.torch.cuda.empty_cache()


def make_env(requested: str, quick: bool, repeats: int | None = None, use_torch: bool = True) -> Env:
    backends = kernel_backends(requested)
    env = Env(backends, quick, 0)
    env.repeats = repeats or REPEATS[(env.kind, quick)]
    if use_torch:
        torch = import_torch()
        if torch is not None and env.gpu and not torch.cuda.is_available():
            torch = None  # a CPU-only torch says nothing about this GPU
        env.torch = torch
    if env.gpu:
        env.l2_bytes = gpu_l2_bytes(env.xp)
    return env


def gpu_l2_bytes(cp) -> int:
    """The current device's L2 size (DEFAULT_L2_BYTES where CuPy won't say)."""
    try:
        size = cp.cuda.Device().attributes.get("L2CacheSize")
        if not size:
            size = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id).get("l2CacheSize")
        return int(size) if size else DEFAULT_L2_BYTES
    except Exception:
        return DEFAULT_L2_BYTES


# --- cases ------------------------------------------------------------------------------

def _pad16(n: int) -> int:
    return -(-max(n, 1) // 16) * 16  # rows of a pool stay 64-byte aligned


def _pool(env: Env, copies: int, n: int, fill):
    """copies x n float32 rows, every row = fill, each starting on a 64-byte
    boundary (CuPy's allocations are; on the CPU as PyTorch's allocator does,
    see kernels.optimizer.aligned_zeros)."""
    if env.gpu:
        a = env.xp.empty((copies, _pad16(n)), dtype=np.float32)
    else:
        a = aligned_zeros(copies * _pad16(n)).reshape(copies, _pad16(n))
    a[:, :n] = fill
    return [a[k, :n] for k in range(copies)]


def _host_random(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n, dtype=np.float32)


def our_rule_case(env: Env, backend, rule, n: int, w0, g0) -> Case:
    copies, cold = env.copies(len(rule.buffers) * 4 * n)
    ws, gs = _pool(env, copies, n, w0), _pool(env, copies, n, g0)
    opts = [Optimizer(rule, w, backend=backend.name) for w in ws]
    return Case(backend.name, [partial(o.step, g) for o, g in zip(opts, gs)], env.our_timer,
                env.main.synchronize, copies=copies, cold=cold)


def torch_rule_note(name: str) -> str:
    return {
        "sgd": "SGD(lr)",
        "momentum": "SGD(momentum=gamma, dampening=gamma): buf = gamma buf + (1-gamma) g",
        "nesterov": "SGD(momentum=gamma, nesterov=True): torch needs dampening=0 (heavy-ball form); "
                    "same buffers read and written",
        "rmsprop": "RMSprop(alpha=gamma, eps)",
        "adadelta": "Adadelta(rho=gamma, eps=eps^2): eps inside the roots",
        "adam": "Adam(betas=(gamma, alpha), eps)",
    }.get(name, "")


def torch_optimizer(torch, name: str, params, variant: str):
    """torch.optim's optimiser for our rule ``name`` with our default hyper-parameters."""
    hp = RULES[name].defaults()
    kw = {"foreach": True} if variant == "torch-foreach" else {"fused": True}
    optim = torch.optim
    if name == "sgd":
        return optim.SGD(params, lr=hp["lr"], **kw)
    if name == "momentum":
        return optim.SGD(params, lr=hp["lr"], momentum=hp["gamma"], dampening=hp["gamma"], **kw)
    if name == "nesterov":
        return optim.SGD(params, lr=hp["lr"], momentum=hp["gamma"], nesterov=True, **kw)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=hp["lr"], alpha=hp["gamma"], eps=hp["eps"], **kw)
    if name == "adadelta":
        return optim.Adadelta(params, lr=hp["lr"], rho=hp["gamma"], eps=hp["eps"] ** 2, **kw)
    if name == "adam":
        return optim.Adam(params, lr=hp["lr"], betas=(hp["gamma"], hp["alpha"]), eps=hp["eps"], **kw)
    raise KeyError(f"no PyTorch optimiser mapped for rule {name!r}")


def _torch_params(env: Env, shapes, seed: int):
    torch = env.torch
    gen = torch.Generator(device=env.torch_device).manual_seed(seed)
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.randn(shape, device=env.torch_device, generator=gen))
        p.grad = torch.randn(shape, device=env.torch_device, generator=gen)
        params.append(p)
    return params


def torch_rule_case(env: Env, variant: str, name: str, shapes, n_buffers: int) -> Case:
    """PyTorch's optimiser over tensors of ``shapes`` (raises where the variant
    doesn't exist, e.g. fused Adadelta)."""
    n = sum(math.prod(s) for s in shapes)
    copies, cold = env.copies(n_buffers * 4 * n)
    opts = []
    for k in range(copies):
        opt = torch_optimizer(env.torch, name, _torch_params(env, shapes, k), variant)
        opt.step()  # allocates the state; raises here if the variant can't run
        opts.append(opt)
    return Case(variant, [o.step for o in opts], env.torch_timer, env.torch_sync,
                note=torch_rule_note(name), copies=copies, cold=cold)


def copy_case(env: Env, n: int) -> Case:
    copies, cold = env.copies(2 * 4 * n)
    srcs, dsts = _pool(env, copies, n, 1.0), _pool(env, copies, n, 0.0)
    if env.gpu:
        nbytes = 4 * n
        fns = [partial(d.data.copy_from_device_async, s.data, nbytes) for s, d in zip(srcs, dsts)]
        note = "device-to-device cudaMemcpyAsync"
    else:
        fns = [partial(np.copyto, d, s) for s, d in zip(srcs, dsts)]
        note = "np.copyto (one thread)"
    return Case(env.main.name, fns, env.our_timer, env.main.synchronize, note=note,
                copies=copies, cold=cold, role="copy")


def our_dropout_case(env: Env, direction: str, n: int, x0) -> Case:
    copies, cold = env.copies(2 * 4 * n)
    xs, outs = _pool(env, copies, n, x0), _pool(env, copies, n, 0.0)
    fn = dropout_kernels.dropout_forward if direction == "forward" else dropout_kernels.dropout_backward
    fns = [partial(fn, x, out, DROPOUT_P, 1234, 0) for x, out in zip(xs, outs)]
    note = "Philox mask regenerated in both passes; numba uses this NumPy path" if not env.gpu else \
        "Philox mask regenerated in both passes"
    name = "numpy" if not env.gpu else env.main.name
    return Case(name, fns, env.our_timer, env.main.synchronize, note=note, copies=copies, cold=cold)


def torch_dropout_case(env: Env, direction: str, n: int) -> Case:
    torch = env.torch
    copies, cold = env.copies(9 * n)
    gen = torch.Generator(device=env.torch_device).manual_seed(0)
    xs = [torch.randn(n, device=env.torch_device, generator=gen) for _ in range(copies)]
    if direction == "forward":
        fns = [partial(torch.native_dropout, x, DROPOUT_P, True) for x in xs]
        note = "torch.native_dropout (writes a byte mask too)"
    else:
        masks = [torch.native_dropout(x, DROPOUT_P, True)[1] for x in xs]
        back = torch.ops.aten.native_dropout_backward
        fns = [partial(back, x, m, 1.0 / (1.0 - DROPOUT_P)) for x, m in zip(xs, masks)]
        note = "aten.native_dropout_backward (reads the byte mask)"
    return Case("torch", fns, env.torch_timer, env.torch_sync, note=note, copies=copies, cold=cold)


# --- sections ---------------------------------------------------------------------------

def _row(env: Env, section: str, case: Case, rule: str, size: int, nbytes: float, copy_bw: float,
         **extra) -> dict:
    secs = case.seconds
    bw = nbytes / secs if secs > 0 else float("nan")
    return {
        "section": section, "impl": case.impl, "rule": rule, "size": int(size), "model": "",
        "n_tensors": 1, "batch": np.nan, "seconds": secs, "gbps": bw / 1e9,
        "copy_gbps": copy_bw / 1e9, "copy_fraction": bw / copy_bw if copy_bw else float("nan"),
        "ratio_torch": np.nan, "examples_per_sec": np.nan,
        "bytes_per_param": nbytes / size if size else np.nan, "repeats": len(case.samples),
        "copies": case.copies, "cold": case.cold, "backend": env.main.name, "device": env.device,
        "note": case.note, **extra,
    }


def _set_torch_ratios(rows: list[dict]) -> None:
    """ratio_torch = best PyTorch time / this row's time, within one group of rows."""
    torch_secs = [r["seconds"] for r in rows if r["impl"].startswith("torch")
                  and np.isfinite(r["seconds"])]
    if torch_secs:
        best = min(torch_secs)
        for r in rows:
            r["ratio_torch"] = best / r["seconds"]


def _run_group(env: Env, builders: list[tuple[str, Callable[[], Case]]], log) -> list[Case]:
    """Build the cases (skipping, with a message, those that can't run) and time them together."""
    cases = []
    for label, build in builders:
        try:
            cases.append(build())
        except Exception as exc:  # an unsupported torch variant, a missing kernel, ...
            log(f"  skipped {label}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    if cases:
        measure(cases, env.repeats, env.min_sample_s, env.pause_s)
    return cases


def _group_rows(env: Env, section: str, name: str, n: int, nbytes: float, builders, copies: list,
                log, **extra) -> list[dict]:
    """Time ``builders`` together with a copy of n floats (so every fraction of
    the copy compares samples taken side by side); one row per case but the
    copy, whose Case goes to ``copies``."""
    cases = _run_group(env, [("copy", partial(copy_case, env, n))] + builders, log)
    copy = [c for c in cases if c.role == "copy"]
    copy_bw = COPY_BYTES * n / copy[0].seconds if copy else float("nan")
    copies += copy
    rows = [_row(env, section, c, name, n, nbytes, copy_bw, **extra) for c in cases if c.role != "copy"]
    _set_torch_ratios(rows)
    env.free()
    return rows


def copy_row(env: Env, n: int, copies: list[Case], section: str = "copy", **extra) -> list[dict]:
    """The copy at size n: the median over every sample it took in the groups."""
    if not copies:
        return []
    pooled = Case(copies[0].impl, [], copies[0].timer, copies[0].sync, note=copies[0].note,
                  copies=copies[0].copies, cold=copies[0].cold, role="copy",
                  samples=[t for c in copies for t in c.samples])
    return [_row(env, section, pooled, "copy", n, COPY_BYTES * n, COPY_BYTES * n / pooled.seconds, **extra)]


def rule_rows(env: Env, n: int, rules=None, log=print, copies: list | None = None) -> list[dict]:
    """Every rule at size n: our backends and PyTorch's variants (and a copy), timed together."""
    out, copies = [], copies if copies is not None else []
    w0, g0 = _inputs(env, n)
    for name in rules or RULES:
        rule = RULES[name]
        builders = [(b.name, partial(our_rule_case, env, b, rule, n, w0, g0)) for b in env.backends]
        if env.torch is not None:
            builders += [(f"{v} {name}", partial(torch_rule_case, env, v, name, [(n,)],
                                                 len(rule.buffers))) for v in TORCH_VARIANTS]
        out += _group_rows(env, "rule", name, n, rule.bytes_per_param * n, builders, copies, log)
    return out


def dropout_rows(env: Env, n: int, log=print, copies: list | None = None) -> list[dict]:
    out, copies = [], copies if copies is not None else []
    x0, _ = _inputs(env, n)
    for direction in ("forward", "backward"):
        builders = [("dropout", partial(our_dropout_case, env, direction, n, x0))]
        if env.torch is not None:
            builders.append((f"torch dropout {direction}", partial(torch_dropout_case, env, direction, n)))
        out += _group_rows(env, "dropout", f"dropout-{direction}", n, DROPOUT_BYTES * n, builders,
                           copies, log)
    return out


def size_rows(env: Env, n: int, rules=None, naive: bool = False, log=print) -> list[dict]:
    """Everything measured at size n: the rules, dropout, and the copy's row."""
    copies: list[Case] = []
    rows = rule_rows(env, n, rules, log, copies)
    if naive and not env.gpu:
        adam = [r for r in rows if r["rule"] == "adam" and r["impl"] == "numpy"]
        if adam:
            rows += naive_rows(env, n, adam[0]["copy_gbps"] * 1e9, adam[0]["seconds"])
    rows += dropout_rows(env, n, log, copies)
    return copy_row(env, n, copies) + rows


def naive_adam(w, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """Adam as one NumPy expression per line: the baseline a user would write."""
    m[:] = b1 * m + (1 - b1) * g
    v[:] = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    w[:] = w - lr * m_hat / (np.sqrt(v_hat) + eps)


def naive_rows(env: Env, n: int, copy_bw: float, adam_seconds: float) -> list[dict]:
    w, g = _host_random(n, 1), _host_random(n, 2)
    m, v = np.zeros_like(w), np.zeros_like(w)
    case = Case("numpy-naive", [partial(naive_adam, w, g, m, v, 5)], _WallTimer, lambda: None,
                note="one NumPy expression per line")
    measure([case], env.repeats, env.min_sample_s)
    row = _row(env, "rule", case, "adam (naive numpy)", n, 28 * n, copy_bw)
    row["ratio_torch"] = np.nan
    row["note"] += f"; the chunked NumPy Adam is {case.seconds / adam_seconds:.1f}x faster"
    return [row]


_INPUTS: dict = {}


def _inputs(env: Env, n: int):
    """(w0, g0) for size n: host arrays on the CPU, device arrays on the GPU (cached per size)."""
    if n not in _INPUTS:
        _INPUTS.clear()
        if env.gpu:
            rs = env.xp.random.RandomState(0)
            _INPUTS[n] = (rs.standard_normal(n, dtype=np.float32), rs.standard_normal(n, dtype=np.float32))
        else:
            _INPUTS[n] = (_host_random(n, 0), _host_random(n, 1))
    return _INPUTS[n]


def model_tensors(widths) -> list[tuple[str, tuple[int, ...]]]:
    out = []
    for l, (h, m) in enumerate(zip(widths[:-1], widths[1:]), start=1):
        out += [(f"W{l}", (h, m)), (f"b{l}", (m,))]
    return out


def our_model_case(env: Env, backend, rule, layout: FlatLayout) -> Case:
    n = layout.size
    copies, cold = env.copies(len(rule.buffers) * 4 * n)
    rs = np.random.default_rng(3)
    w0, g0 = rs.standard_normal(n, dtype=np.float32), rs.standard_normal(n, dtype=np.float32)
    ws = _pool(env, copies, n, env.xp.asarray(w0))
    gs = _pool(env, copies, n, env.xp.asarray(g0))
    opts = [Optimizer(rule, w, backend=backend.name) for w in ws]
    return Case(backend.name, [partial(o.step, g) for o, g in zip(opts, gs)], env.our_timer,
                env.main.synchronize, note=f"one launch over the flat buffer ({n} floats with padding)",
                copies=copies, cold=cold)


def model_rows(env: Env, models=None, rules=None, log=print) -> list[dict]:
    out = []
    for model in models or MODELS:
        tensors = model_tensors(MODELS[model])
        layout = FlatLayout(tensors)
        n = sum(math.prod(s) for _, s in tensors)
        extra = {"model": model, "n_tensors": len(tensors)}
        copies: list[Case] = []
        rows = []
        for name in rules or RULES:
            rule = RULES[name]
            builders = [(b.name, partial(our_model_case, env, b, rule, layout)) for b in env.backends]
            if env.torch is not None:
                builders += [(f"{v} {name} {model}", partial(torch_rule_case, env, v, name,
                                                             [s for _, s in tensors], len(rule.buffers)))
                             for v in TORCH_VARIANTS]
            rows += _group_rows(env, "model", name, n, rule.bytes_per_param * n, builders, copies, log,
                                **extra)
        out += copy_row(env, n, copies, "model", **extra) + rows
    return out


# --- training throughput ------------------------------------------------------------------

def _batch_indices(n_train: int, batch: int, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n_train, batch) for _ in range(count)]


def _our_training_step(backend, ds, hidden, batch: int, optimizer: str = "adam"):
    """(step function, parameter count) for our MLP on ``backend`` (numpy, numba or cupy)."""
    from .inits import init_layers
    from .mlp import MLP

    xp = backend.xp
    X, y = xp.asarray(ds.X_train), xp.asarray(ds.y_train)
    model = MLP([ds.n_features, *hidden, ds.n_outputs], "relu", "cross_entropy", xp=xp)
    model.set_layers(init_layers("he", model.sizes, np.random.default_rng(1)))
    opt = Optimizer(optimizer, model.params, backend=backend.name)
    batches = [(X[xp.asarray(i)], y[xp.asarray(i)]) for i in _batch_indices(ds.n_train, batch, 16)]
    state = {"k": 0}

    def step():
        xb, yb = batches[state["k"]]
        state["k"] = (state["k"] + 1) % len(batches)
        model.loss_and_grad(xb, yb)
        opt.step(model.grads)

    n_params = sum(math.prod(s.shape) for s in model.layout)
    return step, n_params


def _torch_training_step(torch, device: str, ds, hidden, batch: int, fused: bool = False):
    """(step function, parameter count) for the same MLP in PyTorch (Adam)."""
    torch.manual_seed(1)
    X = torch.from_numpy(ds.X_train).to(device)
    y = torch.from_numpy(ds.y_train).to(device)
    sizes = [ds.n_features, *hidden, ds.n_outputs]
    layers = []
    for h, m in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(h, m), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if fused else {}))
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = [(X[torch.from_numpy(i).to(device)], y[torch.from_numpy(i).to(device)])
               for i in _batch_indices(ds.n_train, batch, 16)]
    state = {"k": 0}

    def step():
        xb, yb = batches[state["k"]]
        state["k"] = (state["k"] + 1) % len(batches)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(xb), yb).backward()
        opt.step()

    return step, sum(p.numel() for p in model.parameters())


def _steps_per_sample(step, sync, target_s: float) -> int:
    for _ in range(3):
        step()
    sync()
    t0 = time.perf_counter()
    step()
    sync()
    t = time.perf_counter() - t0
    return int(max(5, min(2000, math.ceil(target_s / max(t, 1e-6)))))


#: (training objects, features, classes) of the training sets, for a stand-in
#: where the package that makes a set is missing (the lent GPU machine has no
#: scikit-learn or mnist1d): throughput depends on the shapes, not the values.
TRAINING_SHAPES = {"digits": (1079, 64, 10), "mnist1d": (3000, 40, 10)}


def _training_data(name: str, log=print):
    """The data set, or random data of its shape if its package is missing."""
    from types import SimpleNamespace

    from . import data

    try:
        return data.load(name, seed=0)
    except ImportError as exc:
        n, d, k = TRAINING_SHAPES[name]
        log(f"  {name}: {exc}; timing on random data of its shape ({n} x {d}, {k} classes)")
        rng = np.random.default_rng(0)
        return SimpleNamespace(name=name, X_train=rng.standard_normal((n, d)).astype(np.float32),
                               y_train=rng.integers(0, k, n), n_train=n, n_features=d, n_outputs=k)


def training_rows(env: Env, batch_sizes=None, datasets=None, log=print) -> list[dict]:
    """Examples per second against batch size: ours (each kernel backend) and
    PyTorch's (default Adam, and fused), steps timed round-robin."""
    from . import data

    out = []
    for dsname in datasets or TRAINING:
        ds = _training_data(dsname, log)
        hidden = TRAINING[dsname]
        arch = "-".join(map(str, [ds.n_features, *hidden, ds.n_outputs]))
        for batch in batch_sizes or BATCH_SIZES[env.quick]:
            if batch > ds.n_train:
                continue
            builders = [(b.name, partial(_our_training_step, b, ds, hidden, batch)) for b in env.backends]
            if env.torch is not None:
                builders += [("torch", partial(_torch_training_step, env.torch, env.torch_device, ds,
                                               hidden, batch)),
                             ("torch-fused", partial(_torch_training_step, env.torch, env.torch_device,
                                                     ds, hidden, batch, True))]
            cases, n_params = [], 0
            for label, build in builders:
                try:
                    step, n_params = build()
                    sync = env.main.synchronize if not label.startswith("torch") else env.torch_sync
                    k = _steps_per_sample(step, sync, TRAIN_SAMPLE_S[env.quick])
                    cases.append(Case(label, [step], partial(_WallTimer, sync), sync, calls=k,
                                      note=f"MLP {arch}, ReLU, softmax cross-entropy, Adam"))
                except Exception as exc:
                    log(f"  skipped training {label}: {type(exc).__name__}: {exc}")
            reps = max(3, env.repeats // 3) if env.gpu else max(3, min(env.repeats, 7))
            for r in range(reps):
                k = r % max(1, len(cases))
                for c in cases[k:] + cases[:k]:
                    if env.pause_s:
                        time.sleep(env.pause_s)
                    with c.timer() as t:
                        c.run(c.calls)
                    c.samples.append(t.seconds / c.calls)
            rows = []
            for c in cases:
                rows.append({**_row(env, "training", c, "adam", n_params, float("nan"), float("nan")),
                             "model": dsname, "n_tensors": 2 * (len(hidden) + 1), "batch": batch,
                             "examples_per_sec": batch / c.seconds, "gbps": np.nan,
                             "copy_gbps": np.nan, "copy_fraction": np.nan, "bytes_per_param": np.nan})
            _set_torch_ratios(rows)
            out += rows
            env.free()
    return out


def training_throughput(backend, hidden=(128, 128), batch: int = 64, steps: int = 300,
                        optimizer: str = "adam", dataset: str = "digits") -> float:
    """Examples per second of forward + backward + update steps on ``dataset``
    (default: the MLP 64-128-128-10 on digits), median of 5 epochs of ``steps``."""
    from . import data

    ds = data.load(dataset, seed=0)
    step, _ = _our_training_step(backend, ds, hidden, batch, optimizer)

    def epoch():
        for _ in range(steps):
            step()

    return batch * steps / median_seconds(backend, epoch, repeats=5, warmup=1)


def torch_training_throughput(hidden=(128, 128), batch: int = 64, steps: int = 300,
                              dataset: str = "digits", device: str = "cpu") -> float | None:
    """The same network, data and steps in PyTorch (None without torch)."""
    from . import data

    torch = import_torch()
    if torch is None:
        return None
    ds = data.load(dataset, seed=0)
    step, _ = _torch_training_step(torch, device, ds, hidden, batch)
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)

    def epoch():
        for _ in range(steps):
            step()

    epoch()
    times = []
    for _ in range(5):
        with _WallTimer(sync) as t:
            epoch()
        times.append(t.seconds)
    return batch * steps / statistics.median(times)


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


def run(args, log=print, out_dir: Callable[[dict], Path | None] = lambda meta: None
        ) -> tuple[list[dict], dict]:
    """Run the sections ``args`` asks for; returns (rows, metadata). Where
    ``out_dir(meta)`` names a directory, the table is saved there after every
    group of rows too, so an interrupted run keeps what it measured."""
    t_start = time.perf_counter()
    load_before = _loadavg()
    env = make_env(args.backend, args.quick, args.repeats, use_torch=not args.no_torch)
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
            sr = size_rows(env, n, naive=args.naive, log=log)
            _print_rule_rows([r for r in sr if r["section"] != "copy"])
            rows += sr
            checkpoint()
        for r in rows:
            if r["rule"] == "adam (naive numpy)":
                ratio = r["seconds"] / next(x["seconds"] for x in rows if x["rule"] == "adam"
                                           and x["impl"] == "numpy" and x["size"] == r["size"])
                log(f"adam at {r['size']}: {ratio:.1f}x faster than the naive NumPy Adam")
    if "models" in sections:
        log(f"\nmodel-shaped: one launch over the flat buffer vs PyTorch over separate tensors")
        log(f"{'model':<8} {'params':>8} {'tensors':>7} {'rule':<9} {'impl':<14} {'us/step':>10} "
            f"{'GB/s':>7} {'vs torch':>8}")
        for r in model_rows(env, log=log):
            if r["section"] == "model" and r["rule"] != "copy":
                log(f"{r['model']:<8} {r['size']:>8} {r['n_tensors']:>7} {r['rule']:<9} {r['impl']:<14} "
                    f"{r['seconds'] * 1e6:>10.1f} {r['gbps']:>7.1f} {_fmt(r['ratio_torch'], '.2f', 8)}")
            rows.append(r)
        checkpoint()
    if "training" in sections:
        log(f"\ntraining throughput (Adam, float32, ReLU, softmax cross-entropy)")
        log(f"{'data':<8} {'batch':>6} {'impl':<12} {'examples/s':>11} {'vs torch':>8}")
        for r in training_rows(env, args.batch_sizes, log=log):
            log(f"{r['model']:<8} {r['batch']:>6} {r['impl']:<12} {r['examples_per_sec']:>11.0f} "
                f"{_fmt(r['ratio_torch'], '.2f', 8)}")
            rows.append(r)
    meta = metadata(env, args, sections, sizes, time.perf_counter() - t_start, load_before)
    meta["complete"] = True
    return rows, meta


def wanted_sections(args) -> list[str]:
    """--sizes: the per-size rules; --models, --training: those; none: everything."""
    picked = [s for s, on in (("rules", args.sizes is not None), ("models", args.models),
                              ("training", args.training)) if on]
    return picked or ["rules", "models", "training"]


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except Exception:
        return None


def _version(mod: str) -> str | None:
    """A module's version where it is imported (cupy's distribution is called
    cupy-cuda12x, so ask the module), else its installed distribution's."""
    loaded = sys.modules.get(mod)
    if loaded is not None and getattr(loaded, "__version__", None):
        return str(loaded.__version__)
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:
        return None


def metadata(env: Env, args, sections, sizes, wall_s: float, load_before) -> dict:
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
        "versions": {m: _version(m) for m in ("numpy", "numba", "cupy", "torch", "pandas")},
        "python": platform.python_version(), "platform": platform.platform(),
        "threads": threads, "git_commit": _git_commit(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": round(wall_s, 1),
        "loadavg_before": load_before, "loadavg_after": _loadavg(),
        "note": args.note or "", "command": shlex.join(["optbench", *sys.argv[1:]]),
    }


def save(rows: list[dict], meta: dict, out: Path) -> Path:
    """Write throughput.csv and meta.json atomically into ``out``; returns out."""
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows, columns=COLUMNS)
    tmp = out / (CSV_NAME + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, out / CSV_NAME)
    tmp = out / (META_NAME + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, out / META_NAME)
    return out


def default_out(args, meta: dict) -> Path | None:
    """Where a run is kept: --out, or for a complete full run results/throughput/<device>."""
    if args.out:
        return Path(args.out)
    full = not args.quick and args.sizes is None and not args.models and not args.training
    return Path("results") / "throughput" / meta["device_dir"] if full else None


def main(args, log=print) -> int:
    rows, meta = run(args, log, out_dir=partial(default_out, args))
    out = default_out(args, meta)
    if out is None:
        log(f"\n(not saved: pass --out DIR to keep a quick or partial run; done in {meta['wall_seconds']} s)")
        return 0
    save(rows, meta, out)
    from .throughput_report import write_throughput_report

    report = write_throughput_report(out)
    log(f"\n{len(rows)} rows in {out / CSV_NAME}; report: {report}; done in {meta['wall_seconds']} s")
    return 0


def training_main(args) -> int:
    """``optbench bench --training`` (kept for callers of the old entry point)."""
    args.training = True
    return main(args)
