"""Checkpoints: a trained network's weights, to start another run from.

The lecture's fourth initialisation (section 9): start from the weights of a
model trained before. A checkpoint is an .npz with one array per tensor of
the flat layout (W1, b1, ...) plus the config that produced it, as JSON.
Writes are atomic (temporary file, then rename). Loading into a network of
another shape is an error that names the tensor and both shapes.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def save_checkpoint(model, path, config: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {s.name: _host(model.params[s.name]) for s in model.layout}
    arrays["__config__"] = np.array(json.dumps(config or {}, default=str))
    arrays["__sizes__"] = np.array(model.sizes)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(model, path) -> dict:
    """Copy the checkpoint's tensors into ``model``; returns its config."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = {k: f[k] for k in f.files}
    except Exception as exc:
        raise ValueError(f"checkpoint {path} is not a readable .npz file ({exc})") from None
    sizes = stored.pop("__sizes__", None)
    config = json.loads(str(stored.pop("__config__", "{}")))
    for slot in model.layout:
        if slot.name not in stored:
            raise ValueError(
                f"checkpoint {path} has no tensor {slot.name!r} (it holds "
                f"{', '.join(sorted(stored))}; layer sizes {_sizes(sizes)}, this network "
                f"{model.sizes})")
        if stored[slot.name].shape != slot.shape:
            raise ValueError(
                f"checkpoint {path}: tensor {slot.name!r} has shape {stored[slot.name].shape} "
                f"but this network needs {slot.shape} (checkpoint layer sizes {_sizes(sizes)}, "
                f"this network {model.sizes})")
    for slot in model.layout:
        model.params[slot.name][...] = model.xp.asarray(stored[slot.name])
    return config


def _sizes(sizes) -> list | str:
    return "unknown" if sizes is None else [int(s) for s in sizes]


def _host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)
