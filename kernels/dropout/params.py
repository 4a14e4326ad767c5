"""Dropout's parameters and checks: thresholds, scales, keys, offsets, and
the arguments every backend is called with (see :mod:`optbench.kernels.dropout`)."""

from __future__ import annotations

import math
import operator

import numpy as np

from ..backend import array_kind

MODES = ("inverted", "classic")
_TWO32 = 1 << 32
_TWO64 = 1 << 64


def threshold(p: float) -> int:
    """The drop threshold round(p * 2^32) in [0, 2^32]: P(drop) = threshold / 2^32."""
    p = check_p(p)
    return round(p * _TWO32)  # p * 2^32 is exact in double; round() ties to even


def training_scale(p: float, mode: str) -> float:
    """The factor a kept element is multiplied by in training (float32 value).

    inverted: 1 / (1 - p_l), computed in double and rounded once to float32;
    classic: 1. When nothing can be kept (threshold 2^32) it is 0, never Inf.
    """
    p, mode = check_p(p), check_mode(mode)
    if threshold(p) == _TWO32:
        return 0.0
    return float(np.float32(1.0 / (1.0 - p))) if mode == "inverted" else 1.0


def inference_scale(p: float, mode: str) -> float:
    """The factor every element is multiplied by at inference (float32 value).

    inverted: 1 (out is a copy of x); classic: 1 - p_l rounded to float32.
    """
    p, mode = check_p(p), check_mode(mode)
    return 1.0 if mode == "inverted" else float(np.float32(1.0 - p))


def seed_key(seed: int) -> tuple[int, int]:
    """The Philox key (k0, k1): the low and high 32-bit words of the 64-bit seed."""
    seed = check_u64("seed", seed)
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
    offset, n = check_u64("offset", offset), operator.index(n)
    return offset + ((n + 3) & ~3)


def scalar_args(n: int, offset: int, p: float, seed: int, mode: str = "inverted") -> tuple:
    """The training kernels' arguments after the two pointers, typed for a launch:
    (n int64, offset uint64, key0 uint32, key1 uint32, threshold uint64, scale float32).
    """
    k0, k1 = seed_key(seed)
    return (np.int64(n), np.uint64(offset), np.uint32(k0), np.uint32(k1),
            np.uint64(threshold(p)), np.float32(training_scale(p, mode)))


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


# --- checks

def check_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"dropout probability p must be a real number, got {type(p).__name__}")
    p = float(p)
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
    return p


def check_mode(mode) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown dropout mode {mode!r}; allowed: {', '.join(MODES)}")
    return mode


def check_u64(name: str, v) -> int:
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        v = operator.index(v)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}") from None
    if not 0 <= v < _TWO64:
        raise ValueError(f"{name} must be in [0, 2^64), got {v}")
    return v


def check_offset(offset, n: int) -> int:
    offset = check_u64("offset", offset)
    if offset + n > _TWO64:
        raise ValueError(
            f"offset {offset} + {n} elements runs past the 2^64 stream positions"
        )
    return offset


def _ptr(a, kind: str) -> int:
    return a.__array_interface__["data"][0] if kind == "numpy" else a.data.ptr


def check_pair(src_name: str, src, dst_name: str, dst) -> str:
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


def check_population(src_name, src, dst_name, dst, keys) -> tuple[str, int, int]:
    """(backend, members P, elements per member n) of a population call, or a
    clear error about what is wrong."""
    kind = check_pair(src_name, src, dst_name, dst)
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


def check_chunk(chunk) -> int:
    chunk = operator.index(chunk)
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    return chunk
