"""Per-step bookkeeping that stays on the device: which runs are still
training, their summed gradient norms, and the step at which one diverged.

A training loop on a GPU must not read a number back after every step (each
read waits for the device: ~15 us, and the device then idles). So the
per-step facts a run records -- is this step's loss and gradient finite, the
gradient norm -- accumulate in small device arrays, one entry per run
(P runs trained in lockstep; P = 1 for a single run), and are read once per
epoch. The first non-finite step clears the run's ``active`` flag; the
optimiser kernels skip a run whose flag is clear (``Optimizer.step(active=)``),
so its weights stay those of its last finite step.

On the CPU, :class:`StepAccount` works with the same arrays in NumPy (a read
is free there); CuPy arrays go through one launch of
``kernels/cuda/steps.cu`` per step.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .backend import array_kind
from .codegen.cuda_kernel import BLOCKS_PER_SM, THREADS
from .sources import cuda_file


def cuda_source() -> str:
    """The CUDA C text of the step account (``kernels/cuda/steps.cu``)."""
    return cuda_file("steps.cu")


@lru_cache(maxsize=None)
def _cupy_function():
    import cupy as cp
    module = cp.RawModule(code=cuda_source(), options=("--std=c++14",))
    return module.get_function("optbench_step_account")


class StepAccount:
    """The running facts of P runs over one epoch, on their device.

    active:   int32 (P,): 1 while the run trains, 0 once a step was not finite;
    norm_sum: float32 (P,): the sum of the gradient norms of the finite steps;
    bad_step: int32 (P,): the step (0-based, within the epoch) at which the
              run stopped being finite; -1 if it did not.
    """

    def __init__(self, xp, P: int = 1, active=None):
        self.xp = xp
        self.P = int(P)
        self.active = xp.ones(self.P, dtype=np.int32) if active is None else active
        self.norm_sum = xp.zeros(self.P, dtype=np.float32)
        self.bad_step = xp.full(self.P, -1, dtype=np.int32)

    def reset(self) -> None:
        """A new epoch's account, in the same buffers (a captured step reads
        and writes them there): no norms summed, no bad step; the active
        flags are kept."""
        self.norm_sum.fill(0)
        self.bad_step.fill(-1)

    def step(self, k: int, loss, gsq) -> None:
        """Account step ``k`` given each run's loss and squared gradient norm
        g . g (0-d or (P,)). The root is taken here, in float32 (correctly
        rounded on both sides), so the GPU spends no launch on it."""
        loss = loss.reshape(self.P).astype(np.float32, copy=False)
        gsq = gsq.reshape(self.P).astype(np.float32, copy=False)
        if array_kind(self.active) == "numpy":
            if self.P == 1:  # the same float32 arithmetic, without the array calls
                if self.active[0]:
                    gnorm = np.sqrt(gsq[0])
                    if math.isfinite(loss[0]) and math.isfinite(gnorm):
                        self.norm_sum[0] += gnorm
                    else:
                        self.bad_step[0], self.active[0] = k, 0
                return
            gnorm = np.sqrt(gsq)
            finite = np.isfinite(loss) & np.isfinite(gnorm)
            newly = (self.active != 0) & ~finite
            self.bad_step[newly] = k
            self.active[newly] = 0
            self.norm_sum += np.where(self.active != 0, gnorm, np.float32(0))
            return
        blocks = max(1, min(-(-self.P // THREADS), 8 * BLOCKS_PER_SM))
        _cupy_function()((blocks,), (THREADS,), (loss, gsq, self.active, self.norm_sum, self.bad_step,
                                                  np.int64(self.P), np.int32(k)))
