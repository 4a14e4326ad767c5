"""The training step into buffers made once (MLP.step_loss_and_grad, issue
22): the allocating step's numbers bit for bit, no allocation after the
first step at a batch size, and so a step that a CUDA graph can capture
(on the strict CuPy stand-in)."""

import numpy as np
import pytest

from optbench.kernels import PopulationOptimizer
from optbench.kernels.steps import StepAccount
from optbench.suite.nn.mlp import MLP
from optbench.suite.training.epoch import training_step

S, N, D = 2, 50, 7


def data(xp, kind, k):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((S, N, D)).astype(np.float32)
    y = rng.integers(0, k, (S, N)) if kind == "labels" else rng.standard_normal((S, N, k)).astype(np.float32)
    return xp.asarray(X), xp.asarray(y)


def pair(xp, P, activation, loss, dropout, k):
    models = [MLP([D, 6, 5, k], activation, loss, dropout=dropout, xp=xp, members=P, seeds=list(range(P)))
              for _ in range(2)]
    w = np.random.default_rng(1).standard_normal(models[0].params.shape).astype(np.float32) * 0.4
    for m in models:
        m.params[...] = xp.asarray(w)
    return models


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "prelu"])
@pytest.mark.parametrize("kind, loss", [("labels", "cross_entropy"), ("labels", "squared"), ("values", "squared")])
@pytest.mark.parametrize("P, dropout", [(1, 0.0), (3, 0.0), (3, 0.3)])
def test_the_buffered_step_gives_the_allocating_steps_bits(activation, kind, loss, P, dropout):
    k = 4
    X, y = data(np, kind, k)
    old, new = pair(np, P, activation, loss, dropout, k)
    rows = np.arange(P) % S
    rng = np.random.default_rng(5)
    for B in (8, 8, 3, 8):  # a batch size again (its buffers reused) and a short last batch
        idx = np.stack([rng.permutation(N)[:B] for _ in range(P)])
        want = old.loss_and_grad(X[rows[:, None], idx], y[rows[:, None], idx])
        got = new.step_loss_and_grad(X, y, rows[:, None] * N, idx)
        assert np.array_equal(got, want) and np.array_equal(new.grads, old.grads)
        assert np.isfinite(old.grads).all() and old.grads.any()


def test_a_step_allocates_nothing_after_the_first_at_its_batch_size(standin):
    cp = standin
    X, y = data(cp, "labels", 4)
    model = pair(cp, 3, "relu", "cross_entropy", 0.0, 4)[0]
    opt = PopulationOptimizer(model.params, ["adam"] * 3, [{}] * 3, layout=model.layout)
    account, base, gsq = StepAccount(cp, 3), cp.asarray(np.array([[0], [N], [0]])), cp.empty((3, 1, 1), np.float32)
    idx = cp.asarray(np.tile(np.arange(8), (3, 1)))
    opt.begin_epoch(3)
    training_step(model, opt, account, X, y, base, idx, 0, None, gsq)
    standin.reset_counts()
    training_step(model, opt, account, X, y, base, idx, 1, None, gsq)
    assert standin.counts()["allocs"] == 0 and standin.counts()["syncs"] == 0


def test_captured_steps_replay_to_the_same_weights_as_launched_ones(standin):
    cp = standin
    X, y = data(cp, "labels", 4)
    runs = []
    for _ in range(2):
        model = pair(cp, 3, "tanh", "cross_entropy", 0.0, 4)[0]
        opt = PopulationOptimizer(model.params, ["adam", "adam", "sgd"], [{"lr": 0.01}] * 3, layout=model.layout)
        runs.append((model, opt, StepAccount(cp, 3), cp.empty((3, 1, 1), np.float32)))
    base = cp.asarray(np.array([[0], [N], [N]]))
    orders = cp.asarray(np.stack([np.random.default_rng(m).permutation(N) for m in range(3)]))
    for model, opt, account, gsq in runs:  # the first step makes the buffers and builds the kernels
        opt.begin_epoch(5)
        training_step(model, opt, account, X, y, base, orders[:, 0:10], 0, None, gsq)
    launched, captured = runs
    for k in range(1, 5):
        training_step(*launched[:3], X, y, base, orders[:, 10 * k:10 * k + 10], k, None, launched[3])
    stream = cp.cuda.Stream(non_blocking=True)
    stream.begin_capture()
    for k in range(1, 5):
        training_step(*captured[:3], X, y, base, orders[:, 10 * k:10 * k + 10], k, None, captured[3])
    graph = stream.end_capture()
    assert not np.array_equal(captured[0].params.get(), launched[0].params.get())  # nothing ran yet
    standin.reset_counts()
    graph.launch()
    assert standin.counts()["launches"] == 1 and standin.counts()["graph_nodes"] == graph.nodes
    assert np.array_equal(captured[0].params.get(), launched[0].params.get())
    assert np.array_equal(captured[2].norm_sum.get(), launched[2].norm_sum.get())
