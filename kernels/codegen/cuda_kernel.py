"""The CUDA path: a rule's update text turned into a CUDA source for CuPy.

For rule ``adam`` the generated source holds

* the helper functions of :data:`HELPERS` the update calls (none for Adam);
* ``adam_element``: the per-element update, a ``__host__ __device__`` function
  of the buffers' values (written ones by reference) and the step's scalars;
* ``optbench_adam_pop_vec4``: P runs ("members", a single run being P = 1)
  whose buffers are (P, n) arrays with rows ``ld`` elements apart. Member m =
  blockIdx.y (then m + gridDim.y, ..., so a grid of at most
  :data:`MAX_GRID_Y` rows covers any P in one launch) reads its scalars from
  row m of a (P, k) float32 table, then runs a grid-stride loop over its
  row's float4 groups (16-byte loads and stores of every buffer) and one over
  the 0-3 elements of the tail; used when every buffer is 16-byte aligned and
  ld % 4 == 0;
* ``optbench_adam_pop_scalar``: the same loop one float at a time, for buffers
  that are not (a view that starts mid-buffer).

The kernels take the buffers (each the start of its (P, n) array), then
``_active`` (P ints, one flag per member: 0 skips it, so a training loop can
freeze a diverged run without reading anything back), ``_scalars`` ((P, k)
row-major, k = len(rule.scalar_names), in that order), ``_members`` (P),
``_n`` and ``_ld`` (the generated names start with ``_``, which the rule
language reserves). Every member calls the same element function with its float
scalars, so a member's update is bit for bit what a run of its own makes of
its row.

The kernels use no shared memory and no block synchronisation, so running
every (block, thread) of a launch one after another on the CPU computes what
the GPU computes: ``tests/kernels/test_cuda_host.py`` and
``tests/kernels/test_population_kernels.py`` do exactly that with the same
source string, built by the host C++ compiler
(:mod:`optbench.kernels.testing.cuda_host`).

Importing this module never needs CuPy; the kernel is compiled (by NVRTC,
through ``cupy.RawModule``) on the first launch and cached.
"""

from __future__ import annotations

import textwrap
from functools import lru_cache
from typing import Mapping

import numpy as np

from ..rule import Rule
from .expr import CUDA, functions_used

THREADS = 256
#: Resident blocks per SM the grid-stride launch aims for; more is wasted.
BLOCKS_PER_SM = 8
#: The most blocks a grid may have in y (CUDA's limit). A population launch
#: gives each member a block row up to it and the kernels take the members
#: beyond it in turn, so any P is one launch; a module constant so that tests
#: can lower it and exercise that loop.
MAX_GRID_Y = 65535
WARP = 32


def kernel_names(rule: Rule) -> tuple[str, str]:
    """(vectorised, scalar) names of the rule's kernels."""
    return f"optbench_{rule.name}_pop_vec4", f"optbench_{rule.name}_pop_scalar"


#: Device functions for the rule language's functions CUDA has no builtin
#: for with NumPy's semantics (fmaxf/fminf return the number of a NaN and a
#: number; copysignf would give sign(-0) = -1), by rule-language name. A
#: source defines only those its rule uses.
HELPERS = {
    # np.sign: 1, -1, +0.0 for either zero, the NaN itself for NaN.
    "sign": "__host__ __device__ __forceinline__ float optbench_sign(const float x)\n"
            "{\n    return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : (x != x ? x : 0.0f));\n}\n",
    # np.minimum / np.maximum: a NaN on either side propagates; of equal values (-0, +0) b.
    "min": "__host__ __device__ __forceinline__ float optbench_min(const float a, const float b)\n"
           "{\n    return (a < b || a != a) ? a : b;\n}\n",
    "max": "__host__ __device__ __forceinline__ float optbench_max(const float a, const float b)\n"
           "{\n    return (a > b || a != a) ? a : b;\n}\n",
}


