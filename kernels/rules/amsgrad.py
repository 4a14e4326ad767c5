"""AMSGrad (Reddi, Kale and Kumar 2018): Adam whose denominator never
shrinks -- it uses the running maximum of the second moment.

.. math::
    \\mu := \\gamma \\mu + (1-\\gamma) L' \\qquad
    v := \\alpha v + (1-\\alpha) L' \\odot L' \\qquad
    \\hat v := \\max(\\hat v, v) \\\\
    w := w - \\eta\\, \\frac{\\mu / (1-\\gamma^t)}{\\sqrt{\\hat v / (1-\\alpha^t)} + \\epsilon}

Symbols -> arguments: as Adam (eta -> ``lr``, gamma -> ``gamma``, alpha ->
``alpha``, epsilon -> ``eps``); v-hat is the state ``vmax``. Convention: the
bias corrections as in PyTorch (the paper has none); both are per-step
scalars computed on the host.
"""

from ..peer import Peer
from ..rule import Rule
from .adam import scalars as adam_scalars


RULE = Rule(
    name="amsgrad",
    title="AMSGrad",
    formula="mu := gamma mu + (1 - gamma) L';  v := alpha v + (1 - alpha) L'^2;  vmax := max(vmax, v);  w := w - eta (mu / (1 - gamma^t)) / (sqrt(vmax / (1 - alpha^t)) + eps)",
    year=2018,
    lr_centre=0.003,
    peer=Peer("torch.optim", lambda hp: None if hp["l2"] and hp["wd"] else (
        "AdamW" if hp["wd"] else "Adam",
        {"lr": hp["lr"], "betas": (hp["gamma"], hp["alpha"]), "eps": hp["eps"], "amsgrad": True,
         "weight_decay": hp["wd"] or hp["l2"]}),
        state={"mu": ("exp_avg", 1.0), "v": ("exp_avg_sq", 1.0), "vmax": ("max_exp_avg_sq", 1.0)}),
    peer_note='exactly torch.optim.Adam(lr=lr, betas=(gamma, alpha), eps=eps, amsgrad=True)',
    hyper={"lr": 1e-3, "gamma": 0.9, "alpha": 0.999, "eps": 1e-8},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "alpha": "[0, 1)", "eps": "(0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "epsilon": "eps"},
    state=("mu", "v", "vmax"),
    scalars=adam_scalars,  # Adam's: the same weights and bias corrections
    update="""
        mu = gamma * mu + one_minus_gamma * g
        v = alpha * v + one_minus_alpha * (g * g)
        vmax = max(vmax, v)
        w = w - lr_c1 * mu / (sqrt(c2 * vmax) + eps)
    """,
    bytes_per_param=36,  # read w, g, mu, v, vmax; write w, mu, v, vmax
)
