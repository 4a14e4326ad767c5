"""A strict CuPy stand-in on the CPU: the project's GPU path runs in CI.

It implements, on NumPy, the part of CuPy the project uses, and is stricter
than a fake GPU module usually is:

* its arrays are not NumPy arrays. An implicit conversion to NumPy raises
  TypeError as CuPy does (``np.asarray(x)``, ``x + numpy_array``, a NumPy
  ufunc on it); ``x.get()`` and ``asnumpy(x)`` are the explicit transfers;
  ``float()``, ``int()``, ``bool()``, ``.item()`` and ``.tolist()`` work;
* ``RawModule(code=...)`` builds the exact CUDA source with the host harness
  (:mod:`optbench.kernels.testing.cuda_host`: g++ after a shim header) and runs every launch,
  every (block, thread), on the CPU; kernel signatures are read from the
  source and every argument is checked against its parameter's type;
* ``cuda.Device().attributes`` describes a stated model (an H100 SXM: 132
  SMs, 50 MB of L2); events, streams and synchronize exist; allocations
  are 256-byte aligned, as CUDA's allocator gives, so float4 paths are taken;
* it counts. Every device operation (a ufunc, matmul, reduction, copy,
  fill, gather, kernel launch) is a *launch*; every device-to-host read
  (``float()``, ``.get()``, ...) and every synchronize is a *sync*; every
  host-to-device copy is also an *h2d*; every new device buffer (an
  operation's result, a creation, an upload) is an *alloc*. :func:`counts`
  reads the counters, :func:`reset_counts` zeroes them;
* it captures graphs, strictly. ``Stream.begin_capture()`` (on a stream of
  one's own: the legacy null stream cannot capture, as in CUDA) makes every
  later device operation a recorded node instead of work done, and
  ``end_capture()`` gives a :class:`Graph` whose ``launch()`` replays the
  nodes in order on the same buffers -- one launch, its ``nodes`` counted
  in *graph_nodes*. Inside a capture an allocation (an operation without an
  ``out=``, a gather, a creation), a host read, a host-to-device copy or a
  synchronize raises, as CUDA's capture rules make them fail; scalars are
  taken by value, as a captured kernel's arguments are.

Install it with :func:`install` (tests do it through a fixture, or set
``OPTBENCH_CUPY_STANDIN=1`` before Python starts: ``tests/conftest.py``;
``optbench bench --launches`` with :func:`installed`); never while a real
CuPy sees a device.

The timings it gives (CUDA events are host clocks here) mean nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import numpy as _np

__version__ = "0.0-standin"
#: What the stand-in says it is (what cupy.cuda.runtime.getDeviceProperties gives).
DEVICE_NAME = "NVIDIA H100 80GB HBM3 (CPU stand-in)"
ATTRIBUTES = {"MultiProcessorCount": 132, "L2CacheSize": 50 * 1024 * 1024,
              "MaxThreadsPerBlock": 1024, "WarpSize": 32}
MEMORY = 80 * 2**30
ALIGN = 256

_COUNTS = {"launches": 0, "syncs": 0, "h2d": 0, "allocs": 0, "graph_nodes": 0}
_LOCK = threading.Lock()


def counts() -> dict:
    """{launches, syncs, h2d, allocs, graph_nodes} since the last reset."""
    return dict(_COUNTS)


def reset_counts() -> None:
    for k in _COUNTS:
        _COUNTS[k] = 0


def _count(kind: str, n: int = 1) -> None:
    if _CAPTURE is not None and kind in ("syncs", "h2d"):
        _invalidate(f"a {'host read or synchronize' if kind == 'syncs' else 'host-to-device copy'} inside a graph "
                    "capture (cudaErrorStreamCaptureUnsupported; cupy stand-in)")
    with _LOCK:
        _COUNTS[kind] += n


def _no_capture(what: str) -> None:
    if _CAPTURE is not None:
        _invalidate(f"{what} inside a graph capture (cudaErrorStreamCaptureUnsupported: make its buffer before "
                    "the capture and give the operation out=; cupy stand-in)")


def _invalidate(message: str):
    """Refuse an operation inside a capture: the capture is invalid from here
    on (its end_capture raises too), as CUDA invalidates it."""
    global _INVALID
    _INVALID = _INVALID or message
    raise CaptureError(message)


class CaptureError(RuntimeError):
    """What CUDA's stream capture refuses: an allocation, a host read, an
    upload or a synchronize while a stream captures."""


#: The nodes recorded while a stream captures (None: no capture), and why the
#: capture was invalidated (None: it was not).
_CAPTURE: list | None = None
_INVALID: str | None = None


def _launch(fn, *args, **kw):
    """One device operation: run now, or recorded as a graph node while a stream captures."""
    _count("launches")
    if _CAPTURE is not None:
        _CAPTURE.append((fn, args, kw))
        return None
    return fn(*args, **kw)


# --------------------------------------------------------------------------- #
# memory
# --------------------------------------------------------------------------- #


def _aligned_empty(shape, dtype) -> _np.ndarray:
    """A NumPy buffer whose data starts on a 256-byte boundary: a device allocation."""
    _no_capture("an allocation")
    _count("allocs")
    dtype = _np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, _np.integer)) else tuple(int(s) for s in shape)
    nbytes = int(_np.prod(shape, dtype=_np.int64)) * dtype.itemsize
    raw = _np.empty(nbytes + ALIGN, dtype=_np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _rehome(a: _np.ndarray) -> _np.ndarray:
    """``a`` in aligned memory of its own (the result of a device operation:
    a new buffer, counted as an allocation)."""
    a = _np.asarray(a)
    if a.ctypes.data % ALIGN == 0 and a.flags.c_contiguous and a.base is None:
        _no_capture("an allocation")
        _count("allocs")
        return a
    out = _aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out


class _Pointer:
    """``x.data``: the address, and the raw device-to-device copy CuPy has."""

    def __init__(self, a: _np.ndarray):
        self._a = a
        self.ptr = int(a.ctypes.data)

    def copy_from_device_async(self, src: "_Pointer", size: int, stream=None) -> None:
        nbytes = int(size)
        if nbytes > min(self._a.nbytes, src._a.nbytes):
            raise ValueError(f"copy of {nbytes} bytes runs past a buffer")
        _launch(_np.copyto, self._a.reshape(-1).view(_np.uint8)[:nbytes], src._a.reshape(-1).view(_np.uint8)[:nbytes])


class ndarray:
    """A device array: a NumPy array the host may not touch without a transfer."""

    __slots__ = ("_a",)
    # NumPy must not treat it as an array-like: np.asarray(x) raises (see
    # __array__), and a NumPy ufunc given one raises TypeError.
    __array_ufunc__ = None
    __array_priority__ = 1000

    def __init__(self, a: _np.ndarray):
        object.__setattr__(self, "_a", a)

    # --- what CuPy refuses ---------------------------------------------------
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly. (cupy stand-in)")

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    # --- host reads: each one a synchronisation --------------------------------
    def get(self, stream=None, order="C", out=None) -> _np.ndarray:
        _count("syncs")
        if out is not None:
            out[...] = self._a
            return out
        return _np.array(self._a, copy=True)

    def fill(self, value) -> None:
        _launch(self._a.fill, _unwrap(value))

    def set(self, arr, stream=None) -> None:
        """A host-to-device copy into this buffer (same shape and dtype)."""
        if isinstance(arr, ndarray) or not isinstance(arr, _np.ndarray):
            raise TypeError(f"set takes a host numpy.ndarray, got {type(arr).__name__}")
        if arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError(f"set: shape {arr.shape} {arr.dtype} into {self.shape} {self.dtype}")
        _count("h2d")
        _count("launches")
        self._a[...] = arr

    def item(self):
        _count("syncs")
        return self._a.item()

    def tolist(self):
        _count("syncs")
        return self._a.tolist()

    def __float__(self):
        _count("syncs")
        return float(self._a)

    def __int__(self):
        _count("syncs")
        return int(self._a)

    def __index__(self):
        _count("syncs")
        return self._a.__index__()

    def __bool__(self):
        _count("syncs")
        return bool(self._a)

    def __repr__(self):
        _count("syncs")
        return f"cupy_standin.{self._a!r}"

    __str__ = __repr__

    def __len__(self):
        return len(self._a)

    # --- metadata: no device work (shape, dtype, ... are set below) ------------
    @property
    def data(self):
        return _Pointer(self._a)

    @property
    def T(self):
        return ndarray(self._a.T)

    @property
    def real(self):
        return ndarray(self._a.real)

    def reshape(self, *shape, **kw):
        return ndarray(self._a.reshape(*shape, **kw))

    def transpose(self, *axes):
        return ndarray(self._a.transpose(*axes))

    def ravel(self):
        if self._a.flags.c_contiguous:
            return ndarray(self._a.ravel())
        return _wrap_call("ravel", self._a.ravel, (), {})

    def view(self, *args, **kw):
        return ndarray(self._a.view(*args, **kw))

    def __getitem__(self, key):
        key = _unwrap(key, what="index")
        basic = _is_basic(key)
        if not basic:
            _no_capture("a gather (x[index array] allocates its result; take(..., out=) does not)")
            _count("launches")
        out = self._a[key]
        return ndarray(out if basic else _rehome(out))

    def __setitem__(self, key, value):
        _launch(self._a.__setitem__, _unwrap(key, what="index"), _unwrap(value, what="value"))

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and _np.dtype(dtype) == self.dtype:  # as CuPy: the array itself, no operation
            return self
        return _wrap_call("astype", self._a.astype, (dtype,), {})

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot set {name!r} on a cupy stand-in array")

    def __getattr__(self, name):
        if name.startswith("__"):  # __array_interface__, __array_struct__, __dlpack__ ...: none
            raise AttributeError(name)
        method = getattr(self._a, name)  # AttributeError as NumPy gives it
        if not callable(method):
            return method
        return lambda *args, **kw: _wrap_call(name, method, args, kw)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __reduce__(self):
        raise TypeError("a cupy stand-in array cannot be pickled (nor can a device array be sent as is)")

    def __hash__(self):
        raise TypeError("unhashable type: 'cupy.ndarray'")


for _name in ("shape", "dtype", "ndim", "size", "nbytes", "itemsize", "strides", "flags"):
    setattr(ndarray, _name, property(lambda self, _n=_name: getattr(self._a, _n)))
ndarray.__module__ = "cupy"
ndarray.__qualname__ = "ndarray"


_BINARY = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
           "lshift", "rshift")


def _operator(name):
    def op(self, *others):
        return _wrap_call(name, getattr(self._a, name), others, {})
    op.__name__ = name
    return op


def _inplace(name):
    def op(self, other):
        _launch(getattr(self._a, name), _unwrap(other))
        return self
    op.__name__ = name
    return op


for _name in _BINARY:
    setattr(ndarray, f"__{_name}__", _operator(f"__{_name}__"))
    setattr(ndarray, f"__r{_name}__", _operator(f"__r{_name}__"))
    setattr(ndarray, f"__i{_name}__", _inplace(f"__i{_name}__"))
for _form in ("__neg__", "__pos__", "__abs__", "__invert__", "__lt__", "__le__", "__gt__", "__ge__",
              "__eq__", "__ne__"):
    setattr(ndarray, _form, _operator(_form))


def _is_basic(key) -> bool:
    """Basic indexing (a view, no kernel): ints, slices, None, Ellipsis."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(isinstance(k, (int, _np.integer, slice, type(None), type(Ellipsis))) for k in parts)


