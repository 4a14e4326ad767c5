"""P MLPs of one shape, trained together: one (P, n) parameter buffer and
batched matrix products over the members.

Member m's row of ``params`` is exactly a single :class:`~suite.nn.mlp.MLP`'s
flat buffer (the same :class:`~kernels.FlatLayout`), and so are the rows of
``grads``; each tensor is a strided view over the members, e.g. ``W1`` of
shape (P, n_in, h1). Layer l computes, for every member at once,

    z^(l) = a^(l-1) W_l + b_l        (P, B, h_{l-1}) @ (P, h_{l-1}, h_l)

-- cuBLAS's strided-batched GEMM on CuPy, a stack of GEMMs on NumPy -- and
back-propagation is the single network's (:mod:`suite.nn.mlp`), batched:

    dQ/dW_l = a^(l-1)^T delta^(l)     dQ/db_l = sum over objects of delta^(l)
    dQ/da^(l-1) = delta^(l) W_l^T

Every member sees its own mini-batch (its own seed's order), its own
dropout stream (its own Philox key: member m's masks are the single run's
with seed m, see ``kernels.dropout.dropout_forward_population``) and its own
loss, averaged over its batch, so the gradient of member m is what a single
MLP would compute from the same weights and data. Operations are the single
network's in the same order, member by member, so a member's numbers match
a single run's up to the summation order of the batched products.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kernels import dropout as dropout_kernels

from .activations import PRELU_DEFAULT_ALPHA, get_activation
from .losses import get_loss
from .mlp import DROPOUT_MODES, eval_batch, mlp_layout

#: Rows of members x objects evaluated at once, per device: on the CPU two
#: members' batches (measured on the 2-core EPYC at P = 26 and 108: 1.4-1.5
#: ms per member for mnist1d's training split, as a single run; 4 or 8
#: members at once, 1.6-4 ms, their activations leave the caches), on a GPU
#: enough to fill it.
#: Each member's objects go in the single network's batches
#: (:func:`suite.nn.mlp.eval_batch`), so the sums are the same.
EVAL_ROWS = {"cpu": 1 << 11, "gpu": 1 << 18}


_POOL = None
_CONTROLLER = None
_CORES = None


def one_blas_thread():
    """A context in which BLAS uses one thread (see :func:`bmm`); nothing
    where threadpoolctl is missing. The controller is made once: asking
    threadpoolctl afresh costs about 0.2 ms."""
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            return contextlib.nullcontext()
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def _cores() -> int:
    """The cores this process may run on (asked once: it costs ~10 us)."""
    global _CORES
    if _CORES is None:
        _CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return _CORES


def bmm(xp, a, b):
    """The members' products a[m] @ b[m], (P, i, k) @ (P, k, j).

    CuPy: one strided-batched GEMM. NumPy, with at least two members per
    core: the members split between the cores, each share a stack of GEMMs on
    one BLAS thread (:func:`one_blas_thread`); BLAS's own threads lose on
    products this small -- measured on the 2-core EPYC at P = 108, (128 x 32)
    @ (32 x 128) per member: 2.30 ms with two BLAS threads, 1.10 ms with one,
    0.65 ms with one per core over halves of the members. Fewer members (a
    full-batch population of one or two): BLAS's threads, which pay there.
    """
    workers, P = _cores(), a.shape[0]
    if xp is not np or workers < 2 or P < 2 * workers:
        return xp.matmul(a, b)
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(workers, thread_name_prefix="optbench-bmm")
    out = np.empty((P, a.shape[1], b.shape[2]), dtype=np.result_type(a, b))
    cuts = [P * w // workers for w in range(workers + 1)]
    with one_blas_thread():
        futures = [_POOL.submit(np.matmul, a[lo:hi], b[lo:hi], out=out[lo:hi])
                   for lo, hi in zip(cuts[1:-1], cuts[2:])]
        np.matmul(a[:cuts[1]], b[:cuts[1]], out=out[:cuts[1]])  # this thread's share
        for f in futures:
            f.result()
    return out


def _matmul_into(xp, a, b, out) -> None:
    """out[...] = a @ b, into a strided view of the gradient buffer. The
    product goes to a contiguous array first: a strided ``out`` would make
    NumPy leave BLAS for its own loops (8x slower measured at P = 108), and
    CuPy's batched GEMM writes contiguous output too; then one copy."""
    out[...] = bmm(xp, a, b)


