"""Checkpoints: a trained network's weights, to start another run from.

The lecture's fourth initialisation (section 9): start from the weights of a
model trained before. A checkpoint is an .npz with one array per tensor of
the flat layout (W1, b1, ...) plus the config that produced it, as JSON, and
optionally the optimiser's state (``Optimizer.state_dict``: step counter,
hyper-parameters, state buffers) so that training can go on where it stopped.
Writes are atomic (temporary file, then rename). Loading into a network of
another shape is an error that names the tensor and both shapes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from optbench.kernels import FlatBuffer

from ..reporting.files import atomic_write


_OPT = "__optimizer__"  # prefix of the optimiser's entries


def save_checkpoint(model, path, config: dict | None = None, optimizer=None) -> Path:
    """Write ``model``'s weights (and ``optimizer``'s state, if given) to ``path``.

    The tensors are the weights w a user evaluates: for a rule that keeps a
    look-ahead point in the buffer (Nesterov), ``optimizer.weights()``.
    """
    params = model.params if optimizer is None else FlatBuffer(model.layout, optimizer.weights())
    arrays = {s.name: _host(params[s.name]) for s in model.layout}
    arrays["__config__"] = np.array(json.dumps(config or {}, default=str))
    arrays["__sizes__"] = np.array(model.sizes)
    if optimizer is not None:
        sd = optimizer.state_dict()
        arrays[f"{_OPT}meta"] = np.array(json.dumps({"rule": sd["rule"], "hyper": sd["hyper"], "t": sd["t"]}))
        arrays.update({f"{_OPT}state/{k}": _host(v) for k, v in sd["state"].items()})
    return atomic_write(path, lambda f: np.savez(f, **arrays), binary=True)


def load_checkpoint(model, path, optimizer=None) -> dict:
    """Copy the checkpoint's tensors into ``model`` (and its optimiser state
    into ``optimizer``, if given: an error if the checkpoint has none); returns
    its config."""
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
    opt_entries = {k[len(_OPT):]: stored.pop(k) for k in list(stored) if k.startswith(_OPT)}
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
    if optimizer is not None:
        if "meta" not in opt_entries:
            raise ValueError(f"checkpoint {path} holds no optimiser state (saved without one)")
        sd = json.loads(str(opt_entries.pop("meta")))
        sd["state"] = {k[len("state/"):]: v for k, v in opt_entries.items()}
        optimizer.load_state_dict(sd)  # checks rule, buffers and shapes before writing
    for slot in model.layout:
        model.params[slot.name][...] = model.xp.asarray(stored[slot.name])
    offset = None if optimizer is None else optimizer.lookahead_offset()
    if offset is not None:  # the file holds w; the buffer holds the look-ahead point u = w - offset
        model.params.data[...] -= offset
    return config


def _sizes(sizes) -> list | str:
    return "unknown" if sizes is None else [int(s) for s in sizes]


def _host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)
