"""Dropout whose mask is a pure function of (seed, element index): no state, no stored mask.

The lecture's dropout (digest section 10), for one layer's activations
a_h = sigma_h(sum_j w_jh x_j^l):

    classic,  training:   x_h^(l+1) = xi_h * a_h                P(xi_h = 0) = p_l
              inference:  x_h^(l+1) = (1 - p_l) * a_h
    inverted, training:   x_h^(l+1) = xi_h / (1 - p_l) * a_h
              inference:  x_h^(l+1) = a_h        (no knowledge of p_l needed)

Names here: ``x`` holds the a_h (any contiguous float32 array; h runs over
its elements in C order), ``out`` the x_h^(l+1), ``p`` is p_l and xi_h is
``keep_mask(n, p, seed, offset)[h]``. Both modes compute, in training,

    out_h = x_h * (xi_h ? scale : 0)      scale = 1/(1 - p) inverted, 1 classic

and the backward pass is the same product with the same mask,
grad_in_h = grad_out_h * (xi_h ? scale : 0) -- the factor xi_h / (1 - p_l)
that multiplies L_i'(w) in the lecture's update
w := w (1 - eta lambda) - eta xi_h / (1 - p_l) L_i'(w).

Mask addressing (what makes the NumPy and CUDA masks bit-identical and
independent of launch geometry, chunking and threads):

* key = the 64-bit ``seed`` split into words: k0 = seed mod 2^32 (low),
  k1 = seed >> 32 (high);
* element h of a call with per-call ``offset`` has the stream position
  e = offset + h, and its 32-bit draw is word (e mod 4) of
  Philox4x32-10(counter = (q mod 2^32, q >> 32, 0, 0), key) with q = e >> 2.
  Counter words 2 and 3 are left 0, reserved for other streams.
* xi_h = 1 (keep) iff draw >= threshold, with the exact integer
  threshold = round(p * 2^32) (ties to even; p * 2^32 is exact in double),
  so P(xi_h = 0) = threshold / 2^32, within 2^-33 of p. p = 0 gives
  threshold 0 (keeps everything), p = 1 gives 2^32 (drops everything).

So mask(n, offset)[k:] == mask(n - k, offset + k): a caller that splits one
logical array into calls just passes the running offset. Consecutive calls
that must be independent use disjoint ranges: :func:`advance` gives the next
offset, rounded up to a multiple of 4 so that every call starts on a Philox
block and the CUDA path can use its float4 kernel.

Dropped elements are multiplied by 0 (not replaced by 0), so a NaN or Inf in
x stays NaN in out, which the training loop reports as divergence; a finite
dropped x gives +-0.

Populations: P runs ("members") training in lockstep hold one layer's
activations in one (P, ...) array; member m has its own seed, all share p_l,
the mode and the per-call offset. :func:`dropout_forward_population` gives
member m exactly what :func:`dropout_forward` gives x[m] under seed m -- the
addressing above with the key of seed m -- in one pass over the whole array
(one kernel launch on CUDA, Philox run once over every member's blocks of a
chunk on NumPy). :func:`member_keys` builds the (P, 2) key array once.

Backends: NumPy arrays run a chunked, threaded NumPy program (vectorised
Philox per chunk, cache-sized temporaries, nothing the size of x); CuPy arrays
run the kernels of :func:`cuda_source`, compiled by NVRTC on first use and
cached. Importing this module never needs CuPy.
"""

from __future__ import annotations

import math
import operator
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

from . import philox
from .backend import array_kind
from .codegen.cuda_kernel import BLOCKS_PER_SM, THREADS
from .sources import cuda_file

MODES = ("inverted", "classic")
_TWO32 = 1 << 32
_TWO64 = 1 << 64

