"""Every CUDA source the project compiles, by name: the generated rule
kernels (plain and masked, and Adam's with its state in bfloat16) and the
hand-written files, exactly as CuPy compiles them (the nvcc tests build each
for sm_80 and sm_90)."""

from __future__ import annotations

from .. import dropout, precision, steps
from ..codegen.cuda_kernel import cuda_source
from ..rules import RULES
from ..stages import element_programs
from ..transforms import masked


def cuda_sources() -> dict[str, str]:
    """{name: the exact source string CuPy compiles}: a rule's kernel, or
    each pass of a rule that works per view (:mod:`optbench.kernels.stages`)."""
    sources = {}
    for name, rule in RULES.items():
        for variant, r in ((name, rule), (f"{name}_masked", masked(rule))):
            programs = element_programs(r)
            for p, program in enumerate(programs):
                sources[f"rule_{variant}" + (f"_pass{p}" if len(programs) > 1 else "")] = cuda_source(program)
    # A state kept in bfloat16 changes only the loads and stores around the
    # element function, the same for every rule: Adam's (plain and masked) stand for them.
    for variant, r in (("adam", RULES["adam"]), ("adam_masked", masked(RULES["adam"]))):
        for state in ("bf16", "bf16-sr"):
            sources[f"rule_{variant}_{state.replace('-', '')}"] = cuda_source(r, state)
    sources["dropout"] = dropout.cuda_source()
    sources["steps"] = steps.cuda_source()
    sources["precision"] = precision.cuda_source()
    return sources
