"""The lecture's small experiments that are not training runs: pure
functions of their arguments, each returning a table (``run_custom`` in
:mod:`suite.lecture.running` stores them in ``out/custom/*.csv``).

- section 1: ``perceptron_experiment`` (Rosenblatt's rule, Novikoff's bound);
- section 2: ``gradient_check`` (back-propagation against finite differences);
- section 3: ``minibatch_paths`` (SGD on a 2-weight least-squares problem);
- section 5: ``condition_table`` (condition numbers, raw and standardised);
- sections 8 and 9: ``layer_statistics``, ``init_statistics`` (what each
  layer sees at initialisation);
- section 12: ``optimizer_path``, ``tune_path``, ``trajectory_table``
  (the optimisers on 2-D test functions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optbench.kernels import Optimizer

from ..data import datasets
from ..data.batches import batches
from ..data.splits import condition_number
from ..nn.inits import INITS, init_layers
from ..nn.mlp import MLP, Network
from .perceptron import signed_labels, train_perceptron

#: The lecture's six rules (section 12), not every registered one: the
#: lecture report covers what the lecture teaches.
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adadelta", "adam")


# --- Section 1: the perceptron ---------------------------------------------- #


def perceptron_data(separable: bool, n_samples: int = 400, data_seed: int = 0):
    """Two 2-D Gaussian blobs centred at (1, 4) and (7, 4), labels in {-1, +1}.

    separable=True: wide blobs (std 3) each cut to a ball inside its
    half-plane (see suite.data.make_blobs), so a line separates them, with a
    small margin; False: blobs of std 2 that overlap, so none does. Off the
    origin, so the bias has to be learned too (a centred problem is solved
    by the first mistake).
    """
    spread = 3.0 if separable else 2.0
    X, y = datasets.make_blobs(n_samples=n_samples, n_classes=2, spread=spread,
                               separable=separable, data_seed=data_seed)
    return X + 4.0, signed_labels(y, positive=1)


def margin(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    """Geometric margin of the hyperplane (w, b) in the augmented space (x, 1):
    min_i y_i (w.x_i + b) / |(w, b)|; negative when it misclassifies."""
    return float(np.min(y * (X @ w + b)) / np.linalg.norm(np.append(w, b)))


def novikoff_bound(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> float:
    """An upper bound on the perceptron's mistakes (Novikoff): (R / gamma)^2.

    R = max |(x, 1)|; gamma = the margin of some separating hyperplane, a lower
    bound on the best margin, so the bound is valid though looser. We take
    the better of the perceptron's own hyperplane and a linear SVM's.
    """
    from sklearn.svm import LinearSVC

    R = float(np.max(np.linalg.norm(np.hstack([X, np.ones((len(X), 1))]), axis=1)))
    svm = LinearSVC(C=1e4, max_iter=50_000).fit(X, y)
    gamma = max(margin(X, y, w, b), margin(X, y, svm.coef_[0], float(svm.intercept_[0])))
    return (R / gamma) ** 2 if gamma > 0 else float("inf")


def perceptron_experiment(max_epochs: int = 100, n_samples: int = 400, seed: int = 0):
    """Rosenblatt's rule on separable and on overlapping blobs.

    Returns (curves, summary): curves has one row per data set and epoch with
    the mistakes made in that epoch; summary one row per data set with the
    epochs run, total mistakes, whether it converged, the training accuracy
    of the final weights and (separable data) Novikoff's bound.
    """
    curves, summary = [], []
    for name, separable in (("separable", True), ("overlapping", False)):
        X, y = perceptron_data(separable, n_samples)
        res = train_perceptron(X, y, eta=1.0, max_epochs=max_epochs, seed=seed)
        curves += [{"data": name, "epoch": e, "mistakes": m}
                   for e, m in enumerate(res.mistakes_per_epoch, start=1)]
        summary.append({
            "data": name, "n_samples": n_samples, "epochs": res.epochs, "converged": res.converged,
            "total_mistakes": int(sum(res.mistakes_per_epoch)),
            "last_epoch_mistakes": res.mistakes_per_epoch[-1],
            "train_acc": float(np.mean(res.predict(X) == y)),
            "bound": novikoff_bound(X, y, res.w, res.b) if res.converged else float("nan"),
            "w1": res.w[0], "w2": res.w[1], "b": res.b,
        })
    return pd.DataFrame(curves), pd.DataFrame(summary)


# --- Section 2: back-propagation, checked by finite differences ------------- #


def gradient_check(activation: str, sizes=(5, 7, 6, 3), n: int = 8, seed: int = 0,
                   n_params: int = 40, h: float = 1e-6) -> float:
    """max |dQ/dw (back-propagation) - central difference| / max |dQ/dw|.

    A float64 network (no dropout, so the loss is a deterministic function of
    the weights), ``n_params`` weights chosen at random (PReLU's alphas may be
    among them). Float64 and h = 1e-6 put the truncation and rounding errors
    near 1e-9; a wrong backward pass gives errors of order 1.
    """
    rng = np.random.default_rng(seed)
    model = MLP(list(sizes), activation, "cross_entropy", dtype=np.float64).member()
    model.set_layers(init_layers("xavier", list(sizes), rng))
    X = rng.normal(size=(n, sizes[0]))
    y = rng.integers(0, sizes[-1], n)
    model.loss_and_grad(X, y)
    analytic = model.grads.data.copy()
    w = model.params.data
    errors = []
    for i in rng.choice(w.size, size=min(n_params, w.size), replace=False):
        saved = w[i]
        w[i] = saved + h
        up = model.loss_and_grad(X, y)
        w[i] = saved - h
        down = model.loss_and_grad(X, y)
        w[i] = saved
        errors.append(abs((up - down) / (2 * h) - analytic[i]))
    return float(max(errors) / max(np.abs(analytic).max(), 1e-30))


# --- Section 3: mini-batch trajectories on a 2-weight least-squares problem -- #


def least_squares_problem(n: int = 256, seed: int = 0):
    """y = x . w* + noise with two correlated inputs (elliptic level sets)."""
    rng = np.random.default_rng(seed)
    X = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.8], [0.8, 1.0]], size=n)
    w_star = np.array([1.0, 0.5])
    y = X @ w_star + rng.normal(0.0, 0.5, n)
    return X, y


def least_squares_loss(X, y, W) -> np.ndarray:
    """Q(w) = mean 1/2 (x.w - y)^2 for each row of W (k, 2)."""
    W = np.atleast_2d(W)
    return 0.5 * np.mean((X @ W.T - y[:, None]) ** 2, axis=0)


def minibatch_paths(batch_sizes=(4, 32, None), epochs: int = 8, lr: float = 0.3,
                    start=(-1.5, 2.5), n: int = 256, seed: int = 0) -> pd.DataFrame:
    """Section 3's three pictures: SGD on Q(w) of a linear model with a small,
    a large and the full batch (None), the same lr and number of epochs.

    The lecture's sgd rule (kernels.Optimizer) on a 2-element float32 weight
    vector; objects reshuffled every epoch. Returns one row per step:
    batch ("4", "32", "full"), step, epoch, w1, w2, loss (Q over all objects).
    """
    X, y = least_squares_problem(n, seed)
    rows = []
    for bs in batch_sizes:
        size = n if bs is None else int(bs)
        label = "full" if bs is None else str(bs)
        w = np.array(start, dtype=np.float32)
        opt = Optimizer("sgd", w, lr=lr)
        g = np.zeros_like(w)
        step = 0
        rows.append({"batch": label, "step": 0, "epoch": 0, "w1": w[0], "w2": w[1],
                     "loss": float(least_squares_loss(X, y, w)[0])})
        for epoch in range(1, epochs + 1):
            for idx in batches(n, size, epoch - 1, seed, "shuffle"):
                Xb, yb = X[idx], y[idx]
                g[:] = Xb.T @ (Xb @ w - yb) / len(idx)
                opt.step(g)
                step += 1
                rows.append({"batch": label, "step": step, "epoch": epoch, "w1": w[0], "w2": w[1],
                             "loss": float(least_squares_loss(X, y, w)[0])})
    return pd.DataFrame(rows)


# --- Section 5: condition numbers -------------------------------------------- #


def condition_table(names=datasets.DATASETS, seed: int = 0) -> pd.DataFrame:
    """cond of the training inputs' covariance, raw and standardised, per data set.

    ``cond`` is suite.data.condition_number (centred covariance: the Hessian
    of a linear least-squares model); ``cond_affine`` includes the bias, so
    it also shows what centring does. inf: singular (digits has pixels that
    are linear combinations of others).
    """
    rows = []
    for name in names:
        raw = datasets.load(name, seed=seed, standardize=False).X_train
        std = datasets.load(name, seed=seed, standardize=True).X_train
        rows.append({"dataset": name, "n_features": raw.shape[1],
                     "cond_raw": condition_number(raw),
                     "cond_standardized": condition_number(std),
                     "cond_affine_raw": condition_number(raw, with_bias=True),
                     "cond_affine_standardized": condition_number(std, with_bias=True)})
    return pd.DataFrame(rows)


# --- Sections 8 and 9: what each layer sees at initialisation ---------------- #


def layer_statistics(model: Network, X, y) -> pd.DataFrame:
    """Per layer l = 1..L, on the objects (X, y), at the model's current weights:

    - out_var: the variance of the layer's output as the next layer sees it
      (the activations sigma(z^l) of a hidden layer; the linear output z^L of
      the last), over objects and neurons -- the lecture's first criterion;
    - grad_var: the variance of the entries of dQ/dW_l -- its second;
    - grad_norm: ||dQ/dW_l|| (vanishing gradients: small in the first layers).

    Inference mode (no dropout); the gradient is of the mean loss over X.
    """
    z, cache = model.forward(X, train=False)
    _, grad_z = model.value_and_grad(z, y)
    model.backward(cache, grad_z)
    outputs = [*cache.acts, z]
    rows = []
    for l in range(1, model.n_layers + 1):
        g = model.grads[f"W{l}"]
        rows.append({"layer": l, "out_var": float(outputs[l - 1].var()),
                     "grad_var": float(g.var()), "grad_norm": float(np.linalg.norm(g))})
    return pd.DataFrame(rows)


def init_statistics(dataset: str = "mnist1d", hidden=(64,) * 6, activations=("tanh", "relu"),
                    inits=tuple(INITS), seeds=(0, 1, 2), n_objects: int = 1000) -> pd.DataFrame:
    """layer_statistics at initialisation for every init x activation, averaged
    over ``seeds`` (the draws of the weights), on ``n_objects`` training objects.
    Columns: activation, init, layer, out_var, grad_var, grad_norm."""
    ds = datasets.load(dataset, seed=0)
    X, y = ds.X_train[:n_objects], ds.y_train[:n_objects]  # also what "pretrain" fits on
    sizes = [ds.n_features, *hidden, ds.n_outputs]
    frames = []
    for activation in activations:
        for init in inits:
            for seed in seeds:
                rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
                model = MLP(sizes, activation, "cross_entropy").member()
                model.set_layers(init_layers(init, sizes, rng, X=X, y=y, activation=activation))
                stats = layer_statistics(model, X, y)
                frames.append(stats.assign(activation=activation, init=init, seed=seed))
    df = pd.concat(frames, ignore_index=True)
    return (df.groupby(["activation", "init", "layer"], sort=False, as_index=False)
              [["out_var", "grad_var", "grad_norm"]].mean())


# --- Section 12: optimisers on 2-D test functions ---------------------------- #


@dataclass(frozen=True)
class Function2D:
    """f and its gradient on R^2, a start point, the minimum and a plot box."""

    name: str
    title: str
    f: object
    grad: object
    start: tuple[float, float]
    minimum: tuple[float, float]
    box: tuple[float, float, float, float]  # x0, x1, y0, y1


#: Condition number 25: SGD's stable step is limited by the steep y direction
#: and crawls along the flat x direction.
QUADRATIC_SCALE = 25.0


def _quadratic(w):
    return 0.5 * (w[0] ** 2 + QUADRATIC_SCALE * w[1] ** 2)


def _quadratic_grad(w):
    return np.array([w[0], QUADRATIC_SCALE * w[1]])


def _rosenbrock(w):
    return (1.0 - w[0]) ** 2 + 100.0 * (w[1] - w[0] ** 2) ** 2


def _rosenbrock_grad(w):
    return np.array([-2.0 * (1.0 - w[0]) - 400.0 * w[0] * (w[1] - w[0] ** 2),
                     200.0 * (w[1] - w[0] ** 2)])


TEST_FUNCTIONS = {
    "quadratic": Function2D("quadratic", f"badly scaled quadratic 1/2 (x^2 + {QUADRATIC_SCALE:g} y^2)",
                              _quadratic, _quadratic_grad, (-4.0, 1.5), (0.0, 0.0),
                              (-4.5, 1.5, -2.0, 2.0)),
    "rosenbrock": Function2D("rosenbrock", "Rosenbrock (1 - x)^2 + 100 (y - x^2)^2",
                               _rosenbrock, _rosenbrock_grad, (-1.2, 1.0), (1.0, 1.0),
                               (-1.6, 1.4, -0.6, 1.6)),
}

#: Steps per test function (the Rosenbrock valley is long).
PATH_STEPS = {"quadratic": 200, "rosenbrock": 1500}
#: The lr grid every optimiser is tuned on (half-decades; AdaDelta's lr = 1 is on it).
PATH_LRS = tuple(float(f"{10 ** (k / 2):.3g}") for k in range(-8, 3))


def optimizer_path(name: str, function: str, lr: float, steps: int, **hyper) -> np.ndarray:
    """Run optimiser ``name`` (kernels.Optimizer, the training kernel itself) on
    a 2-element float32 vector from the function's start point.

    Returns the path of the weights, shape (steps + 1, 2), float64. For
    Nesterov the buffer holds the look-ahead point u (the gradient is taken
    there); the path records the true weights w = opt.weights(). A path that
    overflows is cut at its first non-finite point.
    """
    fn = TEST_FUNCTIONS[function]
    w = np.array(fn.start, dtype=np.float32)
    opt = Optimizer(name, w, lr=lr, **hyper)
    g = np.zeros_like(w)
    path = [np.array(fn.start, dtype=np.float64)]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            g[:] = fn.grad(w.astype(np.float64))
            opt.step(g, check_finite=False)  # an overflowing path is cut below, not an error
            point = np.asarray(opt.weights(), dtype=np.float64).copy()
            if not np.all(np.isfinite(point)) or np.abs(point).max() > 1e6:
                break
            path.append(point)
    return np.array(path)


def path_score(function: str, path: np.ndarray, steps: int) -> tuple[bool, float]:
    """How well a path did, for tuning (lower is better): (climbed, mean log10 f).

    climbed: f rose above its starting value somewhere on the way (an
    unstable lr: wild swings across the valley); the mean of log10 f along
    the path (the area under the log-f curve) rewards getting low early and
    staying low. A path cut short by divergence scores (True, +inf).
    """
    if len(path) < steps + 1:
        return True, float("inf")
    f = np.array([TEST_FUNCTIONS[function].f(p) for p in path])
    return bool(f.max() > f[0] * (1 + 1e-6)), float(np.mean(np.log10(np.maximum(f, 1e-16))))


def tune_path(name: str, function: str, lrs=PATH_LRS, steps: int | None = None):
    """(best lr, its path): the lr on the grid with the lowest path_score --
    the fastest steady descent, or the least bad if every lr climbs."""
    steps = PATH_STEPS[function] if steps is None else steps
    scored = []
    for lr in lrs:
        path = optimizer_path(name, function, lr, steps)
        scored.append((path_score(function, path, steps), lr, path))
    _, lr, path = min(scored, key=lambda t: t[0])
    return lr, path


def trajectory_table(functions=("quadratic", "rosenbrock"), optimizers=OPTIMIZERS,
                     lrs=PATH_LRS, steps: dict | None = None) -> pd.DataFrame:
    """Every optimiser's tuned path on every test function, one row per point:
    function, optimizer, lr, step, x, y, f."""
    steps = {**PATH_STEPS, **(steps or {})}
    frames = []
    for function in functions:
        fn = TEST_FUNCTIONS[function]
        for name in optimizers:
            lr, path = tune_path(name, function, lrs, steps[function])
            f = np.array([fn.f(p) for p in path])
            frames.append(pd.DataFrame({"function": function, "optimizer": name, "lr": lr,
                                        "step": np.arange(len(path)), "x": path[:, 0],
                                        "y": path[:, 1], "f": f}))
    return pd.concat(frames, ignore_index=True)
