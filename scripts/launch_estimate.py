"""A design estimate, from counts: the host time the default protocol spends
launching GPU work, with every training step launched from Python and with
each epoch replayed as one CUDA graph (issue 22)::

    python scripts/launch_estimate.py

For each of the default protocol's workloads, the CuPy stand-in counts the
host launches of one epoch of a 16-member population of its network (Adam),
launched and replayed, and of one evaluation of its training split (each
epoch evaluates three splits; the training split's count stands for each,
an overestimate for the smaller ones). On a GPU every workload's cells of one
phase share a population (the memory budget holds them), so the protocol
trains three populations per workload: tuning, confirmation, defaults. At 5
to 20 us of host time per launch (CuPy, measured by others; no GPU has been
lent to this project yet), that is the estimate. No numbers here are timed.
"""

from __future__ import annotations

from optbench.kernels.testing.cupy_standin import installed
from optbench.suite.bench.launches import _epoch
from optbench.suite.protocol.spec import load_protocol

US = (5e-6, 20e-6)


def main() -> None:
    protocol = load_protocol("default")
    phases = 3 if protocol.defaults else 2
    total = {"launched": 0, "graphed": 0}
    print(f"{'workload':<16} {'epochs':>6} {'steps':>6} {'launched/epoch':>15} {'graphed/epoch':>14} "
          f"{'eval/epoch':>11}")
    with installed() as cp:
        for w in protocol.workloads:
            ds = w.load_data()
            loss = w.loss_for(ds)
            batch = ds.n_train if w.batch_size == "full" else int(w.batch_size)
            c = _epoch(cp, 16, "adam", batch, (ds.n_train, ds.n_features, ds.n_outputs), w.hidden, w.activation,
                       loss)
            evals = 3 * c["eval_launches"]
            total["launched"] += phases * w.epochs * (c["launches_per_epoch"] + evals)
            total["graphed"] += phases * w.epochs * (c["graph_launches_per_epoch"] + evals)
            print(f"{w.name:<16} {w.epochs:>6} {c['steps']:>6} {c['launches_per_epoch']:>15} "
                  f"{c['graph_launches_per_epoch']:>14} {evals:>11}")
    for how, n in total.items():
        print(f"{how}: {n:,} host launches, {n * US[0]:.1f}-{n * US[1]:.1f} s of host time at 5-20 us a launch")


if __name__ == "__main__":
    main()