def helpers(rule: Rule) -> str:
    """The HELPERS ``rule``'s update calls, in a fixed order ("" for none)."""
    used = functions_used(rule.statements)
    return "".join(text for name, text in HELPERS.items() if name in used)


def element_function(rule: Rule) -> str:
    params = [f"float& {b}" if b in rule.written else f"float {b}" for b in rule.buffers]
    params += [f"const float {s}" for s in rule.scalar_names]
    lines, declared = [], set(rule.buffers)
    for st in rule.statements:
        decl = "" if st.target in declared else "float "
        declared.add(st.target)
        lines.append(f"    {decl}{st.target} = {CUDA(st.expr)};")
    sig = f"__host__ __device__ __forceinline__ void {rule.name}_element(\n    " + ",\n    ".join(params) + ")"
    return f"{sig}\n{{\n" + "\n".join(lines) + "\n}\n"


def _loops(rule: Rule, ptr: str) -> dict[str, str]:
    """The grid-stride loops over ``_n`` elements at pointers ``{ptr}<buffer>``
    ("vec4": float4 groups then the tail; "scalar": one float at a time), with
    ``_stride``, ``_tid`` and the scalars (under their names) in scope. Every
    name the generator declares starts with ``_``, which a rule's names may
    not (so a scalar may be called ``first`` or ``n``)."""
    bufs = rule.buffers
    scalar_args = "".join(f", {s}" for s in rule.scalar_names)
    load4 = "\n".join(f"    float4 _v4_{b} = reinterpret_cast<const float4*>({ptr}{b})[_k];" for b in bufs)
    calls4 = "\n".join(
        f"    {rule.name}_element(" + ", ".join(f"_v4_{b}.{c}" for b in bufs) + scalar_args + ");" for c in "xyzw"
    )
    store4 = "\n".join(f"    reinterpret_cast<float4*>({ptr}{b})[_k] = _v4_{b};" for b in rule.written)
    load1 = "\n".join(f"    float _v1_{b} = {ptr}{b}[_k];" for b in bufs)
    call1 = f"    {rule.name}_element(" + ", ".join(f"_v1_{b}" for b in bufs) + scalar_args + ");"
    store1 = "\n".join(f"    {ptr}{b}[_k] = _v1_{b};" for b in rule.written)
    tail = f"for (long long _k = _first + _tid; _k < _n; _k += _stride) {{\n{load1}\n{call1}\n{store1}\n}}"
    return {
        "vec4": (f"const long long _n4 = _n >> 2;\nfor (long long _k = _tid; _k < _n4; _k += _stride) {{\n"
                 f"{load4}\n{calls4}\n{store4}\n}}\nconst long long _first = _n4 << 2;\n{tail}"),
        "scalar": f"const long long _first = 0;\n{tail}",
    }


def _pointer_params(rule: Rule, prefix: str = "_p_") -> list[str]:
    return [f"float* __restrict__ {prefix}{b}" if b in rule.written else f"const float* __restrict__ {prefix}{b}"
            for b in rule.buffers]


_GRID = """const long long _stride = (long long)gridDim.x * blockDim.x;
const long long _tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;"""


def _kernel(name: str, params: list[str], body: str) -> str:
    return (f'extern "C" __global__ void {name}(\n    ' + ",\n    ".join(params) + ")\n{\n"
            + textwrap.indent(body, "    ") + "\n}\n")