def _unwrap(x, what: str = "argument"):
    """Device arrays to their NumPy arrays; a host NumPy array is refused."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _np.ndarray):
        raise TypeError(f"Unsupported type <class 'numpy.ndarray'> as {what}: a host array cannot "
                        "mix with device arrays (pass it through cupy.asarray). (cupy stand-in)")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, what) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, what) for k, v in x.items()}
    return x


def _wrap(out, view: bool = False):
    if isinstance(out, ndarray):
        return out
    if isinstance(out, _np.ndarray):
        return ndarray(out if view else _rehome(out))
    if isinstance(out, _np.generic):  # a reduction: CuPy gives a 0-d array
        return ndarray(_rehome(_np.asarray(out)))
    if isinstance(out, tuple):
        return tuple(_wrap(o) for o in out)
    return out


def _wrap_call(name, fn, args, kw):
    """Run NumPy's ``fn`` on the device arrays' data, as one device operation
    (inside a capture: recorded, and only into an ``out=`` buffer)."""
    if _CAPTURE is not None:
        if not isinstance(kw.get("out"), ndarray):
            _no_capture(f"{name} without out= (its result is an allocation)")
        _launch(fn, *_unwrap(args), **_unwrap(kw))
        return kw["out"]
    _count("launches")
    out = fn(*_unwrap(args), **_unwrap(kw))
    if out is NotImplemented:
        return out
    if "out" in kw and isinstance(kw["out"], ndarray):
        return kw["out"]
    return _wrap(out)


# --------------------------------------------------------------------------- #
# module functions
# --------------------------------------------------------------------------- #

# Functions that take host data on purpose (an explicit transfer).
def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        if dtype is None or _np.dtype(dtype) == a.dtype:
            return a
        return _wrap_call("astype", a._a.astype, (dtype,), {})
    _count("h2d")
    _count("launches")
    host = _np.asarray(a, dtype=dtype)
    out = _aligned_empty(host.shape, host.dtype)
    out[...] = host
    return ndarray(out)


def array(a, dtype=None, copy=True, order="K"):
    if isinstance(a, ndarray):
        return _wrap_call("array", _np.array, (a, dtype), {"copy": True})
    return asarray(_np.array(a, dtype=dtype, copy=True))


ascontiguousarray = asarray


def asnumpy(a, stream=None, order="C", out=None):
    if isinstance(a, ndarray):
        return a.get(out=out)
    return _np.asarray(a)


def _creator(fn, launches: int):
    def create(shape, dtype=float, *args, **kw):
        out = _aligned_empty(shape, dtype)
        if launches:
            _count("launches")
        host = fn(out.shape, dtype, *args, **kw)
        out[...] = host
        return ndarray(out)
    return create


def empty(shape, dtype=float, order="C"):
    return ndarray(_aligned_empty(shape, dtype))


zeros = _creator(_np.zeros, 1)
ones = _creator(_np.ones, 1)


def full(shape, fill_value, dtype=None, order="C"):
    host = _np.full(shape, _unwrap(fill_value), dtype=dtype)
    out = _aligned_empty(host.shape, host.dtype)
    _count("launches")
    out[...] = host
    return ndarray(out)


def empty_like(a, dtype=None, order="K", subok=None, shape=None):
    return empty(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def zeros_like(a, dtype=None, order="K", subok=None, shape=None):
    return zeros(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def ones_like(a, dtype=None, order="K", subok=None, shape=None):
    return ones(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


def full_like(a, fill_value, dtype=None, order="K", subok=None, shape=None):
    return full(a.shape if shape is None else shape, fill_value, a.dtype if dtype is None else dtype)


# In-place functions: their first argument is their output.
def copyto(dst, src, casting="same_kind", where=True):
    _launch(_np.copyto, _unwrap(dst), _unwrap(src), casting=casting, where=_unwrap(where))


def put(a, ind, v, mode="wrap"):
    # CuPy's default mode wraps; the stand-in raises on an index out of range (stricter).
    _launch(_np.put, _unwrap(a), _unwrap(ind), _unwrap(v), mode="raise")


def get_array_module(*args):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else _np


def __getattr__(name):
    """Every other NumPy function or ufunc, as a device operation; dtypes and
    constants as NumPy has them (CuPy uses NumPy's dtypes)."""
    attr = getattr(_np, name)  # AttributeError for a name NumPy lacks
    if isinstance(attr, type) or not callable(attr):
        return attr
    return lambda *args, **kw: _wrap_call(name, attr, args, kw)


class _Linalg(types.ModuleType):
    def __getattr__(self, name):
        attr = getattr(_np.linalg, name)
        return lambda *args, **kw: _wrap_call(f"linalg.{name}", attr, args, kw)


linalg = _Linalg("cupy.linalg")


class RandomState:
    """cupy.random.RandomState: draws made on the device (here NumPy's
    generator; the values differ from CuPy's, the shapes and dtypes do not)."""

    def __init__(self, seed=None):
        self._rng = _np.random.default_rng(seed)

    def standard_normal(self, size=None, dtype=float):
        _count("launches")
        return ndarray(_rehome(_np.asarray(self._rng.standard_normal(size, dtype=_np.dtype(dtype).type))))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        _count("launches")
        return ndarray(_rehome(_np.asarray(self._rng.uniform(low, high, size).astype(dtype))))


random = types.ModuleType("cupy.random")
random.RandomState = RandomState


class _MemoryPool:
    def free_all_blocks(self) -> None:
        pass

    def used_bytes(self) -> int:
        return 0


_POOL = _MemoryPool()


def get_default_memory_pool() -> _MemoryPool:
    return _POOL


# --------------------------------------------------------------------------- #
# cupy.cuda
# --------------------------------------------------------------------------- #


class Device:
    def __init__(self, device=None):
        self.id = int(device or 0)
        if self.id != 0:
            raise ValueError(f"the stand-in has one device (0), not {self.id}")

    @property
    def attributes(self) -> dict:
        return dict(ATTRIBUTES)

    def synchronize(self) -> None:
        _count("syncs")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Event:
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.time = None

    def record(self, stream=None) -> None:
        self.time = time.perf_counter()

    def synchronize(self) -> None:
        _count("syncs")

    @property
    def done(self) -> bool:
        return True


class Graph:
    """A captured sequence of device operations (``Stream.end_capture()``):
    ``launch()`` replays them in order, on the buffers they were captured
    with, as one launch."""

    def __init__(self, nodes: list):
        self._nodes = nodes

    @property
    def nodes(self) -> int:
        """How many operations one launch replays (the stand-in's count; CuPy's Graph has none)."""
        return len(self._nodes)

    def upload(self, stream=None) -> None:
        pass

    def launch(self, stream=None) -> None:
        _no_capture("a graph launch")
        _count("launches")
        _count("graph_nodes", len(self._nodes))
        for fn, args, kw in self._nodes:
            fn(*args, **kw)


class Stream:
    def __init__(self, null=False, non_blocking=False, ptds=False):
        self._null, self._capturing = null, False

    def synchronize(self) -> None:
        _count("syncs")

    def begin_capture(self, mode=None) -> None:
        global _CAPTURE, _INVALID
        if self._null:
            raise CaptureError("the legacy null stream cannot capture (cudaErrorStreamCaptureUnsupported): "
                               "capture on a cupy.cuda.Stream(non_blocking=True)")
        if _CAPTURE is not None:
            raise CaptureError("a capture is already under way")
        _CAPTURE, _INVALID, self._capturing = [], None, True

    def is_capturing(self) -> bool:
        return self._capturing

    def end_capture(self) -> Graph:
        global _CAPTURE, _INVALID
        if not self._capturing:
            raise CaptureError("end_capture on a stream that is not capturing")
        nodes, invalid = _CAPTURE, _INVALID
        _CAPTURE, _INVALID, self._capturing = None, None, False
        if invalid:
            raise CaptureError(f"the capture was invalidated: {invalid}")
        return Graph(nodes)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


Stream.null = Stream(null=True)


def get_elapsed_time(start: Event, stop: Event) -> float:
    """Milliseconds between two events (host clocks here: meaningless as a GPU time)."""
    if start.time is None or stop.time is None:
        raise RuntimeError("an event was not recorded")
    return (stop.time - start.time) * 1e3


class _Runtime(types.ModuleType):
    @staticmethod
    def getDeviceCount() -> int:
        return 1

    @staticmethod
    def getDeviceProperties(device: int) -> dict:
        Device(device)
        return {"name": DEVICE_NAME.encode(), "multiProcessorCount": ATTRIBUTES["MultiProcessorCount"],
                "l2CacheSize": ATTRIBUTES["L2CacheSize"], "totalGlobalMem": MEMORY}

    @staticmethod
    def memGetInfo() -> tuple[int, int]:
        return MEMORY - MEMORY // 10, MEMORY

    @staticmethod
    def deviceSynchronize() -> None:
        _count("syncs")


cuda = types.ModuleType("cupy.cuda")
cuda.Device = Device
cuda.Event = Event
cuda.Stream = Stream
cuda.Graph = Graph
cuda.get_elapsed_time = get_elapsed_time
cuda.runtime = _Runtime("cupy.cuda.runtime")


# --------------------------------------------------------------------------- #
# RawModule: the exact CUDA source, built for the host and run there
# --------------------------------------------------------------------------- #

_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.S)
_compiler = None


