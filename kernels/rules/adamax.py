"""Adamax (Kingma and Ba 2015, section 7.1): Adam with the infinity norm in
place of the root mean square.

.. math::
    \\mu := \\gamma \\mu + (1-\\gamma) L' \\qquad
    u := \\max(\\alpha u, |L'| + \\epsilon) \\\\
    w := w - \\frac{\\eta}{1-\\gamma^t}\\, \\mu / u

Symbols -> arguments: eta -> ``lr``, gamma -> ``gamma`` (beta1), alpha ->
``alpha`` (beta2), epsilon -> ``eps``, t -> the step counter. Convention:
eps inside the max, as in PyTorch (the paper has none; it keeps u > 0 while
every gradient so far is 0). The bias correction eta / (1 - gamma^t) is a
per-step scalar computed on the host.
"""

from ..peer import Peer
from ..rule import Rule


RULE = Rule(
    name="adamax",
    title="Adamax",
    formula="mu := gamma mu + (1 - gamma) L';  u := max(alpha u, |L'| + eps);  w := w - eta / (1 - gamma^t) mu / u",
    year=2014,
    lr_centre=0.003,
    peer=Peer("torch.optim", lambda hp: None if hp["wd"] else (
        "Adamax", {"lr": hp["lr"], "betas": (hp["gamma"], hp["alpha"]), "eps": hp["eps"], "weight_decay": hp["l2"]}),
        state={"mu": ("exp_avg", 1.0), "u": ("exp_inf", 1.0)}),
    peer_note='exactly torch.optim.Adamax(lr=lr, betas=(gamma, alpha), eps=eps)',
    hyper={"lr": 2e-3, "gamma": 0.9, "alpha": 0.999, "eps": 1e-8},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "alpha": "[0, 1)", "eps": "(0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "alpha": "alpha", "epsilon": "eps"},
    state=("mu", "u"),
    scalars=lambda hp, t: {
        "gamma": hp["gamma"],
        "one_minus_gamma": 1.0 - hp["gamma"],
        "alpha": hp["alpha"],
        "eps": hp["eps"],
        "lr_c1": hp["lr"] / (1.0 - hp["gamma"] ** t),
    },
    update="""
        mu = gamma * mu + one_minus_gamma * g
        u = max(alpha * u, abs(g) + eps)
        w = w - lr_c1 * mu / u
    """,
    bytes_per_param=28,  # read w, g, mu, u; write w, mu, u
)
