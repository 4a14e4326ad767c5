"""An epoch of a population: its steps launched one by one, or captured
once as a CUDA graph and replayed (issue 22).

A step (:func:`training_step`) is each member's batch gathered on the
device, the batched loss and gradients (:meth:`MLP.step_loss_and_grad`, into
buffers made once), the device-side step account and one update launch per
rule. :func:`train_epoch` launches an epoch's steps from Python.

On a GPU every launch from Python costs host time (about 5-20 us in CuPy),
more than a small MLP's kernels take, so the device waits on Python. An
epoch of a population is a fixed sequence of kernels over fixed buffers:
only the batch order and the optimisers' per-step scalars change between
epochs, and both are uploaded into the same buffers every epoch.
:class:`CapturedEpochs` therefore captures the steps of an epoch once
(``Stream.begin_capture``) and replays them every later epoch as one graph
launch, with the same numbers as launched steps. Where a step cannot be
captured -- PReLU (its alpha gradient allocates), dropout (its draws' offsets
advance on the host), per-layer gradient norms, a rule that updates in
stages, ``--no-graph``, a capture the device refuses -- the epochs are
launched, and the reason is said once per process.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from optbench.kernels import PopulationOptimizer
from optbench.kernels.steps import StepAccount

from ..nn.mlp import MLP

#: Set (to anything but "" or "0") to train without CUDA graphs: ``optbench run --no-graph``.
NO_GRAPH = "OPTBENCH_NO_GRAPH"
_SAID: set = set()


def batch_bounds(n: int, batch: int) -> list[tuple[int, int]]:
    """Each step's [lo, hi) into an epoch's order of ``n`` objects: batches
    of ``batch``, the last one short."""
    return [(lo, min(lo + batch, n)) for lo in range(0, n, batch)]


def train_epoch(model: MLP, opt: PopulationOptimizer, X, y, rows, orders, bounds, active, layer_norms: bool = False):
    """One epoch of every member whose ``active`` flag is set, nothing read
    back until its end: per step, each member's batch (its own order, its own
    data row), the batched loss and gradients, the device-side step account,
    one update launch per rule. X (S, N, d), y (S, N): the data rows; rows
    (P,) device ints: each member's; orders (P, N) device ints: each member's
    order this epoch; bounds: the steps' [lo, hi) into the orders
    (:func:`batch_bounds`). The single run and Optimal Brain Damage's
    retraining both train with this.

    Returns host arrays: norm_sum (P,), bad_step (P,) (-1: finite
    throughout) and, with ``layer_norms``, the (P, L) sums of ||dQ/dW_l||.
    """
    xp, P, L = model.xp, model.P, model.n_layers
    account = StepAccount(xp, P, active=active)
    layer_sums = xp.zeros((P, L), dtype=np.float32) if layer_norms else None
    base = rows[:, None] * X.shape[1]  # each member's first object in the flat (S N) data
    gsq = xp.empty((P, 1, 1), dtype=np.float32)
    opt.begin_epoch(len(bounds))
    for k, (lo, hi) in enumerate(bounds):
        training_step(model, opt, account, X, y, base, orders[:, lo:hi], k, layer_sums, gsq)
        if xp is np and not account.active.any():  # every member stopped: nothing left to train
            break
    return epoch_result(account, layer_sums)


def epoch_result(account: StepAccount, layer_sums=None):
    """An epoch's account as host arrays, in one read: norm_sum (P,),
    bad_step (P,) and, with ``layer_sums``, the (P, L) per-layer sums."""
    xp, P = account.xp, account.P
    parts = [account.norm_sum.astype(np.float64), account.bad_step.astype(np.float64)]
    if layer_sums is not None:
        parts.append(layer_sums.T.astype(np.float64))
    host = xp.concatenate([p.reshape(-1) for p in parts])  # one read
    host = host.get() if xp is not np else host
    sums = host[2 * P:].reshape(-1, P).T if layer_sums is not None else None
    return host[:P], host[P:2 * P].astype(int), sums


def training_step(model: MLP, opt: PopulationOptimizer, account: StepAccount, X, y, base, idx, k: int,
                  layer_sums=None, gsq=None) -> None:
    """Step ``k`` of an epoch for every member: its batch (objects ``idx``
    (P, B) of its data row, whose first object is at flat position ``base``
    (P, 1) of the (S N) data), the batched loss and gradients, the step
    account (and with ``layer_sums``, (P, L), the per-layer gradient norms),
    one update launch per rule. ``gsq``: a (P, 1, 1) float32 buffer for the
    squared gradient norms (None: a new one). Without layer_sums it
    allocates nothing once its batch size has been seen
    (:meth:`MLP.step_loss_and_grad`)."""
    xp, P = model.xp, model.P
    loss = model.step_loss_and_grad(X, y, base, idx)
    g = model.grads
    account.step(k, loss, _row_dots(xp, g, gsq))
    if layer_sums is not None:
        norms = xp.stack([xp.linalg.norm(model.grad_tensor(f"W{l}").reshape(P, -1), axis=1)
                          for l in range(1, model.n_layers + 1)], axis=1)
        layer_sums += norms * account.active[:, None]
    opt.step(g, active=account.active)


def _row_dots(xp, g, out=None):
    """Each member's g . g, without a (P, n) temporary, summed the same way
    whatever P is (einsum's loop sums a row differently for different P),
    into ``out`` (P, 1, 1) where given. NumPy: vecdot, one BLAS dot per row
    (0.42 ms at P = 108 against 1.5 ms for (g * g).sum(axis=1), measured on
    the 2-core Xeon). CuPy: one batched (1 x n) @ (n x 1) product per
    member, the same cuBLAS call as the model's products, in one launch."""
    P = g.shape[0]
    if xp is np:
        return np.vecdot(g, g) if out is None else np.vecdot(g, g, out=out.reshape(P))
    if out is None:
        return xp.matmul(g[:, None, :], g[:, :, None]).reshape(P)
    return xp.matmul(g[:, None, :], g[:, :, None], out=out).reshape(P)


def why_not_captured(model: MLP, opt: PopulationOptimizer, layer_norms: bool) -> str | None:
    """Why a population's epochs are launched step by step instead of
    captured as a CUDA graph; None when they can be captured."""
    if model.xp is np:
        return "not on a GPU"
    if os.environ.get(NO_GRAPH, "") not in ("", "0"):
        return "--no-graph"
    if not hasattr(model.xp.cuda, "Graph") or not hasattr(model.xp.cuda.Stream, "begin_capture"):
        return "this CuPy cannot capture graphs"
    if model.activation.into is None:
        return f"{model.activation.name}'s alpha gradient allocates"
    if any(model.dropout):
        return "dropout's draws advance their offset on the host"
    if layer_norms:
        return "per-layer gradient norms allocate"
    return opt.why_not_capturable


class CapturedEpochs:
    """A population's epochs: the first launched step by step (it makes every
    buffer and builds every kernel), the second captured as a CUDA graph and
    launched, every later one that graph replayed.

    Per epoch the host does three things: one upload (the members' batch
    order and the optimisers' scalar table, packed into one buffer), one
    graph launch, and one read of the epoch's account. The graph holds the
    account's reset, every step, and the copy of the account into the
    buffer that is read. X (S, N, d), y (S, N): the data rows; rows (P,)
    device ints: each member's; bounds: the steps' [lo, hi); active: the
    members' flags."""

    def __init__(self, model: MLP, opt: PopulationOptimizer, X, y, rows, bounds, active):
        xp, P = model.xp, model.P
        self.model, self.opt, self.X, self.y, self.bounds, self.xp = model, opt, X, y, bounds, xp
        self.account = StepAccount(xp, P, active=active)
        self.base = rows[:, None] * X.shape[1]
        self.gsq = xp.empty((P, 1, 1), dtype=np.float32)
        self.result = xp.empty(2 * P, dtype=np.float64)  # norm_sum, then bad_step: what the host reads
        self.upload = None  # the order and the scalar table, one device buffer (made with the first epoch)
        self.graph, self.epochs, self.failed = None, 0, None

    def run(self, orders: np.ndarray):
        """One epoch with the members' ``orders`` (P, N) host ints: what
        :func:`train_epoch` returns."""
        n = len(self.bounds)
        self._upload(np.ascontiguousarray(orders, dtype=np.int64), self.opt.epoch_table(n))
        self.opt.begin_epoch(n, table=self.table)
        if self.graph is not None:
            self.graph.launch()  # on the current stream, after the upload and before the read
            self.opt.advance(n)
        elif self.epochs == 0 or self.failed:
            self._epoch()
        else:
            self.graph = self._capture()
            if self.graph is None:
                self._epoch()
            else:
                self.graph.launch()
        self.epochs += 1
        host = self.result.get()  # the one read
        P = self.model.P
        return host[:P], host[P:].astype(int), None

    def _capture(self):
        """This epoch's steps captured as a graph (nothing runs yet), or None
        where the device refused the capture: then nothing of it happened on
        the device, the optimiser's step count is put back, training goes on
        launching its epochs, and says why once. (A capture must be on a
        stream of its own; the graph is launched on the current one, which
        orders it after the upload and before the read.)"""
        t = self.opt.t
        stream = self.xp.cuda.Stream(non_blocking=True)
        try:
            with stream:
                stream.begin_capture()
                try:
                    self._epoch()
                finally:
                    graph = stream.end_capture()
            return graph
        except Exception as exc:  # CUDA's refusal comes as CuPy's runtime error
            self.opt.t, self.failed = t, f"the device refused the capture ({type(exc).__name__}: {exc})"
            say_once(self.failed)
            return None

    def _upload(self, orders: np.ndarray, table: np.ndarray) -> None:
        """Both into one host buffer and up in one copy; ``self.orders`` and
        ``self.table`` are views of the device buffer (offsets kept to 256
        bytes, an allocation's alignment)."""
        at = -(-orders.nbytes // 256) * 256
        if self.upload is None:
            self.host = np.zeros(at + table.nbytes, dtype=np.uint8)
            self.upload = self.xp.asarray(self.host)
            self.orders = self.upload[:orders.nbytes].view(np.int64).reshape(orders.shape)
            self.table = self.upload[at:].view(np.float32)
        self.host[:orders.nbytes] = orders.reshape(-1).view(np.uint8)
        self.host[at:] = table.view(np.uint8)
        self.upload.set(self.host)

    def _epoch(self) -> None:
        xp, P, account = self.xp, self.model.P, self.account
        account.reset()
        for k, (lo, hi) in enumerate(self.bounds):
            training_step(self.model, self.opt, account, self.X, self.y, self.base, self.orders[:, lo:hi], k,
                          None, self.gsq)
        xp.copyto(self.result[:P], account.norm_sum)
        xp.copyto(self.result[P:], account.bad_step)


def say_once(reason: str) -> None:
    """Tell, once per process and reason, that training launches its steps
    one by one on a GPU."""
    if reason not in _SAID and reason != "not on a GPU":
        _SAID.add(reason)
        print(f"optbench: training without CUDA graphs: {reason}", file=sys.stderr)
