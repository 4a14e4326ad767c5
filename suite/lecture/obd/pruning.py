"""Optimal Brain Damage: pruning connections by salience (lecture section 11;
LeCun, Denker and Solla 1990).

Near a minimum w* of the training criterion Q (the mean loss over the N
training objects), zeroing a set of weights, delta = -w on that set, changes Q
by the quadratic form

    Q(w + delta) - Q(w) = g^T delta + 1/2 delta^T Q''(w) delta + o(|delta|^2)

with g = dQ/dw ~ 0. OBD takes the Hessian Q'' as diagonal, so each weight
w_k has a salience, the predicted increase of Q when it alone is removed,

    S_k = 1/2 * w_k^2 * d2Q/dw_k^2                         (salience)

(the slide drops the 1/2; it does not change the ranking, and with it S is
in the units of Q, so the sum of the removed saliences predicts the measured
change of the training loss -- which
:func:`suite.lecture.obd.experiments.predicted_vs_measured` checks).

The diagonal d2Q/dw_k^2 comes from a second backward pass, the same shape as
back-propagation (``hessian_diagonal``), in the Gauss-Newton /
Levenberg-Marquardt form that keeps only the always non-negative terms.
For a layer z = a W + b, with h_j = d2Q/dz_j^2:

    d2Q/dW_ij^2 ~ sum over objects of a_i^2 * h_j     d2Q/db_j^2 ~ sum of h_j
    h^(l-1)_i  = sigma'(z_i)^2 * sum_j W_ij^2 h^(l)_j                  (1)

Two things are dropped on the way, both named in the paper: the terms
sigma''(z_i) * dQ/da_i (Gauss-Newton; they can be negative) and the
off-diagonal entries of d2Q/dz dz^T in (1) (the diagonal heuristic). At the
output, per object, h = p_q (1 - p_q) for softmax cross-entropy (the diagonal
of diag(p) - p p^T) and h = 1 for squared error 1/2 sum_q (z_q - y_q)^2; the
mean over objects gives the Hessian of our Q, which averages over objects.

The procedure (``obd_prune``): train to a minimum; compute the saliences;
remove the N least salient weights; retrain; if the training or validation
loss gets significantly worse, restore the last removed connections and stop.
Pruned weights stay exactly zero through retraining because the optimiser
applies the 0/1 mask inside its update kernel (``Optimizer.set_mask``; see
``kernels.transforms.masked``), weights and optimiser state together, in the same
single launch as an unpruned step.

Feature selection (``input_salience``): the salience of input j is the sum
of the saliences of its first-layer weights, S_j = sum_h S_jh.

Everything runs through ``model.xp``, on NumPy or CuPy (or Numba's kernels
over NumPy arrays).

The experiments on digits that put these claims to the test (OBD against
magnitude and random pruning, predicted against measured loss increases,
gradual against one-shot pruning, feature selection) are in
:mod:`suite.lecture.obd.experiments`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from optbench.kernels import FlatBuffer, Optimizer
from optbench.kernels.backend import array_module

from ...nn.mlp import MLP, Network
from ...training.epoch import batch_bounds, train_epoch
from ...data.batches import epoch_order

CRITERIA = ("obd", "magnitude", "random")
#: The stop rule's "significantly worse": after retraining, the training or
#: the validation loss exceeds its value before the pruning round by more than
#: DEFAULT_THRESHOLD (relative) and by more than DEFAULT_MIN_INCREASE (in the
#: loss's units, nats for cross-entropy). The floor is there because a
#: network that fits its training set has a training loss near 0 (about 0.02
#: on digits), where retraining noise alone moves it by 10-20%: a purely
#: relative rule then stops at the first round, whatever the pruning did.
DEFAULT_THRESHOLD = 0.05
DEFAULT_MIN_INCREASE = 0.01


# --------------------------------------------------------------------------- #
# The Hessian diagonal (a second backward pass)
# --------------------------------------------------------------------------- #


def output_curvature(loss: str, xp, z):
    """h^(L) = d2Q_n/dz_q^2 per object n (its own loss, not divided by N).

    cross_entropy: Q_n = -log p_y, p = softmax(z); d2Q_n/dz dz^T = diag(p) - p p^T,
        whose diagonal p_q (1 - p_q) is what the recursion keeps.
    squared: Q_n = 1/2 sum_q (z_q - y_q)^2 with a linear output; d2Q_n/dz dz^T = I.
    """
    if loss == "cross_entropy":
        shifted = z - z.max(axis=1, keepdims=True)
        e = xp.exp(shifted)
        p = e / e.sum(axis=1, keepdims=True)
        return p * (1 - p)
    if loss == "squared":
        return xp.ones_like(z)
    raise ValueError(f"no output curvature for loss {loss!r}")


def _inference_scale(model: Network, l: int) -> float:
    """da/d(sigma(z)) of hidden layer l at inference: (1 - p) under classic
    dropout (the lecture's inference rule), 1 otherwise."""
    p = model.dropout[l - 1]
    return 1.0 - p if model.dropout_mode == "classic" and p > 0 else 1.0


def hessian_diagonal(model: Network, X, y, batch: int = 512) -> FlatBuffer:
    """The OBD diagonal of d2Q/dw^2 over (X, y): the Gauss-Newton form of (1).

    Q is the mean loss over the objects of X (as in training), so this is the
    mean over objects of the per-object diagonals; it is computed in batches
    of ``batch`` objects at inference (no dropout), accumulated in float64.
    Returns a float64 FlatBuffer with the parameters' layout: W and b entries
    filled, every entry >= 0; PReLU alpha entries and padding are 0 (alpha
    is never pruned, so it needs no salience).
    """
    xp = model.xp
    hd = FlatBuffer(model.layout, xp.zeros(model.layout.size, dtype=np.float64))
    n = X.shape[0]
    for start in range(0, n, batch):
        _accumulate_batch(model, X[start:start + batch], hd)
    hd.data /= n
    return hd


def _accumulate_batch(model: Network, X, hd: FlatBuffer) -> None:
    """Add sum over the batch's objects of the per-object diagonals to ``hd``."""
    xp = model.xp
    z, cache = model.forward(X)
    h = output_curvature(model.loss.name, xp, z)           # h^(L), (batch, n_out)
    for l in range(model.n_layers, 0, -1):
        a = cache.inputs[l - 1]                             # a^(l-1), what W_l multiplies
        hd[f"W{l}"][...] += (a * a).T @ h                   # sum_n a_i^2 h_j
        hd[f"b{l}"][...] += h.sum(axis=0)                   # the bias sees a = 1
        if l == 1:
            break
        W = model.params[f"W{l}"]
        # d2Q/da^2 ~ sum_j W_ij^2 h_j: the off-diagonal h_jk are dropped.
        h_a = h @ (W * W).T
        s = _inference_scale(model, l - 1)
        alpha = model.params[f"alpha{l - 1}"] if model.activation.has_alpha else None
        d = model.activation.derivative(cache.preacts[l - 2], alpha=alpha, xp=xp,
                                        a=cache.acts[l - 2])
        # Gauss-Newton: sigma'^2 * d2Q/da^2, without sigma'' * dQ/da (may be < 0).
        h = h_a * (s * s) * (d * d)


# --------------------------------------------------------------------------- #
# Saliences and masks
# --------------------------------------------------------------------------- #


def salience(model: Network, hdiag: FlatBuffer):
    """S_k = 1/2 w_k^2 d2Q/dw_k^2 for every parameter (float64, params' layout)."""
    w = model.params.data.astype(np.float64)
    return 0.5 * w * w * hdiag.data


def prunable(model: Network, biases: bool = False):
    """A float32 0/1 array of the params' layout: 1 where OBD may prune.

    The weights W_l always; the biases b_l only with biases=True (by default
    they stay: they are few and pruning them saves nothing); never PReLU's
    alpha or the alignment padding.
    """
    xp = model.xp
    out = FlatBuffer(model.layout, xp.zeros(model.layout.size, dtype=np.float32))
    for l in range(1, model.n_layers + 1):
        out[f"W{l}"][...] = 1
        if biases:
            out[f"b{l}"][...] = 1
    return out.data


def full_mask(model: Network):
    """The mask that keeps everything: float32 ones of the params' size."""
    return model.xp.ones(model.layout.size, dtype=np.float32)


def random_mask(model: Network, sparsity: float, rng: np.random.Generator):
    """A mask removing round(sparsity * #weights) weights chosen uniformly at random."""
    allowed = prunable(model)
    n = int(round(sparsity * float(allowed.sum())))
    idx = least_salient(model.xp.asarray(rng.random(model.layout.size)), allowed, n)
    mask = full_mask(model)
    mask[idx] = 0
    return mask


def criterion_scores(model: Network, criterion: str, X=None, y=None, rng=None):
    """Per-parameter scores, lowest pruned first (float64, params' layout).

    obd: the salience S = w^2 h / 2 over (X, y) (the training set);
    magnitude: |w|;
    random: uniform draws from ``rng`` (a numpy Generator), made on the host.
    """
    xp = model.xp
    if criterion == "obd":
        return salience(model, hessian_diagonal(model, X, y))
    if criterion == "magnitude":
        return xp.abs(model.params.data.astype(np.float64))
    if criterion == "random":
        return xp.asarray(rng.random(model.layout.size))
    raise ValueError(f"unknown pruning criterion {criterion!r}; allowed: {', '.join(CRITERIA)}")


def least_salient(scores, candidates, n: int):
    """Indices of the ``n`` lowest scores among entries where candidates == 1.

    Ties keep index order (a stable sort), so equal saliences -- e.g. the
    zero saliences of weights from a constant input -- go first to first.
    """
    xp = array_module(scores)
    n_candidates = int((candidates > 0).sum())
    if not 0 <= n <= n_candidates:
        raise ValueError(f"cannot remove {n} of {n_candidates} remaining connections")
    masked_scores = xp.where(candidates > 0, scores, xp.inf)
    order = xp.argsort(masked_scores, kind="stable") if xp is np else xp.argsort(masked_scores)
    return order[:n]


def input_salience(model: Network, S):
    """Feature selection: S_j = sum_h S_jh over input j's first-layer weights.

    ``S`` is a flat salience array of the params' layout; returns (n_in,).
    """
    return FlatBuffer(model.layout, S)["W1"].sum(axis=1)


# --------------------------------------------------------------------------- #
# Training with a mask
# --------------------------------------------------------------------------- #


@dataclass
class Trainer:
    """A model, its optimiser and the data on the model's device.

    ``train(epochs)`` runs the suite's training epoch (``suite.training.loop.
    train_epoch``: model.loss_and_grad, then one optimiser launch with the
    current mask) over shuffled mini-batches; ``epoch`` counts on across
    calls, so every epoch of every retraining round gets a fresh shuffle.
    """

    model: Network
    opt: Optimizer
    splits: dict            # split -> (X, y) on the model's device
    batch_size: int = 32
    seed: int = 0
    epoch: int = 0

    @property
    def n_train(self) -> int:
        return int(self.splits["train"][0].shape[0])

    def train(self, epochs: int) -> None:
        X, y = self.splits["train"]
        xp = self.model.xp
        rows, active = xp.zeros(1, dtype=np.int64), xp.ones(1, dtype=np.int32)
        bounds = batch_bounds(self.n_train, self.batch_size)
        for _ in range(int(epochs)):
            order = xp.asarray(epoch_order(self.n_train, self.epoch, self.seed)[None])  # one upload
            train_epoch(self.model.model, self.opt.population, X[None], y[None], rows, order, bounds, active)
            self.epoch += 1

    def evaluate(self, splits=("train", "val")) -> dict:
        """{split}_loss and {split}_acc at inference for each split (at the
        weights in the buffer: for Nesterov that is its look-ahead point)."""
        out = {}
        for split in splits:
            loss, acc = self.model.evaluate(*self.splits[split])
            out[f"{split}_loss"], out[f"{split}_acc"] = float(loss), acc
        return out

    def set_mask(self, mask) -> None:
        self.opt.set_mask(mask)

    def snapshot(self) -> dict:
        """Weights and the optimiser's state (step count included), to restore a round."""
        return {"params": self.model.params.data.copy(), "optimizer": self.opt.state_dict()}

    def copy(self) -> "Trainer":
        """An independent trainer at the same point: weights, optimiser state,
        step and epoch counters, and the same data (shared, read-only)."""
        m = self.model
        model = MLP(m.sizes, m.activation.name, m.loss.name, m.dropout, m.dropout_mode, xp=m.xp,
                    dtype=m.params.data.dtype, seeds=m.model.seeds).member()
        model.params.data[...] = m.params.data
        opt = Optimizer(self.opt.rule, model.params, backend=self.opt.backend, **self.opt.hyper)
        twin = replace(self, model=model, opt=opt)
        twin.restore(self.snapshot(), None if self.opt.mask is None else self.opt.mask.copy())
        return twin

    def restore(self, snap: dict, mask) -> None:
        """Back to ``snap`` (from ``snapshot``) under ``mask`` (None: no mask)."""
        self.opt.set_mask(mask)
        self.model.params.data[...] = snap["params"]
        self.opt.load_state_dict(snap["optimizer"])


def prune(trainer: Trainer, mask, idx) -> None:
    """Zero the connections ``idx``: mask 0 there, weights and state zeroed now
    and held at 0 by every later masked update."""
    mask[idx] = 0
    trainer.set_mask(mask)


# --------------------------------------------------------------------------- #
# The lecture's procedure
# --------------------------------------------------------------------------- #


def _count(per_round, remaining: int) -> int:
    """N for this round: an int is a count; a float in (0, 1) a share of the
    connections that remain (a geometric schedule)."""
    if isinstance(per_round, (int, np.integer)):
        return min(int(per_round), remaining)
    if not 0.0 < float(per_round) < 1.0:
        raise ValueError(f"per_round must be a count or a share in (0, 1), got {per_round!r}")
    return min(max(1, int(round(float(per_round) * remaining))), remaining)


def significantly_worse(before: dict, after: dict, threshold: float = DEFAULT_THRESHOLD,
                        min_increase: float = DEFAULT_MIN_INCREASE) -> bool:
    """The stop rule: the training or the validation loss rose by more than
    max(threshold * its value before the round, min_increase)."""
    return any(after[k] - before[k] > max(threshold * before[k], min_increase)
               for k in ("train_loss", "val_loss"))


def obd_prune(trainer: Trainer, per_round, retrain_epochs: int, threshold: float = DEFAULT_THRESHOLD,
              min_increase: float = DEFAULT_MIN_INCREASE, max_rounds: int = 50,
              criterion: str = "obd", biases: bool = False, mask=None, rng=None) -> pd.DataFrame:
    """The lecture's procedure on an already trained network; one row per round.

    Each round: compute the saliences on the training set, remove the
    ``per_round`` least salient remaining connections (weights only unless
    ``biases``), measure the loss right after removal, retrain for
    ``retrain_epochs`` epochs with the mask, and compare with the losses
    before the round (``significantly_worse`` with ``threshold`` and
    ``min_increase``). If it is worse, restore the
    network as it was before the round -- the mask, so the removed
    connections are back, and the weights and optimiser state, since the
    other weights were retrained to compensate for the removed ones -- and
    stop. Also stops when nothing is left to prune or after ``max_rounds``.

    The trainer's model keeps the final (or restored) weights and mask; the
    mask is ``trainer.opt.mask``. ``criterion`` = magnitude or random runs
    the same procedure with another ranking (random needs ``rng``).

    Columns: round, criterion, n_removed, n_pruned (total after the
    removal), fraction (n_pruned / prunable weights), {train,val}_{loss,acc}
    _before / _pruned (right after removal, before retraining) / _after
    (after retraining), predicted_increase (sum of the removed saliences),
    measured_increase (train_loss_pruned - train_loss_before), restored.
    """
    model = trainer.model
    X, y = trainer.splits["train"]
    allowed = prunable(model, biases)
    mask = full_mask(model) if mask is None else mask
    trainer.set_mask(mask)
    n_prunable = int(allowed.sum())
    rows = []
    for rnd in range(1, max_rounds + 1):
        alive = allowed * mask
        remaining = int(alive.sum())
        if remaining == 0:
            break
        before = trainer.evaluate()
        snap, saved_mask = trainer.snapshot(), mask.copy()
        S = salience(model, hessian_diagonal(model, X, y))
        scores = S if criterion == "obd" else criterion_scores(model, criterion, rng=rng)
        idx = least_salient(scores, alive, _count(per_round, remaining))
        predicted = float(S[idx].sum())
        prune(trainer, mask, idx)
        pruned = trainer.evaluate()
        trainer.train(retrain_epochs)
        after = trainer.evaluate()
        worse = significantly_worse(before, after, threshold, min_increase)
        n_pruned = n_prunable - int((allowed * mask).sum())
        rows.append({"round": rnd, "criterion": criterion, "n_removed": int(idx.shape[0]),
                     "n_pruned": n_pruned, "fraction": n_pruned / n_prunable,
                     **_suffixed(before, "before"), **_suffixed(pruned, "pruned"),
                     **_suffixed(after, "after"), "predicted_increase": predicted,
                     "measured_increase": pruned["train_loss"] - before["train_loss"],
                     "restored": worse})
        if worse:
            mask[...] = saved_mask
            trainer.restore(snap, mask)
            break
    return pd.DataFrame(rows)


def _suffixed(d: dict, suffix: str) -> dict:
    return {f"{k}_{suffix}": v for k, v in d.items()}
