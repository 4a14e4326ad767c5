"""The float64 oracle: every update rule restated from the lecture's formulas.

Plain, unoptimised float64 NumPy written straight from the canonical forms in
the lecture digest (section 12), sharing no code with :mod:`kernels.rules`:
``optbench validate`` and the tests compare every backend against it.

Each function takes float64 arrays (w, g and the state), the hyper-parameters
``hp`` (the rule's names: lr, gamma, alpha, eps, l2, wd) and the 1-based step
``t``, and returns the new (w, state) without touching its inputs. L2 comes in
two forms: coupled, the gradient of lambda/2 ||w||^2 added to the gradient
(``l2``), and decoupled, w(1 - eta lambda) (``wd``).
"""

from __future__ import annotations

import numpy as np


def _grad(w, g, hp):
    return g + hp["l2"] * w


def _shrink(w, hp):
    return w * (1.0 - hp["lr"] * hp["wd"])


def sgd(w, g, state, hp, t):
    """w := w - eta L'"""
    return _shrink(w, hp) - hp["lr"] * _grad(w, g, hp), {}


def momentum(w, g, state, hp, t):
    """v := gamma v + (1 - gamma) L';  w := w - eta v"""
    v = hp["gamma"] * state["v"] + (1.0 - hp["gamma"]) * _grad(w, g, hp)
    return _shrink(w, hp) - hp["lr"] * v, {"v": v}


def nesterov(u, g, state, hp, t):
    """NAG, literal: v := gamma v + (1-gamma) dQ(w - eta gamma v)/dw; w := w - eta v.

    The backend keeps the look-ahead point u = w - eta gamma v and g is the
    gradient there, so this maps u back to w, applies the literal update and
    maps the result forward again.
    """
    lr, gamma = hp["lr"], hp["gamma"]
    v_old = state["v"]
    w = u + lr * gamma * v_old
    v = gamma * v_old + (1.0 - gamma) * _grad(u, g, hp)
    w = _shrink(w, hp) - lr * v
    return w - lr * gamma * v, {"v": v}


def rmsprop(w, g, state, hp, t):
    """v := gamma v + (1-gamma) L'.L';  w := w - eta L' / (sqrt(v) + eps)"""
    grad = _grad(w, g, hp)
    v = hp["gamma"] * state["v"] + (1.0 - hp["gamma"]) * grad**2
    return _shrink(w, hp) - hp["lr"] * grad / (np.sqrt(v) + hp["eps"]), {"v": v}


def adadelta(w, g, state, hp, t):
    """Zeiler's order: v first, then delta with the new v, then Delta."""
    grad = _grad(w, g, hp)
    v = hp["gamma"] * state["v"] + (1.0 - hp["gamma"]) * grad**2
    delta = grad * (np.sqrt(state["Delta"]) + hp["eps"]) / (np.sqrt(v) + hp["eps"])
    big_delta = hp["alpha"] * state["Delta"] + (1.0 - hp["alpha"]) * delta**2
    return _shrink(w, hp) - hp["lr"] * delta, {"v": v, "Delta": big_delta}


def adam(w, g, state, hp, t):
    """Kingma and Ba: mu, v averages; bias-corrected mu_hat / (sqrt(v_hat) + eps)."""
    grad = _grad(w, g, hp)
    mu = hp["gamma"] * state["mu"] + (1.0 - hp["gamma"]) * grad
    v = hp["alpha"] * state["v"] + (1.0 - hp["alpha"]) * grad**2
    mu_hat = mu / (1.0 - hp["gamma"] ** t)
    v_hat = v / (1.0 - hp["alpha"] ** t)
    return _shrink(w, hp) - hp["lr"] * mu_hat / (np.sqrt(v_hat) + hp["eps"]), {"mu": mu, "v": v}


STEPS = {f.__name__: f for f in (sgd, momentum, nesterov, rmsprop, adadelta, adam)}


def step(name: str, w, g, state, hp, t):
    """One float64 reference step of rule ``name``; returns (w, state)."""
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    return STEPS[name](f64(w), f64(g), {k: f64(v) for k, v in state.items()}, hp, t)
