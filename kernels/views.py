"""The views of a flat buffer, and the operations a rule does per view.

A flat parameter buffer holds a model's tensors one after another
(:class:`~optbench.kernels.flat.FlatLayout`): each weight matrix and each
bias is a *view*. A rule that reduces (LAMB's per-tensor norms), keeps
factored statistics (Adafactor's row and column means) or takes matrix steps
(Muon's orthogonalisation) does so per view. Without a layout the whole
buffer is one view.

Every view is a matrix of ``rows x cols`` (a vector of n elements is 1 x n;
a tensor of more dimensions is its first dimension by the rest). The
operations take a population's (P, n) arrays -- P members, each row a whole
flat buffer -- and work on every member and every view at once: views of one
size (or one shape) are gathered into one (P, k, size) array and reduced, or
multiplied as a batch of matrices, in one call each. There is a Python loop
over the distinct sizes and shapes of the layout (an MLP has a handful),
never over members or over views one by one, and the same code runs on NumPy
and CuPy arrays.

Reductions, row and column statistics and the values a rule computes from
them are kept in float64 (a view of 16,384 float32 elements summed in float32
loses about four digits); they enter the element-wise passes as float32,
like every scalar. A member's numbers never depend on the other members: each
is reduced along its own contiguous axis.

Padding between views (:mod:`optbench.kernels.flat` aligns each view to 16
bytes) belongs to no view: reductions, statistics and matrix steps skip it.
A per-view, row or column value expands there as at the element before it,
so the element-wise passes see finite numbers in the padding: with w, the
gradient and the state 0 there, an update leaves it 0 (Adafactor's
``g / sqrt(R C / mean(R))`` is 0 / a positive number, not 0 / 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import prod

import numpy as np


#: Muon's quintic Newton-Schulz coefficients (Keller Jordan 2024): five steps
#: take every singular value of a matrix of Frobenius norm 1 into about [0.7, 1.2].
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
#: The smallest Frobenius norm Newton-Schulz divides by (as the peers do).
NS_EPS = 1e-7


@dataclass(frozen=True)
class Group:
    """Views of one size or shape: ``key``, their indices (k,), their
    elements' indices (k, size) -- or for one view its (offset, size), read as
    a slice with no index array -- and their row and column slots (k, rows), (k, cols)."""

    key: tuple
    views: object
    elements: object  # None for a group of one view: ``span`` is its (offset, size)
    row_slots: object
    col_slots: object
    span: tuple | None = None


@dataclass(frozen=True)
class View:
    name: str
    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return prod(self.shape)

    @property
    def rows(self) -> int:
        return self.shape[0] if len(self.shape) >= 2 else 1

    @property
    def cols(self) -> int:
        return self.size // self.rows if self.rows else 0


class Views:
    """The views of a flat buffer of ``n`` elements and their index arrays.

    views: (name, offset, shape) per view, in buffer order; matrices: which
    2-D views are matrices ("all", or "hidden": all but the first and the
    last, Muon's recipe); xp: the array module the index arrays live on.
    """

    def __init__(self, n: int, views, matrices: str = "all", xp=np):
        self.n, self.xp = int(n), xp
        self.views: tuple[View, ...] = tuple(View(name, int(off), tuple(int(d) for d in shape))
                                             for name, off, shape in views)
        for v in self.views:
            if v.offset < 0 or v.offset + v.size > self.n:
                raise ValueError(f"view {v.name!r} ({v.offset} + {v.size}) lies outside the buffer of {self.n}")
        self.V = len(self.views)
        two_d = [i for i, v in enumerate(self.views) if len(v.shape) >= 2 and v.rows > 1 and v.cols > 1]
        chosen = two_d if matrices == "all" else two_d[1:-1]
        #: 1.0 for the views the rule treats as matrices.
        self.is_matrix = np.zeros(self.V)
        self.is_matrix[chosen] = 1.0
        sizes = np.array([v.size for v in self.views], dtype=np.float64)
        rows = np.array([v.rows for v in self.views], dtype=np.float64)
        #: The view constants as (1, V) float64 rows: size, rows, cols, matrix.
        self.constants = {"size": sizes, "rows": rows, "cols": sizes / np.maximum(rows, 1),
                          "matrix": self.is_matrix}
        self.constants = {k: xp.asarray(v[None, :]) for k, v in self.constants.items()}
        self.total = float(sizes.sum())
        # Row and column slots: view v's rows occupy row_offset[v] .. + rows.
        self.row_offset = np.cumsum([0] + [v.rows for v in self.views])
        self.col_offset = np.cumsum([0] + [v.cols for v in self.views])
        self.R, self.C = int(self.row_offset[-1]), int(self.col_offset[-1])
        #: One view that is the whole buffer (no layout): expansions broadcast, with no index arrays.
        self.whole = self.V == 1 and self.views[0].offset == 0 and self.views[0].size == self.n
        self._no_elements = not any(v.size for v in self.views)
        self._element_index: dict = {}
        self.view_of_row = xp.asarray(np.repeat(np.arange(self.V), [v.rows for v in self.views]))
        self.view_of_col = xp.asarray(np.repeat(np.arange(self.V), [v.cols for v in self.views]))
        # Views of one size (reductions) and of one shape (row/col statistics, matrix steps).
        self.by_size = self._groups(lambda v: (v.size,), range(self.V))
        self.by_shape = self._groups(lambda v: (v.rows, v.cols), range(self.V))
        self.matrices_by_shape = self._groups(lambda v: (v.rows, v.cols), chosen)
        self.rows_by_count = self._segments(self.row_offset, [v.rows for v in self.views])
        self.cols_by_count = self._segments(self.col_offset, [v.cols for v in self.views])

    def element_index(self, kind: str):
        """Per element, int32: its view ("view"), row slot ("row") or column
        slot ("col"); padding as the element before it (the first, leading).
        Built on first use."""
        if kind not in self._element_index:
            index = np.full(self.n, -1, dtype=np.int64)
            for i, v in enumerate(self.views):
                if v.size == 0:
                    continue
                local = np.arange(v.size)
                index[v.offset : v.offset + v.size] = (
                    i if kind == "view" else self.row_offset[i] + local // v.cols if kind == "row"
                    else self.col_offset[i] + local % v.cols)
            real = index >= 0
            if real.any() and not real.all():
                before = np.maximum.accumulate(np.where(real, np.arange(self.n), -1))
                before[before < 0] = int(np.argmax(real))
                index = index[before]
            self._element_index[kind] = self.xp.asarray(np.maximum(index, 0).astype(np.int32))
        return self._element_index[kind]

    def _take(self, x, group: Group):
        """(P, k, size): the group's views of the (P, n) array x (a slice for one view)."""
        if group.elements is None:
            offset, size = group.span
            return x[:, offset : offset + size].reshape(x.shape[0], 1, size)
        return x[:, group.elements]

    def _put(self, out, group: Group, values) -> None:
        """out's group views := values (P, k, size)."""
        if group.elements is None:
            offset, size = group.span
            out[:, offset : offset + size] = values.reshape(out.shape[0], size)
        else:
            out[:, group.elements] = values

    def _groups(self, key, indices) -> list[Group]:
        """One :class:`Group` per distinct key among the non-empty views ``indices``."""
        found: dict[tuple, list[int]] = {}
        for i in indices:
            if self.views[i].size:
                found.setdefault(key(self.views[i]), []).append(i)
        xp, out = self.xp, []
        for k, members in found.items():
            first = self.views[members[0]]
            one = len(members) == 1
            # row and column slots where the views share a shape (a size group may mix 3 x 4 and 4 x 3)
            shaped = len({(self.views[i].rows, self.views[i].cols) for i in members}) == 1
            out.append(Group(
                k, xp.asarray(np.array(members)),
                None if one else xp.asarray(np.array([self.views[i].offset + np.arange(first.size, dtype=np.int32)
                                                      for i in members])),
                xp.asarray(np.array([self.row_offset[i] + np.arange(self.views[i].rows) for i in members]))
                if shaped else None,
                xp.asarray(np.array([self.col_offset[i] + np.arange(self.views[i].cols) for i in members]))
                if shaped else None,
                (first.offset, first.size) if one else None))
        return out

    def _segments(self, offsets, counts) -> list[tuple[object, object]]:
        """[(view indices (k,), slot indices (k, count))] per distinct count, for row or column arrays."""
        found: dict[int, list[int]] = {}
        for i, c in enumerate(counts):
            if c:
                found.setdefault(c, []).append(i)
        return [(self.xp.asarray(np.array(members)),
                 self.xp.asarray(np.array([offsets[i] + np.arange(c) for i in members], dtype=np.int64)))
                for c, members in found.items()]

    # --- reductions -----------------------------------------------------------------
    def reduce(self, kind: str, x, y=None):
        """Per member and view, (P, V) float64: ``kind`` in sum, mean, norm,
        dot (of x and y), amax of the (P, n) float32 elements."""
        xp = self.xp
        P = x.shape[0]
        out = xp.zeros((P, self.V), dtype=np.float64)
        for group in self.by_size:
            views = group.views
            a = self._take(x, group)  # (P, k, size)
            if kind == "norm":
                out[:, views] = xp.sqrt(xp.square(a, dtype=np.float64).sum(axis=-1))
            elif kind == "dot":
                out[:, views] = (a.astype(np.float64) * self._take(y, group)).sum(axis=-1)
            elif kind == "amax":
                out[:, views] = a.max(axis=-1).astype(np.float64)
            else:
                out[:, views] = a.sum(axis=-1, dtype=np.float64)
        if kind == "mean":
            out /= xp.maximum(self.constants["size"], 1.0)
        if kind == "amax":  # an empty view has no maximum
            out[:, [i for i, v in enumerate(self.views) if v.size == 0]] = -np.inf
        return out

    def over_all(self, kind: str, per_view):
        """(P, 1) float64: the whole run's ``kind`` from its per-view values
        (sum and dot: their sums; mean: over every element; norm: the root of
        the squares' sum; amax: the largest)."""
        xp = self.xp
        if kind == "amax":
            return per_view.max(axis=1, keepdims=True) if self.V else xp.full((per_view.shape[0], 1), -np.inf)
        if kind == "norm":
            return xp.sqrt((per_view * per_view).sum(axis=1, keepdims=True))
        if kind == "mean":
            return (per_view * self.constants["size"]).sum(axis=1, keepdims=True) / max(self.total, 1.0)
        return per_view.sum(axis=1, keepdims=True)

    def reduce_slots(self, kind: str, x, axis: str, y=None):
        """Per member and view, (P, V) float64: ``kind`` over the view's
        elements of a per-row (axis "row") or per-column ("col") value x
        (P, R) or (P, C) -- each row's value stands for its ``cols``
        elements (each column's for ``rows``)."""
        xp = self.xp
        segments, other = ((self.rows_by_count, self.constants["cols"]) if axis == "row"
                           else (self.cols_by_count, self.constants["rows"]))
        out = xp.zeros((x.shape[0], self.V), dtype=np.float64)
        for views, slots in segments:
            a = x[:, slots]
            if kind == "norm":
                out[:, views] = (a * a).sum(axis=-1)
            elif kind == "dot":
                out[:, views] = (a * y[:, slots]).sum(axis=-1)
            elif kind == "amax":
                out[:, views] = a.max(axis=-1)
            else:
                out[:, views] = a.sum(axis=-1)
        if kind == "amax":
            return out
        out *= other  # each slot's value counts once per element it stands for
        if kind == "norm":
            return xp.sqrt(out)
        if kind == "mean":
            return out / xp.maximum(self.constants["size"], 1.0)
        return out

    # --- row and column statistics --------------------------------------------------
    def row_col_mean(self, x, axis: str):
        """Each view's row means (axis "row": (P, R)) or column means ("col": (P, C)), float64."""
        xp = self.xp
        P = x.shape[0]
        out = xp.zeros((P, self.R if axis == "row" else self.C), dtype=np.float64)
        for group in self.by_shape:
            rows, cols = group.key
            a = self._take(x, group).reshape(P, -1, rows, cols)
            if axis == "row":
                out[:, group.row_slots] = a.mean(axis=3, dtype=np.float64)
            else:
                out[:, group.col_slots] = a.mean(axis=2, dtype=np.float64)
        return out

    # --- expansion to elements ------------------------------------------------------
    def expand(self, values, kind: str, out) -> None:
        """Write a per-view (kind "view", (P, V)), per-row ("row", (P, R)) or
        per-column ("col", (P, C)) float64 value to every element of its
        view, row or column of ``out`` ((P, n) float32); padding as the element
        before it, and 0 in a buffer with no views."""
        if self._no_elements:
            out[...] = 0.0
        elif self.whole:  # broadcast over the one view's rows and columns
            rows, cols = self.views[0].rows, self.views[0].cols
            shaped = {"view": values[:, :1, None], "row": values[:, :rows, None], "col": values[:, None, :cols]}
            out.reshape(out.shape[0], rows, cols)[...] = shaped[kind].astype(np.float32)
        else:
            out[...] = values.astype(np.float32)[:, self.element_index(kind)]

    def lift(self, values, kind: str, to: str):
        """A per-view value (P, V) as a per-row (P, R) or per-column (P, C) one."""
        if kind == to or kind != "view":
            return values
        return values[:, self.view_of_row if to == "row" else self.view_of_col]

    # --- matrix steps ---------------------------------------------------------------
    def orthogonalize(self, x, out, steps: int = NS_STEPS, coefficients=NS_COEFFICIENTS) -> None:
        """out := x, with every matrix view replaced by its Newton-Schulz
        orthogonalisation (Muon): X / max(||X||_F, NS_EPS), then ``steps``
        times A = X X^T, B = b A + c A A, X = a X + B X on the orientation
        with rows <= cols (as the peers do), in float32; for every matrix of
        one shape and every member in one batch of products."""
        xp = self.xp
        out[...] = x
        P = x.shape[0]
        a, b, c = (np.float32(v) for v in coefficients)
        for group in self.matrices_by_shape:
            rows, cols = group.key
            X = xp.ascontiguousarray(self._take(x, group)).reshape(-1, rows, cols)  # (P k, rows, cols), a copy
            if rows > cols:
                X = xp.ascontiguousarray(X.transpose(0, 2, 1))
            norm = xp.sqrt((X * X).sum(axis=(1, 2), keepdims=True))
            X = X / xp.maximum(norm, np.float32(NS_EPS))
            for _ in range(steps):
                A = xp.matmul(X, X.transpose(0, 2, 1))
                B = b * A + c * xp.matmul(A, A)
                X = a * X + xp.matmul(B, X)
            if rows > cols:
                X = X.transpose(0, 2, 1)
            self._put(out, group, X.reshape(P, -1, rows * cols))


@lru_cache(maxsize=64)
def _views_for(n: int, layout_key, matrices: str, xp) -> Views:
    views = list(layout_key) if layout_key else [("all", 0, (n,))]
    return Views(n, views, matrices, xp)


def views_of(layout, n: int, matrices: str, xp) -> Views:
    """The (cached) views of a buffer of ``n`` elements on array module
    ``xp``: a FlatLayout's tensors, or the whole buffer as one vector when
    ``layout`` is None."""
    if layout is not None and layout.size - n not in (0, 1, 2, 3):  # the last view's padding may be cut off
        raise ValueError(f"the layout has {layout.size} elements but the buffer has {n}")
    key = None if layout is None else tuple((s.name, s.offset, s.shape) for s in layout)
    return _views_for(int(n), key, matrices, xp)


__all__ = ["NS_COEFFICIENTS", "NS_STEPS", "View", "Views", "views_of"]
