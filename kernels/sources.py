"""Every CUDA source the project generates, by name (for nvcc and host tests)."""

from __future__ import annotations


def cuda_sources() -> dict[str, str]:
    """{name: the exact source string CuPy compiles}."""
    from .cuda_path import cuda_source
    from .rules import RULES

    return {f"rule_{name}": cuda_source(rule) for name, rule in RULES.items()}
