"""The launch budget: device launches, allocations and host synchronisations
per training step and epoch, launched and replayed as a CUDA graph, counted
on the CuPy stand-in (``optbench bench --launches``).

On a GPU a small model's step costs what its launches and host reads cost,
not what its arithmetic costs: each kernel launch takes a few microseconds of
CPU time, and each read of a device value back to the host (a
synchronisation) stalls the host until the device has drained its queue --
about 10-20 us, after which the device idles while the host queues the next
work. An allocation inside a step is what keeps a step from being captured
as a CUDA graph and replayed (issue 22): CUDA refuses it inside a capture.
None of these shows on a CPU, and all can be counted without a GPU: the
CuPy stand-in that ships with the package
(:mod:`optbench.kernels.testing.cupy_standin`) runs the exact code path on
NumPy and counts every device operation and every read.

This measures one epoch of :func:`optbench.suite.training.loop.train_epoch`
(the step loop) and one evaluation, for the default study's MLP
(40-128-128-10, ReLU, softmax cross-entropy) on data of mnist1d's shape, per
batch size, for one run and for populations.
"""

from __future__ import annotations

import numpy as np

from optbench.kernels import PopulationOptimizer
from optbench.kernels.backend import get_backend
from optbench.kernels.testing.cupy_standin import installed as standin

from ..data.batches import epoch_order
from ..nn.mlp import MLP
from ..training.epoch import CapturedEpochs, batch_bounds, train_epoch

#: mnist1d's training split: 3000 objects, 40 inputs, 10 classes.
SHAPE = (3000, 40, 10)
HIDDEN = (128, 128)
BATCH_SIZES = (32, 256, 3000)


def count(batch_sizes=BATCH_SIZES, rule: str = "adam", log=print) -> list[dict]:
    """One row per batch size: steps in an epoch, launches per step, host
    syncs and host-to-device copies per epoch of one run (training alone),
    and the launches and syncs of one evaluation of the training split."""
    with standin() as cp:
        rows = []
        for batch in batch_sizes:
            epoch = _epoch(cp, 1, rule, batch)
            rows.append({"batch": batch, "steps": epoch["steps"], "launches_per_step": epoch["launches_per_step"],
                         "launches_per_epoch": epoch["launches_per_epoch"],
                         "graph_launches_per_epoch": epoch["graph_launches_per_epoch"],
                         "allocs_per_epoch": epoch["allocs_per_epoch"],
                         "syncs_per_epoch": epoch["syncs_per_epoch"], "h2d_per_epoch": epoch["h2d_per_epoch"],
                         "eval_launches": epoch["eval_launches"], "eval_syncs": epoch["eval_syncs"]})
            r = rows[-1]
            log(f"{batch:>6} {r['steps']:>6} {r['launches_per_step']:>13.1f} {r['launches_per_epoch']:>14} "
                f"{r['graph_launches_per_epoch']:>12} {r['allocs_per_epoch']:>12} "
                f"{r['syncs_per_epoch']:>12} {r['h2d_per_epoch']:>10} {r['eval_launches']:>12} {r['eval_syncs']:>10}")
        return rows


def count_population(P: int, rule: str = "adam", batch: int = 32, log=print) -> dict:
    """One epoch of P members trained as one population (the same MLP and
    data shape): launches per population step, syncs and host-to-device
    copies per epoch. The point: they do not grow with P."""
    with standin() as cp:
        epoch = _epoch(cp, P, rule, batch)
    row = {"members": P, "batch": batch, **{k: epoch[k] for k in ("steps", "launches_per_step", "launches_per_epoch",
                                                                   "graph_launches_per_epoch", "allocs_per_epoch",
                                                                   "syncs_per_epoch", "h2d_per_epoch")}}
    log(f"population of {P:>5}: {row['launches_per_step']:.1f} launches/step ({row['launches_per_epoch']} an "
        f"epoch; {row['graph_launches_per_epoch']} replayed as a CUDA graph), {row['allocs_per_epoch']} "
        f"allocations per epoch, {row['syncs_per_epoch']} syncs and {row['h2d_per_epoch']} host-to-device copies per epoch")
    return row


def _epoch(cp, P: int, rule: str, batch: int, shape=SHAPE, hidden=HIDDEN, activation: str = "relu",
           loss: str = "cross_entropy") -> dict:
    """Counts of one epoch of ``train_epoch``, one replayed as a CUDA graph,
    and one evaluation, for P members of the MLP ``hidden`` on data of
    ``shape`` (objects, inputs, classes or outputs)."""
    get_backend("cupy")
    n, d, k = shape
    rng = np.random.default_rng(0)
    X = cp.asarray(rng.standard_normal((1, n, d)).astype(np.float32))
    y = cp.asarray(rng.integers(0, k, (1, n)) if loss == "cross_entropy"
                   else rng.standard_normal((1, n, k)).astype(np.float32))
    rows = cp.zeros(P, dtype=np.int64)
    model = MLP([d, *hidden, k], activation, loss, xp=cp, members=P)
    model.params[...] = cp.asarray(rng.standard_normal(model.params.shape).astype(np.float32) * 0.05)
    opt = PopulationOptimizer(model.params, [rule] * P, [{"lr": 1e-3 * (m + 1)} for m in range(P)],
                              backend="cupy", layout=model.layout)
    bounds = batch_bounds(n, batch)
    active = cp.ones(P, dtype=np.int32)

    def host_orders(epoch):
        return np.stack([epoch_order(n, epoch, m) for m in range(P)])

    def orders(epoch):
        return cp.asarray(host_orders(epoch))

    train_epoch(model, opt, X, y, rows, orders(0), bounds, active)  # builds every kernel first
    order = orders(1)
    cp.reset_counts()
    train_epoch(model, opt, X, y, rows, order, bounds, active)
    training = cp.counts()
    cp.reset_counts()
    loss, acc = model.evaluate(X, y, rows)
    cp.stack([loss, acc if acc is not None else cp.full(P, np.nan)]).get()  # the loop's one read per split
    evaluation = cp.counts()
    # The same epochs captured once as a CUDA graph and replayed (what training does on a GPU)
    captured = CapturedEpochs(model, opt, X, y, rows, bounds, active)
    for epoch in (2, 3):  # launched, then captured
        captured.run(host_orders(epoch))
    order = host_orders(4)
    cp.reset_counts()
    captured.run(order)
    graphed = cp.counts()
    return {"steps": len(bounds), "launches_per_step": training["launches"] / len(bounds),
            "launches_per_epoch": training["launches"], "graph_launches_per_epoch": graphed["launches"],
            "graph_nodes": graphed["graph_nodes"],
            "allocs_per_epoch": training["allocs"],
            "syncs_per_epoch": training["syncs"], "h2d_per_epoch": training["h2d"],
            "eval_launches": evaluation["launches"], "eval_syncs": evaluation["syncs"]}


HEADER = (f"{'batch':>6} {'steps':>6} {'launches/step':>13} {'launches/epoch':>14} {'graphed':>12} {'allocs/epoch':>12} {'syncs/epoch':>12} {'h2d/epoch':>10} "
          f"{'eval launches':>12} {'eval syncs':>10}")