#: Elements per NumPy chunk. A chunk costs about 110 ufunc calls (100 of
#: them Philox rounds over chunk/4 uint64 words), at ~1 us of Python overhead
#: each, so chunks must be long; its buffers (40 bytes a block, 4 a factor,
#: plus x and out) must stay in a core's L2 (2 MB here). Measured at 2^24 on
#: a 2-core EPYC: 8 K elements 20 ns/element, 16 K 11-14, 32 K 8-9, 64 K 7-8,
#: 128 K 6-7 (one thread, Philox alone); 64 K leaves L2 room for x and out.
CHUNK = 1 << 16
#: Threads used when the caller gives none. One: Philox on NumPy is ~110
#: small ufunc calls per chunk, and Python's share of them serialises the
#: threads. Measured on the 2-core EPYC, forward at p = 0.5, 1 thread vs 2:
#: 2^18 1.1 vs 1.8 ms, 2^20 4.5 vs 4.7 ms, 2^22 18.3 vs 19.9 ms, 2^24 72 vs
#: 109 ms -- two threads never win. ``threads=`` still splits on request
#: (the result is the same however the work is split).
DEFAULT_THREADS = 1

VEC4_KERNEL = "optbench_dropout_vec4"
SCALAR_KERNEL = "optbench_dropout_scalar"
DRAWS_KERNEL = "optbench_dropout_draws"
POP_VEC4_KERNEL = "optbench_dropout_pop_vec4"
POP_SCALAR_KERNEL = "optbench_dropout_pop_scalar"
KERNELS = (VEC4_KERNEL, SCALAR_KERNEL, DRAWS_KERNEL, POP_VEC4_KERNEL, POP_SCALAR_KERNEL)
#: The most blocks a launch may have in y (CUDA's limit). The population
#: kernels take members beyond it in turn, so any P is one launch; a module
#: constant so that tests can lower it and exercise that loop.
MAX_GRID_Y = 65535


# ---------------------------------------------------------------- parameters

def threshold(p: float) -> int:
    """The drop threshold round(p * 2^32) in [0, 2^32]: P(drop) = threshold / 2^32."""
    p = _check_p(p)
    return round(p * _TWO32)  # p * 2^32 is exact in double; round() ties to even


def training_scale(p: float, mode: str) -> float:
    """The factor a kept element is multiplied by in training (float32 value).

    inverted: 1 / (1 - p_l), computed in double and rounded once to float32;
    classic: 1. When nothing can be kept (threshold 2^32) it is 0, never Inf.
    """
    p, mode = _check_p(p), _check_mode(mode)
    if threshold(p) == _TWO32:
        return 0.0
    return float(np.float32(1.0 / (1.0 - p))) if mode == "inverted" else 1.0


def inference_scale(p: float, mode: str) -> float:
    """The factor every element is multiplied by at inference (float32 value).

    inverted: 1 (out is a copy of x); classic: 1 - p_l rounded to float32.
    """
    p, mode = _check_p(p), _check_mode(mode)
    return 1.0 if mode == "inverted" else float(np.float32(1.0 - p))


def seed_key(seed: int) -> tuple[int, int]:
    """The Philox key (k0, k1): the low and high 32-bit words of the 64-bit seed."""
    seed = _check_u64("seed", seed)
    return seed & 0xFFFFFFFF, seed >> 32


def member_keys(seeds, xp=np):
    """The Philox keys of a population's members: a (P, 2) uint32 array on the
    array module ``xp`` (numpy or cupy) whose row m is seed_key(seeds[m]) =
    (low word, high word) of member m's 64-bit seed.

    Build it once per population and pass it to every call of
    :func:`dropout_forward_population` / :func:`dropout_backward_population`
    (on a GPU it is uploaded once, here). Members may share a seed (they then
    draw the same masks).
    """
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"seeds must be a sequence of integers, got {type(seeds).__name__}")
    keys = np.array([seed_key(s) for s in seeds], dtype=np.uint32).reshape(-1, 2)
    return keys if xp is np else xp.asarray(keys)


def advance(offset: int, n: int) -> int:
    """The offset for the call after one of ``n`` elements at ``offset``.

    Rounded up to a multiple of 4 (a whole Philox block), so that calls never
    share a counter and each starts block-aligned (float4 kernel on CUDA).
    """
    offset, n = _check_u64("offset", offset), operator.index(n)
    return offset + ((n + 3) & ~3)


