"""Optimal Brain Damage (suite.obd): the Hessian diagonal against finite
differences, saliences, the mask through real training steps, the restore
step, feature selection, and the experiments' files and sections."""

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from optbench.kernels import FlatBuffer, Optimizer
from optbench.suite.lecture.obd import experiments as obd_experiments
from optbench.suite.lecture.obd import pruning as obd
from optbench.suite.lecture.verdict import STATUSES
from optbench.suite.nn.activations import ACTIVATIONS
from optbench.suite.data.datasets import load as _load
from optbench.suite.nn.mlp import MLP


@lru_cache(maxsize=None)
def load(name):
    pytest.importorskip("sklearn")  # digits; absent on the lent GPU machine
    return _load(name)

# --------------------------------------------------------------------------- #
# Float64 references, written independently of suite.obd
# --------------------------------------------------------------------------- #


def tiny(sizes, activation, loss, seed):
    """A float64 network with random weights and non-zero biases."""
    model = MLP(sizes, activation, loss, dtype=np.float64).member()
    rng = np.random.default_rng(seed)
    model.set_layers([(rng.normal(0, 1 / np.sqrt(h), (h, m)), rng.normal(0, 0.3, m))
                      for h, m in zip(sizes[:-1], sizes[1:])])
    return model


def weight_and_bias_indices(model, names=None):
    """Flat indices of the W and b entries (of the named tensors only, if given)."""
    out = []
    for slot in model.layout:
        if slot.name[0] in "Wb" and (names is None or slot.name in names):
            out += range(slot.offset, slot.offset + slot.size)
    return np.array(out)


def mean_loss(model, X, y):
    z, _ = model.forward(X)
    return model.value_and_grad(z, y)[0]


def fd_full_diagonal(model, X, y, idx, eps):
    """d2Q/dw_k^2 of the mean loss by central differences (the full Hessian)."""
    w, q0, out = model.params.data, mean_loss(model, X, y), []
    for k in idx:
        w0 = w[k]
        w[k] = w0 + eps
        qp = mean_loss(model, X, y)
        w[k] = w0 - eps
        qm = mean_loss(model, X, y)
        w[k] = w0
        out.append((qp - 2 * q0 + qm) / eps**2)
    return np.array(out)


def fd_gauss_newton_diagonal(model, X, y, idx, eps=1e-6):
    """diag(mean_n J_n^T H_n J_n): J_n = dz_n/dw by central differences of the
    outputs, H_n = d2Q_n/dz dz^T exactly (I for squared error, diag(p) - p p^T
    for softmax cross-entropy). The exact Gauss-Newton diagonal, off-diagonal
    entries of every H_n included."""
    w = model.params.data
    z0, _ = model.forward(X)
    if model.loss.name == "squared":
        H = np.broadcast_to(np.eye(z0.shape[1]), (len(X),) + (z0.shape[1],) * 2)
    else:
        p = np.exp(z0 - z0.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        H = np.einsum("nq,qr->nqr", p, np.eye(p.shape[1])) - np.einsum("nq,nr->nqr", p, p)
    out = []
    for k in idx:
        w0 = w[k]
        w[k] = w0 + eps
        zp, _ = model.forward(X)
        w[k] = w0 - eps
        zm, _ = model.forward(X)
        w[k] = w0
        J = (zp - zm) / (2 * eps)                        # (N, n_out): dz_n/dw_k
        out.append(np.einsum("nq,nqr,nr->n", J, H, J).mean())
    return np.array(out)


# --------------------------------------------------------------------------- #
# The Hessian diagonal
# --------------------------------------------------------------------------- #


def test_diagonal_is_the_exact_gauss_newton_diagonal_with_one_output():
    """One hidden layer (tanh), ONE linear output, squared error: the OBD
    diagonal equals the exact Gauss-Newton diagonal diag(mean_n J_n^T J_n)
    for every weight and bias, to finite-difference precision.

    Why exact: dz/dW_ij = a_i dz/dz_j, so the Gauss-Newton d2Q/dW_ij^2 is
    a_i^2 times the Gauss-Newton d2Q/dz_j^2 -- the a_i^2 h_j of the recursion.
    At the output h = 1 (d2Q_n/dz^2 = 1, a 1x1 matrix: nothing off-diagonal to
    drop). In the hidden layer the exact Gauss-Newton d2Q/dz_j^2 is
    sigma'(z_j)^2 (sum_q W_jq sqrt(h_q))^2, which with one output q is
    sigma'_j^2 W_j^2 h: the recursion's sum over q has one term, so dropping
    the cross terms drops nothing. What the recursion leaves out is only the
    sigma'' dQ/da term, which Gauss-Newton leaves out by definition -- and
    that term is not 0 for tanh: the full diagonal differs (checked last).
    """
    model = tiny([3, 5, 1], "tanh", "squared", seed=1)
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 1))
    idx = weight_and_bias_indices(model)
    ours = obd.hessian_diagonal(model, X, y, batch=16).data[idx]  # batches of 16, 16, 8
    exact_gn = fd_gauss_newton_diagonal(model, X, y, idx)
    np.testing.assert_allclose(ours, exact_gn, rtol=1e-7, atol=1e-12)
    full = fd_full_diagonal(model, X, y, idx, eps=1e-3)
    assert not np.allclose(ours, full, rtol=1e-3), "tanh's sigma'' terms should show in the full diagonal"


