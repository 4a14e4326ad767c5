"""Training: runs that share a shape, trained together in lockstep; a single
run is a population of one.

The lecture's SGD loop (section 2), with mini-batches (section 3), for P
runs ("members") at once:

1. random initial weights (each member's ``init`` and seed);
2. for epoch t = 1, 2, ...: for each mini-batch, every member's loss and
   gradient (batched products over the members,
   :class:`~optbench.suite.nn.mlp.MLP`), then one optimiser launch per rule
   (:class:`optbench.kernels.PopulationOptimizer`);
3. after each epoch, the criterion Q over the whole training set, the
   validation and test loss and accuracy, per member;
4. until the epochs run out, Q or the weights stabilise (relative change at
   most ``tol`` for ``patience`` epochs in a row; patience 0 turns this off),
   or a loss or gradient turns NaN/Inf -- then that member is marked diverged
   and stops; nothing raises.

Members share what gives the arrays one shape and the loop one schedule
(:data:`SHARED`: the workload, batch size, dropout, state precision, batch order, backend and
stopping rule) and may differ in everything else: optimiser and
hyper-parameters, learning-rate schedule, where decay applies,
initialisation and seed (a member's seed sets its init, its split, its batch
order and its dropout stream, exactly as when it trains alone). Members
share epochs and batch size, so each member's schedule is bound to the same
total steps.

Nothing is read back inside an epoch: the epoch's batch orders are uploaded
once; each step's losses and gradient norms go to a device-side account
(:class:`optbench.kernels.steps.StepAccount`) whose flags make a member's
later optimiser launches no-ops once a step of it is not finite, and the
account is read once at the end. (On the CPU, where a read is free, the
epoch also ends early once every member has stopped.) On a GPU each epoch
from the third on is one CUDA graph launch, captured from the second
(:mod:`.epoch`), with the same records.

Records (one dict per member and evaluation point, epoch 0 being the
initial weights): backend and device (what ran), dtype, lr_used (the
member's resolved lr), data_hash and n_train (the data set's), epoch, step,
examples_seen, wall_time (training seconds so far, evaluation excluded,
device synchronised; members train together, so each member's is the
population's time divided by its size), examples_per_sec (this epoch),
train_loss (Q over the training set, inference mode), train_acc, val_loss,
val_acc, test_loss, test_acc, grad_norm (mean ||dQ/dw|| over the epoch's
steps), diverged, stop_reason ("" until the last record).

With ``layer_norms=True`` each record also has grad_norm_W1 .. grad_norm_WL:
||dQ/dW_l|| of layer l's weight matrix (biases excluded), the mean over the
epoch's steps like grad_norm; at epoch 0 the gradient of Q over the whole
training set at the initial weights, in inference mode (no dropout, so the
dropout stream and every other column are the same as with it off).
Section 8's vanishing gradients show up as grad_norm_W1 << grad_norm_WL.

A rule that keeps a look-ahead point (Nesterov) is evaluated at its true
weights. A config's ``schedule`` is bound to the run's total steps;
``decay = "weights"`` gives the member a decay mask (L2 and decoupled decay
on W1, W2, ... only), still one launch per step.

The same config and seed give the same records, bit for bit (the timing
columns apart), whether the run trains alone or in a population, on NumPy
and Numba alike (:func:`optbench.suite.nn.mlp.bmm` keeps every member's
products the same BLAS calls).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from optbench.kernels import FlatBuffer, PopulationOptimizer, get_backend

from ..data import batches as batch_order
from ..nn.activations import PRELU_DEFAULT_ALPHA
from ..nn.checkpoint import load_checkpoint, save_checkpoint
from ..nn.inits import init_layers
from ..nn.mlp import MLP, one_blas_thread
from .config import RunConfig, check, decay_mask_for, run_schedule
from .epoch import CapturedEpochs, batch_bounds, say_once, train_epoch, why_not_captured

TIMING_COLUMNS = ("wall_time", "examples_per_sec")
#: What members of one population share (the run fields; the workload is shared whole).
SHARED = ("batch_size", "dropout", "dropout_mode", "state", "order", "backend", "tol", "patience", "layer_norms")


def population_key(config: RunConfig) -> tuple:
    """The settings a population's members share (hashable)."""
    return tuple(sorted(config.workload.settings().items())) + tuple((k, getattr(config, k)) for k in SHARED)


