"""Low-precision optimiser state (issue 23): bfloat16 rounding, 8-bit
block-wise quantisation, and a state precision per run.

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

**8-bit block-wise state** (:func:`quantize_blockwise`,
:func:`dequantize_blockwise`), the scheme of Dettmers et al. (ICLR 2022,
"8-bit optimizers via block-wise quantization"): a buffer is cut into blocks
of 2048 elements; each block keeps its absolute maximum in float32, and each
element the index (uint8) of the entry of a 256-entry code book nearest to
element / absmax. The code book is the paper's *dynamic* map
(:func:`dynamic_map`): a sign, then a run of zeros whose length sets a
power of ten, then linear fraction bits -- so it covers seven decades
(1e-6 .. 1) with relative spacing that stays fine at every magnitude, what
Adam's moments need (its second moment spans many decades within a tensor).
The signed map is for moments that change sign (Adam's m), the unsigned one
(twice the resolution, no sign) for those that cannot (v). A block's
largest element is stored exactly when it is positive (code 1.0); a
negative one to within 0.7% (the signed map has no -1).

**A state precision per run** (:data:`STATE_PRECISIONS`; ``state`` in a
study): after every step the optimiser rounds each state buffer in place
(:func:`round_state`), member m's stochastic bits under its own seed, at the
step's number, per buffer and element -- so a member's state holds exactly
the values a bf16 state would hold, whatever the rule (built-in, plug-in,
staged), with no change to its text, and the same bits on every backend.
The state is still kept in float32 words: the numbers are bf16's, the
bytes are not yet (a fused load and store in the generated kernels is what
would halve them; ``bench --state`` with it).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import philox
from .codegen.cuda_kernel import grid
from .sources import cuda_file

#: The tag in the counter's last word: stochastic-rounding bits never meet dropout's.
SR_TAG = 0x5352 << 16
#: How a run stores its optimiser state: float32; bfloat16 rounded to nearest
#: even; bfloat16 rounded stochastically.
STATE_PRECISIONS = ("fp32", "bf16", "bf16-sr")


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


@lru_cache(maxsize=None)
def numba_functions():
    """Numba's twins of :func:`sr_bits` (one element) and the two roundings
    (one float32), and the loops of an array (``round_array``) and of a
    (P, n) state in place (``round_state``), compiled once; None where Numba
    is missing. Scalar integer arithmetic on uint64 words, the same steps as
    ``bf16.cuh``."""
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

    @numba.njit(cache=False, inline="always")
    def round_one(v, mode, seed, step, buffer, element):
        """float32 bits v -> bf16 bits: to nearest (mode 0) or stochastically."""
        if mode == 0:
            return rne(v)
        return sr(v, sr_bits_one(np.uint64(seed), np.uint64(step), np.uint64(buffer), element))

    @numba.njit(cache=False)
    def round_array(x, out, mode, seed, step, buffer, offset):
        bits = x.view(np.uint32)
        for i in range(bits.size):
            out[i] = np.uint16(round_one(np.uint64(bits[i]), mode, seed, step, buffer, np.uint64(offset + i)))

    @numba.njit(cache=False)
    def round_state(x, keys, mode, step, buffer):
        for m in range(x.shape[0]):
            seed = np.uint64(keys[m, 0]) | (np.uint64(keys[m, 1]) << s32)
            bits = x[m].view(np.uint32)
            for k in range(bits.size):
                bits[k] = np.uint32(round_one(np.uint64(bits[k]), mode, seed, step, buffer, np.uint64(k)) << s16)

    return {"sr_bits": sr_bits_one, "rne": rne, "sr": sr, "round_array": round_array, "round_state": round_state}


#: Elements per block of 8-bit state (the paper's and bitsandbytes' block size).
BLOCK = 2048


def dynamic_map(signed: bool = True) -> np.ndarray:
    """The 256 values of the dynamic 8-bit code (float32, ascending): for
    each decade e = 0 .. 6, 2^e (signed) or 2^(e+1) (unsigned) values
    10^(e-6) x the midpoints of an even split of [0.1, 1] into that many
    parts (with their negatives when signed), then 0 and 1; the unused
    entries of the unsigned map are 0."""
    values = [0.0, 1.0]
    for e in range(7):
        parts = 2 ** e if signed else 2 ** (e + 1)
        edges = np.linspace(0.1, 1.0, parts + 1)
        mids = (edges[:-1] + edges[1:]) / 2 * 10.0 ** (e - 6)
        values += list(mids) + (list(-mids) if signed else [])
    values += [0.0] * (256 - len(values))
    return np.sort(np.asarray(values, dtype=np.float64)).astype(np.float32)


def quantize_blockwise(x, signed: bool = True, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """(codes uint8 of x's size, absmax float32 per block) of float32 ``x``:
    each element's nearest code of :func:`dynamic_map` to x / its block's
    absmax (ties to the lower code; a block of zeros has absmax 0 and codes
    of 0). A NaN or an infinity is refused: an optimiser state holding one
    has already diverged."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    if not np.isfinite(x).all():
        raise ValueError("quantize_blockwise: the state holds a NaN or an infinity")
    if not signed and (x < 0).any():
        raise ValueError("quantize_blockwise: the unsigned map holds no negative value")
    code = dynamic_map(signed)
    blocks = -(-x.size // block)
    padded = np.zeros(blocks * block, dtype=np.float32)
    padded[:x.size] = x
    padded = padded.reshape(blocks, block)
    absmax = np.abs(padded).max(axis=1)
    scale = np.where(absmax > 0, absmax, np.float32(1))
    normed = padded / scale[:, None]
    hi = np.clip(np.searchsorted(code, normed), 1, 255)  # code[hi - 1] < normed <= code[hi]
    lo = hi - 1
    nearer_hi = (code[hi] - normed) < (normed - code[lo])
    codes = np.where(nearer_hi, hi, lo).astype(np.uint8)
    return codes.reshape(-1)[:x.size], absmax.astype(np.float32)


def dequantize_blockwise(codes, absmax, signed: bool = True, block: int = BLOCK) -> np.ndarray:
    """float32 values of :func:`quantize_blockwise`'s codes: code x absmax."""
    codes = np.asarray(codes, dtype=np.uint8).reshape(-1)
    scale = np.repeat(np.asarray(absmax, dtype=np.float32), block)[:codes.size]
    return dynamic_map(signed)[codes] * scale


# --- a state precision per run ------------------------------------------------


def seed_keys(seeds) -> np.ndarray:
    """Each member's seed as the (low, high) uint32 words of its Philox key, (P, 2)."""
    seeds = [int(s) for s in seeds]
    return np.array([[s & 0xFFFFFFFF, (s >> 32) & 0xFFFFFFFF] for s in seeds], dtype=np.uint32).reshape(-1, 2)


def round_state(x, precision: str, keys, step: int, buffer: int, backend: str = "numpy") -> None:
    """Round the (P, n) float32 state ``x`` in place to what ``precision``
    stores: nothing for fp32; bf16 to nearest even; bf16-sr stochastically,
    member m's bits from its key ``keys[m]`` ((P, 2) uint32, on x's device),
    at ``step``, ``buffer`` (the state buffer's index in the rule) and each
    element's index in its row. NumPy, Numba and CUDA give the same bits."""
    if precision == "fp32":
        return
    if precision not in STATE_PRECISIONS:
        raise ValueError(f"unknown state precision {precision!r}; allowed: {', '.join(STATE_PRECISIONS)}")
    mode = 0 if precision == "bf16" else 1
    if backend == "cupy":
        _round_state_cuda(x, keys, mode, step, buffer)
        return
    if backend == "numba" and (fns := numba_functions()) is not None:
        fns["round_state"](x, keys, mode, step, buffer)
        return
    for m in range(x.shape[0]):
        row = x[m]
        if mode == 0:
            h = bf16_rne(row)
        else:
            seed = int(keys[m, 0]) | (int(keys[m, 1]) << 32)
            h = bf16_sr(row, sr_bits(row.size, seed, step, buffer))
        row[...] = bf16_to_f32(h)


@lru_cache(maxsize=None)
def _cupy_function():
    import cupy as cp

    return (cp.RawModule(code=cuda_source()).get_function("optbench_round_state_bf16"),
            cp.cuda.Device().attributes["MultiProcessorCount"])


def _round_state_cuda(x, keys, mode: int, step: int, buffer: int) -> None:
    members, n = x.shape
    if members == 0 or n == 0:
        return
    if x.strides[1] != 4:
        raise ValueError(f"round_state: the state's rows need unit element stride, got strides {x.strides}")
    fn, sm_count = _cupy_function()
    threads = 256
    fn(grid(members, n, threads, sm_count), (threads,),
       (x, keys, np.int64(members), np.int64(n), np.int64(x.strides[0] // 4), np.int32(mode),
        np.uint32(step & 0xFFFFFFFF), np.uint32(buffer)))
