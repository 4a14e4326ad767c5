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

from .views import Views


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


# --- rules beyond the element: per tensor (view), carried scalars, factored and matrix steps ---
#
# These take ``views`` as well: the buffer's tensors, each with ``offset``,
# ``shape``, ``rows`` and ``cols`` (a vector is 1 x n), and ``matrix`` flags
# (kernels.views.Views). They loop over the tensors one by one, as a reader
# of the papers would, and keep their carried values (Prodigy's d, Adafactor's
# row and column averages) in ``state`` under names of their own.

def _tensors(views):
    """(slice, view, is it a matrix) per tensor of the layout."""
    return [(slice(v.offset, v.offset + v.size), v, bool(views.is_matrix[i])) for i, v in enumerate(views.views)]


def _as_matrix(x, v):
    return x.reshape(v.rows, v.cols)


def lamb(w, g, state, hp, t, views):
    """You et al. 2020, as pytorch_optimizer's Lamb writes it: Adam's
    direction m / (sqrt(v) + eps) (no bias correction in v), scaled per
    tensor by phi(||w||) / (||r|| + eps) with phi(x) = min(x, 10) (1 where
    either norm is 0), and lr / (1 - beta1^t); decoupled decay first."""
    w0, w = w, _shrink(w, hp)
    grad = g + hp["l2"] * w0
    m = hp["gamma"] * state["m"] + (1.0 - hp["gamma"]) * grad
    v = hp["alpha"] * state["v"] + (1.0 - hp["alpha"]) * grad**2
    r = m / (np.sqrt(v) + hp["eps"])
    out = w.copy()
    for sl, _, _ in _tensors(views):
        wn, rn = min(np.linalg.norm(w[sl]), 10.0), np.linalg.norm(r[sl])
        trust = wn / (rn + hp["eps"]) if wn > 0 and rn > 0 else 1.0
        out[sl] = w[sl] - hp["lr"] / (1.0 - hp["gamma"] ** t) * trust * r[sl]
    return out, {"m": m, "v": v}


def lars(w, g, state, hp, t, views):
    """You et al. 2017: for each weight matrix the local lr eta ||w|| /
    (||g|| + beta ||w||) times (g + beta w); biases take g as it is; then
    heavy-ball momentum (buf := gamma buf + d) and w := w - lr buf."""
    grad, w = g + hp["l2"] * w, _shrink(w, hp)  # L2 at the weights before the decay
    d = grad.copy()
    for sl, _, matrix in _tensors(views):
        if matrix:
            wn, gn = np.linalg.norm(w[sl]), np.linalg.norm(grad[sl])
            den = gn + hp["beta"] * wn
            trust = hp["eta"] * wn / den if wn > 0 and den > 0 else 1.0
            d[sl] = (grad[sl] + hp["beta"] * w[sl]) * trust
    buf = hp["gamma"] * state["buf"] + d
    return w - hp["lr"] * buf, {"buf": buf}


def adafactor(w, g, state, hp, t, views):
    """Shazeer and Stern 2018 with beta1 momentum, as pytorch_optimizer's
    AdaFactor (relative_step off, scale_parameter on): per tensor, the lr is
    max(eps2, RMS(w)) lr; the second moment of each weight matrix is the
    outer product of its row and column averages of g^2 + eps1 over their
    mean (a vector keeps the average itself), beta2_t = min(alpha, 1 -
    t^decay_rate); the step g / sqrt(vhat) is clipped to RMS <= clip;
    m := lerp(m, step, 1 - gamma); w := w (1 - lr_t wd) - m."""
    grad = g + hp["l2"] * w
    beta2 = min(hp["alpha"], 1.0 - t ** hp["decay_rate"])
    out, m = w.copy(), state["m"].copy()
    new_state = {"m": m}
    for i, (sl, v, _) in enumerate(_tensors(views)):
        if v.size == 0:
            continue
        gm = _as_matrix(grad[sl], v)
        u = gm * gm + hp["eps1"]
        rows = state.get(f"r{i}", np.zeros(v.rows))
        cols = state.get(f"c{i}", np.zeros(v.cols))
        rows = rows + (1.0 - beta2) * (u.mean(axis=1) - rows)
        cols = cols + (1.0 - beta2) * (u.mean(axis=0) - cols)
        new_state[f"r{i}"], new_state[f"c{i}"] = rows, cols
        vhat = np.outer(rows, cols) / rows.mean()
        step = gm / np.sqrt(vhat)
        step = step / max(1.0, np.sqrt(np.mean(step**2)) / hp["clip"])
        lr_t = max(hp["eps2"], np.sqrt(np.mean(w[sl] ** 2))) * hp["lr"]
        step = (step * lr_t).reshape(-1)
        m[sl] = m[sl] + (1.0 - hp["gamma"]) * (step - m[sl])
        out[sl] = w[sl] * (1.0 - lr_t * hp["wd"]) - m[sl]
    return out, new_state


