"""Run a CUDA kernel's exact source on the CPU (a testing helper, not a test).

The source string CuPy would compile is built with the host C++ compiler
after ``cuda_host_shim.h`` (which defines ``__global__``, ``float4``,
``threadIdx``, ``__umulhi``, ...), together with a generated ``extern "C"``
launcher per kernel that calls the kernel once for every (block, thread) of
the grid, one after another. That equals the GPU's result for kernels that
use no shared memory and no block synchronisation (the shim has neither, so
a kernel that needs them fails to build rather than passing quietly).

Usage mirrors ``cupy.RawModule``::

    spec = [("ptr", "w"), ("ptr", "g"), ("i64", "n"), ("f32", "lr")]
    host = HostCompiler(tmp_dir)                  # skip the test if find_compiler() is None
    module = host.module(source, {"optbench_sgd_vec4": spec})
    module.get_function("optbench_sgd_vec4")((blocks,), (threads,), (w, g, n, lr))

An argument spec lists the kernel's parameters in order as (kind, name);
kinds are the keys of POINTERS and SCALARS below. The compiler checks the
spec against the kernel's signature (see ``optbench_host::Exact`` and
``Ptr`` in the shim), and each call checks the arguments against the spec.

A kernel that goes out of bounds is undefined behaviour here as on the GPU
(it may crash the test process): give buffers slack past n and check it.
A pointer argument is the array's first element, so pass ``buf[lo:]`` rather
than ``buf[lo:lo + n]``: NumPy points an empty slice at its base's start.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

SHIM = Path(__file__).with_name("cuda_host_shim.h")
#: -O1: quick to build, yet no debug-build slowness in the per-thread loop.
CXXFLAGS = ("-O1", "-std=c++17", "-shared", "-fPIC")

#: Pointer kinds: (C++ argument wrapper in the shim, required NumPy dtype or
#: None for any). Arrays must be C-contiguous; a view may start mid-buffer.
POINTERS = {
    "ptr": ("optbench_host::Ptr<float>", np.float32),
    "f32*": ("optbench_host::Ptr<float>", np.float32),
    "u32*": ("optbench_host::Ptr<unsigned int>", np.uint32),
    "i32*": ("optbench_host::Ptr<int>", np.int32),
    "u8*": ("optbench_host::Ptr<unsigned char>", np.uint8),
    "u16*": ("optbench_host::Ptr<unsigned short>", np.uint16),
    "void*": ("optbench_host::AnyPtr", None),  # e.g. a `const uint4*` parameter
}
#: Scalar kinds: (C++ type, ctypes type). Floats go through c_float, as the
#: x86-64 ABI passes them; CuPy passes np.float32 the same way.
SCALARS = {
    "f32": ("float", ctypes.c_float),
    "i32": ("int", ctypes.c_int32),
    "u32": ("unsigned int", ctypes.c_uint32),
    "i64": ("long long", ctypes.c_int64),
    "u64": ("unsigned long long", ctypes.c_uint64),
}


#: Elements allocated before and after the n a kernel is given (guards that
#: catch a write out of bounds). 4 floats in front keep the vec4 kernels'
#: buffers 16-byte aligned; 1 in front misaligns the scalar kernels' buffers,
#: the case they exist for (a view that starts mid-buffer).
FRONT = {"vec4": 4, "scalar": 1}
BACK = 8


def aligned_random(rng, size: int) -> np.ndarray:
    """``size`` random float32s starting on a 64-byte boundary."""
    raw = np.empty(size + 16, np.float32)
    start = (-raw.ctypes.data % 64) // 4
    a = raw[start : start + size]
    a[:] = rng.standard_normal(size)
    return a


def rule_spec(rule, precision: str = "fp32") -> list[tuple[str, str]]:
    """A rule's kernels' parameters, in the order cuda_source declares them
    (written out here, not parsed, so a changed signature fails): a bf16
    state's buffers are its bits, and stochastic rounding adds the members'
    keys and the step."""
    packed = set(rule.state) if precision != "fp32" else set()
    return ([("u16*" if b in packed else "ptr", b) for b in rule.buffers]
            + [("i32*", "_active"), ("f32*", "_scalars"), ("i64", "_members"), ("i64", "_n"), ("i64", "_ld")]
            + ([("u32*", "_keys"), ("u32", "_step")] if precision == "bf16-sr" else []))


def find_compiler() -> str | None:
    """The host C++ compiler: $CXX, else g++, else c++; None if there is none."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        path = name and shutil.which(name)
        if path:
            return path
    return None


def launcher_name(kernel: str) -> str:
    return f"optbench_host_launch_{kernel}"


