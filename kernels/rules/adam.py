"""Adam (Kingma and Ba 2015) = momentum + RMSProp with bias correction.

.. math::
    \\mu := \\gamma \\mu + (1-\\gamma) L' \\qquad
    v := \\alpha v + (1-\\alpha) L' \\odot L' \\\\
    w := w - \\eta\\, \\frac{\\mu / (1-\\gamma^t)}{\\sqrt{v / (1-\\alpha^t)} + \\epsilon}

Symbols -> arguments: eta -> ``lr``, gamma -> ``gamma`` (beta1 elsewhere),
alpha -> ``alpha`` (beta2), epsilon -> ``eps``, t -> the optimiser's step
counter. With decoupled decay ``wd`` (:mod:`kernels.transforms`) it is AdamW.

The slide prints v := (alpha v + (1-alpha) L'.L')/(1-alpha^t) and a mu line
that uses v: garbled, because the bias corrections must not be stored back
into the averages and the first moment averages the gradient. This is the
canonical algorithm. The corrections 1/(1-gamma^t) and 1/(1-alpha^t) are
computed on the host in double once per step (``lr_c1`` = eta/(1-gamma^t),
``c2`` = 1/(1-alpha^t)).
"""

from ..peer import Peer
from ..rule import Rule


def scalars(hp, t):
    """Adam's per-step scalars (AMSGrad and AdaBelief use the same): the
    averages' weights and the bias corrections, in double on the host."""
    return {
        "gamma": hp["gamma"],
        "one_minus_gamma": 1.0 - hp["gamma"],
        "alpha": hp["alpha"],
        "one_minus_alpha": 1.0 - hp["alpha"],
        "lr_c1": hp["lr"] / (1.0 - hp["gamma"] ** t),
        "c2": 1.0 / (1.0 - hp["alpha"] ** t),
        "eps": hp["eps"],
    }


RULE = Rule(
    name="adam",
    title="Adam",
    formula="mu := gamma mu + (1 - gamma) L';  v := alpha v + (1 - alpha) L'^2;  w := w - eta (mu / (1 - gamma^t)) / (sqrt(v / (1 - alpha^t)) + eps)",
    lecture=6,
    year=2014,
    lr_centre=0.003,
    peer=Peer("torch.optim", lambda hp: None if hp["l2"] and hp["wd"] else (
        "AdamW" if hp["wd"] else "Adam",
        {"lr": hp["lr"], "betas": (hp["gamma"], hp["alpha"]), "eps": hp["eps"], "weight_decay": hp["wd"] or hp["l2"]}),
        state={"mu": ("exp_avg", 1.0), "v": ("exp_avg_sq", 1.0)}),
    peer_note='exactly torch.optim.Adam(lr=lr, betas=(gamma, alpha), eps=eps); with wd, torch.optim.AdamW(weight_decay=wd)',
    hyper={"lr": 1e-3, "gamma": 0.9, "alpha": 0.999, "eps": 1e-8},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "alpha": "[0, 1)", "eps": "(0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "epsilon": "eps"},
    state=("mu", "v"),
    scalars=scalars,
    update="""
        mu = gamma * mu + one_minus_gamma * g
        v = alpha * v + one_minus_alpha * (g * g)
        w = w - lr_c1 * mu / (sqrt(c2 * v) + eps)
    """,
    bytes_per_param=28,  # read w, g, mu, v; write w, mu, v
)