def _newton_schulz(x, steps=5, coefficients=(3.4445, -4.7750, 2.0315)):
    """Muon's quintic iteration in float64, on the orientation with rows <= cols."""
    a, b, c = coefficients
    transpose = x.shape[0] > x.shape[1]
    x = x.T if transpose else x
    x = x / max(np.linalg.norm(x), 1e-7)
    for _ in range(steps):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    return x.T if transpose else x


def muon(w, g, state, hp, t, views):
    """Jordan et al. 2024 (pytorch_optimizer's Muon): each hidden weight
    matrix takes Nesterov momentum (buf := lerp(buf, g, 1 - gamma), step
    lerp(g, buf, gamma)) orthogonalised by Newton-Schulz and scaled by
    sqrt(max(1, fan_out / fan_in)); every other tensor (biases, the first and
    last layers) takes AdamW with its own adam_lr, beta1, beta2, eps."""
    grad, w = g + hp["l2"] * w, _shrink(w, hp)  # L2 at the weights before the decay
    buf = state["buf"] + (1.0 - hp["gamma"]) * (grad - state["buf"])
    m = state["m"] + (1.0 - hp["beta1"]) * (grad - state["m"])
    v = state["v"] + (1.0 - hp["beta2"]) * (grad * grad - state["v"])
    out = w.copy()
    for sl, view, matrix in _tensors(views):
        if matrix:
            nest = grad[sl] + hp["gamma"] * (buf[sl] - grad[sl])
            o = _newton_schulz(_as_matrix(nest, view)).reshape(-1)
            out[sl] = w[sl] - hp["lr"] * np.sqrt(max(1.0, view.cols / view.rows)) * o
        else:
            den = np.sqrt(v[sl]) / np.sqrt(1.0 - hp["beta2"] ** t) + hp["eps"]
            out[sl] = w[sl] - hp["adam_lr"] / (1.0 - hp["beta1"] ** t) * m[sl] / den
    return out, {"buf": buf, "m": m, "v": v}


def prodigy(w, g, state, hp, t, views):
    """Mishchenko and Defazio 2024 (pytorch_optimizer's Prodigy): Adam whose
    step size d is estimated from the run, d_hat = d_coef sum_k (d_k/d0)
    d_k lr <g_k, x0 - x_k> / ||s||_1, d never decreasing."""
    grad = g + hp["l2"] * w
    d, d_max = state.get("d", hp["d0"]), state.get("d_max", hp["d0"])
    b1, b2, b3 = hp["gamma"], hp["alpha"], hp["beta3"] or np.sqrt(hp["alpha"])  # beta3 = 0: sqrt(beta2)
    dlr = d * hp["lr"]
    num = b3 * state.get("num", 0.0) + (d / hp["d0"]) * dlr * float(np.dot(grad, state["p0"] - w))
    m = b1 * state["m"] + d * (1.0 - b1) * grad
    v = b2 * state["v"] + d * d * (1.0 - b2) * grad * grad
    s = b3 * state["s"] + (d / hp["d0"]) * dlr * grad
    den = float(np.abs(s).sum())
    new = {"m": m, "v": v, "s": s, "p0": state["p0"], "num": num, "d": d, "d_max": d_max}
    if den == 0:
        return w, new
    d_hat = hp["d_coef"] * num / den
    if d == hp["d0"]:
        d = max(d, d_hat)
    d_max = max(d_max, d_hat)
    d = min(d_max, d * hp["growth"])
    new.update(d=d, d_max=d_max)
    w = w * (1.0 - dlr * hp["wd"]) - dlr * m / (np.sqrt(v) + d * hp["eps"])
    return w, new


def schedule_free_adamw(w, g, state, hp, t, views=None):
    """Defazio et al. 2024 (schedulefree.AdamWScheduleFree): the stored
    point y, the base sequence z (starting at w) and the average x kept
    implicit: gn = g / (sqrt(v / (1 - beta2^t)) + eps) + wd y;
    y := lerp(y, z, c_t) + lr (beta1 (1 - c_t) - 1) gn; z := z - lr gn, with
    c_t = w_t / sum w, w_t = t^r lr_max^p (lr_max the largest lr so far;
    lr warmed up over ``warmup`` steps)."""
    grad = g + hp["l2"] * w
    sched = t / hp["warmup"] if t <= hp["warmup"] else 1.0
    lr = hp["lr"] * sched
    lr_max = max(state.get("lr_max", -1.0), lr)
    weight = (t ** hp["r"]) * lr_max ** hp["power"]
    weight_sum = state.get("weight_sum", 0.0) + weight
    ckp1 = weight / weight_sum if weight_sum else 0.0
    v = hp["alpha"] * state["v"] + (1.0 - hp["alpha"]) * grad * grad
    gn = grad / (np.sqrt(v / (1.0 - hp["alpha"] ** t)) + hp["eps"]) + hp["wd"] * w
    y = w + ckp1 * (state["z"] - w) + lr * (hp["gamma"] * (1.0 - ckp1) - 1.0) * gn
    z = state["z"] - lr * gn
    return y, {"v": v, "z": z, "lr_max": lr_max, "weight_sum": weight_sum}


