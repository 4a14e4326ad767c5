"""Training throughput for ``optbench bench``: examples per second of forward
+ backward + Adam steps against batch size, for the default study's MLP on
mnist1d and the 64-128-128-10 MLP on digits, ours (each kernel backend) and
PyTorch's (default Adam, and fused), steps timed round-robin."""

from __future__ import annotations

import math
import time
from functools import partial
from itertools import cycle

import numpy as np

from optbench.kernels import PopulationOptimizer
from optbench.kernels.steps import StepAccount

from ..nn.inits import init_layers
from ..nn.mlp import MLP, one_blas_thread
from ..training.epoch import training_step
from .cases import set_torch_ratios, table_row
from .timing import Case, Env, WallTimer, take_samples

BATCH_SIZES = {False: [16, 32, 64, 128, 256, 512, 1024], True: [16, 64, 256, 1024]}
TRAIN_SAMPLE_S = {False: 0.15, True: 0.05}
#: Training cases: dataset -> hidden widths (mnist1d is the default study's MLP;
#: digits 64-128-128-10 is the acceptance figure of the training issue).
TRAINING = {"mnist1d": (128, 128), "digits": (128, 128)}


def _batch_indices(n_train: int, batch: int, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n_train, batch) for _ in range(count)]


def _our_training_step(backend, ds, hidden, batch: int):
    """(step function, parameter count) for one run of our MLP with Adam on
    ``backend`` (numpy, numba or cupy): the training loop's own step
    (:func:`optbench.suite.training.loop.training_step`), a population of one."""
    xp = backend.xp
    X, y = xp.asarray(ds.X_train)[None], xp.asarray(ds.y_train)[None]
    model = MLP([ds.n_features, *hidden, ds.n_outputs], "relu", "cross_entropy", xp=xp)
    model.set_layers(init_layers("he", model.sizes, np.random.default_rng(1)))
    opt = PopulationOptimizer(model.params, ["adam"], [{}], backend=backend.name, layout=model.layout)
    account, base = StepAccount(xp, 1), xp.zeros((1, 1), dtype=np.int64)  # row 0's first object
    batches = cycle([xp.asarray(i[None]) for i in _batch_indices(ds.n_train, batch, 16)])
    count = iter(range(1 << 62))

    def step():
        training_step(model, opt, account, X, y, base, next(batches), next(count))

    n_params = sum(math.prod(s.shape) for s in model.layout)
    return step, n_params


def _torch_training_step(torch, device: str, ds, hidden, batch: int, fused: bool = False):
    """(step function, parameter count) for the same MLP in PyTorch (Adam)."""
    torch.manual_seed(1)
    X = torch.from_numpy(ds.X_train).to(device)
    y = torch.from_numpy(ds.y_train).to(device)
    sizes = [ds.n_features, *hidden, ds.n_outputs]
    layers = []
    for h, m in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(h, m), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if fused else {}))
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = cycle([(X[torch.from_numpy(i).to(device)], y[torch.from_numpy(i).to(device)])
                     for i in _batch_indices(ds.n_train, batch, 16)])

    def step():
        xb, yb = next(batches)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(xb), yb).backward()
        opt.step()

    return step, sum(p.numel() for p in model.parameters())


def _steps_per_sample(step, sync, target_s: float) -> int:
    for _ in range(3):
        step()
    sync()
    t0 = time.perf_counter()
    step()
    sync()
    t = time.perf_counter() - t0
    return int(max(5, min(2000, math.ceil(target_s / max(t, 1e-6)))))


#: (training objects, features, classes) of the training sets, for a stand-in
#: where the package that makes a set is missing (the lent GPU machine has no
#: scikit-learn or mnist1d): throughput depends on the shapes, not the values.
TRAINING_SHAPES = {"digits": (1079, 64, 10), "mnist1d": (3000, 40, 10)}


def _training_data(name: str, log=print):
    """The data set, or random data of its shape if its package is missing."""
    from types import SimpleNamespace

    from ..data import datasets as data

    try:
        return data.load(name, seed=0)
    except ImportError as exc:
        n, d, k = TRAINING_SHAPES[name]
        log(f"  {name}: {exc}; timing on random data of its shape ({n} x {d}, {k} classes)")
        rng = np.random.default_rng(0)
        return SimpleNamespace(name=name, X_train=rng.standard_normal((n, d)).astype(np.float32),
                               y_train=rng.integers(0, k, n), n_train=n, n_features=d, n_outputs=k)


def training_rows(env: Env, batch_sizes=None, datasets=None, log=print) -> list[dict]:
    """Examples per second against batch size: ours (each kernel backend) and
    PyTorch's (default Adam, and fused), steps timed round-robin."""
    out = []
    for dsname in datasets or TRAINING:
        ds = _training_data(dsname, log)
        hidden = TRAINING[dsname]
        arch = "-".join(map(str, [ds.n_features, *hidden, ds.n_outputs]))
        for batch in batch_sizes or BATCH_SIZES[env.quick]:
            if batch > ds.n_train:
                continue
            builders = [(b.name, partial(_our_training_step, b, ds, hidden, batch)) for b in env.backends]
            if env.torch is not None:
                builders += [("torch", partial(_torch_training_step, env.torch, env.torch_device, ds,
                                               hidden, batch)),
                             ("torch-fused", partial(_torch_training_step, env.torch, env.torch_device,
                                                     ds, hidden, batch, True))]
            with one_blas_thread():  # as training runs (PyTorch's own BLAS is not this one)
                cases, n_params = [], 0
                for label, build in builders:
                    try:
                        step, n_params = build()
                        sync = env.main.synchronize if not label.startswith("torch") else env.torch_sync
                        k = _steps_per_sample(step, sync, TRAIN_SAMPLE_S[env.quick])
                        cases.append(Case(label, [step], partial(WallTimer, sync), sync, calls=k,
                                          note=f"MLP {arch}, ReLU, softmax cross-entropy, Adam"))
                    except Exception as exc:
                        log(f"  skipped training {label}: {type(exc).__name__}: {exc}")
                reps = max(3, env.repeats // 3) if env.gpu else max(3, min(env.repeats, 7))
                take_samples(cases, reps, env.pause_s)
            rows = []
            for c in cases:
                rows.append({**table_row(env, "training", c, "adam", n_params, float("nan"), float("nan")),
                             "model": dsname, "n_tensors": 2 * (len(hidden) + 1), "batch": batch,
                             "examples_per_sec": batch / c.seconds, "gbps": np.nan,
                             "copy_gbps": np.nan, "copy_fraction": np.nan, "bytes_per_param": np.nan})
            set_torch_ratios(rows)
            out += rows
            env.free()
    return out
