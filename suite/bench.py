"""Update-rule throughput against the bandwidth of a plain copy.

Optimiser updates are memory-bound, so the figure that travels between
machines is the effective bandwidth of a step -- the rule's bytes per
parameter (fp32: SGD 12, Momentum/NAG 20, RMSProp 20, AdaDelta 28, Adam 28)
times the parameter count over the median step time -- as a fraction of a
copy's bandwidth measured in the same run (np.copyto on the CPU, a
device-to-device copy on the GPU, 8 bytes per element: read + write).

CPU: perf_counter around each call, median of the repeats after a warm-up.
GPU: CUDA events, the first call (compilation) excluded, median of repeats.
"""

from __future__ import annotations

import statistics

import numpy as np

from kernels import RULES, Optimizer, get_backend

DEFAULT_SIZES = {"numpy": [1 << 16, 1 << 20, 1 << 24], "cupy": [1 << 20, 1 << 24, 1 << 26]}


def median_seconds(backend, fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    backend.synchronize()
    times = []
    for _ in range(repeats):
        with backend.timer() as t:
            fn()
        times.append(t.seconds)
    return statistics.median(times)


def copy_bandwidth(backend, n: int, repeats: int) -> float:
    """Bytes per second of copying n float32 (counted as read + write)."""
    xp = backend.xp
    src = xp.ones(n, dtype=np.float32)
    dst = xp.empty_like(src)
    secs = median_seconds(backend, lambda: xp.copyto(dst, src), repeats)
    return 8 * n / secs


def naive_adam(w, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """Adam as one NumPy expression per line: the baseline a user would write."""
    m[:] = b1 * m + (1 - b1) * g
    v[:] = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    w[:] = w - lr * m_hat / (np.sqrt(v_hat) + eps)


def rule_rows(backend, sizes, repeats: int, naive: bool = False):
    """One dict per (rule, size): seconds, GB/s and the fraction of a copy."""
    xp = backend.xp
    rng = np.random.default_rng(0)
    for n in sizes:
        copy_bw = copy_bandwidth(backend, n, repeats)
        g = backend.asarray(rng.standard_normal(n).astype(np.float32))
        for name, rule in RULES.items():
            opt = Optimizer(rule, backend.asarray(rng.standard_normal(n).astype(np.float32)))
            secs = median_seconds(backend, lambda: opt.step(g), repeats)
            bw = rule.bytes_per_param * n / secs
            yield {"rule": name, "size": n, "seconds": secs, "gbps": bw / 1e9,
                   "copy_gbps": copy_bw / 1e9, "copy_fraction": bw / copy_bw}
        if naive and backend.name == "numpy":
            w = rng.standard_normal(n).astype(np.float32)
            m, v = xp.zeros_like(w), xp.zeros_like(w)
            secs = median_seconds(backend, lambda: naive_adam(w, g, m, v, 5), repeats)
            bw = 28 * n / secs
            yield {"rule": "adam (naive numpy)", "size": n, "seconds": secs, "gbps": bw / 1e9,
                   "copy_gbps": copy_bw / 1e9, "copy_fraction": bw / copy_bw}


def main(args) -> int:
    backend = get_backend(args.backend)
    sizes = args.sizes or DEFAULT_SIZES[backend.name]
    print(f"optbench bench: backend {backend.name} on {backend.device}; "
          f"median of {args.repeats} repeats")
    header = f"{'rule':<20} {'size':>10} {'ms':>9} {'GB/s':>8} {'copy GB/s':>10} {'x copy':>7}"
    print(header)
    print("-" * len(header))
    adam = {}
    for r in rule_rows(backend, sizes, args.repeats, naive=args.naive):
        print(f"{r['rule']:<20} {r['size']:>10} {r['seconds'] * 1e3:>9.3f} {r['gbps']:>8.1f} "
              f"{r['copy_gbps']:>10.1f} {r['copy_fraction']:>7.2f}", flush=True)
        adam.setdefault(r["size"], {})[r["rule"]] = r["seconds"]
    for n, row in adam.items():
        if "adam (naive numpy)" in row:
            print(f"adam at {n}: {row['adam (naive numpy)'] / row['adam']:.1f}x faster "
                  "than the naive NumPy Adam")
    return 0


# --- training throughput ---------------------------------------------------------

def _digits_batches(batch: int, steps: int, seed: int = 0):
    from . import data as datasets

    ds = datasets.load("digits", seed=seed)
    rng = np.random.default_rng(seed)
    idx = [rng.integers(0, ds.n_train, batch) for _ in range(steps)]
    return ds, idx


def training_throughput(backend, hidden=(128, 128), batch: int = 64, steps: int = 300,
                        optimizer: str = "adam") -> float:
    """Examples per second of forward + backward + update steps on digits
    (the MLP 64-128-128-10, ReLU, softmax cross-entropy, float32)."""
    from .mlp import MLP

    ds, idx = _digits_batches(batch, steps)
    xp = backend.xp
    X, y = xp.asarray(ds.X_train), xp.asarray(ds.y_train)
    model = MLP([ds.n_features, *hidden, ds.n_outputs], "relu", "cross_entropy", xp=xp)
    rng = np.random.default_rng(1)
    from .inits import init_layers

    model.set_layers(init_layers("he", model.sizes, rng))
    opt = Optimizer(optimizer, model.params)
    batches = [(X[xp.asarray(i)], y[xp.asarray(i)]) for i in idx]

    def epoch():
        for xb, yb in batches:
            model.loss_and_grad(xb, yb)
            opt.step(model.grads)

    secs = median_seconds(backend, epoch, repeats=5, warmup=1)
    return batch * steps / secs


def torch_training_throughput(hidden=(128, 128), batch: int = 64, steps: int = 300) -> float | None:
    """The same network, data and steps in PyTorch on the CPU (None without torch)."""
    try:
        import torch
    except ImportError:
        return None
    ds, idx = _digits_batches(batch, steps)
    X, y = torch.from_numpy(ds.X_train), torch.from_numpy(ds.y_train)
    sizes = [ds.n_features, *hidden, ds.n_outputs]
    layers = []
    for h, m in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(h, m), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = [(X[torch.from_numpy(i)], y[torch.from_numpy(i)]) for i in idx]

    def epoch():
        for xb, yb in batches:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).backward()
            opt.step()

    secs = median_seconds(get_backend("numpy"), epoch, repeats=5, warmup=1)
    return batch * steps / secs


def training_main(args) -> int:
    backend = get_backend(args.backend)
    print(f"training throughput: MLP 64-128-128-10, ReLU, softmax cross-entropy, Adam, float32, "
          f"digits; backend {backend.name} on {backend.device}")
    print(f"{'batch':>6} {'optbench ex/s':>14} {'torch ex/s':>11} {'ratio':>6}")
    for batch in args.batch_sizes:
        ours = training_throughput(backend, batch=batch)
        theirs = torch_training_throughput(batch=batch) if backend.name == "numpy" else None
        ratio = f"{ours / theirs:6.2f}" if theirs else "     -"
        print(f"{batch:>6} {ours:>14.0f} {theirs or float('nan'):>11.0f} {ratio}", flush=True)
    return 0