def cross_entropy(xp, z, y):
    """Per member: mean over its objects of -log softmax(z)_y, and dQ/dz.

    z (P, B, k), y (P, B) labels; returns ((P,) losses, (P, B, k) gradient).
    The single network's operations (suite.nn.losses.cross_entropy), batched.
    """
    n = z.shape[-2]
    shifted = z - z.max(axis=-1, keepdims=True)
    e = xp.exp(shifted)
    s = e.sum(axis=-1, keepdims=True)
    picked = xp.take_along_axis(shifted, y[..., None], axis=-1)[..., 0]
    loss = (xp.log(s[..., 0]) - picked).sum(axis=-1) / n
    grad = e / s
    grad -= y[..., None] == xp.arange(z.shape[-1])  # 1 at the label: p_y - 1, else p - 0
    grad /= n
    return loss, grad


def squared(xp, z, y):
    """Per member: mean over its objects of 1/2 sum_q (z_q - y_q)^2, and dQ/dz."""
    if y.ndim == 2 and y.dtype.kind in "iu":  # labels: one-hot rows
        t = (y[..., None] == xp.arange(z.shape[-1])).astype(z.dtype)
    else:
        t = y.reshape(z.shape).astype(z.dtype, copy=False)
    diff = z - t
    n = z.shape[-2]
    return 0.5 * (diff * diff).reshape(z.shape[0], -1).sum(axis=1) / n, diff / n


BATCHED_LOSSES = {"cross_entropy": cross_entropy, "squared": squared}


