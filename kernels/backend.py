"""Array backends: NumPy always, CuPy when it imports and sees a CUDA device,
Numba (NumPy arrays, JIT-compiled update loops) when Numba is installed.

A backend gives the array module (``xp``), a way to wait for the device, a
timer that is right for it (CUDA events on the GPU, ``perf_counter`` on the
CPU) and conversion to NumPy. ``get_backend("auto")`` picks CuPy when it can
run; asking for ``"cupy"`` where it can't is a :class:`BackendUnavailable`
that says what is missing -- never a silent fallback to NumPy.

``"numba"`` holds NumPy arrays (so ``xp`` is NumPy and everything but the
optimiser update is the NumPy path, dropout included) and updates them with
the Numba loops of :mod:`kernels.codegen.numba_kernel`; pass ``backend="numba"`` to
:class:`kernels.Optimizer`. ``"auto"`` picks it on a machine without a GPU:
it is the fastest CPU path (one pass over the buffers, vectorised, threaded
for large ones), and its compiled loops are cached on disk, so only the first
process on a machine pays the compilation. The NumPy path stays as the
fallback (``"auto"`` where Numba is missing) and as the plain reference.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

BACKENDS = ("auto", "numpy", "cupy", "numba")


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine."""


@dataclass(frozen=True)
class Backend:
    """One array backend.

    name:   "numpy", "numba" or "cupy" (recorded in every result row).
    xp:     the array module.
    device: a human-readable device name (CPU model or GPU name).
    """

    name: str
    xp: Any
    device: str
    _sync: Callable[[], None]

    @property
    def is_gpu(self) -> bool:
        return self.name == "cupy"

    def synchronize(self) -> None:
        self._sync()

    def to_numpy(self, a) -> np.ndarray:
        return a.get() if self.is_gpu else np.asarray(a)

    def asarray(self, a, dtype=np.float32):
        return self.xp.asarray(a, dtype=dtype)

    def timer(self):
        """A context manager measuring seconds of device work inside it."""
        return cupy_timer(self.xp) if self.is_gpu else WallTimer()


class WallTimer:
    """Host seconds of the work inside it, the device waited for at both
    ends (``sync``: the backend's synchronize; nothing on the CPU)."""

    seconds = float("nan")

    def __init__(self, sync: Callable[[], None] = lambda: None):
        self._sync = sync

    def __enter__(self) -> "WallTimer":
        self._sync()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self._t0


class EventTimer:
    """Device seconds between two events recorded around the work: device
    time, not launch time. ``make_event`` makes a timing event (CuPy's
    ``cuda.Event``, torch's ``cuda.Event(enable_timing=True)``) and
    ``elapsed_ms(start, stop)`` reads the milliseconds between two."""

    seconds = float("nan")

    def __init__(self, make_event: Callable[[], object], elapsed_ms: Callable[[object, object], float]):
        self._start, self._stop, self._elapsed = make_event(), make_event(), elapsed_ms

    def __enter__(self) -> "EventTimer":
        self._start.record()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.record()
        self._stop.synchronize()
        self.seconds = self._elapsed(self._start, self._stop) / 1e3


def cupy_timer(cp) -> EventTimer:
    """CUDA events on CuPy's current stream."""
    return EventTimer(cp.cuda.Event, cp.cuda.get_elapsed_time)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()}"


def numpy_backend() -> Backend:
    return Backend("numpy", np, _cpu_name(), lambda: None)


def numba_backend() -> Backend:
    """NumPy arrays updated by Numba loops, or BackendUnavailable without Numba."""
    try:
        import numba  # noqa: F401
    except Exception as exc:  # ImportError, or a Numba that doesn't fit this NumPy
        raise BackendUnavailable(
            "backend 'numba' needs Numba, which could not be imported "
            f"({type(exc).__name__}: {exc}); install it with "
            "pip install numba (a dependency of optbench), or use --backend numpy"
        ) from exc
    return Backend("numba", np, _cpu_name(), lambda: None)


def cupy_backend() -> Backend:
    """The CuPy backend, or BackendUnavailable naming what is missing."""
    try:
        import cupy as cp
    except Exception as exc:  # ImportError, or a broken CUDA install
        raise BackendUnavailable(
            "backend 'cupy' needs CuPy, which could not be imported "
            f"({type(exc).__name__}: {exc}); install it with "
            "pip install 'optbench[cuda12]' or 'optbench[cuda13]', "
            "or use --backend numpy"
        ) from exc
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, no device
        raise BackendUnavailable(
            "backend 'cupy' needs a CUDA device, but CuPy found no usable "
            f"driver or device ({type(exc).__name__}: {exc}); use --backend numpy"
        ) from exc
    if count == 0:
        raise BackendUnavailable(
            "backend 'cupy' needs a CUDA device, but CuPy sees none; use --backend numpy"
        )
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    return Backend("cupy", cp, name, cp.cuda.Device().synchronize)


def get_backend(name: str = "auto") -> Backend:
    """Return the backend called ``name`` ("auto", "numpy", "cupy" or "numba").

    "auto" is cupy where it can run, else numba where it is installed, else numpy."""
    if name == "numpy":
        return numpy_backend()
    if name == "numba":
        return numba_backend()
    if name == "cupy":
        return cupy_backend()
    if name == "auto":
        for make in (cupy_backend, numba_backend):
            try:
                return make()
            except BackendUnavailable:
                pass
        return numpy_backend()
    raise ValueError(f"unknown backend {name!r}; allowed: {', '.join(BACKENDS)}")


def array_kind(a) -> str:
    """"numpy" or "cupy": which library owns the array ``a``."""
    if isinstance(a, np.ndarray):
        return "numpy"
    if type(a).__module__.startswith("cupy"):
        return "cupy"
    raise TypeError(f"expected a numpy or cupy array, got {type(a).__name__}")


def array_module(a):
    """numpy for NumPy arrays and scalars, cupy for CuPy arrays."""
    if type(a).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def to_host(*values) -> list[float]:
    """Scalars as Python floats: 0-d or one-element arrays (NumPy or CuPy) and
    plain numbers. Device values come back in one transfer (one host
    synchronisation however many there are), NumPy ones for free."""
    device = [i for i, v in enumerate(values) if array_module(v) is not np]
    out = [float(v) for v in (np.nan if i in device else v for i, v in enumerate(values))]
    if device:
        xp = array_module(values[device[0]])
        read = xp.stack([values[i].reshape(()).astype(np.float64) for i in device]).get()
        for i, v in zip(device, read):
            out[i] = float(v)
    return out
