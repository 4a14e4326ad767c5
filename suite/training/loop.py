"""One training run: a config in, one record per evaluation point out.

The lecture's SGD loop (section 2), with mini-batches (section 3):

1. random initial weights (``init``);
2. for epoch t = 1, 2, ...: for each mini-batch, w := optimiser step on the
   batch gradient (one kernel launch over the flat buffer);
3. after each epoch, the criterion Q over the whole training set, the
   validation and test loss and accuracy;
4. until the epochs run out, Q or the weights stabilise (relative change at
   most ``tol`` for ``patience`` epochs in a row; patience 0 turns this off),
   or a loss or gradient turns NaN/Inf -- then the run is marked diverged and
   stops; nothing raises.

Records (one dict per evaluation point, epoch 0 being the initial weights):
backend and device (what ran), dtype, lr_used (the rule's default when the
config gives none), data_hash and n_train (the data set's), epoch, step, examples_seen, wall_time (training seconds so far, evaluation
excluded, device synchronised), examples_per_sec (this epoch), train_loss (Q
over the training set, inference mode), train_acc, val_loss, val_acc,
test_loss, test_acc, grad_norm (mean ||dQ/dw|| over the epoch's steps),
diverged, stop_reason ("" until the last record).

With ``layer_norms=True`` each record also has grad_norm_W1 .. grad_norm_WL:
||dQ/dW_l|| of layer l's weight matrix (biases excluded), the mean over the
epoch's steps like grad_norm; at epoch 0 the gradient of Q over the whole
training set at the initial weights, in inference mode (no dropout, so the
dropout stream and every other column are the same as with it off). Section
8's vanishing gradients show up as grad_norm_W1 << grad_norm_WL.

Nesterov keeps the look-ahead point in its buffer (see kernels.rules.nesterov);
it is evaluated at its true weights w = u + eta gamma v.

A config's ``schedule`` is bound to the run's total steps (epochs x steps per
epoch) and handed to the Optimizer, which scales each step's lr on the host;
``decay = "weights"`` hands it the decay mask of the network's layout (L2
and decoupled decay on W1, W2, ... only), still one launch per step.
``lr_used`` is the base lr, the schedule's factor 1.

Same config and seed on the NumPy backend give identical records, bit for bit
(the timing columns apart).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kernels import Optimizer, get_backend, get_rule
from kernels.backend import to_host
from kernels.steps import StepAccount

from ..data import batches as batch_order
from ..data import datasets
from ..nn.checkpoint import load_checkpoint, save_checkpoint
from ..nn.inits import init_layers
from ..nn.mlp import MLP
from .config import RunConfig, check, decay_mask_for, run_schedule

TIMING_COLUMNS = ("wall_time", "examples_per_sec")


@dataclass
class EpochStats:
    """What one pass over the training set did."""

    steps: int = 0               # optimiser updates made
    examples: int = 0            # objects seen in those steps
    grad_norm_sum: float = 0.0   # sum of ||dQ/dw|| over those steps
    diverged: bool = False       # a step's loss or gradient was NaN/Inf; no update from it on
    layer_norm_sums: list = field(default_factory=list)  # per layer, when asked for

    @property
    def grad_norm(self) -> float:
        """Mean ||dQ/dw|| over the steps taken (NaN if none was)."""
        return self.grad_norm_sum / self.steps if self.steps else float("nan")


def train_epoch(model: MLP, opt: Optimizer, X, y, order, batch_size: int,
                layer_norms: bool = False) -> EpochStats:
    """One epoch of the lecture's loop (section 2): for each mini-batch of
    ``order`` (the epoch's object order, host indices), the loss and its
    gradient (back-propagation into ``model.grads``), then one optimiser
    launch over the flat buffer.

    The first step whose loss or gradient norm is not finite makes no update
    and ends the run's training (``diverged``). On the CPU the loop reads each
    step's numbers as they come and stops there. On a GPU nothing is read
    inside the epoch: the order is uploaded once, each step's numbers go to a
    device-side account (``kernels.steps.StepAccount``) whose flag makes every
    later optimiser launch a no-op, and the account is read once at the end.
    ``layer_norms``: also sum ||dQ/dW_l|| per layer over the steps taken.
    The single run (:func:`run`) and Optimal Brain Damage's retraining both
    train with this.
    """
    xp = model.xp
    n = len(order)
    bounds = [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]
    idx = xp.asarray(order)  # one upload per epoch
    stats = EpochStats(layer_norm_sums=[0.0] * model.n_layers if layer_norms else [])
    if xp is np:
        for lo, hi in bounds:
            loss = model.loss_and_grad(X[idx[lo:hi]], y[idx[lo:hi]])
            gnorm = float(xp.linalg.norm(model.grads.data))
            if not (math.isfinite(loss) and math.isfinite(gnorm)):
                stats.diverged = True
                break
            if layer_norms:
                stats.layer_norm_sums = [a + float(b) for a, b in zip(stats.layer_norm_sums, _layer_norms(model))]
            opt.step(model.grads, check_finite=False)  # checked above, with the norm we record
            stats.steps += 1
            stats.examples += hi - lo
            stats.grad_norm_sum += gnorm
        return stats
    account = StepAccount(xp)
    layer_sums = xp.zeros(model.n_layers, dtype=np.float32) if layer_norms else None
    for k, (lo, hi) in enumerate(bounds):
        i = idx[lo:hi]
        loss = model.loss_and_grad(X[i], y[i])
        account.step(k, loss, xp.linalg.norm(model.grads.data))
        if layer_norms:  # this step's norms count while the run is still finite
            layer_sums += xp.stack(_layer_norms(model)) * account.active
        opt.step(model.grads, check_finite=False, active=account.active)
    norm_sum, bad, *layers = to_host(account.norm_sum, account.bad_step,
                                     *([layer_sums[l] for l in range(model.n_layers)] if layer_norms else []))
    taken = len(bounds) if bad < 0 else int(bad)
    return EpochStats(steps=taken, examples=sum(hi - lo for lo, hi in bounds[:taken]), grad_norm_sum=norm_sum,
                      diverged=bad >= 0, layer_norm_sums=layers)


def build(config: RunConfig):
    """(dataset, model, optimiser, backend, batch size) for a config."""
    get_rule(config.optimizer)  # unknown names fail before any data is made
    backend = get_backend(config.backend)
    ds = datasets.load(config.dataset, seed=config.seed, standardize=config.standardize)
    batch, loss = check(config, ds)
    sizes = [ds.n_features, *config.hidden, ds.n_outputs]
    model = MLP(sizes, config.activation, loss, config.dropout, config.dropout_mode,
                xp=backend.xp, dropout_seed=config.seed)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 7]))
    if config.init == "checkpoint":
        load_checkpoint(model, config.init_from)
    else:
        model.set_layers(init_layers(config.init, sizes, rng, X=ds.X_train, y=ds.y_train,
                                     activation=config.activation))
    hyper = dict(config.hyper)
    if config.lr is not None:
        hyper["lr"] = config.lr
    opt = Optimizer(config.optimizer, model.params, backend=backend.name, l2=config.l2,
                    wd=config.wd, schedule=run_schedule(config, batch, ds.n_train),
                    decay_mask=decay_mask_for(config, model.layout, backend.xp), **hyper)
    return ds, model, opt, backend, batch


def _finite(x) -> bool:
    return math.isfinite(x)


def run(config: RunConfig, progress=None) -> list[dict]:
    """Train one run; returns its records (see the module docstring).

    progress: optional callable(epoch, record) called after each evaluation.
    """
    # Overflow on the way to divergence is expected and reported as a record.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _run(config, progress)


def _run(config: RunConfig, progress) -> list[dict]:
    ds, model, opt, backend, batch = build(config)
    xp = backend.xp
    dev = {k: (xp.asarray(X), xp.asarray(y)) for k, (X, y) in ds.splits().items()}
    X_train, y_train = dev["train"]

    def evaluate(record):
        saved = None
        if opt.rule.weights is not None:  # evaluate Nesterov at w, not at the look-ahead point
            saved = model.params.data.copy()
            model.params.data[...] = opt.weights()
        for split, (X, y) in dev.items():
            loss, acc = model.evaluate(X, y)
            if acc is not None and not _finite(loss):
                acc = float("nan")  # the argmax of NaN outputs is no accuracy
            record[f"{split}_loss"], record[f"{split}_acc"] = loss, acc
        if saved is not None:
            model.params.data[...] = saved
        return record

    # What ran: the same on every record, so each row of a table says it.
    ran = {"backend": backend.name, "device": backend.device, "dtype": "float32",
           "lr_used": opt.hyper["lr"], "data_hash": ds.content_hash, "n_train": ds.n_train}
    records = []
    step = seen = 0
    wall = 0.0
    record = evaluate({**ran, "epoch": 0, "step": 0, "examples_seen": 0, "wall_time": 0.0,
                       "examples_per_sec": float("nan"), "grad_norm": float("nan"),
                       "diverged": False, "stop_reason": ""})
    if config.layer_norms:
        record.update(_initial_layer_norms(model, X_train, y_train))
    records.append(record)
    stable = {"criterion": 0, "weights": 0}
    prev_w = model.params.data.copy()
    stop = ""
    for epoch in range(1, config.epochs + 1):
        backend.synchronize()
        with backend.timer() as t:
            order = batch_order.epoch_order(ds.n_train, epoch - 1, config.seed, config.order, ds.y_train)
            stats = train_epoch(model, opt, X_train, y_train, order, batch, config.layer_norms)
            backend.synchronize()
        step += stats.steps
        seen += stats.examples
        wall += t.seconds
        diverged = stats.diverged
        record = {**ran, "epoch": epoch, "step": step, "examples_seen": seen, "wall_time": wall,
                  "examples_per_sec": stats.examples / t.seconds if t.seconds > 0 else float("nan"),
                  "grad_norm": stats.grad_norm, "diverged": diverged, "stop_reason": ""}
        if config.layer_norms:  # averaged over the steps taken (a diverging step is not)
            record.update({f"grad_norm_W{l}": total / max(stats.steps, 1)
                           for l, total in enumerate(stats.layer_norm_sums, start=1)})
        evaluate(record)
        w = model.params.data
        finite_w, dw, norm_w = to_host(xp.isfinite(w).all(), xp.linalg.norm(w - prev_w), xp.linalg.norm(w))
        if not diverged and not (_finite(record["train_loss"]) and finite_w):
            record["diverged"] = diverged = True
        records.append(record)
        if progress is not None:
            progress(epoch, record)
        if diverged:
            stop = "diverged"
            break
        if config.patience > 0:
            q0, q1 = records[-2]["train_loss"], record["train_loss"]
            rel_dw = dw / max(norm_w, 1e-30)
            stable["criterion"] = stable["criterion"] + 1 if abs(q1 - q0) <= config.tol * max(abs(q0), 1e-30) else 0
            stable["weights"] = stable["weights"] + 1 if rel_dw <= config.tol else 0
            prev_w = w.copy()
            if stable["criterion"] >= config.patience:
                stop = "criterion_stable"
                break
            if stable["weights"] >= config.patience:
                stop = "weights_stable"
                break
    records[-1]["stop_reason"] = stop or "epochs"
    if config.checkpoint:
        save_checkpoint(model, config.checkpoint, config.as_dict(), optimizer=opt)
    return records


def _layer_norms(model) -> list:
    """||dQ/dW_l|| for every layer l (0-d arrays on the model's device), from
    the views into the flat gradient buffer."""
    xp = model.xp
    return [xp.linalg.norm(model.grads[f"W{l}"]) for l in range(1, model.n_layers + 1)]


def _initial_layer_norms(model, X, y) -> dict:
    """Per-layer gradient norms of Q over the training set at the current weights.

    Inference-mode forward (no dropout draw), so the dropout stream that
    training uses is untouched; with classic dropout the inference factor
    (1 - p) is not back-propagated (an approximation, at epoch 0 only).
    model.grads is overwritten, which is harmless because every training step
    recomputes it before use.
    """
    z, cache = model.forward(X, train=False)
    _, grad_z = model.loss.value_and_grad(model.xp, z, y)
    model.backward(cache, grad_z)
    return {f"grad_norm_W{l}": norm for l, norm in enumerate(to_host(*_layer_norms(model)), start=1)}


def without_timing(records: list[dict]) -> list[dict]:
    """Records minus the columns that depend on the machine's speed."""
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in records]
