"""NAdam (Dozat 2016, "Incorporating Nesterov Momentum into Adam"), in
PyTorch's form with the momentum schedule of the paper.

.. math::
    \\gamma_t = \\gamma\\,(1 - \\tfrac12\\, 0.96^{t \\psi}) \\qquad
    \\Pi_t = \\prod_{i=1}^{t} \\gamma_i \\\\
    \\mu := \\gamma \\mu + (1-\\gamma) L' \\qquad
    v := \\alpha v + (1-\\alpha) L' \\odot L' \\qquad
    d = \\sqrt{v / (1-\\alpha^t)} + \\epsilon \\\\
    w := w - \\eta \\frac{1-\\gamma_t}{1-\\Pi_t}\\, L' / d
           - \\eta \\frac{\\gamma_{t+1}}{1-\\Pi_t \\gamma_{t+1}}\\, \\mu / d

Symbols -> arguments: eta -> ``lr``, gamma -> ``gamma`` (beta1), alpha ->
``alpha`` (beta2), epsilon -> ``eps``, psi -> ``psi`` (the momentum decay,
PyTorch's ``momentum_decay``), t -> the step counter. The Nesterov look-ahead
is in the two terms: the current gradient weighted by this step's momentum
coefficient, the average by the next step's. All the gamma_t and the product
Pi_t are per-step scalars computed on the host in double (:func:`mu_product`
keeps the running product, so a step costs O(1)).
"""

import numpy as np

from ..peer import Peer
from ..rule import Rule

#: (gamma, psi) -> [Pi_0 = 1, Pi_1, Pi_2, ...], extended as steps are taken.
_PRODUCTS: dict[tuple[float, float], list[float]] = {}


def momentum_at(gamma, psi, t):
    """gamma_t = gamma (1 - 0.5 * 0.96^(t psi)), the momentum coefficient of step t."""
    return gamma * (1.0 - 0.5 * 0.96 ** (t * psi))


def mu_product(gamma, psi, t: int):
    """Pi_t = gamma_1 ... gamma_t, multiplied in step order in double (for
    arrays of members' values, member by member: the same bits as a single
    run's)."""
    if isinstance(gamma, np.ndarray) or isinstance(psi, np.ndarray):
        g, p = np.broadcast_arrays(np.asarray(gamma, dtype=np.float64), np.asarray(psi, dtype=np.float64))
        return np.array([mu_product(float(a), float(b), t) for a, b in zip(g.ravel(), p.ravel())]).reshape(g.shape)
    key = (float(gamma), float(psi))
    products = _PRODUCTS.setdefault(key, [1.0])
    while len(products) <= t:
        products.append(products[-1] * momentum_at(key[0], key[1], len(products)))
    return products[t]


def _scalars(hp, t):
    gamma, psi = hp["gamma"], hp["psi"]
    now, after, product = momentum_at(gamma, psi, t), momentum_at(gamma, psi, t + 1), mu_product(gamma, psi, t)
    return {
        "gamma": gamma,
        "one_minus_gamma": 1.0 - gamma,
        "alpha": hp["alpha"],
        "one_minus_alpha": 1.0 - hp["alpha"],
        "c2": 1.0 / (1.0 - hp["alpha"] ** t),
        "eps": hp["eps"],
        "lr_g": hp["lr"] * (1.0 - now) / (1.0 - product),
        "lr_mu": hp["lr"] * after / (1.0 - product * after),
    }


RULE = Rule(
    name="nadam",
    title="NAdam",
    formula="gamma_t = gamma (1 - 0.5 * 0.96^(t psi));  mu := gamma mu + (1 - gamma) L';  v := alpha v + (1 - alpha) L'^2;  d = sqrt(v / (1 - alpha^t)) + eps;  w := w - eta (1 - gamma_t) / (1 - prod_{i<=t} gamma_i) L' / d - eta gamma_{t+1} / (1 - prod_{i<=t+1} gamma_i) mu / d",
    year=2016,
    lr_centre=0.003,
    peer=Peer("torch.optim", lambda hp: None if hp["l2"] and hp["wd"] else (
        "NAdam", {"lr": hp["lr"], "betas": (hp["gamma"], hp["alpha"]), "eps": hp["eps"], "momentum_decay": hp["psi"],
                  "weight_decay": hp["wd"] or hp["l2"], "decoupled_weight_decay": bool(hp["wd"])}),
        state={"mu": ("exp_avg", 1.0), "v": ("exp_avg_sq", 1.0)}),
    peer_note='exactly torch.optim.NAdam(lr=lr, betas=(gamma, alpha), eps=eps, momentum_decay=psi)',
    hyper={"lr": 2e-3, "gamma": 0.9, "alpha": 0.999, "eps": 1e-8, "psi": 4e-3},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "alpha": "[0, 1)", "eps": "(0, inf)", "psi": "[0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "epsilon": "eps", "psi": "psi"},
    state=("mu", "v"),
    scalars=_scalars,
    update="""
        mu = gamma * mu + one_minus_gamma * g
        v = alpha * v + one_minus_alpha * (g * g)
        d = sqrt(c2 * v) + eps
        w = w - lr_g * g / d - lr_mu * mu / d
    """,
    bytes_per_param=28,  # read w, g, mu, v; write w, mu, v
)
