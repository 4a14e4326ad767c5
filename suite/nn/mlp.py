"""Multi-layer perceptrons on a flat parameter buffer, P of one shape at once,
with back-propagation by hand. A single network is P = 1.

Member m's parameters are row m of one (P, n) buffer (``params``), laid out
by ``kernels.FlatLayout`` as ``W1, b1, alpha1, W2, ...``, and its gradients
row m of ``grads``, so one optimiser launch updates every layer of every
member. Each tensor is a strided view over the members (:meth:`MLP.tensor`),
e.g. ``W1`` of shape (P, n_in, h1). Layer l computes, for every member,

    z^(l) = a^(l-1) W_l + b_l        (P, B, h_{l-1}) @ (P, h_{l-1}, h_l)

hidden layers apply the activation sigma (and dropout in training), the
output layer is linear (the loss applies softmax or squared error).
Back-propagation (lecture section 2), with delta^(l) = dQ/dz^(l):

    dQ/dW_l = a^(l-1)^T delta^(l)           dQ/db_l = sum over objects of delta^(l)
    dQ/da^(l-1) = delta^(l) W_l^T           delta^(l-1) = dQ/da^(l-1) * sigma'(z^(l-1))

with dropout's factor xi / (1 - p) (inverted) or xi (classic) on dQ/da where
the forward pass applied it.

Every member sees its own mini-batch, its own dropout stream (Philox keyed
by its own seed and addressed by a running offset, so the backward pass
regenerates the masks: ``kernels.dropout``) and its own loss, averaged over
its batch.

**The same numbers alone or together.** A member's products are the same
BLAS calls whatever P is (:func:`bmm`): on the CPU each is split into blocks
of :data:`ROWS` output rows, every block one single-threaded GEMM, and the
(member, block) pieces are spread over the cores; reductions run along each
member's own axes. So a run trained alone (P = 1) and the same run in a
population make bit-identical numbers. On CuPy the products are one
strided-batched GEMM.

:meth:`MLP.member` gives one member as a single network (2-D inputs, its
row as a :class:`~kernels.FlatBuffer`), for the lecture's experiments,
Optimal Brain Damage and checkpoints. For the float64 gradient check a test
passes fixed dropout ``masks``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
from threadpoolctl import ThreadpoolController

from optbench.kernels import FlatBuffer, FlatLayout
from optbench.kernels import dropout as dropout_kernels
from optbench.kernels.backend import to_host

from .activations import PRELU_DEFAULT_ALPHA, get_activation
from .losses import get_loss

DROPOUT_MODES = dropout_kernels.MODES

#: Objects per batch at inference, per device. On the CPU a batch's
#: activations (1024 x 128 floats: 0.5 MB) stay in a core's L2 cache:
#: measured on the 2-core EPYC for the default MLP on mnist1d's 3000 training
#: objects, 1.4 ms in batches of 1024 against 3.5 ms in one batch of 3000.
#: A GPU wants batches large enough to fill it.
EVAL_BATCH = {"cpu": 1 << 10, "gpu": 1 << 16}
#: Rows of members x objects evaluated at once, per device: on the CPU two
#: members' batches (measured on the 2-core EPYC at P = 26 and 108: 1.4-1.5
#: ms per member for mnist1d's training split; 4 or 8 members at once,
#: 1.6-4 ms, their activations leave the caches), on a GPU enough to fill it.
EVAL_ROWS = {"cpu": 1 << 11, "gpu": 1 << 18}
#: Output rows per block of a product on the CPU: the unit that is one BLAS
#: call, whatever P is (a GEMM split another way rounds differently).
ROWS = 256
#: A product with fewer multiply-adds than this runs in the calling thread
#: (handing it to the pool costs more than the second core gives: a round
#: trip to a pool thread took 73 us on the 2-core Xeon, a 4M multiply-add
#: GEMM about 250 us on one core). Splitting the weight gradient's columns
#: too was tried and was slower there for a batch of 1024.
POOL_MIN_FLOPS = 1 << 22


def eval_batch(xp) -> int:
    """The inference batch for array module ``xp`` (see EVAL_BATCH)."""
    return EVAL_BATCH["cpu" if xp is np else "gpu"]


_POOL = None
_CORES = None
_CONTROLLER = None


def _cores() -> int:
    """The cores this process may run on (asked once: it costs ~10 us)."""
    global _CORES
    if _CORES is None:
        _CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return _CORES


def one_blas_thread():
    """A context in which BLAS runs on one thread: every product of ours is
    then split between the cores by :func:`bmm`, the same way whatever P is.
    The controller is made once: asking threadpoolctl afresh reads the
    process's memory map (84 us measured, against 3 us for the cached one)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def bmm(xp, a, b, out=None):
    """The members' products out[m] = a[m] @ b[m], (P, M, K) @ (P, K, N).

    CuPy: one strided-batched GEMM. NumPy: each member's product in blocks of
    :data:`ROWS` output rows, every block one GEMM on one BLAS thread (run
    training under :func:`one_blas_thread`), the (member range, block) pieces
    spread over the cores -- so a member's numbers do not depend on how many
    members share the call. Measured on the 2-core EPYC at P = 108, (128 x
    32) @ (32 x 128) per member: 2.30 ms with two BLAS threads, 1.10 ms with
    one, 0.65 ms with one per core over halves of the members.
    """
    if xp is not np:
        return xp.matmul(a, b) if out is None else xp.matmul(a, b, out=out)
    P, M, K = a.shape
    if M <= ROWS and (P < 2 or P * M * K * b.shape[2] < POOL_MIN_FLOPS):  # one block, this thread
        return np.matmul(a, b) if out is None else np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((P, M, b.shape[2]), dtype=np.result_type(a, b))
    blocks = [(r, min(M, r + ROWS)) for r in range(0, M, ROWS)]
    workers = _cores()
    if workers < 2 or P * M * K * b.shape[2] < POOL_MIN_FLOPS or P * len(blocks) < 2:
        for r0, r1 in blocks:
            np.matmul(a[:, r0:r1], b, out=out[:, r0:r1])
        return out
    if P >= workers:  # members split between the cores, each share every block
        cuts = [P * w // workers for w in range(workers + 1)]
        pieces = [(lo, hi, r0, r1) for lo, hi in zip(cuts[:-1], cuts[1:]) for r0, r1 in blocks]
    else:
        pieces = [(m, m + 1, r0, r1) for m in range(P) for r0, r1 in blocks]
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(workers, thread_name_prefix="optbench-bmm")
    shares = [pieces[w::workers] for w in range(workers)]

    def run(share):
        for lo, hi, r0, r1 in share:
            np.matmul(a[lo:hi, r0:r1], b[lo:hi], out=out[lo:hi, r0:r1])

    futures = [_POOL.submit(run, s) for s in shares[1:]]
    run(shares[0])  # this thread's share
    for f in futures:
        f.result()
    return out


@dataclass
class Cache:
    """What backward needs from forward: inputs, pre-activations, dropout draws."""

    inputs: list = field(default_factory=list)   # a^(l-1) as seen by layer l (after dropout)
    preacts: list = field(default_factory=list)  # z^(l)
    acts: list = field(default_factory=list)     # sigma(z^(l)) before dropout
    offsets: list = field(default_factory=list)  # dropout offset per hidden layer (None: off)
    masks: list | None = None


def dense_parameters(sizes) -> int:
    """Weights and biases of a dense network of layer widths ``sizes``
    ([n_in, *hidden, n_out]); PReLU's one alpha per layer aside."""
    return int(sum(h * m + m for h, m in zip(sizes[:-1], sizes[1:])))


def mlp_layout(sizes, activation) -> FlatLayout:
    """The flat buffer of a network: W1, b1 (alpha1 for PReLU), W2, ..."""
    tensors = []
    n_layers = len(sizes) - 1
    for l, (h, m) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        tensors += [(f"W{l}", (h, m)), (f"b{l}", (m,))]
        if activation.has_alpha and l < n_layers:
            tensors.append((f"alpha{l}", (1,)))
    return FlatLayout(tensors)


class MLP:
    """``members`` networks with layer widths sizes = [n_in, h_1, ..., h_k,
    n_out]; dropout = p per hidden layer; ``seeds`` key each member's
    dropout stream (default 0, 1, ...)."""

    def __init__(self, sizes, activation="relu", loss="cross_entropy", dropout=0.0, dropout_mode="inverted",
                 xp=np, dtype=np.float32, members: int = 1, seeds=None):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ValueError(f"layer sizes must be >= 2 positive widths [n_in, ..., n_out], got {sizes}")
        self.P = int(members)
        if self.P < 1:
            raise ValueError(f"a model needs at least one member, got {members}")
        self.sizes = sizes
        self.n_layers = len(sizes) - 1
        self.activation = get_activation(activation)
        self.loss = get_loss(loss)
        hidden = self.n_layers - 1
        ps = list(dropout) if isinstance(dropout, (list, tuple)) else [float(dropout)] * hidden
        if len(ps) != hidden:
            raise ValueError(f"dropout lists {len(ps)} rates but the network has {hidden} hidden layers")
        for p in ps:
            if not 0.0 <= float(p) < 1.0:
                raise ValueError(f"dropout p must lie in [0, 1), got {p}")
        if dropout_mode not in DROPOUT_MODES:
            raise ValueError(f"unknown dropout mode {dropout_mode!r}; allowed: {', '.join(DROPOUT_MODES)}")
        self.dropout = [float(p) for p in ps]
        self.dropout_mode = dropout_mode
        self.xp = xp
        seeds = list(range(self.P)) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != self.P:
            raise ValueError(f"{len(seeds)} dropout seeds for {self.P} members")
        self.seeds = seeds
        self.keys = dropout_kernels.member_keys(seeds, xp) if any(self.dropout) else None
        self.dropout_offset = 0  # advances with every training forward pass
        self.layout = mlp_layout(sizes, self.activation)
        n = self.layout.size
        self.params = xp.zeros((self.P, n), dtype=dtype)
        self.grads = xp.zeros((self.P, n), dtype=dtype)
        self._p = self._views(self.params)
        self._g = self._views(self.grads)
        # Per layer l (index l - 1): the views a step uses, made once (a step
        # of a small model is a few microseconds of Python per view made).
        L = range(1, self.n_layers + 1)
        self._W = [self._p[f"W{l}"] for l in L]
        self._WT = [w.transpose(0, 2, 1) for w in self._W]
        self._b = [self._p[f"b{l}"][:, None, :] for l in L]
        self._gW = [self._g[f"W{l}"] for l in L]
        self._gb = [self._g[f"b{l}"] for l in L]
        if self.activation.has_alpha:
            for l in range(1, self.n_layers):
                self._p[f"alpha{l}"][...] = PRELU_DEFAULT_ALPHA
        self._works: dict = {}  # batch size -> the training step's buffers (step_loss_and_grad)

    def _views(self, data) -> dict:
        """Per tensor, the (P, *shape) view into the (P, n) buffer."""
        return {s.name: data[:, s.offset:s.offset + s.size].reshape(self.P, *s.shape) for s in self.layout}

    # --- parameters -----------------------------------------------------------
    def tensor(self, name: str):
        """The (P, *shape) view of parameter ``name`` (writes go to ``params``)."""
        return self._p[name]

    def grad_tensor(self, name: str):
        """The (P, *shape) view of ``name``'s gradient in ``grads``."""
        return self._g[name]

    def member(self, m: int = 0) -> "Network":
        """Member ``m`` as a single network (views into the buffers)."""
        return Network(self, m)

    def set_layers(self, layers, m: int = 0) -> None:
        """Copy [(W (h, m), b (m,)), ...] from the host into member ``m``'s row."""
        if len(layers) != self.n_layers:
            raise ValueError(f"got {len(layers)} layers for a network of {self.n_layers}")
        for l, (W, b) in enumerate(layers, start=1):
            for name, value in ((f"W{l}", W), (f"b{l}", b)):
                view = self._p[name][m]
                if tuple(np.shape(value)) != view.shape:
                    raise ValueError(f"{name} has shape {np.shape(value)}, the network needs {view.shape}")
                view[...] = self.xp.asarray(value, dtype=view.dtype)

    def _alpha(self, l):
        # (P, 1) per member -> (P, 1, 1) to broadcast over objects and neurons
        return self._p[f"alpha{l}"][:, :, None] if self.activation.has_alpha else None

    # --- forward / backward ----------------------------------------------------
    def forward(self, X, train: bool = False, masks=None):
        """Outputs z^(L) (P, B, n_out) for inputs X (P, B, n_in), and the cache.

        train: apply dropout (a fresh mask per call unless ``masks`` is given:
        a list of 0/1 arrays per hidden layer, broadcastable to (P, B, h), for
        gradient checks)."""
        xp = self.xp
        cache = Cache(masks=masks)
        a = X
        for l in range(1, self.n_layers + 1):
            cache.inputs.append(a)
            z = bmm(xp, a, self._W[l - 1])
            z += self._b[l - 1]
            cache.preacts.append(z)
            if l == self.n_layers:
                return z, cache
            act = self.activation.forward(z, alpha=self._alpha(l), xp=xp)
            cache.acts.append(act)
            a = self._dropout_forward(act, l, train, cache)
        raise AssertionError("unreachable")

    def _dropout_forward(self, act, l, train, cache):
        p = self.dropout[l - 1]
        if not train:
            cache.offsets.append(None)
            if self.dropout_mode == "classic" and p > 0:
                return act * (1.0 - p)  # the lecture's inference rule
            return act
        if cache.masks is not None:
            cache.offsets.append(None)
            return act * (cache.masks[l - 1] * dropout_kernels.training_scale(p, self.dropout_mode))
        if p == 0:
            cache.offsets.append(None)
            return act
        out = self.xp.empty_like(act)
        offset = self.dropout_offset
        dropout_kernels.dropout_forward_population(act, out, p, self.keys, offset, self.dropout_mode)
        # One member's call covers act[m].size elements, as a network alone.
        self.dropout_offset = dropout_kernels.advance(offset, act[0].size)
        cache.offsets.append(offset)
        return out

    def _dropout_backward(self, grad, l, cache):
        p = self.dropout[l - 1]
        if cache.masks is not None and p > 0:
            return grad * (cache.masks[l - 1] * dropout_kernels.training_scale(p, self.dropout_mode))
        offset = cache.offsets[l - 1]
        if offset is None:
            return grad
        dropout_kernels.dropout_backward_population(grad, grad, p, self.keys, offset, self.dropout_mode)
        return grad

    def backward(self, cache, grad_z) -> None:
        """Fill ``grads`` with every member's dQ/dparams given dQ/dz^(L)."""
        xp = self.xp
        delta = grad_z
        for l in range(self.n_layers, 0, -1):
            a_prev = cache.inputs[l - 1]
            # Into the gradient buffer where its view is contiguous (one
            # member), else into a contiguous product and one copy: a strided
            # ``out`` makes NumPy leave BLAS for its own loops (8x slower
            # measured at P = 108).
            grad_w = self._gW[l - 1]
            if self.P == 1:  # the view is contiguous
                bmm(xp, a_prev.transpose(0, 2, 1), delta, out=grad_w)
            else:
                grad_w[...] = bmm(xp, a_prev.transpose(0, 2, 1), delta)
            delta.sum(axis=1, out=self._gb[l - 1])  # CuPy too takes a strided out: one launch
            if l == 1:
                break
            grad_a = bmm(xp, delta, self._WT[l - 1])
            grad_a = self._dropout_backward(grad_a, l - 1, cache)
            delta, grad_alpha = self.activation.backward(
                grad_a, cache.preacts[l - 2], alpha=self._alpha(l - 1), xp=xp, a=cache.acts[l - 2])
            if grad_alpha is not None:
                self._g[f"alpha{l - 1}"][...] = grad_alpha.reshape(self.P, 1)

    def loss_and_grad(self, X, y, masks=None):
        """Per member (P,) training losses on its batch (a device array), with
        every member's gradient left in ``grads``."""
        z, cache = self.forward(X, train=True, masks=masks)
        loss, grad_z = self.loss.value_and_grad(self.xp, z, y)
        self.backward(cache, grad_z)
        return loss

    # --- the training step, into buffers made once ----------------------------
    def step_loss_and_grad(self, X, y, base, idx):
        """A training step's loss and gradients, its batch gathered on the
        device: member m's objects ``idx[m]`` (P, B) of its data row, at flat
        positions ``base[m] + idx[m]`` into X (S, N, d) and y (S, N[, k]),
        ``base`` (P, 1) = each member's data row times N. Returns the (P,)
        losses, gradients in ``grads``.

        Every intermediate -- the gathered batch, each layer's outputs, the
        loss's and the backward pass's -- lives in buffers made on the first
        step at this batch size and reused by every later one, and the numbers
        are those of :meth:`loss_and_grad` bit for bit (the same operations in
        the same order). So a step allocates nothing: on a GPU it can be
        captured as a CUDA graph, on the CPU it spares the allocator. A PReLU
        network (no such activation path) takes :meth:`loss_and_grad`."""
        xp = self.xp
        if self.activation.into is None:
            return self.loss_and_grad(X[base // X.shape[1], idx], y[base // X.shape[1], idx])
        work = self._step_work(idx.shape[1], X, y)
        xp.add(base, idx, out=work.index)
        S, N = X.shape[:2]
        # NumPy buffers a take into out= unless told the positions are in range (they are)
        fast = {"mode": "clip"} if xp is np else {}
        xp.take(X.reshape(S * N, -1), work.index, axis=0, out=work.x, **fast)
        xp.take(y.reshape(S * N, *y.shape[2:]), work.index, axis=0, out=work.y, **fast)
        forward, backward = self.activation.into
        a, offsets = work.x, []
        for l in range(1, self.n_layers + 1):  # forward
            z = work.z[l - 1]
            bmm(xp, a, self._W[l - 1], out=z)
            z += self._b[l - 1]
            if l == self.n_layers:
                break
            forward(xp, z, work.a[l - 1], work.grad_a[l - 1], work.mask[l - 1])
            a, offset = self._dropout_into(work.a[l - 1], l, work.drop[l - 1])
            offsets.append(offset)
            work.inputs[l] = a
        self.loss.into(xp, z, work.y, work.loss)
        delta = work.loss.dz
        for l in range(self.n_layers, 0, -1):  # backward
            a_prev = work.inputs[l - 1]
            if self.P == 1:  # the gradient's view is contiguous: the product goes straight there
                bmm(xp, a_prev.transpose(0, 2, 1), delta, out=self._gW[l - 1])
            else:  # a strided out would leave BLAS (see backward): a contiguous product, then one copy
                bmm(xp, a_prev.transpose(0, 2, 1), delta, out=work.gW[l - 1])
                self._gW[l - 1][...] = work.gW[l - 1]
            delta.sum(axis=1, out=self._gb[l - 1])
            if l == 1:
                break
            grad_a = work.grad_a[l - 2]
            bmm(xp, delta, self._WT[l - 1], out=grad_a)
            if offsets[l - 2] is not None:
                dropout_kernels.dropout_backward_population(grad_a, grad_a, self.dropout[l - 2], self.keys,
                                                            offsets[l - 2], self.dropout_mode)
            # z's buffer is free once forward is done: the derivative's scratch
            backward(xp, grad_a, work.z[l - 2], work.a[l - 2], grad_a, work.z[l - 2], work.mask[l - 2])
            delta = grad_a
        return work.loss.loss

    def _dropout_into(self, act, l, out):
        """Inverted (or classic) dropout of layer l's activations into ``out``:
        (what the next layer sees, the draw's offset or None)."""
        p = self.dropout[l - 1]
        if p == 0:
            return act, None
        offset = self.dropout_offset
        dropout_kernels.dropout_forward_population(act, out, p, self.keys, offset, self.dropout_mode)
        self.dropout_offset = dropout_kernels.advance(offset, act[0].size)
        return out, offset

    def _step_work(self, B: int, X, y) -> SimpleNamespace:
        """The buffers of a training step at batch size B (made once per B)."""
        key = (B, y.dtype.str, y.shape[2:])
        work = self._works.get(key)
        if work is not None:
            return work
        xp, P, dt = self.xp, self.P, self.params.dtype
        hidden, k = self.sizes[1:-1], self.sizes[-1]
        labels = y.ndim == 2 and y.dtype.kind in "iu"
        layer = lambda h, dtype=dt: xp.empty((P, B, h), dtype=dtype)
        work = SimpleNamespace(
            index=xp.empty((P, B), dtype=np.int64), x=layer(self.sizes[0], X.dtype),
            y=xp.empty((P, B, *y.shape[2:]), dtype=y.dtype if labels else dt),
            z=[layer(h) for h in self.sizes[1:]], a=[layer(h) for h in hidden],
            grad_a=[layer(h) for h in hidden], mask=[layer(h, bool) for h in hidden],
            drop=[layer(h) if p > 0 else None for h, p in zip(hidden, self.dropout)],
            gW=[xp.empty((P, m, h), dtype=dt) for m, h in zip(self.sizes[:-1], self.sizes[1:])] if P > 1 else None,
            loss=SimpleNamespace(loss=xp.empty(P, dtype=dt), dz=layer(k), tmp=layer(k), top=layer(1),
                                 s=layer(1), picked=xp.empty((P, B), dtype=dt), lse=xp.empty((P, B), dtype=dt),
                                 at=xp.empty(P * B, dtype=np.int64),
                                 row_at=xp.arange(0, P * B * k, k, dtype=np.int64),
                                 classes=xp.arange(k, dtype=np.int64)))
        work.inputs = [work.x] + [None] * len(hidden)
        self._works[key] = work
        return work

    def evaluate(self, X, y, rows=None, batch: int | None = None):
        """Per member (loss, accuracy) at inference: device arrays (P,) of
        float64 (accuracy None for continuous targets).

        X (S, N, d), y (S, N): data sets, one per distinct data row;
        ``rows`` (P,) device ints: which one member m sees (None: S == P and
        member m sees X[m]). Each member's objects go in batches of ``batch``
        (default :func:`eval_batch`); members go in groups whose activations
        stay within EVAL_ROWS rows, each group's data gathered when it is
        needed (a large population never holds P copies).
        """
        xp, n = self.xp, X.shape[1]
        batch = batch or eval_batch(xp)
        labels = y.ndim == 2 and y.dtype.kind in "iu"
        total = xp.zeros(self.P, dtype=np.float64)
        correct = xp.zeros(self.P, dtype=np.int64)
        group = max(1, EVAL_ROWS["cpu" if xp is np else "gpu"] // min(batch, n))
        for m0 in range(0, self.P, group):
            m1 = min(self.P, m0 + group)
            Xg, yg = (X[m0:m1], y[m0:m1]) if rows is None else (X[rows[m0:m1]], y[rows[m0:m1]])
            for start in range(0, n, batch):
                zb = self._infer(Xg[:, start:start + batch], m0, m1)
                yb = yg[:, start:start + batch]
                loss, _ = self.loss.value_and_grad(xp, zb, yb, grad=False)
                total[m0:m1] += loss.astype(np.float64) * zb.shape[1]
                if labels:
                    correct[m0:m1] += (zb.argmax(axis=-1) == yb).sum(axis=-1)
        return total / n, (correct / n if labels else None)

    def _infer(self, X, m0: int, m1: int):
        """The outputs of members m0..m1 at inference (no dropout draw)."""
        xp, a = self.xp, X
        for l in range(1, self.n_layers + 1):
            z = bmm(xp, a, self._p[f"W{l}"][m0:m1])
            z += self._p[f"b{l}"][m0:m1, None, :]
            if l == self.n_layers:
                return z
            alpha = self._alpha(l)
            a = self.activation.forward(z, alpha=None if alpha is None else alpha[m0:m1], xp=xp)
            p = self.dropout[l - 1]
            if self.dropout_mode == "classic" and p > 0:
                a = a * (1.0 - p)
        raise AssertionError("unreachable")


class Network:
    """One member of an :class:`MLP` as a single network: ``params`` and
    ``grads`` its rows as :class:`~kernels.FlatBuffer` (``params["W1"]``, ...),
    and forward, backward, loss and evaluation on 2-D inputs (B, n_in). Views
    into the model, so a write here is a write there."""

    def __init__(self, model: MLP, m: int = 0):
        self.model, self.m = model, m
        self.sizes, self.n_layers, self.layout = model.sizes, model.n_layers, model.layout
        self.activation, self.loss, self.xp = model.activation, model.loss, model.xp
        self.dropout, self.dropout_mode = model.dropout, model.dropout_mode
        self.params = FlatBuffer(model.layout, model.params[m])
        self.grads = FlatBuffer(model.layout, model.grads[m])

    def set_layers(self, layers) -> None:
        self.model.set_layers(layers, self.m)

    def forward(self, X, train: bool = False, masks=None):
        """z (B, n_out) and the cache (of 2-D arrays), for inputs X (B, n_in) (P must be 1)."""
        self._alone()
        z, cache = self.model.forward(X[None], train, None if masks is None else [mk[None] for mk in masks])
        flat = Cache([a[0] for a in cache.inputs], [a[0] for a in cache.preacts], [a[0] for a in cache.acts],
                     cache.offsets, masks)
        flat.batched = cache
        return z[0], flat

    def backward(self, cache, grad_z) -> None:
        """Gradients into ``grads`` from a cache of :meth:`forward` and dQ/dz (B, n_out)."""
        self._alone()
        self.model.backward(cache.batched, grad_z[None])

    def loss_and_grad(self, X, y, masks=None):
        """The training loss on (X, y) (a 0-d device array), gradients in ``grads``."""
        self._alone()
        return self.model.loss_and_grad(X[None], y[None], None if masks is None else [mk[None] for mk in masks])[0]

    def value_and_grad(self, z, y):
        """The loss of outputs z (B, k) on targets y, and dQ/dz (B, k)."""
        loss, grad = self.loss.value_and_grad(self.xp, z[None], y[None])
        return loss[0], grad[0]

    def evaluate(self, X, y, batch: int | None = None) -> tuple[float, float | None]:
        """(mean loss, accuracy) at inference on 2-D data, read back."""
        self._alone()
        loss, acc = self.model.evaluate(X[None], y[None], batch=batch)
        values = to_host(loss[0], *([] if acc is None else [acc[0]]))
        return values[0], (values[1] if acc is not None else None)

    def _alone(self) -> None:
        if self.model.P != 1:
            raise ValueError(f"a single network's forward and backward need a model of one member, "
                             f"this one has {self.model.P}")