def _launcher(kernel: str, spec: Sequence[tuple[str, str]]) -> str:
    """C++ for one kernel's launcher: every (block, thread) in turn."""
    params, args = [], []
    for i, (kind, name) in enumerate(spec):
        if kind in POINTERS:
            params.append(f"void* a{i} /* {name} */")
            args.append(f"{POINTERS[kind][0]}{{a{i}}}")
        elif kind in SCALARS:
            ctype = SCALARS[kind][0]
            params.append(f"{ctype} a{i} /* {name} */")
            args.append(f"optbench_host::Exact<{ctype}>{{a{i}}}")
        else:
            raise ValueError(f"{kernel}: argument {name!r} has unknown kind {kind!r}")
    sep = ",\n    "
    return f"""
extern "C" void {launcher_name(kernel)}(
    unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz{"".join(", " + p for p in params)})
{{
    gridDim = {{gx, gy, gz}};
    blockDim = {{bx, by, bz}};
    for (unsigned z = 0; z < gz; ++z)
    for (unsigned y = 0; y < gy; ++y)
    for (unsigned x = 0; x < gx; ++x) {{
        blockIdx = {{x, y, z}};
        for (unsigned tz = 0; tz < bz; ++tz)
        for (unsigned ty = 0; ty < by; ++ty)
        for (unsigned tx = 0; tx < bx; ++tx) {{
            threadIdx = {{tx, ty, tz}};
            {kernel}({sep.join(args)});
        }}
    }}
}}
"""


def translation_unit(source: str, kernels: Mapping[str, Sequence[tuple[str, str]]]) -> str:
    """The shim, the exact kernel source, then a launcher per kernel."""
    launchers = "".join(_launcher(k, spec) for k, spec in kernels.items())
    # #line keeps compiler errors pointing at lines of the kernel source.
    return f'#include "{SHIM}"\n#line 1 "cuda_source"\n{source}\n#line 1 "launchers"\n{launchers}'


def _dim3(d) -> tuple[int, int, int]:
    d = (d,) if isinstance(d, int) else tuple(d)
    if not 1 <= len(d) <= 3 or any(int(v) < 1 for v in d):
        raise ValueError(f"a grid or block is 1 to 3 positive sizes, got {d}")
    return tuple(int(v) for v in d) + (1,) * (3 - len(d))


class HostFunction:
    """One kernel of a built module, called like a CuPy RawKernel."""

    def __init__(self, cfunc, kernel: str, spec: Sequence[tuple[str, str]]):
        self.kernel, self.spec = kernel, tuple(spec)
        self._f = cfunc
        self._f.restype = None
        self._f.argtypes = [ctypes.c_uint] * 6 + [
            ctypes.c_void_p if kind in POINTERS else SCALARS[kind][1] for kind, _ in spec
        ]

    def __call__(self, grid, block, args: Sequence) -> None:
        if len(args) != len(self.spec):
            raise TypeError(f"{self.kernel} takes {len(self.spec)} arguments, got {len(args)}")
        cargs = []
        for (kind, name), a in zip(self.spec, args):
            if kind in POINTERS:
                dtype = POINTERS[kind][1]
                if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
                    raise TypeError(f"{self.kernel}: {name!r} must be a C-contiguous ndarray")
                if dtype is not None and a.dtype != dtype:
                    raise TypeError(f"{self.kernel}: {name!r} must be {np.dtype(dtype)}, got {a.dtype}")
                cargs.append(a.ctypes.data)
            else:
                ctype = SCALARS[kind][1]
                if kind != "f32" and ctype(int(a)).value != a:  # ctypes would wrap silently
                    raise ValueError(f"{self.kernel}: {name!r} = {a!r} is not a valid {kind}")
                cargs.append(float(a) if kind == "f32" else int(a))
        self._f(*_dim3(grid), *_dim3(block), *cargs)


class HostModule:
    """A built translation unit; ``get_function`` as in ``cupy.RawModule``."""

    def __init__(self, path: Path, kernels: Mapping[str, Sequence[tuple[str, str]]]):
        self.path = path
        self._lib = ctypes.CDLL(str(path))
        self._functions = {
            k: HostFunction(getattr(self._lib, launcher_name(k)), k, spec) for k, spec in kernels.items()
        }

    def get_function(self, kernel: str) -> HostFunction:
        return self._functions[kernel]


class HostCompiler:
    """Builds translation units into ``build_dir``, once per distinct text.

    Builds are cached in memory by a hash of the translation unit, compiler
    and flags, and on disk under that hash, so a test session compiles each
    kernel source once however many cases use it.
    """

    def __init__(self, build_dir: str | os.PathLike | None = None, cxx: str | None = None):
        self.cxx = cxx or find_compiler()
        if self.cxx is None:
            raise RuntimeError("no C++ compiler found ($CXX, g++, c++)")
        self.build_dir = Path(build_dir or tempfile.mkdtemp(prefix="optbench-cuda-host-"))
        self.build_dir.mkdir(parents=True, exist_ok=True)
        self._modules: dict[str, HostModule] = {}

    def module(self, source: str, kernels: Mapping[str, Sequence[tuple[str, str]]]) -> HostModule:
        tu = translation_unit(source, kernels)
        key = hashlib.sha256("\0".join((tu, SHIM.read_text(), self.cxx, *CXXFLAGS)).encode()).hexdigest()[:20]
        if key not in self._modules:
            lib = self.build_dir / f"cuda_host_{key}.so"
            if not lib.exists():
                self._build(tu, lib)
            self._modules[key] = HostModule(lib, kernels)
        return self._modules[key]

    def _build(self, tu: str, lib: Path) -> None:
        cpp = lib.with_suffix(".cpp")
        cpp.write_text(tu)
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")  # then renamed: no half-written .so
        proc = subprocess.run(
            [self.cxx, *CXXFLAGS, "-o", str(tmp), str(cpp)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"host build of {cpp} failed:\n{proc.stderr}")
        os.replace(tmp, lib)