def test_diagonal_is_the_full_hessian_diagonal_for_relu_and_a_linear_output():
    """One hidden layer (ReLU), one linear output, squared error: the OBD
    diagonal equals the diagonal of the FULL Hessian d2Q/dw_k^2, by central
    differences of the loss itself.

    Why exact: the full Hessian is Gauss-Newton plus sum_q dQ/dz_q d2z_q/dw^2.
    With ReLU (sigma'' = 0 off the kinks) and a linear output, z is piecewise
    linear in any single weight, so d2z/dw_k^2 = 0 and the full diagonal is
    the Gauss-Newton diagonal, which the previous test shows the recursion
    computes exactly with one output. Q is then exactly quadratic in w_k near
    w, so the finite difference is exact up to rounding -- provided no step
    crosses a kink: objects with a hidden pre-activation within 0.05 of 0 are
    dropped (a step of 1e-3 moves z by at most 1e-3 * |a| < 0.01 here).
    """
    model = tiny([3, 6, 1], "relu", "squared", seed=3)
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(80, 3)), rng.normal(size=(80, 1))
    _, cache = model.forward(X)
    clear = np.abs(cache.preacts[0]).min(axis=1) > 0.05
    X, y = X[clear], y[clear]
    assert len(X) >= 20 and np.abs(X).max() < 10
    idx = weight_and_bias_indices(model)
    ours = obd.hessian_diagonal(model, X, y, batch=7).data[idx]
    full = fd_full_diagonal(model, X, y, idx, eps=1e-3)
    np.testing.assert_allclose(ours, full, rtol=1e-6, atol=1e-10)
    assert (ours[: 3 * 6] > 0).any()  # not a vacuous all-zero comparison


