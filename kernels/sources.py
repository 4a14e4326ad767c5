"""The hand-written CUDA sources, read from the package.

Hand-written CUDA (dropout, Philox, the step account) lives in
``kernels/cuda/*.cu`` and ``*.cuh``, package data that editors, formatters
and nvcc see as CUDA. :func:`cuda_file` reads one with its ``#include
"..."`` of sibling files expanded, so CuPy's NVRTC compiles one
self-contained string (no include path) and the tests build exactly that
string. Every source the project compiles, generated ones included, is
listed by :func:`optbench.kernels.testing.sources.cuda_sources`.
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
    text = (resources.files("optbench.kernels") / "cuda" / name).read_text()
    return _INCLUDE.sub(lambda m: _ONCE.sub("", cuda_file(m.group(1))), text)
