"""Every CUDA source the project ships or generates, by name.

Hand-written CUDA (dropout and Philox) lives in ``kernels/cuda/*.cu`` and
``*.cuh``, package data that editors, formatters and nvcc see as CUDA.
:func:`cuda_file` reads one with its ``#include "..."`` of sibling files
expanded, so CuPy's NVRTC compiles one self-contained string (no include
path) and the tests build exactly that string. :func:`cuda_sources` lists
every source the project compiles: the generated rule kernels and the files.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

_INCLUDE = re.compile(r'^#include "([^"]+)"\s*$', re.MULTILINE)
_ONCE = re.compile(r"^#pragma once\s*\n", re.MULTILINE)


@lru_cache(maxsize=None)
def cuda_file(name: str) -> str:
    """The text of ``kernels/cuda/<name>`` with local includes expanded in place."""
    text = (resources.files("kernels") / "cuda" / name).read_text()
    return _INCLUDE.sub(lambda m: _ONCE.sub("", cuda_file(m.group(1))), text)


def cuda_sources() -> dict[str, str]:
    """{name: the exact source string CuPy compiles}."""
    from . import dropout
    from .codegen.cuda_kernel import cuda_source
    from .rules import RULES
    from .transforms import masked

    sources = {f"rule_{name}": cuda_source(rule) for name, rule in RULES.items()}
    sources.update({f"rule_{name}_masked": cuda_source(masked(rule)) for name, rule in RULES.items()})
    sources["dropout"] = dropout.cuda_source()
    return sources