def test_last_layer_is_exact_for_cross_entropy_and_hidden_layers_are_approximate():
    """Softmax cross-entropy, 3 classes, two tanh hidden layers.

    Last layer (W3, b3): the OBD entries equal the FULL Hessian diagonal by
    finite differences of the loss. Why exact: z is linear in the last
    layer's weights (no sigma'' term, whatever sigma is), and dz_q/dW_ij =
    a_i [q = j], so d2Q/dW_ij^2 = a_i^2 (diag(p) - p p^T)_jj = a_i^2 p_j (1 - p_j):
    only the output Hessian's diagonal enters, which is the recursion's h^(L).

    First layer: NOT exact, and the test makes sure it notices. There the
    recursion drops the output Hessian's off-diagonal -p_q p_r and the cross
    terms between hidden units, so it differs from the exact Gauss-Newton
    diagonal (by more than 1% somewhere) while staying non-negative.
    """
    model = tiny([4, 5, 4, 3], "tanh", "cross_entropy", seed=5)
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(50, 4)), rng.integers(0, 3, 50)
    hd = obd.hessian_diagonal(model, X, y, batch=20).data
    last = weight_and_bias_indices(model, {"W3", "b3"})
    np.testing.assert_allclose(hd[last], fd_full_diagonal(model, X, y, last, eps=1e-3),
                               rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(hd[last], fd_gauss_newton_diagonal(model, X, y, last), rtol=1e-7)
    first = weight_and_bias_indices(model, {"W1"})
    exact_gn = fd_gauss_newton_diagonal(model, X, y, first)
    assert (hd[first] >= 0).all()
    assert not np.allclose(hd[first], exact_gn, rtol=1e-2), "the diagonal heuristic is not exact here"


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", ["cross_entropy", "squared"])
def test_diagonal_is_non_negative_and_does_not_depend_on_batching(backend, activation, loss):
    """Gauss-Newton keeps only squares: every entry >= 0 on any data; alpha
    (PReLU) and the alignment padding stay exactly 0; batches only split a
    mean, so the batch size does not matter (float32 model, float64 sums)."""
    xp = backend.xp
    rng = np.random.default_rng(7)
    sizes = [6, 7, 5, 4]
    model = MLP(sizes, activation, loss, xp=xp).member()
    model.set_layers([(rng.normal(0, 1, (h, m)), rng.normal(0, 0.5, m))
                      for h, m in zip(sizes[:-1], sizes[1:])])
    X = xp.asarray(rng.normal(0, 2, (45, 6)), dtype=np.float32)
    y = (xp.asarray(rng.integers(0, 4, 45)) if loss == "cross_entropy"
         else xp.asarray(rng.normal(size=(45, 4)), dtype=np.float32))
    hd = obd.hessian_diagonal(model, X, y, batch=10)
    whole = obd.hessian_diagonal(model, X, y, batch=45)
    data = backend.to_numpy(hd.data)
    assert data.dtype == np.float64 and (data >= 0).all() and (data > 0).any()
    np.testing.assert_allclose(data, backend.to_numpy(whole.data), rtol=1e-5, atol=1e-12)
    filled = np.zeros(model.layout.size, dtype=bool)
    for slot in model.layout:
        if slot.name[0] in "Wb":
            filled[slot.offset:slot.offset + slot.size] = True
    assert (data[~filled] == 0).all()  # alpha and padding


# --------------------------------------------------------------------------- #
# Saliences, ranking, feature selection
# --------------------------------------------------------------------------- #


def test_salience_is_half_w_squared_h_and_ranks_lowest_first():
    model = tiny([2, 3, 2], "relu", "squared", seed=8)
    w = model.params.data
    w[model.layout["W1"].offset:][:6] = [3.0, 1.0, -0.5, 2.0, 0.1, -4.0]
    rng = np.random.default_rng(9)
    hd = FlatBuffer(model.layout, rng.uniform(0.5, 2.0, model.layout.size))
    hd["W1"][...] = [[0.001, 1.0, 8.0], [0.5, 50.0, 0.01]]
    S = obd.salience(model, hd)
    np.testing.assert_array_equal(S, 0.5 * w.astype(np.float64) ** 2 * hd.data)
    # The largest first-layer weight (3.0) with a tiny curvature goes first,
    # before weights ten times smaller: salience is not magnitude.
    only_W1 = FlatBuffer(model.layout, np.zeros(model.layout.size, dtype=np.float32))
    only_W1["W1"][...] = 1
    first = obd.least_salient(S, only_W1.data, 1)
    assert w[first[0]] == 3.0
    candidates = obd.prunable(model)
    # The ranking is argsort(S) over the candidates: weights only (no biases),
    # and not those already pruned.
    candidates[model.layout["W1"].offset + 1] = 0
    n = int(candidates.sum())
    order = obd.least_salient(S, candidates, n)
    allowed = np.flatnonzero(candidates)
    np.testing.assert_array_equal(order, allowed[np.argsort(S[allowed], kind="stable")])
    bias = model.layout["b1"]
    assert not np.isin(order, np.arange(bias.offset, bias.offset + bias.size)).any()
    with pytest.raises(ValueError):
        obd.least_salient(S, candidates, n + 1)


def test_input_salience_sums_the_first_layer_rows():
    model = tiny([4, 3, 2], "tanh", "squared", seed=10)
    S = np.random.default_rng(11).uniform(0, 1, model.layout.size)
    W1 = model.layout["W1"]
    expected = [sum(S[W1.offset + j * 3 + h] for h in range(3)) for j in range(4)]
    np.testing.assert_allclose(obd.input_salience(model, S), expected, rtol=1e-14)


def test_constant_inputs_have_zero_salience_on_digits():
    """A pixel that is constant in the training set is 0 after standardising,
    so its weights see a_j = 0: zero curvature, zero salience, ranked first."""
    ds = load("digits")
    setup = obd_experiments.Setup(train_epochs=2, seeds=(0,))
    base = obd_experiments.new_trainer(ds, setup, 0)
    base.train(2)
    grid = obd_experiments.input_salience_map(base)
    constant = ds.X_train.std(axis=0) == 0
    assert constant.sum() >= 1
    assert (grid.ravel()[constant] == 0).all() and (grid.ravel()[~constant] > 0).all()


# --------------------------------------------------------------------------- #
# Pruning through real training steps
# --------------------------------------------------------------------------- #


def _digits_trainer(epochs, seed=0, backend="numpy"):
    ds = load("digits")
    setup = obd_experiments.Setup(hidden=(16,), batch_size=64, seeds=(seed,), backend=backend)
    t = obd_experiments.new_trainer(ds, setup, seed)
    t.train(epochs)
    return t


def test_pruned_weights_stay_exactly_zero_through_training_steps(backend):
    """The training step itself (loss_and_grad, then one masked Adam launch):
    pruned weights and their Adam state stay exactly 0 although their
    gradients are not 0; the kept weights move."""
    xp = backend.xp
    ds = load("digits")
    rng = np.random.default_rng(12)
    model = MLP([64, 16, 10], "relu", "cross_entropy", xp=xp).member()
    model.set_layers([(rng.normal(0, 0.2, (h, m)), np.zeros(m)) for h, m in ((64, 16), (16, 10))])
    mask = obd.random_mask(model, 0.6, rng)
    pruned = backend.to_numpy(mask) == 0
    assert pruned.sum() > 0
    opt = Optimizer("adam", model.params, mask=mask, lr=1e-2, backend=backend)
    X, y = xp.asarray(ds.X_train), xp.asarray(ds.y_train)
    w_start = backend.to_numpy(model.params.data).copy()
    grad_seen = 0.0
    for step in range(15):
        i = xp.asarray(np.arange(step * 32, step * 32 + 32))
        model.loss_and_grad(X[i], y[i])
        grad_seen += float(xp.abs(model.grads.data[xp.asarray(pruned)]).sum())
        opt.step(model.grads)
        w = backend.to_numpy(model.params.data)
        assert (w[pruned] == 0).all(), f"a pruned weight moved at step {step}"
        for name, s in opt.state.items():
            assert (backend.to_numpy(s)[pruned] == 0).all(), name
    assert grad_seen > 0  # the mask, not a zero gradient, holds them
    kept = ~pruned & (backend.to_numpy(obd.prunable(model)) > 0)
    assert (w[kept] != w_start[kept]).mean() > 0.9


def test_rounds_that_pass_keep_their_pruned_weights_at_zero(backend):
    t = _digits_trainer(8, backend=backend.name)
    history = obd.obd_prune(t, 0.3, retrain_epochs=1, threshold=1e9, max_rounds=2)
    assert list(history["round"]) == [1, 2] and not history.restored.any()
    mask = backend.to_numpy(t.opt.mask)
    allowed = backend.to_numpy(obd.prunable(t.model)) > 0
    assert int((mask[allowed] == 0).sum()) == history.n_pruned.iloc[-1]
    assert history.fraction.iloc[-1] == pytest.approx(1 - 0.7 ** 2, abs=0.01)
    assert (mask[~allowed] == 1).all()  # biases are never pruned by default
    t.train(1)
    assert (backend.to_numpy(t.model.params.data)[mask == 0] == 0).all()


def test_a_round_that_makes_the_loss_worse_is_undone_and_stops():
    """Prune 95% of what remains (on top of an earlier round) and retrain one
    epoch: the training loss must rise by more than 5% and 0.01, so the
    round is undone: mask, weights, Adam state and step count equal those
    before the round, bit for bit, and the procedure stops."""
    t = _digits_trainer(10)
    obd.obd_prune(t, 0.3, retrain_epochs=1, threshold=1e9, max_rounds=1)
    mask_before = t.opt.mask.copy()
    snap = t.snapshot()
    history = obd.obd_prune(t, 0.95, retrain_epochs=1, max_rounds=5, mask=t.opt.mask)
    assert len(history) == 1 and history.restored.iloc[0]
    row = history.iloc[0]
    assert row.train_loss_after - row.train_loss_before > max(0.05 * row.train_loss_before, 0.01)
    np.testing.assert_array_equal(t.opt.mask, mask_before)
    np.testing.assert_array_equal(t.model.params.data, snap["params"])
    for name, s in t.opt.state.items():
        np.testing.assert_array_equal(s, snap["optimizer"]["state"][name])
    assert t.opt.t == snap["optimizer"]["t"]
    assert t.evaluate()["train_loss"] == pytest.approx(row.train_loss_before, rel=1e-6)


def test_significantly_worse_uses_both_losses_and_the_floor():
    before = {"train_loss": 0.02, "val_loss": 0.5}
    assert not obd.significantly_worse(before, {"train_loss": 0.029, "val_loss": 0.5})  # < 0.01
    assert obd.significantly_worse(before, {"train_loss": 0.031, "val_loss": 0.5})
    assert not obd.significantly_worse(before, {"train_loss": 0.02, "val_loss": 0.52})  # < 5%
    assert obd.significantly_worse(before, {"train_loss": 0.02, "val_loss": 0.53})


def test_predicted_increase_is_the_sum_of_removed_saliences_and_copies_are_independent():
    t = _digits_trainer(6)
    w = t.model.params.data.copy()
    df = obd_experiments.predicted_vs_measured(t, counts=(5, 50), criteria=("obd", "random"), n_single=5)
    np.testing.assert_array_equal(t.model.params.data, w)  # measured, then put back
    X, y = t.splits["train"]
    S = obd.salience(t.model, obd.hessian_diagonal(t.model, X, y))
    idx = obd.least_salient(S, obd.prunable(t.model), 50)
    row = df[(df.criterion == "obd") & (df.n_removed == 50)].iloc[0]
    assert row.predicted == pytest.approx(S[idx].sum(), rel=1e-12)
    twin = t.copy()
    twin.train(1)
    np.testing.assert_array_equal(t.model.params.data, w)


# --------------------------------------------------------------------------- #
# The experiments
# --------------------------------------------------------------------------- #


def test_quick_experiments_write_their_files_and_sections(tmp_path):
    sections = obd_experiments.run_obd_experiments(tmp_path, quick=True)
    assert len(sections) == 6
    for s in sections:
        assert set(s) == {"title", "figure", "table", "verdict", "status", "claim"}
        assert s["status"] in STATUSES
        assert s["title"] and s["claim"] and len(s["verdict"]) > 20
        assert any(ch.isdigit() for ch in s["verdict"])  # it quotes measured numbers
        assert s["figure"] and (tmp_path / s["figure"]).stat().st_size > 5000
        assert s["table"] is None or s["table"].startswith("|")
    for name in ("trained", "procedure", "criteria", "predicted_vs_measured", "schedules",
                 "input_salience", "top_k"):
        assert (tmp_path / f"obd_{name}.csv").stat().st_size > 0
    assert (tmp_path / "obd_run.json").exists()
    criteria = pd.read_csv(tmp_path / "obd_criteria.csv")
    assert set(criteria.criterion) == set(obd.CRITERIA) and set(criteria.stage) == {"pruned", "retrained"}
