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

import operator

import numpy as np

from .device import (DRAWS_KERNEL, KERNELS, MAX_GRID_Y, POP_SCALAR_KERNEL, POP_VEC4_KERNEL, SCALAR_KERNEL,  # noqa: F401
                     VEC4_KERNEL, cuda_source, cupy_draws, cupy_train, cupy_train_population, launch_geometry,
                     population_geometry)
from .host import CHUNK, DEFAULT_THREADS, numpy_draws, numpy_train, numpy_train_population  # noqa: F401
from .params import (MODES, _TWO32, advance, check_chunk, check_mode, check_offset, check_p, check_pair,  # noqa: F401
                     check_population, inference_scale, member_keys, philox_blocks, population_args,
                     scalar_args, seed_key, threshold, training_scale, use_vec4)


def draws(n: int, seed: int, offset: int = 0, backend: str = "numpy",
          chunk: int = CHUNK, threads: int | None = None):
    """The raw 32-bit draw of each element h < n: word (e & 3) of
    Philox4x32-10((q mod 2^32, q >> 32, 0, 0), seed_key(seed)), e = offset + h,
    q = e >> 2. uint32, on the given backend ("numpy" or "cupy")."""
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    offset = check_offset(offset, n)
    k0, k1 = seed_key(seed)
    if backend == "cupy":
        return cupy_draws(n, offset, k0, k1)
    if backend != "numpy":
        raise ValueError(f"unknown backend {backend!r}; allowed: numpy, cupy")
    return numpy_draws(n, offset, k0, k1, chunk, threads)


def keep_mask(n: int, p: float, seed: int, offset: int = 0, backend: str = "numpy",
              chunk: int = CHUNK, threads: int | None = None):
    """xi_h for h < n: True where the element is kept (draw >= threshold(p))."""
    n = operator.index(n)
    thr = threshold(p)
    if thr == 0 or thr == _TWO32:  # known without drawing, as in the forward
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        seed_key(seed)
        check_offset(offset, n)
        if backend not in ("numpy", "cupy"):
            raise ValueError(f"unknown backend {backend!r}; allowed: numpy, cupy")
        xp = np if backend == "numpy" else __import__("cupy")
        return (xp.ones if thr == 0 else xp.zeros)(n, dtype=bool)
    d = draws(n, seed, offset, backend, chunk, threads)
    return d >= np.uint32(thr)


# --- the public API

def _apply(src_name, src, dst_name, dst, p, seed, offset, mode, training, chunk, threads):
    kind = check_pair(src_name, src, dst_name, dst)
    p, mode = check_p(p), check_mode(mode)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be True or False, got {training!r}")
    seed_key(seed)  # checks seed
    n = src.size
    offset = check_offset(offset, n)
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
        numpy_train(x1, y1, offset, p, seed, mode, chunk, threads)
    else:
        cupy_train(x1, y1, offset, p, seed, mode)
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
    kind, members, n = check_population(src_name, src, dst_name, dst, keys)
    p, mode = check_p(p), check_mode(mode)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be True or False, got {training!r}")
    offset = check_offset(offset, n)
    chunk = check_chunk(chunk)
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
        numpy_train_population(x2, y2, offset, p, keys, mode, chunk)
    else:
        cupy_train_population(x2, y2, offset, p, keys, mode)
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
