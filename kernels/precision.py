"""Low-precision optimiser state, first part (issue 23): bfloat16 rounding.

A bfloat16 is the top 16 bits of a float32 (sign, the same 8-bit exponent, 7
bits of mantissa), so it is stored here as those bits in a uint16 and needs
no dtype library on any path. Going down from float32 drops the low 16 bits;
going up shifts them back as zeros (:func:`bf16_to_f32`, exact).

Two roundings, on the float32 bits u:

* **to nearest, ties to even** (:func:`bf16_rne`): (u + 0x7FFF + bit 16 of u)
  >> 16 -- adding just under half of the last bit rounds up past the
  midpoint, and the last bit decides a tie so that ties go to even. A carry
  out of the mantissa moves to the next binade, to infinity past the
  largest finite value, as rounding should. A NaN keeps its sign and
  becomes quiet (0x0040 set) so it cannot round to an infinity.
* **stochastic** (:func:`bf16_sr`): (u + r) >> 16 with r uniform on
  [0, 2^16): a value a fraction f of the way from one bf16 to the next
  rounds up with probability f, so the rounded value is right on average
  (unbiased), where round-to-nearest keeps the same error every time -- the
  error that makes a small update to a bf16 moment or weight vanish (llm.c
  rounds its bf16 weights this way). Infinities stay infinite.

The random bits are a function of (seed, step, buffer, element) alone --
Philox4x32-10 (:mod:`.philox`) of counter (element / 4 as two words, step,
0x5352 << 16 | buffer) under key (seed's low and high words), word element
% 4, its high 16 bits -- so NumPy, Numba and the CUDA source
(``kernels/cuda/bf16.cuh``) round alike, bit for bit, however the work is
split; ``buffer`` tells a rule's state buffers apart, so two buffers at the
same element draw different bits.

What is still to come (issue 23): a state precision per run that the code
generators insert around a rule's state loads and stores, ``validate
--state``, ``bench --state``, 8-bit block-wise state and the paired accuracy
study.
"""

from __future__ import annotations

import numpy as np

from . import philox
from .sources import cuda_file

#: The tag in the counter's last word: stochastic-rounding bits never meet dropout's.
SR_TAG = 0x5352 << 16


def cuda_source() -> str:
    """The CUDA source of the rounding kernel (``kernels/cuda/precision.cu``)."""
    return cuda_file("precision.cu")


def _bits(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"bf16 rounding takes float32, got {x.dtype}")
    return x.view(np.uint32)


def _nan(u: np.ndarray) -> np.ndarray:
    return (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)


def bf16_rne(x) -> np.ndarray:
    """float32 -> bf16 bits (uint16), round to nearest, ties to even."""
    u = _bits(x)
    even = (u >> np.uint32(16)) & np.uint32(1)
    with np.errstate(over="ignore"):
        h = (u + (np.uint32(0x7FFF) + even)) >> np.uint32(16)
    h = np.where(_nan(u), (u >> np.uint32(16)) | np.uint32(0x0040), h)
    return h.astype(np.uint16)


def bf16_sr(x, r16) -> np.ndarray:
    """float32 -> bf16 bits (uint16), rounded stochastically with the random
    16-bit values ``r16`` (uint32, one per element; :func:`sr_bits`)."""
    u = _bits(x)
    h = (u + (np.asarray(r16, dtype=np.uint32) & np.uint32(0xFFFF))) >> np.uint32(16)
    h = np.where((u & np.uint32(0x7FFFFFFF)) == np.uint32(0x7F800000), u >> np.uint32(16), h)
    h = np.where(_nan(u), (u >> np.uint32(16)) | np.uint32(0x0040), h)
    return h.astype(np.uint16)


