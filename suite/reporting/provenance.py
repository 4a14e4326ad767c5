"""Where results came from: package versions, the git commit, the machine.

Stored beside every set of results (a study's metadata.json, a throughput
run's meta.json) so a report can say what produced its numbers.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path


def git_commit() -> str | None:
    """The commit of the checkout this code runs from, or None (not a checkout,
    no git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def version(name: str) -> str | None:
    """A package's version: the imported module's ``__version__`` where it is
    loaded (CuPy's distribution is called cupy-cuda12x, so ask the module),
    else the installed distribution's; None if neither exists."""
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__version__", None):
        return str(loaded.__version__)
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def versions(names) -> dict[str, str]:
    """{name: version} of the packages in ``names`` that are installed."""
    found = {name: version(name) for name in names}
    return {k: v for k, v in found.items() if v is not None}


def machine() -> dict:
    """Python, platform and core count."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "threads": os.cpu_count()}