def ademamix(w, g, state, hp, t, views=None):
    """Pagliardini et al. 2024: Adam's fast average m1 plus alpha times a slow
    one m2 (beta3), both over Adam's denominator; alpha and beta3 warm up
    over T steps when T > 0."""
    grad, w = g + hp["l2"] * w, _shrink(w, hp)  # L2 at the weights before the decay
    b1, b2, b3, alpha = hp["gamma"], hp["alpha"], hp["beta3"], hp["mix"]
    if hp["T"] > 0:
        alpha = min(t * alpha / hp["T"], alpha)
        lb1, lb3 = np.log(b1), np.log(b3)
        b3 = min(np.exp(lb1 * lb3 / ((1 - t / hp["T"]) * lb3 + (t / hp["T"]) * lb1)), b3)
    m1 = b1 * state["m1"] + (1.0 - b1) * grad
    v = b2 * state["v"] + (1.0 - b2) * grad * grad
    m2 = b3 * state["m2"] + (1.0 - b3) * grad
    den = np.sqrt(v) / np.sqrt(1.0 - hp["alpha"] ** t) + hp["eps"]
    return w - hp["lr"] * (m1 / (1.0 - b1**t) + alpha * m2) / den, {"m1": m1, "v": v, "m2": m2}


def adopt(w, g, state, hp, t, views=None):
    """Taniguchi et al. 2024: v starts at g_1^2 with no step; then the
    gradient is normalised by the *previous* v (clipped at +-t^(1/4)) before
    the momentum, and v is updated after the step."""
    grad, w = g + hp["l2"] * w, _shrink(w, hp)  # L2 at the weights before the decay
    if t == 1:
        return w, {"m": state["m"], "v": grad * grad}
    clip = t**0.25
    ng = np.clip(grad / np.maximum(np.sqrt(state["v"]), hp["eps"]), -clip, clip)
    m = hp["gamma"] * state["m"] + (1.0 - hp["gamma"]) * ng
    v = hp["alpha"] * state["v"] + (1.0 - hp["alpha"]) * grad * grad
    return w - hp["lr"] * m, {"m": m, "v": v}


def cautious_adamw(w, g, state, hp, t, views):
    """Liang et al. 2024: AdamW whose update is kept only where it agrees in
    sign with the gradient, each tensor's kept part rescaled by n / (kept + 1)."""
    grad, w = g + hp["l2"] * w, _shrink(w, hp)  # L2 at the weights before the decay
    m = hp["gamma"] * state["m"] + (1.0 - hp["gamma"]) * grad
    v = hp["alpha"] * state["v"] + (1.0 - hp["alpha"]) * grad * grad
    den = np.sqrt(v) / np.sqrt(1.0 - hp["alpha"] ** t) + hp["eps"]
    keep = (m * grad > 0).astype(np.float64)
    out = w.copy()
    for sl, view, _ in _tensors(views):
        scale = view.size / (keep[sl].sum() + 1.0)
        out[sl] = w[sl] - hp["lr"] * keep[sl] * scale * m[sl] / (1.0 - hp["gamma"] ** t) / den[sl]
    return out, {"m": m, "v": v}


STEPS = {f.__name__: f for f in (sgd, momentum, nesterov, rmsprop, adadelta, adam,
                                 adagrad, adamax, nadam, amsgrad, lion, adabelief)}
#: Steps that take the buffer's views.
VIEW_STEPS = {f.__name__: f for f in (lamb, lars, adafactor, muon, prodigy, schedule_free_adamw, ademamix,
                                      adopt, cautious_adamw)}


def step(name: str, w, g, state, hp, t, views=None):
    """One float64 reference step of rule ``name``; returns (w, state).
    ``views`` (kernels.views.Views): the buffer's tensors, for the rules that
    work per tensor (one vector of the whole buffer when None)."""
    f64 = lambda a: np.asarray(a, dtype=np.float64) if not np.isscalar(a) else float(a)  # noqa: E731
    w, g, state = f64(w), f64(g), {k: f64(v) for k, v in state.items()}
    if name in VIEW_STEPS:
        if views is None:
            views = Views(w.shape[0], [("all", 0, (w.shape[0],))])
        return VIEW_STEPS[name](w, g, state, hp, t, views)
    return STEPS[name](w, g, state, hp, t)
