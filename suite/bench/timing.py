"""How ``optbench bench`` times a case, and the machine it times on.

Each case's first calls are a warm-up (compilation, state allocation) and
are not timed; then the cases of one group (a rule at one size: ours and
PyTorch's) are timed round-robin, interleaved sample by sample, so that a
busy neighbour slows them alike; each sample times enough back-to-back calls
to last ``min_sample_s`` and the reported time is the median over
``repeats`` samples.

* CPU: ``perf_counter``; a 1 ms pause before each sample lets the other
  implementation's idle OpenMP threads stop spinning. No rotation: a small
  buffer stays in the caches between calls, as it does in a training loop.
* GPU: CUDA events (cupy's for ours, torch's for PyTorch's). Every case
  rotates among ``copies`` independent sets of its buffers, enough that at
  least 2x the L2 cache is touched between two uses of one set, so each
  timed call reads cold memory; the number of copies is capped at
  :data:`ROTATION_CAP`, so the smallest sizes still read from L2 (the
  ``cold`` column says which: those sizes are launch-bound anyway).

:class:`Env` is what every case of a run needs: our kernel backends, PyTorch
where installed, the device's L2 size, and the timing policy above.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

from optbench.kernels import get_backend
from optbench.kernels.backend import EventTimer, WallTimer  # noqa: F401 (WallTimer: the cases' timer)

REPEATS = {("cpu", False): 15, ("cpu", True): 5, ("gpu", False): 50, ("gpu", True): 20}
#: Each sample times back-to-back calls lasting at least this long.
MIN_SAMPLE_S = {"cpu": 2e-3, "gpu": 2e-4}
MAX_CALLS = 10_000
CPU_PAUSE_S = 1e-3
ROTATION_CAP = 1024
DEFAULT_L2_BYTES = 50 << 20  # an H100's, where the device doesn't say
L2_MULTIPLE = 2


# --- timers and cases -------------------------------------------------------------------

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
    state: str = "fp32"  # how an optimiser case keeps its state (kernels.precision)
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
    take_samples(cases, repeats, pause_s)


def take_samples(cases: list[Case], repeats: int, pause_s: float = 0.0) -> None:
    """``repeats`` samples of ``case.calls`` back-to-back calls of each case,
    round-robin, each round starting one case later; per-call seconds in
    ``case.samples``."""
    for r in range(repeats):
        k = r % max(1, len(cases))
        for c in cases[k:] + cases[:k]:
            if pause_s:
                time.sleep(pause_s)
            with c.timer() as t:
                c.run(c.calls)
            c.samples.append(t.seconds / c.calls)


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


def kernel_backends(requested: str) -> list:
    """Our kernel backends a run measures, first the one asked for.

    auto: what ``auto`` picks (cupy where it can run, else numba) and, on the
    CPU, numpy beside it (the fallback).
    numba: numba and numpy, side by side.
    numpy / cupy: that one alone.
    """
    if requested == "auto":
        first = get_backend("auto")
        return [first] if first.name != "numba" else [first, get_backend("numpy")]
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
        return self.main.timer() if self.gpu else WallTimer()

    def torch_timer(self):
        if not self.gpu:
            return WallTimer()
        torch = self.torch
        return EventTimer(lambda: torch.cuda.Event(enable_timing=True), lambda a, b: a.elapsed_time(b))

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
