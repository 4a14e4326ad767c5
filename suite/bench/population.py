"""``optbench bench --population``: the cost of one member's training step
when P runs train together, against P, and against a single run and JAX.

The case is the default study's: an MLP 40-128-128-10 (ReLU, softmax
cross-entropy) on data of mnist1d's shape (3000 x 40), batch 32, Adam, each
member with its own learning rate and its own batches. A step is what a
training step does: the members' losses and gradients, the step account
(finiteness, gradient norms) and the optimiser update.

* ``population``: P members as one model (one Adam launch for all);
* ``single``: one run's step -- a population of one, the same at every P
  (P runs one after another cost P of these);
* ``jax-vmap``: JAX's ``vmap`` over the members of a ``jit``-compiled step
  with optax's Adam, where JAX is installed (an optional extra, like torch).

The figure that travels is the ratio at one P within one run.
"""

from __future__ import annotations

import numpy as np

from optbench.kernels import FlatBuffer, PopulationOptimizer

from ..nn.inits import init_layers
from ..nn.mlp import MLP, one_blas_thread
from ..training.epoch import train_epoch
from .timing import Case, Env, WallTimer, take_samples

SIZES = [40, 128, 128, 10]
N_TRAIN = 3000
BATCH = 32
MEMBERS = {False: (1, 4, 16, 36, 108, 324), True: (1, 16, 108)}
#: Calls (of N_BATCHES steps each) per timed sample.
CALLS_PER_SAMPLE = {False: 3, True: 1}
#: Pre-drawn batches a case cycles through.
N_BATCHES = 8


def _data(xp, P: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_TRAIN, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], N_TRAIN)
    idx = rng.integers(0, N_TRAIN, (N_BATCHES, P, BATCH))
    return X, y, idx


def _lrs(P: int) -> list[float]:
    return list(np.geomspace(1e-4, 1e-2, P)) if P > 1 else [1e-3]


def population_case(env: Env, backend, P: int, label: str = "population") -> Case:
    """P members as one model, on ``backend``: each call is a short epoch of
    N_BATCHES steps of the training loop's own epoch
    (optbench.suite.training.loop.train_epoch)."""
    xp = backend.xp
    X, y, _ = _data(xp, P)
    Xd, yd = xp.asarray(X[None]), xp.asarray(y[None])
    rows = xp.zeros(P, dtype=np.int64)
    orders = xp.asarray(np.stack([np.random.default_rng(m).permutation(N_TRAIN) for m in range(P)]))
    bounds = [(k * BATCH, (k + 1) * BATCH) for k in range(N_BATCHES)]
    model = MLP(SIZES, "relu", "cross_entropy", xp=xp, members=P)
    host = np.zeros(model.params.shape, np.float32)
    for m in range(P):
        buf = FlatBuffer(model.layout, host[m])
        for l, (W, b) in enumerate(init_layers("he", SIZES, np.random.default_rng(m)), start=1):
            buf[f"W{l}"][...], buf[f"b{l}"][...] = W, b
    model.params[...] = xp.asarray(host)
    opt = PopulationOptimizer(model.params, ["adam"] * P, [{"lr": lr} for lr in _lrs(P)], backend=backend.name,
                              layout=model.layout)
    active = xp.ones(P, dtype=np.int32)

    def epoch():
        train_epoch(model, opt, Xd, yd, rows, orders, bounds, active)

    what = "one run (a population of one)" if P == 1 else f"P={P} members as one model"
    return Case(f"{backend.name}-{label}", [epoch], env.our_timer, backend.synchronize,
                note=f"{what} (optbench.suite.training.loop)")


def jax_case(P: int) -> Case | None:
    """JAX: vmap over members of one jitted step, optax Adam (None without JAX)."""
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except Exception:  # ImportError, or a broken install
        return None
    X, y, idx = _data(np, P)
    key = jax.random.PRNGKey(0)

    def init(k):
        params = []
        for h, m in zip(SIZES[:-1], SIZES[1:]):
            k, sub = jax.random.split(k)
            params.append((jax.random.normal(sub, (h, m)) * np.sqrt(2.0 / h), jnp.zeros(m)))
        return params

    params = jax.vmap(init)(jax.random.split(key, P))
    lrs = jnp.asarray(_lrs(P), dtype=jnp.float32)
    opt = optax.scale_by_adam()  # Adam's direction; each member scales by its own lr
    states = jax.vmap(opt.init)(params)

    def loss_fn(p, xb, yb):
        a = xb
        for i, (W, b) in enumerate(p):
            a = a @ W + b
            if i < len(p) - 1:
                a = jax.nn.relu(a)
        return optax.softmax_cross_entropy_with_integer_labels(a, yb).mean()

    def member_step(p, s, lr, xb, yb):
        loss, g = jax.value_and_grad(loss_fn)(p, xb, yb)
        updates, s = opt.update(g, s, p)
        p = jax.tree_util.tree_map(lambda w, d: w - lr * d, p, updates)
        return p, s, loss, jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree_util.tree_leaves(g)))

    step_all = jax.jit(jax.vmap(member_step))
    batches = [(jnp.asarray(X[i]), jnp.asarray(y[i])) for i in idx]
    state = {"p": params, "s": states, "k": 0}

    def step():
        xb, yb = batches[state["k"] % N_BATCHES]
        state["k"] += 1
        state["p"], state["s"], loss, norm = step_all(state["p"], state["s"], lrs, xb, yb)
        state["last"] = norm

    def sync():
        if "last" in state:
            state["last"].block_until_ready()

    step()
    sync()  # compiles

    def epoch():  # N_BATCHES steps, as our cases take them
        for _ in range(N_BATCHES):
            step()
    # The timer waits for the last step's result: JAX dispatches asynchronously.
    return Case("jax-vmap", [epoch], lambda: WallTimer(sync), sync,
                note=f"jax {jax.__version__} vmap(jit), optax adam")


def population_rows(env: Env, members=None, log=print) -> list[dict]:
    """Per P: microseconds per member-step of each implementation."""
    members = members or MEMBERS[env.quick]
    backend = env.main
    single = population_case(env, backend, 1, "single")
    rows = []
    for P in members:
        cases = [population_case(env, backend, P), single]
        jax = None if env.gpu else jax_case(P)  # JAX on this CPU says nothing about a GPU
        if jax is not None:
            cases.append(jax)
        with one_blas_thread():  # as training runs (JAX's own BLAS is not this one)
            for c in cases:
                c.run(3)
                c.sync()
                c.calls = CALLS_PER_SAMPLE[env.quick]
                c.samples.clear()
            take_samples(cases, env.repeats, env.pause_s)
        for c in cases:
            per_step = c.seconds / N_BATCHES  # a call is N_BATCHES steps
            per_member = per_step if c is single else per_step / P
            rows.append({"section": "population", "impl": c.impl, "rule": "adam", "size": P, "model": "mnist1d",
                         "n_tensors": 6, "batch": BATCH, "seconds": per_member, "gbps": np.nan,
                         "copy_gbps": np.nan, "copy_fraction": np.nan, "ratio_torch": np.nan,
                         "examples_per_sec": BATCH / per_member, "bytes_per_param": np.nan,
                         "repeats": len(c.samples), "copies": 1, "cold": None, "backend": backend.name,
                         "device": env.device, "note": c.note})
        by = {r["impl"]: r["seconds"] for r in rows if r["size"] == P}
        log(f"{P:>6} " + " ".join(f"{impl} {sec * 1e6:9.1f} us" for impl, sec in by.items()))
    return rows
