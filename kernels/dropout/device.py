"""Dropout on CuPy arrays: the CUDA source (``kernels/cuda/dropout.cu``),
launch geometry and launches; one launch for a whole population."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..codegen.cuda_kernel import MAX_GRID_Y as CUDA_MAX_GRID_Y, THREADS, grid
from ..sources import cuda_file
from .params import _TWO32, philox_blocks, population_args, scalar_args, threshold, training_scale, use_vec4

VEC4_KERNEL = "optbench_dropout_vec4"
SCALAR_KERNEL = "optbench_dropout_scalar"
DRAWS_KERNEL = "optbench_dropout_draws"
POP_VEC4_KERNEL = "optbench_dropout_pop_vec4"
POP_SCALAR_KERNEL = "optbench_dropout_pop_scalar"
KERNELS = (VEC4_KERNEL, SCALAR_KERNEL, DRAWS_KERNEL, POP_VEC4_KERNEL, POP_SCALAR_KERNEL)
#: The most blocks a launch may have in y (CUDA's limit). The population
#: kernels take members beyond it in turn, so any P is one launch; a name
#: of this module so that tests can lower it and exercise that loop.
MAX_GRID_Y = CUDA_MAX_GRID_Y


@lru_cache(maxsize=None)
def cuda_source() -> str:
    """The complete CUDA source CuPy compiles: Philox plus every dropout kernel.

    Kernels (``extern "C"``, grid-stride loops, no shared memory, no block
    synchronisation, so running every (block, thread) one after another on
    the CPU computes what the GPU computes):

    * ``optbench_dropout_vec4(const float* x, float* y, long long n,
      unsigned long long offset, unsigned int key0, unsigned int key1,
      unsigned long long threshold, float scale)``: needs x and y 16-byte
      aligned and offset % 4 == 0 (see :func:`use_vec4`);
    * ``optbench_dropout_scalar``: same arguments, any alignment and offset;
    * ``optbench_dropout_draws(unsigned int* out, long long n,
      unsigned long long offset, unsigned int key0, unsigned int key1)``;
    * ``optbench_dropout_pop_vec4(const float* x, float* y, const unsigned
      int* keys, long long members, long long n, long long ld, unsigned long
      long offset, unsigned long long threshold, float scale)``: member m's
      n elements at x + m * ld and y + m * ld, its key (keys[2m],
      keys[2m + 1]); member = blockIdx.y (in turn past gridDim.y), and per
      member the float4 loop of ``optbench_dropout_vec4``, so it needs
      ld % 4 == 0 as well (:func:`use_vec4`);
    * ``optbench_dropout_pop_scalar``: same arguments, per member the loop of
      ``optbench_dropout_scalar``.

    :func:`scalar_args` / :func:`population_args` give the arguments after
    the pointers, :func:`launch_geometry` / :func:`population_geometry` the grid.
    """
    return cuda_file("dropout.cu")


def launch_geometry(n: int, offset: int, sm_count: int) -> tuple[int, int]:
    """(blocks, threads) of a 1-D launch of any dropout kernel over n elements:
    one thread per Philox block at most, enough blocks to fill the GPU, at
    least one (:func:`~optbench.kernels.codegen.cuda_kernel.grid`). The
    result never changes a mask, only how the work is spread."""
    return grid(1, philox_blocks(n, offset), THREADS, sm_count)[0], THREADS


def population_geometry(members: int, n: int, offset: int, sm_count: int) -> tuple[tuple[int, int], int]:
    """((blocks_x, blocks_y), threads) of a population launch: one y block row
    per member up to :data:`MAX_GRID_Y` (the kernels loop over the rest), and
    in x what :func:`launch_geometry` gives one member, cut so that the whole
    grid aims at the resident blocks a single run gets. Never changes a mask,
    only how the work is spread."""
    return grid(members, philox_blocks(n, offset), THREADS, sm_count, MAX_GRID_Y), THREADS


@lru_cache(maxsize=None)
def _cupy_module():
    import cupy as cp

    return cp.RawModule(code=cuda_source(), options=("--std=c++14",))


@lru_cache(maxsize=None)
def _sm_count(device_id: int) -> int:
    import cupy as cp

    return cp.cuda.Device(device_id).attributes["MultiProcessorCount"]


def _cupy_launch(name: str, n: int, offset: int, args: tuple) -> None:
    import cupy as cp

    blocks, threads = launch_geometry(n, offset, _sm_count(cp.cuda.Device().id))
    _cupy_module().get_function(name)((blocks,), (threads,), args)


def cupy_train(x1, y1, offset, p, seed, mode) -> None:
    import cupy as cp

    thr, scale = threshold(p), np.float32(training_scale(p, mode))
    if thr == 0 or thr == _TWO32:  # as in _numpy_train
        cp.multiply(x1, scale if thr == 0 else np.float32(0.0), out=y1)
        return
    n = x1.shape[0]
    name = VEC4_KERNEL if use_vec4(x1.data.ptr, y1.data.ptr, offset) else SCALAR_KERNEL
    _cupy_launch(name, n, offset, (x1, y1) + scalar_args(n, offset, p, seed, mode))


def cupy_train_population(x2, y2, offset, p, keys, mode) -> None:
    """One launch for every member, whatever P (see population_geometry)."""
    import cupy as cp

    thr, scale = threshold(p), np.float32(training_scale(p, mode))
    if thr == 0 or thr == _TWO32:  # as in _numpy_train
        cp.multiply(x2, scale if thr == 0 else np.float32(0.0), out=y2)
        return
    members, n = x2.shape
    ld = n  # rows of a C-contiguous (P, n) array
    name = POP_VEC4_KERNEL if use_vec4(x2.data.ptr, y2.data.ptr, offset, ld) else POP_SCALAR_KERNEL
    grid, threads = population_geometry(members, n, offset, _sm_count(cp.cuda.Device().id))
    _cupy_module().get_function(name)(grid, (threads,),
                                      (x2, y2, keys) + population_args(members, n, ld, offset, p, mode))


def cupy_draws(n: int, offset: int, k0: int, k1: int):
    import cupy as cp

    out = cp.empty(n, dtype=cp.uint32)
    if n:
        _cupy_launch(DRAWS_KERNEL, n, offset,
                     (out, np.int64(n), np.uint64(offset), np.uint32(k0), np.uint32(k1)))
    return out