@lru_cache(maxsize=None)
def cuda_source(rule: Rule) -> str:
    """The complete CUDA source CuPy compiles for ``rule`` (no #includes):
    the element function and the two kernels."""
    row = _loops(rule, "_r_")
    params = _pointer_params(rule) + [
        "const int* __restrict__ _active", "const float* __restrict__ _scalars",
        "const long long _members", "const long long _n", "const long long _ld"]
    k = len(rule.scalar_names)
    member = "\n".join(
        ["if (!_active[_member]) continue;  // a member frozen on the device, or left out: no update"]
        + [f"{p} = _p_{b} + _member * _ld;" for p, b in zip(_pointer_params(rule, "_r_"), rule.buffers)]
        + [f"const float {s} = _scalars[_member * {k} + {j}];" for j, s in enumerate(rule.scalar_names)])

    def population(loops: str) -> str:
        return (f"{_GRID}\nfor (long long _member = blockIdx.y; _member < _members; _member += gridDim.y) {{\n"
                + textwrap.indent(f"{member}\n{loops}", "    ") + "\n}")

    vec_name, scalar_name = kernel_names(rule)
    return "\n".join([
        f"// optbench: rule '{rule.name}', generated by kernels/codegen/cuda_kernel.py",
        *([helpers(rule)] if helpers(rule) else []),
        element_function(rule),
        _kernel(vec_name, params, population(row["vec4"])),
        _kernel(scalar_name, params, population(row["scalar"])),
    ])


def population_geometry(members: int, n: int, vec: bool, sm_count: int) -> tuple[tuple[int, int], int]:
    """((blocks_x, blocks_y), threads) of a population launch: a block row per
    member up to :data:`MAX_GRID_Y`; threads per block at most one per work
    item of a row, rounded up to a warp (a short row leaves no 256-thread
    block mostly idle); blocks in x at most what one row needs, cut so that
    the whole grid aims at BLOCKS_PER_SM resident blocks per SM. Never
    changes a result, only how the work is spread."""
    work = (n >> 2) if vec else n
    threads = min(THREADS, max(WARP, -(-work // WARP) * WARP))
    return grid(members, work, threads, sm_count), threads


def grid(members: int, work: int, threads: int, sm_count: int, max_y: int = MAX_GRID_Y) -> tuple[int, int]:
    """(blocks_x, blocks_y) of a launch over ``members`` rows of ``work`` items
    each (every kernel here, the rules' and dropout's): a block row per member
    up to ``max_y`` (the kernels loop over the rest); in x at most what one
    row needs, cut so that the whole grid aims at BLOCKS_PER_SM resident
    blocks per SM; never fewer than one block."""
    blocks_y = max(1, min(members, max_y))
    return max(1, min(-(-work // threads), -(-sm_count * BLOCKS_PER_SM // blocks_y))), blocks_y


class CupyKernel:
    """Launches a rule's generated kernels on CuPy buffers (built lazily)."""

    def __init__(self, rule: Rule):
        self.rule = rule
        self._module = None
        self._sm_count = None

    def _functions(self):
        if self._module is None:
            import cupy as cp

            self._module = cp.RawModule(code=cuda_source(self.rule), options=("--std=c++14",))
            self._sm_count = cp.cuda.Device().attributes["MultiProcessorCount"]
        return self._module

    def population(self, buffers: Mapping, scalars, active) -> None:
        """One launch over P members: ``buffers`` (P, n) float32 device arrays
        with unit element stride and one row stride, ``scalars`` the (P, k)
        float32 C-contiguous table, ``active`` (P,) int32 (0 skips a member)."""
        module = self._functions()
        arrays = [buffers[b] for b in self.rule.buffers]
        members, n = arrays[0].shape
        if members == 0 or n == 0:
            return
        if any(a.shape != arrays[0].shape or a.strides != arrays[0].strides for a in arrays) \
                or arrays[0].strides[1] != 4:
            raise ValueError(f"{self.rule.name} population: every buffer needs the shape and strides of "
                             f"'w' (unit element stride), got {[(a.shape, a.strides) for a in arrays]}")
        ld = arrays[0].strides[0] // 4
        vec = ld % 4 == 0 and all(a.data.ptr % 16 == 0 for a in arrays)
        grid, threads = population_geometry(members, n, vec, self._sm_count)
        name = kernel_names(self.rule)[0 if vec else 1]
        module.get_function(name)(grid, (threads,), (*arrays, active, scalars, np.int64(members),
                                                      np.int64(n), np.int64(ld)))