def _host_compiler():
    global _compiler
    if _compiler is None:
        from . import cuda_host

        if cuda_host.find_compiler() is None:
            raise RuntimeError("the cupy stand-in needs a host C++ compiler ($CXX, g++) to run kernels")
        build = Path(os.environ.get("OPTBENCH_STANDIN_BUILD", Path(tempfile.gettempdir()) / "optbench-standin"))
        _compiler = cuda_host.HostCompiler(build)
    return _compiler


def _kind(param: str) -> str:
    """A kernel parameter's type as a cuda_host argument kind."""
    text = " ".join(param.replace("__restrict__", "").replace("const", "").split())
    if "*" in text:
        base = text.split("*")[0].strip()
        kinds = {"float": "f32*", "unsigned int": "u32*", "int": "i32*", "unsigned char": "u8*",
                 "unsigned short": "u16*"}
        if base not in kinds:
            raise TypeError(f"kernel pointer parameter {param!r}: no stand-in kind for {base!r}")
        return kinds[base]
    base = text.rsplit(" ", 1)[0].strip()
    kinds = {"float": "f32", "int": "i32", "unsigned int": "u32", "long long": "i64",
             "unsigned long long": "u64"}
    if base not in kinds:
        raise TypeError(f"kernel parameter {param!r}: no stand-in kind for {base!r}")
    return kinds[base]