def scalar_args(n: int, offset: int, p: float, seed: int, mode: str = "inverted") -> tuple:
    """The training kernels' arguments after the two pointers, typed for a launch:
    (n int64, offset uint64, key0 uint32, key1 uint32, threshold uint64, scale float32).
    """
    k0, k1 = seed_key(seed)
    return (np.int64(n), np.uint64(offset), np.uint32(k0), np.uint32(k1),
            np.uint64(threshold(p)), np.float32(training_scale(p, mode)))


# ------------------------------------------------------------- CUDA source



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


def use_vec4(x_ptr: int, y_ptr: int, offset: int, ld: int = 0) -> bool:
    """Whether the float4 kernel applies: both buffers 16-byte aligned and the
    call starting on a Philox block (offset % 4 == 0); for a population also
    every member's row (member stride ``ld`` elements, ld % 4 == 0; a single
    run leaves ld at 0)."""
    return x_ptr % 16 == 0 and y_ptr % 16 == 0 and offset % 4 == 0 and ld % 4 == 0


def population_args(members: int, n: int, ld: int, offset: int, p: float, mode: str = "inverted") -> tuple:
    """The population kernels' arguments after the three pointers (x, y, keys),
    typed for a launch: (members int64, n int64, ld int64, offset uint64,
    threshold uint64, scale float32)."""
    return (np.int64(members), np.int64(n), np.int64(ld), np.uint64(offset),
            np.uint64(threshold(p)), np.float32(training_scale(p, mode)))


def philox_blocks(n: int, offset: int) -> int:
    """How many Philox blocks the stream positions offset .. offset+n-1 touch."""
    if n <= 0:
        return 0
    return ((offset + n - 1) >> 2) - (offset >> 2) + 1


