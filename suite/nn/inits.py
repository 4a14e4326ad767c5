"""Initial weights (lecture section 9), each scheme selectable by name.

A layer maps fan_in = h inputs to fan_out = m neurons; its weights W have
shape (h, m) (z = x @ W + b) and its biases b start at zero. Weights are
drawn on the host with a NumPy ``Generator`` and returned as float32; the
model copies them into its flat parameter buffer (on the device if any).

Data-free schemes (``init_layer(scheme, fan_in, fan_out, rng)``):

- ``uniform``: w ~ U(-1/sqrt(h), 1/sqrt(h)), Var w = 1/(3h). The lecture's
  rule 1, "equal output variances across layers": Var(sum_j w_j x_j) =
  h Var(w) Var(x) does not grow with the fan-in h.
- ``xavier``: Glorot & Bengio (2010) uniform, w ~ U(-sqrt(6)/sqrt(h+m),
  +sqrt(6)/sqrt(h+m)), Var w = 2/(h+m): the lecture's rule 2, "equal gradient
  variances" (a compromise between the forward h and backward m). The slide
  prints the bound as 6/sqrt(h+m) -- a misprint (Var w would be 12/(h+m), six
  times too large); the canonical sqrt(6)/sqrt(h+m) is implemented.
- ``he``: He et al. (2015) for ReLU, the *normal* variant: w ~ N(0, 2/h).
  ReLU zeroes half of its inputs, so the variance needs the factor 2 to be
  kept across layers. (The uniform variant U(-sqrt(6/h), sqrt(6/h)) has the
  same variance; it is not provided separately.)
- ``orthogonal``: the lecture's rule 5, a random orthogonal basis (Saxe et al.
  2014): Q from the QR decomposition of a Gaussian matrix, with the signs of
  R's diagonal moved into Q so that Q is Haar-distributed (without the sign
  fix QR's convention biases the distribution). For h >= m the columns are
  orthonormal (W^T W = I_m), for h < m the rows (W W^T = I_h).

Data-dependent scheme ``pretrain`` (``pretrain_layers(X, y, sizes, ...)``):
the lecture's rule 3, layer-wise training of neurons as linear models, on a
random subsample of the objects or a random subset of the inputs, so that
neurons differ; see :func:`pretrain_layers`. Rule 4 (weights of a pre-trained
model, i.e. a checkpoint) is done by the model code, not here.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .activations import get_activation

PRETRAIN_MODES = ("objects", "inputs")


def uniform_init(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """w ~ U(-1/sqrt(h), 1/sqrt(h)), h = fan_in."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, (fan_in, fan_out))


def xavier_bound(fan_in: int, fan_out: int) -> float:
    """sqrt(6) / sqrt(h + m) -- not the slide's 6 / sqrt(h + m)."""
    return float(np.sqrt(6.0) / np.sqrt(fan_in + fan_out))


def xavier_init(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """w ~ U(-sqrt(6)/sqrt(h+m), +sqrt(6)/sqrt(h+m)), h = fan_in, m = fan_out."""
    bound = xavier_bound(fan_in, fan_out)
    return rng.uniform(-bound, bound, (fan_in, fan_out))


def he_init(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """w ~ N(0, 2/h), h = fan_in (He et al. 2015, normal variant, for ReLU)."""
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out))


def orthogonal_init(
    fan_in: int, fan_out: int, rng: np.random.Generator, gain: float = 1.0
) -> np.ndarray:
    """A random (semi-)orthogonal (h, m) matrix times ``gain``.

    QR of a (max, min) Gaussian matrix gives Q with orthonormal columns;
    multiplying column k by sign(R_kk) makes the result uniform over the
    orthogonal matrices. Transposed when the layer is wider than its input.
    """
    big, small = max(fan_in, fan_out), min(fan_in, fan_out)
    q, r = np.linalg.qr(rng.normal(size=(big, small)))
    d = np.sign(np.diag(r))
    d[d == 0] = 1.0  # R_kk = 0 has probability zero, but never flip by 0
    q = q * d
    return gain * (q if fan_in >= fan_out else q.T)


