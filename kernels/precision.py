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
The generated kernels (:mod:`.codegen`) keep a bf16 state in its 16 bits
(:data:`PACKED`, uint16 arrays): each element is loaded exactly and
stored rounded inside the rule's one pass, which is bit for bit the float32
step followed by :func:`round_state`, with 2 bytes fewer read and written
per state buffer and parameter
(:func:`optbench.kernels.population.state_bytes_per_param`). A rule that
updates in stages keeps its state in float32 words rounded after each step.
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
#: even; bfloat16 rounded stochastically; 8-bit block-wise codes.
STATE_PRECISIONS = ("fp32", "bf16", "bf16-sr", "int8")
#: The precisions whose state the generated kernels store as 16 bits (uint16).
PACKED = ("bf16", "bf16-sr")


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
    # one Philox call per four elements: word j of counter q is element 4q + j's
    first = offset >> 2
    q = np.arange(first, ((offset + n + 3) >> 2) if n > 0 else first, dtype=np.uint64)
    counter = np.empty((q.size, 4), dtype=np.uint32)
    counter[:, 0] = (q & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    counter[:, 1] = (q >> np.uint64(32)).astype(np.uint32)
    counter[:, 2] = np.uint32(step & 0xFFFFFFFF)
    counter[:, 3] = np.uint32(SR_TAG | (buffer & 0xFFFF))
    key = np.array([seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF], dtype=np.uint32)
    words = philox.philox4x32_10(counter, key).reshape(-1)
    return words[offset - 4 * first : offset - 4 * first + n] >> np.uint32(16)


def bf16_sr_keyed(x, seed: int, step: int, buffer: int, offset: int = 0) -> np.ndarray:
    """:func:`bf16_sr` with the bits of (seed, step, buffer, offset + element)."""
    x = np.asarray(x, dtype=np.float32)
    return bf16_sr(x.reshape(-1), sr_bits(x.size, seed, step, buffer, offset)).reshape(x.shape)


#: bfloat16 for Numba: the bit casts, Philox's bits and the two roundings
#: per element, as the source text that :func:`numba_functions` compiles and
#: that every generated Numba loop of a bf16 state embeds
#: (:mod:`.codegen.numba_kernel`), so both run the same text. Integer
#: arithmetic on uint64 words, every constant a uint64 (Numba types a uint64
#: with an int64 as a float64): the same steps as ``bf16.cuh``. It runs in a
#: namespace with numpy ``np``, ``_inline`` (numba.njit(inline="always"),
#: or nothing for plain Python) and the bit casts ``_f32_bits`` /
#: ``_bits_f32`` (:func:`numba_namespace`).
NUMBA_SOURCE = f"""
_U = np.uint64
_M0, _M1, _W0, _W1 = _U({philox.M0}), _U({philox.M1}), _U({philox.W0}), _U({philox.W1})
_MASK, _LOW16, _TAG = _U(0xFFFFFFFF), _U(0xFFFF), _U({SR_TAG})
_QUIET, _ABS, _INF, _HALF = _U(0x0040), _U(0x7FFFFFFF), _U(0x7F800000), _U(0x7FFF)
_S2, _S16, _S32 = _U(2), _U(16), _U(32)
_0, _1, _2, _3 = _U(0), _U(1), _U(2), _U(3)


@_inline
def _philox4(seed, step, buffer, q):
    # Philox4x32-10 of counter (q as two words, step, tag | buffer) under key
    # (seed's low and high words): the four words of elements 4q .. 4q + 3
    c0, c1, c2, c3 = q & _MASK, q >> _S32, step & _MASK, _TAG | (buffer & _LOW16)
    k0, k1 = seed & _MASK, (seed >> _S32) & _MASK
    for r in range(10):
        if r > 0:
            k0 = (k0 + _W0) & _MASK
            k1 = (k1 + _W1) & _MASK
        p0, p1 = _M0 * c0, _M1 * c2
        c0, c1, c2, c3 = ((p1 >> _S32) ^ c1 ^ k0) & _MASK, p1 & _MASK, ((p0 >> _S32) ^ c3 ^ k1) & _MASK, p0 & _MASK
    return c0, c1, c2, c3


@_inline
def _word(words, j):
    # word j of four: its high half, the 16 random bits of element 4q + j
    w = words[0] if j == _0 else (words[1] if j == _1 else (words[2] if j == _2 else words[3]))
    return w >> _S16


@_inline
def _sr_bits(seed, step, buffer, element):
    return _word(_philox4(seed, step, buffer, element >> _S2), element & _3)


# Conditional expressions, not branches: LLVM turns them into selects and
# still vectorises the loop a rule's update runs in.
@_inline
def _rne(v):
    # float32 bits -> bf16 bits, to nearest, ties to even; a NaN stays a quiet NaN
    return ((v >> _S16) | _QUIET) if (v & _ABS) > _INF else ((v + _HALF + ((v >> _S16) & _1)) & _MASK) >> _S16


@_inline
def _sr(v, r16):
    # float32 bits -> bf16 bits, r16 added below the last bit; an infinity stays itself
    a = v & _ABS
    return ((v >> _S16) | _QUIET) if a > _INF else (
        (v >> _S16) if a == _INF else ((v + (r16 & _LOW16)) & _MASK) >> _S16)


@_inline
def _bf16_rne(x):
    return np.uint16(_rne(_U(_f32_bits(x))))


@_inline
def _bf16_sr(x, r16):
    return np.uint16(_sr(_U(_f32_bits(x)), r16))


@_inline
def _bf16_load(h):
    return _bits_f32(np.uint32(_U(h) << _S16))
"""


def numba_intrinsics() -> dict:
    """Numba intrinsics, each a few LLVM instructions on 32-bit words:
    ``_f32_bits`` and ``_bits_f32``, the bit casts (Numba has no scalar
    ``view``), and the hot pair of a bf16 state's loop, ``_bf16_load`` and
    ``_bf16_rne`` -- the same operations as :data:`NUMBA_SOURCE`'s, which
    Numba would widen to 64-bit words (it types uint32 + uint32 as uint64),
    halving the lanes of every vector instruction."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i32 = ir.IntType(32)

    def k(v):
        return ir.Constant(i32, v)

    @intrinsic
    def _f32_bits(typingctx, x):
        return types.uint32(types.float32), lambda context, builder, sig, args: builder.bitcast(args[0], i32)

    @intrinsic
    def _bits_f32(typingctx, x):
        return types.float32(types.uint32), lambda context, builder, sig, args: builder.bitcast(args[0], ir.FloatType())

    @intrinsic
    def _bf16_load(typingctx, h):
        def codegen(context, builder, sig, args):
            return builder.bitcast(builder.shl(builder.zext(args[0], i32), k(16)), ir.FloatType())
        return types.float32(types.uint16), codegen

    @intrinsic
    def _bf16_rne(typingctx, x):
        def codegen(context, builder, sig, args):  # _rne, with select for the NaN
            u = builder.bitcast(args[0], i32)
            high = builder.lshr(u, k(16))
            rounded = builder.lshr(builder.add(u, builder.add(k(0x7FFF), builder.and_(high, k(1)))), k(16))
            nan = builder.fcmp_unordered("uno", args[0], args[0])
            return builder.trunc(builder.select(nan, builder.or_(high, k(0x0040)), rounded), ir.IntType(16))
        return types.uint16(types.float32), codegen

    return {"_f32_bits": _f32_bits, "_bits_f32": _bits_f32, "_bf16_load": _bf16_load, "_bf16_rne": _bf16_rne}


def numba_namespace(jit: bool = True) -> dict:
    """The names :data:`NUMBA_SOURCE` defines, compiled for Numba (``jit``)
    or as plain Python over NumPy scalars (to run a generated loop's source
    without Numba)."""
    ns: dict = {"np": np}
    if jit:
        import numba

        ns["_inline"] = numba.njit(cache=False, inline="always")
        intrinsics = numba_intrinsics()
        ns.update(intrinsics)
    else:
        ns["_inline"] = lambda f: f
        ns["_f32_bits"] = lambda x: np.float32(x).view(np.uint32)
        ns["_bits_f32"] = lambda u: np.uint32(u).view(np.float32)
    exec(NUMBA_SOURCE, ns)
    if jit:
        ns.update(intrinsics)  # the loop's load and store: the 32-bit forms
    return ns


@lru_cache(maxsize=None)
def numba_functions():
    """Numba's twins of :func:`sr_bits` (one element) and the two roundings
    (on float32 bits), and the loops of an array (``round_array``) and of a
    (P, n) state in place (``round_state``), compiled once from
    :data:`NUMBA_SOURCE`; None where Numba is missing."""
    try:
        import numba
    except ImportError:
        return None
    ns = numba_namespace()
    sr_bits_one, rne, sr, s32 = ns["_sr_bits"], ns["_rne"], ns["_sr"], ns["_S32"]
    s16 = ns["_S16"]

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
    codes = _nearest(padded / scale[:, None], code).astype(np.uint8)
    return codes.reshape(-1)[:x.size], absmax.astype(np.float32)


def dequantize_blockwise(codes, absmax, signed: bool = True, block: int = BLOCK) -> np.ndarray:
    """float32 values of :func:`quantize_blockwise`'s codes: code x absmax."""
    codes = np.asarray(codes, dtype=np.uint8).reshape(-1)
    scale = np.repeat(np.asarray(absmax, dtype=np.float32), block)[:codes.size]
    return dynamic_map(signed)[codes] * scale


def _nearest(normed: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Each value's nearest entry of the ascending ``code`` (its index; a tie
    goes to the lower entry): the binary search of numpy's searchsorted
    (left), the same comparisons as the Numba and CUDA loops."""
    hi = np.clip(np.searchsorted(code, normed), 1, 255)  # code[hi - 1] < normed <= code[hi]
    lo = hi - 1
    return np.where((code[hi] - normed) < (normed - code[lo]), hi, lo)


def int8_roundtrip(x) -> None:
    """Replace each row of the (P, n) float32 ``x``, in place, by the values
    an 8-bit block-wise state holds: each block of :data:`BLOCK` elements of
    a row quantised (:func:`quantize_blockwise`, with the signed map where
    the block holds a negative value and the unsigned one where it does not)
    and decoded again. A block holding a NaN or an infinity is left as it is:
    its member has diverged."""
    members, n = x.shape
    blocks = -(-n // BLOCK)
    padded = np.zeros((members, blocks * BLOCK), dtype=np.float32)
    padded[:, :n] = x
    padded = padded.reshape(members * blocks, BLOCK)
    finite = np.isfinite(padded).all(axis=1)
    negative = (padded < 0).any(axis=1)
    absmax = np.abs(np.where(finite[:, None], padded, 0)).max(axis=1)
    normed = padded / np.where(absmax > 0, absmax, np.float32(1))[:, None]
    signed, unsigned = dynamic_map(True), dynamic_map(False)
    with np.errstate(invalid="ignore"):
        values = np.where(negative[:, None], signed[_nearest(normed, signed)], unsigned[_nearest(normed, unsigned)])
    values = np.where(finite[:, None], values * absmax[:, None], padded)
    x[...] = values.reshape(members, blocks * BLOCK)[:, :n]


@lru_cache(maxsize=None)
def code_tables() -> tuple[np.ndarray, np.ndarray]:
    """What the Numba and CUDA quantisers look codes up in, for the signed
    map (row 0) and the unsigned one (row 1): ``codes`` (2, 257) float32,
    each map followed by +inf; ``below`` (2, 65536) uint16, for each value
    of a float32's high 16 bits the number of the map's entries below the
    least float with those bits. The floats that share their high 16 bits
    span less than 1% of their value, narrower than the gap between any two
    entries of either map, so at most one entry lies among them: the
    entries below v (numpy.searchsorted, side "left") are ``below[v's high
    bits]``, plus one where that entry is below v -- one look-up and one
    comparison in place of a binary search (checked here for every bucket,
    and by the tests against NumPy's search)."""
    codes = np.full((2, 257), np.inf, dtype=np.float32)
    below = np.zeros((2, 1 << 16), dtype=np.uint16)
    high = np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)
    ends = np.stack([high.view(np.float32), (high | np.uint32(0xFFFF)).view(np.float32)])
    finite = np.isfinite(ends).all(axis=0)
    least, most = ends.min(axis=0), ends.max(axis=0)  # a negative bucket's first float is its largest
    for row, signed in enumerate((True, False)):
        code = dynamic_map(signed)
        codes[row, :256] = code
        lo, hi = np.searchsorted(code, least[finite]), np.searchsorted(code, most[finite])
        if (hi - lo).max() > 1:  # the premise above, for the maps as they are
            raise AssertionError("two entries of the 8-bit map share a bucket of 16 high bits")
        below[row, finite] = lo
    return codes, below


@lru_cache(maxsize=None)
def _numba_int8():
    """Numba's twin of :func:`int8_roundtrip` (the same comparisons and
    float32 operations, its search through :func:`code_tables`), compiled
    once; None where Numba is missing."""
    try:
        import numba
    except ImportError:
        return None
    f32_bits = numba_intrinsics()["_f32_bits"]

    @numba.njit(cache=False, inline="always")
    def nearest(codes, below, row, v):
        h = np.int64(below[row, f32_bits(v) >> 16])
        h += 1 if codes[row, h] < v else 0  # the entries below v
        h = min(max(h, 1), 255)
        return h if (codes[row, h] - v) < (v - codes[row, h - 1]) else h - 1

    @numba.njit(cache=False, parallel=True)
    def roundtrip(x, codes, below, block):
        members, n = x.shape
        blocks = (n + block - 1) // block
        for k in numba.prange(members * blocks):  # (member, block) pairs, shared between the threads
            m = k // blocks
            lo = (k - m * blocks) * block
            hi = min(lo + block, n)
            amax, negative, finite = np.float32(0), False, True
            for i in range(lo, hi):
                v = x[m, i]
                finite = finite and np.isfinite(v)
                amax = abs(v) if abs(v) > amax else amax
                negative = negative or v < 0
            if finite:
                row = 0 if negative else 1
                scale = amax if amax > 0 else np.float32(1)
                for i in range(lo, hi):
                    x[m, i] = codes[row, nearest(codes, below, row, x[m, i] / scale)] * amax

    return roundtrip


# --- a state precision per run ------------------------------------------------


def encode_state(x, precision: str, keys, step: int, buffer: int, backend: str = "numpy"):
    """The bf16 bits (uint16, a new array on x's device) of the (P, n) float32
    state ``x`` rounded as :func:`round_state` rounds it."""
    rounded = x.copy()
    round_state(rounded, precision, keys, step, buffer, backend)
    return (rounded.view(np.uint32) >> np.uint32(16)).astype(np.uint16)


def decode_state(h):
    """float32 values (a new array on h's device) of bf16 bits ``h``, exactly."""
    return (h.astype(np.uint32) << np.uint32(16)).view(np.float32)


def seed_keys(seeds) -> np.ndarray:
    """Each member's seed as the (low, high) uint32 words of its Philox key, (P, 2)."""
    seeds = [int(s) for s in seeds]
    return np.array([[s & 0xFFFFFFFF, (s >> 32) & 0xFFFFFFFF] for s in seeds], dtype=np.uint32).reshape(-1, 2)


def round_state(x, precision: str, keys, step: int, buffer: int, backend: str = "numpy") -> None:
    """Round the (P, n) float32 state ``x`` in place to what ``precision``
    stores: nothing for fp32; bf16 to nearest even; bf16-sr stochastically,
    member m's bits from its key ``keys[m]`` ((P, 2) uint32, on x's device),
    at ``step``, ``buffer`` (the state buffer's index in the rule) and each
    element's index in its row; int8 block-wise (:func:`int8_roundtrip`).
    NumPy, Numba and CUDA give the same bits."""
    if precision == "fp32":
        return
    if precision not in STATE_PRECISIONS:
        raise ValueError(f"unknown state precision {precision!r}; allowed: {', '.join(STATE_PRECISIONS)}")
    if precision == "int8":
        if backend == "cupy":
            _int8_cuda(x)
        elif backend == "numba" and (fn := _numba_int8()) is not None:
            fn(x, *code_tables(), BLOCK)
        else:
            int8_roundtrip(x)
        return
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
def _cupy_module():
    import cupy as cp

    return cp.RawModule(code=cuda_source())


@lru_cache(maxsize=None)
def _cupy_function():
    import cupy as cp

    return (_cupy_module().get_function("optbench_round_state_bf16"),
            cp.cuda.Device().attributes["MultiProcessorCount"])


@lru_cache(maxsize=None)
def _cupy_int8_function():
    return _cupy_module().get_function("optbench_int8_roundtrip")


@lru_cache(maxsize=None)
def _cupy_codes():
    """:func:`code_tables` on the device, uploaded once."""
    import cupy as cp

    return tuple(cp.asarray(t) for t in code_tables())


def _int8_cuda(x) -> None:
    members, n = x.shape
    if members == 0 or n == 0:
        return
    if x.strides[1] != 4:
        raise ValueError(f"round_state: the state's rows need unit element stride, got strides {x.strides}")
    fn = _cupy_int8_function()
    blocks = members * -(-n // BLOCK)
    threads = 128
    fn((max(1, -(-blocks // threads)),), (threads,),
       (x, *_cupy_codes(), np.int64(members), np.int64(n), np.int64(x.strides[0] // 4), np.int64(BLOCK)))


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
