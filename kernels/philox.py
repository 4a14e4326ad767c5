"""Philox4x32-10, the counter-based generator behind the dropout masks.

Philox (Salmon, Moraes, Dror, Shaw 2011, "Parallel random numbers: as easy
as 1, 2, 3"; the Random123 library) maps a 128-bit counter c = (c0, c1, c2, c3)
and a 64-bit key k = (k0, k1) to 128 random bits through 10 rounds of

    (hi0, lo0) = mulhilo(M0, c0)          M0 = 0xD2511F53
    (hi1, lo1) = mulhilo(M1, c2)          M1 = 0xCD9E8D57
    c := (hi1 ^ c1 ^ k0,  lo1,  hi0 ^ c3 ^ k1,  lo0)
    k := (k0 + W0, k1 + W1)  mod 2^32     W0 = 0x9E3779B9, W1 = 0xBB67AE85

where mulhilo(a, b) splits the 64-bit product a * b into its high and low
32-bit words (the key is bumped between rounds, so round r uses
k + r * W). There is no state to carry: any element's random word is a pure
function of (counter, key), which is what makes a mask independent of how
the work is split between threads, chunks or devices.

Two implementations of the same function live here and must agree bit for
bit (the tests hold both to the published known-answer vectors):

* :func:`philox4x32_10` -- NumPy, vectorised over arrays of counters and
  keys. NumPy has no 32x32->64 "mulhi", so the rounds work on uint64 words
  holding two 32-bit words each, where the exact uint64 product carries hi
  and lo at once (:func:`philox_pairs`).
* ``kernels/cuda/philox.cuh`` (:func:`cuda_source`) -- CUDA C for a
  ``__host__ __device__`` function ``optbench_philox4x32_10``, no #include. On the device (``__CUDA_ARCH__``
  defined) the high word is the ``__umulhi`` intrinsic, one instruction;
  in a host build (g++ behind kernels/testing/cuda_host_shim.h, or nvcc's host pass,
  which rejects a ``__host__ __device__`` function calling the device-only
  ``__umulhi``) it is the top half of the 64-bit product. 32-bit words are
  ``unsigned int`` and the product ``unsigned long long``, the types with
  those widths on every platform CUDA supports.
"""

from __future__ import annotations

import numpy as np

from .sources import cuda_file

#: Round multipliers and key increments (Random123's PHILOX_M4x32_0/1, PHILOX_W32_0/1).
M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10
_MASK32 = 0xFFFFFFFF



def cuda_source() -> str:
    """The CUDA C text of ``optbench_philox4x32_10`` (``kernels/cuda/philox.cuh``)."""
    return cuda_file("philox.cuh")


def round_keys(k0, k1) -> list[tuple]:
    """The key of each round: (k0 + r * W0, k1 + r * W1) mod 2^32, r = 0..9.

    Python ints stay scalars (computed exactly, no overflow warnings); arrays
    are widened to uint64 for the sum and cut back to uint32.
    """
    keys = []
    for r in range(ROUNDS):
        pair = []
        for k, w in ((k0, W0), (k1, W1)):
            if isinstance(k, np.ndarray):
                pair.append(((k.astype(np.uint64) + r * w) & _MASK32).astype(np.uint32))
            else:
                pair.append((int(k) + r * w) & _MASK32)
        keys.append(tuple(pair))
    return keys


def pair_round_keys(k0, k1) -> list[tuple]:
    """Each round's key as :func:`philox_pairs_keyed` applies it: the words
    moved to the high halves, (k0_r * 2^32, k1_r * 2^32) as uint64, r = 0..9.

    Python ints give uint64 scalars; uint32 arrays give uint64 arrays of their
    shape, which broadcast against the counters (one key per block, or per
    row of blocks). Computing them once lets a caller that runs the rounds
    over many chunks under the same keys skip ~100 small array operations a
    chunk.
    """
    s32 = np.uint64(32)
    return [tuple(rk.astype(np.uint64) << s32 if isinstance(rk, np.ndarray) else np.uint64(rk << 32)
                  for rk in pair)
            for pair in round_keys(k0, k1)]


