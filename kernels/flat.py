"""Flat buffers: a whole model's parameters in one contiguous float32 array.

Layers hold named, shaped views into the buffer, gradients live in a second
buffer with the same layout, and every optimiser state (v, mu, ...) in a
buffer of the same size, so one kernel launch updates the whole model however
many layers it has. Each view starts at an offset aligned to 16 bytes (4
floats), so a float4 load never straddles two tensors' padding badly and the
GPU kernel can use 16-byte loads on the whole buffer. Padding stays zero under
every update rule (zero weight, zero gradient and zero state give a zero
update).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from .backend import array_module

ALIGN_BYTES = 16
DTYPE = np.dtype(np.float32)
_ALIGN = ALIGN_BYTES // DTYPE.itemsize


@dataclass(frozen=True)
class Slot:
    name: str
    shape: tuple[int, ...]
    offset: int  # in elements

    @property
    def size(self) -> int:
        return prod(self.shape)


class FlatLayout:
    """Where each named tensor lives in a flat float32 buffer.

    >>> layout = FlatLayout([("W1", (3, 5)), ("b1", (5,))])
    >>> [s.offset for s in layout.slots], layout.size
    ([0, 16], 24)
    """

    def __init__(self, tensors):
        slots, offset, seen = [], 0, set()
        for name, shape in tensors:
            if name in seen:
                raise ValueError(f"tensor name {name!r} appears twice in the layout")
            seen.add(name)
            shape = tuple(int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,)))
            if any(d < 0 for d in shape):
                raise ValueError(f"tensor {name!r} has a negative dimension: {shape}")
            slots.append(Slot(name, shape, offset))
            offset += -(-prod(shape) // _ALIGN) * _ALIGN
        self.slots: tuple[Slot, ...] = tuple(slots)
        self.size: int = offset
        self._by_name = {s.name: s for s in slots}

    def __getitem__(self, name: str) -> Slot:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no tensor {name!r} in layout; have {list(self._by_name)}") from None

    def __iter__(self):
        return iter(self.slots)

    def __len__(self) -> int:
        return len(self.slots)

    def __eq__(self, other) -> bool:
        return isinstance(other, FlatLayout) and self.slots == other.slots

    def __hash__(self) -> int:
        return hash(self.slots)

    def allocate(self, xp=np, dtype=DTYPE) -> "FlatBuffer":
        """A zero-filled buffer with this layout on array module ``xp``:
        float32 for training, float64 only for gradient checks."""
        return FlatBuffer(self, xp.zeros(self.size, dtype=dtype))


class FlatBuffer:
    """A flat float32 array plus named, shaped views into it.

    ``buf.data`` is the 1-D array a kernel updates; ``buf["W1"]`` is a view,
    so writing into it writes into ``data``.
    """

    def __init__(self, layout: FlatLayout, data):
        if data.ndim != 1 or data.shape[0] != layout.size:
            raise ValueError(
                f"flat buffer needs a 1-D array of {layout.size} elements, got shape {data.shape}"
            )
        if data.dtype not in (DTYPE, np.float64):
            raise TypeError(f"flat buffer must be float32 (float64 for checks), got {data.dtype}")
        self.layout = layout
        self.data = data
        self._views = {
            s.name: data[s.offset : s.offset + s.size].reshape(s.shape) for s in layout
        }

    def __getitem__(self, name: str):
        if name not in self._views:
            raise KeyError(f"no tensor {name!r} in buffer; have {list(self._views)}")
        return self._views[name]

    def like(self) -> "FlatBuffer":
        """A zero buffer of the same layout on the same device (for gradients)."""
        xp = array_module(self.data)
        return FlatBuffer(self.layout, xp.zeros_like(self.data))
