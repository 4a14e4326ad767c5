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

With a state kept in bfloat16 (``cuda_source(rule, "bf16")`` or
``"bf16-sr"``) the state buffers are ``unsigned short`` bits: the vec4
kernel loads and stores four of them at once (8 bytes, ``ushort4``), and
the source starts with Philox and ``kernels/cuda/bf16.cuh``; stochastic
rounding adds ``_keys`` (two words of each member's seed) and ``_step``.

Importing this module never needs CuPy; the kernel is compiled (by NVRTC,
through ``cupy.RawModule``) on the first launch and cached.
"""

from __future__ import annotations

import textwrap
from functools import lru_cache
from typing import Mapping

import numpy as np

from ..rule import Rule
from ..sources import cuda_file
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


#: How a state buffer is loaded and stored at each precision (``rule.state``):
#: float32 as it is, or bf16 bits (``kernels/cuda/bf16.cuh``) loaded exactly
#: and stored rounded, to nearest or stochastically.
PRECISIONS = ("fp32", "bf16", "bf16-sr")


def _packed(rule: Rule, precision: str) -> set:
    if precision not in PRECISIONS:
        raise ValueError(f"no CUDA kernels for state precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    return set(rule.state) if precision != "fp32" else set()


def kernel_names(rule: Rule, precision: str = "fp32") -> tuple[str, str]:
    """(vectorised, scalar) names of the rule's kernels."""
    state = "" if precision == "fp32" else precision.replace("-", "") + "_"
    return f"optbench_{rule.name}_{state}pop_vec4", f"optbench_{rule.name}_{state}pop_scalar"


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


def _loops(rule: Rule, ptr: str, precision: str = "fp32") -> dict[str, str]:
    """The grid-stride loops over ``_n`` elements at pointers ``{ptr}<buffer>``
    ("vec4": float4 groups then the tail; "scalar": one float at a time), with
    ``_stride``, ``_tid`` and the scalars (under their names) in scope. Every
    name the generator declares starts with ``_``, which a rule's names may
    not (so a scalar may be called ``first`` or ``n``). A bf16 state is
    loaded from its bits (4 at once in the vec4 loop: 8 bytes) and stored
    rounded; stochastic rounding takes ``_seed`` and ``_step`` from the
    kernel and the element's index in its row."""
    bufs, packed = rule.buffers, _packed(rule, precision)
    scalar_args = "".join(f", {s}" for s in rule.scalar_names)

    def load4(b):
        if b in packed:
            return f"    float4 _v4_{b} = optbench_bf16x4_load(reinterpret_cast<const ushort4*>({ptr}{b})[_k]);"
        return f"    float4 _v4_{b} = reinterpret_cast<const float4*>({ptr}{b})[_k];"

    def store4(b):
        if b not in packed:
            return f"    reinterpret_cast<float4*>({ptr}{b})[_k] = _v4_{b};"
        rounded = (f"optbench_bf16x4_rne(_v4_{b})" if precision == "bf16" else
                   f"optbench_bf16x4_sr(_v4_{b}, _seed, _step, {rule.state.index(b)}u, (unsigned long long)(_k << 2))")
        return f"    reinterpret_cast<ushort4*>({ptr}{b})[_k] = {rounded};"

    def load1(b):
        return f"    float _v1_{b} = " + (f"optbench_bf16_to_f32({ptr}{b}[_k]);" if b in packed else f"{ptr}{b}[_k];")

    def store1(b):
        if b not in packed:
            return f"    {ptr}{b}[_k] = _v1_{b};"
        rounded = (f"optbench_bf16_rne(_v1_{b})" if precision == "bf16" else
                   f"optbench_bf16_sr(_v1_{b}, optbench_sr_bits(_seed, _step, {rule.state.index(b)}u, "
                   "(unsigned long long)_k))")
        return f"    {ptr}{b}[_k] = {rounded};"

    calls4 = "\n".join(
        f"    {rule.name}_element(" + ", ".join(f"_v4_{b}.{c}" for b in bufs) + scalar_args + ");" for c in "xyzw"
    )
    call1 = f"    {rule.name}_element(" + ", ".join(f"_v1_{b}" for b in bufs) + scalar_args + ");"
    load4, store4 = "\n".join(map(load4, bufs)), "\n".join(map(store4, rule.written))
    load1, store1 = "\n".join(map(load1, bufs)), "\n".join(map(store1, rule.written))
    tail = f"for (long long _k = _first + _tid; _k < _n; _k += _stride) {{\n{load1}\n{call1}\n{store1}\n}}"
    return {
        "vec4": (f"const long long _n4 = _n >> 2;\nfor (long long _k = _tid; _k < _n4; _k += _stride) {{\n"
                 f"{load4}\n{calls4}\n{store4}\n}}\nconst long long _first = _n4 << 2;\n{tail}"),
        "scalar": f"const long long _first = 0;\n{tail}",
    }


def _pointer_params(rule: Rule, prefix: str = "_p_", precision: str = "fp32") -> list[str]:
    packed = _packed(rule, precision)
    return [("" if b in rule.written else "const ") + ("unsigned short" if b in packed else "float")
            + f"* __restrict__ {prefix}{b}" for b in rule.buffers]


_GRID = """const long long _stride = (long long)gridDim.x * blockDim.x;
const long long _tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;"""


def _kernel(name: str, params: list[str], body: str) -> str:
    return (f'extern "C" __global__ void {name}(\n    ' + ",\n    ".join(params) + ")\n{\n"
            + textwrap.indent(body, "    ") + "\n}\n")


@lru_cache(maxsize=None)
def cuda_source(rule: Rule, precision: str = "fp32") -> str:
    """The complete CUDA source CuPy compiles for ``rule`` (no #includes):
    the element function and the two kernels; with a bf16 state
    (``precision`` "bf16" or "bf16-sr"), Philox and the bf16 loads and
    stores before them, and for stochastic rounding two more parameters,
    ``_keys`` (each member's seed as two words) and ``_step``."""
    row = _loops(rule, "_r_", precision)
    params = _pointer_params(rule, precision=precision) + [
        "const int* __restrict__ _active", "const float* __restrict__ _scalars",
        "const long long _members", "const long long _n", "const long long _ld"]
    if precision == "bf16-sr":
        params += ["const unsigned int* __restrict__ _keys", "const unsigned int _step"]
    k = len(rule.scalar_names)
    member = "\n".join(
        ["if (!_active[_member]) continue;  // a member frozen on the device, or left out: no update"]
        + [f"{p} = _p_{b} + _member * _ld;"
           for p, b in zip(_pointer_params(rule, "_r_", precision), rule.buffers)]
        + [f"const float {s} = _scalars[_member * {k} + {j}];" for j, s in enumerate(rule.scalar_names)]
        + (["const unsigned long long _seed = ((unsigned long long)_keys[2 * _member + 1] << 32) "
            "| _keys[2 * _member];"] if precision == "bf16-sr" else []))

    def population(loops: str) -> str:
        return (f"{_GRID}\nfor (long long _member = blockIdx.y; _member < _members; _member += gridDim.y) {{\n"
                + textwrap.indent(f"{member}\n{loops}", "    ") + "\n}")

    vec_name, scalar_name = kernel_names(rule, precision)
    bf16 = [cuda_file("philox.cuh").replace("#pragma once\n", ""),
            cuda_file("bf16.cuh").replace("#pragma once\n", "")] if _packed(rule, precision) else []
    return "\n".join([
        f"// optbench: rule '{rule.name}', state {precision}, generated by kernels/codegen/cuda_kernel.py",
        *bf16,
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

    def __init__(self, rule: Rule, precision: str = "fp32"):
        self.rule = rule
        self.precision = precision
        self._packed = _packed(rule, precision)
        self._module = None
        self._sm_count = None

    def _functions(self):
        if self._module is None:
            import cupy as cp

            self._module = cp.RawModule(code=cuda_source(self.rule, self.precision), options=("--std=c++14",))
            self._sm_count = cp.cuda.Device().attributes["MultiProcessorCount"]
        return self._module

    def population(self, buffers: Mapping, scalars, active, keys=None, step: int = 0) -> None:
        """One launch over P members: ``buffers`` (P, n) float32 device arrays
        (a bf16 state's uint16) with unit element stride and one row stride
        in elements, ``scalars`` the (P, k) float32 C-contiguous table,
        ``active`` (P,) int32 (0 skips a member); for stochastic rounding
        ``keys`` (P, 2) uint32 and the ``step``'s number."""
        module = self._functions()
        arrays = [buffers[b] for b in self.rule.buffers]
        members, n = arrays[0].shape
        if members == 0 or n == 0:
            return
        ld = arrays[0].strides[0] // 4
        if any(a.shape != arrays[0].shape or a.strides != (ld * a.itemsize, a.itemsize) for a in arrays):
            raise ValueError(f"{self.rule.name} population: every buffer needs the shape of 'w' and its row "
                             f"stride in elements (unit element stride), got {[(a.shape, a.strides) for a in arrays]}")
        # 16-byte loads of a float buffer, 8-byte ones of a bf16 state
        vec = ld % 4 == 0 and all(a.data.ptr % (4 * a.itemsize) == 0 for a in arrays)
        grid, threads = population_geometry(members, n, vec, self._sm_count)
        name = kernel_names(self.rule, self.precision)[0 if vec else 1]
        extra = (keys, np.uint32(step & 0xFFFFFFFF)) if self.precision == "bf16-sr" else ()
        module.get_function(name)(grid, (threads,), (*arrays, active, scalars, np.int64(members),
                                                      np.int64(n), np.int64(ld), *extra))
