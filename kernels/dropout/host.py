"""Dropout on NumPy arrays: Philox vectorised over a chunk's blocks, in
cache-sized chunks (threaded on request), one pass over several members'
blocks for a population. Chunking, tiling and threads never change a mask:
every chunk addresses the stream by its own position."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import philox
from .params import _TWO32, check_chunk, seed_key, threshold, training_scale

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


def draws_chunk(ws, out: np.ndarray, e0: int, keys: list) -> None:
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


def run_chunks(fn, n: int, offset: int, chunk: int, threads: int | None,
                arrays: tuple, extra: tuple) -> None:
    """Call fn(ws, *chunk views of arrays, e0, *extra) over [0, n) in chunks,
    threaded if large. Chunking changes nothing in the result: each chunk
    addresses the stream by its own position e0 = offset + start.
    """
    chunk = check_chunk(chunk)
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


def numpy_train(x1, y1, offset, p, seed, mode, chunk, threads) -> None:
    thr, scale = threshold(p), np.float32(training_scale(p, mode))
    if thr == 0 or thr == _TWO32:
        # The mask is known without drawing: all kept or all dropped. Same
        # product as the general path (x * scale or x * 0), so bit-identical.
        np.multiply(x1, scale if thr == 0 else np.float32(0.0), out=y1)
        return
    keys = philox.pair_round_keys(*seed_key(seed))  # once per call, not per chunk
    run_chunks(_apply_chunk, x1.shape[0], offset, chunk, threads,
                (x1, y1), (keys, thr, scale))


def numpy_train_population(x2, y2, offset, p, keys, mode, chunk) -> None:
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


def numpy_draws(n: int, offset: int, k0: int, k1: int, chunk: int, threads: int | None) -> np.ndarray:
    """The raw 32-bit draws of stream positions offset .. offset+n-1 under key (k0, k1)."""
    out = np.empty(n, dtype=np.uint32)
    if n:
        run_chunks(draws_chunk, n, offset, chunk, threads, (out,), (philox.pair_round_keys(k0, k1),))
    return out