def kernel_specs(code: str) -> dict[str, list[tuple[str, str]]]:
    """{kernel name: [(kind, name), ...]} read from the source's extern "C" kernels."""
    specs = {}
    for name, params in _SIGNATURE.findall(code):
        parts = [p.strip() for p in params.split(",") if p.strip()]
        specs[name] = [(_kind(p), p.split()[-1]) for p in parts]
    return specs


class RawKernel:
    def __init__(self, function, spec):
        self._function, self.spec = function, spec

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        if len(args) != len(self.spec):
            raise TypeError(f"{self._function.kernel} takes {len(self.spec)} arguments, got {len(args)}")
        host_args = []
        for (kind, pname), a in zip(self.spec, args):
            if kind.endswith("*"):
                if not isinstance(a, ndarray):
                    raise TypeError(f"{self._function.kernel}: {pname} must be a device array, "
                                    f"got {type(a).__name__}")
                host_args.append(a._a)
            else:
                if isinstance(a, (ndarray, _np.ndarray)):
                    raise TypeError(f"{self._function.kernel}: {pname} must be a scalar")
                host_args.append(a)
        _launch(self._function, grid, block, host_args)


class RawModule:
    """CuPy's RawModule over the host build of the same source."""

    def __init__(self, code: str, options=(), backend="nvrtc", name_expressions=None):
        self.code = code
        self._specs = kernel_specs(code)
        if not self._specs:
            raise ValueError("the source defines no extern \"C\" __global__ kernel")
        self._module = _host_compiler().module(code, self._specs)

    def get_function(self, name: str) -> RawKernel:
        if name not in self._specs:
            raise AttributeError(f"no kernel {name!r} in the module (has {sorted(self._specs)})")
        return RawKernel(self._module.get_function(name), self._specs[name])


# --------------------------------------------------------------------------- #
# installing
# --------------------------------------------------------------------------- #


def install() -> types.ModuleType:
    """Make ``import cupy`` give this module (and its submodules)."""
    module = sys.modules[__name__]
    sys.modules["cupy"] = module
    sys.modules["cupy.cuda"] = cuda
    sys.modules["cupy.cuda.runtime"] = cuda.runtime
    sys.modules["cupy.linalg"] = linalg
    sys.modules["cupy.random"] = random
    return module


def uninstall() -> None:
    for name in _NAMES:
        if getattr(sys.modules.get(name), "__name__", "").startswith((__name__, "cupy.")) or \
                sys.modules.get(name) is sys.modules[__name__]:
            sys.modules.pop(name, None)


_NAMES = ("cupy", "cupy.cuda", "cupy.cuda.runtime", "cupy.linalg", "cupy.random")


@contextlib.contextmanager
def installed():
    """The stand-in as ``cupy`` for a block, counters reset; whatever
    ``cupy`` was before comes back after it."""
    saved = {name: sys.modules.get(name) for name in _NAMES}
    try:
        reset_counts()
        yield install()
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
