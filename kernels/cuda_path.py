"""The CUDA path: a rule's update text turned into a CUDA source for CuPy.

For rule ``adam`` the generated source holds

* ``adam_element``: the per-element update, a ``__host__ __device__`` function
  of the buffers' values (written ones by reference) and the step's scalars;
* ``optbench_adam_vec4``: a grid-stride loop over float4 groups (16-byte loads
  and stores of every buffer), then a grid-stride loop over the 0-3 elements
  of the tail; used when every buffer is 16-byte aligned;
* ``optbench_adam_scalar``: the same loop one float at a time, for buffers
  that are not (a view that starts mid-buffer).

The kernels use no shared memory and no block synchronisation, so running
every (block, thread) of a launch one after another on the CPU computes what
the GPU computes: ``tests/test_cuda_host.py`` does exactly that with the
same source string, built by the host C++ compiler.

Importing this module never needs CuPy; the kernel is compiled (by NVRTC,
through ``cupy.RawModule``) on the first launch and cached.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from typing import Mapping

import numpy as np

from .rule import Rule

THREADS = 256
#: Resident blocks per SM the grid-stride launch aims for; more is wasted.
BLOCKS_PER_SM = 8
_C_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def _c_expr(node) -> str:
    if isinstance(node, ast.Constant):
        return f"{float(node.value)!r}f"
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.UnaryOp):
        return f"(-{_c_expr(node.operand)})"
    if isinstance(node, ast.Call):
        return f"sqrtf({_c_expr(node.args[0])})"
    return f"({_c_expr(node.left)} {_C_OPS[type(node.op)]} {_c_expr(node.right)})"


def kernel_names(rule: Rule) -> tuple[str, str]:
    """(vectorised kernel, scalar kernel) names in the rule's source."""
    return f"optbench_{rule.name}_vec4", f"optbench_{rule.name}_scalar"


def element_function(rule: Rule) -> str:
    params = [f"float& {b}" if b in rule.written else f"float {b}" for b in rule.buffers]
    params += [f"const float {s}" for s in rule.scalar_names]
    lines, declared = [], set(rule.buffers)
    for st in rule.statements:
        decl = "" if st.target in declared else "float "
        declared.add(st.target)
        lines.append(f"    {decl}{st.target} = {_c_expr(st.expr)};")
    sig = f"__host__ __device__ __forceinline__ void {rule.name}_element(\n    " + ",\n    ".join(params) + ")"
    return f"{sig}\n{{\n" + "\n".join(lines) + "\n}\n"


@lru_cache(maxsize=None)
def cuda_source(rule: Rule) -> str:
    """The complete CUDA source CuPy compiles for ``rule`` (no #includes)."""
    bufs, scalars = rule.buffers, rule.scalar_names
    ptr_params = [
        f"float* __restrict__ p_{b}" if b in rule.written else f"const float* __restrict__ p_{b}"
        for b in bufs
    ]
    kparams = ",\n    ".join(ptr_params + ["const long long n"] + [f"const float {s}" for s in scalars])
    scalar_args = "".join(f", {s}" for s in scalars)
    vec_name, scalar_name = kernel_names(rule)

    def call(lanes: str) -> str:
        return f"{rule.name}_element(" + ", ".join(f"{b}{lanes}" for b in bufs) + scalar_args + ");"

    load4 = "\n".join(
        f"        float4 {b}4 = reinterpret_cast<const float4*>(p_{b})[k];" for b in bufs
    )
    calls4 = "\n".join(
        f"        {rule.name}_element(" + ", ".join(f"{b}4.{c}" for b in bufs) + scalar_args + ");"
        for c in "xyzw"
    )
    store4 = "\n".join(
        f"        reinterpret_cast<float4*>(p_{b})[k] = {b}4;" for b in rule.written
    )
    load1 = "\n".join(f"        float {b}1 = p_{b}[k];" for b in bufs)
    store1 = "\n".join(f"        p_{b}[k] = {b}1;" for b in rule.written)
    tail = f"""    for (long long k = first + tid; k < n; k += stride) {{
{load1}
        {call("1")}
{store1}
    }}"""
    return f"""// optbench: rule '{rule.name}', generated from kernels/rules/{rule.name}.py
{element_function(rule)}
extern "C" __global__ void {vec_name}(
    {kparams})
{{
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long n4 = n >> 2;
    for (long long k = tid; k < n4; k += stride) {{
{load4}
{calls4}
{store4}
    }}
    const long long first = n4 << 2;
{tail}
}}

extern "C" __global__ void {scalar_name}(
    {kparams})
{{
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long first = 0;
{tail}
}}
"""


def launch_geometry(n: int, vec: bool, sm_count: int) -> tuple[int, int]:
    """(blocks, threads) for ``n`` elements: enough blocks to fill the GPU,
    at most one thread per work item, at least one block."""
    work = (n >> 2) if vec else n
    blocks = max(1, min(-(-work // THREADS), sm_count * BLOCKS_PER_SM))
    return blocks, THREADS


class CupyKernel:
    """Launches a rule's generated kernel on CuPy buffers (built lazily)."""

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

    def __call__(self, buffers: Mapping, scalars: Mapping[str, float]) -> None:
        module = self._functions()
        n = buffers["w"].shape[0]
        if n == 0:
            return
        vec = all(buffers[b].data.ptr % 16 == 0 for b in self.rule.buffers)
        name = kernel_names(self.rule)[0 if vec else 1]
        blocks, threads = launch_geometry(n, vec, self._sm_count)
        args = tuple(buffers[b] for b in self.rule.buffers) + (np.int64(n),) + tuple(
            np.float32(scalars[s]) for s in self.rule.scalar_names
        )
        module.get_function(name)((blocks,), (threads,), args)
