"""Adagrad (Duchi, Hazan and Singer 2011): a per-parameter learning rate that
shrinks with the sum of the squared gradients seen so far.

.. math::
    G := G + L' \\odot L' \\qquad
    w := w - \\eta\\, L' / (\\sqrt{G} + \\epsilon)

Symbols -> arguments: eta -> ``lr``, epsilon -> ``eps``; G is the state ``G``
(zero at the start). Convention: eps outside the root, as in PyTorch.
"""

from ..peer import Peer
from ..rule import Rule


RULE = Rule(
    name="adagrad",
    title="Adagrad",
    formula="G := G + L'^2;  w := w - eta L' / (sqrt(G) + eps)",
    year=2011,
    lr_centre=0.03,
    peer=Peer("torch.optim", lambda hp: None if hp["wd"] else (
        "Adagrad", {"lr": hp["lr"], "lr_decay": 0, "initial_accumulator_value": 0, "eps": hp["eps"],
                    "weight_decay": hp["l2"]}),
        state={"G": ("sum", 1.0)}),
    peer_note='exactly torch.optim.Adagrad(lr=lr, eps=eps, lr_decay=0, initial_accumulator_value=0)',
    hyper={"lr": 0.01, "eps": 1e-10},
    ranges={"lr": "(0, inf)", "eps": "(0, inf)"},
    symbols={"eta": "lr", "epsilon": "eps"},
    state=("G",),
    scalars=lambda hp, t: {"lr": hp["lr"], "eps": hp["eps"]},
    update="""
        G = G + g * g
        w = w - lr * g / (sqrt(G) + eps)
    """,
    bytes_per_param=20,  # read w, g, G; write w, G
)
