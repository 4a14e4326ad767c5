"""Which compiled kernel updates which arrays, and the checks a launch needs.

A rule's kernels are generated per backend (:mod:`optbench.kernels.codegen`)
and cached per rule object (:func:`kernel_for`). NumPy arrays are updated by
the "numpy" (ufunc chunks) or "numba" (compiled loops) kernels, CuPy arrays by
the "cupy" ones (:data:`ARRAY_KERNELS`); asking for a backend that cannot
update the arrays at hand is a clear error, never a silent fallback.
"""

from __future__ import annotations

import numpy as np

from .backend import array_kind, numba_backend
from .codegen.cuda_kernel import CupyKernel
from .codegen.numba_kernel import NumbaKernel
from .codegen.numpy_kernel import NumpyKernel
from .rule import Rule

_KERNELS: dict[tuple[Rule, str], object] = {}
_KERNEL_CLASSES = {"numpy": NumpyKernel, "numba": NumbaKernel, "cupy": CupyKernel}
#: The kernel backends that can update each kind of array; the first is the
#: one used when no ``backend`` is given.
ARRAY_KERNELS = {"numpy": ("numpy", "numba"), "cupy": ("cupy",)}
#: Cache-line alignment for the CPU state buffers: an unaligned buffer makes
#: every 64-byte vector load straddle two lines (NumPy's large arrays start 16
#: bytes into a page). Measured on a 2-core EPYC, one thread at 2^24: SGD
#: 37.1 GB/s aligned vs 34.6 at a 16-byte offset, Adam 24.4 vs 22.3.
CPU_ALIGN_BYTES = 64


def kernel_for(rule: Rule, backend: str, precision: str = "fp32"):
    """The cached kernel of ``rule`` for backend "numpy", "numba" or "cupy",
    with its state stored at ``precision`` (:mod:`.precision`)."""
    if backend not in _KERNEL_CLASSES:
        raise ValueError(f"no kernels for backend {backend!r}; allowed: {', '.join(_KERNEL_CLASSES)}")
    key = (rule, backend, precision)  # rules hash by identity; transforms are cached objects
    if key not in _KERNELS:
        _KERNELS[key] = _KERNEL_CLASSES[backend](rule, precision=precision)
    return _KERNELS[key]


def kernel_backend(arrays: str, backend) -> str:
    """The kernel backend for arrays of kind ``arrays``; a clear error if it can't run them."""
    if backend is None:
        backend = ARRAY_KERNELS[arrays][0]
    name = getattr(backend, "name", backend)  # a kernels.Backend or its name
    if name not in _KERNEL_CLASSES:
        raise ValueError(f"unknown backend {name!r}; allowed: {', '.join(_KERNEL_CLASSES)}")
    if name not in ARRAY_KERNELS[arrays]:
        raise TypeError(f"backend {name!r} cannot update {arrays} arrays; "
                        f"use {' or '.join(map(repr, ARRAY_KERNELS[arrays]))}")
    if name == "numba":
        numba_backend()  # BackendUnavailable, naming what is missing, if Numba isn't there
    return name


def check_flag(flag, arrays: str) -> None:
    """An ``active`` flag: int32, at least one element, on the parameters' device."""
    if array_kind(flag) != arrays:
        raise TypeError(f"the active flag is a {array_kind(flag)} array but the parameters are {arrays}")
    if flag.dtype != np.int32 or flag.size < 1:
        raise TypeError(f"the active flag must be an int32 array, got {flag.dtype} of shape {flag.shape}")


def check_rows(name: str, a, shape: tuple | None = None, kind: str | None = None) -> None:
    """A clear error unless ``a`` is a (members, n) C-contiguous float32 array
    (of ``shape``, of array kind ``kind``)."""
    found = array_kind(a)
    if kind is not None and found != kind:
        raise TypeError(f"buffer {name!r} is a {found} array but the parameters are {kind}")
    if a.dtype != np.float32:
        raise TypeError(f"buffer {name!r} must be float32, got {a.dtype}")
    if a.ndim != 2 or not a.flags.c_contiguous:
        raise ValueError(f"buffer {name!r} must be a 2-D C-contiguous (members, n) array, got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"buffer {name!r} has shape {a.shape} but the parameters have {shape}")


def aligned_zeros(n: int, align: int = CPU_ALIGN_BYTES) -> np.ndarray:
    """n zero float32 in a NumPy array whose data starts on an ``align``-byte boundary."""
    extra = align // 4
    raw = np.zeros(n + extra, dtype=np.float32)
    start = (-raw.ctypes.data % align) // 4
    return raw[start : start + n]
