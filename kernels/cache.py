"""Where optbench keeps what it makes once and reuses: ``$OPTBENCH_CACHE``,
else ``~/.cache/optbench`` (the generated mnist1d data set, the Numba
kernels' compiled code)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "OPTBENCH_CACHE"


def cache_dir() -> Path:
    """``$OPTBENCH_CACHE`` if set, else ``~/.cache/optbench``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "optbench"
