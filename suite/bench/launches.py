"""The launch budget: device launches and host synchronisations per training
step, counted on the CuPy stand-in (``optbench bench --launches``).

On a GPU a small model's step costs what its launches and host reads cost,
not what its arithmetic costs: each kernel launch takes a few microseconds of
CPU time, and each read of a device value back to the host (a
synchronisation) stalls the host until the device has drained its queue --
about 10-20 us, after which the device idles while the host queues the next
work. Neither shows on a CPU, and both can be counted without a GPU: the
stand-in of ``tests/cupy_standin`` (a checkout's test helper) runs the exact
code path on NumPy and counts every device operation and every read.

This measures one epoch of ``suite.training.loop.train_epoch`` (the step
loop) and one evaluation, for the default study's MLP (40-128-128-10, ReLU,
softmax cross-entropy) on data of mnist1d's shape, per batch size.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

#: mnist1d's training split: 3000 objects, 40 inputs, 10 classes.
SHAPE = (3000, 40, 10)
HIDDEN = (128, 128)
BATCH_SIZES = (32, 256, 3000)


@contextlib.contextmanager
def standin():
    """The CuPy stand-in from the checkout's tests folder as ``cupy`` for the
    block; whatever ``cupy`` was before comes back after it."""
    tests = Path(__file__).resolve().parents[2] / "tests"
    if not (tests / "cupy_standin" / "__init__.py").is_file():
        raise ImportError("counting launches needs tests/cupy_standin from a git checkout of optbench "
                          f"(not found under {tests})")
    names = ("cupy", "cupy.cuda", "cupy.cuda.runtime", "cupy.linalg", "cupy.random")
    saved = {name: sys.modules.get(name) for name in names}
    sys.path.insert(0, str(tests))
    try:
        import cupy_standin

        yield cupy_standin.install()
    finally:
        sys.path.remove(str(tests))
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def count(batch_sizes=BATCH_SIZES, rule: str = "adam", log=print) -> list[dict]:
    """One row per batch size: steps in an epoch, launches per step, host
    syncs and host-to-device copies per epoch (training alone), and the syncs
    of one evaluation of the training split."""
    with standin() as cp:
        return _count(cp, batch_sizes, rule, log)


def _count(cp, batch_sizes, rule, log) -> list[dict]:
    from kernels import Optimizer
    from kernels.backend import get_backend

    from ..data.batches import epoch_order
    from ..nn.inits import init_layers
    from ..nn.mlp import MLP
    from ..training.loop import train_epoch

    get_backend("cupy")
    n, d, k = SHAPE
    rng = np.random.default_rng(0)
    X = cp.asarray(rng.standard_normal((n, d)).astype(np.float32))
    y = cp.asarray(rng.integers(0, k, n))
    rows = []
    for batch in batch_sizes:
        model = MLP([d, *HIDDEN, k], "relu", "cross_entropy", xp=cp)
        model.set_layers(init_layers("he", model.sizes, np.random.default_rng(1)))
        opt = Optimizer(rule, model.params, backend="cupy")
        train_epoch(model, opt, X, y, epoch_order(n, 0, 0), batch)  # builds every kernel first
        cp.reset_counts()
        stats = train_epoch(model, opt, X, y, epoch_order(n, 1, 0), batch)
        training = cp.counts()
        cp.reset_counts()
        model.evaluate(X, y)
        evaluation = cp.counts()
        rows.append({"batch": batch, "steps": stats.steps,
                     "launches_per_step": training["launches"] / stats.steps,
                     "syncs_per_epoch": training["syncs"], "h2d_per_epoch": training["h2d"],
                     "eval_launches": evaluation["launches"], "eval_syncs": evaluation["syncs"]})
        r = rows[-1]
        log(f"{batch:>6} {r['steps']:>6} {r['launches_per_step']:>13.1f} {r['syncs_per_epoch']:>12} "
            f"{r['h2d_per_epoch']:>10} {r['eval_launches']:>12} {r['eval_syncs']:>10}")
    return rows


def count_population(P: int, rule: str = "adam", batch: int = 32, log=print) -> dict:
    """One epoch of P members trained as one population (the same MLP and
    data shape): launches per population step, syncs and host-to-device
    copies per epoch. The point: they do not grow with P."""
    with standin() as cp:
        from kernels import PopulationOptimizer

        from ..data.batches import epoch_order
        from ..nn.population import PopulationMLP
        from ..training.population import population_epoch

        n, d, k = SHAPE
        rng = np.random.default_rng(0)
        X = cp.asarray(rng.standard_normal((1, n, d)).astype(np.float32))
        y = cp.asarray(rng.integers(0, k, (1, n)))
        rows = cp.zeros(P, dtype=np.int64)
        model = PopulationMLP(P, [d, *HIDDEN, k], "relu", "cross_entropy", xp=cp)
        model.params[...] = cp.asarray(rng.standard_normal(model.params.shape).astype(np.float32) * 0.05)
        opt = PopulationOptimizer(model.params, [rule] * P, [{"lr": 1e-3 * (m + 1)} for m in range(P)],
                                  backend="cupy")
        bounds = [(lo, min(lo + batch, n)) for lo in range(0, n, batch)]
        active = cp.ones(P, dtype=np.int32)

        def orders(epoch):
            return cp.asarray(np.stack([epoch_order(n, epoch, m) for m in range(P)]))

        population_epoch(model, opt, X, y, rows, orders(0), bounds, active)  # builds every kernel first
        order = orders(1)
        cp.reset_counts()
        population_epoch(model, opt, X, y, rows, order, bounds, active)
        c = cp.counts()
    row = {"members": P, "batch": batch, "steps": len(bounds), "launches_per_step": c["launches"] / len(bounds),
           "syncs_per_epoch": c["syncs"], "h2d_per_epoch": c["h2d"]}
    log(f"population of {P:>5}: {row['launches_per_step']:.1f} launches/step, {row['syncs_per_epoch']} syncs "
        f"and {row['h2d_per_epoch']} host-to-device copies per epoch")
    return row


HEADER = (f"{'batch':>6} {'steps':>6} {'launches/step':>13} {'syncs/epoch':>12} {'h2d/epoch':>10} "
          f"{'eval launches':>12} {'eval syncs':>10}")
