"""Every CUDA source the project generates, by name (for nvcc and host tests)."""

from __future__ import annotations


def cuda_sources() -> dict[str, str]:
    """{name: the exact source string CuPy compiles}."""
    from . import dropout
    from .cuda_path import cuda_source
    from .rule import masked
    from .rules import RULES

    sources = {f"rule_{name}": cuda_source(rule) for name, rule in RULES.items()}
    sources.update({f"rule_{name}_masked": cuda_source(masked(rule)) for name, rule in RULES.items()})
    sources["dropout"] = dropout.cuda_source()
    return sources
