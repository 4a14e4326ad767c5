"""Momentum (Polyak 1964) in the lecture's exponential-moving-average form.

.. math::
    v := \\gamma v + (1 - \\gamma) L' \\qquad  w := w - \\eta v

Symbols -> arguments: eta -> ``lr``, gamma -> ``gamma``. Convention: the lecture's
EMA form, so the step is eta times an average gradient (not the "heavy ball"
sum v := gamma v + L' of PyTorch's SGD, whose steps are 1 / (1 - gamma)
larger at the same lr). With gamma = 0 it is exactly SGD.
"""

from ..peer import Peer
from ..rule import Rule


RULE = Rule(
    name="momentum",
    title="Momentum",
    formula="v := gamma v + (1 - gamma) L';  w := w - eta v",
    lecture=2,
    year=1964,
    lr_centre=0.1,
    peer=Peer("torch.optim", lambda hp: None if hp["wd"] else (
        "SGD", {"lr": hp["lr"] * (1 - hp["gamma"]), "momentum": hp["gamma"], "dampening": 0,
                "weight_decay": hp["l2"]}),
        state={"v": ("momentum_buffer", lambda hp: 1 - hp["gamma"])}),
    peer_note="exactly torch.optim.SGD(lr=lr * (1 - gamma), momentum=gamma, dampening=0): torch's buffer b = g on the first step and b := gamma b + g after, and our v = (1 - gamma) b",
    hyper={"lr": 0.01, "gamma": 0.9},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)"},
    symbols={"eta": "lr", "gamma": "gamma"},
    state=("v",),
    scalars=lambda hp, t: {
        "lr": hp["lr"],
        "gamma": hp["gamma"],
        "one_minus_gamma": 1.0 - hp["gamma"],
    },
    update="""
        v = gamma * v + one_minus_gamma * g
        w = w - lr * v
    """,
    bytes_per_param=20,  # read w, g, v; write w, v
)
