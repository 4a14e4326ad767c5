"""The float64 oracle: every update rule restated from the lecture's formulas.

Plain, unoptimised float64 NumPy written straight from the canonical forms in
the lecture digest (section 12) -- and, for the rules beyond the lecture
(Adagrad, Adamax, NAdam, AMSGrad, Lion, AdaBelief), from their papers --
sharing no code with :mod:`kernels.rules`:
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


def adagrad(w, g, state, hp, t):
    """Duchi et al.: G := G + L'^2;  w := w - eta L' / (sqrt(G) + eps)"""
    grad = _grad(w, g, hp)
    big_g = state["G"] + grad**2
    return _shrink(w, hp) - hp["lr"] * grad / (np.sqrt(big_g) + hp["eps"]), {"G": big_g}


def adamax(w, g, state, hp, t):
    """Kingma and Ba, section 7.1: the infinity-norm u = max(beta2 u, |L'| + eps)."""
    grad = _grad(w, g, hp)
    mu = hp["gamma"] * state["mu"] + (1.0 - hp["gamma"]) * grad
    u = np.maximum(hp["alpha"] * state["u"], np.abs(grad) + hp["eps"])
    return _shrink(w, hp) - hp["lr"] / (1.0 - hp["gamma"] ** t) * mu / u, {"mu": mu, "u": u}


def nadam(w, g, state, hp, t):
    """Dozat's NAdam with the momentum schedule mu_t = beta1 (1 - 0.5 * 0.96^(t psi))."""
    b1, psi = hp["gamma"], hp["psi"]
    schedule = [b1 * (1.0 - 0.5 * 0.96 ** (i * psi)) for i in range(1, t + 2)]  # mu_1 .. mu_{t+1}
    product = float(np.prod(schedule[:t]))
    grad = _grad(w, g, hp)
    mu = b1 * state["mu"] + (1.0 - b1) * grad
    v = hp["alpha"] * state["v"] + (1.0 - hp["alpha"]) * grad**2
    denom = np.sqrt(v / (1.0 - hp["alpha"] ** t)) + hp["eps"]
    now, after = schedule[t - 1], schedule[t]
    step = (1.0 - now) / (1.0 - product) * grad + after / (1.0 - product * after) * mu
    return _shrink(w, hp) - hp["lr"] * step / denom, {"mu": mu, "v": v}


def amsgrad(w, g, state, hp, t):
    """Reddi et al. (with Adam's bias corrections): the running max of v in the denominator."""
    grad = _grad(w, g, hp)
    mu = hp["gamma"] * state["mu"] + (1.0 - hp["gamma"]) * grad
    v = hp["alpha"] * state["v"] + (1.0 - hp["alpha"]) * grad**2
    vmax = np.maximum(state["vmax"], v)
    mu_hat = mu / (1.0 - hp["gamma"] ** t)
    denom = np.sqrt(vmax / (1.0 - hp["alpha"] ** t)) + hp["eps"]
    return _shrink(w, hp) - hp["lr"] * mu_hat / denom, {"mu": mu, "v": v, "vmax": vmax}


def lion(w, g, state, hp, t):
    """Chen et al.: w := w - eta sign(beta1 m + (1 - beta1) L'); m := beta2 m + (1 - beta2) L'."""
    grad = _grad(w, g, hp)
    direction = np.sign(hp["gamma"] * state["mu"] + (1.0 - hp["gamma"]) * grad)
    mu = hp["alpha"] * state["mu"] + (1.0 - hp["alpha"]) * grad
    return _shrink(w, hp) - hp["lr"] * direction, {"mu": mu}


def adabelief(w, g, state, hp, t):
    """Zhuang et al., Algorithm 2: s tracks (L' - m)^2, plus eps every step."""
    grad = _grad(w, g, hp)
    mu = hp["gamma"] * state["mu"] + (1.0 - hp["gamma"]) * grad
    s = hp["alpha"] * state["s"] + (1.0 - hp["alpha"]) * (grad - mu) ** 2 + hp["eps"]
    mu_hat = mu / (1.0 - hp["gamma"] ** t)
    s_hat = s / (1.0 - hp["alpha"] ** t)
    return _shrink(w, hp) - hp["lr"] * mu_hat / (np.sqrt(s_hat) + hp["eps"]), {"mu": mu, "s": s}


STEPS = {f.__name__: f for f in (sgd, momentum, nesterov, rmsprop, adadelta, adam,
                                 adagrad, adamax, nadam, amsgrad, lion, adabelief)}


def step(name: str, w, g, state, hp, t):
    """One float64 reference step of rule ``name``; returns (w, state)."""
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    return STEPS[name](f64(w), f64(g), {k: f64(v) for k, v in state.items()}, hp, t)
