"""The timed cases of ``optbench bench`` and the table rows they give: the
copy, every update rule and dropout at one size, and the model-shaped updates.

Each builder returns a :class:`~suite.bench_timing.Case`; the cases of one
group (a rule at one size: ours, PyTorch's, and a copy of the same size) are
timed together, and each gives one row of the table (:data:`COLUMNS`) with
its effective bandwidth: bytes per parameter (``rule.bytes_per_param``; a
copy and dropout 8 per element) times the size over the median time.

A rule that works per tensor (LAMB's norms, Adafactor's row and column
means, Muon's Newton-Schulz) runs on :func:`~optbench.kernels.validate.validation_layout`'s
tensors -- three weight matrices with their biases -- and its
``bytes_per_param`` counts what its reductions read again; Muon's row also
gives Newton-Schulz's rate in FLOP/s beside matmul's on the same shapes.

PyTorch's optimiser for each rule is its exact equivalent where torch has
one (the rule's ``peer``: e.g. momentum -> ``SGD(lr * (1 - gamma),
momentum=gamma, dampening=0)``); AdaDelta has none (torch puts eps inside
the roots), so its peer is a stand-in, ``Adadelta(rho=gamma, eps=eps**2)``,
with the same memory traffic, which is what a bandwidth comparison needs.
Lion, AdaBelief and plug-in rules without a torch peer have no torch row.
"""

from __future__ import annotations

import math
import os
from functools import partial
from typing import Callable

import numpy as np

from optbench.kernels import RULES, FlatLayout, Optimizer
from optbench.kernels import dropout as dropout_kernels
from optbench.kernels.launch import aligned_zeros
from optbench.kernels.population import state_bytes_per_param
from optbench.kernels.rule import MATRIX_STEPS
from optbench.kernels.stages import plan_of
from optbench.kernels.validate import validation_layout
from optbench.kernels.views import NS_STEPS, views_of

from .timing import Case, Env, WallTimer, measure

#: name -> layer widths; the default study's MLP first.
MODELS = {
    "mnist1d": [40, 128, 128, 10],
    "wide": [784, 1024, 1024, 1024, 10],
    "deep": [64] + [256] * 24 + [10],
}
COPY_BYTES = 8      # per element: read + write
DROPOUT_BYTES = 8   # per element: read x (or grad_out), write out (or grad_in)
DROPOUT_P = 0.5
TORCH_VARIANTS = ("torch-foreach", "torch-fused")

#: The table's columns, in order: one row per (section, impl, rule, size[, model, batch]).
COLUMNS = [
    "section", "impl", "rule", "size", "model", "n_tensors", "batch", "seconds", "gbps",
    "copy_gbps", "copy_fraction", "ratio_torch", "examples_per_sec", "bytes_per_param",
    "repeats", "copies", "cold", "backend", "device", "note", "state",
]


# --- cases ------------------------------------------------------------------------------