def activation_bytes(config: RunConfig, n_features: int, n_outputs: int, n_train: int) -> int:
    """The bytes of one member's activations in a training step (about four
    arrays per layer kept for backward): a step's working set."""
    batch = n_train if config.batch_size == "full" else int(config.batch_size)
    return 4 * 4 * batch * sum([n_features, *config.workload.hidden, n_outputs])


def member_bytes(config: RunConfig, n_params: int, n_features: int, n_outputs: int, n_train: int) -> int:
    """Device memory one member needs, roughly: parameters, gradients and up
    to three optimiser states, and its activations."""
    return 4 * 5 * n_params + activation_bytes(config, n_features, n_outputs, n_train)


def run(config: RunConfig, progress=None) -> list[dict]:
    """Train one run (a population of one); its records (see the module docstring).

    progress: optional callable(epoch, record) called after each evaluation.
    """
    return run_population([config], None if progress is None else lambda epoch, records: progress(epoch, records[0]))[0]


def run_population(configs: list[RunConfig], progress=None) -> list[list[dict]]:
    """Train ``configs`` (all with one :func:`population_key`) together; the
    records of each, in order.

    progress: optional callable(epoch, records) called after each epoch's
    evaluation, with each member's newest record.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # divergence is a record, not an error
        population = _Population(configs)
        if population.xp is not np:
            return population.train(progress)
        with one_blas_thread():
            return population.train(progress)


class _Population:
    def __init__(self, configs: list[RunConfig]):
        if not configs:
            raise ValueError("a population needs at least one member")
        keys = {population_key(c) for c in configs}
        if len(keys) > 1:
            raise ValueError("the members of a population must share the workload and " + ", ".join(SHARED))
        # Members of one rule are contiguous rows: one launch per rule.
        self.order = sorted(range(len(configs)), key=lambda i: configs[i].optimizer.name)
        self.configs = [configs[i] for i in self.order]
        first = self.configs[0]
        self.workload = first.workload
        self.backend = get_backend(first.backend)
        xp = self.xp = self.backend.xp
        self.P = len(self.configs)

        seeds = sorted({c.seed for c in self.configs})
        self.data = {s: self.workload.load_data(s) for s in seeds}
        self.batch, loss = check(first, self.data[seeds[0]])
        for c in self.configs:  # a checkpoint to start from, per member
            check(c, self.data[c.seed])
        ns = {ds.n_train for ds in self.data.values()}
        if len(ns) > 1:
            raise ValueError(f"the seeds' training splits differ in size: {sorted(ns)}")
        self.n_train = ns.pop()
        row_of_seed = {s: i for i, s in enumerate(seeds)}
        self.rows_host = np.array([row_of_seed[c.seed] for c in self.configs], dtype=np.int64)
        self.rows = xp.asarray(self.rows_host)  # member -> its seed's data
        self.seed_of_row = seeds
        self.splits = {name: (xp.asarray(np.stack([self.data[s].splits()[name][0] for s in seeds])),
                              xp.asarray(np.stack([self.data[s].splits()[name][1] for s in seeds])))
                       for name in ("train", "val", "test")}

        ds = self.data[seeds[0]]
        self.sizes = self.workload.sizes(ds)
        self.model = MLP(self.sizes, self.workload.activation, loss, first.dropout, first.dropout_mode, xp=xp,
                         members=self.P, seeds=[c.seed for c in self.configs])
        self._initialise()
        self.opt = PopulationOptimizer(self.model.params, [c.optimizer.name for c in self.configs],
                                       [c.optimizer.hyper for c in self.configs], backend=self.backend.name,
                                       schedules=[run_schedule(c, self.batch, self.n_train) for c in self.configs],
                                       decay_masks=self._decay_masks(), layout=self.model.layout,
                                       state_precision=first.state, seeds=[c.seed for c in self.configs])

    def _decay_masks(self):
        """(P, n) decay masks when a member decays only its weights (members
        that decay everything get a row of ones: the same update, bit for
        bit, in the same launch); None when every member decays everything."""
        if all(c.optimizer.decay == "all" for c in self.configs):
            return None
        ones = np.ones(self.model.layout.size, dtype=np.float32)
        host = np.stack([ones if (mask := decay_mask_for(c, self.model.layout)) is None else mask.data
                         for c in self.configs])
        return self.xp.asarray(host)  # one upload

    def _initialise(self) -> None:
        """Every member's initial weights, made on the host from its own seed,
        then uploaded in one copy."""
        host = np.zeros(self.model.params.shape, dtype=np.float32)
        for m, c in enumerate(self.configs):
            member = SimpleNamespace(layout=self.model.layout, sizes=self.sizes, xp=np,
                                     params=FlatBuffer(self.model.layout, host[m]))
            if self.model.activation.has_alpha:
                for l in range(1, len(self.sizes) - 1):
                    member.params[f"alpha{l}"][...] = PRELU_DEFAULT_ALPHA
            if c.init == "checkpoint":
                load_checkpoint(member, c.init_from)
            else:
                ds = self.data[c.seed]
                rng = np.random.default_rng(np.random.SeedSequence([c.seed, 7]))
                for l, (W, b) in enumerate(init_layers(c.init, self.sizes, rng, X=ds.X_train, y=ds.y_train,
                                                       activation=self.workload.activation), start=1):
                    member.params[f"W{l}"][...] = W
                    member.params[f"b{l}"][...] = b
        self.model.params[...] = self.xp.asarray(host)

    # --- evaluation ------------------------------------------------------------
    def _evaluate(self) -> dict[str, np.ndarray]:
        """{split}_loss and {split}_acc per member (host arrays), one read per
        split; rules with a look-ahead point are evaluated at their weights."""
        xp, model = self.xp, self.model
        saved = None
        if any(g.rule.lookahead is not None for g in self.opt.groups):
            saved = model.params.copy()
            model.params[...] = self.opt.weights()
        out = {}
        for split, (X, y) in self.splits.items():
            loss, acc = model.evaluate(X, y, self.rows)
            both = xp.stack([loss, acc if acc is not None else xp.full(self.P, np.nan)])
            host = both.get() if xp is not np else both
            out[f"{split}_loss"] = host[0]
            out[f"{split}_acc"] = host[1] if acc is not None else [None] * self.P
        if saved is not None:
            model.params[...] = saved
        return out

    # --- the loop ----------------------------------------------------------------
    def train(self, progress=None) -> list[list[dict]]:
        xp, P, first = self.xp, self.P, self.configs[0]
        ran = [{"backend": self.backend.name, "device": self.backend.device, "dtype": "float32",
                "lr_used": float(c.optimizer.lr), "data_hash": self.data[c.seed].content_hash,
                "n_train": self.n_train} for c in self.configs]
        records: list[list[dict]] = [[] for _ in range(P)]
        evals = self._evaluate()
        for m in range(P):
            records[m].append(_finite_acc({**ran[m], "epoch": 0, "step": 0, "examples_seen": 0, "wall_time": 0.0,
                                           "examples_per_sec": float("nan"), "grad_norm": float("nan"),
                                           "diverged": False, "stop_reason": "",
                                           **{k: v[m] for k, v in evals.items()}}))
        if first.layer_norms:
            for m, norms in enumerate(self._initial_layer_norms()):
                records[m][0].update(norms)
        live = np.ones(P, dtype=bool)        # members still training (host)
        active = xp.ones(P, dtype=np.int32)  # the same, as the kernels see it
        stable = np.zeros((P, 2), dtype=int)  # epochs in a row: criterion, weights
        prev_w = self.model.params.copy()
        steps = np.zeros(P, dtype=int)
        seen = np.zeros(P, dtype=int)
        wall = 0.0
        bounds = batch_bounds(self.n_train, self.batch)
        X, y = self.splits["train"]
        why = why_not_captured(self.model, self.opt, first.layer_norms)
        if why is None:  # a GPU: the epoch as one CUDA graph
            captured = CapturedEpochs(self.model, self.opt, X, y, self.rows, bounds, active)
        else:
            say_once(why)
        for epoch in range(1, self.workload.epochs + 1):
            orders = np.stack([batch_order.epoch_order(self.n_train, epoch - 1, s, first.order,
                                                       self.data[s].y_train) for s in self.seed_of_row])
            self.backend.synchronize()
            with self.backend.timer() as t:
                if why is None:
                    norm_sum, bad_step, layer_sums = captured.run(orders[self.rows_host])
                else:
                    norm_sum, bad_step, layer_sums = train_epoch(
                        self.model, self.opt, X, y, self.rows, xp.asarray(orders[self.rows_host]), bounds, active,
                        first.layer_norms)  # one upload
                self.backend.synchronize()
            wall += t.seconds / P
            evals = self._evaluate()
            w = self.model.params
            checks = xp.stack([xp.isfinite(w).all(axis=1).astype(np.float64),
                               xp.linalg.norm(w - prev_w, axis=1).astype(np.float64),
                               xp.linalg.norm(w, axis=1).astype(np.float64)])
            finite_w, dw, norm_w = checks.get() if xp is not np else checks
            prev_w = w.copy()
            stop_now = []
            for m in np.flatnonzero(live):
                c = self.configs[m]
                taken = len(bounds) if bad_step[m] < 0 else int(bad_step[m])
                steps[m] += taken
                examples = sum(hi - lo for lo, hi in bounds[:taken])
                seen[m] += examples
                record = {**ran[m], "epoch": epoch, "step": int(steps[m]), "examples_seen": int(seen[m]),
                          "wall_time": wall,
                          "examples_per_sec": examples / (t.seconds / P) if t.seconds > 0 else float("nan"),
                          "grad_norm": float(norm_sum[m]) / taken if taken else float("nan"),
                          "diverged": bool(bad_step[m] >= 0), "stop_reason": "",
                          **{k: v[m] for k, v in evals.items()}}
                if c.layer_norms:
                    record.update({f"grad_norm_W{l}": float(layer_sums[m, l - 1]) / max(taken, 1)
                                   for l in range(1, len(self.sizes))})
                record = _finite_acc(record)
                if not record["diverged"] and not (math.isfinite(record["train_loss"]) and finite_w[m]):
                    record["diverged"] = True
                records[m].append(record)
                stop = "diverged" if record["diverged"] else ""
                if not stop and c.patience > 0:
                    q0, q1 = records[m][-2]["train_loss"], record["train_loss"]
                    stable[m, 0] = stable[m, 0] + 1 if abs(q1 - q0) <= c.tol * max(abs(q0), 1e-30) else 0
                    stable[m, 1] = stable[m, 1] + 1 if dw[m] / max(norm_w[m], 1e-30) <= c.tol else 0
                    if stable[m, 0] >= c.patience:
                        stop = "criterion_stable"
                    elif stable[m, 1] >= c.patience:
                        stop = "weights_stable"
                if stop:
                    record["stop_reason"] = stop
                    live[m] = False
                    stop_now.append(m)
            if stop_now:  # stopped members cost no more optimiser work
                active[xp.asarray(np.array(stop_now))] = 0
            if progress is not None:
                progress(epoch, [r[-1] for r in records])
            if not live.any():
                break
        for m in np.flatnonzero(live):
            records[m][-1]["stop_reason"] = "epochs"
        self._checkpoints()
        out = [None] * P
        for m, i in enumerate(self.order):
            out[i] = records[m]
        return out

    def _initial_layer_norms(self) -> list[dict]:
        """Per member, ||dQ/dW_l|| of Q over its whole training set at the
        initial weights, in inference mode."""
        xp, model = self.xp, self.model
        X, y = self.splits["train"]
        z, cache = model.forward(X[self.rows], train=False)
        _, grad_z = model.loss.value_and_grad(xp, z, y[self.rows])
        model.backward(cache, grad_z)
        norms = xp.stack([xp.linalg.norm(model.grad_tensor(f"W{l}").reshape(self.P, -1), axis=1)
                          for l in range(1, len(self.sizes))], axis=1).astype(np.float64)
        host = norms.get() if xp is not np else norms
        return [{f"grad_norm_W{l}": float(host[m, l - 1]) for l in range(1, len(self.sizes))}
                for m in range(self.P)]

    def _checkpoints(self) -> None:
        for m, c in enumerate(self.configs):
            if c.checkpoint:
                save_checkpoint(self.model.member(m), c.checkpoint, c.as_dict(), optimizer=self.opt.member(m))


def _finite_acc(record: dict) -> dict:
    """The argmax of NaN outputs is no accuracy."""
    for split in ("train", "val", "test"):
        acc = record.get(f"{split}_acc")
        if acc is not None and not math.isfinite(record[f"{split}_loss"]):
            record[f"{split}_acc"] = float("nan")
        elif acc is not None:
            record[f"{split}_acc"] = float(acc)
        record[f"{split}_loss"] = float(record[f"{split}_loss"])
    return record


def without_timing(records: list[dict]) -> list[dict]:
    """Records minus the columns that depend on the machine's speed."""
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in records]
