"""RMSProp (Hinton's lecture 6e), lecture form.

.. math::
    v := \\gamma v + (1-\\gamma) L' \\odot L' \\qquad
    w := w - \\eta\\, L' / (\\sqrt{v} + \\epsilon)

Symbols -> arguments: eta -> ``lr``, gamma -> ``gamma`` (PyTorch calls it
alpha), epsilon -> ``eps``.
Convention: eps outside the root, as on the slide and in PyTorch.
"""

from ..peer import Peer
from ..rule import Rule


RULE = Rule(
    name="rmsprop",
    title="RMSProp",
    formula="v := gamma v + (1 - gamma) L'^2;  w := w - eta L' / (sqrt(v) + eps)",
    lecture=4,
    year=2012,
    lr_centre=0.001,
    peer=Peer("torch.optim", lambda hp: None if hp["wd"] else (
        "RMSprop", {"lr": hp["lr"], "alpha": hp["gamma"], "eps": hp["eps"], "centered": False, "momentum": 0,
                    "weight_decay": hp["l2"]}),
        state={"v": ("square_avg", 1.0)}),
    peer_note='exactly torch.optim.RMSprop(lr=lr, alpha=gamma, eps=eps, momentum=0, centered=False)',
    hyper={"lr": 1e-3, "gamma": 0.9, "eps": 1e-8},
    ranges={"lr": "(0, inf)", "gamma": "[0, 1)", "eps": "(0, inf)"},
    symbols={"eta": "lr", "gamma": "gamma", "epsilon": "eps"},
    state=("v",),
    scalars=lambda hp, t: {
        "lr": hp["lr"],
        "gamma": hp["gamma"],
        "one_minus_gamma": 1.0 - hp["gamma"],
        "eps": hp["eps"],
    },
    update="""
        v = gamma * v + one_minus_gamma * (g * g)
        w = w - lr * g / (sqrt(v) + eps)
    """,
    bytes_per_param=20,  # read w, g, v; write w, v
)
