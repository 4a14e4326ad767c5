"""Every CUDA source the project compiles, by name: the generated rule
kernels (plain and masked) and the hand-written files, exactly as CuPy
compiles them (the nvcc tests build each for sm_80 and sm_90)."""

from __future__ import annotations

from .. import dropout, steps
from ..codegen.cuda_kernel import cuda_source
from ..rules import RULES
from ..transforms import masked


def cuda_sources() -> dict[str, str]:
    """{name: the exact source string CuPy compiles}."""
    sources = {f"rule_{name}": cuda_source(rule) for name, rule in RULES.items()}
    sources.update({f"rule_{name}_masked": cuda_source(masked(rule)) for name, rule in RULES.items()})
    sources["dropout"] = dropout.cuda_source()
    sources["steps"] = steps.cuda_source()
    return sources