def launch_geometry(n: int, offset: int, sm_count: int) -> tuple[int, int]:
    """(blocks, threads) of a 1-D launch of any dropout kernel over n elements:
    one thread per Philox block at most, enough blocks to fill the GPU
    (``codegen.cuda_kernel``'s BLOCKS_PER_SM resident blocks per SM), at least one.
    The result never changes a mask, only how the work is spread."""
    work = philox_blocks(n, offset)
    blocks = max(1, min(-(-work // THREADS), sm_count * BLOCKS_PER_SM))
    return blocks, THREADS


def population_geometry(members: int, n: int, offset: int, sm_count: int) -> tuple[tuple[int, int], int]:
    """((blocks_x, blocks_y), threads) of a population launch: one y block row
    per member up to :data:`MAX_GRID_Y` (the kernels loop over the rest), and
    in x what :func:`launch_geometry` gives one member, cut so that the whole
    grid aims at the BLOCKS_PER_SM resident blocks per SM a single run gets.
    Never changes a mask, only how the work is spread."""
    blocks_y = max(1, min(members, MAX_GRID_Y))
    per_member = -(-philox_blocks(n, offset) // THREADS)
    blocks_x = max(1, min(per_member, -(-sm_count * BLOCKS_PER_SM // blocks_y)))
    return (blocks_x, blocks_y), THREADS


# ------------------------------------------------------------- checks

def _check_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"dropout probability p must be a real number, got {type(p).__name__}")
    p = float(p)
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
    return p


def _check_mode(mode) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown dropout mode {mode!r}; allowed: {', '.join(MODES)}")
    return mode


def _check_u64(name: str, v) -> int:
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        v = operator.index(v)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}") from None
    if not 0 <= v < _TWO64:
        raise ValueError(f"{name} must be in [0, 2^64), got {v}")
    return v


def _check_offset(offset, n: int) -> int:
    offset = _check_u64("offset", offset)
    if offset + n > _TWO64:
        raise ValueError(
            f"offset {offset} + {n} elements runs past the 2^64 stream positions"
        )
    return offset


def _ptr(a, kind: str) -> int:
    return a.__array_interface__["data"][0] if kind == "numpy" else a.data.ptr


def _check_pair(src_name: str, src, dst_name: str, dst) -> str:
    """The backend of src and dst, or a clear error about what is wrong."""
    kind = array_kind(src)
    if array_kind(dst) != kind:
        raise TypeError(f"{src_name!r} is a {kind} array but {dst_name!r} is a {array_kind(dst)} array")
    for name, a in ((src_name, src), (dst_name, dst)):
        if a.dtype != np.float32:
            raise TypeError(f"dropout: {name!r} must be float32, got {a.dtype}")
        if not a.flags.c_contiguous:
            raise ValueError(f"dropout: {name!r} must be C-contiguous")
    if src.shape != dst.shape:
        raise ValueError(f"dropout: {src_name!r} has shape {src.shape} but {dst_name!r} has {dst.shape}")
    # In place (the same buffer) is fine; a partial overlap would read elements
    # already written by another thread.
    s, d, nbytes = _ptr(src, kind), _ptr(dst, kind), src.size * 4
    if s != d and s < d + nbytes and d < s + nbytes:
        raise ValueError(f"dropout: {dst_name!r} partly overlaps {src_name!r} (use the same buffer or a separate one)")
    return kind


def _check_population(src_name, src, dst_name, dst, keys) -> tuple[str, int, int]:
    """(backend, members P, elements per member n) of a population call, or a
    clear error about what is wrong."""
    kind = _check_pair(src_name, src, dst_name, dst)
    if src.ndim == 0:
        raise ValueError(f"dropout: {src_name!r} needs a leading member axis, shape (P, ...); got a 0-d array")
    try:
        keys_kind = array_kind(keys)
    except TypeError:
        raise TypeError(f"dropout: 'keys' must be the array member_keys gives, got {type(keys).__name__}") from None
    if keys_kind != kind:
        raise TypeError(f"'keys' is a {keys_kind} array but {src_name!r} is a {kind} array "
                        f"(build it with member_keys(seeds, xp))")
    if keys.dtype != np.uint32:
        raise TypeError(f"dropout: 'keys' must be uint32 (see member_keys), got {keys.dtype}")
    members = src.shape[0]
    if keys.shape != (members, 2):
        raise ValueError(f"dropout: 'keys' has shape {keys.shape} but {src_name!r} has {members} members: "
                         f"one (k0, k1) row per member, shape ({members}, 2)")
    if not keys.flags.c_contiguous:
        raise ValueError("dropout: 'keys' must be C-contiguous")
    return kind, members, math.prod(src.shape[1:])


# ------------------------------------------------------------- NumPy path

class _Workspace:
    """One thread's chunk buffers (allocated once per thread and chunk size)."""

    def __init__(self, chunk: int):
        blocks = chunk // 4 + 2  # a chunk not starting on a block touches one more
        self.ramp = np.arange(blocks, dtype=np.uint64)
        self.a, self.b, self.t0, self.t1 = np.empty((4, blocks), dtype=np.uint64)
        self.keep = np.empty((blocks, 4), dtype=np.bool_)
        self.factor = np.empty(chunk, dtype=np.float32)


_LOCAL = threading.local()
_POOLS: dict[int, ThreadPoolExecutor] = {}  # by worker count; threads keep their workspaces
_POOL_LOCK = threading.Lock()


def _workspace(chunk: int) -> _Workspace:
    spaces = getattr(_LOCAL, "spaces", None)
    if spaces is None:
        spaces = _LOCAL.spaces = {}
    if chunk not in spaces:
        spaces[chunk] = _Workspace(chunk)
    return spaces[chunk]


def _block_words(ws: _Workspace, e0: int, m: int, rows: int, keys: list):
    """Philox output of every block touching stream positions e0 .. e0+m-1,
    for ``rows`` keys at once (the members of a population; 1 for a single run).

    ``keys`` is ``philox.pair_round_keys`` of Python ints (rows = 1) or of
    (rows, 1) arrays, row r's key in row r. Returns (a, b, skip), a and b of
    shape (rows, nb): block (e0 >> 2) + i under row r's key has output words
    a[r, i] = r0 * 2^32 + r1 and b[r, i] = r2 * 2^32 + r3
    (``philox.philox_pairs``), and stream position e0 is word ``skip`` =
    e0 & 3 of the first block. Needs rows * nb <= the workspace's blocks.
    """
    q_first = e0 >> 2
    nb = ((e0 + m - 1) >> 2) - q_first + 1
    a, b, t0, t1 = (w[: rows * nb].reshape(rows, nb) for w in (ws.a, ws.b, ws.t0, ws.t1))
    s32, q, c = np.uint64(32), t0[0], a[0]
    # counter (q mod 2^32, q >> 32, 0, 0): a = (q mod 2^32) * 2^32 + (q >> 32),
    # the 64-bit rotation of q; b = 0. q < 2^62, so q_first + i never wraps.
    np.add(ws.ramp[:nb], np.uint64(q_first), out=q)
    np.left_shift(q, s32, out=c)
    np.right_shift(q, s32, out=q)
    np.bitwise_or(c, q, out=c)
    a[1:] = c  # every member draws the same stream positions; only its key differs
    b.fill(0)
    philox.philox_pairs_keyed(a, b, keys, t0, t1)
    return a, b, e0 & 3


def _draws_chunk(ws, out: np.ndarray, e0: int, keys: list) -> None:
    m = out.shape[0]
    a, b, skip = _block_words(ws, e0, m, 1, keys)
    a, b = a[0], b[0]
    s32, lo = np.uint64(32), np.uint64(0xFFFFFFFF)
    words = np.stack([a >> s32, a & lo, b >> s32, b & lo], axis=1).astype(np.uint32)
    out[:] = words.reshape(-1)[skip : skip + m]


def _apply_rows(ws, x: np.ndarray, y: np.ndarray, e0: int, keys: list,
                thr: int, scale: np.float32) -> None:
    """y = x * (draw >= thr ? scale : 0) for a (rows, m) tile at stream
    positions e0 .. e0+m-1, row r drawn under row r's key (see _block_words)."""
    rows, m = x.shape
    a, b, skip = _block_words(ws, e0, m, rows, keys)
    keep = ws.keep[: a.size].reshape(rows, -1, 4)
    # Compare the words where they lie: r0 >= thr iff a >= thr * 2^32 (r1 only
    # adds less than 2^32), and r1 >= thr iff (a << 32) >= thr * 2^32.
    s32, thr_hi = np.uint64(32), np.uint64(thr << 32)
    for j, w in ((0, a), (2, b)):
        np.greater_equal(w, thr_hi, out=keep[..., j])
        np.left_shift(w, s32, out=w)
        np.greater_equal(w, thr_hi, out=keep[..., j + 1])
    factor = ws.factor[: rows * m].reshape(rows, m)
    np.multiply(keep.reshape(rows, -1)[:, skip : skip + m], scale, out=factor)  # keep ? scale : 0
    np.multiply(x, factor, out=y)


def _apply_chunk(ws, x: np.ndarray, y: np.ndarray, e0: int, keys: list,
                 thr: int, scale: np.float32) -> None:
    """One chunk of a single run: a one-row tile."""
    _apply_rows(ws, x[np.newaxis], y[np.newaxis], e0, keys, thr, scale)


def _check_chunk(chunk) -> int:
    chunk = operator.index(chunk)
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    return chunk


def _run_chunks(fn, n: int, offset: int, chunk: int, threads: int | None,
                arrays: tuple, extra: tuple) -> None:
    """Call fn(ws, *chunk views of arrays, e0, *extra) over [0, n) in chunks,
    threaded if large. Chunking changes nothing in the result: each chunk
    addresses the stream by its own position e0 = offset + start.
    """
    chunk = _check_chunk(chunk)
    workers = max(1, threads if threads is not None else DEFAULT_THREADS)
    if n < 2 * chunk:
        workers = 1

    def share(lo: int, hi: int) -> None:
        ws = _workspace(chunk)
        for start in range(lo, hi, chunk):
            stop = min(hi, start + chunk)
            fn(ws, *(a[start:stop] for a in arrays), offset + start, *extra)

    if workers == 1:
        share(0, n)
        return
    with _POOL_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="optbench-dropout")
    per = -(-n // (workers * chunk)) * chunk  # contiguous shares, whole chunks
    for f in [pool.submit(share, lo, min(n, lo + per)) for lo in range(0, n, per)]:
        f.result()


def _numpy_train(x1, y1, offset, p, seed, mode, chunk, threads) -> None:
    thr, scale = threshold(p), np.float32(training_scale(p, mode))
    if thr == 0 or thr == _TWO32:
        # The mask is known without drawing: all kept or all dropped. Same
        # product as the general path (x * scale or x * 0), so bit-identical.
        np.multiply(x1, scale if thr == 0 else np.float32(0.0), out=y1)
        return
    keys = philox.pair_round_keys(*seed_key(seed))  # once per call, not per chunk
    _run_chunks(_apply_chunk, x1.shape[0], offset, chunk, threads,
                (x1, y1), (keys, thr, scale))


def _numpy_train_population(x2, y2, offset, p, keys, mode, chunk) -> None:
    """Training dropout of every member (row) of the (P, n) arrays x2 -> y2.

    Tiles of (rows members) x (cols stream positions) go through Philox in
    one pass each, so P small members cost a few passes, not P. A tile fits
    the single run's chunk workspace: rows * cols <= chunk elements and
    rows * (cols + 6) // 4 blocks (a row of cols positions starting anywhere
    in a block touches at most (cols + 6) // 4 blocks) <= chunk // 4 + 2.
    Members longer than a chunk get one row per tile, as a single run does.
    Tiling changes nothing in the result: each tile addresses the stream by
    its own position and each row by its own key.
    """
    thr, scale = threshold(p), np.float32(training_scale(p, mode))
    if thr == 0 or thr == _TWO32:  # as in _numpy_train
        np.multiply(x2, scale if thr == 0 else np.float32(0.0), out=y2)
        return
    members, n = x2.shape
    # Even splits (no sliver of a tile at the end of each member or group).
    cols = -(-n // -(-n // chunk))
    rows = min(chunk // cols, (chunk // 4 + 2) // ((cols + 6) // 4))
    rows = -(-members // -(-members // rows))
    # Each round key as a (P, 1) column, once per call; a tile takes its rows.
    round_keys = philox.pair_round_keys(keys[:, :1], keys[:, 1:])
    ws = _workspace(chunk)
    for g0 in range(0, members, rows):
        g1 = min(members, g0 + rows)
        tile_keys = [(k0[g0:g1], k1[g0:g1]) for k0, k1 in round_keys]
        for start in range(0, n, cols):
            stop = min(n, start + cols)
            _apply_rows(ws, x2[g0:g1, start:stop], y2[g0:g1, start:stop], offset + start,
                        tile_keys, thr, scale)


def draws(n: int, seed: int, offset: int = 0, backend: str = "numpy",
          chunk: int = CHUNK, threads: int | None = None):
    """The raw 32-bit draw of each element h < n: word (e & 3) of
    Philox4x32-10((q mod 2^32, q >> 32, 0, 0), seed_key(seed)), e = offset + h,
    q = e >> 2. uint32, on the given backend ("numpy" or "cupy")."""
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    offset = _check_offset(offset, n)
    k0, k1 = seed_key(seed)
    if backend == "cupy":
        return _cupy_draws(n, offset, k0, k1)
    if backend != "numpy":
        raise ValueError(f"unknown backend {backend!r}; allowed: numpy, cupy")
    out = np.empty(n, dtype=np.uint32)
    if n:
        _run_chunks(_draws_chunk, n, offset, chunk, threads, (out,), (philox.pair_round_keys(k0, k1),))
    return out


def keep_mask(n: int, p: float, seed: int, offset: int = 0, backend: str = "numpy",
              chunk: int = CHUNK, threads: int | None = None):
    """xi_h for h < n: True where the element is kept (draw >= threshold(p))."""
    n = operator.index(n)
    thr = threshold(p)
    if thr == 0 or thr == _TWO32:  # known without drawing, as in the forward
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        seed_key(seed)
        _check_offset(offset, n)
        if backend not in ("numpy", "cupy"):
            raise ValueError(f"unknown backend {backend!r}; allowed: numpy, cupy")
        xp = np if backend == "numpy" else __import__("cupy")
        return (xp.ones if thr == 0 else xp.zeros)(n, dtype=bool)
    d = draws(n, seed, offset, backend, chunk, threads)
    return d >= np.uint32(thr)


# ------------------------------------------------------------- CuPy path

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


def _cupy_train(x1, y1, offset, p, seed, mode) -> None:
    import cupy as cp

    thr, scale = threshold(p), np.float32(training_scale(p, mode))
    if thr == 0 or thr == _TWO32:  # as in _numpy_train
        cp.multiply(x1, scale if thr == 0 else np.float32(0.0), out=y1)
        return
    n = x1.shape[0]
    name = VEC4_KERNEL if use_vec4(x1.data.ptr, y1.data.ptr, offset) else SCALAR_KERNEL
    _cupy_launch(name, n, offset, (x1, y1) + scalar_args(n, offset, p, seed, mode))


def _cupy_train_population(x2, y2, offset, p, keys, mode) -> None:
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


def _cupy_draws(n: int, offset: int, k0: int, k1: int):
    import cupy as cp

    out = cp.empty(n, dtype=cp.uint32)
    if n:
        _cupy_launch(DRAWS_KERNEL, n, offset,
                     (out, np.int64(n), np.uint64(offset), np.uint32(k0), np.uint32(k1)))
    return out


# ------------------------------------------------------------- public API

def _apply(src_name, src, dst_name, dst, p, seed, offset, mode, training, chunk, threads):
    kind = _check_pair(src_name, src, dst_name, dst)
    p, mode = _check_p(p), _check_mode(mode)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be True or False, got {training!r}")
    seed_key(seed)  # checks seed
    n = src.size
    offset = _check_offset(offset, n)
    if n == 0:
        return dst
    x1, y1 = src.reshape(-1), dst.reshape(-1)  # views: both are C-contiguous
    xp = np if kind == "numpy" else __import__("cupy")
    if not training:
        if mode == "inverted":
            xp.copyto(y1, x1)
        else:
            xp.multiply(x1, np.float32(inference_scale(p, mode)), out=y1)
    elif kind == "numpy":
        _numpy_train(x1, y1, offset, p, seed, mode, chunk, threads)
    else:
        _cupy_train(x1, y1, offset, p, seed, mode)
    return dst


def dropout_forward(x, out, p: float, seed: int, offset: int = 0, mode: str = "inverted",
                    training: bool = True, *, chunk: int = CHUNK, threads: int | None = None):
    """out := dropout(x); returns ``out``. NumPy or CuPy arrays (both the same).

    x:      the activations a_h = sigma_h(sum_j w_jh x_j^l), any shape,
            C-contiguous float32; h is the flat (C-order) index.
    out:    x_h^(l+1), same shape and backend; may be ``x`` itself.
    p:      p_l = P(xi_h = 0), in [0, 1]; the mask uses threshold(p) / 2^32.
    seed:   64-bit Philox key (k0 = low word, k1 = high word).
    offset: stream position of element 0; element h draws at offset + h.
    mode:   "inverted": training x * xi / (1 - p), inference x;
            "classic":  training x * xi,           inference x * (1 - p).
    training: False gives the inference rule (no mask is drawn).
    chunk, threads: NumPy path only (never change the result).
    """
    return _apply("x", x, "out", out, p, seed, offset, mode, training, chunk, threads)


def dropout_backward(grad_out, grad_in, p: float, seed: int, offset: int = 0,
                     mode: str = "inverted", training: bool = True, *,
                     chunk: int = CHUNK, threads: int | None = None):
    """grad_in := d loss / d x given grad_out = d loss / d out; returns ``grad_in``.

    The forward is linear in x with a diagonal Jacobian, so
    grad_in_h = grad_out_h * xi_h * scale (training) or grad_out_h * (inference
    factor), the mask regenerated from (seed, offset) -- pass the forward's.
    Arguments as in :func:`dropout_forward`; grad_in may be ``grad_out``.
    """
    return _apply("grad_out", grad_out, "grad_in", grad_in, p, seed, offset, mode,
                  training, chunk, threads)


def _apply_population(src_name, src, dst_name, dst, p, keys, offset, mode, training, chunk):
    kind, members, n = _check_population(src_name, src, dst_name, dst, keys)
    p, mode = _check_p(p), _check_mode(mode)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be True or False, got {training!r}")
    offset = _check_offset(offset, n)
    chunk = _check_chunk(chunk)
    if src.size == 0:
        return dst
    x2, y2 = src.reshape(members, n), dst.reshape(members, n)  # views: both are C-contiguous
    xp = np if kind == "numpy" else __import__("cupy")
    if not training:  # no mask: the whole population is one elementwise operation
        if mode == "inverted":
            xp.copyto(y2, x2)
        else:
            xp.multiply(x2, np.float32(inference_scale(p, mode)), out=y2)
    elif kind == "numpy":
        _numpy_train_population(x2, y2, offset, p, keys, mode, chunk)
    else:
        _cupy_train_population(x2, y2, offset, p, keys, mode)
    return dst


def dropout_forward_population(x, out, p: float, keys, offset: int = 0, mode: str = "inverted",
                               training: bool = True, *, chunk: int = CHUNK):
    """out := dropout(x) for every member of a population; returns ``out``.

    Member m's result is bit for bit
    ``dropout_forward(x[m], out[m], p, seeds[m], offset, mode, training)``:

        out[m, h] = x[m, h] * (xi_h^(m) ? scale : 0)     (training)
        xi_h^(m) = [word (e mod 4) of Philox4x32-10((q mod 2^32, q >> 32, 0, 0),
                    keys[m]) >= threshold(p)],   e = offset + h, q = e >> 2

    with h the flat (C-order) index within the member and scale as in
    :func:`dropout_forward`; inference is the single run's rule for all.

    x:      the members' activations a_h, shape (P, ...): x[m] is member m's
            (every member the same shape), C-contiguous float32.
    out:    x_h^(l+1), same shape and backend; may be ``x`` itself.
    p:      p_l, shared by all members, in [0, 1].
    keys:   :func:`member_keys` (seeds, xp) -- (P, 2) uint32 on x's backend,
            row m = (low, high) word of member m's seed.
    offset: stream position of each member's element 0 (the same for all
            members: the next call's is ``advance(offset, x[0].size)``).
    mode:   "inverted" or "classic", shared, as in :func:`dropout_forward`.
    training: False gives the inference rule (no mask is drawn).
    chunk:  NumPy path only: elements per tile (never changes the result).

    NumPy runs Philox once per tile of several members' blocks (each row of
    counters under its member's key); CuPy launches one kernel for the whole
    population, member m in blockIdx.y.
    """
    return _apply_population("x", x, "out", out, p, keys, offset, mode, training, chunk)


def dropout_backward_population(grad_out, grad_in, p: float, keys, offset: int = 0,
                                mode: str = "inverted", training: bool = True, *,
                                chunk: int = CHUNK):
    """grad_in := d loss / d x for every member, given grad_out = d loss / d out;
    returns ``grad_in``.

    Member m's result is bit for bit
    ``dropout_backward(grad_out[m], grad_in[m], p, seeds[m], offset, mode, training)``:
    grad_in[m, h] = grad_out[m, h] * xi_h^(m) * scale (training), the mask
    regenerated from (keys[m], offset) -- pass the forward's. Arguments as in
    :func:`dropout_forward_population`; grad_in may be ``grad_out``.
    """
    return _apply_population("grad_out", grad_out, "grad_in", grad_in, p, keys, offset, mode,
                             training, chunk)