def philox_pairs(a: np.ndarray, b: np.ndarray, k0, k1, t0: np.ndarray, t1: np.ndarray) -> None:
    """Ten Philox rounds in place on a counter held as two uint64 words per block:

        a = c0 * 2^32 + c1,    b = c2 * 2^32 + c3.

    In that form a round is ten contiguous uint64 operations and needs no
    mulhi: (a >> 32) * M0 is the exact 64-bit product hi0 * 2^32 + lo0 (both
    factors < 2^32), and

        a' = (M1 * c2) ^ ((c1 ^ k0) << 32) = (hi1 ^ c1 ^ k0) * 2^32 + lo1 = c0' * 2^32 + c1'
        b' = (M0 * c0) ^ ((c3 ^ k1) << 32) = (hi0 ^ c3 ^ k1) * 2^32 + lo0 = c2' * 2^32 + c3'

    (the shift left by 32 moves c1 into the high word and discards c0).
    On return a and b hold the output words the same way. k0, k1: Python
    ints (one key for every block) or uint32 arrays broadcasting against a
    (a key per block); t0, t1: scratch of a's shape. (About 1.2x faster here
    than uint32 words with uint64 products read back through strided uint32
    views, whose strided xors dominate.)
    """
    philox_pairs_keyed(a, b, pair_round_keys(k0, k1), t0, t1)


def philox_pairs_keyed(a: np.ndarray, b: np.ndarray, keys: list, t0: np.ndarray, t1: np.ndarray) -> None:
    """:func:`philox_pairs` with its round keys given as :func:`pair_round_keys` returns them."""
    s32 = np.uint64(32)
    m0, m1 = np.uint64(M0), np.uint64(M1)
    for kk0, kk1 in keys:
        np.right_shift(a, s32, out=t0)
        np.multiply(t0, m0, out=t0)   # t0 = M0 * c0 = hi0 * 2^32 + lo0
        np.right_shift(b, s32, out=t1)
        np.multiply(t1, m1, out=t1)   # t1 = M1 * c2 = hi1 * 2^32 + lo1
        np.left_shift(a, s32, out=a)  # c1 * 2^32
        np.bitwise_xor(a, kk0, out=a)
        np.bitwise_xor(a, t1, out=a)  # (hi1 ^ c1 ^ k0) * 2^32 + lo1
        np.left_shift(b, s32, out=b)  # c3 * 2^32
        np.bitwise_xor(b, kk1, out=b)
        np.bitwise_xor(b, t0, out=b)  # (hi0 ^ c3 ^ k1) * 2^32 + lo0


def philox4x32_10(counter, key) -> np.ndarray:
    """Philox4x32-10 of uint32 ``counter`` (..., 4) under ``key`` (..., 2).

    The leading dimensions broadcast against each other; the result has
    their broadcast shape plus a last axis of the four output words (uint32).
    Word j of the counter is c_j, word j of the key k_j, as in Random123.
    """
    counter = np.asarray(counter)
    key = np.asarray(key)
    for name, a, words in (("counter", counter, 4), ("key", key, 2)):
        if a.dtype != np.uint32:
            raise TypeError(f"philox4x32_10: {name} must be uint32, got {a.dtype}")
        if a.ndim == 0 or a.shape[-1] != words:
            raise ValueError(
                f"philox4x32_10: {name} must have a last axis of {words} words, got shape {a.shape}"
            )
    shape = np.broadcast_shapes(counter.shape[:-1], key.shape[:-1])

    def word(a, j):  # word j of every block, flat, as uint64
        return np.broadcast_to(a[..., j], shape).reshape(-1).astype(np.uint64)

    s32 = np.uint64(32)
    a = (word(counter, 0) << s32) | word(counter, 1)
    b = (word(counter, 2) << s32) | word(counter, 3)
    k0, k1 = (word(key, j).astype(np.uint32) for j in range(2))
    philox_pairs(a, b, k0, k1, np.empty_like(a), np.empty_like(a))
    out = np.empty(shape + (4,), dtype=np.uint32)
    for j, (w, high) in enumerate(((a, True), (a, False), (b, True), (b, False))):
        out[..., j] = ((w >> s32) if high else (w & np.uint64(_MASK32))).reshape(shape)
    return out