def bf16_to_f32(h) -> np.ndarray:
    """bf16 bits (uint16) -> float32, exactly."""
    return (np.asarray(h, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def sr_bits(n: int, seed: int, step: int, buffer: int, offset: int = 0) -> np.ndarray:
    """The random 16-bit values (uint32) of elements offset .. offset + n - 1
    of ``buffer`` at ``step`` under ``seed`` (see the module docstring)."""
    e = np.arange(offset, offset + n, dtype=np.uint64)
    q = e >> np.uint64(2)
    counter = np.empty((n, 4), dtype=np.uint32)
    counter[:, 0] = (q & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    counter[:, 1] = (q >> np.uint64(32)).astype(np.uint32)
    counter[:, 2] = np.uint32(step & 0xFFFFFFFF)
    counter[:, 3] = np.uint32(SR_TAG | (buffer & 0xFFFF))
    key = np.array([seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF], dtype=np.uint32)
    words = philox.philox4x32_10(counter, key)
    return words[np.arange(n), (e & np.uint64(3)).astype(np.intp)] >> np.uint32(16)


def bf16_sr_keyed(x, seed: int, step: int, buffer: int, offset: int = 0) -> np.ndarray:
    """:func:`bf16_sr` with the bits of (seed, step, buffer, offset + element)."""
    x = np.asarray(x, dtype=np.float32)
    return bf16_sr(x.reshape(-1), sr_bits(x.size, seed, step, buffer, offset)).reshape(x.shape)


def numba_functions():
    """Numba's twins of :func:`sr_bits` (one element) and the two roundings
    (one float32), compiled for use inside a generated kernel; None where
    Numba is missing. Scalar integer arithmetic on uint64 words, the same
    steps as ``bf16.cuh``."""
    try:
        import numba
    except ImportError:
        return None

    # Every constant a uint64: Numba types uint64 with int64 as float64.
    u = np.uint64
    m0, m1, w0, w1, mask = u(philox.M0), u(philox.M1), u(philox.W0), u(philox.W1), u(0xFFFFFFFF)
    s2, s16, s32, three, low16 = u(2), u(16), u(32), u(3), u(0xFFFF)
    tag, quiet, absmask, inf = u(SR_TAG), u(0x0040), u(0x7FFFFFFF), u(0x7F800000)
    half, one, zero, two = u(0x7FFF), u(1), u(0), u(2)

    @numba.njit(cache=False, inline="always")
    def sr_bits_one(seed, step, buffer, element):
        q = element >> s2
        c0, c1, c2, c3 = q & mask, q >> s32, step & mask, tag | (buffer & low16)
        k0, k1 = seed & mask, (seed >> s32) & mask
        for r in range(10):
            if r > 0:
                k0 = (k0 + w0) & mask
                k1 = (k1 + w1) & mask
            p0, p1 = m0 * c0, m1 * c2
            c0, c1, c2, c3 = ((p1 >> s32) ^ c1 ^ k0) & mask, p1 & mask, ((p0 >> s32) ^ c3 ^ k1) & mask, p0 & mask
        j = element & three
        word = c0 if j == zero else (c1 if j == one else (c2 if j == two else c3))
        return word >> s16

    @numba.njit(cache=False, inline="always")
    def rne(v):
        if (v & absmask) > inf:
            return (v >> s16) | quiet
        return ((v + half + ((v >> s16) & one)) & mask) >> s16

    @numba.njit(cache=False, inline="always")
    def sr(v, r16):
        if (v & absmask) > inf:
            return (v >> s16) | quiet
        if (v & absmask) == inf:
            return v >> s16
        return ((v + (r16 & low16)) & mask) >> s16

    @numba.njit(cache=False)
    def round_array(x, out, mode, seed, step, buffer, offset):
        bits = x.view(np.uint32)
        for i in range(bits.size):
            v = np.uint64(bits[i])
            if mode == 0:
                h = rne(v)
            else:
                h = sr(v, sr_bits_one(np.uint64(seed), np.uint64(step), np.uint64(buffer), np.uint64(offset) + np.uint64(i)))
            out[i] = np.uint16(h)

    return {"sr_bits": sr_bits_one, "rne": rne, "sr": sr, "round_array": round_array}
