"""Training examples per second: the step into buffers made once
(``MLP.step_loss_and_grad``, issue 22) against the step that allocates its
intermediates (the batch gathered by fancy indexing, ``MLP.loss_and_grad``,
a new gradient-norm array), in one process, timed alternately::

    python scripts/compare_step_buffers.py [--backend numba|numpy] [--members 1 16]

The MLP 40-128-128-10 (ReLU, cross-entropy) on mnist1d's training split,
Adam, per batch size and population size: the median over 7 samples of 20
steps each, both rates and their ratio (buffered / allocating). Both give the
same numbers bit for bit (tests/nn/test_step_buffers.py).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    from optbench.kernels import PopulationOptimizer
    from optbench.kernels.steps import StepAccount
    from optbench.kernels.backend import get_backend
    from optbench.suite.data import datasets
    from optbench.suite.nn.mlp import MLP, one_blas_thread
    from optbench.suite.training.epoch import _row_dots, training_step

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="numba", choices=("numba", "numpy"))
    ap.add_argument("--members", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256, 1024])
    args = ap.parse_args()
    backend = get_backend(args.backend)
    ds = datasets.load("mnist1d", seed=0)
    X, y = ds.X_train[None], ds.y_train[None]
    rng = np.random.default_rng(0)
    print(f"{'P':>4} {'batch':>6} {'allocating ex/s':>16} {'buffered ex/s':>14} {'ratio':>6}")
    for P in args.members:
        model = MLP([ds.n_features, 128, 128, ds.n_outputs], "relu", "cross_entropy", members=P)
        model.params[...] = rng.standard_normal(model.params.shape).astype(np.float32) * 0.05
        opt = PopulationOptimizer(model.params, ["adam"] * P, [{"lr": 1e-4}] * P, backend=backend.name,
                                  layout=model.layout)
        account, base, gsq = StepAccount(np, P), np.zeros((P, 1), dtype=np.int64), np.empty((P, 1, 1), np.float32)
        rows = np.zeros((P, 1), dtype=np.int64)
        for batch in args.batch_sizes:
            idx = [np.stack([rng.integers(0, ds.n_train, batch) for _ in range(P)]) for _ in range(20)]

            def allocating():
                for k, i in enumerate(idx):
                    loss = model.loss_and_grad(X[rows, i], y[rows, i])
                    account.step(k, loss, _row_dots(np, model.grads))
                    opt.step(model.grads, active=account.active)

            def buffered():
                for k, i in enumerate(idx):
                    training_step(model, opt, account, X, y, base, i, k, None, gsq)

            times = {allocating: [], buffered: []}
            with one_blas_thread():
                for f in (allocating, buffered):  # warm: kernels built, buffers made
                    f()
                for _ in range(7):
                    for f in (allocating, buffered):
                        t0 = time.perf_counter()
                        f()
                        times[f].append(time.perf_counter() - t0)
            rate = {f: 20 * batch * P / statistics.median(t) for f, t in times.items()}
            print(f"{P:>4} {batch:>6} {rate[allocating]:>16,.0f} {rate[buffered]:>14,.0f} "
                  f"{rate[buffered] / rate[allocating]:>6.2f}")


if __name__ == "__main__":
    main()