INITS: dict[str, Callable[[int, int, np.random.Generator], np.ndarray] | None] = {
    "uniform": uniform_init,
    "xavier": xavier_init,
    "he": he_init,
    "orthogonal": orthogonal_init,
    "pretrain": None,  # needs data: pretrain_layers
}


def check_scheme(scheme: str) -> str:
    """``scheme`` if it names an initialisation; ValueError listing them if not."""
    if not isinstance(scheme, str) or scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; allowed: {', '.join(INITS)}")
    return scheme


def _check_sizes(fan_in, fan_out) -> None:
    for what, v in (("fan_in", fan_in), ("fan_out", fan_out)):
        if int(v) != v or v < 1:
            raise ValueError(f"{what} must be a positive integer, got {v!r}")


def init_layer(
    scheme: str, fan_in: int, fan_out: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(W float32 (fan_in, fan_out), b float32 zeros (fan_out,)) for a data-free scheme."""
    check_scheme(scheme)
    if INITS[scheme] is None:
        raise ValueError(
            f"init {scheme!r} needs the training data: call pretrain_layers(X, y, sizes, ...) "
            f"(or init_layers with X and y)"
        )
    _check_sizes(fan_in, fan_out)
    W = INITS[scheme](int(fan_in), int(fan_out), rng).astype(np.float32)
    return W, np.zeros(int(fan_out), dtype=np.float32)


# --------------------------------------------------------------------------- #
# Layer-wise pre-training (rule 3)
# --------------------------------------------------------------------------- #


def _neuron_targets(y: np.ndarray, n_neurons: int) -> np.ndarray:
    """Targets (N, n_neurons) for the linear models of one layer's neurons.

    Classification (integer y, K classes): neuron j fits the one-vs-rest
    indicator of class j mod K, coded +1 / -1, so its hyperplane z = 0
    separates that class from the rest -- at sigma(0), the middle of every
    activation's range. Neurons beyond the K-th cycle over the classes again
    and differ through their own subsample / input subset.
    Regression (float y, (N,) or (N, q)): neuron j fits the standardised
    target column j mod q.
    """
    if np.issubdtype(y.dtype, np.integer):
        classes = np.unique(y)
        return np.stack(
            [np.where(y == classes[j % len(classes)], 1.0, -1.0) for j in range(n_neurons)], axis=1
        )
    t = y.reshape(len(y), -1).astype(np.float64)
    t = (t - t.mean(axis=0)) / np.where(t.std(axis=0) > 0, t.std(axis=0), 1.0)
    return t[:, np.arange(n_neurons) % t.shape[1]]


def _ridge(A: np.ndarray, t: np.ndarray, ridge: float) -> tuple[np.ndarray, float]:
    """min_w,b |A w + b - t|^2 + ridge * n * |w|^2 (bias unpenalised), by
    centring: w = (Ac^T Ac + ridge n I)^-1 Ac^T tc, b = mean(t) - mean(A) w."""
    mean_a, mean_t = A.mean(axis=0), t.mean()
    Ac, tc = A - mean_a, t - mean_t
    gram = Ac.T @ Ac + ridge * len(A) * np.eye(A.shape[1])
    w = np.linalg.solve(gram, Ac.T @ tc)
    return w, float(mean_t - mean_a @ w)


def pretrain_layers(
    X: np.ndarray,
    y: np.ndarray,
    sizes: list[int],
    activation: str,
    rng: np.random.Generator,
    mode: str = "objects",
    subsample: float = 0.5,
    input_fraction: float = 0.5,
    ridge: float = 1e-3,
    preact_std: float = 1.0,
    alpha: float = 0.25,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Layer-wise pre-training: every neuron starts as a fitted linear model.

    sizes: layer widths [n_features, h_1, ..., h_k, n_outputs] (at least two).
    For each hidden layer, with input H (the standardised X for the first):
      neuron j fits a ridge regression z_j = H w_j + b_j to its target
      (see _neuron_targets: one-vs-rest +1/-1 for class j mod K, or a
      regression target column), on
        mode="objects": a random ``subsample`` fraction of the objects, all
                        inputs; or
        mode="inputs":  all objects, a random ``input_fraction`` of the
                        inputs (the other weights stay 0),
      a fresh random draw per neuron, so neurons with the same target still
      differ (the lecture's point). Then w_j, b_j are scaled together so that
      z_j has root-mean-square ``preact_std`` over the data (1 = the RMS of
      the +-1 targets; RMS, not std, because one-vs-rest targets are
      unbalanced and z_j has a large mean): the hyperplane z_j = 0 is
      unchanged, but the activation is kept off its flat tails (|z| of a few
      units would put sigmoid/tanh there; a weak fit with tiny z is scaled
      up). The next layer's input is H := activation(H W + b) (``alpha`` for
      prelu).
    The output layer fits every output neuron's target (class q vs rest, or
    target column q) on all objects and all inputs, unscaled: it is the
    least-squares read-out of the last hidden layer, a sensible start for the
    logits or the regression outputs.
    ``ridge`` (lambda per object) keeps the solves well posed when a subset
    or subsample is small or inputs are collinear.
    Returns [(W float32 (fan_in, fan_out), b float32 (fan_out,)), ...].
    """
    if mode not in PRETRAIN_MODES:
        raise ValueError(f"unknown pretrain mode {mode!r}; allowed: {', '.join(PRETRAIN_MODES)}")
    act = get_activation(activation)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(f"sizes must list >= 2 positive layer widths [n_in, ..., n_out], got {sizes}")
    if X.ndim != 2 or X.shape[1] != sizes[0]:
        raise ValueError(f"X has shape {X.shape} but sizes[0] (the input width) is {sizes[0]}")
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} objects but y has {len(y)}")
    if not 0.0 < subsample <= 1.0 or not 0.0 < input_fraction <= 1.0:
        raise ValueError(
            f"subsample and input_fraction must lie in (0, 1], got {subsample}, {input_fraction}"
        )

    layers, H, n = [], X, len(X)
    for depth, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        targets = _neuron_targets(y, fan_out)
        W, b = np.zeros((fan_in, fan_out)), np.zeros(fan_out)
        is_output = depth == len(sizes) - 2
        for j in range(fan_out):
            rows, cols = np.arange(n), np.arange(fan_in)
            if not is_output and mode == "objects":
                rows = rng.choice(n, size=max(2, int(round(subsample * n))), replace=False)
            elif not is_output and mode == "inputs":
                cols = np.sort(rng.choice(fan_in, size=max(1, int(round(input_fraction * fan_in))), replace=False))
            W[cols, j], b[j] = _ridge(H[np.ix_(rows, cols)], targets[rows, j], ridge)
        if not is_output:
            z_rms = np.sqrt(np.mean((H @ W + b) ** 2, axis=0))
            scale = preact_std / np.where(z_rms > 0, z_rms, 1.0)
            W, b = W * scale, b * scale
            H = np.asarray(act.forward(H @ W + b, alpha=alpha, xp=np))
        layers.append((W.astype(np.float32), b.astype(np.float32)))
    return layers


def init_layers(
    scheme: str,
    sizes: list[int],
    rng: np.random.Generator,
    X: np.ndarray | None = None,
    y: np.ndarray | None = None,
    activation: str = "tanh",
    **pretrain_options,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every layer of a network with widths ``sizes`` = [n_in, ..., n_out].

    Data-free schemes draw each layer with init_layer; "pretrain" needs the
    training data X, y (and uses ``activation`` and ``pretrain_options``,
    see pretrain_layers).
    """
    check_scheme(scheme)
    if scheme == "pretrain":
        if X is None or y is None:
            raise ValueError("init 'pretrain' needs the training data: pass X and y")
        return pretrain_layers(X, y, sizes, activation, rng, **pretrain_options)
    if pretrain_options:
        raise ValueError(f"init {scheme!r} takes no options, got {', '.join(pretrain_options)}")
    if len(sizes) < 2:
        raise ValueError(f"sizes must list >= 2 layer widths [n_in, ..., n_out], got {list(sizes)}")
    return [init_layer(scheme, h, m, rng) for h, m in zip(sizes[:-1], sizes[1:])]