class PopulationMLP:
    """``P`` MLPs with layer widths ``sizes``; ``seeds`` keys each member's dropout."""

    def __init__(self, P: int, sizes, activation="relu", loss="cross_entropy", dropout=0.0,
                 dropout_mode="inverted", xp=np, dtype=np.float32, seeds=None):
        self.P = int(P)
        self.sizes = [int(s) for s in sizes]
        self.n_layers = len(self.sizes) - 1
        self.activation = get_activation(activation)
        self.loss = get_loss(loss)
        self._loss = BATCHED_LOSSES[self.loss.name]
        hidden = self.n_layers - 1
        ps = list(dropout) if isinstance(dropout, (list, tuple)) else [float(dropout)] * hidden
        if len(ps) != hidden or not all(0.0 <= float(p) < 1.0 for p in ps):
            raise ValueError(f"dropout must be one p in [0, 1) or one per hidden layer ({hidden}), got {dropout!r}")
        if dropout_mode not in DROPOUT_MODES:
            raise ValueError(f"unknown dropout mode {dropout_mode!r}; allowed: {', '.join(DROPOUT_MODES)}")
        self.dropout = [float(p) for p in ps]
        self.dropout_mode = dropout_mode
        self.xp = xp
        seeds = list(range(self.P)) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != self.P:
            raise ValueError(f"{len(seeds)} dropout seeds for {self.P} members")
        self.keys = dropout_kernels.member_keys(seeds, xp) if any(self.dropout) else None
        self.dropout_offset = 0  # advances with every training forward pass, as in MLP
        self.layout = mlp_layout(self.sizes, self.activation)
        n = self.layout.size
        self.params = xp.zeros((self.P, n), dtype=dtype)
        self.grads = xp.zeros((self.P, n), dtype=dtype)
        self._p = self._views(self.params)
        self._g = self._views(self.grads)
        if self.activation.has_alpha:
            for l in range(1, self.n_layers):
                self._p[f"alpha{l}"][...] = PRELU_DEFAULT_ALPHA

    def _views(self, data) -> dict:
        """Per tensor, the (P, *shape) view into the (P, n) buffer."""
        return {s.name: data[:, s.offset:s.offset + s.size].reshape(self.P, *s.shape) for s in self.layout}

    def tensor(self, name: str):
        """The (P, *shape) view of parameter ``name`` (writes go to ``params``)."""
        return self._p[name]

    def grad_tensor(self, name: str):
        """The (P, *shape) view of ``name``'s gradient in ``grads``."""
        return self._g[name]

    def _alpha(self, l):
        # (P, 1) per member -> (P, 1, 1) to broadcast over objects and neurons
        return self._p[f"alpha{l}"][:, :, None] if self.activation.has_alpha else None

    # --- forward / backward --------------------------------------------------
    def forward(self, X, train: bool = False):
        """Outputs z^(L) (P, B, n_out) for inputs X (P, B, n_in), and the cache."""
        xp = self.xp
        cache = {"inputs": [], "preacts": [], "acts": [], "offsets": []}
        a = X
        for l in range(1, self.n_layers + 1):
            cache["inputs"].append(a)
            z = bmm(xp, a, self._p[f"W{l}"])
            z += self._p[f"b{l}"][:, None, :]
            cache["preacts"].append(z)
            if l == self.n_layers:
                return z, cache
            act = self.activation.forward(z, alpha=self._alpha(l), xp=xp)
            cache["acts"].append(act)
            a = self._dropout_forward(act, l, train, cache)
        raise AssertionError("unreachable")

    def _dropout_forward(self, act, l, train, cache):
        p = self.dropout[l - 1]
        if not train:
            cache["offsets"].append(None)
            if self.dropout_mode == "classic" and p > 0:
                return act * (1.0 - p)  # the lecture's inference rule
            return act
        if p == 0:
            cache["offsets"].append(None)
            return act
        out = self.xp.empty_like(act)
        offset = self.dropout_offset
        dropout_kernels.dropout_forward_population(act, out, p, self.keys, offset, self.dropout_mode)
        # One member's call covers act[m].size elements, as in the single network.
        self.dropout_offset = dropout_kernels.advance(offset, act[0].size)
        cache["offsets"].append(offset)
        return out

    def backward(self, cache, grad_z) -> None:
        """Fill ``grads`` with every member's dQ/dparams given dQ/dz^(L)."""
        xp = self.xp
        delta = grad_z
        for l in range(self.n_layers, 0, -1):
            a_prev = cache["inputs"][l - 1]
            _matmul_into(xp, a_prev.transpose(0, 2, 1), delta, self._g[f"W{l}"])
            if xp is np:
                delta.sum(axis=1, out=self._g[f"b{l}"])
            else:
                self._g[f"b{l}"][...] = delta.sum(axis=1)
            if l == 1:
                break
            grad_a = bmm(xp, delta, self._p[f"W{l}"].transpose(0, 2, 1))
            offset = cache["offsets"][l - 2]
            if offset is not None:
                dropout_kernels.dropout_backward_population(grad_a, grad_a, self.dropout[l - 2], self.keys,
                                                            offset, self.dropout_mode)
            delta, grad_alpha = self.activation.backward(
                grad_a, cache["preacts"][l - 2], alpha=self._alpha(l - 1), xp=xp, a=cache["acts"][l - 2])
            if grad_alpha is not None:
                self._g[f"alpha{l - 1}"][...] = grad_alpha.reshape(self.P, 1)

    def loss_and_grad(self, X, y):
        """Per member (P,) training losses on its batch (a device array), with
        every member's gradient left in ``grads``."""
        z, cache = self.forward(X, train=True)
        loss, grad_z = self._loss(self.xp, z, y)
        self.backward(cache, grad_z)
        return loss

    def evaluate(self, X, y, rows=None, batch: int | None = None):
        """Per member (loss, accuracy) at inference: device arrays (P,) of
        float64 (accuracy None for continuous targets).

        X (S, N, d), y (S, N): data sets, one per distinct data row;
        ``rows`` (P,) device ints: which one member m sees (None: S == P and
        member m sees X[m]). Each member's objects go in batches of ``batch``
        as the single network evaluates them; members go in groups whose
        activations stay within EVAL_ROWS rows, each group's data gathered
        when it is needed (a large population never holds P copies).
        """
        xp, n = self.xp, X.shape[1]
        batch = batch or eval_batch(xp)
        labels = y.ndim == 2 and y.dtype.kind in "iu"
        total = xp.zeros(self.P, dtype=np.float64)
        correct = xp.zeros(self.P, dtype=np.int64)
        group = max(1, EVAL_ROWS["cpu" if xp is np else "gpu"] // min(batch, n))
        for m0 in range(0, self.P, group):
            m1 = min(self.P, m0 + group)
            part = _Members(self, m0, m1)
            Xg, yg = (X[m0:m1], y[m0:m1]) if rows is None else (X[rows[m0:m1]], y[rows[m0:m1]])
            for start in range(0, n, batch):
                zb = part.forward(Xg[:, start:start + batch])
                yb = yg[:, start:start + batch]
                loss, _ = self._loss(xp, zb, yb)
                total[m0:m1] += loss.astype(np.float64) * zb.shape[1]
                if labels:
                    correct[m0:m1] += (zb.argmax(axis=-1) == yb).sum(axis=-1)
        return total / n, (correct / n if labels else None)


class _Members:
    """Members m0..m1 of a population, for an inference forward pass on them."""

    def __init__(self, pop: PopulationMLP, m0: int, m1: int):
        self.pop, self.m0, self.m1 = pop, m0, m1

    def forward(self, X):
        pop, xp = self.pop, self.pop.xp
        a = X
        for l in range(1, pop.n_layers + 1):
            z = bmm(xp, a, pop._p[f"W{l}"][self.m0:self.m1])
            z += pop._p[f"b{l}"][self.m0:self.m1, None, :]
            if l == pop.n_layers:
                return z
            alpha = pop._alpha(l)
            a = pop.activation.forward(z, alpha=None if alpha is None else alpha[self.m0:self.m1], xp=xp)
            p = pop.dropout[l - 1]
            if pop.dropout_mode == "classic" and p > 0:
                a = a * (1.0 - p)
        raise AssertionError("unreachable")