def _pad16(n: int) -> int:
    return -(-max(n, 1) // 16) * 16  # rows of a pool stay 64-byte aligned


def _pool(env: Env, copies: int, n: int, fill):
    """copies x n float32 rows, every row = fill, each starting on a 64-byte
    boundary (CuPy's allocations are; on the CPU as PyTorch's allocator does,
    see optbench.kernels.launch.aligned_zeros)."""
    if env.gpu:
        a = env.xp.empty((copies, _pad16(n)), dtype=np.float32)
    else:
        a = aligned_zeros(copies * _pad16(n)).reshape(copies, _pad16(n))
    a[:, :n] = fill
    return [a[k, :n] for k in range(copies)]


def _host_random(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n, dtype=np.float32)


def our_rule_case(env: Env, backend, rule, n: int, w0, g0, note: str = "", state: str = "fp32") -> Case:
    """Our optimiser's step on n parameters starting at w0 with gradient g0
    (arrays on the device), rotating over copies of its buffers; its state
    kept at precision ``state`` (impl "numba bf16", ...)."""
    copies, cold = env.copies(len(rule.buffers) * 4 * n)
    ws, gs = _pool(env, copies, n, w0), _pool(env, copies, n, g0)
    # a rule that works per tensor gets tensors: three weight matrices and
    # their biases (Muon orthogonalises the hidden one), as validate checks it
    layout = None if plan_of(rule).simple else validation_layout(n)
    opts = [Optimizer(rule, w, backend=backend.name, layout=layout, state_precision=state) for w in ws]
    # The kernel is what is timed: no finiteness check (a dot product) in the loop.
    return Case(backend.name + ("" if state == "fp32" else f" {state}"),
                [partial(o.step, g, check_finite=False) for o, g in zip(opts, gs)], env.our_timer,
                env.main.synchronize, note=note, copies=copies, cold=cold, state=state)


def torch_peer(name: str):
    """The rule's peer in torch.optim (exact, or a stand-in with its memory
    traffic), from the rule's own ``peer``; None where it has none."""
    peer = RULES[name].peer
    return peer if peer is not None and peer.library == "torch.optim" else None


def torch_rule_note(name: str) -> str:
    """The torch row's note: the class it times, and whether it is the same rule."""
    peer = torch_peer(name)
    if peer is None:
        return ""
    made = peer.make(RULES[name].defaults())
    return f"torch.optim.{made[0]}" + ("" if peer.exact else ": the same memory traffic, not the same rule")


def torch_optimizer(torch, name: str, params, variant: str):
    """torch.optim's optimiser for our rule ``name`` with our default hyper-parameters."""
    peer = torch_peer(name)
    if peer is None:
        raise KeyError(f"no PyTorch optimiser mapped for rule {name!r}")
    kw = {"foreach": True} if variant == "torch-foreach" else {"fused": True}
    return peer.build(params, RULES[name].defaults(), **kw)


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


def _parallel_copy_py(dst, src):  # compiled by _parallel_streams (Numba), one loop over all cores
    for i in _prange(src.shape[0]):
        dst[i] = src[i]


def _parallel_scale_py(dst, a):  # in place: dst := a * dst, read + write of one buffer
    for i in _prange(dst.shape[0]):
        dst[i] = dst[i] * a  # a at run time (a constant 1 would be folded away)


_prange = range  # numba.prange once _parallel_streams has imported Numba
_STREAMS = None


def _parallel_streams():
    """(parallel copy, parallel in-place scale) over every core (Numba, cached on disk)."""
    global _STREAMS, _prange
    if _STREAMS is None:
        import numba

        _prange = numba.prange
        jit = numba.njit(parallel=True, cache=True, nogil=True)
        _STREAMS = (jit(_parallel_copy_py), jit(_parallel_scale_py))
    return _STREAMS


def copy_cases(env: Env, n: int) -> list[Case]:
    """The streams of n floats a group is timed with: the yardstick of every
    "fraction of a copy" (8 bytes counted per element: one read, one write).

    GPU: a device-to-device cudaMemcpyAsync. CPU, the fastest of three:
    np.copyto on one thread (fastest for buffers in cache, where waking
    threads costs more than it saves), a parallel copy on every core, and a
    parallel in-place scale x := 1 * x on every core. The last is the access
    pattern of an in-place optimiser update; a copy into a second buffer pays
    for reading each destination line before writing it (write-allocate), so
    beyond the caches it moves 12 bytes per element, not 8, and an update
    would show "faster than a copy" (measured here at 2^24: copy 50 GB/s,
    in-place scale 85 GB/s, Numba Adam 64 GB/s). Against the fastest, a
    fraction above 1 means the yardstick is wrong."""
    copies, cold = env.copies(2 * 4 * n)
    srcs, dsts = _pool(env, copies, n, 1.0), _pool(env, copies, n, 0.0)
    if env.gpu:
        nbytes = 4 * n
        fns = [partial(d.data.copy_from_device_async, s.data, nbytes) for s, d in zip(srcs, dsts)]
        return [Case(env.main.name, fns, env.our_timer, env.main.synchronize,
                     note="device-to-device cudaMemcpyAsync", copies=copies, cold=cold, role="copy")]
    out = [Case(env.main.name, [partial(np.copyto, d, s) for s, d in zip(srcs, dsts)], env.our_timer,
                env.main.synchronize, note="np.copyto (one thread)", copies=copies, cold=cold, role="copy")]
    try:
        streams = _parallel_streams()
    except ImportError:  # no Numba: the one-thread copy alone
        return out
    one = np.float32(1.0)
    for fn, what, second in ((streams[0], "parallel copy", srcs), (streams[1], "parallel in-place scale",
                                                                    [one] * len(srcs))):
        fn(dsts[0], second[0])  # compiles (or loads) before the group is timed
        out.append(Case(env.main.name, [partial(fn, d, s) for s, d in zip(second, dsts)], env.our_timer,
                        env.main.synchronize, note=f"{what} ({os.cpu_count()} cores, Numba)",
                        copies=copies, cold=cold, role="copy"))
    return out


def _best_copy(copies: list[Case]) -> Case:
    return min(copies, key=lambda c: c.seconds)


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

def table_row(env: Env, section: str, case: Case, rule: str, size: int, nbytes: float,
              copy_bw: float, **extra) -> dict:
    """One row of the table (:data:`COLUMNS`) for a timed case: its median time
    and the bandwidth of ``nbytes`` moved in that time, against a copy's."""
    secs = case.seconds
    bw = nbytes / secs if secs > 0 else float("nan")
    return {
        "section": section, "impl": case.impl, "rule": rule, "size": int(size), "model": "",
        "n_tensors": 1, "batch": np.nan, "seconds": secs, "gbps": bw / 1e9,
        "copy_gbps": copy_bw / 1e9, "copy_fraction": bw / copy_bw if copy_bw else float("nan"),
        "ratio_torch": np.nan, "examples_per_sec": np.nan,
        "bytes_per_param": nbytes / size if size else np.nan, "repeats": len(case.samples),
        "copies": case.copies, "cold": case.cold, "backend": env.main.name, "device": env.device,
        "note": case.note, "state": case.state, **extra,
    }


def set_torch_ratios(rows: list[dict]) -> None:
    """ratio_torch = best PyTorch time / this row's time, within one group of rows."""
    torch_secs = [r["seconds"] for r in rows if r["impl"].startswith("torch")
                  and np.isfinite(r["seconds"])]
    if torch_secs:
        best = min(torch_secs)
        for r in rows:
            r["ratio_torch"] = best / r["seconds"]


def _run_group(env: Env, builders: list[tuple[str, Callable[[], Case]]], log, extra=()) -> list[Case]:
    """Build the cases (skipping, with a message, those that can't run) and
    time them together with the ready-made cases ``extra`` (the copies)."""
    cases = list(extra)
    for label, build in builders:
        try:
            cases.append(build())
        except Exception as exc:  # an unsupported torch variant, a missing kernel, ...
            log(f"  skipped {label}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    if cases:
        measure(cases, env.repeats, env.min_sample_s, env.pause_s)
    return cases


def _group_rows(env: Env, section: str, name: str, n: int, nbytes: float, builders, copies: list,
                log, state_bytes: dict | None = None, **extra) -> list[dict]:
    """Time ``builders`` together with a copy of n floats (so every fraction of
    the copy compares samples taken side by side); one row per case but the
    copy, whose Case goes to ``copies``. A case whose state is kept at another
    precision moves ``state_bytes[state]`` bytes instead of ``nbytes``."""
    cases = _run_group(env, builders, log, copy_cases(env, n))
    copy = [c for c in cases if c.role == "copy"]
    copy_bw = COPY_BYTES * n / _best_copy(copy).seconds if copy else float("nan")
    copies += copy
    rows = [table_row(env, section, c, name, n, (state_bytes or {}).get(c.state, nbytes), copy_bw, **extra)
            for c in cases if c.role != "copy"]
    set_torch_ratios(rows)
    env.free()
    return rows


def copy_row(env: Env, n: int, copies: list[Case], section: str = "copy", **extra) -> list[dict]:
    """The copy at size n: the fastest kind (see :func:`copy_cases`), the
    median over every sample it took in the groups."""
    if not copies:
        return []
    kinds: dict[str, list[Case]] = {}
    for c in copies:
        kinds.setdefault(c.note, []).append(c)
    pools = [Case(cs[0].impl, [], cs[0].timer, cs[0].sync, note=note, copies=cs[0].copies, cold=cs[0].cold,
                  role="copy", samples=[t for c in cs for t in c.samples]) for note, cs in kinds.items()]
    pooled = _best_copy(pools)
    if len(pools) > 1:
        pooled.note = f"{pooled.note}: the faster of " + " and ".join(p.note for p in pools)
    return [table_row(env, section, pooled, "copy", n, COPY_BYTES * n, COPY_BYTES * n / pooled.seconds,
                      **extra)]


def rule_rows(env: Env, n: int, rules=None, log=print, copies: list | None = None,
              states: tuple[str, ...] = ("fp32",)) -> list[dict]:
    """Every rule at size n: our backends with the state kept at each of
    ``states``, and PyTorch's variants (and a copy), timed together."""
    out, copies = [], copies if copies is not None else []
    w0, g0 = _inputs(env, n)
    for name in rules or RULES:
        rule = RULES[name]
        builders = [(b.name + ("" if s == "fp32" else f" {s}"), partial(our_rule_case, env, b, rule, n, w0, g0,
                                                                        state=s))
                    for s in states for b in env.backends]
        if env.torch is not None and torch_rule_note(name):  # lion, adabelief, plug-ins: no torch row
            builders += [(f"{v} {name}", partial(torch_rule_case, env, v, name, [(n,)],
                                                 len(rule.buffers))) for v in TORCH_VARIANTS]
        rows = _group_rows(env, "rule", name, n, rule.bytes_per_param * n, builders, copies, log,
                           state_bytes={s: state_bytes_per_param(rule, s) * n for s in states})
        if rule.matrices != "all" or any(v.op in MATRIX_STEPS for v in plan_of(rule).values.values()):
            note = newton_schulz_note(env, rule, n)
            for row in rows:
                row["note"] = "; ".join(x for x in (row["note"], note) if x)
        out += rows
    return out


def newton_schulz_flops(rows: int, cols: int, steps: int = NS_STEPS) -> float:
    """Floating-point operations of ``steps`` quintic Newton-Schulz steps on a
    rows x cols matrix (on its orientation with r <= c): X X^T (2 r^2 c),
    A A (2 r^3) and B X (2 r^2 c) per step."""
    r, c = min(rows, cols), max(rows, cols)
    return steps * (4.0 * r * r * c + 2.0 * r**3)


def newton_schulz_note(env: Env, rule, n: int) -> str:
    """The matrix step's own rate at size n: Newton-Schulz on the layout's
    matrices in FLOP/s, and as a fraction of a general matmul's rate on the
    same shapes ((r x c) @ (c x r) for each, timed alone), medians of
    interleaved samples."""
    views = views_of(validation_layout(n), n, rule.matrices, env.xp)
    shapes = [(v.rows, v.cols) for v, m in zip(views.views, views.is_matrix) if m]
    if not shapes:
        return ""
    x = env.xp.asarray(_host_random(n, 3)).reshape(1, n)
    out = env.xp.empty_like(x)
    mats = [env.xp.asarray(_host_random(r * c, 4)).reshape(min(r, c), max(r, c)) for r, c in shapes]
    # The yardstick is a general product, X @ Y with Y a copy of X^T: NumPy
    # computes X @ X.T itself as a symmetric rank-k update (half the
    # operations), which would put "matmul's rate" above the machine's peak.
    pairs = [(m, env.xp.ascontiguousarray(m.T)) for m in mats]
    ns = Case("newton-schulz", [partial(views.orthogonalize, x, out)], env.our_timer, env.main.synchronize)
    mm = Case("matmul", [partial(lambda ps: [env.xp.matmul(m, t) for m, t in ps], pairs)], env.our_timer,
              env.main.synchronize)
    measure([ns, mm], env.repeats, env.min_sample_s)
    ns_rate = sum(newton_schulz_flops(r, c) for r, c in shapes) / ns.seconds
    mm_rate = sum(2.0 * min(r, c) ** 2 * max(r, c) for r, c in shapes) / mm.seconds
    dims = ", ".join(f"{r}x{c}" for r, c in shapes)
    return (f"Newton-Schulz on {dims}: {ns_rate / 1e9:.1f} GFLOP/s (its products counted as general ones), "
            f"{ns_rate / mm_rate:.2f} of a general matmul's {mm_rate / 1e9:.1f} GFLOP/s on the same shapes")


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


def size_rows(env: Env, n: int, rules=None, naive: bool = False, log=print,
              states: tuple[str, ...] = ("fp32",)) -> list[dict]:
    """Everything measured at size n: the rules, dropout, and the copy's row."""
    copies: list[Case] = []
    rows = rule_rows(env, n, rules, log, copies, states)
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
    case = Case("numpy-naive", [partial(naive_adam, w, g, m, v, 5)], WallTimer, lambda: None,
                note="one NumPy expression per line")
    measure([case], env.repeats, env.min_sample_s)
    row = table_row(env, "rule", case, "adam (naive numpy)", n, 28 * n, copy_bw)
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


def model_rows(env: Env, models=None, rules=None, log=print) -> list[dict]:
    out = []
    for model in models or MODELS:
        tensors = model_tensors(MODELS[model])
        n = sum(math.prod(s) for _, s in tensors)
        flat = FlatLayout(tensors).size  # our one buffer: n floats and the padding between tensors
        rs = np.random.default_rng(3)
        w0 = env.xp.asarray(rs.standard_normal(flat, dtype=np.float32))
        g0 = env.xp.asarray(rs.standard_normal(flat, dtype=np.float32))
        note = f"one launch over the flat buffer ({flat} floats with padding)"
        extra = {"model": model, "n_tensors": len(tensors)}
        copies: list[Case] = []
        rows = []
        for name in rules or RULES:
            rule = RULES[name]
            builders = [(b.name, partial(our_rule_case, env, b, rule, flat, w0, g0, note))
                        for b in env.backends]
            if env.torch is not None and torch_rule_note(name):
                builders += [(f"{v} {name} {model}", partial(torch_rule_case, env, v, name,
                                                             [s for _, s in tensors], len(rule.buffers)))
                             for v in TORCH_VARIANTS]
            rows += _group_rows(env, "model", name, n, rule.bytes_per_param * n, builders, copies, log,
                                **extra)
        out += copy_row(env, n, copies, "model", **extra) + rows
    return out
