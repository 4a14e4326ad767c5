"""Training examples per second: a single run before optbench 0.2 (its own
model, loop and optimiser) against the one training path of now (a
population of one), in one process, epochs timed alternately.

The old path is read from a checkout of the commit before the change, whose
packages are the bare ``kernels`` and ``suite`` (they cannot collide with
``optbench.kernels`` and ``optbench.suite``)::

    git worktree add /tmp/optbench-0.1 0a0fce1
    python scripts/compare_training_paths.py /tmp/optbench-0.1

Prints, per data set and batch size, both rates and their ratio (new / old),
on the Numba kernels (or ``--backend numpy``): the MLP 40-128-128-10 on mnist1d and 64-128-128-10 on
digits, Adam, one shuffled epoch per sample, median of 7 samples each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def old_epoch(dataset: str, hidden, batch: int, backend: str):
    import suite.training.loop as old_loop
    from suite.training.config import RunConfig

    config = RunConfig(dataset=dataset, hidden=hidden, batch_size=batch, backend=backend, optimizer="adam", lr=1e-3,
                       epochs=1)
    ds, model, opt, backend, b = old_loop.build(config)
    X, y = backend.xp.asarray(ds.X_train), backend.xp.asarray(ds.y_train)
    order = np.random.default_rng(0).permutation(ds.n_train)
    return (lambda: old_loop.train_epoch(model, opt, X, y, order, b)), ds.n_train


def new_epoch(dataset: str, hidden, batch: int, backend: str):
    import optbench.suite.training.loop as loop
    from optbench.suite.nn.mlp import one_blas_thread
    from optbench.suite.training.config import RunConfig

    config = RunConfig.of(dataset=dataset, hidden=hidden, batch_size=batch, backend=backend, optimizer="adam",
                          lr=1e-3, epochs=1)
    pop = loop._Population([config])
    X, y = pop.splits["train"]
    order = pop.xp.asarray(np.random.default_rng(0).permutation(pop.n_train)[None])
    bounds = loop.batch_bounds(pop.n_train, pop.batch)
    active = pop.xp.ones(1, dtype=np.int32)

    def epoch():
        with one_blas_thread():  # as run_population trains
            loop.train_epoch(pop.model, pop.opt, X, y, pop.rows, order, bounds, active)

    return epoch, pop.n_train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old_checkout", help="a checkout of optbench before 0.2 (e.g. commit 0a0fce1)")
    parser.add_argument("--batch-sizes", default="16,32,64,128,256,1024")
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--backend", default="numba", choices=("numba", "numpy"))
    args = parser.parse_args(argv)
    sys.path.insert(0, args.old_checkout)
    print(f"{'data':8} {'batch':>5} {'old single ex/s':>16} {'new P=1 ex/s':>13} {'new / old':>9}")
    for dataset, hidden in (("mnist1d", (128, 128)), ("digits", (128, 128))):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            old, n = old_epoch(dataset, hidden, batch, args.backend)
            new, _ = new_epoch(dataset, hidden, batch, args.backend)
            old(), new()  # compile and warm up
            times = {"old": [], "new": []}
            for _ in range(args.samples):
                for name, fn in (("old", old), ("new", new)):
                    t = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t)
            rate = {k: n / statistics.median(v) for k, v in times.items()}
            print(f"{dataset:8} {batch:>5} {rate['old']:>16.0f} {rate['new']:>13.0f} {rate['new'] / rate['old']:>9.3f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
